//! What the long-running commands (`scheduler`, `host`, `dev`) share: shutdown on SIGINT or
//! SIGTERM, and the host runtime built from flags.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use vauban_core::TrustStore;
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

/// A host runtime with its cache under `data_dir/cache`.
pub(crate) fn host_runtime(
    data_dir: &Path,
    trust: TrustStore,
    allowed_roots: Vec<PathBuf>,
    slots: u32,
    max_memory_bytes: u64,
) -> anyhow::Result<Runtime> {
    let mut config = RuntimeConfig::new(data_dir.join("cache"));
    config.trust = trust;
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
