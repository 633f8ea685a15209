//! The trust policy: which keys hold which role, how many signatures each role needs, the node
//! classes and what each allows, and what is revoked. A TOML file, versioned (the version only goes
//! forward), signed by root keys m-of-n in a detached DSSE envelope (`policy.toml.sig.json`)
//! whose payload is the exact bytes of the file.
//!
//! A machine's anchor is a set of pinned root public keys ([`TrustStore`]): a policy counts only
//! signatures by keys that are both anchored and listed with the `root` role in the policy itself,
//! not revoked, and needs `thresholds.root` of them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::capability::Access;
use crate::envelope::{Envelope, EnvelopeError, SignatureCheck};
use crate::module::ModuleDigest;
use crate::role::Role;
use crate::signature::{Algorithm, KeyId, PublicKey, TrustStore};

/// The DSSE `payloadType` of a signed policy.
pub const POLICY_PAYLOAD_TYPE: &str = "application/vnd.vauban.policy+toml";

/// The policy file, as written. Unknown fields are refused, so a misspelt field cannot be
/// silently ignored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDocument {
    /// Goes forward only: a machine refuses a policy whose version is not above its own.
    pub version: u64,
    /// Key ids whose signatures no longer count, whatever their roles.
    #[serde(default)]
    pub revoked_keys: Vec<KeyId>,
    /// Modules (full-file sha256) that must not run, whoever signed or granted them.
    #[serde(default)]
    pub revoked_modules: Vec<ModuleDigest>,
    /// The keys and their roles.
    pub keys: Vec<PolicyKey>,
    /// How many distinct signatures of each role a policy, module and grant need.
    pub thresholds: Thresholds,
    /// Classes of nodes, by label, and what each allows.
    #[serde(default)]
    pub node_classes: Vec<NodeClass>,
}

/// A key and the roles it holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyKey {
    /// The key id; must be the id of `public_key`.
    pub id: KeyId,
    /// The signature algorithm: `ed25519`.
    pub alg: Algorithm,
    /// The public key: SPKI PEM, or the raw 32 bytes in base64.
    pub public_key: String,
    /// What the key may sign.
    pub roles: Vec<Role>,
}

/// Signatures needed per role (m of the n keys holding it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Root signatures a policy needs.
    pub root: u32,
    /// Publisher signatures a module needs.
    pub publisher: u32,
    /// Authorizer signatures a grant needs.
    pub authorizer: u32,
}

/// A class of nodes, selected by labels, and the ceiling of what runs on it may use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeClass {
    /// The name grants refer to.
    pub name: String,
    /// A node belongs to the class when it has every one of these labels with this value.
    #[serde(rename = "match", default)]
    pub labels: BTreeMap<String, String>,
    /// Host directory prefixes and the most access allowed under each.
    #[serde(default)]
    pub dirs: Vec<DirAllowance>,
    /// Network destinations allowed.
    #[serde(default)]
    pub network: Vec<SocketAddr>,
    /// Host interfaces allowed, e.g. `wasi:http/outgoing-handler`.
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// The most linear memory a run may have, in bytes; no ceiling when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory_bytes: Option<u64>,
}

/// A directory prefix a node class allows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirAllowance {
    /// Absolute host path; everything under it is covered.
    pub path: PathBuf,
    /// `ro` or `rw`.
    pub access: Mode,
}

/// Directory access as policies and grants write it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Read only.
    Ro,
    /// Read and write.
    Rw,
}

impl From<Mode> for Access {
    fn from(m: Mode) -> Self {
        match m {
            Mode::Ro => Self::ReadOnly,
            Mode::Rw => Self::ReadWrite,
        }
    }
}

impl NodeClass {
    /// Whether a node with these labels belongs to the class.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
    }
}

