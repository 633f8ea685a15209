//! `vauban module`: upload signed modules to the scheduler and list them.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::json;
use tonic::transport::Channel;
use vauban_core::ModuleDigest;
use vauban_proto::v1::{self, modules_client::ModulesClient};

use super::client::{ClientArgs, Format, print_table, status, time};

#[derive(Debug, Subcommand)]
pub(crate) enum ModuleCommand {
    /// Upload a signed module; the scheduler verifies its signature before storing it.
    Upload(UploadArgs),
    /// List the modules the scheduler stores.
    List(ListArgs),
}

#[derive(Debug, Args)]
pub(crate) struct UploadArgs {
    /// The signed module or component.
    module: PathBuf,
    /// A name to remember it by (default: the file name).
    #[arg(long)]
    name: Option<String>,
    /// The namespace to upload it into.
    #[arg(long, short = 'n', default_value = super::spec::DEFAULT_NAMESPACE)]
    namespace: String,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only modules uploaded into this namespace (default: every namespace).
    #[arg(long, short = 'n')]
    namespace: Option<String>,
    #[command(flatten)]
    client: ClientArgs,
}

const CHUNK: usize = 1 << 20;

pub(crate) async fn run(cmd: ModuleCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ModuleCommand::Upload(args) => {
            let bytes = super::read_module(&args.module)?;
            let name = args.name.unwrap_or_else(|| super::file_name(&args.module));
            let channel = args.client.connect().await?;
            let info = upload(channel, bytes, name, &args.namespace).await?;
            print_modules(args.client.output, &[info]);
        }
        ModuleCommand::List(args) => {
            let mut client = ModulesClient::new(args.client.connect().await?);
            let modules = client
                .list_modules(v1::ListModulesRequest {
                    namespace: args.namespace.unwrap_or_default(),
                })
                .await
                .map_err(status)?
                .into_inner()
                .modules;
            print_modules(args.client.output, &modules);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Uploads a module into `namespace` unless the scheduler already has it there (by digest).
///
/// # Errors
/// The scheduler cannot be reached, or refuses the module (unsigned, altered after signing,
/// signed by a key it does not trust): the message says why.
pub(crate) async fn upload(
    channel: Channel,
    bytes: Vec<u8>,
    name: String,
    namespace: &str,
) -> anyhow::Result<v1::ModuleInfo> {
    let mut client = ModulesClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    let digest = ModuleDigest::of(&bytes).to_string();
    match client
        .get_module(v1::GetModuleRequest {
            digest: digest.clone(),
        })
        .await
    {
        // Stored, but maybe for another namespace only: then upload it into this one too.
        Ok(existing) if existing.get_ref().namespaces.iter().any(|n| n == namespace) => {
            return Ok(existing.into_inner());
        }
        Ok(_) => {}
        Err(e) if e.code() == tonic::Code::NotFound => {}
        Err(e) => return Err(status(e)),
    }
    let chunks: Vec<v1::UploadModuleRequest> = bytes
        .chunks(CHUNK)
        .enumerate()
        .map(|(i, chunk)| {
            let first = i == 0;
            v1::UploadModuleRequest {
                chunk: chunk.to_vec(),
                name: if first { name.clone() } else { String::new() },
                namespace: if first {
                    namespace.to_owned()
                } else {
                    String::new()
                },
            }
        })
        .collect();
    let info = client
        .upload_module(tokio_stream::iter(chunks))
        .await
        .map_err(|e| anyhow::anyhow!("upload refused: {}", e.message()))
        .with_context(|| format!("uploading {name}"))?;
    Ok(info.into_inner())
}

fn print_modules(format: Format, modules: &[v1::ModuleInfo]) {
    match format {
        Format::Json => {
            let list: Vec<_> = modules
                .iter()
                .map(|m| {
                    json!({
                        "digest": m.digest, "name": m.name, "kind": m.kind,
                        "size_bytes": m.size_bytes, "signers": m.signers,
                        "uploaded_at": time(m.uploaded_at_ms), "namespaces": m.namespaces,
                    })
                })
                .collect();
            println!("{}", serde_json::Value::Array(list));
        }
        Format::Table => {
            let rows: Vec<Vec<String>> = modules
                .iter()
                .map(|m| {
                    vec![
                        m.digest.clone(),
                        m.name.clone(),
                        m.kind.clone(),
                        bytesize::ByteSize(m.size_bytes).to_string(),
                        m.signers.join(","),
                        m.namespaces.join(","),
                    ]
                })
                .collect();
            print_table(
                &["DIGEST", "NAME", "KIND", "SIZE", "SIGNERS", "NAMESPACES"],
                &rows,
            );
        }
    }
}
