//! `serve`: the whole scheduler behind one call, for the binary and for tests alike.
//!
//! The order of its steps is the design: open the store, recover the state, start the state task
//! and its ticker, serve every gRPC service until `shutdown`, then drain: host streams and
//! watches are closed so that tonic can finish the requests in flight, the state task stops, and
//! the store closes when its last handle is dropped.
//!
//! Connections come from one accept loop ([`incoming`]): with [`ServerTls`] each one completes
//! a mutual TLS handshake (client certificate required, chained to the client CA, checked
//! against the revocation list) in a task of its own, and is identified once, from its verified
//! certificate; every request on it then carries that identity as an
//! [`identity::ConnectionInfo`] extension. A failed handshake is logged and that connection
//! dropped: it never stops the loop. tonic's own `ServerTlsConfig` has no revocation list, which
//! is why the loop is ours.

use std::collections::HashMap;
use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::transport::Server;
use tonic::transport::server::Connected;
use tracing::{Instrument as _, debug, info, warn};
use vauban_proto::v1::host_link_server::HostLinkServer;
use vauban_proto::v1::jobs_server::JobsServer;
use vauban_proto::v1::modules_server::ModulesServer;
use vauban_proto::v1::namespaces_server::NamespacesServer;
use vauban_proto::v1::nodes_server::NodesServer;
use vauban_proto::v1::trust_server::TrustServer;

