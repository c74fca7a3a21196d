//! The built assembler binary, run through its assembler-name symlinks.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_osbuild-assemblers");

fn link(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    if !p.exists() {
        std::os::unix::fs::symlink(BIN, &p).unwrap();
    }
    p
}

fn assemble(dir: &Path, name: &str, stdin: &str) -> Output {
    let mut child = Command::new(link(dir, name))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // An assembler that rejects its name exits without reading stdin: a broken pipe is fine.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

use osbuild_sys::is_root;

/// A small tree: a 0640 file owned 1234:5678 (when root), a 0750 directory, a symlink.
fn tree(dir: &Path) -> PathBuf {
    let t = dir.join("tree");
    fs::create_dir_all(t.join("etc")).unwrap();
    fs::write(t.join("etc/hello"), "hello\n").unwrap();
    fs::set_permissions(t.join("etc/hello"), fs::Permissions::from_mode(0o640)).unwrap();
    fs::set_permissions(t.join("etc"), fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::symlink("etc/hello", t.join("link")).unwrap();
    if is_root() {
        std::os::unix::fs::chown(t.join("etc/hello"), Some(1234), Some(5678)).unwrap();
    }
    t
}

fn has_tool(tool: &str) -> bool {
    ["/usr/bin", "/usr/sbin", "/bin"]
        .iter()
        .any(|d| Path::new(d).join(tool).exists())
}

fn args_json(tree: &Path, out: &Path, options: &str) -> String {
    format!(
        r#"{{"tree": "{}", "options": {options}, "output_dir": "{}"}}"#,
        tree.display(),
        out.display()
    )
}

#[test]
fn tar_with_each_compression() {
    let cases: [(Option<&str>, &str, &[u8]); 7] = [
        (None, "tar", b"./"),
        (Some("gzip"), "gzip", b"\x1f\x8b"),
        (Some("bzip2"), "bzip2", b"BZh"),
        (Some("xz"), "xz", b"\xfd7zXZ"),
        // Debian's GNU tar runs plain `xz` for --lzma, so the stream is .xz there; elsewhere it
        // is the legacy .lzma format. Both are what `tar --lzma` gives on that system.
        (Some("lzma"), "xz", b""),
        (Some("lzip"), "lzip", b"LZIP"),
        (Some("lzop"), "lzop", b"\x89LZO"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let t = tree(dir.path());
    for (compression, tool, magic) in cases {
        if !has_tool(tool) {
            println!("skipped {compression:?}: {tool} is not installed");
            continue;
        }
        let out = dir
            .path()
            .join(format!("out-{tool}-{}", compression.unwrap_or("none")));
        fs::create_dir(&out).unwrap();
        let options = match compression {
            Some(c) => format!(r#"{{"filename": "image.tar", "compression": "{c}"}}"#),
            None => r#"{"filename": "image.tar"}"#.to_owned(),
        };
        let res = assemble(
            dir.path(),
            "org.osbuild.tar",
            &args_json(&t, &out, &options),
        );
        assert!(res.status.success(), "{compression:?}: {res:?}");
        let archive = out.join("image.tar");
        let bytes = fs::read(&archive).unwrap();
        assert!(
            bytes.starts_with(magic),
            "{compression:?}: magic {:x?}",
            &bytes[..8]
        );
        assert_eq!(fs::read_dir(&out).unwrap().count(), 1, "only the archive");

        let list = Command::new("tar")
            .arg("-tvf")
            .arg(&archive)
            .output()
            .unwrap();
        assert!(list.status.success(), "{list:?}");
        let list = String::from_utf8(list.stdout).unwrap();
        let line = |path: &str| {
            list.lines()
                .find(|l| l.ends_with(path))
                .unwrap_or_else(|| panic!("{path} missing in:\n{list}"))
                .to_owned()
        };
        assert!(line(" ./etc/").starts_with("drwxr-x--- "), "{list}");
        let hello = line(" ./etc/hello");
        assert!(hello.starts_with("-rw-r----- "), "{hello}");
        if is_root() {
            // Numeric owners only: no names from the build root's user database.
            assert!(hello.contains(" 1234/5678 "), "{hello}");
        }
        assert!(
            line(" ./link -> etc/hello").starts_with("lrwxrwxrwx "),
            "{list}"
        );
    }
}

#[test]
fn tar_rejects_bad_filenames_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let t = tree(dir.path());
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    let cases = [
        (
            r#"{"filename": "../escape.tar"}"#,
            r#"invalid option "filename": "../escape.tar" must be a plain file name"#,
        ),
        (
            r#"{"filename": ""}"#,
            r#"invalid option "filename": "" must not be empty"#,
        ),
        (
            r#"{"filename": ".."}"#,
            r#"invalid option "filename": ".." must not be"#,
        ),
        (
            r#"{"filename": "."}"#,
            r#"invalid option "filename": "." must not be"#,
        ),
        (r#"{}"#, r#"invalid option "filename": is required"#),
        (
            r#"{"filename": "a", "compression": "zstd"}"#,
            r#"invalid option "compression""#,
        ),
    ];
    for (options, want) in cases {
        let res = assemble(dir.path(), "org.osbuild.tar", &args_json(&t, &out, options));
        assert_eq!(res.status.code(), Some(1), "{options}");
        let err = String::from_utf8_lossy(&res.stderr);
        assert!(err.starts_with("org.osbuild.tar: "), "{err}");
        assert!(err.contains(want), "{options}: {err}");
        assert_eq!(
            fs::read_dir(&out).unwrap().count(),
            0,
            "{options}: wrote something"
        );
    }
    assert!(!dir.path().join("escape.tar").exists());
}

#[test]
fn tar_failure_leaves_no_partial_archive() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    let missing = dir.path().join("no-tree");
    let res = assemble(
        dir.path(),
        "org.osbuild.tar",
        &args_json(&missing, &out, r#"{"filename": "x.tar"}"#),
    );
    assert_eq!(res.status.code(), Some(1));
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(
        err.contains("org.osbuild.tar: tar failed (exit status: 2) creating"),
        "{err}"
    );
    assert_eq!(fs::read_dir(&out).unwrap().count(), 0);
}

#[test]
fn noop_prints_its_options_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    let res = assemble(
        dir.path(),
        "org.osbuild.noop",
        &args_json(dir.path(), &out, r#"{"b": 1, "a": ["x"]}"#),
    );
    assert!(res.status.success(), "{res:?}");
    assert_eq!(
        String::from_utf8(res.stdout).unwrap(),
        "Not doing anything with these options: {\"b\": 1, \"a\": [\"x\"]}\n"
    );
    assert_eq!(fs::read_dir(&out).unwrap().count(), 0);
}

#[test]
fn bad_stdin_is_1_and_unknown_name_is_2() {
    let dir = tempfile::tempdir().unwrap();
    let res = assemble(dir.path(), "org.osbuild.noop", "not json");
    assert_eq!(res.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&res.stderr)
        .contains("org.osbuild.noop: bad arguments on stdin: not JSON"));

    let res = assemble(dir.path(), "org.osbuild.zipl", "{}");
    assert_eq!(res.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&res.stderr).contains("org.osbuild.zipl: unknown assembler name")
    );
}

#[test]
fn every_name_has_a_meta_file_with_a_schema() {
    let out = Command::new(BIN).arg("--list").output().unwrap();
    let names = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        names,
        "org.osbuild.noop\norg.osbuild.qemu\norg.osbuild.rawfs\norg.osbuild.tar\n"
    );
    for name in names.lines() {
        let path = format!("{}/meta/{name}.meta.json", env!("CARGO_MANIFEST_DIR"));
        let meta: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        assert!(meta["summary"].is_string(), "{path}");
        assert!(meta["description"].is_array(), "{path}");
        assert!(meta["schema"].is_object(), "{path}");
        // The sandbox grants CAP_SYS_ADMIN only to those that mount the image's file systems.
        let caps = match name {
            "org.osbuild.qemu" | "org.osbuild.rawfs" => serde_json::json!(["CAP_SYS_ADMIN"]),
            _ => serde_json::Value::Null,
        };
        assert_eq!(meta["capabilities"], caps, "{path}");
    }
    let tar: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/meta/org.osbuild.tar.meta.json"
        ))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(tar["schema"]["required"], serde_json::json!(["filename"]));
    assert_eq!(
        tar["schema"]["properties"]["compression"]["enum"],
        serde_json::json!(["bzip2", "xz", "lzip", "lzma", "lzop", "gzip"])
    );
}

