//! What the commands that talk to a scheduler share: the address, the output format, the
//! connection, and how jobs, nodes and modules are shown.

use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use serde_json::{Value, json};
use tonic::transport::{Channel, Endpoint};
use vauban_core::Outcome;
use vauban_proto::v1;

/// Where the scheduler is, and how to print what it says.
#[derive(Debug, Args)]
pub(crate) struct ClientArgs {
    /// The scheduler's gRPC address (`--scheduler` is an alias, as `vauban host` spells it).
    #[arg(
        long,
        visible_alias = "scheduler",
        env = "VAUBAN_ADDR",
        default_value = "http://127.0.0.1:7070"
    )]
    pub(crate) addr: String,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Table)]
    pub(crate) output: Format,
}

/// How results are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// Human-readable tables.
    Table,
    /// JSON, one document per command, for scripts.
    Json,
}

impl ClientArgs {
    /// Connects to the scheduler.
    pub(crate) async fn connect(&self) -> anyhow::Result<Channel> {
        let addr = if self.addr.contains("://") {
            self.addr.clone()
        } else {
            format!("http://{}", self.addr)
        };
        Endpoint::from_shared(addr.clone())
            .with_context(|| format!("invalid scheduler address {addr:?}"))?
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .with_context(|| format!("cannot reach the scheduler at {addr}"))
    }
}

/// A gRPC error as the user should read it: the scheduler's message, not the transport's dump.
pub(crate) fn status(e: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{} ({:?})", e.message(), e.code())
}

/// Unix milliseconds as RFC 3339, or "-" for unset.
pub(crate) fn time(ms: u64) -> String {
    if ms == 0 {
        return "-".into();
    }
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// A job state as a word.
pub(crate) fn state_name(state: i32) -> &'static str {
    match v1::JobState::try_from(state).unwrap_or(v1::JobState::Unspecified) {
        v1::JobState::Pending => "pending",
        v1::JobState::Running => "running",
        v1::JobState::Completed => "completed",
        v1::JobState::Failed => "failed",
        v1::JobState::Cancelled => "cancelled",
        v1::JobState::Unspecified => "unknown",
    }
}

/// True for states a job never leaves.
pub(crate) fn is_terminal(state: i32) -> bool {
    matches!(
        v1::JobState::try_from(state),
        Ok(v1::JobState::Completed | v1::JobState::Failed | v1::JobState::Cancelled)
    )
}

/// An allocation state as a word.
pub(crate) fn allocation_state_name(state: i32) -> &'static str {
    use v1::AllocationState as S;
    match S::try_from(state).unwrap_or(S::Unspecified) {
        S::Running => "running",
        S::Completed => "completed",
        S::Failed => "failed",
        S::Lost => "lost",
        S::Preempted => "preempted",
        S::Stopped => "stopped",
        S::Cancelled => "cancelled",
        S::Unspecified => "unknown",
    }
}

/// A job's outcome, if it has a result.
pub(crate) fn outcome(job: &v1::Job) -> Option<Outcome> {
    job.result
        .as_ref()
        .and_then(|r| r.outcome.clone())
        .and_then(|o| Outcome::try_from(o).ok())
}

/// A job for scripts.
pub(crate) fn job_json(job: &v1::Job) -> Value {
    let spec = job.spec.clone().unwrap_or_default();
    let result = job.result.as_ref().map(|r| {
        json!({
            "outcome": outcome(job).map(|o| serde_json::to_value(o).unwrap_or(Value::Null)),
            "stdout": String::from_utf8_lossy(&r.stdout),
            "stdout_dropped": r.stdout_dropped,
            "stderr": String::from_utf8_lossy(&r.stderr),
            "stderr_dropped": r.stderr_dropped,
            "run_time_us": r.run_time_us,
            "fuel_consumed": r.fuel_consumed,
            "peak_memory_bytes": r.peak_memory_bytes,
            "denials": r.denials,
        })
    });
    let allocations: Vec<Value> = job
        .allocations
        .iter()
        .map(|a| {
            json!({
                "attempt": a.attempt,
                "instance": a.instance,
                "node_id": a.node_id,
                "state": allocation_state_name(a.state),
                "started_at": time(a.started_at_ms),
                "finished_at": time(a.finished_at_ms),
                "message": a.message,
                "placement": a.placement,
                "stale_result": a.stale_result,
            })
        })
        .collect();
    json!({
        "id": job.id,
        "name": spec.name,
        "namespace": namespace(&spec.namespace),
        "type": super::spec::type_name(spec.r#type),
        "priority": spec.priority,
        "replicas": spec.replicas,
        "module_digest": spec.module_digest,
        "label_selector": spec.label_selector,
        "constraints": spec.constraints.iter().map(constraint_json).collect::<Vec<_>>(),
        "affinities": spec.affinities.iter().map(|a| json!({
            "constraint": a.constraint.as_ref().map(constraint_json),
            "weight": a.weight,
        })).collect::<Vec<_>>(),
        "spreads": spec.spreads.iter().map(|s| json!({
            "label": s.label, "weight": s.weight, "targets": s.targets,
        })).collect::<Vec<_>>(),
        "restart": spec.restart.map(|r| json!({
            "attempts": r.attempts,
            "initial_delay_ms": r.initial_delay_ms,
            "max_delay_ms": r.max_delay_ms,
        })),
        "state": state_name(job.state),
        "running": job.running,
        "node_id": job.node_id,
        "attempts": job.attempts,
        "message": job.message,
        "submitted_at": time(job.submitted_at_ms),
        "finished_at": time(job.finished_at_ms),
        "allocations": allocations,
        "result": result,
    })
}

fn constraint_json(c: &v1::Constraint) -> Value {
    json!({ "label": c.label, "op": super::spec::op_name(c.operator), "values": c.values })
}

/// A namespace name as shown: the wire's empty string is "default".
pub(crate) fn namespace(name: &str) -> &str {
    if name.is_empty() {
        super::spec::DEFAULT_NAMESPACE
    } else {
        name
    }
}

/// A size in bytes as shown in tables.
pub(crate) fn size(bytes: u64) -> String {
    bytesize::ByteSize(bytes).to_string()
}

/// Prints rows under headers, columns padded to their widest cell.
pub(crate) fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(headers.iter().map(|h| (*h).to_owned()).collect());
    for row in rows {
        line(row.clone());
    }
}
