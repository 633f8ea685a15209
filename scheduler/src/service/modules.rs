//! `vauban.v1.Modules`: uploading signed modules and looking them up.

use tonic::{Request, Response, Status, Streaming};
use vauban_core::{ModuleDigest, ModuleKind};
use vauban_proto::convert::InvalidField;
use vauban_proto::v1;

use super::jobs::namespace_from_proto;
use crate::audit::ModuleAudit;
use crate::identity::{Need, require};
use crate::job::DEFAULT_NAMESPACE;
use crate::module::{ModuleRecord, ModuleRegistry};

/// Serves the module registry.
#[derive(Clone, Debug)]
pub(crate) struct ModulesService {
    registry: ModuleRegistry,
    /// Where upload decisions are recorded (the audit log, if one is kept).
    audit: ModuleAudit,
}

impl ModulesService {
    pub(crate) fn new(registry: ModuleRegistry) -> Self {
        Self {
            registry,
            audit: ModuleAudit::off(),
        }
    }

    /// Records every upload's admission, and the publisher keys of accepted modules.
    pub(crate) fn with_audit(mut self, audit: ModuleAudit) -> Self {
        self.audit = audit;
        self
    }
}

#[tonic::async_trait]
impl v1::modules_server::Modules for ModulesService {
    async fn upload_module(
        &self,
        request: Request<Streaming<v1::UploadModuleRequest>>,
    ) -> Result<Response<v1::ModuleInfo>, Status> {
        require(&request, Need::Submit("uploading a module"))?;
        let mut chunks = request.into_inner();
        let mut upload = self.registry.upload();
        let mut first = None;
        let mut received = 0_u64;
        while let Some(v1::UploadModuleRequest {
            chunk,
            name,
            namespace,
        }) = chunks.message().await?
        {
            // Only the first message names the module and its namespace.
            if first.is_none() {
                first = Some((name, namespace_from_proto("namespace", namespace)?));
            }
            received = received.saturating_add(chunk.len() as u64);
            if let Err(refused) = upload.push(&chunk) {
                let (name, namespace) = first.unwrap_or_default();
                self.audit
                    .refused(&namespace, &name, None, received, &refused)
                    .await;
                return Err(refused.into());
            }
        }
        let (name, namespace) =
            first.unwrap_or_else(|| (String::new(), DEFAULT_NAMESPACE.to_owned()));
        let (bytes, digest) = self.audit.digest(upload.into_bytes()).await;
        let record = match self
            .registry
            .admit(namespace.clone(), name.clone(), bytes)
            .await
        {
            Ok(record) => record,
            Err(refused) => {
                self.audit
                    .refused(&namespace, &name, digest, received, &refused)
                    .await;
                return Err(refused.into());
            }
        };
        // Acknowledged only once its admission is durably recorded.
        self.audit.accepted(&namespace, &record).await?;
        Ok(Response::new(module_to_proto(record)))
    }

    async fn get_module(
        &self,
        request: Request<v1::GetModuleRequest>,
    ) -> Result<Response<v1::ModuleInfo>, Status> {
        require(&request, Need::Read("reading a module"))?;
        let v1::GetModuleRequest { digest } = request.into_inner();
        let digest = parse_digest("digest", &digest)?;
        match self.registry.get(digest).await? {
            Some(record) => Ok(Response::new(module_to_proto(record))),
            None => Err(Status::not_found(format!(
                "module {digest} is not uploaded"
            ))),
        }
    }

    async fn list_modules(
        &self,
        request: Request<v1::ListModulesRequest>,
    ) -> Result<Response<v1::ListModulesResponse>, Status> {
        require(&request, Need::Read("listing modules"))?;
        let v1::ListModulesRequest { namespace } = request.into_inner();
        let namespace = if namespace.is_empty() {
            None
        } else {
            Some(namespace_from_proto("namespace", namespace)?)
        };
        let modules = self.registry.list().await?;
        Ok(Response::new(v1::ListModulesResponse {
            modules: modules
                .into_iter()
                .filter(|m| namespace.as_ref().is_none_or(|n| in_namespace(m, n)))
                .map(module_to_proto)
                .collect(),
        }))
    }
}

/// A `sha256:<hex>` field.
pub(super) fn parse_digest(field: &str, text: &str) -> Result<ModuleDigest, InvalidField> {
    text.parse().map_err(|_| {
        InvalidField::new(field, format!("{text:?} is not sha256:<64 hex characters>"))
    })
}

/// Records from before namespaces belong to the default one.
fn in_namespace(record: &ModuleRecord, namespace: &str) -> bool {
    record.namespaces.contains(namespace)
        || (record.namespaces.is_empty() && namespace == DEFAULT_NAMESPACE)
}

fn module_to_proto(record: ModuleRecord) -> v1::ModuleInfo {
    let ModuleRecord {
        digest,
        name,
        kind,
        size_bytes,
        signers,
        uploaded_at_ms,
        namespaces,
    } = record;
    v1::ModuleInfo {
        digest: digest.to_string(),
        name,
        kind: match kind {
            ModuleKind::CoreModule => "core_module",
            ModuleKind::Component => "component",
        }
        .to_owned(),
        size_bytes,
        signers: signers.iter().map(ToString::to_string).collect(),
        uploaded_at_ms,
        namespaces: namespaces.into_iter().collect(),
    }
}
