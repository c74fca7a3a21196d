//! Test helpers: run the built stage binary under a stage's name on a temporary tree.

#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

/// A temporary directory holding `tree/` (and room for things outside it).
pub struct Tree {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
}

impl Tree {
    pub fn new() -> Tree {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("tree");
        fs::create_dir(&root).unwrap();
        Tree { dir, root }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub fn write(&self, rel: &str, contents: &str) {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, contents).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    pub fn mode(&self, rel: &str) -> u32 {
        fs::symlink_metadata(self.path(rel))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }

    pub fn owner(&self, rel: &str) -> (u32, u32) {
        let m = fs::symlink_metadata(self.path(rel)).unwrap();
        (m.uid(), m.gid())
    }

    pub fn link(&self, rel: &str) -> String {
        fs::read_link(self.path(rel))
            .unwrap_or_else(|e| panic!("{rel}: {e}"))
            .to_string_lossy()
            .into_owned()
    }

    /// Copies a host executable and the libraries `ldd` names into the tree.
    pub fn install_binary(&self, host: &str) {
        let out = Command::new("ldd").arg(host).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let mut files = vec![host.to_string()];
        for line in text.lines() {
            for word in line.split_whitespace() {
                if word.starts_with('/') {
                    files.push(word.to_string());
                }
            }
        }
        for f in files {
            let dest = self.root.join(f.trim_start_matches('/'));
            fs::create_dir_all(dest.parent().unwrap()).unwrap();
            osbuild_sys::process::copy_executable(Path::new(&f), &dest)
                .unwrap_or_else(|e| panic!("copy {f}: {e}"));
        }
    }

    /// Puts `/bin/sh` (the host's dash) into the tree.
    pub fn install_sh(&self) {
        self.install_binary("/usr/bin/dash");
        fs::create_dir_all(self.path("bin")).unwrap();
        std::os::unix::fs::symlink("/usr/bin/dash", self.path("bin/sh")).unwrap();
    }
}

/// What a stage run produced.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs stage `name` (e.g. "org.osbuild.hostname") on `tree` with `options`.
pub fn run_stage(name: &str, tree: &Path, options: Value) -> Run {
    let args = serde_json::json!({
        "tree": tree,
        "sources": "/run/osbuild/sources",
        "options": options,
    });
    run_stage_raw(name, &args.to_string())
}

/// Runs stage `name` with `stdin` as its arguments text.
pub fn run_stage_raw(name: &str, stdin: &str) -> Run {
    let bindir = tempfile::tempdir().unwrap();
    let link = bindir.path().join(name);
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_osbuild-stages"), &link).unwrap();
    let mut child = Command::new(&link)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A stage that fails early (unknown name) may exit before reading: ignore EPIPE.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Asserts success and returns the run.
pub fn ok(name: &str, tree: &Path, options: Value) -> Run {
    let r = run_stage(name, tree, options);
    assert_eq!(r.code, 0, "{name} failed: {r:?}");
    r
}

/// Asserts failure with exit code 1 and `message` on stderr.
pub fn fails(name: &str, tree: &Path, options: Value, message: &str) {
    let r = run_stage(name, tree, options);
    assert_eq!(r.code, 1, "{name} should fail: {r:?}");
    assert!(
        r.stderr.contains(message),
        "{name}: stderr {:?} lacks {message:?}",
        r.stderr
    );
    assert!(
        !r.stderr.contains("panicked"),
        "{name} panicked: {}",
        r.stderr
    );
}

pub fn is_root() -> bool {
    osbuild_sys::is_root()
}

/// Whether `program` is on the host's PATH.
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}
