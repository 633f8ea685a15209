//! The scheduler's state and its one owner: a task that holds the jobs, the nodes, the
//! namespaces' quotas and the watchers, and changes them only in response to a closed set of
//! [`Command`]s.
//!
//! A job runs as attempts (allocations, [`crate::job::Allocation`]), numbered per job; the
//! number is the fencing generation. The scheduling pass ([`State::schedule`]) walks the jobs
//! that are not terminal, highest priority first then oldest, asks [`missing_instances`] what
//! each lacks (a batch job one instance while nothing runs, a service each replica not running,
//! a system job one instance per node, restarts after their backoff), checks the namespace's
//! quota, and asks [`crate::placement`] where each goes, preempting lower-priority batch work
//! if the placement says so. An attempt interrupted by the scheduler (node lost, preempted,
//! drained) is simply missing at the next pass; one that ended by itself counts as a restart.
//!
//! Handlers on the gRPC edge send commands through a [`SchedulerHandle`] and wait for the reply;
//! they never touch the state. Because one task applies every change, in order, there are no
//! locks and no interleavings to reason about: a result and a cancellation of the same job, or a
//! result and the loss of its node, are handled one after the other.
//!
//! Every change that must survive a restart is committed to the store before anyone hears of
//! it: a client's reply, an assignment sent to a host, an event sent to a watcher. A commit
//! costs an fsync, so the task commits in groups: it takes every command already waiting in its
//! channel (up to [`MAX_BATCH`]), applies them to memory one after the other, runs one
//! scheduling pass, writes every resulting job change in one transaction, waits for that commit
//! (on tokio's blocking pool, see [`crate::store`]), and only then sends the replies,
//! assignments and watcher events of the batch, in order. Commands arriving meanwhile queue in
//! the channel and make the next batch. A job submitted when a node has room is therefore
//! written once, already running as its first attempt, in the transaction that accepts it.
//!
//! Memory runs ahead of the store within a batch, never ahead of what anyone is told:
//!
//! - What the batch changed is not shown before it is committed. A read that would see it (a
//!   lookup or watch of a job the batch touches, a listing) first commits the batch; other
//!   reads describe committed state, and their replies too wait for the batch, so that a reply
//!   still comes after everything sent before it took effect.
//! - Commands that are rare and change nodes or many jobs at once (cancel, registration,
//!   disconnection, heartbeat, tick) settle the batch first (scheduling pass, commit, replies)
//!   and are then handled, committed and followed by a scheduling pass on their own, exactly as
//!   without batching. A second result for a job the batch touches settles the batch first
//!   too: each job changes at most once per batch, which keeps undoing simple.
//! - If the commit fails, the batch is undone in memory, change by change in reverse, and each
//!   command gets what a failed commit meant for it alone: a submit is refused with the error,
//!   a result is not recorded (its slot stays taken, so the job is requeued once the host stops
//!   listing it), an assignment is not made (the job stays pending). Nothing is acknowledged.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, debug, error, info, info_span, warn};
use vauban_audit::entry as audit;
use vauban_core::ModuleDigest;

use crate::audit::{Accompanied, AuditSink, ReceiptClaim, receipt_entry};
use crate::job::{
    AllocState, DEFAULT_NAMESPACE, JobId, JobKind, JobRecord, JobSpec, JobState, OutputChunk,
    Restart, RunEnd,
};
use crate::node::{
    Assignment, Connection, ConnectionId, Drain, HostEvent, Node, NodeId, NodeRecord, NodeState,
    NodeSummary, Occupancy, Registration, RunningAttempt, ToHost,
};
use crate::placement::{self, Ask, Cluster, Placement, Unplaceable};
use crate::store::{JobWrite, RecordKind, Store, StoreError};

#[cfg(test)]
mod tests;
mod trust;

/// Commands waiting for the state task. Senders wait when it is full, which slows hosts and
/// clients down instead of growing memory.
const COMMAND_QUEUE: usize = 1024;

/// Commands taken from the channel at once, and committed together. Bounds how long the first
/// of them waits for its reply behind the others' in-memory work (microseconds each).
const MAX_BATCH: usize = 256;

/// Events buffered per watcher. A watcher that falls further behind loses output chunks (they
/// are live only) and, if a state change does not fit either, its stream is closed.
const WATCH_BUFFER: usize = 1024;

/// What the state task needs to know of the configuration.
#[derive(Clone, Debug)]
pub(crate) struct StateConfig {
    /// A ready node silent for longer is marked down; a node known from before a restart that
    /// has not reconnected within it too.
    pub(crate) down_after: Duration,
    /// The trust policy in force, in policy mode. The state task is the one that replaces it
    /// (see [`trust`]).
    pub(crate) policy: Option<crate::trust::PolicyHolder>,
}

/// Why a command failed. The gRPC edge turns it into a status.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SchedulerError {
    #[error("job {0} not found")]
    JobNotFound(JobId),
    #[error("node {0} not found")]
    NodeNotFound(NodeId),
    #[error("module {module} is not uploaded into namespace {namespace}")]
    ModuleNotUploaded {
        module: ModuleDigest,
        namespace: String,
    },
    #[error("scheduler is shutting down")]
    ShuttingDown,
    /// Shared: one failed group commit fails every submit of its batch.
    #[error(transparent)]
    Store(Arc<StoreError>),
}

impl From<StoreError> for SchedulerError {
    fn from(e: StoreError) -> Self {
        Self::Store(Arc::new(e))
    }
}

type Reply<T> = oneshot::Sender<Result<T, SchedulerError>>;

/// A namespace's ceiling on what its running instances hold at once; 0 is unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Quota {
    pub(crate) max_memory_bytes: u64,
    pub(crate) max_instances: u32,
}

/// A namespace's quota, as stored.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct NamespaceRecord {
    pub(crate) name: String,
    pub(crate) quota: Quota,
}

/// What running instances of a namespace hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    pub(crate) memory_bytes: u64,
    pub(crate) instances: u32,
}

impl Usage {
    /// One more running instance holding `memory_bytes`.
    fn take(&mut self, memory_bytes: u64) {
        self.instances = self.instances.saturating_add(1);
        self.memory_bytes = self.memory_bytes.saturating_add(memory_bytes);
    }

    /// Why one more instance of `memory_bytes` would exceed `quota`, if it would.
    fn exceeded_by(self, memory_bytes: u64, quota: Quota) -> Option<String> {
        if quota.max_instances > 0 && self.instances >= quota.max_instances {
            return Some(format!(
                "{} of {} instances running",
                self.instances, quota.max_instances
            ));
        }
        if quota.max_memory_bytes > 0
            && self.memory_bytes.saturating_add(memory_bytes) > quota.max_memory_bytes
        {
            return Some(format!(
                "{} of {} memory bytes in use, {memory_bytes} more asked",
                self.memory_bytes, quota.max_memory_bytes
            ));
        }
        None
    }
}

/// A namespace as `ListNamespaces` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NamespaceSummary {
    pub(crate) name: String,
    pub(crate) quota: Quota,
    pub(crate) usage: Usage,
    pub(crate) active_jobs: u32,
}

/// One instance of a planned job: where it would go, or why it would wait.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PlannedInstance {
    pub(crate) instance: u32,
    pub(crate) node: Option<NodeId>,
    pub(crate) explanation: String,
    pub(crate) preempt: Vec<(JobId, u32)>,
}

/// Everything the state task does, and nothing else.
#[derive(Debug)]
pub(crate) enum Command {
    /// Accept a job (its module must be stored in its namespace). Boxed: a spec is large.
    Submit {
        spec: Box<JobSpec>,
        /// Where to send the job's events from its acceptance on, as [`Command::Watch`] does.
        watch: Option<mpsc::Sender<WatchEvent>>,
        reply: Reply<JobRecord>,
    },
    Get {
        id: JobId,
        reply: Reply<JobRecord>,
    },
    /// Jobs, newest first.
    List {
        state: Option<JobState>,
        namespace: Option<String>,
        limit: usize,
        reply: oneshot::Sender<Vec<JobRecord>>,
    },
    Cancel {
        id: JobId,
        reply: Reply<JobRecord>,
    },
    /// The job now, then its state changes and live output, until it is terminal.
    Watch {
        id: JobId,
        reply: Reply<mpsc::Receiver<WatchEvent>>,
    },
    /// Where the instances of this job would go now, without accepting it.
    Plan {
        spec: Box<JobSpec>,
        reply: Reply<Vec<PlannedInstance>>,
    },
    /// Install a newer trust policy: persist it, push it to every host, stop what it no longer
    /// trusts.
    InstallPolicy {
        policy: Box<vauban_core::TrustPolicy>,
        reply: Reply<Result<Arc<vauban_core::TrustPolicy>, vauban_core::PolicyError>>,
    },
    /// A host registered on a new stream; `outbound` carries what is sent to it.
    NodeConnected {
        registration: Registration,
        /// Modules it holds compiled.
        cached_modules: BTreeSet<ModuleDigest>,
        /// Attempts it still runs from an earlier stream.
        running: Vec<RunningAttempt>,
        outbound: mpsc::UnboundedSender<ToHost>,
        reply: Reply<ConnectionHandle>,
    },
    /// A message from a host's current stream.
    NodeMessage {
        node: NodeId,
        connection: ConnectionId,
        event: HostEvent,
    },
    /// A host's stream ended or failed.
    NodeDisconnected {
        node: NodeId,
        connection: ConnectionId,
    },
    ListNodes {
        reply: oneshot::Sender<Vec<NodeSummary>>,
    },
    GetNode {
        id: NodeId,
        reply: Reply<NodeSummary>,
    },
    /// Start draining a node: no new work, services and system instances moved off now,
    /// batch work stopped and requeued at `deadline_ms`.
    Drain {
        id: NodeId,
        deadline: Duration,
        reply: Reply<NodeSummary>,
    },
    /// Make a node eligible for new work (ending a drain) or not.
    SetEligibility {
        id: NodeId,
        eligible: bool,
        reply: Reply<NodeSummary>,
    },
    ListNamespaces {
        reply: oneshot::Sender<Vec<NamespaceSummary>>,
    },
    SetQuota {
        namespace: String,
        quota: Quota,
        reply: Reply<NamespaceSummary>,
    },
    /// Time passed: look for silent nodes, drain deadlines and restarts due.
    Tick,
    /// Record decisions taken outside the state task (module uploads) in the audit log: they
    /// are committed with the next batch, and the reply waits for that commit.
    Audit {
        entries: Vec<audit::Entry>,
        reply: Reply<()>,
    },
}

