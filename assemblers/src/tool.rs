//! Running the build root's tools (`sfdisk`, `mkfs.*`, `mcopy`, `grub-mkimage`, `qemu-img`):
//! explicit argv, a fixed environment, stdin closed, and stderr kept for the error message.

use std::ffi::OsStr;
use std::process::{Command, Stdio};

use osbuild_sys::process::Child;

use crate::image::reproducible;
use crate::AssemblerError;

/// The environment every tool gets (nothing is inherited).
const ENV: &[(&str, &str)] = &[
    ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
    ("LC_ALL", "C"),
    // mtools refuses FAT geometries it finds odd unless told not to check.
    ("MTOOLS_SKIP_CHECK", "1"),
];

/// A command line to run: the program and its arguments.
pub fn command<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(ENV.iter().copied())
        .envs(reproducible::tool_env(reproducible::source_epoch()))
        .stdin(Stdio::null());
    cmd
}

/// Runs `cmd`, returning its stdout; a failure carries the last lines of stderr.
pub fn run(mut cmd: Command) -> Result<Vec<u8>, AssemblerError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let cannot_run = |e| AssemblerError::Tool(format!("cannot run {program}: {e}"));
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    // The owner kills and reaps the tool if reading its output fails.
    let out = Child::spawn(&mut cmd)
        .and_then(Child::wait_with_output)
        .map_err(cannot_run)?;
    if out.status.success() {
        return Ok(out.stdout);
    }
    Err(AssemblerError::Tool(format!(
        "{program} failed ({}): {}",
        out.status,
        tail(&String::from_utf8_lossy(&out.stderr))
    )))
}

/// Runs `program args...` (see [`run`]).
pub fn run_args<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Result<Vec<u8>, AssemblerError> {
    run(command(program, args))
}

/// The first program of `names` found on the tool PATH (`grub2-mkimage` vs `grub-mkimage`).
pub fn find_program(names: &[&'static str]) -> Option<&'static str> {
    names.iter().copied().find(|n| {
        ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
            .iter()
            .any(|d| std::path::Path::new(d).join(n).exists())
    })
}

/// The last few non-empty lines of a tool's stderr, joined for one error line.
pub fn tail(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(5);
    lines[start..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_five_lines() {
        let cases = [
            ("", ""),
            ("a\n\nb\n", "a | b"),
            ("1\n2\n3\n4\n5\n6\n7\n", "3 | 4 | 5 | 6 | 7"),
        ];
        for (input, want) in cases {
            assert_eq!(tail(input), want, "{input:?}");
        }
    }

    #[test]
    fn failure_names_the_program_and_its_stderr() {
        let e = run_args("sh", &["-c", "echo first >&2; echo boom >&2; exit 3"]).unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("sh failed (exit status: 3)"), "{msg}");
        assert!(msg.ends_with("first | boom"), "{msg}");
        let e = run_args("/nonexistent/tool", &["x"]).unwrap_err();
        assert!(e.to_string().starts_with("cannot run /nonexistent/tool"));
    }
}