use crate::config::SchedulerConfig;
use crate::identity::{
    self, Authentication, ClientAuth, ConnectionInfo, IdentityError, Need, Role, SpiffeId,
    TlsConfigError,
};
use crate::module::ModuleRegistry;
use crate::service::{
    HostLinkService, JobAdmission, JobsService, MAX_MESSAGE_BYTES, ModulesService,
    NamespacesService, NodesService, TrustService,
};
use crate::state::{self, StateConfig};
use crate::store::Store;
use crate::trust::Trust;

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
        policy,
        heartbeat_interval,
        down_after,
        default_limits,
        max_module_bytes,
        audit,
        tls,
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

    // The newer of the policy given and the one stored by an earlier run is in force.
    let (policy, policy_change) = match policy {
        Some(holder) => {
            let (holder, change) = crate::trust::recover(&store, holder).await?;
            (Some(holder), change)
        }
        None => (None, None),
    };

    // Cancelled on shutdown, and also if the server fails: either way host streams and
    // watches must close.
    let closing = shutdown.child_token();
    let stop = CancellationToken::new();
    let audit = match audit {
        Some(config) => {
            let dir = config.dir.clone();
            let (sink, writer) = crate::audit::start(config, store.clone())
                .await
                .with_context(|| format!("cannot open the audit log {}", dir.display()))?;
            Some((sink, writer))
        }
        None => None,
    };
    let (audit_sink, audit_writer) = audit.unzip();
    let audited = audit_sink.is_some();
    let (scheduler, state_task) = state::start(
        store.clone(),
        StateConfig {
            down_after,
            policy: policy.clone(),
        },
        audit_sink,
        closing.clone(),
        stop.clone(),
    )
    .await
    .with_context(|| format!("cannot recover the state from {}", path.display()))?;
    if let (Some(change), Some(holder)) = (policy_change, &policy) {
        let current = holder.current();
        let at_ms = crate::now_ms();
        let mut entries = vec![vauban_audit::Entry::PolicyChange(
            vauban_audit::entry::PolicyChange {
                at_ms,
                old_version: change.old_version,
                new_version: change.new_version,
                digest: current.digest(),
            },
        )];
        entries.extend(current.root_signers().into_iter().map(|key| {
            vauban_audit::Entry::KeyUse(vauban_audit::KeyUse {
                at_ms,
                key: key.to_string(),
                role: "root".to_owned(),
                purpose: format!("signed trust policy version {}", current.version()),
            })
        }));
        scheduler
            .record_audit(entries)
            .await
            .context("recording the trust policy in the audit log")?;
    }
    let ticker = state::spawn_ticker(scheduler.clone(), heartbeat_interval, closing.clone());
    let trust_service = TrustServer::new(TrustService::new(scheduler.clone(), policy.clone()));
    let trust = match policy.clone() {
        Some(policy) => Trust::Policy(policy),
        None => Trust::Keys(trust),
    };
    let registry = ModuleRegistry::new(store, trust.clone(), max_module_bytes);

    let jobs = JobsServer::new(JobsService::new(
        scheduler.clone(),
        default_limits,
        JobAdmission::new(trust, registry.clone()),
    ))
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    // Module uploads are recorded through the state task, whose commits hold the audit outbox.
    let module_audit = if audited {
        crate::audit::ModuleAudit::to(scheduler.clone())
    } else {
        crate::audit::ModuleAudit::off()
    };
    let modules =
        ModulesServer::new(ModulesService::new(registry.clone()).with_audit(module_audit))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let nodes = NodesServer::new(NodesService::new(scheduler.clone()));
    let namespaces = NamespacesServer::new(NamespacesService::new(scheduler.clone()));
    let host_link = HostLinkServer::new(HostLinkService::new(
        scheduler.clone(),
        registry,
        heartbeat_interval,
        policy,
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
    health.set_serving::<TrustServer<TrustService>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(vauban_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("cannot build the reflection service")?;

    let address = listener.local_addr().context("listener has no address")?;
    match &tls {
        Some(tls) => info!(
            %address,
            data = %path.display(),
            identity = %tls.identity,
            "scheduler serving mutual TLS"
        ),
        None => info!(%address, data = %path.display(), "scheduler serving plaintext"),
    }
    // Health and reflection answer any authenticated peer, and no one else.
    let health_service = tonic::service::interceptor::InterceptedService::new(
        health_service,
        |request: tonic::Request<()>| {
            identity::require(&request, Need::Peer("checking health"))?;
            Ok(request)
        },
    );
    let reflection = tonic::service::interceptor::InterceptedService::new(
        reflection,
        |request: tonic::Request<()>| {
            identity::require(&request, Need::Peer("listing services"))?;
            Ok(request)
        },
    );
    let incoming = incoming(listener, tls, closing.clone());
    let served = Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(jobs)
        .add_service(modules)
        .add_service(nodes)
        .add_service(namespaces)
        .add_service(host_link)
        .add_service(trust_service)
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

/// A TLS handshake that has not finished in this long is dropped, so that silent peers cannot
/// pile up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections handed to tonic and not yet taken.
const ACCEPTED_BUFFER: usize = 64;

/// The scheduler's side of mutual TLS, validated: its certificate and key, and how peers are
/// authenticated ([`ClientAuth`]).
///
/// The trust domain every peer must be in is the scheduler's own, read from its certificate
/// (`spiffe://<trust-domain>/scheduler/<name>`). Clones share everything, so that the
/// revocation list can be reloaded ([`ServerTls::reload_crl`]) while the server runs.
#[derive(Clone)]
pub struct ServerTls {
    /// What handshakes use now; replaced by a reload.
    current: Arc<RwLock<Handshake>>,
    /// What a reload rebuilds it from.
    material: Arc<Material>,
    identity: SpiffeId,
    /// The connections up, so that a reload can close those it no longer admits.
    live: Arc<LiveConnections>,
}

/// The TLS acceptor, and the authentication it was built with.
#[derive(Clone)]
struct Handshake {
    acceptor: TlsAcceptor,
    auth: Arc<ClientAuth>,
}

/// The scheduler's certificate chain and key, and the client CA.
struct Material {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_ca_pem: Vec<u8>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("identity", &self.identity.to_string())
            .field("auth", &self.handshake().auth)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Mutual TLS from PEM: the scheduler's certificate chain (leaf first) and private key
    /// (PKCS#8, SEC1 or PKCS#1), the CA that client and host certificates must chain to, and
    /// optionally a certificate revocation list of that CA.
    ///
    /// # Errors
    /// When any input is malformed or empty, the key does not match the certificate, or the
    /// certificate is not a scheduler's (`spiffe://<trust-domain>/scheduler/<name>`).
    pub fn from_pem(
        cert_chain_pem: &[u8],
        key_pem: &[u8],
        client_ca_pem: &[u8],
        crl_pem: Option<&[u8]>,
    ) -> Result<Self, TlsConfigError> {
        let what = "the scheduler certificate";
        let chain = identity::certificates_from_pem(cert_chain_pem)
            .map_err(|source| TlsConfigError::Certificate { what, source })?;
        let identity = chain
            .first()
            .ok_or(IdentityError::NoCertificate)
            .and_then(identity::spiffe_id)
            .map_err(|source| TlsConfigError::Certificate { what, source })?;
        if identity.peer.role != Role::Scheduler {
            return Err(TlsConfigError::Invalid {
                what,
                reason: format!(
                    "it names {identity}, not a scheduler (issue one with `vauban pki issue --role scheduler`)"
                ),
            });
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsConfigError::Invalid {
            what: "the scheduler key",
            reason: format!("no usable private key: {e}"),
        })?;
        let material = Material {
            chain,
            key,
            client_ca_pem: client_ca_pem.to_vec(),
        };
        let handshake = Handshake::new(&material, crl_pem, &identity.trust_domain)?;
        Ok(Self {
            current: Arc::new(RwLock::new(handshake)),
            material: Arc::new(material),
            identity,
            live: Arc::default(),
        })
    }

    /// The scheduler's own identity, from its certificate.
    pub fn identity(&self) -> &SpiffeId {
        &self.identity
    }

    /// Puts a new certificate revocation list (PEM) in force: new handshakes check it, and
    /// every connection up whose certificate a handshake would now refuse (revoked by it, or
    /// expired since) is closed, which ends its calls and streams. Returns how many were
    /// closed. The server keeps running on the previous list if this fails.
    ///
    /// # Errors
    /// When the list is malformed or empty, or rustls refuses it.
    pub fn reload_crl(&self, crl_pem: &[u8]) -> Result<usize, TlsConfigError> {
        let handshake = Handshake::new(&self.material, Some(crl_pem), &self.identity.trust_domain)?;
        let auth = Arc::clone(&handshake.auth);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = handshake;
        Ok(self.live.close_refused(|leaf| {
            auth.verifier()
                .verify_client_cert(leaf, &[], UnixTime::now())
                .map(|_| ())
                .map_err(|e| IdentityError::from_tls(&e).to_string())
        }))
    }

    fn handshake(&self) -> Handshake {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Handshake {
    fn new(
        material: &Material,
        crl_pem: Option<&[u8]>,
        trust_domain: &str,
    ) -> Result<Self, TlsConfigError> {
        let auth = ClientAuth::new(&material.client_ca_pem, crl_pem, trust_domain)?;
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsConfigError::Invalid {
            what: "the TLS configuration",
            reason: e.to_string(),
        })?
        .with_client_cert_verifier(auth.verifier())
        .with_single_cert(material.chain.clone(), material.key.clone_key())
        .map_err(|e| TlsConfigError::Invalid {
            what: "the scheduler certificate and key",
            reason: e.to_string(),
        })?;
        // gRPC is HTTP/2; clients such as grpcio insist that it is negotiated.
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            auth: Arc::new(auth),
        })
    }
}

/// The TLS connections up, each with its peer's certificate and a way to close it.
#[derive(Default)]
struct LiveConnections {
    next: AtomicU64,
    peers: Mutex<HashMap<u64, LivePeer>>,
}

struct LivePeer {
    leaf: CertificateDer<'static>,
    remote: std::net::SocketAddr,
    close: CancellationToken,
}

impl LiveConnections {
    /// Tracks a connection until the returned registration is dropped (with the connection).
    fn register(
        self: &Arc<Self>,
        leaf: CertificateDer<'static>,
        remote: std::net::SocketAddr,
    ) -> Registration {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let close = CancellationToken::new();
        let closed = Box::pin(close.clone().cancelled_owned());
        self.peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                id,
                LivePeer {
                    leaf,
                    remote,
                    close,
                },
            );
        Registration {
            id,
            live: Arc::clone(self),
            closed,
        }
    }

    /// Closes every connection whose certificate `admits` refuses; returns how many.
    fn close_refused(&self, admits: impl Fn(&CertificateDer<'_>) -> Result<(), String>) -> usize {
        let peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        let mut closed = 0;
        for peer in peers.values() {
            if let Err(reason) = admits(&peer.leaf) {
                warn!(remote = %peer.remote, %reason, "closing a connection its certificate no longer admits");
                peer.close.cancel();
                closed += 1;
            }
        }
        closed
    }
}

/// A connection's place in [`LiveConnections`].
struct Registration {
    id: u64,
    live: Arc<LiveConnections>,
    /// Ready once a reload closes the connection.
    closed: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.live
            .peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

/// Accepts connections on `listener` until `closing`, each one authenticated when `tls` is
/// given, and yields them to tonic. The listener closes when the loop ends.
fn incoming(
    listener: TcpListener,
    tls: Option<ServerTls>,
    closing: CancellationToken,
) -> ReceiverStream<io::Result<Connection>> {
    let (accepted, stream) = mpsc::channel(ACCEPTED_BUFFER);
    tokio::spawn(
        async move {
            loop {
                let (tcp, remote) = tokio::select! {
                    () = closing.cancelled() => break,
                    () = accepted.closed() => break,
                    next = listener.accept() => match next {
                        Ok(next) => next,
                        Err(error) => {
                            // Out of file descriptors, usually: the loop must go on, but not spin.
                            warn!(%error, "cannot accept a connection");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                // Small messages (heartbeats, cancellations) should not wait for Nagle.
                if let Err(error) = tcp.set_nodelay(true) {
                    debug!(%error, "cannot set TCP_NODELAY");
                }
                let Some(tls) = tls.clone() else {
                    let connection = Connection {
                        io: Io::Plain(tcp),
                        info: ConnectionInfo {
                            remote: Some(remote),
                            auth: Authentication::Insecure,
                        },
                        registration: None,
                    };
                    if accepted.send(Ok(connection)).await.is_err() {
                        break;
                    }
                    continue;
                };
                let accepted = accepted.clone();
                tokio::spawn(
                    async move {
                        if let Some(connection) = handshake(&tls, tcp, remote).await {
                            // Refused only when the server has stopped taking connections.
                            let _ = accepted.send(Ok(connection)).await;
                        }
                    }
                    .instrument(tracing::debug_span!("tls", %remote)),
                );
            }
            debug!("no longer accepting connections");
        }
        .instrument(tracing::info_span!("accept")),
    );
    ReceiverStream::new(stream)
}

/// Completes the TLS handshake of one connection and identifies its peer, or logs why not.
async fn handshake(
    tls: &ServerTls,
    tcp: TcpStream,
    remote: std::net::SocketAddr,
) -> Option<Connection> {
    let current = tls.handshake();
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, current.acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            // The verifier's refusal, in the words a table test checks, when it is one.
            let reason = match error
                .get_ref()
                .and_then(|e| e.downcast_ref::<rustls::Error>())
            {
                Some(
                    refusal @ (rustls::Error::InvalidCertificate(_)
                    | rustls::Error::NoCertificatesPresented),
                ) => IdentityError::from_tls(refusal).to_string(),
                Some(rustls::Error::InvalidMessage(_)) => {
                    format!("{error} (a plaintext client?)")
                }
                _ => error.to_string(),
            };
            warn!(%remote, %reason, "tls handshake failed; connection dropped");
            return None;
        }
        Err(_) => {
            warn!(%remote, "tls handshake timed out; connection dropped");
            return None;
        }
    };
    let (_, session) = stream.get_ref();
    // The verifier required a certificate, so there is one; refuse rather than assume.
    let leaf = session.peer_certificates().and_then(|chain| chain.first());
    let registration = leaf.map(|leaf| tls.live.register(leaf.clone().into_owned(), remote));
    let auth = match leaf {
        Some(leaf) => match current.auth.identify(leaf) {
            Ok(peer) => {
                debug!(role = %peer.role, name = %peer.name, "peer authenticated");
                Authentication::Peer(peer)
            }
            Err(error) => {
                warn!(%remote, %error, "a certificate from the CA names no usable identity");
                Authentication::Refused(error.to_string())
            }
        },
        None => Authentication::Refused(IdentityError::NoClientCertificate.to_string()),
    };
    Some(Connection {
        io: Io::Tls(Box::new(stream)),
        info: ConnectionInfo {
            remote: Some(remote),
            auth,
        },
        registration,
    })
}

/// One accepted connection, plaintext or TLS, with who is on the other end.
struct Connection {
    io: Io,
    info: ConnectionInfo,
    /// A TLS connection's place among the live ones: it fails every read and write once a
    /// reload of the revocation list closes it.
    registration: Option<Registration>,
}

impl Connection {
    /// An error if a reload closed the connection; else registers `cx` to be woken if one does.
    fn closed(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        let registration = self.registration.as_mut()?;
        registration.closed.as_mut().poll(cx).is_ready().then(|| {
            io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "closed: the peer's certificate is no longer admitted",
            )
        })
    }
}

enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Connected for Connection {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> ConnectionInfo {
        self.info.clone()
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(error) = this.closed(cx) {
            return Poll::Ready(Err(error));
        }
        match &mut this.io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(error) = this.closed(cx) {
            return Poll::Ready(Err(error));
        }
        match &mut this.io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(error) = this.closed(cx) {
            return Poll::Ready(Err(error));
        }
        match &mut this.io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
