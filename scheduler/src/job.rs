//! Jobs as the scheduler keeps them: what was asked ([`JobSpec`]), where it stands
//! ([`JobState`]), and the [`JobRecord`] stored for each, with the transitions between states.
//!
//! These are domain types: the gRPC edge converts them to and from protobuf, the store keeps
//! them as JSON.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vauban_core::{Capabilities, ModuleDigest, Outcome};
use vauban_proto::convert::RunResult;

use crate::node::NodeId;
use crate::placement::PlacementSpec;

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

/// The namespace jobs and modules belong to when none is named.
pub(crate) const DEFAULT_NAMESPACE: &str = "default";

/// How a job runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub(crate) enum JobKind {
    /// Runs to completion once; a lost attempt runs again elsewhere.
    Batch,
    /// `replicas` instances kept running, restarted per the restart policy.
    Service { replicas: u32 },
    /// One instance on every eligible node that passes the constraints, nodes joining later
    /// included.
    System,
}

impl JobKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Batch => "batch",
            Self::Service { .. } => "service",
            Self::System => "system",
        }
    }
}

/// How an instance of a service or system job that ended is started again: after
/// `initial_delay`, doubled at each restart up to `max_delay`; after `attempts` restarts of one
/// instance the job fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RestartPolicy {
    pub(crate) attempts: u32,
    pub(crate) initial_delay: Duration,
    pub(crate) max_delay: Duration,
}

impl RestartPolicy {
    pub(crate) const DEFAULT: Self = Self {
        attempts: 3,
        initial_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(60),
    };

    /// The delay before restart number `restart` (1 for the first).
    pub(crate) fn delay(&self, restart: u32) -> Duration {
        let doublings = restart.saturating_sub(1).min(32);
        self.initial_delay
            .saturating_mul(1 << doublings.min(31))
            .min(self.max_delay)
    }
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The priority of a job whose spec names none.
pub(crate) const DEFAULT_PRIORITY: u8 = 50;

/// What a client asked to run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct JobSpec {
    /// A human name; may be empty.
    pub(crate) name: String,
    /// The tenancy unit.
    pub(crate) namespace: String,
    /// The module to run; it was uploaded into the namespace (and its signature verified)
    /// before the job was accepted.
    pub(crate) module: ModuleDigest,
    /// What the guest may use, with every limit filled in.
    pub(crate) capabilities: Capabilities,
    /// The guest's stdin. Stored apart from the record (it is written once, while the record is
    /// rewritten at every transition), and shared because every clone of a record carries it.
    #[serde(skip)]
    pub(crate) stdin: Arc<[u8]>,
    pub(crate) kind: JobKind,
    pub(crate) restart: RestartPolicy,
    /// 0..=100: higher is placed first and may preempt lower-priority batch work.
    pub(crate) priority: u8,
    /// Constraints, affinities and spreads; in policy mode also the node classes its grant
    /// allows it on, set at admission.
    pub(crate) placement: PlacementSpec,
    /// The capability grant as the client sent it (a DSSE envelope, JSON), sent with every
    /// assignment so that each host checks it itself. Required in policy mode.
    // `default`: job records stored before this field existed still read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) grant: Option<String>,
    /// Policy mode: who authorised the job, set at admission from the grant it verified, for
    /// the audit log (so the state task need not verify the grant again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) authorized: Option<Authorization>,
}

/// The grant a job was admitted under and the authorizer keys whose signatures on it counted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Authorization {
    /// The grant's id.
    pub(crate) grant: String,
    /// The authorizer keys that counted.
    pub(crate) by: Vec<vauban_core::KeyId>,
    /// When the grant expires (its `not_after`), Unix milliseconds: the job fails then. Absent
    /// in records written before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) expires_at_ms: Option<u64>,
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

/// Where a job stands. Batch: Pending → Running → Completed | Failed | Cancelled, back to
/// Pending when its attempt is lost or preempted. Service and system jobs are Running while an
/// instance runs, Pending while none does, and end only when cancelled or when an instance
/// exhausts its restarts (Failed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum JobState {
    /// Accepted, nothing running.
    Pending,
    /// At least one instance running.
    Running,
    /// Ran to its end, whatever the exit code, trap or limit that ended it.
    Completed,
    /// Could not run (refused, denied), or a service instance exhausted its restarts.
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

