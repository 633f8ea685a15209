//! `vauban policy`: sign, verify and show a trust policy (`policy.toml`, with its root signatures
//! in `policy.toml.sig.json`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use vauban_core::envelope::Envelope;
use vauban_core::policy::POLICY_PAYLOAD_TYPE;
use vauban_core::{Role, SecretKey, TrustPolicy, TrustStore};
use vauban_proto::v1::{self, trust_client::TrustClient};

use super::client::{ClientArgs, Format as ClientFormat};
use super::write_replacing;

#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Add a root key's signature to POLICY.sig.json (started afresh if the policy changed).
    Sign(SignArgs),
    /// Check a policy's root signatures against the pinned root keys.
    Verify(ShowArgs),
    /// Verify a policy and print its keys, thresholds, node classes and revocations.
    Show(ShowArgs),
    /// Install a newer policy on the scheduler, which verifies it against its pinned roots and
    /// pushes it to every host (each verifies it again). Revocations take effect at once.
    Push(PushArgs),
    /// Show the version and digest of the policy the scheduler holds.
    Get(GetArgs),
}

#[derive(Debug, Args)]
pub(crate) struct PushArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The signatures file; default: the policy's path with `.sig.json` appended.
    #[arg(long, value_name = "FILE")]
    signatures: Option<PathBuf>,
    /// The policy file.
    policy: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Write the policy's TOML here (and its signatures beside it, `.sig.json`).
    #[arg(long, value_name = "FILE")]
    save: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct SignArgs {
    /// A root private key.
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// The policy file.
    policy: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// The pinned root public keys: a `.pub` file or a directory of them.
    #[arg(long, value_name = "PATH", env = "VAUBAN_ROOTS")]
    roots: PathBuf,
    /// The signatures file; default: the policy's path with `.sig.json` appended.
    #[arg(long, value_name = "FILE")]
    signatures: Option<PathBuf>,
    /// The policy this machine holds (its signatures in FILE.sig.json, verified with the same
    /// roots): the policy is refused unless its version is higher.
    #[arg(long, value_name = "FILE")]
    current: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    output: Format,
    /// The policy file.
    policy: PathBuf,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Format {
    Text,
    Json,
}

pub(crate) fn run(cmd: PolicyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PolicyCommand::Sign(args) => sign(args),
        PolicyCommand::Verify(args) => show(args, false),
        PolicyCommand::Show(args) => show(args, true),
        PolicyCommand::Push(args) => crate::block_on(push(args)),
        PolicyCommand::Get(args) => crate::block_on(get(args)),
    }
}

async fn push(args: PushArgs) -> anyhow::Result<ExitCode> {
    let toml = std::fs::read(&args.policy)
        .with_context(|| format!("reading {}", args.policy.display()))?;
    let sig_path = args
        .signatures
        .unwrap_or_else(|| signatures_path(&args.policy));
    let signatures = std::fs::read(&sig_path)
        .with_context(|| format!("reading the policy's signatures {}", sig_path.display()))?;
    let installed = TrustClient::new(args.client.connect().await?)
        .set_policy(v1::SetPolicyRequest { toml, signatures })
        .await
        .map_err(|status| anyhow::anyhow!("{}", status.message()))
        .with_context(|| format!("the scheduler refused {}", args.policy.display()))?
        .into_inner();
    print_remote(args.client.output, &installed, "installed");
    Ok(ExitCode::SUCCESS)
}

async fn get(args: GetArgs) -> anyhow::Result<ExitCode> {
    let policy = TrustClient::new(args.client.connect().await?)
        .get_policy(v1::GetPolicyRequest {})
        .await
        .map_err(|status| anyhow::anyhow!("{}", status.message()))?
        .into_inner();
    if let Some(path) = &args.save {
        write_replacing(path, &policy.toml)?;
        write_replacing(&signatures_path(path), &policy.signatures)?;
    }
    print_remote(args.client.output, &policy, "in force");
    Ok(ExitCode::SUCCESS)
}

fn print_remote(format: ClientFormat, policy: &v1::Policy, what: &str) {
    match format {
        ClientFormat::Json => println!(
            "{}",
            serde_json::json!({ "version": policy.version, "digest": policy.digest })
        ),
        ClientFormat::Table => {
            println!(
                "policy version {} {what} ({})",
                policy.version, policy.digest
            );
        }
    }
}

/// The default signatures file of a policy: `policy.toml.sig.json`.
pub(crate) fn signatures_path(policy: &Path) -> PathBuf {
    let mut name = policy.as_os_str().to_owned();
    name.push(".sig.json");
    PathBuf::from(name)
}