/// Whether `path` is `prefix` or lies under it, comparing whole components. A path with `..`
/// is under nothing.
/// The first directory of `asked` that none of `allowed` (directory, access) covers, as
/// (the capability, what is allowed): `("directory /etc read-only", "/srv rw-ish list")`. A
/// directory is covered by an allowance for it or a directory above it, with read-write access
/// when it asks for read-write. What is allowed lists the allowances above it when there are
/// some (they lack the access), else all of them.
pub(crate) fn dir_beyond(
    asked: &[crate::capability::DirGrant],
    allowed: &[(&Path, Mode)],
) -> Option<(String, String)> {
    let name = |rw: bool| if rw { "read-write" } else { "read-only" };
    for dir in asked {
        let rw = dir.access == crate::capability::Access::ReadWrite;
        let covering: Vec<_> = allowed
            .iter()
            .filter(|(path, _)| path_within(&dir.host, path))
            .collect();
        if covering.iter().any(|(_, mode)| !rw || *mode == Mode::Rw) {
            continue;
        }
        let shown: Vec<_> = if covering.is_empty() {
            allowed.iter().collect()
        } else {
            covering
        };
        let listed = if shown.is_empty() {
            "no directories".to_owned()
        } else {
            let list: Vec<String> = shown
                .iter()
                .map(|(path, mode)| format!("{} {}", path.display(), name(*mode == Mode::Rw)))
                .collect();
            list.join(", ")
        };
        return Some((
            format!("directory {} {}", dir.host.display(), name(rw)),
            listed,
        ));
    }
    None
}

pub(crate) fn path_within(path: &Path, prefix: &Path) -> bool {
    !path.components().any(|c| c == Component::ParentDir) && path.starts_with(prefix)
}

/// Why a policy was refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// Not TOML, or not the policy's fields.
    #[error("policy is not valid: {0}")]
    Parse(String),
    /// Parsed, but inconsistent.
    #[error("policy is not valid: {0}")]
    Invalid(String),
    /// The signatures file is malformed.
    #[error("policy signatures: {0}")]
    Envelope(EnvelopeError),
    /// The file is not the payload the signatures cover.
    #[error(
        "the policy file differs from the payload its signatures cover: it was changed after signing"
    )]
    Tampered,
    /// Too few anchored root keys signed.
    #[error("policy has {} valid root signature(s), it needs {need}{}", .valid.len(), ignored_suffix(.ignored))]
    Threshold {
        /// The anchored root keys whose signature counted.
        valid: Vec<KeyId>,
        /// The threshold.
        need: u32,
        /// Why other signatures did not count.
        ignored: Vec<String>,
    },
    /// A replacement lacks the root signatures the policy it replaces asks for.
    #[error("policy is signed by {} root key(s) of the policy version {held} it replaces, it needs {need}{}", .valid.len(), ignored_suffix(.ignored))]
    Succession {
        /// The held policy's root keys whose signature counted.
        valid: Vec<KeyId>,
        /// The held policy's root threshold.
        need: u32,
        /// The held policy's version.
        held: u64,
        /// Why other signatures did not count.
        ignored: Vec<String>,
    },
    /// The offered policy is older than the one held.
    #[error("policy version {offered} is older than the version {held} this machine holds")]
    Downgrade {
        /// The version offered.
        offered: u64,
        /// The version held.
        held: u64,
    },
    /// The offered policy has the version already held.
    #[error(
        "policy version {0} is the version this machine already holds: a new policy needs a higher version"
    )]
    SameVersion(u64),
}

/// The envelope error is part of the message, so it is not also the `source` (a report would
/// say it twice).
impl From<EnvelopeError> for PolicyError {
    fn from(e: EnvelopeError) -> Self {
        Self::Envelope(e)
    }
}

pub(crate) fn ignored_suffix(ignored: &[String]) -> String {
    if ignored.is_empty() {
        String::new()
    } else {
        format!(" (not counted: {})", ignored.join("; "))
    }
}

/// Which policy a machine starts with: see [`TrustPolicy::at_start`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AtStart {
    /// The policy it was given, newer than the one it held (`replaces`, 0 for none): store it.
    Given {
        /// The version held before; 0 when none was.
        replaces: u64,
    },
    /// The given policy is the one it holds.
    Same,
    /// The policy it holds is newer than the one given: it stays in force.
    Stored,
}

/// A parsed, consistent trust policy. Obtained verified with [`TrustPolicy::load_verified`].
#[derive(Clone, Debug)]
pub struct TrustPolicy {
    document: PolicyDocument,
    keys: BTreeMap<KeyId, PublicKey>,
    /// The exact bytes it was parsed from: what is signed, and what is passed on.
    toml: Vec<u8>,
    /// Its root signatures, when it was loaded verified.
    envelope: Option<Envelope>,
}

