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
//! - A node gets work only if it is `schedulable`, belongs to one of the job's node classes
//!   when it has any, passes every constraint, and has a free slot and the memory (after
//!   preempting, if the placement says so).
//!
//! # How a node is chosen
//!
//! Nomad's scheduler is the model, in four steps:
//!
//! 1. **Feasibility.** A node is ruled out if it is not schedulable (counted under its
//!    `unschedulable_reason`), if the ask wants another node ("not the requested node"), if the
//!    job has node classes (from its grant) and the node matches none of them (counted under
//!    "not in node class eu"), or by the first constraint it fails (counted under the
//!    constraint as text, `jurisdiction = FR`).
//! 2. **Room.** Every instance takes one slot and `memory_bytes`; a feasible node without a
//!    free slot is counted under "slots", else without the memory under "memory".
//! 3. **Score**, higher wins, the sum of these parts (each shown in [`Candidate::parts`]):
//!    - `binpack` = ½ · (slots used / slots + memory used / memory), counted *after* the
//!      placement, in 0..=1 (a node offering nothing counts as full): fuller nodes first, so
//!      that whole nodes stay free for large work and idle ones can be drained;
//!    - `affinity` = Σ weights of the affinities the node matches / Σ |weights|, in −1..=1;
//!    - `spread` = Σ over spreads of weight/100 · clamp((d − u) / d, −1, 1), where, for the
//!      node's value of the label, u is the number of this job's instances already on nodes
//!      with that value (from [`Ask::placed_on`]) and d = share · (instances placed + 1) the
//!      number it should have once this one is placed; share is the value's target percent,
//!      or, without targets, an even share of the values present among the feasible nodes.
//!      A value under its share scores positive, over it negative; a node lacking the label,
//!      or whose value has no share, scores −1 (the lowest);
//!    - `artifact` = +0.25 when the node holds the module's compiled artifact;
//!    - `anti-affinity` = −1.5 per instance of the job already on the node: more than binpack
//!      and artifact together can add, so replicas land apart unless affinities or spreads
//!      say otherwise or no other node has room;
//!    - `preemption` = −1 per resident stopped (see 4);
//!
//!    and ties go to the smallest node id, so that the same inputs give the same decision.
//! 4. **Preemption.** When no feasible node has room and the ask has a priority, a feasible
//!    node may make room by stopping preemptible residents of strictly lower priority (never
//!    the job's own): lowest priority first, then largest memory, then the set is trimmed to a
//!    minimal one. The node with the fewest victims wins, then the lowest highest victim
//!    priority, then the score. Like Nomad's, this search is limited: it looks at the feasible
//!    nodes in scan order (below) and stops once it has found max(2, ⌈log₂ nodes⌉) where an
//!    eviction works, so it costs little even on a full cluster.
//!
//! # Speed
//!
//! [`Cluster::new`] groups nodes with identical labels and status into *classes* (Nomad's
//! computed classes) and lays them out class by class, so constraints, affinities and spreads
//! are evaluated once per class and a scan rules out a whole class in one step. Labels are
//! interned: a constraint is compiled once per call to a test on a value id.
//!
//! Like Nomad, a job without affinities or spreads does not score every node: the scan stops
//! once it has found max(2, ⌈log₂ nodes⌉) feasible nodes with room, and it starts at the node
//! that took the last instance, so a pass fills nodes one after another (bin-packing) instead
//! of scanning the full ones again. Jobs with affinities or spreads are scored against every
//! node (a few nanoseconds per node: the class parts are added to a per-node binpack with no
//! division); a job for one node goes straight to it through an id index. [`Explanation::evaluated`] says how many
//! nodes were looked at, and every one of them is counted once: filtered, exhausted or a
//! candidate.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};
use vauban_core::ModuleDigest;

use crate::job::JobId;
use crate::node::NodeId;

/// Bonus of a node holding the module's compiled artifact.
const ARTIFACT_BONUS: f64 = 0.25;
/// Penalty per instance of the job already on a node.
const ANTI_AFFINITY_PENALTY: f64 = 1.5;
/// Penalty per resident a preemption stops (ordering is by victims first anyway).
const PREEMPTION_PENALTY: f64 = 1.0;
/// Nodes already running the job that a limited scan scores without counting them toward its
/// limit, so that a replica still finds a node of its own (Nomad's `maxSkip`).
const MAX_SKIP: usize = 3;
/// Candidates an explanation keeps.
const TOP: usize = 3;
/// The key of [`Explanation::filtered`] counting the nodes an ask for one node
/// ([`Ask::only_node`]) does not want: all but that one. Whether the requested node itself was
/// ruled out is whether `filtered` has any other key.
pub const NOT_REQUESTED: &str = "not the requested node";
/// Value id of an absent label.
const ABSENT: u32 = u32::MAX;

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
    /// The node classes the job may run on, from its grant (policy mode): a node must match at
    /// least one. Empty: no such restriction (keys-only mode). Set by admission, never by a
    /// client.
    // `default`: job records stored before this field existed still read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_classes: Vec<NodeClassMatch>,
}

/// A node class as placement tests it: a node matches when it carries every one of these
/// labels with this value (`vauban_core::policy::NodeClass::matches`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeClassMatch {
    /// The class's name in the trust policy.
    pub name: String,
    /// The labels a node must carry.
    pub labels: BTreeMap<String, String>,
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
    /// "not the requested node", "not in node class eu"), or by the first constraint they
    /// fail, written as the constraint is (`jurisdiction = FR`), each node counted once.
    pub filtered: BTreeMap<String, usize>,
    /// Nodes passing the constraints but without room: by resource ("slots", "memory").
    pub exhausted: BTreeMap<String, usize>,
    /// The best candidates, best first (at most 3).
    pub top: Vec<Candidate>,
    /// Residents the decision stops to make room (job and attempt), as in
    /// [`Placement::preempt`]; empty for a wait.
    pub preempted: Vec<(JobId, u32)>,
}

/// No node can take the instance now.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("no node fits: {explanation}")]
pub struct Unplaceable {
    /// Why.
    pub explanation: Explanation,
}

impl Operator {
    /// Whether a node whose label has `value` (`None`: the node lacks the label) passes.
    pub fn matches(&self, value: Option<&str>) -> bool {
        match (self, value) {
            (Self::Eq(want), Some(value)) => value == want,
            (Self::NotEq(want), value) => value != Some(want.as_str()),
            (Self::In(set), Some(value)) => set.iter().any(|s| s == value),
            (Self::NotIn(set), value) => value.is_none_or(|value| !set.iter().any(|s| s == value)),
            (Self::Exists, value) => value.is_some(),
            (Self::NotExists, value) => value.is_none(),
            (Self::Version(req), Some(value)) => {
                semver::Version::parse(value).is_ok_and(|version| req.matches(&version))
            }
            (Self::Eq(_) | Self::In(_) | Self::Version(_), None) => false,
        }
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Eq(value) => write!(f, "= {value}"),
            Self::NotEq(value) => write!(f, "!= {value}"),
            Self::In(set) => write!(f, "in [{}]", set.join(", ")),
            Self::NotIn(set) => write!(f, "not in [{}]", set.join(", ")),
            Self::Exists => f.write_str("exists"),
            Self::NotExists => f.write_str("not exists"),
            Self::Version(req) => write!(f, "semver {req}"),
        }
    }
}

/// `jurisdiction = FR`, `tier in [edge, core]`, `gpu not exists`, `version semver >=1.2`.
impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.label, self.op)
    }
}

/// `site = paris (weight 50)`.
impl fmt::Display for Affinity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} (weight {})", self.label, self.op, self.weight)
    }
}

/// `n3 (score 0.812: binpack 0.600, affinity 0.200)`.
impl fmt::Display for Candidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (score {:.3}", self.node, self.score)?;
        for (i, (name, value)) in self.parts.iter().enumerate() {
            let sep = if i == 0 { ": " } else { ", " };
            write!(f, "{sep}{name} {value:.3}")?;
        }
        f.write_str(")")
    }
}

/// `3 of 10 nodes evaluated; filtered: 4 jurisdiction = FR, 2 down; exhausted: 1 out of
/// memory; best: n3 (score 0.812: binpack 0.600, affinity 0.200); preempts job-a#1`, counts
/// largest first. Only the first clause is always there.
impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} of {} nodes evaluated", self.evaluated, self.nodes)?;
        write_counts(f, "filtered", "", &self.filtered)?;
        write_counts(f, "exhausted", "out of ", &self.exhausted)?;
        if let Some(best) = self.top.first() {
            write!(f, "; best: {best}")?;
        }
        for (i, (job, attempt)) in self.preempted.iter().enumerate() {
            let sep = if i == 0 { "; preempts " } else { ", " };
            write!(f, "{sep}{job}#{attempt}")?;
        }
        Ok(())
    }
}

