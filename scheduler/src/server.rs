//! `serve`: the whole scheduler behind one call, for the binary and for tests alike.
//!
//! The order of its steps is the design: open the store, recover the state, start the state task
//! and its ticker, serve every gRPC service until `shutdown`, then drain: host streams and
//! watches are closed so that tonic can finish the requests in flight, the state task stops, and
//! the store closes when its last handle is dropped.

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tracing::info;
use vauban_proto::v1::host_link_server::HostLinkServer;
use vauban_proto::v1::jobs_server::JobsServer;
use vauban_proto::v1::modules_server::ModulesServer;
use vauban_proto::v1::namespaces_server::NamespacesServer;
use vauban_proto::v1::nodes_server::NodesServer;

use crate::config::SchedulerConfig;
use crate::module::ModuleRegistry;
use crate::service::{
    HostLinkService, JobsService, MAX_MESSAGE_BYTES, ModulesService, NamespacesService,
    NodesService,
};
use crate::state::{self, StateConfig};
use crate::store::Store;

/// Opens the store, recovers state, serves all gRPC services on `listener` until `shutdown` is
/// cancelled, then drains and returns.
///
/// Serves `vauban.v1.Jobs`, `Modules`, `Nodes` and `HostLink`, plus `grpc.health.v1.Health`
/// (every service reported serving) and server reflection (v1).
///
/// # Errors
/// When the data directory or the store cannot be opened, the stored state cannot be read, or
/// the server fails.
pub async fn serve(
    listener: TcpListener,
    config: SchedulerConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let SchedulerConfig {
        data_dir,
        trust,
        heartbeat_interval,
        down_after,
        default_limits,
        max_module_bytes,
        audit,
    } = config;
    let path = data_dir.join("state.redb");
    let store = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&data_dir).with_context(|| {
                format!("cannot create the data directory {}", data_dir.display())
            })?;
            Store::open(&path)
                .with_context(|| format!("cannot open the state store {}", path.display()))
        })
        .await
        .context("opening the state store panicked")??
    };

    // Cancelled on shutdown, and also if the server fails: either way host streams and
    // watches must close.
    let closing = shutdown.child_token();
    let stop = CancellationToken::new();
    let audit = match audit {
        Some(config) => {
            let dir = config.dir.clone();
            let (sink, writer) = crate::audit::start(config)
                .with_context(|| format!("cannot open the audit log {}", dir.display()))?;
            Some((sink, writer))
        }
        None => None,
    };
    let (audit_sink, audit_writer) = audit.unzip();
    let (scheduler, state_task) = state::start(
        store.clone(),
        StateConfig { down_after },
        audit_sink,
        closing.clone(),
        stop.clone(),
    )
    .await
    .with_context(|| format!("cannot recover the state from {}", path.display()))?;
    let ticker = state::spawn_ticker(scheduler.clone(), heartbeat_interval, closing.clone());
    let registry = ModuleRegistry::new(store, trust, max_module_bytes);

    let jobs = JobsServer::new(JobsService::new(scheduler.clone(), default_limits))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let modules = ModulesServer::new(ModulesService::new(registry.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let nodes = NodesServer::new(NodesService::new(scheduler.clone()));
    let namespaces = NamespacesServer::new(NamespacesService::new(scheduler.clone()));
    let host_link = HostLinkServer::new(HostLinkService::new(
        scheduler.clone(),
        registry,
        heartbeat_interval,
    ))
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    drop(scheduler);

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<JobsServer<JobsService>>().await;
    health.set_serving::<ModulesServer<ModulesService>>().await;
    health.set_serving::<NodesServer<NodesService>>().await;
    health
        .set_serving::<NamespacesServer<NamespacesService>>()
        .await;
    health
        .set_serving::<HostLinkServer<HostLinkService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(vauban_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("cannot build the reflection service")?;

    let address = listener.local_addr().context("listener has no address")?;
    // Small messages (heartbeats, cancellations) should not wait for Nagle's algorithm.
    let incoming = TcpListenerStream::new(listener).map(|stream| {
        if let Ok(stream) = &stream
            && let Err(e) = stream.set_nodelay(true)
        {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        stream
    });
    info!(%address, data = %path.display(), "scheduler serving");
    let served = Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(jobs)
        .add_service(modules)
        .add_service(nodes)
        .add_service(namespaces)
        .add_service(host_link)
        .serve_with_incoming_shutdown(incoming, closing.clone().cancelled_owned())
        .await
        .context("grpc server failed");

    info!("server drained; stopping the state task");
    closing.cancel();
    stop.cancel();
    let _ = ticker.await;
    state_task.await.context("the state task panicked")?;
    // The state task held the only sink: the writer appends what is left, checkpoints, ends.
    if let Some(writer) = audit_writer {
        writer.await.context("the audit writer panicked")?;
    }
    served?;
    info!("scheduler stopped");
    Ok(())
}
