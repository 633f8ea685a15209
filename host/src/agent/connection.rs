//! One connection to the scheduler: register, then heartbeat, accept assignments and cancels,
//! and send what jobs produce, until the stream ends or shutdown has been drained.
//!
//! Everything happens in one loop over a `select!`, so the connection's state (heartbeat due,
//! the message being sent, draining) has one owner. The loop never waits on a full outbound
//! stream: it reserves room first, so scheduler messages keep being read while the wire is busy.

use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use vauban_proto::v1::host_link_client::HostLinkClient;
use vauban_proto::v1::scheduler_message::Message as Sm;
use vauban_proto::v1::{self, host_message::Message};

use super::Agent;
use super::backoff::Backoff;

/// A client of the scheduler's `HostLink` service on one connection.
pub(super) type Client = HostLinkClient<Channel>;

/// Dialing stops after this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// From dialing to `Registered`: a scheduler that accepts the stream but never answers is
/// treated as unreachable.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 pings: how an idle connection through NAT is kept open, and a dead one noticed.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Heartbeat period when the scheduler does not say.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);
/// Messages queued on the stream itself. Small, because whatever sits here when the connection
/// dies is lost; the rest waits in the outbox for the next connection.
const OUTBOUND_BUFFER: usize = 8;
/// Largest scheduler message accepted (an assignment carries the job's stdin).
const MAX_MESSAGE_BYTES: usize = 64 << 20;
/// After the host has sent everything and closed its side on shutdown, how long it waits for
/// the scheduler to close its own, which confirms that the last messages went out.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// How a connection ended without an error.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum End {
    /// Shutdown was requested and everything queued was sent: the agent is done.
    Drained,
    /// The scheduler ended the stream.
    Closed,
}

/// The agent's queue of messages for the scheduler, which outlives connections.
#[derive(Debug)]
pub(super) struct Outbox {
    queue: mpsc::UnboundedReceiver<v1::HostMessage>,
    /// Taken from the queue and waiting for room on the stream. Kept here rather than in the
    /// loop, so that a connection lost before there was room leaves it for the next one.
    next: Option<v1::HostMessage>,
}

impl Outbox {
    pub(super) fn new(queue: mpsc::UnboundedReceiver<v1::HostMessage>) -> Self {
        Self { queue, next: None }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.next.is_none() && self.queue.is_empty()
    }
}

/// The host's side of mutual TLS, as PEM bytes: the binary reads the files, the agent reads
/// nothing.
#[derive(Clone)]
pub struct ClientTls {
    /// The CA the scheduler's certificate must chain to.
    pub ca_pem: Vec<u8>,
    /// This host's certificate chain, leaf first: `spiffe://<trust-domain>/host/<node-id>`.
    pub cert_pem: Vec<u8>,
    /// Its private key.
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of logs.
        f.debug_struct("ClientTls").finish_non_exhaustive()
    }
}

/// The scheduler's endpoint, with dialing and keepalive settings, and mutual TLS when
/// `config.tls` is set (then the address must be `https://`).
///
/// # Errors
/// When the address is not a URI with a scheme, its scheme does not match `config.tls`, or
/// the TLS material cannot be used.
pub(super) fn endpoint(config: &super::AgentConfig) -> anyhow::Result<Endpoint> {
    let address = &config.scheduler;
    let endpoint = Endpoint::from_shared(address.clone())
        .with_context(|| format!("invalid scheduler address {address:?}"))?;
    let endpoint = match (endpoint.uri().scheme_str(), &config.tls) {
        (None, _) => bail!(
            "invalid scheduler address {address:?}: expected a scheme, as in https://host:port"
        ),
        (Some("https"), Some(tls)) => endpoint
            .tls_config(
                ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(&tls.ca_pem))
                    .identity(Identity::from_pem(&tls.cert_pem, &tls.key_pem)),
            )
            .context("cannot use this host's TLS certificate, key or CA")?,
        (Some("http"), None) => endpoint,
        // tonic would dial an http:// address in plaintext even with TLS configured.
        (Some(_), Some(_)) => bail!(
            "the scheduler address {address:?} is not https://, but this host has a TLS certificate"
        ),
        (Some(_), None) => bail!(
            "the scheduler address {address:?} is not http://, but this host has no TLS certificate"
        ),
    };
    Ok(endpoint
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true))
}