/// `; {title}: 4 {prefix}a, 2 {prefix}b`, largest count first, then by name.
fn write_counts(
    f: &mut fmt::Formatter<'_>,
    title: &str,
    prefix: &str,
    counts: &BTreeMap<String, usize>,
) -> fmt::Result {
    let mut sorted: Vec<_> = counts.iter().filter(|(_, n)| **n > 0).collect();
    sorted.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    for (i, (what, n)) in sorted.into_iter().enumerate() {
        let sep = if i == 0 { "; " } else { ", " };
        let title = if i == 0 { title } else { "" };
        let colon = if i == 0 { ": " } else { "" };
        write!(f, "{sep}{title}{colon}{n} {prefix}{what}")?;
    }
    Ok(())
}

/// The nodes of one scheduling pass, indexed for placement.
///
/// Internally nodes are laid out by *position*: the nodes of a class are contiguous, so a scan
/// rules out a whole class at once. Per-node arrays are indexed by position.
#[derive(Clone, Debug)]
pub struct Cluster {
    /// The views, in the order given; `commit` keeps their residents current.
    nodes: Vec<NodeView>,
    /// By position: the index in `nodes`.
    at: Vec<u32>,
    /// By position: the class.
    class_at: Vec<u32>,
    /// By position: what the node offers and what is taken (kept by `commit`).
    room: Vec<Room>,
    /// By position: the rank of the node's id in id order, for tie-breaks.
    rank: Vec<u32>,
    /// Node id → position.
    position: HashMap<NodeId, u32>,
    /// Groups of nodes with identical labels and status.
    classes: Vec<Class>,
    /// Label → its values, interned, and each class's value.
    labels: HashMap<String, LabelIndex>,
    /// Module → the positions of the nodes holding its compiled artifact.
    cached: HashMap<ModuleDigest, Bits>,
    /// By position: the lowest priority of a preemptible resident ([`u8::MAX`] without one),
    /// so that preemption passes over most nodes without looking at their residents.
    lowest_preemptible: Vec<u8>,
    /// Where a limited scan starts: the position of the node that took the last instance.
    cursor: usize,
}

/// Nodes with the same labels and the same status: feasibility, affinities and spreads are
/// the same for all of them.
#[derive(Clone, Debug)]
struct Class {
    /// Its positions are `start..end`.
    start: usize,
    end: usize,
    /// Why its nodes get no work; empty when they are schedulable.
    reason: &'static str,
}

/// One label's values, interned.
#[derive(Clone, Debug, Default)]
struct LabelIndex {
    /// Value → id (ids are dense from 0).
    ids: HashMap<String, u32>,
    /// By value id: the value parsed as a semantic version, when it is one.
    versions: Vec<Option<semver::Version>>,
    /// By class: the class's value id, or [`ABSENT`].
    value_of: Vec<u32>,
}

/// A node's resources.
#[derive(Clone, Copy, Debug)]
struct Room {
    total_slots: u32,
    /// May exceed `total_slots` when the node reports more residents than slots.
    used_slots: u32,
    total_memory: u64,
    /// May exceed `total_memory` likewise.
    used_memory: u64,
    /// 1 / `total_slots` and 1 / `total_memory`, so that scoring a node does not divide
    /// (a scan scores thousands); ∞ when the node offers none, so that it counts as full.
    slot_share: f64,
    memory_share: f64,
}

impl Room {
    fn new(total_slots: u32, total_memory: u64, residents: &[Resident]) -> Self {
        let share = |total: u64| {
            if total == 0 {
                f64::INFINITY
            } else {
                1.0 / total as f64
            }
        };
        Self {
            total_slots,
            used_slots: u32::try_from(residents.len()).unwrap_or(u32::MAX),
            total_memory,
            used_memory: residents
                .iter()
                .fold(0u64, |sum, r| sum.saturating_add(r.memory_bytes)),
            slot_share: share(u64::from(total_slots)),
            memory_share: share(total_memory),
        }
    }

    #[inline]
    fn free_slots(&self) -> u32 {
        self.total_slots.saturating_sub(self.used_slots)
    }

    #[inline]
    fn free_memory(&self) -> u64 {
        self.total_memory.saturating_sub(self.used_memory)
    }

    /// The binpack part of the score for an instance of `memory` bytes on this node: the
    /// mean of the slots and memory used after placing it, as fractions capped at 1 (`min`
    /// also turns the 0 · ∞ of an empty ask on a node offering no memory into 1).
    #[inline]
    fn binpack(&self, memory: u64) -> f64 {
        let slots = (f64::from(self.used_slots) + 1.0) * self.slot_share;
        let memory = self.used_memory.saturating_add(memory) as f64 * self.memory_share;
        (slots.min(1.0) + memory.min(1.0)) / 2.0
    }
}

/// A fixed-size set of positions.
#[derive(Clone, Debug)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(len: usize) -> Self {
        Self(vec![0; len.div_ceil(64)])
    }

    fn insert(&mut self, i: usize) {
        if let Some(word) = self.0.get_mut(i / 64) {
            *word |= 1 << (i % 64);
        }
    }

    #[inline]
    fn contains(&self, i: usize) -> bool {
        self.0
            .get(i / 64)
            .is_some_and(|word| word >> (i % 64) & 1 == 1)
    }
}

