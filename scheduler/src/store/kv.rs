//! The storage seam: an ordered map from text keys to bytes, read by key or by prefix and
//! written by guarded transactions. It is shaped by what both backends give, so that each maps
//! onto it one to one:
//!
//! | here | etcd v3 (a later issue) | redb ([`super::redb_kv`]) |
//! |---|---|---|
//! | [`Kv::get`] | `Range(key)` | a read transaction's `get` |
//! | [`Kv::scan`] | `Range(prefix, prefix_end)`, sorted by key, paged at one revision | a read transaction's `range(prefix..)` |
//! | [`Kv::commit`] | `Txn { compare: guards, success: ops }` | one write transaction, its ops synced to the write-ahead log first |
//! | [`Guard::Absent`] | `Compare(VERSION(key) = 0)` | `get(key)` is `None` |
//! | [`Guard::Present`] | `Compare(VERSION(key) > 0)` | `get(key)` is `Some` |
//! | [`Guard::Equals`] | `Compare(VALUE(key) = value)`, false for a missing key | `get(key)` is `Some(value)` |
//! | [`Op::Put`] | `RequestPut` | `insert` |
//! | [`Op::DeleteRange`] | `RequestDeleteRange(from, to)` | `retain_in(from..to, false)` |
//!
//! Keys order bytewise, as in both backends. One read is one consistent snapshot; two reads
//! may see different ones, so whoever reads several things to write back guards the write.
//!
//! # Rules every transaction follows
//!
//! Because etcd refuses the others:
//!
//! - A key is put at most once, and no key put falls in a range deleted, in one transaction
//!   (etcd: "duplicate key given in txn request"). Guards may name any key.
//! - At most [`Limits::max_ops`] ops and as many guards (etcd: `--max-txn-ops`, 128 by default).
//! - At most [`Limits::max_bytes`] as counted by [`Txn::size`] (etcd: `--max-request-bytes`,
//!   1.5 MiB by default, which bounds every value too).
//!
//! Each backend tells its limits through [`Kv::limits`], and the store splits its writes to fit
//! them (see [`super`]); one redb write transaction has no such limits, so on redb nothing is
//! ever split. So the etcd backend needs no `--max-txn-ops` as large as the scheduler's batch
//! (raising it, and `--max-request-bytes`, only saves commits); what it does need is a
//! `--max-request-bytes` above the largest record, which a job holding a large result can make
//! larger than the default.

use std::fmt;

/// Bytes [`Txn::size`] counts for each guard and op besides its key and value: more than etcd's
/// protobuf framing of one, so that a transaction within [`Limits::max_bytes`] is a request
/// within `--max-request-bytes`.
const OP_OVERHEAD_BYTES: usize = 32;

/// An ordered key-value map with guarded, durable transactions.
pub(crate) trait Kv: Send + Sync + fmt::Debug + 'static {
    /// What one transaction may hold.
    fn limits(&self) -> Limits;

    /// The value under `key`.
    ///
    /// # Errors
    ///
    /// When the backend cannot be read.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError>;

    /// Every key starting with `prefix`, with its value, in key order, from one snapshot.
    ///
    /// # Errors
    ///
    /// When the backend cannot be read.
    fn scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, KvError>;

    /// Applies every op of `txn` atomically if every guard holds, and returns `Ok(true)` once
    /// the change is durable; applies nothing and returns `Ok(false)` if a guard does not hold.
    ///
    /// # Errors
    ///
    /// When the backend fails, or refuses a transaction breaking the rules in the module
    /// documentation; nothing is applied then either.
    fn commit(&self, txn: Txn) -> Result<bool, KvError>;

    /// Commits `txn` as [`Kv::commit`] does if that is quick enough to wait for on an async
    /// runtime's worker: a small unguarded transaction appended to a log that has been
    /// answering fast, which no other commit holds. Otherwise gives it back untouched, for the
    /// caller to commit where it may wait (the blocking pool). Never quick unless a backend says.
    ///
    /// # Errors
    ///
    /// As [`Kv::commit`].
    fn try_commit_quickly(&self, txn: Txn) -> Result<Option<Txn>, KvError> {
        Ok(Some(txn))
    }

    /// How many durable commits wait to be applied where reads find them ([`Kv::catch_up`]).
    fn behind(&self) -> usize {
        0
    }

    /// Applies the commits that are durable but not yet where reads find them, which a read or
    /// the next commit would otherwise do first.
    ///
    /// # Errors
    ///
    /// When the backend fails; the commits stay durable, and the next call tries again.
    fn catch_up(&self) -> Result<(), KvError> {
        Ok(())
    }
}

/// What one transaction may hold; see the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Most ops, and separately most guards, in one transaction.
    pub(crate) max_ops: usize,
    /// Most bytes in one transaction, as counted by [`Txn::size`].
    pub(crate) max_bytes: usize,
}

impl Limits {
    /// No limits: one redb write transaction takes any number of ops of any size.
    pub(crate) const NONE: Self = Self {
        max_ops: usize::MAX,
        max_bytes: usize::MAX,
    };

