//! Checking a whole log: every entry parsed, every logged execution receipt's host signature
//! checked, the tree recomputed from the entries' bytes, every checkpoint's signature and root
//! checked against it, and successive checkpoints proven consistent. The first failure is
//! returned, naming the entry or checkpoint.

use std::path::Path;

use serde::Serialize;

use crate::AuditError;
use crate::checkpoint::SignedCheckpoint;
use crate::entry::Entry;
use crate::key::AuditVerifier;
use crate::store::{FileLog, Storage};
use crate::tree::Tree;

/// What a successful verification found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// How many entries the log holds.
    pub entries: u64,
    /// The sizes of the checkpoints checked, ascending.
    pub checkpoints: Vec<u64>,
    /// The log's origin (from its checkpoints), if any.
    pub origin: Option<String>,
    /// The latest checkpoint's size and base64 root hash, if any.
    pub latest: Option<(u64, String)>,
    /// Entries after the latest checkpoint: present but not yet signed.
    pub unsigned: u64,
    /// Execution receipts among the entries (each one's host signature checked by
    /// [`verify_log`]).
    pub receipts: u64,
}

/// Verifies the log in `dir` offline with the audit public key.
///
/// # Errors
/// The first problem found: [`AuditError::MalformedEntry`], [`AuditError::TornTail`],
/// [`AuditError::BadReceipt`], [`AuditError::MalformedCheckpoint`], [`AuditError::BadSignature`],
/// [`AuditError::OriginMismatch`], [`AuditError::MissingEntries`], [`AuditError::RootMismatch`],
/// [`AuditError::Inconsistent`], or [`AuditError::NoCheckpoint`] when entries exist but nothing
/// signs them; [`AuditError::Io`] when the files cannot be read.
pub fn verify_log(dir: &Path, verifier: &AuditVerifier) -> Result<Report, AuditError> {
    let store = FileLog::existing(dir)?;
    let checked = check(&store, Some(verifier))?;
    if checked.checkpoints.is_empty() && checked.tree.size() > 0 {
        return Err(AuditError::NoCheckpoint {
            entries: checked.tree.size(),
        });
    }
    Ok(checked.report())
}

/// A log's contents, checked.
pub(crate) struct Checked {
    pub(crate) entries: Vec<Vec<u8>>,
    /// How many entries are execution receipts.
    pub(crate) receipts: u64,
    pub(crate) tree: Tree,
    /// Ascending by size.
    pub(crate) checkpoints: Vec<SignedCheckpoint>,
}

impl Checked {
    pub(crate) fn report(&self) -> Report {
        let latest = self.checkpoints.last();
        Report {
            entries: self.tree.size(),
            checkpoints: self
                .checkpoints
                .iter()
                .map(SignedCheckpoint::size)
                .collect(),
            origin: latest.map(|c| c.origin().to_owned()),
            latest: latest.map(|c| (c.size(), c.root().to_string())),
            unsigned: self.tree.size() - latest.map_or(0, SignedCheckpoint::size),
            receipts: self.receipts,
        }
    }
}