/// Connects, registers, and serves the connection until it ends. Resets `backoff` once
/// registered. When `shutdown` is (or becomes) cancelled, drains: cancels the jobs, waits for
/// them until the drain deadline, sends what is queued, closes, and returns [`End::Drained`].
///
/// # Errors
/// When the scheduler cannot be reached, does not register the host, or the stream fails.
pub(super) async fn serve(
    agent: &std::sync::Arc<Agent>,
    endpoint: &Endpoint,
    outbox: &mut Outbox,
    backoff: &mut Backoff,
    shutdown: &CancellationToken,
) -> anyhow::Result<End> {
    let config = &agent.config;
    let (tx, rx) = mpsc::channel(OUTBOUND_BUFFER);
    // Built before dialing, yet still true when the stream opens: jobs join and leave the job
    // table only in a connection's loop, and no other connection runs meanwhile. Modules
    // cached while dialing go in the first heartbeat.
    let (register, mut modules_reported) = register(agent);
    // Cannot fail: `rx` is alive and the buffer empty.
    let _ = tx.try_send(register);

    let registration = tokio::time::timeout(REGISTER_TIMEOUT, async {
        let channel = endpoint
            .connect()
            .await
            .with_context(|| format!("cannot connect to {}", config.scheduler))?;
        let mut client = Client::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES);
        let mut inbound = client
            .connect(ReceiverStream::new(rx))
            .await
            .context("the scheduler refused the connection")?
            .into_inner();
        let first = inbound
            .message()
            .await
            .context("the scheduler did not register this host")?;
        let heartbeat_interval_ms = match first {
            Some(v1::SchedulerMessage {
                message:
                    Some(Sm::Registered(v1::Registered {
                        heartbeat_interval_ms,
                    })),
            }) => heartbeat_interval_ms,
            Some(other) => bail!("the scheduler answered registration with {other:?}"),
            None => bail!("the scheduler closed the stream before registering this host"),
        };
        let interval = match heartbeat_interval_ms {
            0 => DEFAULT_HEARTBEAT,
            ms => Duration::from_millis(ms),
        };
        anyhow::Ok((client, inbound, interval))
    });
    // Shutdown interrupts dialing, unless this connection is the last try to deliver results
    // after shutdown (then the caller bounds it).
    let interruptible = !shutdown.is_cancelled();
    let (client, mut inbound, interval) = tokio::select! {
        registered = registration => registered
            .map_err(|_| anyhow!("no answer to registration within {REGISTER_TIMEOUT:?}"))??,
        () = shutdown.cancelled(), if interruptible => bail!("shut down while connecting"),
    };
    backoff.reset();
    tracing::info!(
        node = %config.node_id,
        scheduler = %config.scheduler,
        heartbeat = ?interval,
        "connected to the scheduler"
    );

    let mut heartbeat_timer = tokio::time::interval(interval);
    heartbeat_timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // The first tick is immediate: the heartbeat right after registering confirms the jobs
    // `Register` listed, and carries the modules if they changed since.
    let mut heartbeat_due = false;
    // Heartbeats carry it, so the scheduler can tell a heartbeat that left before an
    // assignment arrived from one that omits a job the host no longer runs.
    let mut assignments_received: u64 = 0;
    let mut draining = false;
    let mut jobs_done = false;
    let drain_deadline = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(drain_deadline);

    loop {
        if draining && jobs_done && !heartbeat_due && outbox.is_empty() {
            break;
        }
        tokio::select! {
            biased;
            () = shutdown.cancelled(), if !draining => {
                draining = true;
                drain_deadline.as_mut().reset(agent.begin_drain());
            }
            () = agent.tracker.wait(), if draining && !jobs_done => jobs_done = true,
            () = &mut drain_deadline, if draining && !jobs_done => {
                tracing::warn!(
                    running = agent.tracker.len(),
                    "jobs still running after the shutdown grace: their results are lost"
                );
                jobs_done = true;
            }
            message = inbound.message() => match message {
                Ok(Some(v1::SchedulerMessage { message })) => {
                    if matches!(message, Some(Sm::Assign(_))) {
                        assignments_received += 1;
                    }
                    handle(agent, message, &client, draining);
                }
                Ok(None) => return Ok(End::Closed),
                Err(status) => return Err(anyhow!(status).context("the scheduler stream failed")),
            },
            _ = heartbeat_timer.tick() => heartbeat_due = true,
            message = outbox.queue.recv(), if outbox.next.is_none() => outbox.next = message,
            permit = tx.reserve(), if heartbeat_due || outbox.next.is_some() => {
                let permit = permit.map_err(|_| anyhow!("the stream to the scheduler closed"))?;
                if heartbeat_due {
                    heartbeat_due = false;
                    permit.send(heartbeat(agent, assignments_received, &mut modules_reported));
                } else if let Some(message) = outbox.next.take() {
                    agent.sent(&message);
                    permit.send(message);
                }
            }
        }
    }

    // Closing our side ends the request stream after what is queued on it; the scheduler then
    // ends its side, which is how we know the last results went out.
    drop(tx);
    let closed = tokio::time::timeout(CLOSE_TIMEOUT, async {
        while let Ok(Some(_)) = inbound.message().await {}
    })
    .await;
    if closed.is_err() {
        tracing::debug!("the scheduler did not close its side of the stream");
    }
    tracing::info!("disconnected from the scheduler");
    Ok(End::Drained)
}

