//! One assignment, from the scheduler's message to the host's report: get the module (from the
//! local store, else fetched and digest-checked), load it (which verifies its signature against
//! this host's trust store), run it while streaming its output, and queue the result.
//!
//! A host holding a trust policy admits the assignment itself first, whatever the scheduler
//! decided: the grant must verify against this host's own copy of the policy, be for the module
//! it fetched, and allow what the job asks for on one of the grant's node classes that this
//! host's own labels match. Otherwise the job is refused, naming the capability, before
//! anything is compiled.
//!
//! Whatever happens, exactly one `JobFinished` is queued per assignment: a result when the guest
//! ran (or was cancelled before it could), a refusal with the reason otherwise.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, anyhow, bail};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use vauban_core::admission::{admit_on_node, check_grant_module};
use vauban_core::outcome::CapturedOutput;
use vauban_core::revocation::still_trusted;
use vauban_core::{Limits, ModuleDigest, Outcome, SignedGrant, VerifiedGrant};
use vauban_proto::convert::{RunResult, capabilities_from_proto};
use vauban_proto::v1::{self, host_message::Message, job_finished::End, output_chunk::Stream};

use super::connection::Client;
use super::{Agent, receipt};
use crate::modules::StoreError;
use crate::{LoadedModule, OutputEvent, OutputStream, RunRequest};

/// A module transfer that takes longer than this refuses the job.
const FETCH_TIMEOUT: Duration = Duration::from_secs(120);
/// Output events taken from a run at once, and the most bytes sent in one `JobOutput`: a guest
/// writing a byte at a time still produces few messages.
const OUTPUT_BATCH: usize = 256;
const MAX_CHUNK_BYTES: usize = 64 * 1024;

/// Runs one assignment and queues its output and its end. `cancel` stops it at any point.
pub(super) async fn run(
    agent: Arc<Agent>,
    client: Client,
    assignment: v1::Assignment,
    cancel: CancellationToken,
) {
    let v1::Assignment {
        job_id,
        attempt,
        module_digest,
        capabilities,
        stdin,
        program,
        grant,
    } = assignment;
    tracing::info!(module = %module_digest, "job assigned");
    let prepared = tokio::select! {
        prepared = prepare(&agent, client, &module_digest, capabilities, &grant) => prepared,
        () = cancel.cancelled() => {
            tracing::info!("cancelled before it started");
            agent.send(finished(job_id, attempt, End::Result(cancelled_early().into())));
            return;
        }
    };
    let (module, capabilities) = match prepared {
        Ok(prepared) => prepared,
        Err(error) => {
            let reason = format!("{error:#}");
            tracing::warn!(%reason, "job refused");
            agent.send(refused(job_id, attempt, reason));
            return;
        }
    };

    let (sink, mut events) = mpsc::unbounded_channel();
    // Verified and loaded: the guest runs next (the runtime reports no later phase).
    let started = receipt::Attempt::start(
        &agent,
        &job_id,
        attempt,
        &module.verified().digest,
        &capabilities,
    );
    let request = RunRequest {
        capabilities,
        stdin,
        program,
        output: Some(sink),
    };
    let untrusted = untrusted(&agent, &module, &grant);
    tokio::pin!(untrusted);
    let mut revoked = false;
    let run = agent.runtime.run(&module, request, &cancel);
    tokio::pin!(run);
    let mut batch = Vec::with_capacity(OUTPUT_BATCH);
    let report = loop {
        tokio::select! {
            report = &mut run => break report,
            why = &mut untrusted, if !revoked => {
                // This host's own policy says stop, whether or not the scheduler says so too.
                tracing::warn!(%why, "stopping a job the trust policy no longer trusts");
                revoked = true;
                cancel.cancel();
            }
            received = events.recv_many(&mut batch, OUTPUT_BATCH) => {
                if received == 0 {
                    // Every sender is gone, which only happens as the run ends.
                    break (&mut run).await;
                }
                send_output(&agent, &job_id, attempt, batch.drain(..));
            }
        }
    };
    // The run has dropped its senders: what is left in the channel is all there is.
    events.close();
    while let Ok(event) = events.try_recv() {
        batch.push(event);
    }
    send_output(&agent, &job_id, attempt, batch.drain(..));
    tracing::info!(outcome = %report.outcome, run_time = ?report.run_time, "job finished");
    let result = RunResult::from(report);
    let signed = started.receipt(&agent, &result);
    let mut message = finished(job_id, attempt, End::Result(result.into()));
    receipt::attach(&mut message, signed);
    agent.send(message);
}

