//! The durable state: jobs, their stdin, nodes, namespaces, module records and module bytes, as
//! values under text keys of a key-value backend ([`kv::Kv`]): redb, embedded, by default
//! ([`redb_kv`]); etcd, for several schedulers, in a later issue.
//!
//! Every method is a blocking call that returns once what it wrote is durable. Async callers go
//! through [`Store::call`], which runs the call on tokio's blocking pool: the state task still
//! waits for each commit before it acknowledges anything (that is the point), but a slow disk
//! never stalls a runtime worker serving other connections for long. The one exception is the
//! state task's own commit when the backend can make it quickly ([`Store::commit_batch`]): one
//! synced append of a few blocks to the write-ahead log, on a disk whose last one took under a
//! millisecond, while no other commit holds the log. It is written where the state task runs,
//! because the two thread switches of the blocking pool cost a job more than the write keeps
//! the worker (see ARCHITECTURE.md, "Where a job's latency goes").
//!
//! Since the synced write, not the writing, is what a commit costs, the state task writes all
//! the job changes of a batch of commands with one [`Store::commit_batch`] call (group commit, see
//! [`crate::state`]): a job accepted and placed in the same batch is written once, already
//! running, with its stdin, and with the audit entries recording the batch's decisions
//! ([`outbox`]).
//!
//! # Key layout
//!
//! | key | value | written |
//! |---|---|---|
//! | `jobs/<job id>` | JSON [`JobRecord`], without its stdin | at acceptance and at every transition |
//! | `stdin/<job id>` | the job's stdin | once, with (or just before) the job's first record |
//! | `nodes/<node id>` | JSON node record ([`RecordKind::Node`]) | when what is persisted of it changes |
//! | `namespaces/<name>` | JSON namespace record ([`RecordKind::Namespace`]) | when its quota is set |
//! | `trust/policy` | JSON: the trust policy's TOML and its signatures ([`RecordKind::Trust`]) | when a newer policy is installed |
//! | `modules/<digest>` | JSON [`ModuleRecord`] | at the first upload, and the first into each further namespace |
//! | `blobs/<digest>` | the module's bytes, as uploaded | once, with (or just before) its first record |
//! | `audit/<index>` | an audit entry's canonical line, waiting to be appended to the log as entry `<index>` ([`outbox`]) | in the commit of the change it records; deleted once appended |
//!
//! Ids and names have `%` and `/` escaped as `%25` and `%2F`, so that in a key `/` only ever
//! ends the kind or starts a part.
//!
//! # Values longer than a part
//!
//! No value stored is longer than [`PART_BYTES`], 1 MiB, which leaves room in etcd's default
//! request limit of 1.5 MiB. A longer value (a module, up to 16 MiB of stdin, a job record
//! holding a large result) is cut in parts: the first under its key, the next ones under
//! `<key>/00000001`, `<key>/00000002`, …; every part but the last is exactly [`PART_BYTES`]
//! long, so a reader looks for more parts only after a full one. A value's other parts are
//! written before or with its first, and every rewrite of a record deletes the parts past its
//! own: a value whose first part is there is whole, and a shorter record never ends in a longer
//! one's tail.
//!
//! # Transactions and the backend's limits
//!
//! A record is always written whole in one transaction, and so is a new job's record with its
//! stdin when they fit one together. [`Store::commit`] commits a batch in one transaction
//! when the backend's limits ([`kv::Limits`]) allow, which on redb is always; on a backend with
//! limits (etcd's `--max-txn-ops` and `--max-request-bytes`) it commits as few transactions as
//! fit, each holding whole job writes. That is correct because each job's write is independent
//! of the others' and the state task answers nobody before the call returns; but if one of these
//! commits fails, the ones before it stay committed although the call returns an error. The
//! batch's audit entries go with or after its last job write, in index order, so that what such
//! a failure leaves of them is a run of indices the state task reads back ([`outbox`]).
//!
//! Bytes that nothing refers to yet — a new module's bytes before its record, a new job's stdin
//! before its record — go first, in transactions of their own, when they do not fit in the
//! record's (never on redb). A crash in between leaves bytes nothing refers to, which are never
//! read (and rewritten as they were by the next upload of the same module); it never leaves a
//! record without its bytes.
//!
//! One scheduler writes the store at a time, and within it one task writes jobs, nodes and
//! namespaces; only module records have concurrent writers (uploads), so their changes are
//! guarded on the value read ([`Store::insert_module`]). Guards are also where the etcd backend's
//! leader election can fence a deposed leader: a guard on the leader key in every transaction.

mod kv;
mod outbox;
mod redb_kv;
mod wal;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use vauban_core::ModuleDigest;

pub(crate) use self::outbox::OutboxWrite;

use self::kv::{Guard, Kv, KvError, Limits, Op, Txn};
use self::redb_kv::RedbKv;
use crate::job::JobRecord;
use crate::module::ModuleRecord;

/// The longest value stored under one key; see the module documentation.
const PART_BYTES: usize = 1 << 20;
/// How many times [`Store::insert_module`] re-reads a record that others keep changing.
const INSERT_ATTEMPTS: usize = 64;

