//! Admission twice, end to end: a real `vauban scheduler` and real `vauban host` processes that
//! hold a root-signed trust policy (built with the real CLI: `key generate`, `policy sign`,
//! `grant create|sign`), real signed samples, and a fake scheduler in this process that sends a
//! host an assignment the real scheduler would never send.
//!
//! The policy: two roots (both must sign), one publisher, two authorizers (both must sign a
//! grant), and one node class, `eu`, for nodes labelled `jurisdiction=eu`, allowing the
//! workspace's `data/` directory and one network destination.

use std::collections::HashMap;
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};
use vauban_core::Outcome;
use vauban_proto::v1::host_link_server::{HostLink, HostLinkServer};
use vauban_proto::v1::job_finished::End;
use vauban_proto::v1::{self, jobs_client::JobsClient};
use vauban_tests::Target;

use crate::cluster::{
    Process, Scheduler, channel, finished, outcome, stdout, upload, wait_for_nodes,
};
use crate::support::{Workspace, code, text};

/// The destination the grant and the node class allow.
const ALLOWED_NET: &str = "127.0.0.1:9";
/// One they do not.
const OTHER_NET: &str = "127.0.0.1:10";
/// How long a step of the fake scheduler's conversation may take.
const STEP: Duration = Duration::from_secs(30);

/// A workspace with a signed trust policy, a module signed by its publisher, and grants.
pub(crate) struct Trusted {
    pub(crate) ws: Workspace,
}

/// Generates a key with a role in `keys/NAME` and returns its `[[keys]]` policy entry.
fn key(ws: &Workspace, name: &str, role: &str) -> String {
    let out = ws.vauban_ok(&[
        "key",
        "generate",
        "--out",
        &format!("keys/{name}"),
        "--role",
        role,
    ]);
    text(&out.stdout)
        .split("# trust policy entry:\n")
        .nth(1)
        .expect("policy entry")
        .to_owned()
}

impl Trusted {
    /// The policy, signed by both roots and pinned in `roots/`; `hello.wasm` (the wasip1 hello
    /// sample) signed by the publisher; `data/in/`; and the grants: `grant.json` for hello
    /// (data/in read-only, ALLOWED_NET, 64 MiB, node class eu) signed by both authorizers,
    /// `weak.json` the same signed by one.
    pub(crate) fn new() -> Self {
        let ws = Workspace::new();
        let mut policy = String::from("version = 1\n");
        for (name, role) in [
            ("root1", "root"),
            ("root2", "root"),
            ("publisher", "publisher"),
            ("auth1", "authorizer"),
            ("auth2", "authorizer"),
        ] {
            policy += &key(&ws, name, role);
        }
        let data = ws.path("data");
        std::fs::create_dir_all(data.join("in")).expect("data dir");
        policy += &format!(
            "[thresholds]\nroot = 2\npublisher = 1\nauthorizer = 2\n\
             [[node_classes]]\nname = \"eu\"\nmatch = {{ jurisdiction = \"eu\" }}\n\
             dirs = [{{ path = \"{}\", access = \"rw\" }}]\nnetwork = [\"{ALLOWED_NET}\"]\n",
            data.display()
        );
        std::fs::write(ws.path("policy.toml"), policy).expect("write policy");
        // The scheduler's audit key (not a policy key: it signs the log's checkpoints).
        key(&ws, "audit", "audit");
        std::fs::create_dir(ws.path("roots")).expect("roots");
        for root in ["root1", "root2"] {
            std::fs::copy(
                ws.path(&format!("keys/{root}.pub")),
                ws.path(&format!("roots/{root}.pub")),
            )
            .expect("pin root");
            ws.vauban_ok(&[
                "policy",
                "sign",
                "--key",
                &format!("keys/{root}.key"),
                "policy.toml",
            ]);
        }
        ws.vauban_ok(&["policy", "verify", "--roots", "roots", "policy.toml"]);

        std::fs::copy(
            vauban_tests::sample_path("hello", Target::P1),
            ws.path("hello.wasm"),
        )
        .expect("copy sample");
        ws.vauban_ok(&["sign", "--key", "keys/publisher.key", "hello.wasm"]);
        for (file, id, authorizers) in [
            ("grant.json", "g-1", &["auth1", "auth2"][..]),
            ("weak.json", "g-weak", &["auth1"][..]),
        ] {
            ws.vauban_ok(&[
                "grant",
                "create",
                "--module",
                "hello.wasm",
                "--dir",
                "data/in:/in:ro",
                "--network",
                ALLOWED_NET,
                "--memory",
                "64MiB",
                "--timeout",
                "30s",
                "--node-class",
                "eu",
                "--id",
                id,
                "-o",
                file,
            ]);
            for authorizer in authorizers {
                ws.vauban_ok(&[
                    "grant",
                    "sign",
                    "--key",
                    &format!("keys/{authorizer}.key"),
                    file,
                ]);
            }
        }
        Self { ws }
    }

