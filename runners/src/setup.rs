//! The per-OS setup a runner does in the build root before it executes the stage.
//!
//! The steps are osbuild's (v10 runners and HEAD's `osbuild.util.runners`), kept as data
//! ([`Flavor::steps`]) and run against a root directory so they can be tested outside a
//! sandbox. They mutate the *sandbox's* root filesystem: `/etc` there is private to the build
//! root sandbox, never the host's or the tree's. A tool the build root does not have (looked
//! up in `/usr/sbin` then `/usr/bin` under the root) is skipped, not an error.
//!
//! Which failures are fatal follows osbuild: `ldconfig` and `systemd-sysusers` must succeed,
//! the CA-trust tools and `systemd-tmpfiles --create` may fail.
//!
//! What the tools print is not the stage's output: it is captured. A fatal failure carries it
//! in its [`SetupError`] (the runner prints it with the error); what tolerated failures printed
//! (in a sandbox, tmpfiles always warns about the missing machine id) is kept in
//! [`Setup::log`], which the runner leaves in the build root's `/etc` for whoever debugs it.
//!
//! `systemd-tmpfiles` runs for `/etc` only (`--prefix=/etc`): `/etc` is the one directory of
//! the build root that outlives a sandbox (`/var`, `/run` and `/tmp` are each module's own), so
//! entries elsewhere only ever reached the first module of a pipeline.
//!
//! Differences from osbuild, on purpose: the placeholder `/etc/machine-id` is not deleted
//! after the stage (the runner `exec`s the stage, and the sandbox's `/etc` disappears with
//! it); `rhel81`/`rhel82` no longer rewrite `/etc/os-release` (HEAD dropped it); an existing
//! `/etc/crypto-policies/back-ends` or CA link is left alone instead of aborting.

use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::names::Flavor;

/// One setup step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Touch `/etc/ld.so.conf` (writing these directories into it when there are any), then
    /// run `ldconfig`; failure is fatal.
    Ldconfig(&'static [&'static str]),
    /// `systemd-sysusers`; failure is fatal and prints its output.
    Sysusers,
    /// `update-ca-trust extract` with the directories and `ca-bundle.crt` link it expects;
    /// may fail.
    UpdateCaTrust,
    /// Write `/etc/ca-certificates.conf` from `/usr/share/ca-certificates`, then
    /// `update-ca-certificates`; may fail.
    UpdateCaCertificates,
    /// Write the placeholder `/etc/machine-id` (`ffff…`, mode 0444) when there is none.
    MachineId,
    /// `systemd-tmpfiles --create --prefix=/etc`; may fail.
    Tmpfiles,
    /// Remove `/etc/nsswitch.conf` (nss-resolve and friends do not work in a sandbox).
    Nsswitch,
    /// Copy `/usr/share/crypto-policies/back-ends/DEFAULT` to
    /// `/etc/crypto-policies/back-ends`, so rpm/sequoia have a crypto policy.
    CryptoPolicies,
    /// Link `/etc/alternatives/python3` to `/usr/bin/python3.6` (RHEL 8 Python stages).
    PythonAlternatives,
    /// Write a minimal `/etc/passwd` (root only) when there is none.
    MinimalPasswd,
}

impl Step {
    /// The steps that build the CA trust store (only a sandbox with a network uses it).
    pub fn is_ca_trust(self) -> bool {
        matches!(self, Step::UpdateCaTrust | Step::UpdateCaCertificates)
    }
}

