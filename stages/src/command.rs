//! Running the external tools some stages need (`systemctl`, `groupadd`, `setfiles`, ...),
//! on the build root or chrooted into the tree, with an explicit argv, stdin closed, and
//! failures reported with the tool's name and exit status.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};

use osbuild_sys::caps::Capability;
use osbuild_sys::process::Child;

use crate::error::StageError;

/// The search path for tools (the build root's, and the tree's when chrooted).
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A command for `program` with stdin closed and a known `PATH`, run without
/// `CAP_SYS_ADMIN`: a stage that has it (declared in its meta file) needs it for its own
/// mounts and namespaces, never for the programs it runs (package managers, maintainer
/// scripts, rpm scriptlets: code from the user's packages), which could mount a fresh procfs
/// with it and reach the host's sysctls.
pub fn tool(program: &str) -> Command {
    let mut cmd = tool_keeping_admin(program);
    osbuild_sys::caps::drop_before_exec(&mut cmd, &[Capability::CAP_SYS_ADMIN]);
    cmd
}

/// [`tool`] for the programs that need `CAP_SYS_ADMIN` themselves: `setfiles` writes
/// `security.selinux`, which the kernel allows only with it where no SELinux policy claims the
/// attribute; `mkfs.*` set a block device's block size (BLKBSZSET).
pub fn tool_keeping_admin(program: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.stdin(Stdio::null()).env("PATH", PATH);
    cmd
}

/// A command for `program` run with `tree` as its root directory (as `chroot TREE program`
/// would, without needing a `chroot` binary); `program` is looked up in the tree's `PATH`.
pub fn chrooted(tree: &Path, program: &str) -> Result<Command, StageError> {
    let mut cmd = tool(program);
    osbuild_sys::process::chroot_before_exec(&mut cmd, tree)
        .map_err(|_| StageError::Other(format!("tree path {:?} contains NUL", tree)))?;
    Ok(cmd)
}

/// Runs `cmd` and returns its exit status (started or not is the error). The child is owned
/// meanwhile: killed and reaped should waiting fail.
pub fn status(cmd: &mut Command) -> Result<ExitStatus, StageError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    Child::spawn(cmd)
        .and_then(|mut child| child.wait())
        .map_err(|source| StageError::Spawn { program, source })
}

/// Runs `cmd` with `input` on its stdin and fails unless it exits 0.
pub fn run_with_input(cmd: &mut Command, input: &[u8]) -> Result<(), StageError> {
    use std::io::Write;
    let program = cmd.get_program().to_string_lossy().into_owned();
    let spawn_err = |source| StageError::Spawn {
        program: program.clone(),
        source,
    };
    cmd.stdin(Stdio::piped());
    let mut child = Child::spawn(cmd).map_err(spawn_err)?;
    if let (Some(mut stdin), _, _) = child.take_pipes() {
        // A tool that exits early closes its end; its status says why.
        let _ = stdin.write_all(input);
    }
    let st = child.wait().map_err(spawn_err)?;
    check(cmd, st)
}

/// Runs `cmd` and fails unless it exits 0.
pub fn run(cmd: &mut Command) -> Result<(), StageError> {
    let st = status(cmd)?;
    check(cmd, st)
}

/// Fails unless `st`, the status of `cmd`, is success.
fn check(cmd: &Command, st: ExitStatus) -> Result<(), StageError> {
    if st.success() {
        return Ok(());
    }
    Err(StageError::Tool {
        program: describe(cmd),
        status: describe_status(st),
    })
}

/// The program and its arguments, for messages; the value after `--password` (a hash
/// from the manifest) is not repeated.
pub fn describe(cmd: &Command) -> String {
    let mut out: Vec<String> = Vec::new();
    for a in std::iter::once(cmd.get_program()).chain(cmd.get_args()) {
        let hide = out.last().is_some_and(|prev| prev == "--password");
        out.push(if hide {
            "<hidden>".into()
        } else {
            a.to_string_lossy().into_owned()
        });
    }
    out.join(" ")
}

pub use osbuild_sys::process::describe_status;

/// The exit code a stage should return for a child's status (128+N for a signal).
pub fn exit_code(st: ExitStatus) -> i32 {
    st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    #[test]
    fn describe_hides_passwords() {
        let mut cmd = super::tool("useradd");
        cmd.args(["--uid", "5", "--password", "$6$secret", "alice"]);
        assert_eq!(
            super::describe(&cmd),
            "useradd --uid 5 --password <hidden> alice"
        );
    }
}
