//! Child processes: [`Child`] owns one (killed and reaped when dropped, with a pidfd to wait
//! on), and the `pre_exec` steps the engine and the stages need between fork and exec.

use std::ffi::CString;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Output};

use nix::sched::CloneFlags;
use nix::sys::signal::Signal;

/// "exit status N" or "killed by signal N", for error messages.
pub fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => status.to_string(),
    }
}

/// Makes the child of `cmd` die (SIGKILL) when the thread that spawns it exits, and start in
/// the network namespace `netns` when given. The thread matters: spawn and wait on the same
/// long-lived thread (not a pool thread that may exit while the child runs).
pub fn tie_to_thread(cmd: &mut Command, netns: Option<OwnedFd>) {
    let step = move || -> io::Result<()> {
        nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
        if let Some(ns) = &netns {
            nix::sched::setns(ns, CloneFlags::CLONE_NEWNET)?;
        }
        Ok(())
    };
    // SAFETY: prctl(2) and setns(2) are async-signal-safe and use no memory allocated after
    // the fork (the descriptor was duplicated before).
    unsafe { cmd.pre_exec(step) };
}

/// Makes the child of `cmd` inherit its stdin, stdout and stderr and the descriptors in `keep`
/// (under their own numbers, for programs that take a descriptor by number, like bubblewrap's
/// `--seccomp FD`), and nothing else. Whatever else this process holds is closed at exec, even
/// a descriptor another thread has just received without close-on-exec (zbus receives a
/// client's descriptors so) or opened between our checks: a client's pipe kept open by a
/// sandbox would make that client wait forever for its end. Register it after the other
/// `pre_exec` steps. The kept descriptors are closed here when `cmd` is dropped.
pub fn inherit_only(cmd: &mut Command, keep: Vec<OwnedFd>) {
    let step = move || -> io::Result<()> {
        // SAFETY: close_range(2) with CLOSE_RANGE_CLOEXEC closes nothing now (it only marks
        // descriptors close-on-exec), so no owner's descriptor becomes invalid; it is a plain
        // system call, async-signal-safe.
        let marked = unsafe {
            libc::close_range(
                3,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC as libc::c_int,
            )
        };
        if marked != 0 {
            return Err(io::Error::last_os_error());
        }
        for fd in &keep {
            nix::fcntl::fcntl(
                fd,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
            )?;
        }
        Ok(())
    };
    // SAFETY: the step makes only async-signal-safe system calls (close_range, fcntl) on
    // descriptors opened before the fork, and allocates nothing.
    unsafe { cmd.pre_exec(step) };
}

/// Makes the child of `cmd` run with `root` as its root directory and `/` as its working
/// directory (what `chroot ROOT` does). Fails only if `root` contains a NUL byte.
pub fn chroot_before_exec(
    cmd: &mut Command,
    root: &std::path::Path,
) -> Result<(), std::ffi::NulError> {
    use std::os::unix::ffi::OsStrExt;
    let root = CString::new(root.as_os_str().as_bytes())?;
    let step = move || -> io::Result<()> {
        nix::unistd::chroot(root.as_c_str())?;
        nix::unistd::chdir(c"/")?;
        Ok(())
    };
    // SAFETY: chroot(2) and chdir(2) are async-signal-safe and use only the string allocated
    // before the fork.
    unsafe { cmd.pre_exec(step) };
    Ok(())
}

/// A running child process that is killed and reaped when dropped (an error or a cancel), with
/// a pidfd that becomes readable when it exits. Started from a [`Command`] ([`Child::spawn`])
/// or without copying this process ([`crate::spawn::Exec::spawn`]).
#[derive(Debug)]
pub struct Child {
    pid: libc::pid_t,
    pidfd: OwnedFd,
    /// Set once reaped.
    status: Option<ExitStatus>,
    /// The pipes a [`Command`] asked for.
    stdin: Option<std::process::ChildStdin>,
    stdout: Option<std::process::ChildStdout>,
    stderr: Option<std::process::ChildStderr>,
}

