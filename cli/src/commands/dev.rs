//! `vauban dev`: the zero-setup default — a scheduler and hosts in one process, with the
//! embedded store and a generated development key that the scheduler and hosts trust.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use tokio_util::task::TaskTracker;
use vauban_core::{SecretKey, TrustStore};
use vauban_host::{AgentConfig, ClientTls};
use vauban_scheduler::SchedulerConfig;

use super::pki::DevPki;

/// Labels of the development hosts, in order: each gets its own zone and tier.
const ZONES: [&str; 4] = ["alpha", "bravo", "charlie", "delta"];

#[derive(Debug, Args)]
pub(crate) struct DevArgs {
    /// Address to serve gRPC on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:7070")]
    listen: String,
    /// How many hosts to run in the process.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=4))]
    hosts: u32,
    /// Jobs each host runs at once.
    #[arg(long, default_value_t = 4)]
    slots: u32,
    /// Where state, keys, certificates, modules and compiled code go. Client commands look for
    /// its certificates in the same place (`VAUBAN_DEV_DIR`, else `.vauban/dev`).
    #[arg(long, env = "VAUBAN_DEV_DIR", default_value = super::client::DEV_DIR)]
    data_dir: PathBuf,
    /// Serve plaintext with no identities instead of mutual TLS with generated certificates.
    /// Logs a warning.
    #[arg(long)]
    insecure: bool,
    /// More trusted publisher keys, beside the generated development key (repeatable).
    #[arg(long, value_delimiter = ',', conflicts_with = "policy")]
    trust: Vec<PathBuf>,
    /// Without --policy, `vauban dev` runs in keys-only mode (the development key and
    /// --trust); with it, the scheduler and every host hold the policy instead.
    #[command(flatten)]
    policy: super::serve::PolicyArgs,
    /// A host directory under which jobs may be given directories (repeatable). Default: the
    /// current directory.
    #[arg(long = "allow-root", value_name = "PATH")]
    allow_roots: Vec<PathBuf>,
}

