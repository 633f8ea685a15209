//! The scheduler's side of the audit log: every decision is written into the state store in the
//! same transaction as the change it records, and one writer task moves it from there into the
//! log (`<data>/audit`, a `vauban_audit::Log`) and signs a checkpoint after each batch, so that
//! `vauban audit verify` can check the log offline with the audit key's public half.
//!
//! # The outbox, and why no entry is lost or written twice
//!
//! The state task stages an entry with the change it describes (a job accepted, placed, finished
//! or cancelled, an attempt started, a receipt checked, a module admitted) and commits it in the
//! same transaction, under `audit/<index>` ([`crate::store::OutboxWrite`]), where `<index>` is
//! the position the entry will have in the log. Indices are consecutive from the log's length:
//! the state task is their only giver, starts from what [`start`] found, and after a failed
//! commit reads back from the outbox what was committed. Nothing else is needed for the reply
//! path: the outbox rides the state's group commit, and an audit fsync never delays a reply.
//!
//! After each commit the state task wakes the writer with the end of the outbox. The writer
//! waits [`APPEND_DELAY`] for later commits to join, reads the outbox, appends the entries the
//! log does not hold yet, in index order and with one fsync, signs a checkpoint, and then
//! publishes the log's new length. The state task's next commit deletes the outbox entries
//! below it (a `DeleteRange` in the same transaction), so the writer never writes the store
//! itself (its read may first apply commits the store has only logged, as any read does).
//!
//! Idempotency comes from the index itself: the log's length is its own durable record of what
//! was appended, written by the same fsync as the entries. On start, and on every wake, an
//! outbox entry whose index is below the log's length was appended before (a crash came between
//! the append and the deletion): it is not appended again, and its bytes must equal the log's
//! entry at that index, or the log is not the one this outbox feeds and the scheduler refuses to
//! start. An outbox entry at exactly the log's length is appended. One past it would mean
//! entries missing from both, and is refused too. A crash in the middle of an append leaves a
//! partial last line: since that entry is still in the outbox, [`recover`] cuts the partial line
//! and appends the entry again.
//!
//! So a crash anywhere loses no committed entry and duplicates none. What a crash can leave is
//! entries in the log and not yet checkpointed, which the next start checkpoints, and appended
//! entries not yet deleted from the outbox, which the next commit or start deletes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{error, info, info_span, warn};
use vauban_audit::{
    AuditError, AuditSigner, Decision, Entry, FileLog, KeyUse, Log, ReceiptEntry, RejectedReceipt,
    SignedReceipt, Subject,
};
use vauban_core::ModuleDigest;
use vauban_proto::convert::RunResult;

use crate::job::RunEnd;
use crate::module::ModuleRecord;
use crate::state::{SchedulerError, SchedulerHandle};
use crate::store::{OutboxWrite, Store};

/// Where the audit log goes and what signs its checkpoints.
#[derive(Clone, Debug)]
pub struct AuditConfig {
    /// The log's directory (`entries.jsonl`, `checkpoints/`); created if missing.
    pub dir: PathBuf,
    /// The checkpoints' origin line, e.g. `vauban.audit/scheduler`.
    pub origin: String,
    /// The audit key.
    pub key: vauban_audit::SecretKey,
}

/// The state task's end of the audit log: which index the next entry gets, what the writer has
/// appended, and how to wake it.
#[derive(Debug)]
pub(crate) struct AuditSink {
    /// One past the index of the last entry known committed.
    committed: u64,
    /// Whether `committed` is also where the outbox ends: false after a failed commit, until
    /// the next commit reads the end back.
    certain: bool,
    /// Outbox entries below this are deleted.
    deleted: u64,
    /// The log's length, as the writer last published it (after its append and checkpoint).
    appended: Arc<AtomicU64>,
    /// The last end sent to the writer.
    woken: u64,
    /// Tells the writer where the committed outbox ends.
    wake: mpsc::UnboundedSender<u64>,
}

impl AuditSink {
    /// A sink for a log of `len` entries whose outbox is empty, and the writer's end of it.
    fn new(len: u64) -> (Self, WriterLink) {
        let appended = Arc::new(AtomicU64::new(len));
        let (wake, woken) = mpsc::unbounded_channel();
        let sink = Self {
            committed: len,
            certain: true,
            deleted: len,
            appended: Arc::clone(&appended),
            woken: len,
            wake,
        };
        (sink, WriterLink { appended, woken })
    }

