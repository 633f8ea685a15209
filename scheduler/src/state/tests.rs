//! The state task driven through its command channel, with no network: hosts are channels, time
//! is paused and advanced by hand where heartbeats matter, and nothing sleeps. A command that
//! replies is processed after every command sent before it, so a reply is the synchronisation
//! point for checking what happened before.
//!
//! Group commit is tested on a store whose disk can be held (commits wait) or made to fail. The
//! tests run on tokio's current-thread runtime, so commands sent without awaiting anything in
//! between are all in the channel when the state task next runs, and make one batch.

use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use tempfile::TempDir;
use tokio::sync::mpsc::error::TryRecvError;
use vauban_core::outcome::CapturedOutput;
use vauban_core::{Capabilities, Outcome, SecretKey, TrustStore};
use vauban_proto::convert::RunResult;

use super::*;
use crate::module::ModuleRegistry;

const TINY_MODULE: &[u8] = b"\0asm\x01\0\0\0\x01\x01\x00";
const GIB: u64 = 1 << 30;

struct Harness {
    dir: TempDir,
    scheduler: SchedulerHandle,
    task: JoinHandle<()>,
    closing: CancellationToken,
    stop: CancellationToken,
    module: ModuleDigest,
    /// Job writes the store committed.
    commits: Arc<AtomicUsize>,
}

impl Harness {
    async fn start() -> Self {
        Self::open(tempfile::tempdir().expect("tempdir")).await
    }

    /// Starts a state task on the store in `dir`, with a freshly signed module uploaded.
    async fn open(dir: TempDir) -> Self {
        let store = Store::open(&dir.path().join("state.redb")).expect("open store");
        Self::open_store(dir, store).await
    }

    /// Starts a state task on a store in `dir` whose disk the returned control drives.
    async fn open_flaky() -> (Self, Arc<Disk>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, disk) = Disk::open(&dir.path().join("state.redb"));
        (Self::open_store(dir, store).await, disk)
    }

    async fn open_store(dir: TempDir, store: Store) -> Self {
        let key = SecretKey::generate();
        let registry = ModuleRegistry::new(
            store.clone(),
            TrustStore::new([key.public_key().clone()]),
            1 << 20,
        );
        let module = registry
            .admit("tiny".into(), key.sign_module(TINY_MODULE).expect("sign"))
            .await
            .expect("admit")
            .digest;
        let closing = CancellationToken::new();
        let stop = CancellationToken::new();
        let config = StateConfig {
            down_after: Duration::from_secs(3),
        };
        let commits = Arc::clone(&store.job_commits);
        let (scheduler, task) = start(store, config, closing.clone(), stop.clone())
            .await
            .expect("start");
        Self {
            dir,
            scheduler,
            task,
            closing,
            stop,
            module,
            commits,
        }
    }

    /// Stops the task and hands back the data directory, store closed.
    async fn stop(self) -> TempDir {
        self.stop.cancel();
        self.task.await.expect("state task");
        self.dir
    }

    fn spec(&self) -> JobSpec {
        JobSpec {
            name: "test".into(),
            module: self.module,
            capabilities: Capabilities::default(),
            stdin: Arc::from(&b"input"[..]),
            label_selector: BTreeMap::new(),
        }
    }

    async fn submit(&self) -> JobId {
        let job = self.scheduler.submit(self.spec()).await.expect("submit");
        assert_eq!(job.state, JobState::Pending);
        job.id
    }

    async fn get(&self, id: &JobId) -> JobRecord {
        self.scheduler.get(id.clone()).await.expect("get")
    }

    async fn connect(&self, id: &str, slots: u32) -> Host {
        let (outbound, inbox) = mpsc::unbounded_channel();
        let registration = Registration {
            id: NodeId::from(id),
            labels: BTreeMap::new(),
            slots,
            memory_bytes: GIB,
        };
        let connection = self
            .scheduler
            .node_connected(registration, outbound)
            .await
            .expect("connect");
        Host {
            id: NodeId::from(id),
            connection,
            inbox,
            scheduler: self.scheduler.clone(),
        }
    }
}

/// A fake host: what the scheduler sends it arrives on `inbox`.
struct Host {
    id: NodeId,
    connection: ConnectionHandle,
    inbox: mpsc::UnboundedReceiver<ToHost>,
    scheduler: SchedulerHandle,
}

