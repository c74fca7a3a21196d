//! Starting a program without copying this process: `clone(CLONE_VM | CLONE_VFORK)`, as
//! `posix_spawn(3)` does, with the steps the sandbox needs between the clone and the exec
//! (which `posix_spawn` cannot express, and `Command::pre_exec` makes a full `fork`).
//!
//! A fork copies the parent's page tables and then every page either side writes; for the
//! engine that was about half a millisecond of every module's start. Here the child runs on a
//! stack of its own in the parent's memory while the parent waits (`CLONE_VFORK`), so it may
//! only make system calls on what was prepared before the clone: no allocation, no lock, no
//! Rust runtime. Everything it needs is in [`Exec`], built beforehand.

use std::ffi::{c_int, c_void, CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

use crate::process::Child;

/// A program to start with [`Exec::spawn`]: its path, arguments, environment and descriptors.
pub struct Exec {
    program: CString,
    argv: Vec<CString>,
    env: Vec<CString>,
    /// stdin, stdout, stderr (numbered 3 or above, so that `dup2` always copies them).
    stdio: [OwnedFd; 3],
    /// Inherited under their own numbers; everything else is closed at exec.
    keep: Vec<OwnedFd>,
    netns: Option<OwnedFd>,
}

impl Exec {
    /// `argv[0]` run with exactly `env` (`NAME=value` pairs), found in the `PATH` of `env`
    /// when it has no slash, with stdin, stdout and stderr on the three descriptors given.
    pub fn new(
        argv: &[OsString],
        env: &[(OsString, OsString)],
        stdio: [OwnedFd; 3],
    ) -> io::Result<Self> {
        let first = argv
            .first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no program to run"))?;
        let path_var = env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.as_os_str());
        let program = find_program(Path::new(first), path_var)?;
        let env = env
            .iter()
            .map(|(k, v)| {
                let mut pair = k.clone();
                pair.push("=");
                pair.push(v);
                c_string(pair.as_bytes())
            })
            .collect::<io::Result<_>>()?;
        let stdio = stdio.map(above_stdio);
        let [stdin, stdout, stderr] = stdio;
        Ok(Self {
            program: c_string(program.as_os_str().as_bytes())?,
            argv: argv
                .iter()
                .map(|a| c_string(a.as_bytes()))
                .collect::<io::Result<_>>()?,
            env,
            stdio: [stdin?, stdout?, stderr?],
            keep: Vec::new(),
            netns: None,
        })
    }

    /// Also passes `fds` to the program under their own numbers (e.g. bubblewrap's
    /// `--seccomp FD`).
    pub fn keep(mut self, fds: Vec<OwnedFd>) -> Self {
        self.keep = fds;
        self
    }

    /// Starts the program in the network namespace `netns`.
    pub fn in_network_namespace(mut self, netns: Option<OwnedFd>) -> Self {
        self.netns = netns;
        self
    }

    /// Starts the program. It gets SIGKILL when the calling thread exits (spawn and wait on
    /// the same long-lived thread), default handlers for every signal and an empty signal
    /// mask, the three standard descriptors, the kept ones and nothing else. An exec that
    /// fails is this call's error.
    pub fn spawn(&self) -> io::Result<Child> {
        let argv = null_terminated(&self.argv);
        let envp = null_terminated(&self.env);
        let keep: Vec<RawFd> = self.keep.iter().map(AsRawFd::as_raw_fd).collect();
        let plan = ChildPlan {
            program: self.program.as_ptr(),
            argv: argv.as_ptr(),
            envp: envp.as_ptr(),
            stdio: self.stdio.each_ref().map(AsRawFd::as_raw_fd),
            keep: &keep,
            netns: self.netns.as_ref().map_or(-1, AsRawFd::as_raw_fd),
            error: AtomicI32::new(0),
        };
        let mut stack = vec![0u8; CHILD_STACK_BYTES];
        // SAFETY: the pointer is one past the end of `stack`'s allocation, never dereferenced
        // as such; the child's stack grows down from it (aligned down to 16 bytes as the ABI
        // wants), within the allocation, which outlives the child's use of it (CLONE_VFORK:
        // this thread waits until the child has exec'd or exited).
        let top = unsafe { stack.as_mut_ptr().add(stack.len()) };
        let top = (top as usize & !15) as *mut c_void;
        let mut pidfd: c_int = -1;
        let flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD | libc::SIGCHLD;
        let blocked = BlockedSignals::all();
        // SAFETY: `child_main` only reads `plan` (alive on this stack until clone returns:
        // CLONE_VFORK suspends this thread until the child execs or exits) and makes
        // async-signal-safe system calls; no signal handler can run in the child, which shares
        // our memory, before it has reset them all (every signal is blocked here first).
        // CLONE_PIDFD stores the child's pidfd in `pidfd`.
        let pid = unsafe {
            libc::clone(
                child_main,
                top,
                flags,
                &plan as *const ChildPlan as *mut c_void,
                &mut pidfd as *mut c_int,
            )
        };
        let clone_error = io::Error::last_os_error();
        drop(blocked);
        if pid < 0 {
            return Err(clone_error);
        }
        // SAFETY: CLONE_PIDFD made `pidfd` a new descriptor that nothing else owns.
        let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
        let child = Child::from_raw(pid, pidfd);
        match plan.error.load(Ordering::SeqCst) {
            0 => Ok(child),
            errno => Err(io::Error::from_raw_os_error(errno)), // `child` reaps it
        }
    }
}