const JOBS: &str = "jobs/";
const STDIN: &str = "stdin/";
const MODULES: &str = "modules/";
const BLOBS: &str = "blobs/";

/// Records the store keeps for other modules without knowing their types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RecordKind {
    /// Under `nodes/<node id>`.
    Node,
    /// Under `namespaces/<name>`.
    Namespace,
    /// Under `trust/<name>`: the trust policy in force (`trust/policy`).
    Trust,
}

impl RecordKind {
    fn prefix(self) -> &'static str {
        match self {
            Self::Node => "nodes/",
            Self::Namespace => "namespaces/",
            Self::Trust => "trust/",
        }
    }
}

/// The state store could not be read or written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    /// The backend failed (I/O, corruption, a full disk, a lost connection).
    #[error("state store: {0}")]
    Database(#[from] KvError),
    /// A stored value is not what this version of the scheduler wrote.
    #[error("state store: cannot decode {key}: {reason}")]
    Corrupt { key: String, reason: String },
    /// A value could not be encoded.
    #[error("state store: cannot encode {key}: {source}")]
    Encode {
        key: String,
        source: serde_json::Error,
    },
    /// A write that must be atomic is larger than one transaction of the backend may be (never
    /// on redb; on etcd, raise `--max-request-bytes`).
    #[error(
        "state store: writing {key} takes {ops} operations and {bytes} bytes, more than one \
         transaction holds"
    )]
    TooLarge {
        key: String,
        ops: usize,
        bytes: usize,
    },
    /// A record changed under every attempt to change it.
    #[error("state store: {key} kept changing, {INSERT_ATTEMPTS} attempts to update it failed")]
    Contended { key: String },
    /// The blocking task running the call panicked or was cancelled.
    #[error("state store: blocking task failed: {0}")]
    Task(String),
}

/// One job's record to write; `new` jobs get their stdin written too (it is written only once).
#[derive(Clone, Debug)]
pub(crate) struct JobWrite {
    pub(crate) record: JobRecord,
    pub(crate) new: bool,
}

/// Most waiting commits [`Store::catch_up`] applies where it is called.
const CATCH_UP_HERE: usize = 4;

/// A handle on the store; clones share one backend, which many threads may use at once.
#[derive(Clone, Debug)]
pub(crate) struct Store {
    kv: Arc<dyn Kv>,
    /// Transactions committed by job writes, for tests of group commit.
    #[cfg(test)]
    pub(crate) job_commits: Arc<std::sync::atomic::AtomicUsize>,
}