impl Host {
    async fn assignment(&mut self) -> Assignment {
        match self.inbox.recv().await {
            Some(ToHost::Assign(a)) => *a,
            other => panic!("expected an assignment, got {other:?}"),
        }
    }

    /// Sends a message and waits until the state task has handled it.
    async fn send(&self, event: HostEvent) {
        self.scheduler
            .node_message(self.id.clone(), self.connection.id, event)
            .await
            .expect("send");
        self.scheduler.list_nodes().await.expect("sync");
    }

    async fn finish(&self, job: &JobId, attempt: u32, outcome: Outcome) {
        self.send(HostEvent::Finished {
            job: job.clone(),
            attempt,
            end: RunEnd::Ran(result(outcome)),
        })
        .await;
    }

    async fn heartbeat(&self, running: &[(&JobId, u32)]) {
        let running = running
            .iter()
            .map(|(job, attempt)| RunningAttempt {
                job: (*job).clone(),
                attempt: Some(*attempt),
            })
            .collect();
        // This fake host has read every assignment sent to it before it heartbeats.
        self.send(HostEvent::Heartbeat {
            running,
            assignments_received: u64::MAX,
        })
        .await;
    }

    async fn disconnect(&self) {
        self.scheduler
            .node_disconnected(self.id.clone(), self.connection.id)
            .await
            .expect("disconnect");
    }

    /// Nothing more was sent, once the state task has handled everything before `sync`.
    async fn nothing_sent(&mut self, sync: &Harness) {
        sync.scheduler.list_nodes().await.expect("sync");
        match self.inbox.try_recv() {
            Err(TryRecvError::Empty) => {}
            other => panic!("expected nothing, got {other:?}"),
        }
    }
}

/// Controls a store's disk: writes fail while `failing` is set; syncs wait while `held` is.
#[derive(Debug, Default)]
struct Disk {
    failing: AtomicBool,
    held: Mutex<bool>,
    released: Condvar,
    /// Told each time a sync starts waiting.
    waiting: tokio::sync::Notify,
}

/// A file backend that obeys a [`Disk`].
#[derive(Debug)]
struct FlakyFile {
    file: redb::backends::FileBackend,
    disk: Arc<Disk>,
}

impl Disk {
    /// A store on the file at `path`, and what controls its disk.
    fn open(path: &std::path::Path) -> (Store, Arc<Self>) {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .expect("open file");
        let disk = Arc::new(Self::default());
        let backend = FlakyFile {
            file: redb::backends::FileBackend::new(file).expect("backend"),
            disk: Arc::clone(&disk),
        };
        (Store::with_backend(backend).expect("store"), disk)
    }

    fn hold(&self) {
        *self.held.lock().unwrap_or_else(PoisonError::into_inner) = true;
    }

    fn release(&self) {
        *self.held.lock().unwrap_or_else(PoisonError::into_inner) = false;
        self.released.notify_all();
    }
}

impl redb::StorageBackend for FlakyFile {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.file.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        self.file.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        self.file.set_len(len)
    }

    fn sync_data(&self) -> Result<(), std::io::Error> {
        let mut held = self
            .disk
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if *held {
            self.disk.waiting.notify_one();
        }
        while *held {
            held = self
                .disk
                .released
                .wait(held)
                .unwrap_or_else(PoisonError::into_inner);
        }
        self.file.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        if self.disk.failing.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("disk failing on purpose"));
        }
        self.file.write(offset, data)
    }

    fn close(&self) -> Result<(), std::io::Error> {
        self.file.close()
    }

    fn try_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.file.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.file.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), redb::BackendError> {
        self.file.lock_range(start, end)
    }

    fn lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<(), redb::BackendError> {
        self.file.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), redb::BackendError> {
        self.file.unlock_range(start, end)
    }

    fn query_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.file.query_lock_range(start, end)
    }
}

/// Puts a submit in the channel without waiting for its reply.
async fn send_submit(h: &Harness) -> oneshot::Receiver<Result<JobRecord, SchedulerError>> {
    let (reply, answer) = oneshot::channel();
    h.scheduler
        .commands
        .send(Command::Submit {
            spec: h.spec(),
            reply,
        })
        .await
        .expect("send");
    answer
}