impl Flavor {
    /// The steps of this flavour, in order.
    pub fn steps(self) -> &'static [Step] {
        use Step::*;
        match self {
            Flavor::Linux => &[MinimalPasswd],
            Flavor::Ubuntu => &[
                Ldconfig(&[]),
                Sysusers,
                UpdateCaTrust,
                UpdateCaCertificates,
                Tmpfiles,
                Nsswitch,
            ],
            Flavor::Fedora30 => &[
                Ldconfig(&[]),
                Sysusers,
                UpdateCaTrust,
                UpdateCaCertificates,
                MachineId,
                Tmpfiles,
                Nsswitch,
            ],
            Flavor::Fedora38 => &[
                Ldconfig(&[]),
                Sysusers,
                UpdateCaTrust,
                UpdateCaCertificates,
                MachineId,
                Tmpfiles,
                Nsswitch,
                CryptoPolicies,
            ],
            Flavor::Rhel8 => &[
                Ldconfig(&[]),
                Sysusers,
                UpdateCaTrust,
                UpdateCaCertificates,
                MachineId,
                Tmpfiles,
                Nsswitch,
                CryptoPolicies,
                PythonAlternatives,
            ],
            Flavor::Rhel7 => &[Ldconfig(&["/usr/lib64/iscsi"]), Nsswitch],
        }
    }

    /// Environment variables the stage gets on top of the runner's (HEAD's `quirks()`).
    pub fn extra_env(self) -> &'static [(&'static str, &'static str)] {
        if self == Flavor::Rhel8 && cfg!(target_arch = "aarch64") {
            // qemu-img can hang with several coroutines on aarch64 (launchpad #1805256).
            &[("OSBUILD_QEMU_IMG_COROUTINES", "1")]
        } else {
            &[]
        }
    }
}

/// A fatal setup failure.
#[derive(Debug)]
pub enum SetupError {
    /// A required tool ran and failed; `output` is what it printed.
    ToolFailed {
        /// The tool's path.
        tool: PathBuf,
        /// How it ended.
        status: String,
        /// Its combined stdout and stderr.
        output: String,
    },
    /// A file operation failed.
    Io {
        /// What was being done, naming the path.
        what: String,
        /// The OS error.
        source: io::Error,
    },
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::ToolFailed { tool, status, .. } => {
                write!(f, "{} failed ({status})", tool.display())
            }
            SetupError::Io { what, source } => write!(f, "{what}: {source}"),
        }
    }
}

impl std::error::Error for SetupError {}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> SetupError {
    let what = what.into();
    move |source| SetupError::Io { what, source }
}

const MACHINE_ID: &str = "ffffffffffffffffffffffffffffffff\n";
const MINIMAL_PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n";

/// Runs setup steps against a root directory (`/` inside the sandbox).
#[derive(Debug, Clone)]
pub struct Setup {
    root: PathBuf,
    log: std::cell::RefCell<String>,
}

