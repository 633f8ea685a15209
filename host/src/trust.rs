//! The trust policy a host holds, when it runs in policy mode: which keys hold which role, how
//! many signatures modules and grants need, the node classes, and what is revoked.
//!
//! The policy is held by a [`PolicyHolder`] so that a newer version can replace it while the host
//! runs (the scheduler pushes it; the host verifies it against its own pinned roots first). The
//! runtime reads it at each load, the agent at each assignment, and whatever must react to a
//! change (stopping what a revocation forbids) subscribes to it. Readers take an `Arc` of the
//! policy and never hold a lock.

use std::path::Path;

use anyhow::Context as _;

use vauban_core::envelope::Envelope;
use vauban_core::policy::{AtStart, POLICY_PAYLOAD_TYPE};
use vauban_core::{TrustPolicy, TrustStore};

pub use vauban_core::PolicyHolder;

/// The file, in a host's trust directory, holding the newest policy it accepted.
pub(crate) const POLICY_FILE: &str = "policy.toml";
/// The file beside it holding that policy's root signatures.
pub(crate) const SIGNATURES_FILE: &str = "policy.toml.sig.json";

/// The policy a host starts with: `given` (its `--policy` file, verified) or the newest one it
/// accepted in an earlier run and kept in `dir` (pushed since, perhaps), whichever is newer
/// ([`TrustPolicy::at_start`]), so that a restart with a stale file never brings back what a
/// pushed policy revoked. A newer `given` is kept in `dir`.
///
/// # Errors
/// The directory cannot be read or written, the kept policy does not verify against `roots` any
/// more, or `given` may not replace it.
pub fn policy_at_start(
    given: TrustPolicy,
    roots: &TrustStore,
    dir: &Path,
) -> anyhow::Result<TrustPolicy> {
    let files = crate::files::open_private_dir(dir)
        .with_context(|| format!("opening the trust directory {}", dir.display()))?;
    let toml = crate::files::read_if_present(&files, POLICY_FILE)?;
    let signatures = crate::files::read_if_present(&files, SIGNATURES_FILE)?;
    let kept = match (toml, signatures) {
        (Some(toml), Some(signatures)) => {
            let envelope = Envelope::from_json(&signatures, POLICY_PAYLOAD_TYPE)
                .context("the kept trust policy's signatures are malformed")?;
            let kept = TrustPolicy::load_verified(&toml, &envelope, roots).with_context(|| {
                format!(
                    "the trust policy kept in {} does not verify against the pinned roots",
                    dir.display()
                )
            })?;
            Some(kept)
        }
        _ => None,
    };
    match given
        .at_start(kept.as_ref())
        .context("--policy may not replace the trust policy this host holds")?
    {
        AtStart::Stored => {
            let kept = kept.context("a kept policy")?;
            tracing::info!(
                file = given.version(),
                kept = kept.version(),
                "the trust policy this host holds is newer than --policy: it stays in force"
            );
            Ok(kept)
        }
        AtStart::Same => Ok(given),
        AtStart::Given { .. } => {
            keep(&files, &given)?;
            Ok(given)
        }
    }
}

/// Keeps `policy` in the trust directory `dir`, durably, as the newest this host accepted.
///
/// # Errors
/// The directory cannot be opened or the files cannot be written.
pub fn keep_policy(dir: &Path, policy: &TrustPolicy) -> anyhow::Result<()> {
    let files = crate::files::open_private_dir(dir)
        .with_context(|| format!("opening the trust directory {}", dir.display()))?;
    keep(&files, policy)
}

/// Signatures first, then the policy: a crash in between leaves the old policy with new
/// signatures, which does not verify, so the next start falls back to `--policy` and the
/// scheduler pushes the newer one again.
fn keep(files: &cap_std::fs::Dir, policy: &TrustPolicy) -> anyhow::Result<()> {
    let signatures = policy
        .envelope()
        .map(|e| e.to_json())
        .context("only a verified policy is kept")?;
    crate::files::write_synced(files, SIGNATURES_FILE, signatures.as_bytes())
        .context("writing the trust policy's signatures")?;
    crate::files::write_synced(files, POLICY_FILE, policy.toml_bytes())
        .context("writing the trust policy")?;
    Ok(())
}
