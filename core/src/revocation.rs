//! What a new trust policy means for work already running: an instance admitted under an
//! earlier policy keeps running only if the new one would still admit what it was admitted with
//! — its module (digest not revoked, enough unrevoked publisher signers) and its grant (enough
//! unrevoked authorizers, module not revoked, still valid, its node classes still defined).
//!
//! The scheduler and every host apply the same check, each with its own copy of the policy: the
//! scheduler fails the job, and the host stops the instance whether or not the scheduler told it
//! to.

use std::time::SystemTime;

use crate::grant::SignedGrant;
use crate::module::ModuleDigest;
use crate::policy::TrustPolicy;
use crate::role::Role;
use crate::signature::KeyId;

/// Why an instance admitted under an earlier policy is no longer trusted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("trust policy version {version} no longer trusts it: {reason}")]
pub struct Untrusted {
    /// The version of the policy that withdrew the trust.
    pub version: u64,
    /// What it withdrew, naming the module, key or grant.
    pub reason: String,
}

/// Checks an instance against `policy`: `module` and the publisher keys that counted for it when
/// it was admitted (`signers`), and its grant (`None` in keys-only mode, where nothing but the
/// module is checked).
///
/// # Errors
/// [`Untrusted`] naming the first thing the policy no longer trusts.
pub fn still_trusted(
    policy: &TrustPolicy,
    module: &ModuleDigest,
    signers: &[KeyId],
    grant: Option<&SignedGrant>,
    now: SystemTime,
) -> Result<(), Untrusted> {
    let untrusted = |reason: String| Untrusted {
        version: policy.version(),
        reason,
    };
    if policy.is_module_revoked(module) {
        return Err(untrusted(format!("module {module} is revoked")));
    }
    let counted = signers
        .iter()
        .filter(|id| policy.holds(id, Role::Publisher))
        .count();
    let need = policy.thresholds().publisher;
    if counted < need as usize {
        let revoked: Vec<String> = signers
            .iter()
            .filter(|id| !policy.holds(id, Role::Publisher))
            .map(ToString::to_string)
            .collect();
        return Err(untrusted(format!(
            "module {module} has {counted} of the {need} publisher signature(s) needed \
             (no longer counted: {})",
            if revoked.is_empty() {
                "none".to_owned()
            } else {
                revoked.join(", ")
            }
        )));
    }
    if let Some(grant) = grant {
        grant
            .verify(policy, now)
            .map_err(|e| untrusted(e.to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grant::tests::grant;
    use crate::policy::tests::Keys;

    fn check(policy: &TrustPolicy, signers: &[KeyId], grant: Option<&SignedGrant>) -> String {
        let digest = ModuleDigest::of(b"module");
        let now = humantime::parse_rfc3339("2026-01-10T00:00:00Z").expect("time");
        match still_trusted(policy, &digest, signers, grant, now) {
            Ok(()) => "trusted".into(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_new_policy_withdraws_trust_from_what_it_revokes() {
        let keys = Keys::new();
        let digest = ModuleDigest::of(b"module");
        let publisher = keys.publisher.public_key().id().clone();
        let grant = SignedGrant::sign(grant(), &keys.authorizers[0]).expect("sign");
        let policy = keys.policy(1, "");
        assert_eq!(
            check(&policy, std::slice::from_ref(&publisher), Some(&grant)),
            "trusted"
        );
        // Keys-only instances are checked on their module alone.
        assert_eq!(
            check(&policy, std::slice::from_ref(&publisher), None),
            "trusted"
        );
        let revoked_module = keys.policy(1, &format!("revoked_modules = [\"{digest}\"]"));
        assert!(
            check(
                &revoked_module,
                std::slice::from_ref(&publisher),
                Some(&grant)
            )
            .contains(&format!("module {digest} is revoked")),
        );
        // Revoking the only publisher leaves the policy invalid (threshold above the keys), so a
        // second publisher is needed for the policy itself; the module still has only the first.
        let second = crate::signature::SecretKey::generate();
        let extra = format!(
            "revoked_keys = [\"{publisher}\"]\n[[keys]]\nid = \"{}\"\nalg = \"ed25519\"\n\
             public_key = \"\"\"\n{}\"\"\"\nroles = [\"publisher\"]\n",
            second.public_key().id(),
            second.public_key().to_pem()
        );
        let revoked_publisher = keys.policy(1, &extra);
        let got = check(
            &revoked_publisher,
            std::slice::from_ref(&publisher),
            Some(&grant),
        );
        assert!(
            got.contains("has 0 of the 1 publisher signature(s) needed")
                && got.contains(&publisher.to_string()),
            "{got}"
        );
        // The grant's authorizer revoked: the grant no longer meets its threshold.
        let authorizer = keys.authorizers[0].public_key().id();
        let revoked_authorizer = keys.policy(1, &format!("revoked_keys = [\"{authorizer}\"]"));
        let got = check(
            &revoked_authorizer,
            std::slice::from_ref(&publisher),
            Some(&grant),
        );
        assert!(got.contains("valid authorizer signature"), "{got}");
        assert!(
            got.starts_with("trust policy version 1 no longer trusts it"),
            "{got}"
        );
    }
}