fn result(outcome: Outcome) -> RunResult {
    RunResult {
        outcome,
        stdout: CapturedOutput {
            bytes: b"hello\n".to_vec(),
            dropped: 0,
        },
        stderr: CapturedOutput::default(),
        run_time: Duration::from_millis(2),
        fuel_consumed: None,
        peak_memory_bytes: 65536,
        denials: vec![],
    }
}

async fn next_job_event(events: &mut mpsc::Receiver<WatchEvent>) -> JobRecord {
    match events.recv().await {
        Some(WatchEvent::Job(job)) => *job,
        other => panic!("expected a job event, got {other:?}"),
    }
}

#[tokio::test]
async fn a_job_runs_and_its_result_is_recorded_once() {
    let h = Harness::start().await;
    let id = h.submit().await;
    let mut events = h.scheduler.watch(id.clone()).await.expect("watch");
    let pending = next_job_event(&mut events).await;
    assert_eq!(pending.state, JobState::Pending);
    assert_eq!(
        pending.display_message(),
        "no node fits: no node has registered"
    );

    let mut host = h.connect("n1", 2).await;
    let assignment = host.assignment().await;
    assert_eq!(assignment.job, id);
    assert_eq!(assignment.attempt, 1);
    assert_eq!(assignment.module, h.module);
    assert_eq!(assignment.program, "test");
    assert_eq!(&*assignment.stdin, b"input");
    assert_eq!(assignment.capabilities.limits, vauban_core::Limits::DEFAULT);
    let running = next_job_event(&mut events).await;
    assert_eq!(running.state, JobState::Running);
    assert_eq!(running.node, Some(NodeId::from("n1")));
    assert_eq!(running.attempts, 1);

    let chunk = OutputChunk {
        stream: crate::job::OutputStream::Stdout,
        data: b"hel".to_vec(),
    };
    host.send(HostEvent::Output {
        job: id.clone(),
        attempt: 1,
        chunk: chunk.clone(),
    })
    .await;
    assert_eq!(events.recv().await, Some(WatchEvent::Output(chunk)));

    host.finish(&id, 1, Outcome::Exited { code: 3 }).await;
    let done = next_job_event(&mut events).await;
    assert_eq!(done.state, JobState::Completed);
    assert_eq!(done.message, "exited with code 3");
    assert_eq!(
        events.recv().await,
        None,
        "the watch ends after the final state"
    );

    // The same attempt reported again changes nothing.
    host.finish(&id, 1, Outcome::Exited { code: 0 }).await;
    let job = h.get(&id).await;
    assert_eq!(job, done);
    assert_eq!(
        job.result.map(|r| r.outcome),
        Some(Outcome::Exited { code: 3 })
    );
    host.nothing_sent(&h).await;

    // A terminal job's watch is one event.
    let mut events = h.scheduler.watch(id.clone()).await.expect("watch");
    assert_eq!(next_job_event(&mut events).await.state, JobState::Completed);
    assert_eq!(events.recv().await, None);

    // And it survives a restart as it is.
    let dir = h.stop().await;
    let h = Harness::open(dir).await;
    assert_eq!(h.get(&id).await, done);
}

#[tokio::test]
async fn outcomes_and_refusals_end_jobs_in_their_states() {
    let h = Harness::start().await;
    let mut host = h.connect("n1", 1).await;
    async fn check(h: &Harness, host: &mut Host, end: RunEnd, state: JobState, message: &str) {
        let id = h.submit().await;
        let a = host.assignment().await;
        host.send(HostEvent::Finished {
            job: id.clone(),
            attempt: a.attempt,
            end,
        })
        .await;
        let job = h.get(&id).await;
        assert_eq!((job.state, job.message.as_str()), (state, message));
    }
    check(
        &h,
        &mut host,
        RunEnd::Refused("module is not signed".into()),
        JobState::Failed,
        "refused by node n1: module is not signed",
    )
    .await;
    check(
        &h,
        &mut host,
        RunEnd::Ran(result(Outcome::Denied {
            capability: "directory /etc".into(),
            reason: "outside the allowed roots".into(),
        })),
        JobState::Failed,
        "denied directory /etc: outside the allowed roots",
    )
    .await;
    check(
        &h,
        &mut host,
        RunEnd::Ran(result(Outcome::Cancelled)),
        JobState::Cancelled,
        "cancelled",
    )
    .await;
    check(
        &h,
        &mut host,
        RunEnd::Ran(result(Outcome::Trapped {
            message: "unreachable".into(),
        })),
        JobState::Completed,
        "trapped: unreachable",
    )
    .await;
}