fn sign(args: SignArgs) -> anyhow::Result<ExitCode> {
    let key = SecretKey::from_file(&args.key)?;
    let bytes = std::fs::read(&args.policy)
        .with_context(|| format!("reading {}", args.policy.display()))?;
    let policy = TrustPolicy::parse_unverified(&bytes)?;
    if !policy.holds(key.public_key().id(), Role::Root) {
        eprintln!(
            "warning: key {} does not hold the root role in this policy: its signature will not count",
            key.public_key().id()
        );
    }
    let sig_path = signatures_path(&args.policy);
    let mut envelope = match std::fs::read(&sig_path) {
        Ok(json) => {
            let existing = Envelope::from_json(&json, POLICY_PAYLOAD_TYPE)
                .with_context(|| format!("reading {}", sig_path.display()))?;
            if existing.payload_bytes()? == bytes {
                existing
            } else {
                eprintln!(
                    "the policy changed since {} was written: its {} signature(s) are dropped",
                    sig_path.display(),
                    existing.signatures.len()
                );
                Envelope::new(POLICY_PAYLOAD_TYPE, &bytes)
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Envelope::new(POLICY_PAYLOAD_TYPE, &bytes)
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", sig_path.display())),
    };
    envelope.sign(&key)?;
    write_replacing(&sig_path, envelope.to_json().as_bytes())?;
    println!(
        "signed policy version {} with key {} ({} of {} root signature(s) needed): {}",
        policy.version(),
        key.public_key().id(),
        envelope.signatures.len(),
        policy.thresholds().root,
        sig_path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Loads a policy and its signatures and verifies them against the pinned roots.
pub(crate) fn load_verified(
    policy: &Path,
    signatures: Option<&Path>,
    roots: &Path,
) -> anyhow::Result<TrustPolicy> {
    let bytes = std::fs::read(policy).with_context(|| format!("reading {}", policy.display()))?;
    let sig_path = signatures.map_or_else(|| signatures_path(policy), Path::to_path_buf);
    let json = std::fs::read(&sig_path)
        .with_context(|| format!("reading the policy's signatures {}", sig_path.display()))?;
    let envelope = Envelope::from_json(&json, POLICY_PAYLOAD_TYPE)
        .with_context(|| format!("reading {}", sig_path.display()))?;
    let anchors = TrustStore::load(roots)
        .with_context(|| format!("loading root keys {}", roots.display()))?;
    TrustPolicy::load_verified(&bytes, &envelope, &anchors)
        .with_context(|| format!("policy {} refused", policy.display()))
}

fn show(args: ShowArgs, everything: bool) -> anyhow::Result<ExitCode> {
    let policy = load_verified(&args.policy, args.signatures.as_deref(), &args.roots)?;
    if let Some(current) = &args.current {
        let held = load_verified(current, None, &args.roots)
            .with_context(|| format!("the current policy {}", current.display()))?;
        policy
            .replaces(&held)
            .with_context(|| format!("policy {} refused", args.policy.display()))?;
    }
    let doc = policy.document();
    if let Format::Json = args.output {
        println!("{}", serde_json::to_string_pretty(doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "policy version {}: valid (root threshold {} met)",
        doc.version, doc.thresholds.root
    );
    if !everything {
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "thresholds: root {}, publisher {}, authorizer {}",
        doc.thresholds.root, doc.thresholds.publisher, doc.thresholds.authorizer
    );
    println!("keys:");
    for k in &doc.keys {
        let roles: Vec<_> = k.roles.iter().copied().map(Role::name).collect();
        let revoked = if policy.is_key_revoked(&k.id) {
            " (revoked)"
        } else {
            ""
        };
        println!("  {} {} {}{revoked}", k.id, k.alg, roles.join(","));
    }
    println!("node classes:");
    for c in &doc.node_classes {
        let labels: Vec<_> = c.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("  {} (match {})", c.name, labels.join(", "));
        for d in &c.dirs {
            println!("    dir {} {:?}", d.path.display(), d.access);
        }
        for n in &c.network {
            println!("    network {n}");
        }
        for i in &c.interfaces {
            println!("    interface {i}");
        }
        if let Some(m) = c.max_memory_bytes {
            println!("    max memory {m} bytes");
        }
    }
    println!("revoked keys: {}", list(&doc.revoked_keys));
    println!("revoked modules: {}", list(&doc.revoked_modules));
    Ok(ExitCode::SUCCESS)
}

fn list<T: std::fmt::Display>(items: &[T]) -> String {
    if items.is_empty() {
        return "none".into();
    }
    items
        .iter()
        .map(T::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
