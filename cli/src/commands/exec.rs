//! `vauban exec`: run a signed module locally in the sandbox.
//!
//! The guest gets exactly the capabilities named by flags and nothing else: no inherited
//! environment, no directory outside the allowed roots, no network unless a destination is
//! listed. The guest's stdout and stderr are printed, then a one-line report on stderr, and
//! vauban exits with the guest's exit code.

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use tokio_util::sync::CancellationToken;
use vauban_core::outcome::CodeSource;
use vauban_core::{Capabilities, DirGrant, Limits, Outcome, RunReport};
use vauban_host::{RunRequest, Runtime, RuntimeConfig};

#[derive(Debug, Args)]
pub(crate) struct ExecArgs {
    /// The signed module (wasm32-wasip1) or component (wasm32-wasip2) to run.
    module: PathBuf,
    /// Arguments for the guest, after `--`.
    #[arg(last = true)]
    trailing_args: Vec<String>,
    /// An argument for the guest (repeatable; placed before those after `--`).
    #[arg(long = "arg", value_name = "ARG", allow_hyphen_values = true)]
    args: Vec<String>,
    /// An environment variable for the guest, KEY=VALUE (repeatable). Nothing is inherited.
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// A host directory for the guest, HOST:GUEST[:ro|rw] (repeatable; read-only by default).
    #[arg(long = "dir", value_name = "HOST:GUEST[:ro|rw]")]
    dirs: Vec<DirGrant>,
    /// A host directory under which --dir paths may lie (repeatable). Default: the current
    /// directory.
    #[arg(long = "allow-root", value_name = "PATH")]
    allow_roots: Vec<PathBuf>,
    /// A TCP/UDP destination the guest may connect to, ADDR:PORT (repeatable). Default: none.
    #[arg(long = "allow-net", value_name = "ADDR:PORT")]
    allow_net: Vec<SocketAddr>,
    /// Linear memory limit, e.g. 64MiB.
    #[arg(long, value_name = "SIZE", default_value = "256MiB")]
    memory: bytesize::ByteSize,
    /// Wall-clock limit, e.g. 500ms, 30s, 2m.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Fuel budget (deterministic CPU units); unmetered if not given.
    #[arg(long, value_name = "UNITS")]
    fuel: Option<u64>,
    /// File whose bytes are the guest's stdin ("-" reads vauban's own stdin). Default: empty.
    #[arg(long, value_name = "FILE")]
    stdin: Option<PathBuf>,
    /// Bytes kept per output stream; the rest is dropped and counted.
    #[arg(long, value_name = "SIZE", default_value = "1MiB")]
    output_limit: bytesize::ByteSize,
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

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// Exit codes for outcomes that are not a guest exit, following shell conventions.
mod exit {
    pub(super) const TIMED_OUT: u8 = 124;
    pub(super) const DENIED: u8 = 126;
    pub(super) const CANCELLED: u8 = 130;
    pub(super) const TRAPPED: u8 = 134;
    pub(super) const OUT_OF_MEMORY: u8 = 137;
    pub(super) const OUT_OF_FUEL: u8 = 152;
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
    config.max_memory_bytes = config.max_memory_bytes.max(args.memory.as_u64());

    let stdin = match &args.stdin {
        None => Vec::new(),
        Some(p) if p.as_os_str() == "-" => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("reading stdin")?;
            buf
        }
        Some(p) => {
            std::fs::read(p).with_context(|| format!("reading stdin file {}", p.display()))?
        }
    };
    let bytes = super::read_module(&args.module)?;
    let program = args
        .module
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut dirs = args.dirs;
    for dir in &mut dirs {
        dir.host = absolute(&dir.host);
    }
    let request = RunRequest {
        capabilities: Capabilities {
            args: args.args.into_iter().chain(args.trailing_args).collect(),
            env: args.env,
            dirs,
            network: args.allow_net,
            limits: Limits {
                memory_bytes: args.memory.as_u64(),
                timeout: args.timeout,
                fuel: args.fuel,
                output_bytes: args.output_limit.as_u64(),
            },
        },
        stdin,
        program,
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
    Ok(exit_code(&report.outcome))
}

fn default_cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("vauban")
}

fn exit_code(outcome: &Outcome) -> ExitCode {
    match outcome {
        // Exit codes outside 0..=255 cannot be passed on; keep them distinct from success.
        Outcome::Exited { code } => ExitCode::from(u8::try_from(*code).unwrap_or(1)),
        Outcome::Trapped { .. } => ExitCode::from(exit::TRAPPED),
        Outcome::TimedOut { .. } => ExitCode::from(exit::TIMED_OUT),
        Outcome::OutOfMemory { .. } => ExitCode::from(exit::OUT_OF_MEMORY),
        Outcome::OutOfFuel { .. } => ExitCode::from(exit::OUT_OF_FUEL),
        Outcome::Cancelled => ExitCode::from(exit::CANCELLED),
        Outcome::Denied { .. } => ExitCode::from(exit::DENIED),
    }
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