#[tokio::test]
async fn a_result_for_a_stale_attempt_is_ignored() {
    let h = Harness::start().await;
    let id = h.submit().await;
    let mut n1 = h.connect("n1", 1).await;
    assert_eq!(n1.assignment().await.attempt, 1);

    n1.disconnect().await;
    let job = h.get(&id).await;
    assert_eq!(job.state, JobState::Pending);
    assert_eq!(job.message, "node n1 lost; requeued");
    assert_eq!(job.attempts, 1);
    assert_eq!(
        n1.inbox.recv().await,
        None,
        "the lost node's stream is closed"
    );
    assert!(n1.connection.closed.is_cancelled());

    let mut n2 = h.connect("n2", 1).await;
    assert_eq!(n2.assignment().await.attempt, 2);

    // n1 comes back and reports the attempt it was running when it was lost.
    let n1 = h.connect("n1", 1).await;
    n1.finish(&id, 1, Outcome::Exited { code: 0 }).await;
    // n2 mixes up attempt numbers.
    n2.finish(&id, 1, Outcome::Exited { code: 0 }).await;
    let job = h.get(&id).await;
    assert_eq!(job.state, JobState::Running);
    assert_eq!((job.node, job.attempts), (Some(NodeId::from("n2")), 2));

    n2.finish(&id, 2, Outcome::Exited { code: 0 }).await;
    assert_eq!(h.get(&id).await.state, JobState::Completed);
    n2.nothing_sent(&h).await;
}

#[tokio::test(start_paused = true)]
async fn a_silent_node_goes_down_and_its_jobs_are_requeued() {
    let h = Harness::start().await;
    let id = h.submit().await;
    let mut host = h.connect("n1", 1).await;
    host.assignment().await;

    tokio::time::advance(Duration::from_secs(2)).await;
    host.heartbeat(&[(&id, 1)]).await;
    tokio::time::advance(Duration::from_secs(3)).await;
    h.scheduler.tick().await.expect("tick");
    assert_eq!(
        h.get(&id).await.state,
        JobState::Running,
        "3 s is not more than 3 s"
    );

    tokio::time::advance(Duration::from_millis(1)).await;
    h.scheduler.tick().await.expect("tick");
    let job = h.get(&id).await;
    assert_eq!(job.state, JobState::Pending);
    assert_eq!(
        job.display_message(),
        "node n1 lost; requeued; no node fits: 1 down, 0 filtered by label, \
         0 out of slots, 0 out of memory"
    );
    assert_eq!(
        host.inbox.recv().await,
        None,
        "the host sees its stream end"
    );
    let nodes = h.scheduler.list_nodes().await.expect("nodes");
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].state, NodeState::Down);
    assert!(nodes[0].running.is_empty());

    // It reconnects, gets the job back as the next attempt, and the old one's result is stale.
    let mut host = h.connect("n1", 1).await;
    assert_eq!(host.assignment().await.attempt, 2);
    host.finish(&id, 1, Outcome::Exited { code: 0 }).await;
    assert_eq!(h.get(&id).await.state, JobState::Running);
}

#[tokio::test]
async fn an_attempt_missing_from_two_heartbeats_is_requeued() {
    let h = Harness::start().await;
    let id = h.submit().await;
    let mut host = h.connect("n1", 1).await;
    host.assignment().await;

    host.heartbeat(&[]).await;
    assert_eq!(
        h.get(&id).await.state,
        JobState::Running,
        "one is not enough"
    );
    host.heartbeat(&[]).await;
    // Requeued, and placed again at once on the same node, which has room now.
    let again = host.assignment().await;
    assert_eq!((again.job, again.attempt), (id.clone(), 2));

    // A host running an attempt it was not given is told to stop it.
    host.heartbeat(&[(&id, 2), (&id, 1)]).await;
    assert_eq!(
        host.inbox.recv().await,
        Some(ToHost::Cancel {
            job: id.clone(),
            attempt: 1
        })
    );
}

