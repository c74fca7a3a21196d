//! Fuzzing on stable Rust for every parser that reads what a client, a manifest or a sandbox
//! sends: the JSON parser, the manifest loader (v1 and v2), `Build`'s options, the sources
//! API, setup-stdio, a source's request and reply, the module arguments, the build result and
//! remoteloop. No nightly, no cargo-fuzz: seeds from this repository, a deterministic mutator,
//! and a harness that catches panics, hangs, crashes and growing memory.
//!
//! - `rng`: xorshift64*, seeded per input, so any input is made again from (seed, iteration).
//! - `corpus`: the seeds (embedded repository files, golden wire texts) and the token dictionary.
//! - `mutate`: byte mutations and a random JSON generator.
//! - `dbus`: bytes read as choices that build an `a{sv}` dictionary of every D-Bus type.
//! - `libdir`: the throwaway libdir the manifest loader checks against.
//! - `targets`: the targets, their seeds and properties; the input [`targets::Generator`].
//! - `worker`: running inputs on a 2 MiB stack under `catch_unwind` with a hang watchdog.
//! - `campaign`: one worker process per target, failures written for `--replay`, the report.
//!
//! `bench/fuzz.sh` runs the full campaign (100,000 inputs per target); `tests/short.rs` runs
//! a short one in CI.

#![forbid(unsafe_code)]

pub mod campaign;
pub mod corpus;
pub mod dbus;
pub mod libdir;
pub mod mutate;
pub mod rng;
pub mod targets;
pub mod worker;
