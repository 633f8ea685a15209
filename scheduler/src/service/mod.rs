//! The gRPC edge: one file per service, each translating protobuf to domain types, forwarding to
//! the state task or the module registry, and translating the answer back. Protobuf types go no
//! further than this module.
//!
//! Errors become a `tonic::Status` here and only here. Internal failures (the store) are logged
//! with their details and reach clients as a generic `INTERNAL`.

mod host_link;
mod jobs;
mod modules;
mod namespaces;
mod nodes;
mod trust;

pub(crate) use host_link::HostLinkService;
pub(crate) use jobs::{JobAdmission, JobsService};
pub(crate) use modules::ModulesService;
pub(crate) use namespaces::NamespacesService;
pub(crate) use nodes::NodesService;
pub(crate) use trust::TrustService;

use tonic::Status;

use crate::module::ModuleError;
use crate::state::SchedulerError;
use crate::store::StoreError;

/// Largest message decoded or encoded by any service. Jobs carry up to 16 MiB of stdin and
/// results carry the guest's bounded output; module chunks are up to 4 MiB.
pub(crate) const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Hidden from clients: what failed inside is for the operator's log.
fn internal(error: &dyn std::fmt::Display) -> Status {
    tracing::error!(%error, "request failed");
    Status::internal("internal error")
}

impl From<SchedulerError> for Status {
    fn from(e: SchedulerError) -> Self {
        match e {
            SchedulerError::JobNotFound(_) | SchedulerError::NodeNotFound(_) => {
                Status::not_found(e.to_string())
            }
            SchedulerError::ModuleNotUploaded { .. } => Status::failed_precondition(e.to_string()),
            SchedulerError::ShuttingDown => Status::unavailable(e.to_string()),
            SchedulerError::Store(e) => internal(&e),
        }
    }
}

impl From<ModuleError> for Status {
    fn from(e: ModuleError) -> Self {
        match e {
            ModuleError::TooLarge { .. } | ModuleError::Refused(_) => {
                Status::invalid_argument(e.to_string())
            }
            ModuleError::Store(e) => internal(&e),
        }
    }
}

impl From<StoreError> for Status {
    fn from(e: StoreError) -> Self {
        internal(&e)
    }
}
