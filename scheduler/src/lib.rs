//! Vauban's scheduler: the control plane that accepts signed modules and jobs from clients and
//! dispatches jobs to the hosts that dial in.
//!
//! [`serve`] is the whole scheduler behind one call. Inside, one task owns the jobs and their
//! allocations, the nodes and the namespaces' quotas (`state`), fed by the gRPC services
//! (`service`) through a closed set of commands; placement is a pure function
//! ([`placement::Cluster::place`]); every accepted job, transition and result is committed to
//! the store (`store`: a key-value-with-transactions trait, redb by default) before anyone is
//! told. The scheduler never executes guest code, and so does not link wasmtime.

#![forbid(unsafe_code)]

mod audit;
mod config;
pub mod identity;
mod job;
mod module;
mod node;
pub mod placement;
mod server;
mod service;
mod state;
mod store;
mod trust;

pub use audit::AuditConfig;
pub use config::SchedulerConfig;
pub use job::JobId;
pub use node::NodeId;
pub use server::{ServerTls, serve};
pub use trust::PolicyHolder;

/// Unix milliseconds now, for records shown to people. Durations that matter (heartbeats) are
/// measured on tokio's monotonic clock instead.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
