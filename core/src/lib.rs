//! Domain logic shared by Vauban's scheduler and hosts.
//!
//! This crate owns what both sides of the control plane must agree on, without either of them
//! depending on the other: the identity of a module ([`ModuleDigest`], [`ModuleKind`]), publisher
//! signatures and the trust store that checks them ([`signature`]), the capabilities a job asks for
//! ([`capability`]), and the structured outcome of a run ([`outcome`]). It links neither wasmtime nor
//! tonic: the scheduler must be able to use it without being able to execute guest code.

#![forbid(unsafe_code)]

pub mod capability;
pub mod envelope;
pub mod grant;
pub mod module;
pub mod outcome;
pub mod policy;
pub mod role;
pub mod signature;

pub use capability::{Access, Capabilities, DirGrant, Limits};
pub use grant::{Beyond, Grant, GrantError, SignedGrant, VerifiedGrant};
pub use module::{ModuleDigest, ModuleKind};
pub use outcome::{CapturedOutput, CodeSource, Outcome, RunReport};
pub use policy::{PolicyError, TrustPolicy};
pub use role::Role;
pub use signature::{Algorithm, KeyId, PublicKey, SecretKey, SignatureError, TrustStore, Verified};
