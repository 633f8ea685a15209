//! `vauban exec`: run a signed module locally in the sandbox.
//!
//! The guest gets exactly the capabilities named by flags and nothing else: no inherited
//! environment, no directory outside the allowed roots, no network unless a destination is
//! listed. The guest's stdout and stderr are printed, then a one-line report on stderr, and
//! vauban exits with the guest's exit code.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, ValueEnum};

use super::caps::CapabilityArgs;
use tokio_util::sync::CancellationToken;
use vauban_core::RunReport;
use vauban_core::outcome::CodeSource;
use vauban_host::{RunRequest, Runtime, RuntimeConfig};

#[derive(Debug, Args)]
pub(crate) struct ExecArgs {
    /// The signed module (wasm32-wasip1) or component (wasm32-wasip2) to run.
    module: PathBuf,
    #[command(flatten)]
    caps: CapabilityArgs,
    /// A host directory under which --dir paths may lie (repeatable). Default: the current
    /// directory.
    #[arg(long = "allow-root", value_name = "PATH")]
    allow_roots: Vec<PathBuf>,
    /// Trusted publisher keys: a key file or a directory of *.pub files (repeatable).
    #[arg(long, env = "VAUBAN_TRUST", value_delimiter = ',', required = true)]
    trust: Vec<PathBuf>,
    /// Compiled-artifact cache directory. Default: $XDG_CACHE_HOME/vauban or ~/.cache/vauban.
    #[arg(long, env = "VAUBAN_CACHE", value_name = "DIR")]
    cache: Option<PathBuf>,
    /// How to print the run report on stderr.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    report: ReportFormat,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ReportFormat {
    /// One human-readable line.
    Text,
    /// The whole report as JSON.
    Json,
    /// Nothing.
    None,
}

pub(crate) fn run(args: ExecArgs) -> anyhow::Result<ExitCode> {
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let absolute = |p: &Path| cwd.join(p);
    let roots = if args.allow_roots.is_empty() {
        vec![cwd.clone()]
    } else {
        args.allow_roots.iter().map(|p| absolute(p)).collect()
    };
    let mut config = RuntimeConfig::new(args.cache.clone().unwrap_or_else(default_cache_dir));
    config.trust = super::load_trust(&args.trust)?;
    config.allowed_roots = roots;
    config.max_instances = 1;
    config.max_memory_bytes = config.max_memory_bytes.max(args.caps.memory_bytes());
    let stdin = args.caps.stdin_bytes()?;
    let bytes = super::read_module(&args.module)?;
    let program = super::file_name(&args.module);
    let request = RunRequest {
        capabilities: args.caps.capabilities(&cwd),
        stdin,
        program,
        ..RunRequest::default()
    };

    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = tokio.block_on(async move {
        let runtime = Runtime::new(config).context("starting the host runtime")?;
        let module = runtime
            .load(&bytes)
            .with_context(|| format!("loading {}", args.module.display()))?;
        let cancel = CancellationToken::new();
        let on_interrupt = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                on_interrupt.cancel();
            }
        });
        anyhow::Ok(runtime.run(&module, request, &cancel).await)
    })?;

    std::io::stdout().write_all(&report.stdout.bytes)?;
    std::io::stdout().flush()?;
    std::io::stderr().write_all(&report.stderr.bytes)?;
    match args.report {
        ReportFormat::Text => eprintln!("{}", summary(&report)),
        ReportFormat::Json => eprintln!("{}", serde_json::to_string(&report)?),
        ReportFormat::None => {}
    }
    Ok(super::report::exit_code(&report.outcome))
}

fn default_cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("vauban")
}

/// `vauban: exited with code 0 · core module · loaded from cache in 1.2ms · ran 3.1ms · ...`
fn summary(r: &RunReport) -> String {
    let load = match r.code_source {
        CodeSource::Compiled => format!("compiled in {:.1?}", r.load_time),
        CodeSource::DiskCache => format!("loaded from cache in {:.1?}", r.load_time),
        CodeSource::Memory => format!("already loaded ({:.1?})", r.load_time),
    };
    let mut parts = vec![
        r.outcome.to_string(),
        r.kind.to_string(),
        load,
        format!("ran {:.1?}", r.run_time),
        format!("peak memory {}", bytesize::ByteSize(r.peak_memory_bytes)),
    ];
    if let Some(fuel) = r.fuel_consumed {
        parts.push(format!("fuel {fuel}"));
    }
    for (name, out) in [("stdout", &r.stdout), ("stderr", &r.stderr)] {
        if out.truncated() {
            parts.push(format!("{name} truncated ({} bytes dropped)", out.dropped));
        }
    }
    for denial in &r.denials {
        parts.push(format!("denied {denial}"));
    }
    format!("vauban: {}", parts.join(" · "))
}
