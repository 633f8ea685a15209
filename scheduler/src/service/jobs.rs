//! `vauban.v1.Jobs`: submitting, looking up, cancelling and watching jobs.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use vauban_core::Limits;
use vauban_proto::convert::{InvalidField, capabilities_from_proto};
use vauban_proto::v1;

use super::modules::parse_digest;
use crate::job::{JobId, JobRecord, JobSpec, JobState, OutputChunk, OutputStream};
use crate::state::{SchedulerHandle, WatchEvent};

/// Largest stdin a job may carry.
const MAX_STDIN_BYTES: usize = 16 << 20;
/// `ListJobs` without a limit.
const DEFAULT_LIST_LIMIT: usize = 100;
/// `ListJobs` never returns more, whatever the request says.
const MAX_LIST_LIMIT: usize = 1000;

/// Serves jobs from the state task.
#[derive(Clone, Debug)]
pub(crate) struct JobsService {
    scheduler: SchedulerHandle,
    default_limits: Limits,
}

impl JobsService {
    pub(crate) fn new(scheduler: SchedulerHandle, default_limits: Limits) -> Self {
        Self {
            scheduler,
            default_limits,
        }
    }
}

#[tonic::async_trait]
impl v1::jobs_server::Jobs for JobsService {
    async fn submit_job(
        &self,
        request: Request<v1::SubmitJobRequest>,
    ) -> Result<Response<v1::Job>, Status> {
        let v1::SubmitJobRequest { spec } = request.into_inner();
        let spec = spec.ok_or_else(|| InvalidField::new("spec", "required"))?;
        let spec = spec_from_proto(spec, self.default_limits)?;
        let job = self.scheduler.submit(spec).await?;
        Ok(Response::new(job_to_proto(job, Stdin::Omit)))
    }

    async fn get_job(
        &self,
        request: Request<v1::GetJobRequest>,
    ) -> Result<Response<v1::Job>, Status> {
        let v1::GetJobRequest { id } = request.into_inner();
        let job = self.scheduler.get(JobId::from(id)).await?;
        Ok(Response::new(job_to_proto(job, Stdin::Include)))
    }

    async fn list_jobs(
        &self,
        request: Request<v1::ListJobsRequest>,
    ) -> Result<Response<v1::ListJobsResponse>, Status> {
        let v1::ListJobsRequest { state, limit } = request.into_inner();
        let state = match v1::JobState::try_from(state) {
            Ok(state) => state_from_proto(state),
            Err(_) => {
                return Err(
                    InvalidField::new("state", format!("unknown job state {state}")).into(),
                );
            }
        };
        let limit = match usize::try_from(limit) {
            Ok(0) => DEFAULT_LIST_LIMIT,
            Ok(n) => n.min(MAX_LIST_LIMIT),
            Err(_) => MAX_LIST_LIMIT,
        };
        let jobs = self.scheduler.list(state, limit).await?;
        Ok(Response::new(v1::ListJobsResponse {
            jobs: jobs
                .into_iter()
                .map(|j| job_to_proto(j, Stdin::Omit))
                .collect(),
        }))
    }

    async fn cancel_job(
        &self,
        request: Request<v1::CancelJobRequest>,
    ) -> Result<Response<v1::Job>, Status> {
        let v1::CancelJobRequest { id } = request.into_inner();
        let job = self.scheduler.cancel(JobId::from(id)).await?;
        Ok(Response::new(job_to_proto(job, Stdin::Omit)))
    }

    type WatchJobStream = WatchStream;

    async fn watch_job(
        &self,
        request: Request<v1::WatchJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        let v1::WatchJobRequest { id } = request.into_inner();
        let events = self.scheduler.watch(JobId::from(id)).await?;
        Ok(Response::new(WatchStream {
            events,
            saw_end: false,
            done: false,
        }))
    }
}

/// A job's events as `JobEvent`s. The state task ends the channel after the terminal event; if
/// it ends before (shutdown, or a watcher too slow to keep up), the client gets `UNAVAILABLE`
/// rather than a stream that looks complete.
#[derive(Debug)]
pub(crate) struct WatchStream {
    events: mpsc::Receiver<WatchEvent>,
    saw_end: bool,
    done: bool,
}

impl Stream for WatchStream {
    type Item = Result<v1::JobEvent, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let Some(event) = ready!(self.events.poll_recv(cx)) else {
            self.done = true;
            if self.saw_end {
                return Poll::Ready(None);
            }
            return Poll::Ready(Some(Err(Status::unavailable(
                "watch ended before the job finished; watch it again",
            ))));
        };
        let event = match event {
            WatchEvent::Job(job) => {
                self.saw_end |= job.state.is_terminal();
                v1::job_event::Event::Job(job_to_proto(*job, Stdin::Omit))
            }
            WatchEvent::Output(chunk) => v1::job_event::Event::Output(chunk_to_proto(chunk)),
        };
        Poll::Ready(Some(Ok(v1::JobEvent { event: Some(event) })))
    }
}