/// Loads and checks a store. Without a verifier, signatures (of checkpoints and of receipts) are
/// not checked (opening a log for writing needs no public key), but everything else is.
pub(crate) fn check(
    store: &impl Storage,
    verifier: Option<&AuditVerifier>,
) -> Result<Checked, AuditError> {
    let entries = store.load_entries()?;
    let mut tree = Tree::new();
    let mut receipts = 0;
    for (index, line) in entries.iter().enumerate() {
        let entry = Entry::from_line(line).map_err(|reason| AuditError::MalformedEntry {
            index: index as u64,
            reason,
        })?;
        // A receipt carries its host's public key, so its signature is checkable offline; the
        // key itself was checked by the scheduler against what the node registered.
        if matches!(entry, Entry::Receipt(_)) {
            receipts += 1;
        }
        if verifier.is_some()
            && let Entry::Receipt(logged) = &entry
        {
            logged
                .receipt
                .verify_signature()
                .map_err(|e| AuditError::BadReceipt {
                    index: index as u64,
                    reason: e.to_string(),
                })?;
        }
        tree.push(line)?;
    }

    let mut checkpoints = Vec::new();
    for (name, bytes) in store.load_checkpoints()? {
        let malformed = |reason: String| AuditError::MalformedCheckpoint {
            name: name.clone(),
            reason,
        };
        let size: u64 = name
            .parse()
            .ok()
            .filter(|size: &u64| size.to_string() == name)
            .ok_or_else(|| malformed("its file name is not a tree size".into()))?;
        let checkpoint = SignedCheckpoint::parse(&bytes).map_err(malformed)?;
        if checkpoint.size() != size {
            return Err(malformed(format!(
                "it holds a checkpoint of size {}",
                checkpoint.size()
            )));
        }
        checkpoints.push(checkpoint);
    }
    checkpoints.sort_by_key(SignedCheckpoint::size);

    let mut previous: Option<&SignedCheckpoint> = None;
    for checkpoint in &checkpoints {
        let size = checkpoint.size();
        if let Some(verifier) = verifier {
            checkpoint.check_signature(verifier)?;
        }
        if let Some(first) = checkpoints.first()
            && first.origin() != checkpoint.origin()
        {
            return Err(AuditError::OriginMismatch {
                size,
                found: checkpoint.origin().to_owned(),
                expected: first.origin().to_owned(),
            });
        }
        if size > tree.size() {
            return Err(AuditError::MissingEntries {
                size,
                entries: tree.size(),
            });
        }
        if tree.root(size)? != checkpoint.root() {
            let first = previous.map_or(0, SignedCheckpoint::size);
            return Err(AuditError::RootMismatch {
                size,
                first,
                last: size.saturating_sub(1).max(first),
            });
        }
        // Both roots were just recomputed from the entries, so this holds unless the proof
        // machinery itself is wrong; it is what a monitor holding only the two checkpoints
        // would check.
        if let Some(previous) = previous.filter(|p| p.size() > 0) {
            tree.prove_consistency(previous.size(), size)?
                .verify(previous.size(), previous.root(), size, checkpoint.root())
                .map_err(|e| AuditError::Inconsistent {
                    old: previous.size(),
                    new: size,
                    reason: e.to_string(),
                })?;
        }
        previous = Some(checkpoint);
    }
    Ok(Checked {
        entries,
        receipts,
        tree,
        checkpoints,
    })
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::entry::{Admission, Decision, Finish, Start};
    use crate::key::{AuditSigner, SecretKey};
    use crate::log::Log;
    use crate::store::{CHECKPOINTS_DIR, ENTRIES_FILE};

    const ORIGIN: &str = "vauban.audit/test";

    fn signer() -> AuditSigner {
        AuditSigner::new(ORIGIN, SecretKey::from_seed(&[1; 32])).expect("signer")
    }

    fn entry(i: u64) -> Entry {
        match i % 3 {
            0 => Entry::Admission(Admission {
                at_ms: 1_000 + i,
                decision: Decision::Accepted,
                subject: crate::entry::Subject::Job,
                job: format!("job-{i}"),
                module: format!("sha256:{}", "cd".repeat(32)),
                namespace: "default".into(),
                reason: "grant g1".into(),
            }),
            1 => Entry::Start(Start {
                at_ms: 1_000 + i,
                job: format!("job-{i}"),
                attempt: 1,
                node: "n1".into(),
            }),
            _ => Entry::Finish(Finish {
                at_ms: 1_000 + i,
                job: format!("job-{i}"),
                attempt: 1,
                node: "n1".into(),
                outcome: "exited(0)".into(),
            }),
        }
    }

    /// A log of `entries` entries with a checkpoint after each size in `checkpoints`.
    fn log_with(entries: u64, checkpoints: &[u64]) -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("log");
        let mut log = Log::open(&dir).expect("open");
        let signer = signer();
        for i in 0..entries {
            log.append(&entry(i)).expect("append");
            if checkpoints.contains(&(i + 1)) {
                log.checkpoint(&signer).expect("checkpoint");
            }
        }
        (tmp, dir)
    }

    fn verify(dir: &Path) -> Result<Report, AuditError> {
        verify_log(dir, &signer().verifier())
    }

    fn lines(dir: &Path) -> Vec<String> {
        std::fs::read_to_string(dir.join(ENTRIES_FILE))
            .expect("read")
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn write_lines(dir: &Path, lines: &[String]) {
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(dir.join(ENTRIES_FILE), text).expect("write");
    }

    /// Runs `tamper` on a fresh log of 6 entries checkpointed at 2, 4 and 6, and checks that
    /// verification fails with a message containing `expected`.
    fn check_tamper(tamper: impl FnOnce(&Path), expected: &str) {
        let (_tmp, dir) = log_with(6, &[2, 4, 6]);
        verify(&dir).expect("intact log verifies");
        tamper(&dir);
        let err = verify(&dir).expect_err("tampering detected");
        let message = err.to_string();
        assert!(
            message.contains(expected),
            "{message:?} should contain {expected:?}"
        );
        // Opening it for writing refuses too, unless only a signature changed.
        if !matches!(err, AuditError::BadSignature { .. }) {
            assert!(Log::open(&dir).is_err(), "open accepts: {message}");
        }
    }

    #[test]
    fn an_intact_log_verifies() {
        let (_tmp, dir) = log_with(7, &[2, 4, 6]);
        let report = verify(&dir).expect("verifies");
        assert_eq!(report.entries, 7);
        assert_eq!(report.checkpoints, vec![2, 4, 6]);
        assert_eq!(report.origin.as_deref(), Some(ORIGIN));
        assert_eq!(report.unsigned, 1);
        let log = Log::open(&dir).expect("reopen");
        assert_eq!(log.report(), report);
    }

    #[test]
    fn an_empty_log_verifies_and_entries_without_a_checkpoint_do_not() {
        let (_tmp, dir) = log_with(0, &[]);
        assert_eq!(verify(&dir).expect("verifies").entries, 0);
        let (_tmp, dir) = log_with(2, &[]);
        let err = verify(&dir).expect_err("unsigned");
        assert!(err.to_string().contains("no checkpoint"), "{err}");
    }

    fn receipt_entry(at_ms: u64) -> Entry {
        let receipt = crate::receipt::Receipt {
            job: "job-r".into(),
            attempt: 1,
            module: format!("sha256:{}", "ab".repeat(32)),
            capabilities: vec!["env:MODE".into()],
            node: "n1".into(),
            started_ms: at_ms,
            ended_ms: at_ms + 5,
            outcome: "exited(0)".into(),
            fuel: 10,
            peak_memory_bytes: 65_536,
        }
        .sign(&SecretKey::from_seed(&[4; 32]))
        .expect("sign");
        Entry::Receipt(crate::entry::ReceiptEntry { at_ms, receipt })
    }

    #[test]
    fn a_receipt_whose_signature_breaks_is_named() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("log");
        let mut log = Log::open(&dir).expect("open");
        log.append(&entry(0)).expect("append");
        let more = [receipt_entry(2_000), entry(2)].map(|e| e.to_line().expect("line"));
        assert_eq!(log.append_lines(&[&more[0], &more[1]]).expect("append"), 1);
        // A line that is not a canonical entry is refused before anything is written.
        let err = log
            .append_lines(&[&more[0], b"{\"kind\":\"start\"}"])
            .expect_err("malformed");
        assert!(
            matches!(err, AuditError::MalformedEntry { index: 4, .. }),
            "{err}"
        );
        assert_eq!(log.len(), 3);
        log.checkpoint(&signer()).expect("checkpoint");
        assert_eq!(log.report().receipts, 1);
        drop(log);
        let report = verify(&dir).expect("an intact log with a receipt verifies");
        assert_eq!((report.entries, report.receipts), (3, 1));

        // One byte of the outcome: still canonical JSON, but the host's signature no longer
        // matches, and that is reported before the checkpoint's root.
        let mut l = lines(&dir);
        l[1] = l[1].replace("exited(0)", "exited(1)");
        write_lines(&dir, &l);
        let err = verify(&dir).expect_err("tampered receipt");
        assert!(
            matches!(err, AuditError::BadReceipt { index: 1, .. }),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("entry 1 is a receipt whose host signature does not verify"),
            "{err}"
        );
        // Opening for writing checks no signatures, but the root still differs.
        assert!(Log::open(&dir).is_err());
    }

    #[test]
    fn an_edited_entry_is_named() {
        // Still valid, canonical JSON: only the checkpoint catches it.
        check_tamper(
            |dir| {
                let mut l = lines(dir);
                l[4] = l[4].replace("job-4", "job-9");
                write_lines(dir, &l);
            },
            "checkpoint 6 does not match the entries: an entry in 4..=5",
        );
        check_tamper(
            |dir| {
                let mut l = lines(dir);
                l[0] = l[0].replace("accepted", "refused");
                write_lines(dir, &l);
            },
            "checkpoint 2 does not match the entries: an entry in 0..=1",
        );
        // No longer JSON: named exactly.
        check_tamper(
            |dir| {
                let mut l = lines(dir);
                l[3].insert(0, 'x');
                write_lines(dir, &l);
            },
            "entry 3 is not a valid audit entry",
        );
        // Same meaning, different bytes.
        check_tamper(
            |dir| {
                let mut l = lines(dir);
                l[1] = l[1].replace(",", ", ");
                write_lines(dir, &l);
            },
            "entry 1 is not a valid audit entry: not in canonical form",
        );
    }

    #[test]
    fn a_checkpoint_per_entry_names_the_edited_entry_exactly() {
        let (_tmp, dir) = log_with(4, &[1, 2, 3, 4]);
        let mut l = lines(&dir);
        l[2] = l[2].replace("n1", "n2");
        write_lines(&dir, &l);
        let err = verify(&dir).expect_err("detected");
        assert!(
            err.to_string()
                .contains("checkpoint 3 does not match the entries: entry 2 was changed"),
            "{err}"
        );
    }

    #[test]
    fn a_removed_entry_is_detected() {
        check_tamper(
            |dir| {
                let mut l = lines(dir);
                l.remove(3);
                write_lines(dir, &l);
            },
            "checkpoint 4 does not match the entries: an entry in 2..=3",
        );
        check_tamper(
            |dir| {
                let mut l = lines(dir);
                l.pop();
                write_lines(dir, &l);
            },
            "checkpoint 6 covers 6 entries but the log holds only 5: entries were removed",
        );
    }

    #[test]
    fn reordered_entries_are_detected() {
        check_tamper(
            |dir| {
                let mut l = lines(dir);
                l.swap(2, 3);
                write_lines(dir, &l);
            },
            "checkpoint 4 does not match the entries: an entry in 2..=3",
        );
    }

    #[test]
    fn an_inserted_entry_is_detected() {
        check_tamper(
            |dir| {
                let mut l = lines(dir);
                let forged = String::from_utf8(entry(9).to_line().expect("line")).expect("utf8");
                l.insert(0, forged);
                write_lines(dir, &l);
            },
            "checkpoint 2 does not match the entries",
        );
    }

    #[test]
    fn a_torn_append_is_reported() {
        check_tamper(
            |dir| {
                let mut text = std::fs::read(dir.join(ENTRIES_FILE)).expect("read");
                text.pop();
                std::fs::write(dir.join(ENTRIES_FILE), text).expect("write");
            },
            "incomplete line after entry 4",
        );
    }

    fn checkpoint_path(dir: &Path, size: u64) -> PathBuf {
        dir.join(CHECKPOINTS_DIR).join(size.to_string())
    }

    #[test]
    fn a_changed_byte_in_a_checkpoint_is_detected() {
        // In the root hash: the signature no longer matches.
        check_tamper(
            |dir| {
                let path = checkpoint_path(dir, 4);
                let text = std::fs::read_to_string(&path).expect("read");
                let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
                let root = &mut lines[2];
                let flipped = if root.starts_with('A') { "B" } else { "A" };
                root.replace_range(0..1, flipped);
                std::fs::write(&path, lines.join("\n")).expect("write");
            },
            "checkpoint 4 is not signed by the audit key",
        );
        // In the signature.
        check_tamper(
            |dir| {
                let path = checkpoint_path(dir, 2);
                let mut bytes = std::fs::read(&path).expect("read");
                let at = bytes.len() - 10;
                bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
                std::fs::write(&path, bytes).expect("write");
            },
            "checkpoint 2 is not signed by the audit key",
        );
        // In the size line: the file name and the contents disagree.
        check_tamper(
            |dir| {
                let path = checkpoint_path(dir, 6);
                let text = std::fs::read_to_string(&path).expect("read");
                std::fs::write(&path, text.replacen("\n6\n", "\n5\n", 1)).expect("write");
            },
            "checkpoint 6 is malformed: it holds a checkpoint of size 5",
        );
    }

    #[test]
    fn a_checkpoint_signed_with_another_key_is_refused() {
        check_tamper(
            |dir| {
                // Rewrite the entries and re-sign every checkpoint with the attacker's key.
                let mut l = lines(dir);
                l[1] = l[1].replace("n1", "evil");
                write_lines(dir, &l);
                std::fs::remove_dir_all(dir.join(CHECKPOINTS_DIR)).expect("rm");
                let attacker =
                    AuditSigner::new(ORIGIN, SecretKey::from_seed(&[66; 32])).expect("signer");
                let mut log = Log::open(dir).expect("open");
                log.checkpoint(&attacker).expect("checkpoint");
            },
            "checkpoint 6 is not signed by the audit key: no signature by the audit key",
        );
    }

    #[test]
    fn a_forged_checkpoint_with_a_matching_root_but_no_valid_signature_is_refused() {
        check_tamper(
            |dir| {
                let text = std::fs::read_to_string(checkpoint_path(dir, 6)).expect("read");
                let (body, _) = text.split_once("\n\n").expect("note");
                // A well-formed signature line with the right key id but garbage signature.
                let sig_line = text.lines().last().expect("sig").to_owned();
                let (prefix, b64) = sig_line.rsplit_once(' ').expect("sig");
                let mut chars: Vec<char> = b64.chars().collect();
                chars[10] = if chars[10] == 'A' { 'B' } else { 'A' };
                let forged: String = chars.into_iter().collect();
                std::fs::write(
                    checkpoint_path(dir, 6),
                    format!("{body}\n\n{prefix} {forged}\n"),
                )
                .expect("write");
            },
            "checkpoint 6 is not signed by the audit key",
        );
    }

    #[test]
    fn a_checkpoint_of_another_origin_is_refused() {
        let (_tmp, dir) = log_with(2, &[2]);
        let err = verify_log(&dir, &signer().verifier().with_origin("vauban.audit/prod"))
            .expect_err("origin");
        assert!(
            err.to_string().contains("expected \"vauban.audit/prod\""),
            "{err}"
        );
        let mut log = Log::open(&dir).expect("open");
        let other =
            AuditSigner::new("vauban.audit/other", SecretKey::from_seed(&[1; 32])).expect("signer");
        assert!(matches!(
            log.checkpoint(&other),
            Err(AuditError::OriginMismatch { .. })
        ));
    }

    #[test]
    fn checkpointing_is_idempotent_and_another_key_cannot_overwrite() {
        let (_tmp, dir) = log_with(3, &[3]);
        let mut log = Log::open(&dir).expect("open");
        let again = log.checkpoint(&signer()).expect("same checkpoint");
        assert_eq!(Some(&again), log.latest_checkpoint());
        let attacker = AuditSigner::new(ORIGIN, SecretKey::from_seed(&[66; 32])).expect("signer");
        assert!(matches!(
            log.checkpoint(&attacker),
            Err(AuditError::CheckpointExists { size: 3 })
        ));
    }

    #[test]
    fn proof_bundles_verify_offline_and_refuse_tampering() {
        let (_tmp, dir) = log_with(9, &[9]);
        let log = Log::open(&dir).expect("open");
        let verifier = signer().verifier();
        for index in 0..9 {
            let bundle = log.prove(index).expect("prove");
            let json = bundle.to_json().expect("json");
            let verified = crate::ProofBundle::from_json(&json)
                .expect("parse")
                .verify(&verifier)
                .expect("verifies");
            assert_eq!(verified.entry, entry(index));
            assert_eq!((verified.index, verified.tree_size), (index, 9));
        }
        let bundle = log.prove(4).expect("prove");
        let mut edited = bundle.clone();
        edited.entry = edited.entry.replace("job-4", "job-5");
        assert!(edited.verify(&verifier).is_err());
        let mut moved = bundle.clone();
        moved.index = 5;
        assert!(moved.verify(&verifier).is_err());
        let mut resized = bundle.clone();
        resized.tree_size = 8;
        assert!(resized.verify(&verifier).is_err());
        let other = AuditSigner::new(ORIGIN, SecretKey::from_seed(&[66; 32])).expect("signer");
        assert!(bundle.verify(&other.verifier()).is_err());
        // Entries past the latest checkpoint cannot be proven yet.
        let mut log = log;
        log.append(&entry(9)).expect("append");
        assert!(log.prove(9).is_err());
    }
}
