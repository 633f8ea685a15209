//! The audit outbox: audit entries committed in the same transaction as the state change they
//! record, each under the index it will have in the audit log, until the audit writer has
//! appended it (see [`crate::audit`] for the whole design).
//!
//! An entry waits under `audit/<index>`, the index zero-padded to 20 digits so that keys sort as
//! numbers; its value is the entry's canonical line, the exact bytes the log will hold. The state
//! task, the only writer of the outbox, gives consecutive indices from the log's length, so a
//! committed outbox is always one run of indices. The writer deletes nothing itself: the
//! entries it has appended are deleted by the state task's next commit (a `DeleteRange` riding
//! in it), so the writer never takes the store's write lock, and no extra fsync ever stands in
//! front of a reply.

use std::ops::Range;

use super::kv::{Op, Txn};
use super::{JobWrite, Store, StoreError, put_value};

/// The outbox's key prefix.
const AUDIT: &str = "audit/";

/// The outbox key of the entry with log index `index`.
fn key(index: u64) -> String {
    format!("{AUDIT}{index:020}")
}

/// What a commit writes to the outbox besides the jobs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OutboxWrite {
    /// The log index of the first of `entries`. `None` when a commit failed and its outcome is
    /// not known (on a backend that splits a batch into several transactions, a prefix of it may
    /// have committed): then it is read back from the outbox, as one past the last index there,
    /// or `floor` if that is more.
    pub(crate) first: Option<u64>,
    /// One past the last index known committed.
    pub(crate) floor: u64,
    /// The entries' canonical lines, in the order they get their indices.
    pub(crate) entries: Vec<Vec<u8>>,
    /// Indices the audit writer has appended to the log since the last deletion: deleted by
    /// this commit. Always below `floor`, so never among the entries written.
    pub(crate) appended: Range<u64>,
}

impl OutboxWrite {
    /// Nothing to write: for a scheduler that keeps no audit log.
    pub(crate) fn nothing() -> Self {
        Self {
            first: Some(0),
            floor: 0,
            entries: Vec::new(),
            appended: 0..0,
        }
    }

    /// Whether committing it would change nothing and learn nothing.
    pub(crate) fn is_empty(&self) -> bool {
        self.first.is_some() && self.entries.is_empty() && self.appended.is_empty()
    }

    /// The ops of the entries, given the index of the first, then the deletion: each a group
    /// committed whole, in this order.
    fn groups(&self, first: u64) -> Vec<(String, Vec<Op>)> {
        let mut groups = Vec::with_capacity(self.entries.len() + 1);
        if !self.appended.is_empty() {
            groups.push((
                key(self.appended.start),
                vec![Op::DeleteRange {
                    from: key(self.appended.start),
                    to: key(self.appended.end),
                }],
            ));
        }
        for (index, line) in (first..).zip(&self.entries) {
            let key = key(index);
            let mut ops = Vec::new();
            put_value(&mut ops, &key, line);
            groups.push((key, ops));
        }
        groups
    }
}

impl Store {
    /// Writes these jobs' records (and the stdin of new ones) and `outbox` in one transaction;
    /// on a backend with limits, in as few as fit, each job's write whole and the outbox with
    /// or after the last job, in index order (see [`super`]). Returns one past the index of the
    /// last entry written: the outbox's end.
    ///
    /// # Errors
    ///
    /// When the backend fails, a record cannot be encoded, one job's write or one entry is
    /// larger than a transaction may be (then nothing is written), or the outbox cannot be read
    /// back to find the first index. Each job's write is all or nothing; on a backend with
    /// limits, the transactions committed before the failing one stay committed.
    pub(crate) fn commit(
        &self,
        jobs: &[JobWrite],
        outbox: &OutboxWrite,
    ) -> Result<u64, StoreError> {
        let first = match outbox.first {
            Some(first) => first,
            None => self.outbox_end()?.unwrap_or(0).max(outbox.floor),
        };
        let txns = self.pack_commit(jobs, outbox, first)?;
        self.commit_all(txns)?;
        Ok(first + outbox.entries.len() as u64)
    }

    /// [`Store::commit`] for the state task, which waits for it: encoded where it runs, then
    /// written there too if the backend can do it quickly ([`super::kv::Kv::try_commit_quickly`]:
    /// a small append to the write-ahead log), else on the blocking pool like any other call.
    ///
    /// # Errors
    ///
    /// As [`Store::commit`].
    pub(crate) async fn commit_batch(
        &self,
        jobs: Vec<JobWrite>,
        outbox: OutboxWrite,
    ) -> Result<u64, StoreError> {
        let Some(first) = outbox.first else {
            // The outbox is read back first: that is no quick call.
            return self.call(move |s| s.commit(&jobs, &outbox)).await;
        };
        let end = first + outbox.entries.len() as u64;
        let mut txns = self.pack_commit(&jobs, &outbox, first)?;
        if let [_] = txns.as_slice() {
            match self.kv.try_commit_quickly(txns.remove(0))? {
                None => {
                    self.counted();
                    return Ok(end);
                }
                Some(txn) => txns.push(txn),
            }
        }
        self.call(move |s| s.commit_all(txns)).await?;
        Ok(end)
    }

