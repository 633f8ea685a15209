//! The embedded backend, the default: one redb table `kv` of text keys and byte values, in one
//! file, with a write-ahead log beside it ([`super::wal`]).
//!
//! A commit's ops are first written to the log and synced; they are then applied to redb in a
//! transaction committed without durability. One commit in
//! [`super::wal::RECORDS_PER_CHECKPOINT`], and any whose record the log does not take, is committed
//! durably instead (an fsync of the database), with the sequence number of the last record in
//! the table `wal`: the checkpoint. Opening the database applies the records after the
//! checkpoint, which a crash left only in the log, and checkpoints. Either way a commit returns
//! once it is durable.
//!
//! A small unguarded commit ([`Wal::quick`]) returns as soon as its record is
//! synced: its ops wait, in log order, to be applied to redb by whatever touches the database
//! next — the next commit (in its own transaction, before its ops), a read (before reading), or
//! [`Kv::catch_up`], which the state task calls when it has nothing else to do. A reader thus
//! never misses a commit that returned before it began, and the ~50 µs redb takes to apply a
//! transaction are not spent while a job waits.
//!
//! One commit runs at a time (the log's lock), so records follow commits in order and a guard
//! is checked against every commit before it. redb never blocks readers, and a transaction has
//! no size limits ([`Limits::NONE`]).

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, Table, TableDefinition, TableHandle,
    WriteTransaction,
};
use tracing::{error, info};

use super::kv::{Guard, Kv, KvError, Limits, Op, Txn};
use super::wal::{self, Frame, Wal};

/// Every key and value of the store.
const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");

/// The checkpoint: `applied`, the sequence number of the last log record the database holds
/// durably.
const WAL: TableDefinition<&str, u64> = TableDefinition::new("wal");

/// The store on a redb database.
#[derive(Debug)]
pub(crate) struct RedbKv {
    db: Database,
    /// `None` on a test backend: every commit is then durable in redb.
    log: Option<Mutex<Log>>,
    /// How many transactions `log` holds that redb does not yet; read without the lock, so
    /// that readers take it only when they have to.
    behind: AtomicUsize,
}

/// The write-ahead log, and the transactions it holds that redb does not yet.
#[derive(Debug)]
struct Log {
    wal: Wal,
    /// The ops of logged transactions not yet applied to redb, in log order.
    behind: Vec<Vec<Op>>,
}

