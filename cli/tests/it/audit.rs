//! `vauban audit` through the real binary: on logs written with the library (checkpoint,
//! verify, prove, verify-proof, tail, and tampering), and on the log a real `vauban dev`
//! writes (every attempt's admission, placement, start, host-signed receipt and finish, and a
//! scheduler killed right after accepting a job).

use std::io::{BufRead as _, BufReader, Lines};
use std::path::Path;
use std::process::{ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use vauban_audit::{
    Admission, Decision, Entry, Finish, Log, Placement, PublicKey, SignedReceipt, Start, Subject,
};
use vauban_tests::Target;

use crate::cluster::Process;
use crate::support::{Workspace, code, text};

pub(crate) fn entries() -> Vec<Entry> {
    vec![
        Entry::Admission(Admission {
            at_ms: 1_700_000_000_000,
            decision: Decision::Accepted,
            subject: Subject::Job,
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

/// How long the tests below wait for what `vauban dev` does in the background.
const PATIENCE: Duration = Duration::from_secs(60);
/// Where `vauban dev` keeps its audit log, and the public half of its audit key.
const DEV_LOG: &str = ".vauban/dev/scheduler/audit";
const DEV_AUDIT_KEY: &str = ".vauban/dev/keys/audit.pub";

/// A `vauban dev` in the workspace, killed when dropped.
struct Dev {
    process: Process,
    addr: String,
    /// Its standard output, held open so that it can keep printing.
    _stdout: Lines<BufReader<ChildStdout>>,
}

impl Dev {
    fn start(ws: &Workspace, hosts: u32) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vauban"))
            .args(["dev", "--listen", "127.0.0.1:0", "--trust", "trust"])
            .args(["--hosts", &hosts.to_string()])
            .current_dir(ws.dir.path())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start vauban dev");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let first = lines.next().expect("a line").expect("read");
        let addr = first.rsplit(' ').next().expect("address").to_owned();
        Self {
            process: Process(child),
            addr,
            _stdout: lines,
        }
    }

    /// Runs a client command against it.
    fn vauban(&self, ws: &Workspace, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_vauban"))
            .args(args)
            .current_dir(ws.dir.path())
            .env("VAUBAN_ADDR", &self.addr)
            .output()
            .expect("run vauban")
    }
}

/// Submits a job running `module` with `args`, and returns its id once it is accepted.
fn submit(dev: &Dev, ws: &Workspace, module: &str, selector: &str, args: &[&str]) -> String {
    let mut command = vec!["run", "--detach", "-l", selector, module, "--"];
    command.extend_from_slice(args);
    let out = dev.vauban(ws, &command);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    text(&out.stdout).trim().to_owned()
}

/// Every entry of the dev log, as `vauban audit tail --output json` shows them: (index, entry).
fn tail(ws: &Workspace) -> Vec<(u64, Value)> {
    let out = ws.vauban(&[
        "audit", "tail", "--log", DEV_LOG, "-n", "100000", "--output", "json",
    ]);
    if code(&out) != 0 {
        // Read while the writer appends: a partial last line is a retry, not a failure.
        return Vec::new();
    }
    let list: Value = serde_json::from_slice(&out.stdout).expect("json");
    list.as_array()
        .expect("an array")
        .iter()
        .map(|item| {
            (
                item["index"].as_u64().expect("index"),
                item["entry"].clone(),
            )
        })
        .collect()
}

/// The job an entry is about, if any.
fn job_of(entry: &Value) -> Option<&str> {
    match entry["kind"].as_str()? {
        "receipt" => entry["receipt"]["receipt"]["job"].as_str(),
        "admission" | "placement" | "start" | "finish" | "cancellation" => entry["job"].as_str(),
        _ => None,
    }
}

/// Waits until the dev log holds `kinds` for every job of `jobs`, and returns it.
fn wait_for(ws: &Workspace, jobs: &[&str], kinds: &[&str]) -> Vec<(u64, Value)> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let entries = tail(ws);
        let done = jobs.iter().all(|job| {
            let have: Vec<&str> = entries
                .iter()
                .filter(|(_, e)| job_of(e) == Some(job))
                .filter_map(|(_, e)| e["kind"].as_str())
                .collect();
            kinds.iter().all(|kind| have.contains(kind))
        });
        if done {
            return entries;
        }
        assert!(
            Instant::now() < deadline,
            "waited for {kinds:?} of {jobs:?}: {entries:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until `vauban audit prove` can prove entry `index` (a checkpoint covers it) and writes
/// the proof to `out`.
fn prove(ws: &Workspace, log: &str, index: u64, out: &str) {
    let deadline = Instant::now() + PATIENCE;
    let index = index.to_string();
    loop {
        let proved = ws.vauban(&["audit", "prove", "--log", log, "--index", &index, "-o", out]);
        if code(&proved) == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "cannot prove entry {index}: {}",
            text(&proved.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Two jobs on two `vauban dev` hosts: the log holds, for each attempt and in this order, its
/// admission, placement, start, the receipt its host signed with its own key, and its finish;
/// the upload is recorded with its publisher key; `vauban audit verify` checks every receipt's
/// signature and names the receipt whose outcome was changed by one byte; and a receipt is
/// proven to be in the log with the audit public key alone.
#[test]
fn vauban_dev_logs_every_attempt_with_a_receipt_signed_by_its_host() {
    let ws = Workspace::new();
    let dev = Dev::start(&ws, 2);
    let module = ws.signed_sample("hello", Target::P1);
    // An unsigned module is refused at upload, and the refusal is recorded with its digest.
    std::fs::copy(
        vauban_tests::sample_path("hello", Target::P1),
        ws.path("unsigned.wasm"),
    )
    .expect("copy sample");
    let refused = dev.vauban(&ws, &["module", "upload", "unsigned.wasm"]);
    assert_ne!(code(&refused), 0, "{}", text(&refused.stdout));
    let unsigned =
        vauban_core::ModuleDigest::of(&std::fs::read(ws.path("unsigned.wasm")).expect("read"))
            .to_string();
    let ok = submit(&dev, &ws, &module, "zone=alpha", &["--name", "ok"]);
    let three = submit(
        &dev,
        &ws,
        &module,
        "zone=bravo",
        &["--name", "three", "--exit", "3"],
    );
    let order = ["admission", "placement", "start", "receipt", "finish"];
    let entries = wait_for(&ws, &[&ok, &three], &order);

    for (job, node, outcome) in [
        (&ok, "dev-1", "exited with code 0"),
        (&three, "dev-2", "exited with code 3"),
    ] {
        let mine: Vec<&(u64, Value)> = entries
            .iter()
            .filter(|(_, e)| job_of(e) == Some(job.as_str()))
            .collect();
        let kinds: Vec<&str> = mine
            .iter()
            .map(|(_, e)| e["kind"].as_str().expect("kind"))
            .collect();
        assert_eq!(kinds, order, "job {job}: {mine:#?}");
        let (admission, placement, finish) = (&mine[0].1, &mine[1].1, &mine[4].1);
        assert_eq!(admission["decision"], "accepted");
        assert_eq!(
            (placement["node"].as_str(), finish["node"].as_str()),
            (Some(node), Some(node))
        );
        assert_eq!(mine[2].1["node"], node);

        let signed: SignedReceipt =
            serde_json::from_value(mine[3].1["receipt"].clone()).expect("a signed receipt");
        let host_key = PublicKey::from_file(&ws.path(&format!(".vauban/dev/{node}/receipt.pub")))
            .expect("the host's receipt key");
        signed
            .verify(&[host_key])
            .expect("signed by the key of the host that ran it");
        let receipt = &signed.receipt;
        assert_eq!((receipt.node.as_str(), receipt.attempt), (node, 1));
        assert_eq!(receipt.outcome, outcome);
        assert_eq!(Some(receipt.module.as_str()), admission["module"].as_str());
        assert!(receipt.ended_ms >= receipt.started_ms, "{receipt:?}");
        assert!(receipt.peak_memory_bytes > 0, "{receipt:?}");
        assert!(
            receipt.capabilities.iter().any(|c| c == "timeout_ms:30000"),
            "{:?}",
            receipt.capabilities
        );
    }
    // The upload: admitted, with the publisher key that signed it.
    let digest = entries
        .iter()
        .find(|(_, e)| job_of(e) == Some(ok.as_str()))
        .and_then(|(_, e)| e["module"].as_str())
        .expect("the job's module")
        .to_owned();
    assert!(
        entries.iter().any(|(_, e)| e["kind"] == "admission"
            && e["subject"] == "module"
            && e["decision"] == "accepted"
            && e["module"] == digest.as_str()),
        "{entries:#?}"
    );
    assert!(
        entries.iter().any(|(_, e)| e["kind"] == "admission"
            && e["subject"] == "module"
            && e["decision"] == "refused"
            && e["module"] == unsigned.as_str()
            && e["reason"]
                .as_str()
                .is_some_and(|r| r.contains("not signed"))),
        "{entries:#?}"
    );
    assert!(
        entries.iter().any(|(_, e)| e["kind"] == "key_use"
            && e["role"] == "publisher"
            && e["purpose"] == format!("signed module {digest}").as_str()),
        "{entries:#?}"
    );

    // Once a checkpoint covers the last entry, the log is at rest: nothing else is recorded.
    let last = entries.last().expect("entries").0;
    prove(&ws, DEV_LOG, last, "last.json");
    let verified = ws.vauban(&["audit", "verify", "--log", DEV_LOG, "--key", DEV_AUDIT_KEY]);
    assert_eq!(code(&verified), 0, "{}", text(&verified.stderr));
    assert!(
        text(&verified.stdout).contains("receipts: 2 execution receipts"),
        "{}",
        text(&verified.stdout)
    );

    // One receipt, proven offline with the audit public key alone.
    let receipt_index = entries
        .iter()
        .find(|(_, e)| e["kind"] == "receipt" && job_of(e) == Some(ok.as_str()))
        .map(|(i, _)| *i)
        .expect("the receipt");
    prove(&ws, DEV_LOG, receipt_index, "receipt.json");
    let checked = ws.vauban(&[
        "audit",
        "verify-proof",
        "--key",
        DEV_AUDIT_KEY,
        "receipt.json",
    ]);
    assert_eq!(code(&checked), 0, "{}", text(&checked.stderr));
    assert!(
        text(&checked.stdout).contains(&format!("receipt job {ok} attempt 1 on dev-1")),
        "{}",
        text(&checked.stdout)
    );

    // A copy of the log with one byte of that receipt's outcome changed: still canonical JSON,
    // but the host's signature no longer matches, and verify says which entry.
    let copy = ws.path("tampered");
    std::fs::create_dir_all(copy.join("checkpoints")).expect("mkdir");
    let log = ws.path(DEV_LOG);
    for item in std::fs::read_dir(log.join("checkpoints")).expect("checkpoints") {
        let item = item.expect("entry");
        std::fs::copy(item.path(), copy.join("checkpoints").join(item.file_name())).expect("copy");
    }
    let original = std::fs::read_to_string(log.join("entries.jsonl")).expect("read entries");
    let mut lines: Vec<String> = original.lines().map(str::to_owned).collect();
    let line = &mut lines[usize::try_from(receipt_index).expect("index")];
    let at = line.find("exited with code 0").expect("the outcome") + "exited with code ".len();
    line.replace_range(at..=at, "1");
    std::fs::write(copy.join("entries.jsonl"), lines.join("\n") + "\n").expect("write copy");
    let failed = ws.vauban(&[
        "audit",
        "verify",
        "--log",
        "tampered",
        "--key",
        DEV_AUDIT_KEY,
    ]);
    assert_eq!(code(&failed), 125, "{}", text(&failed.stdout));
    assert!(
        text(&failed.stderr).contains(&format!(
            "entry {receipt_index} is a receipt whose host signature does not verify"
        )),
        "{}",
        text(&failed.stderr)
    );
    drop(dev);
}

/// The scheduler is SIGKILLed as soon as it has accepted a job: the admission, committed with
/// the job before the reply, is in the log after the restart, once.
#[test]
fn an_admission_survives_a_scheduler_killed_right_after_accepting() {
    let ws = Workspace::new();
    let dev = Dev::start(&ws, 1);
    let module = ws.signed_sample("hello", Target::P1);
    let id = submit(&dev, &ws, &module, "zone=alpha", &["--name", "killed"]);
    dev.process.kill();

    let _dev = Dev::start(&ws, 1);
    let entries = wait_for(&ws, &[&id], &["admission"]);
    let admissions: Vec<u64> = entries
        .iter()
        .filter(|(_, e)| e["kind"] == "admission" && job_of(e) == Some(id.as_str()))
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(admissions.len(), 1, "{entries:#?}");
    // Signed too: the restarted scheduler checkpoints what it appended.
    prove(&ws, DEV_LOG, admissions[0], "admission.json");
    let verified = ws.vauban(&["audit", "verify", "--log", DEV_LOG, "--key", DEV_AUDIT_KEY]);
    assert_eq!(code(&verified), 0, "{}", text(&verified.stderr));
}
