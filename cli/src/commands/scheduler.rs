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
}

pub(crate) async fn run(args: SchedulerArgs) -> anyhow::Result<ExitCode> {
    let trust = super::load_trust(&args.trust)?;
    let mut config = SchedulerConfig::new(&args.data_dir, trust);
    config.heartbeat_interval = args.heartbeat;
    config.down_after = args.down_after;
    let listener = super::serve::bind(&args.listen).await?;
    let shutdown = super::serve::shutdown_on_signal()?;
    println!(
        "vauban scheduler listening on http://{}",
        listener.local_addr()?
    );
    vauban_scheduler::serve(listener, config, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}
