//! `vauban namespace`: the units of tenancy, what their jobs hold, and their quotas.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use vauban_proto::v1::{self, namespaces_client::NamespacesClient};

use super::caps::parse_size;
use super::client::{ClientArgs, Format, print_table, size, status};

#[derive(Debug, Subcommand)]
pub(crate) enum NamespaceCommand {
    /// List namespaces: instances and memory held against their quota, active jobs.
    List(ListArgs),
    /// Set (replace) a namespace's quota. A limit left out or 0 is unlimited. Jobs over the
    /// quota wait in the queue; they do not fail.
    Quota(QuotaArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Args)]
pub(crate) struct QuotaArgs {
    /// The namespace (created if it does not exist yet).
    name: String,
    /// Memory its running instances may reserve at once, e.g. 1GiB (0: unlimited).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    memory: Option<u64>,
    /// Instances it may run at once (0: unlimited).
    #[arg(long, value_name = "N")]
    instances: Option<u32>,
    #[command(flatten)]
    client: ClientArgs,
}

pub(crate) async fn run(cmd: NamespaceCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        NamespaceCommand::List(args) => {
            let list = NamespacesClient::new(args.client.connect().await?)
                .list_namespaces(v1::ListNamespacesRequest {})
                .await
                .map_err(status)?
                .into_inner()
                .namespaces;
            print_namespaces(args.client.output, &list);
        }
        NamespaceCommand::Quota(args) => {
            let namespace = NamespacesClient::new(args.client.connect().await?)
                .set_quota(v1::SetQuotaRequest {
                    namespace: args.name,
                    quota: Some(v1::Quota {
                        max_memory_bytes: args.memory.unwrap_or(0),
                        max_instances: args.instances.unwrap_or(0),
                    }),
                })
                .await
                .map_err(status)?
                .into_inner();
            print_namespaces(args.client.output, &[namespace]);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `used/limit`, the limit being "unlimited" when 0.
fn against(used: String, limit: u64, show: impl Fn(u64) -> String) -> String {
    if limit == 0 {
        format!("{used}/unlimited")
    } else {
        format!("{used}/{}", show(limit))
    }
}

fn namespace_json(n: &v1::Namespace) -> Value {
    let quota = n.quota.unwrap_or_default();
    json!({
        "name": n.name,
        "quota": {
            "max_memory_bytes": quota.max_memory_bytes,
            "max_instances": quota.max_instances,
        },
        "used_memory_bytes": n.used_memory_bytes,
        "used_instances": n.used_instances,
        "active_jobs": n.active_jobs,
    })
}

fn print_namespaces(format: Format, list: &[v1::Namespace]) {
    match format {
        Format::Json => println!(
            "{}",
            Value::Array(list.iter().map(namespace_json).collect())
        ),
        Format::Table => {
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|n| {
                    let quota = n.quota.unwrap_or_default();
                    vec![
                        n.name.clone(),
                        against(
                            n.used_instances.to_string(),
                            u64::from(quota.max_instances),
                            |v| v.to_string(),
                        ),
                        against(size(n.used_memory_bytes), quota.max_memory_bytes, size),
                        n.active_jobs.to_string(),
                    ]
                })
                .collect();
            print_table(&["NAME", "INSTANCES", "MEMORY", "ACTIVE JOBS"], &rows);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_unlimited() {
        assert_eq!(against("3".into(), 0, |v| v.to_string()), "3/unlimited");
        assert_eq!(against("3".into(), 10, |v| v.to_string()), "3/10");
    }
}
