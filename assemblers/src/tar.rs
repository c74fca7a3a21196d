//! `org.osbuild.tar`: the tree as a tarball, `tar [--<compression>] -cf <output_dir>/<filename>
//! -C <tree> .`, run as a child with an explicit argv.
//!
//! Decisions beyond v10:
//! - `--numeric-owner` always: owners are stored as the tree's numbers only. Without it GNU
//!   tar also stores user and group *names*, looked up in the build root's user database (not
//!   the tree's), and an extracting tar maps by name first, so files could land with the wrong
//!   owner. The archive must hold the tree's uid/gid and modes.
//! - ACLs, SELinux labels and all extended attributes (`--acls --selinux --xattrs
//!   --xattrs-include=*`, osbuild HEAD's defaults, each switchable off with the boolean options
//!   `acls`, `selinux`, `xattrs`) when the build root's tar supports them (probed with
//!   `tar --help`); file capabilities live in xattrs, so an image without them would break
//!   `ping` and friends.
//! - Under `SOURCE_DATE_EPOCH` (a reproducible build) the archive is the same bytes whenever
//!   the tree is: names sorted, mtimes clamped to the epoch, no access or change times and
//!   fixed extended-header names in pax headers ([`reproducible_args`]).
//! - `filename` must be a plain file name, so nothing is written outside `output_dir`; a
//!   failed tar leaves no partial archive behind.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Map, Value};

use crate::args::{invalid, Arguments};
use crate::image::options::check_keys;
use crate::image::output::check_filename;
use crate::image::reproducible;
use crate::AssemblerError;

/// The compressions v10 accepts; each is passed to GNU tar as `--<name>`.
pub const COMPRESSIONS: &[&str] = &["bzip2", "xz", "lzip", "lzma", "lzop", "gzip"];

/// The validated options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarOptions {
    /// A plain file name inside `output_dir`.
    pub filename: String,
    /// One of [`COMPRESSIONS`], or none.
    pub compression: Option<&'static str>,
    /// Store POSIX ACLs.
    pub acls: bool,
    /// Store SELinux labels.
    pub selinux: bool,
    /// Store extended attributes.
    pub xattrs: bool,
}

impl TarOptions {
    /// Validates the options object.
    pub fn parse(options: &Map<String, Value>) -> Result<Self, AssemblerError> {
        check_keys(
            options,
            &["filename", "compression", "acls", "selinux", "xattrs"],
            "options",
        )?;
        let filename = match options.get("filename") {
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(invalid("filename", "must be a string")),
            None => return Err(invalid("filename", "is required")),
        };
        check_filename(&filename)?;
        let compression = match options.get("compression") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => {
                Some(*COMPRESSIONS.iter().find(|c| *c == s).ok_or_else(|| {
                    invalid(
                        "compression",
                        format!("{s:?} is not one of {}", COMPRESSIONS.join(", ")),
                    )
                })?)
            }
            Some(_) => return Err(invalid("compression", "must be a string")),
        };
        let flag = |key: &'static str| match options.get(key) {
            None => Ok(true),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(invalid(key, "must be true or false")),
        };
        Ok(TarOptions {
            filename,
            compression,
            acls: flag("acls")?,
            selinux: flag("selinux")?,
            xattrs: flag("xattrs")?,
        })
    }
}

/// What the build root's tar can store besides the basics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TarFeatures {
    /// `--acls`.
    pub acls: bool,
    /// `--selinux`.
    pub selinux: bool,
    /// `--xattrs` and `--xattrs-include`.
    pub xattrs: bool,
}

impl TarFeatures {
    /// Reads the features from `tar --help` text.
    pub fn from_help(help: &str) -> Self {
        TarFeatures {
            acls: help.contains("--acls"),
            selinux: help.contains("--selinux"),
            xattrs: help.contains("--xattrs-include"),
        }
    }

    /// Asks the build root's tar.
    pub fn probe() -> Self {
        Command::new("tar")
            .arg("--help")
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin")
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .map(|o| Self::from_help(&String::from_utf8_lossy(&o.stdout)))
            .unwrap_or_default()
    }
}

/// The tar argv (without the program name).
pub fn tar_args(
    opts: &TarOptions,
    features: TarFeatures,
    tree: &Path,
    output: &Path,
) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["--numeric-owner".into()];
    if opts.acls && features.acls {
        args.push("--acls".into());
    }
    if opts.selinux && features.selinux {
        args.push("--selinux".into());
    }
    if opts.xattrs && features.xattrs {
        args.extend(["--xattrs".into(), "--xattrs-include=*".into()]);
    }
    if let Some(c) = opts.compression {
        args.push(format!("--{c}").into());
    }
    args.extend([
        "-cf".into(),
        output.into(),
        "-C".into(),
        tree.into(),
        ".".into(),
    ]);
    args
}

/// The arguments that make GNU tar's output depend on the tree alone, under a source epoch.
pub fn reproducible_args(epoch: Option<u64>) -> Vec<OsString> {
    let Some(epoch) = epoch else {
        return Vec::new();
    };
    vec![
        "--sort=name".into(),
        format!("--mtime=@{epoch}").into(),
        "--clamp-mtime".into(),
        "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime".into(),
    ]
}