impl RedbKv {
    /// Opens (or creates) the database at `path`, and its log beside it (`path` with the
    /// extension `wal`), applying what the log holds past the checkpoint.
    ///
    /// # Errors
    ///
    /// When a file cannot be opened or created, is not a redb database, is locked by another
    /// process, or holds the tables of the scheduler's first layout (which is not migrated), or
    /// when the log cannot be read or applied.
    pub(crate) fn open(path: &Path) -> Result<Self, KvError> {
        let (mut kv, logged) = Self::new(Database::create(path).map_err(backend)?)?;
        let log = path.with_extension("wal");
        let in_log = |e: std::io::Error| {
            KvError::Backend(format!("write-ahead log {}: {e}", log.display()).into())
        };
        if !logged {
            // A new database (or one from before the log): a log beside it belongs to another
            // one, and its records could pass for this one's.
            match std::fs::remove_file(&log) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(in_log(e)),
                _ => {}
            }
        }
        let checkpoint = kv.checkpoint()?;
        let replay = wal::read(&log, checkpoint).map_err(in_log)?;
        let last = replay.records.last().map_or(checkpoint, |(seq, _)| *seq);
        if !replay.records.is_empty() {
            let tx = kv.db.begin_write().map_err(backend)?;
            for (_, ops) in &replay.records {
                apply(&tx, &[], ops)?;
            }
            set_checkpoint(&tx, last)?;
            tx.commit().map_err(backend)?;
            info!(records = replay.records.len(), stop = ?replay.stop, log = %log.display(), "applied the write-ahead log's records after the last checkpoint");
        }
        kv.log = Some(Mutex::new(Log {
            wal: Wal::open(&log, last).map_err(in_log)?,
            behind: Vec::new(),
        }));
        Ok(kv)
    }

    /// A database on another storage backend: tests use one that fails on demand.
    #[cfg(test)]
    pub(crate) fn with_backend(storage: impl redb::StorageBackend) -> Result<Self, KvError> {
        let db = redb::Builder::new()
            .create_with_backend(storage)
            .map_err(backend)?;
        Ok(Self::new(db)?.0)
    }

    /// Creates the tables, so that read transactions can open them; says whether the
    /// checkpoint's was there already.
    fn new(db: Database) -> Result<(Self, bool), KvError> {
        let tx = db.begin_write().map_err(backend)?;
        let tables: Vec<String> = tx
            .list_tables()
            .map_err(backend)?
            .map(|t| t.name().to_owned())
            .collect();
        let logged = tables.iter().any(|name| name == WAL.name());
        let old: Vec<String> = tables
            .into_iter()
            .filter(|name| name != KV.name() && name != WAL.name())
            .collect();
        if !old.is_empty() {
            return Err(KvError::Backend(
                format!(
                    "the database holds tables of an older layout ({}); it is not migrated",
                    old.join(", ")
                )
                .into(),
            ));
        }
        tx.open_table(KV).map_err(backend)?;
        tx.open_table(WAL).map_err(backend)?;
        tx.commit().map_err(backend)?;
        Ok((
            Self {
                db,
                log: None,
                behind: AtomicUsize::new(0),
            },
            logged,
        ))
    }

    /// Sequence number of the last log record the database holds durably.
    fn checkpoint(&self) -> Result<u64, KvError> {
        let tx = self.db.begin_read().map_err(backend)?;
        let table = tx.open_table(WAL).map_err(backend)?;
        Ok(table
            .get("applied")
            .map_err(backend)?
            .map_or(0, |v| v.value()))
    }

    fn lock(log: &Mutex<Log>) -> MutexGuard<'_, Log> {
        log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The log, unless another thread holds it (committing, or applying what is behind).
    fn try_lock(&self) -> Option<MutexGuard<'_, Log>> {
        match self.log.as_ref()?.try_lock() {
            Ok(log) => Some(log),
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// Logs `txn`, framed as `frame`, and leaves its ops for later, if it is an unguarded
    /// commit the log calls quick ([`Wal::quick`]); else gives it back.
    fn log_only(&self, log: &mut Log, txn: Txn, frame: &Frame) -> Result<Option<Txn>, KvError> {
        if !txn.guards.is_empty() || !log.wal.quick(frame) {
            return Ok(Some(txn));
        }
        log.wal
            .append(frame)
            .map_err(|e| cannot_log(&log.wal, &e))?;
        log.behind.push(txn.ops);
        self.behind.store(log.behind.len(), Ordering::Release);
        Ok(None)
    }

    /// Applies `txn`, framed as `frame`, after what is behind, in one redb transaction, logged
    /// or checkpointed.
    fn commit_logged(&self, log: &mut Log, txn: &Txn, frame: &Frame) -> Result<bool, KvError> {
        let mut tx = self.begin_write(log)?;
        // The ops are logged after they are applied, and only if the guards held.
        if !apply(&tx, &txn.guards, &txn.ops)? {
            tx.abort().map_err(backend)?;
            return Ok(false);
        }
        if log.wal.takes(frame) {
            tx.set_durability(Durability::None).map_err(backend)?;
            if let Err(e) = log.wal.append(frame) {
                tx.abort().map_err(backend)?;
                return Err(cannot_log(&log.wal, &e));
            }
            if let Err(e) = tx.commit() {
                if let Err(taken) = log.wal.take_back(frame) {
                    error!(error = %taken, log = %log.wal.path().display(), "cannot take back the record of a transaction that failed: a restart applies it");
                }
                return Err(backend(e));
            }
        } else {
            // A checkpoint: durable in redb with everything committed before it.
            set_checkpoint(&tx, log.wal.last())?;
            tx.commit().map_err(backend)?;
            log.wal.checkpointed();
        }
        self.caught_up(log);
        Ok(true)
    }

    /// Applies what is behind to redb, without durability: it is in the log.
    fn apply_behind(&self, log: &mut Log) -> Result<(), KvError> {
        if log.behind.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write(log)?;
        tx.set_durability(Durability::None).map_err(backend)?;
        tx.commit().map_err(backend)?;
        self.caught_up(log);
        Ok(())
    }

    /// A write transaction holding, first, what is behind: every write starts level with the
    /// log.
    fn begin_write(&self, log: &Log) -> Result<WriteTransaction, KvError> {
        let tx = self.db.begin_write().map_err(backend)?;
        for ops in &log.behind {
            apply(&tx, &[], ops)?;
        }
        Ok(tx)
    }

    fn caught_up(&self, log: &mut Log) {
        log.behind.clear();
        self.behind.store(0, Ordering::Release);
    }

    /// A read transaction that sees every commit that has returned.
    fn begin_read(&self) -> Result<redb::ReadTransaction, KvError> {
        if self.behind.load(Ordering::Acquire) > 0
            && let Some(log) = &self.log
        {
            self.apply_behind(&mut Self::lock(log))?;
        }
        self.db.begin_read().map_err(backend)
    }
}

