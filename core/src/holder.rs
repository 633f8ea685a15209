//! The trust policy a machine holds, replaceable while it runs: the scheduler and every host
//! keep theirs in a [`PolicyHolder`], read at each upload, submit, load and assignment, and
//! replaced only by a policy that succeeds it. Whatever must react to a replacement (stopping
//! what a revocation forbids) subscribes to it. Readers take an `Arc` of the policy and never
//! hold a lock.

use std::sync::Arc;

use tokio::sync::watch;

use crate::policy::{PolicyError, TrustPolicy};
use crate::signature::TrustStore;

/// The trust policy in force, replaceable at run time by a newer version. Cheap to clone:
/// clones share the policy, so a replacement is seen by all of them at once.
#[derive(Clone, Debug)]
pub struct PolicyHolder {
    /// The policy; a watch channel so that a change can be awaited as well as read.
    policy: Arc<watch::Sender<Arc<TrustPolicy>>>,
    /// The pinned root public keys a replacement must be signed by.
    roots: TrustStore,
}

impl PolicyHolder {
    /// Holds `policy`, which must already have been verified against `roots`
    /// ([`TrustPolicy::load_verified`]).
    pub fn new(policy: TrustPolicy, roots: TrustStore) -> Self {
        Self {
            policy: Arc::new(watch::Sender::new(Arc::new(policy))),
            roots,
        }
    }

    /// The policy in force now.
    pub fn current(&self) -> Arc<TrustPolicy> {
        Arc::clone(&self.policy.borrow())
    }

    /// Installs `new` in place of the policy in force, if it succeeds it
    /// ([`TrustPolicy::succeeds`]: a higher version, signed by the root threshold of the policy
    /// in force). The check and the swap are one step, so two replacements racing cannot install
    /// an older version over a newer one. `new` must already have been verified against
    /// [`PolicyHolder::roots`].
    ///
    /// # Errors
    /// [`PolicyError::Downgrade`], [`PolicyError::SameVersion`] or [`PolicyError::Succession`];
    /// the policy in force is then unchanged.
    pub fn replace(&self, new: TrustPolicy) -> Result<(), PolicyError> {
        let mut outcome = Ok(());
        self.policy
            .send_if_modified(|held| match new.succeeds(held) {
                Ok(()) => {
                    *held = Arc::new(new);
                    true
                }
                Err(e) => {
                    outcome = Err(e);
                    false
                }
            });
        outcome
    }

    /// A receiver that sees every replacement (`changed().await`), for whoever must act on one.
    pub fn subscribe(&self) -> watch::Receiver<Arc<TrustPolicy>> {
        self.policy.subscribe()
    }

    /// The root public keys pinned on this machine.
    pub fn roots(&self) -> &TrustStore {
        &self.roots
    }
}