/// The first message of a stream: who this host is, what it offers, and what it already has
/// (the attempts still running from before this stream, the modules it holds). Also returns the
/// version of the module set it lists, for [`heartbeat`].
pub(super) fn register(agent: &Agent) -> (v1::HostMessage, u64) {
    let config = &agent.config;
    let (version, cached_modules) = agent.cached.snapshot();
    let register = v1::Register {
        node_id: config.node_id.clone(),
        labels: config.labels.clone().into_iter().collect(),
        slots: config.slots,
        memory_bytes: config.memory_bytes,
        cached_modules,
        running: agent.jobs.attempt_ids(),
        receipt_key: config
            .receipt_key
            .as_ref()
            .map(|key| key.public_key().to_hex())
            .unwrap_or_default(),
        policy_version: agent.policy_version(),
    };
    let message = v1::HostMessage {
        message: Some(Message::Register(register)),
    };
    (message, version)
}

/// A heartbeat: the attempts running here, and the modules held when they changed since the
/// last ones this stream reported (at version `*modules_reported`, which it updates).
///
/// An empty `cached_modules` therefore means "unchanged", never "none": the scheduler keeps the
/// set it has. A set that shrank to nothing (its only module found altered on disk and removed)
/// goes unreported until the next registration or the next module; the cost of that stale hint
/// is one fetch.
pub(super) fn heartbeat(
    agent: &Agent,
    assignments_received: u64,
    modules_reported: &mut u64,
) -> v1::HostMessage {
    let cached_modules = match agent.cached.changed_since(*modules_reported) {
        Some((version, digests)) => {
            *modules_reported = version;
            digests
        }
        None => Vec::new(),
    };
    v1::HostMessage {
        message: Some(Message::Heartbeat(v1::Heartbeat {
            running: agent.jobs.attempt_ids(),
            assignments_received,
            cached_modules,
        })),
    }
}

/// Acts on one message from the scheduler.
fn handle(agent: &std::sync::Arc<Agent>, message: Option<Sm>, client: &Client, draining: bool) {
    match message {
        Some(Sm::Assign(assignment)) => agent.accept(assignment, client.clone(), draining),
        Some(Sm::Cancel(v1::Cancel { job_id, attempt })) => {
            if agent.jobs.cancel(&job_id, attempt) {
                tracing::info!(%job_id, attempt, "cancel requested");
            } else {
                tracing::debug!(%job_id, attempt, "cancel for a job not running here");
            }
        }
        Some(Sm::Registered(_)) => tracing::debug!("ignoring a repeated registration answer"),
        Some(Sm::Policy(policy)) => agent.install_policy(policy),
        None => tracing::debug!("ignoring an empty scheduler message"),
    }
}