/// Resolves, with the reason, once a trust policy installed on this host while the job runs no
/// longer trusts its module or its grant, or once its grant expires; never in keys-only mode.
async fn untrusted(agent: &Agent, module: &LoadedModule, grant: &[u8]) -> String {
    let Some(holder) = agent.runtime.policy() else {
        return std::future::pending().await;
    };
    let grant = if grant.is_empty() {
        None
    } else {
        match SignedGrant::from_json(grant) {
            Ok(grant) => Some(grant),
            // Admission parsed it before the run began.
            Err(e) => return format!("its grant no longer parses: {e}"),
        }
    };
    let verified = module.verified();
    let mut changes = holder.subscribe();
    loop {
        // The policy at subscription first: one installed since admission counts too.
        let policy = std::sync::Arc::clone(&changes.borrow_and_update());
        if let Err(untrusted) = still_trusted(
            &policy,
            &verified.digest,
            &verified.signers,
            grant.as_ref(),
            SystemTime::now(),
        ) {
            return untrusted.to_string();
        }
        // A grant's window ends while the instance runs: it stops then, as a grant that
        // expired before the assignment would have refused it.
        let expiry = async {
            let Some(grant) = &grant else {
                return std::future::pending::<String>().await;
            };
            let grant = grant.unverified_grant();
            let left = grant
                .not_after
                .time()
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            tokio::time::sleep(left).await;
            format!("its grant {} expired at {}", grant.id, grant.not_after)
        };
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return std::future::pending().await;
                }
            }
            why = expiry => return why,
        }
    }
}

/// Everything before the run: capabilities decoded, the job admitted (policy mode), module at
/// hand, verified and loaded.
async fn prepare(
    agent: &Arc<Agent>,
    client: Client,
    module_digest: &str,
    capabilities: Option<v1::Capabilities>,
    grant: &[u8],
) -> anyhow::Result<(LoadedModule, vauban_core::Capabilities)> {
    let digest: ModuleDigest = module_digest.parse()?;
    let capabilities = capabilities_from_proto(capabilities.unwrap_or_default(), Limits::DEFAULT)?;
    let grant = admit(agent, &digest, &capabilities, grant).context("not admitted on this host")?;
    // A module that already verified and loaded in this process is ready as it is.
    if let Some(module) = agent.runtime.loaded(&digest) {
        if let Some(grant) = &grant {
            let verified = module.verified();
            check_grant_module(&grant.grant, &verified.digest, verified.kind)?;
        }
        return Ok((module, capabilities));
    }
    // Its bytes may still be in memory: then the only blocking work is the load (which
    // verifies the signature), in one trip to the blocking pool.
    if let Some(bytes) = agent.store.cached(&digest) {
        covers(grant.as_ref(), &bytes)?;
        return Ok((load(agent, digest, bytes).await?, capabilities));
    }
    let bytes = match blocking(agent, move |agent| agent.store.get(&digest)).await? {
        Ok(Some(bytes)) => bytes,
        Ok(None) => {
            // Not on disk (any more, if it was altered there), nor loaded, checked above.
            agent.cached.remove(&digest);
            fetch_and_store(agent, client, module_digest, digest).await?
        }
        Err(error) => {
            tracing::warn!(%error, "cannot read the module store; fetching");
            fetch_and_store(agent, client, module_digest, digest).await?
        }
    };
    covers(grant.as_ref(), &bytes)?;
    Ok((load(agent, digest, bytes).await?, capabilities))
}