/// What a watcher receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum WatchEvent {
    /// Boxed: a job record is large, an output chunk small.
    Job(Box<JobRecord>),
    Output(OutputChunk),
}

/// Given to the task reading a host's stream.
#[derive(Clone, Debug)]
pub(crate) struct ConnectionHandle {
    /// Tags the stream's messages, so those of a replaced stream are told apart.
    pub(crate) id: ConnectionId,
    /// Cancelled when the scheduler closes the stream (node replaced, down, or shutdown): the
    /// reader stops, and need not report the end.
    pub(crate) closed: CancellationToken,
}

/// The way to the state task. Cheap to clone; every method fails with
/// [`SchedulerError::ShuttingDown`] once the task has stopped.
#[derive(Clone, Debug)]
pub(crate) struct SchedulerHandle {
    commands: mpsc::Sender<Command>,
}

impl SchedulerHandle {
    async fn send(&self, command: Command) -> Result<(), SchedulerError> {
        self.commands
            .send(command)
            .await
            .map_err(|_| SchedulerError::ShuttingDown)
    }

    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, SchedulerError> {
        let (reply, answer) = oneshot::channel();
        self.send(command(reply)).await?;
        answer.await.map_err(|_| SchedulerError::ShuttingDown)
    }

    pub(crate) async fn submit(&self, spec: JobSpec) -> Result<JobRecord, SchedulerError> {
        self.ask(|reply| Command::Submit {
            spec: Box::new(spec),
            watch: None,
            reply,
        })
        .await?
    }

    /// Submits a job and watches it from its acceptance on: the first event is the job as
    /// accepted, as [`SchedulerHandle::submit`] returns it.
    pub(crate) async fn run(
        &self,
        spec: JobSpec,
    ) -> Result<mpsc::Receiver<WatchEvent>, SchedulerError> {
        let (events, receiver) = mpsc::channel(WATCH_BUFFER);
        self.ask(|reply| Command::Submit {
            spec: Box::new(spec),
            watch: Some(events),
            reply,
        })
        .await??;
        Ok(receiver)
    }

    pub(crate) async fn get(&self, id: JobId) -> Result<JobRecord, SchedulerError> {
        self.ask(|reply| Command::Get { id, reply }).await?
    }

    pub(crate) async fn list(
        &self,
        state: Option<JobState>,
        namespace: Option<String>,
        limit: usize,
    ) -> Result<Vec<JobRecord>, SchedulerError> {
        self.ask(|reply| Command::List {
            state,
            namespace,
            limit,
            reply,
        })
        .await
    }

    pub(crate) async fn cancel(&self, id: JobId) -> Result<JobRecord, SchedulerError> {
        self.ask(|reply| Command::Cancel { id, reply }).await?
    }

    pub(crate) async fn watch(
        &self,
        id: JobId,
    ) -> Result<mpsc::Receiver<WatchEvent>, SchedulerError> {
        self.ask(|reply| Command::Watch { id, reply }).await?
    }

    pub(crate) async fn plan(&self, spec: JobSpec) -> Result<Vec<PlannedInstance>, SchedulerError> {
        self.ask(|reply| Command::Plan {
            spec: Box::new(spec),
            reply,
        })
        .await?
    }

    pub(crate) async fn node_connected(
        &self,
        registration: Registration,
        cached_modules: BTreeSet<ModuleDigest>,
        running: Vec<RunningAttempt>,
        outbound: mpsc::UnboundedSender<ToHost>,
    ) -> Result<ConnectionHandle, SchedulerError> {
        self.ask(|reply| Command::NodeConnected {
            registration,
            cached_modules,
            running,
            outbound,
            reply,
        })
        .await?
    }

    pub(crate) async fn node_message(
        &self,
        node: NodeId,
        connection: ConnectionId,
        event: HostEvent,
    ) -> Result<(), SchedulerError> {
        self.send(Command::NodeMessage {
            node,
            connection,
            event,
        })
        .await
    }

    pub(crate) async fn node_disconnected(
        &self,
        node: NodeId,
        connection: ConnectionId,
    ) -> Result<(), SchedulerError> {
        self.send(Command::NodeDisconnected { node, connection })
            .await
    }

    pub(crate) async fn list_nodes(&self) -> Result<Vec<NodeSummary>, SchedulerError> {
        self.ask(|reply| Command::ListNodes { reply }).await
    }

    pub(crate) async fn get_node(&self, id: NodeId) -> Result<NodeSummary, SchedulerError> {
        self.ask(|reply| Command::GetNode { id, reply }).await?
    }

    pub(crate) async fn drain(
        &self,
        id: NodeId,
        deadline: Duration,
    ) -> Result<NodeSummary, SchedulerError> {
        self.ask(|reply| Command::Drain {
            id,
            deadline,
            reply,
        })
        .await?
    }

    pub(crate) async fn set_eligibility(
        &self,
        id: NodeId,
        eligible: bool,
    ) -> Result<NodeSummary, SchedulerError> {
        self.ask(|reply| Command::SetEligibility {
            id,
            eligible,
            reply,
        })
        .await?
    }

    pub(crate) async fn list_namespaces(&self) -> Result<Vec<NamespaceSummary>, SchedulerError> {
        self.ask(|reply| Command::ListNamespaces { reply }).await
    }

    pub(crate) async fn set_quota(
        &self,
        namespace: String,
        quota: Quota,
    ) -> Result<NamespaceSummary, SchedulerError> {
        self.ask(|reply| Command::SetQuota {
            namespace,
            quota,
            reply,
        })
        .await?
    }

    pub(crate) async fn tick(&self) -> Result<(), SchedulerError> {
        self.send(Command::Tick).await
    }

    /// Installs a newer trust policy, already verified against the pinned roots: see
    /// [`trust`]. The inner error says why the policy may not replace the one in force.
    pub(crate) async fn install_policy(
        &self,
        policy: vauban_core::TrustPolicy,
    ) -> Result<Result<Arc<vauban_core::TrustPolicy>, vauban_core::PolicyError>, SchedulerError>
    {
        self.ask(|reply| Command::InstallPolicy {
            policy: Box::new(policy),
            reply,
        })
        .await?
    }

    /// Records entries in the audit log (if one is kept), durably before returning.
    pub(crate) async fn record_audit(
        &self,
        entries: Vec<audit::Entry>,
    ) -> Result<(), SchedulerError> {
        self.ask(|reply| Command::Audit { entries, reply }).await?
    }
}

