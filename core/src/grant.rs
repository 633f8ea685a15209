//! Capability grants: an authorizer's signed statement of what one module may do and where.
//!
//! A [`Grant`] names a module by the sha256 of its complete file and its kind, the ceilings of
//! what a job running it may ask for (directories, environment variable names, network
//! destinations, host interfaces, configuration keys, memory, fuel, wall time), the node classes
//! it may run on, and a validity window. It is serialized as canonical JSON (RFC 8785, JCS) and
//! carried in a DSSE envelope of type [`GRANT_PAYLOAD_TYPE`]; several authorizers can sign one
//! grant, and the trust policy says how many must ([`crate::policy::Thresholds::authorizer`]).
//!
//! The payload must be exactly the canonical form of the grant it decodes to: there is one byte
//! string per grant, so two tools can never disagree about what was signed.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::capability::Capabilities;
use crate::envelope::{Envelope, EnvelopeError};
use crate::module::{ModuleDigest, ModuleKind};
use crate::policy::{Mode, TrustPolicy, dir_beyond, ignored_suffix};
use crate::role::Role;
use crate::signature::{KeyId, SecretKey};

/// The DSSE `payloadType` of a grant.
pub const GRANT_PAYLOAD_TYPE: &str = "application/vnd.vauban.grant+json";

/// The largest integer a grant may hold: RFC 8785 numbers are IEEE doubles, exact up to 2^53 - 1.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// What one module may do, and where. Plain data: build it, then sign it with
/// [`SignedGrant::sign`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// The grant's id, for audit and revocation.
    pub id: String,
    /// The module it is for.
    pub module: GrantedModule,
    /// The most a job running the module may ask for.
    pub capabilities: CapabilityCeiling,
    /// Resource ceilings.
    pub resources: ResourceCeiling,
    /// The node classes (names in the policy) it may run on.
    pub node_classes: Vec<String>,
    /// Not valid before this instant.
    pub not_before: Timestamp,
    /// Not valid from this instant on.
    pub not_after: Timestamp,
}

/// The module a grant is for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantedModule {
    /// sha256 of the complete file, `sha256:<hex>`.
    pub digest: ModuleDigest,
    /// `core_module` or `component`.
    pub kind: ModuleKind,
}

/// Capability ceilings. Empty lists allow nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapabilityCeiling {
    /// Host directories (a job may ask for them or anything under them) and their access.
    pub dirs: Vec<GrantedDir>,
    /// Environment variable names.
    pub env: Vec<String>,
    /// Network destinations.
    pub network: Vec<SocketAddr>,
    /// Host interfaces a component may import, e.g. `wasi:http/outgoing-handler`.
    pub interfaces: Vec<String>,
    /// Configuration keys.
    pub config: Vec<String>,
}

/// A directory in a grant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantedDir {
    /// Absolute host path.
    pub host: PathBuf,
    /// Where the guest usually sees it; informative, not a ceiling.
    pub guest: String,
    /// `ro` or `rw`.
    pub access: Mode,
}

/// Resource ceilings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceCeiling {
    /// Linear memory, bytes.
    pub memory_bytes: u64,
    /// Wall time, milliseconds.
    pub timeout_ms: u64,
    /// Fuel units; absent: any budget, or none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
}

/// An instant, written as RFC 3339 UTC to the second (`2026-01-31T12:00:00Z`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Timestamp(SystemTime);

impl Timestamp {
    /// The instant, truncated to the second.
    pub fn new(at: SystemTime) -> Self {
        let secs = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Self(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
    }

    /// The instant.
    pub fn time(self) -> SystemTime {
        self.0
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_rfc3339_seconds(self.0))
    }
}

impl From<Timestamp> for String {
    fn from(t: Timestamp) -> Self {
        t.to_string()
    }
}