/// Policy mode: admits the job on this host, with this host's own policy and labels, trusting
/// nothing the scheduler decided. Its effective capabilities are then what it asks for, all of
/// which the grant and one of this node's classes allow. `None` in keys-only mode.
fn admit(
    agent: &Agent,
    digest: &ModuleDigest,
    capabilities: &vauban_core::Capabilities,
    grant: &[u8],
) -> anyhow::Result<Option<VerifiedGrant>> {
    let Some(policy) = agent.runtime.policy() else {
        return Ok(None);
    };
    let policy = policy.current();
    if grant.is_empty() {
        bail!("the job has no grant, and this host holds a trust policy: every job needs one");
    }
    let grant = SignedGrant::from_json(grant)?.verify(&policy, SystemTime::now())?;
    check_grant_module(&grant.grant, digest, grant.grant.module.kind)?;
    admit_on_node(capabilities, &grant, &policy, &agent.config.labels)?;
    Ok(Some(grant))
}

/// Checks, before anything compiles them, that the module's bytes are the ones the grant is
/// for (digest and kind).
fn covers(grant: Option<&VerifiedGrant>, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(grant) = grant {
        grant.grant.covers(bytes)?;
    }
    Ok(())
}

/// Loads a module with the runtime, which verifies its signature against this host's trust
/// store; the first loads of a module run one at a time (see `FirstLoads`).
async fn load(
    agent: &Arc<Agent>,
    digest: ModuleDigest,
    bytes: Arc<[u8]>,
) -> anyhow::Result<LoadedModule> {
    let gate = agent.first_loads.gate(digest);
    let _turn = match &gate {
        Some(gate) => Some(gate.lock().await),
        None => None,
    };
    let module = blocking(agent, move |agent| agent.runtime.load(&bytes)).await??;
    if gate.is_some() {
        agent.first_loads.loaded(digest);
    }
    // Usually there already, from the store; not when storing it failed.
    agent.cached.insert(digest);
    Ok(module)
}

/// Fetches a module from the scheduler, refuses it unless its digest is the one assigned, and
/// keeps it for next time.
async fn fetch_and_store(
    agent: &Arc<Agent>,
    client: Client,
    wire_digest: &str,
    digest: ModuleDigest,
) -> anyhow::Result<Arc<[u8]>> {
    let bytes = tokio::time::timeout(
        FETCH_TIMEOUT,
        fetch(client, wire_digest, agent.config.max_module_bytes),
    )
    .await
    .map_err(|_| anyhow!("fetching module {digest} took longer than {FETCH_TIMEOUT:?}"))??;
    let bytes = Arc::<[u8]>::from(bytes);
    let (bytes, stored) = blocking(agent, move |agent| {
        let stored = agent.store.put(&digest, &bytes);
        (bytes, stored)
    })
    .await?;
    match stored {
        Ok(()) => {
            agent.cached.insert(digest);
            tracing::debug!(%digest, "module fetched and stored");
        }
        Err(mismatch @ StoreError::DigestMismatch { .. }) => return Err(mismatch.into()),
        // The bytes are right; only keeping them failed. The job runs, the next one fetches.
        Err(error @ StoreError::Io(_)) => tracing::warn!(%error, "module fetched, not stored"),
    }
    Ok(bytes)
}

