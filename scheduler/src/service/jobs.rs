//! `vauban.v1.Jobs`: submitting, looking up, cancelling and watching jobs.
//!
//! In policy mode a job is admitted here, before the state task sees it ([`JobAdmission`]):
//! checking its grant's signatures is CPU work that the one state task should not do, and
//! admission needs nothing the state task owns.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use vauban_audit::entry as audit;
use vauban_core::{GrantError, Limits, SignedGrant};
use vauban_proto::convert::{InvalidField, capabilities_from_proto};
use vauban_proto::v1;

use super::modules::parse_digest;
use crate::identity::{Need, require};
use crate::job::{
    AllocState, Allocation, DEFAULT_NAMESPACE, DEFAULT_PRIORITY, JobId, JobKind, JobRecord,
    JobSpec, JobState, OutputChunk, OutputStream, RestartPolicy,
};
use crate::module::ModuleRegistry;
use crate::placement::{Affinity, Constraint, Operator, PlacementSpec, Spread};
use crate::state::{SchedulerHandle, WatchEvent};
use crate::trust::{JobRefusal, Trust, admit_job};

/// Largest stdin a job may carry.
const MAX_STDIN_BYTES: usize = 16 << 20;
/// Largest grant a job may carry (a grant with a few signatures is a few KiB).
const MAX_GRANT_BYTES: usize = 64 << 10;
/// `ListJobs` without a limit.
const DEFAULT_LIST_LIMIT: usize = 100;
/// `ListJobs` never returns more, whatever the request says.
const MAX_LIST_LIMIT: usize = 1000;

/// Serves jobs from the state task.
#[derive(Clone, Debug)]
pub(crate) struct JobsService {
    scheduler: SchedulerHandle,
    default_limits: Limits,
    admission: JobAdmission,
}

impl JobsService {
    pub(crate) fn new(
        scheduler: SchedulerHandle,
        default_limits: Limits,
        admission: JobAdmission,
    ) -> Self {
        Self {
            scheduler,
            default_limits,
            admission,
        }
    }

    /// A submitted spec, checked and admitted: what the state task then accepts.
    async fn admitted(&self, spec: Option<v1::JobSpec>) -> Result<JobSpec, Status> {
        let spec = spec.ok_or_else(|| InvalidField::new("spec", "required"))?;
        let mut spec = spec_from_proto(spec, self.default_limits)?;
        self.admission
            .admit(&mut spec, Some(&self.scheduler))
            .await?;
        Ok(spec)
    }
}

/// Admission of jobs under the scheduler's trust: nothing to check in keys-only mode; in
/// policy mode the job's grant must verify under the policy in force, be for the job's module,
/// and allow what the job asks for on one of its node classes, which then restrict where the
/// job is placed (`trust::admit_job`).
#[derive(Clone, Debug)]
pub(crate) struct JobAdmission {
    trust: Trust,
    /// For the module's kind, which the grant must name too.
    registry: ModuleRegistry,
}

impl JobAdmission {
    pub(crate) fn new(trust: Trust, registry: ModuleRegistry) -> Self {
        Self { trust, registry }
    }

    /// Admits `spec`, restricting its placement to its grant's node classes. A refused
    /// submission (`record`) is written to the audit log, if one is kept, through `scheduler`.
    async fn admit(
        &self,
        spec: &mut JobSpec,
        record: Option<&SchedulerHandle>,
    ) -> Result<(), Status> {
        let Trust::Policy(policy) = &self.trust else {
            return Ok(());
        };
        // A module not uploaded is refused by the state task, which says so.
        let kind = self.registry.get(spec.module).await?.map(|m| m.kind);
        let refused = match admit_job(&policy.current(), spec, kind, SystemTime::now()) {
            Ok(()) => return Ok(()),
            Err(refused) => refused,
        };
        if let Some(scheduler) = record {
            let entry = audit::Entry::Admission(audit::Admission {
                at_ms: crate::now_ms(),
                decision: audit::Decision::Refused,
                subject: audit::Subject::Job,
                job: String::new(),
                module: spec.module.to_string(),
                namespace: spec.namespace.clone(),
                reason: refused.to_string(),
            });
            if let Err(error) = scheduler.record_audit(vec![entry]).await {
                tracing::error!(%error, "cannot record a refused job in the audit log");
            }
        }
        Err(refusal_to_status(refused))
    }
}

