//! `vauban.v1.HostLink`: the stream each host holds open, and module downloads.
//!
//! `Connect` reads the `Register`, hands the node to the state task, answers `Registered`, then
//! forwards: the host's messages to the state task (from a task of its own), and the state
//! task's assignments and cancellations to the host.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::{Stream, StreamExt as _};
use tonic::{Request, Response, Status, Streaming};
use tracing::{Instrument as _, debug, info, info_span, warn};
use vauban_core::ModuleDigest;
use vauban_proto::convert::{InvalidField, RunResult};
use vauban_proto::v1;
use vauban_proto::v1::host_message::Message as FromHost;
use vauban_proto::v1::scheduler_message::Message as ToHostMessage;

use super::modules::parse_digest;
use crate::identity::{Need, require};
use crate::job::{JobId, OutputChunk, OutputStream, RunEnd};
use crate::module::ModuleRegistry;
use crate::node::{
    Assignment, HostEvent, NodeId, PushedPolicy, Registration, RunningAttempt, ToHost,
};
use crate::state::{ConnectionHandle, SchedulerHandle};
use crate::trust::PolicyHolder;

/// Modules are sent to hosts in pieces of at most this size.
const MODULE_CHUNK_BYTES: usize = 1 << 20;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Serves hosts.
#[derive(Clone, Debug)]
pub(crate) struct HostLinkService {
    scheduler: SchedulerHandle,
    registry: ModuleRegistry,
    heartbeat_interval: Duration,
    /// The trust policy in force, in policy mode: sent to hosts that hold an older one.
    policy: Option<PolicyHolder>,
}

impl HostLinkService {
    pub(crate) fn new(
        scheduler: SchedulerHandle,
        registry: ModuleRegistry,
        heartbeat_interval: Duration,
        policy: Option<PolicyHolder>,
    ) -> Self {
        Self {
            scheduler,
            registry,
            heartbeat_interval,
            policy,
        }
    }
}

#[tonic::async_trait]
impl v1::host_link_server::HostLink for HostLinkService {
    type ConnectStream = BoxStream<v1::SchedulerMessage>;

    async fn connect(
        &self,
        request: Request<Streaming<v1::HostMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let caller = require(&request, Need::Host("connecting as a host"))?;
        let mut inbound = request.into_inner();
        let registration = match inbound.message().await? {
            Some(v1::HostMessage {
                message: Some(FromHost::Register(register)),
            }) => greeting_from_proto(register)?,
            _ => {
                return Err(Status::invalid_argument(
                    "the first message on the stream must be a register",
                ));
            }
        };
        let Greeting {
            registration,
            cached_modules,
            running,
            policy_version,
        } = registration;
        caller.may_register_as(registration.id.as_str())?;
        let node = registration.id.clone();
        let (outbound, to_host) = mpsc::unbounded_channel();
        let connection = self
            .scheduler
            .node_connected(registration, cached_modules, running, outbound)
            .await?;
        let span = info_span!("host_link", node = %node, connection = connection.id);
        tokio::spawn(
            forward_from_host(inbound, node, connection, self.scheduler.clone()).instrument(span),
        );

        let registered = v1::SchedulerMessage {
            message: Some(ToHostMessage::Registered(v1::Registered {
                heartbeat_interval_ms: u64::try_from(self.heartbeat_interval.as_millis())
                    .unwrap_or(u64::MAX),
            })),
        };
        // A host holding an older trust policy (one that was cut off when a newer one was
        // pushed) gets the one in force before any assignment. Read after the node is
        // registered: a policy installed since then is also pushed to it by the state task, and
        // the host ignores a version it already holds.
        let policy = self
            .policy
            .as_ref()
            .map(PolicyHolder::current)
            .filter(|p| p.version() > policy_version)
            .map(|p| Ok(to_host_to_proto(ToHost::Policy(PushedPolicy(p)))));
        // The stream ends when the state task drops the sender: node replaced, down, or
        // shutdown. The host sees the end and reconnects.
        let stream = tokio_stream::once(Ok(registered))
            .chain(tokio_stream::iter(policy))
            .chain(UnboundedReceiverStream::new(to_host).map(|m| Ok(to_host_to_proto(m))));
        Ok(Response::new(Box::pin(stream)))
    }

    type FetchModuleStream = BoxStream<v1::ModuleChunk>;

