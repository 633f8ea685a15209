//! Audit entries: what the log records, one canonical JSON line each.
//!
//! An entry is an object whose first field is `kind` (the variant, in snake case) and second
//! `at_ms` (unix milliseconds), followed by the fields of its kind in the order the structs
//! below declare them. [`Entry::to_line`] produces exactly these bytes; [`Entry::from_line`]
//! accepts only them (unknown fields, other orders or whitespace are refused), so a line has
//! one meaning and one spelling.
//!
//! Fields added after the first version are left out of the line when they hold their default
//! (see [`Admission::subject`]), so that lines written before they existed keep their exact
//! bytes, and so their hashes.

use serde::{Deserialize, Serialize};

use crate::receipt::SignedReceipt;

/// One audit event. The leaf hashed into the tree is [`Entry::to_line`] without its newline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    /// The scheduler accepted or refused a job at submit, or a module upload.
    Admission(Admission),
    /// The scheduler placed an attempt on a node.
    Placement(Placement),
    /// A host started an attempt.
    Start(Start),
    /// An attempt finished.
    Finish(Finish),
    /// A job was cancelled.
    Cancellation(Cancellation),
    /// A new trust policy took effect.
    PolicyChange(PolicyChange),
    /// A key was used for a privileged act (signing a checkpoint, a grant, a policy).
    KeyUse(KeyUse),
    /// A host's signed execution receipt for one attempt, checked by the scheduler.
    Receipt(ReceiptEntry),
    /// A receipt the scheduler refused: unreadable, badly signed, signed by another key than
    /// the node registered, or about another attempt than the result it came with.
    RejectedReceipt(RejectedReceipt),
}

/// What an admission decision was about.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    /// A job submitted (`Jobs.SubmitJob`). The default, left out of the line.
    #[default]
    Job,
    /// A module uploaded (`Modules.UploadModule`).
    Module,
}

impl Subject {
    /// Whether this is the default subject, which the line leaves out.
    pub fn is_job(&self) -> bool {
        *self == Self::Job
    }
}

/// Whether admission let a job or module in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The job was admitted.
    Accepted,
    /// The job was refused; the reason says why.
    Refused,
}

/// An admission decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admission {
    /// Unix milliseconds.
    pub at_ms: u64,
    /// Accepted or refused.
    pub decision: Decision,
    /// A job (left out of the line) or a module upload. Added after the first version: a line
    /// without it is a job's admission, and a job's admission is written without it.
    #[serde(default, skip_serializing_if = "Subject::is_job")]
    pub subject: Subject,
    /// The job id (empty when refused before one was assigned, and for modules).
    pub job: String,
    /// The module's full-file digest, `sha256:<hex>`; for an upload refused before its digest
    /// was known, what was known of it (its name and size).
    pub module: String,
    /// The namespace the job was submitted to, or the module uploaded into.
    pub namespace: String,
    /// Why: the refusal message, or a summary of what was granted.
    pub reason: String,
}

/// A placement decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    /// Unix milliseconds.
    pub at_ms: u64,
    /// The job id.
    pub job: String,
    /// The attempt number (1-based).
    pub attempt: u32,
    /// The node chosen.
    pub node: String,
    /// Why this node: the placement explanation.
    pub explanation: String,
}

/// An attempt started on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Start {
    /// Unix milliseconds.
    pub at_ms: u64,
    /// The job id.
    pub job: String,
    /// The attempt number.
    pub attempt: u32,
    /// The node running it.
    pub node: String,
}

/// An attempt finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Finish {
    /// Unix milliseconds.
    pub at_ms: u64,
    /// The job id.
    pub job: String,
    /// The attempt number.
    pub attempt: u32,
    /// The node that ran it.
    pub node: String,
    /// How it ended (`exited(0)`, `trapped: …`, `timed out`, …), as the scheduler reports it.
    pub outcome: String,
}