fn cannot_log(wal: &Wal, e: &std::io::Error) -> KvError {
    KvError::Backend(
        format!(
            "cannot write the write-ahead log {}: {e}",
            wal.path().display()
        )
        .into(),
    )
}

impl Drop for RedbKv {
    /// Checkpoints, so that a clean stop leaves nothing to apply from the log.
    fn drop(&mut self) {
        let Some(log) = &self.log else { return };
        let log = Self::lock(log);
        let checkpoint = || -> Result<(), KvError> {
            let tx = self.begin_write(&log)?;
            set_checkpoint(&tx, log.wal.last())?;
            tx.commit().map_err(backend)
        };
        if let Err(e) = checkpoint() {
            error!(error = %e, "cannot checkpoint the store as it closes; the next start applies the log");
        }
    }
}

impl Kv for RedbKv {
    fn limits(&self) -> Limits {
        Limits::NONE
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let tx = self.begin_read()?;
        let table = tx.open_table(KV).map_err(backend)?;
        let value = table.get(key).map_err(backend)?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    fn scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, KvError> {
        let tx = self.begin_read()?;
        let table = tx.open_table(KV).map_err(backend)?;
        let mut out = Vec::new();
        for entry in table.range(prefix..).map_err(backend)? {
            let (key, value) = entry.map_err(backend)?;
            if !key.value().starts_with(prefix) {
                break;
            }
            out.push((key.value().to_owned(), value.value().to_vec()));
        }
        Ok(out)
    }

    fn try_commit_quickly(&self, txn: Txn) -> Result<Option<Txn>, KvError> {
        let Some(mut log) = self.try_lock() else {
            return Ok(Some(txn));
        };
        let frame = log.wal.frame(&txn.ops);
        self.log_only(&mut log, txn, &frame)
    }

    fn commit(&self, txn: Txn) -> Result<bool, KvError> {
        let Some(log) = &self.log else {
            let tx = self.db.begin_write().map_err(backend)?;
            if !apply(&tx, &txn.guards, &txn.ops)? {
                tx.abort().map_err(backend)?;
                return Ok(false);
            }
            tx.commit().map_err(backend)?;
            return Ok(true);
        };
        let mut log = Self::lock(log);
        let frame = log.wal.frame(&txn.ops);
        match self.log_only(&mut log, txn, &frame)? {
            None => Ok(true),
            Some(txn) => self.commit_logged(&mut log, &txn, &frame),
        }
    }

    fn behind(&self) -> usize {
        self.behind.load(Ordering::Acquire)
    }

    fn catch_up(&self) -> Result<(), KvError> {
        // A thread holding the log is committing, which applies what is behind, or catching up.
        match self.try_lock() {
            Some(mut log) => self.apply_behind(&mut log),
            None => Ok(()),
        }
    }
}

/// Records in `tx` that the database holds every log record up to `last`.
fn set_checkpoint(tx: &WriteTransaction, last: u64) -> Result<(), KvError> {
    tx.open_table(WAL)
        .map_err(backend)?
        .insert("applied", last)
        .map_err(backend)?;
    Ok(())
}

/// Checks the guards and, if they hold, applies the ops; returns whether they held.
fn apply(tx: &WriteTransaction, guards: &[Guard], ops: &[Op]) -> Result<bool, KvError> {
    let mut table = tx.open_table(KV).map_err(backend)?;
    for guard in guards {
        if !holds(&table, guard)? {
            return Ok(false);
        }
    }
    for op in ops {
        match op {
            Op::Put(key, value) => {
                table
                    .insert(key.as_str(), value.as_slice())
                    .map_err(backend)?;
            }
            Op::DeleteRange { from, to } => {
                table
                    .retain_in(from.as_str()..to.as_str(), |_, _| false)
                    .map_err(backend)?;
            }
        }
    }
    Ok(true)
}

fn holds(table: &Table<'_, &str, &[u8]>, guard: &Guard) -> Result<bool, KvError> {
    Ok(match guard {
        Guard::Absent(key) => table.get(key.as_str()).map_err(backend)?.is_none(),
        Guard::Present(key) => table.get(key.as_str()).map_err(backend)?.is_some(),
        Guard::Equals(key, value) => table
            .get(key.as_str())
            .map_err(backend)?
            .is_some_and(|v| v.value() == value.as_slice()),
    })
}

fn backend(e: impl Into<redb::Error>) -> KvError {
    KvError::Backend(Box::new(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::kv::check_contract;

    #[test]
    fn keeps_the_contract_and_everything_across_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.redb");
        let kept = {
            let kv = RedbKv::open(&path).expect("open");
            check_contract(&kv);
            kv.scan("").expect("scan")
        };
        assert!(!kept.is_empty());
        let kv = RedbKv::open(&path).expect("reopen");
        assert_eq!(kv.scan("").expect("scan"), kept);
    }

    #[test]
    fn refuses_a_database_of_the_first_layout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.redb");
        {
            let db = Database::create(&path).expect("create");
            let tx = db.begin_write().expect("write");
            tx.open_table(TableDefinition::<&str, &[u8]>::new("jobs"))
                .expect("table");
            tx.commit().expect("commit");
        }
        let err = RedbKv::open(&path).expect_err("old layout");
        assert_eq!(
            err.to_string(),
            "the database holds tables of an older layout (jobs); it is not migrated"
        );
    }

    fn put(key: &str, value: &[u8]) -> Txn {
        Txn {
            guards: Vec::new(),
            ops: vec![Op::Put(key.to_owned(), value.to_vec())],
        }
    }

    /// What a crash leaves: records in the log that redb lost with its non-durable commits.
    #[test]
    fn opening_applies_the_records_a_crash_left_only_in_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.redb");
        {
            let kv = RedbKv::open(&path).expect("open");
            assert!(kv.commit(put("a", b"1")).expect("commit"));
            assert!(kv.commit(put("gone/1", b"x")).expect("commit"));
        }
        {
            let log = path.with_extension("wal");
            let replay = wal::read(&log, 2).expect("read");
            assert!(replay.records.is_empty(), "a clean stop checkpoints");
            let mut wal = Wal::open(&log, 2).expect("log");
            for ops in [
                vec![Op::Put("b".into(), b"2".to_vec())],
                vec![
                    Op::Put("a".into(), b"3".to_vec()),
                    Op::DeleteRange {
                        from: "gone/".into(),
                        to: "gone0".into(),
                    },
                ],
            ] {
                let frame = wal.frame(&ops);
                wal.append(&frame).expect("append");
            }
        }
        let kv = RedbKv::open(&path).expect("reopen");
        let expected = vec![
            ("a".to_owned(), b"3".to_vec()),
            ("b".to_owned(), b"2".to_vec()),
        ];
        assert_eq!(kv.scan("").expect("scan"), expected);
        assert_eq!(kv.checkpoint().expect("checkpoint"), 4);
        // Applied once: a later change is not undone by the records at the next open.
        assert!(kv.commit(put("a", b"5")).expect("commit"));
        drop(kv);
        let kv = RedbKv::open(&path).expect("reopen");
        assert_eq!(kv.get("a").expect("get"), Some(b"5".to_vec()));
    }

