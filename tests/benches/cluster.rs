//! End-to-end job latency and throughput through the control plane, side by side with the raw
//! runtime, run with `cargo xtask bench`.
//!
//! A real scheduler and one real host agent (in this process, talking gRPC over loopback)
//! run a trivial job (`hello`, a preview 1 module) for a gRPC client, which either submits it
//! and follows it to its result in one call (`RunJob`, what `vauban run` does) or submits it
//! and then watches it (`SubmitJob` then `WatchJob`); the raw figure is instantiate+run of the
//! same loaded module on a runtime without the control plane. A second scheduler, the same but
//! keeping an audit log (`vauban scheduler --audit-key`), runs `RunJob` too: what the log of
//! every decision costs a job. All at concurrency 1 and 16. Everything goes over mutual TLS, as
//! in production, with certificates made here for the run.
//!
//! A job crosses loopback four times (client → scheduler → host → scheduler → client), so the
//! table also shows a gRPC round trip that does no work (`Health.Check`), measured in the same
//! run: on a shared virtual machine it varies from run to run, and the control plane's figure
//! with it.

#![allow(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use vauban_host::{AgentConfig, ClientTls, RunRequest, Runtime, RuntimeConfig};
use vauban_proto::v1::{self, jobs_client::JobsClient, modules_client::ModulesClient};
use vauban_scheduler::SchedulerConfig;
use vauban_tests::{Publisher, Target, caps};

const JOBS: usize = 400;
const SLOTS: u32 = 16;

fn main() {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    tokio.block_on(bench());
}

async fn bench() {
    let publisher = Publisher::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let module = publisher.signed("hello", Target::P1);
    let pki = Pki::new();
    let plain = Cluster::start(&publisher, &pki, &module, &dir.path().join("plain"), false).await;
    let audited =
        Cluster::start(&publisher, &pki, &module, &dir.path().join("audited"), true).await;

    let round_trip = round_trip(&plain.channel).await;
    let raw = new_runtime(&publisher, &dir.path().join("raw-cache"));
    let loaded = raw.load(&module).expect("load");

    println!(
        "{:<38} {:>6} {:>10} {:>10} {:>12}",
        "path", "conc.", "p50", "p99", "jobs/s"
    );
    for concurrency in [1, 16] {
        let mut control_plane = Vec::new();
        for (cluster, api, path) in [
            (&plain, Api::Run, "client→…→result (RunJob)"),
            (
                &plain,
                Api::SubmitThenWatch,
                "client→…→result (Submit+Watch)",
            ),
            (&audited, Api::Run, "client→…→result (RunJob, audit log)"),
        ] {
            let (lat, rate) = measure(concurrency, {
                let channel = cluster.channel.clone();
                let digest = cluster.digest.clone();
                move || {
                    let channel = channel.clone();
                    let digest = digest.clone();
                    async move { one_job(&channel, &digest, api).await }
                }
            })
            .await;
            row(path, concurrency, lat.clone(), rate);
            control_plane.push((path, lat));
        }
        let (raw_lat, raw_rate) = measure(concurrency, {
            let raw = raw.clone();
            let loaded = loaded.clone();
            move || {
                let raw = raw.clone();
                let loaded = loaded.clone();
                async move {
                    let started = Instant::now();
                    let request = RunRequest {
                        capabilities: caps(),
                        ..RunRequest::default()
                    };
                    let report = raw.run(&loaded, request, &CancellationToken::new()).await;
                    assert!(report.outcome.is_success());
                    started.elapsed()
                }
            }
        })
        .await;
        row(
            "raw runtime (instantiate+run)",
            concurrency,
            raw_lat.clone(),
            raw_rate,
        );
        for (path, lat) in control_plane {
            let overhead = percentile(&lat, 0.5).saturating_sub(percentile(&raw_lat, 0.5));
            println!(
                "{path}: the control plane adds {overhead:.2?} at p50 (concurrency {concurrency})"
            );
        }
    }

    println!(
        "gRPC round trip that does no work (Health.Check): p50 {:.2?}, p99 {:.2?}",
        percentile(&round_trip, 0.5),
        percentile(&round_trip, 0.99)
    );

    plain.stop().await;
    audited.stop().await;
}