/// A job was cancelled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cancellation {
    /// Unix milliseconds.
    pub at_ms: u64,
    /// The job id.
    pub job: String,
    /// Who or what cancelled it (a client identity, `revocation`, `drain`).
    pub by: String,
    /// Why.
    pub reason: String,
}

/// A trust policy change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyChange {
    /// Unix milliseconds.
    pub at_ms: u64,
    /// The version in force before (0 when there was none).
    pub old_version: u64,
    /// The version now in force.
    pub new_version: u64,
    /// The new policy file's digest, `sha256:<hex>`.
    pub digest: String,
}

/// A use of a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyUse {
    /// Unix milliseconds.
    pub at_ms: u64,
    /// The key's id.
    pub key: String,
    /// Its role (`root`, `publisher`, `authorizer`, `audit`).
    pub role: String,
    /// What it signed.
    pub purpose: String,
}

/// A signed execution receipt as logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptEntry {
    /// Unix milliseconds at which the scheduler logged it.
    pub at_ms: u64,
    /// The receipt and the host's signature.
    pub receipt: SignedReceipt,
}

/// A receipt that came with an attempt's result and did not pass the scheduler's checks. It is
/// logged as what it is, never as a [`ReceiptEntry`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectedReceipt {
    /// Unix milliseconds at which the scheduler logged it.
    pub at_ms: u64,
    /// The job of the result it came with.
    pub job: String,
    /// The attempt of the result it came with.
    pub attempt: u32,
    /// The node that sent it.
    pub node: String,
    /// Why it was refused.
    pub reason: String,
    /// The receipt as sent, when it could be read as one.
    pub receipt: Option<SignedReceipt>,
}

impl Entry {
    /// The entry's timestamp, unix milliseconds.
    pub fn at_ms(&self) -> u64 {
        match self {
            Self::Admission(e) => e.at_ms,
            Self::Placement(e) => e.at_ms,
            Self::Start(e) => e.at_ms,
            Self::Finish(e) => e.at_ms,
            Self::Cancellation(e) => e.at_ms,
            Self::PolicyChange(e) => e.at_ms,
            Self::KeyUse(e) => e.at_ms,
            Self::Receipt(e) => e.at_ms,
            Self::RejectedReceipt(e) => e.at_ms,
        }
    }