impl TrustPolicy {
    /// Parses and checks a policy **without** checking its signatures: for signing it, and for
    /// tests. Anything that trusts a policy uses [`TrustPolicy::load_verified`].
    ///
    /// # Errors
    /// [`PolicyError::Parse`] or [`PolicyError::Invalid`] naming the problem.
    pub fn parse_unverified(toml_bytes: &[u8]) -> Result<Self, PolicyError> {
        let text = std::str::from_utf8(toml_bytes)
            .map_err(|_| PolicyError::Parse("the file is not UTF-8".into()))?;
        let document: PolicyDocument =
            toml::from_str(text).map_err(|e| PolicyError::Parse(e.to_string()))?;
        let invalid = |m: String| Err(PolicyError::Invalid(m));
        if document.version == 0 {
            return invalid("version must be 1 or more".into());
        }
        let mut keys = BTreeMap::new();
        for entry in &document.keys {
            let public = decode_public_key(&entry.public_key)
                .map_err(|m| PolicyError::Invalid(format!("key {}: {m}", entry.id)))?;
            if public.id() != &entry.id {
                return invalid(format!(
                    "key {}: the id is not that of its public key, which is {}",
                    entry.id,
                    public.id()
                ));
            }
            if entry.roles.is_empty() {
                return invalid(format!("key {}: it has no roles", entry.id));
            }
            if keys.insert(entry.id.clone(), public).is_some() {
                return invalid(format!("key {} is listed twice", entry.id));
            }
        }
        let mut names = BTreeSet::new();
        for class in &document.node_classes {
            if class.name.is_empty() || !names.insert(class.name.as_str()) {
                return invalid(format!(
                    "node class names must be non-empty and unique ({:?})",
                    class.name
                ));
            }
            if let Some(d) = class.dirs.iter().find(|d| !d.path.is_absolute()) {
                return invalid(format!(
                    "node class {}: directory {} is not absolute",
                    class.name,
                    d.path.display()
                ));
            }
        }
        let policy = Self {
            document,
            keys,
            toml: toml_bytes.to_vec(),
            envelope: None,
        };
        let t = policy.document.thresholds;
        for (role, need) in [
            (Role::Root, t.root),
            (Role::Publisher, t.publisher),
            (Role::Authorizer, t.authorizer),
        ] {
            let have = policy
                .document
                .keys
                .iter()
                .filter(|k| policy.holds(&k.id, role))
                .count();
            if need == 0 {
                return invalid(format!("thresholds.{role} must be 1 or more"));
            }
            if have < need as usize {
                return invalid(format!(
                    "thresholds.{role} is {need} but only {have} unrevoked key(s) hold the {role} role"
                ));
            }
        }
        Ok(policy)
    }

    /// Checks a policy's signatures and parses it: the envelope's payload must be exactly
    /// `toml_bytes`, and at least `thresholds.root` distinct keys that are anchored, listed with
    /// the `root` role and not revoked must have signed it.
    ///
    /// # Errors
    /// A [`PolicyError`] naming what failed.
    pub fn load_verified(
        toml_bytes: &[u8],
        envelope: &Envelope,
        anchors: &TrustStore,
    ) -> Result<Self, PolicyError> {
        if envelope.payload_type != POLICY_PAYLOAD_TYPE {
            return Err(EnvelopeError::WrongType {
                expected: POLICY_PAYLOAD_TYPE.into(),
                found: envelope.payload_type.clone(),
            }
            .into());
        }
        if envelope.payload_bytes()? != toml_bytes {
            return Err(PolicyError::Tampered);
        }
        let mut policy = Self::parse_unverified(toml_bytes)?;
        let checks =
            envelope.check_signatures(|id| anchors.keys().iter().find(|k| k.id() == id))?;
        let (valid, ignored) = policy.count(&checks, Role::Root, "not an anchored root key");
        let need = policy.document.thresholds.root;
        if valid.len() < need as usize {
            return Err(PolicyError::Threshold {
                valid,
                need,
                ignored,
            });
        }
        policy.envelope = Some(envelope.clone());
        Ok(policy)
    }