/// The bytes of a module, streamed from the scheduler, up to `max_bytes`.
async fn fetch(mut client: Client, digest: &str, max_bytes: u64) -> anyhow::Result<Vec<u8>> {
    let request = v1::FetchModuleRequest {
        digest: digest.to_owned(),
    };
    let mut chunks = client
        .fetch_module(request)
        .await
        .map_err(|status| anyhow!("cannot fetch module {digest}: {}", status.message()))?
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(v1::ModuleChunk { chunk }) = chunks
        .message()
        .await
        .map_err(|status| anyhow!("cannot fetch module {digest}: {}", status.message()))?
    {
        if (bytes.len() + chunk.len()) as u64 > max_bytes {
            bail!("module {digest} is larger than this host accepts ({max_bytes} bytes)");
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// Runs blocking work (file access, hashing, compiling) off the async threads, in the job's
/// span.
async fn blocking<T: Send + 'static>(
    agent: &Arc<Agent>,
    work: impl FnOnce(&Agent) -> T + Send + 'static,
) -> anyhow::Result<T> {
    let agent = Arc::clone(agent);
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(|| work(&agent)))
        .await
        .context("the host failed while preparing the job")
}

/// Queues output events as `JobOutput` messages, merging neighbours of the same stream.
fn send_output(
    agent: &Agent,
    job_id: &str,
    attempt: u32,
    events: impl IntoIterator<Item = OutputEvent>,
) {
    for (stream, data) in coalesce(events, MAX_CHUNK_BYTES) {
        let stream = match stream {
            OutputStream::Stdout => Stream::Stdout,
            OutputStream::Stderr => Stream::Stderr,
        };
        agent.send(v1::HostMessage {
            message: Some(Message::Output(v1::JobOutput {
                job_id: job_id.to_owned(),
                attempt,
                chunk: Some(v1::OutputChunk {
                    stream: stream.into(),
                    data,
                }),
            })),
        });
    }
}

/// Merges consecutive events of the same stream into chunks of at most `max_chunk` bytes
/// (an event larger than that is split), keeping the order of bytes within each stream.
fn coalesce(
    events: impl IntoIterator<Item = OutputEvent>,
    max_chunk: usize,
) -> Vec<(OutputStream, Vec<u8>)> {
    let mut chunks: Vec<(OutputStream, Vec<u8>)> = Vec::new();
    for OutputEvent { stream, data } in events {
        let mut data = &data[..];
        if let Some((last, chunk)) = chunks.last_mut()
            && *last == stream
        {
            let take = max_chunk.saturating_sub(chunk.len()).min(data.len());
            chunk.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        chunks.extend(data.chunks(max_chunk).map(|piece| (stream, piece.to_vec())));
    }
    chunks
}

/// The end message of a job.
fn finished(job_id: String, attempt: u32, end: End) -> v1::HostMessage {
    v1::HostMessage {
        message: Some(Message::Finished(v1::JobFinished {
            job_id,
            attempt,
            end: Some(end),
            receipt: Vec::new(),
        })),
    }
}

/// The end message of a job this host will not run, saying why.
pub(super) fn refused(job_id: String, attempt: u32, reason: impl Into<String>) -> v1::HostMessage {
    finished(job_id, attempt, End::Refused(reason.into()))
}

/// The result of a job cancelled while its module was being fetched or loaded.
fn cancelled_early() -> RunResult {
    RunResult {
        outcome: Outcome::Cancelled,
        stdout: CapturedOutput::default(),
        stderr: CapturedOutput::default(),
        run_time: Duration::ZERO,
        fuel_consumed: None,
        peak_memory_bytes: 0,
        denials: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(stream: OutputStream, data: &str) -> OutputEvent {
        OutputEvent {
            stream,
            data: bytes::Bytes::copy_from_slice(data.as_bytes()),
        }
    }

    #[test]
    fn coalesces_neighbours_of_a_stream_up_to_the_chunk_size() {
        use OutputStream::{Stderr, Stdout};
        let events = [
            event(Stdout, "ab"),
            event(Stdout, "c"),
            event(Stderr, "x"),
            event(Stdout, "defghij"),
            event(Stdout, ""),
        ];
        let got = coalesce(events, 4);
        let want = [
            (Stdout, "abc"),
            (Stderr, "x"),
            (Stdout, "defg"),
            (Stdout, "hij"),
        ]
        .map(|(s, d)| (s, d.as_bytes().to_vec()));
        assert_eq!(got, want);
    }

    #[test]
    fn refusals_and_early_cancels_are_final_messages() {
        let Some(Message::Finished(f)) = refused("j".into(), 2, "no").message else {
            panic!("a JobFinished")
        };
        assert_eq!((f.job_id.as_str(), f.attempt), ("j", 2));
        assert_eq!(f.end, Some(End::Refused("no".into())));

        let result = v1::RunResult::from(cancelled_early());
        assert_eq!(
            result.outcome.and_then(|o| o.kind),
            Some(v1::outcome::Kind::Cancelled(true))
        );
    }
}