impl Store {
    /// Opens (or creates) the redb database at `path`.
    ///
    /// # Errors
    ///
    /// When the database cannot be opened or created, or holds an older layout.
    pub(crate) fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self::new(RedbKv::open(path)?))
    }

    /// A store on a redb database on another storage backend: tests use one that fails on
    /// demand.
    #[cfg(test)]
    pub(crate) fn with_backend(storage: impl redb::StorageBackend) -> Result<Self, StoreError> {
        Ok(Self::new(RedbKv::with_backend(storage)?))
    }

    /// A store on this backend.
    fn new(kv: impl Kv) -> Self {
        Self {
            kv: Arc::new(kv),
            #[cfg(test)]
            job_commits: Arc::default(),
        }
    }

    /// Runs `f` on tokio's blocking pool (see the module documentation for why).
    ///
    /// # Errors
    ///
    /// What `f` returns, or [`StoreError::Task`] when it panicked.
    pub(crate) async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.clone();
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || span.in_scope(|| f(&store)))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// How many commits that returned wait to be applied where reads find them: then
    /// [`Store::catch_up`] is worth calling while nothing else waits.
    pub(crate) fn behind(&self) -> usize {
        self.kv.behind()
    }

    /// Applies what [`Store::behind`] says waits. Nothing is written to disk for it (it is in
    /// the log already): a few waiting commits are applied where the caller runs, in tens of
    /// µs; more, on the blocking pool.
    ///
    /// # Errors
    ///
    /// When the backend fails; what waits is durable, and is applied by the next call, read or
    /// commit.
    pub(crate) async fn catch_up(&self) -> Result<(), StoreError> {
        if self.behind() <= CATCH_UP_HERE {
            Ok(self.kv.catch_up()?)
        } else {
            self.call(|s| Ok(s.kv.catch_up()?)).await
        }
    }

    /// Every job, in id order (which is submission order), with its stdin.
    ///
    /// # Errors
    ///
    /// When the backend cannot be read or a record cannot be decoded.
    pub(crate) fn load_jobs(&self) -> Result<Vec<JobRecord>, StoreError> {
        // Two reads, which may see two states of the store: only the state task writes jobs,
        // and it does not run yet; and a job's stdin is written before or with its record.
        let jobs = self.scan_values(JOBS)?;
        let mut stdin = self.scan_values(STDIN)?;
        jobs.into_iter()
            .map(|(id, value)| {
                let mut job: JobRecord = decode(&format!("{JOBS}{id}"), &value)?;
                if let Some(input) = stdin.remove(&id) {
                    job.spec.stdin = Arc::from(input);
                }
                Ok(job)
            })
            .collect()
    }

    /// Writes these jobs' records, and the stdin of the new ones; see the module documentation
    /// for how many transactions that takes.
    ///
    /// # Errors
    ///
    /// When the backend fails, a record cannot be encoded, or one job's write is larger than a
    /// transaction may be. Each job's write is all or nothing; on a backend with limits, the
    /// writes committed before the failing one stay committed.
    ///
    /// (The state task commits through [`Store::commit`], which adds the audit outbox.)
    #[cfg(test)]
    pub(crate) fn write_jobs(&self, jobs: &[JobWrite]) -> Result<(), StoreError> {
        self.write(jobs.iter().map(|w| (&w.record, w.new)), Vec::new())
    }

    /// Rewrites these jobs' records (not their stdin), as [`Store::commit`] does.
    ///
    /// # Errors
    ///
    /// As [`Store::commit`].
    pub(crate) fn put_jobs(&self, jobs: &[JobRecord]) -> Result<(), StoreError> {
        self.write(jobs.iter().map(|job| (job, false)), Vec::new())
    }

    /// Encodes every record, and checks that every job's write and every group of `after` fits
    /// a transaction, before committing anything: such a failure writes nothing at all. `after`
    /// (the audit outbox, see [`outbox`]) is committed with or after the last job write, in its
    /// order, each group whole.
    fn write<'a>(
        &self,
        jobs: impl Iterator<Item = (&'a JobRecord, bool)>,
        after: Vec<(String, Vec<Op>)>,
    ) -> Result<(), StoreError> {
        let txns = self.pack(jobs, after)?;
        self.commit_all(txns)
    }

    /// What [`Store::write`] commits, encoded and packed into transactions, checked before
    /// anything is written.
    fn pack<'a>(
        &self,
        jobs: impl Iterator<Item = (&'a JobRecord, bool)>,
        after: Vec<(String, Vec<Op>)>,
    ) -> Result<Vec<Txn>, StoreError> {
        // A key is written at most once per transaction: the last record of a job wins.
        let mut latest: BTreeMap<&str, (&JobRecord, bool)> = BTreeMap::new();
        for (job, new) in jobs {
            let entry = latest.entry(job.id.as_str()).or_insert((job, new));
            *entry = (job, entry.1 || new);
        }
        let mut packer = Packer::new(self.kv.limits());
        let mut writes = Vec::with_capacity(latest.len());
        for (id, (job, new)) in latest {
            let key = key_for(JOBS, id);
            let mut record = Vec::new();
            put_record(&mut record, &key, &encode(&key, job)?);
            if !packer.fits_alone(&record) {
                return Err(too_large(&key, record));
            }
            let mut stdin = Vec::new();
            if new {
                put_value(&mut stdin, &key_for(STDIN, id), &job.spec.stdin);
            }
            writes.push((key, record, stdin));
        }
        if let Some((key, ops)) = after.iter().find(|(_, ops)| !packer.fits_alone(ops)) {
            return Err(too_large(key, ops.clone()));
        }
        for (key, record, mut stdin) in writes {
            let together =
                packer
                    .limits
                    .admit(0, record.len() + stdin.len(), size(&record) + size(&stdin));
            if together {
                stdin.extend(record);
                packer.push(&key, stdin)?;
            } else {
                // Nothing refers to the stdin until the record is committed.
                packer.push_apart(&key, stdin)?;
                packer.push(&key, record)?;
            }
        }
        for (key, ops) in after {
            packer.push(&key, ops)?;
        }
        Ok(packer.finish())
    }

    /// Commits unguarded transactions in order, stopping at the first that fails.
    fn commit_all(&self, txns: Vec<Txn>) -> Result<(), StoreError> {
        for txn in txns {
            if !self.kv.commit(txn)? {
                return Err(KvError::Refused(
                    "a transaction without guards was not applied".into(),
                )
                .into());
            }
            self.counted();
        }
        Ok(())
    }

    /// Counts a transaction committed, for tests of group commit.
    fn counted(&self) {
        #[cfg(test)]
        self.job_commits
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Writes (or replaces) the record `id` of this kind, in one transaction.
    ///
    /// # Errors
    ///
    /// When the backend fails, or the record cannot be encoded or is larger than a transaction
    /// may be.
    pub(crate) fn put_record<T: Serialize>(
        &self,
        kind: RecordKind,
        id: &str,
        record: &T,
    ) -> Result<(), StoreError> {
        let key = key_for(kind.prefix(), id);
        let mut ops = Vec::new();
        put_record(&mut ops, &key, &encode(&key, record)?);
        let mut packer = Packer::new(self.kv.limits());
        packer.push(&key, ops)?;
        self.commit_all(packer.finish())
    }

    /// Every record of this kind, in id order.
    ///
    /// # Errors
    ///
    /// When the backend cannot be read or a record cannot be decoded as a `T`.
    pub(crate) fn load_records<T: DeserializeOwned>(
        &self,
        kind: RecordKind,
    ) -> Result<Vec<T>, StoreError> {
        let prefix = kind.prefix();
        self.scan_values(prefix)?
            .into_iter()
            .map(|(id, value)| decode(&format!("{prefix}{id}"), &value))
            .collect()
    }

    /// The record of a stored module.
    ///
    /// # Errors
    ///
    /// When the backend cannot be read or the record cannot be decoded.
    pub(crate) fn module(&self, digest: &ModuleDigest) -> Result<Option<ModuleRecord>, StoreError> {
        let key = key_for(MODULES, &digest.to_string());
        self.read(&key)?
            .map(|stored| decode(&key, &stored.value()))
            .transpose()
    }

    /// Every stored module, in digest order.
    ///
    /// # Errors
    ///
    /// When the backend cannot be read or a record cannot be decoded.
    pub(crate) fn modules(&self) -> Result<Vec<ModuleRecord>, StoreError> {
        self.scan_values(MODULES)?
            .into_iter()
            .map(|(digest, value)| decode(&format!("{MODULES}{digest}"), &value))
            .collect()
    }

    /// Stores a module uploaded into `namespace`, and returns the stored record. A module
    /// already stored is not stored again: its record keeps the first upload's name and time,
    /// and gains `namespace`. Concurrent uploads of the same module store it once, and each
    /// returns the record with its namespace in.
    ///
    /// # Errors
    ///
    /// When the backend fails, a record cannot be encoded or decoded, or others changed the
    /// record under each of [`INSERT_ATTEMPTS`] attempts.
    pub(crate) fn insert_module(
        &self,
        namespace: &str,
        record: ModuleRecord,
        bytes: &[u8],
    ) -> Result<ModuleRecord, StoreError> {
        let digest = record.digest.to_string();
        let key = key_for(MODULES, &digest);
        let blob = key_for(BLOBS, &digest);
        for _ in 0..INSERT_ATTEMPTS {
            let committed = if let Some(stored) = self.read(&key)? {
                let mut current: ModuleRecord = decode(&key, &stored.value())?;
                if !current.namespaces.insert(namespace.to_owned()) {
                    return Ok(current);
                }
                let mut ops = Vec::new();
                put_record(&mut ops, &key, &encode(&key, &current)?);
                let txn = Txn {
                    guards: stored.unchanged(),
                    ops,
                };
                self.commit_guarded(&key, txn)?.then_some(current)
            } else {
                let mut first = record.clone();
                first.namespaces.insert(namespace.to_owned());
                let mut ops = Vec::new();
                put_record(&mut ops, &key, &encode(&key, &first)?);
                let mut bytes_ops = Vec::new();
                put_value(&mut bytes_ops, &blob, bytes);
                let absent = Guard::Absent(key.clone());
                let together = self.kv.limits().admit(
                    1,
                    bytes_ops.len() + ops.len(),
                    absent.size() + size(&bytes_ops) + size(&ops),
                );
                let txn = if together {
                    bytes_ops.extend(ops);
                    Txn {
                        guards: vec![absent],
                        ops: bytes_ops,
                    }
                } else {
                    // The bytes first, in transactions of their own; the record is published
                    // only if they are still there.
                    let mut packer = Packer::new(self.kv.limits());
                    packer.push_apart(&blob, bytes_ops)?;
                    self.commit_all(packer.finish())?;
                    Txn {
                        guards: vec![absent, Guard::Present(blob.clone())],
                        ops,
                    }
                };
                self.commit_guarded(&key, txn)?.then_some(first)
            };
            if let Some(stored) = committed {
                return Ok(stored);
            }
        }
        Err(StoreError::Contended { key })
    }

    /// A stored module's bytes.
    ///
    /// # Errors
    ///
    /// When the backend cannot be read.
    pub(crate) fn module_bytes(
        &self,
        digest: &ModuleDigest,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let key = key_for(BLOBS, &digest.to_string());
        Ok(self.read(&key)?.map(|stored| stored.value()))
    }

    /// The value under `key`, part by part.
    fn read(&self, key: &str) -> Result<Option<Stored>, StoreError> {
        let Some(first) = self.kv.get(key)? else {
            return Ok(None);
        };
        let mut parts = vec![first];
        if parts[0].len() == PART_BYTES {
            let prefix = format!("{key}/");
            for (part_key, part) in self.kv.scan(&prefix)? {
                check_part(&part_key, &part_key[prefix.len()..], &parts)?;
                parts.push(part);
            }
        }
        Ok(Some(Stored {
            key: key.to_owned(),
            parts,
        }))
    }

    /// Every value under `prefix`, parts joined, by the (escaped) id that follows the prefix.
    fn scan_values(&self, prefix: &str) -> Result<BTreeMap<String, Vec<u8>>, StoreError> {
        let mut values: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
        for (key, value) in self.kv.scan(prefix)? {
            let rest = &key[prefix.len()..];
            match rest.split_once('/') {
                None => {
                    values.insert(rest.to_owned(), vec![value]);
                }
                // A value's first part sorts before its other parts. Parts without it are what
                // an interrupted write of bytes left (see the module documentation): skipped.
                Some((id, number)) => {
                    if let Some(parts) = values.get_mut(id) {
                        check_part(&key, number, parts)?;
                        parts.push(value);
                    }
                }
            }
        }
        Ok(values
            .into_iter()
            .map(|(id, parts)| (id, parts.concat()))
            .collect())
    }

    /// Commits a guarded transaction, which must fit in one; returns whether the guards held.
    fn commit_guarded(&self, key: &str, txn: Txn) -> Result<bool, StoreError> {
        if !txn.fits(self.kv.limits()) {
            return Err(too_large(key, txn.ops));
        }
        Ok(self.kv.commit(txn)?)
    }
}