/// Recovers the state from the store and starts the task that owns it.
///
/// Attempts that were running when the scheduler stopped stay running: their nodes come back
/// as `Unknown`, holding them. A host that reconnects lists what it still runs, which adopts
/// those attempts (their results are accepted as usual) and stops any it runs that are no
/// longer current; a node that does not reconnect within `down_after` is declared down and its
/// attempts lost, then rescheduled per their jobs' policy. When `closing` is cancelled the
/// task closes every host stream and watch, so that the gRPC server can drain, and refuses new
/// ones; it keeps answering other commands until `stop` is cancelled or every handle is
/// dropped.
pub(crate) async fn start(
    store: Store,
    config: StateConfig,
    audit: Option<AuditSink>,
    closing: CancellationToken,
    stop: CancellationToken,
) -> Result<(SchedulerHandle, JoinHandle<()>), StoreError> {
    let (jobs, node_records, namespaces) = store
        .call(|s| {
            Ok((
                s.load_jobs()?,
                s.load_records::<NodeRecord>(RecordKind::Node)?,
                s.load_records::<NamespaceRecord>(RecordKind::Namespace)?,
            ))
        })
        .await?;
    let now = Instant::now();
    let mut nodes: BTreeMap<NodeId, Node> = node_records
        .into_iter()
        .map(|r| (r.registration.id.clone(), Node::recovered(r, now)))
        .collect();
    let mut adopted = 0;
    for job in jobs.iter().filter(|j| !j.state.is_terminal()) {
        for alloc in job.running() {
            let node = nodes.entry(alloc.node.clone()).or_insert_with(|| {
                Node::recovered(
                    NodeRecord {
                        registration: Registration {
                            id: alloc.node.clone(),
                            labels: BTreeMap::new(),
                            slots: 0,
                            memory_bytes: 0,
                            receipt_key: None,
                        },
                        eligible: true,
                        drain: None,
                    },
                    now,
                )
            });
            node.attempts.insert(
                (job.id.clone(), alloc.attempt),
                occupancy(job, alloc.memory_bytes),
            );
            adopted += 1;
        }
    }
    let active: BTreeSet<QueueKey> = jobs
        .iter()
        .filter(|j| !j.state.is_terminal())
        .map(queue_key)
        .collect();
    info!(
        jobs = jobs.len(),
        active = active.len(),
        running_attempts = adopted,
        nodes = nodes.len(),
        "scheduler state recovered"
    );
    let state = State {
        config,
        clock: Clock::new(),
        audit,
        store,
        jobs: jobs.into_iter().map(|j| (j.id.clone(), j)).collect(),
        active,
        nodes,
        namespaces: namespaces.into_iter().map(|n| (n.name, n.quota)).collect(),
        watchers: HashMap::new(),
        modules: HashSet::new(),
        next_connection: 0,
        closing: false,
        dirty: true,
        batch: Batch::default(),
    };
    let (commands, receiver) = mpsc::channel(COMMAND_QUEUE);
    let task = tokio::spawn(
        state
            .run(receiver, closing, stop)
            .instrument(info_span!("scheduler_state")),
    );
    Ok((SchedulerHandle { commands }, task))
}

/// Sends [`Command::Tick`] every `every` until `shutdown` is cancelled.
pub(crate) fn spawn_ticker(
    scheduler: SchedulerHandle,
    every: Duration,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let ticks = async move {
        let mut interval = tokio::time::interval(every);
        // After a stall, one tick is enough: each looks at every node.
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = interval.tick() => {
                    if scheduler.tick().await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    tokio::spawn(ticks.instrument(info_span!("scheduler_ticker")))
}

/// The order jobs are placed in: highest priority first, then oldest first (ids sort in
/// submission order).
type QueueKey = (Reverse<u8>, JobId);

fn queue_key(job: &JobRecord) -> QueueKey {
    (Reverse(job.spec.priority), job.id.clone())
}

/// What an attempt of `job` holds on its node.
fn occupancy(job: &JobRecord, memory_bytes: u64) -> Occupancy {
    Occupancy {
        memory_bytes,
        priority: job.spec.priority,
        preemptible: job.spec.kind == JobKind::Batch,
        cancelled: false,
        unlisted: 0,
        sequence: 0,
    }
}

/// Wall-clock milliseconds as the state task sees them: the time at its start, advanced by
/// tokio's monotonic clock. Records carry Unix times, while durations between them (restart
/// backoff, drain deadlines) follow one clock that cannot jump, and that tests can pause.
#[derive(Clone, Copy, Debug)]
struct Clock {
    start: Instant,
    start_ms: u64,
}

impl Clock {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            start_ms: crate::now_ms(),
        }
    }

    fn now_ms(self) -> u64 {
        let elapsed = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.start_ms.saturating_add(elapsed)
    }
}

/// The state itself, owned by the task running [`State::run`].
struct State {
    config: StateConfig,
    clock: Clock,
    /// Where committed decisions are recorded for the audit log, when one is kept.
    audit: Option<AuditSink>,
    store: Store,
    /// Every job, by id: ids sort in submission order.
    jobs: BTreeMap<JobId, JobRecord>,
    /// The jobs that are not terminal, in placement order. Invariant: exactly those.
    active: BTreeSet<QueueKey>,
    /// Every node that registered, or that the store knows of.
    nodes: BTreeMap<NodeId, Node>,
    /// Quotas set, by namespace.
    namespaces: BTreeMap<String, Quota>,
    /// Open watches of non-terminal jobs.
    watchers: HashMap<JobId, Vec<mpsc::Sender<WatchEvent>>>,
    /// Modules known to be stored, with the namespace they were uploaded into. Modules are
    /// never removed, so once seen a pair need not be looked up again for every job.
    modules: HashSet<(ModuleDigest, String)>,
    next_connection: ConnectionId,
    /// Shutting down: host streams and watches are closed and no new ones are opened.
    closing: bool,
    /// The jobs or the capacity changed since the last scheduling pass.
    dirty: bool,
    /// What the commands handled since the last commit changed, and owe.
    batch: Batch,
}

/// The uncommitted part of the state: the job changes to write, how to undo them in memory,
/// and what to tell whom once they are committed.
#[derive(Default)]
struct Batch {
    /// The latest record of each job changed, to write; a job appears once.
    writes: HashMap<JobId, JobWrite>,
    /// How to put memory back, in the order the changes were made.
    undo: Vec<Undo>,
    /// What to send after the commit, in the order the commands came.
    effects: Vec<Effect>,
    /// Audit entries recording the batch's decisions, committed in its transaction (see
    /// [`crate::audit`]), in the order they were taken.
    audit: Vec<audit::Entry>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.writes.is_empty()
            && self.undo.is_empty()
            && self.effects.is_empty()
            && self.audit.is_empty()
    }

    /// True when the batch changed this job.
    fn touches(&self, id: &JobId) -> bool {
        self.writes.contains_key(id)
    }
}

/// One in-memory change of a batch, as what reverses it.
enum Undo {
    /// A job accepted in the batch: forget it.
    Accepted(JobId),
    /// A job's record before the batch changed it: put it back.
    Record(Box<JobRecord>),
    /// A slot freed by a result: take it again.
    Freed {
        node: NodeId,
        key: (JobId, u32),
        occupancy: Occupancy,
    },
    /// A slot taken by an assignment: free it.
    Taken { node: NodeId, key: (JobId, u32) },
    /// An attempt marked stopping (preempted, its job failed): it is current again.
    Stopping { node: NodeId, key: (JobId, u32) },
}

/// What a batch owes once its commit is done (or has failed).
enum Effect {
    /// A reply that describes committed state: sent either way.
    Answer(Box<dyn FnOnce() + Send + Sync>),
    /// A submit's reply: the job as accepted, or the commit's error; and its watcher, if the
    /// submit asked for one.
    Accepted {
        job: Box<JobRecord>,
        watch: Option<mpsc::Sender<WatchEvent>>,
        reply: Reply<JobRecord>,
    },
    /// A job changed without an assignment (a result, a stale result, a preemption, a
    /// failure): watchers are told.
    Changed {
        job: Box<JobRecord>,
        why: &'static str,
    },
    /// Audit entries recorded for a caller: told whether the commit made them durable.
    Recorded { reply: Reply<()> },
    /// An assignment made: the host is sent it and watchers are told.
    Assigned {
        job: Box<JobRecord>,
        assignment: Box<Assignment>,
    },
    /// An attempt to stop: its host is told.
    Stop {
        node: NodeId,
        job: JobId,
        attempt: u32,
    },
}

