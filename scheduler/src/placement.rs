//! Placement: which node runs one instance of a job. A pure function of a [`Cluster`] (what
//! the scheduler knows of its nodes) and an [`Ask`] (what one instance needs), so it is tested
//! with tables and benchmarked without a network or a store.
//!
//! CONTRACT (the state task relies on it; the implementation may change, these types may only
//! grow):
//! - `Cluster::new(nodes)` indexes the nodes once per scheduling pass.
//! - `Cluster::place(&ask)` decides without changing anything; `Cluster::commit(&ask, &placement)`
//!   then takes the instance's resources (and frees the preempted ones) so that the next
//!   `place` of the same pass sees them.
//! - A node gets work only if it is `schedulable`, passes every constraint, and has a free slot
//!   and the memory (after preempting, if the placement says so).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use vauban_core::ModuleDigest;

use crate::job::JobId;
use crate::node::NodeId;

/// A test on one node label.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "op", content = "value")]
pub enum Operator {
    /// The label exists and equals the value.
    Eq(String),
    /// The label is absent or differs.
    NotEq(String),
    /// The label exists and is one of the values.
    In(Vec<String>),
    /// The label is absent or none of the values.
    NotIn(Vec<String>),
    /// The label exists.
    Exists,
    /// The label is absent.
    NotExists,
    /// The label exists, parses as a semantic version, and matches the requirement
    /// (e.g. `>=1.2, <2`).
    Version(semver::VersionReq),
}

/// A hard constraint: nodes failing it never get the instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Constraint {
    /// The label tested.
    pub label: String,
    /// How.
    #[serde(flatten)]
    pub op: Operator,
}

/// A soft preference: nodes passing it score `weight` more (or less, when negative).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Affinity {
    /// The label tested.
    pub label: String,
    /// How.
    #[serde(flatten)]
    pub op: Operator,
    /// -100..=100.
    pub weight: i8,
}

/// Spread a job's instances over the values of a label (e.g. `site`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spread {
    /// The label whose values instances are spread over.
    pub label: String,
    /// 0..=100: how much spreading weighs against the other scores.
    pub weight: u8,
    /// Target share of instances per label value, in percent; empty: spread evenly over the
    /// values present among the feasible nodes.
    pub targets: BTreeMap<String, u8>,
}

/// Where a job may run and where it prefers to: the placement part of a job's spec.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementSpec {
    /// All must hold.
    pub constraints: Vec<Constraint>,
    /// Scored.
    pub affinities: Vec<Affinity>,
    /// Scored.
    pub spreads: Vec<Spread>,
}

/// An instance already on a node, as preemption sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resident {
    /// The job and attempt.
    pub job: JobId,
    /// Its attempt number.
    pub attempt: u32,
    /// Its job's priority.
    pub priority: u8,
    /// Memory it reserves, bytes.
    pub memory_bytes: u64,
    /// True for batch work, the only kind that may be preempted.
    pub preemptible: bool,
}

/// What placement knows of a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeView {
    /// The node.
    pub id: NodeId,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Ready, eligible and not draining; other nodes get no new work (counted in the
    /// explanation by `unschedulable_reason`).
    pub schedulable: bool,
    /// Why not schedulable ("down", "draining", "ineligible"); empty when schedulable.
    pub unschedulable_reason: &'static str,
    /// Slots it offers in all.
    pub total_slots: u32,
    /// Memory it offers in all, bytes.
    pub total_memory_bytes: u64,
    /// What holds its slots and memory now.
    pub residents: Vec<Resident>,
    /// Modules whose compiled artifact it holds.
    pub cached_modules: BTreeSet<ModuleDigest>,
}

/// What one instance of a job needs and prefers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ask<'a> {
    /// The job (for preemption: a job never preempts itself).
    pub job: &'a JobId,
    /// Its module: nodes holding the compiled artifact are preferred.
    pub module: &'a ModuleDigest,
    /// Memory reserved on the node, bytes (one slot is always reserved).
    pub memory_bytes: u64,
    /// 0..=100; may preempt preemptible residents of strictly lower priority.
    pub priority: u8,
    /// Constraints, affinities, spreads.
    pub spec: &'a PlacementSpec,
    /// Nodes already running instances of this job (spread counts; a node is penalised for
    /// each, so replicas land apart).
    pub placed_on: &'a [NodeId],
    /// Only this node may take it (system jobs: one instance per node).
    pub only_node: Option<&'a NodeId>,
    /// True for batch work: once placed, it may itself be preempted later.
    pub preemptible: bool,
}

/// A decision.
#[derive(Clone, Debug, PartialEq)]
pub struct Placement {
    /// The chosen node.
    pub node: NodeId,
    /// Residents to stop first (empty unless preemption was needed): job and attempt.
    pub preempt: Vec<(JobId, u32)>,
    /// Why this node.
    pub explanation: Explanation,
}

/// One scored candidate.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// The node.
    pub node: NodeId,
    /// Its total score; higher wins.
    pub score: f64,
    /// Each part of the score by name ("binpack", "affinity", "spread", "artifact",
    /// "anti-affinity", "preemption"), so the explanation shows what decided.
    pub parts: Vec<(&'static str, f64)>,
}

/// What placement looked at and why it ruled nodes out, for a decision or for a wait.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Explanation {
    /// Nodes known.
    pub nodes: usize,
    /// Nodes looked at (may be fewer than `nodes` when enough candidates were found).
    pub evaluated: usize,
    /// Nodes ruled out before resources: by reason ("down", "draining", "ineligible",
    /// "not the requested node") or by the first constraint they fail, written as the
    /// constraint is (`jurisdiction = FR`), each node counted once.
    pub filtered: BTreeMap<String, usize>,
    /// Nodes passing the constraints but without room: by resource ("slots", "memory").
    pub exhausted: BTreeMap<String, usize>,
    /// The best candidates, best first (at most 3).
    pub top: Vec<Candidate>,
}

/// No node can take the instance now.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("no node fits: {explanation}")]
pub struct Unplaceable {
    /// Why.
    pub explanation: Explanation,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} of {} nodes evaluated", self.evaluated, self.nodes)
    }
}

/// The nodes of one scheduling pass, indexed for placement.
#[derive(Clone, Debug)]
pub struct Cluster {
    nodes: Vec<NodeView>,
}

impl Cluster {
    /// Indexes the nodes.
    pub fn new(nodes: Vec<NodeView>) -> Self {
        Self { nodes }
    }

    /// The nodes, as given (and as changed by [`Cluster::commit`]).
    pub fn nodes(&self) -> &[NodeView] {
        &self.nodes
    }

    /// Chooses a node for one instance.
    ///
    /// # Errors
    /// [`Unplaceable`] with the explanation of why no node fits.
    pub fn place(&self, ask: &Ask<'_>) -> Result<Placement, Unplaceable> {
        let _ = ask;
        Err(Unplaceable {
            explanation: Explanation::default(),
        })
    }

    /// Takes the resources of a placement made by [`Cluster::place`] on this cluster: the
    /// instance becomes a resident (as `attempt` of its job) and the preempted residents go.
    pub fn commit(&mut self, ask: &Ask<'_>, placement: &Placement, attempt: u32) {
        let _ = (ask, placement, attempt);
    }
}
