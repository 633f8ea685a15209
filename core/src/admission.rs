//! Admission under a trust policy, as pure functions that the scheduler and every host run each
//! on their own copy of the policy:
//!
//! - [`verify_module`]: a module counts as published when at least `thresholds.publisher`
//!   distinct, unrevoked keys holding the `publisher` role signed it, and its digest is not
//!   revoked.
//! - [`admit`]: **effective capabilities = request ∩ grant ∩ node-class allowance**, deny by
//!   default. A job may ask only for what its grant allows *and* what the node class allows; the
//!   effective set is then the request itself, and anything beyond is a [`Refusal`] naming the
//!   capability and the side that refused it. [`classes_allowing`] is the scheduler's question
//!   (which of the grant's node classes may take the job at all), [`admit_on_node`] a host's
//!   (may this node, with its own labels, run it).
//! - [`ModuleImports`] and [`check_imports`]: what a module imports, checked against a run's
//!   effective capabilities before it is instantiated.

use std::collections::BTreeMap;
use std::fmt;

use crate::capability::Capabilities;
use crate::grant::{Grant, GrantError, VerifiedGrant};
use crate::module::{ModuleDigest, ModuleKind};
use crate::policy::{NodeClass, TrustPolicy, dir_beyond, ignored_suffix};
use crate::role::Role;
use crate::signature::{KeyId, SignatureError, TrustStore, Verified};

/// Why a module is not accepted under a trust policy.
#[derive(Debug, thiserror::Error)]
pub enum ModuleRefusal {
    /// Not WebAssembly, malformed, unsigned, or changed after signing.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// The policy revokes the module's digest.
    #[error("module {digest} is revoked by trust policy version {version}")]
    RevokedDigest {
        /// The module.
        digest: ModuleDigest,
        /// The version of the policy that revokes it.
        version: u64,
    },
    /// Fewer distinct, unrevoked publisher keys signed it than the policy needs.
    #[error("too few publisher signatures: {valid} of {need} needed{}", ignored_suffix(.ignored))]
    TooFewPublishers {
        /// Publisher signatures that counted.
        valid: usize,
        /// `thresholds.publisher`.
        need: u32,
        /// Why other signers did not count (`key …: revoked signer`, `key …: not in the
        /// policy`, `key …: does not hold the publisher role`).
        ignored: Vec<String>,
    },
}

/// Verifies a module's publisher signatures under `policy`: its digest must not be revoked, and
/// at least `thresholds.publisher` distinct keys that the policy lists with the `publisher` role
/// and does not revoke must have signed it. The [`Verified::signers`] are the keys that counted.
///
/// # Errors
/// A [`ModuleRefusal`] naming the reason: a signature problem (not WebAssembly, unsigned,
/// altered), a revoked digest, or too few publisher signatures with why each other signer did
/// not count (a revoked signer among them).
pub fn verify_module(policy: &TrustPolicy, module: &[u8]) -> Result<Verified, ModuleRefusal> {
    ModuleKind::detect(module).map_err(SignatureError::from)?;
    let digest = ModuleDigest::of(module);
    if policy.is_module_revoked(&digest) {
        return Err(ModuleRefusal::RevokedDigest {
            digest,
            version: policy.version(),
        });
    }
    let need = policy.thresholds().publisher;
    // Every key listed as a publisher, revoked or not: a revoked signer is then named as such,
    // not as a stranger.
    let publishers = policy
        .document()
        .keys
        .iter()
        .filter(|k| k.roles.contains(&Role::Publisher))
        .filter_map(|k| policy.key(&k.id).cloned());
    let verified = match TrustStore::new(publishers).verify(module) {
        Ok(verified) => verified,
        Err(SignatureError::UntrustedSigner { signers }) => {
            let mut ignored: Vec<String> =
                signers.iter().map(|id| not_counted(policy, id)).collect();
            if ignored.is_empty() {
                ignored.push("the signers recorded no key id".into());
            }
            return Err(ModuleRefusal::TooFewPublishers {
                valid: 0,
                need,
                ignored,
            });
        }
        Err(e) => return Err(e.into()),
    };
    let (counted, revoked): (Vec<KeyId>, Vec<KeyId>) = verified
        .signers
        .iter()
        .cloned()
        .partition(|id| !policy.is_key_revoked(id));
    if counted.len() < need as usize {
        return Err(ModuleRefusal::TooFewPublishers {
            valid: counted.len(),
            need,
            ignored: revoked
                .iter()
                .map(|id| format!("key {id}: revoked signer"))
                .collect(),
        });
    }
    Ok(Verified {
        signers: counted,
        ..verified
    })
}

