//! Hosts as the scheduler sees them: who registered, what they offer, which attempts occupy
//! them, and the domain messages exchanged with them over `HostLink.Connect`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use vauban_core::{Capabilities, ModuleDigest};

use crate::job::{JobId, OutputChunk, RunEnd};
use crate::placement::{NodeView, Resident};

/// A node's name, chosen by its operator and stable across restarts.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct NodeId(String);

impl NodeId {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<String> for NodeId {
    fn from(id: String) -> Self {
        Self(id)
    }
}

impl From<&str> for NodeId {
    fn from(id: &str) -> Self {
        Self(id.to_owned())
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a host says about itself when it connects.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Registration {
    pub(crate) id: NodeId,
    pub(crate) labels: BTreeMap<String, String>,
    /// Attempts it runs at once.
    pub(crate) slots: u32,
    /// Memory it offers to jobs, bytes.
    pub(crate) memory_bytes: u64,
    /// The key it signs execution receipts with (hex of the raw Ed25519 key), if it signs any.
    // `default`: records stored before this field existed still read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) receipt_key: Option<String>,
}

/// Whether a node is connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NodeState {
    /// Connected and heartbeating.
    Ready,
    /// Disconnected or silent for too long; its attempts were declared lost.
    Down,
    /// Known from before a scheduler restart and not reconnected yet: the attempts the store
    /// says it runs are kept until it reconnects (and lists them) or is declared down.
    Unknown,
}

/// A drain in progress (or done).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Drain {
    /// Unix milliseconds.
    pub(crate) started_at_ms: u64,
    /// Unix milliseconds: batch work still on the node then is stopped and requeued.
    pub(crate) deadline_ms: u64,
}

/// What the scheduler keeps of a node across restarts: what it registered with, and what
/// operators decided about it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct NodeRecord {
    pub(crate) registration: Registration,
    pub(crate) eligible: bool,
    pub(crate) drain: Option<Drain>,
}

/// Distinguishes successive connections of one node, so that the end of a replaced stream is
/// not taken for the end of the current one.
pub(crate) type ConnectionId = u64;

/// What the scheduler sends a host (besides `Registered`, which the edge sends first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ToHost {
    /// Boxed: an assignment is large, a cancellation small.
    Assign(Box<Assignment>),
    Cancel {
        job: JobId,
        attempt: u32,
    },
    /// A trust policy to install (the host verifies it itself).
    Policy(PushedPolicy),
}

/// A trust policy on its way to a host; two are equal when their bytes are.
#[derive(Clone, Debug)]
pub(crate) struct PushedPolicy(pub(crate) std::sync::Arc<vauban_core::TrustPolicy>);

impl PartialEq for PushedPolicy {
    fn eq(&self, other: &Self) -> bool {
        self.0.toml_bytes() == other.0.toml_bytes()
    }
}

impl Eq for PushedPolicy {}

/// One attempt of a job, given to a host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Assignment {
    pub(crate) job: JobId,
    pub(crate) attempt: u32,
    pub(crate) module: ModuleDigest,
    pub(crate) capabilities: Capabilities,
    pub(crate) stdin: Arc<[u8]>,
    pub(crate) program: String,
    /// The job's grant (JSON), for the host to verify itself.
    pub(crate) grant: Option<String>,
}

/// What a host sends after registering.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum HostEvent {
    /// The host is alive and runs these attempts.
    Heartbeat {
        running: Vec<RunningAttempt>,
        /// Assignments the host had received on this stream when it sent the heartbeat.
        assignments_received: u64,
        /// The modules it holds compiled, when that changed (`None`: unchanged).
        cached_modules: Option<std::collections::BTreeSet<ModuleDigest>>,
    },
    /// Output of a running attempt.
    Output {
        job: JobId,
        attempt: u32,
        chunk: OutputChunk,
    },
    /// An attempt's guest is about to run (verified and loaded).
    Started {
        job: JobId,
        attempt: u32,
        /// By the host's clock.
        started_at_ms: u64,
    },
    /// An attempt ended.
    Finished {
        job: JobId,
        attempt: u32,
        end: RunEnd,
        /// The host's signed execution receipt, if it sent one.
        receipt: Option<crate::audit::ReceiptClaim>,
    },
}