    /// Whether a transaction of these counts fits.
    pub(crate) fn admit(&self, guards: usize, ops: usize, bytes: usize) -> bool {
        guards <= self.max_ops && ops <= self.max_ops && bytes <= self.max_bytes
    }
}

/// Ops applied together if every guard holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Txn {
    pub(crate) guards: Vec<Guard>,
    pub(crate) ops: Vec<Op>,
}

impl Txn {
    /// The bytes this transaction weighs against [`Limits::max_bytes`].
    pub(crate) fn size(&self) -> usize {
        let guards: usize = self.guards.iter().map(Guard::size).sum();
        let ops: usize = self.ops.iter().map(Op::size).sum();
        guards + ops
    }

    /// Whether it fits these limits.
    pub(crate) fn fits(&self, limits: Limits) -> bool {
        limits.admit(self.guards.len(), self.ops.len(), self.size())
    }
}

/// A condition on one key, checked when the transaction commits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Guard {
    /// No value under the key.
    Absent(String),
    /// Some value under the key.
    Present(String),
    /// Exactly this value under the key. A rewrite with the same value since it was read goes
    /// unnoticed: etcd compares the value, and redb keeps no versions to compare.
    Equals(String, Vec<u8>),
}

impl Guard {
    /// See [`Txn::size`].
    pub(crate) fn size(&self) -> usize {
        OP_OVERHEAD_BYTES
            + match self {
                Self::Absent(key) | Self::Present(key) => key.len(),
                Self::Equals(key, value) => key.len() + value.len(),
            }
    }
}

/// One change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// Sets the value under a key.
    Put(String, Vec<u8>),
    /// Removes every key `k` with `from <= k < to`.
    DeleteRange { from: String, to: String },
}

impl Op {
    /// See [`Txn::size`].
    pub(crate) fn size(&self) -> usize {
        OP_OVERHEAD_BYTES
            + match self {
                Self::Put(key, value) => key.len() + value.len(),
                Self::DeleteRange { from, to } => from.len() + to.len(),
            }
    }
}

/// A backend failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KvError {
    /// I/O, corruption, a full disk, a lost connection.
    #[error("{0}")]
    Backend(Box<dyn std::error::Error + Send + Sync>),
    /// A transaction breaking the rules in the module documentation; the store sends none.
    #[error("transaction refused: {0}")]
    Refused(String),
}

/// An in-memory backend with etcd's rules, for tests of the store's splitting and guards.
#[cfg(test)]
pub(crate) mod mem {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Mutex, PoisonError};

    use super::{Guard, Kv, KvError, Limits, Op, Txn};

    /// etcd's defaults: `--max-txn-ops` 128 and `--max-request-bytes` 1.5 MiB.
    pub(crate) const ETCD_DEFAULTS: Limits = Limits {
        max_ops: 128,
        max_bytes: 1536 << 10,
    };

    #[derive(Debug)]
    pub(crate) struct MemKv {
        limits: Limits,
        map: Mutex<BTreeMap<String, Vec<u8>>>,
        /// Transactions applied.
        pub(crate) commits: AtomicUsize,
    }

    impl MemKv {
        pub(crate) fn new(limits: Limits) -> Self {
            Self {
                limits,
                map: Mutex::default(),
                commits: AtomicUsize::new(0),
            }
        }

        fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
            self.map.lock().unwrap_or_else(PoisonError::into_inner)
        }

        /// Refuses what etcd refuses.
        fn check(&self, txn: &Txn) -> Result<(), KvError> {
            if !txn.fits(self.limits) {
                return Err(KvError::Refused(format!(
                    "{} guards, {} ops, {} bytes",
                    txn.guards.len(),
                    txn.ops.len(),
                    txn.size()
                )));
            }
            let mut puts = std::collections::BTreeSet::new();
            for op in &txn.ops {
                if let Op::Put(key, _) = op
                    && !puts.insert(key)
                {
                    return Err(KvError::Refused(format!("{key} put twice")));
                }
            }
            for op in &txn.ops {
                let deleted = match op {
                    Op::Put(..) => None,
                    Op::DeleteRange { from, to } => {
                        puts.iter().copied().find(|key| from <= *key && *key < to)
                    }
                };
                if let Some(key) = deleted {
                    return Err(KvError::Refused(format!("{key} put and deleted")));
                }
            }
            Ok(())
        }
    }

    impl Kv for MemKv {
        fn limits(&self) -> Limits {
            self.limits
        }

        fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
            Ok(self.map().get(key).cloned())
        }

        fn scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, KvError> {
            Ok(self
                .map()
                .range(prefix.to_owned()..)
                .take_while(|(key, _)| key.starts_with(prefix))
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect())
        }

        fn commit(&self, txn: Txn) -> Result<bool, KvError> {
            self.check(&txn)?;
            let mut map = self.map();
            let holds = txn.guards.iter().all(|guard| match guard {
                Guard::Absent(key) => !map.contains_key(key),
                Guard::Present(key) => map.contains_key(key),
                Guard::Equals(key, value) => map.get(key) == Some(value),
            });
            if !holds {
                return Ok(false);
            }
            for op in txn.ops {
                match op {
                    Op::Put(key, value) => {
                        map.insert(key, value);
                    }
                    Op::DeleteRange { from, to } => {
                        map.retain(|key, _| !(from <= *key && *key < to));
                    }
                }
            }
            self.commits.fetch_add(1, Ordering::SeqCst);
            Ok(true)
        }
    }
}

