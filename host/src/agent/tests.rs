//! The agent's tests: its bookkeeping (first loads, jobs, cached modules) on its own, what it
//! says when registering and heartbeating, and whole agents against a fake scheduler on loopback
//! that the test drives message by message (no sleeps: every wait is for a message, bounded).

use std::pin::Pin;

use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status};
use vauban_core::ModuleDigest;
use vauban_proto::v1::host_link_server::{HostLink, HostLinkServer};
use vauban_proto::v1::job_finished::End as JobEnd;
use vauban_proto::v1::scheduler_message::Message as Sm;

use super::*;
use crate::RuntimeConfig;

fn runtime(dir: &std::path::Path) -> Runtime {
    Runtime::new(RuntimeConfig {
        max_instances: 1,
        max_memory_bytes: 16 << 20,
        ..RuntimeConfig::new(dir.join("cache"))
    })
    .expect("runtime starts")
}

/// An address nothing listens on: a port bound, then released.
fn unreachable_scheduler() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    format!("http://{address}")
}

#[tokio::test(start_paused = true)]
async fn keeps_redialing_an_unreachable_scheduler_until_shutdown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = AgentConfig::new(unreachable_scheduler(), "n1", dir.path().join("modules"));
    let shutdown = CancellationToken::new();
    let agent = tokio::spawn(run_agent(config, runtime(dir.path()), shutdown.clone()));
    // Paused time: this lets the agent go through many failed attempts and backoffs.
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(
        !agent.is_finished(),
        "an unreachable scheduler is not an error"
    );
    shutdown.cancel();
    let ended = tokio::time::timeout(Duration::from_secs(1), agent)
        .await
        .expect("the agent stops promptly on shutdown")
        .expect("the agent task did not panic");
    assert!(ended.is_ok(), "{ended:?}");
    assert!(dir.path().join("modules").is_dir(), "module store created");
}

#[tokio::test]
async fn an_address_without_a_scheme_is_a_configuration_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = AgentConfig::new("127.0.0.1:7070", "n1", dir.path().join("modules"));
    let error = run_agent(config, runtime(dir.path()), CancellationToken::new())
        .await
        .expect_err("refused");
    assert!(error.to_string().contains("scheme"), "{error:#}");
}

#[tokio::test]
async fn a_scheme_that_contradicts_the_tls_setting_is_a_configuration_error() {
    // tonic would dial http:// in plaintext even with a certificate: the agent refuses both ways.
    let dir = tempfile::tempdir().expect("tempdir");
    let tls = ClientTls {
        ca_pem: Vec::new(),
        cert_pem: Vec::new(),
        key_pem: Vec::new(),
    };
    for (address, tls, expected) in [
        ("http://127.0.0.1:7070", Some(tls), "is not https://"),
        ("https://127.0.0.1:7070", None, "is not http://"),
    ] {
        let mut config = AgentConfig::new(address, "n1", dir.path().join("modules"));
        config.tls = tls;
        let error = run_agent(config, runtime(dir.path()), CancellationToken::new())
            .await
            .expect_err("refused");
        assert!(error.to_string().contains(expected), "{error:#}");
    }
}

#[test]
fn first_loads_of_a_module_share_one_gate_until_one_succeeds() {
    let loads = FirstLoads::default();
    let digest = vauban_core::ModuleDigest::of(b"module");
    let first = loads.gate(digest).expect("not loaded yet");
    let second = loads.gate(digest).expect("not loaded yet");
    assert!(Arc::ptr_eq(&first, &second), "one gate per module");
    let other = loads
        .gate(vauban_core::ModuleDigest::of(b"other"))
        .expect("gate");
    assert!(
        !Arc::ptr_eq(&first, &other),
        "modules do not wait for each other"
    );
    loads.loaded(digest);
    assert!(loads.gate(digest).is_none(), "loaded: no more gate");
}

#[test]
fn job_table_tracks_attempts_separately() {
    let table = JobTable::default();
    let first = CancellationToken::new();
    let second = CancellationToken::new();
    assert!(table.insert("job-b", 1, first.clone()));
    assert!(table.insert("job-b", 2, second.clone()));
    assert!(table.insert("job-a", 1, CancellationToken::new()));
    assert!(
        !table.insert("job-b", 1, CancellationToken::new()),
        "repeat"
    );
    assert_eq!(table.attempt_ids(), ["job-a/1", "job-b/1", "job-b/2"]);

    assert!(table.cancel("job-b", 2));
    assert!(second.is_cancelled() && !first.is_cancelled());
    assert!(!table.cancel("job-c", 1));

    table.remove("job-b", 1);
    table.remove("job-b", 2);
    assert_eq!(table.attempt_ids(), ["job-a/1"]);
}

