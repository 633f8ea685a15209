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
        Self::open_audited(dir, store, None).await
    }

    /// Starts a state task that records audit entries through `audit`, if given.
    async fn open_audited(dir: TempDir, store: Store, audit: Option<AuditSink>) -> Self {
        let key = SecretKey::generate();
        let registry = ModuleRegistry::new(
            store.clone(),
            crate::trust::Trust::Keys(TrustStore::new([key.public_key().clone()])),
            1 << 20,
        );
        let module = registry
            .admit(
                DEFAULT_NAMESPACE.to_owned(),
                "tiny".into(),
                key.sign_module(TINY_MODULE).expect("sign"),
            )
            .await
            .expect("admit")
            .digest;
        let closing = CancellationToken::new();
        let stop = CancellationToken::new();
        let config = StateConfig {
            down_after: Duration::from_secs(3),
            policy: None,
        };
        let commits = Arc::clone(&store.job_commits);
        let (scheduler, task) = start(store, config, audit, closing.clone(), stop.clone())
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
            namespace: DEFAULT_NAMESPACE.to_owned(),
            module: self.module,
            capabilities: Capabilities::default(),
            stdin: Arc::from(&b"input"[..]),
            kind: JobKind::Batch,
            restart: crate::job::RestartPolicy::DEFAULT,
            priority: crate::job::DEFAULT_PRIORITY,
            placement: crate::placement::PlacementSpec::default(),
            grant: None,
            authorized: None,
        }
    }

    async fn submit_spec(&self, spec: JobSpec) -> JobId {
        self.scheduler.submit(spec).await.expect("submit").id
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
        self.connect_with(id, slots, &[], &[]).await
    }

    /// A host with labels (`k=v`), saying it still runs `running` from before.
    async fn connect_with(
        &self,
        id: &str,
        slots: u32,
        labels: &[&str],
        running: &[(&JobId, u32)],
    ) -> Host {
        let (outbound, inbox) = mpsc::unbounded_channel();
        let registration = Registration {
            id: NodeId::from(id),
            labels: labels
                .iter()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            slots,
            memory_bytes: GIB,
            receipt_key: None,
        };
        let connection = self
            .scheduler
            .node_connected(
                registration,
                BTreeSet::new(),
                running_list(running),
                outbound,
            )
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
            receipt: None,
        })
        .await;
    }

    async fn heartbeat(&self, running: &[(&JobId, u32)]) {
        // This fake host has read every assignment sent to it before it heartbeats.
        self.send(HostEvent::Heartbeat {
            running: running_list(running),
            assignments_received: u64::MAX,
            cached_modules: None,
        })
        .await;
    }

    async fn cancellation(&mut self) -> (JobId, u32) {
        match self.inbox.recv().await {
            Some(ToHost::Cancel { job, attempt }) => (job, attempt),
            other => panic!("expected a cancellation, got {other:?}"),
        }
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

fn running_list(running: &[(&JobId, u32)]) -> Vec<RunningAttempt> {
    running
        .iter()
        .map(|(job, attempt)| RunningAttempt {
            job: (*job).clone(),
            attempt: Some(*attempt),
        })
        .collect()
}

/// Puts a submit in the channel without waiting for its reply.
async fn send_submit(h: &Harness) -> oneshot::Receiver<Result<JobRecord, SchedulerError>> {
    let (reply, answer) = oneshot::channel();
    h.scheduler
        .commands
        .send(Command::Submit {
            spec: Box::new(h.spec()),
            watch: None,
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
async fn the_store_catches_up_while_nothing_waits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("state.redb")).expect("open store");
    let harness = Harness::open_store(dir, store.clone()).await;
    // On a disk that writes fast, the submission's commit only logs its ops; the state task,
    // with no command waiting, applies them to the database itself, without a read or a
    // commit to make it. (On a slow disk the commit applies them at once.)
    harness.submit().await;
    for _ in 0..200 {
        if store.behind() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(store.behind(), 0, "logged commits still wait to be applied");
    harness.stop().await;
}

#[tokio::test]
async fn a_job_runs_and_its_result_is_recorded_once() {
    let h = Harness::start().await;
    let id = h.submit().await;
    let mut events = h.scheduler.watch(id.clone()).await.expect("watch");
    let pending = next_job_event(&mut events).await;
    assert_eq!(pending.state, JobState::Pending);
    assert!(
        pending.display_message().starts_with("no node fits"),
        "{}",
        pending.display_message()
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
    assert_eq!(running.last_node(), Some(&NodeId::from("n1")));
    assert_eq!(running.allocations.len(), 1);
    assert!(
        !running.allocations[0].placement.is_empty(),
        "placement explained"
    );

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
            receipt: None,
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
async fn a_result_for_a_fenced_attempt_is_noted_as_stale_never_recorded() {
    let h = Harness::start().await;
    let id = h.submit().await;
    let mut n1 = h.connect("n1", 1).await;
    assert_eq!(n1.assignment().await.attempt, 1);

    n1.disconnect().await;
    let job = h.get(&id).await;
    assert_eq!(job.state, JobState::Pending);
    assert_eq!(job.message, "attempt 1: node n1 lost (its stream ended)");
    assert_eq!(job.allocations[0].state, AllocState::Lost);
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
    // n2 mixes up attempt numbers: not its attempt, nothing noted.
    n2.finish(&id, 1, Outcome::Exited { code: 7 }).await;
    let job = h.get(&id).await;
    assert_eq!(job.state, JobState::Running);
    assert_eq!(job.last_node(), Some(&NodeId::from("n2")));
    assert_eq!(job.result, None);
    assert_eq!(job.allocations[0].state, AllocState::Lost);
    assert_eq!(
        job.allocations[0].stale_result.as_deref(),
        Some("exited with code 0")
    );

    n2.finish(&id, 2, Outcome::Exited { code: 0 }).await;
    let done = h.get(&id).await;
    assert_eq!(done.state, JobState::Completed);
    let completed = done
        .allocations
        .iter()
        .filter(|a| a.state == AllocState::Completed)
        .count();
    assert_eq!(completed, 1);
    n2.nothing_sent(&h).await;
}

#[tokio::test(start_paused = true)]
async fn a_job_fails_when_its_grant_expires_and_its_host_is_told_to_stop() {
    let h = Harness::start().await;
    let mut host = h.connect("n1", 2).await;
    let authorized = |expires_at_ms| crate::job::Authorization {
        grant: "report-1".into(),
        by: Vec::new(),
        expires_at_ms,
    };
    let mut spec = h.spec();
    spec.authorized = Some(authorized(Some(crate::now_ms() + 9_000)));
    let expiring = h.submit_spec(spec).await;
    let mut spec = h.spec();
    // A record from before the expiry was kept: never failed for it.
    spec.authorized = Some(authorized(None));
    let unbounded = h.submit_spec(spec).await;
    host.assignment().await;
    host.assignment().await;

    for second in [2, 4, 6, 8, 10] {
        tokio::time::advance(Duration::from_secs(2)).await;
        host.heartbeat(&[(&expiring, 1), (&unbounded, 1)]).await;
        h.scheduler.tick().await.expect("tick");
        let job = h.get(&expiring).await;
        if second < 9 {
            assert_eq!(job.state, JobState::Running, "at {second} s");
        } else {
            assert_eq!(job.state, JobState::Failed, "at {second} s");
            let message = job.display_message();
            assert!(
                message.contains("grant report-1 expired at 20"),
                "{message}"
            );
        }
    }
    assert_eq!(host.cancellation().await, (expiring, 1));
    assert_eq!(h.get(&unbounded).await.state, JobState::Running);
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
    let message = job.display_message();
    assert!(
        message.starts_with("attempt 1: node n1 lost (no heartbeat for 3s); no node fits"),
        "{message}"
    );
    assert!(message.contains("down"), "{message}");
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
async fn cancelling_a_running_job_stops_it_on_the_host_and_reuses_its_room() {
    let h = Harness::start().await;
    let mut host = h.connect("n1", 1).await;
    let first = h.submit().await;
    host.assignment().await;
    let second = h.submit().await;
    assert!(
        h.get(&second).await.display_message().contains("slots"),
        "{}",
        h.get(&second).await.display_message()
    );

    let cancelled = h.scheduler.cancel(first.clone()).await.expect("cancel");
    assert_eq!(cancelled.state, JobState::Cancelled);
    assert_eq!(cancelled.message, "cancelled while running");
    assert_eq!(cancelled.allocations[0].state, AllocState::Cancelled);
    assert_eq!(host.cancellation().await, (first.clone(), 1));
    // The room is given to the next job at once; the host starts it when its instance slot
    // is free.
    let a = host.assignment().await;
    assert_eq!((a.job, a.attempt), (second.clone(), 1));
    let nodes = h.scheduler.list_nodes().await.expect("nodes");
    assert_eq!(
        nodes[0].running.len(),
        2,
        "the cancelled attempt is listed until it stops"
    );

    // The host reports the cancelled attempt over: not recorded as the job's result.
    host.finish(&first, 1, Outcome::Cancelled).await;
    let after = h.get(&first).await;
    assert_eq!(after.state, JobState::Cancelled);
    assert_eq!(after.result, None);
    let nodes = h.scheduler.list_nodes().await.expect("nodes");
    assert_eq!(nodes[0].running, vec![second.clone()]);

    // Cancelling a terminal job returns it as it is; a pending one is cancelled at once.
    let again = h.scheduler.cancel(first.clone()).await.expect("cancel");
    assert_eq!(again.state, JobState::Cancelled);
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
async fn a_cancelled_attempt_leaves_the_node_when_heartbeats_stop_listing_it() {
    let h = Harness::start().await;
    let host = h.connect("n1", 1).await;
    let first = h.submit().await;
    h.scheduler.cancel(first.clone()).await.expect("cancel");
    let second = h.submit().await;
    let mut host = host;
    host.assignment().await;
    let running = h.get(&second).await;
    assert_eq!(running.state, JobState::Running);

    host.heartbeat(&[(&second, 1)]).await;
    host.heartbeat(&[(&second, 1)]).await;
    let nodes = h.scheduler.list_nodes().await.expect("nodes");
    assert_eq!(nodes[0].running, vec![second]);
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

    let listed = h.scheduler.list(None, None, 100).await.expect("list");
    let listed: Vec<_> = listed.into_iter().map(|j| j.id).collect();
    assert_eq!(listed, [ids[2].clone(), ids[1].clone(), ids[0].clone()]);
    let running = h
        .scheduler
        .list(Some(JobState::Running), None, 1)
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
    assert!(matches!(err, SchedulerError::ModuleNotUploaded { .. }));
    assert!(err.to_string().starts_with("module sha256:"), "{err}");
    assert!(
        err.to_string()
            .ends_with(" is not uploaded into namespace default"),
        "{err}"
    );
    // Uploaded, but into another namespace than the job's.
    let spec = JobSpec {
        namespace: "other".into(),
        ..h.spec()
    };
    let err = h.scheduler.submit(spec).await.expect_err("refused");
    assert!(err.to_string().ends_with("namespace other"), "{err}");
    assert!(
        h.scheduler
            .list(None, None, 10)
            .await
            .expect("list")
            .is_empty()
    );
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
async fn after_a_restart_hosts_that_still_run_their_attempts_keep_them() {
    let h = Harness::start().await;
    let first = h.submit().await;
    let second = h.submit().await;
    let mut host = h.connect("n1", 2).await;
    host.assignment().await;
    host.assignment().await;

    let dir = h.stop().await;
    let h = Harness::open(dir).await;
    // Still running where they ran; the node is known, not connected.
    let job = h.get(&first).await;
    assert_eq!(job.state, JobState::Running);
    assert_eq!(&*job.spec.stdin, b"input");
    let nodes = h.scheduler.list_nodes().await.expect("nodes");
    assert_eq!(nodes[0].state, NodeState::Unknown);
    assert_eq!(nodes[0].running.len(), 2);

    // The host comes back running the first only: the first is adopted (its result is
    // accepted), the second is lost after one heartbeat without it, and runs again.
    let mut host = h.connect_with("n1", 2, &[], &[(&first, 1)]).await;
    host.nothing_sent(&h).await;
    host.finish(&first, 1, Outcome::Exited { code: 0 }).await;
    assert_eq!(h.get(&first).await.state, JobState::Completed);
    host.heartbeat(&[]).await;
    let again = host.assignment().await;
    assert_eq!((again.job, again.attempt), (second.clone(), 2));
    assert_eq!(h.get(&second).await.allocations[0].state, AllocState::Lost);

    // A host running an attempt that is no longer current is told to stop it.
    let dir = h.stop().await;
    let h = Harness::open(dir).await;
    let mut host = h
        .connect_with("n1", 2, &[], &[(&first, 1), (&second, 2)])
        .await;
    assert_eq!(host.cancellation().await, (first, 1));
    host.nothing_sent(&h).await;
}

#[tokio::test(start_paused = true)]
async fn after_a_restart_a_node_that_never_reconnects_loses_its_attempts() {
    let h = Harness::start().await;
    let id = h.submit().await;
    let mut host = h.connect("n1", 1).await;
    host.assignment().await;
    let dir = h.stop().await;
    let h = Harness::open(dir).await;
    let mut other = h.connect("n2", 1).await;
    other.nothing_sent(&h).await;

    tokio::time::advance(Duration::from_millis(3001)).await;
    other.heartbeat(&[]).await;
    h.scheduler.tick().await.expect("tick");
    let a = other.assignment().await;
    assert_eq!((a.job, a.attempt), (id.clone(), 2));
    let job = h.get(&id).await;
    assert_eq!(job.allocations[0].state, AllocState::Lost);
    assert!(
        job.allocations[0].message.contains("did not reconnect"),
        "{}",
        job.allocations[0].message
    );
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
        receipt_key: None,
    };
    assert!(matches!(
        h.scheduler
            .node_connected(registration, BTreeSet::new(), Vec::new(), outbound)
            .await,
        Err(SchedulerError::ShuttingDown)
    ));
    // Other requests are still answered while the server drains; the job stays Running in the
    // store, for its host to claim after the next start.
    assert_eq!(h.get(&id).await.state, JobState::Running);
    let dir = h.stop().await;
    let h = Harness::open(dir).await;
    assert_eq!(h.get(&id).await.state, JobState::Running);
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
        .list(Some(JobState::Running), None, 10)
        .await
        .expect("list");
    assert_eq!(running.len(), 2);
    assert_eq!(
        h.scheduler
            .list(Some(JobState::Pending), None, 10)
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
        assert_eq!(&*job.spec.stdin, b"input");
        if i < 2 {
            assert_eq!((job.state, job.allocations.len()), (JobState::Running, 1));
        } else {
            assert_eq!((job.state, job.allocations.len()), (JobState::Pending, 0));
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
                receipt: None,
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
    assert_eq!((job.state, job.allocations.len()), (JobState::Running, 1));
    let jobs = h.scheduler.list(None, None, 10).await.expect("list");
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let nodes = h.scheduler.list_nodes().await.expect("nodes");
    assert_eq!(nodes[0].running, vec![running.clone()]);

    // And so is the store: the job still runs its first attempt (its host will report again
    // or stop listing it), the submits never were.
    let dir = h.stop().await;
    let h = Harness::open(dir).await;
    let job = h.get(&running).await;
    assert_eq!((job.state, job.allocations.len()), (JobState::Running, 1));
    assert_eq!(job.result, None);
    assert_eq!(
        h.scheduler.list(None, None, 10).await.expect("list").len(),
        1
    );
}

#[tokio::test]
async fn a_run_is_watched_from_its_acceptance_and_refused_whole_when_its_commit_fails() {
    let (h, disk) = Harness::open_flaky().await;
    let mut host = h.connect("n1", 1).await;
    let mut events = h.scheduler.run(h.spec()).await.expect("run");
    let accepted = next_job_event(&mut events).await;
    assert_eq!(accepted.state, JobState::Pending);
    // Accepted and placed in one batch: the next event is the assignment.
    assert_eq!(next_job_event(&mut events).await.state, JobState::Running);
    host.assignment().await;
    h.scheduler
        .node_message(
            host.id.clone(),
            host.connection.id,
            HostEvent::Finished {
                job: accepted.id.clone(),
                attempt: 1,
                end: RunEnd::Ran(result(Outcome::Exited { code: 0 })),
                receipt: None,
            },
        )
        .await
        .expect("send");
    assert_eq!(next_job_event(&mut events).await.state, JobState::Completed);
    assert!(events.recv().await.is_none(), "the watch ends with the job");

    disk.failing.store(true, Ordering::SeqCst);
    let refused = h.scheduler.run(h.spec()).await.expect_err("not accepted");
    assert!(matches!(refused, SchedulerError::Store(_)), "{refused:?}");
    disk.failing.store(false, Ordering::SeqCst);
    assert_eq!(
        h.scheduler.list(None, None, 10).await.expect("list").len(),
        1
    );
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
                receipt: None,
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

fn service(h: &Harness, replicas: u32) -> JobSpec {
    JobSpec {
        kind: JobKind::Service { replicas },
        restart: crate::job::RestartPolicy {
            attempts: 2,
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(10),
        },
        ..h.spec()
    }
}

#[tokio::test(start_paused = true)]
async fn a_service_keeps_its_replicas_restarting_them_with_backoff_until_it_gives_up() {
    let h = Harness::start().await;
    let mut host = h.connect("n1", 4).await;
    let id = h.submit_spec(service(&h, 2)).await;
    let a = host.assignment().await;
    let b = host.assignment().await;
    assert_eq!((a.attempt, b.attempt), (1, 2));
    let job = h.get(&id).await;
    assert_eq!(job.state, JobState::Running);
    assert_eq!(job.running().count(), 2);

    // A replica ends by itself: restarted after 1 s, then 2 s.
    host.finish(&id, 1, Outcome::Exited { code: 1 }).await;
    host.nothing_sent(&h).await;
    let job = h.get(&id).await;
    assert_eq!(job.state, JobState::Running, "the other replica runs");
    assert!(
        job.display_message().contains("instance 0 restarts in"),
        "{}",
        job.display_message()
    );
    tokio::time::advance(Duration::from_millis(1100)).await;
    host.heartbeat(&[(&id, 2)]).await;
    h.scheduler.tick().await.expect("tick");
    assert_eq!(host.assignment().await.attempt, 3);
    host.finish(&id, 3, Outcome::Exited { code: 1 }).await;
    tokio::time::advance(Duration::from_millis(1100)).await;
    host.heartbeat(&[(&id, 2)]).await;
    h.scheduler.tick().await.expect("tick");
    host.nothing_sent(&h).await;
    tokio::time::advance(Duration::from_millis(1000)).await;
    host.heartbeat(&[(&id, 2)]).await;
    h.scheduler.tick().await.expect("tick");
    assert_eq!(host.assignment().await.attempt, 4);

    // A third end is one more than the two restarts allowed: the job fails, and what still
    // runs is stopped.
    host.finish(&id, 4, Outcome::Exited { code: 1 }).await;
    let job = h.get(&id).await;
    assert_eq!(job.state, JobState::Failed);
    assert!(
        job.message.contains("instance 0 ended 3 times"),
        "{}",
        job.message
    );
    assert_eq!(host.cancellation().await, (id.clone(), 2));
    assert_eq!(
        job.allocation(2).map(|a| a.state),
        Some(AllocState::Stopped)
    );
}

#[tokio::test]
async fn a_lost_replica_is_started_elsewhere_at_once() {
    let h = Harness::start().await;
    let mut n1 = h.connect("n1", 4).await;
    let mut n2 = h.connect("n2", 4).await;
    let id = h.submit_spec(service(&h, 2)).await;
    // Replicas land apart.
    let (a1, a2) = (n1.assignment().await, n2.assignment().await);
    assert_eq!((a1.job.clone(), a2.job.clone()), (id.clone(), id.clone()));
    n1.disconnect().await;
    let again = n2.assignment().await;
    assert_eq!(again.attempt, 3);
    let job = h.get(&id).await;
    assert_eq!(job.running().count(), 2);
    assert_eq!(
        job.allocation(a1.attempt).map(|a| a.state),
        Some(AllocState::Lost)
    );
}

#[tokio::test]
async fn a_system_job_runs_on_every_node_its_constraints_allow_including_later_ones() {
    let h = Harness::start().await;
    let mut edge = h.connect_with("edge-1", 2, &["tier=edge"], &[]).await;
    let mut core = h.connect_with("core-1", 2, &["tier=core"], &[]).await;
    let mut spec = h.spec();
    spec.kind = JobKind::System;
    spec.placement
        .constraints
        .push(crate::placement::Constraint {
            label: "tier".into(),
            op: crate::placement::Operator::Eq("edge".into()),
        });
    let id = h.submit_spec(spec).await;
    assert_eq!(edge.assignment().await.job, id);
    core.nothing_sent(&h).await;
    let job = h.get(&id).await;
    assert_eq!(job.waiting, None, "a node it may not run on is not a wait");

    let mut late = h.connect_with("edge-2", 2, &["tier=edge"], &[]).await;
    assert_eq!(late.assignment().await.job, id);
    let job = h.get(&id).await;
    assert_eq!(job.running().count(), 2);
    assert_eq!(job.state, JobState::Running);
}

#[tokio::test]
async fn a_drain_moves_services_at_once_and_eligibility_ends_it() {
    let h = Harness::start().await;
    let mut n1 = h.connect("n1", 4).await;
    let svc = h.submit_spec(service(&h, 1)).await;
    let batch = h.submit().await;
    assert_eq!(n1.assignment().await.job, svc);
    assert_eq!(n1.assignment().await.job, batch);
    let mut n2 = h.connect("n2", 4).await;

    let node = h
        .scheduler
        .drain(NodeId::from("n1"), Duration::from_secs(3600))
        .await
        .expect("drain");
    assert!(node.drain.is_some());
    assert_eq!(n1.cancellation().await, (svc.clone(), 1));
    let moved = n2.assignment().await;
    assert_eq!((moved.job, moved.attempt), (svc.clone(), 2));
    assert_eq!(
        h.get(&svc).await.allocation(1).map(|a| a.state),
        Some(AllocState::Stopped)
    );
    // Batch work keeps running until the deadline.
    assert_eq!(h.get(&batch).await.last_node(), Some(&NodeId::from("n1")));
    // No new work goes to a draining node.
    let next = h.submit().await;
    assert_eq!(n2.assignment().await.job, next);
    n1.nothing_sent(&h).await;

    let node = h
        .scheduler
        .set_eligibility(NodeId::from("n1"), true)
        .await
        .expect("eligible");
    assert!(node.drain.is_none() && node.eligible);
    let ineligible = h
        .scheduler
        .set_eligibility(NodeId::from("n2"), false)
        .await
        .expect("ineligible");
    assert!(!ineligible.eligible);
    let last = h.submit().await;
    assert_eq!(n1.assignment().await.job, last);
    assert!(matches!(
        h.scheduler
            .drain(NodeId::from("nope"), Duration::ZERO)
            .await,
        Err(SchedulerError::NodeNotFound(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn at_the_drain_deadline_batch_work_is_stopped_and_requeued() {
    let h = Harness::start().await;
    let mut n1 = h.connect("n1", 4).await;
    let batch = h.submit().await;
    n1.assignment().await;
    let mut n2 = h.connect("n2", 4).await;
    h.scheduler
        .drain(NodeId::from("n1"), Duration::from_millis(500))
        .await
        .expect("drain");
    n1.nothing_sent(&h).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    n1.heartbeat(&[(&batch, 1)]).await;
    n2.heartbeat(&[]).await;
    h.scheduler.tick().await.expect("tick");
    assert_eq!(n1.cancellation().await, (batch.clone(), 1));
    let again = n2.assignment().await;
    assert_eq!((again.job, again.attempt), (batch.clone(), 2));
    let drained = h
        .scheduler
        .get_node(NodeId::from("n1"))
        .await
        .expect("node");
    assert!(drained.drain.is_some());
}

#[tokio::test]
async fn a_higher_priority_job_preempts_batch_work_which_is_requeued_not_lost() {
    let h = Harness::start().await;
    let mut host = h.connect("n1", 1).await;
    let low = h
        .submit_spec(JobSpec {
            priority: 10,
            ..h.spec()
        })
        .await;
    host.assignment().await;
    // Equal priority waits.
    let equal = h
        .submit_spec(JobSpec {
            priority: 10,
            ..h.spec()
        })
        .await;
    host.nothing_sent(&h).await;
    let high = h
        .submit_spec(JobSpec {
            priority: 90,
            ..h.spec()
        })
        .await;
    assert_eq!(host.cancellation().await, (low.clone(), 1));
    let a = host.assignment().await;
    assert_eq!(a.job, high);
    let low_job = h.get(&low).await;
    assert_eq!(low_job.state, JobState::Pending);
    assert_eq!(low_job.allocations[0].state, AllocState::Preempted);
    assert!(
        low_job.message.contains("preempted by job"),
        "{}",
        low_job.message
    );
    assert!(
        h.get(&high).await.allocations[0]
            .placement
            .contains("preempt"),
        "the placement says it preempted"
    );

    // Once the high job is done, the preempted one runs again before the equal one (older).
    host.finish(&low, 1, Outcome::Cancelled).await;
    host.finish(&high, 1, Outcome::Exited { code: 0 }).await;
    let again = host.assignment().await;
    assert_eq!((again.job, again.attempt), (low.clone(), 2));
    assert_eq!(h.get(&equal).await.state, JobState::Pending);
}

#[tokio::test]
async fn a_namespace_over_quota_queues_and_does_not_fail() {
    let h = Harness::start().await;
    let mut host = h.connect("n1", 8).await;
    h.scheduler
        .set_quota(
            DEFAULT_NAMESPACE.to_owned(),
            Quota {
                max_memory_bytes: 0,
                max_instances: 1,
            },
        )
        .await
        .expect("quota");
    let first = h.submit().await;
    host.assignment().await;
    let second = h.submit().await;
    host.nothing_sent(&h).await;
    let job = h.get(&second).await;
    assert_eq!(job.state, JobState::Pending);
    assert!(
        job.display_message()
            .contains("namespace default over quota: 1 of 1 instances running"),
        "{}",
        job.display_message()
    );
    let namespaces = h.scheduler.list_namespaces().await.expect("namespaces");
    let default = namespaces
        .iter()
        .find(|n| n.name == DEFAULT_NAMESPACE)
        .expect("default");
    assert_eq!(default.usage.instances, 1);
    assert_eq!(default.active_jobs, 2);

    host.finish(&first, 1, Outcome::Exited { code: 0 }).await;
    assert_eq!(host.assignment().await.job, second);
    // Quotas survive a restart.
    let dir = h.stop().await;
    let h = Harness::open(dir).await;
    let namespaces = h.scheduler.list_namespaces().await.expect("namespaces");
    assert!(namespaces.iter().any(|n| n.quota.max_instances == 1));
}

#[tokio::test]
async fn plan_shows_where_instances_would_go_without_accepting_anything() {
    let h = Harness::start().await;
    let _fr = h.connect_with("fr-1", 4, &["jurisdiction=FR"], &[]).await;
    let _de = h.connect_with("de-1", 4, &["jurisdiction=DE"], &[]).await;
    let mut spec = service(&h, 2);
    spec.placement
        .constraints
        .push(crate::placement::Constraint {
            label: "jurisdiction".into(),
            op: crate::placement::Operator::Eq("FR".into()),
        });
    let plan = h.scheduler.plan(spec.clone()).await.expect("plan");
    assert_eq!(plan.len(), 2);
    for p in &plan {
        assert_eq!(p.node, Some(NodeId::from("fr-1")));
        assert!(
            p.explanation.contains("jurisdiction = FR"),
            "{}",
            p.explanation
        );
    }
    assert!(
        h.scheduler
            .list(None, None, 10)
            .await
            .expect("list")
            .is_empty()
    );
    spec.placement.constraints[0].op = crate::placement::Operator::Eq("ES".into());
    let plan = h.scheduler.plan(spec).await.expect("plan");
    assert!(plan.iter().all(|p| p.node.is_none()));
    assert!(
        plan[0].explanation.starts_with("no node fits"),
        "{}",
        plan[0].explanation
    );
}

// The audit log: every entry is committed with the change it records, and reaches the log once.

fn audit_signer() -> vauban_audit::AuditSigner {
    vauban_audit::AuditSigner::new(
        "vauban.audit/test",
        vauban_audit::SecretKey::from_seed(&[3; 32]),
    )
    .expect("signer")
}

/// What the audit log in `dir` holds, checked offline with the audit key.
fn logged(dir: &std::path::Path) -> Vec<audit::Entry> {
    vauban_audit::verify_log(dir, &audit_signer().verifier()).expect("the log verifies");
    let log = vauban_audit::Log::open(dir).expect("open log");
    (0..log.len())
        .map(|i| log.entry(i).expect("entry"))
        .collect()
}

fn kinds(entries: &[audit::Entry]) -> Vec<&'static str> {
    entries.iter().map(audit::Entry::kind).collect()
}

/// Entries committed and never appended (the scheduler died between its commit and the
/// writer's append) are in the outbox, and the next start appends them, in order.
#[tokio::test]
async fn audit_entries_committed_before_a_crash_reach_the_log_at_the_next_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("state.redb")).expect("open store");
    let h = Harness::open_audited(dir, store.clone(), Some(AuditSink::without_writer(0))).await;
    let mut host = h.connect("n1", 1).await;
    let id = h.submit().await;
    let a = host.assignment().await;
    host.send(HostEvent::Started {
        job: id.clone(),
        attempt: a.attempt,
        started_at_ms: 7,
    })
    .await;
    host.finish(&id, a.attempt, Outcome::Exited { code: 0 })
        .await;
    // A start from a node that does not run the attempt is not recorded.
    host.send(HostEvent::Started {
        job: id.clone(),
        attempt: a.attempt + 1,
        started_at_ms: 8,
    })
    .await;
    let mut refused = h.spec();
    refused.module = ModuleDigest::of(b"never uploaded");
    assert!(h.scheduler.submit(refused).await.is_err());
    let cancelled = h.submit().await;
    host.assignment().await;
    h.scheduler.cancel(cancelled.clone()).await.expect("cancel");
    let dir = h.stop().await;

    let outbox = store.outbox().expect("outbox");
    let indices: Vec<u64> = outbox.iter().map(|(i, _)| *i).collect();
    assert_eq!(indices, (0..8).collect::<Vec<_>>(), "every entry committed");

    let log_dir = dir.path().join("audit");
    let log = crate::audit::recover(&log_dir, &store, &audit_signer()).expect("recover");
    assert_eq!(log.len(), 8);
    drop(log);
    let entries = logged(&log_dir);
    assert_eq!(
        kinds(&entries),
        [
            "admission",
            "placement",
            "start",
            "finish",
            "admission",
            "admission",
            "placement",
            "cancellation"
        ]
    );
    let audit::Entry::Admission(first) = &entries[0] else {
        panic!("an admission");
    };
    assert_eq!(
        (first.decision, first.job.as_str()),
        (audit::Decision::Accepted, id.as_str())
    );
    let audit::Entry::Admission(refusal) = &entries[4] else {
        panic!("an admission");
    };
    assert_eq!(refusal.decision, audit::Decision::Refused);
    assert!(
        refusal.reason.contains("not uploaded"),
        "{}",
        refusal.reason
    );
    let audit::Entry::Finish(finish) = &entries[3] else {
        panic!("a finish");
    };
    assert_eq!(
        (finish.job.as_str(), finish.node.as_str()),
        (id.as_str(), "n1")
    );
    assert!(
        store.outbox().expect("outbox").is_empty(),
        "emptied once appended"
    );

    // Starting again appends nothing more.
    let log = crate::audit::recover(&log_dir, &store, &audit_signer()).expect("recover");
    assert_eq!(log.len(), 8);
}

/// The writer appended entries and the scheduler died before the next commit deleted them
/// from the outbox (here with the last append cut in the middle): the next start appends the
/// missing one, once, and nothing twice.
#[test]
fn audit_entries_appended_but_not_deleted_are_not_appended_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("state.redb")).expect("open store");
    let lines: Vec<Vec<u8>> = (0..3_u32)
        .map(|attempt| {
            audit::Entry::Start(audit::Start {
                at_ms: 1_000,
                job: "j".into(),
                attempt,
                node: "n1".into(),
            })
            .to_line()
            .expect("line")
        })
        .collect();
    store
        .commit(
            &[],
            &crate::store::OutboxWrite {
                first: Some(0),
                floor: 0,
                entries: lines.clone(),
                appended: 0..0,
            },
        )
        .expect("commit");
    let log_dir = dir.path().join("audit");
    let mut log = vauban_audit::Log::open(&log_dir).expect("open log");
    log.append_lines(&[&lines[0], &lines[1]]).expect("append");
    drop(log);
    let entries_file = log_dir.join(vauban_audit::ENTRIES_FILE);
    let mut bytes = std::fs::read(&entries_file).expect("read");
    bytes.extend_from_slice(&lines[2][..10]);
    std::fs::write(&entries_file, bytes).expect("cut append");

    let log = crate::audit::recover(&log_dir, &store, &audit_signer()).expect("recover");
    let appended: Vec<&[u8]> = (0..log.len())
        .map(|i| log.entry_bytes(i).expect("entry"))
        .collect();
    assert_eq!(appended, [&lines[0][..], &lines[1][..], &lines[2][..]]);
    drop(log);
    assert_eq!(logged(&log_dir).len(), 3);
    assert!(store.outbox().expect("outbox").is_empty());
    let log = crate::audit::recover(&log_dir, &store, &audit_signer()).expect("again");
    assert_eq!(log.len(), 3);

    // An outbox that does not fit the log is refused, never papered over.
    let other = audit::Entry::Start(audit::Start {
        at_ms: 2_000,
        job: "j".into(),
        attempt: 9,
        node: "n1".into(),
    })
    .to_line()
    .expect("line");
    let write = |first| crate::store::OutboxWrite {
        first: Some(first),
        floor: first,
        entries: vec![other.clone()],
        appended: 0..0,
    };
    store.commit(&[], &write(1)).expect("commit");
    let err = crate::audit::recover(&log_dir, &store, &audit_signer()).expect_err("differs");
    assert!(err.to_string().contains("differs from entry 1"), "{err:#}");
    store.delete_outbox(2).expect("delete");
    store.commit(&[], &write(5)).expect("commit");
    let err = crate::audit::recover(&log_dir, &store, &audit_signer()).expect_err("gap");
    assert!(
        err.to_string().contains("entries 3..5 are in neither"),
        "{err:#}"
    );
}

/// The whole pipeline: the writer appends what each commit adds; on stop the last entries are
/// appended but still in the outbox (their deletion rides the next commit), and a restart
/// neither loses nor repeats them.
#[tokio::test]
async fn the_audit_writer_appends_each_commit_once_across_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("state.redb")).expect("open store");
    let log_dir = dir.path().join("audit");
    let config = crate::audit::AuditConfig {
        dir: log_dir.clone(),
        origin: "vauban.audit/test".into(),
        key: vauban_audit::SecretKey::from_seed(&[3; 32]),
    };
    let (sink, writer) = crate::audit::start(config.clone(), store.clone())
        .await
        .expect("audit");
    let h = Harness::open_audited(dir, store.clone(), Some(sink)).await;
    for _ in 0..3 {
        h.submit().await;
    }
    let dir = h.stop().await;
    writer.await.expect("writer");
    assert_eq!(kinds(&logged(&log_dir)), ["admission"; 3]);
    assert!(
        !store.outbox().expect("outbox").is_empty(),
        "deleted only by a later commit"
    );

    let (sink, writer) = crate::audit::start(config, store.clone())
        .await
        .expect("audit again");
    assert!(store.outbox().expect("outbox").is_empty());
    let h = Harness::open_audited(dir, store.clone(), Some(sink)).await;
    h.submit().await;
    let _dir = h.stop().await;
    writer.await.expect("writer");
    assert_eq!(kinds(&logged(&log_dir)), ["admission"; 4]);
}

/// A failed commit records nothing: its entries go with its changes.
#[tokio::test]
async fn a_failed_commit_records_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.redb");
    let (store, disk) = Disk::open(&path);
    let h = Harness::open_audited(dir, store, Some(AuditSink::without_writer(0))).await;
    disk.failing.store(true, Ordering::SeqCst);
    assert!(h.scheduler.submit(h.spec()).await.is_err());
    let mut refused = h.spec();
    refused.module = ModuleDigest::of(b"never uploaded");
    assert!(h.scheduler.submit(refused).await.is_err());
    let dir = h.stop().await;

    let store = Store::open(&path).expect("reopen");
    let log_dir = dir.path().join("audit");
    let log = crate::audit::recover(&log_dir, &store, &audit_signer()).expect("recover");
    assert_eq!(log.len(), 0, "nothing was committed");
    let h = Harness::open_audited(dir, store.clone(), Some(AuditSink::without_writer(0))).await;
    let id = h.submit().await;
    let dir = h.stop().await;
    crate::audit::recover(&dir.path().join("audit"), &store, &audit_signer()).expect("recover");
    let entries = logged(&log_dir);
    assert_eq!(kinds(&entries), ["admission"]);
    assert!(matches!(&entries[0], audit::Entry::Admission(a) if a.job == id.as_str()));
}

/// Receipts are logged as such only when signed by the key the node registered and about the
/// result they came with; anything else is logged as rejected.
#[tokio::test]
async fn receipts_are_checked_against_the_key_the_node_registered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("state.redb")).expect("open store");
    let h = Harness::open_audited(dir, store.clone(), Some(AuditSink::without_writer(0))).await;
    let host_key = vauban_audit::SecretKey::from_seed(&[9; 32]);
    let (outbound, mut inbox) = mpsc::unbounded_channel();
    let registration = Registration {
        id: NodeId::from("n1"),
        labels: BTreeMap::new(),
        slots: 1,
        memory_bytes: GIB,
        receipt_key: Some(host_key.public_key().to_hex()),
    };
    let connection = h
        .scheduler
        .node_connected(registration, BTreeSet::new(), Vec::new(), outbound)
        .await
        .expect("connect");
    let host = Host {
        id: NodeId::from("n1"),
        connection,
        inbox: mpsc::unbounded_channel().1,
        scheduler: h.scheduler.clone(),
    };
    let receipt = |job: &JobId, attempt: u32, key: &vauban_audit::SecretKey| {
        let signed = vauban_audit::Receipt {
            job: job.to_string(),
            attempt,
            module: h.module.to_string(),
            capabilities: vec!["memory:268435456".into()],
            node: "n1".into(),
            started_ms: 1,
            ended_ms: 2,
            outcome: Outcome::Exited { code: 0 }.to_string(),
            fuel: 0,
            peak_memory_bytes: 65536,
        }
        .sign(key)
        .expect("sign");
        Some(Ok(Box::new(signed)))
    };
    for key in [&host_key, &vauban_audit::SecretKey::from_seed(&[8; 32])] {
        let id = h.submit().await;
        let Some(ToHost::Assign(a)) = inbox.recv().await else {
            panic!("an assignment");
        };
        host.send(HostEvent::Finished {
            job: id.clone(),
            attempt: a.attempt,
            end: RunEnd::Ran(result(Outcome::Exited { code: 0 })),
            receipt: receipt(&id, a.attempt, key),
        })
        .await;
        assert_eq!(
            h.get(&id).await.state,
            JobState::Completed,
            "the result counts"
        );
    }
    let dir = h.stop().await;
    let log_dir = dir.path().join("audit");
    crate::audit::recover(&log_dir, &store, &audit_signer()).expect("recover");
    let entries = logged(&log_dir);
    assert_eq!(
        kinds(&entries),
        [
            "admission",
            "placement",
            "receipt",
            "finish",
            "admission",
            "placement",
            "rejected_receipt",
            "finish"
        ]
    );
    let audit::Entry::RejectedReceipt(rejected) = &entries[6] else {
        panic!("a rejected receipt");
    };
    assert!(
        rejected
            .reason
            .contains("not by the receipt key node n1 registered"),
        "{}",
        rejected.reason
    );
}
