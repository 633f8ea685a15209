//! `vauban run`: upload a module if the scheduler lacks it, submit a job, stream its output,
//! and exit with the guest's exit code — a remote `vauban exec`.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use vauban_proto::v1::{self, jobs_client::JobsClient};

use super::caps::CapabilityArgs;
use super::client::{ClientArgs, Format, is_terminal, job_json, outcome, state_name, status};

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The signed module (wasm32-wasip1) or component (wasm32-wasip2) to run.
    module: PathBuf,
    #[command(flatten)]
    caps: CapabilityArgs,
    /// The capability grant for the module (as `vauban grant create` and `grant sign` write
    /// it). A scheduler holding a trust policy admits the job only with a grant that verifies
    /// and allows what the job asks for.
    #[arg(long, value_name = "FILE")]
    grant: Option<PathBuf>,
    /// Run only on nodes with this label, KEY=VALUE (repeatable).
    #[arg(long = "label-selector", short = 'l', value_name = "KEY=VALUE", value_parser = super::parse_key_value)]
    labels: Vec<(String, String)>,
    /// A name for the job (default: the module's file name).
    #[arg(long)]
    name: Option<String>,
    /// The namespace the module is uploaded into and the job runs in.
    #[arg(long, short = 'n', default_value = super::spec::DEFAULT_NAMESPACE)]
    namespace: String,
    /// Submit and print the job id without waiting for the result.
    #[arg(long, conflicts_with = "follow")]
    detach: bool,
    /// Stream the guest's output as it is written (the default; kept for explicitness).
    #[arg(long)]
    follow: bool,
    #[command(flatten)]
    client: ClientArgs,
}

pub(crate) async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let cwd = std::env::current_dir()?;
    let bytes = super::read_module(&args.module)?;
    let grant = match &args.grant {
        Some(path) => {
            std::fs::read(path).with_context(|| format!("reading grant {}", path.display()))?
        }
        None => Vec::new(),
    };
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| super::file_name(&args.module));
    let channel = args.client.connect().await?;
    let module =
        super::module::upload(channel.clone(), bytes, name.clone(), &args.namespace).await?;
    // A batch job with the scheduler's defaults for everything `vauban run` has no flag for.
    let spec = v1::JobSpec {
        name,
        module_digest: module.digest,
        capabilities: Some(args.caps.capabilities(&cwd).into()),
        stdin: args.caps.stdin_bytes()?,
        label_selector: args.labels.iter().cloned().collect::<HashMap<_, _>>(),
        namespace: args.namespace.clone(),
        r#type: v1::JobType::Batch as i32,
        grant,
        ..v1::JobSpec::default()
    };
    let mut jobs = JobsClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    if !args.detach {
        return run_and_follow(&mut jobs, spec, args.client.output).await;
    }
    let job = jobs
        .submit_job(v1::SubmitJobRequest { spec: Some(spec) })
        .await
        .map_err(status)?
        .into_inner();
    match args.client.output {
        Format::Json => println!("{}", job_json(&job)),
        Format::Table => println!("{}", job.id),
    }
    Ok(ExitCode::SUCCESS)
}

/// Submits a job and follows it in one call (`RunJob`), so that all of its output is live, and
/// returns the exit code that stands for how it ended.
pub(crate) async fn run_and_follow(
    jobs: &mut JobsClient<tonic::transport::Channel>,
    spec: v1::JobSpec,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let events = jobs
        .run_job(v1::RunJobRequest { spec: Some(spec) })
        .await
        .map_err(status)?
        .into_inner();
    let job = print_events(events, "the job it ran").await?;
    Ok(ended(&job, format))
}

/// Watches a job to its end, printing output as it arrives, and returns the exit code that
/// stands for how it ended.
pub(crate) async fn follow(
    jobs: &mut JobsClient<tonic::transport::Channel>,
    id: &str,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let job = watch(jobs, id).await?;
    Ok(ended(&job, format))
}

