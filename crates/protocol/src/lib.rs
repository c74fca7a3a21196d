//! The contracts between the osbuild engine and the modules it runs (stages, assemblers,
//! runners, sources): where things are inside the sandbox, and every message that crosses
//! between them, as serde types and constants spelled once for both sides.
//!
//! The wire formats are osbuild v10's, byte for byte, so v10's own Python modules keep
//! working with this engine and these modules with v10's; each module's tests pin the bytes.
//!
//! - [`paths`]: in-sandbox directories and API socket names.
//! - [`args`]: a stage's or an assembler's arguments on stdin.
//! - [`runner`]: how a runner is called (a module, or the build root's set-up alone).
//! - [`stdio`]: the runner's `setup-stdio` call on the `osbuild` socket.
//! - [`sources_api`]: a stage asking the host's sources for files.
//! - [`remoteloop`]: an assembler asking the host for a loop device.
//! - [`source`]: a source executable's progress lines.
//! - [`meta`]: `NAME.meta.json`, what a module says about itself (summary, schema, network).
//! - [`json`]: JSON as Python's `json` module reads and writes it (ids rest on it).
//! - [`result`]: a build's result, as `osbuild --json` prints it.

#![forbid(unsafe_code)]

pub mod args;
pub mod json;
pub mod meta;
pub mod paths;
pub mod remoteloop;
pub mod result;
pub mod runner;
pub mod source;
pub mod sources_api;
pub mod stdio;
