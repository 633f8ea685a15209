//! `vauban job`: run jobs from spec files, plan them, inspect, list and cancel jobs, and read
//! their output.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;
use tonic::transport::Channel;
use vauban_proto::v1::{self, jobs_client::JobsClient};

use super::client::{
    ClientArgs, Format, allocation_state_name, is_terminal, job_json, namespace, outcome,
    print_table, state_name, status, time,
};
use super::spec::{self, JobFile, ModuleSource};

/// Exit code of `vauban job plan` when an instance would wait.
const EXIT_PLAN_WAITS: u8 = 2;

#[derive(Debug, Subcommand)]
pub(crate) enum JobCommand {
    /// Submit the job a spec file describes (see docs/job-spec.md) and print its id.
    ///
    /// If the spec names a module file, it is uploaded first into the job's namespace (it must
    /// be signed by a key the scheduler trusts: `vauban sign --key KEY FILE`). With --follow,
    /// the job's output is streamed; for a batch job vauban then exits with the guest's exit
    /// code, like `vauban run`; for a service or system job it follows until the job ends
    /// (Ctrl-C stops following, not the job) and exits 0, or 1 if the job failed.
    Run(SpecArgs),
    /// Show where each instance of a spec file's job would run now, without submitting it.
    ///
    /// Prints, per instance, the node the scheduler would choose (or "waits"), its
    /// explanation, and the allocations it would preempt. If the spec names a module file, it
    /// is uploaded first (the scheduler must know the module). Exit status: 0 if every
    /// instance would be placed; 2 if any would wait, or if nothing would run at all (a
    /// system job with no eligible node); 125 if vauban failed.
    Plan(PlanArgs),
    /// Show one job: type, namespace, state, instances running, its allocations, outcome,
    /// and why it waits if it does.
    Get(IdArgs),
    /// List jobs, newest first.
    List(ListArgs),
    /// Cancel a pending or running job (the host running it stops it).
    Cancel(IdArgs),
    /// Print a job's output; with --follow, stream it until the job ends.
    Logs(LogsArgs),
}

#[derive(Debug, Args)]
pub(crate) struct SpecArgs {
    /// The job spec file (TOML).
    spec: PathBuf,
    /// Stream the job's output until it ends.
    #[arg(long, short = 'f')]
    follow: bool,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Args)]
pub(crate) struct PlanArgs {
    /// The job spec file (TOML).
    spec: PathBuf,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Args)]
pub(crate) struct IdArgs {
    /// The job id.
    id: String,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only jobs in this state.
    #[arg(long, value_enum)]
    state: Option<StateFilter>,
    /// Only jobs in this namespace (default: every namespace).
    #[arg(long, short = 'n')]
    namespace: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 100)]
    limit: u32,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Args)]