impl State {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        closing: CancellationToken,
        stop: CancellationToken,
    ) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            self.settle().await;
            if self.store.behind() > 0 && commands.is_empty() {
                // The store applies what it logged while nothing waits: after the tasks the
                // commit woke have run, and unless a command came in meanwhile (the next
                // commit applies it then).
                tokio::task::yield_now().await;
                if commands.is_empty()
                    && let Err(e) = self.store.catch_up().await
                {
                    error!(error = %e, "cannot apply logged commits to the store; a read or the next commit tries again");
                }
            }
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                () = closing.cancelled(), if !self.closing => self.close_streams(),
                received = commands.recv_many(&mut batch, MAX_BATCH) => {
                    if received == 0 {
                        break;
                    }
                    for command in batch.drain(..) {
                        self.handle(command).await;
                    }
                }
            }
        }
        debug!("scheduler state task stopped");
    }

    /// Runs the scheduling pass if anything changed, then commits the batch and sends what it
    /// owes. Afterwards memory is committed state again.
    async fn settle(&mut self) {
        if self.dirty {
            self.schedule();
        }
        self.flush().await;
    }

    async fn handle(&mut self, command: Command) {
        match command {
            Command::Submit { spec, watch, reply } => self.submit(*spec, watch, reply).await,
            Command::Get { id, reply } => {
                if self.batch.touches(&id) {
                    self.settle().await;
                }
                let job = self.jobs.get(&id).cloned();
                let job = job.ok_or(SchedulerError::JobNotFound(id));
                self.answer(move || {
                    let _ = reply.send(job);
                });
            }
            Command::List {
                state,
                namespace,
                limit,
                reply,
            } => {
                self.settle().await;
                let jobs = self
                    .jobs
                    .values()
                    .rev()
                    .filter(|j| state.is_none_or(|s| j.state == s))
                    .filter(|j| namespace.as_ref().is_none_or(|n| j.spec.namespace == *n))
                    .take(limit)
                    .cloned()
                    .collect();
                let _ = reply.send(jobs);
            }
            Command::Cancel { id, reply } => {
                self.settle().await;
                let _ = reply.send(self.cancel(id).await);
                self.settle().await;
            }
            Command::Watch { id, reply } => {
                if self.batch.touches(&id) {
                    self.settle().await;
                }
                let events = self.watch(id);
                self.answer(move || {
                    let _ = reply.send(events);
                });
            }
            Command::Plan { spec, reply } => {
                self.settle().await;
                let plan = self.plan(*spec).await;
                let _ = reply.send(plan);
            }
            Command::NodeConnected {
                registration,
                cached_modules,
                running,
                outbound,
                reply,
            } => {
                self.settle().await;
                let connected = self
                    .node_connected(registration, cached_modules, &running, outbound)
                    .await;
                let _ = reply.send(connected);
                self.settle().await;
            }
            Command::NodeMessage {
                node,
                connection,
                event,
            } => self.node_message(node, connection, event).await,
            Command::NodeDisconnected { node, connection } => {
                self.settle().await;
                let current = self
                    .nodes
                    .get(&node)
                    .and_then(|n| n.connection.as_ref())
                    .is_some_and(|c| c.id == connection);
                if current {
                    self.node_down(node, "its stream ended").await;
                }
                self.settle().await;
            }
            Command::ListNodes { reply } => {
                self.settle().await;
                let _ = reply.send(self.nodes.values().map(Node::summary).collect());
            }
            Command::GetNode { id, reply } => {
                self.settle().await;
                let _ = reply.send(self.node_summary(&id));
            }
            Command::Drain {
                id,
                deadline,
                reply,
            } => {
                self.settle().await;
                let _ = reply.send(self.drain(id, deadline).await);
                self.settle().await;
            }
            Command::SetEligibility {
                id,
                eligible,
                reply,
            } => {
                self.settle().await;
                let _ = reply.send(self.set_eligibility(id, eligible).await);
                self.settle().await;
            }
            Command::ListNamespaces { reply } => {
                self.settle().await;
                let _ = reply.send(self.namespace_summaries());
            }
            Command::SetQuota {
                namespace,
                quota,
                reply,
            } => {
                self.settle().await;
                let _ = reply.send(self.set_quota(namespace, quota).await);
                self.settle().await;
            }
            Command::Tick => {
                self.settle().await;
                self.tick().await;
                self.settle().await;
            }
            Command::InstallPolicy { policy, reply } => {
                self.settle().await;
                let _ = reply.send(self.install_policy(*policy).await);
                self.settle().await;
            }
            Command::Audit { entries, reply } => {
                if self.audit.is_none() {
                    let _ = reply.send(Ok(()));
                    return;
                }
                self.batch.audit.extend(entries);
                self.batch.effects.push(Effect::Recorded { reply });
            }
        }
    }

    /// Sends a reply that describes committed state: now, unless replies of earlier commands
    /// wait for the commit, in which case it waits with them to keep their order.
    fn answer(&mut self, send: impl FnOnce() + Send + Sync + 'static) {
        if self.batch.effects.is_empty() {
            send();
        } else {
            self.batch.effects.push(Effect::Answer(Box::new(send)));
        }
    }

    /// Accepts a job into the batch; it is acknowledged once the batch is committed, and
    /// `watch` then registered as its watcher.
    async fn submit(
        &mut self,
        spec: JobSpec,
        watch: Option<mpsc::Sender<WatchEvent>>,
        reply: Reply<JobRecord>,
    ) {
        if let Err(refused) = self.check_module(&spec).await {
            self.audit(|at_ms| {
                audit::Entry::Admission(audit::Admission {
                    at_ms,
                    decision: audit::Decision::Refused,
                    subject: audit::Subject::Job,
                    job: String::new(),
                    module: spec.module.to_string(),
                    namespace: spec.namespace.clone(),
                    reason: refused.to_string(),
                })
            });
            let send = move || {
                let _ = reply.send(Err(refused));
            };
            if self.audit.is_some() {
                // The refusal is answered once its record is committed, with the batch.
                self.batch.effects.push(Effect::Answer(Box::new(send)));
            } else {
                self.answer(send);
            }
            return;
        }
        let job = JobRecord::new(JobId::generate(), spec, self.clock.now_ms());
        self.audit(|at_ms| {
            audit::Entry::Admission(audit::Admission {
                at_ms,
                decision: audit::Decision::Accepted,
                subject: audit::Subject::Job,
                job: job.id.to_string(),
                module: job.spec.module.to_string(),
                namespace: job.spec.namespace.clone(),
                reason: format!(
                    "{} job, priority {}",
                    job.spec.kind.name(),
                    job.spec.priority
                ),
            })
        });
        self.audit_authorizers(&job);
        self.batch.undo.push(Undo::Accepted(job.id.clone()));
        self.batch.writes.insert(
            job.id.clone(),
            JobWrite {
                record: job.clone(),
                new: true,
            },
        );
        self.batch.effects.push(Effect::Accepted {
            job: Box::new(job.clone()),
            watch,
            reply,
        });
        self.active.insert(queue_key(&job));
        self.jobs.insert(job.id.clone(), job);
        self.dirty = true;
    }

    /// The job's module must be uploaded into the job's namespace.
    async fn check_module(&mut self, spec: &JobSpec) -> Result<(), SchedulerError> {
        let key = (spec.module, spec.namespace.clone());
        if self.modules.contains(&key) {
            return Ok(());
        }
        let module = spec.module;
        let record = self.store.call(move |s| s.module(&module)).await?;
        let uploaded = record.is_some_and(|r| {
            r.namespaces.contains(&spec.namespace)
                || (r.namespaces.is_empty() && spec.namespace == DEFAULT_NAMESPACE)
        });
        if !uploaded {
            return Err(SchedulerError::ModuleNotUploaded {
                module: spec.module,
                namespace: spec.namespace.clone(),
            });
        }
        self.modules.insert(key);
        Ok(())
    }

    async fn cancel(&mut self, id: JobId) -> Result<JobRecord, SchedulerError> {
        let job = self
            .jobs
            .get(&id)
            .ok_or_else(|| SchedulerError::JobNotFound(id.clone()))?;
        if job.state.is_terminal() {
            return Ok(job.clone());
        }
        let running: Vec<(NodeId, u32)> =
            job.running().map(|a| (a.node.clone(), a.attempt)).collect();
        let cancelled = job.cancelled(self.clock.now_ms());
        // Committed with the record of the cancellation, in one transaction.
        let entry = self.audit_entry(|at_ms| {
            audit::Entry::Cancellation(audit::Cancellation {
                at_ms,
                job: id.to_string(),
                by: "client".to_owned(),
                reason: cancelled.message.clone(),
            })
        });
        let write = JobWrite {
            record: cancelled.clone(),
            new: false,
        };
        self.commit(vec![write], entry.into_iter().collect())
            .await
            .map_err(SchedulerError::Store)?;
        info!(job = %id, "job cancelled");
        for (node, attempt) in running {
            self.stop_now(&node, &id, attempt);
        }
        self.apply(cancelled.clone());
        Ok(cancelled)
    }

    /// Tells a host to stop an attempt that is no longer current; its room is reused at once
    /// (see [`Occupancy::cancelled`]).
    fn stop_now(&mut self, node_id: &NodeId, job: &JobId, attempt: u32) {
        let Some(node) = self.nodes.get_mut(node_id) else {
            return;
        };
        if let Some(occupancy) = node.attempts.get_mut(&(job.clone(), attempt)) {
            occupancy.cancelled = true;
        }
        node.send(ToHost::Cancel {
            job: job.clone(),
            attempt,
        });
        self.dirty = true;
    }

    fn watch(&mut self, id: JobId) -> Result<mpsc::Receiver<WatchEvent>, SchedulerError> {
        if self.closing {
            return Err(SchedulerError::ShuttingDown);
        }
        let job = self
            .jobs
            .get(&id)
            .ok_or_else(|| SchedulerError::JobNotFound(id.clone()))?;
        let job = Box::new(job.clone());
        let (events, receiver) = mpsc::channel(WATCH_BUFFER);
        self.attach(job, events);
        Ok(receiver)
    }

    /// Sends `events` the job as it is now, on a fresh channel (which has room for it), and
    /// registers it for the job's next events, unless the job is over or the scheduler closing.
    fn attach(&mut self, job: Box<JobRecord>, events: mpsc::Sender<WatchEvent>) {
        let (id, over) = (job.id.clone(), job.state.is_terminal());
        let _ = events.try_send(WatchEvent::Job(job));
        if over || self.closing {
            return;
        }
        let watchers = self.watchers.entry(id).or_default();
        // Clients that went away are otherwise only noticed at the job's next event.
        watchers.retain(|w| !w.is_closed());
        watchers.push(events);
    }

    async fn node_connected(
        &mut self,
        registration: Registration,
        cached_modules: BTreeSet<ModuleDigest>,
        running: &[RunningAttempt],
        outbound: mpsc::UnboundedSender<ToHost>,
    ) -> Result<ConnectionHandle, SchedulerError> {
        if self.closing {
            return Err(SchedulerError::ShuttingDown);
        }
        self.next_connection += 1;
        let handle = ConnectionHandle {
            id: self.next_connection,
            closed: CancellationToken::new(),
        };
        let connection = Connection {
            id: handle.id,
            outbound,
            closed: handle.closed.clone(),
        };
        info!(
            node = %registration.id,
            slots = registration.slots,
            memory_bytes = registration.memory_bytes,
            labels = ?registration.labels,
            running = running.len(),
            "node registered"
        );
        let now = Instant::now();
        let id = registration.id.clone();
        let before = self.nodes.get(&id).map(Node::record);
        match self.nodes.get_mut(&id) {
            Some(node) => {
                if node.connection.is_some() {
                    info!(node = %id, "closing the stream the node registered on before");
                }
                // The attempts it holds are kept: the attempts the host says it still runs
                // are adopted, the others are lost after one more heartbeat without them.
                node.registration = registration;
                node.state = NodeState::Ready;
                node.connection = Some(connection);
                node.restart_sequence();
                node.last_heartbeat = now;
                node.last_heartbeat_ms = self.clock.now_ms();
            }
            None => {
                self.nodes
                    .insert(id.clone(), Node::new(registration, connection, now));
            }
        }
        if let Some(node) = self.nodes.get_mut(&id) {
            node.cached_modules = cached_modules;
        }
        // Kept across restarts: what it offers and what operators decided about it.
        let record = self.nodes.get(&id).map(Node::record);
        if let Some(record) = record
            && before.as_ref() != Some(&record)
        {
            let key = id.to_string();
            if let Err(e) = self
                .store
                .call(move |s| s.put_record(RecordKind::Node, &key, &record))
                .await
            {
                error!(node = %id, error = %e, "cannot persist the node's registration");
            }
        }
        self.reconcile(id, running, 0).await;
        self.dirty = true;
        Ok(handle)
    }

    async fn node_message(&mut self, node_id: NodeId, connection: ConnectionId, event: HostEvent) {
        let current = self
            .nodes
            .get(&node_id)
            .and_then(|n| n.connection.as_ref())
            .is_some_and(|c| c.id == connection);
        if !current {
            debug!(node = %node_id, "ignoring a message from a closed stream");
            return;
        }
        match event {
            HostEvent::Heartbeat {
                running,
                assignments_received,
                cached_modules,
            } => {
                self.settle().await;
                if let Some(node) = self.nodes.get_mut(&node_id) {
                    node.last_heartbeat = Instant::now();
                    node.last_heartbeat_ms = self.clock.now_ms();
                    if let Some(cached) = cached_modules {
                        node.cached_modules = cached;
                    }
                }
                self.reconcile(node_id, &running, assignments_received)
                    .await;
                self.settle().await;
            }
            HostEvent::Output {
                job,
                attempt,
                chunk,
            } => self.output(&node_id, &job, attempt, chunk),
            HostEvent::Started {
                job,
                attempt,
                started_at_ms,
            } => self.started(&node_id, &job, attempt, started_at_ms),
            HostEvent::Finished {
                job,
                attempt,
                end,
                receipt,
            } => {
                if self.batch.touches(&job) {
                    self.settle().await;
                }
                self.finished(node_id, job, attempt, end, receipt);
            }
        }
    }

    /// Compares what a host says it runs with what the scheduler believes: attempts it does
    /// not list are lost (after the margin of [`crate::node::Node::reconcile`]), attempts it
    /// runs that are not current are stopped.
    async fn reconcile(
        &mut self,
        node_id: NodeId,
        running: &[RunningAttempt],
        assignments_received: u64,
    ) {
        let Some(node) = self.nodes.get_mut(&node_id) else {
            return;
        };
        let reconciled = node.reconcile(running, assignments_received);
        for (job, attempt) in reconciled.unknown {
            // Typically an attempt that was rescheduled while its node was cut off: stop the
            // duplicate.
            info!(node = %node_id, %job, attempt, "node runs an attempt that is not current; stopping it");
            node.send(ToHost::Cancel { job, attempt });
        }
        if reconciled.released > 0 {
            self.dirty = true;
        }
        let now = self.clock.now_ms();
        let lost = reconciled
            .lost
            .into_iter()
            .filter_map(|(job, attempt)| {
                let job = self.jobs.get(&job)?;
                job.is_running_on(&node_id, attempt).then(|| {
                    job.interrupted(
                        attempt,
                        AllocState::Lost,
                        format!("node {node_id} stopped running it without a result"),
                        now,
                    )
                })
            })
            .collect();
        self.requeue(lost).await;
    }

    fn output(&mut self, node_id: &NodeId, job: &JobId, attempt: u32, chunk: OutputChunk) {
        let current = self
            .jobs
            .get(job)
            .is_some_and(|j| j.is_running_on(node_id, attempt));
        if !current {
            debug!(node = %node_id, %job, attempt, "ignoring output of an attempt that is not current");
            return;
        }
        let Some(watchers) = self.watchers.get_mut(job) else {
            return;
        };
        watchers.retain(|w| match w.try_send(WatchEvent::Output(chunk.clone())) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                debug!(%job, "watcher behind; output chunk dropped for it");
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
    }

    /// Records an attempt's end, once: only if the job is running that very attempt on that
    /// node. The result of an attempt that was fenced (lost, preempted, stopped, or its job
    /// cancelled) is noted on that attempt as stale, never recorded as the job's.
    fn finished(
        &mut self,
        node_id: NodeId,
        job_id: JobId,
        attempt: u32,
        end: RunEnd,
        receipt: Option<ReceiptClaim>,
    ) {
        let key = (job_id.clone(), attempt);
        let occupancy = self
            .nodes
            .get_mut(&node_id)
            .and_then(|n| n.attempts.remove(&key));
        if let Some(occupancy) = occupancy {
            self.dirty = true;
            self.batch.undo.push(Undo::Freed {
                node: node_id.clone(),
                key,
                occupancy,
            });
        }
        let Some(job) = self.jobs.get(&job_id) else {
            info!(node = %node_id, job = %job_id, attempt, "ignoring a result for an unknown job");
            return;
        };
        // A receipt is recorded, checked, if it comes from the node that ran the attempt, even
        // when the attempt was fenced since: the guest did run there.
        let ran_here = job.allocation(attempt).is_some_and(|a| a.node == node_id);
        if let Some(claim) = receipt
            && ran_here
            && self.audit.is_some()
        {
            let registered_key = self
                .nodes
                .get(&node_id)
                .and_then(|n| n.registration.receipt_key.as_deref());
            let with = Accompanied {
                job: job_id.as_str(),
                attempt,
                node: node_id.as_str(),
                module: job.spec.module.to_string(),
                end: &end,
                registered_key,
            };
            let entry = receipt_entry(self.clock.now_ms(), claim, &with);
            self.batch.audit.push(entry);
        }
        if !job.is_running_on(&node_id, attempt) {
            let from_that_node = job.allocation(attempt).is_some_and(|a| a.node == node_id);
            if from_that_node && let Some(noted) = job.with_stale_result(attempt, &end) {
                info!(node = %node_id, job = %job_id, attempt, "recording a stale result: the attempt was fenced");
                self.stage(noted.clone());
                self.batch.effects.push(Effect::Changed {
                    job: Box::new(noted),
                    why: "stale result noted",
                });
            } else {
                info!(node = %node_id, job = %job_id, attempt, "ignoring a result of an attempt that is not current");
            }
            return;
        }
        // Undone if the commit fails: keeping the attempt on the node means it is requeued, and
        // run again, once the host stops listing it. A result is never recorded twice, but may
        // be lost.
        let done = job.finished(attempt, end, self.clock.now_ms());
        if let Some(alloc) = done.allocation(attempt) {
            let (node, outcome) = (alloc.node.to_string(), alloc.message.clone());
            self.audit(|at_ms| {
                audit::Entry::Finish(audit::Finish {
                    at_ms,
                    job: job_id.to_string(),
                    attempt,
                    node,
                    outcome,
                })
            });
        }
        self.stage(done.clone());
        self.batch.effects.push(Effect::Changed {
            job: Box::new(done),
            why: "attempt finished",
        });
    }

    /// Records that an attempt's guest started, if the node runs that very attempt.
    fn started(&mut self, node_id: &NodeId, job: &JobId, attempt: u32, started_at_ms: u64) {
        let current = self
            .jobs
            .get(job)
            .is_some_and(|j| j.is_running_on(node_id, attempt));
        if !current {
            debug!(node = %node_id, %job, attempt, "ignoring the start of an attempt that is not current");
            return;
        }
        debug!(node = %node_id, %job, attempt, started_at_ms, "attempt started");
        self.audit(|at_ms| {
            audit::Entry::Start(audit::Start {
                at_ms,
                job: job.to_string(),
                attempt,
                node: node_id.to_string(),
            })
        });
    }

    async fn tick(&mut self) {
        let now = Instant::now();
        let down_after = self.config.down_after;
        let silent: Vec<(NodeId, &'static str)> = self
            .nodes
            .values()
            .filter(|n| {
                matches!(n.state, NodeState::Ready | NodeState::Unknown)
                    && now.duration_since(n.last_heartbeat) > down_after
            })
            .map(|n| {
                let why = if n.state == NodeState::Unknown {
                    "did not reconnect after the scheduler restarted"
                } else {
                    "no heartbeat"
                };
                (n.id().clone(), why)
            })
            .collect();
        for (node, why) in silent {
            self.node_down(node, &format!("{why} for {down_after:?}"))
                .await;
        }
        self.drain_deadlines().await;
        self.expire_grants();
        // Restarts with a backoff become due with time alone.
        self.dirty = true;
    }

    /// Stops and requeues the batch work still on draining nodes past their deadline.
    async fn drain_deadlines(&mut self) {
        let now = self.clock.now_ms();
        let mut due = Vec::new();
        for node in self.nodes.values() {
            let Some(drain) = node.drain else { continue };
            if now < drain.deadline_ms {
                continue;
            }
            for ((job, attempt), occupancy) in &node.attempts {
                if !occupancy.cancelled {
                    due.push((node.id().clone(), job.clone(), *attempt));
                }
            }
        }
        self.stop_attempts(due, AllocState::Stopped, "drain deadline reached")
            .await;
    }

    /// Stops attempts now (drain), recording them with `state`; their instances are placed
    /// again elsewhere.
    async fn stop_attempts(
        &mut self,
        attempts: Vec<(NodeId, JobId, u32)>,
        state: AllocState,
        why: &str,
    ) {
        let now = self.clock.now_ms();
        let mut changed: BTreeMap<JobId, JobRecord> = BTreeMap::new();
        let mut stops = Vec::new();
        for (node, job_id, attempt) in attempts {
            let Some(job) = changed.get(&job_id).or_else(|| self.jobs.get(&job_id)) else {
                continue;
            };
            if !job.is_running_on(&node, attempt) {
                continue;
            }
            let job = job.interrupted(attempt, state, format!("{why} on node {node}"), now);
            changed.insert(job_id.clone(), job);
            stops.push((node, job_id, attempt));
        }
        self.requeue(changed.into_values().collect()).await;
        for (node, job, attempt) in stops {
            self.stop_now(&node, &job, attempt);
        }
    }

    /// Marks a node down, closes its stream (its host sees the end and reconnects) and
    /// declares its attempts lost.
    async fn node_down(&mut self, node_id: NodeId, why: &str) {
        let Some(node) = self.nodes.get_mut(&node_id) else {
            return;
        };
        warn!(node = %node_id, "node down: {why}");
        node.state = NodeState::Down;
        node.connection = None;
        let attempts = std::mem::take(&mut node.attempts);
        let now = self.clock.now_ms();
        let mut changed: BTreeMap<JobId, JobRecord> = BTreeMap::new();
        for (job_id, attempt) in attempts.into_keys() {
            let Some(job) = changed.get(&job_id).or_else(|| self.jobs.get(&job_id)) else {
                continue;
            };
            if job.is_running_on(&node_id, attempt) {
                let job = job.interrupted(
                    attempt,
                    AllocState::Lost,
                    format!("node {node_id} lost ({why})"),
                    now,
                );
                changed.insert(job_id, job);
            }
        }
        self.requeue(changed.into_values().collect()).await;
        self.dirty = true;
    }

    /// Commits jobs whose attempts were interrupted; the scheduling pass places their
    /// instances again.
    async fn requeue(&mut self, jobs: Vec<JobRecord>) {
        if jobs.is_empty() {
            return;
        }
        for job in &jobs {
            warn!(job = %job.id, "{}", job.message);
        }
        let jobs = match self.persist(jobs.clone()).await {
            Ok(jobs) => jobs,
            Err(e) => {
                // Applied anyway: the store still says Running on that node, which recovery
                // resolves too (the node does not list the attempt, or never comes back), so
                // memory and store converge. Not applying would leave the attempts running
                // on a node that no longer holds them.
                error!(error = %e, "cannot persist interrupted attempts; applied in memory only");
                jobs
            }
        };
        for job in jobs {
            self.apply(job);
        }
        self.dirty = true;
    }

    /// What each namespace's running instances hold now.
    fn usage(&self) -> BTreeMap<String, Usage> {
        let mut usage: BTreeMap<String, Usage> = BTreeMap::new();
        for node in self.nodes.values() {
            for ((job, _), occupancy) in &node.attempts {
                if occupancy.cancelled {
                    continue;
                }
                let Some(job) = self.jobs.get(job) else {
                    continue;
                };
                usage
                    .entry(job.spec.namespace.clone())
                    .or_default()
                    .take(occupancy.memory_bytes);
            }
        }
        usage
    }

    /// Walks the active jobs in placement order and places every instance they miss; the
    /// others are told why they wait. Assignments, preemptions and failures join the batch:
    /// committed with it, then sent.
    fn schedule(&mut self) {
        self.dirty = false;
        let now = self.clock.now_ms();
        let mut cluster = Cluster::new(self.nodes.values().map(Node::view).collect());
        let mut usage = self.usage();
        let order: Vec<JobId> = self.active.iter().map(|(_, id)| id.clone()).collect();
        for id in order {
            let Some(job) = self.jobs.get(&id) else {
                continue;
            };
            if job.state.is_terminal() {
                continue;
            }
            let wanted = match missing_instances(job, self.nodes.keys(), now) {
                Ok(wanted) => wanted,
                Err(why) => {
                    self.fail(&id, why);
                    continue;
                }
            };
            let mut waiting: Vec<String> = wanted.delayed;
            for want in wanted.now {
                let Some(job) = self.jobs.get(&id) else {
                    break;
                };
                let memory = job.spec.capabilities.limits.memory_bytes;
                let ns_usage = usage.get(&job.spec.namespace).copied().unwrap_or_default();
                let quota = self
                    .namespaces
                    .get(&job.spec.namespace)
                    .copied()
                    .unwrap_or_default();
                if let Some(over) = ns_usage.exceeded_by(memory, quota) {
                    waiting.push(over_quota(job, &over));
                    break;
                }
                let placed_on: Vec<NodeId> = job.running().map(|a| a.node.clone()).collect();
                let ask = ask(job, &placed_on, want.node.as_ref());
                match cluster.place(&ask) {
                    Ok(placement) => {
                        let attempt = job.next_attempt();
                        cluster.commit(&ask, &placement, attempt);
                        usage
                            .entry(job.spec.namespace.clone())
                            .or_default()
                            .take(memory);
                        self.assign(&id, want.instance, placement, now);
                    }
                    // A system job does not wait for nodes it may not run on.
                    Err(why) if want.node.is_some() && ruled_out(&why) => {}
                    Err(why) => waiting.push(why.to_string()),
                }
            }
            if let Some(job) = self.jobs.get_mut(&id) {
                job.waiting = (!waiting.is_empty()).then(|| waiting.join("; "));
            }
        }
    }

    /// Records one placement: preempted attempts first, then the new attempt.
    fn assign(&mut self, id: &JobId, instance: u32, placement: Placement, now: u64) {
        let Placement {
            node: node_id,
            preempt,
            explanation,
        } = placement;
        let Some(job) = self.jobs.get(id) else {
            return;
        };
        let priority = job.spec.priority;
        for (victim, attempt) in preempt {
            let why = format!("preempted by job {id} (priority {priority})");
            let Some(record) = self.jobs.get(&victim) else {
                continue;
            };
            if !record.is_running_on(&node_id, attempt) {
                continue;
            }
            let record = record.interrupted(attempt, AllocState::Preempted, why, now);
            info!(job = %victim, attempt, node = %node_id, by = %id, "preempting");
            self.stage(record.clone());
            self.mark_stopping(&node_id, &victim, attempt);
            self.batch.effects.push(Effect::Changed {
                job: Box::new(record),
                why: "preempted",
            });
        }
        let Some(job) = self.jobs.get(id) else {
            return;
        };
        let job = job.assigned(instance, node_id.clone(), explanation.to_string(), now);
        let Some(alloc) = job.allocations.last() else {
            return;
        };
        let key = (job.id.clone(), alloc.attempt);
        let held = occupancy(&job, alloc.memory_bytes);
        let Some(node) = self.nodes.get_mut(&node_id) else {
            return;
        };
        node.attempts.insert(key.clone(), held);
        self.batch.undo.push(Undo::Taken {
            node: node_id.clone(),
            key,
        });
        let assignment = Assignment {
            job: job.id.clone(),
            attempt: alloc.attempt,
            module: job.spec.module,
            capabilities: job.spec.capabilities.clone(),
            stdin: job.spec.stdin.clone(),
            program: job.spec.program().to_owned(),
            grant: job.spec.grant.clone(),
        };
        self.audit(|at_ms| {
            audit::Entry::Placement(audit::Placement {
                at_ms,
                job: job.id.to_string(),
                attempt: alloc.attempt,
                node: alloc.node.to_string(),
                explanation: alloc.placement.clone(),
            })
        });
        self.stage(job.clone());
        self.batch.effects.push(Effect::Assigned {
            job: Box::new(job),
            assignment: Box::new(assignment),
        });
    }

    /// Fails a job in the batch (an instance exhausted its restarts) and stops what it runs.
    fn fail(&mut self, id: &JobId, why: String) {
        let Some(job) = self.jobs.get(id) else {
            return;
        };
        warn!(job = %id, "job failed: {why}");
        let running: Vec<(NodeId, u32)> =
            job.running().map(|a| (a.node.clone(), a.attempt)).collect();
        let failed = job.failed(why, self.clock.now_ms());
        self.stage(failed.clone());
        for (node, attempt) in running {
            self.mark_stopping(&node, id, attempt);
        }
        self.batch.effects.push(Effect::Changed {
            job: Box::new(failed),
            why: "failed",
        });
    }

    /// In a batch: the attempt is no longer current, its host is told after the commit.
    fn mark_stopping(&mut self, node_id: &NodeId, job: &JobId, attempt: u32) {
        let key = (job.clone(), attempt);
        if let Some(occupancy) = self
            .nodes
            .get_mut(node_id)
            .and_then(|n| n.attempts.get_mut(&key))
        {
            occupancy.cancelled = true;
            self.batch.undo.push(Undo::Stopping {
                node: node_id.clone(),
                key,
            });
        }
        self.batch.effects.push(Effect::Stop {
            node: node_id.clone(),
            job: job.clone(),
            attempt,
        });
    }

    /// Where a job's instances would go now: a scheduling pass for it alone, on a copy of
    /// the cluster, that changes nothing.
    async fn plan(&mut self, spec: JobSpec) -> Result<Vec<PlannedInstance>, SchedulerError> {
        self.check_module(&spec).await?;
        let now = self.clock.now_ms();
        let job = JobRecord::new(JobId::from("(planned)".to_owned()), spec, now);
        let mut cluster = Cluster::new(self.nodes.values().map(Node::view).collect());
        let mut usage = self
            .usage()
            .get(&job.spec.namespace)
            .copied()
            .unwrap_or_default();
        let quota = self
            .namespaces
            .get(&job.spec.namespace)
            .copied()
            .unwrap_or_default();
        let wanted = missing_instances(&job, self.nodes.keys(), now).unwrap_or_default();
        let memory = job.spec.capabilities.limits.memory_bytes;
        let mut placed_on = Vec::new();
        let mut planned = Vec::new();
        for (n, want) in wanted.now.into_iter().enumerate() {
            let attempt = u32::try_from(n).unwrap_or(u32::MAX).saturating_add(1);
            if let Some(over) = usage.exceeded_by(memory, quota) {
                planned.push(PlannedInstance {
                    instance: want.instance,
                    node: None,
                    explanation: over_quota(&job, &over),
                    preempt: Vec::new(),
                });
                continue;
            }
            let ask = ask(&job, &placed_on, want.node.as_ref());
            match cluster.place(&ask) {
                Ok(placement) => {
                    cluster.commit(&ask, &placement, attempt);
                    usage.take(memory);
                    placed_on.push(placement.node.clone());
                    planned.push(PlannedInstance {
                        instance: want.instance,
                        node: Some(placement.node),
                        explanation: placement.explanation.to_string(),
                        preempt: placement.preempt,
                    });
                }
                Err(why) => {
                    if want.node.is_some() && ruled_out(&why) {
                        // A system job does not run on nodes its constraints rule out.
                        continue;
                    }
                    planned.push(PlannedInstance {
                        instance: want.instance,
                        node: None,
                        explanation: why.to_string(),
                        preempt: Vec::new(),
                    });
                }
            }
        }
        Ok(planned)
    }

    fn node_summary(&self, id: &NodeId) -> Result<NodeSummary, SchedulerError> {
        self.nodes
            .get(id)
            .map(Node::summary)
            .ok_or_else(|| SchedulerError::NodeNotFound(id.clone()))
    }

    async fn persist_node(&self, id: &NodeId) -> Result<(), SchedulerError> {
        let Some(record) = self.nodes.get(id).map(Node::record) else {
            return Err(SchedulerError::NodeNotFound(id.clone()));
        };
        let key = id.to_string();
        self.store
            .call(move |s| s.put_record(RecordKind::Node, &key, &record))
            .await?;
        Ok(())
    }

    /// Starts a drain: the node takes no new work; its service and system instances stop now
    /// and are placed elsewhere; batch work may finish until the deadline.
    async fn drain(
        &mut self,
        id: NodeId,
        deadline: Duration,
    ) -> Result<NodeSummary, SchedulerError> {
        let node = self
            .nodes
            .get_mut(&id)
            .ok_or_else(|| SchedulerError::NodeNotFound(id.clone()))?;
        let previous = node.drain;
        let now = self.clock.now_ms();
        node.drain = Some(Drain {
            started_at_ms: now,
            deadline_ms: now
                .saturating_add(u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX)),
        });
        if let Err(e) = self.persist_node(&id).await {
            if let Some(node) = self.nodes.get_mut(&id) {
                node.drain = previous;
            }
            return Err(e);
        }
        info!(node = %id, ?deadline, "node draining");
        let movable: Vec<(NodeId, JobId, u32)> = self
            .nodes
            .get(&id)
            .map(|n| {
                n.attempts
                    .iter()
                    .filter(|(_, o)| !o.cancelled && !o.preemptible)
                    .map(|((job, attempt), _)| (id.clone(), job.clone(), *attempt))
                    .collect()
            })
            .unwrap_or_default();
        self.stop_attempts(movable, AllocState::Stopped, "node draining")
            .await;
        self.dirty = true;
        self.node_summary(&id)
    }

    async fn set_eligibility(
        &mut self,
        id: NodeId,
        eligible: bool,
    ) -> Result<NodeSummary, SchedulerError> {
        let node = self
            .nodes
            .get_mut(&id)
            .ok_or_else(|| SchedulerError::NodeNotFound(id.clone()))?;
        let previous = (node.eligible, node.drain);
        node.eligible = eligible;
        if eligible {
            // Making a node eligible again is how a drain ends.
            node.drain = None;
        }
        if let Err(e) = self.persist_node(&id).await {
            if let Some(node) = self.nodes.get_mut(&id) {
                (node.eligible, node.drain) = previous;
            }
            return Err(e);
        }
        info!(node = %id, eligible, "node eligibility set");
        self.dirty = true;
        self.node_summary(&id)
    }

    fn namespace_summaries(&self) -> Vec<NamespaceSummary> {
        let usage = self.usage();
        let mut names: BTreeSet<String> = self.namespaces.keys().cloned().collect();
        names.insert(DEFAULT_NAMESPACE.to_owned());
        let mut active: BTreeMap<&str, u32> = BTreeMap::new();
        for job in self.jobs.values() {
            names.insert(job.spec.namespace.clone());
            if !job.state.is_terminal() {
                *active.entry(&job.spec.namespace).or_default() += 1;
            }
        }
        names
            .into_iter()
            .map(|name| NamespaceSummary {
                quota: self.namespaces.get(&name).copied().unwrap_or_default(),
                usage: usage.get(&name).copied().unwrap_or_default(),
                active_jobs: active.get(name.as_str()).copied().unwrap_or_default(),
                name,
            })
            .collect()
    }

    async fn set_quota(
        &mut self,
        namespace: String,
        quota: Quota,
    ) -> Result<NamespaceSummary, SchedulerError> {
        let record = NamespaceRecord {
            name: namespace.clone(),
            quota,
        };
        let key = namespace.clone();
        self.store
            .call(move |s| s.put_record(RecordKind::Namespace, &key, &record))
            .await?;
        info!(%namespace, ?quota, "namespace quota set");
        self.namespaces.insert(namespace.clone(), quota);
        self.dirty = true;
        self.namespace_summaries()
            .into_iter()
            .find(|n| n.name == namespace)
            .ok_or_else(|| {
                SchedulerError::Store(Arc::new(StoreError::Task("namespace vanished".to_owned())))
            })
    }

    /// Changes a job in memory now and in the store at the next commit, remembering how to
    /// undo it. Watchers hear of it after the commit.
    fn stage(&mut self, job: JobRecord) {
        if job.state.is_terminal() {
            self.active.remove(&queue_key(&job));
        } else {
            self.active.insert(queue_key(&job));
        }
        if let Some(old) = self.jobs.insert(job.id.clone(), job.clone()) {
            self.batch.undo.push(Undo::Record(Box::new(old)));
        }
        match self.batch.writes.get_mut(&job.id) {
            Some(write) => write.record = job,
            None => {
                let id = job.id.clone();
                self.batch.writes.insert(
                    id,
                    JobWrite {
                        record: job,
                        new: false,
                    },
                );
            }
        }
    }

    /// Commits the batch in one transaction, then sends what it owes, in order; if the commit
    /// fails, undoes it first (see the module documentation).
    async fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let Batch {
            writes,
            undo,
            effects,
            audit,
        } = std::mem::take(&mut self.batch);
        let committed = self.commit(writes.into_values().collect(), audit).await;
        if let Err(e) = &committed {
            error!(error = %e, "cannot commit a batch of changes; undoing it");
            for step in undo.into_iter().rev() {
                self.undo(step);
            }
        }
        for effect in effects {
            self.release(effect, committed.as_ref().err());
        }
    }

    fn undo(&mut self, step: Undo) {
        match step {
            Undo::Accepted(id) => {
                if let Some(job) = self.jobs.remove(&id) {
                    self.active.remove(&queue_key(&job));
                }
            }
            Undo::Record(job) => {
                if job.state.is_terminal() {
                    self.active.remove(&queue_key(&job));
                } else {
                    self.active.insert(queue_key(&job));
                }
                self.jobs.insert(job.id.clone(), *job);
            }
            Undo::Freed {
                node,
                key,
                occupancy,
            } => {
                if let Some(node) = self.nodes.get_mut(&node) {
                    node.attempts.insert(key, occupancy);
                }
            }
            Undo::Taken { node, key } => {
                if let Some(node) = self.nodes.get_mut(&node) {
                    node.attempts.remove(&key);
                }
            }
            Undo::Stopping { node, key } => {
                if let Some(o) = self
                    .nodes
                    .get_mut(&node)
                    .and_then(|n| n.attempts.get_mut(&key))
                {
                    o.cancelled = false;
                }
            }
        }
    }

    /// Sends what one command owes, given how the commit went.
    fn release(&mut self, effect: Effect, failed: Option<&Arc<StoreError>>) {
        match (effect, failed) {
            (Effect::Answer(send), _) => send(),
            (Effect::Accepted { job, watch, reply }, None) => {
                info!(job = %job.id, module = %job.spec.module, kind = job.spec.kind.name(), "job accepted");
                if let Some(events) = watch {
                    // Before the batch's later effects, which tell watchers what followed.
                    self.attach(job.clone(), events);
                }
                let _ = reply.send(Ok(*job));
            }
            (Effect::Accepted { reply, .. }, Some(e)) => {
                let _ = reply.send(Err(SchedulerError::Store(Arc::clone(e))));
            }
            (Effect::Changed { job, why }, None) => {
                info!(job = %job.id, state = ?job.state, message = %job.message, "{why}");
                self.notify(&job);
            }
            (Effect::Changed { job, why, .. }, Some(_)) => {
                error!(job = %job.id, "cannot commit a change ({why}); not applied");
            }
            (Effect::Assigned { job, assignment }, None) => {
                // Watchers first: the task last woken here runs first when the state task
                // yields, and the host's is the one a job waits for.
                self.notify(&job);
                if let Some(node) = job.last_node().and_then(|n| self.nodes.get_mut(n)) {
                    info!(job = %job.id, node = %node.id(), attempt = assignment.attempt, "job assigned");
                    node.assign(assignment);
                }
            }
            (Effect::Assigned { job, .. }, Some(_)) => {
                error!(job = %job.id, "cannot persist an assignment; the instance stays pending");
            }
            (Effect::Stop { node, job, attempt }, None) => {
                if let Some(node) = self.nodes.get(&node) {
                    node.send(ToHost::Cancel { job, attempt });
                }
            }
            (Effect::Stop { .. }, Some(_)) => {}
            (Effect::Recorded { reply }, None) => {
                let _ = reply.send(Ok(()));
            }
            (Effect::Recorded { reply }, Some(e)) => {
                let _ = reply.send(Err(SchedulerError::Store(Arc::clone(e))));
            }
        }
    }

    /// Closes host streams and watches so that the server can drain. Nodes are marked down
    /// without declaring their attempts lost: the store still says they run, and the next
    /// start waits for their hosts to reconnect.
    fn close_streams(&mut self) {
        info!("shutting down: closing host streams and watches");
        self.closing = true;
        for node in self.nodes.values_mut() {
            node.state = NodeState::Down;
            node.connection = None;
        }
        self.watchers.clear();
    }

    async fn persist(&self, jobs: Vec<JobRecord>) -> Result<Vec<JobRecord>, StoreError> {
        self.store
            .call(move |s| {
                s.put_jobs(&jobs)?;
                Ok(jobs)
            })
            .await
    }

    /// Installs a committed transition: the job, the active set, and the job's watchers.
    fn apply(&mut self, job: JobRecord) {
        if job.state.is_terminal() {
            self.active.remove(&queue_key(&job));
        } else {
            self.active.insert(queue_key(&job));
        }
        self.notify(&job);
        self.jobs.insert(job.id.clone(), job);
    }

    /// Stages an audit entry recording a decision of the batch, if an audit log is kept: it is
    /// committed with the batch, or dropped with it if the commit fails.
    fn audit(&mut self, entry: impl FnOnce(u64) -> audit::Entry) {
        if let Some(entry) = self.audit_entry(entry) {
            self.batch.audit.push(entry);
        }
    }

    /// An audit entry stamped now, if an audit log is kept.
    fn audit_entry(&self, entry: impl FnOnce(u64) -> audit::Entry) -> Option<audit::Entry> {
        self.audit.as_ref().map(|_| entry(self.clock.now_ms()))
    }

    /// Commits job writes and the audit entries recording them in one transaction (with the
    /// deletion of outbox entries the audit writer has appended), then wakes the writer; see
    /// [`crate::audit`].
    async fn commit(
        &mut self,
        writes: Vec<JobWrite>,
        entries: Vec<audit::Entry>,
    ) -> Result<(), Arc<StoreError>> {
        let outbox = match &self.audit {
            Some(sink) => sink.outbox(&entries),
            None => crate::store::OutboxWrite::nothing(),
        };
        if writes.is_empty() && outbox.is_empty() {
            return Ok(());
        }
        let committed = self.store.commit_batch(writes, outbox.clone()).await;
        match (committed, &mut self.audit) {
            (Ok(end), Some(sink)) => {
                sink.committed(end, &outbox);
                Ok(())
            }
            (Ok(_), None) => Ok(()),
            (Err(e), sink) => {
                if let Some(sink) = sink {
                    sink.failed();
                }
                Err(Arc::new(e))
            }
        }
    }

    fn notify(&mut self, job: &JobRecord) {
        let Some(watchers) = self.watchers.get_mut(&job.id) else {
            return;
        };
        watchers.retain(
            |w| match w.try_send(WatchEvent::Job(Box::new(job.clone()))) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    warn!(job = %job.id, "watcher too far behind; closing its stream");
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            },
        );
        // Dropping the senders ends the streams after the events already sent.
        if job.state.is_terminal() || watchers.is_empty() {
            self.watchers.remove(&job.id);
        }
    }
}

