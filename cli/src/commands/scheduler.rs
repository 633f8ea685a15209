//! `vauban scheduler`: the control plane, serving gRPC until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use vauban_scheduler::SchedulerConfig;

#[derive(Debug, Args)]
pub(crate) struct SchedulerArgs {
    /// Address to serve gRPC on (port 0 picks a free port).
    #[arg(long, env = "VAUBAN_LISTEN", default_value = "127.0.0.1:7070")]
    listen: String,
    /// Where the scheduler keeps its state (jobs, modules, results).
    #[arg(long, env = "VAUBAN_DATA_DIR", default_value = ".vauban/scheduler")]
    data_dir: PathBuf,
    /// Trusted publisher keys: a key file or a directory of *.pub files (repeatable).
    #[arg(long, env = "VAUBAN_TRUST", value_delimiter = ',', required = true)]
    trust: Vec<PathBuf>,
    /// How often hosts heartbeat.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    heartbeat: Duration,
    /// A host silent this long is marked down and its jobs requeued.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    down_after: Duration,
    /// Keep an audit log in DATA_DIR/audit, its checkpoints signed with this key (PKCS#8 PEM,
    /// as `vauban key generate --role audit` writes). Without it, no audit log is kept.
    #[arg(long, env = "VAUBAN_AUDIT_KEY")]
    audit_key: Option<PathBuf>,
}

pub(crate) async fn run(args: SchedulerArgs) -> anyhow::Result<ExitCode> {
    let trust = super::load_trust(&args.trust)?;
    let mut config = SchedulerConfig::new(&args.data_dir, trust);
    config.heartbeat_interval = args.heartbeat;
    config.down_after = args.down_after;
    if let Some(key) = &args.audit_key {
        config.audit = Some(audit_config(&args.data_dir, key)?);
    }
    let listener = super::serve::bind(&args.listen).await?;
    let shutdown = super::serve::shutdown_on_signal()?;
    println!(
        "vauban scheduler listening on http://{}",
        listener.local_addr()?
    );
    vauban_scheduler::serve(listener, config, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// The audit log of a scheduler keeping its state in `data_dir`, signed with the key at `key`.
pub(crate) fn audit_config(
    data_dir: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<vauban_scheduler::AuditConfig> {
    use anyhow::Context as _;
    let key = vauban_audit::SecretKey::from_file(key)
        .with_context(|| format!("reading the audit key {}", key.display()))?;
    Ok(vauban_scheduler::AuditConfig {
        dir: data_dir.join("audit"),
        origin: "vauban.audit/scheduler".to_owned(),
        key,
    })
}
