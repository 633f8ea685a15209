//! `vauban.v1.Trust`: the trust policy in force, and installing a newer one.
//!
//! A new policy is verified here against the scheduler's pinned roots (it must parse and meet its
//! own root threshold); the state task then installs it, which checks that it succeeds the policy
//! in force (version forward, signed by that policy's root threshold), records it durably with
//! its audit entry, pushes it to every connected host and stops what it no longer trusts.

use tonic::{Request, Response, Status};
use vauban_core::envelope::Envelope;
use vauban_core::policy::POLICY_PAYLOAD_TYPE;
use vauban_core::{PolicyError, TrustPolicy};
use vauban_proto::v1;

use crate::identity::{Need, require};
use crate::state::SchedulerHandle;
use crate::trust::PolicyHolder;

/// Serves the trust policy; `policy` is `None` in keys-only mode.
#[derive(Debug)]
pub(crate) struct TrustService {
    scheduler: SchedulerHandle,
    policy: Option<PolicyHolder>,
}

impl TrustService {
    pub(crate) fn new(scheduler: SchedulerHandle, policy: Option<PolicyHolder>) -> Self {
        Self { scheduler, policy }
    }

    fn holder(&self) -> Result<&PolicyHolder, Status> {
        self.policy.as_ref().ok_or_else(|| {
            Status::failed_precondition(
                "this scheduler runs in keys-only mode (--trust): start it with --policy and \
                 --roots to hold a trust policy",
            )
        })
    }
}

#[tonic::async_trait]
impl v1::trust_server::Trust for TrustService {
    async fn get_policy(
        &self,
        request: Request<v1::GetPolicyRequest>,
    ) -> Result<Response<v1::Policy>, Status> {
        require(&request, Need::Client("reading the trust policy"))?;
        let v1::GetPolicyRequest {} = request.into_inner();
        let Some(holder) = &self.policy else {
            return Err(Status::not_found(
                "this scheduler holds no trust policy (keys-only mode)",
            ));
        };
        Ok(Response::new(policy_to_proto(&holder.current())))
    }

    async fn set_policy(
        &self,
        request: Request<v1::SetPolicyRequest>,
    ) -> Result<Response<v1::Policy>, Status> {
        require(&request, Need::Operate("installing a trust policy"))?;
        let v1::SetPolicyRequest { toml, signatures } = request.into_inner();
        let holder = self.holder()?;
        let envelope = Envelope::from_json(&signatures, POLICY_PAYLOAD_TYPE)
            .map_err(|e| Status::invalid_argument(format!("signatures: {e}")))?;
        let policy =
            TrustPolicy::load_verified(&toml, &envelope, holder.roots()).map_err(policy_status)?;
        let installed = self
            .scheduler
            .install_policy(policy)
            .await?
            .map_err(policy_status)?;
        Ok(Response::new(policy_to_proto(&installed)))
    }
}

/// A refused policy: malformed input is the caller's argument; a valid policy that may not be
/// installed (signatures, version) is a failed precondition.
fn policy_status(e: PolicyError) -> Status {
    let message = format!("policy refused: {e}");
    match e {
        PolicyError::Parse(_) | PolicyError::Invalid(_) | PolicyError::Envelope(_) => {
            Status::invalid_argument(message)
        }
        _ => Status::failed_precondition(message),
    }
}

/// The policy exactly as signed, for clients and hosts.
pub(crate) fn policy_to_proto(policy: &TrustPolicy) -> v1::Policy {
    v1::Policy {
        version: policy.version(),
        toml: policy.toml_bytes().to_vec(),
        signatures: policy
            .envelope()
            .map(|e| e.to_json().into_bytes())
            .unwrap_or_default(),
        digest: policy.digest(),
    }
}
