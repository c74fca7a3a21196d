//! osbuild: a pipeline-based OS image builder, the engine behind `osbuild`, `osbuildd` and
//! `osbuildctl`.
//!
//! A v1 manifest describes a pipeline (an optional build pipeline, stages, an optional
//! assembler). Every stage and assembler is an executable from the libdir, run in a sandboxed
//! build root; results are cached in a content-addressed object store. v2 manifests (osbuild
//! HEAD's format) are loaded, validated, given HEAD's ids and built by `osbuild` (`pipeline::v2`).
//!
//! `ARCHITECTURE.md` at the top of the repository maps the crates, the layers and the
//! protocols. The messages shared with the modules are in `osbuild_protocol`; every syscall
//! that needs `unsafe` is in `osbuild_sys`.
//!
//! Where to look:
//! - [`id`]: typed identifiers (stage/tree/output ids, treesums).
//! - [`json`] (= `osbuild_protocol::json`): JSON values and the encoder byte-identical to
//!   Python's `json.dumps(sort_keys=True)`, on which every id rests.
//! - [`modules`]: what a libdir provides (stages, assemblers, runners, sources, and HEAD's
//!   inputs, devices and mounts; their schemas) and runner selection.
//! - [`manifest`]: loading and validating v1 and v2 manifests, computing ids, `--inspect`.
//! - [`store`]: the object store (objects, refs, treesum, copy-on-write objects, pruning).
//! - [`mount`]: bind mounts with owners, and the private mount namespace.
//! - [`buildroot`]: the bubblewrap sandbox and the API sockets a stage talks to.
//! - [`hostsvc`]: HEAD's host services for a v2 stage's devices (loopback) and mounts
//!   (ext4, xfs, fat, btrfs, bind, noop), released in reverse on every way out.
//! - [`events`]: what happens during a build ([`events::Event`]), for whoever watches it.
//! - [`pipeline`]: running a build request: caching, checkpoints, results.
//! - [`sources`]: running the libdir's sources on the host: fetching before the build, and the
//!   sources API stages call.
//! - [`service`]: the `osbuildd` D-Bus service (jobs, polkit, signals, journal).
//! - [`cli`]: the command-line front ends (`osbuild`, `osbuildctl`).
//! - [`mkmanifest`]: the manifest generators behind `osbuild-mkmanifest-debian` (apt) and
//!   `osbuild-mkmanifest-dnf` (rpm repositories pinned by their metadata checksum).

#![forbid(unsafe_code)]

pub mod buildroot;
pub mod cli;
pub mod events;
pub mod hostsvc;
pub mod id;
pub mod manifest;
pub mod mkmanifest;
pub mod modules;
pub mod mount;
pub mod pipeline;
pub mod service;
pub mod sources;
pub mod store;

pub use osbuild_protocol::json;