    /// Whether this policy, already verified against the pinned anchors, may replace `current`:
    /// its version must go forward ([`TrustPolicy::replaces`]) and it must also carry
    /// `current`'s root threshold of signatures by `current`'s unrevoked root keys. So a policy
    /// cannot lower the root threshold or swap the root keys without the consent of the roots
    /// it replaces (TUF's rule for root rotation).
    ///
    /// # Errors
    /// [`PolicyError::Downgrade`], [`PolicyError::SameVersion`], or
    /// [`PolicyError::Succession`] naming how many of the current roots signed.
    pub fn succeeds(&self, current: &TrustPolicy) -> Result<(), PolicyError> {
        self.replaces(current)?;
        let Some(envelope) = &self.envelope else {
            return Err(PolicyError::Succession {
                valid: Vec::new(),
                need: current.document.thresholds.root,
                held: current.version(),
                ignored: vec!["the new policy carries no signatures".into()],
            });
        };
        let checks = envelope.check_signatures(|id| current.keys.get(id))?;
        let (valid, ignored) = current.count(&checks, Role::Root, "not a key of the held policy");
        let need = current.document.thresholds.root;
        if valid.len() < need as usize {
            return Err(PolicyError::Succession {
                valid,
                need,
                held: current.version(),
                ignored,
            });
        }
        Ok(())
    }

    /// Which policy is in force when a machine starts with this one (its `--policy` file) and
    /// `stored`, the newest it accepted in an earlier run (pushed since, perhaps): the newer one,
    /// so that restarting with a stale file never rolls a revocation back. A newer file must
    /// succeed the stored policy as a pushed one would ([`TrustPolicy::succeeds`]).
    ///
    /// # Errors
    /// [`PolicyError::Invalid`] when both have the same version and different bytes, or what
    /// [`TrustPolicy::succeeds`] returns when the file is newer but may not replace the stored one.
    pub fn at_start(&self, stored: Option<&TrustPolicy>) -> Result<AtStart, PolicyError> {
        let Some(stored) = stored else {
            return Ok(AtStart::Given { replaces: 0 });
        };
        match self.version().cmp(&stored.version()) {
            std::cmp::Ordering::Less => Ok(AtStart::Stored),
            std::cmp::Ordering::Equal if self.toml == stored.toml => Ok(AtStart::Same),
            std::cmp::Ordering::Equal => Err(PolicyError::Invalid(format!(
                "the policy file has version {} like the policy this machine holds, but other \
                 contents: raise its version",
                self.version()
            ))),
            std::cmp::Ordering::Greater => {
                self.succeeds(stored)?;
                Ok(AtStart::Given {
                    replaces: stored.version(),
                })
            }
        }
    }

    /// The keys this policy lists as unrevoked roots whose signature on it verifies: who
    /// vouched for it, for the audit log. Empty for a policy parsed unverified.
    pub fn root_signers(&self) -> Vec<KeyId> {
        let Some(envelope) = &self.envelope else {
            return Vec::new();
        };
        match envelope.check_signatures(|id| self.keys.get(id)) {
            Ok(checks) => self.count(&checks, Role::Root, "").0,
            Err(_) => Vec::new(),
        }
    }

    /// The exact TOML bytes of the policy.
    pub fn toml_bytes(&self) -> &[u8] {
        &self.toml
    }

    /// The root signatures it was verified with; `None` for a policy parsed unverified.
    pub fn envelope(&self) -> Option<&Envelope> {
        self.envelope.as_ref()
    }