/// Why a key that signed a module did not count as a publisher.
fn not_counted(policy: &TrustPolicy, id: &KeyId) -> String {
    if policy.key(id).is_none() {
        format!("key {id}: not in the policy")
    } else if policy.is_key_revoked(id) {
        format!("key {id}: revoked signer")
    } else {
        format!("key {id}: does not hold the publisher role")
    }
}

/// Checks that a grant is for the module with this digest and kind (what [`Grant::covers`]
/// checks from the bytes, for a caller that already knows both).
///
/// # Errors
/// [`GrantError::OtherModule`].
pub fn check_grant_module(
    grant: &Grant,
    digest: &ModuleDigest,
    kind: ModuleKind,
) -> Result<(), GrantError> {
    if grant.module.digest == *digest && grant.module.kind == kind {
        return Ok(());
    }
    Err(GrantError::OtherModule {
        id: grant.id.clone(),
        granted: format!("{} ({})", grant.module.digest, grant.module.kind),
        found: format!("{digest}, {kind}"),
    })
}

/// Which side of an admission refused a capability.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Side {
    /// The grant, by id.
    Grant(String),
    /// A node class of the policy, by name.
    NodeClass(String),
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Grant(id) => write!(f, "grant {id}"),
            Self::NodeClass(name) => write!(f, "node class {name}"),
        }
    }
}

/// A capability a job asks for that its grant or a node class does not allow.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{capability}: not allowed by {side}, which allows {allowed}")]
pub struct Refusal {
    /// The capability asked for, e.g. `network destination 10.0.0.9:443`.
    pub capability: String,
    /// Who refused it.
    pub side: Side,
    /// What that side allows instead, e.g. `only 10.0.0.5:443`.
    pub allowed: String,
}

/// Why a job may not run where it was asked to, beyond one capability.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Inadmissible {
    /// The grant refuses a capability.
    #[error(transparent)]
    Refused(Refusal),
    /// The grant names no node class, so it allows no node.
    #[error("grant {grant} names no node class: it allows no node")]
    NoClasses {
        /// The grant.
        grant: String,
    },
    /// Each of the grant's node classes refuses something.
    #[error("no node class of grant {grant} allows the request: {}", join(.refusals))]
    NoClassAllows {
        /// The grant.
        grant: String,
        /// What each class refused.
        refusals: Vec<Refusal>,
    },
    /// The node running the check belongs to none of the grant's node classes.
    #[error("this node ({labels}) belongs to none of grant {grant}'s node classes ({classes})")]
    NotInClass {
        /// The grant.
        grant: String,
        /// The node's labels, `k=v, …`.
        labels: String,
        /// The grant's classes.
        classes: String,
    },
}

fn join(refusals: &[Refusal]) -> String {
    let all: Vec<String> = refusals.iter().map(ToString::to_string).collect();
    all.join("; ")
}

/// The effective capabilities of a job: its request, if the grant and the node class both allow
/// every capability in it. Deny by default: a directory must lie under one the grant lists and
/// one the class allows (read-write only where both say `rw`), a network destination and a host
/// interface must be listed by both, environment variables and configuration keys by the grant,
/// memory, wall time and fuel within the grant's ceilings and memory within the class's.
///
/// # Errors
/// A [`Refusal`] naming the first capability beyond either, and which one refused it.
pub fn admit(
    request: &Capabilities,
    grant: &VerifiedGrant,
    class: &NodeClass,
) -> Result<Capabilities, Refusal> {
    within_grant(request, &grant.grant)?;
    within_class(request, class)?;
    Ok(request.clone())
}

/// The grant's node classes whose allowance covers `request`, after checking the grant's own
/// ceilings. The scheduler places the job only on nodes of these classes.
///
/// # Errors
/// [`Inadmissible::Refused`] when the grant refuses a capability, [`Inadmissible::NoClasses`] or
/// [`Inadmissible::NoClassAllows`] when no class of the grant allows the request.
pub fn classes_allowing<'p>(
    request: &Capabilities,
    grant: &VerifiedGrant,
    policy: &'p TrustPolicy,
) -> Result<Vec<&'p NodeClass>, Inadmissible> {
    within_grant(request, &grant.grant).map_err(Inadmissible::Refused)?;
    let classes = grant_classes(&grant.grant, policy);
    if classes.is_empty() {
        return Err(Inadmissible::NoClasses {
            grant: grant.grant.id.clone(),
        });
    }
    let mut refusals = Vec::new();
    let mut allowing = Vec::new();
    for class in classes {
        match within_class(request, class) {
            Ok(()) => allowing.push(class),
            Err(refusal) => refusals.push(refusal),
        }
    }
    if allowing.is_empty() {
        return Err(Inadmissible::NoClassAllows {
            grant: grant.grant.id.clone(),
            refusals,
        });
    }
    Ok(allowing)
}