/// An entry of a heartbeat's `running` list.
///
/// The protocol says "attempt ids" without fixing their form, so the scheduler accepts
/// `<job id>/<attempt>` (also with `:` or `#` as separator) and a bare `<job id>`, which matches
/// whichever attempt of that job the node holds. Job ids are UUIDs, which contain none of these
/// separators.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RunningAttempt {
    pub(crate) job: JobId,
    pub(crate) attempt: Option<u32>,
}

impl RunningAttempt {
    pub(crate) fn parse(text: &str) -> Self {
        if let Some((job, attempt)) = text.rsplit_once(['/', ':', '#'])
            && let Ok(attempt) = attempt.parse()
        {
            return Self {
                job: JobId::from(job.to_owned()),
                attempt: Some(attempt),
            };
        }
        Self {
            job: JobId::from(text.to_owned()),
            attempt: None,
        }
    }

    fn matches(&self, job: &JobId, attempt: u32) -> bool {
        self.job == *job && self.attempt.is_none_or(|a| a == attempt)
    }
}

/// The scheduler's end of a host's stream. Dropping it closes the stream: the outbound channel
/// ends (the host sees its response stream end and reconnects) and `closed` stops the task
/// reading the host's messages.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) id: ConnectionId,
    pub(crate) outbound: mpsc::UnboundedSender<ToHost>,
    pub(crate) closed: CancellationToken,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.closed.cancel();
    }
}

/// An attempt holding a slot and memory on a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Occupancy {
    pub(crate) memory_bytes: u64,
    /// Its job's priority, and whether it is batch work (which may be preempted).
    pub(crate) priority: u8,
    pub(crate) preemptible: bool,
    /// Told to stop (cancelled, preempted, stopped by a drain): its attempt is no longer
    /// current, and placement reuses its room at once (the host starts the next attempt only
    /// when an instance slot is free). It stays listed until the host reports the attempt
    /// finished or stops listing it.
    pub(crate) cancelled: bool,
    /// Consecutive heartbeats that did not list it (counting only heartbeats sent after the
    /// host received the assignment).
    pub(crate) unlisted: u8,
    /// Its assignment's position on the node's current stream (1 for the first one sent), or 0
    /// once known received: a heartbeat acknowledging fewer assignments predates it.
    pub(crate) sequence: u64,
}

/// Heartbeats in a row that must omit an attempt before it is taken as gone. Heartbeats that
/// predate the assignment's arrival (by their `assignments_received`) do not count; the second
/// heartbeat is a margin, not a guess.
pub(crate) const UNLISTED_HEARTBEATS_BEFORE_LOST: u8 = 2;

/// A node, as the scheduler's state task holds it.
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) registration: Registration,
    pub(crate) state: NodeState,
    /// Operators' decision: an ineligible node gets no new work.
    pub(crate) eligible: bool,
    pub(crate) drain: Option<Drain>,
    /// Modules whose compiled artifact the host holds, as it last said.
    pub(crate) cached_modules: std::collections::BTreeSet<ModuleDigest>,
    /// For the down-after check; tokio's clock, so tests can pause it.
    pub(crate) last_heartbeat: Instant,
    /// For display, Unix milliseconds.
    pub(crate) last_heartbeat_ms: u64,
    /// `Some` exactly when the node is Ready.
    pub(crate) connection: Option<Connection>,
    /// Assignments sent on the current stream.
    pub(crate) assignments_sent: u64,
    /// The attempts it holds, by job and attempt number. Empty when Down: a lost node's
    /// attempts were requeued.
    pub(crate) attempts: BTreeMap<(JobId, u32), Occupancy>,
}