impl TryFrom<String> for Timestamp {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        let at = humantime::parse_rfc3339(&s).map_err(|e| {
            format!("{s:?} is not an RFC 3339 UTC time such as 2026-01-31T12:00:00Z ({e})")
        })?;
        let t = Self::new(at);
        if t.to_string() != s {
            return Err(format!("{s:?} is not written as {t}"));
        }
        Ok(t)
    }
}

/// Why a grant was refused. Each names exactly what failed.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// The envelope is malformed or of another type. The envelope error is part of the
    /// message, so it is not also the `source` (a report would say it twice).
    #[error("grant envelope: {0}")]
    Envelope(EnvelopeError),
    /// The payload is not a grant.
    #[error("grant payload is not a grant: {0}")]
    Malformed(String),
    /// The payload is a grant, but not in canonical form.
    #[error("grant payload is not in canonical JSON form (RFC 8785)")]
    NotCanonical,
    /// The grant's fields are inconsistent.
    #[error("{} is not valid: {reason}", grant_name(.id))]
    Invalid {
        /// The grant.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// Too few authorizers signed.
    #[error("grant {id} has {} valid authorizer signature(s), the policy needs {need}{}", .valid.len(), ignored_suffix(.ignored))]
    Threshold {
        /// The grant.
        id: String,
        /// Keys whose signature counted.
        valid: Vec<KeyId>,
        /// The policy's authorizer threshold.
        need: u32,
        /// Why other signatures did not count.
        ignored: Vec<String>,
    },
    /// Before `not_before`.
    #[error("grant {id} is not valid before {not_before}")]
    NotYetValid {
        /// The grant.
        id: String,
        /// Its start.
        not_before: Timestamp,
    },
    /// At or after `not_after`.
    #[error("grant {id} expired at {not_after}")]
    Expired {
        /// The grant.
        id: String,
        /// Its end.
        not_after: Timestamp,
    },
    /// The policy revokes the module.
    #[error("grant {id} is for module {digest}, which the policy revokes")]
    RevokedModule {
        /// The grant.
        id: String,
        /// The module.
        digest: ModuleDigest,
    },
    /// The grant names a node class the policy does not define.
    #[error("grant {id} names node class {class:?}, which the policy does not define")]
    UnknownNodeClass {
        /// The grant.
        id: String,
        /// The class.
        class: String,
    },
    /// The grant is for another module.
    #[error("grant {id} is for {granted}, not for this module ({found})")]
    OtherModule {
        /// The grant.
        id: String,
        /// What the grant names.
        granted: String,
        /// What the module is.
        found: String,
    },
}

/// `grant ID`, or what to call a grant whose id is empty.
fn grant_name(id: &str) -> String {
    if id.is_empty() {
        "a grant without an id".into()
    } else {
        format!("grant {id}")
    }
}

impl From<EnvelopeError> for GrantError {
    fn from(e: EnvelopeError) -> Self {
        Self::Envelope(e)
    }
}

/// A capability a job asks for that is outside its grant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{capability}: the grant allows {allowed}")]
pub struct Beyond {
    /// The capability asked for, e.g. `directory /srv/out read-write`.
    pub capability: String,
    /// What the grant allows instead, e.g. `/srv/out read-only`.
    pub allowed: String,
}

impl Grant {
    /// The canonical JSON form (RFC 8785): the bytes that are signed.
    ///
    /// # Errors
    /// [`GrantError::Invalid`] when a field cannot be represented exactly.
    pub fn canonical_json(&self) -> Result<Vec<u8>, GrantError> {
        self.check()?;
        serde_jcs::to_vec(self).map_err(|e| self.invalid(e.to_string()))
    }

    fn invalid(&self, reason: impl Into<String>) -> GrantError {
        GrantError::Invalid {
            id: self.id.clone(),
            reason: reason.into(),
        }
    }