/// The child's stack: its steps call a few libc functions, nothing deep.
const CHILD_STACK_BYTES: usize = 64 * 1024;

/// What the child reads: raw pointers and numbers only, all owned by the parent.
struct ChildPlan<'a> {
    program: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    stdio: [RawFd; 3],
    keep: &'a [RawFd],
    netns: RawFd,
    /// The errno of the step that failed, 0 while none has.
    error: AtomicI32,
}

/// The child, between clone and exec.
extern "C" fn child_main(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the parent's `ChildPlan`, alive and unchanged while the parent waits.
    let plan = unsafe { &*(arg as *const ChildPlan) };
    // SAFETY: each call is a plain system call on numbers and pointers prepared by the
    // parent (see `Exec::spawn`); none allocates or takes a lock.
    let failed = unsafe { child_steps(plan) };
    plan.error.store(failed, Ordering::SeqCst);
    // SAFETY: _exit(2) ends the child without running anything of the parent's.
    unsafe { libc::_exit(127) }
}

/// Runs the child's steps and execs; returns the errno of the step that failed.
///
/// # Safety
/// Only in the child of `Exec::spawn`, with its plan.
unsafe fn child_steps(plan: &ChildPlan) -> c_int {
    let errno = || {
        io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EINVAL)
    };
    // SAFETY: (all below) system calls on the plan's numbers and pointers, see the caller.
    unsafe {
        for sig in 1..NSIG {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                // Errors are signals libc keeps for itself: they have no handler of ours.
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
            return errno();
        }
        if plan.netns >= 0 && libc::setns(plan.netns, libc::CLONE_NEWNET) != 0 {
            return errno();
        }
        for (target, &fd) in plan.stdio.iter().enumerate() {
            if libc::dup2(fd, target as c_int) < 0 {
                return errno();
            }
        }
        let cloexec = libc::CLOSE_RANGE_CLOEXEC as c_int;
        if libc::close_range(3, libc::c_uint::MAX, cloexec) != 0 {
            return errno();
        }
        for &fd in plan.keep {
            if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                return errno();
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        libc::execve(plan.program, plan.argv, plan.envp);
        errno()
    }
}

/// One past the highest signal number (`_NSIG`).
const NSIG: c_int = 65;

/// Every signal blocked on this thread until dropped (then the previous mask is back), so no
/// handler runs in a child that shares this thread's memory.
struct BlockedSignals(libc::sigset_t);

impl BlockedSignals {
    fn all() -> Self {
        // SAFETY: sigfillset and pthread_sigmask write only the sets given, both ours.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
            Self(old)
        }
    }
}

impl Drop for BlockedSignals {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved by `all`, a valid set.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut()) };
    }
}

/// `program` itself when it has a slash, else the first executable `DIR/program` of `path`.
fn find_program(program: &Path, path: Option<&OsStr>) -> io::Result<PathBuf> {
    if program.as_os_str().as_bytes().contains(&b'/') {
        return Ok(program.to_owned());
    }
    let not_found = || {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} is not in PATH", program.display()),
        )
    };
    let path = path.ok_or_else(not_found)?;
    std::env::split_paths(path)
        .map(|dir| dir.join(program))
        .find(|candidate| nix::unistd::access(candidate, nix::unistd::AccessFlags::X_OK).is_ok())
        .ok_or_else(not_found)
}

fn c_string(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "an argument or environment entry holds a NUL byte",
        )
    })
}