#[tokio::test]
async fn cancelling_a_running_job_keeps_its_slot_until_the_host_stops_it() {
    let h = Harness::start().await;
    let mut host = h.connect("n1", 1).await;
    let first = h.submit().await;
    host.assignment().await;
    let second = h.submit().await;
    assert!(
        h.get(&second)
            .await
            .display_message()
            .contains("1 out of slots"),
    );

    let cancelled = h.scheduler.cancel(first.clone()).await.expect("cancel");
    assert_eq!(cancelled.state, JobState::Cancelled);
    assert_eq!(cancelled.message, "cancelled while running");
    assert_eq!(
        host.inbox.recv().await,
        Some(ToHost::Cancel {
            job: first.clone(),
            attempt: 1
        })
    );
    host.nothing_sent(&h).await;
    assert_eq!(h.get(&second).await.state, JobState::Pending);
    let nodes = h.scheduler.list_nodes().await.expect("nodes");
    assert_eq!(nodes[0].running, vec![first.clone()]);

    // The host reports the attempt over: the slot frees, the result is not recorded.
    host.finish(&first, 1, Outcome::Cancelled).await;
    let a = host.assignment().await;
    assert_eq!((a.job, a.attempt), (second.clone(), 1));
    assert_eq!(h.get(&first).await, cancelled);

    // Cancelling a terminal job returns it as it is; a pending one is cancelled at once.
    assert_eq!(
        h.scheduler.cancel(first.clone()).await.expect("cancel"),
        cancelled
    );
    let third = h.submit().await;
    let job = h.scheduler.cancel(third.clone()).await.expect("cancel");
    assert_eq!(
        (job.state, job.message.as_str()),
        (JobState::Cancelled, "cancelled before it ran")
    );
    host.nothing_sent(&h).await;
    assert!(matches!(
        h.scheduler.cancel(JobId::from("nope".to_owned())).await,
        Err(SchedulerError::JobNotFound(_))
    ));
}

#[tokio::test]
async fn a_cancelled_attempt_frees_its_slot_when_heartbeats_stop_listing_it() {
    let h = Harness::start().await;
    let mut host = h.connect("n1", 1).await;
    let first = h.submit().await;
    host.assignment().await;
    let second = h.submit().await;
    h.scheduler.cancel(first.clone()).await.expect("cancel");
    host.inbox.recv().await;

    host.heartbeat(&[]).await;
    host.nothing_sent(&h).await;
    host.heartbeat(&[]).await;
    assert_eq!(host.assignment().await.job, second);
}

#[tokio::test]
async fn jobs_are_placed_oldest_first_within_capacity() {
    let h = Harness::start().await;
    let ids = [h.submit().await, h.submit().await, h.submit().await];
    let mut host = h.connect("n1", 2).await;
    assert_eq!(host.assignment().await.job, ids[0]);
    assert_eq!(host.assignment().await.job, ids[1]);
    host.nothing_sent(&h).await;
    host.finish(&ids[1], 1, Outcome::Exited { code: 0 }).await;
    assert_eq!(host.assignment().await.job, ids[2]);

    let listed = h.scheduler.list(None, 100).await.expect("list");
    let listed: Vec<_> = listed.into_iter().map(|j| j.id).collect();
    assert_eq!(listed, [ids[2].clone(), ids[1].clone(), ids[0].clone()]);
    let running = h
        .scheduler
        .list(Some(JobState::Running), 1)
        .await
        .expect("list");
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].id, ids[2]);
}

#[tokio::test]
async fn a_job_for_a_module_not_uploaded_is_refused() {
    let h = Harness::start().await;
    let spec = JobSpec {
        module: ModuleDigest::of(b"never uploaded"),
        ..h.spec()
    };
    let err = h.scheduler.submit(spec).await.expect_err("refused");
    assert!(matches!(err, SchedulerError::ModuleNotUploaded(_)));
    assert!(err.to_string().starts_with("module sha256:"), "{err}");
    assert!(err.to_string().ends_with(" is not uploaded"), "{err}");
    assert!(h.scheduler.list(None, 10).await.expect("list").is_empty());
}

