//! A source executable's side channel: with [`PROGRESS_ENV`]`=1` in its environment it
//! prints progress lines on stderr, each [`PROGRESS_PREFIX`] followed by
//! `{"files_done":N,"files_total":N,"bytes_done":N,"bytes_total":N}`.

/// The environment variable that turns progress lines on (the engine sets it to `1`).
pub const PROGRESS_ENV: &str = "OSBUILD_SOURCE_PROGRESS";
/// The prefix of a progress line.
pub const PROGRESS_PREFIX: &str = "osbuild-source-progress ";