/// The result of reconciling a heartbeat with the attempts a node holds.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Reconciled {
    /// Attempts the host stopped running without reporting an end: to requeue.
    pub(crate) lost: Vec<(JobId, u32)>,
    /// Cancelled attempts the host no longer runs: their slots are free again.
    pub(crate) released: usize,
    /// Attempts the host runs that the scheduler did not give it (or no longer considers its):
    /// to cancel.
    pub(crate) unknown: Vec<(JobId, u32)>,
}

impl Node {
    pub(crate) fn new(registration: Registration, connection: Connection, now: Instant) -> Self {
        Self {
            registration,
            state: NodeState::Ready,
            eligible: true,
            drain: None,
            cached_modules: std::collections::BTreeSet::new(),
            last_heartbeat: now,
            last_heartbeat_ms: crate::now_ms(),
            connection: Some(connection),
            assignments_sent: 0,
            attempts: BTreeMap::new(),
        }
    }

    /// Sends an assignment and records its position on the stream in its occupancy.
    pub(crate) fn assign(&mut self, assignment: Box<Assignment>) {
        self.assignments_sent += 1;
        let key = (assignment.job.clone(), assignment.attempt);
        if let Some(occupancy) = self.attempts.get_mut(&key) {
            occupancy.sequence = self.assignments_sent;
        }
        self.send(ToHost::Assign(assignment));
    }

    /// A new stream from the same host: counting starts again, and what was sent on the old
    /// stream was either received (heartbeats will list it) or lost with it.
    pub(crate) fn restart_sequence(&mut self) {
        self.assignments_sent = 0;
        for occupancy in self.attempts.values_mut() {
            occupancy.sequence = 0;
        }
    }

    pub(crate) fn id(&self) -> &NodeId {
        &self.registration.id
    }

    /// Sends to the host if it is connected; a closed channel means its stream just ended,
    /// and the end of the stream is handled on its own.
    pub(crate) fn send(&self, message: ToHost) {
        match &self.connection {
            Some(c) if c.outbound.send(message).is_ok() => {}
            _ => tracing::debug!(node = %self.id(), "not sent: the node's stream has ended"),
        }
    }

    /// A node known from the store, before its host reconnects.
    pub(crate) fn recovered(record: NodeRecord, now: Instant) -> Self {
        Self {
            registration: record.registration,
            state: NodeState::Unknown,
            eligible: record.eligible,
            drain: record.drain,
            cached_modules: std::collections::BTreeSet::new(),
            last_heartbeat: now,
            last_heartbeat_ms: 0,
            connection: None,
            assignments_sent: 0,
            attempts: BTreeMap::new(),
        }
    }

    /// What is kept of it across restarts.
    pub(crate) fn record(&self) -> NodeRecord {
        NodeRecord {
            registration: self.registration.clone(),
            eligible: self.eligible,
            drain: self.drain,
        }
    }

