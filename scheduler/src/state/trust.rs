//! Installing a newer trust policy, in the state task: the one place that replaces the policy in
//! force, so that persisting it, telling the hosts and stopping what it no longer trusts happen
//! in one order, between two commands.
//!
//! The order is the design. (1) The policy must succeed the one in force (version forward,
//! signed by that policy's root threshold). (2) It is written to the store before anything acts
//! on it, so a restarted scheduler never holds an older policy than its hosts were sent. (3) It
//! replaces the policy in force, which the module and jobs services read at every upload and
//! submit: new work is judged by it from here on. (4) Every connected host is sent it; each
//! verifies it against its own pinned roots and stops, by itself, the instances the policy no
//! longer trusts. (5) Jobs it no longer trusts fail, their attempts are stopped, and the change
//! and each stop go to the audit log with the batch's commit.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::time::SystemTime;

use tracing::{info, warn};
use vauban_audit::entry as audit;
use vauban_core::revocation::still_trusted;
use vauban_core::{KeyId, ModuleDigest, PolicyError, SignedGrant, TrustPolicy};

use super::{SchedulerError, State};
use crate::job::{JobId, JobRecord};
use crate::node::{PushedPolicy, ToHost};
use crate::trust::store_policy;

impl State {
    /// Installs `policy` (already verified against the pinned roots) in place of the policy in
    /// force; see the module documentation for the order of the steps.
    pub(super) async fn install_policy(
        &mut self,
        policy: TrustPolicy,
    ) -> Result<Result<Arc<TrustPolicy>, PolicyError>, SchedulerError> {
        let Some(holder) = self.config.policy.clone() else {
            return Ok(Err(PolicyError::Invalid(
                "this scheduler runs in keys-only mode and holds no policy".into(),
            )));
        };
        let old = holder.current();
        if let Err(e) = policy.succeeds(&old) {
            return Ok(Err(e));
        }
        store_policy(&self.store, &policy).await?;
        if let Err(e) = holder.replace(policy) {
            // Only this task replaces the policy, and it just checked: not expected.
            return Ok(Err(e));
        }
        let new = holder.current();
        info!(
            old = old.version(),
            new = new.version(),
            digest = %new.digest(),
            "trust policy installed"
        );
        self.audit(|at_ms| {
            audit::Entry::PolicyChange(audit::PolicyChange {
                at_ms,
                old_version: old.version(),
                new_version: new.version(),
                digest: new.digest(),
            })
        });
        for key in new.root_signers() {
            self.audit(|at_ms| {
                audit::Entry::KeyUse(audit::KeyUse {
                    at_ms,
                    key: key.to_string(),
                    role: "root".to_owned(),
                    purpose: format!("signed trust policy version {}", new.version()),
                })
            });
        }
        for node in self.nodes.values() {
            node.send(ToHost::Policy(PushedPolicy(Arc::clone(&new))));
        }
        self.stop_untrusted(&new).await?;
        self.dirty = true;
        Ok(Ok(new))
    }

    /// Fails every job that is not over and that `policy` no longer trusts (its module or its
    /// grant), stopping its attempts.
    async fn stop_untrusted(&mut self, policy: &TrustPolicy) -> Result<(), SchedulerError> {
        let live: Vec<(JobId, ModuleDigest, Option<String>)> = self
            .jobs
            .values()
            .filter(|job| !job.state.is_terminal())
            .map(|job| (job.id.clone(), job.spec.module, job.spec.grant.clone()))
            .collect();
        let mut signers: HashMap<ModuleDigest, Vec<KeyId>> = HashMap::new();
        let now = SystemTime::now();
        for (id, module, grant) in live {
            if let Entry::Vacant(slot) = signers.entry(module) {
                let record = self.store.call(move |s| s.module(&module)).await?;
                slot.insert(record.map(|r| r.signers).unwrap_or_default());
            }
            let grant = match grant
                .as_deref()
                .map(|g| SignedGrant::from_json(g.as_bytes()))
            {
                Some(Ok(grant)) => Some(grant),
                Some(Err(e)) => {
                    self.revoke(&id, format!("its grant no longer parses: {e}"));
                    continue;
                }
                None => None,
            };
            let Err(untrusted) =
                still_trusted(policy, &module, &signers[&module], grant.as_ref(), now)
            else {
                continue;
            };
            self.revoke(&id, untrusted.to_string());
        }
        Ok(())
    }

    /// In the batch, for the audit log: each authorizer key whose signature on the grant of a
    /// job just accepted counted (as the jobs service found when it admitted the job).
    pub(super) fn audit_authorizers(&mut self, job: &JobRecord) {
        let Some(authorized) = &job.spec.authorized else {
            return;
        };
        for key in &authorized.by {
            self.audit(|at_ms| {
                audit::Entry::KeyUse(audit::KeyUse {
                    at_ms,
                    key: key.to_string(),
                    role: "authorizer".to_owned(),
                    purpose: format!("authorized grant {} for job {}", authorized.grant, job.id),
                })
            });
        }
    }

    /// Fails every job that is not over and whose grant has expired, stopping its attempts:
    /// hosts refuse to run it from then on, and stop what they run of it themselves. Called at
    /// every tick, so a job outlives its grant by at most one heartbeat interval.
    pub(super) fn expire_grants(&mut self) {
        let now = self.clock.now_ms();
        // The active set, not every job ever kept: this runs at every tick.
        let expired: Vec<(JobId, String)> = self
            .active
            .iter()
            .filter_map(|(_, id)| self.jobs.get(id))
            .filter(|job| !job.state.is_terminal())
            .filter_map(|job| {
                let authorized = job.spec.authorized.as_ref()?;
                let at_ms = authorized.expires_at_ms.filter(|at| *at <= now)?;
                let at = humantime::format_rfc3339_seconds(
                    SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(at_ms),
                );
                Some((
                    job.id.clone(),
                    format!("grant {} expired at {at}", authorized.grant),
                ))
            })
            .collect();
        for (id, why) in expired {
            self.stop_job(&id, "grant expiry", why);
        }
    }

    /// In the batch: the job fails with `why`, and the stop is recorded for the audit log.
    fn revoke(&mut self, id: &JobId, why: String) {
        self.stop_job(id, "revocation", why);
    }

    /// In the batch: the job fails with `why`, and the stop, `by` what, is recorded for the
    /// audit log.
    fn stop_job(&mut self, id: &JobId, by: &str, why: String) {
        warn!(job = %id, by, "stopping a job its trust no longer covers: {why}");
        self.audit(|at_ms| {
            audit::Entry::Cancellation(audit::Cancellation {
                at_ms,
                job: id.to_string(),
                by: by.to_owned(),
                reason: why.clone(),
            })
        });
        self.fail(id, why);
    }
}
