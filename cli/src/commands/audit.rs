//! `vauban audit`: sign checkpoints of an audit log, verify a log or a proof offline, prove one
//! entry, and show the latest entries. Formats: `docs/audit.md`.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::json;
use vauban_audit::{
    AuditSigner, AuditVerifier, Entry, Log, ORIGIN_PREFIX, ProofBundle, PublicKey, SecretKey,
};

use super::client::Format;

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Sign a checkpoint of the log's current size with the audit key.
    Checkpoint(CheckpointArgs),
    /// Check the whole log offline: every entry, every checkpoint's signature and root.
    Verify(VerifyArgs),
    /// Write a self-contained proof that one entry is in the log's latest checkpoint.
    Prove(ProveArgs),
    /// Check a proof from `vauban audit prove` with only the audit public key.
    VerifyProof(VerifyProofArgs),
    /// Show the latest entries.
    Tail(TailArgs),
}

#[derive(Debug, Args)]
pub(crate) struct CheckpointArgs {
    /// The log directory.
    #[arg(long, value_name = "DIR")]
    log: PathBuf,
    /// The audit private key (PKCS#8 PEM, from `vauban key generate`).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// The log's origin; defaults to that of its existing checkpoints, else `vauban.audit/default`.
    #[arg(long)]
    origin: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The log directory.
    #[arg(long, value_name = "DIR")]
    log: PathBuf,
    /// The audit public key (SPKI PEM).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// Require this origin.
    #[arg(long)]
    origin: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ProveArgs {
    /// The log directory.
    #[arg(long, value_name = "DIR")]
    log: PathBuf,
    /// The entry's index (0-based).
    #[arg(long)]
    index: u64,
    /// Write the proof here instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct VerifyProofArgs {
    /// The audit public key (SPKI PEM).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// Require this origin.
    #[arg(long)]
    origin: Option<String>,
    /// The proof file.
    proof: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct TailArgs {
    /// The log directory.
    #[arg(long, value_name = "DIR")]
    log: PathBuf,
    /// How many entries to show.
    #[arg(short = 'n', long = "lines", default_value_t = 20)]
    count: u64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    output: Format,
}

pub(crate) fn run(cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCommand::Checkpoint(args) => checkpoint(args),
        AuditCommand::Verify(args) => verify(args),
        AuditCommand::Prove(args) => prove(args),
        AuditCommand::VerifyProof(args) => verify_proof(args),
        AuditCommand::Tail(args) => tail(args),
    }
}

fn open(dir: &std::path::Path) -> anyhow::Result<Log> {
    anyhow::ensure!(
        dir.join(vauban_audit::ENTRIES_FILE).is_file(),
        "{} is not an audit log (no {})",
        dir.display(),
        vauban_audit::ENTRIES_FILE
    );
    Log::open(dir).with_context(|| format!("opening audit log {}", dir.display()))
}

fn verifier(key: &std::path::Path, origin: Option<&str>) -> anyhow::Result<AuditVerifier> {
    let key = PublicKey::from_file(key).context("loading the audit public key")?;
    let verifier = AuditVerifier::new(key);
    Ok(match origin {
        Some(origin) => verifier.with_origin(origin),
        None => verifier,
    })
}

fn checkpoint(args: CheckpointArgs) -> anyhow::Result<ExitCode> {
    let mut log = open(&args.log)?;
    let origin = match (&args.origin, log.latest_checkpoint()) {
        (Some(origin), _) => origin.clone(),
        (None, Some(latest)) => latest.origin().to_owned(),
        (None, None) => format!("{ORIGIN_PREFIX}default"),
    };
    let key = SecretKey::from_file(&args.key).context("loading the audit private key")?;
    let signer = AuditSigner::new(&origin, key)?;
    let checkpoint = log
        .checkpoint(&signer)
        .with_context(|| format!("signing a checkpoint of {}", args.log.display()))?;
    print!("{}", checkpoint.to_text());
    Ok(ExitCode::SUCCESS)
}

fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let verifier = verifier(&args.key, args.origin.as_deref())?;
    let report = vauban_audit::verify_log(&args.log, &verifier)
        .with_context(|| format!("audit log {} does not verify", args.log.display()))?;
    println!(
        "ok: {} entries, {} checkpoints verified",
        report.entries,
        report.checkpoints.len()
    );
    if report.receipts > 0 {
        println!(
            "receipts: {} execution receipts, each signed by the host key it names",
            report.receipts
        );
    }
    if let (Some(origin), Some((size, root))) = (&report.origin, &report.latest) {
        println!("origin:  {origin}");
        println!("latest:  size {size}, root {root}");
    }
    if report.unsigned > 0 {
        eprintln!(
            "warning: the last {} entries are not covered by a checkpoint yet",
            report.unsigned
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn prove(args: ProveArgs) -> anyhow::Result<ExitCode> {
    let log = open(&args.log)?;
    let json = log.prove(args.index)?.to_json()?;
    match &args.out {
        Some(path) => std::fs::write(path, format!("{json}\n"))
            .with_context(|| format!("writing {}", path.display()))?,
        None => println!("{json}"),
    }
    Ok(ExitCode::SUCCESS)
}

fn verify_proof(args: VerifyProofArgs) -> anyhow::Result<ExitCode> {
    let verifier = verifier(&args.key, args.origin.as_deref())?;
    let text = std::fs::read_to_string(&args.proof)
        .with_context(|| format!("reading {}", args.proof.display()))?;
    let verified = ProofBundle::from_json(&text)
        .and_then(|bundle| bundle.verify(&verifier))
        .with_context(|| format!("proof {} does not verify", args.proof.display()))?;
    println!(
        "ok: entry {} is in {} at size {} (root {})",
        verified.index, verified.origin, verified.tree_size, verified.root
    );
    println!("{} {}", verified.entry.kind(), verified.entry.summary());
    Ok(ExitCode::SUCCESS)
}

fn tail(args: TailArgs) -> anyhow::Result<ExitCode> {
    let log = open(&args.log)?;
    let from = log.len().saturating_sub(args.count);
    let entries = (from..log.len())
        .map(|index| log.entry(index).map(|entry| (index, entry)))
        .collect::<Result<Vec<(u64, Entry)>, _>>()?;
    let mut out = std::io::stdout().lock();
    match args.output {
        Format::Json => {
            let list: Vec<_> = entries
                .iter()
                .map(|(index, entry)| json!({ "index": index, "entry": entry }))
                .collect();
            writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
        }
        Format::Table => {
            for (index, entry) in &entries {
                writeln!(
                    out,
                    "{index:>6}  {}  {:<13} {}",
                    time(entry.at_ms()),
                    entry.kind(),
                    entry.summary()
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn time(ms: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .to_string()
}
