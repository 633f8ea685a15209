//! The orchestrator end to end: a real `vauban scheduler` and real `vauban host` processes on
//! loopback, driven through the public gRPC API and the CLI.
//!
//! Servers bind port 0 and print their address; clients connect to what was printed. Jobs are
//! followed with `WatchJob`, never with sleeps.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tonic::transport::{Channel, ClientTlsConfig};
use vauban_core::Outcome;
use vauban_proto::v1::{
    self, jobs_client::JobsClient, modules_client::ModulesClient, nodes_client::NodesClient,
};
use vauban_tests::Target;

use crate::support::{Workspace, code, connect, text};

/// A child process killed when dropped.
pub(crate) struct Process(pub(crate) Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Process {
    /// SIGKILL, as a crash would.
    pub(crate) fn kill(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) struct Scheduler {
    pub(crate) process: Process,
    pub(crate) addr: String,
    /// The workspace operator's client TLS, to reach it.
    pub(crate) tls: Option<ClientTlsConfig>,
}

/// Starts `vauban scheduler` on a free port and returns once it listens.
pub(crate) fn start_scheduler(ws: &Workspace, data_dir: &str, trust: &str) -> Scheduler {
    start_scheduler_on(ws, "127.0.0.1:0", data_dir, trust)
}

/// Starts `vauban scheduler` on `listen` and returns once it listens.
///
/// Heartbeats are frequent, but a node is declared down only after 10 s of silence: the tests
/// that lose a host lose it by killing it (its stream ends at once), and a loaded CI machine must
/// not make a live host look dead.
pub(crate) fn start_scheduler_on(
    ws: &Workspace,
    listen: &str,
    data_dir: &str,
    trust: &str,
) -> Scheduler {
    start_scheduler_with(ws, listen, data_dir, trust, "10s")
}

/// Starts `vauban scheduler` on `listen`, declaring a node down after `down_after` of silence.
pub(crate) fn start_scheduler_with(
    ws: &Workspace,
    listen: &str,
    data_dir: &str,
    trust: &str,
    down_after: &str,
) -> Scheduler {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vauban"))
        .args(["scheduler", "--listen", listen, "--data-dir", data_dir])
        .args([
            "--trust",
            trust,
            "--heartbeat",
            "200ms",
            "--down-after",
            down_after,
        ])
        .args(ws.scheduler_tls_args())
        .current_dir(ws.dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start scheduler");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read address");
    let addr = line.trim().rsplit(' ').next().expect("address").to_owned();
    assert!(addr.starts_with("https://127.0.0.1:"), "{line}");
    Scheduler {
        process: Process(child),
        addr,
        tls: Some(ws.client_tls("operator")),
    }
}

/// Starts `vauban host` connected to `scheduler`.
pub(crate) fn start_host(
    ws: &Workspace,
    scheduler: &Scheduler,
    node: &str,
    labels: &[&str],
    slots: u32,
    trust: &str,
) -> Process {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vauban"));
    cmd.args(["host", "--scheduler", &scheduler.addr, "--node-id", node])
        .args(["--slots", &slots.to_string(), "--trust", trust])
        .args(["--data-dir", &format!("hosts/{node}")])
        .args(ws.host_tls_args(node))
        .args(["--allow-root", "."])
        .current_dir(ws.dir.path())
        .stdout(Stdio::null());
    for label in labels {
        cmd.args(["--label", label]);
    }
    Process(cmd.spawn().expect("start host"))
}

pub(crate) async fn channel(scheduler: &Scheduler) -> Channel {
    connect(&scheduler.addr, scheduler.tls.as_ref())
        .await
        .expect("connect to scheduler")
}

pub(crate) async fn upload(
    channel: &Channel,
    path: &Path,
) -> Result<v1::ModuleInfo, tonic::Status> {
    let bytes = std::fs::read(path).expect("read module");
    let chunks: Vec<_> = bytes
        .chunks(64 * 1024)
        .map(|c| v1::UploadModuleRequest {
            chunk: c.to_vec(),
            ..Default::default()
        })
        .collect();
    ModulesClient::new(channel.clone())
        .upload_module(tokio_stream::iter(chunks))
        .await
        .map(tonic::Response::into_inner)
}

pub(crate) fn spec(digest: &str, args: &[&str], selector: &[(&str, &str)]) -> v1::JobSpec {
    v1::JobSpec {
        name: "test".into(),
        module_digest: digest.into(),
        capabilities: Some(v1::Capabilities {
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            limits: Some(v1::Limits {
                timeout_ms: 20_000,
                ..Default::default()
            }),
            ..Default::default()
        }),
        stdin: Vec::new(),
        label_selector: selector
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..Default::default()
    }
}

pub(crate) async fn submit(channel: &Channel, spec: v1::JobSpec) -> v1::Job {
    JobsClient::new(channel.clone())
        .submit_job(v1::SubmitJobRequest { spec: Some(spec) })
        .await
        .expect("submit")
        .into_inner()
}

pub(crate) fn terminal(state: i32) -> bool {
    matches!(
        v1::JobState::try_from(state),
        Ok(v1::JobState::Completed | v1::JobState::Failed | v1::JobState::Cancelled)
    )
}

/// Every event of a job's watch until it ends (or until `until` returns true for an event).
pub(crate) async fn watch(
    channel: &Channel,
    id: &str,
    mut until: impl FnMut(&v1::job_event::Event) -> bool,
) -> Vec<v1::job_event::Event> {
    let mut stream = JobsClient::new(channel.clone())
        .watch_job(v1::WatchJobRequest { id: id.into() })
        .await
        .expect("watch")
        .into_inner();
    let mut events = Vec::new();
    while let Some(event) = stream.message().await.expect("watch event") {
        let event = event.event.expect("event set");
        let stop =
            until(&event) || matches!(&event, v1::job_event::Event::Job(j) if terminal(j.state));
        events.push(event);
        if stop {
            break;
        }
    }
    events
}

/// The job's final state.
pub(crate) async fn finished(channel: &Channel, id: &str) -> v1::Job {
    let events = watch(channel, id, |_| false).await;
    match events.last() {
        Some(v1::job_event::Event::Job(job)) if terminal(job.state) => job.clone(),
        other => panic!("watch of {id} ended without a final state: {other:?}"),
    }
}

/// Waits until `n` nodes have registered: placement decides among the nodes it knows, and a
/// test that expects instances spread over several hosts must not submit before they join.
pub(crate) async fn wait_for_nodes(channel: &Channel, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let nodes = NodesClient::new(channel.clone())
            .list_nodes(v1::ListNodesRequest {})
            .await
            .expect("list nodes")
            .into_inner()
            .nodes;
        let ready = nodes
            .iter()
            .filter(|n| n.state == v1::NodeState::Ready as i32)
            .count();
        if ready >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "hosts did not register: {nodes:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) fn outcome(job: &v1::Job) -> Outcome {
    let result = job.result.clone().expect("job has a result");
    Outcome::try_from(result.outcome.expect("outcome")).expect("valid outcome")
}

pub(crate) fn stdout(job: &v1::Job) -> String {
    String::from_utf8_lossy(&job.result.as_ref().expect("result").stdout).into_owned()
}

pub(crate) fn sample(ws: &Workspace, name: &str, target: Target) -> PathBuf {
    ws.path(&ws.signed_sample(name, target))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_runs_on_a_host_and_its_result_comes_back() {
    let ws = Workspace::new();
    let scheduler = start_scheduler(&ws, "sched", "trust");
    let _host = start_host(&ws, &scheduler, "n1", &["zone=alpha"], 2, "trust");
    let channel = channel(&scheduler).await;
    let module = upload(&channel, &sample(&ws, "hello", Target::P2))
        .await
        .expect("upload");
    assert_eq!(module.kind, "component");

    let job = submit(&channel, spec(&module.digest, &["--name", "cluster"], &[])).await;
    assert_eq!(job.state, v1::JobState::Pending as i32);
    let done = finished(&channel, &job.id).await;
    assert_eq!(done.state, v1::JobState::Completed as i32, "{done:?}");
    assert_eq!(outcome(&done), Outcome::Exited { code: 0 });
    assert_eq!(stdout(&done), "hello, cluster!\n");
    assert_eq!(done.node_id, "n1");
    assert_eq!(done.attempts, 1);
}

/// `RunJob`: one call from acceptance to result. The first event is the job as accepted, and
/// the guest's output comes live, since the watch began before the job could run.
#[tokio::test(flavor = "multi_thread")]
async fn run_job_streams_a_job_from_its_acceptance_to_its_result() {
    let ws = Workspace::new();
    let scheduler = start_scheduler(&ws, "sched", "trust");
    let _host = start_host(&ws, &scheduler, "n1", &[], 2, "trust");
    let channel = channel(&scheduler).await;
    let hello = upload(&channel, &sample(&ws, "hello", Target::P1))
        .await
        .expect("upload");
    let mut jobs = JobsClient::new(channel.clone());

    let mut stream = jobs
        .run_job(v1::RunJobRequest {
            spec: Some(spec(&hello.digest, &["--name", "run"], &[])),
        })
        .await
        .expect("run")
        .into_inner();
    let mut events = Vec::new();
    while let Some(event) = stream.message().await.expect("run event") {
        events.push(event.event.expect("event set"));
    }
    let Some(v1::job_event::Event::Job(accepted)) = events.first() else {
        panic!("the first event is not the job: {events:?}");
    };
    assert_eq!(accepted.state, v1::JobState::Pending as i32);
    assert!(!accepted.id.is_empty());
    let live: Vec<u8> = events
        .iter()
        .filter_map(|e| match e {
            v1::job_event::Event::Output(chunk) => Some(chunk.data.clone()),
            v1::job_event::Event::Job(_) => None,
        })
        .flatten()
        .collect();
    assert_eq!(
        String::from_utf8_lossy(&live),
        "hello, run!\n",
        "{events:?}"
    );
    let ends: Vec<&v1::Job> = events
        .iter()
        .filter_map(|e| match e {
            v1::job_event::Event::Job(job) if terminal(job.state) => Some(job),
            _ => None,
        })
        .collect();
    assert_eq!(ends.len(), 1, "one final state, the last event: {events:?}");
    let done = ends[0];
    assert!(matches!(events.last(), Some(v1::job_event::Event::Job(j)) if j == done));
    assert_eq!(
        (done.id.as_str(), outcome(done)),
        (accepted.id.as_str(), Outcome::Exited { code: 0 })
    );
    assert_eq!(stdout(done), "hello, run!\n");

    // Refused before any event, as SubmitJob would be, and nothing is accepted.
    let mut missing = spec(&hello.digest, &[], &[]);
    missing.module_digest = format!("sha256:{}", "0".repeat(64));
    let refused = jobs
        .run_job(v1::RunJobRequest {
            spec: Some(missing),
        })
        .await
        .expect_err("a module that was never uploaded");
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    assert!(refused.message().contains("is not uploaded"), "{refused:?}");
    let listed = jobs
        .list_jobs(v1::ListJobsRequest::default())
        .await
        .expect("list")
        .into_inner()
        .jobs;
    assert_eq!(listed.len(), 1, "{listed:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn output_streams_while_the_job_runs_and_cancel_stops_it_on_the_host() {
    let ws = Workspace::new();
    let scheduler = start_scheduler(&ws, "sched", "trust");
    let _host = start_host(&ws, &scheduler, "solo", &[], 1, "trust");
    let channel = channel(&scheduler).await;
    let spin = upload(&channel, &sample(&ws, "infinite-loop", Target::P1))
        .await
        .expect("upload");
    let hello = upload(&channel, &sample(&ws, "hello", Target::P1))
        .await
        .expect("upload");

    let job = submit(&channel, spec(&spin.digest, &[], &[])).await;
    // The guest prints, then spins: its output arrives while it is still running.
    let events = watch(
        &channel,
        &job.id,
        |e| matches!(e, v1::job_event::Event::Output(c) if c.data.starts_with(b"spinning")),
    )
    .await;
    let streamed = events
        .iter()
        .any(|e| matches!(e, v1::job_event::Event::Output(_)));
    assert!(streamed, "{events:?}");
    assert!(events.iter().any(
        |e| matches!(e, v1::job_event::Event::Job(j) if j.state == v1::JobState::Running as i32)
    ));

    let cancelled = JobsClient::new(channel.clone())
        .cancel_job(v1::CancelJobRequest { id: job.id.clone() })
        .await
        .expect("cancel")
        .into_inner();
    assert_eq!(cancelled.state, v1::JobState::Cancelled as i32);
    // The host has one slot: a second job can only run once the host stopped the first.
    let next = submit(&channel, spec(&hello.digest, &[], &[])).await;
    let done = finished(&channel, &next.id).await;
    assert_eq!(outcome(&done), Outcome::Exited { code: 0 });
    let still = JobsClient::new(channel.clone())
        .get_job(v1::GetJobRequest { id: job.id })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(
        still.state,
        v1::JobState::Cancelled as i32,
        "cancelled stays cancelled"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_on_a_killed_host_is_rescheduled_not_stuck_running() {
    let ws = Workspace::new();
    let scheduler = start_scheduler(&ws, "sched", "trust");
    let a = start_host(&ws, &scheduler, "a", &["zone=alpha"], 2, "trust");
    let channel = channel(&scheduler).await;
    let spin = upload(&channel, &sample(&ws, "infinite-loop", Target::P2))
        .await
        .expect("upload");
    let mut job_spec = spec(&spin.digest, &[], &[]);
    if let Some(caps) = job_spec.capabilities.as_mut() {
        caps.limits = Some(v1::Limits {
            timeout_ms: 1_500,
            ..Default::default()
        });
    }
    let job = submit(&channel, job_spec).await;
    watch(&channel, &job.id, |e| {
        matches!(e, v1::job_event::Event::Output(_))
    })
    .await;

    // Host a runs the job; kill it, then bring up host b.
    a.kill();
    let _b = start_host(&ws, &scheduler, "b", &["zone=bravo"], 2, "trust");
    let done = finished(&channel, &job.id).await;
    assert_eq!(done.state, v1::JobState::Completed as i32, "{done:?}");
    assert_eq!(done.node_id, "b");
    assert_eq!(done.attempts, 2);
    assert!(matches!(outcome(&done), Outcome::TimedOut { .. }));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_modules_are_refused_at_upload_and_by_the_host() {
    let ws = Workspace::new();
    // The scheduler trusts two publishers; the host only the first.
    ws.vauban(&["key", "generate", "--out", "both/publisher"]);
    std::fs::copy(ws.path("trust/publisher.pub"), ws.path("both/first.pub")).expect("copy");
    ws.vauban(&["key", "generate", "--out", "other/second"]);
    std::fs::copy(ws.path("other/second.pub"), ws.path("both/second.pub")).expect("copy");
    let scheduler = start_scheduler(&ws, "sched", "both");
    let _host = start_host(&ws, &scheduler, "strict", &[], 2, "trust");
    let channel = channel(&scheduler).await;

    std::fs::copy(
        vauban_tests::sample_path("hello", Target::P1),
        ws.path("unsigned.wasm"),
    )
    .expect("copy");
    let refused = upload(&channel, &ws.path("unsigned.wasm"))
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused.message().contains("not signed"),
        "{}",
        refused.message()
    );

    let out = ws.vauban(&[
        "sign",
        "--key",
        "other/second.key",
        "unsigned.wasm",
        "-o",
        "second.wasm",
    ]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let module = upload(&channel, &ws.path("second.wasm"))
        .await
        .expect("scheduler accepts");
    let job = submit(&channel, spec(&module.digest, &[], &[])).await;
    let done = finished(&channel, &job.id).await;
    assert_eq!(done.state, v1::JobState::Failed as i32, "{done:?}");
    assert!(
        done.message.contains("not signed by a trusted key"),
        "{}",
        done.message
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_scheduler_still_knows_its_jobs_and_its_hosts_reconnect() {
    let ws = Workspace::new();
    let scheduler = start_scheduler(&ws, "sched", "trust");
    let _host = start_host(&ws, &scheduler, "n1", &[], 2, "trust");
    let channel_before = channel(&scheduler).await;
    let module = upload(&channel_before, &sample(&ws, "hello", Target::P1))
        .await
        .expect("upload");
    let job = submit(
        &channel_before,
        spec(&module.digest, &["--name", "durable"], &[]),
    )
    .await;
    let before = finished(&channel_before, &job.id).await;
    let listen = scheduler.addr.trim_start_matches("https://").to_owned();
    scheduler.process.kill();

    // Same data directory, same address: the host, still running, reconnects by itself.
    let restarted = start_scheduler_on(&ws, &listen, "sched", "trust");
    let channel = channel(&restarted).await;
    let after = JobsClient::new(channel.clone())
        .get_job(v1::GetJobRequest { id: job.id.clone() })
        .await
        .expect("job survives the restart")
        .into_inner();
    assert_eq!(after.state, v1::JobState::Completed as i32);
    assert_eq!(stdout(&after), "hello, durable!\n");
    assert_eq!(after.result, before.result);
    let modules = ModulesClient::new(channel.clone())
        .list_modules(v1::ListModulesRequest::default())
        .await
        .expect("list")
        .into_inner()
        .modules;
    assert!(modules.iter().any(|m| m.digest == module.digest));

    let again = submit(&channel, spec(&module.digest, &["--name", "again"], &[])).await;
    let done = finished(&channel, &again.id).await;
    assert_eq!(stdout(&done), "hello, again!\n");
    assert_eq!(done.node_id, "n1", "the same host, reconnected");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_concurrent_jobs_over_two_hosts_complete_exactly_once() {
    let ws = Workspace::new();
    let scheduler = start_scheduler(&ws, "sched", "trust");
    let _a = start_host(&ws, &scheduler, "a", &[], 4, "trust");
    let _b = start_host(&ws, &scheduler, "b", &[], 4, "trust");
    let channel = channel(&scheduler).await;
    let module = upload(&channel, &sample(&ws, "hello", Target::P1))
        .await
        .expect("upload");

    let runs = (0..100).map(|i| {
        let channel = channel.clone();
        let digest = module.digest.clone();
        tokio::spawn(async move {
            let name = format!("job-{i}");
            let job = submit(&channel, spec(&digest, &["--name", &name], &[])).await;
            (name, finished(&channel, &job.id).await)
        })
    });
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    let mut ids = HashMap::new();
    for run in runs.collect::<Vec<_>>() {
        let (name, job) = run.await.expect("task");
        assert_eq!(job.state, v1::JobState::Completed as i32, "{job:?}");
        assert_eq!(stdout(&job), format!("hello, {name}!\n"));
        assert_eq!(job.attempts, 1, "ran once");
        *per_node.entry(job.node_id.clone()).or_default() += 1;
        assert!(ids.insert(job.id.clone(), name).is_none(), "one id per job");
    }
    assert_eq!(per_node.values().sum::<usize>(), 100);
    assert_eq!(per_node.len(), 2, "both hosts ran jobs: {per_node:?}");

    let listed = JobsClient::new(channel)
        .list_jobs(v1::ListJobsRequest {
            state: v1::JobState::Completed as i32,
            limit: 1000,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .jobs;
    assert_eq!(listed.len(), 100, "every accepted job is there, once");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_runs_jobs_through_vauban_dev_pinned_by_label() {
    let ws = Workspace::new();
    let mut dev = Command::new(env!("CARGO_BIN_EXE_vauban"))
        .args([
            "dev",
            "--listen",
            "127.0.0.1:0",
            "--hosts",
            "2",
            "--trust",
            "trust",
        ])
        .current_dir(ws.dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start dev");
    let mut lines = BufReader::new(dev.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("line").expect("read");
    let _dev = Process(dev);
    let addr = first.rsplit(' ').next().expect("addr").to_owned();
    let module = ws.signed_sample("hello", Target::P1);
    let vauban = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_vauban"))
            .args(args)
            .current_dir(ws.dir.path())
            .env("VAUBAN_ADDR", &addr)
            .output()
            .expect("vauban")
    };

    let out = vauban(&[
        "run",
        &module,
        "-l",
        "zone=bravo",
        "--",
        "--name",
        "pinned",
        "--exit",
        "4",
    ]);
    assert_eq!(text(&out.stdout), "hello, pinned!\n");
    assert_eq!(
        code(&out),
        4,
        "the guest's exit code: {}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("node dev-2"),
        "{}",
        text(&out.stderr)
    );

    let out = vauban(&["job", "list", "--output", "json"]);
    let jobs: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(jobs[0]["node_id"], "dev-2");
    assert_eq!(jobs[0]["state"], "completed");
    let id = jobs[0]["id"].as_str().expect("id").to_owned();
    let out = vauban(&["job", "logs", &id]);
    assert_eq!(text(&out.stdout), "hello, pinned!\n");
    let out = vauban(&["node", "list"]);
    assert!(text(&out.stdout).contains("dev-1") && text(&out.stdout).contains("zone=bravo"));
    let out = vauban(&["module", "list"]);
    assert!(
        text(&out.stdout).contains("hello-wasm32-wasip1.wasm"),
        "{}",
        text(&out.stdout)
    );

    // vauban dev keeps an audit log: the job's admission, placement, start, its host's signed
    // receipt and its end are in it, and the log verifies offline against the audit key's
    // public half (`audit.rs` checks the order and the receipts' signatures).
    let log = ".vauban/dev/scheduler/audit";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let out = vauban(&["audit", "tail", "--log", log, "--output", "json"]);
        let tail = text(&out.stdout);
        if ["admission", "placement", "start", "receipt", "finish"]
            .iter()
            .all(|kind| tail.contains(&format!("\"kind\": \"{kind}\"")))
            && tail.contains(&id)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{tail}{}",
            text(&out.stderr)
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = vauban(&[
        "audit",
        "verify",
        "--log",
        log,
        "--key",
        ".vauban/dev/keys/audit.pub",
    ]);
    assert_eq!(code(&out), 0, "{}{}", text(&out.stdout), text(&out.stderr));
}

/// Any language's generated client works: Python stubs generated from `proto/` with
/// grpcio-tools (installed by `cargo xtask test`) submit a job to a real scheduler.
#[tokio::test(flavor = "multi_thread")]
async fn a_python_client_generated_from_the_protos_submits_a_job() {
    let ws = Workspace::new();
    let scheduler = start_scheduler(&ws, "sched", "trust");
    let _host = start_host(&ws, &scheduler, "n1", &[], 2, "trust");
    let module = sample(&ws, "hello", Target::P2);
    let script = vauban_tests::workspace_root().join("tests/python/submit_job.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(&scheduler.addr)
        .arg(&module)
        .args(["--name", "python"])
        .env("VAUBAN_CA", ws.path("pki/ca.pem"))
        .env("VAUBAN_CERT", ws.path("pki/submitter.pem"))
        .env("VAUBAN_KEY", ws.path("pki/submitter.key"))
        .output()
        .expect("python3 runs (cargo xtask test installs grpcio-tools)");
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello, python!\n");
    assert!(
        text(&out.stderr).contains("on n1: JOB_STATE_COMPLETED"),
        "{}",
        text(&out.stderr)
    );
}

/// `grpcurl`-style tools work: the scheduler serves `grpc.health.v1` and lists its services
/// through server reflection.
#[tokio::test(flavor = "multi_thread")]
async fn health_and_reflection_are_served() {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let ws = Workspace::new();
    let scheduler = start_scheduler(&ws, "sched", "trust");
    let channel = channel(&scheduler).await;

    let health = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: "vauban.v1.Jobs".into(),
        })
        .await
        .expect("health check")
        .into_inner();
    assert_eq!(health.status, 1, "SERVING");

    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection")
        .into_inner();
    let response = responses
        .message()
        .await
        .expect("reply")
        .expect("one reply");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection reply: {response:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        "vauban.v1.Jobs",
        "vauban.v1.Modules",
        "vauban.v1.Nodes",
        "vauban.v1.HostLink",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sample_job_specs_run_through_vauban_dev() {
    let ws = Workspace::new();
    let mut dev = Command::new(env!("CARGO_BIN_EXE_vauban"))
        .args(["dev", "--listen", "127.0.0.1:0", "--hosts", "2"])
        .args(["--trust", "trust"])
        .current_dir(ws.dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start dev");
    let mut lines = BufReader::new(dev.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("line").expect("read");
    let _dev = Process(dev);
    let addr = first.rsplit(' ').next().expect("addr").to_owned();
    // The specs as shipped, with the signed module where they expect it.
    let specs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/jobs");
    std::fs::create_dir_all(ws.path("samples/jobs")).expect("mkdir");
    for spec in ["batch", "service", "system"] {
        std::fs::copy(
            specs.join(format!("{spec}.toml")),
            ws.path(&format!("samples/jobs/{spec}.toml")),
        )
        .expect("copy spec");
    }
    let signed = ws.signed_sample("hello", Target::P1);
    std::fs::create_dir_all(ws.path("target/samples/wasm32-wasip1/release")).expect("mkdir");
    std::fs::copy(
        ws.path(&signed),
        ws.path("target/samples/wasm32-wasip1/release/hello.wasm"),
    )
    .expect("copy module");
    let vauban = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_vauban"))
            .args(args)
            .current_dir(ws.dir.path())
            .env("VAUBAN_ADDR", &addr)
            .output()
            .expect("vauban")
    };

    let out = vauban(&["job", "plan", "samples/jobs/batch.toml"]);
    assert_eq!(code(&out), 0, "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        text(&out.stdout).contains("dev-2"),
        "the edge node is preferred: {}",
        text(&out.stdout)
    );
    let out = vauban(&["job", "run", "samples/jobs/batch.toml", "--follow"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("hello, batch!\nGREETING=bonjour\n"),
        "{}",
        text(&out.stdout)
    );

    let mut ids = Vec::new();
    for spec in ["service", "system"] {
        let out = vauban(&["job", "run", &format!("samples/jobs/{spec}.toml")]);
        assert_eq!(code(&out), 0, "{}", text(&out.stderr));
        ids.push(text(&out.stdout).trim().to_owned());
    }
    // Each gets an instance on both development hosts (the service spreads over zones).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    for id in &ids {
        loop {
            let out = vauban(&["job", "get", id, "--output", "json"]);
            let job: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
            if job["running"] == 2 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{job}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let out = vauban(&["job", "cancel", id]);
        assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    }
    let out = vauban(&["namespace", "list"]);
    assert!(text(&out.stdout).contains("ops"), "{}", text(&out.stdout));
}