impl Child {
    /// Starts `cmd`.
    pub fn spawn(cmd: &mut Command) -> io::Result<Self> {
        let mut inner = cmd.spawn()?;
        let pid =
            rustix::process::Pid::from_raw(inner.id() as i32).expect("a child's pid is positive");
        match rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
            Ok(pidfd) => {
                let mut child = Self::from_raw(pid.as_raw_nonzero().get(), pidfd);
                child.stdin = inner.stdin.take();
                child.stdout = inner.stdout.take();
                child.stderr = inner.stderr.take();
                Ok(child) // reaped by `child`, not by `inner` (whose drop does not wait)
            }
            Err(e) => {
                let _ = inner.kill();
                let _ = inner.wait();
                Err(e.into())
            }
        }
    }

    /// Owns the unreaped child `pid`, with its pidfd.
    pub(crate) fn from_raw(pid: libc::pid_t, pidfd: OwnedFd) -> Self {
        Self {
            pid,
            pidfd,
            status: None,
            stdin: None,
            stdout: None,
            stderr: None,
        }
    }

    /// Its process id.
    pub fn id(&self) -> libc::pid_t {
        self.pid
    }

    /// Its stdin, stdout and stderr pipes, for the ones its [`Command`] asked for (once).
    pub fn take_pipes(
        &mut self,
    ) -> (
        Option<std::process::ChildStdin>,
        Option<std::process::ChildStdout>,
        Option<std::process::ChildStderr>,
    ) {
        (self.stdin.take(), self.stdout.take(), self.stderr.take())
    }

    /// Readable once the child has exited (poll it beside other descriptors).
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// The exit status if the child has exited (it is then reaped).
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.reap(libc::WNOHANG)
    }

    /// Waits for the child to exit.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        loop {
            if let Some(status) = self.reap(0)? {
                return Ok(status);
            }
        }
    }

    /// waitpid(2) with `options`, once reaped the status kept.
    fn reap(&mut self, options: libc::c_int) -> io::Result<Option<ExitStatus>> {
        if self.status.is_some() {
            return Ok(self.status);
        }
        let mut raw: libc::c_int = 0;
        // SAFETY: waitpid(2) on our own unreaped child (its pid cannot be reused before we
        // reap it), writing only `raw`.
        let got = unsafe { libc::waitpid(self.pid, &mut raw, options) };
        match got {
            0 => Ok(None),
            pid if pid == self.pid => {
                self.status = Some(ExitStatus::from_raw(raw));
                Ok(self.status)
            }
            _ => {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::Interrupted => Ok(None),
                    _ => Err(e),
                }
            }
        }
    }

    /// Reads the child's piped stdout and stderr to their ends (concurrently, so neither pipe
    /// fills up), then waits for it. On a read error the child is killed and reaped.
    pub fn wait_with_output(mut self) -> io::Result<Output> {
        let (_, stdout, stderr) = self.take_pipes();
        let (stdout, stderr) = std::thread::scope(|s| {
            let stderr = s.spawn(|| read_to_end(stderr));
            let stdout = read_to_end(stdout);
            let stderr = stderr
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the stderr reader panicked")));
            (stdout, stderr)
        });
        let (stdout, stderr) = (stdout?, stderr?);
        let status = self.wait()?;
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }

    /// Kills the child and reaps it; when the child is the parent of a PID namespace's init
    /// (bubblewrap with `--unshare-pid`), also waits up to `timeout` for that init to exit.
    /// The kernel lets a namespace's init exit only after every other process in the
    /// namespace is gone, so on `true` nothing of the namespace runs any more. Without this,
    /// killing bubblewrap returns while the namespace still dies asynchronously.
    pub fn kill_with_pid_namespace(&mut self, timeout: std::time::Duration) -> bool {
        let init = self.first_child();
        self.kill();
        match init {
            Some(init) => wait_readable(init.as_fd(), timeout),
            None => true,
        }
    }

    /// A pidfd of the child's first child, if it has one.
    fn first_child(&self) -> Option<OwnedFd> {
        let pid = self.pid;
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
        let first: i32 = children.split_whitespace().next()?.parse().ok()?;
        let first = rustix::process::Pid::from_raw(first)?;
        let pidfd =
            rustix::process::pidfd_open(first, rustix::process::PidfdFlags::empty()).ok()?;
        // The pid may have been reused between the two reads: the pidfd pins the process, so
        // checking its parent now is enough.
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", first.as_raw_nonzero())).ok()?;
        let ppid = status.lines().find_map(|l| l.strip_prefix("PPid:"))?;
        (ppid.trim() == pid.to_string()).then_some(pidfd)
    }

    /// Kills the child (if still running) and reaps it.
    pub fn kill(&mut self) {
        if !matches!(self.try_wait(), Ok(Some(_))) {
            let _ = rustix::process::pidfd_send_signal(&self.pidfd, rustix::process::Signal::KILL);
            let _ = self.wait();
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits up to `timeout` for `fd` to become readable (a pidfd: its process has exited).
fn wait_readable(fd: BorrowedFd<'_>, timeout: std::time::Duration) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let ms = PollTimeout::try_from(left.as_millis().min(i32::MAX as u128) as i32)
            .unwrap_or(PollTimeout::MAX);
        match poll(&mut [PollFd::new(fd, PollFlags::POLLIN)], ms) {
            Ok(0) => return false,
            Ok(_) => return true,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return false,
        }
    }
}

/// Everything left in `pipe` (nothing when there is no pipe).
fn read_to_end(pipe: Option<impl Read>) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    if let Some(mut pipe) = pipe {
        pipe.read_to_end(&mut buf)?;
    }
    Ok(buf)
}

/// A pipe, both ends close-on-exec: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?)
}

/// Makes `src` also open as `dst` (`dup2`); the copy is not close-on-exec, so children of
/// ours inherit it.
pub fn dup_onto(src: impl AsFd, dst: &mut OwnedFd) -> nix::Result<()> {
    nix::unistd::dup2(src, dst)
}