    async fn fetch_module(
        &self,
        request: Request<v1::FetchModuleRequest>,
    ) -> Result<Response<Self::FetchModuleStream>, Status> {
        require(&request, Need::Host("fetching a module for a host"))?;
        let v1::FetchModuleRequest { digest } = request.into_inner();
        let digest = parse_digest("digest", &digest)?;
        let Some(bytes) = self.registry.bytes(digest).await? else {
            return Err(Status::not_found(format!(
                "module {digest} is not uploaded"
            )));
        };
        let bytes = Arc::new(bytes);
        let chunks = (0..bytes.len().div_ceil(MODULE_CHUNK_BYTES)).map(move |i| {
            let start = i * MODULE_CHUNK_BYTES;
            let end = bytes.len().min(start + MODULE_CHUNK_BYTES);
            Ok(v1::ModuleChunk {
                chunk: bytes[start..end].to_vec(),
            })
        });
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }
}

/// Reads a host's messages and forwards them to the state task until the stream ends (then
/// reports it) or the scheduler closes it (then the state task already knows).
async fn forward_from_host(
    mut inbound: Streaming<v1::HostMessage>,
    node: NodeId,
    connection: ConnectionHandle,
    scheduler: SchedulerHandle,
) {
    loop {
        let message = tokio::select! {
            () = connection.closed.cancelled() => {
                debug!("stream closed by the scheduler");
                return;
            }
            message = inbound.message() => message,
        };
        let message = match message {
            Ok(Some(message)) => message,
            Ok(None) => {
                info!("host closed its stream");
                break;
            }
            Err(status) => {
                info!(%status, "host stream failed");
                break;
            }
        };
        match event_from_proto(message) {
            Ok(Some(event)) => {
                if scheduler
                    .node_message(node.clone(), connection.id, event)
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Ok(None) => {}
            Err(invalid) => warn!(%invalid, "ignoring an invalid message from the host"),
        }
    }
    let _ = scheduler.node_disconnected(node, connection.id).await;
}

/// What a host says when it connects.
#[derive(Debug)]
struct Greeting {
    registration: Registration,
    cached_modules: BTreeSet<ModuleDigest>,
    running: Vec<RunningAttempt>,
    /// The trust policy version the host holds (0: none), so that an older one gets the
    /// scheduler's.
    policy_version: u64,
}

fn greeting_from_proto(register: v1::Register) -> Result<Greeting, InvalidField> {
    let v1::Register {
        node_id,
        labels,
        slots,
        memory_bytes,
        cached_modules,
        running,
        receipt_key,
        policy_version,
    } = register;
    if node_id.is_empty() {
        return Err(InvalidField::new("register.node_id", "required"));
    }
    let receipt_key = receipt_key_from_proto(receipt_key)?;
    for (key, value) in &labels {
        if let Some(why) = label_error(key, value) {
            return Err(InvalidField::new(format!("register.labels[{key}]"), why));
        }
    }
    Ok(Greeting {
        registration: Registration {
            id: NodeId::from(node_id),
            labels: labels.into_iter().collect(),
            slots,
            memory_bytes,
            receipt_key,
        },
        cached_modules: digests_from_proto("register.cached_modules", &cached_modules)?,
        running: running.iter().map(|r| RunningAttempt::parse(r)).collect(),
        policy_version,
    })
}

/// The key a host signs receipts with: empty for none, else the hex of a valid Ed25519 key.
fn receipt_key_from_proto(key: String) -> Result<Option<String>, InvalidField> {
    if key.is_empty() {
        return Ok(None);
    }
    vauban_audit::PublicKey::from_hex(&key)
        .map(|key| Some(key.to_hex()))
        .map_err(|e| InvalidField::new("register.receipt_key", e.to_string()))
}

/// Why a node label is refused. Keys are free-form but not empty; the well-known `tier` is
/// `edge` or `core`. (`site`, `jurisdiction`, `classification` and `arch` are free text.)
fn label_error(key: &str, value: &str) -> Option<String> {
    if key.is_empty() {
        return Some("a label key may not be empty".to_owned());
    }
    if key == "tier" && !matches!(value, "edge" | "core") {
        return Some(format!("tier is edge or core, not {value:?}"));
    }
    None
}

fn digests_from_proto(
    field: &str,
    digests: &[String],
) -> Result<BTreeSet<ModuleDigest>, InvalidField> {
    digests.iter().map(|d| parse_digest(field, d)).collect()
}

/// A host's message after `Register`; `None` for an empty one.
fn event_from_proto(message: v1::HostMessage) -> Result<Option<HostEvent>, InvalidField> {
    let v1::HostMessage { message } = message;
    let Some(message) = message else {
        return Ok(None);
    };
    let event = match message {
        FromHost::Register(_) => {
            return Err(InvalidField::new(
                "register",
                "already registered on this stream",
            ));
        }
        FromHost::Heartbeat(v1::Heartbeat {
            running,
            assignments_received,
            cached_modules,
        }) => HostEvent::Heartbeat {
            running: running.iter().map(|r| RunningAttempt::parse(r)).collect(),
            assignments_received,
            // Sent only when it changed: empty means unchanged.
            cached_modules: (!cached_modules.is_empty())
                .then(|| digests_from_proto("heartbeat.cached_modules", &cached_modules))
                .transpose()?,
        },
        FromHost::Output(v1::JobOutput {
            job_id,
            attempt,
            chunk,
        }) => {
            let v1::OutputChunk { stream, data } =
                chunk.ok_or_else(|| InvalidField::new("output.chunk", "required"))?;
            let stream = match v1::output_chunk::Stream::try_from(stream) {
                Ok(v1::output_chunk::Stream::Stdout) => OutputStream::Stdout,
                Ok(v1::output_chunk::Stream::Stderr) => OutputStream::Stderr,
                _ => {
                    return Err(InvalidField::new(
                        "output.chunk.stream",
                        "must be stdout or stderr",
                    ));
                }
            };
            HostEvent::Output {
                job: JobId::from(job_id),
                attempt,
                chunk: OutputChunk { stream, data },
            }
        }
        FromHost::Started(v1::JobStarted {
            job_id,
            attempt,
            started_at_ms,
        }) => HostEvent::Started {
            job: JobId::from(job_id),
            attempt,
            started_at_ms,
        },
        FromHost::Finished(v1::JobFinished {
            job_id,
            attempt,
            end,
            receipt,
        }) => {
            // A result the scheduler cannot read still ends the attempt: failing the job says
            // why, where ignoring it would requeue and rerun it, and likely fail the same way.
            let end = match end {
                Some(v1::job_finished::End::Result(result)) => match RunResult::try_from(result) {
                    Ok(result) => RunEnd::Ran(result),
                    Err(e) => RunEnd::Refused(format!("the host sent an invalid result: {e}")),
                },
                Some(v1::job_finished::End::Refused(why)) => RunEnd::Refused(why),
                None => RunEnd::Refused("the host sent no result".to_owned()),
            };
            // Checked by the state task, which knows the key the node registered.
            let receipt = (!receipt.is_empty()).then(|| {
                vauban_audit::SignedReceipt::from_json(&receipt)
                    .map(Box::new)
                    .map_err(|e| e.to_string())
            });
            HostEvent::Finished {
                job: JobId::from(job_id),
                attempt,
                end,
                receipt,
            }
        }
    };
    Ok(Some(event))
}

fn to_host_to_proto(message: ToHost) -> v1::SchedulerMessage {
    let message = match message {
        ToHost::Assign(assignment) => {
            let Assignment {
                job,
                attempt,
                module,
                capabilities,
                stdin,
                program,
                grant,
            } = *assignment;
            ToHostMessage::Assign(v1::Assignment {
                job_id: job.into_string(),
                attempt,
                module_digest: module.to_string(),
                capabilities: Some(capabilities.into()),
                stdin: stdin.to_vec(),
                program,
                grant: grant.map(String::into_bytes).unwrap_or_default(),
            })
        }
        ToHost::Cancel { job, attempt } => ToHostMessage::Cancel(v1::Cancel {
            job_id: job.into_string(),
            attempt,
        }),
        ToHost::Policy(PushedPolicy(policy)) => {
            ToHostMessage::Policy(super::trust::policy_to_proto(&policy))
        }
    };
    v1::SchedulerMessage {
        message: Some(message),
    }
}

#[cfg(test)]
mod tests {
    use vauban_core::Outcome;

    use super::*;

    #[test]
    fn host_messages_become_events() {
        let finished = |end| {
            event_from_proto(v1::HostMessage {
                message: Some(FromHost::Finished(v1::JobFinished {
                    job_id: "j".into(),
                    attempt: 2,
                    end,
                    receipt: Vec::new(),
                })),
            })
        };
        let Ok(Some(HostEvent::Finished { end, attempt, .. })) =
            finished(Some(v1::job_finished::End::Result(v1::RunResult {
                outcome: Some(Outcome::Exited { code: 1 }.into()),
                ..v1::RunResult::default()
            })))
        else {
            panic!("a finished event");
        };
        assert_eq!(attempt, 2);
        assert!(matches!(end, RunEnd::Ran(r) if r.outcome == Outcome::Exited { code: 1 }));

        let Ok(Some(HostEvent::Finished { end, .. })) = finished(Some(
            v1::job_finished::End::Result(v1::RunResult::default()),
        )) else {
            panic!("a finished event");
        };
        assert!(matches!(end, RunEnd::Refused(why) if why.contains("result.outcome")));

        let register = v1::HostMessage {
            message: Some(FromHost::Register(v1::Register::default())),
        };
        assert!(event_from_proto(register).is_err());
        assert_eq!(
            event_from_proto(v1::HostMessage { message: None }),
            Ok(None)
        );
        assert!(greeting_from_proto(v1::Register::default()).is_err());
        let register = |labels: &[(&str, &str)]| {
            greeting_from_proto(v1::Register {
                node_id: "n1".into(),
                labels: labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                ..v1::Register::default()
            })
        };
        assert!(register(&[("tier", "edge"), ("site", "toulon")]).is_ok());
        let err = register(&[("tier", "fog")]).expect_err("tier");
        assert!(err.to_string().contains("register.labels[tier]"), "{err}");
        assert!(register(&[("", "x")]).is_err());
    }

    #[test]
    fn starts_receipts_and_receipt_keys_are_read() {
        let started = event_from_proto(v1::HostMessage {
            message: Some(FromHost::Started(v1::JobStarted {
                job_id: "j".into(),
                attempt: 3,
                started_at_ms: 42,
            })),
        });
        assert_eq!(
            started,
            Ok(Some(HostEvent::Started {
                job: JobId::from("j".to_owned()),
                attempt: 3,
                started_at_ms: 42,
            }))
        );

        let key = vauban_audit::SecretKey::from_seed(&[5; 32]);
        let signed = vauban_audit::Receipt {
            job: "j".into(),
            attempt: 2,
            module: ModuleDigest::of(b"m").to_string(),
            capabilities: vec![],
            node: "n1".into(),
            started_ms: 1,
            ended_ms: 2,
            outcome: "cancelled".into(),
            fuel: 0,
            peak_memory_bytes: 0,
        }
        .sign(&key)
        .expect("sign");
        let finished = |receipt: Vec<u8>| {
            event_from_proto(v1::HostMessage {
                message: Some(FromHost::Finished(v1::JobFinished {
                    job_id: "j".into(),
                    attempt: 2,
                    end: Some(v1::job_finished::End::Refused("no".into())),
                    receipt,
                })),
            })
        };
        let Ok(Some(HostEvent::Finished { receipt, .. })) =
            finished(signed.to_json().expect("json"))
        else {
            panic!("a finished event");
        };
        assert_eq!(receipt, Some(Ok(Box::new(signed))));
        let Ok(Some(HostEvent::Finished { receipt, .. })) = finished(b"{".to_vec()) else {
            panic!("a finished event");
        };
        assert!(
            matches!(&receipt, Some(Err(why)) if why.contains("not a signed receipt")),
            "{receipt:?}"
        );
        let Ok(Some(HostEvent::Finished { receipt: None, .. })) = finished(Vec::new()) else {
            panic!("no receipt");
        };

        let register = |receipt_key: String| {
            greeting_from_proto(v1::Register {
                node_id: "n1".into(),
                receipt_key,
                ..v1::Register::default()
            })
        };
        let hex = key.public_key().to_hex();
        let greeting = register(hex.clone()).expect("a valid key");
        assert_eq!(greeting.registration.receipt_key, Some(hex));
        let greeting = register(String::new()).expect("no key");
        assert_eq!(greeting.registration.receipt_key, None);
        let err = register("abcd".into()).expect_err("not a key");
        assert!(err.to_string().contains("register.receipt_key"), "{err}");
    }
}
