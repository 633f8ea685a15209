//! Every service through real gRPC: health, modules, jobs, nodes and a host's stream, then a
//! shutdown with a host stream and a watch still open.

use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use vauban_core::{SecretKey, TrustStore};
use vauban_proto::v1;
use vauban_proto::v1::host_link_client::HostLinkClient;
use vauban_proto::v1::jobs_client::JobsClient;
use vauban_proto::v1::modules_client::ModulesClient;
use vauban_proto::v1::nodes_client::NodesClient;
use vauban_scheduler::SchedulerConfig;

const TINY_MODULE: &[u8] = b"\0asm\x01\0\0\0\x01\x01\x00";

fn upload(
    chunks: Vec<Vec<u8>>,
    name: &str,
) -> impl tokio_stream::Stream<Item = v1::UploadModuleRequest> {
    let first_name = name.to_owned();
    tokio_stream::iter(chunks.into_iter().enumerate().map(move |(i, chunk)| {
        v1::UploadModuleRequest {
            chunk,
            name: if i == 0 {
                first_name.clone()
            } else {
                String::new()
            },
            namespace: String::new(),
        }
    }))
}

fn host_message(message: v1::host_message::Message) -> v1::HostMessage {
    v1::HostMessage {
        message: Some(message),
    }
}

fn job_event(event: Option<Result<v1::JobEvent, tonic::Status>>) -> v1::job_event::Event {
    event
        .expect("an event")
        .expect("not an error")
        .event
        .expect("set")
}

