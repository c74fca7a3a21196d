//! The command-line front ends; `src/bin/*` only call into these.

pub mod osbuild;
pub mod osbuildctl;
