//! How the engine calls a runner inside a build root: `RUNNER MODULE [ARG...]` sets the build
//! root up when it was not yet (its `/etc`), then executes the module; `RUNNER --set-up` only
//! sets it up and exits, so the engine can do that once per build root, apart from any
//! module, and keep the result.

/// The argument of a set-up-only run.
pub const SET_UP_ARG: &str = "--set-up";
