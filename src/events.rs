//! What happens during a build, told to whoever watches it: the [`Event`] vocabulary, the
//! [`Monitor`] that receives events, and a source's [`SourceProgress`].
//!
//! It sits below both `pipeline` (modules starting, printing, finishing) and `sources` (files
//! being fetched), so neither has to import the other to report progress. Monitors only
//! watch: decisions about the build (such as which trees to commit) are the
//! [`crate::pipeline::CommitPolicy`]'s.

use crate::id::ObjectId;
use crate::json::Value;
use crate::modules::ModuleKind;

/// What happens during a build, for progress displays, logs and D-Bus signals.
#[derive(Debug)]
pub enum Event<'a> {
    /// A stage or assembler is about to run. `index` counts from 0 within its pipeline;
    /// `depth` is 0 for the main pipeline, 1 for its build pipeline, and so on.
    ModuleStarted {
        kind: ModuleKind,
        name: &'a str,
        id: &'a ObjectId,
        options: &'a Value,
        depth: usize,
        index: usize,
        total: usize,
    },
    /// One line the module printed.
    Output { line: &'a str },
    /// The module ended. A module of HEAD's protocol may have reported an `error` (HEAD's
    /// `{"type": "exception", "data": ...}`) and `metadata`.
    ModuleFinished {
        kind: ModuleKind,
        name: &'a str,
        id: &'a ObjectId,
        success: bool,
        seconds: f64,
        error: Option<&'a Value>,
        metadata: Option<&'a Value>,
    },
    /// A pipeline of a v2 manifest starts building (its stages follow).
    PipelineStarted {
        name: &'a str,
        id: Option<&'a ObjectId>,
        stages: usize,
    },
    /// A pipeline of a v2 manifest is done.
    PipelineFinished { name: &'a str, success: bool },
    /// A source starts fetching `files` files, before any stage runs.
    SourceStarted { name: &'a str, files: usize },
    /// Files and bytes a source has in place so far.
    SourceProgress {
        name: &'a str,
        progress: SourceProgress,
    },
    /// A source is done fetching (when `success` is false the build stops with its error).
    SourceFinished {
        name: &'a str,
        success: bool,
        seconds: f64,
    },
}

/// Where a source stands while it fetches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceProgress {
    pub files_done: u64,
    pub files_total: u64,
    pub bytes_done: u64,
    /// What is known so far (it can grow as responses arrive).
    pub bytes_total: u64,
}

/// Receives [`Event`]s.
pub trait Monitor {
    fn event(&mut self, event: Event<'_>);
}

/// A monitor that ignores everything.
pub struct NullMonitor;

impl Monitor for NullMonitor {
    fn event(&mut self, _: Event<'_>) {}
}
