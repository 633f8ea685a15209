//! `vauban job`: inspect, list and cancel jobs, and read their output.

use std::io::Write as _;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use vauban_proto::v1::{self, jobs_client::JobsClient};

use super::client::{
    ClientArgs, Format, is_terminal, job_json, outcome, print_table, state_name, status, time,
};

#[derive(Debug, Subcommand)]
pub(crate) enum JobCommand {
    /// Show one job: state, node, attempts, outcome, and why it waits if it does.
    Get(IdArgs),
    /// List jobs, newest first.
    List(ListArgs),
    /// Cancel a pending or running job (the host running it stops it).
    Cancel(IdArgs),
    /// Print a job's output; with --follow, stream it until the job ends.
    Logs(LogsArgs),
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
                            vec![
                                j.id.clone(),
                                j.spec.as_ref().map(|s| s.name.clone()).unwrap_or_default(),
                                state_name(j.state).to_owned(),
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
                            "STATE",
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

fn print_job(job: &v1::Job) {
    let spec = job.spec.clone().unwrap_or_default();
    let mut selector: Vec<String> = spec
        .label_selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    selector.sort();
    let rows = [
        ("id", job.id.clone()),
        ("name", spec.name),
        ("module", spec.module_digest),
        ("state", state_name(job.state).to_owned()),
        ("node", job.node_id.clone()),
        ("attempts", job.attempts.to_string()),
        ("selector", selector.join(",")),
        (
            "outcome",
            outcome(job).map(|o| o.to_string()).unwrap_or_default(),
        ),
        ("message", job.message.clone()),
        ("submitted", time(job.submitted_at_ms)),
        ("finished", time(job.finished_at_ms)),
    ];
    for (key, value) in rows {
        if !value.is_empty() {
            println!("{key:<10} {value}");
        }
    }
}
