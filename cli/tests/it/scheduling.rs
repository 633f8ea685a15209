//! Scheduling end to end, with several real hosts whose labels differ by site and jurisdiction:
//! constraints, system and service jobs, drains, fencing, and a scheduler killed over and over
//! while jobs are submitted.
//!
//! Long-running instances are `hello --sleep`: they hold a slot without using a core.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use vauban_proto::v1::{self, jobs_client::JobsClient, nodes_client::NodesClient};
use vauban_tests::Target;

use crate::cluster::{
    Process, Scheduler, channel, finished, outcome, sample, spec, start_host, start_scheduler,
    start_scheduler_on, start_scheduler_with, stdout, submit, terminal, upload, wait_for_nodes,
    watch,
};
use crate::support::{Workspace, code, text};

fn constraint(label: &str, op: v1::ConstraintOperator, values: &[&str]) -> v1::Constraint {
    v1::Constraint {
        label: label.into(),
        operator: op.into(),
        values: values.iter().map(|v| (*v).to_owned()).collect(),
    }
}

/// A job spec of `hello` that sleeps `ms` milliseconds (with a timeout well above it).
fn sleeper(digest: &str, ms: u64) -> v1::JobSpec {
    let ms_text = ms.to_string();
    let mut s = spec(digest, &["--sleep", &ms_text], &[]);
    if let Some(caps) = s.capabilities.as_mut() {
        caps.limits = Some(v1::Limits {
            timeout_ms: ms + 60_000,
            memory_bytes: 32 << 20,
            ..Default::default()
        });
    }
    s
}

async fn get(channel: &Channel, id: &str) -> v1::Job {
    JobsClient::new(channel.clone())
        .get_job(v1::GetJobRequest { id: id.into() })
        .await
        .expect("get job")
        .into_inner()
}

async fn node(channel: &Channel, id: &str) -> v1::Node {
    NodesClient::new(channel.clone())
        .get_node(v1::GetNodeRequest { id: id.into() })
        .await
        .expect("get node")
        .into_inner()
}

/// Follows a job until `done` holds for it, and returns it then. Fails after `limit`.
async fn until(
    channel: &Channel,
    id: &str,
    limit: Duration,
    mut done: impl FnMut(&v1::Job) -> bool,
) -> v1::Job {
    let mut last = None;
    let follow = watch(channel, id, |e| match e {
        v1::job_event::Event::Job(job) => {
            last = Some(job.clone());
            done(job)
        }
        v1::job_event::Event::Output(_) => false,
    });
    match tokio::time::timeout(limit, follow).await {
        Ok(_) => last.expect("the watch sends the job first"),
        Err(_) => panic!("job {id} did not get there in {limit:?}: {last:#?}"),
    }
}

/// The nodes of the running allocations of a job.
fn running_on(job: &v1::Job) -> Vec<String> {
    let mut nodes: Vec<String> = job
        .allocations
        .iter()
        .filter(|a| a.state == v1::AllocationState::Running as i32)
        .map(|a| a.node_id.clone())
        .collect();
    nodes.sort();
    nodes
}

fn hosts(ws: &Workspace, scheduler: &Scheduler, nodes: &[(&str, &[&str])]) -> Vec<Process> {
    nodes
        .iter()
        .map(|(id, labels)| start_host(ws, scheduler, id, labels, 4, "trust"))
        .collect()
}

const FR_PARIS: &[&str] = &["site=paris", "jurisdiction=FR", "tier=core"];
const FR_LYON: &[&str] = &["site=lyon", "jurisdiction=FR", "tier=edge"];
const DE_BERLIN: &[&str] = &["site=berlin", "jurisdiction=DE", "tier=edge"];