#[tokio::test]
async fn serves_clients_and_hosts_then_drains() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = SecretKey::generate();
    let mut config = SchedulerConfig::new(
        dir.path().join("data"),
        TrustStore::new([key.public_key().clone()]),
    );
    config.heartbeat_interval = Duration::from_millis(250);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(vauban_scheduler::serve(listener, config, shutdown.clone()));
    let channel = Channel::from_shared(format!("http://{address}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");

    let health = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: "vauban.v1.HostLink".into(),
        })
        .await
        .expect("health");
    assert_eq!(health.into_inner().status(), ServingStatus::Serving);

    // Modules: refused unsigned, accepted signed, in chunks.
    let mut modules = ModulesClient::new(channel.clone());
    let refused = modules
        .upload_module(upload(vec![TINY_MODULE.to_vec()], "unsigned"))
        .await
        .expect_err("unsigned");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("module is not signed"),
        "{refused:?}"
    );
    let signed = key.sign_module(TINY_MODULE).expect("sign");
    let (head, tail) = signed.split_at(10);
    let info = modules
        .upload_module(upload(vec![head.to_vec(), tail.to_vec()], "tiny"))
        .await
        .expect("upload")
        .into_inner();
    assert_eq!(info.name, "tiny");
    assert_eq!(info.kind, "core_module");
    assert_eq!(info.size_bytes, signed.len() as u64);
    assert_eq!(info.signers, vec![key.public_key().id().to_string()]);

    // Jobs: an unknown module is a failed precondition; a good job is pending.
    let mut jobs = JobsClient::new(channel.clone());
    let spec = |digest: &str| v1::SubmitJobRequest {
        spec: Some(v1::JobSpec {
            name: "hello".into(),
            module_digest: digest.into(),
            stdin: b"input".to_vec(),
            ..v1::JobSpec::default()
        }),
    };
    let unknown = format!("sha256:{}", "0".repeat(64));
    let err = jobs.submit_job(spec(&unknown)).await.expect_err("unknown");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(
        err.message(),
        format!("module {unknown} is not uploaded into namespace default")
    );
    let job = jobs
        .submit_job(spec(&info.digest))
        .await
        .expect("submit")
        .into_inner();
    assert_eq!(job.state(), v1::JobState::Pending);
    let mut watch = jobs
        .watch_job(v1::WatchJobRequest { id: job.id.clone() })
        .await
        .expect("watch")
        .into_inner();
    let v1::job_event::Event::Job(first) = job_event(watch.next().await) else {
        panic!("the first event is the job");
    };
    assert_eq!(first.state(), v1::JobState::Pending);

    // A host that does not register first is refused.
    let mut link = HostLinkClient::new(channel.clone());
    let heartbeat = host_message(v1::host_message::Message::Heartbeat(
        v1::Heartbeat::default(),
    ));
    let err = link
        .connect(tokio_stream::iter(vec![heartbeat]))
        .await
        .expect_err("not registered");
    assert_eq!(err.code(), Code::InvalidArgument);

    // A host registers, is assigned the job, fetches its module, reports output and result.
    let (to_scheduler, outbox) = mpsc::channel(16);
    to_scheduler
        .send(host_message(v1::host_message::Message::Register(
            v1::Register {
                node_id: "n1".into(),
                slots: 2,
                memory_bytes: 1 << 30,
                ..v1::Register::default()
            },
        )))
        .await
        .expect("register");
    let mut from_scheduler = link
        .connect(ReceiverStream::new(outbox))
        .await
        .expect("connect")
        .into_inner();
    let next = async |s: &mut tonic::Streaming<v1::SchedulerMessage>| {
        s.message()
            .await
            .expect("message")
            .expect("open")
            .message
            .expect("set")
    };
    let v1::scheduler_message::Message::Registered(registered) = next(&mut from_scheduler).await
    else {
        panic!("registered first");
    };
    assert_eq!(registered.heartbeat_interval_ms, 250);
    let v1::scheduler_message::Message::Assign(assignment) = next(&mut from_scheduler).await else {
        panic!("then the assignment");
    };
    assert_eq!(assignment.job_id, job.id);
    assert_eq!(assignment.attempt, 1);
    assert_eq!(assignment.program, "hello");
    assert_eq!(assignment.stdin, b"input");
    assert_eq!(assignment.module_digest, info.digest);

    let mut fetched = Vec::new();
    let mut chunks = link
        .fetch_module(v1::FetchModuleRequest {
            digest: info.digest.clone(),
        })
        .await
        .expect("fetch")
        .into_inner();
    while let Some(chunk) = chunks.message().await.expect("chunk") {
        fetched.extend(chunk.chunk);
    }
    assert_eq!(fetched, signed);
    let missing = link
        .fetch_module(v1::FetchModuleRequest { digest: unknown })
        .await
        .expect_err("unknown module");
    assert_eq!(missing.code(), Code::NotFound);

    let v1::job_event::Event::Job(running) = job_event(watch.next().await) else {
        panic!("the job event");
    };
    assert_eq!(running.state(), v1::JobState::Running);
    let nodes = NodesClient::new(channel.clone())
        .list_nodes(v1::ListNodesRequest {})
        .await
        .expect("nodes")
        .into_inner()
        .nodes;
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].state(), v1::NodeState::Ready);
    assert_eq!(nodes[0].running_jobs, vec![job.id.clone()]);

    to_scheduler
        .send(host_message(v1::host_message::Message::Output(
            v1::JobOutput {
                job_id: job.id.clone(),
                attempt: 1,
                chunk: Some(v1::OutputChunk {
                    stream: v1::output_chunk::Stream::Stdout.into(),
                    data: b"hi".to_vec(),
                }),
            },
        )))
        .await
        .expect("output");
    let v1::job_event::Event::Output(output) = job_event(watch.next().await) else {
        panic!("the output");
    };
    assert_eq!(output.data, b"hi");
    to_scheduler
        .send(host_message(v1::host_message::Message::Finished(
            v1::JobFinished {
                job_id: job.id.clone(),
                attempt: 1,
                end: Some(v1::job_finished::End::Result(v1::RunResult {
                    outcome: Some(v1::Outcome {
                        kind: Some(v1::outcome::Kind::Exited(0)),
                    }),
                    stdout: b"hi".to_vec(),
                    ..v1::RunResult::default()
                })),
                receipt: Vec::new(),
            },
        )))
        .await
        .expect("finished");
    let v1::job_event::Event::Job(done) = job_event(watch.next().await) else {
        panic!("the final state");
    };
    assert_eq!(done.state(), v1::JobState::Completed);
    assert_eq!(done.result.expect("result").stdout, b"hi");
    assert!(watch.next().await.is_none(), "the watch ends with the job");

    let listed = jobs
        .list_jobs(v1::ListJobsRequest {
            state: v1::JobState::Completed.into(),
            limit: 0,
            namespace: String::new(),
        })
        .await
        .expect("list")
        .into_inner()
        .jobs;
    assert_eq!(listed.len(), 1);
    assert!(listed[0].spec.as_ref().expect("spec").stdin.is_empty());
    let got = jobs
        .get_job(v1::GetJobRequest { id: job.id.clone() })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(got.spec.expect("spec").stdin, b"input");

    // Shutdown with the host's stream and a watch open: both end, and serve returns.
    let pending = jobs
        .submit_job(spec(&info.digest))
        .await
        .expect("submit")
        .into_inner();
    let v1::scheduler_message::Message::Assign(_) = next(&mut from_scheduler).await else {
        panic!("the second assignment");
    };
    let mut watch = jobs
        .watch_job(v1::WatchJobRequest { id: pending.id })
        .await
        .expect("watch")
        .into_inner();
    job_event(watch.next().await);
    shutdown.cancel();
    assert!(from_scheduler.message().await.map_or(true, |m| m.is_none()));
    let ended = watch.next().await;
    assert!(
        matches!(ended, Some(Err(ref s)) if s.code() == Code::Unavailable),
        "{ended:?}"
    );
    server.await.expect("join").expect("serve");
}