/// The grant's node classes that a node with `labels` belongs to.
pub fn classes_for_node<'p>(
    grant: &Grant,
    policy: &'p TrustPolicy,
    labels: &BTreeMap<String, String>,
) -> Vec<&'p NodeClass> {
    grant_classes(grant, policy)
        .into_iter()
        .filter(|c| c.matches(labels))
        .collect()
}

/// A host's decision: the effective capabilities of `request` on the node with `labels`, under
/// its own copy of the policy: allowed by the grant and by at least one of the grant's node
/// classes that this node belongs to.
///
/// # Errors
/// [`Inadmissible`] naming what refused: the grant, the node's classes, or that the node
/// belongs to none of the grant's classes.
pub fn admit_on_node(
    request: &Capabilities,
    grant: &VerifiedGrant,
    policy: &TrustPolicy,
    labels: &BTreeMap<String, String>,
) -> Result<Capabilities, Inadmissible> {
    within_grant(request, &grant.grant).map_err(Inadmissible::Refused)?;
    let classes = classes_for_node(&grant.grant, policy, labels);
    if classes.is_empty() {
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        return Err(Inadmissible::NotInClass {
            grant: grant.grant.id.clone(),
            labels: labels.join(", "),
            classes: grant.grant.node_classes.join(", "),
        });
    }
    let mut refusals = Vec::new();
    for class in classes {
        match admit(request, grant, class) {
            Ok(effective) => return Ok(effective),
            Err(refusal) => refusals.push(refusal),
        }
    }
    Err(Inadmissible::NoClassAllows {
        grant: grant.grant.id.clone(),
        refusals,
    })
}

/// The grant's node classes as the policy defines them (a verified grant names only defined
/// ones).
fn grant_classes<'p>(grant: &Grant, policy: &'p TrustPolicy) -> Vec<&'p NodeClass> {
    grant
        .node_classes
        .iter()
        .filter_map(|name| policy.node_class(name))
        .collect()
}

fn within_grant(request: &Capabilities, grant: &Grant) -> Result<(), Refusal> {
    let side = || Side::Grant(grant.id.clone());
    grant.ceiling_allows(request).map_err(|b| Refusal {
        capability: b.capability,
        side: side(),
        allowed: b.allowed,
    })?;
    let listed = &grant.capabilities.interfaces;
    if let Some(i) = request
        .interfaces
        .iter()
        .find(|i| !listed.iter().any(|l| interface_covers(l, i)))
    {
        return Err(Refusal {
            capability: format!("interface {i}"),
            side: side(),
            allowed: list("interfaces", listed),
        });
    }
    Ok(())
}

fn within_class(request: &Capabilities, class: &NodeClass) -> Result<(), Refusal> {
    let refuse = |capability: String, allowed: String| Refusal {
        capability,
        side: Side::NodeClass(class.name.clone()),
        allowed,
    };
    let dirs: Vec<_> = class
        .dirs
        .iter()
        .map(|a| (a.path.as_path(), a.access))
        .collect();
    if let Some((capability, allowed)) = dir_beyond(&request.dirs, &dirs) {
        return Err(refuse(capability, allowed));
    }
    if let Some(addr) = request.network.iter().find(|a| !class.network.contains(a)) {
        return Err(refuse(
            format!("network destination {addr}"),
            list("network destinations", &class.network),
        ));
    }
    if let Some(i) = request
        .interfaces
        .iter()
        .find(|i| !class.interfaces.iter().any(|l| interface_covers(l, i)))
    {
        return Err(refuse(
            format!("interface {i}"),
            list("interfaces", &class.interfaces),
        ));
    }
    if let Some(max) = class.max_memory_bytes
        && request.limits.memory_bytes > max
    {
        return Err(refuse(
            format!("memory {}", bytes(request.limits.memory_bytes)),
            format!("at most {}", bytes(max)),
        ));
    }
    Ok(())
}

fn list<T: fmt::Display>(what: &str, allowed: &[T]) -> String {
    if allowed.is_empty() {
        format!("no {what}")
    } else {
        let all: Vec<String> = allowed.iter().map(ToString::to_string).collect();
        format!("only {}", all.join(", "))
    }
}

fn bytes(n: u64) -> String {
    const MIB: u64 = 1 << 20;
    if n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else {
        format!("{n} bytes")
    }
}

/// Whether an interface listed in a grant, a node class or a request (`listed`) covers the
/// interface `name`: the same, or `listed` names no version (`wasi:http/outgoing-handler`) and
/// `name` is a version of it (`wasi:http/outgoing-handler@0.2.0`).
pub fn interface_covers(listed: &str, name: &str) -> bool {
    listed == name || (!listed.contains('@') && without_version(name) == listed)
}