pub(crate) async fn run(args: DevArgs) -> anyhow::Result<ExitCode> {
    let cwd = std::env::current_dir()?;
    let data_dir = cwd.join(&args.data_dir);
    let key_path = data_dir.join("keys/dev.key");
    let key = dev_key(&key_path)?;
    let mut keys = vec![key.public_key().clone()];
    if !args.trust.is_empty() {
        keys.extend_from_slice(super::load_trust(&args.trust)?.keys());
    }
    let trust = TrustStore::new(keys);
    let policy = args.policy.load()?;
    let roots: Vec<PathBuf> = if args.allow_roots.is_empty() {
        vec![cwd.clone()]
    } else {
        args.allow_roots.iter().map(|r| cwd.join(r)).collect()
    };

    // Mutual TLS unless told otherwise: a CA and certificates under DATA_DIR/pki, made once.
    let node_ids: Vec<String> = (1..=args.hosts).map(|i| format!("dev-{i}")).collect();
    let pki = if args.insecure {
        tracing::warn!(
            "--insecure: serving plaintext with no identities; anyone who reaches this port can \
             do anything"
        );
        None
    } else {
        Some(DevPki::ensure(&data_dir.join("pki"), &node_ids)?)
    };
    let read =
        |path: &Path| std::fs::read(path).with_context(|| format!("reading {}", path.display()));
    let server_tls = match &pki {
        Some(pki) => {
            let (cert, key) = pki.files("scheduler");
            Some(vauban_scheduler::ServerTls::from_pem(
                &read(&cert)?,
                &read(&key)?,
                &read(&pki.ca())?,
                Some(&read(&pki.crl())?),
            )?)
        }
        None => None,
    };
    let scheme = if pki.is_some() { "https" } else { "http" };

    let listener = super::serve::bind(&args.listen).await?;
    let addr = listener.local_addr()?;
    let shutdown = super::serve::shutdown_on_signal()?;
    if let (Some(tls), Some(pki)) = (&server_tls, &pki) {
        super::serve::reload_crl_on_hangup(tls.clone(), pki.crl())?;
    }
    let tasks = TaskTracker::new();
    let mut config = SchedulerConfig::new(data_dir.join("scheduler"), trust.clone());
    config.tls = server_tls;
    config.policy = policy
        .clone()
        .map(|(policy, roots)| vauban_scheduler::PolicyHolder::new(policy, roots));
    // An audit log too, signed with a generated development audit key: `vauban audit verify
    // --log .vauban/dev/scheduler/audit --key .vauban/dev/keys/audit.pub` checks it.
    let audit_key = data_dir.join("keys/audit.key");
    dev_key(&audit_key)?;
    config.audit = Some(super::scheduler::audit_config(
        &data_dir.join("scheduler"),
        &audit_key,
    )?);
    let scheduler = tasks.spawn(vauban_scheduler::serve(listener, config, shutdown.clone()));

    for (i, (zone, node_id)) in ZONES.iter().zip(node_ids).enumerate() {
        let host_dir = data_dir.join(&node_id);
        // Each host holds its own copy of the policy, as separate machines would.
        let (host_policy, trust_dir) = super::serve::host_policy(policy.clone(), &host_dir)?;
        let runtime = super::serve::host_runtime(
            &host_dir,
            trust.clone(),
            host_policy,
            roots.clone(),
            args.slots,
            4 << 30,
        )?;
        let mut agent = AgentConfig::new(
            format!("{scheme}://{addr}"),
            node_id.clone(),
            host_dir.join("modules"),
        );
        agent.trust_dir = trust_dir;
        if let Some(pki) = &pki {
            let (cert, key) = pki.files(&node_id);
            agent.tls = Some(ClientTls {
                ca_pem: read(&pki.ca())?,
                cert_pem: read(&cert)?,
                key_pem: read(&key)?,
            });
        }
        // Each development host signs a receipt per attempt with a key of its own, kept in its
        // directory: the audit log holds them, checked against the key each host registered.
        agent.receipt_key = Some(receipt_key(&host_dir.join("receipt.key"))?);
        agent.slots = args.slots;
        agent.memory_bytes = 4 << 30;
        agent.labels.extend([
            ("zone".to_owned(), (*zone).to_owned()),
            (
                "tier".to_owned(),
                if i == 0 { "core" } else { "edge" }.to_owned(),
            ),
        ]);
        let stop = shutdown.clone();
        tasks.spawn(async move {
            if let Err(error) = vauban_host::run_agent(agent, runtime, stop).await {
                tracing::error!(node = %node_id, "host agent stopped: {error:#}");
            }
        });
    }
    tasks.close();

    println!("vauban dev: scheduler listening on {scheme}://{addr}");
    println!(
        "vauban dev: {} hosts (dev-1 zone=alpha tier=core, dev-2 zone=bravo tier=edge, ...)",
        args.hosts
    );
    match &policy {
        Some((policy, _)) => println!(
            "vauban dev: trust policy version {}: modules need its publishers' signatures, jobs a \
             grant (`vauban run --grant FILE`)",
            policy.version()
        ),
        None => println!(
            "vauban dev: sign modules with `vauban sign --key {}`",
            key_path.strip_prefix(&cwd).unwrap_or(&key_path).display()
        ),
    }
    if let Some(pki) = &pki {
        let shown = pki.dir.strip_prefix(&cwd).unwrap_or(&pki.dir);
        println!(
            "vauban dev: mutual TLS; client certificates in {} (operator, submitter, auditor): \
             commands run here use operator.pem",
            shown.display()
        );
    }
    println!("vauban dev: ready");
    tasks.wait().await;
    scheduler.await.context("scheduler task")??;
    Ok(ExitCode::SUCCESS)
}

/// A development host's receipt key, generated on first use like the other development keys.
fn receipt_key(path: &Path) -> anyhow::Result<vauban_audit::SecretKey> {
    dev_key(path)?;
    vauban_audit::SecretKey::from_file(path)
        .with_context(|| format!("reading the receipt key {}", path.display()))
}

/// The development key, generated on first use and kept owner-only.
fn dev_key(path: &Path) -> anyhow::Result<SecretKey> {
    if path.exists() {
        return Ok(SecretKey::from_file(path)?);
    }
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = path.parent().context("key path has a parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let key = SecretKey::generate();
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(key.to_pem().as_bytes()))
        .with_context(|| format!("writing {}", path.display()))?;
    std::fs::write(path.with_extension("pub"), key.public_key().to_pem())?;
    Ok(key)
}