impl Setup {
    /// A setup acting on `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Setup {
            root: root.into(),
            log: Default::default(),
        }
    }

    /// What the tools whose failure is tolerated printed when they failed, each after a line
    /// naming the command and how it ended; empty when they all succeeded.
    pub fn log(&self) -> String {
        self.log.borrow().clone()
    }

    fn path(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    /// Finds a tool in `/usr/sbin` or `/usr/bin` under the root.
    pub fn which(&self, tool: &str) -> Option<PathBuf> {
        ["/usr/sbin", "/usr/bin"]
            .iter()
            .map(|dir| self.path(dir).join(tool))
            .find(|p| is_executable(p))
    }

    /// Runs every step in order; stops at the first fatal failure.
    pub fn run_all(&self, steps: &[Step]) -> Result<(), SetupError> {
        steps.iter().try_for_each(|s| self.run(*s))
    }

    /// Runs one step.
    pub fn run(&self, step: Step) -> Result<(), SetupError> {
        match step {
            Step::Ldconfig(dirs) => self.ldconfig(dirs),
            Step::Sysusers => self.sysusers(),
            Step::UpdateCaTrust => self.update_ca_trust(),
            Step::UpdateCaCertificates => self.update_ca_certificates(),
            Step::MachineId => self.write_if_absent("/etc/machine-id", MACHINE_ID, 0o444),
            Step::Tmpfiles => {
                self.run_allowed_to_fail("systemd-tmpfiles", &["--create", "--prefix=/etc"]);
                Ok(())
            }
            Step::Nsswitch => match fs::remove_file(self.path("/etc/nsswitch.conf")) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    Err(io_err("removing /etc/nsswitch.conf")(e))
                }
                _ => Ok(()),
            },
            Step::CryptoPolicies => self.crypto_policies(),
            Step::PythonAlternatives => self.python_alternatives(),
            Step::MinimalPasswd => self.write_if_absent("/etc/passwd", MINIMAL_PASSWD, 0o644),
        }
    }

    fn ldconfig(&self, dirs: &[&str]) -> Result<(), SetupError> {
        let Some(tool) = self.which("ldconfig") else {
            return Ok(());
        };
        let conf = self.path("/etc/ld.so.conf");
        if let Some(parent) = conf.parent() {
            fs::create_dir_all(parent).map_err(io_err("creating /etc"))?;
        }
        let mut file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&conf)
            .map_err(io_err("creating /etc/ld.so.conf"))?;
        if !dirs.is_empty() {
            let text: String = dirs.iter().map(|d| format!("{d}\n")).collect();
            file.set_len(0)
                .and_then(|()| io::Write::write_all(&mut file, text.as_bytes()))
                .map_err(io_err("writing /etc/ld.so.conf"))?;
        }
        drop(file);
        run_required(tool)
    }

    fn sysusers(&self) -> Result<(), SetupError> {
        match self.which("systemd-sysusers") {
            Some(tool) => run_required(tool),
            None => Ok(()),
        }
    }

    fn update_ca_trust(&self) -> Result<(), SetupError> {
        if self.which("update-ca-trust").is_none() {
            return Ok(());
        }
        // update-ca-trust writes its bundles here and expects the classic bundle link.
        for dir in ["/etc/pki/ca-trust/extracted/pem", "/etc/pki/tls/certs"] {
            fs::create_dir_all(self.path(dir)).map_err(io_err(format!("creating {dir}")))?;
        }
        let link = self.path("/etc/pki/tls/certs/ca-bundle.crt");
        match std::os::unix::fs::symlink("/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", link)
        {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                return Err(io_err("linking /etc/pki/tls/certs/ca-bundle.crt")(e))
            }
            _ => {}
        }
        self.run_allowed_to_fail("update-ca-trust", &["extract"]);
        Ok(())
    }

    fn update_ca_certificates(&self) -> Result<(), SetupError> {
        if self.which("update-ca-certificates").is_none() {
            return Ok(());
        }
        fs::create_dir_all(self.path("/etc/ssl/certs"))
            .map_err(io_err("creating /etc/ssl/certs"))?;
        // Enable every certificate the build root ships (Debian's default selection).
        let mut names = Vec::new();
        let share = self.path("/usr/share/ca-certificates");
        if share.is_dir() {
            list_files(&share, "", &mut names)
                .map_err(io_err("listing /usr/share/ca-certificates"))?;
        }
        names.sort();
        let text: String = names.iter().map(|n| format!("{n}\n")).collect();
        fs::write(self.path("/etc/ca-certificates.conf"), text)
            .map_err(io_err("writing /etc/ca-certificates.conf"))?;
        self.run_allowed_to_fail("update-ca-certificates", &[]);
        Ok(())
    }

    fn crypto_policies(&self) -> Result<(), SetupError> {
        let src = self.path("/usr/share/crypto-policies/back-ends/DEFAULT");
        let dst = self.path("/etc/crypto-policies/back-ends");
        if !src.is_dir() || dst.exists() {
            return Ok(());
        }
        copy_tree(&src, &dst).map_err(io_err("copying the crypto-policies back-ends"))
    }

    fn python_alternatives(&self) -> Result<(), SetupError> {
        if !self.path("/usr/bin/python3.6").exists() {
            return Ok(());
        }
        fs::create_dir_all(self.path("/etc/alternatives"))
            .map_err(io_err("creating /etc/alternatives"))?;
        match std::os::unix::fs::symlink(
            "/usr/bin/python3.6",
            self.path("/etc/alternatives/python3"),
        ) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                Err(io_err("linking /etc/alternatives/python3")(e))
            }
            _ => Ok(()),
        }
    }

    fn write_if_absent(&self, abs: &str, text: &str, mode: u32) -> Result<(), SetupError> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.path(abs);
        if path.symlink_metadata().is_ok() {
            return Ok(());
        }
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io_err("creating /etc"))?;
        }
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .map_err(io_err(format!("creating {abs}")))?;
        io::Write::write_all(&mut f, text.as_bytes()).map_err(io_err(format!("writing {abs}")))?;
        // The umask may have masked bits off; the mode is part of the contract.
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .map_err(io_err(format!("setting the mode of {abs}")))
    }

    /// Runs a tool whose failure osbuild ignores; a failure only goes to [`Setup::log`].
    fn run_allowed_to_fail(&self, tool: &str, args: &[&str]) {
        let Some(path) = self.which(tool) else {
            return;
        };
        let shown = std::iter::once(path.display().to_string())
            .chain(args.iter().map(|a| a.to_string()))
            .collect::<Vec<_>>()
            .join(" ");
        let note = match run_captured(&path, args) {
            Ok((s, _)) if s.success() => return,
            Ok((s, output)) => format!("{shown} failed ({s}), continuing:\n{output}"),
            Err(e) => format!("cannot run {shown}: {e}, continuing\n"),
        };
        self.log.borrow_mut().push_str(&note);
    }
}