/// What every backend must do; each backend's tests run it.
#[cfg(test)]
pub(crate) fn check_contract(kv: &dyn Kv) {
    let put = |key: &str, value: &[u8]| Op::Put(key.to_owned(), value.to_vec());
    let commit = |guards: Vec<Guard>, ops: Vec<Op>| kv.commit(Txn { guards, ops }).expect("commit");
    let all = || kv.scan("").expect("scan");

    assert_eq!(kv.get("a").expect("get"), None);
    assert_eq!(all(), vec![]);

    // Scans are in key order, whatever the order of writing, and bounded by the prefix.
    let keys = ["b", "a/2", "a", "a0", "a/10", "a/1", "a-", "\u{e9}"];
    assert!(commit(
        vec![],
        keys.iter().map(|k| put(k, k.as_bytes())).collect()
    ));
    let mut sorted = keys.map(str::to_owned).to_vec();
    sorted.sort();
    let scanned: Vec<String> = all().into_iter().map(|(k, _)| k).collect();
    assert_eq!(scanned, sorted);
    let under_a: Vec<(String, Vec<u8>)> = kv.scan("a/").expect("scan");
    assert_eq!(
        under_a,
        ["a/1", "a/10", "a/2"]
            .map(|k| (k.to_owned(), k.as_bytes().to_vec()))
            .to_vec()
    );
    assert_eq!(kv.get("a").expect("get").as_deref(), Some(&b"a"[..]));

    // Guards that hold let every op through.
    assert!(commit(
        vec![
            Guard::Absent("c".into()),
            Guard::Present("a".into()),
            Guard::Equals("b".into(), b"b".to_vec()),
        ],
        vec![
            put("c", b""),
            Op::DeleteRange {
                from: "b".into(),
                to: "b\0".into(),
            },
            Op::DeleteRange {
                from: "a/10".into(),
                to: "a0".into()
            },
        ],
    ));
    let scanned: Vec<String> = all().into_iter().map(|(k, _)| k).collect();
    assert_eq!(scanned, ["a", "a-", "a/1", "a0", "c", "\u{e9}"]);
    assert_eq!(kv.get("c").expect("get"), Some(vec![]));

    // One guard that fails applies nothing at all.
    let before = all();
    let failing = [
        Guard::Absent("a".into()),
        Guard::Present("b".into()),
        Guard::Equals("a".into(), b"not a".to_vec()),
        Guard::Equals("b".into(), vec![]),
        Guard::Equals("c".into(), b"c".to_vec()),
    ];
    for guard in failing {
        let guards = vec![Guard::Present("a".into()), guard.clone()];
        let ops = vec![
            put("a", b"changed"),
            put("new", b"new"),
            Op::DeleteRange {
                from: "c".into(),
                to: "d".into(),
            },
        ];
        assert!(!commit(guards, ops), "{guard:?} held");
        assert_eq!(all(), before, "{guard:?} failed but something changed");
    }
}

#[cfg(test)]
mod tests {
    use super::mem::{ETCD_DEFAULTS, MemKv};
    use super::*;

    #[test]
    fn the_test_backend_keeps_the_contract() {
        check_contract(&MemKv::new(Limits::NONE));
    }

    #[test]
    fn the_test_backend_refuses_what_etcd_refuses() {
        let kv = MemKv::new(ETCD_DEFAULTS);
        let put = |key: &str, len: usize| Op::Put(key.to_owned(), vec![0; len]);
        let refused = [
            (0..129).map(|i| put(&format!("k{i}"), 0)).collect(),
            vec![put("big", ETCD_DEFAULTS.max_bytes)],
            vec![put("k", 0), put("k", 1)],
            vec![
                put("k", 0),
                Op::DeleteRange {
                    from: "k".into(),
                    to: "k\0".into(),
                },
            ],
            vec![
                put("a/1", 0),
                Op::DeleteRange {
                    from: "a/".into(),
                    to: "a0".into(),
                },
            ],
        ];
        for ops in refused {
            let txn = Txn {
                guards: vec![],
                ops,
            };
            assert!(
                matches!(kv.commit(txn.clone()), Err(KvError::Refused(_))),
                "{txn:?}"
            );
        }
        assert_eq!(kv.scan("").expect("scan"), vec![]);
        let fits = Txn {
            guards: vec![],
            ops: (0..128).map(|i| put(&format!("k{i}"), 0)).collect(),
        };
        assert!(kv.commit(fits).expect("fits"));
    }
}
