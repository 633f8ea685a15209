//! `vauban verify`: check a module's signature against trusted keys, without running it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// Trusted public keys: a key file or a directory of *.pub files. Repeatable.
    #[arg(long, env = "VAUBAN_TRUST", value_delimiter = ',', required = true)]
    trust: Vec<PathBuf>,
    /// The module or component to verify.
    module: PathBuf,
}

pub(crate) fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let trust = super::load_trust(&args.trust)?;
    let bytes = super::read_module(&args.module)?;
    match trust.verify(&bytes) {
        Ok(verified) => {
            println!("verified {} ({})", args.module.display(), verified.kind);
            println!("digest:    {}", verified.digest);
            let signers: Vec<String> = verified.signers.iter().map(ToString::to_string).collect();
            println!("signed by: {}", signers.join(", "));
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("refused {}: {error}", args.module.display());
            Ok(ExitCode::FAILURE)
        }
    }
}