    /// Why it gets no new work, or `None` if it does.
    pub(crate) fn unschedulable_reason(&self) -> Option<&'static str> {
        match self.state {
            NodeState::Down => Some("down"),
            NodeState::Unknown => Some("not reconnected"),
            NodeState::Ready if self.drain.is_some() => Some("draining"),
            NodeState::Ready if !self.eligible => Some("ineligible"),
            NodeState::Ready => None,
        }
    }

    /// Slots and memory held by attempts that are not stopping.
    pub(crate) fn used(&self) -> (u32, u64) {
        let current = self.attempts.values().filter(|o| !o.cancelled);
        let (slots, memory) = current.fold((0u32, 0u64), |(s, m), o| {
            (s.saturating_add(1), m.saturating_add(o.memory_bytes))
        });
        (slots, memory)
    }

    /// What placement needs to know.
    pub(crate) fn view(&self) -> NodeView {
        let reason = self.unschedulable_reason();
        NodeView {
            id: self.registration.id.clone(),
            labels: self.registration.labels.clone(),
            schedulable: reason.is_none(),
            unschedulable_reason: reason.unwrap_or(""),
            total_slots: self.registration.slots,
            total_memory_bytes: self.registration.memory_bytes,
            residents: self
                .attempts
                .iter()
                .filter(|(_, o)| !o.cancelled)
                .map(|((job, attempt), o)| Resident {
                    job: job.clone(),
                    attempt: *attempt,
                    priority: o.priority,
                    memory_bytes: o.memory_bytes,
                    preemptible: o.preemptible,
                })
                .collect(),
            cached_modules: self.cached_modules.clone(),
        }
    }

    /// Compares a heartbeat's list with the attempts the node holds. An attempt unlisted for
    /// [`UNLISTED_HEARTBEATS_BEFORE_LOST`] heartbeats in a row is removed from the node and
    /// reported lost (or released, when it was cancelled).
    pub(crate) fn reconcile(
        &mut self,
        running: &[RunningAttempt],
        assignments_received: u64,
    ) -> Reconciled {
        let mut out = Reconciled::default();
        self.attempts.retain(|(job, attempt), occupancy| {
            if running.iter().any(|r| r.matches(job, *attempt)) {
                occupancy.unlisted = 0;
                return true;
            }
            if occupancy.sequence > assignments_received {
                // Sent before the assignment arrived: it says nothing about this attempt.
                return true;
            }
            occupancy.unlisted += 1;
            if occupancy.unlisted < UNLISTED_HEARTBEATS_BEFORE_LOST {
                return true;
            }
            if occupancy.cancelled {
                out.released += 1;
            } else {
                out.lost.push((job.clone(), *attempt));
            }
            false
        });
        for r in running {
            if let Some(attempt) = r.attempt
                && !self.attempts.contains_key(&(r.job.clone(), attempt))
            {
                out.unknown.push((r.job.clone(), attempt));
            }
        }
        out
    }

    /// The jobs it runs, as listed to clients.
    pub(crate) fn summary(&self) -> NodeSummary {
        let (used_slots, used_memory_bytes) = self.used();
        NodeSummary {
            registration: self.registration.clone(),
            state: self.state,
            eligible: self.eligible,
            drain: self.drain,
            drained: self.drain.is_some() && self.attempts.is_empty(),
            cached_modules: self.cached_modules.iter().copied().collect(),
            used_slots,
            used_memory_bytes,
            last_heartbeat_ms: self.last_heartbeat_ms,
            running: self.attempts.keys().map(|(job, _)| job.clone()).collect(),
        }
    }
}