    /// The sha256 of its TOML bytes, `sha256:<hex>`.
    pub fn digest(&self) -> String {
        use sha2::Digest as _;
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(&self.toml)))
    }

    /// Whether this policy may replace `current`: only a higher version may.
    ///
    /// # Errors
    /// [`PolicyError::Downgrade`] or [`PolicyError::SameVersion`].
    pub fn replaces(&self, current: &TrustPolicy) -> Result<(), PolicyError> {
        let (offered, held) = (self.version(), current.version());
        match offered.cmp(&held) {
            std::cmp::Ordering::Greater => Ok(()),
            std::cmp::Ordering::Equal => Err(PolicyError::SameVersion(offered)),
            std::cmp::Ordering::Less => Err(PolicyError::Downgrade { offered, held }),
        }
    }

    /// Counts the distinct valid signatures by unrevoked keys holding `role`. Returns the keys
    /// counted and, for every other signature, why it was not; `unknown` says why a key that is
    /// not found is not counted.
    pub(crate) fn count(
        &self,
        checks: &[SignatureCheck],
        role: Role,
        unknown: &str,
    ) -> (Vec<KeyId>, Vec<String>) {
        let mut valid = Vec::new();
        let mut ignored = Vec::new();
        for check in checks {
            match check {
                SignatureCheck::UnknownKey(id) => ignored.push(format!("key {id}: {unknown}")),
                SignatureCheck::Invalid(id) => ignored.push(format!(
                    "key {id}: signature does not verify (changed after signing?)"
                )),
                SignatureCheck::Valid(id) if self.is_key_revoked(id) => {
                    ignored.push(format!("key {id}: revoked"));
                }
                SignatureCheck::Valid(id) if !self.holds(id, role) => {
                    ignored.push(format!("key {id}: does not hold the {role} role"));
                }
                SignatureCheck::Valid(id) if valid.contains(id) => {
                    ignored.push(format!("key {id}: signed more than once, counted once"));
                }
                SignatureCheck::Valid(id) => valid.push(id.clone()),
            }
        }
        (valid, ignored)
    }

    /// The policy as written.
    pub fn document(&self) -> &PolicyDocument {
        &self.document
    }

    /// The policy's version.
    pub fn version(&self) -> u64 {
        self.document.version
    }

    /// The thresholds.
    pub fn thresholds(&self) -> Thresholds {
        self.document.thresholds
    }

    /// The public key of a key listed in the policy (revoked or not).
    pub fn key(&self, id: &KeyId) -> Option<&PublicKey> {
        self.keys.get(id)
    }

    /// Whether `id` is listed with `role` and is not revoked.
    pub fn holds(&self, id: &KeyId, role: Role) -> bool {
        !self.is_key_revoked(id)
            && self
                .document
                .keys
                .iter()
                .any(|k| &k.id == id && k.roles.contains(&role))
    }

    /// Whether a key is revoked.
    pub fn is_key_revoked(&self, id: &KeyId) -> bool {
        self.document.revoked_keys.contains(id)
    }

    /// Whether a module is revoked.
    pub fn is_module_revoked(&self, digest: &ModuleDigest) -> bool {
        self.document.revoked_modules.contains(digest)
    }

    /// A node class by name.
    pub fn node_class(&self, name: &str) -> Option<&NodeClass> {
        self.document.node_classes.iter().find(|c| c.name == name)
    }
}