    /// A sink whose writer never runs: entries stay in the outbox, as after a crash between a
    /// commit and its append.
    #[cfg(test)]
    pub(crate) fn without_writer(len: u64) -> Self {
        Self::new(len).0
    }

    /// What the next commit writes to the outbox: these entries, and the deletion of what the
    /// writer appended.
    pub(crate) fn outbox(&self, entries: &[Entry]) -> OutboxWrite {
        let appended = self.appended.load(Ordering::Acquire).min(self.committed);
        OutboxWrite {
            first: self.certain.then_some(self.committed),
            floor: self.committed,
            entries: entries
                .iter()
                .filter_map(|entry| match entry.to_line() {
                    Ok(line) => Some(line),
                    // Cannot happen for these types; said loudly if it ever does.
                    Err(e) => {
                        error!(error = %e, kind = entry.kind(), "cannot encode an audit entry");
                        None
                    }
                })
                .collect(),
            appended: self.deleted..appended.max(self.deleted),
        }
    }

    /// The commit of `outbox` succeeded and the outbox now ends at `end`: wake the writer.
    pub(crate) fn committed(&mut self, end: u64, outbox: &OutboxWrite) {
        self.committed = end;
        self.certain = true;
        self.deleted = self.deleted.max(outbox.appended.end);
        if end > self.woken {
            self.woken = end;
            // A writer that stopped said so when it stopped; the entries wait in the outbox.
            let _ = self.wake.send(end);
        }
    }

    /// The commit failed: part of it may have committed on a backend that splits transactions,
    /// so the next commit reads the outbox's end back.
    pub(crate) fn failed(&mut self) {
        self.certain = false;
    }
}

/// The writer's end of an [`AuditSink`].
#[derive(Debug)]
struct WriterLink {
    appended: Arc<AtomicU64>,
    woken: mpsc::UnboundedReceiver<u64>,
}

/// Opens the log, appends what the outbox holds that the log does not (see the module
/// documentation), and starts the writer. The writer ends once the sink is dropped.
///
/// # Errors
/// The log cannot be opened (its directory, or an existing log that does not verify against its
/// own checkpoints), the origin is not a valid checkpoint origin, the store cannot be read, or
/// the log and the outbox do not fit together.
pub(crate) async fn start(
    config: AuditConfig,
    store: Store,
) -> anyhow::Result<(AuditSink, JoinHandle<()>)> {
    let AuditConfig { dir, origin, key } = config;
    let signer = AuditSigner::new(&origin, key)?;
    let (log, signer, store) = tokio::task::spawn_blocking(move || {
        let log = recover(&dir, &store, &signer)?;
        info!(dir = %dir.display(), entries = log.len(), origin = %signer.origin(), "audit log open");
        anyhow::Ok((log, signer, store))
    })
    .await
    .context("opening the audit log panicked")??;
    let (sink, link) = AuditSink::new(log.len());
    let task = tokio::task::spawn_blocking(move || {
        info_span!("audit_writer").in_scope(|| write(log, &signer, &store, link));
    });
    Ok((sink, task))
}

/// Opens the log in `dir` for appending, brings it level with the outbox, checkpoints what is
/// not signed yet, and empties the outbox.
///
/// # Errors
/// As [`start`].
pub(crate) fn recover(dir: &Path, store: &Store, signer: &AuditSigner) -> anyhow::Result<Log> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the audit log directory {}", dir.display()))?;
    let pending = store.outbox()?;
    let mut log = match Log::open(dir) {
        // The append that was cut is still in the outbox: cut its partial line, append it again.
        Err(AuditError::TornTail { entries }) if pending.iter().any(|(i, _)| *i == entries) => {
            let cut = FileLog::repair_torn_tail(dir)?;
            warn!(
                entries,
                bytes = cut,
                "the audit log ends in an interrupted append; cut it, the entry is appended again"
            );
            Log::open(dir)?
        }
        opened => opened?,
    };
    let appended = append_pending(&mut log, &pending)?;
    if log.report().unsigned > 0 {
        log.checkpoint(signer)?;
    }
    if !pending.is_empty() {
        store.delete_outbox(log.len())?;
    }
    if appended > 0 {
        info!(
            appended,
            "appended the audit entries committed before the last stop"
        );
    }
    Ok(log)
}

