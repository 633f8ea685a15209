//! `vauban host`: a node agent that dials the scheduler and runs what it is assigned.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use vauban_host::{AgentConfig, ClientTls};
use vauban_scheduler::identity::Role;

#[derive(Debug, Args)]
pub(crate) struct HostArgs {
    /// The scheduler to connect to (hosts dial out, so they work from behind NAT). Without a
    /// scheme, https:// (or http:// with --insecure).
    #[arg(long, env = "VAUBAN_SCHEDULER", default_value = "127.0.0.1:7070")]
    scheduler: String,
    /// This node's name, stable across restarts. Default: the node id in the certificate
    /// (`spiffe://<trust-domain>/host/<node-id>`), which the scheduler holds the host to.
    #[arg(long, env = "VAUBAN_NODE_ID")]
    node_id: Option<String>,
    /// The CA the scheduler's certificate must chain to (PEM).
    #[arg(long, env = "VAUBAN_CA", value_name = "PEM")]
    ca: Option<PathBuf>,
    /// This host's certificate (PEM), from `vauban pki issue --role host --name NODE_ID`.
    #[arg(long, env = "VAUBAN_CERT", value_name = "PEM")]
    cert: Option<PathBuf>,
    /// This host's private key (PEM).
    #[arg(long, env = "VAUBAN_KEY", value_name = "PEM")]
    key: Option<PathBuf>,
    /// Dial a plaintext scheduler (`vauban scheduler --insecure`), with no identity; --ca,
    /// --cert and --key are then ignored. Logs a warning.
    #[arg(long)]
    insecure: bool,
    /// A label for placement, KEY=VALUE (repeatable), e.g. site=toulon.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = super::parse_key_value)]
    labels: Vec<(String, String)>,
    /// Jobs this node runs at once.
    #[arg(long, default_value_t = 4)]
    slots: u32,
    /// Memory this node offers to jobs, e.g. 4GiB.
    #[arg(long, default_value = "4GiB")]
    memory: bytesize::ByteSize,
    /// Trusted publisher keys: this host verifies every module itself (repeatable). The
    /// keys-only mode: any module signed by one of them runs, and jobs need no grant.
    #[arg(
        long,
        env = "VAUBAN_TRUST",
        value_delimiter = ',',
        required_unless_present = "policy",
        conflicts_with = "policy"
    )]
    trust: Vec<PathBuf>,
    /// This host's own copy of the trust policy: it verifies modules and every job's grant
    /// against it, and checks the grant's node classes against its own labels.
    #[command(flatten)]
    policy: super::serve::PolicyArgs,
    /// A host directory under which jobs may be given directories (repeatable). Default: none.
    #[arg(long = "allow-root", value_name = "PATH")]
    allow_roots: Vec<PathBuf>,
    /// Where this host keeps fetched modules and compiled code.
    #[arg(long, env = "VAUBAN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Sign an execution receipt for every attempt with this Ed25519 key (PKCS#8 PEM, as
    /// `vauban key generate --role audit` writes); the scheduler checks each against the public
    /// half sent at registration and logs it. Without it, this host sends no receipts.
    #[arg(long, env = "VAUBAN_RECEIPT_KEY", value_name = "FILE")]
    receipt_key: Option<PathBuf>,
}

pub(crate) async fn run(args: HostArgs) -> anyhow::Result<ExitCode> {
    let (tls, node_id) = tls_and_node_id(&args)?;
    let receipt_key = args
        .receipt_key
        .as_deref()
        .map(|path| {
            use anyhow::Context as _;
            vauban_audit::SecretKey::from_file(path)
                .with_context(|| format!("reading the receipt key {}", path.display()))
        })
        .transpose()?;
    let data_dir = args
        .data_dir
        .unwrap_or_else(|| PathBuf::from(format!(".vauban/host-{node_id}")));
    let policy = args.policy.load()?;
    let trust = match policy {
        Some(_) => vauban_core::TrustStore::default(),
        None => super::load_trust(&args.trust)?,
    };
    let (policy, trust_dir) = super::serve::host_policy(policy, &data_dir)?;
    let cwd = std::env::current_dir()?;
    let roots = args.allow_roots.iter().map(|r| cwd.join(r)).collect();
    let runtime = super::serve::host_runtime(
        &data_dir,
        trust,
        policy,
        roots,
        args.slots,
        args.memory.as_u64(),
    )?;
    let scheduler = super::client::scheduler_uri(&args.scheduler, tls.is_some())?;
    let mut config = AgentConfig::new(scheduler, node_id, data_dir.join("modules"));
    config.tls = tls;
    config.receipt_key = receipt_key;
    config.trust_dir = trust_dir;
    // The operator's labels, over the ones the agent knows by itself (`arch`).
    config.labels.extend(args.labels);
    config.slots = args.slots;
    config.memory_bytes = args.memory.as_u64();
    let shutdown = super::serve::shutdown_on_signal()?;
    vauban_host::run_agent(config, runtime, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// The host's TLS material (read here: the agent reads no files) and its node id: `--node-id`,
/// else the one its certificate names.
fn tls_and_node_id(args: &HostArgs) -> anyhow::Result<(Option<ClientTls>, String)> {
    use anyhow::Context as _;
    if args.insecure {
        tracing::warn!(
            "--insecure: dialing the scheduler in plaintext, with no identity; anyone on the \
             network can read and change what is sent"
        );
        let node_id = args.node_id.clone().context(
            "--node-id is required with --insecure (without it, the node id is the certificate's)",
        )?;
        return Ok((None, node_id));
    }
    let (Some(ca), Some(cert), Some(key)) = (&args.ca, &args.cert, &args.key) else {
        anyhow::bail!(
            "no TLS certificate: pass --ca, --cert and --key (make them with `vauban pki issue \
             --role host --name NODE_ID`), or --insecure to dial a plaintext scheduler"
        );
    };
    let read =
        |path: &PathBuf| std::fs::read(path).with_context(|| format!("reading {}", path.display()));
    let tls = ClientTls {
        ca_pem: read(ca)?,
        cert_pem: read(cert)?,
        key_pem: read(key)?,
    };
    let id = vauban_scheduler::identity::certificates_from_pem(&tls.cert_pem)
        .ok()
        .and_then(|chain| chain.first().map(vauban_scheduler::identity::spiffe_id))
        .with_context(|| format!("{} holds no certificate", cert.display()))?
        .with_context(|| format!("{} names no identity", cert.display()))?;
    anyhow::ensure!(
        id.peer.role == Role::Host,
        "{} is a certificate for {id}, not a host (issue one with `vauban pki issue --role host`)",
        cert.display()
    );
    let node_id = match &args.node_id {
        None => id.peer.name,
        Some(claimed) => {
            if *claimed != id.peer.name {
                tracing::warn!(
                    "--node-id {claimed} differs from the node {} this host's certificate names: \
                     the scheduler will refuse it",
                    id.peer.name
                );
            }
            claimed.clone()
        }
    };
    Ok((Some(tls), node_id))
}
