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
    /// Trusted publisher keys: a key file or a directory of *.pub files (repeatable). The
    /// keys-only mode: any module signed by one of them is accepted, and jobs need no grant.
    #[arg(
        long,
        env = "VAUBAN_TRUST",
        value_delimiter = ',',
        required_unless_present = "policy",
        conflicts_with = "policy"
    )]
    trust: Vec<PathBuf>,
    #[command(flatten)]
    policy: super::serve::PolicyArgs,
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
    #[command(flatten)]
    tls: ServerTlsArgs,
}

/// Mutual TLS for a scheduler: its certificate, and the CA and revocation list its clients and
/// hosts are checked against.
#[derive(Debug, Args)]
pub(crate) struct ServerTlsArgs {
    /// The scheduler's certificate chain (PEM), from `vauban pki issue --role scheduler`.
    #[arg(long, env = "VAUBAN_TLS_CERT", value_name = "PEM")]
    tls_cert: Option<PathBuf>,
    /// The scheduler's private key (PEM).
    #[arg(long, env = "VAUBAN_TLS_KEY", value_name = "PEM")]
    tls_key: Option<PathBuf>,
    /// The CA that client and host certificates must chain to (PEM).
    #[arg(long, env = "VAUBAN_CLIENT_CA", value_name = "PEM")]
    client_ca: Option<PathBuf>,
    /// A certificate revocation list of that CA (PEM, `vauban pki revoke` writes it), read at
    /// start and again on each SIGHUP, which also closes the connections it revokes.
    #[arg(long, env = "VAUBAN_CRL", value_name = "PEM")]
    crl: Option<PathBuf>,
    /// Serve plaintext with no client identities: anyone who can reach the port may do
    /// anything; the TLS flags are then ignored. Logs a warning. For tests and throwaway
    /// setups only.
    #[arg(long)]
    insecure: bool,
}

impl ServerTlsArgs {
    /// Reads and checks the TLS files; `None` with `--insecure` (after warning).
    pub(crate) fn load(&self) -> anyhow::Result<Option<vauban_scheduler::ServerTls>> {
        use anyhow::Context as _;
        if self.insecure {
            tracing::warn!(
                "--insecure: serving plaintext with no client identities; anyone who reaches \
                 this port can submit, cancel, drain and impersonate hosts"
            );
            return Ok(None);
        }
        let (Some(cert), Some(key), Some(ca)) = (&self.tls_cert, &self.tls_key, &self.client_ca)
        else {
            anyhow::bail!(
                "no TLS certificate: pass --tls-cert, --tls-key and --client-ca (make them with \
                 `vauban pki init` and `vauban pki issue --role scheduler`), or --insecure to serve \
                 plaintext"
            );
        };
        let read = |path: &PathBuf| {
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))
        };
        let crl = self.crl.as_ref().map(read).transpose()?;
        let tls = vauban_scheduler::ServerTls::from_pem(
            &read(cert)?,
            &read(key)?,
            &read(ca)?,
            crl.as_deref(),
        )
        .with_context(|| format!("cannot serve TLS with {}", cert.display()))?;
        Ok(Some(tls))
    }
}

pub(crate) async fn run(args: SchedulerArgs) -> anyhow::Result<ExitCode> {
    let policy = args.policy.load()?;
    let trust = match policy {
        Some(_) => vauban_core::TrustStore::default(),
        None => super::load_trust(&args.trust)?,
    };
    let mut config = SchedulerConfig::new(&args.data_dir, trust);
    config.policy =
        policy.map(|(policy, roots)| vauban_scheduler::PolicyHolder::new(policy, roots));
    config.heartbeat_interval = args.heartbeat;
    config.down_after = args.down_after;
    if let Some(key) = &args.audit_key {
        config.audit = Some(audit_config(&args.data_dir, key)?);
    }
    config.tls = args.tls.load()?;
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let listener = super::serve::bind(&args.listen).await?;
    let shutdown = super::serve::shutdown_on_signal()?;
    if let (Some(tls), Some(crl)) = (&config.tls, &args.tls.crl) {
        super::serve::reload_crl_on_hangup(tls.clone(), crl.clone())?;
    }
    println!(
        "vauban scheduler listening on {scheme}://{}",
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
