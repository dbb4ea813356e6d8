//! authkeyring: an operator that keeps JWT signing keys in Kubernetes Secrets, rotates them
//! without failing a request, and rolls the workloads that consume them; plus the user-service
//! that verifies the tokens those keys sign.
//!
//! Pure logic (keys, JWK Sets, the rotation plan, token verification, durations) lives in modules
//! that never touch the network. Kubernetes glue lives in `crd`, `controller` and `cli`; HTTP
//! glue in `service`.
#![forbid(unsafe_code)]

pub mod duration;
pub mod keys;
pub mod plan;
pub mod ring;
pub mod token;

pub mod cli;
pub mod controller;
pub mod crd;
pub mod service;
pub mod telemetry;
