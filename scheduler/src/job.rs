//! Jobs as the scheduler keeps them: what was asked ([`JobSpec`]), where it stands
//! ([`JobState`]), and the [`JobRecord`] stored for each, with the transitions between states.
//!
//! These are domain types: the gRPC edge converts them to and from protobuf, the store keeps
//! them as JSON.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use vauban_core::{Capabilities, ModuleDigest, Outcome};
use vauban_proto::convert::RunResult;

use crate::node::NodeId;

/// A job's id: a UUID v7 string, so that ids sort in submission order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(String);

impl JobId {
    /// A fresh id. UUID v7 ids made by one process are ordered by creation, and across restarts
    /// by their millisecond timestamp.
    pub(crate) fn generate() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn into_string(self) -> String {
        self.0
    }
}

impl From<String> for JobId {
    fn from(id: String) -> Self {
        Self(id)
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a client asked to run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct JobSpec {
    /// A human name; may be empty.
    pub(crate) name: String,
    /// The module to run; it was uploaded (and its signature verified) before the job was
    /// accepted.
    pub(crate) module: ModuleDigest,
    /// What the guest may use, with every limit filled in.
    pub(crate) capabilities: Capabilities,
    /// The guest's stdin. Stored apart from the record (it is written once, while the record is
    /// rewritten at every transition), and shared because every clone of a record carries it.
    #[serde(skip)]
    pub(crate) stdin: Arc<[u8]>,
    /// Labels a node must carry, with these values, to run it.
    pub(crate) label_selector: BTreeMap<String, String>,
}

impl JobSpec {
    /// `argv[0]` for the guest: the job's name, or `job`.
    pub(crate) fn program(&self) -> &str {
        if self.name.is_empty() {
            "job"
        } else {
            &self.name
        }
    }
}

/// Where a job stands. Pending → Running → Completed | Failed | Cancelled; a running job whose
/// node is lost goes back to Pending.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum JobState {
    /// Accepted, waiting for a node.
    Pending,
    /// Assigned to a node.
    Running,
    /// Ran to its end, whatever the exit code, trap or limit that ended it.
    Completed,
    /// Could not run: refused by the host, or a capability was denied by the sandbox.
    Failed,
    /// Cancelled by a client (or the guest's run reported cancelled).
    Cancelled,
}

impl JobState {
    /// True for the states a job never leaves.
    pub(crate) fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

/// How a host says an attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RunEnd {
    /// The guest ran; this is its result.
    Ran(RunResult),
    /// The host would not run it (signature, fetch failure): why.
    Refused(String),
}

/// Which output stream a chunk belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OutputStream {
    Stdout,
    Stderr,
}

/// A piece of a running guest's output, forwarded live to watchers and never stored (the final
/// result carries the bounded output).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OutputChunk {
    pub(crate) stream: OutputStream,
    pub(crate) data: Vec<u8>,
}

/// Everything the scheduler knows about one job; what the store keeps under the job's id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct JobRecord {
    pub(crate) id: JobId,
    pub(crate) spec: JobSpec,
    pub(crate) state: JobState,
    /// The node it runs on (Running) or last ran on (terminal states); `None` while pending.
    pub(crate) node: Option<NodeId>,
    /// How many times it was assigned; the current (or last) attempt's number.
    pub(crate) attempts: u32,
    /// Set when the guest ran to an end.
    #[serde(with = "stored_result")]
    pub(crate) result: Option<RunResult>,
    /// Why it is where it is (requeued, failed, …); persisted with the transition.
    pub(crate) message: String,
    /// Unix milliseconds.
    pub(crate) submitted_at_ms: u64,
    /// Unix milliseconds; set on entering a terminal state.
    pub(crate) finished_at_ms: Option<u64>,
    /// Why a pending job does not fit any node right now. Recomputed at every scheduling pass
    /// and never persisted: it changes with the cluster, not with the job.
    #[serde(skip)]
    pub(crate) waiting: Option<String>,
}