/// Runs a tool that must succeed, its output captured into the error when it does not.
fn run_required(tool: PathBuf) -> Result<(), SetupError> {
    let (status, output) =
        run_captured(&tool, &[]).map_err(io_err(format!("running {}", tool.display())))?;
    if !status.success() {
        return Err(SetupError::ToolFailed {
            tool,
            status: status.to_string(),
            output,
        });
    }
    Ok(())
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs a tool with stdout and stderr on one pipe, returning its status and output.
fn run_captured(tool: &Path, args: &[&str]) -> io::Result<(std::process::ExitStatus, String)> {
    let (read, write) = osbuild_sys::process::pipe()?;
    let write2 = write.try_clone()?;
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(write))
        .stderr(Stdio::from(write2))
        .spawn()?;
    // The Command dropped its copies of the write end once spawned, so EOF comes at exit.
    let mut out = Vec::new();
    fs::File::from(read).read_to_end(&mut out)?;
    let status = child.wait()?;
    Ok((status, String::from_utf8_lossy(&out).into_owned()))
}

fn list_files(dir: &Path, prefix: &str, out: &mut Vec<String>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let meta = fs::metadata(entry.path())?;
        if meta.is_dir() {
            list_files(&entry.path(), &rel, out)?;
        } else if meta.is_file() {
            out.push(rel);
        }
    }
    Ok(())
}