/// Where one attempt stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum AllocState {
    Running,
    /// Ran to its end (any exit code, trap or limit).
    Completed,
    /// Refused by the host or denied a capability.
    Failed,
    /// Its node went down or stopped running it without a result.
    Lost,
    /// Stopped to make room for higher-priority work.
    Preempted,
    /// Stopped by the scheduler: drain, or its job failed.
    Stopped,
    /// Its job was cancelled (or the guest's run reported cancelled).
    Cancelled,
}

/// One attempt of a job on one node. `attempt` numbers grow by one per job and are the
/// fencing generation: only an attempt recorded as Running on the node that reports it is
/// believed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Allocation {
    pub(crate) attempt: u32,
    /// Which instance: the replica index of a service, 0 for batch and system jobs (a system
    /// job's instances are told apart by node).
    pub(crate) instance: u32,
    pub(crate) node: NodeId,
    pub(crate) state: AllocState,
    /// Unix milliseconds.
    pub(crate) started_at_ms: u64,
    pub(crate) finished_at_ms: Option<u64>,
    /// How it ended.
    pub(crate) message: String,
    /// Why its node was chosen.
    pub(crate) placement: String,
    /// The result a fenced attempt reported after it was replaced: never the job's result.
    pub(crate) stale_result: Option<String>,
    /// Memory reserved on the node, bytes.
    pub(crate) memory_bytes: u64,
}

impl Allocation {
    /// True for the ends that count as a restart of a service or system instance: it ran (or
    /// was refused) and stopped by itself, as opposed to being lost, preempted or stopped.
    pub(crate) fn ended_by_itself(&self) -> bool {
        matches!(self.state, AllocState::Completed | AllocState::Failed)
    }
}

/// When the next instance of a service or system slot may start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Restart {
    /// Now.
    Now,
    /// Not before this Unix millisecond.
    At(u64),
    /// The instance ended by itself more times than the policy allows: this many.
    Exhausted(u32),
}

/// How a host says an attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RunEnd {
    /// The guest ran; this is its result.
    Ran(RunResult),
    /// The host would not run it (signature, fetch failure): why.
    Refused(String),
}

impl RunEnd {
    /// One line, for the allocation's message or a stale result.
    pub(crate) fn summary(&self) -> String {
        match self {
            Self::Ran(result) => result.outcome.to_string(),
            Self::Refused(why) => format!("refused: {why}"),
        }
    }
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
    /// Every attempt, oldest first; the i-th has attempt number i + 1.
    pub(crate) allocations: Vec<Allocation>,
    /// Set when a batch job's guest ran to an end.
    #[serde(with = "stored_result")]
    pub(crate) result: Option<RunResult>,
    /// Why it is where it is (requeued, failed, …); persisted with the transition.
    pub(crate) message: String,
    /// Unix milliseconds.
    pub(crate) submitted_at_ms: u64,
    /// Unix milliseconds; set on entering a terminal state.
    pub(crate) finished_at_ms: Option<u64>,
    /// Why an instance waits, when one does. Recomputed at every scheduling pass and never
    /// persisted: it changes with the cluster, not with the job.
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
            allocations: Vec::new(),
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

    /// The number the next attempt gets.
    pub(crate) fn next_attempt(&self) -> u32 {
        u32::try_from(self.allocations.len())
            .unwrap_or(u32::MAX)
            .saturating_add(1)
    }

    pub(crate) fn allocation(&self, attempt: u32) -> Option<&Allocation> {
        let index = usize::try_from(attempt).ok()?.checked_sub(1)?;
        self.allocations.get(index)
    }

    fn allocation_mut(&mut self, attempt: u32) -> Option<&mut Allocation> {
        let index = usize::try_from(attempt).ok()?.checked_sub(1)?;
        self.allocations.get_mut(index)
    }

    /// The attempts running now.
    pub(crate) fn running(&self) -> impl Iterator<Item = &Allocation> {
        self.allocations
            .iter()
            .filter(|a| a.state == AllocState::Running)
    }

    /// The node of the latest attempt.
    pub(crate) fn last_node(&self) -> Option<&NodeId> {
        self.allocations.last().map(|a| &a.node)
    }

    /// True when `node` is running `attempt` of this job, as far as the scheduler knows.
    pub(crate) fn is_running_on(&self, node: &NodeId, attempt: u32) -> bool {
        !self.state.is_terminal()
            && self
                .allocation(attempt)
                .is_some_and(|a| a.state == AllocState::Running && a.node == *node)
    }

