//! What a libdir provides: the stages, assemblers, runners and sources it holds (and HEAD's
//! inputs, devices and mounts), what each module says about itself (summary, options schema,
//! v2 schema, capabilities, network use), and which runner to use for a given OS.
//!
//! - `index`: the layout (`stages/NAME`, `assemblers/NAME`, `runners/NAME`, `sources/NAME`,
//!   `inputs/NAME`, `devices/NAME`, `mounts/NAME`, each an executable file or a symlink to
//!   one), finding and listing modules.
//! - `meta`: a module's `NAME.meta.json` (the protocol's `Meta`) and its options schema.
//! - `capabilities`: what a module gets beyond the sandbox's default capabilities (its
//!   meta file's `capabilities`, or a table for osbuild v10's own modules).
//! - `python`: the same, scraped from a foreign Python module (osbuild v10's) without
//!   running it.
//! - `runner`: the runner for this host or a requested OS, with HEAD's fallback rule.
//! - `os_release`: the host's distribution, from os-release(5).

mod capabilities;
mod index;
mod meta;
mod os_release;
mod python;
mod runner;

pub use index::{Index, ModuleKind, DEFAULT_LIBDIR};
pub(crate) use meta::options_validator;
pub use meta::ModuleError;
pub use os_release::describe_os;
pub use osbuild_protocol::meta::Meta;
pub use runner::RunnerError;