/// A value as read, part by part, so that a write can be guarded on it.
#[derive(Debug)]
struct Stored {
    key: String,
    parts: Vec<Vec<u8>>,
}

impl Stored {
    fn value(&self) -> Vec<u8> {
        self.parts.concat()
    }

    /// Guards that hold while the value is still the one read.
    fn unchanged(&self) -> Vec<Guard> {
        let mut guards: Vec<Guard> = self
            .parts
            .iter()
            .enumerate()
            .map(|(n, part)| Guard::Equals(part_key(&self.key, n), part.clone()))
            .collect();
        guards.push(Guard::Absent(part_key(&self.key, self.parts.len())));
        guards
    }
}

/// Packs unguarded ops into as few transactions as the backend's limits allow, in order: a
/// transaction is closed when the next ops would not fit in it.
struct Packer {
    limits: Limits,
    /// Transactions closed.
    closed: Vec<Txn>,
    /// Ops of the transaction being filled.
    txn: Txn,
    /// `txn.size()`, kept as ops are added.
    bytes: usize,
}

impl Packer {
    fn new(limits: Limits) -> Self {
        Self {
            limits,
            closed: Vec::new(),
            txn: Txn::default(),
            bytes: 0,
        }
    }

    /// Whether these ops fit in one transaction by themselves.
    fn fits_alone(&self, ops: &[Op]) -> bool {
        self.limits.admit(0, ops.len(), size(ops))
    }