    /// The state that follows from the allocations, for a job that is not terminal.
    fn settle_state(&mut self) {
        if !self.state.is_terminal() {
            self.state = if self.running().next().is_some() {
                JobState::Running
            } else {
                JobState::Pending
            };
        }
    }

    /// The record with a new attempt of `instance` on `node`.
    pub(crate) fn assigned(
        &self,
        instance: u32,
        node: NodeId,
        placement: String,
        now_ms: u64,
    ) -> Self {
        let mut job = self.clone();
        job.allocations.push(Allocation {
            attempt: self.next_attempt(),
            instance,
            node,
            state: AllocState::Running,
            started_at_ms: now_ms,
            finished_at_ms: None,
            message: String::new(),
            placement,
            stale_result: None,
            memory_bytes: self.spec.capabilities.limits.memory_bytes,
        });
        job.message.clear();
        job.waiting = None;
        job.settle_state();
        job
    }

    /// The record once `attempt` stopped without a result of its own (lost, preempted,
    /// stopped): a batch job goes back to the queue, a service or system instance is started
    /// again (at once: this is not a restart of the guest's doing).
    pub(crate) fn interrupted(
        &self,
        attempt: u32,
        state: AllocState,
        why: String,
        now_ms: u64,
    ) -> Self {
        let mut job = self.clone();
        if let Some(a) = job.allocation_mut(attempt) {
            a.state = state;
            a.finished_at_ms = Some(now_ms);
            a.message.clone_from(&why);
        }
        job.message = format!("attempt {attempt}: {why}");
        job.waiting = None;
        job.settle_state();
        job
    }

    /// The record cancelled by a client: every running attempt is cancelled with it.
    pub(crate) fn cancelled(&self, now_ms: u64) -> Self {
        let mut job = self.clone();
        let message = match self.state {
            JobState::Running => "cancelled while running",
            _ => "cancelled before it ran",
        };
        for a in &mut job.allocations {
            if a.state == AllocState::Running {
                a.state = AllocState::Cancelled;
                a.finished_at_ms = Some(now_ms);
                a.message = "job cancelled".to_owned();
            }
        }
        job.state = JobState::Cancelled;
        job.message = message.to_owned();
        job.finished_at_ms = Some(now_ms);
        job.waiting = None;
        job
    }

    /// The record once its running `attempt` ended.
    ///
    /// A batch job ends with it: a refusal or a denied capability fails the job; a cancelled
    /// run cancels it; any other end (any exit code, trap, timeout, out of memory or fuel)
    /// completes it: a guest's failure is data, not a scheduler failure.
    ///
    /// A service or system instance that ends is restarted (see [`JobRecord::restart`]); the
    /// job's state follows from what still runs.
    pub(crate) fn finished(&self, attempt: u32, end: RunEnd, now_ms: u64) -> Self {
        let mut job = self.clone();
        let node = job
            .allocation(attempt)
            .map_or_else(|| "?".to_owned(), |a| a.node.to_string());
        let (alloc_state, message, result) = match end {
            RunEnd::Refused(why) => (
                AllocState::Failed,
                format!("refused by node {node}: {why}"),
                None,
            ),
            RunEnd::Ran(result) => {
                let state = match result.outcome {
                    Outcome::Denied { .. } => AllocState::Failed,
                    Outcome::Cancelled => AllocState::Cancelled,
                    _ => AllocState::Completed,
                };
                (state, result.outcome.to_string(), Some(result))
            }
        };
        if let Some(a) = job.allocation_mut(attempt) {
            a.state = alloc_state;
            a.finished_at_ms = Some(now_ms);
            a.message.clone_from(&message);
        }
        job.waiting = None;
        match job.spec.kind {
            JobKind::Batch => {
                job.state = match alloc_state {
                    AllocState::Failed => JobState::Failed,
                    AllocState::Cancelled => JobState::Cancelled,
                    _ => JobState::Completed,
                };
                job.message = message;
                job.result = result;
                job.finished_at_ms = Some(now_ms);
            }
            JobKind::Service { .. } | JobKind::System => {
                job.message = format!("attempt {attempt} ended: {message}");
                job.settle_state();
            }
        }
        job
    }

