//! `vauban.v1.Namespaces`: tenancy units and their quotas.

use tonic::{Request, Response, Status};
use vauban_proto::v1;

use super::jobs::namespace_from_proto;
use crate::identity::{Need, require};
use crate::state::{NamespaceSummary, Quota, SchedulerHandle};

/// Serves namespaces from the state task.
#[derive(Clone, Debug)]
pub(crate) struct NamespacesService {
    scheduler: SchedulerHandle,
}

impl NamespacesService {
    pub(crate) fn new(scheduler: SchedulerHandle) -> Self {
        Self { scheduler }
    }
}

#[tonic::async_trait]
impl v1::namespaces_server::Namespaces for NamespacesService {
    async fn list_namespaces(
        &self,
        request: Request<v1::ListNamespacesRequest>,
    ) -> Result<Response<v1::ListNamespacesResponse>, Status> {
        require(&request, Need::Client("listing namespaces"))?;
        let v1::ListNamespacesRequest {} = request.into_inner();
        let namespaces = self.scheduler.list_namespaces().await?;
        Ok(Response::new(v1::ListNamespacesResponse {
            namespaces: namespaces.into_iter().map(namespace_to_proto).collect(),
        }))
    }

    async fn set_quota(
        &self,
        request: Request<v1::SetQuotaRequest>,
    ) -> Result<Response<v1::Namespace>, Status> {
        require(&request, Need::Operate("setting a quota"))?;
        let v1::SetQuotaRequest { namespace, quota } = request.into_inner();
        let namespace = namespace_from_proto("namespace", namespace)?;
        let v1::Quota {
            max_memory_bytes,
            max_instances,
        } = quota.unwrap_or_default();
        let summary = self
            .scheduler
            .set_quota(
                namespace,
                Quota {
                    max_memory_bytes,
                    max_instances,
                },
            )
            .await?;
        Ok(Response::new(namespace_to_proto(summary)))
    }
}

fn namespace_to_proto(n: NamespaceSummary) -> v1::Namespace {
    let NamespaceSummary {
        name,
        quota,
        usage,
        active_jobs,
    } = n;
    v1::Namespace {
        name,
        quota: Some(v1::Quota {
            max_memory_bytes: quota.max_memory_bytes,
            max_instances: quota.max_instances,
        }),
        used_memory_bytes: usage.memory_bytes,
        used_instances: usage.instances,
        active_jobs,
    }
}
