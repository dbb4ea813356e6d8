//! The rotation plan.