/// Appends the outbox entries the log does not hold, in index order, with one fsync; checks
/// that those it holds are the very same bytes. Returns how many it appended.
fn append_pending(log: &mut Log, pending: &[(u64, Vec<u8>)]) -> anyhow::Result<usize> {
    let len = log.len();
    let mut lines: Vec<&[u8]> = Vec::new();
    for (index, line) in pending {
        if *index < len {
            let logged = log.entry_bytes(*index)?;
            anyhow::ensure!(
                logged == line.as_slice(),
                "audit outbox entry {index} differs from entry {index} of the audit log: the log \
                 is not the one this scheduler's state store feeds"
            );
            continue;
        }
        let expected = len + lines.len() as u64;
        anyhow::ensure!(
            *index == expected,
            "the audit outbox holds entry {index} but the audit log ends at entry {expected}: \
             entries {expected}..{index} are in neither (was the log replaced or truncated?)"
        );
        lines.push(line);
    }
    if !lines.is_empty() {
        log.append_lines(&lines)?;
    }
    Ok(lines.len())
}

/// How long the writer waits, once woken, for more commits to append with the first.
const APPEND_DELAY: Duration = Duration::from_millis(10);

/// Appends what the outbox holds each time it is woken, and signs a checkpoint after each
/// batch. Stops at the first failure to append: what is committed waits in the outbox, and the
/// next start appends it.
fn write(mut log: Log, signer: &AuditSigner, store: &Store, mut link: WriterLink) {
    let mut ends = Vec::new();
    while link.woken.blocking_recv_many(&mut ends, 256) > 0 {
        // Commits that follow soon join this append: one fsync and one checkpoint for many, and
        // fewer syncs competing with the state store's on the same disk. The entries are
        // durable in the outbox meanwhile.
        std::thread::sleep(APPEND_DELAY);
        while let Ok(end) = link.woken.try_recv() {
            ends.push(end);
        }
        let Some(end) = ends.drain(..).max() else {
            continue;
        };
        let pending = match store.outbox() {
            Ok(pending) => pending,
            Err(e) => {
                error!(error = %e, "cannot read the audit outbox; trying again at the next commit");
                continue;
            }
        };
        let committed: Vec<(u64, Vec<u8>)> =
            pending.into_iter().filter(|(i, _)| *i < end).collect();
        if let Err(e) = append_pending(&mut log, &committed) {
            error!(
                error = format!("{e:#}"),
                "cannot append to the audit log; entries wait in the outbox until the scheduler \
                 restarts"
            );
            return;
        }
        if let Err(e) = log.checkpoint(signer) {
            error!(error = %e, "cannot sign an audit checkpoint");
        }
        link.appended.store(log.len(), Ordering::Release);
    }
}

/// A receipt as it came with a result: parsed, or why it could not be.
pub(crate) type ReceiptClaim = Result<Box<SignedReceipt>, String>;

/// What a receipt must match: the result it came with.
#[derive(Debug)]
pub(crate) struct Accompanied<'a> {
    pub(crate) job: &'a str,
    pub(crate) attempt: u32,
    pub(crate) node: &'a str,
    /// The job's module, `sha256:<hex>`.
    pub(crate) module: String,
    pub(crate) end: &'a RunEnd,
    /// The receipt key the node registered (hex), if any.
    pub(crate) registered_key: Option<&'a str>,
}

/// The entry that records a receipt: [`Entry::Receipt`] when it is well signed by the key its
/// node registered and describes the very result it came with, else [`Entry::RejectedReceipt`]
/// saying why (and logged as an error).
pub(crate) fn receipt_entry(at_ms: u64, claim: ReceiptClaim, with: &Accompanied<'_>) -> Entry {
    let (reason, receipt) = match claim {
        Err(why) => (why, None),
        Ok(signed) => match check_signed(&signed, with) {
            Ok(()) => {
                return Entry::Receipt(ReceiptEntry {
                    at_ms,
                    receipt: *signed,
                });
            }
            Err(reason) => (reason, Some(*signed)),
        },
    };
    error!(
        job = with.job,
        attempt = with.attempt,
        node = with.node,
        %reason,
        "refusing an execution receipt"
    );
    Entry::RejectedReceipt(RejectedReceipt {
        at_ms,
        job: with.job.to_owned(),
        attempt: with.attempt,
        node: with.node.to_owned(),
        reason,
        receipt,
    })
}

