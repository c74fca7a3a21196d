//! The built runner binary, run through its runner-name symlinks, against a test API server.

mod common;

use std::fs;
use std::io::{Read, Seek, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_osbuild-runners");

struct Run {
    output: Output,
    stage_stdout: String,
    stage_stderr: String,
}

fn link(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::os::unix::fs::symlink(BIN, &p).unwrap();
    p
}

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    let text = format!("#!/bin/sh\n{body}\n");
    osbuild_sys::process::write_executable(&p, text.as_bytes(), 0o755).unwrap();
    p
}

/// Runs `runner stage args...` with a server handing over a stdin file and two pipes.
fn run_with_server(cmd: &mut Command, dir: &Path, stdin_text: &str) -> Run {
    let sock = dir.join("api-osbuild");
    let mut args = tempfile::tempfile().unwrap();
    args.write_all(stdin_text.as_bytes()).unwrap();
    args.rewind().unwrap();
    let (mut out_r, out_w) = common::pipe();
    let (mut err_r, err_w) = common::pipe();
    let server = common::serve_once(
        &sock,
        r#"{"stdin": 0, "stdout": 1, "stderr": 2}"#,
        common::owned(&[&args, &out_w, &err_w]),
    );
    let output = cmd
        .env("OSBUILD_API_SOCKET", &sock)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    server.join().unwrap();
    drop((out_w, err_w, args));
    let mut stage_stdout = String::new();
    out_r.read_to_string(&mut stage_stdout).unwrap();
    let mut stage_stderr = String::new();
    err_r.read_to_string(&mut stage_stderr).unwrap();
    Run {
        output,
        stage_stdout,
        stage_stderr,
    }
}

#[test]
fn stage_gets_the_handed_over_stdio_and_its_status_is_the_runners() {
    let dir = tempfile::tempdir().unwrap();
    let runner = link(dir.path(), "org.osbuild.linux");
    let stage = script(
        dir.path(),
        "org.osbuild.test",
        r#"read line; echo "stage got: $line args: $* env: ${OSBUILD_API_SOCKET-unset}"; echo oops >&2; exit 7"#,
    );
    let run = run_with_server(
        Command::new(&runner)
            .arg(&stage)
            .arg("x y")
            .env_remove("container"),
        dir.path(),
        "{\"options\": {}}\n",
    );
    assert_eq!(
        run.output.status.code(),
        Some(7),
        "{run:?}",
        run = run.output
    );
    assert_eq!(
        run.stage_stdout,
        "stage got: {\"options\": {}} args: x y env: unset\n"
    );
    assert!(run.stage_stderr.ends_with("oops\n"), "{}", run.stage_stderr);
    assert!(
        run.output.stdout.is_empty(),
        "nothing on the runner's own stdout"
    );
}

#[test]
fn a_signal_killing_the_stage_is_the_runners_end_too() {
    let dir = tempfile::tempdir().unwrap();
    let runner = link(dir.path(), "org.osbuild.arch");
    let stage = script(dir.path(), "stage", "kill -TERM $$");
    let run = run_with_server(Command::new(&runner).arg(&stage), dir.path(), "");
    assert_eq!(run.output.status.signal(), Some(libc::SIGTERM));
}

#[test]
fn missing_stage_is_127_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let runner = link(dir.path(), "org.osbuild.linux");
    let run = run_with_server(
        Command::new(&runner).arg("/run/osbuild/lib/stages/org.osbuild.nope"),
        dir.path(),
        "",
    );
    assert_eq!(run.output.status.code(), Some(127));
    assert!(
        run.stage_stderr.contains(
            "org.osbuild.linux: cannot execute stage /run/osbuild/lib/stages/org.osbuild.nope: \
             No such file or directory (os error 2)"
        ),
        "{}",
        run.stage_stderr
    );
}

