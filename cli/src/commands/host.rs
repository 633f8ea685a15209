//! `vauban host`: a node agent that dials the scheduler and runs what it is assigned.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use vauban_host::AgentConfig;

#[derive(Debug, Args)]
pub(crate) struct HostArgs {
    /// The scheduler to connect to (hosts dial out, so they work from behind NAT).
    #[arg(
        long,
        env = "VAUBAN_SCHEDULER",
        default_value = "http://127.0.0.1:7070"
    )]
    scheduler: String,
    /// This node's name, stable across restarts.
    #[arg(long, env = "VAUBAN_NODE_ID")]
    node_id: String,
    /// A label for placement, KEY=VALUE (repeatable), e.g. site=toulon.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = super::parse_key_value)]
    labels: Vec<(String, String)>,
    /// Jobs this node runs at once.
    #[arg(long, default_value_t = 4)]
    slots: u32,
    /// Memory this node offers to jobs, e.g. 4GiB.
    #[arg(long, default_value = "4GiB")]
    memory: bytesize::ByteSize,
    /// Trusted publisher keys: this host verifies every module itself (repeatable).
    #[arg(long, env = "VAUBAN_TRUST", value_delimiter = ',', required = true)]
    trust: Vec<PathBuf>,
    /// A host directory under which jobs may be given directories (repeatable). Default: none.
    #[arg(long = "allow-root", value_name = "PATH")]
    allow_roots: Vec<PathBuf>,
    /// Where this host keeps fetched modules and compiled code.
    #[arg(long, env = "VAUBAN_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

pub(crate) async fn run(args: HostArgs) -> anyhow::Result<ExitCode> {
    let data_dir = args
        .data_dir
        .unwrap_or_else(|| PathBuf::from(format!(".vauban/host-{}", args.node_id)));
    let trust = super::load_trust(&args.trust)?;
    let cwd = std::env::current_dir()?;
    let roots = args.allow_roots.iter().map(|r| cwd.join(r)).collect();
    let runtime =
        super::serve::host_runtime(&data_dir, trust, roots, args.slots, args.memory.as_u64())?;
    let mut config = AgentConfig::new(args.scheduler, args.node_id, data_dir.join("modules"));
    // The operator's labels, over the ones the agent knows by itself (`arch`).
    config.labels.extend(args.labels);
    config.slots = args.slots;
    config.memory_bytes = args.memory.as_u64();
    let shutdown = super::serve::shutdown_on_signal()?;
    vauban_host::run_agent(config, runtime, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}