/// Why a receipt does not stand for the result it came with, if it does not.
fn check_signed(signed: &SignedReceipt, with: &Accompanied<'_>) -> Result<(), String> {
    let Some(registered) = with.registered_key else {
        return Err(format!(
            "node {} registered no receipt key, so no receipt of its can be checked",
            with.node
        ));
    };
    if signed.key != registered {
        return Err(format!(
            "signed by key {}, not by the receipt key node {} registered ({registered})",
            signed.key, with.node
        ));
    }
    signed.verify_signature().map_err(|e| e.to_string())?;
    let receipt = &signed.receipt;
    let mismatch = |what: &str, found: &dyn std::fmt::Debug, expected: &dyn std::fmt::Debug| {
        Err(format!(
            "its {what} is {found:?} but the result it came with is for {expected:?}"
        ))
    };
    if receipt.job != with.job {
        return mismatch("job", &receipt.job, &with.job);
    }
    if receipt.attempt != with.attempt {
        return mismatch("attempt", &receipt.attempt, &with.attempt);
    }
    if receipt.node != with.node {
        return mismatch("node", &receipt.node, &with.node);
    }
    if receipt.module != with.module {
        return mismatch("module", &receipt.module, &with.module);
    }
    let RunEnd::Ran(result) = with.end else {
        return Err("it came with a refusal: the host says nothing ran".to_owned());
    };
    let RunResult {
        outcome,
        fuel_consumed,
        peak_memory_bytes,
        ..
    } = result;
    if receipt.outcome != outcome.to_string() {
        return mismatch("outcome", &receipt.outcome, &outcome.to_string());
    }
    if receipt.fuel != fuel_consumed.unwrap_or(0) {
        return mismatch("fuel", &receipt.fuel, &fuel_consumed.unwrap_or(0));
    }
    if receipt.peak_memory_bytes != *peak_memory_bytes {
        return mismatch("peak memory", &receipt.peak_memory_bytes, peak_memory_bytes);
    }
    Ok(())
}

/// Records the decisions on module uploads, through the state task (whose commit makes them
/// durable before the upload is answered). Off when no audit log is kept.
#[derive(Clone, Debug)]
pub(crate) struct ModuleAudit {
    scheduler: Option<SchedulerHandle>,
}

impl ModuleAudit {
    /// Records nothing.
    pub(crate) fn off() -> Self {
        Self { scheduler: None }
    }

    /// Records through this state task.
    pub(crate) fn to(scheduler: SchedulerHandle) -> Self {
        Self {
            scheduler: Some(scheduler),
        }
    }

    /// The digest of an uploaded module, so that a refusal can name it; computed off the async
    /// threads, and only when decisions are recorded. Hands the bytes back.
    pub(crate) async fn digest(&self, bytes: Vec<u8>) -> (Vec<u8>, Option<ModuleDigest>) {
        if self.scheduler.is_none() {
            return (bytes, None);
        }
        tokio::task::spawn_blocking(move || {
            let digest = ModuleDigest::of(&bytes);
            (bytes, Some(digest))
        })
        .await
        .unwrap_or_else(|_| (Vec::new(), None))
    }

    /// Records a refused upload: of the module `digest`, or (refused before it was known) of
    /// what is known, `name` and the bytes received. A failure to record is logged: the upload
    /// is refused either way.
    pub(crate) async fn refused(
        &self,
        namespace: &str,
        name: &str,
        digest: Option<ModuleDigest>,
        received_bytes: u64,
        reason: &(dyn std::fmt::Display + Sync),
    ) {
        let module = match digest {
            Some(digest) => digest.to_string(),
            None => format!("upload {name:?} ({received_bytes} bytes received)"),
        };
        let entry = Entry::Admission(vauban_audit::Admission {
            at_ms: crate::now_ms(),
            decision: Decision::Refused,
            subject: Subject::Module,
            job: String::new(),
            module,
            namespace: namespace.to_owned(),
            reason: reason.to_string(),
        });
        if let Err(e) = self.record(vec![entry]).await {
            error!(error = %e, "cannot record a refused module upload in the audit log");
        }
    }