    /// The entry's kind, as its `kind` field spells it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Admission(_) => "admission",
            Self::Placement(_) => "placement",
            Self::Start(_) => "start",
            Self::Finish(_) => "finish",
            Self::Cancellation(_) => "cancellation",
            Self::PolicyChange(_) => "policy_change",
            Self::KeyUse(_) => "key_use",
            Self::Receipt(_) => "receipt",
            Self::RejectedReceipt(_) => "rejected_receipt",
        }
    }

    /// A one-line human summary (for `vauban audit tail`).
    pub fn summary(&self) -> String {
        match self {
            Self::Admission(e) => {
                let decision = match e.decision {
                    Decision::Accepted => "accepted",
                    Decision::Refused => "refused",
                };
                match e.subject {
                    // A refused job never got an id.
                    Subject::Job if e.job.is_empty() => format!(
                        "{decision} job of {} in {}: {}",
                        e.module, e.namespace, e.reason
                    ),
                    Subject::Job => format!(
                        "{decision} job {} ({}) in {}: {}",
                        e.job, e.module, e.namespace, e.reason
                    ),
                    Subject::Module => format!(
                        "{decision} module {} in {}: {}",
                        e.module, e.namespace, e.reason
                    ),
                }
            }
            Self::Placement(e) => format!(
                "job {} attempt {} on {}: {}",
                e.job, e.attempt, e.node, e.explanation
            ),
            Self::Start(e) => format!("job {} attempt {} on {}", e.job, e.attempt, e.node),
            Self::Finish(e) => format!(
                "job {} attempt {} on {}: {}",
                e.job, e.attempt, e.node, e.outcome
            ),
            Self::Cancellation(e) => format!("job {} by {}: {}", e.job, e.by, e.reason),
            Self::PolicyChange(e) => format!(
                "policy {} -> {} ({})",
                e.old_version, e.new_version, e.digest
            ),
            Self::KeyUse(e) => format!("{} key {}: {}", e.role, e.key, e.purpose),
            Self::Receipt(e) => {
                let r = &e.receipt.receipt;
                format!(
                    "job {} attempt {} on {}: {} (fuel {}, peak memory {} B, signed by {})",
                    r.job, r.attempt, r.node, r.outcome, r.fuel, r.peak_memory_bytes, e.receipt.key
                )
            }
            Self::RejectedReceipt(e) => format!(
                "job {} attempt {} from {}: {}",
                e.job, e.attempt, e.node, e.reason
            ),
        }
    }

    /// The entry's canonical JSON, without a newline: the exact bytes of its leaf.
    ///
    /// # Errors
    /// [`crate::AuditError::Encode`] only if serialisation fails (it cannot for these types).
    pub fn to_line(&self) -> Result<Vec<u8>, crate::AuditError> {
        serde_json::to_vec(self).map_err(|source| crate::AuditError::Encode {
            what: "entry",
            source,
        })
    }

    /// Parses one line (without its newline) and checks that it is in canonical form.
    ///
    /// # Errors
    /// A message saying why the line is not a canonical entry; callers add the index.
    pub fn from_line(line: &[u8]) -> Result<Self, String> {
        let entry: Self = serde_json::from_slice(line).map_err(|e| e.to_string())?;
        let canonical = entry.to_line().map_err(|e| e.to_string())?;
        if canonical != line {
            return Err("not in canonical form (field order, spacing or escaping differ)".into());
        }
        Ok(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receipt::Receipt;

    fn check(entry: &Entry, expected: &str) {
        let line = entry.to_line().expect("line");
        assert_eq!(String::from_utf8_lossy(&line), expected);
        assert_eq!(&Entry::from_line(&line).expect("parse"), entry);
    }

    #[test]
    fn entries_have_one_canonical_line() {
        check(
            &Entry::Admission(Admission {
                at_ms: 5,
                decision: Decision::Refused,
                subject: Subject::Job,
                job: String::new(),
                module: "sha256:00".into(),
                namespace: "ns".into(),
                reason: "no grant".into(),
            }),
            r#"{"kind":"admission","at_ms":5,"decision":"refused","job":"","module":"sha256:00","namespace":"ns","reason":"no grant"}"#,
        );
        check(
            &Entry::PolicyChange(PolicyChange {
                at_ms: 6,
                old_version: 1,
                new_version: 2,
                digest: "sha256:11".into(),
            }),
            r#"{"kind":"policy_change","at_ms":6,"old_version":1,"new_version":2,"digest":"sha256:11"}"#,
        );
        check(
            &Entry::Cancellation(Cancellation {
                at_ms: 7,
                job: "j".into(),
                by: "op\n\"x\"".into(),
                reason: "é".into(),
            }),
            r#"{"kind":"cancellation","at_ms":7,"job":"j","by":"op\n\"x\"","reason":"é"}"#,
        );
    }

    #[test]
    fn every_kind_round_trips() {
        let receipt = Receipt {
            job: "j".into(),
            attempt: 1,
            module: "sha256:00".into(),
            capabilities: vec![],
            node: "n".into(),
            started_ms: 1,
            ended_ms: 2,
            outcome: "exited(0)".into(),
            fuel: 3,
            peak_memory_bytes: 4,
        }
        .sign(&crate::SecretKey::from_seed(&[9; 32]))
        .expect("sign");
        let entries = [
            Entry::Placement(Placement {
                at_ms: 1,
                job: "j".into(),
                attempt: 1,
                node: "n".into(),
                explanation: "least loaded".into(),
            }),
            Entry::Start(Start {
                at_ms: 1,
                job: "j".into(),
                attempt: 1,
                node: "n".into(),
            }),
            Entry::Finish(Finish {
                at_ms: 1,
                job: "j".into(),
                attempt: 1,
                node: "n".into(),
                outcome: "exited(0)".into(),
            }),
            Entry::KeyUse(KeyUse {
                at_ms: 1,
                key: "k".into(),
                role: "audit".into(),
                purpose: "checkpoint 3".into(),
            }),
            Entry::Receipt(ReceiptEntry {
                at_ms: 1,
                receipt: receipt.clone(),
            }),
            Entry::RejectedReceipt(RejectedReceipt {
                at_ms: 1,
                job: "j".into(),
                attempt: 1,
                node: "n".into(),
                reason: "signed by another key".into(),
                receipt: Some(receipt),
            }),
            Entry::RejectedReceipt(RejectedReceipt {
                at_ms: 1,
                job: "j".into(),
                attempt: 1,
                node: "n".into(),
                reason: "not a signed receipt".into(),
                receipt: None,
            }),
            Entry::Admission(Admission {
                at_ms: 1,
                decision: Decision::Accepted,
                subject: Subject::Module,
                job: String::new(),
                module: "sha256:00".into(),
                namespace: "ns".into(),
                reason: "signed by publisher key k".into(),
            }),
        ];
        for entry in entries {
            let line = entry.to_line().expect("line");
            let text = String::from_utf8_lossy(&line).into_owned();
            assert!(
                text.starts_with(&format!("{{\"kind\":\"{}\",\"at_ms\":1,", entry.kind())),
                "{text}"
            );
            assert_eq!(Entry::from_line(&line).expect("parse"), entry);
            assert_eq!(entry.at_ms(), 1);
            assert!(!entry.summary().is_empty());
        }
    }

    /// A job's admission is written as before `subject` existed, so old lines keep their bytes;
    /// a module's names its subject; spelling out the default is not canonical.
    #[test]
    fn the_admission_subject_is_written_only_for_modules() {
        let job = r#"{"kind":"admission","at_ms":5,"decision":"accepted","job":"j","module":"sha256:00","namespace":"ns","reason":"r"}"#;
        let Entry::Admission(parsed) = Entry::from_line(job.as_bytes()).expect("old line") else {
            panic!("an admission");
        };
        assert_eq!(parsed.subject, Subject::Job);
        let module = r#"{"kind":"admission","at_ms":5,"decision":"refused","subject":"module","job":"","module":"upload \"x\" (3 bytes)","namespace":"ns","reason":"r"}"#;
        let Entry::Admission(parsed) = Entry::from_line(module.as_bytes()).expect("module line")
        else {
            panic!("an admission");
        };
        assert_eq!(parsed.subject, Subject::Module);
        let spelled = job.replace(
            r#""decision":"accepted","#,
            r#""decision":"accepted","subject":"job","#,
        );
        assert!(Entry::from_line(spelled.as_bytes()).is_err(), "{spelled}");
    }

    #[test]
    fn non_canonical_or_unknown_lines_are_refused() {
        for bad in [
            r#"{"at_ms":5,"kind":"start","job":"j","attempt":1,"node":"n"}"#,
            r#"{"kind":"start","at_ms":5,"job":"j","attempt":1,"node":"n","extra":1}"#,
            r#"{"kind":"start", "at_ms":5,"job":"j","attempt":1,"node":"n"}"#,
            r#"{"kind":"launch","at_ms":5}"#,
            r#"{"kind":"start","at_ms":5,"job":"j","attempt":1}"#,
            "",
        ] {
            assert!(Entry::from_line(bad.as_bytes()).is_err(), "{bad}");
        }
        assert!(
            Entry::from_line(br#"{"kind":"start","at_ms":5,"job":"j","attempt":1,"node":"n"}"#)
                .is_ok()
        );
    }
}