#[test]
fn cached_modules_bump_their_version_on_every_change() {
    let (a, b) = (ModuleDigest::of(b"a"), ModuleDigest::of(b"b"));
    let cached = CachedModules::new([b]);
    let (version, listed) = cached.snapshot();
    assert_eq!(listed, [b.to_string()]);
    assert_eq!(cached.changed_since(version), None);

    cached.insert(a);
    let (version, listed) = cached.changed_since(version).expect("changed");
    let mut want = [a.to_string(), b.to_string()];
    want.sort();
    assert_eq!(listed, want, "sorted, as sha256:<hex>");
    cached.insert(a);
    cached.remove(&ModuleDigest::of(b"never held"));
    assert_eq!(
        cached.changed_since(version),
        None,
        "no change, no new version"
    );

    cached.remove(&b);
    let (_, listed) = cached.changed_since(version).expect("changed");
    assert_eq!(listed, [a.to_string()]);
}

#[tokio::test]
async fn registration_says_what_the_host_has_and_heartbeats_what_changed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let modules = dir.path().join("modules");
    let stored = store_module(&modules, b"stored before the agent started");
    let mut config = AgentConfig::new("http://127.0.0.1:1", "n1", &modules);
    config.labels.insert("zone".into(), "edge".into());
    config.slots = 3;
    let (outbox, _queue) = mpsc::unbounded_channel();
    let store = ModuleStore::open(&modules).expect("open");
    let agent = Agent::new(config, runtime(dir.path()), store, outbox);
    assert!(agent.jobs.insert("job-1", 2, CancellationToken::new()));

    let (message, mut reported) = connection::register(&agent);
    let Some(Message::Register(register)) = message.message else {
        panic!("a Register: {message:?}")
    };
    assert_eq!(
        register,
        v1::Register {
            node_id: "n1".into(),
            labels: [
                ("arch".to_owned(), std::env::consts::ARCH.to_owned()),
                ("zone".to_owned(), "edge".to_owned())
            ]
            .into(),
            slots: 3,
            memory_bytes: 4 << 30,
            cached_modules: vec![stored.to_string()],
            running: vec!["job-1/2".into()],
            receipt_key: String::new(),
            policy_version: 0,
        }
    );

    let beat = |reported: &mut u64| match connection::heartbeat(&agent, 7, reported).message {
        Some(Message::Heartbeat(heartbeat)) => heartbeat,
        other => panic!("a Heartbeat: {other:?}"),
    };
    let first = beat(&mut reported);
    assert_eq!(first.running, ["job-1/2"]);
    assert_eq!(first.assignments_received, 7);
    assert!(first.cached_modules.is_empty(), "unchanged since Register");

    let fetched = ModuleDigest::of(b"fetched since");
    agent.cached.insert(fetched);
    let mut want = vec![stored.to_string(), fetched.to_string()];
    want.sort();
    assert_eq!(
        beat(&mut reported).cached_modules,
        want,
        "changed: all of it"
    );
    assert!(beat(&mut reported).cached_modules.is_empty(), "unchanged");
}

/// Stores a module the way a fetch does, in the store at `dir`; returns its digest.
fn store_module(dir: &std::path::Path, bytes: &[u8]) -> ModuleDigest {
    let bytes = Arc::<[u8]>::from(bytes);
    let digest = ModuleDigest::of(&bytes);
    ModuleStore::open(dir)
        .expect("open")
        .put(&digest, &bytes)
        .expect("put");
    digest
}

/// The longest any one step of an end-to-end test may take.
const STEP: Duration = Duration::from_secs(10);

/// A scheduler's `HostLink` reduced to what a test drives by hand: each stream a host opens is
/// handed to the test, and modules are served from a map, where a digest that is not there is
/// never answered (a fetch that hangs).
struct FakeScheduler {
    streams: mpsc::UnboundedSender<HostStream>,
    modules: HashMap<String, Vec<u8>>,
}

