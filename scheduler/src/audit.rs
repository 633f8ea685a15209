//! The scheduler's side of the audit log: the state task hands committed decisions to an
//! [`AuditSink`], and one writer task appends them to a `vauban_audit::Log` (`<data>/audit`)
//! and signs a checkpoint after each batch, so that `vauban audit verify` can check the log
//! offline with the audit key's public half.
//!
//! Entries are sent only after the state change they describe is committed, and written off
//! the state task's path: an audit fsync never delays a reply. The cost is a window: a crash
//! after a commit and before the writer's append loses that entry (the state itself is
//! intact). Writing the entries in the state store's own transactions closes it; that is the
//! next step.

use std::path::PathBuf;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{error, info, info_span};
use vauban_audit::{AuditSigner, Entry, Log};

/// Where the audit log goes and what signs its checkpoints.
#[derive(Clone, Debug)]
pub struct AuditConfig {
    /// The log's directory (`entries.jsonl`, `checkpoints/`); created if missing.
    pub dir: PathBuf,
    /// The checkpoints' origin line, e.g. `vauban.audit/scheduler`.
    pub origin: String,
    /// The audit key.
    pub key: vauban_audit::SecretKey,
}

/// Where the state task sends entries. Sending never blocks and never fails the caller: a
/// writer that stopped is logged once by the writer itself.
#[derive(Clone, Debug)]
pub(crate) struct AuditSink(mpsc::UnboundedSender<Entry>);

impl AuditSink {
    pub(crate) fn record(&self, entry: Entry) {
        let _ = self.0.send(entry);
    }
}

/// Opens the log and starts its writer. The writer ends, after a last checkpoint, once every
/// sink is dropped.
///
/// # Errors
/// The log cannot be opened (its directory, or an existing log that does not verify against
/// its own checkpoints), or the origin is not a valid checkpoint origin.
pub(crate) fn start(config: AuditConfig) -> anyhow::Result<(AuditSink, JoinHandle<()>)> {
    let AuditConfig { dir, origin, key } = config;
    std::fs::create_dir_all(&dir)?;
    let log = Log::open(&dir)?;
    let signer = AuditSigner::new(&origin, key)?;
    info!(dir = %dir.display(), entries = log.len(), %origin, "audit log open");
    let (sender, receiver) = mpsc::unbounded_channel();
    let task = tokio::task::spawn_blocking(move || {
        info_span!("audit_writer").in_scope(|| write(log, &signer, receiver));
    });
    Ok((AuditSink(sender), task))
}

/// Appends what arrives, and signs a checkpoint after each batch.
fn write(mut log: Log, signer: &AuditSigner, mut entries: mpsc::UnboundedReceiver<Entry>) {
    let mut batch = Vec::new();
    while entries.blocking_recv_many(&mut batch, 256) > 0 {
        for entry in batch.drain(..) {
            if let Err(e) = log.append(&entry) {
                error!(error = %e, kind = entry.kind(), "cannot append to the audit log");
            }
        }
        if let Err(e) = log.checkpoint(signer) {
            error!(error = %e, "cannot sign an audit checkpoint");
        }
    }
}
