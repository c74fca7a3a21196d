//! The client side of `org.osbuild.Builder1`: proxies for the manager ([`Builder1Proxy`]) and
//! for job objects ([`JobProxy`]), with the same dictionary types as the daemon
//! ([`super::wire`]). `osbuildctl` uses them, and so could any other client; the tests check
//! them against `dbus/org.osbuild.Builder1.xml` like the daemon.

use zbus::{ObjectPath, OwnedObjectPath};

use super::wire::{BuildOptions, ObjectInfo};

/// The bus interface, as a client sees it.
#[zbus::proxy(
    interface = "org.osbuild.Builder1",
    default_service = "org.osbuild.Builder1",
    default_path = "/org/osbuild/Builder1"
)]
pub trait Builder1 {
    fn build(&self, manifest: &str, options: &BuildOptions) -> zbus::Result<OwnedObjectPath>;
    fn cancel(&self, job: &ObjectPath<'_>) -> zbus::Result<()>;
    fn list_jobs(&self) -> zbus::Result<Vec<OwnedObjectPath>>;
    fn list_objects(&self) -> zbus::Result<Vec<ObjectInfo>>;
    fn prune(&self, budget: u64) -> zbus::Result<u64>;
    fn verify(&self) -> zbus::Result<(bool, String)>;
    fn open_output(&self, id: &str, path: &str) -> zbus::Result<zbus::OwnedFd>;
    fn export_output(&self, id: &str, fd: zbus::Fd<'_>) -> zbus::Result<()>;
    #[zbus(signal)]
    fn job_new(&self, job: ObjectPath<'_>) -> zbus::Result<()>;
    #[zbus(signal)]
    fn stage_started(
        &self,
        job: ObjectPath<'_>,
        stage_id: &str,
        name: &str,
        index: u32,
        total: u32,
        pipeline: &str,
    ) -> zbus::Result<()>;
    #[zbus(signal)]
    fn stage_output(&self, job: ObjectPath<'_>, stage_id: &str, line: &str) -> zbus::Result<()>;
    #[zbus(signal)]
    fn stage_finished(
        &self,
        job: ObjectPath<'_>,
        stage_id: &str,
        name: &str,
        success: bool,
        seconds: f64,
        pipeline: &str,
    ) -> zbus::Result<()>;
    #[zbus(signal)]
    fn job_finished(&self, job: ObjectPath<'_>, success: bool, result: &str) -> zbus::Result<()>;
}

/// A job object, as a client sees it.
#[zbus::proxy(
    interface = "org.osbuild.Builder1.Job",
    default_service = "org.osbuild.Builder1"
)]
pub trait Job {
    #[zbus(property)]
    fn state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn progress(&self) -> zbus::Result<f64>;
    #[zbus(property)]
    fn owner_uid(&self) -> zbus::Result<u32>;
    #[zbus(property)]
    fn tree_id(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn output_id(&self) -> zbus::Result<String>;
    fn cancel(&self) -> zbus::Result<()>;
    fn get_result(&self) -> zbus::Result<String>;
    #[zbus(signal)]
    fn download_progress(
        &self,
        source: &str,
        bytes_done: u64,
        bytes_total: u64,
        files_done: u64,
        files_total: u64,
    ) -> zbus::Result<()>;
}

/// The D-Bus error name and message of a failed call, if it was an error reply.
pub fn error_reply(e: &zbus::Error) -> Option<(String, String)> {
    match e {
        zbus::Error::MethodError(name, msg, _) => {
            Some((name.to_string(), msg.clone().unwrap_or_default()))
        }
        zbus::Error::FDO(e) => Some((
            zbus::DBusError::name(e.as_ref()).to_string(),
            zbus::DBusError::description(e.as_ref())
                .unwrap_or_default()
                .to_owned(),
        )),
        _ => None,
    }
}
