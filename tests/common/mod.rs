//! Shared set-up for the integration tests: a libdir, a store, running the `osbuild` binary.
#![allow(dead_code)]

pub mod http;
pub mod rpm_repo;
pub mod rpms;
pub mod service;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use osbuild_sys::is_root;

/// Returns false (and says why) when a privileged test cannot run here.
pub fn privileged(test: &str) -> bool {
    if is_root() {
        return true;
    }
    eprintln!("skipping {test}: needs root (mounts, namespaces); CI runs it as root");
    false
}

/// The libdir laid out by `./install.sh libdir target/libdir` (tests/run does it).
pub fn built_libdir() -> PathBuf {
    let dir = std::env::var_os("OSBUILD_TEST_LIBDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/libdir"));
    assert!(
        dir.join("stages/org.osbuild.noop").exists(),
        "no libdir at {}: run `./install.sh libdir target/libdir` first (tests/run does)",
        dir.display()
    );
    dir
}

/// A scratch directory with a private libdir (the built one plus the test modules of
/// tests/stages and tests/assemblers) and a store path.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub libdir: PathBuf,
    pub store: PathBuf,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("osbuild-test-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let libdir = dir.path().join("lib");
        let status = Command::new("cp")
            .arg("-a")
            .arg(built_libdir())
            .arg(&libdir)
            .status()
            .unwrap();
        assert!(status.success());
        for kind in ["stages", "assemblers"] {
            let test_modules = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests")
                .join(kind);
            for entry in std::fs::read_dir(test_modules).unwrap() {
                let entry = entry.unwrap();
                let dest = libdir.join(kind).join(entry.file_name());
                osbuild_sys::process::copy_executable(&entry.path(), &dest).unwrap();
            }
        }
        let store = dir.path().join("store");
        Env { dir, libdir, store }
    }

    pub fn osbuild_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_osbuild"));
        cmd.arg("--store")
            .arg(&self.store)
            .arg("--libdir")
            .arg(&self.libdir)
            .args(args);
        cmd
    }

    /// Runs `osbuild ARGS -` with `manifest` on stdin.
    pub fn osbuild(&self, args: &[&str], manifest: &str) -> Output {
        let mut cmd = self.osbuild_cmd(args);
        cmd.arg("-");
        run_with_stdin(cmd, manifest)
    }

    /// Runs a build with `--json` and returns the parsed result and the exit code.
    pub fn build_json(&self, args: &[&str], manifest: &str) -> (serde_json::Value, i32) {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.osbuild(&all, manifest);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let result = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "not a JSON result ({e}); stdout:\n{stdout}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (result, out.status.code().unwrap_or(-1))
    }

    /// A v2 build with `--json` exporting `exports` to `out` (plus `extra` options): the
    /// parsed result and the exit code.
    pub fn export_json(
        &self,
        exports: &[&str],
        out: &Path,
        extra: &[&str],
        manifest: &str,
    ) -> (serde_json::Value, i32) {
        let out = out.to_str().expect("a UTF-8 path");
        let mut args: Vec<&str> = exports.iter().flat_map(|e| ["--export", e]).collect();
        args.extend(["--output-directory", out]);
        args.extend_from_slice(extra);
        self.build_json(&args, manifest)
    }

    /// What `osbuild --inspect` says of `manifest` (ids on every stage); it must be valid.
    pub fn inspect(&self, manifest: &serde_json::Value) -> serde_json::Value {
        let out = self.osbuild(&["--inspect"], &manifest.to_string());
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The id of the first stage of `manifest`'s pipeline.
    pub fn first_stage_id(&self, manifest: &serde_json::Value) -> String {
        self.inspect(manifest)["pipeline"]["stages"][0]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Names in a store directory (objects, refs, tmp), sorted.
    pub fn store_entries(&self, sub: &str) -> Vec<String> {
        let mut names: Vec<String> = match std::fs::read_dir(self.store.join(sub)) {
            Ok(rd) => rd
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        };
        names.sort();
        names
    }

    /// A path in the store's copy of the tree or output committed under `id`.
    pub fn committed(&self, id: &str, path: &str) -> PathBuf {
        self.store.join("refs").join(id).join(path)
    }
}

/// `path` in the file system at `start` sectors of `disk`, through a read-only loop mount in
/// a mount namespace of its own (gone with the command): `cat` of a file, or
/// `stat -c %F:%a` with `stat`.
pub fn read_back(disk: &Path, start: u64, path: &str, stat: bool) -> String {
    let show = if stat { "stat -c %F:%a" } else { "cat" };
    let script = format!(
        "d=$(mktemp -d) && mount -o ro,loop,offset={} {} \"$d\" && {show} \"$d/{path}\"; s=$?; umount \"$d\"; rmdir \"$d\"; exit $s",
        start * 512,
        disk.display()
    );
    output(Command::new("unshare").args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        &script,
    ]))
}