#[tokio::test]
async fn a_node_registering_again_replaces_its_stream() {
    let h = Harness::start().await;
    let id = h.submit().await;
    let mut old = h.connect("n1", 1).await;
    old.assignment().await;
    let new = h.connect("n1", 1).await;
    assert!(old.connection.closed.is_cancelled());
    assert_eq!(old.inbox.recv().await, None);

    // The old stream's end and messages are not the node's.
    old.disconnect().await;
    old.finish(&id, 1, Outcome::Exited { code: 0 }).await;
    let nodes = h.scheduler.list_nodes().await.expect("nodes");
    assert_eq!(nodes[0].state, NodeState::Ready);
    assert_eq!(h.get(&id).await.state, JobState::Running);

    // The host kept running the attempt and reports it on the new stream.
    new.finish(&id, 1, Outcome::Exited { code: 0 }).await;
    assert_eq!(h.get(&id).await.state, JobState::Completed);
}

#[tokio::test]
async fn a_restart_requeues_running_jobs_in_submission_order() {
    let h = Harness::start().await;
    let first = h.submit().await;
    let second = h.submit().await;
    let mut host = h.connect("n1", 1).await;
    host.assignment().await;
    assert_eq!(h.get(&first).await.state, JobState::Running);

    let dir = h.stop().await;
    let h = Harness::open(dir).await;
    let job = h.get(&first).await;
    assert_eq!(job.state, JobState::Pending);
    assert_eq!(job.message, "scheduler restarted; requeued");
    assert_eq!(job.attempts, 1);
    assert_eq!(job.node, None);
    assert_eq!(&*job.spec.stdin, b"input");

    let mut host = h.connect("n1", 1).await;
    let a = host.assignment().await;
    assert_eq!((a.job, a.attempt), (first, 2));
    assert_eq!(h.get(&second).await.state, JobState::Pending);
}

#[tokio::test]
async fn closing_ends_host_streams_and_watches_and_refuses_new_ones() {
    let h = Harness::start().await;
    let id = h.submit().await;
    let mut host = h.connect("n1", 1).await;
    host.assignment().await;
    let mut events = h.scheduler.watch(id.clone()).await.expect("watch");
    next_job_event(&mut events).await;

    h.closing.cancel();
    assert_eq!(events.recv().await, None);
    assert_eq!(host.inbox.recv().await, None);
    assert!(matches!(
        h.scheduler.watch(id.clone()).await,
        Err(SchedulerError::ShuttingDown)
    ));
    let (outbound, _inbox) = mpsc::unbounded_channel();
    let registration = Registration {
        id: NodeId::from("n2"),
        labels: BTreeMap::new(),
        slots: 1,
        memory_bytes: GIB,
    };
    assert!(matches!(
        h.scheduler.node_connected(registration, outbound).await,
        Err(SchedulerError::ShuttingDown)
    ));
    // Other requests are still answered while the server drains; the job stays Running in the
    // store, for the next start to requeue.
    assert_eq!(h.get(&id).await.state, JobState::Running);
    let dir = h.stop().await;
    let h = Harness::open(dir).await;
    assert_eq!(h.get(&id).await.state, JobState::Pending);
}

#[tokio::test]
async fn submits_in_one_batch_share_one_commit_and_are_answered_after_it() {
    let (h, disk) = Harness::open_flaky().await;
    let mut host = h.connect("n1", 2).await;
    let commits = Arc::clone(&h.commits);

    disk.hold();
    let before = commits.load(Ordering::SeqCst);
    let mut answers = Vec::new();
    for _ in 0..8 {
        answers.push(send_submit(&h).await);
    }
    // The state task now takes all eight, places two, and waits for the one commit.
    disk.waiting.notified().await;
    for answer in &mut answers {
        assert!(answer.try_recv().is_err(), "answered before the commit");
    }
    assert_eq!(
        host.inbox.try_recv(),
        Err(TryRecvError::Empty),
        "assigned before the commit"
    );
    disk.release();

    let mut ids = Vec::new();
    for answer in answers {
        let job = answer.await.expect("answer").expect("accepted");
        assert_eq!(
            job.state,
            JobState::Pending,
            "the reply is the job as accepted"
        );
        ids.push(job.id);
    }
    assert_eq!(
        commits.load(Ordering::SeqCst) - before,
        1,
        "one commit for the batch"
    );
    // The two oldest were accepted straight into their first attempt, in the same commit.
    for id in &ids[..2] {
        let a = host.assignment().await;
        assert_eq!((&a.job, a.attempt), (id, 1));
    }
    host.nothing_sent(&h).await;
    let running = h
        .scheduler
        .list(Some(JobState::Running), 10)
        .await
        .expect("list");
    assert_eq!(running.len(), 2);
    assert_eq!(
        h.scheduler
            .list(Some(JobState::Pending), 10)
            .await
            .expect("list")
            .len(),
        6
    );

    // What the replies and the assignments announced is what the store holds.
    let dir = h.stop().await;
    let h = Harness::open(dir).await;
    for (i, id) in ids.iter().enumerate() {
        let job = h.get(id).await;
        assert_eq!(job.state, JobState::Pending);
        assert_eq!(&*job.spec.stdin, b"input");
        if i < 2 {
            assert_eq!(
                (job.attempts, job.message.as_str()),
                (1, "scheduler restarted; requeued")
            );
        } else {
            assert_eq!(job.attempts, 0);
        }
    }
}