/// A scheduler and one host agent in this process, and a client connected to it with `hello`
/// uploaded.
struct Cluster {
    channel: Channel,
    digest: String,
    shutdown: CancellationToken,
    scheduler: tokio::task::JoinHandle<anyhow::Result<()>>,
    host: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Cluster {
    /// Starts one in `dir`, keeping an audit log there if `audit`, and warms it up: the host
    /// fetches and compiles the module once.
    async fn start(
        publisher: &Publisher,
        pki: &Pki,
        module: &[u8],
        dir: &std::path::Path,
        audit: bool,
    ) -> Self {
        let shutdown = CancellationToken::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = format!("https://{}", listener.local_addr().expect("addr"));
        let mut config = SchedulerConfig::new(dir.join("scheduler"), publisher.trust());
        let (cert, key) = pki.issue("spiffe://vauban.local/scheduler/bench", true);
        config.tls = Some(
            vauban_scheduler::ServerTls::from_pem(
                cert.as_bytes(),
                key.as_bytes(),
                pki.ca.as_bytes(),
                None,
            )
            .expect("server tls"),
        );
        if audit {
            config.audit = Some(vauban_scheduler::AuditConfig {
                dir: dir.join("audit"),
                origin: "vauban.audit/bench".into(),
                key: vauban_audit::SecretKey::from_seed(&[7; 32]),
            });
        }
        let scheduler = tokio::spawn(vauban_scheduler::serve(listener, config, shutdown.clone()));

        let runtime = new_runtime(publisher, &dir.join("cache"));
        let mut agent = AgentConfig::new(&addr, "bench", dir.join("modules"));
        agent.slots = SLOTS;
        let (cert, key) = pki.issue("spiffe://vauban.local/host/bench", false);
        agent.tls = Some(ClientTls {
            ca_pem: pki.ca.clone().into_bytes(),
            cert_pem: cert.into_bytes(),
            key_pem: key.into_bytes(),
        });
        let host = tokio::spawn(vauban_host::run_agent(agent, runtime, shutdown.clone()));

        let (cert, key) = pki.issue("spiffe://vauban.local/client/submitter/bench", false);
        let channel = Channel::from_shared(addr)
            .expect("uri")
            .tls_config(
                ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(&pki.ca))
                    .identity(Identity::from_pem(cert, key)),
            )
            .expect("client tls")
            .connect()
            .await
            .expect("connect");
        let upload = v1::UploadModuleRequest {
            chunk: module.to_vec(),
            name: "hello".into(),
            ..Default::default()
        };
        let digest = ModulesClient::new(channel.clone())
            .upload_module(tokio_stream::iter([upload]))
            .await
            .expect("upload")
            .into_inner()
            .digest;
        for _ in 0..20 {
            one_job(&channel, &digest, Api::Run).await;
        }
        Self {
            channel,
            digest,
            shutdown,
            scheduler,
            host,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.host.await;
        let _ = self.scheduler.await;
    }
}

fn new_runtime(publisher: &Publisher, cache: &std::path::Path) -> Runtime {
    let mut config = RuntimeConfig::new(cache);
    config.trust = publisher.trust();
    config.max_instances = SLOTS;
    config.max_memory_bytes = 1 << 30;
    Runtime::new(config).expect("runtime")
}

/// Latencies of JOBS sequential `Health.Check` calls, sorted.
async fn round_trip(channel: &Channel) -> Vec<Duration> {
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let mut latencies = Vec::with_capacity(JOBS);
    for _ in 0..JOBS {
        let started = Instant::now();
        health
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .expect("health check");
        latencies.push(started.elapsed());
    }
    latencies.sort();
    latencies
}

/// How the client has a job run.
#[derive(Clone, Copy, Debug)]
enum Api {
    /// `RunJob`: submitted and followed in one call.
    Run,
    /// `SubmitJob`, then `WatchJob` once it returns.
    SubmitThenWatch,
}

/// Runs one job; returns how long the client waited for its result.
///
/// The stream is then read to its end, which follows at once: a client that drops streams
/// early on one long-lived connection has its HTTP/2 library reset them, and after 1024 such
/// resets the library (h2's `max_local_error_reset_streams`) closes the connection.
async fn one_job(channel: &Channel, digest: &str, api: Api) -> Duration {
    let mut jobs = JobsClient::new(channel.clone());
    let spec = v1::JobSpec {
        name: "bench".into(),
        module_digest: digest.into(),
        capabilities: Some(caps().into()),
        ..Default::default()
    };
    let started = Instant::now();
    let mut events = match api {
        Api::Run => jobs
            .run_job(v1::RunJobRequest { spec: Some(spec) })
            .await
            .expect("run")
            .into_inner(),
        Api::SubmitThenWatch => {
            let job = jobs
                .submit_job(v1::SubmitJobRequest { spec: Some(spec) })
                .await
                .expect("submit")
                .into_inner();
            jobs.watch_job(v1::WatchJobRequest { id: job.id })
                .await
                .expect("watch")
                .into_inner()
        }
    };
    let mut completed = None;
    while let Some(event) = events.message().await.expect("event") {
        if let Some(v1::job_event::Event::Job(job)) = event.event
            && job.state == v1::JobState::Completed as i32
        {
            completed.get_or_insert_with(|| started.elapsed());
        }
    }
    completed.expect("job did not complete")
}

/// Runs JOBS calls of `job` with at most `concurrency` in flight; returns the latency each call
/// measured, and the overall rate.
async fn measure<F, Fut>(concurrency: usize, job: F) -> (Vec<Duration>, f64)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Duration> + Send + 'static,
{
    let limit = Arc::new(Semaphore::new(concurrency));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(JOBS);
    for _ in 0..JOBS {
        let permit = Arc::clone(&limit).acquire_owned().await.expect("semaphore");
        let fut = job();
        tasks.push(tokio::spawn(async move {
            let latency = fut.await;
            drop(permit);
            latency
        }));
    }
    let mut latencies = Vec::with_capacity(JOBS);
    for task in tasks {
        latencies.push(task.await.expect("task"));
    }
    let rate = JOBS as f64 / started.elapsed().as_secs_f64();
    latencies.sort();
    (latencies, rate)
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn row(path: &str, concurrency: usize, sorted: Vec<Duration>, rate: f64) {
    println!(
        "{path:<38} {concurrency:>6} {:>10} {:>10} {:>12.0}",
        format!("{:.2?}", percentile(&sorted, 0.5)),
        format!("{:.2?}", percentile(&sorted, 0.99)),
        rate
    );
}

/// A CA for the run, and certificates from it.
struct Pki {
    ca: String,
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
}

impl Pki {
    fn new() -> Self {
        let key = rcgen::KeyPair::generate().expect("ca key");
        let mut params = rcgen::CertificateParams::default();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "vauban bench ca");
        let ca = params.self_signed(&key).expect("ca").pem();
        Self { ca, params, key }
    }

    /// A certificate (PEM) and its key (PEM) naming `uri`; a server one also names 127.0.0.1.
    fn issue(&self, uri: &str, server: bool) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::default();
        params.subject_alt_names = vec![rcgen::SanType::URI(uri.try_into().expect("uri"))];
        if server {
            params
                .subject_alt_names
                .push(rcgen::SanType::IpAddress([127, 0, 0, 1].into()));
        }
        params.use_authority_key_identifier_extension = true;
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("sign");
        (cert.pem(), key.serialize_pem())
    }
}