type BoxStream<T> = Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl HostLink for FakeScheduler {
    type ConnectStream = ReceiverStream<Result<v1::SchedulerMessage, Status>>;

    async fn connect(
        &self,
        request: Request<tonic::Streaming<v1::HostMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let (to_host, rx) = mpsc::channel(16);
        let stream = HostStream {
            from_host: request.into_inner(),
            to_host,
        };
        // The test may have stopped listening: then the stream just goes unanswered.
        let _ = self.streams.send(stream);
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    type FetchModuleStream = BoxStream<v1::ModuleChunk>;

    async fn fetch_module(
        &self,
        request: Request<v1::FetchModuleRequest>,
    ) -> Result<Response<Self::FetchModuleStream>, Status> {
        let stream: Self::FetchModuleStream = match self.modules.get(&request.get_ref().digest) {
            Some(bytes) => Box::pin(tokio_stream::once(Ok(v1::ModuleChunk {
                chunk: bytes.clone(),
            }))),
            None => Box::pin(tokio_stream::pending()),
        };
        Ok(Response::new(stream))
    }
}

/// Serves a [`FakeScheduler`] with `modules` on a loopback port; returns its address and the
/// streams hosts open.
async fn fake_scheduler(modules: &[&[u8]]) -> (String, mpsc::UnboundedReceiver<HostStream>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let (streams, accepted) = mpsc::unbounded_channel();
    let modules = modules
        .iter()
        .map(|bytes| (ModuleDigest::of(bytes).to_string(), bytes.to_vec()))
        .collect();
    let service = HostLinkServer::new(FakeScheduler { streams, modules });
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    (format!("http://{address}"), accepted)
}

/// The next stream a host opens.
async fn accept(streams: &mut mpsc::UnboundedReceiver<HostStream>) -> HostStream {
    tokio::time::timeout(STEP, streams.recv())
        .await
        .expect("a host connects in time")
        .expect("the fake scheduler runs")
}

/// One host's stream, as the scheduler sees it.
struct HostStream {
    from_host: tonic::Streaming<v1::HostMessage>,
    to_host: mpsc::Sender<Result<v1::SchedulerMessage, Status>>,
}

impl HostStream {
    async fn next(&mut self) -> Message {
        let message = tokio::time::timeout(STEP, self.from_host.message())
            .await
            .expect("the host sends in time")
            .expect("the stream works")
            .expect("the stream is open");
        message.message.expect("a message")
    }

    /// The host's `Register`, answered with heartbeats every 10 ms.
    async fn register(&mut self) -> v1::Register {
        let Message::Register(register) = self.next().await else {
            panic!("the first message is a Register")
        };
        self.send(Sm::Registered(v1::Registered {
            heartbeat_interval_ms: 10,
        }))
        .await;
        register
    }

    /// The next heartbeat, skipping nothing else.
    async fn heartbeat(&mut self) -> v1::Heartbeat {
        match self.next().await {
            Message::Heartbeat(heartbeat) => heartbeat,
            other => panic!("expected a heartbeat, got {other:?}"),
        }
    }

    async fn send(&self, message: Sm) {
        self.to_host
            .send(Ok(v1::SchedulerMessage {
                message: Some(message),
            }))
            .await
            .expect("the stream is open");
    }

    async fn assign(&self, job_id: &str, attempt: u32, module: &[u8]) {
        self.send(Sm::Assign(v1::Assignment {
            job_id: job_id.into(),
            attempt,
            module_digest: ModuleDigest::of(module).to_string(),
            ..Default::default()
        }))
        .await;
    }

    /// Waits for the host to close its side, as it does when it shuts down.
    async fn until_closed(&mut self) {
        tokio::time::timeout(STEP, async {
            while let Ok(Some(_)) = self.from_host.message().await {}
        })
        .await
        .expect("the host closes its side in time");
    }
}

fn sorted(digests: &[ModuleDigest]) -> Vec<String> {
    let mut listed: Vec<String> = digests.iter().map(ToString::to_string).collect();
    listed.sort();
    listed
}

/// The whole exchange: a host registers the modules it had on disk, reports one it fetched,
/// registers again after losing the stream with the attempt it still runs, and, restarted,
/// registers every module it fetched before.
#[tokio::test]
async fn hosts_report_their_modules_and_running_attempts() {
    // Not signed: fetched and stored, then refused when loading. Stored is what counts here.
    let fetched: &[u8] = b"\0asm\x01\0\0\0 fetched";
    let hanging: &[u8] = b"\0asm\x01\0\0\0 never served";
    let (address, mut streams) = fake_scheduler(&[fetched]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let modules = dir.path().join("modules");
    let stored = store_module(&modules, b"stored before the agent started");
    let mut config = AgentConfig::new(address, "n1", &modules);
    config.reconnect_min = Duration::from_millis(10);
    config.reconnect_max = Duration::from_millis(50);
    let shutdown = CancellationToken::new();
    let agent = tokio::spawn(run_agent(
        config.clone(),
        runtime(dir.path()),
        shutdown.clone(),
    ));

    let mut first = accept(&mut streams).await;
    let register = first.register().await;
    assert_eq!(register.cached_modules, sorted(&[stored]));
    assert!(register.running.is_empty());
    let heartbeat = first.heartbeat().await;
    assert!(heartbeat.cached_modules.is_empty(), "unchanged");

    first.assign("fetched", 1, fetched).await;
    first.assign("stuck", 3, hanging).await;
    // Heartbeats keep coming: the wait is bounded as a whole, not message by message.
    let (finished, reported) = tokio::time::timeout(STEP, async {
        let (mut finished, mut reported) = (None, None);
        while finished.is_none() || reported.is_none() {
            match first.next().await {
                Message::Heartbeat(heartbeat) if !heartbeat.cached_modules.is_empty() => {
                    assert!(reported.is_none(), "reported once: {heartbeat:?}");
                    reported = Some(heartbeat.cached_modules);
                }
                Message::Heartbeat(_) => {}
                Message::Finished(end) => finished = Some(end),
                other => panic!("unexpected {other:?}"),
            }
        }
        (finished, reported)
    })
    .await
    .expect("the job ends and the module is reported in time");
    let finished = finished.expect("finished");
    assert_eq!(finished.job_id, "fetched");
    assert!(
        matches!(finished.end, Some(JobEnd::Refused(_))),
        "unsigned: {finished:?}"
    );
    let fetched_digest = ModuleDigest::of(fetched);
    assert_eq!(
        reported.expect("reported"),
        sorted(&[stored, fetched_digest])
    );
    let heartbeat = first.heartbeat().await;
    assert!(heartbeat.cached_modules.is_empty(), "unchanged since");
    assert_eq!(heartbeat.running, ["stuck/3"]);

    // The scheduler goes away (say it restarted): the host registers again, with all it has.
    drop(first);
    let mut second = accept(&mut streams).await;
    let register = second.register().await;
    assert_eq!(register.running, ["stuck/3"], "adopted at once");
    assert_eq!(register.cached_modules, sorted(&[stored, fetched_digest]));

    // A cancel for an attempt not here changes nothing; one for the stuck attempt ends it.
    for (job_id, attempt) in [("stuck", 2), ("stuck", 3)] {
        second
            .send(Sm::Cancel(v1::Cancel {
                job_id: job_id.into(),
                attempt,
            }))
            .await;
    }
    let finished = tokio::time::timeout(STEP, async {
        loop {
            match second.next().await {
                Message::Heartbeat(heartbeat) => assert_eq!(heartbeat.running, ["stuck/3"]),
                Message::Finished(finished) => break finished,
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await
    .expect("the cancelled attempt ends in time");
    assert_eq!((finished.job_id.as_str(), finished.attempt), ("stuck", 3));
    assert!(
        matches!(finished.end, Some(JobEnd::Result(_))),
        "{finished:?}"
    );

    shutdown.cancel();
    second.until_closed().await;
    drop(second);
    let ended = tokio::time::timeout(STEP, agent)
        .await
        .expect("the agent stops in time")
        .expect("the agent task did not panic");
    assert!(ended.is_ok(), "{ended:?}");

    // Restarted, the host reports the module it fetched in its previous life.
    let shutdown = CancellationToken::new();
    let agent = tokio::spawn(run_agent(config, runtime(dir.path()), shutdown.clone()));
    let mut third = accept(&mut streams).await;
    let register = third.register().await;
    assert_eq!(register.cached_modules, sorted(&[stored, fetched_digest]));
    assert!(register.running.is_empty());
    shutdown.cancel();
    third.until_closed().await;
    drop(third);
    let ended = tokio::time::timeout(STEP, agent)
        .await
        .expect("the agent stops in time")
        .expect("the agent task did not panic");
    assert!(ended.is_ok(), "{ended:?}");
}