/// File capabilities and user xattrs survive into the archive (set with python3's setxattr;
/// security.* needs root).
#[test]
fn privileged_tar_keeps_xattrs_and_file_capabilities() {
    if !is_root() || !has_tool("python3") {
        println!("skipped: needs root and python3 to set security.capability");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("tree");
    let out = dir.path().join("out");
    fs::create_dir_all(&t).unwrap();
    fs::create_dir(&out).unwrap();
    fs::write(t.join("ping"), "x").unwrap();
    let set = Command::new("python3")
        .arg("-c")
        .arg(
            "import os,sys; p=sys.argv[1]; \
             os.setxattr(p,'security.capability',bytes.fromhex('0100000200200000000000000000000000000000')); \
             os.setxattr(p,'user.k',b'v')",
        )
        .arg(t.join("ping"))
        .status()
        .unwrap();
    if !set.success() {
        println!("skipped: this filesystem does not take xattrs");
        return;
    }
    let res = assemble(
        dir.path(),
        "org.osbuild.tar",
        &args_json(&t, &out, r#"{"filename": "a.tar"}"#),
    );
    assert!(res.status.success(), "{res:?}");
    let list = Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "-tvvf"])
        .arg(out.join("a.tar"))
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(list.contains("x: 20 security.capability"), "{list}");
    assert!(list.contains("x: 1 user.k"), "{list}");
}