pub(crate) struct LogsArgs {
    /// The job id.
    id: String,
    /// Stream output until the job ends.
    #[arg(long, short = 'f')]
    follow: bool,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum StateFilter {
    Pending,
    Running,
    Completed,
    Failed,
    Cancelled,
}

pub(crate) async fn run(cmd: JobCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        JobCommand::Run(args) => return submit(args).await,
        JobCommand::Plan(args) => return plan(args).await,
        JobCommand::Get(args) => {
            let mut jobs = JobsClient::new(args.client.connect().await?);
            let job = jobs
                .get_job(v1::GetJobRequest { id: args.id })
                .await
                .map_err(status)?
                .into_inner();
            match args.client.output {
                Format::Json => println!("{}", job_json(&job)),
                Format::Table => print_job(&job),
            }
        }
        JobCommand::List(args) => {
            let mut jobs = JobsClient::new(args.client.connect().await?);
            let state = args.state.map_or(v1::JobState::Unspecified, |s| match s {
                StateFilter::Pending => v1::JobState::Pending,
                StateFilter::Running => v1::JobState::Running,
                StateFilter::Completed => v1::JobState::Completed,
                StateFilter::Failed => v1::JobState::Failed,
                StateFilter::Cancelled => v1::JobState::Cancelled,
            });
            let list = jobs
                .list_jobs(v1::ListJobsRequest {
                    state: state as i32,
                    limit: args.limit,
                    namespace: args.namespace.unwrap_or_default(),
                })
                .await
                .map_err(status)?
                .into_inner()
                .jobs;
            match args.client.output {
                Format::Json => println!(
                    "{}",
                    serde_json::Value::Array(list.iter().map(job_json).collect())
                ),
                Format::Table => {
                    let rows: Vec<Vec<String>> = list
                        .iter()
                        .map(|j| {
                            let spec = j.spec.clone().unwrap_or_default();
                            vec![
                                j.id.clone(),
                                spec.name,
                                namespace(&spec.namespace).to_owned(),
                                spec::type_name(spec.r#type).to_owned(),
                                state_name(j.state).to_owned(),
                                j.running.to_string(),
                                j.node_id.clone(),
                                j.attempts.to_string(),
                                outcome(j).map(|o| o.to_string()).unwrap_or_default(),
                                time(j.submitted_at_ms),
                            ]
                        })
                        .collect();
                    print_table(
                        &[
                            "ID",
                            "NAME",
                            "NAMESPACE",
                            "TYPE",
                            "STATE",
                            "RUNNING",
                            "NODE",
                            "ATTEMPTS",
                            "OUTCOME",
                            "SUBMITTED",
                        ],
                        &rows,
                    );
                }
            }
        }
        JobCommand::Cancel(args) => {
            let mut jobs = JobsClient::new(args.client.connect().await?);
            let job = jobs
                .cancel_job(v1::CancelJobRequest { id: args.id })
                .await
                .map_err(status)?
                .into_inner();
            match args.client.output {
                Format::Json => println!("{}", job_json(&job)),
                Format::Table => println!("{} {}", job.id, state_name(job.state)),
            }
        }
        JobCommand::Logs(args) => {
            let mut jobs =
                JobsClient::new(args.client.connect().await?).max_decoding_message_size(64 << 20);
            let job = jobs
                .get_job(v1::GetJobRequest {
                    id: args.id.clone(),
                })
                .await
                .map_err(status)?
                .into_inner();
            if args.follow && !is_terminal(job.state) {
                return super::run::follow(&mut jobs, &args.id, Format::Table).await;
            }
            if let Some(result) = &job.result {
                std::io::stdout().write_all(&result.stdout)?;
                std::io::stderr().write_all(&result.stderr)?;
            } else {
                eprintln!(
                    "job {} is {}: no output recorded yet",
                    job.id,
                    state_name(job.state)
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `vauban job run`: submits a spec file's job, uploading its module first if need be.
async fn submit(args: SpecArgs) -> anyhow::Result<ExitCode> {
    let file = spec::load(&args.spec)?;
    let channel = args.client.connect().await?;
    let spec = resolve(file, channel.clone()).await?;
    let batch = !matches!(
        v1::JobType::try_from(spec.r#type),
        Ok(v1::JobType::Service | v1::JobType::System)
    );
    let mut jobs = JobsClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    if args.follow && batch {
        return super::run::run_and_follow(&mut jobs, spec, args.client.output).await;
    }
    let job = jobs
        .submit_job(v1::SubmitJobRequest { spec: Some(spec) })
        .await
        .map_err(status)?
        .into_inner();
    if !args.follow {
        match args.client.output {
            Format::Json => println!("{}", job_json(&job)),
            Format::Table => println!("{}", job.id),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let kind = spec::type_name(job.spec.as_ref().map_or(0, |s| s.r#type));
    eprintln!(
        "vauban: {kind} job {} submitted; following its output (Ctrl-C stops following, not the job)",
        job.id
    );
    let job = super::run::watch(&mut jobs, &job.id).await?;
    if args.client.output == Format::Json {
        println!("{}", job_json(&job));
    }
    eprintln!(
        "vauban: {kind} job {} {}{}",
        job.id,
        state_name(job.state),
        if job.message.is_empty() {
            String::new()
        } else {
            format!(": {}", job.message)
        }
    );
    Ok(if job.state == v1::JobState::Failed as i32 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `vauban job plan`: what the scheduler would do with a spec file's job now.
async fn plan(args: PlanArgs) -> anyhow::Result<ExitCode> {
    let file = spec::load(&args.spec)?;
    let channel = args.client.connect().await?;
    let spec = resolve(file, channel.clone()).await?;
    let kind = spec::type_name(spec.r#type);
    let plan = JobsClient::new(channel)
        .max_encoding_message_size(64 << 20)
        .plan_job(v1::PlanJobRequest { spec: Some(spec) })
        .await
        .map_err(status)?
        .into_inner();
    let places = !plan.instances.is_empty() && plan.instances.iter().all(|i| !i.node_id.is_empty());
    match args.client.output {
        Format::Json => {
            let instances: Vec<_> = plan
                .instances
                .iter()
                .map(|i| {
                    json!({
                        "instance": i.instance,
                        "node_id": i.node_id,
                        "waits": i.node_id.is_empty(),
                        "explanation": i.explanation,
                        "preempt": i.preempt,
                    })
                })
                .collect();
            println!("{}", json!({ "places": places, "instances": instances }));
        }
        Format::Table if plan.instances.is_empty() => {
            println!("no instance would run now: no node is eligible for this {kind} job");
        }
        Format::Table => print_table(
            &["INSTANCE", "NODE", "PREEMPTS", "EXPLANATION"],
            &plan_rows(&plan),
        ),
    }
    Ok(if places {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_PLAN_WAITS)
    })
}

fn plan_rows(plan: &v1::PlanJobResponse) -> Vec<Vec<String>> {
    plan.instances
        .iter()
        .map(|i| {
            vec![
                i.instance.to_string(),
                if i.node_id.is_empty() {
                    "waits".to_owned()
                } else {
                    i.node_id.clone()
                },
                i.preempt.join(","),
                i.explanation.clone(),
            ]
        })
        .collect()
}

/// The spec to send: the file's, with its module uploaded into the job's namespace first when
/// the file names one by path.
async fn resolve(file: JobFile, channel: Channel) -> anyhow::Result<v1::JobSpec> {
    let JobFile {
        mut spec, module, ..
    } = file;
    if let ModuleSource::Path(path) = module {
        let bytes = super::read_module(&path)?;
        let info =
            super::module::upload(channel, bytes, super::file_name(&path), &spec.namespace).await?;
        spec.module_digest = info.digest;
    }
    Ok(spec)
}

fn print_job(job: &v1::Job) {
    let spec = job.spec.clone().unwrap_or_default();
    let mut selector: Vec<String> = spec
        .label_selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    selector.sort();
    let job_type = v1::JobType::try_from(spec.r#type).unwrap_or(v1::JobType::Unspecified);
    let running = match job_type {
        v1::JobType::Service => format!("{}/{}", job.running, spec.replicas.max(1)),
        _ => job.running.to_string(),
    };
    let restart = spec.restart.map(|r| {
        let or = |v: u64, d: u64| if v == 0 { d } else { v };
        let ms = |v| humantime::format_duration(std::time::Duration::from_millis(v)).to_string();
        format!(
            "{} attempts, delay {} doubling up to {}",
            if r.attempts == 0 { 3 } else { r.attempts },
            ms(or(r.initial_delay_ms, 1000)),
            ms(or(r.max_delay_ms, 60_000)),
        )
    });
    let affinities: Vec<String> = spec
        .affinities
        .iter()
        .map(|a| {
            let test = a
                .constraint
                .as_ref()
                .map(spec::describe)
                .unwrap_or_default();
            format!("{test} (weight {})", a.weight)
        })
        .collect();
    let spreads: Vec<String> = spec
        .spreads
        .iter()
        .map(|s| {
            let mut targets: Vec<String> =
                s.targets.iter().map(|(v, p)| format!("{v} {p}%")).collect();
            targets.sort();
            let targets = if targets.is_empty() {
                "even".to_owned()
            } else {
                targets.join(", ")
            };
            format!("{} (weight {}): {targets}", s.label, s.weight)
        })
        .collect();
    let waiting = job.state == v1::JobState::Pending as i32;
    let rows = [
        ("id", job.id.clone()),
        ("name", spec.name),
        ("namespace", namespace(&spec.namespace).to_owned()),
        ("type", spec::type_name(spec.r#type).to_owned()),
        ("priority", spec.priority.to_string()),
        ("module", spec.module_digest),
        ("state", state_name(job.state).to_owned()),
        ("running", running),
        ("node", job.node_id.clone()),
        ("attempts", job.attempts.to_string()),
        ("selector", selector.join(",")),
        (
            "constraints",
            spec.constraints
                .iter()
                .map(spec::describe)
                .collect::<Vec<_>>()
                .join("; "),
        ),
        ("affinities", affinities.join("; ")),
        ("spreads", spreads.join("; ")),
        ("restart", restart.unwrap_or_default()),
        (
            "outcome",
            outcome(job).map(|o| o.to_string()).unwrap_or_default(),
        ),
        (
            if waiting { "waiting" } else { "message" },
            job.message.clone(),
        ),
        ("submitted", time(job.submitted_at_ms)),
        ("finished", time(job.finished_at_ms)),
    ];
    for (key, value) in rows {
        if !value.is_empty() {
            println!("{key:<12} {value}");
        }
    }
    if job.allocations.is_empty() {
        return;
    }
    println!();
    let stale = job.allocations.iter().any(|a| !a.stale_result.is_empty());
    let mut headers = vec![
        "ATTEMPT", "INSTANCE", "NODE", "STATE", "STARTED", "FINISHED", "MESSAGE",
    ];
    if stale {
        headers.push("STALE RESULT");
    }
    let rows: Vec<Vec<String>> = job
        .allocations
        .iter()
        .map(|a| {
            let mut row = vec![
                a.attempt.to_string(),
                a.instance.to_string(),
                a.node_id.clone(),
                allocation_state_name(a.state).to_owned(),
                time(a.started_at_ms),
                time(a.finished_at_ms),
                a.message.clone(),
            ];
            if stale {
                row.push(a.stale_result.clone());
            }
            row
        })
        .collect();
    print_table(&headers, &rows);
}