    pub(crate) fn grant(&self, file: &str) -> Vec<u8> {
        std::fs::read(self.ws.path(file)).expect("read grant")
    }

    /// `vauban scheduler --policy policy.toml --roots roots`, mutual TLS, on a free port.
    fn scheduler(&self) -> Scheduler {
        self.scheduler_with_heartbeat(Duration::from_millis(200))
    }

    /// The same, telling hosts to heartbeat every `heartbeat`.
    pub(crate) fn scheduler_with_heartbeat(&self, heartbeat: Duration) -> Scheduler {
        let ws = &self.ws;
        let heartbeat = format!("{}ms", heartbeat.as_millis());
        let mut child = Command::new(env!("CARGO_BIN_EXE_vauban"))
            .args([
                "scheduler",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                "sched",
            ])
            .args(["--policy", "policy.toml", "--roots", "roots"])
            .args(["--audit-key", "keys/audit.key"])
            .args(["--heartbeat", &heartbeat, "--down-after", "10s"])
            .args(ws.scheduler_tls_args())
            .env_remove("VAUBAN_TRUST")
            .current_dir(ws.dir.path())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start scheduler");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .expect("read address");
        let addr = line.trim().rsplit(' ').next().expect("address").to_owned();
        assert!(addr.starts_with("https://127.0.0.1:"), "{line}");
        Scheduler {
            process: Process(child),
            addr,
            tls: Some(ws.client_tls("operator")),
        }
    }

    /// `vauban host --policy policy.toml --roots roots` named `node` with `labels`, dialing
    /// `scheduler` (`tls_args` are its flags to reach it).
    pub(crate) fn host(
        &self,
        scheduler: &str,
        tls_args: &[String],
        node: &str,
        labels: &[&str],
    ) -> Process {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vauban"));
        cmd.args(["host", "--scheduler", scheduler, "--node-id", node])
            .args(["--policy", "policy.toml", "--roots", "roots"])
            .args(["--data-dir", &format!("hosts/{node}"), "--allow-root", "."])
            .args(tls_args)
            .env_remove("VAUBAN_TRUST")
            .current_dir(self.ws.dir.path())
            .stdout(Stdio::null());
        for label in labels {
            cmd.args(["--label", label]);
        }
        Process(cmd.spawn().expect("start host"))
    }

    /// Capabilities within the grant (or beyond it, as `f` makes them).
    pub(crate) fn caps(&self, f: impl FnOnce(&mut v1::Capabilities)) -> v1::Capabilities {
        let mut caps = v1::Capabilities {
            args: vec!["--name".into(), "admission".into()],
            dirs: vec![v1::DirGrant {
                host_path: self.ws.path("data/in").display().to_string(),
                guest_path: "/in".into(),
                read_write: false,
            }],
            network: vec![ALLOWED_NET.into()],
            limits: Some(v1::Limits {
                memory_bytes: 32 << 20,
                timeout_ms: 20_000,
                ..Default::default()
            }),
            ..Default::default()
        };
        f(&mut caps);
        caps
    }
}

pub(crate) fn spec(digest: &str, caps: v1::Capabilities, grant: Vec<u8>) -> v1::JobSpec {
    v1::JobSpec {
        name: "hello".into(),
        module_digest: digest.into(),
        capabilities: Some(caps),
        grant,
        ..Default::default()
    }
}

pub(crate) async fn try_submit(channel: &Channel, spec: v1::JobSpec) -> Result<v1::Job, Status> {
    JobsClient::new(channel.clone())
        .submit_job(v1::SubmitJobRequest { spec: Some(spec) })
        .await
        .map(Response::into_inner)
}