/// A malformed grant is a bad argument; a missing, untrusted or insufficient one is a denial.
fn refusal_to_status(refused: JobRefusal) -> Status {
    let message = refused.to_string();
    match refused {
        JobRefusal::Grant(
            GrantError::Envelope(_) | GrantError::Malformed(_) | GrantError::NotCanonical,
        ) => Status::invalid_argument(message),
        JobRefusal::NoGrant | JobRefusal::Grant(_) | JobRefusal::Inadmissible(_) => {
            Status::permission_denied(message)
        }
    }
}

#[tonic::async_trait]
impl v1::jobs_server::Jobs for JobsService {
    async fn submit_job(
        &self,
        request: Request<v1::SubmitJobRequest>,
    ) -> Result<Response<v1::Job>, Status> {
        require(&request, Need::Submit("submitting a job"))?;
        let v1::SubmitJobRequest { spec } = request.into_inner();
        let spec = self.admitted(spec).await?;
        let job = self.scheduler.submit(spec).await?;
        Ok(Response::new(job_to_proto(job, Stdin::Omit)))
    }

    type RunJobStream = WatchStream;

    async fn run_job(
        &self,
        request: Request<v1::RunJobRequest>,
    ) -> Result<Response<Self::RunJobStream>, Status> {
        require(&request, Need::Submit("running a job"))?;
        let v1::RunJobRequest { spec } = request.into_inner();
        let spec = self.admitted(spec).await?;
        let events = self.scheduler.run(spec).await?;
        Ok(Response::new(WatchStream::new(events)))
    }

    async fn get_job(
        &self,
        request: Request<v1::GetJobRequest>,
    ) -> Result<Response<v1::Job>, Status> {
        require(&request, Need::Read("reading a job"))?;
        let v1::GetJobRequest { id } = request.into_inner();
        let job = self.scheduler.get(JobId::from(id)).await?;
        Ok(Response::new(job_to_proto(job, Stdin::Include)))
    }

    async fn list_jobs(
        &self,
        request: Request<v1::ListJobsRequest>,
    ) -> Result<Response<v1::ListJobsResponse>, Status> {
        require(&request, Need::Read("listing jobs"))?;
        let v1::ListJobsRequest {
            state,
            limit,
            namespace,
        } = request.into_inner();
        let namespace = if namespace.is_empty() {
            None
        } else {
            Some(namespace_from_proto("namespace", namespace)?)
        };
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
        let jobs = self.scheduler.list(state, namespace, limit).await?;
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
        require(&request, Need::Submit("cancelling a job"))?;
        let v1::CancelJobRequest { id } = request.into_inner();
        let job = self.scheduler.cancel(JobId::from(id)).await?;
        Ok(Response::new(job_to_proto(job, Stdin::Omit)))
    }

    async fn plan_job(
        &self,
        request: Request<v1::PlanJobRequest>,
    ) -> Result<Response<v1::PlanJobResponse>, Status> {
        require(&request, Need::Read("planning a job"))?;
        let v1::PlanJobRequest { spec } = request.into_inner();
        let spec = spec.ok_or_else(|| InvalidField::new("spec", "required"))?;
        let mut spec = spec_from_proto(spec, self.default_limits)?;
        self.admission.admit(&mut spec, None).await?;
        let planned = self.scheduler.plan(spec).await?;
        Ok(Response::new(v1::PlanJobResponse {
            instances: planned
                .into_iter()
                .map(|p| v1::PlannedInstance {
                    instance: p.instance,
                    node_id: p.node.map(|n| n.to_string()).unwrap_or_default(),
                    explanation: p.explanation,
                    preempt: p
                        .preempt
                        .into_iter()
                        .map(|(job, attempt)| format!("{job}/{attempt}"))
                        .collect(),
                })
                .collect(),
        }))
    }

    type WatchJobStream = WatchStream;

