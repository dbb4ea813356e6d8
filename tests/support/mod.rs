//! Helpers shared by the integration tests; a test file includes them with `mod support;`.
//!
//! Each test binary compiles its own copy of this module and uses a different part of it, hence
//! the allowances below.
#![allow(dead_code, unused_imports)]

pub mod controlplane;
pub mod operator;

pub use controlplane::*;