impl Cluster {
    /// Indexes the nodes: O(nodes · labels), plus sorting the ids once.
    ///
    /// Node ids are expected to be unique; of duplicates, only the last can be asked for by
    /// id (`only_node`, `commit`).
    pub fn new(nodes: Vec<NodeView>) -> Self {
        // Everything is laid out in id order, so that decisions do not depend on the order the
        // nodes were given in: classes numbered by their smallest id, nodes by id within one.
        let mut by_id: Vec<usize> = (0..nodes.len()).collect();
        by_id.sort_by(|&a, &b| nodes[a].id.cmp(&nodes[b].id));
        let mut class_ids: HashMap<(&BTreeMap<String, String>, &'static str), u32> = HashMap::new();
        let mut class_of = vec![0u32; nodes.len()];
        let mut representative = Vec::new();
        let mut reasons = Vec::new();
        for &i in &by_id {
            let node = &nodes[i];
            let reason = match (node.schedulable, node.unschedulable_reason) {
                (true, _) => "",
                (false, "") => "unschedulable",
                (false, reason) => reason,
            };
            let next = class_ids.len() as u32;
            let class = *class_ids.entry((&node.labels, reason)).or_insert(next);
            if class == next {
                representative.push(i);
                reasons.push(reason);
            }
            class_of[i] = class;
        }
        drop(class_ids);

        let mut sizes = vec![0usize; representative.len()];
        for &class in &class_of {
            sizes[class as usize] += 1;
        }
        let mut classes = Vec::with_capacity(representative.len());
        let mut start = 0;
        for (size, reason) in sizes.iter().zip(reasons) {
            classes.push(Class {
                start,
                end: start + size,
                reason,
            });
            start += size;
        }
        let mut next: Vec<usize> = classes.iter().map(|c| c.start).collect();
        let mut at = vec![0u32; nodes.len()];
        let mut class_at = vec![0u32; nodes.len()];
        let mut rank = vec![0u32; nodes.len()];
        for (r, &i) in by_id.iter().enumerate() {
            let class = class_of[i] as usize;
            let pos = next[class];
            next[class] += 1;
            at[pos] = i as u32;
            class_at[pos] = class as u32;
            rank[pos] = r as u32;
        }

        let mut labels: HashMap<String, LabelIndex> = HashMap::new();
        for (class, &i) in representative.iter().enumerate() {
            for (label, value) in &nodes[i].labels {
                let index = labels.entry(label.clone()).or_insert_with(|| LabelIndex {
                    value_of: vec![ABSENT; classes.len()],
                    ..LabelIndex::default()
                });
                let fresh = index.ids.len() as u32;
                let id = *index.ids.entry(value.clone()).or_insert(fresh);
                if id == fresh {
                    index.versions.push(semver::Version::parse(value).ok());
                }
                index.value_of[class] = id;
            }
        }

        let mut room = Vec::with_capacity(nodes.len());
        let mut lowest_preemptible = Vec::with_capacity(nodes.len());
        let mut position = HashMap::with_capacity(nodes.len());
        let mut cached: HashMap<ModuleDigest, Bits> = HashMap::new();
        for (pos, &i) in at.iter().enumerate() {
            let node = &nodes[i as usize];
            room.push(Room::new(
                node.total_slots,
                node.total_memory_bytes,
                &node.residents,
            ));
            lowest_preemptible.push(lowest_preemptible_of(&node.residents));
            position.insert(node.id.clone(), pos as u32);
            for module in &node.cached_modules {
                cached
                    .entry(*module)
                    .or_insert_with(|| Bits::new(nodes.len()))
                    .insert(pos);
            }
        }

        Self {
            nodes,
            at,
            class_at,
            room,
            rank,
            position,
            classes,
            labels,
            cached,
            lowest_preemptible,
            cursor: 0,
        }
    }

    /// The nodes, in the order given, with the residents [`Cluster::commit`] added and removed.
    pub fn nodes(&self) -> &[NodeView] {
        &self.nodes
    }

    /// Chooses a node for one instance; see the module documentation for how.
    ///
    /// # Errors
    /// [`Unplaceable`] with the explanation of why no node fits.
    pub fn place(&self, ask: &Ask<'_>) -> Result<Placement, Unplaceable> {
        let mut search = Search::new(self, ask);
        let limit = limit(self.nodes.len());
        match ask.only_node {
            Some(id) => search.only(id),
            None if ask.spec.affinities.is_empty() && ask.spec.spreads.is_empty() => {
                search.scan(limit);
            }
            None => search.scan(usize::MAX),
        }
        if let Some(best) = search.top.first() {
            let node = self.id_at(best.pos).clone();
            return Ok(Placement {
                node,
                preempt: Vec::new(),
                explanation: search.explain(ask, Vec::new()),
            });
        }
        if let Some(eviction) = search.preemption(ask, limit) {
            let node = self.id_at(eviction.pos);
            let residents = &self.nodes[self.at[eviction.pos] as usize].residents;
            let preempt: Vec<(JobId, u32)> = eviction
                .victims
                .iter()
                .map(|&v| (residents[v].job.clone(), residents[v].attempt))
                .collect();
            return Ok(Placement {
                node: node.clone(),
                explanation: search.explain(ask, preempt.clone()),
                preempt,
            });
        }
        Err(Unplaceable {
            explanation: search.explain(ask, Vec::new()),
        })
    }

    /// Takes the resources of a placement made by [`Cluster::place`] on this cluster: the
    /// instance becomes a resident (as `attempt` of its job) and the preempted residents go.
    /// O(residents of the node). A placement on a node this cluster does not know is ignored;
    /// preempted residents no longer there are skipped.
    pub fn commit(&mut self, ask: &Ask<'_>, placement: &Placement, attempt: u32) {
        let Some(&pos) = self.position.get(&placement.node) else {
            return;
        };
        let pos = pos as usize;
        let node = &mut self.nodes[self.at[pos] as usize];
        let room = &mut self.room[pos];
        let lowest = &mut self.lowest_preemptible[pos];
        for (job, victim) in &placement.preempt {
            let found = node
                .residents
                .iter()
                .position(|r| r.job == *job && r.attempt == *victim);
            if let Some(i) = found {
                let gone = node.residents.remove(i);
                room.used_slots = room.used_slots.saturating_sub(1);
                room.used_memory = room.used_memory.saturating_sub(gone.memory_bytes);
                *lowest = lowest_preemptible_of(&node.residents);
            }
        }
        if ask.preemptible {
            *lowest = (*lowest).min(ask.priority);
        }
        node.residents.push(Resident {
            job: ask.job.clone(),
            attempt,
            priority: ask.priority,
            memory_bytes: ask.memory_bytes,
            preemptible: ask.preemptible,
        });
        room.used_slots = room.used_slots.saturating_add(1);
        room.used_memory = room.used_memory.saturating_add(ask.memory_bytes);
        self.cursor = pos;
    }

    /// The positions from the cursor on, wrapping around, as runs of one class:
    /// `(class, from, end)`.
    fn runs(&self) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        let n = self.at.len();
        let start = if self.cursor < n { self.cursor } else { 0 };
        [(start, n), (0, start)]
            .into_iter()
            .flat_map(move |(from, to)| {
                let mut pos = from;
                std::iter::from_fn(move || {
                    (pos < to).then(|| {
                        let class = self.class_at[pos] as usize;
                        let end = self.classes[class].end.min(to);
                        let run = (class, pos, end);
                        pos = end;
                        run
                    })
                })
            })
    }

    fn id_at(&self, pos: usize) -> &NodeId {
        &self.nodes[self.at[pos] as usize].id
    }

    /// `op` on `label`, compiled to a test on the label's value ids.
    fn test(&self, label: &str, op: &Operator) -> Test<'_> {
        let index = self.labels.get(label);
        let id = |value: &str| index.and_then(|index| index.ids.get(value).copied());
        let kind = match op {
            Operator::Eq(value) => Kind::Eq(id(value)),
            Operator::NotEq(value) => Kind::NotEq(id(value)),
            Operator::In(set) => Kind::In(set.iter().filter_map(|v| id(v)).collect()),
            Operator::NotIn(set) => Kind::NotIn(set.iter().filter_map(|v| id(v)).collect()),
            Operator::Exists => Kind::Exists,
            Operator::NotExists => Kind::NotExists,
            Operator::Version(req) => Kind::Values(index.map_or_else(Vec::new, |index| {
                let matches =
                    |v: &Option<semver::Version>| v.as_ref().is_some_and(|v| req.matches(v));
                index.versions.iter().map(matches).collect()
            })),
        };
        Test {
            values: index.map(|index| index.value_of.as_slice()),
            kind,
        }
    }
}

/// The lowest priority of the preemptible residents, [`u8::MAX`] without one.
fn lowest_preemptible_of(residents: &[Resident]) -> u8 {
    residents
        .iter()
        .filter(|r| r.preemptible)
        .map(|r| r.priority)
        .min()
        .unwrap_or(u8::MAX)
}

/// max(2, ⌈log₂ nodes⌉): how many feasible nodes with room a limited scan looks for, and how
/// many nodes where an eviction works preemption looks for.
fn limit(nodes: usize) -> usize {
    let log2 = usize::BITS - nodes.saturating_sub(1).leading_zeros();
    (log2 as usize).max(2)
}

/// A constraint or affinity compiled against the cluster's labels.
struct Test<'c> {
    /// By class: the value id of the label, or `None` when no node has the label.
    values: Option<&'c [u32]>,
    kind: Kind,
}

/// [`Operator`] on value ids; a value no node has has no id.
enum Kind {
    Eq(Option<u32>),
    NotEq(Option<u32>),
    In(Vec<u32>),
    NotIn(Vec<u32>),
    Exists,
    NotExists,
    /// By value id: whether it passes (absent fails).
    Values(Vec<bool>),
}

impl Test<'_> {
    fn passes(&self, class: usize) -> bool {
        let value = self.values.map_or(ABSENT, |values| values[class]);
        match &self.kind {
            Kind::Eq(want) => *want == Some(value),
            Kind::NotEq(want) => *want != Some(value),
            Kind::In(set) => set.contains(&value),
            Kind::NotIn(set) => !set.contains(&value),
            Kind::Exists => value != ABSENT,
            Kind::NotExists => value == ABSENT,
            Kind::Values(passes) => passes.get(value as usize).copied().unwrap_or(false),
        }
    }
}

/// A spread compiled for one call: the part it gives each value of its label.
struct SpreadPlan<'c> {
    /// By class: the value id of the label, or `None` when no node has the label.
    values: Option<&'c [u32]>,
    /// By value id: clamp((d − u) / d, −1, 1), or −1 without a share.
    boost: Vec<f64>,
    /// weight / 100.
    weight: f64,
}

impl SpreadPlan<'_> {
    fn part(&self, class: usize) -> f64 {
        let value = self.values.map_or(ABSENT, |values| values[class]);
        self.weight * self.boost.get(value as usize).copied().unwrap_or(-1.0)
    }
}

/// The score of one node, by part.
#[derive(Clone, Copy, Debug, Default)]
struct Parts {
    binpack: f64,
    affinity: f64,
    spread: f64,
    artifact: f64,
    anti_affinity: f64,
    preemption: f64,
}

impl Parts {
    #[inline]
    fn total(&self) -> f64 {
        self.binpack
            + self.affinity
            + self.spread
            + self.artifact
            + self.anti_affinity
            + self.preemption
    }
}

/// A node with room and its score.
#[derive(Clone, Copy, Debug)]
struct Scored {
    score: f64,
    rank: u32,
    pos: usize,
}

/// Higher score first, then the smaller node id.
fn better(a: &Scored, b: &Scored) -> bool {
    match a.score.partial_cmp(&b.score).unwrap_or(Ordering::Equal) {
        Ordering::Greater => true,
        Ordering::Less => false,
        Ordering::Equal => a.rank < b.rank,
    }
}

/// How many nodes with room a scan has found, toward its limit.
struct Found {
    limit: usize,
    found: usize,
    /// Nodes already running the job, passed over (at most [`MAX_SKIP`]).
    skipped: usize,
}

impl Found {
    /// Counts a node with room; true once the limit is reached.
    fn counts(&mut self, runs_the_job: bool) -> bool {
        if runs_the_job && self.skipped < MAX_SKIP {
            self.skipped += 1;
        } else {
            self.found += 1;
        }
        self.found >= self.limit
    }
}

/// The nodes a search may give the instance.
#[derive(Clone, Copy, Debug)]
enum Scope {
    All,
    /// The requested node.
    One(usize),
    /// The requested node is not known.
    Nothing,
}

