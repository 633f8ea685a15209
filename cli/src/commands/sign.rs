//! `vauban sign`: add a publisher signature to a module or component.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use vauban_core::{ModuleDigest, ModuleKind, SecretKey};

#[derive(Debug, Args)]
pub(crate) struct SignArgs {
    /// The publisher's private key (PKCS#8 PEM).
    #[arg(long, short = 'k', env = "VAUBAN_SIGNING_KEY")]
    key: PathBuf,
    /// The module or component to sign.
    module: PathBuf,
    /// Where to write the signed module; by default the input is replaced.
    #[arg(long, short = 'o')]
    output: Option<PathBuf>,
}

pub(crate) fn run(args: SignArgs) -> anyhow::Result<ExitCode> {
    let key = SecretKey::from_file(&args.key)?;
    let bytes = super::read_module(&args.module)?;
    let signed = key
        .sign_module(&bytes)
        .with_context(|| format!("signing {}", args.module.display()))?;
    let output = args.output.unwrap_or_else(|| args.module.clone());
    // Write beside the target, then rename: a crash never leaves a half-written module.
    let tmp = output.with_extension("wasm.signing");
    std::fs::write(&tmp, &signed).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &output).with_context(|| format!("writing {}", output.display()))?;
    let kind = ModuleKind::detect(&signed)?;
    println!("signed {} ({kind})", output.display());
    println!("digest: {}", ModuleDigest::of(&signed));
    println!("key id: {}", key.public_key().id());
    Ok(ExitCode::SUCCESS)
}
