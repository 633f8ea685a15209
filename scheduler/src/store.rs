//! The durable state: a redb file holding jobs, their stdin, module records and module bytes.
//!
//! Every method is a blocking call and every write is one committed transaction, which with
//! redb's default durability ends in an fsync. Async callers go through [`Store::call`], which
//! runs the call on tokio's blocking pool: the state task still waits for each commit before it
//! acknowledges anything (that is the point), but a slow disk never stalls a runtime worker
//! serving other connections.
//!
//! Since the fsync, not the writing, is what a commit costs, the state task writes all the job
//! changes of a batch of commands with one [`Store::write_jobs`] call (group commit, see
//! [`crate::state`]): a job accepted and placed in the same batch is written once, already
//! running, with its stdin.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use vauban_core::ModuleDigest;

use crate::job::JobRecord;
use crate::module::ModuleRecord;

/// Job id → JSON [`JobRecord`] (without stdin). Rewritten at every transition.
const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs");
/// Job id → stdin bytes. Written once, with the job, so that transitions do not rewrite up to
/// 16 MiB of input each time.
const JOB_STDIN: TableDefinition<&str, &[u8]> = TableDefinition::new("job_stdin");
/// Module digest (`sha256:<hex>`) → JSON [`ModuleRecord`].
const MODULES: TableDefinition<&str, &[u8]> = TableDefinition::new("modules");
/// Module digest → the module's bytes, exactly as uploaded.
const BLOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("blobs");

/// The state store could not be read or written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    /// redb failed (I/O, corruption, a full disk).
    #[error("state store: {0}")]
    Database(Box<redb::Error>),
    /// A stored value is not what this version of the scheduler wrote.
    #[error("state store: cannot decode {key}: {source}")]
    Corrupt {
        key: String,
        source: serde_json::Error,
    },
    /// A value could not be encoded.
    #[error("state store: cannot encode {key}: {source}")]
    Encode {
        key: String,
        source: serde_json::Error,
    },
    /// The blocking task running the call panicked or was cancelled.
    #[error("state store: blocking task failed: {0}")]
    Task(String),
}

