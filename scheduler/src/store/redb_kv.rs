//! The embedded backend, the default: one redb table `kv` of text keys and byte values, in one
//! file.
//!
//! A commit is one write transaction with redb's default durability, so it returns after an
//! fsync. redb runs one write transaction at a time and never blocks readers, so a guard checked
//! inside the transaction cannot be invalidated before the commit, and a transaction has no
//! size limits ([`Limits::NONE`]).

use std::path::Path;

use redb::{
    Database, ReadableDatabase, ReadableTable, Table, TableDefinition, TableHandle,
    WriteTransaction,
};

use super::kv::{Guard, Kv, KvError, Limits, Op, Txn};

/// Every key and value of the store.
const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");

/// The store on a redb database.
#[derive(Debug)]
pub(crate) struct RedbKv {
    db: Database,
}

impl RedbKv {
    /// Opens (or creates) the database at `path`.
    ///
    /// # Errors
    ///
    /// When the file cannot be opened or created, is not a redb database, is locked by another
    /// process, or holds the tables of the scheduler's first layout (which is not migrated).
    pub(crate) fn open(path: &Path) -> Result<Self, KvError> {
        Self::new(Database::create(path).map_err(backend)?)
    }

    /// A database on another storage backend: tests use one that fails on demand.
    #[cfg(test)]
    pub(crate) fn with_backend(storage: impl redb::StorageBackend) -> Result<Self, KvError> {
        Self::new(
            redb::Builder::new()
                .create_with_backend(storage)
                .map_err(backend)?,
        )
    }

    /// Creates the table, so that read transactions can open it.
    fn new(db: Database) -> Result<Self, KvError> {
        let tx = db.begin_write().map_err(backend)?;
        let old: Vec<String> = tx
            .list_tables()
            .map_err(backend)?
            .map(|t| t.name().to_owned())
            .filter(|name| name != KV.name())
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
        tx.commit().map_err(backend)?;
        Ok(Self { db })
    }
}

impl Kv for RedbKv {
    fn limits(&self) -> Limits {
        Limits::NONE
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let tx = self.db.begin_read().map_err(backend)?;
        let table = tx.open_table(KV).map_err(backend)?;
        let value = table.get(key).map_err(backend)?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    fn scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, KvError> {
        let tx = self.db.begin_read().map_err(backend)?;
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

    fn commit(&self, txn: Txn) -> Result<bool, KvError> {
        let tx = self.db.begin_write().map_err(backend)?;
        if !apply(&tx, txn)? {
            tx.abort().map_err(backend)?;
            return Ok(false);
        }
        tx.commit().map_err(backend)?;
        Ok(true)
    }
}

/// Checks the guards and, if they hold, applies the ops; returns whether they held.
fn apply(tx: &WriteTransaction, txn: Txn) -> Result<bool, KvError> {
    let mut table = tx.open_table(KV).map_err(backend)?;
    for guard in &txn.guards {
        if !holds(&table, guard)? {
            return Ok(false);
        }
    }
    for op in txn.ops {
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
}