/// Submits a job that must be refused with `code`, its message containing each of `expected`.
async fn refused(channel: &Channel, spec: v1::JobSpec, code: Code, expected: &[&str]) {
    let status = try_submit(channel, spec).await.expect_err("refused");
    assert_eq!(status.code(), code, "{status:?}");
    for part in expected {
        assert!(
            status.message().contains(part),
            "expected {part:?} in {:?}",
            status.message()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_scheduler_admits_only_published_modules_and_jobs_within_their_grant() {
    let t = Trusted::new();
    let ws = &t.ws;
    let scheduler = t.scheduler();
    // A host outside the grant's node class, whose id sorts first: without the node-class
    // filter, placement would pick it (it would then refuse the job itself).
    let _us = t.host(
        &scheduler.addr,
        &ws.host_tls_args("a-us"),
        "a-us",
        &["jurisdiction=us"],
    );
    let _eu = t.host(
        &scheduler.addr,
        &ws.host_tls_args("z-eu"),
        "z-eu",
        &["jurisdiction=eu"],
    );
    let channel = channel(&scheduler).await;

    // Upload: a module signed by a key the policy does not list as a publisher is refused,
    // whether the key is unknown to the policy or holds another role.
    for (signer, reason) in [
        ("trust/publisher.key", "not in the policy"),
        ("keys/auth1.key", "does not hold the publisher role"),
    ] {
        let file = format!("hello-{}.wasm", signer.replace('/', "-"));
        std::fs::copy(
            vauban_tests::sample_path("hello", Target::P1),
            ws.path(&file),
        )
        .expect("copy");
        ws.vauban_ok(&["sign", "--key", signer, &file]);
        let status = upload(&channel, &ws.path(&file))
            .await
            .expect_err("not a publisher");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status
                .message()
                .contains("too few publisher signatures: 0 of 1 needed")
                && status.message().contains(reason),
            "{signer}: {}",
            status.message()
        );
    }
    let module = upload(&channel, &ws.path("hello.wasm"))
        .await
        .expect("signed by the publisher");
    let digest = module.digest.as_str();

    // Submit: no grant; a grant with one authorizer of the two needed; a directory and a
    // network destination beyond the grant. Each is refused, naming why.
    refused(
        &channel,
        spec(digest, t.caps(|_| {}), Vec::new()),
        Code::PermissionDenied,
        &["job has no grant"],
    )
    .await;
    refused(
        &channel,
        spec(digest, t.caps(|_| {}), t.grant("weak.json")),
        Code::PermissionDenied,
        &["grant g-weak has 1 valid authorizer signature(s), the policy needs 2"],
    )
    .await;
    refused(
        &channel,
        spec(
            digest,
            t.caps(|c| {
                c.dirs.push(v1::DirGrant {
                    host_path: "/etc".into(),
                    guest_path: "/etc".into(),
                    read_write: false,
                });
            }),
            t.grant("grant.json"),
        ),
        Code::PermissionDenied,
        &["directory /etc read-only: not allowed by grant g-1"],
    )
    .await;
    refused(
        &channel,
        spec(
            digest,
            t.caps(|c| c.dirs[0].read_write = true),
            t.grant("grant.json"),
        ),
        Code::PermissionDenied,
        &[
            "read-write: not allowed by grant g-1, which allows",
            "read-only",
        ],
    )
    .await;
    refused(
        &channel,
        spec(
            digest,
            t.caps(|c| c.network = vec![OTHER_NET.into()]),
            t.grant("grant.json"),
        ),
        Code::PermissionDenied,
        &[&format!(
            "network destination {OTHER_NET}: not allowed by grant g-1, which allows only \
             {ALLOWED_NET}"
        )],
    )
    .await;
    refused(
        &channel,
        spec(
            digest,
            t.caps(|c| c.limits = Some(v1::Limits::default())),
            t.grant("grant.json"),
        ),
        Code::PermissionDenied,
        &["memory 256 MiB: not allowed by grant g-1, which allows at most 64 MiB"],
    )
    .await;
    // A grant is for one module: the same grant with another uploaded module is refused.
    let other = upload(&channel, &{
        std::fs::copy(
            vauban_tests::sample_path("hello", Target::P2),
            ws.path("hello-p2.wasm"),
        )
        .expect("copy");
        ws.vauban_ok(&["sign", "--key", "keys/publisher.key", "hello-p2.wasm"]);
        ws.path("hello-p2.wasm")
    })
    .await
    .expect("upload");
    refused(
        &channel,
        spec(&other.digest, t.caps(|_| {}), t.grant("grant.json")),
        Code::PermissionDenied,
        &["grant g-1 is for", "not for this module"],
    )
    .await;

    // Within its grant, the job runs, on the one node of the grant's node class.
    wait_for_nodes(&channel, 2).await;
    let job = try_submit(
        &channel,
        spec(digest, t.caps(|_| {}), t.grant("grant.json")),
    )
    .await
    .expect("admitted");
    let done = finished(&channel, &job.id).await;
    assert_eq!(outcome(&done), Outcome::Exited { code: 0 }, "{done:?}");
    assert_eq!(stdout(&done), "hello, admission!\n");
    assert_eq!(done.node_id, "z-eu");
    assert_eq!(done.attempts, 1, "the us node was never tried: {done:?}");

    // The plan says why the other node is left out.
    let plan = JobsClient::new(channel.clone())
        .plan_job(v1::PlanJobRequest {
            spec: Some(spec(digest, t.caps(|_| {}), t.grant("grant.json"))),
        })
        .await
        .expect("plan")
        .into_inner();
    let explanation = &plan.instances[0].explanation;
    assert!(
        explanation.contains("filtered: 1 not in node class eu"),
        "{explanation}"
    );

    // The same through the CLI: `vauban run --grant`, and a job spec's `grant` key.
    let addr = scheduler.addr.as_str();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "hello.wasm",
            "--addr",
            addr,
            "--memory",
            "32MiB",
            "--allow-net",
            ALLOWED_NET,
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", "--name", "cli"]);
        ws.vauban(&args)
    };
    let out = run(&["--grant", "grant.json"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello, cli!\n");
    let out = run(&[]);
    assert_ne!(code(&out), 0);
    assert!(
        text(&out.stderr).contains("job has no grant"),
        "{}",
        text(&out.stderr)
    );
    std::fs::write(
        ws.path("hello.toml"),
        format!(
            "module = \"hello.wasm\"\nargs = [\"--name\", \"spec\"]\ngrant = \"grant.json\"\n\
             network = [\"{ALLOWED_NET}\"]\n[limits]\nmemory = \"32MiB\"\n"
        ),
    )
    .expect("write spec");
    let out = ws.vauban(&["job", "run", "hello.toml", "--addr", addr, "--follow"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello, spec!\n");
}

/// A fake scheduler: hands the streams hosts open to the test, and serves module bytes.
struct FakeScheduler {
    streams: mpsc::UnboundedSender<HostStream>,
    modules: HashMap<String, Vec<u8>>,
}

/// One host's `Connect` stream, as the fake scheduler sees it.
pub(crate) struct HostStream {
    pub(crate) from_host: tonic::Streaming<v1::HostMessage>,
    to_host: mpsc::Sender<Result<v1::SchedulerMessage, Status>>,
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
        let _ = self.streams.send(HostStream {
            from_host: request.into_inner(),
            to_host,
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    type FetchModuleStream = BoxStream<v1::ModuleChunk>;

    async fn fetch_module(
        &self,
        request: Request<v1::FetchModuleRequest>,
    ) -> Result<Response<Self::FetchModuleStream>, Status> {
        match self.modules.get(&request.get_ref().digest) {
            Some(bytes) => Ok(Response::new(Box::pin(tokio_stream::once(Ok(
                v1::ModuleChunk {
                    chunk: bytes.clone(),
                },
            ))))),
            None => Err(Status::not_found("no such module")),
        }
    }
}

/// Serves a fake scheduler holding `hello.wasm`, starts a policy host named `node` with
/// `labels` dialing it, and returns the host's stream once it has registered, with the module's
/// digest.
pub(crate) async fn fake_scheduler(
    t: &Trusted,
    node: &str,
    labels: &[&str],
) -> (Process, HostStream, String) {
    let module = std::fs::read(t.ws.path("hello.wasm")).expect("module");
    let digest = vauban_core::ModuleDigest::of(&module).to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = format!("http://{}", listener.local_addr().expect("address"));
    let (streams, mut accepted) = mpsc::unbounded_channel();
    let fake = FakeScheduler {
        streams,
        modules: HashMap::from([(digest.clone(), module)]),
    };
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(HostLinkServer::new(fake))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let host = t.host(&addr, &["--insecure".to_owned()], node, labels);
    let mut stream = tokio::time::timeout(STEP, accepted.recv())
        .await
        .expect("the host connects in time")
        .expect("the fake scheduler runs");
    let register = tokio::time::timeout(STEP, stream.from_host.message())
        .await
        .expect("the host registers in time")
        .expect("the stream holds")
        .expect("a first message");
    assert!(
        matches!(
            register.message,
            Some(v1::host_message::Message::Register(_))
        ),
        "{register:?}"
    );
    stream
        .send(v1::scheduler_message::Message::Registered(v1::Registered {
            heartbeat_interval_ms: 200,
        }))
        .await;
    (host, stream, digest)
}

impl HostStream {
    pub(crate) async fn send(&self, message: v1::scheduler_message::Message) {
        self.to_host
            .send(Ok(v1::SchedulerMessage {
                message: Some(message),
            }))
            .await
            .expect("the host listens");
    }

    /// The next `JobFinished`, skipping heartbeats and output.
    pub(crate) async fn finished(&mut self) -> v1::JobFinished {
        loop {
            let message = tokio::time::timeout(STEP, self.from_host.message())
                .await
                .expect("the host reports in time")
                .expect("the stream holds")
                .expect("the stream is open");
            if let Some(v1::host_message::Message::Finished(finished)) = message.message {
                return finished;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_refuses_an_assignment_beyond_the_grant_whatever_the_scheduler_says() {
    let t = Trusted::new();
    let (_host, mut stream, digest) = fake_scheduler(&t, "eu-1", &["jurisdiction=eu"]).await;

    let assign = |job: &str, caps: v1::Capabilities, grant: &str| {
        v1::scheduler_message::Message::Assign(v1::Assignment {
            job_id: job.into(),
            attempt: 1,
            module_digest: digest.clone(),
            capabilities: Some(caps),
            stdin: Vec::new(),
            program: "hello".into(),
            grant: if grant.is_empty() {
                Vec::new()
            } else {
                t.grant(grant)
            },
        })
    };
    let refusal = |finished: &v1::JobFinished| match &finished.end {
        Some(End::Refused(reason)) => reason.clone(),
        other => panic!("{} should be refused, ended {other:?}", finished.job_id),
    };
    let cases: [(&str, v1::Capabilities, &str, &str); 4] = [
        (
            "beyond-net",
            t.caps(|c| c.network = vec![OTHER_NET.into()]),
            "grant.json",
            "network destination 127.0.0.1:10: not allowed by grant g-1",
        ),
        (
            "beyond-dir",
            t.caps(|c| c.dirs[0].host_path = "/etc".into()),
            "grant.json",
            "directory /etc read-only: not allowed by grant g-1",
        ),
        (
            "weak",
            t.caps(|_| {}),
            "weak.json",
            "grant g-weak has 1 valid authorizer signature(s), the policy needs 2",
        ),
        (
            "no-grant",
            t.caps(|_| {}),
            "",
            "the job has no grant, and this host holds a trust policy",
        ),
    ];
    for (job, caps, grant, expected) in cases {
        stream.send(assign(job, caps, grant)).await;
        let finished = stream.finished().await;
        assert_eq!(finished.job_id, job);
        let reason = refusal(&finished);
        assert!(
            reason.contains("not admitted on this host") && reason.contains(expected),
            "{job}: {reason}"
        );
    }
    // Within its grant, on a node of its class, the same host runs it.
    stream
        .send(assign("within", t.caps(|_| {}), "grant.json"))
        .await;
    let finished = stream.finished().await;
    let Some(End::Result(result)) = finished.end else {
        panic!("ran: {finished:?}")
    };
    let outcome = Outcome::try_from(result.outcome.expect("outcome")).expect("outcome");
    assert_eq!(outcome, Outcome::Exited { code: 0 });
    assert_eq!(text(&result.stdout), "hello, admission!\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_outside_the_grants_node_classes_refuses_the_job() {
    let t = Trusted::new();
    let (_host, mut stream, digest) = fake_scheduler(&t, "us-1", &["jurisdiction=us"]).await;
    stream
        .send(v1::scheduler_message::Message::Assign(v1::Assignment {
            job_id: "elsewhere".into(),
            attempt: 1,
            module_digest: digest,
            capabilities: Some(t.caps(|_| {})),
            program: "hello".into(),
            grant: t.grant("grant.json"),
            ..Default::default()
        }))
        .await;
    let finished = stream.finished().await;
    let Some(End::Refused(reason)) = &finished.end else {
        panic!("refused: {finished:?}")
    };
    assert!(
        reason.contains("belongs to none of grant g-1's node classes (eu)")
            && reason.contains("jurisdiction=us"),
        "{reason}"
    );
}
