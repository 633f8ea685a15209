//! Revocation end to end: a service runs under trust policy version 1 on a real host; the
//! operator pushes version 2, which revokes the module's digest, with `vauban policy push`. The
//! scheduler fails the job at once and each host, holding its own copy of the policy, stops the
//! instance by itself within one heartbeat interval; new jobs of the module are refused; the host
//! keeps version 2 across a restart; an older or unsigned policy is refused everywhere.

use std::time::{Duration, Instant};

use vauban_proto::v1::{self, jobs_client::JobsClient};

use crate::admission::{Trusted, fake_scheduler, spec, try_submit};
use crate::cluster::{channel, upload, wait_for_nodes, watch};
use crate::support::text;

/// Writes `policy-vN.toml`: `policy.toml` at version `version` with `extra` top-level lines,
/// signed by each of `roots`.
fn policy_version(t: &Trusted, version: u64, extra: &str, roots: &[&str]) -> String {
    let v1_toml = std::fs::read_to_string(t.ws.path("policy.toml")).expect("policy");
    let toml = v1_toml.replacen("version = 1\n", &format!("version = {version}\n{extra}"), 1);
    let file = format!("policy-v{version}.toml");
    std::fs::write(t.ws.path(&file), &toml).expect("write policy");
    for root in roots {
        t.ws.vauban_ok(&[
            "policy",
            "sign",
            "--key",
            &format!("keys/{root}.key"),
            &file,
        ]);
    }
    file
}

/// The policy message a scheduler would push: the file and its signatures, as signed.
fn pushed(t: &Trusted, file: &str, version: u64) -> v1::scheduler_message::Message {
    v1::scheduler_message::Message::Policy(v1::Policy {
        version,
        toml: std::fs::read(t.ws.path(file)).expect("toml"),
        signatures: std::fs::read(t.ws.path(&format!("{file}.sig.json"))).expect("signatures"),
        digest: String::new(),
    })
}

/// The scheduler's heartbeat interval in this test: a revocation must stop the instance on its
/// host within one.
const HEARTBEAT: Duration = Duration::from_secs(1);

async fn job(channel: &tonic::transport::Channel, id: &str) -> v1::Job {
    JobsClient::new(channel.clone())
        .get_job(v1::GetJobRequest { id: id.into() })
        .await
        .expect("get job")
        .into_inner()
}