/// Runs the assembler.
pub fn assemble(args: &Arguments) -> Result<(), AssemblerError> {
    let opts = TarOptions::parse(&args.options)?;
    let output: PathBuf = args.output_dir.join(&opts.filename);
    let epoch = reproducible::source_epoch();
    let mut argv = reproducible_args(epoch);
    argv.extend(tar_args(&opts, TarFeatures::probe(), &args.tree, &output));
    let result = Command::new("tar")
        .args(&argv)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin")
        .env("LC_ALL", "C")
        .envs(reproducible::tool_env(epoch))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status();
    let failure = match result {
        Ok(s) if s.success() => return Ok(()),
        Ok(s) => format!("tar failed ({s}) creating {}", output.display()),
        Err(e) => format!("cannot run tar: {e}"),
    };
    // Never leave a partial archive under the final name.
    let _ = std::fs::remove_file(&output);
    Err(AssemblerError::Tool(failure))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(json: &str) -> Result<TarOptions, AssemblerError> {
        let v: Value = serde_json::from_str(json).unwrap();
        TarOptions::parse(v.as_object().unwrap())
    }

    /// (filename, compression) or a message fragment.
    type Want = Result<(&'static str, Option<&'static str>), &'static str>;

    #[test]
    fn options_table() {
        let cases: [(&str, Want); 12] = [
            (r#"{"filename": "a.tar"}"#, Ok(("a.tar", None))),
            (
                r#"{"filename": "a.tar.xz", "compression": "xz"}"#,
                Ok(("a.tar.xz", Some("xz"))),
            ),
            (r#"{"filename": "..a"}"#, Ok(("..a", None))),
            (r#"{}"#, Err(r#"invalid option "filename": is required"#)),
            (
                r#"{"filename": 3}"#,
                Err(r#"invalid option "filename": must be a string"#),
            ),
            (
                r#"{"filename": ""}"#,
                Err(r#"invalid option "filename": "" must not be empty"#),
            ),
            (r#"{"filename": "."}"#, Err(r#"must not be "." or "..""#)),
            (r#"{"filename": ".."}"#, Err(r#"must not be "." or "..""#)),
            (r#"{"filename": "../x.tar"}"#, Err("without \"/\"")),
            (r#"{"filename": "/etc/x"}"#, Err("without \"/\"")),
            (
                r#"{"filename": "a", "compression": "zstd"}"#,
                Err(
                    r#"invalid option "compression": "zstd" is not one of bzip2, xz, lzip, lzma, lzop, gzip"#,
                ),
            ),
            (
                r#"{"filename": "a", "level": 9}"#,
                Err(r#"unknown option "level""#),
            ),
        ];
        for (json, want) in cases {
            match (opts(json), want) {
                (Ok(o), Ok((f, c))) => {
                    assert_eq!((o.filename.as_str(), o.compression), (f, c), "{json}")
                }
                (Err(e), Err(msg)) => assert!(e.to_string().contains(msg), "{json}: {e}"),
                (got, _) => panic!("{json}: {got:?}"),
            }
        }
        assert!(opts(r#"{"filename": "a\u0000b"}"#).is_err());
    }

    #[test]
    fn argv_table() {
        let all = TarFeatures {
            acls: true,
            selinux: true,
            xattrs: true,
        };
        let o = opts(r#"{"filename": "t.tar.gz", "compression": "gzip"}"#).unwrap();
        let argv = |o: &TarOptions, f| {
            tar_args(
                o,
                f,
                Path::new("/run/osbuild/tree"),
                Path::new("/run/osbuild/output/t"),
            )
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
        };
        assert_eq!(
            argv(&o, all),
            "--numeric-owner --acls --selinux --xattrs --xattrs-include=* --gzip \
             -cf /run/osbuild/output/t -C /run/osbuild/tree ."
        );
        assert_eq!(
            argv(&o, TarFeatures::default()),
            "--numeric-owner --gzip -cf /run/osbuild/output/t -C /run/osbuild/tree ."
        );
        let off =
            opts(r#"{"filename": "t", "acls": false, "selinux": false, "xattrs": false}"#).unwrap();
        assert_eq!(
            argv(&off, all),
            "--numeric-owner -cf /run/osbuild/output/t -C /run/osbuild/tree ."
        );
    }

    #[test]
    fn reproducible_arguments_only_under_an_epoch() {
        assert!(reproducible_args(None).is_empty());
        assert_eq!(
            reproducible_args(Some(1_700_000_000)),
            [
                "--sort=name",
                "--mtime=@1700000000",
                "--clamp-mtime",
                "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime"
            ]
        );
    }

    #[test]
    fn features_from_help() {
        assert_eq!(
            TarFeatures::from_help("busybox tar"),
            TarFeatures::default()
        );
        let gnu = "      --acls  Enable\n      --selinux  x\n      --xattrs-include=MASK  y";
        assert_eq!(
            TarFeatures::from_help(gnu),
            TarFeatures {
                acls: true,
                selinux: true,
                xattrs: true
            }
        );
    }
}