    #[test]
    fn commits_are_checkpointed_every_so_often_and_large_ones_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kv = RedbKv::open(&dir.path().join("state.redb")).expect("open");
        let every = super::super::wal::RECORDS_PER_CHECKPOINT;
        for i in 0..every {
            assert!(kv.commit(put(&format!("k{i:04}"), b"v")).expect("commit"));
        }
        assert_eq!(kv.checkpoint().expect("checkpoint"), 0, "all in the log");
        assert!(kv.commit(put("due", b"v")).expect("commit"));
        assert_eq!(kv.checkpoint().expect("checkpoint"), every);
        assert!(kv.commit(put("next", b"v")).expect("commit"));
        assert_eq!(kv.checkpoint().expect("checkpoint"), every);
        let large = vec![7; (super::super::wal::LOG_BYTES / 4) as usize];
        assert!(kv.commit(put("large", &large)).expect("commit"));
        assert_eq!(kv.checkpoint().expect("checkpoint"), every + 1);
        assert_eq!(kv.get("large").expect("get"), Some(large));
    }

    #[test]
    fn a_new_database_ignores_a_log_left_beside_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.redb");
        let log = path.with_extension("wal");
        {
            let mut wal = Wal::open(&log, 0).expect("log");
            let frame = wal.frame(&[Op::Put("jobs/old".into(), b"x".to_vec())]);
            wal.append(&frame).expect("append");
        }
        assert_eq!(wal::read(&log, 0).expect("read").records.len(), 1);
        let kv = RedbKv::open(&path).expect("open");
        assert_eq!(kv.scan("").expect("scan"), vec![]);
        assert_eq!(wal::read(&log, 0).expect("read"), wal::Replay::default());
    }

    #[test]
    fn a_quick_commit_is_logged_and_applied_by_whatever_comes_next() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.redb");
        let kv = RedbKv::open(&path).expect("open");
        // A slow disk makes no commit quick: then each is applied at once, which this test
        // cannot tell apart. It checks what it can.
        let quick = kv.try_commit_quickly(put("a", b"1")).expect("commit");
        if let Some(txn) = quick {
            assert!(kv.commit(txn).expect("commit"));
        } else {
            assert_eq!(kv.behind(), 1);
            let logged = wal::read(&path.with_extension("wal"), 0).expect("read");
            assert_eq!(logged.records.len(), 1, "durable in the log");
        }
        // A read applies it first.
        assert_eq!(kv.get("a").expect("get"), Some(b"1".to_vec()));
        assert_eq!(kv.behind(), 0);

        // A guarded commit is checked against what waits, and applies it with its own ops.
        assert!(kv.commit(put("b", b"2")).expect("commit"));
        let guarded = |guard| Txn {
            guards: vec![guard],
            ops: vec![Op::Put("c".into(), b"3".to_vec())],
        };
        assert!(
            !kv.commit(guarded(Guard::Absent("b".into())))
                .expect("commit")
        );
        assert!(
            kv.commit(guarded(Guard::Present("b".into())))
                .expect("commit")
        );
        assert_eq!(kv.behind(), 0);

        // Catching up applies what waits, in log order.
        assert!(kv.commit(put("d", b"4")).expect("commit"));
        assert!(kv.commit(put("d", b"5")).expect("commit"));
        kv.catch_up().expect("catch up");
        assert_eq!(kv.behind(), 0);
        let tx = kv.db.begin_read().expect("read");
        let table = tx.open_table(KV).expect("table");
        let d = table.get("d").expect("get").map(|v| v.value().to_vec());
        assert_eq!(d, Some(b"5".to_vec()));

        // While another commit holds the log, a quick commit is given back, and catching up
        // leaves what waits to that commit.
        assert!(kv.commit(put("f", b"7")).expect("commit"));
        let waiting = kv.behind();
        {
            let _held = RedbKv::lock(kv.log.as_ref().expect("log"));
            let given_back = kv.try_commit_quickly(put("g", b"8")).expect("commit");
            assert_eq!(given_back, Some(put("g", b"8")));
            kv.catch_up().expect("catch up");
            assert_eq!(kv.behind(), waiting);
        }

        // A clean stop checkpoints what waits too.
        assert!(kv.commit(put("e", b"6")).expect("commit"));
        drop((table, tx, kv));
        let kv = RedbKv::open(&path).expect("reopen");
        assert_eq!(kv.get("e").expect("get"), Some(b"6".to_vec()));
        assert_eq!(kv.checkpoint().expect("checkpoint"), 7);
    }
}
