//! `vauban.v1.Nodes`: the hosts as clients see them.

use tonic::{Request, Response, Status};
use vauban_proto::v1;

use crate::node::{NodeState, NodeSummary};
use crate::state::SchedulerHandle;

/// Serves `ListNodes` from the state task.
#[derive(Clone, Debug)]
pub(crate) struct NodesService {
    scheduler: SchedulerHandle,
}

impl NodesService {
    pub(crate) fn new(scheduler: SchedulerHandle) -> Self {
        Self { scheduler }
    }
}

#[tonic::async_trait]
impl v1::nodes_server::Nodes for NodesService {
    async fn list_nodes(
        &self,
        request: Request<v1::ListNodesRequest>,
    ) -> Result<Response<v1::ListNodesResponse>, Status> {
        let v1::ListNodesRequest {} = request.into_inner();
        let nodes = self.scheduler.list_nodes().await?;
        Ok(Response::new(v1::ListNodesResponse {
            nodes: nodes.into_iter().map(node_to_proto).collect(),
        }))
    }
}

fn node_to_proto(node: NodeSummary) -> v1::Node {
    let NodeSummary {
        registration,
        state,
        last_heartbeat_ms,
        running,
    } = node;
    let state = match state {
        NodeState::Ready => v1::NodeState::Ready,
        NodeState::Down => v1::NodeState::Down,
    };
    v1::Node {
        id: registration.id.to_string(),
        labels: registration.labels.into_iter().collect(),
        slots: registration.slots,
        memory_bytes: registration.memory_bytes,
        state: state.into(),
        last_heartbeat_ms,
        running_jobs: running.into_iter().map(|j| j.into_string()).collect(),
    }
}
