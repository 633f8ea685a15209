//! `vauban node`: the hosts the scheduler knows.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;
use vauban_proto::v1::{self, nodes_client::NodesClient};

use super::client::{ClientArgs, Format, print_table, status, time};

#[derive(Debug, Subcommand)]
pub(crate) enum NodeCommand {
    /// List nodes: state, capacity, labels, last heartbeat, running jobs.
    List(ListArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    client: ClientArgs,
}

fn state_name(state: i32) -> &'static str {
    match v1::NodeState::try_from(state).unwrap_or(v1::NodeState::Unspecified) {
        v1::NodeState::Ready => "ready",
        v1::NodeState::Down => "down",
        v1::NodeState::Unspecified => "unknown",
    }
}

pub(crate) async fn run(cmd: NodeCommand) -> anyhow::Result<ExitCode> {
    let NodeCommand::List(args) = cmd;
    let mut nodes = NodesClient::new(args.client.connect().await?);
    let list = nodes
        .list_nodes(v1::ListNodesRequest {})
        .await
        .map_err(status)?
        .into_inner()
        .nodes;
    match args.client.output {
        Format::Json => {
            let docs: Vec<_> = list
                .iter()
                .map(|n| {
                    json!({
                        "id": n.id, "labels": n.labels, "slots": n.slots,
                        "memory_bytes": n.memory_bytes, "state": state_name(n.state),
                        "last_heartbeat": time(n.last_heartbeat_ms), "running_jobs": n.running_jobs,
                    })
                })
                .collect();
            println!("{}", serde_json::Value::Array(docs));
        }
        Format::Table => {
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|n| {
                    let mut labels: Vec<String> =
                        n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    labels.sort();
                    vec![
                        n.id.clone(),
                        state_name(n.state).to_owned(),
                        format!("{}/{}", n.running_jobs.len(), n.slots),
                        bytesize::ByteSize(n.memory_bytes).to_string(),
                        labels.join(","),
                        time(n.last_heartbeat_ms),
                    ]
                })
                .collect();
            print_table(
                &[
                    "ID",
                    "STATE",
                    "RUNNING/SLOTS",
                    "MEMORY",
                    "LABELS",
                    "LAST HEARTBEAT",
                ],
                &rows,
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
