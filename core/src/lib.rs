//! Domain logic shared by Vauban's scheduler and hosts.
//!
//! This crate owns what both sides of the control plane must agree on, without either of them
//! depending on the other: the identity of a module ([`ModuleDigest`], [`ModuleKind`]), publisher
//! signatures and the trust store that checks them ([`signature`]), the capabilities a job asks for
//! ([`capability`]), the structured outcome of a run ([`outcome`]), the chain of trust's formats
//! ([`grant`], [`policy`], [`envelope`], [`role`]) and admission under a trust policy
//! ([`admission`]: publisher thresholds, effective capabilities, import checks). It links neither
//! wasmtime nor tonic: the scheduler must be able to use it without being able to execute guest
//! code.

#![forbid(unsafe_code)]

pub mod admission;
pub mod capability;
pub mod envelope;
pub mod grant;
pub mod holder;
pub mod module;
pub mod outcome;
pub mod policy;
pub mod revocation;
pub mod role;
pub mod signature;

pub use admission::{Inadmissible, ModuleImports, ModuleRefusal, Refusal};
pub use capability::{Access, Capabilities, DirGrant, Limits};
pub use grant::{Beyond, Grant, GrantError, SignedGrant, VerifiedGrant};
pub use holder::PolicyHolder;
pub use module::{ModuleDigest, ModuleKind};
pub use outcome::{CapturedOutput, CodeSource, Outcome, RunReport};
pub use policy::{PolicyError, TrustPolicy};
pub use role::Role;
pub use signature::{Algorithm, KeyId, PublicKey, SecretKey, SignatureError, TrustStore, Verified};