    /// What [`Store::commit`] writes, given the index of the outbox's first entry.
    fn pack_commit(
        &self,
        jobs: &[JobWrite],
        outbox: &OutboxWrite,
        first: u64,
    ) -> Result<Vec<Txn>, StoreError> {
        self.pack(
            jobs.iter().map(|w| (&w.record, w.new)),
            outbox.groups(first),
        )
    }

    /// Every entry waiting in the outbox, by index, in index order.
    ///
    /// # Errors
    ///
    /// When the backend cannot be read, or a key under `audit/` is not an index.
    pub(crate) fn outbox(&self) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.scan_values(AUDIT)?
            .into_iter()
            .map(|(id, line)| {
                let index = id
                    .parse::<u64>()
                    .ok()
                    .filter(|index| key(*index) == format!("{AUDIT}{id}"))
                    .ok_or_else(|| StoreError::Corrupt {
                        key: format!("{AUDIT}{id}"),
                        reason: "not an audit outbox index".to_owned(),
                    })?;
                Ok((index, line))
            })
            .collect()
    }

    /// One past the last index in the outbox, if it holds any entry.
    fn outbox_end(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.outbox()?.last().map(|(index, _)| index + 1))
    }

    /// Deletes every outbox entry below `end` (what the audit log holds), in one transaction.
    ///
    /// # Errors
    ///
    /// When the backend fails.
    pub(crate) fn delete_outbox(&self, end: u64) -> Result<(), StoreError> {
        let outbox = OutboxWrite {
            first: Some(end),
            floor: end,
            entries: Vec::new(),
            appended: 0..end,
        };
        self.commit(&[], &outbox).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::super::PART_BYTES;
    use super::super::kv::Limits;
    use super::super::kv::mem::{ETCD_DEFAULTS, MemKv};
    use super::*;

    fn lines(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| format!("{{\"entry\":{i}}}").into_bytes())
            .collect()
    }

    #[test]
    fn entries_are_kept_under_their_log_index_and_deleted_once_appended() {
        let store = Store::new(MemKv::new(Limits::NONE));
        let end = store
            .commit(
                &[],
                &OutboxWrite {
                    first: Some(7),
                    floor: 7,
                    entries: lines(3),
                    appended: 0..0,
                },
            )
            .expect("commit");
        assert_eq!(end, 10);
        let outbox = store.outbox().expect("outbox");
        assert_eq!(
            outbox,
            vec![
                (7, lines(3)[0].clone()),
                (8, lines(3)[1].clone()),
                (9, lines(3)[2].clone())
            ]
        );
        // Indices sort as numbers across a change of digit count.
        let end = store
            .commit(
                &[],
                &OutboxWrite {
                    first: Some(10),
                    floor: 10,
                    entries: lines(1),
                    appended: 7..9,
                },
            )
            .expect("commit");
        assert_eq!(end, 11);
        let indices: Vec<u64> = store
            .outbox()
            .expect("outbox")
            .into_iter()
            .map(|(i, _)| i)
            .collect();
        assert_eq!(indices, [9, 10]);
        store.delete_outbox(11).expect("delete");
        assert!(store.outbox().expect("outbox").is_empty());
    }

    /// After a failed commit the first index is read back: one past what the outbox holds, but
    /// never below what is known committed (the writer may have appended and deleted it all).
    #[test]
    fn an_unknown_first_index_is_read_back_from_the_outbox() {
        let store = Store::new(MemKv::new(ETCD_DEFAULTS));
        let unknown = |floor, entries| OutboxWrite {
            first: None,
            floor,
            entries,
            appended: 0..0,
        };
        assert_eq!(store.commit(&[], &unknown(4, lines(2))).expect("commit"), 6);
        assert_eq!(store.commit(&[], &unknown(0, lines(1))).expect("commit"), 7);
        store.delete_outbox(7).expect("delete");
        assert_eq!(store.commit(&[], &unknown(7, lines(0))).expect("commit"), 7);
        assert_eq!(
            store.commit(&[], &unknown(9, lines(1))).expect("commit"),
            10
        );
        let indices: Vec<u64> = store
            .outbox()
            .expect("outbox")
            .into_iter()
            .map(|(i, _)| i)
            .collect();
        assert_eq!(indices, [9]);
    }

    #[test]
    fn an_entry_longer_than_a_part_round_trips() {
        let store = Store::new(MemKv::new(ETCD_DEFAULTS));
        let long = vec![b'x'; PART_BYTES + 10];
        store
            .commit(
                &[],
                &OutboxWrite {
                    first: Some(0),
                    floor: 0,
                    entries: vec![long.clone(), b"short".to_vec()],
                    appended: 0..0,
                },
            )
            .expect("commit");
        assert_eq!(
            store.outbox().expect("outbox"),
            vec![(0, long), (1, b"short".to_vec())]
        );
        store.delete_outbox(1).expect("delete");
        assert_eq!(
            store.outbox().expect("outbox"),
            vec![(1, b"short".to_vec())]
        );
    }
}
