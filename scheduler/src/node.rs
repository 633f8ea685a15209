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
use crate::placement::NodeView;

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
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Registration {
    pub(crate) id: NodeId,
    pub(crate) labels: BTreeMap<String, String>,
    /// Attempts it runs at once.
    pub(crate) slots: u32,
    /// Memory it offers to jobs, bytes.
    pub(crate) memory_bytes: u64,
}

/// Whether a node can be given work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NodeState {
    /// Connected and heartbeating.
    Ready,
    /// Disconnected or silent for too long; its jobs were requeued.
    Down,
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
}

/// One attempt of a job, given to a host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Assignment {
    pub(crate) job: JobId,
    pub(crate) attempt: u32,
    pub(crate) module: ModuleDigest,
    pub(crate) capabilities: Capabilities,
    pub(crate) stdin: Arc<[u8]>,
    pub(crate) program: String,
}

/// What a host sends after registering.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum HostEvent {
    /// The host is alive and runs these attempts.
    Heartbeat {
        running: Vec<RunningAttempt>,
        /// Assignments the host had received on this stream when it sent the heartbeat.
        assignments_received: u64,
    },
    /// Output of a running attempt.
    Output {
        job: JobId,
        attempt: u32,
        chunk: OutputChunk,
    },
    /// An attempt ended.
    Finished {
        job: JobId,
        attempt: u32,
        end: RunEnd,
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
    /// Cancelled by a client: the job is already terminal, but the slot stays counted until the
    /// host reports the attempt finished or stops listing it.
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

    /// What placement needs to know.
    pub(crate) fn view(&self) -> NodeView {
        let used_memory: u64 = self.attempts.values().map(|o| o.memory_bytes).sum();
        let used_slots = u32::try_from(self.attempts.len()).unwrap_or(u32::MAX);
        NodeView {
            id: self.registration.id.clone(),
            labels: self.registration.labels.clone(),
            ready: self.state == NodeState::Ready,
            free_slots: self.registration.slots.saturating_sub(used_slots),
            free_memory_bytes: self.registration.memory_bytes.saturating_sub(used_memory),
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
        NodeSummary {
            registration: self.registration.clone(),
            state: self.state,
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
        assert_eq!(n.view().free_slots, 1);
        assert_eq!(n.view().free_memory_bytes, 700);

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
        assert_eq!(n.view().free_slots, 3);
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
            })
        };
        for job in ["x", "y"] {
            n.attempts.insert(
                (JobId::from(job.to_owned()), 1),
                Occupancy {
                    memory_bytes: 0,
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
