//! The RFC 6962 Merkle tree over the log's entries, held as the "stored hashes" of Go's
//! `sumdb/tlog` (every complete subtree's hash, about two per entry), with inclusion and
//! consistency proofs.
//!
//! Leaf hash: `SHA-256(0x00 || entry bytes)`; interior node: `SHA-256(0x01 || left || right)`;
//! the empty tree's root is `SHA-256("")`.

use serde::{Deserialize, Serialize};
use tlog_tiles::{Hash, HashReader};

use crate::AuditError;

/// An in-memory Merkle tree: the stored hashes of `size` leaves.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    /// Stored hashes, indexed by `tlog_tiles::stored_hash_index`; always exactly
    /// `stored_hash_count(size)` of them.
    stored: Vec<Hash>,
    size: u64,
}

impl HashReader for Tree {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&i| {
                usize::try_from(i)
                    .ok()
                    .and_then(|i| self.stored.get(i).copied())
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}

impl Tree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Adds a leaf (an entry's exact bytes); returns its index.
    ///
    /// # Errors
    /// [`AuditError::Tree`] on an internal inconsistency.
    pub fn push(&mut self, leaf: &[u8]) -> Result<u64, AuditError> {
        let index = self.size;
        let hashes = tlog_tiles::stored_hashes(index, leaf, self)?;
        self.stored.extend(hashes);
        self.size += 1;
        Ok(index)
    }

    /// The root hash of the first `size` leaves.
    ///
    /// # Errors
    /// [`AuditError::OutOfRange`] when `size` exceeds the tree.
    pub fn root(&self, size: u64) -> Result<Hash, AuditError> {
        self.check_size(size)?;
        Ok(tlog_tiles::tree_hash(size, self)?)
    }

    /// The proof that leaf `index` is in the tree of the first `size` leaves.
    ///
    /// # Errors
    /// [`AuditError::OutOfRange`] unless `index < size <= self.size()`.
    pub fn prove_inclusion(&self, index: u64, size: u64) -> Result<InclusionProof, AuditError> {
        self.check_size(size)?;
        if index >= size {
            return Err(AuditError::OutOfRange(format!(
                "entry {index} is not in a tree of size {size}"
            )));
        }
        Ok(InclusionProof(tlog_tiles::prove_record(size, index, self)?))
    }

    /// The proof that the tree of `old` leaves is a prefix of the tree of `new` leaves.
    ///
    /// # Errors
    /// [`AuditError::OutOfRange`] unless `1 <= old <= new <= self.size()`.
    pub fn prove_consistency(&self, old: u64, new: u64) -> Result<ConsistencyProof, AuditError> {
        self.check_size(new)?;
        if old == 0 || old > new {
            return Err(AuditError::OutOfRange(format!(
                "no consistency proof from size {old} to size {new}"
            )));
        }
        Ok(ConsistencyProof(tlog_tiles::prove_tree(new, old, self)?))
    }

    fn check_size(&self, size: u64) -> Result<(), AuditError> {
        if size > self.size {
            return Err(AuditError::OutOfRange(format!(
                "tree size {size} exceeds the log's {} entries",
                self.size
            )));
        }
        Ok(())
    }
}

/// The hash of a leaf: `SHA-256(0x00 || leaf)`.
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    tlog_tiles::record_hash(leaf)
}

/// An inclusion (audit) proof: the sibling hashes from the leaf up to the root.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct InclusionProof(#[serde(with = "hashes")] pub Vec<Hash>);

impl InclusionProof {
    /// Checks that `leaf` is entry `index` of the tree of `size` leaves with root `root`.
    ///
    /// # Errors
    /// [`AuditError::Proof`] when it is not.
    pub fn verify(&self, leaf: &[u8], index: u64, size: u64, root: Hash) -> Result<(), AuditError> {
        if index >= size || self.0.len() > 64 {
            return Err(AuditError::Proof(format!(
                "an inclusion proof of entry {index} in a tree of size {size} cannot have {} hashes",
                self.0.len()
            )));
        }
        tlog_tiles::check_record(&self.0, size, root, index, leaf_hash(leaf)).map_err(|e| {
            AuditError::Proof(format!(
                "entry {index} is not in the tree of size {size}: {e}"
            ))
        })
    }
}

/// A consistency proof between two tree sizes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConsistencyProof(#[serde(with = "hashes")] pub Vec<Hash>);

impl ConsistencyProof {
    /// Checks that the tree of `old` leaves with root `old_root` is a prefix of the tree of `new`
    /// leaves with root `new_root`.
    ///
    /// # Errors
    /// [`AuditError::Proof`] when it is not.
    pub fn verify(
        &self,
        old: u64,
        old_root: Hash,
        new: u64,
        new_root: Hash,
    ) -> Result<(), AuditError> {
        if old == 0 || old > new || self.0.len() > 128 {
            return Err(AuditError::Proof(format!(
                "no consistency proof from size {old} to size {new} has {} hashes",
                self.0.len()
            )));
        }
        tlog_tiles::check_tree(&self.0, new, new_root, old, old_root)
            .map_err(|e| AuditError::Proof(format!("tree {new} does not extend tree {old}: {e}")))
    }
}