fn spec_from_proto(spec: v1::JobSpec, defaults: Limits) -> Result<JobSpec, InvalidField> {
    let v1::JobSpec {
        name,
        module_digest,
        capabilities,
        stdin,
        label_selector,
    } = spec;
    let module = parse_digest("spec.module_digest", &module_digest)?;
    let capabilities = capabilities_from_proto(capabilities.unwrap_or_default(), defaults)?;
    if stdin.len() > MAX_STDIN_BYTES {
        return Err(InvalidField::new(
            "spec.stdin",
            format!(
                "{} bytes, more than the limit of {MAX_STDIN_BYTES}",
                stdin.len()
            ),
        ));
    }
    Ok(JobSpec {
        name,
        module,
        capabilities,
        stdin: Arc::from(stdin),
        label_selector: label_selector.into_iter().collect::<BTreeMap<_, _>>(),
    })
}

/// Whether a `Job` message carries the job's stdin. Only `GetJob` sends it back: it can be
/// 16 MiB, and the other replies (a list of up to a thousand jobs, every event of a watch)
/// would carry it over and over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stdin {
    Include,
    Omit,
}

fn job_to_proto(job: JobRecord, stdin: Stdin) -> v1::Job {
    let message = job.display_message();
    let JobRecord {
        id,
        spec,
        state,
        node,
        attempts,
        result,
        message: _,
        submitted_at_ms,
        finished_at_ms,
        waiting: _,
    } = job;
    let JobSpec {
        name,
        module,
        capabilities,
        stdin: input,
        label_selector,
    } = spec;
    v1::Job {
        id: id.into_string(),
        spec: Some(v1::JobSpec {
            name,
            module_digest: module.to_string(),
            capabilities: Some(capabilities.into()),
            stdin: match stdin {
                Stdin::Include => input.to_vec(),
                Stdin::Omit => Vec::new(),
            },
            label_selector: label_selector.into_iter().collect(),
        }),
        state: state_to_proto(state).into(),
        node_id: node.map(|n| n.to_string()).unwrap_or_default(),
        attempts,
        result: result.map(Into::into),
        message,
        submitted_at_ms,
        finished_at_ms: finished_at_ms.unwrap_or_default(),
    }
}

fn state_to_proto(state: JobState) -> v1::JobState {
    match state {
        JobState::Pending => v1::JobState::Pending,
        JobState::Running => v1::JobState::Running,
        JobState::Completed => v1::JobState::Completed,
        JobState::Failed => v1::JobState::Failed,
        JobState::Cancelled => v1::JobState::Cancelled,
    }
}

/// `None` for "every state".
fn state_from_proto(state: v1::JobState) -> Option<JobState> {
    match state {
        v1::JobState::Unspecified => None,
        v1::JobState::Pending => Some(JobState::Pending),
        v1::JobState::Running => Some(JobState::Running),
        v1::JobState::Completed => Some(JobState::Completed),
        v1::JobState::Failed => Some(JobState::Failed),
        v1::JobState::Cancelled => Some(JobState::Cancelled),
    }
}

fn chunk_to_proto(chunk: OutputChunk) -> v1::OutputChunk {
    let OutputChunk { stream, data } = chunk;
    let stream = match stream {
        OutputStream::Stdout => v1::output_chunk::Stream::Stdout,
        OutputStream::Stderr => v1::output_chunk::Stream::Stderr,
    };
    v1::OutputChunk {
        stream: stream.into(),
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(f: impl FnOnce(&mut v1::JobSpec)) -> Result<JobSpec, String> {
        let mut spec = v1::JobSpec {
            module_digest: vauban_core::ModuleDigest::of(b"m").to_string(),
            ..v1::JobSpec::default()
        };
        f(&mut spec);
        spec_from_proto(spec, Limits::DEFAULT).map_err(|e| e.to_string())
    }

    #[test]
    fn specs_from_the_wire_name_their_bad_fields() {
        let ok = spec(|s| {
            s.label_selector.insert("zone".into(), "alpha".into());
            s.capabilities = Some(v1::Capabilities {
                limits: Some(v1::Limits {
                    memory_bytes: 1 << 20,
                    ..v1::Limits::default()
                }),
                ..v1::Capabilities::default()
            });
        })
        .expect("valid");
        assert_eq!(ok.capabilities.limits.memory_bytes, 1 << 20);
        assert_eq!(ok.capabilities.limits.timeout, Limits::DEFAULT.timeout);
        assert_eq!(ok.label_selector["zone"], "alpha");
        assert_eq!(ok.program(), "job");

        let err = spec(|s| s.module_digest = "md5:x".into()).expect_err("bad digest");
        assert!(err.starts_with("invalid spec.module_digest"), "{err}");
        let err = spec(|s| {
            s.capabilities = Some(v1::Capabilities {
                network: vec!["example.org:80".into()],
                ..v1::Capabilities::default()
            });
        })
        .expect_err("bad network");
        assert!(err.contains("capabilities.network[0]"), "{err}");
        let err = spec(|s| s.stdin = vec![0; MAX_STDIN_BYTES + 1]).expect_err("too much stdin");
        assert!(err.starts_with("invalid spec.stdin"), "{err}");
    }
}
