//! The one error type of the stages: every failure a stage can report, each rendering as a
//! message that names what went wrong (the option, the path in the tree, the tool).
//!
//! `main` prefixes it with the stage name and exits 1; nothing here panics on user input.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why a path from a manifest (or a symlink in the tree) cannot be used inside the tree.
#[derive(Debug)]
pub enum TreePathError {
    /// A `..` (possibly from a relative symlink) would leave the tree.
    Escapes { path: String },
    /// More than [`crate::tree::MAX_SYMLINKS`] symlinks were followed.
    Loop { path: String },
    /// The path could not be inspected.
    Io { path: String, source: io::Error },
}

impl fmt::Display for TreePathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TreePathError::Escapes { path } => {
                write!(f, "path {path:?} points outside the tree")
            }
            TreePathError::Loop { path } => {
                write!(
                    f,
                    "path {path:?}: too many levels of symbolic links in the tree"
                )
            }
            TreePathError::Io { path, source } => write!(f, "path {path:?}: {source}"),
        }
    }
}

/// A stage failure.
#[derive(Debug)]
pub enum StageError {
    /// The JSON on stdin is not a stage argument object.
    Arguments(String),
    /// An option is missing, has the wrong type or an invalid value.
    Option { option: String, message: String },
    /// A path could not be resolved inside the tree.
    Path(TreePathError),
    /// A file operation failed.
    Io {
        what: String,
        path: PathBuf,
        source: io::Error,
    },
    /// An external tool could not be started.
    Spawn { program: String, source: io::Error },
    /// An external tool ran and failed.
    Tool { program: String, status: String },
    /// Anything else, with its full message.
    Other(String),
}

impl StageError {
    /// An invalid option value.
    pub fn option(option: impl Into<String>, message: impl Into<String>) -> Self {
        StageError::Option {
            option: option.into(),
            message: message.into(),
        }
    }

    /// A failed file operation (`what` is a verb phrase such as "cannot write").
    pub fn io(what: impl Into<String>, path: impl Into<PathBuf>, source: io::Error) -> Self {
        StageError::Io {
            what: what.into(),
            path: path.into(),
            source,
        }
    }
}

impl fmt::Display for StageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StageError::Arguments(m) => write!(f, "invalid stage arguments on stdin: {m}"),
            StageError::Option { option, message } => write!(f, "option {option:?}: {message}"),
            StageError::Path(e) => e.fmt(f),
            StageError::Io { what, path, source } => {
                write!(f, "{what} {}: {source}", path.display())
            }
            StageError::Spawn { program, source } => {
                if source.kind() == io::ErrorKind::NotFound {
                    write!(f, "cannot run {program}: not found (is it installed?)")
                } else {
                    write!(f, "cannot run {program}: {source}")
                }
            }
            StageError::Tool { program, status } => write!(f, "{program} failed: {status}"),
            StageError::Other(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for StageError {}

impl From<TreePathError> for StageError {
    fn from(e: TreePathError) -> Self {
        StageError::Path(e)
    }
}
