//! The scheduler's state and its one owner: a task that holds the jobs, the queue, the nodes
//! and the watchers, and changes them only in response to a closed set of [`Command`]s.
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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, debug, error, info, info_span, warn};
use vauban_core::ModuleDigest;

use crate::job::{JobId, JobRecord, JobSpec, JobState, OutputChunk, RunEnd};
use crate::node::{
    Assignment, Connection, ConnectionId, HostEvent, Node, NodeId, NodeState, NodeSummary,
    Occupancy, Registration, RunningAttempt, ToHost,
};
use crate::placement::{self, NodeView, Requirements};
use crate::store::{JobWrite, Store, StoreError};

#[cfg(test)]
mod tests;

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
#[derive(Clone, Copy, Debug)]
pub(crate) struct StateConfig {
    /// A ready node silent for longer is marked down.
    pub(crate) down_after: Duration,
}

/// Why a command failed. The gRPC edge turns it into a status.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SchedulerError {
    #[error("job {0} not found")]
    JobNotFound(JobId),
    #[error("module {0} is not uploaded")]
    ModuleNotUploaded(ModuleDigest),
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

/// Everything the state task does, and nothing else.
#[derive(Debug)]
pub(crate) enum Command {
    /// Accept a job (its module must be stored).
    Submit {
        spec: JobSpec,
        reply: Reply<JobRecord>,
    },
    Get {
        id: JobId,
        reply: Reply<JobRecord>,
    },
    /// Jobs, newest first.
    List {
        state: Option<JobState>,
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
    /// A host registered on a new stream; `outbound` carries what is sent to it.
    NodeConnected {
        registration: Registration,
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
    /// Time passed: look for silent nodes.
    Tick,
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
        self.ask(|reply| Command::Submit { spec, reply }).await?
    }

    pub(crate) async fn get(&self, id: JobId) -> Result<JobRecord, SchedulerError> {
        self.ask(|reply| Command::Get { id, reply }).await?
    }

    pub(crate) async fn list(
        &self,
        state: Option<JobState>,
        limit: usize,
    ) -> Result<Vec<JobRecord>, SchedulerError> {
        self.ask(|reply| Command::List {
            state,
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

    pub(crate) async fn node_connected(
        &self,
        registration: Registration,
        outbound: mpsc::UnboundedSender<ToHost>,
    ) -> Result<ConnectionHandle, SchedulerError> {
        self.ask(|reply| Command::NodeConnected {
            registration,
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

    pub(crate) async fn tick(&self) -> Result<(), SchedulerError> {
        self.send(Command::Tick).await
    }
}

/// Recovers the state from the store and starts the task that owns it.
///
/// Jobs that were running when the scheduler stopped go back to the queue (their hosts' streams
/// are gone, and with them any way to hear their results). When `closing` is cancelled the task
/// closes every host stream and watch, so that the gRPC server can drain, and refuses new ones;
/// it keeps answering other commands until `stop` is cancelled or every handle is dropped.
pub(crate) async fn start(
    store: Store,
    config: StateConfig,
    closing: CancellationToken,
    stop: CancellationToken,
) -> Result<(SchedulerHandle, JoinHandle<()>), StoreError> {
    let jobs = store.call(recover).await?;
    let queue: BTreeSet<JobId> = jobs
        .iter()
        .filter(|j| j.state == JobState::Pending)
        .map(|j| j.id.clone())
        .collect();
    info!(
        jobs = jobs.len(),
        pending = queue.len(),
        "scheduler state recovered"
    );
    let state = State {
        config,
        store,
        jobs: jobs.into_iter().map(|j| (j.id.clone(), j)).collect(),
        queue,
        nodes: BTreeMap::new(),
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

/// Loads every job and requeues those that were running, durably, before anything is served.
fn recover(store: &Store) -> Result<Vec<JobRecord>, StoreError> {
    let mut jobs = store.load_jobs()?;
    let mut requeued = Vec::new();
    for job in &mut jobs {
        if job.state == JobState::Running {
            *job = job.requeued("scheduler restarted; requeued".to_owned());
            requeued.push(job.clone());
        }
    }
    if !requeued.is_empty() {
        warn!(
            jobs = requeued.len(),
            "requeuing jobs that were running before the restart"
        );
        store.put_jobs(&requeued)?;
    }
    Ok(jobs)
}

/// The state itself, owned by the task running [`State::run`].
struct State {
    config: StateConfig,
    store: Store,
    /// Every job, by id: ids sort in submission order.
    jobs: BTreeMap<JobId, JobRecord>,
    /// Ids of the pending jobs, oldest first. Invariant: exactly the jobs in state Pending.
    queue: BTreeSet<JobId>,
    /// Every node that ever registered since the start, ready or down.
    nodes: BTreeMap<NodeId, Node>,
    /// Open watches of non-terminal jobs.
    watchers: HashMap<JobId, Vec<mpsc::Sender<WatchEvent>>>,
    /// Modules known to be stored. Modules are never removed, so once seen a module need not
    /// be looked up again for every job.
    modules: HashSet<ModuleDigest>,
    next_connection: ConnectionId,
    /// Shutting down: host streams and watches are closed and no new ones are opened.
    closing: bool,
    /// The queue or the capacity changed since the last scheduling pass.
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
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.undo.is_empty() && self.effects.is_empty()
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
}

/// What a batch owes once its commit is done (or has failed).
enum Effect {
    /// A reply that describes committed state: sent either way.
    Answer(Box<dyn FnOnce() + Send + Sync>),
    /// A submit's reply: the job as accepted, or the commit's error.
    Accepted {
        job: Box<JobRecord>,
        reply: Reply<JobRecord>,
    },
    /// A result recorded: watchers are told.
    Finished { job: Box<JobRecord>, node: NodeId },
    /// An assignment made: the host is sent it and watchers are told.
    Assigned {
        job: Box<JobRecord>,
        assignment: Box<Assignment>,
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
            Command::Submit { spec, reply } => self.submit(spec, reply).await,
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
                limit,
                reply,
            } => {
                self.settle().await;
                let jobs = self
                    .jobs
                    .values()
                    .rev()
                    .filter(|j| state.is_none_or(|s| j.state == s))
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
            Command::NodeConnected {
                registration,
                outbound,
                reply,
            } => {
                self.settle().await;
                let _ = reply.send(self.node_connected(registration, outbound));
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
            Command::Tick => {
                self.settle().await;
                self.tick().await;
                self.settle().await;
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

    /// Accepts a job into the batch; it is acknowledged once the batch is committed.
    async fn submit(&mut self, spec: JobSpec, reply: Reply<JobRecord>) {
        match self.module_stored(spec.module).await {
            Ok(true) => {}
            Ok(false) => {
                let refused = SchedulerError::ModuleNotUploaded(spec.module);
                self.answer(move || {
                    let _ = reply.send(Err(refused));
                });
                return;
            }
            Err(e) => {
                self.answer(move || {
                    let _ = reply.send(Err(e.into()));
                });
                return;
            }
        }
        let job = JobRecord::new(JobId::generate(), spec, crate::now_ms());
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
            reply,
        });
        self.queue.insert(job.id.clone());
        self.jobs.insert(job.id.clone(), job);
        self.dirty = true;
    }

    /// Whether the store holds this module, asked of the store only until it says yes.
    async fn module_stored(&mut self, module: ModuleDigest) -> Result<bool, StoreError> {
        if self.modules.contains(&module) {
            return Ok(true);
        }
        let stored = self.store.call(move |s| s.module(&module)).await?.is_some();
        if stored {
            self.modules.insert(module);
        }
        Ok(stored)
    }

    async fn cancel(&mut self, id: JobId) -> Result<JobRecord, SchedulerError> {
        let job = self
            .jobs
            .get(&id)
            .ok_or_else(|| SchedulerError::JobNotFound(id.clone()))?;
        if job.state.is_terminal() {
            return Ok(job.clone());
        }
        let running = (job.state == JobState::Running)
            .then(|| job.node.clone().map(|node| (node, job.attempts)))
            .flatten();
        let cancelled = self.persist_one(job.cancelled(crate::now_ms())).await?;
        info!(job = %id, "job cancelled");
        if let Some((node_id, attempt)) = running
            && let Some(node) = self.nodes.get_mut(&node_id)
        {
            // The slot stays taken until the host confirms the attempt is over.
            if let Some(occupancy) = node.attempts.get_mut(&(id.clone(), attempt)) {
                occupancy.cancelled = true;
            }
            node.send(ToHost::Cancel {
                job: id.clone(),
                attempt,
            });
        }
        self.apply(cancelled.clone());
        Ok(cancelled)
    }

    fn watch(&mut self, id: JobId) -> Result<mpsc::Receiver<WatchEvent>, SchedulerError> {
        if self.closing {
            return Err(SchedulerError::ShuttingDown);
        }
        let job = self
            .jobs
            .get(&id)
            .ok_or_else(|| SchedulerError::JobNotFound(id.clone()))?;
        let (events, receiver) = mpsc::channel(WATCH_BUFFER);
        // A fresh channel has room for the first event.
        let _ = events.try_send(WatchEvent::Job(Box::new(job.clone())));
        if !job.state.is_terminal() {
            let watchers = self.watchers.entry(id).or_default();
            // Clients that went away are otherwise only noticed at the job's next event.
            watchers.retain(|w| !w.is_closed());
            watchers.push(events);
        }
        Ok(receiver)
    }

    fn node_connected(
        &mut self,
        registration: Registration,
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
            "node registered"
        );
        let now = Instant::now();
        match self.nodes.get_mut(&registration.id) {
            Some(node) => {
                if node.connection.is_some() {
                    info!(node = %registration.id, "closing the stream the node registered on before");
                }
                // The attempts it holds are kept: if the host still runs them, its heartbeats
                // list them and their results are accepted on the new stream; if not, they are
                // requeued after two heartbeats without them.
                node.registration = registration;
                node.state = NodeState::Ready;
                node.connection = Some(connection);
                node.restart_sequence();
                node.last_heartbeat = now;
                node.last_heartbeat_ms = crate::now_ms();
            }
            None => {
                let id = registration.id.clone();
                self.nodes
                    .insert(id, Node::new(registration, connection, now));
            }
        }
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
            } => {
                self.settle().await;
                self.heartbeat(node_id, &running, assignments_received)
                    .await;
                self.settle().await;
            }
            HostEvent::Output {
                job,
                attempt,
                chunk,
            } => self.output(&node_id, &job, attempt, chunk),
            HostEvent::Finished { job, attempt, end } => {
                if self.batch.touches(&job) {
                    self.settle().await;
                }
                self.finished(node_id, job, attempt, end);
            }
        }
    }

    async fn heartbeat(
        &mut self,
        node_id: NodeId,
        running: &[RunningAttempt],
        assignments_received: u64,
    ) {
        let Some(node) = self.nodes.get_mut(&node_id) else {
            return;
        };
        node.last_heartbeat = Instant::now();
        node.last_heartbeat_ms = crate::now_ms();
        let reconciled = node.reconcile(running, assignments_received);
        for (job, attempt) in reconciled.unknown {
            // Typically an attempt that was requeued while its node was cut off: stop the
            // duplicate.
            info!(node = %node_id, %job, attempt, "node runs an attempt that is not its own; cancelling it");
            node.send(ToHost::Cancel { job, attempt });
        }
        if reconciled.released > 0 {
            self.dirty = true;
        }
        let lost = reconciled
            .lost
            .into_iter()
            .filter_map(|(job, attempt)| {
                let job = self.jobs.get(&job)?;
                job.is_running_on(&node_id, attempt).then(|| {
                    job.requeued(format!(
                        "node {node_id} stopped running attempt {attempt}; requeued"
                    ))
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
    /// node. Anything else (an attempt requeued since, a cancelled job, a duplicate) is stale.
    fn finished(&mut self, node_id: NodeId, job_id: JobId, attempt: u32, end: RunEnd) {
        let Some(node) = self.nodes.get_mut(&node_id) else {
            return;
        };
        let key = (job_id.clone(), attempt);
        let Some(occupancy) = node.attempts.remove(&key) else {
            info!(node = %node_id, job = %job_id, attempt, "ignoring a stale result: the node does not hold this attempt");
            return;
        };
        self.dirty = true;
        let Some(job) = self
            .jobs
            .get(&job_id)
            .filter(|j| j.is_running_on(&node_id, attempt))
        else {
            info!(node = %node_id, job = %job_id, attempt, "ignoring a stale result: the job no longer runs this attempt");
            return;
        };
        let done = job.finished(end, crate::now_ms());
        // Undone if the commit fails: keeping the attempt on the node means it is requeued, and
        // run again, once the host stops listing it. A result is never recorded twice, but may
        // be lost.
        self.batch.undo.push(Undo::Freed {
            node: node_id.clone(),
            key,
            occupancy,
        });
        self.stage(done.clone());
        self.batch.effects.push(Effect::Finished {
            job: Box::new(done),
            node: node_id,
        });
    }

    async fn tick(&mut self) {
        let now = Instant::now();
        let down_after = self.config.down_after;
        let silent: Vec<NodeId> = self
            .nodes
            .values()
            .filter(|n| {
                n.state == NodeState::Ready && now.duration_since(n.last_heartbeat) > down_after
            })
            .map(|n| n.id().clone())
            .collect();
        for node in silent {
            self.node_down(node, &format!("no heartbeat for {down_after:?}"))
                .await;
        }
    }

    /// Marks a node down, closes its stream (its host sees the end and reconnects) and
    /// requeues its running jobs, attempts kept.
    async fn node_down(&mut self, node_id: NodeId, why: &str) {
        let Some(node) = self.nodes.get_mut(&node_id) else {
            return;
        };
        warn!(node = %node_id, "node down: {why}");
        node.state = NodeState::Down;
        node.connection = None;
        let attempts = std::mem::take(&mut node.attempts);
        let lost = attempts
            .into_keys()
            .filter_map(|(job, attempt)| {
                let job = self.jobs.get(&job)?;
                job.is_running_on(&node_id, attempt)
                    .then(|| job.requeued(format!("node {node_id} lost; requeued")))
            })
            .collect();
        self.requeue(lost).await;
        self.dirty = true;
    }

    /// Puts running jobs back in the queue.
    async fn requeue(&mut self, jobs: Vec<JobRecord>) {
        if jobs.is_empty() {
            return;
        }
        for job in &jobs {
            warn!(job = %job.id, attempt = job.attempts, "{}", job.message);
        }
        let jobs = match self.persist(jobs.clone()).await {
            Ok(jobs) => jobs,
            Err(e) => {
                // Applied anyway: the store still says Running, which recovery requeues too, so
                // memory and store converge on the next start. Not applying would leave the jobs
                // running on a node that no longer holds them.
                error!(error = %e, "cannot persist requeued jobs; requeued in memory only");
                jobs
            }
        };
        for job in jobs {
            self.apply(job);
        }
        self.dirty = true;
    }

    /// Walks the pending jobs oldest first and assigns each that fits a node; the others are
    /// told why not. Assignments join the batch: committed with it, then sent.
    fn schedule(&mut self) {
        self.dirty = false;
        let mut views: Vec<NodeView> = self.nodes.values().map(Node::view).collect();
        let mut assigned = Vec::new();
        for id in &self.queue {
            let Some(job) = self.jobs.get_mut(id) else {
                continue;
            };
            let req = Requirements {
                label_selector: job.spec.label_selector.clone(),
                memory_bytes: job.spec.capabilities.limits.memory_bytes,
            };
            match placement::place(&views, &req) {
                Ok(node) => {
                    if let Some(view) = views.iter_mut().find(|v| v.id == node) {
                        view.free_slots = view.free_slots.saturating_sub(1);
                        view.free_memory_bytes =
                            view.free_memory_bytes.saturating_sub(req.memory_bytes);
                    }
                    job.waiting = None;
                    assigned.push(job.assigned(node));
                }
                Err(why) => job.waiting = Some(why.to_string()),
            }
        }
        for job in assigned {
            let Some(node_id) = job.node.clone() else {
                continue;
            };
            let Some(node) = self.nodes.get_mut(&node_id) else {
                continue;
            };
            let key = (job.id.clone(), job.attempts);
            node.attempts.insert(
                key.clone(),
                Occupancy {
                    memory_bytes: job.spec.capabilities.limits.memory_bytes,
                    cancelled: false,
                    unlisted: 0,
                    sequence: 0,
                },
            );
            self.batch.undo.push(Undo::Taken { node: node_id, key });
            let assignment = Assignment {
                job: job.id.clone(),
                attempt: job.attempts,
                module: job.spec.module,
                capabilities: job.spec.capabilities.clone(),
                stdin: job.spec.stdin.clone(),
                program: job.spec.program().to_owned(),
            };
            self.stage(job.clone());
            self.batch.effects.push(Effect::Assigned {
                job: Box::new(job),
                assignment: Box::new(assignment),
            });
        }
    }

    /// Changes a job in memory now and in the store at the next commit, remembering how to
    /// undo it. Watchers hear of it after the commit.
    fn stage(&mut self, job: JobRecord) {
        if job.state == JobState::Pending {
            self.queue.insert(job.id.clone());
        } else {
            self.queue.remove(&job.id);
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
        } = std::mem::take(&mut self.batch);
        let committed = if writes.is_empty() {
            Ok(())
        } else {
            let writes: Vec<JobWrite> = writes.into_values().collect();
            self.store
                .call(move |s| s.write_jobs(&writes))
                .await
                .map_err(Arc::new)
        };
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
                self.queue.remove(&id);
                self.jobs.remove(&id);
            }
            Undo::Record(job) => {
                if job.state == JobState::Pending {
                    self.queue.insert(job.id.clone());
                } else {
                    self.queue.remove(&job.id);
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
        }
    }

    /// Sends what one command owes, given how the commit went.
    fn release(&mut self, effect: Effect, failed: Option<&Arc<StoreError>>) {
        match (effect, failed) {
            (Effect::Answer(send), _) => send(),
            (Effect::Accepted { job, reply }, None) => {
                info!(job = %job.id, module = %job.spec.module, "job accepted");
                let _ = reply.send(Ok(*job));
            }
            (Effect::Accepted { reply, .. }, Some(e)) => {
                let _ = reply.send(Err(SchedulerError::Store(Arc::clone(e))));
            }
            (Effect::Finished { job, node }, None) => {
                info!(job = %job.id, node = %node, attempt = job.attempts, state = ?job.state, message = %job.message, "job finished");
                self.notify(&job);
            }
            (Effect::Finished { job, .. }, Some(_)) => {
                error!(job = %job.id, "cannot record a result; the job will be requeued");
            }
            (Effect::Assigned { job, assignment }, None) => {
                if let Some(node) = job.node.as_ref().and_then(|n| self.nodes.get_mut(n)) {
                    node.assign(assignment);
                    info!(job = %job.id, node = %node.id(), attempt = job.attempts, "job assigned");
                }
                self.notify(&job);
            }
            (Effect::Assigned { job, .. }, Some(_)) => {
                error!(job = %job.id, "cannot persist an assignment; the job stays pending");
            }
        }
    }

    /// Closes host streams and watches so that the server can drain. Nodes are marked down
    /// without requeuing: their jobs stay Running in the store, and the next start requeues them.
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

    async fn persist_one(&self, job: JobRecord) -> Result<JobRecord, StoreError> {
        let mut jobs = self.persist(vec![job]).await?;
        jobs.pop()
            .ok_or_else(|| StoreError::Task("persisted job went missing".to_owned()))
    }

    /// Installs a committed transition: the job, the queue, and the job's watchers.
    fn apply(&mut self, job: JobRecord) {
        if job.state == JobState::Pending {
            self.queue.insert(job.id.clone());
        } else {
            self.queue.remove(&job.id);
        }
        self.notify(&job);
        self.jobs.insert(job.id.clone(), job);
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