fn decode_public_key(text: &str) -> Result<PublicKey, String> {
    let text = text.trim();
    if text.starts_with("-----BEGIN") {
        return PublicKey::from_pem(text)
            .map_err(|_| "public_key is not an Ed25519 public key in PEM form (SPKI)".to_owned());
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| "public_key is neither PEM nor base64".to_owned())?;
    PublicKey::from_raw_bytes(&raw).map_err(|_| {
        format!(
            "public_key is {} bytes of base64, not the 32 bytes of an Ed25519 public key",
            raw.len()
        )
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::signature::SecretKey;

    /// Keys by role for tests: three roots, one publisher, three authorizers.
    pub(crate) struct Keys {
        pub(crate) roots: Vec<SecretKey>,
        pub(crate) publisher: SecretKey,
        pub(crate) authorizers: Vec<SecretKey>,
    }

    impl Keys {
        pub(crate) fn new() -> Self {
            Self {
                roots: (0..3).map(|_| SecretKey::generate()).collect(),
                publisher: SecretKey::generate(),
                authorizers: (0..3).map(|_| SecretKey::generate()).collect(),
            }
        }

        /// A policy of `version` needing 2 roots and `authorizers` authorizer signatures;
        /// `extra` is appended at top level (before any table).
        pub(crate) fn toml(&self, version: u64, authorizers: u32, extra: &str) -> String {
            let mut out = format!("version = {version}\n{extra}\n");
            let entry = |k: &SecretKey, role: &str| {
                format!(
                    "[[keys]]\nid = \"{}\"\nalg = \"ed25519\"\npublic_key = \"\"\"\n{}\"\"\"\nroles = [\"{role}\"]\n",
                    k.public_key().id(),
                    k.public_key().to_pem()
                )
            };
            for k in &self.roots {
                out += &entry(k, "root");
            }
            out += &entry(&self.publisher, "publisher");
            for k in &self.authorizers {
                out += &entry(k, "authorizer");
            }
            out += &format!(
                "[thresholds]\nroot = 2\npublisher = 1\nauthorizer = {authorizers}\n\
                 [[node_classes]]\nname = \"eu\"\nmatch = {{ jurisdiction = \"eu\" }}\n\
                 dirs = [{{ path = \"/srv\", access = \"rw\" }}]\n"
            );
            out
        }

        pub(crate) fn policy(&self, authorizers: u32, extra: &str) -> TrustPolicy {
            TrustPolicy::parse_unverified(self.toml(1, authorizers, extra).as_bytes())
                .expect("policy")
        }

        fn anchors(&self) -> TrustStore {
            TrustStore::new(self.roots.iter().map(|k| k.public_key().clone()))
        }
    }

    fn signed(toml: &str, by: &[&SecretKey]) -> Envelope {
        let mut env = Envelope::new(POLICY_PAYLOAD_TYPE, toml.as_bytes());
        for k in by {
            env.sign(k).expect("sign");
        }
        env
    }

    fn check(toml: &str, env: &Envelope, anchors: &TrustStore, expected: &str) {
        let got = match TrustPolicy::load_verified(toml.as_bytes(), env, anchors) {
            Ok(p) => format!("ok {}", p.version()),
            Err(e) => e.to_string(),
        };
        assert!(got.contains(expected), "expected {expected:?}, got {got:?}");
    }

    #[test]
    fn a_policy_needs_its_root_threshold_of_anchored_root_keys() {
        let keys = Keys::new();
        let anchors = keys.anchors();
        let [r0, r1, r2] = [&keys.roots[0], &keys.roots[1], &keys.roots[2]];
        let toml = keys.toml(3, 1, "");
        check(&toml, &signed(&toml, &[r0, r1]), &anchors, "ok 3");
        check(
            &toml,
            &signed(&toml, &[r0]),
            &anchors,
            "1 valid root signature(s), it needs 2",
        );
        // The same key twice counts once.
        let mut twice = signed(&toml, &[r0]);
        twice.signatures.push(twice.signatures[0].clone());
        check(
            &toml,
            &twice,
            &anchors,
            "signed more than once, counted once",
        );
        // A root key the machine does not anchor does not count.
        let only_two = TrustStore::new([r0.public_key().clone()]);
        check(
            &toml,
            &signed(&toml, &[r0, r1]),
            &only_two,
            "not an anchored root key",
        );
        // An anchored key signing without the root role does not count.
        let auth_anchor = TrustStore::new([
            r0.public_key().clone(),
            keys.authorizers[0].public_key().clone(),
        ]);
        check(
            &toml,
            &signed(&toml, &[r0, &keys.authorizers[0]]),
            &auth_anchor,
            "does not hold the root role",
        );
        // A revoked root key does not count.
        let revoking = keys.toml(
            3,
            1,
            &format!("revoked_keys = [\"{}\"]", r2.public_key().id()),
        );
        check(
            &revoking,
            &signed(&revoking, &[r0, r2]),
            &anchors,
            "revoked",
        );
        // The file must be the signed payload.
        let edited = toml.replace("authorizer = 1", "authorizer = 2");
        check(
            &edited,
            &signed(&toml, &[r0, r1]),
            &anchors,
            "changed after signing",
        );
    }

    #[test]
    fn a_successor_needs_the_root_threshold_of_the_policy_it_replaces() {
        let keys = Keys::new();
        let anchors = keys.anchors();
        let [r0, r1] = [&keys.roots[0], &keys.roots[1]];
        let load = |toml: &str, by: &[&SecretKey]| {
            TrustPolicy::load_verified(toml.as_bytes(), &signed(toml, by), &anchors)
                .expect("verified")
        };
        let v1 = load(&keys.toml(1, 1, ""), &[r0, r1]);
        // One root key alone lowers the threshold to itself: its own policy is satisfied, but
        // the held policy asked for two.
        let lowered = keys.toml(2, 1, "").replace("root = 2", "root = 1");
        let v2 = load(&lowered, &[r0]);
        let err = v2.succeeds(&v1).expect_err("one root is not enough");
        assert!(
            err.to_string().contains(
                "signed by 1 root key(s) of the policy version 1 it replaces, it needs 2"
            ),
            "{err}"
        );
        load(&lowered, &[r0, r1]).succeeds(&v1).expect("two roots");
        // Versions still only go forward.
        let err = v1.succeeds(&load(&lowered, &[r0, r1])).expect_err("older");
        assert!(err.to_string().contains("older"), "{err}");
        assert_eq!(v1.toml_bytes(), keys.toml(1, 1, "").as_bytes());
        // At start, the newer of the file and the stored policy is in force.
        let v2 = load(&lowered, &[r0, r1]);
        assert_eq!(
            v1.at_start(None).expect("none"),
            AtStart::Given { replaces: 0 }
        );
        assert_eq!(v1.at_start(Some(&v2)).expect("older"), AtStart::Stored);
        assert_eq!(
            v2.at_start(Some(&v1)).expect("newer"),
            AtStart::Given { replaces: 1 }
        );
        assert_eq!(v2.at_start(Some(&v2)).expect("same"), AtStart::Same);
        let other = load(&keys.toml(2, 1, "# other\n"), &[r0, r1]);
        assert!(
            other
                .at_start(Some(&v2))
                .expect_err("same version")
                .to_string()
                .contains("raise its version")
        );
        assert!(load(&lowered, &[r0]).at_start(Some(&v1)).is_err());
        assert!(v1.digest().starts_with("sha256:"));
    }

    #[test]
    fn malformed_policies_name_their_fault() {
        let keys = Keys::new();
        let bad = |toml: &str, expected: &str| {
            let got = TrustPolicy::parse_unverified(toml.as_bytes())
                .expect_err(expected)
                .to_string();
            assert!(got.contains(expected), "expected {expected:?}, got {got:?}");
        };
        let good = keys.toml(1, 1, "");
        bad(
            &good.replace("version = 1\n", "version = 0\n"),
            "version must be 1 or more",
        );
        bad(
            &good.replace("root = 2", "root = 4"),
            "thresholds.root is 4 but only 3",
        );
        bad(
            &good.replace("authorizer = 1", "authorizer = 0"),
            "thresholds.authorizer must be 1",
        );
        bad(
            &good.replacen("alg = \"ed25519\"", "alg = \"rsa\"", 1),
            "unsupported signature algorithm",
        );
        bad(
            &good.replacen("roles = [\"root\"]", "roles = [\"admin\"]", 1),
            "unknown variant",
        );
        bad(&keys.toml(1, 1, "colour = 1"), "unknown field");
        let other = SecretKey::generate().public_key().id().to_string();
        let first = keys.roots[0].public_key().id().to_string();
        bad(
            &good.replacen(
                &format!("id = \"{first}\""),
                &format!("id = \"{other}\""),
                1,
            ),
            "is not that of its public key",
        );
    }

    #[test]
    fn versions_only_go_forward() {
        let keys = Keys::new();
        let at = |v| TrustPolicy::parse_unverified(keys.toml(v, 1, "").as_bytes()).expect("policy");
        assert!(at(4).replaces(&at(3)).is_ok());
        assert_eq!(
            at(3).replaces(&at(4)).expect_err("older").to_string(),
            "policy version 3 is older than the version 4 this machine holds"
        );
        assert!(matches!(
            at(4).replaces(&at(4)),
            Err(PolicyError::SameVersion(4))
        ));
    }

    #[test]
    fn public_keys_may_be_raw_base64_and_node_classes_match_labels() {
        let keys = Keys::new();
        let pem = keys.publisher.public_key().to_pem();
        let raw = base64::engine::general_purpose::STANDARD
            .encode(keys.publisher.public_key().raw_bytes());
        let toml = keys
            .toml(1, 1, "")
            .replace(&format!("\"\"\"\n{pem}\"\"\""), &format!("\"{raw}\""));
        let policy = TrustPolicy::parse_unverified(toml.as_bytes()).expect("policy");
        assert!(policy.holds(keys.publisher.public_key().id(), Role::Publisher));
        let eu = policy.node_class("eu").expect("class");
        let labels = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(eu.matches(&labels(&[("jurisdiction", "eu"), ("site", "paris")])));
        assert!(!eu.matches(&labels(&[("jurisdiction", "us")])));
        assert!(!eu.matches(&labels(&[])));
    }
}