    fn check(&self) -> Result<(), GrantError> {
        if self.id.is_empty() {
            return Err(self.invalid("the id is empty"));
        }
        if self.not_after <= self.not_before {
            return Err(self.invalid("not_after is not after not_before"));
        }
        let r = self.resources;
        if let Some((field, n)) = [
            ("memory_bytes", r.memory_bytes),
            ("timeout_ms", r.timeout_ms),
            ("fuel", r.fuel.unwrap_or(0)),
        ]
        .into_iter()
        .find(|&(_, n)| n > MAX_SAFE_INTEGER)
        {
            return Err(self.invalid(format!(
                "resources.{field} is {n}, above {MAX_SAFE_INTEGER} (2^53 - 1, the largest integer canonical JSON holds exactly)"
            )));
        }
        if let Some(d) = self
            .capabilities
            .dirs
            .iter()
            .find(|d| !d.host.is_absolute())
        {
            return Err(self.invalid(format!("directory {} is not absolute", d.host.display())));
        }
        Ok(())
    }

    /// Checks that `module` is the module this grant is for (digest and kind).
    ///
    /// # Errors
    /// [`GrantError::OtherModule`].
    pub fn covers(&self, module: &[u8]) -> Result<(), GrantError> {
        let digest = ModuleDigest::of(module);
        let kind = ModuleKind::detect(module).ok();
        if digest != self.module.digest || kind != Some(self.module.kind) {
            return Err(GrantError::OtherModule {
                id: self.id.clone(),
                granted: format!("{} ({})", self.module.digest, self.module.kind),
                found: match kind {
                    Some(k) => format!("{digest}, {k}"),
                    None => format!("{digest}, not WebAssembly"),
                },
            });
        }
        Ok(())
    }

    /// Whether a component may import this host interface.
    pub fn allows_interface(&self, interface: &str) -> bool {
        self.capabilities.interfaces.iter().any(|i| i == interface)
    }

    /// Checks that a job's capabilities lie within the grant's ceilings.
    ///
    /// # Errors
    /// [`Beyond`] naming the first capability outside the grant.
    pub fn ceiling_allows(&self, asked: &Capabilities) -> Result<(), Beyond> {
        let c = &self.capabilities;
        let dirs: Vec<_> = c
            .dirs
            .iter()
            .map(|g| (g.host.as_path(), g.access))
            .collect();
        if let Some((capability, allowed)) = dir_beyond(&asked.dirs, &dirs) {
            return Err(Beyond {
                capability,
                allowed,
            });
        }
        for (name, _) in &asked.env {
            if !c.env.contains(name) {
                return Err(beyond(
                    format!("environment variable {name}"),
                    "environment variables",
                    &c.env,
                ));
            }
        }
        for addr in &asked.network {
            if !c.network.contains(addr) {
                return Err(beyond(
                    format!("network destination {addr}"),
                    "network destinations",
                    &c.network,
                ));
            }
        }
        for key in asked.config.keys() {
            if !c.config.contains(key) {
                return Err(beyond(
                    format!("configuration key {key}"),
                    "configuration keys",
                    &c.config,
                ));
            }
        }
        let r = self.resources;
        if asked.limits.memory_bytes > r.memory_bytes {
            return Err(Beyond {
                capability: format!("memory {}", bytes(asked.limits.memory_bytes)),
                allowed: format!("at most {}", bytes(r.memory_bytes)),
            });
        }
        if asked.limits.timeout > Duration::from_millis(r.timeout_ms) {
            return Err(Beyond {
                capability: format!(
                    "wall time {}",
                    humantime::format_duration(asked.limits.timeout)
                ),
                allowed: format!(
                    "at most {}",
                    humantime::format_duration(Duration::from_millis(r.timeout_ms))
                ),
            });
        }
        if let Some(max) = r.fuel {
            match asked.limits.fuel {
                Some(fuel) if fuel <= max => {}
                asked => {
                    return Err(Beyond {
                        capability: match asked {
                            Some(fuel) => format!("fuel {fuel}"),
                            None => "unmetered fuel".into(),
                        },
                        allowed: format!("at most {max} fuel units"),
                    });
                }
            }
        }
        Ok(())
    }
}