impl JobRecord {
    /// A job just accepted.
    pub(crate) fn new(id: JobId, spec: JobSpec, now_ms: u64) -> Self {
        Self {
            id,
            spec,
            state: JobState::Pending,
            node: None,
            attempts: 0,
            result: None,
            message: String::new(),
            submitted_at_ms: now_ms,
            finished_at_ms: None,
            waiting: None,
        }
    }

    /// The message clients see: the persisted reason, then the current placement explanation.
    pub(crate) fn display_message(&self) -> String {
        match (self.message.is_empty(), &self.waiting) {
            (_, None) => self.message.clone(),
            (true, Some(waiting)) => waiting.clone(),
            (false, Some(waiting)) => format!("{}; {waiting}", self.message),
        }
    }

    /// True when `node` is running `attempt` of this job, as far as the scheduler knows.
    pub(crate) fn is_running_on(&self, node: &NodeId, attempt: u32) -> bool {
        self.state == JobState::Running
            && self.node.as_ref() == Some(node)
            && self.attempts == attempt
    }

    /// The record once assigned to `node`, as its next attempt.
    pub(crate) fn assigned(&self, node: NodeId) -> Self {
        Self {
            state: JobState::Running,
            node: Some(node),
            attempts: self.attempts + 1,
            message: String::new(),
            waiting: None,
            ..self.clone()
        }
    }

    /// The record back in the queue, attempts kept.
    pub(crate) fn requeued(&self, why: String) -> Self {
        Self {
            state: JobState::Pending,
            node: None,
            message: why,
            waiting: None,
            ..self.clone()
        }
    }

    /// The record cancelled by a client.
    pub(crate) fn cancelled(&self, now_ms: u64) -> Self {
        let message = match self.state {
            JobState::Running => "cancelled while running".to_owned(),
            _ => "cancelled before it ran".to_owned(),
        };
        Self {
            state: JobState::Cancelled,
            message,
            finished_at_ms: Some(now_ms),
            waiting: None,
            ..self.clone()
        }
    }

    /// The record once its running attempt ended. A refusal or a denied capability fails the
    /// job; a cancelled run cancels it; any other end (any exit code, trap, timeout, out of
    /// memory or fuel) completes it: a guest's failure is data, not a scheduler failure.
    pub(crate) fn finished(&self, end: RunEnd, now_ms: u64) -> Self {
        let node = self
            .node
            .as_ref()
            .map_or_else(|| "?".to_owned(), ToString::to_string);
        let (state, message, result) = match end {
            RunEnd::Refused(why) => (
                JobState::Failed,
                format!("refused by node {node}: {why}"),
                None,
            ),
            RunEnd::Ran(result) => {
                let state = match result.outcome {
                    Outcome::Denied { .. } => JobState::Failed,
                    Outcome::Cancelled => JobState::Cancelled,
                    _ => JobState::Completed,
                };
                (state, result.outcome.to_string(), Some(result))
            }
        };
        Self {
            state,
            message,
            result,
            finished_at_ms: Some(now_ms),
            waiting: None,
            ..self.clone()
        }
    }
}

/// Run results as stored: output bytes in hex, because they are arbitrary bytes and
/// `CapturedOutput`'s own serde form is lossy text (made for reports).
mod stored_result {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use vauban_core::{CapturedOutput, Outcome};
    use vauban_proto::convert::RunResult;

    #[derive(Serialize, Deserialize)]
    struct Stored {
        outcome: Outcome,
        stdout_hex: String,
        stdout_dropped: u64,
        stderr_hex: String,
        stderr_dropped: u64,
        run_time: Duration,
        fuel_consumed: Option<u64>,
        peak_memory_bytes: u64,
        denials: Vec<String>,
    }

