//! The errors `org.osbuild.Builder1` replies with: one enum at the D-Bus seam, each message
//! saying what the caller can do about it (details stay in the journal; never a secret).

use zbus::DBusError;

/// Every error name of the interface: `org.osbuild.Builder1.Error.<Variant>`.
#[derive(Debug, DBusError)]
#[zbus(prefix = "org.osbuild.Builder1.Error")]
pub enum Error {
    /// A bus error, or a standard `org.freedesktop.DBus.Error.*` (AccessDenied,
    /// InteractiveAuthorizationRequired) passed through under its own name.
    #[zbus(error)]
    ZBus(zbus::Error),
    /// The manifest is not valid JSON or not a valid v1 manifest; one line per problem, each
    /// with its JSON path.
    InvalidManifest(String),
    /// The manifest is larger than the daemon accepts.
    ManifestTooLarge(String),
    /// An option of `Build` is unknown or has the wrong type.
    InvalidOption(String),
    /// A `--checkpoint` names no stage of the manifest.
    UnknownCheckpoint(String),
    /// No runner in the libdir fits the build.
    RunnerNotFound(String),
    /// The caller has as many unfinished jobs as one user may have.
    TooManyJobs(String),
    /// No such job (it never existed, or it finished a while ago and was forgotten).
    NoSuchJob(String),
    /// No such object or output in the store, or no such file in it.
    NoSuchObject(String),
    /// The job is already finished.
    NotRunning(String),
    /// The daemon failed to do what it should have been able to do (see the journal).
    Failed(String),
}

impl Error {
    /// `org.freedesktop.DBus.Error.AccessDenied`, what clients expect for a refusal.
    pub fn access_denied(msg: impl Into<String>) -> Self {
        Error::ZBus(zbus::Error::FDO(Box::new(zbus::fdo::Error::AccessDenied(
            msg.into(),
        ))))
    }

    /// `org.freedesktop.DBus.Error.InteractiveAuthorizationRequired`: polkit would allow it after
    /// authentication, which the message did not allow.
    pub fn interactive_required(msg: impl Into<String>) -> Self {
        Error::ZBus(zbus::Error::FDO(Box::new(
            zbus::fdo::Error::InteractiveAuthorizationRequired(msg.into()),
        )))
    }
}

impl From<zbus::fdo::Error> for Error {
    fn from(e: zbus::fdo::Error) -> Self {
        Error::ZBus(zbus::Error::FDO(Box::new(e)))
    }
}

/// The result type of the interface methods.
pub type Result<T> = std::result::Result<T, Error>;