fn beyond<T: fmt::Display>(capability: String, what: &str, allowed: &[T]) -> Beyond {
    Beyond {
        capability,
        allowed: if allowed.is_empty() {
            format!("no {what}")
        } else {
            let list: Vec<_> = allowed.iter().map(T::to_string).collect();
            format!("only {}", list.join(", "))
        },
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

/// A grant in its envelope, with zero or more signatures. Parsing checks the form; only
/// [`SignedGrant::verify`] says whether it may be trusted.
#[derive(Clone, Debug)]
pub struct SignedGrant {
    envelope: Envelope,
    grant: Grant,
}

impl SignedGrant {
    /// The grant in an envelope without signatures.
    ///
    /// # Errors
    /// [`GrantError::Invalid`] when the grant is inconsistent.
    pub fn unsigned(grant: Grant) -> Result<Self, GrantError> {
        let envelope = Envelope::new(GRANT_PAYLOAD_TYPE, &grant.canonical_json()?);
        Ok(Self { envelope, grant })
    }

    /// The grant signed by `key`.
    ///
    /// # Errors
    /// [`GrantError::Invalid`] when the grant is inconsistent.
    pub fn sign(grant: Grant, key: &SecretKey) -> Result<Self, GrantError> {
        let mut signed = Self::unsigned(grant)?;
        signed.add_signature(key)?;
        Ok(signed)
    }

    /// Adds `key`'s signature (replacing an earlier one by the same key).
    ///
    /// # Errors
    /// [`GrantError::Envelope`] when the payload does not decode.
    pub fn add_signature(&mut self, key: &SecretKey) -> Result<(), GrantError> {
        Ok(self.envelope.sign(key)?)
    }

    /// Parses the JSON envelope, checks its type, and that the payload is a grant in canonical
    /// form. Does not check signatures.
    ///
    /// # Errors
    /// A [`GrantError`] naming what is wrong.
    pub fn from_json(json: &[u8]) -> Result<Self, GrantError> {
        let envelope = Envelope::from_json(json, GRANT_PAYLOAD_TYPE)?;
        let payload = envelope.payload_bytes()?;
        let grant: Grant =
            serde_json::from_slice(&payload).map_err(|e| GrantError::Malformed(e.to_string()))?;
        if grant.canonical_json()? != payload {
            return Err(GrantError::NotCanonical);
        }
        Ok(Self { envelope, grant })
    }

    /// The envelope's JSON form.
    pub fn to_json(&self) -> String {
        self.envelope.to_json()
    }

    /// The envelope.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// The grant, **not verified**: for display only.
    pub fn unverified_grant(&self) -> &Grant {
        &self.grant
    }

    /// Verifies the grant against a (verified) policy at `now`: enough distinct valid signatures
    /// by unrevoked authorizer keys, a module the policy does not revoke, `now` within the
    /// validity window, and node classes the policy defines.
    ///
    /// # Errors
    /// A [`GrantError`] naming exactly what failed.
    pub fn verify(
        &self,
        policy: &TrustPolicy,
        now: SystemTime,
    ) -> Result<VerifiedGrant, GrantError> {
        let grant = &self.grant;
        let id = || grant.id.clone();
        let checks = self.envelope.check_signatures(|k| policy.key(k))?;
        let (valid, ignored) = policy.count(&checks, Role::Authorizer, "not in the policy");
        let need = policy.thresholds().authorizer;
        if valid.len() < need as usize {
            return Err(GrantError::Threshold {
                id: id(),
                valid,
                need,
                ignored,
            });
        }
        if policy.is_module_revoked(&grant.module.digest) {
            return Err(GrantError::RevokedModule {
                id: id(),
                digest: grant.module.digest,
            });
        }
        if now < grant.not_before.time() {
            return Err(GrantError::NotYetValid {
                id: id(),
                not_before: grant.not_before,
            });
        }
        if now >= grant.not_after.time() {
            return Err(GrantError::Expired {
                id: id(),
                not_after: grant.not_after,
            });
        }
        if let Some(class) = grant
            .node_classes
            .iter()
            .find(|c| policy.node_class(c).is_none())
        {
            return Err(GrantError::UnknownNodeClass {
                id: id(),
                class: class.clone(),
            });
        }
        Ok(VerifiedGrant {
            grant: grant.clone(),
            signers: valid,
        })
    }
}

/// A grant whose signatures, validity and policy standing were checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedGrant {
    /// The grant.
    pub grant: Grant,
    /// The authorizer keys whose signature counted.
    pub signers: Vec<KeyId>,
}

impl VerifiedGrant {
    /// See [`Grant::ceiling_allows`].
    ///
    /// # Errors
    /// [`Beyond`] naming the first capability outside the grant.
    pub fn ceiling_allows(&self, asked: &Capabilities) -> Result<(), Beyond> {
        self.grant.ceiling_allows(asked)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::capability::{DirGrant, Limits};
    use crate::policy::tests::Keys;

    const DAY: Duration = Duration::from_secs(86_400);

    fn at(rfc3339: &str) -> SystemTime {
        humantime::parse_rfc3339(rfc3339).expect("time")
    }

    /// A grant for `ModuleDigest::of(b"module")`, valid in January 2026.
    pub(crate) fn grant() -> Grant {
        Grant {
            id: "g-1".into(),
            module: GrantedModule {
                digest: ModuleDigest::of(b"module"),
                kind: ModuleKind::Component,
            },
            capabilities: CapabilityCeiling {
                dirs: vec![
                    GrantedDir {
                        host: "/srv/in".into(),
                        guest: "/in".into(),
                        access: Mode::Ro,
                    },
                    GrantedDir {
                        host: "/srv/out".into(),
                        guest: "/out".into(),
                        access: Mode::Ro,
                    },
                    GrantedDir {
                        host: "/srv/scratch".into(),
                        guest: "/tmp".into(),
                        access: Mode::Rw,
                    },
                ],
                env: vec!["LANG".into()],
                network: vec!["10.0.0.1:443".parse().expect("addr")],
                interfaces: vec!["wasi:http/outgoing-handler".into()],
                config: vec!["region".into()],
            },
            resources: ResourceCeiling {
                memory_bytes: 64 << 20,
                timeout_ms: 30_000,
                fuel: Some(1_000),
            },
            node_classes: vec!["eu".into()],
            not_before: Timestamp::new(at("2026-01-01T00:00:00Z")),
            not_after: Timestamp::new(at("2026-01-31T00:00:00Z")),
        }
    }

    #[test]
    fn the_canonical_form_is_stable() {
        let json = String::from_utf8(grant().canonical_json().expect("json")).expect("utf8");
        let digest = ModuleDigest::of(b"module");
        assert_eq!(
            json,
            format!(
                r#"{{"capabilities":{{"config":["region"],"dirs":[{{"access":"ro","guest":"/in","host":"/srv/in"}},{{"access":"ro","guest":"/out","host":"/srv/out"}},{{"access":"rw","guest":"/tmp","host":"/srv/scratch"}}],"env":["LANG"],"interfaces":["wasi:http/outgoing-handler"],"network":["10.0.0.1:443"]}},"id":"g-1","module":{{"digest":"{digest}","kind":"component"}},"node_classes":["eu"],"not_after":"2026-01-31T00:00:00Z","not_before":"2026-01-01T00:00:00Z","resources":{{"fuel":1000,"memory_bytes":67108864,"timeout_ms":30000}}}}"#
            )
        );
        let again = SignedGrant::from_json(
            SignedGrant::unsigned(grant())
                .expect("env")
                .to_json()
                .as_bytes(),
        )
        .expect("parse");
        assert_eq!(again.unverified_grant(), &grant());
    }

    fn verify(signed: &SignedGrant, policy: &TrustPolicy, now: SystemTime) -> String {
        match signed.verify(policy, now) {
            Ok(v) => format!("ok {}", v.signers.len()),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn verification_counts_distinct_authorizers_in_the_window() {
        let keys = Keys::new();
        let policy = keys.policy(2, "");
        let now = at("2026-01-10T00:00:00Z");
        let [a0, a1, a2] = [
            &keys.authorizers[0],
            &keys.authorizers[1],
            &keys.authorizers[2],
        ];
        let mut signed = SignedGrant::sign(grant(), a0).expect("sign");
        assert!(
            verify(&signed, &policy, now)
                .contains("1 valid authorizer signature(s), the policy needs 2")
        );
        // A duplicated signature by the same key counts once.
        let mut dup = signed.clone();
        dup.envelope
            .signatures
            .push(dup.envelope.signatures[0].clone());
        assert!(verify(&dup, &policy, now).contains("signed more than once, counted once"));
        // A publisher's or a stranger's signature does not count.
        let mut wrong = signed.clone();
        wrong.add_signature(&keys.publisher).expect("sign");
        wrong.add_signature(&SecretKey::generate()).expect("sign");
        let msg = verify(&wrong, &policy, now);
        assert!(
            msg.contains("does not hold the authorizer role") && msg.contains("not in the policy"),
            "{msg}"
        );
        // A revoked authorizer does not count.
        let revoked = keys.policy(2, &format!("revoked_keys = [\"{}\"]", a1.public_key().id()));
        let mut with_revoked = signed.clone();
        with_revoked.add_signature(a1).expect("sign");
        assert!(verify(&with_revoked, &revoked, now).contains("revoked"));
        signed.add_signature(a2).expect("sign");
        assert_eq!(verify(&signed, &policy, now), "ok 2");
        assert_eq!(verify(&signed, &policy, at("2026-01-01T00:00:00Z")), "ok 2");
        assert!(
            verify(&signed, &policy, at("2025-12-31T23:59:59Z"))
                .contains("not valid before 2026-01-01T00:00:00Z")
        );
        assert!(
            verify(&signed, &policy, at("2026-01-31T00:00:00Z"))
                .contains("expired at 2026-01-31T00:00:00Z")
        );
        assert!(verify(&signed, &policy, now + 40 * DAY).contains("expired"));
        let revoking = keys.policy(
            2,
            &format!("revoked_modules = [\"{}\"]", ModuleDigest::of(b"module")),
        );
        assert!(verify(&signed, &revoking, now).contains("which the policy revokes"));
        let mut elsewhere = grant();
        elsewhere.node_classes = vec!["mars".into()];
        let mut signed_elsewhere = SignedGrant::sign(elsewhere, a0).expect("sign");
        signed_elsewhere.add_signature(a1).expect("sign");
        assert!(verify(&signed_elsewhere, &policy, now).contains("node class \"mars\""));
    }

    #[test]
    fn a_tampered_or_non_canonical_payload_is_refused() {
        let keys = Keys::new();
        let policy = keys.policy(1, "");
        let now = at("2026-01-10T00:00:00Z");
        let signed = SignedGrant::sign(grant(), &keys.authorizers[0]).expect("sign");
        let mut wider = grant();
        wider.resources.memory_bytes = 1 << 30;
        let mut tampered = signed.clone();
        tampered.envelope.payload = SignedGrant::unsigned(wider).expect("env").envelope.payload;
        let reparsed = SignedGrant::from_json(tampered.to_json().as_bytes()).expect("parses");
        assert!(verify(&reparsed, &policy, now).contains("signature does not verify"));
        let pretty = serde_json::to_vec_pretty(&grant()).expect("json");
        let mut loose = signed.envelope.clone();
        loose.payload = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, pretty);
        let err = SignedGrant::from_json(loose.to_json().as_bytes()).expect_err("loose");
        assert!(matches!(err, GrantError::NotCanonical), "{err}");
    }

    fn asked(f: impl FnOnce(&mut Capabilities)) -> Capabilities {
        let mut caps = Capabilities {
            limits: Limits {
                memory_bytes: 32 << 20,
                fuel: Some(10),
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
    fn ceilings_name_the_first_capability_beyond_them() {
        let g = grant();
        let cases: Vec<(Capabilities, &str)> = vec![
            (asked(|_| {}), "ok"),
            (asked(|c| c.dirs = vec![dir("/srv/in/sub:/in")]), "ok"),
            (asked(|c| c.dirs = vec![dir("/srv/scratch:/tmp:rw")]), "ok"),
            (
                asked(|c| c.dirs = vec![dir("/srv/out:/out:rw")]),
                "directory /srv/out read-write: the grant allows /srv/out read-only",
            ),
            (
                asked(|c| c.dirs = vec![dir("/etc:/etc")]),
                "directory /etc read-only: the grant allows /srv/in read-only, /srv/out read-only, /srv/scratch read-write",
            ),
            (
                asked(|c| c.dirs = vec![dir("/srv/inside:/x")]),
                "directory /srv/inside read-only",
            ),
            (
                asked(|c| c.dirs = vec![dir("/srv/in/../../etc:/x")]),
                "directory /srv/in/../../etc read-only",
            ),
            (asked(|c| c.env = vec![("LANG".into(), "C".into())]), "ok"),
            (
                asked(|c| c.env = vec![("HOME".into(), "/".into())]),
                "environment variable HOME: the grant allows only LANG",
            ),
            (
                asked(|c| c.network = vec!["10.0.0.1:443".parse().expect("addr")]),
                "ok",
            ),
            (
                asked(|c| c.network = vec!["10.0.0.2:443".parse().expect("addr")]),
                "network destination 10.0.0.2:443: the grant allows only 10.0.0.1:443",
            ),
            (
                asked(|c| {
                    c.config.insert("region".into(), "eu".into());
                }),
                "ok",
            ),
            (
                asked(|c| {
                    c.config.insert("secret".into(), "x".into());
                }),
                "configuration key secret: the grant allows only region",
            ),
            (
                asked(|c| c.limits.memory_bytes = 128 << 20),
                "memory 128 MiB: the grant allows at most 64 MiB",
            ),
            (
                asked(|c| c.limits.timeout = Duration::from_secs(60)),
                "wall time 1m: the grant allows at most 30s",
            ),
            (
                asked(|c| c.limits.fuel = Some(1_001)),
                "fuel 1001: the grant allows at most 1000 fuel units",
            ),
            (
                asked(|c| c.limits.fuel = None),
                "unmetered fuel: the grant allows at most 1000 fuel units",
            ),
        ];
        for (caps, expected) in cases {
            let got = match g.ceiling_allows(&caps) {
                Ok(()) => "ok".to_owned(),
                Err(e) => e.to_string(),
            };
            assert!(
                got.starts_with(expected),
                "expected {expected:?}, got {got:?}"
            );
        }
        let mut none = grant();
        none.capabilities = CapabilityCeiling::default();
        let e = none
            .ceiling_allows(&asked(|c| c.dirs = vec![dir("/a:/a")]))
            .expect_err("none");
        assert_eq!(
            e.to_string(),
            "directory /a read-only: the grant allows no directories"
        );
        assert!(g.allows_interface("wasi:http/outgoing-handler"));
        assert!(!g.allows_interface("wasi:sockets/tcp"));
    }

    #[test]
    fn a_grant_covers_only_its_module() {
        let module = b"\0asm\x01\0\0\0";
        let mut g = grant();
        g.module = GrantedModule {
            digest: ModuleDigest::of(module),
            kind: ModuleKind::CoreModule,
        };
        assert!(g.covers(module).is_ok());
        assert!(
            g.covers(b"\0asm\x01\0\0\0\x01\x01\x00")
                .expect_err("other")
                .to_string()
                .contains("not for this module")
        );
    }
}