fn null_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// `fd` itself if numbered 3 or above, else a close-on-exec copy that is.
fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() >= 3 {
        return Ok(fd);
    }
    let copy = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3))?;
    // SAFETY: F_DUPFD_CLOEXEC made `copy` a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(copy) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn os(items: &[&str]) -> Vec<OsString> {
        items.iter().map(OsString::from).collect()
    }

    fn path_env() -> Vec<(OsString, OsString)> {
        vec![("PATH".into(), "/usr/sbin:/usr/bin:/sbin:/bin".into())]
    }

    /// Runs `sh -c SCRIPT` with `keep`; its stdout and exit status.
    fn run(script: &str, keep: Vec<OwnedFd>) -> (String, std::process::ExitStatus) {
        let (read, write) = crate::process::pipe().unwrap();
        let null = std::fs::File::open("/dev/null").unwrap().into();
        let stdio = [null, write.try_clone().unwrap(), write];
        let exec = Exec::new(&os(&["sh", "-c", script]), &path_env(), stdio)
            .unwrap()
            .keep(keep);
        let mut child = exec.spawn().unwrap();
        drop(exec); // our copies of the pipe's write end
        let mut out = String::new();
        std::fs::File::from(read).read_to_string(&mut out).unwrap();
        (out, child.wait().unwrap())
    }

    #[test]
    fn the_program_gets_its_arguments_environment_and_status() {
        let (out, status) = run("echo \"$0 $1 PATH=$PATH\"; exit 3", Vec::new());
        assert_eq!(out, "sh  PATH=/usr/sbin:/usr/bin:/sbin:/bin\n");
        assert_eq!(status.code(), Some(3));
    }

    /// Only the kept descriptor is inherited, under its own number; a descriptor without
    /// close-on-exec (as zbus receives a client's) is not.
    #[test]
    fn only_kept_descriptors_are_inherited() {
        let (leak_end, _w) = crate::process::pipe().unwrap();
        let leaked = nix::fcntl::fcntl(&leak_end, nix::fcntl::FcntlArg::F_DUPFD(200)).unwrap();
        let (kept, _w2) = crate::process::pipe().unwrap();
        let kept_number = kept.as_raw_fd();
        let (out, status) = run("ls /proc/self/fd", vec![kept]);
        assert!(status.success());
        let fds: Vec<&str> = out.split_whitespace().collect();
        assert!(fds.contains(&kept_number.to_string().as_str()), "{fds:?}");
        assert!(!fds.contains(&leaked.to_string().as_str()), "{fds:?}");
        // SAFETY: `leaked` is the descriptor F_DUPFD made above, owned by nothing else.
        drop(unsafe { OwnedFd::from_raw_fd(leaked) });
    }

    /// A signal this process ignores and one this thread blocks are neither ignored nor
    /// blocked in the child.
    #[test]
    fn the_child_starts_with_default_signals() {
        let script = "grep -E '^Sig(Blk|Ign)' /proc/self/status";
        let (out, status) = std::thread::spawn(move || {
            // SAFETY: SIGUSR2 has no handler in this test process; ignoring it for a moment
            // and blocking SIGUSR1 on this thread affect nothing else.
            unsafe {
                libc::signal(libc::SIGUSR2, libc::SIG_IGN);
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGUSR1);
                libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            }
            let r = run(script, Vec::new());
            // SAFETY: back to the default disposition.
            unsafe { libc::signal(libc::SIGUSR2, libc::SIG_DFL) };
            r
        })
        .join()
        .unwrap();
        assert!(status.success());
        let mask = |name: &str| {
            let line = out.lines().find_map(|l| l.strip_prefix(name)).unwrap();
            u64::from_str_radix(line.trim(), 16).unwrap()
        };
        // Bit N-1 is signal N.
        assert_eq!(mask("SigBlk:") & (1 << (libc::SIGUSR1 - 1)), 0, "{out}");
        assert_eq!(mask("SigIgn:") & (1 << (libc::SIGUSR2 - 1)), 0, "{out}");
    }

    /// The child gets SIGKILL when the thread that started it ends.
    #[test]
    fn the_child_dies_with_the_thread_that_started_it() {
        let (pid, pidfd) = std::thread::spawn(|| {
            let null: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
            let stdio = [null.try_clone().unwrap(), null.try_clone().unwrap(), null];
            let exec = Exec::new(&os(&["sleep", "1019"]), &path_env(), stdio).unwrap();
            let child = exec.spawn().unwrap();
            let found = (child.id(), child.pidfd().try_clone_to_owned().unwrap());
            std::mem::forget(child); // not killed by its owner: by the thread's end
            found
        })
        .join()
        .unwrap();
        let mut fds = [nix::poll::PollFd::new(
            std::os::fd::AsFd::as_fd(&pidfd),
            nix::poll::PollFlags::POLLIN,
        )];
        let ready = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(5000u16)).unwrap();
        assert_eq!(ready, 1, "the child outlived its thread by 5 s");
        let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap();
        assert_eq!(
            status,
            nix::sys::wait::WaitStatus::Signaled(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
                false
            )
        );
    }

    #[test]
    fn a_program_that_cannot_start_is_an_error() {
        let stdio = || {
            let null: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
            [null.try_clone().unwrap(), null.try_clone().unwrap(), null]
        };
        let missing = Exec::new(&os(&["osbuild-no-such-program"]), &path_env(), stdio());
        assert_eq!(missing.err().unwrap().kind(), io::ErrorKind::NotFound);
        let plain = std::env::temp_dir().join(format!("osbuild-spawn-test-{}", std::process::id()));
        std::fs::write(&plain, "not a program\n").unwrap();
        let not_exec = Exec::new(&[plain.clone().into()], &path_env(), stdio()).unwrap();
        let result = not_exec.spawn();
        std::fs::remove_file(&plain).unwrap();
        let err = result.expect_err("a file without an execute bit cannot run");
        assert_eq!(err.raw_os_error(), Some(libc::EACCES), "{err}");
    }
}
