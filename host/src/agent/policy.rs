//! Trust policies pushed by the scheduler: verified against this host's own pinned roots,
//! installed only when they succeed the policy it holds, kept on disk, and acted on at once —
//! every running attempt watches the policy and stops itself when the new one no longer trusts
//! it (see `job::untrusted`).

use vauban_core::envelope::Envelope;
use vauban_core::policy::POLICY_PAYLOAD_TYPE;
use vauban_core::{PolicyError, TrustPolicy};
use vauban_proto::v1;

use super::Agent;

impl Agent {
    /// The version of the trust policy this host holds; 0 when it holds none.
    pub(super) fn policy_version(&self) -> u64 {
        self.runtime
            .policy()
            .map_or(0, |holder| holder.current().version())
    }

    /// Verifies and installs a policy the scheduler pushed. A policy that does not verify
    /// against this host's pinned roots, or does not succeed the one it holds, is refused and
    /// logged: the host keeps its own.
    pub(super) fn install_policy(&self, pushed: v1::Policy) {
        let Some(holder) = self.runtime.policy() else {
            tracing::warn!(
                version = pushed.version,
                "ignoring a pushed trust policy: this host runs in keys-only mode"
            );
            return;
        };
        let v1::Policy {
            version,
            toml,
            signatures,
            digest: _,
        } = pushed;
        let verified = Envelope::from_json(&signatures, POLICY_PAYLOAD_TYPE)
            .map_err(PolicyError::from)
            .and_then(|envelope| TrustPolicy::load_verified(&toml, &envelope, holder.roots()));
        let policy = match verified {
            Ok(policy) => policy,
            Err(error) => {
                tracing::warn!(version, %error, "refusing a pushed trust policy");
                return;
            }
        };
        // Kept before it is in force: once running attempts act on it, a restart must not
        // bring back the policy it replaced. Only if it may replace the one held.
        if let Err(error) = policy.succeeds(&holder.current()) {
            match error {
                PolicyError::SameVersion(_) => {
                    tracing::debug!(version, "already holding this trust policy");
                }
                error => tracing::warn!(version, %error, "refusing a pushed trust policy"),
            }
            return;
        }
        if let Some(dir) = &self.config.trust_dir
            && let Err(error) = crate::keep_policy(dir, &policy)
        {
            tracing::error!(version, error = %format!("{error:#}"), "cannot keep the pushed trust policy; refusing it");
            return;
        }
        match holder.replace(policy) {
            Ok(()) => tracing::info!(version, "trust policy installed"),
            Err(error) => tracing::warn!(version, %error, "refusing a pushed trust policy"),
        }
    }
}