#[tokio::test(flavor = "multi_thread")]
async fn a_job_constrained_to_fr_only_ever_runs_on_fr_nodes_and_plan_explains_it() {
    let ws = Workspace::new();
    let scheduler = start_scheduler(&ws, "sched", "trust");
    let _hosts = hosts(
        &ws,
        &scheduler,
        &[
            ("fr-paris", FR_PARIS),
            ("fr-lyon", FR_LYON),
            ("de-berlin", DE_BERLIN),
        ],
    );
    let channel = channel(&scheduler).await;
    let module = upload(&channel, &sample(&ws, "hello", Target::P1))
        .await
        .expect("upload");
    // All three hosts, so that the German one could be chosen if the constraint were ignored.
    wait_for_nodes(&channel, 3).await;

    let fr = || {
        let mut s = spec(&module.digest, &[], &[]);
        s.constraints = vec![constraint(
            "jurisdiction",
            v1::ConstraintOperator::Eq,
            &["FR"],
        )];
        s
    };
    let runs: Vec<_> = (0..12)
        .map(|_| {
            let channel = channel.clone();
            let spec = fr();
            tokio::spawn(async move {
                let job = submit(&channel, spec).await;
                finished(&channel, &job.id).await
            })
        })
        .collect();
    let mut used = BTreeSet::new();
    for run in runs {
        let job = run.await.expect("task");
        assert_eq!(job.state, v1::JobState::Completed as i32, "{job:?}");
        for a in &job.allocations {
            assert!(
                a.node_id.starts_with("fr-"),
                "ran on {}: {job:?}",
                a.node_id
            );
            assert!(!a.placement.is_empty(), "the placement is explained");
        }
        used.insert(job.node_id.clone());
    }
    assert!(!used.contains("de-berlin"));

    // `vauban job plan` shows the decision, and names the filter that ruled Berlin out.
    std::fs::write(
        ws.path("fr.toml"),
        format!(
            "name = \"fr-only\"\nmodule = \"{}\"\n\n[[constraint]]\nlabel = \"jurisdiction\"\nop = \"=\"\nvalue = \"FR\"\n",
            module.digest
        ),
    )
    .expect("write spec");
    let out = ws.vauban(&["job", "plan", "fr.toml", "--scheduler", &scheduler.addr]);
    assert_eq!(code(&out), 0, "{}{}", text(&out.stdout), text(&out.stderr));
    let plan = text(&out.stdout);
    assert!(plan.contains("fr-"), "{plan}");
    assert!(plan.contains("jurisdiction = FR"), "{plan}");

    // A job only Germany could take, constrained to Spain, waits and says why.
    let mut es = spec(&module.digest, &[], &[]);
    es.constraints = vec![constraint(
        "jurisdiction",
        v1::ConstraintOperator::Eq,
        &["ES"],
    )];
    let waiting = submit(&channel, es).await;
    let waiting = until(&channel, &waiting.id, Duration::from_secs(10), |j| {
        j.message.contains("no node fits")
    })
    .await;
    assert_eq!(waiting.state, v1::JobState::Pending as i32);
    assert!(
        waiting
            .message
            .contains("3 of 3 nodes evaluated; filtered: 3 jurisdiction = ES"),
        "{}",
        waiting.message
    );
    let out = ws.vauban(&["job", "get", &waiting.id, "--scheduler", &scheduler.addr]);
    assert!(
        text(&out.stdout).contains("jurisdiction = ES"),
        "{}",
        text(&out.stdout)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_system_job_lands_on_each_eligible_node_and_on_a_node_that_joins_later() {
    let ws = Workspace::new();
    let scheduler = start_scheduler(&ws, "sched", "trust");
    let _hosts = hosts(
        &ws,
        &scheduler,
        &[
            ("fr-paris", FR_PARIS),
            ("fr-lyon", FR_LYON),
            ("de-berlin", DE_BERLIN),
        ],
    );
    let channel = channel(&scheduler).await;
    let module = upload(&channel, &sample(&ws, "hello", Target::P1))
        .await
        .expect("upload");
    wait_for_nodes(&channel, 3).await;
    let mut system = sleeper(&module.digest, 600_000);
    system.r#type = v1::JobType::System.into();
    system.constraints = vec![constraint("tier", v1::ConstraintOperator::Eq, &["edge"])];
    let job = submit(&channel, system).await;
    let job = until(&channel, &job.id, Duration::from_secs(30), |j| {
        running_on(j).len() == 2
    })
    .await;
    assert_eq!(
        running_on(&job),
        ["de-berlin", "fr-lyon"],
        "edge nodes only"
    );

    let _late = start_host(
        &ws,
        &scheduler,
        "de-munich",
        &["site=munich", "jurisdiction=DE", "tier=edge"],
        4,
        "trust",
    );
    let job = until(&channel, &job.id, Duration::from_secs(30), |j| {
        running_on(j).len() == 3
    })
    .await;
    assert_eq!(running_on(&job), ["de-berlin", "de-munich", "fr-lyon"]);
    assert_eq!(job.state, v1::JobState::Running as i32);

    let cancelled = JobsClient::new(channel.clone())
        .cancel_job(v1::CancelJobRequest { id: job.id.clone() })
        .await
        .expect("cancel")
        .into_inner();
    assert_eq!(cancelled.state, v1::JobState::Cancelled as i32);
    assert!(running_on(&cancelled).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_keeps_three_replicas_running_when_a_host_is_killed() {
    let ws = Workspace::new();
    let scheduler = start_scheduler(&ws, "sched", "trust");
    let mut hosts = hosts(
        &ws,
        &scheduler,
        &[
            ("fr-paris", FR_PARIS),
            ("fr-lyon", FR_LYON),
            ("de-berlin", DE_BERLIN),
        ],
    );
    let channel = channel(&scheduler).await;
    let module = upload(&channel, &sample(&ws, "hello", Target::P2))
        .await
        .expect("upload");
    wait_for_nodes(&channel, 3).await;
    let mut service = sleeper(&module.digest, 600_000);
    service.r#type = v1::JobType::Service.into();
    service.replicas = 3;
    service.spreads = vec![v1::Spread {
        label: "site".into(),
        weight: 100,
        ..Default::default()
    }];
    let job = submit(&channel, service).await;
    let job = until(&channel, &job.id, Duration::from_secs(30), |j| {
        running_on(j).len() == 3 && running_on(j).iter().collect::<HashSet<_>>().len() == 3
    })
    .await;
    assert_eq!(
        running_on(&job),
        ["de-berlin", "fr-lyon", "fr-paris"],
        "spread over sites"
    );

    // Kill the host running the first replica: its stream ends, the scheduler declares the
    // attempt lost and starts the replica elsewhere.
    let victim = job.allocations[0].node_id.clone();
    let index = ["fr-paris", "fr-lyon", "de-berlin"]
        .iter()
        .position(|n| *n == victim)
        .expect("known node");
    hosts.remove(index).kill();
    let job = until(&channel, &job.id, Duration::from_secs(30), |j| {
        running_on(j).len() == 3 && !running_on(j).contains(&victim)
    })
    .await;
    let lost: Vec<_> = job
        .allocations
        .iter()
        .filter(|a| a.state == v1::AllocationState::Lost as i32)
        .collect();
    assert_eq!(lost.len(), 1, "{job:#?}");
    assert_eq!(lost[0].node_id, victim);
    assert_eq!(job.state, v1::JobState::Running as i32);
    assert_eq!(job.running, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_drain_empties_a_node() {
    let ws = Workspace::new();
    let scheduler = start_scheduler(&ws, "sched", "trust");
    let _hosts = hosts(
        &ws,
        &scheduler,
        &[("fr-paris", FR_PARIS), ("fr-lyon", FR_LYON)],
    );
    let channel = channel(&scheduler).await;
    let module = upload(&channel, &sample(&ws, "hello", Target::P1))
        .await
        .expect("upload");
    wait_for_nodes(&channel, 2).await;
    // Two replicas land apart: one on each node.
    let mut service = sleeper(&module.digest, 600_000);
    service.r#type = v1::JobType::Service.into();
    service.replicas = 2;
    let service = submit(&channel, service).await;
    let service = until(&channel, &service.id, Duration::from_secs(30), |j| {
        running_on(j) == ["fr-lyon", "fr-paris"]
    })
    .await;
    // And a batch job pinned to Paris, still running when the drain's deadline comes.
    let mut batch = sleeper(&module.digest, 600_000);
    batch.affinities = vec![v1::Affinity {
        constraint: Some(constraint("site", v1::ConstraintOperator::Eq, &["paris"])),
        weight: 100,
    }];
    let batch = submit(&channel, batch).await;
    let batch = until(&channel, &batch.id, Duration::from_secs(30), |j| {
        running_on(j) == ["fr-paris"]
    })
    .await;

    let out = ws.vauban(&[
        "node",
        "drain",
        "fr-paris",
        "--deadline",
        "1s",
        "--scheduler",
        &scheduler.addr,
    ]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    // The service replica moves at once; the batch job at the deadline.
    let service = until(&channel, &service.id, Duration::from_secs(30), |j| {
        running_on(j) == ["fr-lyon", "fr-lyon"]
    })
    .await;
    assert!(
        service
            .allocations
            .iter()
            .any(|a| a.node_id == "fr-paris" && a.state == v1::AllocationState::Stopped as i32)
    );
    let batch = until(&channel, &batch.id, Duration::from_secs(30), |j| {
        running_on(j) == ["fr-lyon"]
    })
    .await;
    assert_eq!(
        batch.allocations[0].state,
        v1::AllocationState::Stopped as i32
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let paris = node(&channel, "fr-paris").await;
        if paris.drain.as_ref().is_some_and(|d| d.complete) {
            assert!(paris.running_jobs.is_empty(), "{paris:?}");
            assert_eq!(paris.state, v1::NodeState::Draining as i32);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "drain did not complete: {paris:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let shown = ws.vauban(&["node", "show", "fr-paris", "--scheduler", &scheduler.addr]);
    assert!(
        text(&shown.stdout).contains("draining"),
        "{}",
        text(&shown.stdout)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_returning_fenced_hosts_stale_result_is_not_the_jobs_result() {
    let ws = Workspace::new();
    // Down after 1 s of silence, so that a stopped host is fenced quickly.
    let scheduler = start_scheduler_with(&ws, "127.0.0.1:0", "sched", "trust", "1s");
    let paris = start_host(&ws, &scheduler, "fr-paris", FR_PARIS, 4, "trust");
    let _lyon = start_host(&ws, &scheduler, "fr-lyon", FR_LYON, 4, "trust");
    let channel = channel(&scheduler).await;
    let module = upload(&channel, &sample(&ws, "hello", Target::P1))
        .await
        .expect("upload");
    wait_for_nodes(&channel, 2).await;
    let mut job = sleeper(&module.digest, 4_000);
    job.affinities = vec![v1::Affinity {
        constraint: Some(constraint("site", v1::ConstraintOperator::Eq, &["paris"])),
        weight: 100,
    }];
    let job = submit(&channel, job).await;
    until(&channel, &job.id, Duration::from_secs(30), |j| {
        running_on(j) == ["fr-paris"]
    })
    .await;

    // Freeze Paris: its heartbeats stop, the scheduler fences attempt 1 and runs attempt 2 in
    // Lyon. Then let Paris go on: its guest finishes, and its host reconnects and reports.
    let pid = paris.0.id().to_string();
    let signal = |sig: &str| {
        let status = Command::new("kill")
            .args([sig, &pid])
            .status()
            .expect("kill");
        assert!(status.success());
    };
    signal("-STOP");
    let rescheduled = until(&channel, &job.id, Duration::from_secs(30), |j| {
        running_on(j) == ["fr-lyon"]
    })
    .await;
    assert_eq!(
        rescheduled.allocations[0].state,
        v1::AllocationState::Lost as i32
    );
    signal("-CONT");

    let done = finished(&channel, &job.id).await;
    assert_eq!(done.state, v1::JobState::Completed as i32, "{done:#?}");
    assert_eq!(done.node_id, "fr-lyon");
    assert_eq!(stdout(&done), "hello, world!\nslept 4000ms\n");
    // The late report from Paris is kept on its attempt, as stale.
    let deadline = Instant::now() + Duration::from_secs(30);
    let job = loop {
        let job = get(&channel, &job.id).await;
        if !job.allocations[0].stale_result.is_empty() {
            break job;
        }
        assert!(
            Instant::now() < deadline,
            "no stale result recorded: {job:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(job.allocations[0].state, v1::AllocationState::Lost as i32);
    assert_eq!(job.node_id, "fr-lyon");
    assert_eq!(job.result, done.result, "the job's result is attempt 2's");
    let completed = job
        .allocations
        .iter()
        .filter(|a| a.state == v1::AllocationState::Completed as i32)
        .count();
    assert_eq!(completed, 1);
}

/// Submits jobs until `total` are accepted, retrying what a crash refused, and returns the ids
/// accepted.
async fn submit_through_crashes(
    addr: String,
    tls: Option<tonic::transport::ClientTlsConfig>,
    digest: String,
    total: usize,
    counter: Arc<AtomicUsize>,
) -> Vec<String> {
    let mut accepted = Vec::new();
    let mut channel: Option<Channel> = None;
    while accepted.len() < total {
        let ch = match &channel {
            Some(ch) => ch.clone(),
            None => match crate::support::connect(&addr, tls.as_ref()).await {
                Ok(ch) => {
                    channel = Some(ch.clone());
                    ch
                }
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let name = format!("crash-{}", accepted.len());
        let spec = spec(&digest, &["--name", &name], &[]);
        match JobsClient::new(ch)
            .submit_job(v1::SubmitJobRequest { spec: Some(spec) })
            .await
        {
            Ok(job) => {
                accepted.push(job.into_inner().id);
                counter.fetch_add(1, Ordering::SeqCst);
            }
            Err(_) => {
                channel = None;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    accepted
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scheduler_killed_three_times_loses_no_accepted_job_and_records_each_result_once() {
    const JOBS: usize = 1000;
    let ws = Workspace::new();
    let mut scheduler = start_scheduler(&ws, "sched", "trust");
    let listen = scheduler.addr.trim_start_matches("https://").to_owned();
    let _a = start_host(&ws, &scheduler, "fr-paris", FR_PARIS, 8, "trust");
    let _b = start_host(&ws, &scheduler, "fr-lyon", FR_LYON, 8, "trust");
    let module = upload(
        &channel(&scheduler).await,
        &sample(&ws, "hello", Target::P1),
    )
    .await
    .expect("upload");

    // Four submitters, 250 accepted jobs each, while the scheduler is killed (SIGKILL) and
    // restarted three times, at points spread over the submissions.
    let counter = Arc::new(AtomicUsize::new(0));
    let submitters: Vec<_> = (0..4)
        .map(|_| {
            tokio::spawn(submit_through_crashes(
                scheduler.addr.clone(),
                scheduler.tls.clone(),
                module.digest.clone(),
                JOBS / 4,
                Arc::clone(&counter),
            ))
        })
        .collect();
    let mut kills = 0;
    for at in [150, 450, 750] {
        while counter.load(Ordering::SeqCst) < at {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        scheduler.process.kill();
        kills += 1;
        scheduler = start_scheduler_on(&ws, &listen, "sched", "trust");
    }
    assert_eq!(kills, 3);
    let mut accepted = Vec::new();
    for s in submitters {
        accepted.extend(s.await.expect("submitter"));
    }
    assert_eq!(accepted.len(), JOBS);
    assert_eq!(
        accepted.iter().collect::<HashSet<_>>().len(),
        JOBS,
        "ids are unique"
    );

    // Every accepted job ends, once: completed, with exactly one completed attempt whose
    // result is the job's.
    let channel = channel(&scheduler).await;
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut states: BTreeMap<i32, usize> = BTreeMap::new();
    for id in &accepted {
        let job = loop {
            let job = get(&channel, id).await;
            if terminal(job.state) {
                break job;
            }
            assert!(Instant::now() < deadline, "job {id} never ended: {job:#?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        *states.entry(job.state).or_default() += 1;
        assert_eq!(job.state, v1::JobState::Completed as i32, "{job:#?}");
        let completed = job
            .allocations
            .iter()
            .filter(|a| a.state == v1::AllocationState::Completed as i32)
            .count();
        assert_eq!(completed, 1, "{job:#?}");
        assert!(stdout(&job).starts_with("hello, crash-"), "{job:#?}");
        assert_eq!(outcome(&job), vauban_core::Outcome::Exited { code: 0 });
    }
    assert_eq!(states.get(&(v1::JobState::Completed as i32)), Some(&JOBS));
}