    /// Adds ops to commit in one transaction, closing the transaction before them first if all
    /// would not fit in one.
    fn push(&mut self, key: &str, ops: Vec<Op>) -> Result<(), StoreError> {
        let bytes = size(&ops);
        if !self
            .limits
            .admit(0, self.txn.ops.len() + ops.len(), self.bytes + bytes)
        {
            self.close();
            if !self.limits.admit(0, ops.len(), bytes) {
                return Err(too_large(key, ops));
            }
        }
        self.bytes += bytes;
        self.txn.ops.extend(ops);
        Ok(())
    }

    /// Adds ops that may each be committed in a different transaction, in their order.
    fn push_apart(&mut self, key: &str, ops: Vec<Op>) -> Result<(), StoreError> {
        for op in ops {
            self.push(key, vec![op])?;
        }
        Ok(())
    }

    fn close(&mut self) {
        if !self.txn.ops.is_empty() {
            self.bytes = 0;
            self.closed.push(std::mem::take(&mut self.txn));
        }
    }

    /// The transactions, in the order to commit them.
    fn finish(mut self) -> Vec<Txn> {
        self.close();
        self.closed
    }
}

/// The key of `id` under `prefix`, with `%` and `/` escaped.
fn key_for(prefix: &str, id: &str) -> String {
    let mut key = String::with_capacity(prefix.len() + id.len());
    key.push_str(prefix);
    for c in id.chars() {
        match c {
            '%' => key.push_str("%25"),
            '/' => key.push_str("%2F"),
            c => key.push(c),
        }
    }
    key
}

/// The key of part `n` of the value under `key` (part 0 is under `key` itself).
fn part_key(key: &str, n: usize) -> String {
    if n == 0 {
        key.to_owned()
    } else {
        format!("{key}/{n:08}")
    }
}

/// Adds the ops writing `value` under `key`: its parts after the first, then the first.
/// Returns how many parts it has.
fn put_value(ops: &mut Vec<Op>, key: &str, value: &[u8]) -> usize {
    let mut parts = value.chunks(PART_BYTES);
    let first = parts.next().unwrap_or_default().to_vec();
    let mut count = 1;
    for part in parts {
        ops.push(Op::Put(part_key(key, count), part.to_vec()));
        count += 1;
    }
    ops.push(Op::Put(key.to_owned(), first));
    count
}

/// Adds the ops writing a record that may replace a longer one: also deletes the parts past
/// its own.
fn put_record(ops: &mut Vec<Op>, key: &str, value: &[u8]) {
    let parts = put_value(ops, key, value);
    ops.push(Op::DeleteRange {
        from: part_key(key, parts),
        // Just past every `<key>/…`: `0` follows `/`.
        to: format!("{key}0"),
    });
}

