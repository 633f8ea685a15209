//! `vauban grant`: create, sign and verify capability grants (DSSE envelopes holding canonical
//! JSON; see docs/trust.md).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use clap::{Args, Subcommand};

use vauban_core::grant::{
    CapabilityCeiling, GrantedDir, GrantedModule, ResourceCeiling, Timestamp,
};
use vauban_core::policy::Mode;
use vauban_core::{Access, DirGrant, Grant, ModuleDigest, ModuleKind, SecretKey, SignedGrant};

use super::caps::{parse_duration, parse_size};
use super::policy::load_verified;
use super::write_replacing;

#[derive(Debug, Subcommand)]
pub(crate) enum GrantCommand {
    /// Write an unsigned grant for a module.
    Create(Box<CreateArgs>),
    /// Add an authorizer's signature to a grant file, in place.
    Sign(SignArgs),
    /// Verify a grant against a signed trust policy; exit non-zero with the reason if invalid.
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// The module or component the grant is for.
    #[arg(long, value_name = "FILE")]
    module: PathBuf,
    /// A host directory the module may be given, HOST:GUEST[:ro|rw] (repeatable); jobs may ask
    /// for it or anything under it. A relative HOST is taken from the current directory.
    #[arg(long = "dir", value_name = "HOST:GUEST[:ro|rw]")]
    dirs: Vec<DirGrant>,
    /// A network destination, ADDR:PORT (repeatable).
    #[arg(long, value_name = "ADDR:PORT")]
    network: Vec<SocketAddr>,
    /// An environment variable name (repeatable).
    #[arg(long = "env", value_name = "NAME")]
    env: Vec<String>,
    /// A configuration key (repeatable).
    #[arg(long = "config", value_name = "KEY")]
    config: Vec<String>,
    /// A host interface a component may import, e.g. wasi:http/outgoing-handler (repeatable).
    #[arg(long = "interface", value_name = "NAME")]
    interfaces: Vec<String>,
    /// Memory ceiling, e.g. 64MiB.
    #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = parse_size)]
    memory: u64,
    /// Fuel ceiling; any budget (or none) if not given.
    #[arg(long, value_name = "UNITS")]
    fuel: Option<u64>,
    /// Wall-time ceiling, e.g. 30s.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
    /// A node class (defined in the policy) the module may run on (repeatable).
    #[arg(long = "node-class", value_name = "NAME")]
    node_classes: Vec<String>,
    /// How long the grant is valid from now, e.g. 30d.
    #[arg(long, value_name = "DURATION", default_value = "30d", value_parser = parse_duration)]
    valid_for: Duration,
    /// The grant id; generated if not given.
    #[arg(long)]
    id: Option<String>,
    /// The grant file to write.
    #[arg(long, short = 'o', value_name = "FILE")]
    out: PathBuf,
    /// Overwrite the grant file.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
pub(crate) struct SignArgs {
    /// An authorizer private key.
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// The grant file.
    grant: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The trust policy (its signatures in POLICY.sig.json).
    #[arg(long, value_name = "FILE", env = "VAUBAN_POLICY")]
    policy: PathBuf,
    /// The pinned root public keys: a `.pub` file or a directory of them.
    #[arg(long, value_name = "PATH", env = "VAUBAN_ROOTS")]
    roots: PathBuf,
    /// Also check that the grant is for this module file.
    #[arg(long, value_name = "FILE")]
    module: Option<PathBuf>,
    /// The grant file.
    grant: PathBuf,
}

pub(crate) fn run(cmd: GrantCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        GrantCommand::Create(args) => create(*args),
        GrantCommand::Sign(args) => sign(args),
        GrantCommand::Verify(args) => verify(args),
    }
}

/// A grant id from the module digest and the creation time: short, unique enough, readable.
fn grant_id(digest: &ModuleDigest, now: SystemTime) -> String {
    let nanos = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let salt = ModuleDigest::of(format!("{digest}{nanos}{}", std::process::id()).as_bytes());
    format!("grant-{}-{}", &digest.hex()[..12], &salt.hex()[..8])
}