#[tokio::test]
async fn a_failed_batch_commit_acknowledges_nothing() {
    let (h, disk) = Harness::open_flaky().await;
    let mut host = h.connect("n1", 1).await;
    let running = h.submit().await;
    host.assignment().await;
    let mut events = h.scheduler.watch(running.clone()).await.expect("watch");
    assert_eq!(next_job_event(&mut events).await.state, JobState::Running);

    disk.failing.store(true, Ordering::SeqCst);
    // One batch: the running job's result frees the slot, two submits, and the scheduling
    // pass that would place the first of them there.
    h.scheduler
        .node_message(
            host.id.clone(),
            host.connection.id,
            HostEvent::Finished {
                job: running.clone(),
                attempt: 1,
                end: RunEnd::Ran(result(Outcome::Exited { code: 0 })),
            },
        )
        .await
        .expect("send");
    let answers = [send_submit(&h).await, send_submit(&h).await];
    for answer in answers {
        let refused = answer.await.expect("answer").expect_err("not accepted");
        assert!(matches!(refused, SchedulerError::Store(_)), "{refused:?}");
    }

    // Memory is as before the batch: the job still runs, on its slot, and nobody heard of
    // anything else.
    host.nothing_sent(&h).await;
    assert_eq!(events.try_recv(), Err(TryRecvError::Empty));
    let job = h.get(&running).await;
    assert_eq!((job.state, job.attempts), (JobState::Running, 1));
    let jobs = h.scheduler.list(None, 10).await.expect("list");
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let nodes = h.scheduler.list_nodes().await.expect("nodes");
    assert_eq!(nodes[0].running, vec![running.clone()]);

    // And so is the store: the job is requeued at the next start, the submits never were.
    let dir = h.stop().await;
    let h = Harness::open(dir).await;
    let job = h.get(&running).await;
    assert_eq!((job.state, job.attempts), (JobState::Pending, 1));
    assert_eq!(job.result, None);
    assert_eq!(h.scheduler.list(None, 10).await.expect("list").len(), 1);
}

#[tokio::test]
async fn a_read_of_a_job_its_batch_changed_sees_the_change_committed() {
    let (h, disk) = Harness::open_flaky().await;
    let mut host = h.connect("n1", 2).await;
    let id = h.submit().await;
    host.assignment().await;

    disk.hold();
    // One batch: the result, then a watch and a lookup of the same job. Both wait for the
    // result's commit and see it.
    h.scheduler
        .node_message(
            host.id.clone(),
            host.connection.id,
            HostEvent::Finished {
                job: id.clone(),
                attempt: 1,
                end: RunEnd::Ran(result(Outcome::Exited { code: 0 })),
            },
        )
        .await
        .expect("send");
    let (reply, watch) = oneshot::channel();
    h.scheduler
        .commands
        .send(Command::Watch {
            id: id.clone(),
            reply,
        })
        .await
        .expect("send");
    let (reply, mut get) = oneshot::channel();
    h.scheduler
        .commands
        .send(Command::Get {
            id: id.clone(),
            reply,
        })
        .await
        .expect("send");
    disk.waiting.notified().await;
    assert!(get.try_recv().is_err(), "answered before the commit");
    disk.release();

    let mut events = watch.await.expect("answer").expect("watch");
    assert_eq!(next_job_event(&mut events).await.state, JobState::Completed);
    assert_eq!(events.recv().await, None);
    assert_eq!(
        get.await.expect("answer").expect("get").state,
        JobState::Completed
    );
}