/// What placement is asked for one instance of `job`.
fn ask<'a>(job: &'a JobRecord, placed_on: &'a [NodeId], only_node: Option<&'a NodeId>) -> Ask<'a> {
    Ask {
        job: &job.id,
        module: &job.spec.module,
        memory_bytes: job.spec.capabilities.limits.memory_bytes,
        priority: job.spec.priority,
        spec: &job.spec.placement,
        placed_on,
        only_node,
        preemptible: job.spec.kind == JobKind::Batch,
    }
}

/// Why an instance of `job` waits for its namespace's quota.
fn over_quota(job: &JobRecord, over: &str) -> String {
    format!("namespace {} over quota: {over}", job.spec.namespace)
}

/// True when a system job's instance may not run on its node at all (down, draining,
/// ineligible, or failing a constraint), as opposed to waiting for room there.
fn ruled_out(why: &Unplaceable) -> bool {
    why.explanation
        .filtered
        .keys()
        .any(|k| k != placement::NOT_REQUESTED)
}

/// One instance to place now; `node` is set for a system job's instance on that node.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Want {
    instance: u32,
    node: Option<NodeId>,
}

/// The instances a job misses: those to place now, and why the others wait.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Wanted {
    now: Vec<Want>,
    delayed: Vec<String>,
}

