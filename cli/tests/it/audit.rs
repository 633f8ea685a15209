//! `vauban audit` through the real binary, on logs written with the library (the scheduler
//! writes them in production): checkpoint, verify, prove, verify-proof, tail, and tampering.

use std::path::Path;

use vauban_audit::{Admission, Decision, Entry, Finish, Log, Placement, Start};

use crate::support::{Workspace, code, text};

fn entries() -> Vec<Entry> {
    vec![
        Entry::Admission(Admission {
            at_ms: 1_700_000_000_000,
            decision: Decision::Accepted,
            job: "job-1".into(),
            module: format!("sha256:{}", "ab".repeat(32)),
            namespace: "default".into(),
            reason: "grant g-1".into(),
        }),
        Entry::Placement(Placement {
            at_ms: 1_700_000_000_010,
            job: "job-1".into(),
            attempt: 1,
            node: "node-a".into(),
            explanation: "least loaded of 2 eligible".into(),
        }),
        Entry::Start(Start {
            at_ms: 1_700_000_000_020,
            job: "job-1".into(),
            attempt: 1,
            node: "node-a".into(),
        }),
        Entry::Finish(Finish {
            at_ms: 1_700_000_000_900,
            job: "job-1".into(),
            attempt: 1,
            node: "node-a".into(),
            outcome: "exited(0)".into(),
        }),
    ]
}

fn append_all(dir: &Path, entries: &[Entry]) {
    let mut log = Log::open(dir).expect("open log");
    for entry in entries {
        log.append(entry).expect("append");
    }
}

fn ok(ws: &Workspace, args: &[&str]) -> String {
    let out = ws.vauban(args);
    assert!(
        out.status.success(),
        "vauban {args:?}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn fails(ws: &Workspace, args: &[&str]) -> String {
    let out = ws.vauban(args);
    assert_eq!(
        code(&out),
        125,
        "vauban {args:?} should fail: {}",
        text(&out.stdout)
    );
    text(&out.stderr)
}

#[test]
fn audit_commands_checkpoint_verify_prove_and_tail_a_log() {
    let ws = Workspace::new();
    ok(&ws, &["key", "generate", "--out", "audit"]);
    let log = ws.path("log");
    let all = entries();
    append_all(&log, &all[..2]);

    let note = ok(
        &ws,
        &[
            "audit",
            "checkpoint",
            "--log",
            "log",
            "--key",
            "audit.key",
            "--origin",
            "vauban.audit/it",
        ],
    );
    assert!(note.starts_with("vauban.audit/it\n2\n"), "{note}");
    assert!(note.contains("\n\n— vauban.audit/it "), "{note}");
    append_all(&log, &all[2..]);
    // The origin is remembered from the first checkpoint.
    let note = ok(
        &ws,
        &["audit", "checkpoint", "--log", "log", "--key", "audit.key"],
    );
    assert!(note.starts_with("vauban.audit/it\n4\n"), "{note}");

    let report = ok(
        &ws,
        &["audit", "verify", "--log", "log", "--key", "audit.pub"],
    );
    assert!(
        report.contains("ok: 4 entries, 2 checkpoints verified"),
        "{report}"
    );

    ok(
        &ws,
        &[
            "audit",
            "prove",
            "--log",
            "log",
            "--index",
            "2",
            "-o",
            "proof.json",
        ],
    );
    let verified = ok(
        &ws,
        &["audit", "verify-proof", "--key", "audit.pub", "proof.json"],
    );
    assert!(
        verified.contains("ok: entry 2 is in vauban.audit/it at size 4"),
        "{verified}"
    );
    assert!(
        verified.contains("start job job-1 attempt 1 on node-a"),
        "{verified}"
    );

    let tail = ok(&ws, &["audit", "tail", "--log", "log", "-n", "2"]);
    assert_eq!(tail.lines().count(), 2, "{tail}");
    assert!(
        tail.contains("start") && tail.contains("finish") && tail.contains("exited(0)"),
        "{tail}"
    );
    let json: serde_json::Value = serde_json::from_str(&ok(
        &ws,
        &["audit", "tail", "--log", "log", "--output", "json"],
    ))
    .expect("json");
    let list = json.as_array().expect("array");
    assert_eq!(list.len(), 4);
    assert_eq!(list[3]["index"], 3);
    assert_eq!(list[3]["entry"]["kind"], "finish");

    // A proof checked with another key, or edited, fails.
    ok(&ws, &["key", "generate", "--out", "other"]);
    let err = fails(
        &ws,
        &["audit", "verify-proof", "--key", "other.pub", "proof.json"],
    );
    assert!(err.contains("not signed by the audit key"), "{err}");
    let proof = std::fs::read_to_string(ws.path("proof.json")).expect("read proof");
    std::fs::write(ws.path("forged.json"), proof.replace("node-a", "node-b")).expect("write");
    let err = fails(
        &ws,
        &["audit", "verify-proof", "--key", "audit.pub", "forged.json"],
    );
    assert!(err.contains("proof does not verify"), "{err}");

    // A log verified with another key fails.
    let err = fails(
        &ws,
        &["audit", "verify", "--log", "log", "--key", "other.pub"],
    );
    assert!(
        err.contains("checkpoint 2 is not signed by the audit key"),
        "{err}"
    );
}

#[test]
fn audit_verify_names_the_entry_when_one_byte_changes() {
    let ws = Workspace::new();
    ok(&ws, &["key", "generate", "--out", "audit"]);
    let log = ws.path("log");
    // A checkpoint after every entry, so a change is pinned to one entry.
    for entry in entries() {
        append_all(&log, &[entry]);
        ok(
            &ws,
            &["audit", "checkpoint", "--log", "log", "--key", "audit.key"],
        );
    }
    ok(
        &ws,
        &["audit", "verify", "--log", "log", "--key", "audit.pub"],
    );

    let path = log.join("entries.jsonl");
    let original = std::fs::read(&path).expect("read");
    // One byte of entry 2 (the third line): `node-a` becomes `node-b`.
    let line_start = original
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(1)
        .map(|(i, _)| i + 1)
        .expect("third line");
    let offset = line_start
        + original[line_start..]
            .windows(6)
            .position(|w| w == b"node-a")
            .expect("node in entry 2")
        + 5;
    let mut edited = original.clone();
    edited[offset] = b'b';
    std::fs::write(&path, &edited).expect("write");
    let err = fails(
        &ws,
        &["audit", "verify", "--log", "log", "--key", "audit.pub"],
    );
    assert!(
        err.contains("checkpoint 3 does not match the entries: entry 2 was changed"),
        "{err}"
    );

    // A byte that breaks the JSON is named exactly too.
    let mut broken = original.clone();
    broken[line_start] = b'[';
    std::fs::write(&path, &broken).expect("write");
    let err = fails(
        &ws,
        &["audit", "verify", "--log", "log", "--key", "audit.pub"],
    );
    assert!(err.contains("entry 2 is not a valid audit entry"), "{err}");

    // A byte of a stored checkpoint.
    std::fs::write(&path, &original).expect("restore");
    let checkpoint = log.join("checkpoints/4");
    let mut note = std::fs::read(&checkpoint).expect("read checkpoint");
    let at = note.len() - 5;
    note[at] = if note[at] == b'A' { b'B' } else { b'A' };
    std::fs::write(&checkpoint, &note).expect("write checkpoint");
    let err = fails(
        &ws,
        &["audit", "verify", "--log", "log", "--key", "audit.pub"],
    );
    assert!(
        err.contains("checkpoint 4 is not signed by the audit key"),
        "{err}"
    );
}