    pub(super) fn serialize<S: Serializer>(r: &Option<RunResult>, s: S) -> Result<S::Ok, S::Error> {
        r.as_ref()
            .map(|r| Stored {
                outcome: r.outcome.clone(),
                stdout_hex: hex::encode(&r.stdout.bytes),
                stdout_dropped: r.stdout.dropped,
                stderr_hex: hex::encode(&r.stderr.bytes),
                stderr_dropped: r.stderr.dropped,
                run_time: r.run_time,
                fuel_consumed: r.fuel_consumed,
                peak_memory_bytes: r.peak_memory_bytes,
                denials: r.denials.clone(),
            })
            .serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<RunResult>, D::Error> {
        let Some(stored) = Option::<Stored>::deserialize(d)? else {
            return Ok(None);
        };
        let Stored {
            outcome,
            stdout_hex,
            stdout_dropped,
            stderr_hex,
            stderr_dropped,
            run_time,
            fuel_consumed,
            peak_memory_bytes,
            denials,
        } = stored;
        let bytes = |h: &str| hex::decode(h).map_err(serde::de::Error::custom);
        Ok(Some(RunResult {
            outcome,
            stdout: CapturedOutput {
                bytes: bytes(&stdout_hex)?,
                dropped: stdout_dropped,
            },
            stderr: CapturedOutput {
                bytes: bytes(&stderr_hex)?,
                dropped: stderr_dropped,
            },
            run_time,
            fuel_consumed,
            peak_memory_bytes,
            denials,
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use vauban_core::{CapturedOutput, Limits};

    use super::*;

    fn record() -> JobRecord {
        let spec = JobSpec {
            name: String::new(),
            module: ModuleDigest::of(b"m"),
            capabilities: Capabilities {
                limits: Limits::DEFAULT,
                ..Capabilities::default()
            },
            stdin: Arc::from(&b"in"[..]),
            label_selector: BTreeMap::new(),
        };
        JobRecord::new(JobId::from("j".to_owned()), spec, 1)
    }

    fn result(outcome: Outcome) -> RunResult {
        RunResult {
            outcome,
            stdout: CapturedOutput {
                bytes: vec![0, 159, 146, 150, b'\n'],
                dropped: 2,
            },
            stderr: CapturedOutput::default(),
            run_time: Duration::from_micros(1500),
            fuel_consumed: Some(9),
            peak_memory_bytes: 65536,
            denials: vec!["socket 10.0.0.1:80".into()],
        }
    }

    fn check(end: RunEnd, state: JobState, message: &str) {
        let running = record().assigned(NodeId::from("n1"));
        let done = running.finished(end, 5);
        assert_eq!(done.state, state);
        assert_eq!(done.message, message);
        assert_eq!(done.finished_at_ms, Some(5));
    }

    #[test]
    fn ends_map_to_states() {
        check(
            RunEnd::Ran(result(Outcome::Exited { code: 3 })),
            JobState::Completed,
            "exited with code 3",
        );
        check(
            RunEnd::Ran(result(Outcome::OutOfFuel { budget: 7 })),
            JobState::Completed,
            "out of fuel: budget of 7 exhausted",
        );
        check(
            RunEnd::Ran(result(Outcome::Denied {
                capability: "directory /etc".into(),
                reason: "outside the allowed roots".into(),
            })),
            JobState::Failed,
            "denied directory /etc: outside the allowed roots",
        );
        check(
            RunEnd::Ran(result(Outcome::Cancelled)),
            JobState::Cancelled,
            "cancelled",
        );
        check(
            RunEnd::Refused("module is not signed".into()),
            JobState::Failed,
            "refused by node n1: module is not signed",
        );
    }

    #[test]
    fn records_round_trip_through_json_with_binary_output() {
        let done = record()
            .assigned(NodeId::from("n1"))
            .finished(RunEnd::Ran(result(Outcome::Exited { code: 0 })), 9);
        let json = serde_json::to_vec(&done).expect("encode");
        let back: JobRecord = serde_json::from_slice(&json).expect("decode");
        // stdin is stored apart from the record
        assert!(back.spec.stdin.is_empty());
        assert_eq!(
            JobRecord {
                spec: JobSpec {
                    stdin: done.spec.stdin.clone(),
                    ..back.spec
                },
                ..back
            },
            done
        );
    }

    #[test]
    fn pending_message_joins_reason_and_explanation() {
        let mut job = record().requeued("node n1 lost; requeued".into());
        assert_eq!(job.display_message(), "node n1 lost; requeued");
        job.waiting = Some("no node fits: 1 down".into());
        assert_eq!(
            job.display_message(),
            "node n1 lost; requeued; no node fits: 1 down"
        );
    }
}