fn create(args: CreateArgs) -> anyhow::Result<ExitCode> {
    let bytes = super::read_module(&args.module)?;
    let kind =
        ModuleKind::detect(&bytes).with_context(|| format!("reading {}", args.module.display()))?;
    let digest = ModuleDigest::of(&bytes);
    let cwd = std::env::current_dir().context("finding the current directory")?;
    let now = SystemTime::now();
    if let Some(bad) = args.env.iter().find(|n| n.is_empty() || n.contains('=')) {
        anyhow::bail!("--env takes a variable name without a value, got {bad:?}");
    }
    let grant = Grant {
        id: args.id.unwrap_or_else(|| grant_id(&digest, now)),
        module: GrantedModule { digest, kind },
        capabilities: CapabilityCeiling {
            dirs: args
                .dirs
                .iter()
                .map(|d| GrantedDir {
                    host: cwd.join(&d.host),
                    guest: d.guest.clone(),
                    access: match d.access {
                        Access::ReadOnly => Mode::Ro,
                        Access::ReadWrite => Mode::Rw,
                    },
                })
                .collect(),
            env: args.env,
            network: args.network,
            interfaces: args.interfaces,
            config: args.config,
        },
        resources: ResourceCeiling {
            memory_bytes: args.memory,
            timeout_ms: u64::try_from(args.timeout.as_millis()).unwrap_or(u64::MAX),
            fuel: args.fuel,
        },
        node_classes: args.node_classes,
        not_before: Timestamp::new(now),
        not_after: Timestamp::new(now + args.valid_for),
    };
    let signed = SignedGrant::unsigned(grant)?;
    if args.out.exists() && !args.force {
        anyhow::bail!("{} exists (use --force to overwrite)", args.out.display());
    }
    write_replacing(&args.out, signed.to_json().as_bytes())?;
    let g = signed.unverified_grant();
    println!(
        "grant {} for {} ({}), valid until {}",
        g.id, g.module.digest, g.module.kind, g.not_after
    );
    println!(
        "unsigned: sign it with `vauban grant sign --key AUTHORIZER.key {}`",
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn read(path: &PathBuf) -> anyhow::Result<SignedGrant> {
    let json = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    SignedGrant::from_json(&json).with_context(|| format!("grant {} refused", path.display()))
}

fn sign(args: SignArgs) -> anyhow::Result<ExitCode> {
    let key = SecretKey::from_file(&args.key)?;
    let mut signed = read(&args.grant)?;
    signed.add_signature(&key)?;
    write_replacing(&args.grant, signed.to_json().as_bytes())?;
    println!(
        "signed grant {} with key {} ({} signature(s))",
        signed.unverified_grant().id,
        key.public_key().id(),
        signed.envelope().signatures.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let policy = load_verified(&args.policy, None, &args.roots)?;
    let signed = read(&args.grant)?;
    let verified = signed
        .verify(&policy, SystemTime::now())
        .with_context(|| format!("grant {} refused", args.grant.display()))?;
    if let Some(module) = &args.module {
        verified.grant.covers(&super::read_module(module)?)?;
    }
    let g = &verified.grant;
    let c = &g.capabilities;
    let ids: Vec<_> = verified.signers.iter().map(ToString::to_string).collect();
    println!(
        "grant {}: valid under policy version {}",
        g.id,
        policy.version()
    );
    println!("module:       {} ({})", g.module.digest, g.module.kind);
    println!("signed by:    {} (authorizer)", ids.join(", "));
    println!("valid:        from {} until {}", g.not_before, g.not_after);
    for d in &c.dirs {
        println!(
            "dir:          {} -> {} {:?}",
            d.host.display(),
            d.guest,
            d.access
        );
    }
    println!("env:          {}", c.env.join(", "));
    let network: Vec<_> = c.network.iter().map(ToString::to_string).collect();
    println!("network:      {}", network.join(", "));
    println!("interfaces:   {}", c.interfaces.join(", "));
    println!("config:       {}", c.config.join(", "));
    let r = &g.resources;
    let fuel = r.fuel.map_or_else(|| "any".to_owned(), |f| f.to_string());
    println!(
        "resources:    memory {} bytes, wall time {} ms, fuel {fuel}",
        r.memory_bytes, r.timeout_ms
    );
    println!("node classes: {}", g.node_classes.join(", "));
    Ok(ExitCode::SUCCESS)
}
