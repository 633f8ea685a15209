//! `vauban.v1.Nodes`: the hosts as clients and operators see them, drain and eligibility.

use std::time::Duration;

use tonic::{Request, Response, Status};
use vauban_proto::convert::InvalidField;
use vauban_proto::v1;

use crate::identity::{Need, require};
use crate::node::{NodeId, NodeState, NodeSummary};
use crate::state::SchedulerHandle;

/// A drain without a deadline lets batch work run this long.
const DEFAULT_DRAIN_DEADLINE: Duration = Duration::from_secs(3600);

/// Serves the nodes from the state task.
#[derive(Clone, Debug)]
pub(crate) struct NodesService {
    scheduler: SchedulerHandle,
}

impl NodesService {
    pub(crate) fn new(scheduler: SchedulerHandle) -> Self {
        Self { scheduler }
    }
}

fn node_id(id: String) -> Result<NodeId, InvalidField> {
    if id.is_empty() {
        return Err(InvalidField::new("id", "required"));
    }
    Ok(NodeId::from(id))
}

#[tonic::async_trait]
impl v1::nodes_server::Nodes for NodesService {
    async fn list_nodes(
        &self,
        request: Request<v1::ListNodesRequest>,
    ) -> Result<Response<v1::ListNodesResponse>, Status> {
        require(&request, Need::Client("listing nodes"))?;
        let v1::ListNodesRequest {} = request.into_inner();
        let nodes = self.scheduler.list_nodes().await?;
        Ok(Response::new(v1::ListNodesResponse {
            nodes: nodes.into_iter().map(node_to_proto).collect(),
        }))
    }

    async fn get_node(
        &self,
        request: Request<v1::GetNodeRequest>,
    ) -> Result<Response<v1::Node>, Status> {
        require(&request, Need::Client("reading a node"))?;
        let v1::GetNodeRequest { id } = request.into_inner();
        let node = self.scheduler.get_node(node_id(id)?).await?;
        Ok(Response::new(node_to_proto(node)))
    }

    async fn drain_node(
        &self,
        request: Request<v1::DrainNodeRequest>,
    ) -> Result<Response<v1::Node>, Status> {
        require(&request, Need::Operate("draining a node"))?;
        let v1::DrainNodeRequest { id, deadline_ms } = request.into_inner();
        let deadline = match deadline_ms {
            0 => DEFAULT_DRAIN_DEADLINE,
            ms => Duration::from_millis(ms),
        };
        let node = self.scheduler.drain(node_id(id)?, deadline).await?;
        Ok(Response::new(node_to_proto(node)))
    }

    async fn set_eligibility(
        &self,
        request: Request<v1::SetEligibilityRequest>,
    ) -> Result<Response<v1::Node>, Status> {
        require(&request, Need::Operate("setting a node's eligibility"))?;
        let v1::SetEligibilityRequest { id, eligible } = request.into_inner();
        let node = self
            .scheduler
            .set_eligibility(node_id(id)?, eligible)
            .await?;
        Ok(Response::new(node_to_proto(node)))
    }
}

fn node_to_proto(node: NodeSummary) -> v1::Node {
    let NodeSummary {
        registration,
        state,
        eligible,
        drain,
        drained,
        cached_modules,
        used_slots,
        used_memory_bytes,
        last_heartbeat_ms,
        running,
    } = node;
    // One state for people: down and unknown first, then the operators' decisions.
    let state = match state {
        NodeState::Down => v1::NodeState::Down,
        NodeState::Unknown => v1::NodeState::Unknown,
        NodeState::Ready if drain.is_some() => v1::NodeState::Draining,
        NodeState::Ready if !eligible => v1::NodeState::Ineligible,
        NodeState::Ready => v1::NodeState::Ready,
    };
    v1::Node {
        id: registration.id.to_string(),
        labels: registration.labels.into_iter().collect(),
        slots: registration.slots,
        memory_bytes: registration.memory_bytes,
        state: state.into(),
        last_heartbeat_ms,
        running_jobs: running.into_iter().map(|j| j.into_string()).collect(),
        eligible,
        drain: drain.map(|d| v1::Drain {
            started_at_ms: d.started_at_ms,
            deadline_ms: d.deadline_ms,
            complete: drained,
        }),
        cached_modules: cached_modules.iter().map(ToString::to_string).collect(),
        used_slots,
        used_memory_bytes,
    }
}