/// A node as `ListNodes` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NodeSummary {
    pub(crate) registration: Registration,
    pub(crate) state: NodeState,
    pub(crate) eligible: bool,
    pub(crate) drain: Option<Drain>,
    /// The drain is over: nothing is left on the node.
    pub(crate) drained: bool,
    pub(crate) cached_modules: Vec<ModuleDigest>,
    pub(crate) used_slots: u32,
    pub(crate) used_memory_bytes: u64,
    pub(crate) last_heartbeat_ms: u64,
    /// Jobs holding a slot on it, cancelled ones still stopping included.
    pub(crate) running: Vec<JobId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(attempts: &[(&str, u32, bool)]) -> Node {
        let (outbound, _) = mpsc::unbounded_channel();
        let mut node = Node::new(
            Registration {
                id: NodeId::from("n1"),
                labels: BTreeMap::new(),
                slots: 4,
                memory_bytes: 1000,
                receipt_key: None,
            },
            Connection {
                id: 1,
                outbound,
                closed: CancellationToken::new(),
            },
            Instant::now(),
        );
        for &(job, attempt, cancelled) in attempts {
            node.attempts.insert(
                (JobId::from(job.to_owned()), attempt),
                Occupancy {
                    memory_bytes: 100,
                    priority: 50,
                    preemptible: true,
                    cancelled,
                    unlisted: 0,
                    sequence: 0,
                },
            );
        }
        node
    }

    fn running(list: &[&str]) -> Vec<RunningAttempt> {
        list.iter().map(|s| RunningAttempt::parse(s)).collect()
    }

    #[test]
    fn parses_attempt_ids() {
        let check = |text: &str, job: &str, attempt: Option<u32>| {
            assert_eq!(
                RunningAttempt::parse(text),
                RunningAttempt {
                    job: JobId::from(job.to_owned()),
                    attempt
                },
                "{text}"
            );
        };
        let id = "0190b6c2-7d8e-7abc-8def-0123456789ab";
        check(id, id, None);
        check(&format!("{id}/2"), id, Some(2));
        check(&format!("{id}:3"), id, Some(3));
        check(&format!("{id}#4"), id, Some(4));
        check("job/x", "job/x", None);
    }

    #[test]
    fn an_attempt_is_lost_after_two_heartbeats_without_it() {
        let mut n = node(&[("a", 1, false), ("b", 1, true), ("c", 2, false)]);
        // the cancelled attempt's room is reused at once
        assert_eq!(n.used(), (2, 200));
        assert_eq!(n.view().residents.len(), 2);

        // "c" listed without its attempt number still counts; an unknown attempt is reported
        let first = n.reconcile(&running(&["c", "d/5"]), 0);
        assert_eq!(
            first,
            Reconciled {
                unknown: vec![(JobId::from("d".to_owned()), 5)],
                ..Reconciled::default()
            }
        );
        assert_eq!(n.attempts.len(), 3);

        let second = n.reconcile(&running(&["c/2"]), 0);
        assert_eq!(second.lost, vec![(JobId::from("a".to_owned()), 1)]);
        assert_eq!(second.released, 1);
        assert_eq!(n.attempts.len(), 1);
        assert_eq!(n.used(), (1, 100));
    }

    #[test]
    fn being_listed_again_resets_the_count() {
        let mut n = node(&[("a", 1, false)]);
        n.reconcile(&[], 0);
        n.reconcile(&running(&["a/1"]), 0);
        assert!(n.reconcile(&[], 0).lost.is_empty());
        assert_eq!(n.reconcile(&[], 0).lost.len(), 1);
    }

    #[test]
    fn heartbeats_sent_before_an_assignment_arrived_do_not_count_against_it() {
        let mut n = node(&[]);
        let assignment = |job: &str| {
            Box::new(Assignment {
                job: JobId::from(job.to_owned()),
                attempt: 1,
                module: "sha256:0000000000000000000000000000000000000000000000000000000000000000"
                    .parse()
                    .expect("digest"),
                capabilities: vauban_core::Capabilities::default(),
                stdin: Vec::new().into(),
                program: "job".into(),
                grant: None,
            })
        };
        for job in ["x", "y"] {
            n.attempts.insert(
                (JobId::from(job.to_owned()), 1),
                Occupancy {
                    memory_bytes: 0,
                    priority: 50,
                    preemptible: true,
                    cancelled: false,
                    unlisted: 0,
                    sequence: 0,
                },
            );
            n.assign(assignment(job));
        }
        // The host had received only the first assignment: y is not missing, x is.
        assert!(n.reconcile(&running(&[]), 1).lost.is_empty());
        assert_eq!(n.reconcile(&running(&[]), 1).lost.len(), 1);
        assert_eq!(n.attempts.len(), 1, "y is kept");
        // Heartbeats that acknowledge y and still omit it count.
        assert!(n.reconcile(&running(&[]), 2).lost.is_empty());
        assert_eq!(n.reconcile(&running(&[]), 2).lost.len(), 1);
        assert!(n.attempts.is_empty());
    }
}