/// Streams a job's output to ours until the job reaches a terminal state (or the scheduler
/// ends the watch), and returns the job as it was last seen.
///
/// # Errors
/// The watch cannot start or breaks, or ends before saying anything of the job.
pub(crate) async fn watch(
    jobs: &mut JobsClient<tonic::transport::Channel>,
    id: &str,
) -> anyhow::Result<v1::Job> {
    let events = jobs
        .watch_job(v1::WatchJobRequest { id: id.to_owned() })
        .await
        .map_err(status)?
        .into_inner();
    print_events(events, &format!("job {id}")).await
}

/// Prints a job's events as [`watch`] does; `what` names the job in errors.
async fn print_events(
    mut events: tonic::Streaming<v1::JobEvent>,
    what: &str,
) -> anyhow::Result<v1::Job> {
    // Output is live only: what the guest printed before the watch began is not sent again.
    // So output is printed as it comes only if the watch began before the job ran; otherwise
    // (and for whatever live chunks a slow client missed at the end) it comes from the final
    // result, which carries the bounded stdout and stderr.
    let mut live = None;
    let mut printed = [0usize; 2];
    let mut last = None;
    while let Some(event) = events.message().await.map_err(status)? {
        match event.event {
            Some(v1::job_event::Event::Output(chunk)) if live == Some(true) => {
                let stderr = chunk.stream == v1::output_chunk::Stream::Stderr as i32;
                write_stream(stderr, &chunk.data)?;
                printed[usize::from(stderr)] += chunk.data.len();
            }
            Some(v1::job_event::Event::Output(_)) => {}
            Some(v1::job_event::Event::Job(job)) => {
                live.get_or_insert(job.state == v1::JobState::Pending as i32);
                let done = is_terminal(job.state);
                last = Some(job);
                if done {
                    break;
                }
            }
            None => {}
        }
    }
    let job = last.ok_or_else(|| {
        anyhow::anyhow!("the scheduler ended the watch of {what} without a state")
    })?;
    if let Some(result) = &job.result {
        for (stderr, bytes) in [(false, &result.stdout), (true, &result.stderr)] {
            if let Some(rest) = bytes.get(printed[usize::from(stderr)]..) {
                write_stream(stderr, rest)?;
            }
        }
    }
    Ok(job)
}

fn write_stream(stderr: bool, data: &[u8]) -> std::io::Result<()> {
    if stderr {
        std::io::stderr().write_all(data)
    } else {
        let mut out = std::io::stdout();
        out.write_all(data)?;
        out.flush()
    }
}

/// Reports how a watched batch job ended (one line on stderr, and the job in JSON on stdout
/// if asked) and returns the exit code that stands for it: the guest's own when it exited.
pub(crate) fn ended(job: &v1::Job, format: Format) -> ExitCode {
    if format == Format::Json {
        println!("{}", job_json(job));
    }
    let (ended, code) = match outcome(job) {
        Some(outcome) => (outcome.to_string(), super::report::exit_code(&outcome)),
        None if is_terminal(job.state) => (
            format!("{}: {}", state_name(job.state), job.message),
            ExitCode::from(crate::EXIT_VAUBAN_ERROR),
        ),
        None => (
            format!("watch ended while {}", state_name(job.state)),
            ExitCode::from(crate::EXIT_VAUBAN_ERROR),
        ),
    };
    let mut parts = vec![
        ended,
        format!("job {}", job.id),
        format!("node {}", job.node_id),
    ];
    if let Some(result) = &job.result {
        parts.push(format!(
            "ran {:.1?}",
            std::time::Duration::from_micros(result.run_time_us)
        ));
        if result.stdout_dropped > 0 {
            parts.push(format!(
                "stdout truncated ({} bytes dropped)",
                result.stdout_dropped
            ));
        }
    }
    eprintln!("vauban: {}", parts.join(" · "));
    code
}