/// v2 loopback devices over `disk.raw` of the stage's tree: `{name: {"type", "options"}}` for
/// each `(name, (start, size))` in sectors, locked.
pub fn loopback_devices(parts: &[(&str, (u64, u64))]) -> serde_json::Value {
    let devices = parts.iter().map(|(name, (start, size))| {
        let options =
            serde_json::json!({"filename": "disk.raw", "start": start, "size": size, "lock": true});
        (
            name.to_string(),
            serde_json::json!({"type": "org.osbuild.loopback", "options": options}),
        )
    });
    serde_json::Value::Object(devices.collect())
}

/// Loop devices whose backing file is under `dir` ("loopN: FILE").
pub fn loops_backed_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/sys/block").unwrap().flatten() {
        if let Ok(file) = std::fs::read_to_string(entry.path().join("loop/backing_file")) {
            if file.trim().starts_with(&*dir.to_string_lossy()) {
                found.push(format!(
                    "{}: {}",
                    entry.file_name().to_string_lossy(),
                    file.trim()
                ));
            }
        }
    }
    found
}

/// Runs `cmd`, panics with its stderr unless it succeeds, returns its stdout.
pub fn output(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `cmd` with `stdin` written to its standard input, collecting its output.
pub fn run_with_stdin(mut cmd: Command, stdin: &str) -> Output {
    let what = format!("{:?}", cmd.get_program());
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command that fails early may exit without reading stdin: a broken pipe is fine.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    wait_within(child, COMMAND_LIMIT, &what)
}

/// The longest any command of a test may take: a bootable Debian image built on a loaded
/// 2-core machine takes a few minutes; past this, the test fails instead of hanging.
pub const COMMAND_LIMIT: Duration = Duration::from_secs(30 * 60);

/// Waits for `child` at most `limit`; kills it and panics with its output otherwise.
pub fn wait_within(mut child: Child, limit: Duration, what: &str) -> Output {
    // Read both pipes meanwhile: a child writing more than a pipe holds must not look hung.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut bytes);
            }
            let _ = tx.send(bytes);
        });
        rx
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    // A grandchild (runuser's) may keep the pipes open: read what came within a bound.
    let text =
        |rx: &std::sync::mpsc::Receiver<Vec<u8>>, bound| rx.recv_timeout(bound).unwrap_or_default();
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let bound = Duration::from_secs(2);
            panic!(
                "{what} did not end within {limit:?}: {}{}",
                String::from_utf8_lossy(&text(&stdout, bound)),
                String::from_utf8_lossy(&text(&stderr, bound))
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let bound = Duration::from_secs(10);
    Output {
        status,
        stdout: text(&stdout, bound),
        stderr: text(&stderr, bound),
    }
}

/// Mount points of this (host) mount namespace under `dir`.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let prefix = dir.to_string_lossy().into_owned();
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&prefix))
        .map(str::to_owned)
        .collect()
}

/// Processes whose command line contains `needle`.
pub fn processes_matching(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(needle) {
                found.push(format!(
                    "{}: {cmdline}",
                    entry.file_name().to_string_lossy()
                ));
            }
        }
    }
    found
}

/// Every file under `dir` (symlinks not followed) whose contents include `needle`.
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let (path, kind) = (entry.path(), entry.file_type().unwrap());
        if kind.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if kind.is_file() {
            let data = std::fs::read(&path).unwrap_or_default();
            if data.windows(needle.len()).any(|w| w == needle) {
                found.push(path);
            }
        }
    }
    found
}

/// The vectors in `dir` (every `NAME.json` beside its `NAME.ids.json`), sorted, and at least
/// `at_least` of them: as (name, manifest text, expected ids).
pub fn id_vectors(dir: &Path, at_least: usize) -> Vec<(String, String, osbuild::json::Value)> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json") && !n.ends_with(".ids.json"))
        .collect();
    names.sort();
    assert!(
        names.len() >= at_least,
        "only {names:?} in {}",
        dir.display()
    );
    names
        .into_iter()
        .map(|name| {
            let text = std::fs::read_to_string(dir.join(&name)).unwrap();
            let want_text =
                std::fs::read_to_string(dir.join(name.replace(".json", ".ids.json"))).unwrap();
            let want = osbuild::json::parse(&want_text).unwrap();
            (name, text, want)
        })
        .collect()
}

