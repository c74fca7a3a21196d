//! The errors `org.osbuild.Builder1` replies with: one enum at the D-Bus seam, each message
//! saying what the caller can do about it (details stay in the journal; never a secret).

use zbus::message::{Header, Message};
use zbus::names::ErrorName;
use zbus::DBusError;

/// Every error of the interface: `org.osbuild.Builder1.Error.<Variant>`, except refusals,
/// which keep the standard names clients know (`org.freedesktop.DBus.Error.AccessDenied`,
/// `...InteractiveAuthorizationRequired`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A standard error, replied under its own name.
    #[error("{0}")]
    Fdo(zbus::fdo::Error),
    /// A bus failure inside the daemon (replied as `Failed`).
    #[error("{0}")]
    Bus(zbus::Error),
    /// The manifest is not valid JSON or not a valid manifest; one line per problem, each
    /// with its JSON path.
    #[error("{0}")]
    InvalidManifest(String),
    /// The manifest is larger than the daemon accepts.
    #[error("{0}")]
    ManifestTooLarge(String),
    /// An option of `Build` is unknown or has the wrong type.
    #[error("{0}")]
    InvalidOption(String),
    /// A checkpoint names no stage of the manifest.
    #[error("{0}")]
    UnknownCheckpoint(String),
    /// An export names no pipeline of the (v2) manifest.
    #[error("{0}")]
    UnknownExport(String),
    /// No runner in the libdir fits the build.
    #[error("{0}")]
    RunnerNotFound(String),
    /// The caller has as many unfinished jobs as one user may have.
    #[error("{0}")]
    TooManyJobs(String),
    /// The daemon is shutting down and takes no new job.
    #[error("{0}")]
    ShuttingDown(String),
    /// No such job (it never existed, or it finished a while ago and was forgotten).
    #[error("{0}")]
    NoSuchJob(String),
    /// No such object or output in the store, or no such file in it.
    #[error("{0}")]
    NoSuchObject(String),
    /// The job is already finished.
    #[error("{0}")]
    NotRunning(String),
    /// The job has not finished yet, so it has no result.
    #[error("{0}")]
    NotFinished(String),
    /// The daemon failed to do what it should have been able to do (see the journal).
    #[error("{0}")]
    Failed(String),
}

impl Error {
    /// `org.freedesktop.DBus.Error.AccessDenied`, what clients expect for a refusal.
    pub fn access_denied(msg: impl Into<String>) -> Self {
        Error::Fdo(zbus::fdo::Error::AccessDenied(msg.into()))
    }

    /// `org.freedesktop.DBus.Error.InteractiveAuthorizationRequired`: polkit would allow it after
    /// authentication, which the message did not allow.
    pub fn interactive_required(msg: impl Into<String>) -> Self {
        Error::Fdo(zbus::fdo::Error::InteractiveAuthorizationRequired(
            msg.into(),
        ))
    }
}

impl From<zbus::fdo::Error> for Error {
    fn from(e: zbus::fdo::Error) -> Self {
        Error::Fdo(e)
    }
}

impl From<zbus::Error> for Error {
    fn from(e: zbus::Error) -> Self {
        match e {
            zbus::Error::FDO(e) => Error::Fdo(*e),
            other => Error::Bus(other),
        }
    }
}

impl DBusError for Error {
    fn create_reply(&self, call: &Header<'_>) -> zbus::Result<Message> {
        let desc = self.description().unwrap_or_default().to_owned();
        Message::error(call, self.name()).build(&(desc,))
    }

    fn name(&self) -> ErrorName<'_> {
        let name = match self {
            Error::Fdo(e) => return e.name(),
            Error::Bus(_) | Error::Failed(_) => "org.osbuild.Builder1.Error.Failed",
            Error::InvalidManifest(_) => "org.osbuild.Builder1.Error.InvalidManifest",
            Error::ManifestTooLarge(_) => "org.osbuild.Builder1.Error.ManifestTooLarge",
            Error::InvalidOption(_) => "org.osbuild.Builder1.Error.InvalidOption",
            Error::UnknownCheckpoint(_) => "org.osbuild.Builder1.Error.UnknownCheckpoint",
            Error::UnknownExport(_) => "org.osbuild.Builder1.Error.UnknownExport",
            Error::RunnerNotFound(_) => "org.osbuild.Builder1.Error.RunnerNotFound",
            Error::TooManyJobs(_) => "org.osbuild.Builder1.Error.TooManyJobs",
            Error::ShuttingDown(_) => "org.osbuild.Builder1.Error.ShuttingDown",
            Error::NoSuchJob(_) => "org.osbuild.Builder1.Error.NoSuchJob",
            Error::NoSuchObject(_) => "org.osbuild.Builder1.Error.NoSuchObject",
            Error::NotRunning(_) => "org.osbuild.Builder1.Error.NotRunning",
            Error::NotFinished(_) => "org.osbuild.Builder1.Error.NotFinished",
        };
        ErrorName::from_static_str_unchecked(name)
    }

    fn description(&self) -> Option<&str> {
        match self {
            Error::Fdo(e) => e.description(),
            Error::Bus(_) => Some("internal bus error; see the daemon's journal"),
            Error::InvalidManifest(m)
            | Error::ManifestTooLarge(m)
            | Error::InvalidOption(m)
            | Error::UnknownCheckpoint(m)
            | Error::UnknownExport(m)
            | Error::RunnerNotFound(m)
            | Error::TooManyJobs(m)
            | Error::ShuttingDown(m)
            | Error::NoSuchJob(m)
            | Error::NoSuchObject(m)
            | Error::NotRunning(m)
            | Error::NotFinished(m)
            | Error::Failed(m) => Some(m),
        }
    }
}

/// The result type of the interface methods.
pub type Result<T> = std::result::Result<T, Error>;