/// Hashes as standard base64 strings, the encoding checkpoints use.
mod hashes {
    use serde::{Deserialize as _, Deserializer, Serializer};
    use tlog_tiles::Hash;

    pub(super) fn serialize<S: Serializer>(hashes: &[Hash], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(hashes.iter().map(ToString::to_string))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Hash>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .enumerate()
            .map(|(i, h)| {
                Hash::parse_hash(h).map_err(|e| {
                    serde::de::Error::custom(format!(
                        "hash {i} ({h:?}) is not a base64 SHA-256 hash: {e}"
                    ))
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree_of(leaves: &[&[u8]]) -> Tree {
        let mut tree = Tree::new();
        for leaf in leaves {
            tree.push(leaf).expect("push");
        }
        tree
    }

    fn hex_root(tree: &Tree, size: u64) -> String {
        hex::encode(tree.root(size).expect("root").0)
    }

    /// RFC 6962 §2.1: the empty tree's hash is SHA-256 of the empty string.
    #[test]
    fn empty_tree_root_is_sha256_of_nothing() {
        assert_eq!(
            hex_root(&Tree::new(), 0),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    /// The roots of the first 1..=8 leaves of the RFC 6962 test tree used by Certificate
    /// Transparency's reference implementations (`merkle_tree_test`).
    #[test]
    fn roots_match_the_rfc6962_test_vectors() {
        let leaves: [&[u8]; 8] = [
            b"",
            &[0x00],
            &[0x10],
            &[0x20, 0x21],
            &[0x30, 0x31],
            &[0x40, 0x41, 0x42, 0x43],
            &[0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57],
            &[
                0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d,
                0x6e, 0x6f,
            ],
        ];
        let expected = [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        let tree = tree_of(&leaves);
        for (size, root) in (1..).zip(expected) {
            assert_eq!(hex_root(&tree, size), root, "root of size {size}");
        }
        // The leaf hash is SHA-256(0x00 || leaf): for the empty leaf, the size-1 root.
        assert_eq!(hex::encode(leaf_hash(b"").0), expected[0]);
    }

    #[test]
    fn inclusion_proofs_round_trip_for_every_index_of_many_sizes() {
        let leaves: Vec<Vec<u8>> = (0..70u32)
            .map(|i| format!("entry {i}").into_bytes())
            .collect();
        let mut tree = Tree::new();
        for leaf in &leaves {
            tree.push(leaf).expect("push");
        }
        for size in 1..=70u64 {
            let root = tree.root(size).expect("root");
            for index in 0..size {
                let proof = tree.prove_inclusion(index, size).expect("prove");
                let leaf = &leaves[usize::try_from(index).expect("index")];
                proof.verify(leaf, index, size, root).expect("verifies");
                // The same proof does not vouch for another leaf, index or root.
                assert!(proof.verify(b"forged", index, size, root).is_err());
                if size > 1 {
                    assert!(proof.verify(leaf, (index + 1) % size, size, root).is_err());
                }
                assert!(proof.verify(leaf, index, size, leaf_hash(b"x")).is_err());
            }
        }
    }

    #[test]
    fn consistency_proofs_round_trip_for_many_size_pairs() {
        let mut tree = Tree::new();
        for i in 0..40u32 {
            tree.push(format!("entry {i}").as_bytes()).expect("push");
        }
        for new in 1..=40u64 {
            let new_root = tree.root(new).expect("root");
            for old in 1..=new {
                let old_root = tree.root(old).expect("root");
                let proof = tree.prove_consistency(old, new).expect("prove");
                proof
                    .verify(old, old_root, new, new_root)
                    .expect("consistent");
                if old < new {
                    assert!(proof.verify(old, new_root, new, old_root).is_err());
                    assert!(proof.verify(old, leaf_hash(b"x"), new, new_root).is_err());
                }
            }
        }
    }

    #[test]
    fn proofs_out_of_range_are_refused() {
        let tree = tree_of(&[b"a", b"b"]);
        assert!(tree.prove_inclusion(2, 2).is_err());
        assert!(tree.prove_inclusion(0, 3).is_err());
        assert!(tree.prove_consistency(0, 2).is_err());
        assert!(tree.prove_consistency(2, 1).is_err());
        assert!(tree.root(3).is_err());
    }

    #[test]
    fn proofs_serialize_as_base64_hashes() {
        let tree = tree_of(&[b"a", b"b", b"c"]);
        let proof = tree.prove_inclusion(0, 3).expect("prove");
        let json = serde_json::to_string(&proof).expect("json");
        assert!(json.starts_with("[\"") && json.ends_with("=\"]"), "{json}");
        let back: InclusionProof = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, proof);
    }
}