/// Checks that `key`, numbered `number`, is the part that follows `parts`.
fn check_part(key: &str, number: &str, parts: &[Vec<u8>]) -> Result<(), StoreError> {
    let follows = parts.last().is_some_and(|last| last.len() == PART_BYTES);
    if follows && number == format!("{:08}", parts.len()) {
        Ok(())
    } else {
        Err(StoreError::Corrupt {
            key: key.to_owned(),
            reason: format!("part {number} does not follow {} parts", parts.len()),
        })
    }
}

/// What these ops weigh in a transaction; see [`Txn::size`].
fn size(ops: &[Op]) -> usize {
    ops.iter().map(Op::size).sum()
}

fn too_large(key: &str, ops: Vec<Op>) -> StoreError {
    let txn = Txn {
        guards: vec![],
        ops,
    };
    StoreError::TooLarge {
        key: key.to_owned(),
        ops: txn.ops.len(),
        bytes: txn.size(),
    }
}

fn encode<T: Serialize>(key: &str, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|source| StoreError::Encode {
        key: key.to_owned(),
        source,
    })
}

fn decode<T: DeserializeOwned>(key: &str, value: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(value).map_err(|e| StoreError::Corrupt {
        key: key.to_owned(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::{Mutex, PoisonError};

    use serde::Deserialize;
    use vauban_core::{Capabilities, ModuleKind};

    use super::kv::mem::{ETCD_DEFAULTS, MemKv};
    use super::*;
    use crate::job::{DEFAULT_NAMESPACE, DEFAULT_PRIORITY, JobId, JobKind, JobSpec, RestartPolicy};
    use crate::placement::PlacementSpec;

    const MIB: usize = 1 << 20;

    /// A job in the default namespace; the store only cares for its id and stdin.
    fn job(stdin: &[u8]) -> JobRecord {
        JobRecord::new(
            JobId::generate(),
            JobSpec {
                name: "n".into(),
                namespace: DEFAULT_NAMESPACE.to_owned(),
                module: ModuleDigest::of(b"m"),
                capabilities: Capabilities::default(),
                stdin: Arc::from(stdin),
                kind: JobKind::Batch,
                restart: RestartPolicy::default(),
                priority: DEFAULT_PRIORITY,
                placement: PlacementSpec::default(),
                grant: None,
                authorized: None,
            },
            42,
        )
    }

    fn new(job: &JobRecord) -> JobWrite {
        JobWrite {
            record: job.clone(),
            new: true,
        }
    }

    fn module(bytes: &[u8]) -> ModuleRecord {
        ModuleRecord {
            digest: ModuleDigest::of(bytes),
            name: "first name".into(),
            kind: ModuleKind::CoreModule,
            size_bytes: bytes.len() as u64,
            signers: vec![],
            uploaded_at_ms: 1,
            namespaces: BTreeSet::new(),
        }
    }

    fn namespaces(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|&n| n.to_owned()).collect()
    }

    /// Bytes that differ from one part to the next, so that a misplaced part shows.
    fn bytes(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    /// A record of a kind the store does not know.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Named {
        name: String,
        notes: String,
    }

    fn named(name: &str, notes: usize) -> Named {
        Named {
            name: name.to_owned(),
            notes: "x".repeat(notes),
        }
    }

    fn keys(store: &Store, prefix: &str) -> Vec<String> {
        let scanned = store.kv.scan(prefix).expect("scan");
        scanned.into_iter().map(|(key, _)| key).collect()
    }

    #[test]
    fn a_reopened_database_keeps_everything() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.redb");
        let first = job(b"\0binary\xff");
        let second = job(b"");
        let mut moved = first.clone();
        moved.message = "moved on".into();
        // A transition does not rewrite the stdin, whatever the record in memory carries.
        moved.spec.stdin = Arc::from(&b"ignored"[..]);
        let blob = bytes(MIB + MIB / 2);
        let stored = {
            let store = Store::open(&path).expect("open");
            store
                .write_jobs(&[new(&first), new(&second)])
                .expect("write");
            store.put_jobs(std::slice::from_ref(&moved)).expect("put");
            store
                .put_record(RecordKind::Node, "n1", &named("n1", 0))
                .expect("node");
            store
                .put_record(RecordKind::Namespace, "team", &named("team", 0))
                .expect("namespace");
            store
                .insert_module("team", module(&blob), &blob)
                .expect("module")
        };
        assert_eq!(stored.namespaces, namespaces(&["team"]));

        let store = Store::open(&path).expect("reopen");
        moved.spec.stdin = first.spec.stdin.clone();
        let jobs = store.load_jobs().expect("load");
        assert_eq!(jobs, vec![moved, second]);
        assert_eq!(&*jobs[0].spec.stdin, b"\0binary\xff");
        assert_eq!(
            store
                .load_records::<Named>(RecordKind::Node)
                .expect("nodes"),
            vec![named("n1", 0)]
        );
        assert_eq!(
            store
                .load_records::<Named>(RecordKind::Namespace)
                .expect("namespaces"),
            vec![named("team", 0)]
        );
        assert_eq!(
            store.module(&stored.digest).expect("module"),
            Some(stored.clone())
        );
        assert_eq!(store.modules().expect("modules"), vec![stored.clone()]);
        assert_eq!(
            store.module_bytes(&stored.digest).expect("bytes"),
            Some(blob)
        );
        let unknown = ModuleDigest::of(b"unknown");
        assert_eq!(store.module(&unknown).expect("module"), None);
        assert_eq!(store.module_bytes(&unknown).expect("bytes"), None);
    }

    /// Values of several parts, on redb (one transaction each) and under etcd's limits (parts
    /// written apart).
    #[test]
    fn long_values_round_trip_in_parts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let redb = Store::open(&dir.path().join("state.redb")).expect("open");
        let etcd = Store::new(MemKv::new(ETCD_DEFAULTS));
        for store in [redb, etcd] {
            let long = bytes(2 * MIB + MIB / 2);
            let input = job(&long);
            let record = store
                .insert_module("default", module(&long), &long)
                .expect("module");
            store.write_jobs(&[new(&input)]).expect("write");
            let digest = record.digest.to_string();
            assert_eq!(
                keys(&store, BLOBS),
                [
                    format!("blobs/{digest}"),
                    format!("blobs/{digest}/00000001"),
                    format!("blobs/{digest}/00000002"),
                ]
            );
            assert_eq!(
                store.module_bytes(&record.digest).expect("bytes"),
                Some(long.clone())
            );
            assert_eq!(store.load_jobs().expect("load"), vec![input.clone()]);
            assert_eq!(*store.load_jobs().expect("load")[0].spec.stdin, *long);

            // Exactly one part, then none: a value that fills its only part has none after.
            for len in [MIB, 0] {
                let value = bytes(len);
                let job = job(&value);
                store.write_jobs(&[new(&job)]).expect("write");
                let loaded = store.load_jobs().expect("load");
                let loaded = loaded.iter().find(|j| j.id == job.id).expect("loaded");
                assert_eq!(*loaded.spec.stdin, *value);
            }
        }
    }

    #[test]
    fn a_record_that_shrinks_leaves_no_parts_behind() {
        let store = Store::new(MemKv::new(Limits::NONE));
        let long = named("n1", 2 * MIB);
        store
            .put_record(RecordKind::Node, "n1", &long)
            .expect("long");
        store
            .put_record(RecordKind::Node, "n2", &named("n2", 0))
            .expect("other");
        assert_eq!(
            keys(&store, "nodes/"),
            [
                "nodes/n1",
                "nodes/n1/00000001",
                "nodes/n1/00000002",
                "nodes/n2"
            ]
        );
        assert_eq!(
            store.load_records::<Named>(RecordKind::Node).expect("load"),
            vec![long, named("n2", 0)]
        );
        store
            .put_record(RecordKind::Node, "n1", &named("n1", 3))
            .expect("short");
        assert_eq!(keys(&store, "nodes/"), ["nodes/n1", "nodes/n2"]);
        assert_eq!(
            store.load_records::<Named>(RecordKind::Node).expect("load"),
            vec![named("n1", 3), named("n2", 0)]
        );
    }

    #[test]
    fn ids_cannot_reach_into_other_keys() {
        let store = Store::new(MemKv::new(Limits::NONE));
        for id in ["a", "a/00000001", "a%2F00000001", "%", "b/c"] {
            store
                .put_record(RecordKind::Namespace, id, &named(id, 0))
                .expect("put");
        }
        assert_eq!(
            keys(&store, ""),
            [
                "namespaces/%25",
                "namespaces/a",
                "namespaces/a%252F00000001",
                "namespaces/a%2F00000001",
                "namespaces/b%2Fc",
            ]
        );
        let names: Vec<String> = store
            .load_records::<Named>(RecordKind::Namespace)
            .expect("load")
            .into_iter()
            .map(|n| n.name)
            .collect();
        assert_eq!(names, ["%", "a", "a%2F00000001", "a/00000001", "b/c"]);
    }

    #[test]
    fn a_module_is_stored_once_and_gains_namespaces() {
        let store = Store::new(MemKv::new(Limits::NONE));
        let first = store
            .insert_module("a", module(b"m"), b"m")
            .expect("insert");
        assert_eq!(first.namespaces, namespaces(&["a"]));
        let again = ModuleRecord {
            name: "second name".into(),
            uploaded_at_ms: 2,
            ..module(b"m")
        };
        assert_eq!(
            store
                .insert_module("a", again.clone(), b"m")
                .expect("again"),
            first
        );
        let elsewhere = store.insert_module("b", again, b"m").expect("elsewhere");
        assert_eq!(
            elsewhere,
            ModuleRecord {
                namespaces: namespaces(&["a", "b"]),
                ..first
            }
        );
        assert_eq!(store.modules().expect("list"), vec![elsewhere]);
        assert_eq!(keys(&store, BLOBS).len(), 1);
    }

    /// A backend on which a rival's transaction, when there is one, commits just before the
    /// next one of ours.
    #[derive(Debug)]
    struct Racing {
        kv: MemKv,
        rival: Arc<Mutex<Option<Txn>>>,
    }

    impl Kv for Racing {
        fn limits(&self) -> Limits {
            self.kv.limits()
        }

        fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
            self.kv.get(key)
        }

        fn scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, KvError> {
            self.kv.scan(prefix)
        }

        fn commit(&self, txn: Txn) -> Result<bool, KvError> {
            let rival = self
                .rival
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(rival) = rival {
                assert!(self.kv.commit(rival)?, "the rival commits");
            }
            self.kv.commit(txn)
        }
    }

    /// What a rival upload of `record` into `namespace` commits.
    fn rival_upload(namespace: &str, record: &ModuleRecord, bytes: &[u8]) -> Txn {
        let digest = record.digest.to_string();
        let key = key_for(MODULES, &digest);
        let mut record = record.clone();
        record.namespaces.insert(namespace.to_owned());
        let mut ops = Vec::new();
        put_value(&mut ops, &key_for(BLOBS, &digest), bytes);
        put_record(&mut ops, &key, &encode(&key, &record).expect("encode"));
        Txn {
            guards: vec![],
            ops,
        }
    }

    #[test]
    fn concurrent_uploads_of_a_module_store_it_once_with_both_namespaces() {
        let theirs = ModuleRecord {
            name: "theirs".into(),
            ..module(b"m")
        };
        let rival = Arc::new(Mutex::new(None));
        let store = Store::new(Racing {
            kv: MemKv::new(Limits::NONE),
            rival: Arc::clone(&rival),
        });
        let race = |txn| *rival.lock().unwrap_or_else(PoisonError::into_inner) = Some(txn);

        // Their upload commits between our read (nothing there) and our commit.
        race(rival_upload("b", &theirs, b"m"));
        let ours = store
            .insert_module("a", module(b"m"), b"m")
            .expect("insert");
        let mut expected = ModuleRecord {
            namespaces: namespaces(&["a", "b"]),
            ..theirs.clone()
        };
        assert_eq!(ours, expected);

        // Their upload into "c" commits between our read (in "a" and "b") and our commit.
        race(rival_upload("c", &ours, b"m"));
        let ours = store
            .insert_module("d", module(b"m"), b"m")
            .expect("insert");
        expected.namespaces = namespaces(&["a", "b", "c", "d"]);
        assert_eq!(ours, expected);
        assert_eq!(store.modules().expect("list"), vec![expected]);
    }

    #[test]
    fn batches_are_split_to_the_limits_keeping_each_job_whole() {
        // Three ops per new job (stdin, record, trim): two jobs per transaction.
        let store = Store::new(MemKv::new(Limits {
            max_ops: 7,
            max_bytes: usize::MAX,
        }));
        let jobs: Vec<JobRecord> = (0..5).map(|i| job(&[i])).collect();
        let writes: Vec<JobWrite> = jobs.iter().map(new).collect();
        store.write_jobs(&writes).expect("write");
        assert_eq!(
            store.job_commits.load(std::sync::atomic::Ordering::SeqCst),
            3
        );
        assert_eq!(store.load_jobs().expect("load"), jobs);

        // Under etcd's limits, a stdin too long to go with its record goes first.
        let store = Store::new(MemKv::new(ETCD_DEFAULTS));
        let long = job(&bytes(3 * MIB));
        let short = job(b"short");
        store.write_jobs(&[new(&short), new(&long)]).expect("write");
        assert_eq!(store.load_jobs().expect("load"), vec![long, short]);
    }

    #[test]
    fn redb_commits_a_batch_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("state.redb")).expect("open");
        let jobs: Vec<JobRecord> = (0..300).map(|_| job(b"in")).collect();
        let writes: Vec<JobWrite> = jobs.iter().map(new).collect();
        store.write_jobs(&writes).expect("write");
        store.put_jobs(&jobs).expect("put");
        store.put_jobs(&[]).expect("nothing");
        assert_eq!(
            store.job_commits.load(std::sync::atomic::Ordering::SeqCst),
            2
        );
        assert_eq!(store.load_jobs().expect("load"), jobs);
    }

    #[test]
    fn a_write_larger_than_a_transaction_is_refused_whole() {
        let store = Store::new(MemKv::new(ETCD_DEFAULTS));
        let fits = job(b"");
        let mut huge = job(b"");
        huge.message = "x".repeat(2 * MIB);
        let err = store
            .write_jobs(&[new(&fits), new(&huge)])
            .expect_err("too large");
        let huge_key = format!("jobs/{}", huge.id.as_str());
        assert!(
            matches!(&err, StoreError::TooLarge { key, .. } if *key == huge_key),
            "{err}"
        );
        let err = store
            .put_record(RecordKind::Node, "n", &named("n", 2 * MIB))
            .expect_err("too large");
        assert!(matches!(err, StoreError::TooLarge { .. }), "{err}");
        assert_eq!(keys(&store, ""), Vec::<String>::new());
    }
}