fn without_version(name: &str) -> &str {
    name.split_once('@').map_or(name, |(n, _)| n)
}

/// Packages every component may import whatever its capabilities, at any version: what a
/// command needs to run (`wasi:cli`, `wasi:io`, `wasi:clocks`, `wasi:random`, `wasi:filesystem`,
/// which holds only the directories preopened for it) and the `vauban:job` world.
pub const BASELINE_PACKAGES: [&str; 6] = [
    "wasi:cli",
    "wasi:io",
    "wasi:clocks",
    "wasi:random",
    "wasi:filesystem",
    "vauban:job",
];

/// The package whose imports need a network destination.
const SOCKETS_PACKAGE: &str = "wasi:sockets";

/// The preview-1 module every WASI import of a core module comes from.
const PREVIEW1: &str = "wasi_snapshot_preview1";

/// What a module imports, as recorded when it is loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModuleImports {
    /// A core module's imports, as `(module, name)` pairs.
    Core(Vec<(String, String)>),
    /// A component's top-level imports by name, e.g. `wasi:sockets/tcp@0.2.3` (the imports of
    /// the modules and components nested inside are satisfied by these).
    Component(Vec<String>),
}

/// A module's imports could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read the module's imports: {0}")]
pub struct ImportsError(String);

impl ModuleImports {
    /// Reads the imports of a core module or component.
    ///
    /// # Errors
    /// [`ImportsError`] when the bytes are not a module or component that parses.
    pub fn of(bytes: &[u8]) -> Result<Self, ImportsError> {
        let kind = ModuleKind::detect(bytes).map_err(|e| ImportsError(e.to_string()))?;
        let bad = |e: wasmparser::BinaryReaderError| ImportsError(e.to_string());
        let mut core = Vec::new();
        let mut component = Vec::new();
        // Payloads of nested modules and components come inline; only depth 0 is ours.
        let mut depth = 0usize;
        for payload in wasmparser::Parser::new(0).parse_all(bytes) {
            match payload.map_err(bad)? {
                wasmparser::Payload::ModuleSection { .. }
                | wasmparser::Payload::ComponentSection { .. } => depth += 1,
                wasmparser::Payload::End(_) => depth = depth.saturating_sub(1),
                wasmparser::Payload::ImportSection(reader) if depth == 0 => {
                    for import in reader.into_imports() {
                        let import = import.map_err(bad)?;
                        core.push((import.module.to_owned(), import.name.to_owned()));
                    }
                }
                wasmparser::Payload::ComponentImportSection(reader) if depth == 0 => {
                    for import in reader {
                        let import = import.map_err(bad)?;
                        // A type import (a world's own record, say) grants nothing.
                        if !matches!(import.ty, wasmparser::ComponentTypeRef::Type(_)) {
                            component.push(import.name.name.to_owned());
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(match kind {
            ModuleKind::CoreModule => Self::Core(core),
            ModuleKind::Component => Self::Component(component),
        })
    }
}

/// An import a run's capabilities do not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("import {import}: {reason}")]
pub struct ImportDenied {
    /// The import: `wasi_snapshot_preview1::sock_accept`, `wasi:sockets/tcp@0.2.3`.
    pub import: String,
    /// Why.
    pub reason: String,
}

/// Checks a module's imports against a run's effective capabilities, before it is
/// instantiated. Deny by default: a preview-1 module importing any `sock_*` function, or a
/// component importing any `wasi:sockets` interface, needs a network destination; a component
/// importing an interface outside [`BASELINE_PACKAGES`] needs it in
/// [`Capabilities::interfaces`].
///
/// # Errors
/// [`ImportDenied`] naming the first import refused.
pub fn check_imports(imports: &ModuleImports, caps: &Capabilities) -> Result<(), ImportDenied> {
    let no_network = caps.network.is_empty();
    match imports {
        ModuleImports::Core(pairs) => {
            if no_network
                && let Some((module, name)) = pairs
                    .iter()
                    .find(|(m, n)| m == PREVIEW1 && n.starts_with("sock_"))
            {
                return Err(ImportDenied {
                    import: format!("{module}::{name}"),
                    reason: "socket functions need a network destination, and the run has none"
                        .into(),
                });
            }
        }
        ModuleImports::Component(names) => {
            for name in names {
                let package = name.split_once('/').map_or(name.as_str(), |(p, _)| p);
                let package = without_version(package);
                if BASELINE_PACKAGES.contains(&package) {
                    continue;
                }
                if package == SOCKETS_PACKAGE {
                    if no_network {
                        return Err(ImportDenied {
                            import: name.clone(),
                            reason: "wasi:sockets needs a network destination, and the run has \
                                     none"
                                .into(),
                        });
                    }
                    continue;
                }
                if !caps.interfaces.iter().any(|l| interface_covers(l, name)) {
                    return Err(ImportDenied {
                        import: name.clone(),
                        reason: format!(
                            "outside the baseline ({}) and not among the run's interfaces ({})",
                            BASELINE_PACKAGES.join(", "),
                            if caps.interfaces.is_empty() {
                                "none".to_owned()
                            } else {
                                caps.interfaces.join(", ")
                            }
                        ),
                    });
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use super::*;
    use crate::capability::{DirGrant, Limits};
    use crate::grant::{CapabilityCeiling, GrantedDir, GrantedModule, ResourceCeiling, Timestamp};
    use crate::policy::Mode;
    use crate::policy::tests::Keys;
    use crate::signature::SecretKey;

    /// The smallest valid core module: header, then a type section with no types.
    const TINY_MODULE: &[u8] = b"\0asm\x01\0\0\0\x01\x01\x00";

    const CLASSES: &str = r#"
[[node_classes]]
name = "eu"
match = { jurisdiction = "eu" }
dirs = [{ path = "/srv", access = "rw" }]
network = ["10.0.0.1:443"]
interfaces = ["wasi:http/outgoing-handler"]
max_memory_bytes = 33554432

[[node_classes]]
name = "eu-restricted"
match = { jurisdiction = "eu", classification = "restricted" }
dirs = [{ path = "/srv/in", access = "ro" }]
"#;

    /// A policy where `publishers` hold the publisher role (`need` of them needed), the test
    /// keys' authorizers the authorizer role, with `extra` at top level.
    fn policy(keys: &Keys, publishers: &[&SecretKey], need: u32, extra: &str) -> TrustPolicy {
        let entry = |k: &SecretKey, role: &str| {
            format!(
                "[[keys]]\nid = \"{}\"\nalg = \"ed25519\"\npublic_key = \"\"\"\n{}\"\"\"\nroles = [\"{role}\"]\n",
                k.public_key().id(),
                k.public_key().to_pem()
            )
        };
        let mut toml = format!("version = 1\n{extra}\n");
        for k in &keys.roots {
            toml += &entry(k, "root");
        }
        for k in publishers {
            toml += &entry(k, "publisher");
        }
        for k in &keys.authorizers {
            toml += &entry(k, "authorizer");
        }
        toml += &format!("[thresholds]\nroot = 2\npublisher = {need}\nauthorizer = 1\n{CLASSES}");
        TrustPolicy::parse_unverified(toml.as_bytes()).expect("policy")
    }

    fn verify(policy: &TrustPolicy, module: &[u8]) -> String {
        match verify_module(policy, module) {
            Ok(v) => format!("ok {}", v.signers.len()),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn modules_need_the_publisher_threshold_of_unrevoked_publishers() {
        let keys = Keys::new();
        let second = SecretKey::generate();
        let one = policy(&keys, &[&keys.publisher], 1, "");
        let two = policy(&keys, &[&keys.publisher, &second], 2, "");
        let by_publisher = keys.publisher.sign_module(TINY_MODULE).expect("sign");
        let by_both = second.sign_module(&by_publisher).expect("sign");
        let by_authorizer = keys.authorizers[0].sign_module(TINY_MODULE).expect("sign");
        let by_stranger = SecretKey::generate()
            .sign_module(TINY_MODULE)
            .expect("sign");
        let publisher_id = keys.publisher.public_key().id().to_string();
        let revoking_key = policy(
            &keys,
            &[&keys.publisher, &second],
            1,
            &format!("revoked_keys = [\"{publisher_id}\"]"),
        );
        let revoking_module = policy(
            &keys,
            &[&keys.publisher],
            1,
            &format!(
                "revoked_modules = [\"{}\"]",
                ModuleDigest::of(&by_publisher)
            ),
        );
        let cases: Vec<(&TrustPolicy, &[u8], String)> = vec![
            (&one, &by_publisher, "ok 1".into()),
            (&two, &by_both, "ok 2".into()),
            (&one, &by_both, "ok 1".into()),
            (
                &two,
                &by_publisher,
                "too few publisher signatures: 1 of 2 needed".into(),
            ),
            (
                &one,
                &by_authorizer,
                format!(
                    "too few publisher signatures: 0 of 1 needed (not counted: key {}: does not \
                     hold the publisher role)",
                    keys.authorizers[0].public_key().id()
                ),
            ),
            (&one, &by_stranger, "not in the policy".into()),
            (
                &revoking_key,
                &by_publisher,
                format!(
                    "too few publisher signatures: 0 of 1 needed (not counted: key \
                     {publisher_id}: revoked signer)"
                ),
            ),
            (&revoking_key, &by_both, "ok 1".into()),
            (
                &revoking_module,
                &by_publisher,
                format!(
                    "module {} is revoked by trust policy version 1",
                    ModuleDigest::of(&by_publisher)
                ),
            ),
            (&one, TINY_MODULE, "module is not signed".into()),
            (
                &one,
                b"\x7fELF\x02\x01\x01\0",
                "not a WebAssembly module".into(),
            ),
        ];
        for (policy, module, expected) in cases {
            let got = verify(policy, module);
            assert!(
                got.contains(&expected),
                "expected {expected:?}, got {got:?}"
            );
        }
        let counted = verify_module(&revoking_key, &by_both).expect("verified");
        assert_eq!(counted.signers, vec![second.public_key().id().clone()]);
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    fn grant() -> VerifiedGrant {
        let dir = |host: &str, access| GrantedDir {
            host: host.into(),
            guest: "/x".into(),
            access,
        };
        let at = |s| Timestamp::new(humantime::parse_rfc3339(s).expect("time"));
        VerifiedGrant {
            grant: Grant {
                id: "g-1".into(),
                module: GrantedModule {
                    digest: ModuleDigest::of(TINY_MODULE),
                    kind: ModuleKind::CoreModule,
                },
                capabilities: CapabilityCeiling {
                    dirs: vec![dir("/srv/in", Mode::Ro), dir("/srv/out", Mode::Rw)],
                    env: vec!["LANG".into()],
                    network: vec![addr("10.0.0.1:443"), addr("10.0.0.2:443")],
                    interfaces: vec!["wasi:http/outgoing-handler".into()],
                    config: Vec::new(),
                },
                resources: ResourceCeiling {
                    memory_bytes: 64 << 20,
                    timeout_ms: 30_000,
                    fuel: None,
                },
                node_classes: vec!["eu".into(), "eu-restricted".into()],
                not_before: at("2026-01-01T00:00:00Z"),
                not_after: at("2026-01-31T00:00:00Z"),
            },
            signers: Vec::new(),
        }
    }

    fn request(f: impl FnOnce(&mut Capabilities)) -> Capabilities {
        let mut caps = Capabilities {
            limits: Limits {
                memory_bytes: 16 << 20,
                timeout: Duration::from_secs(10),
                ..Limits::DEFAULT
            },
            ..Capabilities::default()
        };
        f(&mut caps);
        caps
    }

    fn dir(spec: &str) -> DirGrant {
        spec.parse().expect("dir")
    }

    #[test]
    fn effective_capabilities_are_the_request_within_grant_and_node_class() {
        let keys = Keys::new();
        let policy = policy(&keys, &[&keys.publisher], 1, "");
        let g = grant();
        let eu = policy.node_class("eu").expect("eu");
        let restricted = policy.node_class("eu-restricted").expect("restricted");
        let cases: Vec<(Capabilities, &NodeClass, &str)> = vec![
            (request(|_| {}), eu, "ok"),
            (request(|_| {}), restricted, "ok"),
            (
                request(|c| c.dirs = vec![dir("/srv/out/x:/out:rw")]),
                eu,
                "ok",
            ),
            (
                request(|c| c.dirs = vec![dir("/srv/out:/out:rw")]),
                restricted,
                "directory /srv/out read-write: not allowed by node class eu-restricted, which \
                 allows /srv/in read-only",
            ),
            (
                request(|c| c.dirs = vec![dir("/srv/in:/in:rw")]),
                eu,
                "directory /srv/in read-write: not allowed by grant g-1, which allows /srv/in \
                 read-only",
            ),
            (
                request(|c| c.dirs = vec![dir("/etc:/etc")]),
                eu,
                "directory /etc read-only: not allowed by grant g-1",
            ),
            (
                request(|c| c.network = vec![addr("10.0.0.1:443")]),
                eu,
                "ok",
            ),
            (
                request(|c| c.network = vec![addr("10.0.0.2:443")]),
                eu,
                "network destination 10.0.0.2:443: not allowed by node class eu, which allows \
                 only 10.0.0.1:443",
            ),
            (
                request(|c| c.network = vec![addr("10.0.0.1:443")]),
                restricted,
                "network destination 10.0.0.1:443: not allowed by node class eu-restricted, \
                 which allows no network destinations",
            ),
            (
                request(|c| c.network = vec![addr("10.0.0.9:443")]),
                eu,
                "network destination 10.0.0.9:443: not allowed by grant g-1, which allows only \
                 10.0.0.1:443, 10.0.0.2:443",
            ),
            (
                request(|c| c.limits.memory_bytes = 48 << 20),
                eu,
                "memory 48 MiB: not allowed by node class eu, which allows at most 32 MiB",
            ),
            (
                request(|c| c.limits.memory_bytes = 48 << 20),
                restricted,
                "ok",
            ),
            (
                request(|c| c.limits.memory_bytes = 96 << 20),
                restricted,
                "memory 96 MiB: not allowed by grant g-1, which allows at most 64 MiB",
            ),
            (
                request(|c| c.interfaces = vec!["wasi:http/outgoing-handler@0.2.0".into()]),
                eu,
                "ok",
            ),
            (
                request(|c| c.interfaces = vec!["wasi:http/outgoing-handler".into()]),
                restricted,
                "interface wasi:http/outgoing-handler: not allowed by node class eu-restricted, \
                 which allows no interfaces",
            ),
            (
                request(|c| c.interfaces = vec!["wasi:keyvalue/store".into()]),
                eu,
                "interface wasi:keyvalue/store: not allowed by grant g-1, which allows only \
                 wasi:http/outgoing-handler",
            ),
            (
                request(|c| c.env = vec![("HOME".into(), "/".into())]),
                eu,
                "environment variable HOME: not allowed by grant g-1",
            ),
        ];
        for (caps, class, expected) in cases {
            let got = match admit(&caps, &g, class) {
                Ok(effective) => {
                    assert_eq!(effective, caps);
                    "ok".to_owned()
                }
                Err(e) => e.to_string(),
            };
            assert!(
                got.starts_with(expected),
                "{caps:?} on {}: expected {expected:?}, got {got:?}",
                class.name
            );
        }
    }

    #[test]
    fn the_scheduler_keeps_the_classes_allowing_a_request_and_a_host_checks_its_own() {
        let keys = Keys::new();
        let policy = policy(&keys, &[&keys.publisher], 1, "");
        let g = grant();
        let names = |r: Result<Vec<&NodeClass>, Inadmissible>| match r {
            Ok(classes) => classes
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(","),
            Err(e) => e.to_string(),
        };
        assert_eq!(
            names(classes_allowing(&request(|_| {}), &g, &policy)),
            "eu,eu-restricted"
        );
        assert_eq!(
            names(classes_allowing(
                &request(|c| c.dirs = vec![dir("/srv/out:/out:rw")]),
                &g,
                &policy
            )),
            "eu"
        );
        assert_eq!(
            names(classes_allowing(
                &request(|c| c.network = vec![addr("10.0.0.2:443")]),
                &g,
                &policy
            )),
            "no node class of grant g-1 allows the request: network destination 10.0.0.2:443: \
             not allowed by node class eu, which allows only 10.0.0.1:443; network destination \
             10.0.0.2:443: not allowed by node class eu-restricted, which allows no network \
             destinations"
        );
        assert!(
            names(classes_allowing(
                &request(|c| c.dirs = vec![dir("/etc:/etc")]),
                &g,
                &policy
            ))
            .starts_with("directory /etc read-only: not allowed by grant g-1")
        );
        let mut nowhere = grant();
        nowhere.grant.node_classes.clear();
        assert_eq!(
            names(classes_allowing(&request(|_| {}), &nowhere, &policy)),
            "grant g-1 names no node class: it allows no node"
        );

        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let on = |caps: &Capabilities, node: &[(&str, &str)]| match admit_on_node(
            caps,
            &g,
            &policy,
            &labels(node),
        ) {
            Ok(_) => "ok".to_owned(),
            Err(e) => e.to_string(),
        };
        let eu = [("jurisdiction", "eu")];
        let restricted = [("jurisdiction", "eu"), ("classification", "restricted")];
        let us = [("jurisdiction", "us")];
        let net = request(|c| c.network = vec![addr("10.0.0.1:443")]);
        assert_eq!(on(&net, &eu), "ok");
        // A restricted node is in both classes: `eu` allows it.
        assert_eq!(on(&net, &restricted), "ok");
        assert_eq!(
            on(&net, &us),
            "this node (jurisdiction=us) belongs to none of grant g-1's node classes (eu, \
             eu-restricted)"
        );
        assert!(
            on(&request(|c| c.limits.memory_bytes = 48 << 20), &eu)
                .contains("memory 48 MiB: not allowed by node class eu")
        );
        assert_eq!(
            on(&request(|c| c.limits.memory_bytes = 48 << 20), &restricted),
            "ok"
        );
    }

    #[test]
    fn a_grant_is_checked_against_the_module_digest_and_kind() {
        let g = grant();
        let digest = ModuleDigest::of(TINY_MODULE);
        assert!(check_grant_module(&g.grant, &digest, ModuleKind::CoreModule).is_ok());
        let other = check_grant_module(&g.grant, &digest, ModuleKind::Component)
            .expect_err("kind")
            .to_string();
        assert!(other.contains("not for this module"), "{other}");
        assert!(
            check_grant_module(&g.grant, &ModuleDigest::of(b"x"), ModuleKind::CoreModule).is_err()
        );
    }

    /// A core module importing `wasi_snapshot_preview1::<name>`, a function of type `() -> ()`.
    fn importing(name: &str) -> Vec<u8> {
        let mut module = b"\0asm\x01\0\0\0".to_vec();
        module.extend_from_slice(&[0x01, 0x04, 0x01, 0x60, 0x00, 0x00]);
        let mut section = vec![0x01];
        for s in [PREVIEW1, name] {
            section.push(u8::try_from(s.len()).expect("short"));
            section.extend_from_slice(s.as_bytes());
        }
        section.extend_from_slice(&[0x00, 0x00]);
        module.push(0x02);
        module.push(u8::try_from(section.len()).expect("short"));
        module.extend(section);
        module
    }

    #[test]
    fn imports_are_read_and_checked_against_the_run() {
        assert_eq!(
            ModuleImports::of(TINY_MODULE).expect("imports"),
            ModuleImports::Core(Vec::new())
        );
        assert_eq!(
            ModuleImports::of(&importing("sock_accept")).expect("imports"),
            ModuleImports::Core(vec![(PREVIEW1.into(), "sock_accept".into())])
        );
        assert!(ModuleImports::of(b"\0asm\x01\0\0\0\x02\x05").is_err());

        let none = request(|_| {});
        let net = request(|c| c.network = vec![addr("10.0.0.1:443")]);
        let http = request(|c| c.interfaces = vec!["wasi:http/outgoing-handler".into()]);
        let http_020 = request(|c| c.interfaces = vec!["wasi:http/outgoing-handler@0.2.0".into()]);
        let core = |names: &[&str]| {
            ModuleImports::Core(
                names
                    .iter()
                    .map(|n| (PREVIEW1.to_owned(), (*n).to_owned()))
                    .collect(),
            )
        };
        let component =
            |names: &[&str]| ModuleImports::Component(names.iter().map(|n| (*n).into()).collect());
        let cases: Vec<(ModuleImports, &Capabilities, &str)> = vec![
            (core(&["fd_write", "proc_exit"]), &none, "ok"),
            (
                core(&["fd_write", "sock_accept"]),
                &none,
                "import wasi_snapshot_preview1::sock_accept: socket functions need a network \
                 destination",
            ),
            (core(&["sock_send"]), &net, "ok"),
            (
                ModuleImports::Core(vec![("env".into(), "sock_send".into())]),
                &none,
                "ok",
            ),
            (
                component(&[
                    "wasi:cli/environment@0.2.3",
                    "wasi:io/streams@0.2.3",
                    "wasi:clocks/monotonic-clock@0.2.0",
                    "wasi:random/random@0.2.3",
                    "wasi:filesystem/preopens@0.2.3",
                    "vauban:job/log@0.1.0",
                ]),
                &none,
                "ok",
            ),
            (
                component(&["wasi:cli/stdout@0.2.3", "wasi:sockets/tcp@0.2.3"]),
                &none,
                "import wasi:sockets/tcp@0.2.3: wasi:sockets needs a network destination",
            ),
            (component(&["wasi:sockets/tcp@0.2.3"]), &net, "ok"),
            (
                component(&["wasi:http/outgoing-handler@0.2.0"]),
                &none,
                "import wasi:http/outgoing-handler@0.2.0: outside the baseline",
            ),
            (
                component(&["wasi:http/outgoing-handler@0.2.0"]),
                &http,
                "ok",
            ),
            (
                component(&["wasi:http/outgoing-handler@0.2.0"]),
                &http_020,
                "ok",
            ),
            (
                component(&["wasi:http/outgoing-handler@0.2.3"]),
                &http_020,
                "import wasi:http/outgoing-handler@0.2.3: outside the baseline",
            ),
            (
                component(&["wasi:cli-extra/run"]),
                &none,
                "import wasi:cli-extra/run: outside the baseline",
            ),
            (
                component(&["unnamed-function"]),
                &none,
                "import unnamed-function: outside the baseline",
            ),
        ];
        for (imports, caps, expected) in cases {
            let got = match check_imports(&imports, caps) {
                Ok(()) => "ok".to_owned(),
                Err(e) => e.to_string(),
            };
            assert!(
                got.starts_with(expected),
                "{imports:?}: expected {expected:?}, got {got:?}"
            );
        }
    }
}