/// Makes the three descriptors this process's stdin, stdout and stderr (`dup2` onto 0, 1,
/// 2; not close-on-exec, so whatever we exec inherits them).
pub fn install_stdio(stdin: impl AsFd, stdout: impl AsFd, stderr: impl AsFd) -> nix::Result<()> {
    nix::unistd::dup2_stdin(stdin)?;
    nix::unistd::dup2_stdout(stdout)?;
    nix::unistd::dup2_stderr(stderr)
}

/// Writes `contents` to `path` with `mode`, for a file that is executed while other threads
/// of this process may be starting children.
///
/// A descriptor open for writing is copied into any child another thread forks at that
/// moment, and stays open there until the child's exec; running the file meanwhile fails
/// with `ETXTBSY`. So a short-lived `cat` writes the file, and this process never holds a
/// writable descriptor to it.
pub fn write_executable(path: &std::path::Path, contents: &[u8], mode: u32) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let mut child = Command::new("/bin/sh")
        .args(["-c", "cat > \"$1\"", "sh"])
        .arg(path)
        .stdin(std::process::Stdio::piped())
        .spawn()?;
    let written = child.stdin.take().map(|mut s| s.write_all(contents));
    let status = child.wait()?;
    written.unwrap_or(Ok(()))?;
    if !status.success() {
        return Err(io::Error::other(format!(
            "writing {}: cat {}",
            path.display(),
            describe_status(status)
        )));
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// Copies the executable `from` to `to` with its mode, as [`write_executable`] does.
pub fn copy_executable(from: &std::path::Path, to: &std::path::Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(from)?.permissions().mode();
    write_executable(to, &std::fs::read(from)?, mode & 0o7777)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    /// A descriptor without close-on-exec (as zbus receives a client's) reaches no child;
    /// the one asked for does, under its own number.
    #[test]
    fn a_child_inherits_only_what_it_is_given() {
        let (pipe_end, _w) = pipe().unwrap();
        // F_DUPFD gives a copy without close-on-exec, numbered far from what `ls` opens.
        let leaked = nix::fcntl::fcntl(&pipe_end, nix::fcntl::FcntlArg::F_DUPFD(200)).unwrap();
        let (kept, _w2) = pipe().unwrap();
        let kept_number = kept.as_raw_fd();
        let mut cmd = Command::new("ls");
        cmd.arg("/proc/self/fd");
        inherit_only(&mut cmd, vec![kept]);
        let out = cmd.output().unwrap();
        assert!(out.status.success());
        let fds: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        assert!(fds.contains(&kept_number.to_string()), "{fds:?}");
        assert!(!fds.contains(&leaked.to_string()), "{fds:?}");
        // SAFETY: `leaked` is the descriptor F_DUPFD made above, owned by nothing else.
        drop(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(leaked) });
    }

    fn processes_running(needle: &str) -> Vec<String> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
                let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                if cmdline.trim_end() == needle {
                    found.push(format!("{}: {cmdline}", entry.file_name().display()));
                }
            }
        }
        found
    }

    /// The shape of bubblewrap with `--unshare-pid --die-with-parent`: a parent, and below it
    /// the namespace's init with a grandchild that ignores SIGTERM.
    #[test]
    fn killing_waits_for_every_process_of_the_pid_namespace() {
        if !crate::is_root() {
            eprintln!("skipping: unsharing a PID namespace needs root");
            return;
        }
        let marker = "sleep 1017";
        let mut cmd = Command::new("unshare");
        cmd.args(["--pid", "--fork", "--kill-child", "sh", "-c"])
            .arg(format!("trap '' TERM; {marker} & wait"));
        let mut child = Child::spawn(&mut cmd).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while processes_running(marker).is_empty() {
            assert!(std::time::Instant::now() < deadline, "{marker} never ran");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(child.kill_with_pid_namespace(std::time::Duration::from_secs(10)));
        assert_eq!(processes_running(marker), Vec::<String>::new());
    }

    /// Runs freshly written scripts while two threads start children all the time. Written
    /// with `fs::write`, a few of 300 runs fail with `ETXTBSY` on a 2-core machine.
    #[test]
    fn a_written_executable_runs_while_other_threads_spawn() {
        let dir = tempfile::tempdir().unwrap();
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        Command::new("/bin/true").status().unwrap();
                    }
                });
            }
            let result = (0..300).try_for_each(|i| {
                let script = dir.path().join(format!("s{i}"));
                write_executable(
                    &script,
                    format!("#!/bin/sh\nexit {}\n", i % 7).as_bytes(),
                    0o700,
                )?;
                let status = Command::new(&script).status()?;
                assert_eq!(status.code(), Some(i % 7));
                io::Result::Ok(())
            });
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            result.unwrap();
        });
    }

    #[test]
    fn copy_executable_keeps_the_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("a");
        write_executable(&from, b"#!/bin/sh\necho hi\n", 0o750).unwrap();
        let to = dir.path().join("b");
        copy_executable(&from, &to).unwrap();
        let mode = std::fs::metadata(&to).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o750);
        assert_eq!(Command::new(&to).output().unwrap().stdout, b"hi\n");
    }
}