/// Polls until `done` holds for the job, or panics after `within`.
async fn until(
    channel: &tonic::transport::Channel,
    id: &str,
    within: Duration,
    what: &str,
    done: impl Fn(&v1::Job) -> bool,
) -> v1::Job {
    let deadline = Instant::now() + within;
    loop {
        let job = job(channel, id).await;
        if done(&job) {
            return job;
        }
        assert!(
            Instant::now() < deadline,
            "{what} within {within:?}: {job:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_digest_stops_its_running_service_within_one_heartbeat() {
    let t = Trusted::new();
    let scheduler = t.scheduler_with_heartbeat(HEARTBEAT);
    let host_tls = t.ws.host_tls_args("n1");
    let _host = t.host(&scheduler.addr, &host_tls, "n1", &["jurisdiction=eu"]);
    let channel = channel(&scheduler).await;
    wait_for_nodes(&channel, 1).await;
    let module = upload(&channel, &t.ws.path("hello.wasm"))
        .await
        .expect("upload");

    // A service instance that sleeps for longer than the test.
    let caps = t.caps(|c| c.args.extend(["--sleep".into(), "15000".into()]));
    let mut service = spec(&module.digest, caps.clone(), t.grant("grant.json"));
    service.r#type = v1::JobType::Service as i32;
    service.replicas = 1;
    let submitted = try_submit(&channel, service).await.expect("submit service");
    // Running for real: the guest printed its greeting before it sleeps.
    watch(&channel, &submitted.id, |event| {
        matches!(event, v1::job_event::Event::Output(chunk) if text(&chunk.data).contains("hello, admission!"))
    })
    .await;

    // Version 2 revokes the module; both roots sign it; the operator pushes it.
    let v2 = policy_version(
        &t,
        2,
        &format!("revoked_modules = [\"{}\"]\n", module.digest),
        &["root1", "root2"],
    );
    let mut push = vec!["policy", "push", "--addr", &scheduler.addr];
    let operator = t.ws.tls_args("pki/operator");
    push.extend(operator.iter().map(String::as_str));
    push.push(&v2);
    let out = t.ws.vauban_ok(&push);
    let pushed = Instant::now();
    assert!(
        text(&out.stdout).contains("policy version 2 installed"),
        "{}",
        text(&out.stdout)
    );

    // The scheduler failed the job when it installed the policy, naming the revocation.
    let failed = job(&channel, &submitted.id).await;
    assert_eq!(failed.state, v1::JobState::Failed as i32, "{failed:#?}");
    assert!(
        failed
            .message
            .contains(&format!("module {} is revoked", module.digest)),
        "{}",
        failed.message
    );
    // The host stopped the instance and reported how it ended (after the attempt was fenced,
    // so as a stale result), within one heartbeat interval.
    let stopped = until(
        &channel,
        &submitted.id,
        HEARTBEAT,
        "the host reports the instance stopped",
        |j| j.allocations.iter().all(|a| !a.stale_result.is_empty()),
    )
    .await;
    assert!(pushed.elapsed() <= HEARTBEAT, "{stopped:#?}");
    assert_eq!(stopped.running, 0, "{stopped:#?}");

    // New jobs of the revoked module are refused at submit.
    let status = try_submit(
        &channel,
        spec(&module.digest, caps.clone(), t.grant("grant.json")),
    )
    .await
    .expect_err("revoked module refused");
    assert!(
        status.message().contains("which the policy revokes"),
        "{:?}: {}",
        status.code(),
        status.message()
    );

    // The host keeps version 2; the scheduler reports it; an older policy is refused.
    let kept = t.ws.path("hosts/n1/trust/policy.toml");
    let kept = std::fs::read_to_string(&kept).expect("host keeps the pushed policy");
    assert!(kept.starts_with("version = 2\n"), "{kept}");
    let mut get = vec!["policy", "get", "--addr", &scheduler.addr];
    get.extend(operator.iter().map(String::as_str));
    let out = t.ws.vauban_ok(&get);
    assert!(text(&out.stdout).contains("policy version 2 in force"));
    push.pop();
    push.push("policy.toml");
    let out = t.ws.vauban(&push);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("policy version 1 is older than the version 2"),
        "{}",
        text(&out.stderr)
    );

    // The audit log holds the whole story, and verifies: each root that signed each version,
    // the change, the revocation's stop, and the authorizers of the accepted job.
    let tail = t.ws.vauban_ok(&[
        "audit",
        "tail",
        "--log",
        "sched/audit",
        "-n",
        "100000",
        "--output",
        "json",
    ]);
    let entries: serde_json::Value = serde_json::from_slice(&tail.stdout).expect("json");
    let kinds: Vec<(String, String)> = entries
        .as_array()
        .expect("array")
        .iter()
        .map(|e| {
            let entry = &e["entry"];
            let detail = ["purpose", "by", "new_version"]
                .iter()
                .find_map(|f| entry.get(*f).map(|v| v.to_string()))
                .unwrap_or_default();
            (
                entry["kind"].as_str().unwrap_or_default().to_owned(),
                detail,
            )
        })
        .collect();
    let has = |kind: &str, detail: &str| {
        kinds
            .iter()
            .filter(|(k, d)| k == kind && d.contains(detail))
            .count()
    };
    assert_eq!(has("policy_change", "1"), 1, "{kinds:?}");
    assert_eq!(has("policy_change", "2"), 1, "{kinds:?}");
    assert_eq!(
        has("key_use", "signed trust policy version 1"),
        2,
        "{kinds:?}"
    );
    assert_eq!(
        has("key_use", "signed trust policy version 2"),
        2,
        "{kinds:?}"
    );
    assert_eq!(
        has("key_use", "authorized grant g-1 for job"),
        2,
        "{kinds:?}"
    );
    assert_eq!(has("cancellation", "revocation"), 1, "{kinds:?}");
    t.ws.vauban_ok(&[
        "audit",
        "verify",
        "--log",
        "sched/audit",
        "--key",
        "keys/audit.pub",
    ]);

    // A submitter may not install a policy.
    let submitter = t.ws.tls_args("pki/submitter");
    let mut as_submitter = vec!["policy", "push", "--addr", &scheduler.addr];
    as_submitter.extend(submitter.iter().map(String::as_str));
    as_submitter.push(&v2);
    let out = t.ws.vauban(&as_submitter);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("operator role"),
        "{}",
        text(&out.stderr)
    );

    // A scheduler restarted with the old file keeps the newer policy it stored.
    scheduler.process.kill();
    let restarted = t.scheduler_with_heartbeat(HEARTBEAT);
    let mut get = vec!["policy", "get", "--addr", &restarted.addr];
    get.extend(operator.iter().map(String::as_str));
    let out = t.ws.vauban_ok(&get);
    assert!(
        text(&out.stdout).contains("policy version 2 in force"),
        "{}",
        text(&out.stdout)
    );
}