/// What a job that is not terminal misses, given the nodes known: a batch job one instance
/// while nothing runs; a service each replica not running; a system job an instance on every
/// node without one (placement then rules out the nodes it may not run on). A service or
/// system instance that ended by itself restarts after its backoff.
///
/// # Errors
/// Why the job fails: an instance ended by itself more often than its policy allows.
fn missing_instances<'a>(
    job: &JobRecord,
    nodes: impl Iterator<Item = &'a NodeId>,
    now_ms: u64,
) -> Result<Wanted, String> {
    let mut wanted = Wanted::default();
    let mut check = |key: String, history: Vec<&crate::job::Allocation>, want: Want| {
        match job.restart(history.into_iter()) {
            Restart::Now => wanted.now.push(want),
            Restart::At(at) if at <= now_ms => wanted.now.push(want),
            Restart::At(at) => wanted.delayed.push(format!(
                "{key} restarts in {:.1}s",
                Duration::from_millis(at - now_ms).as_secs_f64()
            )),
            Restart::Exhausted(times) => {
                return Err(format!(
                    "{key} ended {times} times, more than the {} restarts allowed",
                    job.spec.restart.attempts
                ));
            }
        }
        Ok(())
    };
    match job.spec.kind {
        JobKind::Batch => {
            if job.running().next().is_none() {
                wanted.now.push(Want {
                    instance: 0,
                    node: None,
                });
            }
        }
        JobKind::Service { replicas } => {
            for instance in 0..replicas {
                let history: Vec<_> = job
                    .allocations
                    .iter()
                    .filter(|a| a.instance == instance)
                    .collect();
                if history.iter().any(|a| a.state == AllocState::Running) {
                    continue;
                }
                check(
                    format!("instance {instance}"),
                    history,
                    Want {
                        instance,
                        node: None,
                    },
                )?;
            }
        }
        JobKind::System => {
            for node in nodes {
                let history: Vec<_> = job.allocations.iter().filter(|a| a.node == *node).collect();
                if history.iter().any(|a| a.state == AllocState::Running) {
                    continue;
                }
                check(
                    format!("instance on node {node}"),
                    history,
                    Want {
                        instance: 0,
                        node: Some(node.clone()),
                    },
                )?;
            }
        }
    }
    Ok(wanted)
}