macro_rules! from_redb {
    ($($e:ty),*) => {$(
        impl From<$e> for StoreError {
            fn from(e: $e) -> Self {
                Self::Database(Box::new(e.into()))
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// One job's record to write; `new` jobs get their stdin written too (it is written only once).
#[derive(Clone, Debug)]
pub(crate) struct JobWrite {
    pub(crate) record: JobRecord,
    pub(crate) new: bool,
}

/// A handle on the store; clones share one database, which redb lets many threads use (one
/// writer at a time, readers never blocked).
#[derive(Clone, Debug)]
pub(crate) struct Store {
    db: Arc<Database>,
    /// Job writes committed, for tests of group commit.
    #[cfg(test)]
    pub(crate) job_commits: Arc<std::sync::atomic::AtomicUsize>,
}

impl Store {
    /// Opens (or creates) the database at `path` and makes sure every table exists, so that
    /// read transactions can open them.
    pub(crate) fn open(path: &Path) -> Result<Self, StoreError> {
        Self::with_tables(Database::create(path)?)
    }

    /// A store on another storage backend: tests use one that fails on demand.
    #[cfg(test)]
    pub(crate) fn with_backend(backend: impl redb::StorageBackend) -> Result<Self, StoreError> {
        Self::with_tables(redb::Builder::new().create_with_backend(backend)?)
    }

    fn with_tables(db: Database) -> Result<Self, StoreError> {
        let tx = db.begin_write()?;
        {
            tx.open_table(JOBS)?;
            tx.open_table(JOB_STDIN)?;
            tx.open_table(MODULES)?;
            tx.open_table(BLOBS)?;
        }
        tx.commit()?;
        Ok(Self {
            db: Arc::new(db),
            #[cfg(test)]
            job_commits: Arc::default(),
        })
    }

    /// Runs `f` on tokio's blocking pool (see the module documentation for why).
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

    /// Every job, in id order (which is submission order), with its stdin.
    pub(crate) fn load_jobs(&self) -> Result<Vec<JobRecord>, StoreError> {
        let tx = self.db.begin_read()?;
        let jobs = tx.open_table(JOBS)?;
        let stdin = tx.open_table(JOB_STDIN)?;
        let mut out = Vec::new();
        for entry in jobs.iter()? {
            let (key, value) = entry?;
            let mut job: JobRecord = decode(key.value(), value.value())?;
            if let Some(input) = stdin.get(key.value())? {
                job.spec.stdin = Arc::from(input.value());
            }
            out.push(job);
        }
        Ok(out)
    }

    /// Writes these jobs' records, and the stdin of the new ones, in one transaction.
    pub(crate) fn write_jobs(&self, jobs: &[JobWrite]) -> Result<(), StoreError> {
        self.write(jobs.iter().map(|w| (&w.record, w.new)))
    }

    /// Rewrites these jobs' records (not their stdin) in one transaction.
    pub(crate) fn put_jobs(&self, jobs: &[JobRecord]) -> Result<(), StoreError> {
        self.write(jobs.iter().map(|job| (job, false)))
    }

    /// Encodes before the transaction opens, so that a value that cannot be encoded writes
    /// nothing at all.
    fn write<'a>(
        &self,
        jobs: impl Iterator<Item = (&'a JobRecord, bool)>,
    ) -> Result<(), StoreError> {
        let values = jobs
            .map(|(job, new)| Ok((job, new, encode(job.id.as_str(), job)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let tx = self.db.begin_write()?;
        {
            let mut records = tx.open_table(JOBS)?;
            let mut stdin = tx.open_table(JOB_STDIN)?;
            for (job, new, value) in &values {
                records.insert(job.id.as_str(), value.as_slice())?;
                if *new {
                    stdin.insert(job.id.as_str(), &*job.spec.stdin)?;
                }
            }
        }
        tx.commit()?;
        #[cfg(test)]
        self.job_commits
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// The record of a stored module.
    pub(crate) fn module(&self, digest: &ModuleDigest) -> Result<Option<ModuleRecord>, StoreError> {
        let key = digest.to_string();
        let tx = self.db.begin_read()?;
        let table = tx.open_table(MODULES)?;
        let value = table.get(key.as_str())?;
        value.map(|v| decode(&key, v.value())).transpose()
    }

    /// Every stored module, in digest order.
    pub(crate) fn modules(&self) -> Result<Vec<ModuleRecord>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(MODULES)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (key, value) = entry?;
            out.push(decode(key.value(), value.value())?);
        }
        Ok(out)
    }

    /// Stores a module unless one with its digest is already stored, and returns the stored
    /// record: uploading the same bytes twice keeps the first name and upload time.
    pub(crate) fn insert_module(
        &self,
        record: ModuleRecord,
        bytes: &[u8],
    ) -> Result<ModuleRecord, StoreError> {
        let key = record.digest.to_string();
        let tx = self.db.begin_write()?;
        let stored = {
            let mut modules = tx.open_table(MODULES)?;
            let existing = modules.get(key.as_str())?.map(|v| v.value().to_vec());
            match existing {
                Some(existing) => decode(&key, &existing)?,
                None => {
                    let value = encode(&key, &record)?;
                    modules.insert(key.as_str(), value.as_slice())?;
                    tx.open_table(BLOBS)?.insert(key.as_str(), bytes)?;
                    record
                }
            }
        };
        tx.commit()?;
        Ok(stored)
    }

    /// A stored module's bytes.
    pub(crate) fn module_bytes(
        &self,
        digest: &ModuleDigest,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let key = digest.to_string();
        let tx = self.db.begin_read()?;
        let table = tx.open_table(BLOBS)?;
        let value = table.get(key.as_str())?;
        Ok(value.map(|v| v.value().to_vec()))
    }
}

fn encode<T: serde::Serialize>(key: &str, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|source| StoreError::Encode {
        key: key.to_owned(),
        source,
    })
}

fn decode<T: serde::de::DeserializeOwned>(key: &str, value: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(value).map_err(|source| StoreError::Corrupt {
        key: key.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use vauban_core::{Capabilities, ModuleKind, Outcome};
    use vauban_proto::convert::RunResult;

    use super::*;
    use crate::job::{JobId, JobSpec, RunEnd};
    use crate::node::NodeId;

    fn job(stdin: &[u8]) -> JobRecord {
        JobRecord::new(
            JobId::generate(),
            JobSpec {
                name: "n".into(),
                module: ModuleDigest::of(b"m"),
                capabilities: Capabilities::default(),
                stdin: Arc::from(stdin),
                label_selector: BTreeMap::from([("zone".into(), "alpha".into())]),
            },
            42,
        )
    }

    #[test]
    fn jobs_and_modules_survive_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.redb");
        let first = job(b"\0binary\xff");
        let second = job(b"");
        let finished = first.assigned(NodeId::from("n1")).finished(
            RunEnd::Ran(RunResult {
                outcome: Outcome::Exited { code: 7 },
                stdout: vauban_core::CapturedOutput {
                    bytes: b"out\xff".to_vec(),
                    dropped: 0,
                },
                stderr: vauban_core::CapturedOutput::default(),
                run_time: std::time::Duration::from_millis(3),
                fuel_consumed: None,
                peak_memory_bytes: 1,
                denials: vec![],
            }),
            50,
        );
        let module = ModuleRecord {
            digest: ModuleDigest::of(b"module"),
            name: "first name".into(),
            kind: ModuleKind::CoreModule,
            size_bytes: 6,
            signers: vec![],
            uploaded_at_ms: 1,
        };
        {
            let store = Store::open(&path).expect("open");
            let new = |record: &JobRecord| JobWrite {
                record: record.clone(),
                new: true,
            };
            store
                .write_jobs(&[new(&first), new(&second)])
                .expect("insert");
            store
                .put_jobs(std::slice::from_ref(&finished))
                .expect("put");
            assert_eq!(
                store
                    .insert_module(module.clone(), b"module")
                    .expect("insert"),
                module
            );
            // idempotent: the first record stays
            let again = ModuleRecord {
                name: "second name".into(),
                uploaded_at_ms: 2,
                ..module.clone()
            };
            assert_eq!(
                store.insert_module(again, b"module").expect("insert"),
                module
            );
        }
        let store = Store::open(&path).expect("reopen");
        assert_eq!(store.load_jobs().expect("load"), vec![finished, second]);
        assert_eq!(
            store.module(&module.digest).expect("get"),
            Some(module.clone())
        );
        assert_eq!(store.modules().expect("list"), vec![module.clone()]);
        assert_eq!(
            store
                .module_bytes(&module.digest)
                .expect("bytes")
                .as_deref(),
            Some(&b"module"[..])
        );
        let unknown = ModuleDigest::of(b"other");
        assert_eq!(store.module(&unknown).expect("get"), None);
        assert_eq!(store.module_bytes(&unknown).expect("bytes"), None);
    }
}
