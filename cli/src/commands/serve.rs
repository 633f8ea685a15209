//! What the long-running commands (`scheduler`, `host`, `dev`) share: shutdown on SIGINT or
//! SIGTERM, reloading the revocation list on SIGHUP, the trust policy flags, and the host
//! runtime built from flags.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use tokio_util::sync::CancellationToken;
use vauban_core::{TrustPolicy, TrustStore};
use vauban_host::{Runtime, RuntimeConfig};

/// A token cancelled at the first SIGINT or SIGTERM.
pub(crate) fn shutdown_on_signal() -> anyhow::Result<CancellationToken> {
    use tokio::signal::unix::{SignalKind, signal};
    let token = CancellationToken::new();
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let cancel = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
        cancel.cancel();
    });
    Ok(token)
}

/// At each SIGHUP, reads the certificate revocation list at `crl` again and puts it in force
/// (`ServerTls::reload_crl`): new connections are checked against it, and connections whose
/// certificate it revokes are closed. A list that cannot be read or used is logged, and the
/// previous one stays in force.
pub(crate) fn reload_crl_on_hangup(
    tls: vauban_scheduler::ServerTls,
    crl: PathBuf,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            let reloaded = std::fs::read(&crl)
                .with_context(|| format!("reading {}", crl.display()))
                .and_then(|pem| Ok(tls.reload_crl(&pem)?));
            match reloaded {
                Ok(closed) => tracing::info!(
                    crl = %crl.display(),
                    closed,
                    "reloaded the certificate revocation list"
                ),
                Err(error) => tracing::error!(
                    crl = %crl.display(),
                    error = format!("{error:#}"),
                    "cannot reload the certificate revocation list; the previous one stays in force"
                ),
            }
        }
    });
    Ok(())
}

/// Policy mode: a trust policy, verified against the pinned roots, in place of `--trust` keys.
#[derive(Debug, Args)]
pub(crate) struct PolicyArgs {
    /// The trust policy (TOML; its root signatures in FILE.sig.json, as `vauban policy sign`
    /// writes them). Replaces --trust: modules need the policy's publisher signatures, and every
    /// job a grant signed by its authorizers. Without it, only --trust keys are checked
    /// (keys-only mode).
    #[arg(long, env = "VAUBAN_POLICY", value_name = "FILE", requires = "roots")]
    pub(crate) policy: Option<PathBuf>,
    /// The pinned root public keys the policy must be signed by: a directory of *.pub files.
    #[arg(long, env = "VAUBAN_ROOTS", value_name = "DIR", requires = "policy")]
    pub(crate) roots: Option<PathBuf>,
}

impl PolicyArgs {
    /// The policy, verified against the roots, and the roots; `None` without `--policy`.
    ///
    /// # Errors
    /// The files cannot be read, or the policy does not verify.
    pub(crate) fn load(&self) -> anyhow::Result<Option<(TrustPolicy, TrustStore)>> {
        let (Some(policy), Some(roots)) = (&self.policy, &self.roots) else {
            return Ok(None);
        };
        let verified = super::policy::load_verified(policy, None, roots)?;
        let anchors = TrustStore::load(roots)
            .with_context(|| format!("loading root keys {}", roots.display()))?;
        tracing::info!(
            policy = %policy.display(),
            version = verified.version(),
            "trust policy loaded"
        );
        Ok(Some((verified, anchors)))
    }
}

/// A host's copy of the trust policy, in policy mode: the newer of `loaded` (its `--policy`)
/// and the one it kept under `data_dir/trust` from a push in an earlier run; and that directory,
/// where pushed policies are kept from now on.
///
/// # Errors
/// The kept policy cannot be read or does not verify, or `--policy` may not replace it.
pub(crate) fn host_policy(
    loaded: Option<(TrustPolicy, TrustStore)>,
    data_dir: &Path,
) -> anyhow::Result<(Option<vauban_host::PolicyHolder>, Option<PathBuf>)> {
    let Some((policy, roots)) = loaded else {
        return Ok((None, None));
    };
    let dir = data_dir.join("trust");
    let policy = vauban_host::policy_at_start(policy, &roots, &dir)?;
    Ok((
        Some(vauban_host::PolicyHolder::new(policy, roots)),
        Some(dir),
    ))
}

/// A host runtime with its cache under `data_dir/cache`.
/// In policy mode (`policy`), the trust policy replaces `trust`.
pub(crate) fn host_runtime(
    data_dir: &Path,
    trust: TrustStore,
    policy: Option<vauban_host::PolicyHolder>,
    allowed_roots: Vec<PathBuf>,
    slots: u32,
    max_memory_bytes: u64,
) -> anyhow::Result<Runtime> {
    let mut config = RuntimeConfig::new(data_dir.join("cache"));
    config.trust = trust;
    config.policy = policy;
    config.allowed_roots = allowed_roots;
    config.max_instances = slots;
    config.max_memory_bytes = max_memory_bytes;
    Runtime::new(config).context("starting the host runtime")
}

/// `host:port` or a bare port, bound now so that a port in use fails before anything starts.
pub(crate) async fn bind(listen: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))
}