    /// The record with a stale result noted on its fenced attempt, or `None` if there is
    /// nothing to note (no such attempt, or a stale result already noted).
    pub(crate) fn with_stale_result(&self, attempt: u32, end: &RunEnd) -> Option<Self> {
        let alloc = self.allocation(attempt)?;
        // Only an attempt the scheduler ended has a result still to come; a duplicate report
        // of a recorded end is not news.
        let fenced = matches!(
            alloc.state,
            AllocState::Lost | AllocState::Preempted | AllocState::Stopped | AllocState::Cancelled
        );
        if !fenced || alloc.stale_result.is_some() {
            return None;
        }
        let mut job = self.clone();
        if let Some(a) = job.allocation_mut(attempt) {
            a.stale_result = Some(end.summary());
        }
        Some(job)
    }

    /// The record failed because an instance exhausted its restarts; the attempts still
    /// running are stopped.
    pub(crate) fn failed(&self, why: String, now_ms: u64) -> Self {
        let mut job = self.clone();
        for a in &mut job.allocations {
            if a.state == AllocState::Running {
                a.state = AllocState::Stopped;
                a.finished_at_ms = Some(now_ms);
                a.message = "job failed".to_owned();
            }
        }
        job.state = JobState::Failed;
        job.message = why;
        job.finished_at_ms = Some(now_ms);
        job.waiting = None;
        job
    }

