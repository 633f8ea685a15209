//! `vauban key`: create signing keys for each role (root, publisher, authorizer, audit).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use vauban_core::{Role, SecretKey};

use super::{with_extension, write_file};

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