#[test]
fn missing_socket_is_2_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let runner = link(dir.path(), "org.osbuild.debian");
    let sock = dir.path().join("no-such-socket");
    let out = Command::new(&runner)
        .arg("/bin/true")
        .env("OSBUILD_API_SOCKET", &sock)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "org.osbuild.debian: cannot get the stage's stdio from the host: setup-stdio on {}: \
             connect failed: No such file or directory",
            sock.display()
        )),
        "{err}"
    );
}

#[test]
fn unknown_name_and_usage_are_2() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "org.osbuild.debian12",
            vec!["/bin/true"],
            "org.osbuild.debian12: unknown runner name",
        ),
        (
            "org.osbuild.linux",
            vec![],
            "usage: org.osbuild.linux STAGE",
        ),
    ];
    for (name, args, want) in cases {
        let out = Command::new(link(dir.path(), name))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{name}: {err}");
    }
}

#[test]
fn set_up_alone_is_refused_outside_a_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(link(dir.path(), "org.osbuild.debian"))
        .arg("--set-up")
        .env_remove("container")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--set-up changes /etc, so it runs only in a build root sandbox"),
        "{err}"
    );
}

#[test]
fn list_is_names_txt() {
    let out = Command::new(BIN).arg("--list").output().unwrap();
    assert!(out.status.success());
    let want = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/names.txt")).unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), want);
}

/// bubblewrap's arguments for a sandbox of the host's `/` with `etc` as its `/etc`, where
/// `dir` and the runner binary are visible.
fn sandbox_args(dir: &Path, etc: &Path) -> Vec<String> {
    let d = dir.to_str().unwrap();
    let bin_dir = Path::new(BIN).parent().unwrap().to_str().unwrap();
    let mut args: Vec<&str> = vec!["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"];
    args.extend([
        "--tmpfs", "/run", "--tmpfs", "/var", "--tmpfs", "/tmp", "--bind", d, d,
    ]);
    // The runner binary lives in the checkout, which may itself be under /var or /tmp.
    args.extend(["--ro-bind", bin_dir, bin_dir]);
    args.extend(["--bind", etc.to_str().unwrap(), "/etc"]);
    args.extend(["--unshare-pid", "--unshare-ipc", "--die-with-parent"]);
    args.extend(["--setenv", "container", "bwrap-osbuild"]);
    args.extend(["--setenv", "PATH", "/usr/sbin:/usr/bin"]);
    args.into_iter().map(str::to_owned).collect()
}

/// Runs `runner stage` in the sandbox of [`sandbox_args`] with a server handing over its stdio.
fn run_in_sandbox(bwrap: &Path, dir: &Path, etc: &Path, runner: &Path, stage: &Path) -> Run {
    let mut cmd = Command::new(bwrap);
    cmd.args(sandbox_args(dir, etc))
        .arg("--")
        .arg(runner)
        .arg(stage);
    run_with_server(&mut cmd, dir, "")
}

/// bubblewrap, when it is installed and this runs as root (else why not, printed).
fn bwrap_as_root() -> Option<PathBuf> {
    let Ok(bwrap) = which("bwrap") else {
        eprintln!("skipped: bwrap is not installed");
        return None;
    };
    if !osbuild_sys::is_root() {
        eprintln!("skipped: needs root");
        return None;
    }
    Some(bwrap)
}

