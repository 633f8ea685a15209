//! `vauban node`: the hosts the scheduler knows; drain them and set their eligibility.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};
use vauban_proto::v1::{self, nodes_client::NodesClient};

use super::caps::parse_duration;
use super::client::{ClientArgs, Format, print_table, size, status, time};

#[derive(Debug, Subcommand)]
pub(crate) enum NodeCommand {
    /// List nodes: state, used/total slots and memory, labels, last heartbeat.
    List(ListArgs),
    /// Show one node: state, eligibility, drain, capacity, labels, cached modules, running jobs.
    Show(IdArgs),
    /// Drain a node: no new work; its service and system instances move off at once, and
    /// batch work still on it at the deadline is stopped and requeued (not lost).
    Drain(DrainArgs),
    /// Mark a node eligible or ineligible for new work (an ineligible node keeps what it runs).
    Eligibility(EligibilityArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Args)]
pub(crate) struct IdArgs {
    /// The node id.
    id: String,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Args)]
pub(crate) struct DrainArgs {
    /// The node id.
    id: String,
    /// How long batch work may keep running before it is stopped and requeued, e.g. 10m
    /// (default: the scheduler's, one hour).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    deadline: Option<Duration>,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Args)]
pub(crate) struct EligibilityArgs {
    /// The node id.
    id: String,
    /// Whether it gets new work.
    #[arg(value_enum)]
    eligibility: Eligibility,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Eligibility {
    /// Gets new work (and ends a finished drain).
    Eligible,
    /// Gets no new work; keeps what it runs.
    Ineligible,
}

fn state_name(state: i32) -> &'static str {
    match v1::NodeState::try_from(state).unwrap_or(v1::NodeState::Unspecified) {
        v1::NodeState::Ready => "ready",
        v1::NodeState::Down => "down",
        v1::NodeState::Draining => "draining",
        v1::NodeState::Ineligible => "ineligible",
        v1::NodeState::Unknown => "unknown",
        v1::NodeState::Unspecified => "unspecified",
    }
}

pub(crate) async fn run(cmd: NodeCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        NodeCommand::List(args) => {
            let mut nodes = NodesClient::new(args.client.connect().await?);
            let list = nodes
                .list_nodes(v1::ListNodesRequest {})
                .await
                .map_err(status)?
                .into_inner()
                .nodes;
            match args.client.output {
                Format::Json => println!("{}", Value::Array(list.iter().map(node_json).collect())),
                Format::Table => {
                    let rows: Vec<Vec<String>> = list
                        .iter()
                        .map(|n| {
                            vec![
                                n.id.clone(),
                                state_name(n.state).to_owned(),
                                format!("{}/{}", n.used_slots, n.slots),
                                format!("{}/{}", size(n.used_memory_bytes), size(n.memory_bytes)),
                                labels(n),
                                time(n.last_heartbeat_ms),
                            ]
                        })
                        .collect();
                    print_table(
                        &["ID", "STATE", "SLOTS", "MEMORY", "LABELS", "LAST HEARTBEAT"],
                        &rows,
                    );
                }
            }
        }
        NodeCommand::Show(args) => {
            let node = NodesClient::new(args.client.connect().await?)
                .get_node(v1::GetNodeRequest { id: args.id })
                .await
                .map_err(status)?
                .into_inner();
            print_node(args.client.output, &node);
        }
        NodeCommand::Drain(args) => {
            let deadline_ms = args.deadline.map_or(0, |d| {
                u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
            });
            let node = NodesClient::new(args.client.connect().await?)
                .drain_node(v1::DrainNodeRequest {
                    id: args.id,
                    deadline_ms,
                })
                .await
                .map_err(status)?
                .into_inner();
            print_node(args.client.output, &node);
        }
        NodeCommand::Eligibility(args) => {
            let node = NodesClient::new(args.client.connect().await?)
                .set_eligibility(v1::SetEligibilityRequest {
                    id: args.id,
                    eligible: args.eligibility == Eligibility::Eligible,
                })
                .await
                .map_err(status)?
                .into_inner();
            print_node(args.client.output, &node);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A node's labels, sorted, as `k=v,k=v`.
fn labels(node: &v1::Node) -> String {
    let mut labels: Vec<String> = node
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    labels.sort();
    labels.join(",")
}

fn drain_json(drain: &v1::Drain) -> Value {
    json!({
        "started_at": time(drain.started_at_ms),
        "deadline": time(drain.deadline_ms),
        "complete": drain.complete,
    })
}

/// A node for scripts.
fn node_json(n: &v1::Node) -> Value {
    json!({
        "id": n.id,
        "labels": n.labels,
        "state": state_name(n.state),
        "eligible": n.eligible,
        "drain": n.drain.as_ref().map(drain_json),
        "slots": n.slots,
        "used_slots": n.used_slots,
        "memory_bytes": n.memory_bytes,
        "used_memory_bytes": n.used_memory_bytes,
        "last_heartbeat": time(n.last_heartbeat_ms),
        "running_jobs": n.running_jobs,
        "cached_modules": n.cached_modules,
    })
}

fn print_node(format: Format, node: &v1::Node) {
    if format == Format::Json {
        println!("{}", node_json(node));
        return;
    }
    let drain = node.drain.as_ref().map(|d| {
        if d.complete {
            format!("complete (started {})", time(d.started_at_ms))
        } else {
            format!(
                "started {}, batch work stopped at {}",
                time(d.started_at_ms),
                time(d.deadline_ms)
            )
        }
    });
    let rows = [
        ("id", node.id.clone()),
        ("state", state_name(node.state).to_owned()),
        (
            "eligible",
            if node.eligible { "yes" } else { "no" }.to_owned(),
        ),
        ("drain", drain.unwrap_or_default()),
        (
            "slots",
            format!("{} used of {}", node.used_slots, node.slots),
        ),
        (
            "memory",
            format!(
                "{} used of {}",
                size(node.used_memory_bytes),
                size(node.memory_bytes)
            ),
        ),
        ("labels", labels(node)),
        ("heartbeat", time(node.last_heartbeat_ms)),
    ];
    for (key, value) in rows {
        if !value.is_empty() {
            println!("{key:<10} {value}");
        }
    }
    for (title, items) in [
        ("running jobs", &node.running_jobs),
        ("cached modules", &node.cached_modules),
    ] {
        println!();
        if items.is_empty() {
            println!("{title}: none");
        } else {
            println!("{title}:");
            for item in items {
                println!("  {item}");
            }
        }
    }
}