/// The peak resident memory of a running process, in KiB (`VmHWM`), if it still runs.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    line.trim().trim_end_matches("kB").trim().parse().ok()
}

/// Writes the bootable Debian image manifest (`osbuild-mkmanifest-debian --image --boot-probe
/// --hostname HOSTNAME`) to `path`; false (and says why) when apt cannot resolve the packages
/// here, so that `test` skips.
pub fn debian_image_manifest(test: &str, hostname: &str, path: &Path) -> bool {
    let gen = Command::new(env!("CARGO_BIN_EXE_osbuild-mkmanifest-debian"))
        .args(["--image", "--boot-probe", "--hostname", hostname])
        .arg("--output")
        .arg(path)
        .output()
        .unwrap();
    if !gen.status.success() {
        eprintln!(
            "skipping {test}: cannot resolve packages with apt (run apt-get update): {}",
            String::from_utf8_lossy(&gen.stderr)
        );
    }
    gen.status.success()
}

/// GRUB's powerpc-ieee1275 modules: Debian's ppc64el `grub-ieee1275-bin` of this machine's GRUB
/// version, fetched from the Debian mirror (as the dpkg tests fetch their packages) and
/// unpacked under `scratch`; the unpacked `usr/lib/grub/powerpc-ieee1275`. `None` without
/// network.
pub fn debian_ppc64el_grub_modules(scratch: &Path) -> Option<PathBuf> {
    let show = output(Command::new("apt-cache").args(["show", "grub-ieee1275-bin"]));
    let file = show.lines().find_map(|l| l.strip_prefix("Filename: "))?;
    let file = file.replace("_amd64.deb", "_ppc64el.deb");
    let base = if file.starts_with("pool/updates/") {
        "http://deb.debian.org/debian-security"
    } else {
        "http://deb.debian.org/debian"
    };
    let deb = scratch.join("grub-ieee1275-bin_ppc64el.deb");
    let unpacked = scratch.join("ppc");
    let ok = |cmd: &mut Command| cmd.status().is_ok_and(|s| s.success());
    let fetched = ok(Command::new("curl")
        .args(["-sSf", "--max-time", "60", "-o"])
        .arg(&deb)
        .arg(format!("{base}/{file}")))
        && ok(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked));
    fetched.then(|| unpacked.join("usr/lib/grub/powerpc-ieee1275"))
}

/// Checks `disk` (its bytes) for GRUB for Open Firmware as a user would: a big-endian 32-bit
/// PowerPC ELF carrying `prefix` at the start of the PReP partition `(start, size)` (sectors),
/// and no boot code in the MBR (the firmware loads the core itself).
pub fn assert_prep_core(disk: &[u8], (start, size): (u64, u64), prefix: &str) {
    let core = &disk[(start * 512) as usize..((start + size) * 512) as usize];
    assert_eq!(&core[..4], b"\x7fELF", "an ELF program");
    assert_eq!((core[4], core[5]), (1, 2), "32-bit, big-endian");
    assert_eq!(
        u16::from_be_bytes([core[18], core[19]]),
        20,
        "machine: PowerPC"
    );
    assert!(
        core.windows(prefix.len()).any(|w| w == prefix.as_bytes()),
        "the prefix {prefix}"
    );
    assert!(
        disk[..440].iter().all(|&b| b == 0),
        "no boot code in the MBR"
    );
}

/// A validation error's `path` (osbuild's list of keys and indices) in the form the messages
/// use: `pipelines[1].stages[0].options.foo`.
pub fn dotted_path(path: &serde_json::Value) -> String {
    let mut out = String::new();
    for segment in path.as_array().expect("a path is a list") {
        match segment {
            serde_json::Value::Number(i) => out.push_str(&format!("[{i}]")),
            serde_json::Value::String(key) if out.is_empty() => out.push_str(key),
            serde_json::Value::String(key) => out.push_str(&format!(".{key}")),
            other => panic!("not a path segment: {other}"),
        }
    }
    out
}

/// Runs `f` on a thread of its own in a private mount namespace (gone with the thread), so
/// the mounts it makes never reach the host; a panic in `f` is the caller's.
pub fn in_private_namespace<F: FnOnce() + Send>(f: F) {
    std::thread::scope(|s| {
        s.spawn(|| {
            osbuild::mount::enter_private_namespace().expect("private mount namespace");
            f()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p));
    });
}
