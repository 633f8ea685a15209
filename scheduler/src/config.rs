//! The scheduler's configuration: plain data, filled in by the binary (flags, files), never read
//! from the environment here.

use std::path::PathBuf;
use std::time::Duration;

use vauban_core::{Limits, TrustStore};

/// How a scheduler runs. Build it with [`SchedulerConfig::new`] and adjust the public fields.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// Where the state lives; the store is `data_dir/state.redb`. Created if missing.
    pub data_dir: PathBuf,
    /// Publisher keys a module must be signed by to be accepted (keys-only mode). Ignored when
    /// `policy` is set.
    pub trust: TrustStore,
    /// Policy mode: the trust policy in force (verified against the pinned roots), which
    /// replaces `trust`. Modules need its publisher threshold and unrevoked digests; every job
    /// needs a grant that verifies under it and allows what the job asks for on one of its node
    /// classes. `None`: keys-only mode.
    pub policy: Option<crate::PolicyHolder>,
    /// How often hosts are told to heartbeat (in `Registered`), and how often the scheduler
    /// looks for silent hosts.
    pub heartbeat_interval: Duration,
    /// A host with no heartbeat for this long is marked down and its running jobs requeued.
    /// Should be a few heartbeat intervals, so that one late heartbeat does not requeue work.
    pub down_after: Duration,
    /// Fills the limits a submitted job leaves unset.
    pub default_limits: Limits,
    /// Largest module accepted by `UploadModule`, in bytes.
    pub max_module_bytes: u64,
    /// The audit log to keep, if any: admission decisions, placements, results and
    /// cancellations, with signed checkpoints.
    pub audit: Option<crate::AuditConfig>,
    /// Mutual TLS: the scheduler's certificate, and how clients and hosts are authenticated.
    /// `None` serves plaintext with no identities, every role allowed: only for `--insecure`
    /// and tests that are about something else.
    pub tls: Option<crate::ServerTls>,
}

impl SchedulerConfig {
    /// A configuration with the defaults: heartbeats every second, a host down after 3 s of
    /// silence, [`Limits::DEFAULT`], modules up to 64 MiB.
    pub fn new(data_dir: impl Into<PathBuf>, trust: TrustStore) -> Self {
        Self {
            data_dir: data_dir.into(),
            trust,
            policy: None,
            heartbeat_interval: Duration::from_secs(1),
            down_after: Duration::from_secs(3),
            default_limits: Limits::DEFAULT,
            max_module_bytes: 64 << 20,
            audit: None,
            tls: None,
        }
    }
}
