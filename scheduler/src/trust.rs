//! Whom the scheduler trusts: publisher keys alone ([`Trust::Keys`], the keys-only mode of
//! `--trust`), or a root-signed trust policy ([`Trust::Policy`]) that says which keys hold which
//! role, how many signatures modules and grants need, the node classes, and what is revoked.
//!
//! The policy in force is held by a [`PolicyHolder`] so that a newer version can replace it while
//! the scheduler runs: the module service reads it at each upload, the jobs service at each
//! submit and plan, and anything that must react to a change (stopping what a revocation
//! forbids) subscribes to it. Readers take an `Arc` of the policy and never hold a lock.

use std::time::SystemTime;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
pub use vauban_core::PolicyHolder;
use vauban_core::admission::{check_grant_module, classes_allowing};
use vauban_core::envelope::Envelope;
use vauban_core::policy::{AtStart, POLICY_PAYLOAD_TYPE};
use vauban_core::{GrantError, Inadmissible, ModuleKind, SignedGrant, TrustPolicy, TrustStore};

use crate::job::{Authorization, JobSpec};
use crate::placement::NodeClassMatch;
use crate::store::{RecordKind, Store, StoreError};

/// How modules and jobs are admitted.
#[derive(Clone, Debug)]
pub(crate) enum Trust {
    /// Keys-only mode: a module must be signed by one of these publisher keys; jobs need no
    /// grant and may ask for any capability.
    Keys(TrustStore),
    /// Policy mode: modules need the policy's publisher threshold, every job a grant.
    Policy(PolicyHolder),
}

/// Why a job is not admitted under a trust policy.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JobRefusal {
    /// The spec carries no grant.
    #[error(
        "job has no grant: under a trust policy every job needs one, signed by the policy's \
         authorizers (`vauban run --grant FILE`, or `grant = \"FILE\"` in a job spec)"
    )]
    NoGrant,
    /// The grant does not parse, does not verify (too few authorizers, expired, not yet valid,
    /// revoked module, unknown node class), or is for another module.
    #[error(transparent)]
    Grant(#[from] GrantError),
    /// The request is beyond the grant, or no node class of the grant allows it.
    #[error(transparent)]
    Inadmissible(#[from] Inadmissible),
}

/// Admits a job under `policy` at `now`: its grant must verify, be for its module (and for
/// the module's kind, when the module's record is at hand), and allow what the job asks for on
/// at least one of its node classes. The job's placement is then restricted to the nodes of
/// those classes, so that the scheduler never assigns it where a host would refuse it.
pub(crate) fn admit_job(
    policy: &TrustPolicy,
    spec: &mut JobSpec,
    kind: Option<ModuleKind>,
    now: SystemTime,
) -> Result<(), JobRefusal> {
    let json = spec.grant.as_deref().ok_or(JobRefusal::NoGrant)?;
    let verified = SignedGrant::from_json(json.as_bytes())?.verify(policy, now)?;
    let grant = &verified.grant;
    check_grant_module(grant, &spec.module, kind.unwrap_or(grant.module.kind))?;
    let classes = classes_allowing(&spec.capabilities, &verified, policy)?;
    let expires_at_ms = grant
        .not_after
        .time()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    spec.authorized = Some(Authorization {
        grant: grant.id.clone(),
        by: verified.signers.clone(),
        expires_at_ms: Some(expires_at_ms),
    });
    spec.placement.node_classes = classes
        .into_iter()
        .map(|class| NodeClassMatch {
            name: class.name.clone(),
            labels: class.labels.clone(),
        })
        .collect();
    Ok(())
}

/// The stored form of the policy in force (`trust/policy`): the exact bytes that were signed,
/// and their signatures, so that it is verified again when the scheduler starts.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct PolicyRecord {
    /// The policy's TOML, as signed (UTF-8, as the policy parser requires).
    pub(crate) toml: String,
    /// Its DSSE envelope, JSON.
    pub(crate) signatures: String,
}

/// The id of the one [`PolicyRecord`].
pub(crate) const POLICY_RECORD: &str = "policy";

impl PolicyRecord {
    pub(crate) fn of(policy: &TrustPolicy) -> Self {
        Self {
            toml: String::from_utf8_lossy(policy.toml_bytes()).into_owned(),
            signatures: policy.envelope().map(|e| e.to_json()).unwrap_or_default(),
        }
    }
}

/// A change of the policy in force found at start: the version held before (0: none) and the
/// one in force now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StartChange {
    pub(crate) old_version: u64,
    pub(crate) new_version: u64,
}

/// Reconciles the policy the scheduler was started with (`--policy`) with the one its store
/// holds (installed by an earlier run, perhaps pushed since), by [`TrustPolicy::at_start`]: the
/// newer one is in force, and a newer file is stored.
///
/// # Errors
/// The stored policy does not verify against the pinned roots any more, the file may not
/// replace the stored policy, or the store fails.
pub(crate) async fn recover(
    store: &Store,
    holder: PolicyHolder,
) -> anyhow::Result<(PolicyHolder, Option<StartChange>)> {
    let stored = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.load_records::<PolicyRecord>(RecordKind::Trust))
            .await
            .context("reading the stored trust policy panicked")??
    };
    let given = holder.current();
    let stored = match stored.into_iter().next() {
        Some(record) => {
            let envelope = Envelope::from_json(record.signatures.as_bytes(), POLICY_PAYLOAD_TYPE)
                .context("the stored trust policy's signatures are malformed")?;
            let stored =
                TrustPolicy::load_verified(record.toml.as_bytes(), &envelope, holder.roots())
                    .context("the stored trust policy does not verify against the pinned roots")?;
            Some(stored)
        }
        None => None,
    };
    match given
        .at_start(stored.as_ref())
        .context("--policy may not replace the stored trust policy")?
    {
        AtStart::Stored => {
            let stored = stored.context("a stored policy")?;
            tracing::info!(
                file = given.version(),
                stored = stored.version(),
                "the stored trust policy is newer than --policy: it stays in force"
            );
            let roots = holder.roots().clone();
            Ok((PolicyHolder::new(stored, roots), None))
        }
        AtStart::Same => Ok((holder, None)),
        AtStart::Given { replaces } => {
            store_policy(store, &given)
                .await
                .context("storing the trust policy")?;
            let change = StartChange {
                old_version: replaces,
                new_version: given.version(),
            };
            Ok((holder, Some(change)))
        }
    }
}

/// Writes `policy` as the one in force (`trust/policy`), in one transaction.
///
/// # Errors
/// When the store fails.
pub(crate) async fn store_policy(store: &Store, policy: &TrustPolicy) -> Result<(), StoreError> {
    let record = PolicyRecord::of(policy);
    store
        .call(move |s| s.put_record(RecordKind::Trust, POLICY_RECORD, &record))
        .await
}