    /// When an instance of a service or system job, whose attempts are those of `history`
    /// (oldest first, none running), may start again.
    pub(crate) fn restart<'a>(&self, history: impl Iterator<Item = &'a Allocation>) -> Restart {
        let mut restarts = 0;
        let mut last_end = None;
        for a in history.filter(|a| a.ended_by_itself()) {
            restarts += 1;
            last_end = a.finished_at_ms;
        }
        if restarts == 0 {
            return Restart::Now;
        }
        if restarts > self.spec.restart.attempts {
            return Restart::Exhausted(restarts);
        }
        let delay = self.spec.restart.delay(restarts);
        let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        Restart::At(last_end.unwrap_or(0).saturating_add(delay_ms))
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

    fn record(kind: JobKind) -> JobRecord {
        let spec = JobSpec {
            name: String::new(),
            namespace: DEFAULT_NAMESPACE.to_owned(),
            module: ModuleDigest::of(b"m"),
            capabilities: Capabilities {
                limits: Limits::DEFAULT,
                ..Capabilities::default()
            },
            stdin: Arc::from(&b"in"[..]),
            kind,
            restart: RestartPolicy {
                attempts: 2,
                initial_delay: Duration::from_millis(100),
                max_delay: Duration::from_millis(250),
            },
            priority: DEFAULT_PRIORITY,
            placement: PlacementSpec::default(),
            grant: None,
            authorized: None,
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

    fn check(end: RunEnd, state: JobState, alloc: AllocState, message: &str) {
        let running = record(JobKind::Batch).assigned(0, NodeId::from("n1"), String::new(), 2);
        assert_eq!(running.state, JobState::Running);
        let done = running.finished(1, end, 5);
        assert_eq!(done.state, state);
        assert_eq!(done.message, message);
        assert_eq!(done.finished_at_ms, Some(5));
        assert_eq!(done.allocations[0].state, alloc);
    }

    #[test]
    fn ends_map_to_states() {
        check(
            RunEnd::Ran(result(Outcome::Exited { code: 3 })),
            JobState::Completed,
            AllocState::Completed,
            "exited with code 3",
        );
        check(
            RunEnd::Ran(result(Outcome::OutOfFuel { budget: 7 })),
            JobState::Completed,
            AllocState::Completed,
            "out of fuel: budget of 7 exhausted",
        );
        check(
            RunEnd::Ran(result(Outcome::Denied {
                capability: "directory /etc".into(),
                reason: "outside the allowed roots".into(),
            })),
            JobState::Failed,
            AllocState::Failed,
            "denied directory /etc: outside the allowed roots",
        );
        check(
            RunEnd::Ran(result(Outcome::Cancelled)),
            JobState::Cancelled,
            AllocState::Cancelled,
            "cancelled",
        );
        check(
            RunEnd::Refused("module is not signed".into()),
            JobState::Failed,
            AllocState::Failed,
            "refused by node n1: module is not signed",
        );
    }

    #[test]
    fn attempts_are_numbered_and_an_interrupted_batch_job_waits_again() {
        let job = record(JobKind::Batch).assigned(0, NodeId::from("n1"), String::new(), 2);
        let lost = job.interrupted(1, AllocState::Lost, "node n1 lost".into(), 3);
        assert_eq!(lost.state, JobState::Pending);
        assert_eq!(lost.message, "attempt 1: node n1 lost");
        let again = lost.assigned(0, NodeId::from("n2"), String::new(), 4);
        assert_eq!(again.next_attempt(), 3);
        assert!(again.is_running_on(&NodeId::from("n2"), 2));
        assert!(!again.is_running_on(&NodeId::from("n1"), 1), "fenced");
        // the fenced attempt's late result is noted, once, and is not the job's
        let end = RunEnd::Ran(result(Outcome::Exited { code: 0 }));
        let noted = again.with_stale_result(1, &end).expect("noted");
        assert_eq!(
            noted.allocations[0].stale_result.as_deref(),
            Some("exited with code 0")
        );
        assert_eq!(noted.result, None);
        assert_eq!(noted.state, JobState::Running);
        assert!(noted.with_stale_result(1, &end).is_none());
    }

    #[test]
    fn a_service_instance_restarts_with_backoff_then_exhausts() {
        let n1 = NodeId::from("n1");
        let mut job = record(JobKind::Service { replicas: 2 });
        assert_eq!(job.restart(job.allocations.iter()), Restart::Now);
        let end = || RunEnd::Ran(result(Outcome::Exited { code: 1 }));
        job = job.assigned(0, n1.clone(), String::new(), 0);
        job = job.assigned(1, n1.clone(), String::new(), 0);
        job = job.finished(1, end(), 1000);
        assert_eq!(job.state, JobState::Running, "instance 1 still runs");
        let history = |job: &JobRecord| {
            let job = job.clone();
            move || {
                job.allocations
                    .clone()
                    .into_iter()
                    .filter(|a| a.instance == 0)
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(job.restart(history(&job)().iter()), Restart::At(1100));
        job = job.assigned(0, n1.clone(), String::new(), 1100);
        job = job.finished(3, end(), 2000);
        assert_eq!(job.restart(history(&job)().iter()), Restart::At(2200));
        // a lost attempt is not a restart of the guest's doing
        job = job.assigned(0, n1.clone(), String::new(), 2200);
        job = job.interrupted(4, AllocState::Lost, "node n1 lost".into(), 2300);
        assert_eq!(job.restart(history(&job)().iter()), Restart::At(2200));
        job = job.assigned(0, n1.clone(), String::new(), 2300);
        job = job.finished(5, end(), 3000);
        assert_eq!(job.restart(history(&job)().iter()), Restart::Exhausted(3));
        let failed = job.failed("instance 0 exhausted its restarts".into(), 3001);
        assert_eq!(failed.state, JobState::Failed);
        assert_eq!(failed.allocations[1].state, AllocState::Stopped);
        // the delay doubles and is capped
        let policy = job.spec.restart;
        assert_eq!(policy.delay(1), Duration::from_millis(100));
        assert_eq!(policy.delay(2), Duration::from_millis(200));
        assert_eq!(policy.delay(3), Duration::from_millis(250));
        assert_eq!(policy.delay(60), Duration::from_millis(250));
    }

    #[test]
    fn cancelling_cancels_every_running_attempt() {
        let job = record(JobKind::System)
            .assigned(0, NodeId::from("n1"), String::new(), 1)
            .assigned(0, NodeId::from("n2"), String::new(), 1);
        let cancelled = job.cancelled(2);
        assert_eq!(cancelled.state, JobState::Cancelled);
        assert!(
            cancelled
                .allocations
                .iter()
                .all(|a| a.state == AllocState::Cancelled)
        );
    }

    #[test]
    fn records_round_trip_through_json_with_binary_output() {
        let done = record(JobKind::Service { replicas: 3 })
            .assigned(0, NodeId::from("n1"), "best".into(), 2)
            .finished(1, RunEnd::Ran(result(Outcome::Exited { code: 0 })), 9);
        let done = JobRecord {
            result: Some(result(Outcome::Exited { code: 0 })),
            ..done
        };
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
        let mut job = record(JobKind::Batch).assigned(0, NodeId::from("n1"), String::new(), 1);
        job = job.interrupted(1, AllocState::Lost, "node n1 lost".into(), 2);
        assert_eq!(job.display_message(), "attempt 1: node n1 lost");
        job.waiting = Some("no node fits: 1 down".into());
        assert_eq!(
            job.display_message(),
            "attempt 1: node n1 lost; no node fits: 1 down"
        );
    }
}