/// `RUNNER --set-up` in a real sandbox: the set-up alone, silent, marked done; the module run
/// after it in the same build root does not set up again.
#[test]
fn privileged_set_up_alone_then_a_stage() {
    let Some(bwrap) = bwrap_as_root() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    fs::create_dir(&etc).unwrap();
    let runner = link(dir.path(), "org.osbuild.debian");
    let out = Command::new(&bwrap)
        .args(sandbox_args(dir.path(), &etc))
        .arg("--unshare-net")
        .arg("--")
        .arg(&runner)
        .arg("--set-up")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        (out.stdout.as_slice(), out.stderr.as_slice()),
        (&b""[..], &b""[..])
    );
    assert_eq!(
        fs::read_to_string(etc.join(".osbuild-runner-setup")).unwrap(),
        "Ubuntu\n",
        "set up without network, so without CA trust"
    );
    let passwd = etc.join("passwd");
    let made = fs::metadata(&passwd).unwrap().modified().unwrap();

    // A module with the host's network (as the test server needs) finds the build root set
    // up, and adds only the CA trust.
    let stage = script(dir.path(), "stage", "echo stage ran; exit 0");
    let run = run_in_sandbox(&bwrap, dir.path(), &etc, &runner, &stage);
    assert!(run.output.status.success(), "{:?}", run.output);
    assert_eq!(run.stage_stdout, "stage ran\n");
    assert_eq!(
        fs::metadata(&passwd).unwrap().modified().unwrap(),
        made,
        "not set up again"
    );
    assert_eq!(
        fs::read_to_string(etc.join(".osbuild-runner-setup")).unwrap(),
        "Ubuntu ca-trust\n"
    );
    if Path::new("/usr/sbin/update-ca-certificates").exists() {
        assert!(
            etc.join("ssl/certs/ca-certificates.crt").exists(),
            "CA trust built"
        );
    }
}

/// The Debian runner's setup inside a real bubblewrap sandbox whose `/etc` is a directory the
/// test can inspect afterwards. Needs root (or user namespaces) and bwrap.
#[test]
fn privileged_debian_setup_in_bwrap() {
    let Some(bwrap) = bwrap_as_root() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    fs::create_dir(&etc).unwrap();
    fs::write(etc.join("nsswitch.conf"), "hosts: files resolve\n").unwrap();
    let runner = link(dir.path(), "org.osbuild.debian");
    let stage = script(dir.path(), "stage", "echo stage ran; exit 0");
    // No --unshare-net here: the client autobinds to an *abstract* address, and abstract
    // addresses belong to a network namespace, so a host-side server cannot reply into a
    // sandbox with its own network namespace (the engine has to send the reply from a socket
    // created in the sandbox's namespace).
    let run = run_in_sandbox(&bwrap, dir.path(), &etc, &runner, &stage);
    assert!(
        run.output.status.success(),
        "{:?} {}",
        run.output,
        run.stage_stderr
    );
    // The set-up (ldconfig, sysusers, tmpfiles' warnings) prints nothing of its own: what the
    // stage's stdio shows is the stage's output alone.
    assert_eq!(
        (run.stage_stdout.as_str(), run.stage_stderr.as_str()),
        ("stage ran\n", "")
    );
    assert_eq!(String::from_utf8_lossy(&run.output.stdout), "");
    assert_eq!(String::from_utf8_lossy(&run.output.stderr), "");
    assert!(!etc.join("nsswitch.conf").exists(), "nsswitch.conf removed");
    // tmpfiles created what it has for /etc (Debian's systemd links /etc/mtab).
    if fs::read_to_string("/usr/lib/tmpfiles.d/debian.conf").is_ok_and(|c| c.contains("/etc/mtab"))
    {
        assert!(etc.join("mtab").is_symlink(), "tmpfiles ran for /etc");
    }
    assert!(
        etc.join("ld.so.conf").exists() && etc.join("ld.so.cache").exists(),
        "ldconfig ran"
    );
    let passwd = fs::read_to_string(etc.join("passwd")).unwrap();
    assert!(
        passwd.starts_with("root:x:0:0:"),
        "sysusers wrote /etc/passwd: {passwd}"
    );
    if Path::new("/usr/sbin/update-ca-certificates").exists() {
        let conf = fs::read_to_string(etc.join("ca-certificates.conf")).unwrap();
        assert!(conf.lines().count() > 10, "{conf}");
        assert!(
            fs::metadata(etc.join("ssl/certs/ca-certificates.crt"))
                .unwrap()
                .len()
                > 1000
        );
    }
}

fn which(tool: &str) -> Result<PathBuf, ()> {
    ["/usr/bin", "/usr/sbin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.exists())
        .ok_or(())
}