    /// Records an accepted upload and the use of each publisher key that signed it.
    ///
    /// # Errors
    /// The entries could not be committed: the upload must not be acknowledged.
    pub(crate) async fn accepted(
        &self,
        namespace: &str,
        record: &ModuleRecord,
    ) -> Result<(), SchedulerError> {
        let at_ms = crate::now_ms();
        let module = record.digest.to_string();
        let signers: Vec<String> = record.signers.iter().map(ToString::to_string).collect();
        let mut entries = vec![Entry::Admission(vauban_audit::Admission {
            at_ms,
            decision: Decision::Accepted,
            subject: Subject::Module,
            job: String::new(),
            module: module.clone(),
            namespace: namespace.to_owned(),
            reason: format!("signed by {}", signers.join(", ")),
        })];
        entries.extend(signers.into_iter().map(|key| {
            Entry::KeyUse(KeyUse {
                at_ms,
                key,
                role: "publisher".to_owned(),
                purpose: format!("signed module {module}"),
            })
        }));
        self.record(entries).await
    }

    async fn record(&self, entries: Vec<Entry>) -> Result<(), SchedulerError> {
        match &self.scheduler {
            Some(scheduler) => scheduler.record_audit(entries).await,
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use vauban_audit::{Receipt, SecretKey};
    use vauban_core::Outcome;
    use vauban_core::outcome::CapturedOutput;

    use super::*;

    fn result(outcome: Outcome) -> RunEnd {
        RunEnd::Ran(RunResult {
            outcome,
            stdout: CapturedOutput::default(),
            stderr: CapturedOutput::default(),
            run_time: std::time::Duration::from_millis(3),
            fuel_consumed: Some(100),
            peak_memory_bytes: 65_536,
            denials: Vec::new(),
        })
    }

    fn receipt(key: &SecretKey) -> SignedReceipt {
        Receipt {
            job: "j1".into(),
            attempt: 2,
            module: ModuleDigest::of(b"m").to_string(),
            capabilities: vec![],
            node: "n1".into(),
            started_ms: 10,
            ended_ms: 13,
            outcome: "exited with code 0".into(),
            fuel: 100,
            peak_memory_bytes: 65_536,
        }
        .sign(key)
        .expect("sign")
    }

    fn start_entry(attempt: u32) -> Entry {
        Entry::Start(vauban_audit::Start {
            at_ms: 1,
            job: "j".into(),
            attempt,
            node: "n1".into(),
        })
    }

    /// The sink gives consecutive indices, reads the end back after a failed commit (part of
    /// which may have committed), deletes what the writer appended, and wakes the writer.
    #[test]
    fn the_sink_numbers_entries_without_gaps_and_deletes_what_was_appended() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("state.redb")).expect("store");
        let (mut sink, mut link) = AuditSink::new(4);
        let write = sink.outbox(&[start_entry(1), start_entry(2)]);
        assert_eq!((write.first, write.appended.clone()), (Some(4), 4..4));
        let end = store.commit(&[], &write).expect("commit");
        assert_eq!(end, 6);
        sink.committed(end, &write);
        assert_eq!(link.woken.try_recv(), Ok(6));

        // A commit fails, but (on a backend that splits it) its first entry made it.
        let lost = sink.outbox(&[start_entry(3), start_entry(4)]);
        let partial = OutboxWrite {
            entries: lost.entries[..1].to_vec(),
            ..lost
        };
        assert_eq!(store.commit(&[], &partial).expect("commit"), 7);
        sink.failed();
        let retry = sink.outbox(&[start_entry(5)]);
        assert_eq!((retry.first, retry.floor), (None, 6));
        let end = store.commit(&[], &retry).expect("commit");
        assert_eq!(end, 8, "after what committed, no gap and no overwrite");
        sink.committed(end, &retry);
        assert_eq!(link.woken.try_recv(), Ok(8));

        // The writer appended up to 7: the next commit deletes 4..7, and only that.
        link.appended.store(7, Ordering::Release);
        let next = sink.outbox(&[]);
        assert_eq!((next.first, next.appended.clone()), (Some(8), 4..7));
        assert_eq!(store.commit(&[], &next).expect("commit"), 8);
        sink.committed(8, &next);
        let left: Vec<u64> = store
            .outbox()
            .expect("outbox")
            .into_iter()
            .map(|(i, _)| i)
            .collect();
        assert_eq!(left, [7]);
        assert_eq!(sink.outbox(&[]).appended, 7..7);
        assert!(sink.outbox(&[]).is_empty());
        assert!(link.woken.try_recv().is_err(), "no new end, no wake");
    }