/// Copies a directory tree, following symlinks (like Python's `shutil.copytree` default).
fn copy_tree(src: &Path, dst: &Path) -> io::Result<()> {
    fs::create_dir_all(dst)?;
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let target = dst.join(entry.file_name());
        if fs::metadata(entry.path())?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(root: &Path, rel: &str, body: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        let text = format!("#!/bin/sh\n{body}\n");
        osbuild_sys::process::write_executable(&p, text.as_bytes(), 0o755).unwrap();
    }

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn which_prefers_sbin_and_needs_exec_bit() {
        let dir = tempfile::tempdir().unwrap();
        let setup = Setup::new(dir.path());
        assert_eq!(setup.which("ldconfig"), None);
        fs::create_dir_all(dir.path().join("usr/bin")).unwrap();
        fs::write(dir.path().join("usr/bin/ldconfig"), "").unwrap();
        assert_eq!(setup.which("ldconfig"), None, "not executable");
        script(dir.path(), "usr/bin/ldconfig", "true");
        assert_eq!(
            setup.which("ldconfig"),
            Some(dir.path().join("usr/bin/ldconfig"))
        );
        script(dir.path(), "usr/sbin/ldconfig", "true");
        assert_eq!(
            setup.which("ldconfig"),
            Some(dir.path().join("usr/sbin/ldconfig"))
        );
    }

    #[test]
    fn missing_tools_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let setup = Setup::new(dir.path());
        for flavor in [
            Flavor::Ubuntu,
            Flavor::Fedora38,
            Flavor::Rhel8,
            Flavor::Rhel7,
        ] {
            setup.run_all(flavor.steps()).unwrap();
        }
        assert!(
            !dir.path().join("etc/ld.so.conf").exists(),
            "no ldconfig, no touch"
        );
        assert!(!dir.path().join("etc/ca-certificates.conf").exists());
    }

    #[test]
    fn sysusers_failure_keeps_its_output() {
        let dir = tempfile::tempdir().unwrap();
        script(
            dir.path(),
            "usr/bin/systemd-sysusers",
            "echo out-line; echo err-line >&2; exit 3",
        );
        let err = Setup::new(dir.path()).run(Step::Sysusers).unwrap_err();
        match &err {
            SetupError::ToolFailed { output, status, .. } => {
                assert_eq!(output, "out-line\nerr-line\n");
                assert!(status.contains('3'), "{status}");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            err.to_string()
                .ends_with("systemd-sysusers failed (exit status: 3)"),
            "{err}"
        );
    }

    #[test]
    fn ldconfig_touches_conf_and_fails_hard() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        script(
            dir.path(),
            "usr/sbin/ldconfig",
            &format!("echo ran >> {}", log.display()),
        );
        let setup = Setup::new(dir.path());
        setup.run(Step::Ldconfig(&[])).unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join("etc/ld.so.conf")).unwrap(),
            ""
        );
        assert_eq!(fs::read_to_string(&log).unwrap(), "ran\n");

        setup.run(Step::Ldconfig(&["/usr/lib64/iscsi"])).unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join("etc/ld.so.conf")).unwrap(),
            "/usr/lib64/iscsi\n"
        );

        script(dir.path(), "usr/sbin/ldconfig", "exit 1");
        assert!(matches!(
            setup.run(Step::Ldconfig(&[])),
            Err(SetupError::ToolFailed { .. })
        ));
    }

    #[test]
    fn tolerated_failures_do_not_stop_setup() {
        let dir = tempfile::tempdir().unwrap();
        script(
            dir.path(),
            "usr/bin/systemd-tmpfiles",
            "echo \"args: $*\"; echo 'Failed to replace specifiers' >&2; exit 65",
        );
        script(dir.path(), "usr/sbin/update-ca-certificates", "exit 1");
        script(dir.path(), "usr/bin/update-ca-trust", "exit 1");
        fs::create_dir_all(dir.path().join("usr/share/ca-certificates/mozilla")).unwrap();
        fs::write(
            dir.path().join("usr/share/ca-certificates/mozilla/B.crt"),
            "b",
        )
        .unwrap();
        fs::write(
            dir.path().join("usr/share/ca-certificates/mozilla/A.crt"),
            "a",
        )
        .unwrap();
        fs::write(dir.path().join("usr/share/ca-certificates/local.crt"), "l").unwrap();
        let setup = Setup::new(dir.path());
        setup.run_all(Flavor::Fedora30.steps()).unwrap();
        let tmpfiles = dir.path().join("usr/bin/systemd-tmpfiles");
        let ca_trust = dir.path().join("usr/bin/update-ca-trust");
        let ca_certs = dir.path().join("usr/sbin/update-ca-certificates");
        assert_eq!(
            setup.log(),
            format!(
                "{} extract failed (exit status: 1), continuing:\n\
                 {} failed (exit status: 1), continuing:\n\
                 {} --create --prefix=/etc failed (exit status: 65), continuing:\n\
                 args: --create --prefix=/etc\nFailed to replace specifiers\n",
                ca_trust.display(),
                ca_certs.display(),
                tmpfiles.display()
            )
        );
        assert_eq!(
            fs::read_to_string(dir.path().join("etc/ca-certificates.conf")).unwrap(),
            "local.crt\nmozilla/A.crt\nmozilla/B.crt\n"
        );
        assert_eq!(
            fs::read_link(dir.path().join("etc/pki/tls/certs/ca-bundle.crt")).unwrap(),
            Path::new("/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem")
        );
        assert!(dir.path().join("etc/ssl/certs").is_dir());
    }

    #[test]
    fn file_steps() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let setup = Setup::new(root);
        fs::create_dir_all(root.join("etc")).unwrap();

        // nsswitch: removed, and absent is fine.
        fs::write(root.join("etc/nsswitch.conf"), "hosts: resolve").unwrap();
        setup.run(Step::Nsswitch).unwrap();
        assert!(!root.join("etc/nsswitch.conf").exists());
        setup.run(Step::Nsswitch).unwrap();

        // machine-id: written 0444 when absent, an existing one is kept.
        setup.run(Step::MachineId).unwrap();
        let id = root.join("etc/machine-id");
        assert_eq!(fs::read_to_string(&id).unwrap(), MACHINE_ID);
        assert_eq!(mode(&id), 0o444);
        fs::remove_file(&id).unwrap();
        fs::write(&id, "0123\n").unwrap();
        setup.run(Step::MachineId).unwrap();
        assert_eq!(fs::read_to_string(&id).unwrap(), "0123\n");

        // passwd: minimal when absent, untouched otherwise.
        setup.run(Step::MinimalPasswd).unwrap();
        assert_eq!(
            fs::read_to_string(root.join("etc/passwd")).unwrap(),
            "root:x:0:0:root:/root:/bin/bash\n"
        );
        assert_eq!(mode(&root.join("etc/passwd")), 0o644);
        fs::write(root.join("etc/passwd"), "custom\n").unwrap();
        setup.run(Step::MinimalPasswd).unwrap();
        assert_eq!(
            fs::read_to_string(root.join("etc/passwd")).unwrap(),
            "custom\n"
        );

        // crypto policies: copied through symlinks, only when the build root has them.
        setup.run(Step::CryptoPolicies).unwrap();
        assert!(!root.join("etc/crypto-policies").exists());
        let default = root.join("usr/share/crypto-policies/back-ends/DEFAULT");
        fs::create_dir_all(root.join("usr/share/crypto-policies/policies")).unwrap();
        fs::write(
            root.join("usr/share/crypto-policies/policies/rpm.txt"),
            "rpm-policy",
        )
        .unwrap();
        fs::create_dir_all(&default).unwrap();
        std::os::unix::fs::symlink("../../policies/rpm.txt", default.join("rpm-sequoia.config"))
            .unwrap();
        setup.run(Step::CryptoPolicies).unwrap();
        let copied = root.join("etc/crypto-policies/back-ends/rpm-sequoia.config");
        assert!(!copied.symlink_metadata().unwrap().is_symlink());
        assert_eq!(fs::read_to_string(copied).unwrap(), "rpm-policy");

        // python alternatives: only with python3.6.
        setup.run(Step::PythonAlternatives).unwrap();
        assert!(!root.join("etc/alternatives").exists());
        script(root, "usr/bin/python3.6", "true");
        setup.run(Step::PythonAlternatives).unwrap();
        setup.run(Step::PythonAlternatives).unwrap();
        assert_eq!(
            fs::read_link(root.join("etc/alternatives/python3")).unwrap(),
            Path::new("/usr/bin/python3.6")
        );
    }

    #[test]
    fn flavours_follow_osbuild() {
        use Step::*;
        assert_eq!(Flavor::Linux.steps(), &[MinimalPasswd]);
        assert_eq!(
            Flavor::Rhel7.steps(),
            &[Ldconfig(&["/usr/lib64/iscsi"]), Nsswitch]
        );
        for f in [
            Flavor::Ubuntu,
            Flavor::Fedora30,
            Flavor::Fedora38,
            Flavor::Rhel8,
        ] {
            let steps = f.steps();
            assert_eq!(&steps[..2], &[Ldconfig(&[]), Sysusers], "{f:?}");
            let pos = |s| steps.iter().position(|x| *x == s);
            assert!(pos(Tmpfiles) < pos(Nsswitch), "{f:?}");
            assert_eq!(pos(MachineId).is_some(), f != Flavor::Ubuntu, "{f:?}");
            assert_eq!(
                pos(CryptoPolicies).is_some(),
                matches!(f, Flavor::Fedora38 | Flavor::Rhel8),
                "{f:?}"
            );
        }
    }
}