/// With no scheduler deciding anything (a fake one that never cancels), the host stops the
/// instance itself when a pushed policy revokes its module, and keeps that policy; it ignores a
/// policy that is older, or signed by fewer roots than the one it holds asks for.
#[tokio::test(flavor = "multi_thread")]
async fn a_host_stops_what_a_pushed_policy_revokes_by_itself() {
    let t = Trusted::new();
    let (_host, mut stream, digest) = fake_scheduler(&t, "eu-1", &["jurisdiction=eu"]).await;
    stream
        .send(v1::scheduler_message::Message::Assign(v1::Assignment {
            job_id: "svc".into(),
            attempt: 1,
            module_digest: digest.clone(),
            capabilities: Some(t.caps(|c| c.args.extend(["--sleep".into(), "15000".into()]))),
            program: "hello".into(),
            grant: t.grant("grant.json"),
            ..Default::default()
        }))
        .await;
    // Running for real: its greeting came out.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let message = tokio::time::timeout_at(deadline.into(), stream.from_host.message())
            .await
            .expect("output in time")
            .expect("stream holds")
            .expect("stream open");
        if let Some(v1::host_message::Message::Output(output)) = message.message
            && text(&output.chunk.expect("chunk").data).contains("hello, admission!")
        {
            break;
        }
    }
    // An unsigned-enough policy (one root of two) is refused: the instance keeps running.
    let weak = policy_version(
        &t,
        2,
        &format!("revoked_modules = [\"{digest}\"]\n"),
        &["root1"],
    );
    stream.send(pushed(&t, &weak, 2)).await;
    // The real one: both roots.
    let revoking = policy_version(
        &t,
        3,
        &format!("revoked_modules = [\"{digest}\"]\n"),
        &["root1", "root2"],
    );
    let sent = Instant::now();
    stream.send(pushed(&t, &revoking, 3)).await;
    let finished = stream.finished().await;
    let elapsed = sent.elapsed();
    assert_eq!(finished.job_id, "svc");
    let Some(v1::job_finished::End::Result(result)) = finished.end else {
        panic!("stopped with a result: {finished:?}")
    };
    let outcome =
        vauban_core::Outcome::try_from(result.outcome.expect("outcome")).expect("outcome");
    assert_eq!(outcome, vauban_core::Outcome::Cancelled);
    assert!(elapsed <= HEARTBEAT, "stopped after {elapsed:?}");
    let kept = std::fs::read_to_string(t.ws.path("hosts/eu-1/trust/policy.toml")).expect("kept");
    assert!(kept.starts_with("version = 3\n"), "{kept}");
    // An older policy pushed afterwards changes nothing.
    stream.send(pushed(&t, "policy.toml", 1)).await;
    stream
        .send(v1::scheduler_message::Message::Assign(v1::Assignment {
            job_id: "again".into(),
            attempt: 1,
            module_digest: digest,
            capabilities: Some(t.caps(|_| {})),
            program: "hello".into(),
            grant: t.grant("grant.json"),
            ..Default::default()
        }))
        .await;
    let refused = stream.finished().await;
    let Some(v1::job_finished::End::Refused(reason)) = &refused.end else {
        panic!("refused: {refused:?}")
    };
    assert!(reason.contains("revoke"), "{reason}");
    let kept = std::fs::read_to_string(t.ws.path("hosts/eu-1/trust/policy.toml")).expect("kept");
    assert!(kept.starts_with("version = 3\n"), "{kept}");
}

/// A grant's window closes while its instance runs: the host stops the instance then, on its
/// own, and refuses the next assignment under the same grant.
#[tokio::test(flavor = "multi_thread")]
async fn a_host_stops_an_instance_when_its_grant_expires() {
    let t = Trusted::new();
    t.ws.vauban_ok(&[
        "grant",
        "create",
        "--module",
        "hello.wasm",
        "--dir",
        "data/in:/in:ro",
        "--network",
        "127.0.0.1:9",
        "--memory",
        "64MiB",
        "--timeout",
        "30s",
        "--node-class",
        "eu",
        "--id",
        "g-short",
        "--valid-for",
        "8s",
        "-o",
        "short.json",
    ]);
    for authorizer in ["auth1", "auth2"] {
        t.ws.vauban_ok(&[
            "grant",
            "sign",
            "--key",
            &format!("keys/{authorizer}.key"),
            "short.json",
        ]);
    }
    let (_host, mut stream, digest) = fake_scheduler(&t, "eu-1", &["jurisdiction=eu"]).await;
    let assign = |job: &str| {
        v1::scheduler_message::Message::Assign(v1::Assignment {
            job_id: job.into(),
            attempt: 1,
            module_digest: digest.clone(),
            capabilities: Some(t.caps(|c| c.args.extend(["--sleep".into(), "20000".into()]))),
            program: "hello".into(),
            grant: t.grant("short.json"),
            ..Default::default()
        })
    };
    stream.send(assign("svc")).await;
    let finished = stream.finished().await;
    let Some(v1::job_finished::End::Result(result)) = finished.end else {
        panic!("stopped with a result: {finished:?}")
    };
    let outcome =
        vauban_core::Outcome::try_from(result.outcome.expect("outcome")).expect("outcome");
    // Stopped, not run to the end of its 20 s sleep.
    assert_eq!(outcome, vauban_core::Outcome::Cancelled);
    assert!(text(&result.stdout).contains("hello, admission!"), "it ran");
    stream.send(assign("again")).await;
    let refused = stream.finished().await;
    let Some(v1::job_finished::End::Refused(reason)) = &refused.end else {
        panic!("refused: {refused:?}")
    };
    assert!(reason.contains("grant g-short expired"), "{reason}");
}
