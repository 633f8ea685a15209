//! `vauban sign`: add a publisher signature to a module or component.

use std::path::{Path, PathBuf};
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
    let output = args.output.unwrap_or_else(|| args.module.clone());
    let signed = sign_to(&key, &args.module, &output)?;
    let kind = ModuleKind::detect(&signed)?;
    println!("signed {} ({kind})", output.display());
    println!("digest: {}", ModuleDigest::of(&signed));
    println!("key id: {}", key.public_key().id());
    Ok(ExitCode::SUCCESS)
}

/// Signs the module at `input` with `key` and writes it to `output` (which may be `input`),
/// beside the target first and then renamed: a crash never leaves a half-written module.
/// Returns the signed bytes.
pub(crate) fn sign_to(key: &SecretKey, input: &Path, output: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = super::read_module(input)?;
    let signed = key
        .sign_module(&bytes)
        .with_context(|| format!("signing {}", input.display()))?;
    let tmp = output.with_extension("wasm.signing");
    std::fs::write(&tmp, &signed).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, output).with_context(|| format!("writing {}", output.display()))?;
    Ok(signed)
}
