//! `vauban key`: create signing keys for each role (root, publisher, authorizer, audit).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use vauban_core::{Role, SecretKey};

#[derive(Debug, Subcommand)]
pub(crate) enum KeyCommand {
    /// Generate an Ed25519 key pair: NAME.key (PKCS#8 PEM, owner-only) and NAME.pub (SPKI PEM).
    Generate(GenerateArgs),
}

#[derive(Debug, Args)]
pub(crate) struct GenerateArgs {
    /// Path prefix of the key files to write: PREFIX.key and PREFIX.pub.
    #[arg(long, short = 'o', value_name = "PREFIX")]
    out: PathBuf,
    /// The role the key is for (root, publisher, authorizer, audit). Roles are granted by the
    /// trust policy; this prints the policy entry to paste.
    #[arg(long, default_value = "publisher")]
    role: Role,
    /// Overwrite existing key files.
    #[arg(long)]
    force: bool,
}

pub(crate) fn run(cmd: KeyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        KeyCommand::Generate(args) => generate(args),
    }
}

fn generate(args: GenerateArgs) -> anyhow::Result<ExitCode> {
    let private = with_extension(&args.out, "key");
    let public = with_extension(&args.out, "pub");
    let key = SecretKey::generate();
    write_file(&private, key.to_pem().as_bytes(), 0o600, args.force)?;
    write_file(
        &public,
        key.public_key().to_pem().as_bytes(),
        0o644,
        args.force,
    )?;
    let id = key.public_key().id();
    println!("key id:      {id}");
    println!("role:        {}", args.role);
    println!("private key: {}", private.display());
    println!("public key:  {}", public.display());
    println!();
    println!("# trust policy entry:");
    println!("[[keys]]");
    println!("id = \"{id}\"");
    println!("alg = \"{}\"", key.algorithm());
    println!("public_key = \"\"\"\n{}\"\"\"", key.public_key().to_pem());
    println!("roles = [\"{}\"]", args.role);
    Ok(ExitCode::SUCCESS)
}

fn with_extension(prefix: &Path, ext: &str) -> PathBuf {
    let mut name = prefix.as_os_str().to_owned();
    name.push(".");
    name.push(ext);
    PathBuf::from(name)
}

fn write_file(path: &Path, contents: &[u8], mode: u32, force: bool) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).mode(mode);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {} (use --force to overwrite)", path.display()))?;
    file.write_all(contents)
        .with_context(|| format!("writing {}", path.display()))
}