    /// Each check of a receipt, as a table: what is changed, and what the refusal says.
    #[test]
    fn receipts_are_checked_against_the_node_key_and_the_result() {
        let host = SecretKey::from_seed(&[1; 32]);
        let other = SecretKey::from_seed(&[2; 32]);
        let registered = host.public_key().to_hex();
        let ran = result(Outcome::Exited { code: 0 });
        assert_eq!(
            Outcome::Exited { code: 0 }.to_string(),
            "exited with code 0",
            "the outcome string the host signs"
        );
        let with = |end| Accompanied {
            job: "j1",
            attempt: 2,
            node: "n1",
            module: ModuleDigest::of(b"m").to_string(),
            end,
            registered_key: Some(&registered),
        };
        let good = receipt(&host);
        let Entry::Receipt(logged) = receipt_entry(5, Ok(Box::new(good.clone())), &with(&ran))
        else {
            panic!("a valid receipt is logged as one");
        };
        assert_eq!((logged.at_ms, logged.receipt), (5, good.clone()));

        let resigned = |change: fn(&mut Receipt)| {
            let mut receipt = good.receipt.clone();
            change(&mut receipt);
            receipt.sign(&host).expect("sign")
        };
        let mut forged = good.clone();
        forged.receipt.fuel = 1;
        let cancelled = result(Outcome::Cancelled);
        let nothing_ran = RunEnd::Refused("no".into());
        let cases: Vec<(ReceiptClaim, &RunEnd, Option<&str>, &str)> = vec![
            (
                Err("not a signed receipt: eof".into()),
                &ran,
                Some(&registered),
                "not a signed receipt",
            ),
            (
                Ok(Box::new(good.clone())),
                &ran,
                None,
                "registered no receipt key",
            ),
            (
                Ok(Box::new(receipt(&other))),
                &ran,
                Some(&registered),
                "not by the receipt key node n1 registered",
            ),
            (
                Ok(Box::new(forged)),
                &ran,
                Some(&registered),
                "signature does not match",
            ),
            (
                Ok(Box::new(resigned(|r| r.job = "j9".into()))),
                &ran,
                Some(&registered),
                "its job is \"j9\"",
            ),
            (
                Ok(Box::new(resigned(|r| r.attempt = 1))),
                &ran,
                Some(&registered),
                "its attempt is 1",
            ),
            (
                Ok(Box::new(resigned(|r| r.node = "n2".into()))),
                &ran,
                Some(&registered),
                "its node is \"n2\"",
            ),
            (
                Ok(Box::new(resigned(|r| r.module = "sha256:00".into()))),
                &ran,
                Some(&registered),
                "its module is",
            ),
            (
                Ok(Box::new(good.clone())),
                &cancelled,
                Some(&registered),
                "its outcome is \"exited with code 0\"",
            ),
            (
                Ok(Box::new(resigned(|r| r.peak_memory_bytes = 1))),
                &ran,
                Some(&registered),
                "its peak memory is 1",
            ),
            (
                Ok(Box::new(resigned(|r| r.fuel = 7))),
                &ran,
                Some(&registered),
                "its fuel is 7",
            ),
            (
                Ok(Box::new(good.clone())),
                &nothing_ran,
                Some(&registered),
                "came with a refusal",
            ),
        ];
        for (claim, end, key, expected) in cases {
            let parsed = claim.is_ok();
            let mut expect = with(end);
            expect.registered_key = key;
            let Entry::RejectedReceipt(rejected) = receipt_entry(5, claim, &expect) else {
                panic!("{expected}: refused");
            };
            assert!(
                rejected.reason.contains(expected),
                "{:?} should say {expected:?}",
                rejected.reason
            );
            assert_eq!(rejected.receipt.is_some(), parsed, "{expected}");
            assert_eq!(
                (
                    rejected.job.as_str(),
                    rejected.attempt,
                    rejected.node.as_str()
                ),
                ("j1", 2, "n1")
            );
        }
    }
}