/// Residents whose stopping makes room on a node.
struct Eviction {
    pos: usize,
    /// Indices in the node's residents, in the order chosen.
    victims: Vec<usize>,
    /// The highest priority among them.
    highest: u8,
    parts: Parts,
    rank: u32,
}

impl Eviction {
    /// Fewest victims, then the lowest highest priority, then the best score.
    fn cheaper(&self, other: &Self) -> bool {
        let key = |e: &Self| (e.victims.len(), e.highest);
        match key(self).cmp(&key(other)) {
            Ordering::Less => true,
            Ordering::Greater => false,
            Ordering::Equal => better(&self.scored(), &other.scored()),
        }
    }

    fn scored(&self) -> Scored {
        Scored {
            score: self.parts.total(),
            rank: self.rank,
            pos: self.pos,
        }
    }
}

/// One `place` call: the ask compiled against the cluster, and what the scan saw.
struct Search<'c> {
    cluster: &'c Cluster,
    memory: u64,
    /// By node class of the job: the tests of its labels. Empty: no node class restriction.
    node_classes: Vec<Vec<Test<'c>>>,
    constraints: Vec<Test<'c>>,
    /// With weight / Σ |weights|.
    affinities: Vec<(Test<'c>, f64)>,
    spreads: Vec<SpreadPlan<'c>>,
    artifact: Option<&'c Bits>,
    /// (position, instances of the job there), by position.
    placed: Vec<(usize, u32)>,

    evaluated: usize,
    unschedulable: Vec<(&'static str, usize)>,
    /// Nodes in none of the job's node classes.
    outside_classes: usize,
    /// By constraint: the nodes that fail it first.
    failed: Vec<usize>,
    not_requested: usize,
    no_slot: usize,
    no_memory: usize,
    /// Where preemption may look once the scan found no room.
    scope: Scope,
    /// Best first, at most [`TOP`].
    top: Vec<Scored>,
    /// The preemption candidates, cheapest first, at most [`TOP`].
    evictions: Vec<Eviction>,
}

impl<'c> Search<'c> {
    fn new(cluster: &'c Cluster, ask: &Ask<'_>) -> Self {
        let spec = ask.spec;
        let node_classes = spec
            .node_classes
            .iter()
            .map(|class| {
                class
                    .labels
                    .iter()
                    .map(|(label, value)| cluster.test(label, &Operator::Eq(value.clone())))
                    .collect()
            })
            .collect();
        let constraints: Vec<Test<'c>> = spec
            .constraints
            .iter()
            .map(|c| cluster.test(&c.label, &c.op))
            .collect();
        let sum: f64 = spec
            .affinities
            .iter()
            .map(|a| f64::from(a.weight).abs())
            .sum();
        let affinities = spec
            .affinities
            .iter()
            .filter(|a| a.weight != 0)
            .map(|a| (cluster.test(&a.label, &a.op), f64::from(a.weight) / sum))
            .collect();
        let mut placed: Vec<(usize, u32)> = Vec::new();
        for id in ask.placed_on {
            if let Some(&pos) = cluster.position.get(id) {
                placed.push((pos as usize, 1));
            }
        }
        placed.sort_unstable();
        placed.dedup_by(|next, kept| {
            let same = next.0 == kept.0;
            if same {
                kept.1 += next.1;
            }
            same
        });
        let mut search = Self {
            cluster,
            memory: ask.memory_bytes,
            node_classes,
            outside_classes: 0,
            failed: vec![0; constraints.len()],
            constraints,
            affinities,
            spreads: Vec::new(),
            artifact: cluster.cached.get(ask.module),
            placed,
            evaluated: 0,
            unschedulable: Vec::new(),
            not_requested: 0,
            no_slot: 0,
            no_memory: 0,
            scope: Scope::All,
            top: Vec::new(),
            evictions: Vec::new(),
        };
        search.spreads = spec
            .spreads
            .iter()
            .map(|s| search.spread(s, ask.placed_on.len()))
            .collect();
        search
    }

    /// Compiles a spread: how many of the job's instances each value has, and should have.
    fn spread(&self, spread: &Spread, placed: usize) -> SpreadPlan<'c> {
        let weight = f64::from(spread.weight) / 100.0;
        let Some(index) = self.cluster.labels.get(&spread.label) else {
            return SpreadPlan {
                values: None,
                boost: Vec::new(),
                weight,
            };
        };
        let mut used = vec![0u32; index.ids.len()];
        for &(pos, instances) in &self.placed {
            let value = index.value_of[self.cluster.class_at[pos] as usize];
            if let Some(used) = used.get_mut(value as usize) {
                *used += instances;
            }
        }
        let mut share = vec![0.0; index.ids.len()];
        if spread.targets.is_empty() {
            let mut present = vec![false; index.ids.len()];
            for class in 0..self.cluster.classes.len() {
                if self.feasible(class)
                    && let Some(present) = present.get_mut(index.value_of[class] as usize)
                {
                    *present = true;
                }
            }
            let values = present.iter().filter(|p| **p).count();
            for (share, present) in share.iter_mut().zip(present) {
                if present {
                    *share = 1.0 / values as f64;
                }
            }
        } else {
            for (value, percent) in &spread.targets {
                if let Some(&id) = index.ids.get(value) {
                    share[id as usize] = f64::from(*percent) / 100.0;
                }
            }
        }
        let instances = (placed + 1) as f64;
        let boost = share
            .iter()
            .zip(used)
            .map(|(share, used)| {
                let desired = share * instances;
                if desired <= 0.0 {
                    -1.0
                } else {
                    ((desired - f64::from(used)) / desired).clamp(-1.0, 1.0)
                }
            })
            .collect();
        SpreadPlan {
            values: Some(&index.value_of),
            boost,
            weight,
        }
    }

    fn feasible(&self, class: usize) -> bool {
        self.cluster.classes[class].reason.is_empty()
            && self.in_node_class(class)
            && self.constraints.iter().all(|t| t.passes(class))
    }

    /// Whether the nodes of `class` belong to one of the job's node classes (true when it has
    /// none).
    fn in_node_class(&self, class: usize) -> bool {
        self.node_classes.is_empty()
            || self
                .node_classes
                .iter()
                .any(|tests| tests.iter().all(|t| t.passes(class)))
    }

    /// Whether the nodes of `class` may get work; if not, counts `nodes` of them as filtered.
    fn screen(&mut self, class: usize, nodes: usize) -> bool {
        let reason = self.cluster.classes[class].reason;
        if !reason.is_empty() {
            match self.unschedulable.iter_mut().find(|(r, _)| *r == reason) {
                Some((_, count)) => *count += nodes,
                None => self.unschedulable.push((reason, nodes)),
            }
            return false;
        }
        if !self.in_node_class(class) {
            self.outside_classes += nodes;
            return false;
        }
        match self.constraints.iter().position(|t| !t.passes(class)) {
            Some(first) => {
                self.failed[first] += nodes;
                false
            }
            None => true,
        }
    }

    /// The parts of the score shared by a class: affinity and spread.
    fn class_parts(&self, class: usize) -> Parts {
        Parts {
            affinity: self
                .affinities
                .iter()
                .filter(|(test, _)| test.passes(class))
                .map(|(_, weight)| weight)
                .sum(),
            spread: self.spreads.iter().map(|s| s.part(class)).sum(),
            ..Parts::default()
        }
    }

    #[inline]
    fn instances_on(&self, pos: usize) -> u32 {
        if self.placed.is_empty() {
            return 0;
        }
        self.placed
            .binary_search_by_key(&pos, |&(p, _)| p)
            .map_or(0, |i| self.placed[i].1)
    }

    /// The score of the node at `pos` if it had `room`.
    #[inline]
    fn parts(&self, pos: usize, room: &Room, class: Parts) -> Parts {
        let cached = self.artifact.is_some_and(|bits| bits.contains(pos));
        Parts {
            binpack: room.binpack(self.memory),
            artifact: if cached { ARTIFACT_BONUS } else { 0.0 },
            anti_affinity: -ANTI_AFFINITY_PENALTY * f64::from(self.instances_on(pos)),
            ..class
        }
    }

    /// Looks at nodes from the cursor on, wrapping around, until `limit` feasible nodes with
    /// room are found (nodes already running the job count only after [`MAX_SKIP`] of them).
    fn scan(&mut self, limit: usize) {
        let mut found = Found {
            limit,
            found: 0,
            skipped: 0,
        };
        for (class, from, end) in self.cluster.runs() {
            if !self.screen(class, end - from) {
                self.evaluated += end - from;
            } else if self.run(from, end, class, &mut found) {
                return;
            }
        }
    }

    /// Looks at one node only; every other one is "not the requested node".
    fn only(&mut self, id: &NodeId) {
        let n = self.cluster.at.len();
        let Some(&pos) = self.cluster.position.get(id) else {
            self.evaluated = n;
            self.not_requested = n;
            self.scope = Scope::Nothing;
            return;
        };
        self.evaluated = n - 1;
        self.not_requested = n - 1;
        let pos = pos as usize;
        self.scope = Scope::One(pos);
        let class = self.cluster.class_at[pos] as usize;
        if self.screen(class, 1) {
            let mut found = Found {
                limit: 1,
                found: 0,
                skipped: 0,
            };
            self.run(pos, pos + 1, class, &mut found);
        } else {
            self.evaluated += 1;
        }
    }

    /// Looks at the nodes `from..end` of a feasible class: counts those without room, scores
    /// the others. The hot loop of placement, hence the local counters. Returns true once
    /// `found` reaches its limit.
    fn run(&mut self, from: usize, end: usize, class: usize, found: &mut Found) -> bool {
        let rooms = &self.cluster.room;
        let class = self.class_parts(class);
        // The score a node must reach to enter the top (ties are decided in `offer`).
        let mut threshold = self.threshold();
        let (mut no_slot, mut no_memory) = (0, 0);
        let mut stop = end;
        for (pos, room) in rooms.iter().enumerate().take(end).skip(from) {
            if room.free_slots() == 0 {
                no_slot += 1;
                continue;
            }
            if room.free_memory() < self.memory {
                no_memory += 1;
                continue;
            }
            let score = self.parts(pos, room, class).total();
            if score >= threshold {
                self.offer(Scored {
                    score,
                    rank: self.cluster.rank[pos],
                    pos,
                });
                threshold = self.threshold();
            }
            if found.counts(self.instances_on(pos) > 0) {
                stop = pos + 1;
                break;
            }
        }
        self.evaluated += stop - from;
        self.no_slot += no_slot;
        self.no_memory += no_memory;
        stop < end || found.found >= found.limit
    }

    fn threshold(&self) -> f64 {
        match self.top.get(TOP - 1) {
            Some(last) => last.score,
            None => f64::NEG_INFINITY,
        }
    }

    /// Keeps `scored` if it is among the best [`TOP`].
    fn offer(&mut self, scored: Scored) {
        if self.top.len() < TOP || self.top.last().is_some_and(|last| better(&scored, last)) {
            let at = self.top.partition_point(|t| better(t, &scored));
            self.top.insert(at, scored);
            self.top.truncate(TOP);
        }
    }

    /// Looks among the feasible nodes, in scan order, for residents to stop, until `limit`
    /// nodes where that works are found; keeps the cheapest evictions and returns the
    /// cheapest. Only called when the scan found no room, so every node in scope is full.
    fn preemption(&mut self, ask: &Ask<'_>, limit: usize) -> Option<&Eviction> {
        if ask.priority == 0 {
            return None;
        }
        let cluster = self.cluster;
        let runs: Box<dyn Iterator<Item = (usize, usize, usize)>> = match self.scope {
            Scope::All => Box::new(cluster.runs()),
            Scope::One(pos) => Box::new(std::iter::once((
                cluster.class_at[pos] as usize,
                pos,
                pos + 1,
            ))),
            Scope::Nothing => Box::new(std::iter::empty()),
        };
        let mut evictions: Vec<Eviction> = Vec::new();
        let (mut found, mut pool) = (0, Vec::new());
        'runs: for (class, from, end) in runs {
            if !self.feasible(class) {
                continue;
            }
            for pos in from..end {
                if cluster.lowest_preemptible[pos] >= ask.priority {
                    continue;
                }
                let Some(eviction) = self.eviction(ask, pos, &mut pool) else {
                    continue;
                };
                if evictions.len() < TOP
                    || evictions.last().is_some_and(|last| eviction.cheaper(last))
                {
                    let at = evictions.partition_point(|e| e.cheaper(&eviction));
                    evictions.insert(at, eviction);
                    evictions.truncate(TOP);
                }
                found += 1;
                if found >= limit {
                    break 'runs;
                }
            }
        }
        self.evictions = evictions;
        self.evictions.first()
    }

    /// The minimal set of residents of the node at `pos` to stop for the ask to fit, if any;
    /// `pool` is a buffer reused from node to node.
    fn eviction(&self, ask: &Ask<'_>, pos: usize, pool: &mut Vec<usize>) -> Option<Eviction> {
        let residents = &self.cluster.nodes[self.cluster.at[pos] as usize].residents;
        let room = self.cluster.room[pos];
        // Slots and memory to free: a victim frees its slot and its memory.
        let slots_short =
            u32::from(room.free_slots() == 0) + room.used_slots.saturating_sub(room.total_slots);
        let memory_short = self
            .memory
            .saturating_sub(room.free_memory())
            .saturating_add(room.used_memory.saturating_sub(room.total_memory));
        let enough = |victims: usize, freed: u64| {
            victims as u64 >= u64::from(slots_short) && freed >= memory_short
        };

        pool.clear();
        let mut available = 0u64;
        for (i, r) in residents.iter().enumerate() {
            if r.preemptible && r.priority < ask.priority && r.job != *ask.job {
                pool.push(i);
                available = available.saturating_add(r.memory_bytes);
            }
        }
        if pool.is_empty() || !enough(pool.len(), available) {
            return None;
        }
        pool.sort_by(|&a, &b| {
            let (a, b) = (&residents[a], &residents[b]);
            a.priority
                .cmp(&b.priority)
                .then_with(|| b.memory_bytes.cmp(&a.memory_bytes))
                .then_with(|| (&a.job, a.attempt).cmp(&(&b.job, b.attempt)))
        });
        let mut victims = Vec::new();
        let mut freed = 0u64;
        for &i in pool.iter() {
            if enough(victims.len(), freed) {
                break;
            }
            victims.push(i);
            freed = freed.saturating_add(residents[i].memory_bytes);
        }
        if victims.is_empty() || !enough(victims.len(), freed) {
            return None;
        }
        // Spare the last chosen (higher priority, smaller) when the others suffice.
        for k in (0..victims.len()).rev() {
            let memory = residents[victims[k]].memory_bytes;
            if enough(victims.len() - 1, freed - memory) {
                victims.remove(k);
                freed -= memory;
            }
        }

        let count = u32::try_from(victims.len()).unwrap_or(u32::MAX);
        let after = Room {
            used_slots: room.used_slots.saturating_sub(count),
            used_memory: room.used_memory.saturating_sub(freed),
            ..room
        };
        let class = self.class_parts(self.cluster.class_at[pos] as usize);
        let parts = Parts {
            preemption: -PREEMPTION_PENALTY * f64::from(count),
            ..self.parts(pos, &after, class)
        };
        Some(Eviction {
            pos,
            highest: victims
                .iter()
                .map(|&v| residents[v].priority)
                .max()
                .unwrap_or(0),
            victims,
            parts,
            rank: self.cluster.rank[pos],
        })
    }

    /// The explanation of the decision (or of the wait).
    fn explain(&self, ask: &Ask<'_>, preempted: Vec<(JobId, u32)>) -> Explanation {
        let mut filtered = BTreeMap::new();
        for &(reason, count) in &self.unschedulable {
            *filtered.entry(reason.to_owned()).or_default() += count;
        }
        if self.not_requested > 0 {
            *filtered.entry(NOT_REQUESTED.to_owned()).or_default() += self.not_requested;
        }
        if self.outside_classes > 0 {
            let names: Vec<&str> = ask
                .spec
                .node_classes
                .iter()
                .map(|c| c.name.as_str())
                .collect();
            let key = match names.as_slice() {
                [one] => format!("not in node class {one}"),
                many => format!("not in node classes {}", many.join(", ")),
            };
            *filtered.entry(key).or_default() += self.outside_classes;
        }
        for (constraint, &count) in ask.spec.constraints.iter().zip(&self.failed) {
            if count > 0 {
                *filtered.entry(constraint.to_string()).or_default() += count;
            }
        }
        let mut exhausted = BTreeMap::new();
        if self.no_slot > 0 {
            exhausted.insert("slots".to_owned(), self.no_slot);
        }
        if self.no_memory > 0 {
            exhausted.insert("memory".to_owned(), self.no_memory);
        }
        let top = if self.top.is_empty() && !preempted.is_empty() {
            self.evictions
                .iter()
                .map(|e| self.candidate(ask, e.pos, e.parts))
                .collect()
        } else {
            self.top
                .iter()
                .map(|s| {
                    let class = self.class_parts(self.cluster.class_at[s.pos] as usize);
                    let parts = self.parts(s.pos, &self.cluster.room[s.pos], class);
                    self.candidate(ask, s.pos, parts)
                })
                .collect()
        };
        Explanation {
            nodes: self.cluster.nodes.len(),
            evaluated: self.evaluated,
            filtered,
            exhausted,
            top,
            preempted,
        }
    }

    fn candidate(&self, ask: &Ask<'_>, pos: usize, parts: Parts) -> Candidate {
        let mut named = vec![("binpack", parts.binpack)];
        if !ask.spec.affinities.is_empty() {
            named.push(("affinity", parts.affinity));
        }
        if !ask.spec.spreads.is_empty() {
            named.push(("spread", parts.spread));
        }
        for (name, value) in [
            ("artifact", parts.artifact),
            ("anti-affinity", parts.anti_affinity),
            ("preemption", parts.preemption),
        ] {
            if value != 0.0 {
                named.push((name, value));
            }
        }
        Candidate {
            node: self.cluster.id_at(pos).clone(),
            score: parts.total(),
            parts: named,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The module every test job runs; `cached` nodes hold its artifact.
    const MODULE: &[u8] = b"module";

    /// `"n1 up slots=4 mem=1000 site=paris,jurisdiction=FR cached run=low:10:100"`: id, status
    /// (up, down, draining, ineligible), then any of: slots (default 4), memory (default 1000),
    /// labels, `cached` (holds the test module), residents `job:priority:memory` (attempt 1,
    /// preemptible unless followed by `:fixed`).
    fn node(spec: &str) -> NodeView {
        let mut words = spec.split_whitespace();
        let id = words.next().expect("node id");
        let (schedulable, unschedulable_reason) = match words.next() {
            Some("up") => (true, ""),
            Some("down") => (false, "down"),
            Some("draining") => (false, "draining"),
            Some("ineligible") => (false, "ineligible"),
            other => panic!("node status {other:?}"),
        };
        let mut view = NodeView {
            id: NodeId::from(id),
            labels: BTreeMap::new(),
            schedulable,
            unschedulable_reason,
            total_slots: 4,
            total_memory_bytes: 1000,
            residents: Vec::new(),
            cached_modules: BTreeSet::new(),
        };
        for word in words {
            if let Some(slots) = word.strip_prefix("slots=") {
                view.total_slots = slots.parse().expect("slots");
            } else if let Some(memory) = word.strip_prefix("mem=") {
                view.total_memory_bytes = memory.parse().expect("mem");
            } else if word == "cached" {
                view.cached_modules.insert(ModuleDigest::of(MODULE));
            } else if let Some(run) = word.strip_prefix("run=") {
                let fields: Vec<&str> = run.split(':').collect();
                view.residents.push(Resident {
                    job: JobId::from(fields[0].to_owned()),
                    attempt: 1,
                    priority: fields[1].parse().expect("priority"),
                    memory_bytes: fields[2].parse().expect("memory"),
                    preemptible: fields.get(3) != Some(&"fixed"),
                });
            } else {
                for pair in word.split(',') {
                    let (label, value) = pair.split_once('=').expect("label=value");
                    view.labels.insert(label.to_owned(), value.to_owned());
                }
            }
        }
        view
    }

    fn cluster(specs: &[&str]) -> Cluster {
        Cluster::new(specs.iter().map(|spec| node(spec)).collect())
    }

    /// A constraint as its `Display` writes it: `tier in [edge, core]`.
    fn constraint(text: &str) -> Constraint {
        let (label, op) = text.split_once(' ').expect("label and operator");
        let list = |s: &str| {
            let s = s.trim_start_matches('[').trim_end_matches(']');
            s.split(", ").map(str::to_owned).collect()
        };
        let op = if let Some(value) = op.strip_prefix("= ") {
            Operator::Eq(value.to_owned())
        } else if let Some(value) = op.strip_prefix("!= ") {
            Operator::NotEq(value.to_owned())
        } else if let Some(set) = op.strip_prefix("in ") {
            Operator::In(list(set))
        } else if let Some(set) = op.strip_prefix("not in ") {
            Operator::NotIn(list(set))
        } else if op == "exists" {
            Operator::Exists
        } else if op == "not exists" {
            Operator::NotExists
        } else if let Some(req) = op.strip_prefix("semver ") {
            Operator::Version(req.parse().expect("version requirement"))
        } else {
            panic!("operator {op:?}")
        };
        Constraint {
            label: label.to_owned(),
            op,
        }
    }

    /// What an ask borrows, owned: by default job `job`, 100 bytes, priority 50.
    struct Job {
        id: JobId,
        module: ModuleDigest,
        memory: u64,
        priority: u8,
        spec: PlacementSpec,
        placed_on: Vec<NodeId>,
        only: Option<NodeId>,
    }

    fn job() -> Job {
        Job {
            id: JobId::from("job".to_owned()),
            module: ModuleDigest::of(MODULE),
            memory: 100,
            priority: 50,
            spec: PlacementSpec::default(),
            placed_on: Vec::new(),
            only: None,
        }
    }

    impl Job {
        fn ask(&self) -> Ask<'_> {
            Ask {
                job: &self.id,
                module: &self.module,
                memory_bytes: self.memory,
                priority: self.priority,
                spec: &self.spec,
                placed_on: &self.placed_on,
                only_node: self.only.as_ref(),
                preemptible: true,
            }
        }

        fn named(mut self, id: &str) -> Self {
            self.id = JobId::from(id.to_owned());
            self
        }

        fn memory(mut self, memory: u64) -> Self {
            self.memory = memory;
            self
        }

        fn priority(mut self, priority: u8) -> Self {
            self.priority = priority;
            self
        }

        fn only(mut self, node: &str) -> Self {
            self.only = Some(NodeId::from(node));
            self
        }

        fn placed_on(mut self, nodes: &[&str]) -> Self {
            self.placed_on = nodes.iter().map(|n| NodeId::from(*n)).collect();
            self
        }

        fn constraint(mut self, text: &str) -> Self {
            self.spec.constraints.push(constraint(text));
            self
        }

        fn affinity(mut self, text: &str, weight: i8) -> Self {
            let Constraint { label, op } = constraint(text);
            self.spec.affinities.push(Affinity { label, op, weight });
            self
        }

        /// Weight 100, targets `paris=75,lyon=25` (empty: even).
        fn spread(mut self, label: &str, targets: &str) -> Self {
            let targets = targets.split(',').filter(|t| !t.is_empty()).map(|target| {
                let (value, percent) = target.split_once('=').expect("value=percent");
                (value.to_owned(), percent.parse().expect("percent"))
            });
            self.spec.spreads.push(Spread {
                label: label.to_owned(),
                weight: 100,
                targets: targets.collect(),
            });
            self
        }
    }

    /// Where one instance goes (`a`, `a preempting low#1`) or why it cannot.
    fn place(cluster: &Cluster, job: &Job) -> String {
        match cluster.place(&job.ask()) {
            Ok(p) if p.preempt.is_empty() => p.node.to_string(),
            Ok(p) => {
                let victims: Vec<String> =
                    p.preempt.iter().map(|(j, a)| format!("{j}#{a}")).collect();
                format!("{} preempting {}", p.node, victims.join(", "))
            }
            Err(e) => e.to_string(),
        }
    }

    /// Places `count` instances of the job one after another, committing each.
    fn place_all(cluster: &mut Cluster, job: &mut Job, count: u32) -> Vec<String> {
        (0..count)
            .map(|attempt| {
                let placement = cluster.place(&job.ask()).expect("placed");
                cluster.commit(&job.ask(), &placement, attempt);
                job.placed_on.push(placement.node.clone());
                placement.node.to_string()
            })
            .collect()
    }

    /// Instances per first letter of the node id: `p1 p2 l1` → `l1 p2`.
    fn per_site(placed: &[String]) -> String {
        let mut counts: BTreeMap<char, usize> = BTreeMap::new();
        for node in placed {
            *counts
                .entry(node.chars().next().unwrap_or('?'))
                .or_default() += 1;
        }
        let counts: Vec<String> = counts
            .iter()
            .map(|(site, n)| format!("{site}{n}"))
            .collect();
        counts.join(" ")
    }

    #[test]
    fn operators() {
        let specs = [
            "a up site=paris,jurisdiction=FR,tier=edge,version=1.4.0,gpu=a100",
            "b up site=lyon,jurisdiction=FR,tier=core,version=2.0.0",
            "c up site=berlin,jurisdiction=DE,tier=cloud,version=banana",
            "d up site=rome",
        ];
        let cases = [
            ("jurisdiction = FR", "a b"),
            ("jurisdiction != FR", "c d"),
            ("jurisdiction = XX", ""),
            ("jurisdiction != XX", "a b c d"),
            ("tier in [edge, core]", "a b"),
            ("tier not in [edge, core]", "c d"),
            ("color in [red]", ""),
            ("color not in [red]", "a b c d"),
            ("gpu exists", "a"),
            ("gpu not exists", "b c d"),
            ("version semver >=1.2", "a b"),
            ("version semver >=1.2, <2", "a"),
            ("version semver >=3", ""),
        ];
        let cluster = cluster(&specs);
        for (text, expected) in cases {
            let c = constraint(text);
            assert_eq!(c.to_string(), text);
            // The index (one node at a time, by id) and the operator agree with the table.
            let mut feasible = Vec::new();
            for view in cluster.nodes() {
                let id = view.id.as_str();
                let placed = cluster
                    .place(&job().constraint(text).only(id).ask())
                    .is_ok();
                let value = view.labels.get(&c.label).map(String::as_str);
                assert_eq!(c.op.matches(value), placed, "{text} on {id}");
                if placed {
                    feasible.push(id);
                }
            }
            assert_eq!(feasible.join(" "), expected, "{text}");
            // A full scan (an affinity makes it one) counts the others under the constraint.
            let job = job().constraint(text).affinity("site exists", 1);
            let explanation = match cluster.place(&job.ask()) {
                Ok(p) => p.explanation,
                Err(e) => e.explanation,
            };
            let filtered = specs.len() - feasible.len();
            assert_eq!(
                explanation.filtered.get(text).copied().unwrap_or(0),
                filtered,
                "{text}"
            );
            assert_eq!(explanation.evaluated, specs.len());
        }
    }

    #[test]
    fn node_classes_restrict_placement_to_matching_nodes() {
        let class = |name: &str, labels: &str| NodeClassMatch {
            name: name.to_owned(),
            labels: labels
                .split(',')
                .map(|pair| {
                    let (k, v) = pair.split_once('=').expect("label=value");
                    (k.to_owned(), v.to_owned())
                })
                .collect(),
        };
        let with = |classes: Vec<NodeClassMatch>| {
            let mut job = job();
            job.spec.node_classes = classes;
            job
        };
        let cluster = cluster(&[
            "a up jurisdiction=fr,classification=restricted",
            "b up jurisdiction=fr",
            "c up jurisdiction=us",
            "d down jurisdiction=fr,classification=restricted",
        ]);
        let cases = [
            (vec![], "a"),
            (vec![class("eu", "jurisdiction=fr")], "a"),
            (
                vec![class(
                    "restricted",
                    "jurisdiction=fr,classification=restricted",
                )],
                "a",
            ),
            (vec![class("us", "jurisdiction=us")], "c"),
            (
                vec![class("mars", "jurisdiction=mars")],
                "no node fits: 4 of 4 nodes evaluated; filtered: 3 not in node class mars, 1 down",
            ),
            (
                vec![
                    class("mars", "jurisdiction=mars"),
                    class("moon", "jurisdiction=moon"),
                ],
                "no node fits: 4 of 4 nodes evaluated; filtered: 3 not in node classes mars, \
                 moon, 1 down",
            ),
        ];
        for (classes, expected) in cases {
            let names: Vec<String> = classes.iter().map(|c| c.name.clone()).collect();
            assert_eq!(place(&cluster, &with(classes)), expected, "{names:?}");
        }
        // One node at a time: exactly the nodes of a class (that are up) may take the job.
        for (id, fits) in [("a", true), ("b", false), ("c", false)] {
            let job = with(vec![class("restricted", "classification=restricted")]).only(id);
            assert_eq!(cluster.place(&job.ask()).is_ok(), fits, "{id}");
        }
        // A full scan counts every node outside the class, and spreads see only the class.
        let job = with(vec![class("eu", "jurisdiction=fr")]).spread("jurisdiction", "");
        let placed = cluster.place(&job.ask()).expect("placed");
        assert_eq!(
            placed.explanation.filtered.get("not in node class eu"),
            Some(&1)
        );
        assert!(
            ["a", "b"].contains(&placed.node.as_str()),
            "{}",
            placed.node
        );
    }

    #[test]
    fn unschedulable_nodes_are_counted_by_reason() {
        let cluster = cluster(&[
            "a down",
            "b draining",
            "c ineligible",
            "d down",
            "e up slots=1 run=svc:90:10:fixed",
            "f up mem=50",
        ]);
        assert_eq!(
            place(&cluster, &job()),
            "no node fits: 6 of 6 nodes evaluated; filtered: 2 down, 1 draining, \
             1 ineligible; exhausted: 1 out of memory, 1 out of slots"
        );
    }

    #[test]
    fn only_node() {
        let cluster = cluster(&["a up", "b up slots=8", "c down"]);
        let cases = [
            // b is emptier (a would win on binpack) and still gets it.
            (job().only("b"), "b"),
            (
                job().only("zz"),
                "no node fits: 3 of 3 nodes evaluated; filtered: 3 not the requested node",
            ),
            (
                job().only("c"),
                "no node fits: 3 of 3 nodes evaluated; filtered: 2 not the requested node, 1 down",
            ),
            (
                job().only("b").constraint("site exists"),
                "no node fits: 3 of 3 nodes evaluated; filtered: 2 not the requested node, \
                 1 site exists",
            ),
        ];
        for (job, expected) in cases {
            assert_eq!(place(&cluster, &job), expected);
        }
        // The requested node is full rather than ruled out: nothing filtered but the others.
        let full = job().only("a").memory(2000);
        let wait = cluster.place(&full.ask()).expect_err("a is too small");
        assert_eq!(
            wait.to_string(),
            "no node fits: 3 of 3 nodes evaluated; filtered: 2 not the requested node; \
             exhausted: 1 out of memory"
        );
        assert!(wait.explanation.filtered.keys().all(|k| k == NOT_REQUESTED));
    }

    #[test]
    fn affinities_change_the_choice() {
        let cluster = cluster(&["a up site=paris", "b up site=lyon"]);
        let cases = [
            (job(), "a"),
            (job().affinity("site = lyon", 50), "b"),
            (job().affinity("site = paris", -50), "b"),
            (job().affinity("site = paris", 50), "a"),
            (
                job()
                    .affinity("site = paris", 50)
                    .affinity("site = lyon", 100),
                "b",
            ),
            (job().affinity("gpu exists", 100), "a"),
        ];
        for (job, expected) in cases {
            assert_eq!(place(&cluster, &job), expected, "{:?}", job.spec.affinities);
        }
    }

    #[test]
    fn spreads_reach_their_targets() {
        let sites = [
            "p1 up slots=8 mem=10000 site=paris",
            "p2 up slots=8 mem=10000 site=paris",
            "p3 up slots=8 mem=10000 site=paris",
            "l1 up slots=8 mem=10000 site=lyon",
            "l2 up slots=8 mem=10000 site=lyon",
            "l3 up slots=8 mem=10000 site=lyon",
            "x1 up slots=8 mem=10000 run=other:90:5000:fixed",
        ];
        let cases = [
            ("", 4, "l2 p2"),
            ("", 6, "l3 p3"),
            ("paris=75,lyon=25", 4, "l1 p3"),
            ("lyon=100", 2, "l2"),
        ];
        for (targets, count, expected) in cases {
            let mut cluster = cluster(&sites);
            let mut job = job().spread("site", targets);
            let placed = place_all(&mut cluster, &mut job, count);
            // x1 lacks the label: it is never chosen, although it is the fullest.
            assert_eq!(per_site(&placed), expected, "{targets:?}: {placed:?}");
        }
    }

    #[test]
    fn binpack_artifact_and_anti_affinity() {
        let cases = [
            // The fuller node wins.
            (&["a up", "b up run=other:90:500:fixed"][..], job(), "b"),
            // ...unless it lacks the memory.
            (&["a up", "b up run=other:90:950:fixed"], job(), "a"),
            // The artifact decides between equals...
            (&["a up", "b up cached"], job(), "b"),
            // ...but not against a much fuller node (0.45 against 0.175 + 0.25).
            (&["a up run=other:90:300:fixed", "b up cached"], job(), "a"),
            // A replica avoids the node that already runs one, even a fuller one.
            (
                &["a up run=other:90:500:fixed", "b up"],
                job().placed_on(&["a"]),
                "b",
            ),
            // ...when it can.
            (&["a up", "b down"], job().placed_on(&["a"]), "a"),
        ];
        for (specs, job, expected) in cases {
            assert_eq!(place(&cluster(specs), &job), expected, "{specs:?}");
        }
        let mut cluster = cluster(&["a up", "b up", "c up"]);
        let placed = place_all(&mut cluster, &mut job(), 3);
        assert_eq!(placed, ["a", "b", "c"]);
    }

    #[test]
    fn a_pass_fills_nodes_one_after_another() {
        let specs: Vec<String> = (0..20).map(|i| format!("n{i:02} up slots=2")).collect();
        let specs: Vec<&str> = specs.iter().map(String::as_str).collect();
        let mut cluster = cluster(&specs);
        let placed: Vec<String> = (0..5)
            .flat_map(|i| place_all(&mut cluster, &mut job().named(&format!("job{i}")), 1))
            .collect();
        assert_eq!(placed, ["n00", "n00", "n01", "n01", "n02"]);
    }

    #[test]
    fn preemption() {
        let cases = [
            // The lowest priority goes.
            (
                &["a up slots=2 run=mid:20:100 run=low:10:100"][..],
                job(),
                "a preempting low#1",
            ),
            // Equal priority, non-preemptible, and the job's own instances are never stopped.
            (
                &["a up slots=1 run=peer:50:100"],
                job(),
                "no node fits: 1 of 1 nodes evaluated; exhausted: 1 out of slots",
            ),
            (
                &["a up slots=1 run=svc:10:100:fixed"],
                job(),
                "no node fits: 1 of 1 nodes evaluated; exhausted: 1 out of slots",
            ),
            (
                &["a up slots=1 run=job:10:100"],
                job(),
                "no node fits: 1 of 1 nodes evaluated; exhausted: 1 out of slots",
            ),
            // Memory: the largest of the lowest priority, enough alone.
            (
                &["a up run=r1:10:300 run=r2:10:500 run=r3:20:100"],
                job().memory(500),
                "a preempting r2#1",
            ),
            // A minimal set: `small` goes first but is not needed once `big` goes.
            (
                &["a up run=small:5:100 run=big:10:600"],
                job().memory(800),
                "a preempting big#1",
            ),
            (
                &["a up run=r1:10:300 run=r2:10:500 run=r3:20:100"],
                job().memory(800),
                "a preempting r2#1, r1#1",
            ),
            // Fewest victims, then the lowest highest priority.
            (
                &[
                    "a up slots=3 run=y1:10:300 run=y2:10:300 run=y3:10:300",
                    "b up slots=1 run=x:10:900",
                ],
                job().memory(500),
                "b preempting x#1",
            ),
            (
                &["a up slots=1 run=x:30:100", "b up slots=1 run=y:20:100"],
                job(),
                "b preempting y#1",
            ),
            // Never when a node has room, nor for priority 0.
            (&["a up slots=1 run=low:10:100", "b up"], job(), "b"),
            (
                &["a up slots=1 run=low:10:100"],
                job().priority(0),
                "no node fits: 1 of 1 nodes evaluated; exhausted: 1 out of slots",
            ),
        ];
        for (specs, job, expected) in cases {
            assert_eq!(place(&cluster(specs), &job), expected, "{specs:?}");
        }
    }

    #[test]
    fn commit_frees_the_victims() {
        let mut cluster = cluster(&["a up slots=2 run=mid:20:100 run=low:10:100"]);
        let first = job().named("first");
        let placement = cluster.place(&first.ask()).expect("preempts");
        assert_eq!(placement.preempt, [(JobId::from("low".to_owned()), 1)]);
        assert_eq!(
            placement.explanation.to_string(),
            "1 of 1 nodes evaluated; exhausted: 1 out of slots; \
             best: a (score -0.400: binpack 0.600, preemption -1.000); preempts low#1"
        );
        cluster.commit(&first.ask(), &placement, 7);
        let residents: Vec<String> = cluster.nodes()[0]
            .residents
            .iter()
            .map(|r| format!("{}#{}:{}", r.job, r.attempt, r.priority))
            .collect();
        assert_eq!(residents, ["mid#1:20", "first#7:50"]);
        let second = job().named("second");
        assert_eq!(place(&cluster, &second), "a preempting mid#1");
        let placement = cluster.place(&second.ask()).expect("preempts");
        cluster.commit(&second.ask(), &placement, 1);
        assert_eq!(
            place(&cluster, &job().named("third")),
            "no node fits: 1 of 1 nodes evaluated; exhausted: 1 out of slots"
        );
    }

    #[test]
    fn explanations() {
        let cluster = cluster(&[
            "de1 up jurisdiction=DE",
            "de2 up jurisdiction=DE",
            "de3 up jurisdiction=DE",
            "x1 down jurisdiction=FR",
            "x2 down jurisdiction=FR",
            "fr1 up slots=1 jurisdiction=FR run=svc:90:100:fixed",
            "fr2 up mem=50 jurisdiction=FR,site=lyon",
            "fr3 up mem=50 jurisdiction=FR,site=paris",
        ]);
        assert_eq!(
            place(&cluster, &job().constraint("jurisdiction = FR")),
            "no node fits: 8 of 8 nodes evaluated; filtered: 3 jurisdiction = FR, 2 down; \
             exhausted: 2 out of memory, 1 out of slots"
        );
        let job = job()
            .memory(10)
            .constraint("jurisdiction = FR")
            .affinity("site = lyon", 100);
        let placement = cluster.place(&job.ask()).expect("placed");
        assert_eq!(
            placement.explanation.to_string(),
            "8 of 8 nodes evaluated; filtered: 3 jurisdiction = FR, 2 down; exhausted: 1 out \
             of slots; best: fr2 (score 1.225: binpack 0.225, affinity 1.000)"
        );
        assert_eq!(placement.explanation.top.len(), 2);
    }

    #[test]
    fn a_limited_scan_says_so() {
        let specs: Vec<String> = (0..100).map(|i| format!("n{i:03} up")).collect();
        let specs: Vec<&str> = specs.iter().map(String::as_str).collect();
        let placement = cluster(&specs).place(&job().ask()).expect("placed");
        assert_eq!(
            placement.explanation.to_string(),
            "7 of 100 nodes evaluated; best: n000 (score 0.175: binpack 0.175)"
        );
        assert_eq!(placement.explanation.top.len(), 3);
    }

    #[test]
    fn a_limited_scan_finds_the_only_feasible_node() {
        let specs: Vec<String> = (0..1000)
            .map(|i| {
                let jurisdiction = if i == 777 { "FR" } else { "DE" };
                format!("n{i:04} up jurisdiction={jurisdiction},rack=r{}", i % 10)
            })
            .collect();
        let specs: Vec<&str> = specs.iter().map(String::as_str).collect();
        let placement = cluster(&specs)
            .place(&job().constraint("jurisdiction = FR").ask())
            .expect("placed");
        assert_eq!(placement.node.as_str(), "n0777");
        assert_eq!(placement.explanation.evaluated, 1000);
        assert_eq!(
            placement.explanation.filtered.get("jurisdiction = FR"),
            Some(&999)
        );
    }

    #[test]
    fn ties_go_to_the_smallest_id_whatever_the_order() {
        let orders = [
            ["n2 up", "n10 up", "n1 up", "n3 up site=x"],
            ["n3 up site=x", "n1 up", "n10 up", "n2 up"],
            ["n10 up", "n3 up site=x", "n2 up", "n1 up"],
        ];
        for specs in orders {
            let cluster = cluster(&specs);
            assert_eq!(place(&cluster, &job()), "n1", "{specs:?}");
            assert_eq!(place(&cluster, &job()), "n1", "{specs:?}");
            assert_eq!(place(&cluster, &job().affinity("site exists", -10)), "n1");
        }
    }

    #[test]
    fn an_empty_cluster_places_nothing() {
        let cluster = cluster(&[]);
        for job in [job(), job().only("a"), job().affinity("site exists", 10)] {
            assert_eq!(
                place(&cluster, &job),
                "no node fits: 0 of 0 nodes evaluated"
            );
        }
    }

    #[test]
    fn every_evaluated_node_is_accounted_for() {
        let specs: Vec<String> = (0..64)
            .map(|i| {
                let status = ["up", "up", "up", "down", "draining"][i % 5];
                let slots = [0, 1, 4][i % 3];
                let jurisdiction = ["FR", "DE"][i % 2];
                format!(
                    "n{i:02} {status} slots={slots} mem={} jurisdiction={jurisdiction}",
                    50 + 50 * (i % 4)
                )
            })
            .collect();
        let specs: Vec<&str> = specs.iter().map(String::as_str).collect();
        let cluster = cluster(&specs);
        let jobs = [
            job(),
            job().memory(120),
            job().memory(1000),
            job().constraint("jurisdiction = FR"),
            job()
                .constraint("jurisdiction = FR")
                .affinity("jurisdiction = DE", 5),
            job().only("n07"),
            job().only("n03"),
        ];
        for job in jobs {
            let (explanation, placed) = match cluster.place(&job.ask()) {
                Ok(p) => (p.explanation, true),
                Err(e) => (e.explanation, false),
            };
            let ruled_out: usize = explanation
                .filtered
                .values()
                .chain(explanation.exhausted.values())
                .sum();
            // Those not ruled out had room: at least one if placed, none otherwise.
            if placed {
                assert!(ruled_out < explanation.evaluated, "{explanation}");
            } else {
                assert_eq!(ruled_out, explanation.evaluated, "{explanation}");
            }
            assert!(explanation.evaluated <= explanation.nodes, "{explanation}");
            assert_eq!(explanation.nodes, 64);
        }
    }

    #[test]
    fn limit_is_the_log_of_the_nodes() {
        let cases = [
            (0, 2),
            (1, 2),
            (2, 2),
            (4, 2),
            (5, 3),
            (100, 7),
            (10_000, 14),
        ];
        for (nodes, expected) in cases {
            assert_eq!(limit(nodes), expected, "{nodes}");
        }
    }
}
