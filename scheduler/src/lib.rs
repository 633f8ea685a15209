//! Vauban's scheduler (control plane).
//!
//! Empty for now. It will own admission (signatures, grants, policy), the job queue, the node
//! registry, placement as a pure function, job lifecycle and the state store. It never links
//! wasmtime: the scheduler never executes guest code.

#![forbid(unsafe_code)]