    async fn watch_job(
        &self,
        request: Request<v1::WatchJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        require(&request, Need::Read("watching a job"))?;
        let v1::WatchJobRequest { id } = request.into_inner();
        let events = self.scheduler.watch(JobId::from(id)).await?;
        Ok(Response::new(WatchStream::new(events)))
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

impl WatchStream {
    fn new(events: mpsc::Receiver<WatchEvent>) -> Self {
        Self {
            events,
            saw_end: false,
            done: false,
        }
    }
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

/// Largest number of replicas a service may ask for.
const MAX_REPLICAS: u32 = 10_000;

pub(crate) fn spec_from_proto(
    spec: v1::JobSpec,
    defaults: Limits,
) -> Result<JobSpec, InvalidField> {
    let v1::JobSpec {
        name,
        module_digest,
        capabilities,
        stdin,
        label_selector,
        namespace,
        r#type,
        replicas,
        restart,
        priority,
        constraints,
        affinities,
        spreads,
        grant,
    } = spec;
    let module = parse_digest("spec.module_digest", &module_digest)?;
    let grant = grant_from_proto(grant)?;
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
    let namespace = namespace_from_proto("spec.namespace", namespace)?;
    let kind = match v1::JobType::try_from(r#type) {
        Ok(v1::JobType::Unspecified | v1::JobType::Batch) => JobKind::Batch,
        Ok(v1::JobType::Service) => JobKind::Service {
            replicas: match replicas {
                0 => 1,
                n if n > MAX_REPLICAS => {
                    return Err(InvalidField::new(
                        "spec.replicas",
                        format!("{n}, more than {MAX_REPLICAS}"),
                    ));
                }
                n => n,
            },
        },
        Ok(v1::JobType::System) => JobKind::System,
        Err(_) => {
            return Err(InvalidField::new(
                "spec.type",
                format!("unknown job type {type}", type = r#type),
            ));
        }
    };
    if replicas > 1 && !matches!(kind, JobKind::Service { .. }) {
        return Err(InvalidField::new(
            "spec.replicas",
            "only a service job has replicas",
        ));
    }
    let restart = restart.map_or(RestartPolicy::DEFAULT, |r| {
        let v1::RestartPolicy {
            attempts,
            initial_delay_ms,
            max_delay_ms,
        } = r;
        let or = |v: u64, d: Duration| if v == 0 { d } else { Duration::from_millis(v) };
        RestartPolicy {
            attempts: if attempts == 0 {
                RestartPolicy::DEFAULT.attempts
            } else {
                attempts
            },
            initial_delay: or(initial_delay_ms, RestartPolicy::DEFAULT.initial_delay),
            max_delay: or(max_delay_ms, RestartPolicy::DEFAULT.max_delay),
        }
    });
    let priority = match priority {
        0 => DEFAULT_PRIORITY,
        p => u8::try_from(p)
            .ok()
            .filter(|p| *p <= 100)
            .ok_or_else(|| InvalidField::new("spec.priority", format!("{p}, not in 0..=100")))?,
    };
    let mut placement = PlacementSpec::default();
    // The selector is shorthand for `=` constraints.
    for (label, value) in label_selector.into_iter().collect::<BTreeMap<_, _>>() {
        placement.constraints.push(Constraint {
            label,
            op: Operator::Eq(value),
        });
    }
    for (i, c) in constraints.into_iter().enumerate() {
        placement
            .constraints
            .push(constraint_from_proto(&format!("spec.constraints[{i}]"), c)?);
    }
    for (i, a) in affinities.into_iter().enumerate() {
        let field = format!("spec.affinities[{i}]");
        let v1::Affinity { constraint, weight } = a;
        let Constraint { label, op } = constraint_from_proto(
            &format!("{field}.constraint"),
            constraint
                .ok_or_else(|| InvalidField::new(format!("{field}.constraint"), "required"))?,
        )?;
        let weight = i8::try_from(weight)
            .ok()
            .filter(|w| (-100..=100).contains(w) && *w != 0)
            .ok_or_else(|| {
                InvalidField::new(
                    format!("{field}.weight"),
                    format!("{weight}, not in -100..=100 or 0"),
                )
            })?;
        placement.affinities.push(Affinity { label, op, weight });
    }
    for (i, sp) in spreads.into_iter().enumerate() {
        let field = format!("spec.spreads[{i}]");
        let v1::Spread {
            label,
            weight,
            targets,
        } = sp;
        if label.is_empty() {
            return Err(InvalidField::new(format!("{field}.label"), "required"));
        }
        let weight = match weight {
            0 => 50,
            w => u8::try_from(w).ok().filter(|w| *w <= 100).ok_or_else(|| {
                InvalidField::new(format!("{field}.weight"), format!("{w}, not in 0..=100"))
            })?,
        };
        let mut total = 0u32;
        let mut percents = BTreeMap::new();
        for (value, percent) in targets {
            total = total.saturating_add(percent);
            let percent = u8::try_from(percent)
                .ok()
                .filter(|p| *p <= 100)
                .ok_or_else(|| {
                    InvalidField::new(
                        format!("{field}.targets[{value}]"),
                        format!("{percent}%, over 100"),
                    )
                })?;
            percents.insert(value, percent);
        }
        if total > 100 {
            return Err(InvalidField::new(
                format!("{field}.targets"),
                format!("add up to {total}%, over 100"),
            ));
        }
        placement.spreads.push(Spread {
            label,
            weight,
            targets: percents,
        });
    }
    Ok(JobSpec {
        name,
        namespace,
        module,
        capabilities,
        stdin: Arc::from(stdin),
        kind,
        restart,
        priority,
        placement,
        grant,
        authorized: None,
    })
}

/// A grant as the client sent it: empty is none; otherwise it must be a grant envelope (JSON)
/// in canonical form. Whether it may be trusted is admission's question.
fn grant_from_proto(grant: Vec<u8>) -> Result<Option<String>, InvalidField> {
    if grant.is_empty() {
        return Ok(None);
    }
    let field = "spec.grant";
    if grant.len() > MAX_GRANT_BYTES {
        return Err(InvalidField::new(
            field,
            format!(
                "{} bytes, more than the limit of {MAX_GRANT_BYTES}",
                grant.len()
            ),
        ));
    }
    SignedGrant::from_json(&grant).map_err(|e| InvalidField::new(field, e.to_string()))?;
    String::from_utf8(grant)
        .map(Some)
        .map_err(|_| InvalidField::new(field, "not UTF-8 JSON"))
}

/// A namespace name: empty means the default; otherwise 1 to 63 lowercase letters, digits and
/// dashes, like a DNS label, so that it is safe in keys, paths and certificates.
pub(crate) fn namespace_from_proto(field: &str, name: String) -> Result<String, InvalidField> {
    if name.is_empty() {
        return Ok(DEFAULT_NAMESPACE.to_owned());
    }
    let valid = name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-');
    if valid {
        Ok(name)
    } else {
        Err(InvalidField::new(
            field,
            format!("{name:?}: 1 to 63 lowercase letters, digits and dashes"),
        ))
    }
}

fn constraint_from_proto(field: &str, c: v1::Constraint) -> Result<Constraint, InvalidField> {
    let v1::Constraint {
        label,
        operator,
        values,
    } = c;
    if label.is_empty() {
        return Err(InvalidField::new(format!("{field}.label"), "required"));
    }
    let one = |values: Vec<String>| -> Result<String, InvalidField> {
        match <[String; 1]>::try_from(values) {
            Ok([v]) => Ok(v),
            Err(v) => Err(InvalidField::new(
                format!("{field}.values"),
                format!("exactly one value expected, got {}", v.len()),
            )),
        }
    };
    let op = match v1::ConstraintOperator::try_from(operator) {
        Ok(v1::ConstraintOperator::Eq) => Operator::Eq(one(values)?),
        Ok(v1::ConstraintOperator::NotEq) => Operator::NotEq(one(values)?),
        Ok(v1::ConstraintOperator::In) if !values.is_empty() => Operator::In(values),
        Ok(v1::ConstraintOperator::NotIn) if !values.is_empty() => Operator::NotIn(values),
        Ok(v1::ConstraintOperator::In | v1::ConstraintOperator::NotIn) => {
            return Err(InvalidField::new(
                format!("{field}.values"),
                "at least one value expected",
            ));
        }
        Ok(v1::ConstraintOperator::Exists) => Operator::Exists,
        Ok(v1::ConstraintOperator::NotExists) => Operator::NotExists,
        Ok(v1::ConstraintOperator::Version) => {
            let req = one(values)?;
            Operator::Version(req.parse().map_err(|e| {
                InvalidField::new(
                    format!("{field}.values[0]"),
                    format!("{req:?} is not a semantic version requirement: {e}"),
                )
            })?)
        }
        Ok(v1::ConstraintOperator::Unspecified) | Err(_) => {
            return Err(InvalidField::new(
                format!("{field}.operator"),
                format!("unknown operator {operator}"),
            ));
        }
    };
    Ok(Constraint { label, op })
}

fn constraint_to_proto(label: String, op: Operator) -> v1::Constraint {
    let (operator, values) = match op {
        Operator::Eq(v) => (v1::ConstraintOperator::Eq, vec![v]),
        Operator::NotEq(v) => (v1::ConstraintOperator::NotEq, vec![v]),
        Operator::In(v) => (v1::ConstraintOperator::In, v),
        Operator::NotIn(v) => (v1::ConstraintOperator::NotIn, v),
        Operator::Exists => (v1::ConstraintOperator::Exists, Vec::new()),
        Operator::NotExists => (v1::ConstraintOperator::NotExists, Vec::new()),
        Operator::Version(req) => (v1::ConstraintOperator::Version, vec![req.to_string()]),
    };
    v1::Constraint {
        label,
        operator: operator.into(),
        values,
    }
}

fn spec_to_proto(spec: JobSpec, stdin: Stdin) -> v1::JobSpec {
    let JobSpec {
        name,
        namespace,
        module,
        capabilities,
        stdin: input,
        kind,
        restart,
        priority,
        placement,
        grant,
        // Derived from the grant at admission.
        authorized: _,
    } = spec;
    let (r#type, replicas) = match kind {
        JobKind::Batch => (v1::JobType::Batch, 0),
        JobKind::Service { replicas } => (v1::JobType::Service, replicas),
        JobKind::System => (v1::JobType::System, 0),
    };
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let PlacementSpec {
        constraints,
        affinities,
        spreads,
        // Derived from the grant at admission.
        node_classes: _,
    } = placement;
    v1::JobSpec {
        name,
        module_digest: module.to_string(),
        capabilities: Some(capabilities.into()),
        stdin: match stdin {
            Stdin::Include => input.to_vec(),
            Stdin::Omit => Vec::new(),
        },
        label_selector: Default::default(),
        namespace,
        r#type: r#type.into(),
        replicas,
        restart: Some(v1::RestartPolicy {
            attempts: restart.attempts,
            initial_delay_ms: ms(restart.initial_delay),
            max_delay_ms: ms(restart.max_delay),
        }),
        priority: u32::from(priority),
        constraints: constraints
            .into_iter()
            .map(|Constraint { label, op }| constraint_to_proto(label, op))
            .collect(),
        affinities: affinities
            .into_iter()
            .map(|Affinity { label, op, weight }| v1::Affinity {
                constraint: Some(constraint_to_proto(label, op)),
                weight: i32::from(weight),
            })
            .collect(),
        spreads: spreads
            .into_iter()
            .map(
                |Spread {
                     label,
                     weight,
                     targets,
                 }| v1::Spread {
                    label,
                    weight: u32::from(weight),
                    targets: targets
                        .into_iter()
                        .map(|(k, v)| (k, u32::from(v)))
                        .collect(),
                },
            )
            .collect(),
        grant: grant.map(String::into_bytes).unwrap_or_default(),
    }
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
    let running = u32::try_from(job.running().count()).unwrap_or(u32::MAX);
    let node_id = job.last_node().map(ToString::to_string).unwrap_or_default();
    let JobRecord {
        id,
        spec,
        state,
        allocations,
        result,
        message: _,
        submitted_at_ms,
        finished_at_ms,
        waiting: _,
    } = job;
    v1::Job {
        id: id.into_string(),
        spec: Some(spec_to_proto(spec, stdin)),
        state: state_to_proto(state).into(),
        node_id,
        attempts: u32::try_from(allocations.len()).unwrap_or(u32::MAX),
        result: result.map(Into::into),
        message,
        submitted_at_ms,
        finished_at_ms: finished_at_ms.unwrap_or_default(),
        allocations: allocations.into_iter().map(allocation_to_proto).collect(),
        running,
    }
}

fn allocation_to_proto(a: Allocation) -> v1::Allocation {
    let Allocation {
        attempt,
        instance,
        node,
        state,
        started_at_ms,
        finished_at_ms,
        message,
        placement,
        stale_result,
        memory_bytes: _,
    } = a;
    let state = match state {
        AllocState::Running => v1::AllocationState::Running,
        AllocState::Completed => v1::AllocationState::Completed,
        AllocState::Failed => v1::AllocationState::Failed,
        AllocState::Lost => v1::AllocationState::Lost,
        AllocState::Preempted => v1::AllocationState::Preempted,
        AllocState::Stopped => v1::AllocationState::Stopped,
        AllocState::Cancelled => v1::AllocationState::Cancelled,
    };
    v1::Allocation {
        attempt,
        instance,
        node_id: node.to_string(),
        state: state.into(),
        started_at_ms,
        finished_at_ms: finished_at_ms.unwrap_or_default(),
        message,
        placement,
        stale_result: stale_result.unwrap_or_default(),
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
        assert_eq!(
            ok.placement.constraints,
            vec![Constraint {
                label: "zone".into(),
                op: Operator::Eq("alpha".into())
            }]
        );
        assert_eq!(ok.kind, JobKind::Batch);
        assert_eq!(ok.priority, DEFAULT_PRIORITY);
        assert_eq!(ok.namespace, DEFAULT_NAMESPACE);
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
        // A grant must at least be a grant envelope; whether it is trusted is admission's.
        let err = spec(|s| s.grant = b"{\"grant\": true}".to_vec()).expect_err("not a grant");
        assert!(
            err.starts_with("invalid spec.grant: grant envelope"),
            "{err}"
        );
        let err = spec(|s| s.grant = vec![b' '; MAX_GRANT_BYTES + 1]).expect_err("too large");
        assert!(err.starts_with("invalid spec.grant"), "{err}");
        assert_eq!(spec(|_| {}).expect("no grant").grant, None);
    }

    #[test]
    fn placement_and_job_types_from_the_wire() {
        fn c(op: v1::ConstraintOperator, values: &[&str]) -> v1::Constraint {
            v1::Constraint {
                label: "version".into(),
                operator: op.into(),
                values: values.iter().map(|v| (*v).to_owned()).collect(),
            }
        }
        let ok = spec(|s| {
            s.r#type = v1::JobType::Service.into();
            s.replicas = 3;
            s.priority = 80;
            s.namespace = "ops-1".into();
            s.constraints = vec![
                c(v1::ConstraintOperator::Version, &[">=1.2, <2"]),
                c(v1::ConstraintOperator::In, &["a", "b"]),
            ];
            s.affinities = vec![v1::Affinity {
                constraint: Some(c(v1::ConstraintOperator::Exists, &[])),
                weight: -40,
            }];
            s.spreads = vec![v1::Spread {
                label: "site".into(),
                weight: 0,
                targets: [("paris".to_owned(), 75), ("lyon".to_owned(), 25)].into(),
            }];
        })
        .expect("valid");
        assert_eq!(ok.kind, JobKind::Service { replicas: 3 });
        assert_eq!(ok.priority, 80);
        assert_eq!(ok.namespace, "ops-1");
        assert_eq!(ok.placement.affinities[0].weight, -40);
        assert_eq!(ok.placement.spreads[0].weight, 50);
        assert_eq!(ok.restart, RestartPolicy::DEFAULT);
        // and back
        let back = spec_to_proto(ok.clone(), Stdin::Omit);
        assert_eq!(
            spec_from_proto(back, Limits::DEFAULT).expect("round trip"),
            ok
        );

        let bad = |f: fn(&mut v1::JobSpec), field: &str| {
            let err = spec(f).expect_err(field);
            assert!(err.contains(field), "{err} should name {field}");
        };
        bad(
            |s| s.constraints = vec![c(v1::ConstraintOperator::Version, &["one"])],
            "spec.constraints[0].values[0]",
        );
        bad(
            |s| s.constraints = vec![c(v1::ConstraintOperator::Eq, &[])],
            "spec.constraints[0].values",
        );
        bad(
            |s| s.constraints = vec![c(v1::ConstraintOperator::In, &[])],
            "spec.constraints[0].values",
        );
        bad(
            |s| s.constraints = vec![c(v1::ConstraintOperator::Unspecified, &[])],
            "spec.constraints[0].operator",
        );
        bad(|s| s.priority = 101, "spec.priority");
        bad(|s| s.replicas = 2, "spec.replicas");
        bad(|s| s.namespace = "Ops".into(), "spec.namespace");
        bad(|s| s.r#type = 9, "spec.type");
        bad(
            |s| {
                s.spreads = vec![v1::Spread {
                    label: "site".into(),
                    weight: 10,
                    targets: [("a".to_owned(), 70), ("b".to_owned(), 40)].into(),
                }];
            },
            "spec.spreads[0].targets",
        );
        bad(
            |s| {
                s.affinities = vec![v1::Affinity {
                    constraint: Some(c(v1::ConstraintOperator::Exists, &[])),
                    weight: 0,
                }];
            },
            "spec.affinities[0].weight",
        );
    }
}
