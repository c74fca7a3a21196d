//! `org.osbuild.rpm` under osbuild HEAD's protocol (version 2 manifests): HEAD's options and
//! its files input `packages`, the rpms a client pinned by checksum in `org.osbuild.curl`.
//!
//! In order: the `gpgkeys` are imported into the tree's rpm database; every package whose
//! input metadata says `rpm.check_gpg` must carry a signature rpmkeys verifies against them
//! (an unsigned package fails too); then all are installed with `rpm --root` (digests checked,
//! signatures already were), with `/proc`, `/sys` and `/dev` mounted, a placeholder
//! machine-id, the `ostree_booted` marker and dracut masked (`disable_dracut`) while rpm runs;
//! `gpgkeys.fromtree` are imported afterwards. The installed packages are reported as the
//! stage's metadata (`packages`: name, version, release, epoch, arch and signatures), as
//! HEAD's stage reports them.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::args::{Args, Opts};
use crate::command;
use crate::error::StageError;
use crate::mounts::{isolate, Mounts};
use crate::rpmtree::{self, MachineId};
use crate::tree;

/// HEAD's option names (`schema_2`); anything else is refused by name.
const KNOWN_OPTIONS: &[&str] = &[
    "dbpath",
    "gpgkeys",
    "gpgkeys.fromtree",
    "rpmkeys",
    "disable_dracut",
    "exclude",
    "install_langs",
    "nodeps",
    "ignorearch",
    "ostree_booted",
    "generic_env",
    "kernel_install_env",
];

/// `kernel_install_env` members and the variables kernel-install reads them from.
const KERNEL_INSTALL_ENV: &[(&str, &str)] = &[
    ("boot_root", "BOOT_ROOT"),
    ("conf_root", "KERNEL_INSTALL_CONF_ROOT"),
    ("plugins", "KERNEL_INSTALL_PLUGINS"),
    ("machine_id", "MACHINE_ID"),
];

/// The dracut plugins of kernel-install that `disable_dracut` masks.
const DRACUT_PLUGINS: &[&str] = &["50-dracut.install", "51-dracut-rescue.install"];

/// Marks the tree as an ostree system while packages install (authselect, for one, looks).
const OSTREE_BOOTED: &str = "run/ostree-booted";

/// One rpm of the `packages` input.
#[derive(Debug, Clone, PartialEq)]
struct Package {
    checksum: String,
    path: PathBuf,
    check_gpg: bool,
}

/// HEAD's options, checked.
#[derive(Debug, Default)]
struct Options<'a> {
    dbpath: Option<&'a str>,
    gpgkeys: Vec<&'a str>,
    keys_from_tree: Vec<&'a str>,
    rpmkeys: &'a str,
    ignore_import_failures: bool,
    disable_dracut: bool,
    ostree_booted: bool,
    /// Flags for `rpm --install` (`--excludedocs`, `--nodeps`, ...).
    install_flags: Vec<String>,
    /// Variables for rpm and its scriptlets.
    env: Vec<(String, String)>,
}

impl<'a> Options<'a> {
    fn read(args: &'a Args) -> Result<Options<'a>, StageError> {
        if args.options.contains_key("packages") {
            return Err(StageError::option(
                "packages",
                "is v10's form: a version 2 manifest hands the rpms over as the files input \"packages\"",
            ));
        }
        if let Some(k) = args
            .options
            .keys()
            .find(|k| !KNOWN_OPTIONS.contains(&k.as_str()))
        {
            return Err(StageError::option(k, "is not an option of org.osbuild.rpm"));
        }
        let o = args.opts();
        let dbpath = o.opt_str("dbpath")?;
        if let Some(p) = dbpath {
            if !p.starts_with('/') || p.split('/').any(|c| c == "..") {
                return Err(StageError::option(
                    "dbpath",
                    format!("{p:?} must be an absolute path inside the tree, without \"..\""),
                ));
            }
        }
        let rpmkeys = o.opt_object("rpmkeys")?;
        if let Some(r) = &rpmkeys {
            only(r, &["bin_path", "ignore_import_failures"])?;
        }
        Ok(Options {
            dbpath,
            gpgkeys: o.str_list("gpgkeys")?,
            keys_from_tree: o.str_list("gpgkeys.fromtree")?,
            rpmkeys: match &rpmkeys {
                Some(r) => r.opt_str("bin_path")?.unwrap_or("rpmkeys"),
                None => "rpmkeys",
            },
            ignore_import_failures: match &rpmkeys {
                Some(r) => r.bool_or("ignore_import_failures", false)?,
                None => false,
            },
            disable_dracut: o.bool_or("disable_dracut", false)?,
            ostree_booted: o.bool_or("ostree_booted", false)?,
            install_flags: install_flags(&o)?,
            env: environment(&o)?,
        })
    }
}

/// Refuses members of `o` other than `known`.
fn only(o: &Opts, known: &[&str]) -> Result<(), StageError> {
    match o.entries().find(|(k, _)| !known.contains(k)) {
        Some((k, _)) => Err(StageError::option(o.name(k), "is not a known option")),
        None => Ok(()),
    }
}

/// The flags of `rpm --install` that `exclude`, `nodeps`, `install_langs` and `ignorearch`
/// ask for.
fn install_flags(o: &Opts) -> Result<Vec<String>, StageError> {
    let mut flags = Vec::new();
    if let Some(exclude) = o.opt_object("exclude")? {
        only(&exclude, &["docs"])?;
        if exclude.bool_or("docs", false)? {
            flags.push("--excludedocs".to_owned());
        }
    }
    if o.bool_or("nodeps", false)? {
        flags.push("--nodeps".to_owned());
    }
    if let Some(langs) = o.opt_str_list("install_langs")? {
        if langs.is_empty() {
            return Err(StageError::option("install_langs", "must not be empty"));
        }
        if let Some(l) = langs.iter().find(|l| l.is_empty() || l.contains(':')) {
            return Err(StageError::option(
                "install_langs",
                format!("{l:?} is not a locale name"),
            ));
        }
        flags.push("--define".to_owned());
        flags.push(format!("_install_langs {}", langs.join(":")));
    }
    if o.bool_or("ignorearch", false)? {
        flags.push("--ignorearch".to_owned());
    }
    Ok(flags)
}

/// `generic_env` and `kernel_install_env` as variables; one set by both is refused.
fn environment(o: &Opts) -> Result<Vec<(String, String)>, StageError> {
    let mut env = Vec::new();
    if let Some(generic) = o.opt_object("generic_env")? {
        for (k, _) in generic.entries() {
            let value = generic.str(k)?;
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                return Err(StageError::option(
                    generic.name(k),
                    "is not an environment variable name",
                ));
            }
            env.push((k.to_owned(), value.to_owned()));
        }
    }
    if let Some(kernel) = o.opt_object("kernel_install_env")? {
        let known: Vec<&str> = KERNEL_INSTALL_ENV.iter().map(|(k, _)| *k).collect();
        only(&kernel, &known)?;
        for (key, var) in KERNEL_INSTALL_ENV {
            let Some(value) = kernel.opt_str(key)?.filter(|v| !v.is_empty()) else {
                continue;
            };
            if env.iter().any(|(k, _)| k == var) {
                return Err(StageError::option(
                    kernel.name(key),
                    format!("sets {var}, which generic_env sets too"),
                ));
            }
            env.push(((*var).to_owned(), value.to_owned()));
        }
    }
    Ok(env)
}

/// The rpms of the files input `packages`, each with its `rpm.check_gpg` metadata.
fn packages(args: &Args) -> Result<Vec<Package>, StageError> {
    let files = args.input_files("packages")?;
    let data = &args.input("packages")?.data["files"];
    files
        .into_iter()
        .map(|(name, path)| {
            let bad =
                |what: String| StageError::Other(format!("input \"packages\": {name}: {what}"));
            if name.contains('/') {
                return Err(bad("must be a plain file name".into()));
            }
            if !path.is_file() {
                return Err(bad(format!(
                    "is not a file ({} does not exist)",
                    path.display()
                )));
            }
            let check_gpg = match data[&name].get("rpm.check_gpg") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(bad("rpm.check_gpg must be true or false".into())),
            };
            Ok(Package {
                checksum: name,
                path,
                check_gpg,
            })
        })
        .collect()
}

pub fn run(args: &Args) -> Result<i32, StageError> {
    let options = Options::read(args)?;
    let packages = packages(args)?;
    let tree = &args.tree;

    isolate()?;
    let mounts = Mounts::setup(tree, None)?;
    let dbpath = match options.dbpath {
        Some(p) => p.to_owned(),
        None => rpmtree::dbpath(tree),
    };
    tree::create_dirs(tree, dbpath.trim_start_matches('/'), 0o755)?;
    let scratch = std::env::temp_dir().join(format!("osbuild-rpm-{}", std::process::id()));
    fs::create_dir_all(&scratch).map_err(|e| StageError::io("cannot create", &scratch, e))?;
    let install = Install {
        tree,
        dbpath: &dbpath,
        options: &options,
    };
    let result = install.run(&packages, &scratch);
    let _ = fs::remove_dir_all(&scratch);
    drop(mounts);
    result?;
    println!("installed {} packages", packages.len());
    install.report_metadata()?;
    Ok(0)
}

/// One installation into `tree`.
struct Install<'a> {
    tree: &'a Path,
    dbpath: &'a str,
    options: &'a Options<'a>,
}

impl Install<'_> {
    /// `program --root TREE --dbpath DBPATH`.
    fn tool(&self, program: &str) -> std::process::Command {
        let mut cmd = command::tool(program);
        cmd.arg("--root")
            .arg(self.tree)
            .args(["--dbpath", self.dbpath]);
        cmd
    }

    fn run(&self, packages: &[Package], scratch: &Path) -> Result<(), StageError> {
        self.import_keys(scratch)?;
        for p in packages.iter().filter(|p| p.check_gpg) {
            self.check_signature(p)?;
        }
        let tree = self.tree;
        let machine_id = MachineId::placeholder(tree)?;
        if self.options.ostree_booted {
            tree::write_file(tree, OSTREE_BOOTED, b"", 0o644)?;
        }
        let masked = match self.options.disable_dracut {
            true => Some(DracutMask::install(tree)?),
            false => None,
        };
        let installed = self
            .install(packages)
            .and_then(|()| self.import_keys_from_tree());
        let unmasked = masked.map_or(Ok(()), |m| m.remove(self));
        let unmarked = match self.options.ostree_booted {
            true => tree::remove_file(tree, OSTREE_BOOTED).map(drop),
            false => Ok(()),
        };
        let finished = machine_id.finish(tree);
        installed.and(unmasked).and(unmarked).and(finished)
    }

    fn import_keys(&self, scratch: &Path) -> Result<(), StageError> {
        for (i, key) in self.options.gpgkeys.iter().enumerate() {
            let file = scratch.join(format!("key{i}.asc"));
            fs::write(&file, key).map_err(|e| StageError::io("cannot write", &file, e))?;
            let imported = command::run(self.tool(self.options.rpmkeys).arg("--import").arg(&file));
            match imported {
                Ok(()) => {}
                Err(e) if self.options.ignore_import_failures => {
                    println!("gpgkeys[{i}]: not imported ({e}); ignored (rpmkeys.ignore_import_failures)")
                }
                Err(e) => return Err(StageError::option(format!("gpgkeys[{i}]"), e.to_string())),
            }
        }
        Ok(())
    }

    /// Fails unless rpmkeys verifies a signature of `p` against the imported keys (digests
    /// alone, an unsigned package, are not enough).
    fn check_signature(&self, p: &Package) -> Result<(), StageError> {
        let mut cmd = self.tool(self.options.rpmkeys);
        // At level "signature" an unsigned package fails too, where plain --checksig passes it.
        cmd.args([
            "--define",
            "_pkgverify_level signature",
            "--checksig",
            "--verbose",
        ])
        .arg(&p.path);
        let out = cmd.output().map_err(|source| StageError::Spawn {
            program: self.options.rpmkeys.to_owned(),
            source,
        })?;
        if out.status.success() {
            return Ok(());
        }
        // `--verbose` lists each digest and signature with its verdict: keep those that failed.
        let said = String::from_utf8_lossy(&out.stdout);
        let failed: Vec<&str> = said
            .lines()
            .skip(1)
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.ends_with(": OK"))
            .collect();
        let detail = match failed.is_empty() {
            false => failed.join("; "),
            true => format!(
                "{} {}",
                said.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        };
        Err(StageError::Other(format!(
            "package {} ({}) failed its signature check against the given gpgkeys \
             (rpm.check_gpg is set): {}",
            nevra(&p.path),
            p.checksum,
            detail
        )))
    }

    fn install(&self, packages: &[Package]) -> Result<(), StageError> {
        let mut cmd = self.tool("rpm");
        cmd.arg("--verbose")
            .args(&self.options.install_flags)
            // Signatures were checked where asked for; digests still are.
            .arg("--nosignature")
            .arg("--install")
            .args(packages.iter().map(|p| &p.path))
            .envs(self.options.env.iter().map(|(k, v)| (k, v)));
        command::run(&mut cmd)
    }

    fn import_keys_from_tree(&self) -> Result<(), StageError> {
        for (i, key) in self.options.keys_from_tree.iter().enumerate() {
            let name = format!("gpgkeys.fromtree[{i}]");
            let file = tree::tree_path(self.tree, key.trim_start_matches('/'))?;
            if !file.is_file() {
                return Err(StageError::option(
                    name,
                    format!("{key} is not a file in the tree"),
                ));
            }
            command::run(self.tool(self.options.rpmkeys).arg("--import").arg(&file))
                .map_err(|e| StageError::option(name, e.to_string()))?;
            println!("imported gpg keys from {key}");
        }
        Ok(())
    }

    /// Whether a package of the tree owns `path`.
    fn owned(&self, path: &str) -> bool {
        self.tool("rpm")
            .args(["--query", "--file", path])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// The tags the build root's rpm knows (`rpm --querytags`).
    fn known_tags(&self) -> Vec<String> {
        command::tool("rpm")
            .arg("--querytags")
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Writes the installed packages as the stage's metadata where the engine reads it.
    fn report_metadata(&self) -> Result<(), StageError> {
        let meta = Path::new(osbuild_protocol::paths::META_FILE);
        if !meta.exists() {
            return Ok(());
        }
        let packages = self.installed()?;
        let text = json!({ "packages": packages }).to_string();
        fs::write(meta, text).map_err(|e| StageError::io("cannot write", meta, e))
    }

    /// The installed packages, sorted by name, with what HEAD's stage reports of each.
    fn installed(&self) -> Result<Vec<Value>, StageError> {
        let mut query = self.tool("rpm");
        let format = metadata_format(&self.known_tags());
        query.args(["--query", "--all", "--queryformat", &format]);
        let out = query.output().map_err(|source| StageError::Spawn {
            program: "rpm".into(),
            source,
        })?;
        if !out.status.success() {
            return Err(StageError::Tool {
                program: command::describe(&query),
                status: command::describe_status(out.status),
            });
        }
        let mut packages: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(package_metadata)
            .collect();
        packages.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        Ok(packages)
    }
}

/// What each installed package reports: (key, rpm tag); a tag rpm cannot show is null.
const METADATA_TAGS: &[(&str, &str)] = &[
    ("name", "NAME"),
    ("version", "VERSION"),
    ("release", "RELEASE"),
    ("epoch", "EPOCH"),
    ("arch", "ARCH"),
    ("sigmd5", "SIGMD5"),
    ("sha1header", "SHA1HEADER"),
    ("sha256header", "SHA256HEADER"),
    ("sha3_256header", "SHA3_256HEADER"),
    ("sigpgp", "SIGPGP"),
    ("siggpg", "SIGGPG"),
];

/// An rpm query format printing [`METADATA_TAGS`] tab-separated, one package a line; a tag
/// the build root's rpm does not know (not in `known`, when that could be read) prints as
/// absent.
fn metadata_format(known: &[String]) -> String {
    let fields: Vec<String> = METADATA_TAGS
        .iter()
        .map(
            |(_, tag)| match known.is_empty() || known.iter().any(|k| k == tag) {
                true => format!("%|{tag}?{{%{{{tag}}}}}:{{(none)}}|"),
                false => "(none)".to_owned(),
            },
        )
        .collect();
    fields.join("\\t") + "\\n"
}

/// One line of [`metadata_format`]'s output as an object.
fn package_metadata(line: &str) -> Value {
    let mut obj = serde_json::Map::new();
    for ((key, _), value) in METADATA_TAGS.iter().zip(line.split('\t')) {
        let v = match value {
            "(none)" | "" => Value::Null,
            v => Value::String(v.to_owned()),
        };
        obj.insert((*key).to_owned(), v);
    }
    Value::Object(obj)
}

/// `name-version-release.arch` of the rpm file at `path`, or its file name when rpm cannot
/// read it.
fn nevra(path: &Path) -> String {
    command::tool("rpm")
        .args(["--query", "--package", "--nosignature", "--nodigest"])
        .args(["--queryformat", "%{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}"])
        .arg(path)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success() && !o.stdout.is_empty())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// kernel-install's dracut plugins masked (linked to /dev/null) while packages install, so
/// installing a kernel builds no initramfs; [`DracutMask::remove`] unmasks them and removes
/// the directories it had to create unless a package now owns them.
struct DracutMask {
    links: Vec<String>,
    created: Vec<&'static str>,
}

impl DracutMask {
    fn install(tree: &Path) -> Result<DracutMask, StageError> {
        let mut created = Vec::new();
        for dir in ["etc/kernel", "etc/kernel/install.d"] {
            if fs::symlink_metadata(tree::tree_path(tree, dir)?).is_err() {
                created.push(dir);
            }
        }
        let mut links = Vec::new();
        for plugin in DRACUT_PLUGINS {
            let link = format!("etc/kernel/install.d/{plugin}");
            tree::write_symlink(tree, &link, "/dev/null")?;
            links.push(link);
        }
        Ok(DracutMask { links, created })
    }

    fn remove(self, install: &Install) -> Result<(), StageError> {
        for link in &self.links {
            tree::remove_file(install.tree, link)?;
        }
        // Deepest first; a directory a package owns, or that holds files now, stays.
        for dir in self.created.iter().rev() {
            if !install.owned(&format!("/{dir}")) {
                let _ = fs::remove_dir(tree::tree_path(install.tree, dir)?);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head_args(options: Value, files: Value) -> Args {
        let text = json!({
            "tree": "/t",
            "options": options,
            "inputs": {"packages": {"path": "/i/packages", "data": {"files": files}}}
        })
        .to_string();
        Args::parse_head(&text).unwrap()
    }

    #[test]
    fn options_become_flags_and_environment() {
        let args = head_args(
            json!({"exclude": {"docs": true}, "nodeps": true, "install_langs": ["en_US", "de_DE"],
                   "ignorearch": true, "generic_env": {"A": "1"},
                   "kernel_install_env": {"boot_root": "/boot", "machine_id": ""},
                   "rpmkeys": {"bin_path": "/usr/bin/rpmkeys", "ignore_import_failures": true},
                   "dbpath": "/var/lib/rpm"}),
            json!({}),
        );
        let o = Options::read(&args).unwrap();
        assert_eq!(
            o.install_flags,
            [
                "--excludedocs",
                "--nodeps",
                "--define",
                "_install_langs en_US:de_DE",
                "--ignorearch"
            ]
        );
        let env: Vec<(&str, &str)> = o
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(env, [("A", "1"), ("BOOT_ROOT", "/boot")]);
        assert_eq!(o.rpmkeys, "/usr/bin/rpmkeys");
        assert!(o.ignore_import_failures);
        assert_eq!(o.dbpath, Some("/var/lib/rpm"));
    }

    #[test]
    fn what_is_not_heads_is_refused_by_name() {
        let cases = [
            (json!({"packages": []}), "option \"packages\": is v10's form"),
            (json!({"exclude": {"docs": true, "info": true}}), "option \"exclude.info\": is not a known option"),
            (json!({"sign": true}), "option \"sign\": is not an option of org.osbuild.rpm"),
            (json!({"rpmkeys": {"path": "x"}}), "option \"rpmkeys.path\": is not a known option"),
            (json!({"kernel_install_env": {"layout": "bls"}}), "option \"kernel_install_env.layout\": is not a known option"),
            (
                json!({"generic_env": {"BOOT_ROOT": "/a"}, "kernel_install_env": {"boot_root": "/b"}}),
                "option \"kernel_install_env.boot_root\": sets BOOT_ROOT, which generic_env sets too",
            ),
            (json!({"generic_env": {"A": 1}}), "option \"generic_env.A\": must be a string"),
            (json!({"dbpath": "var/lib/rpm"}), "option \"dbpath\": \"var/lib/rpm\" must be an absolute path"),
            (json!({"dbpath": "/../rpm"}), "must be an absolute path inside the tree"),
            (json!({"install_langs": []}), "option \"install_langs\": must not be empty"),
        ];
        for (options, want) in cases {
            let args = head_args(options.clone(), json!({}));
            let e = Options::read(&args).unwrap_err().to_string();
            assert!(e.contains(want), "{options}: {e}");
        }
    }

    #[test]
    fn packages_carry_their_check_gpg_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let sum = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        for c in ['a', 'b'] {
            fs::write(dir.path().join(sum(c)), b"rpm").unwrap();
        }
        let text = json!({
            "tree": "/t", "options": {},
            "inputs": {"packages": {"path": dir.path(), "data": {"files": {
                sum('a'): {"rpm.check_gpg": true}, sum('b'): {}}}}}
        })
        .to_string();
        let args = Args::parse_head(&text).unwrap();
        let got: Vec<(String, bool)> = packages(&args)
            .unwrap()
            .into_iter()
            .map(|p| (p.checksum, p.check_gpg))
            .collect();
        assert_eq!(got, [(sum('a'), true), (sum('b'), false)]);

        let missing = json!({"tree": "/t", "options": {},
            "inputs": {"packages": {"path": dir.path(), "data": {"files": {sum('c'): {}}}}}});
        let args = Args::parse_head(&missing.to_string()).unwrap();
        let e = packages(&args).unwrap_err().to_string();
        assert!(
            e.contains(&format!("input \"packages\": {}: is not a file", sum('c'))),
            "{e}"
        );

        let bad = json!({"tree": "/t", "options": {},
            "inputs": {"packages": {"path": dir.path(), "data": {"files": {sum('a'): {"rpm.check_gpg": "yes"}}}}}});
        let args = Args::parse_head(&bad.to_string()).unwrap();
        let e = packages(&args).unwrap_err().to_string();
        assert!(e.contains("rpm.check_gpg must be true or false"), "{e}");
    }

    #[test]
    fn metadata_lines_become_objects() {
        let known: Vec<String> = ["NAME", "VERSION", "SIGMD5"].map(String::from).to_vec();
        let format = metadata_format(&known);
        assert_eq!(format.matches("\\t").count(), METADATA_TAGS.len() - 1);
        assert!(
            format.starts_with("%|NAME?{%{NAME}}:{(none)}|\\t%|VERSION?"),
            "{format}"
        );
        assert!(
            format.contains("\\t(none)\\t"),
            "unknown tags print as absent: {format}"
        );
        let line = "bash\t5.2\t1.fc39\t(none)\tx86_64\tabc\t(none)\t(none)\t(none)\t(none)\t(none)";
        assert_eq!(
            package_metadata(line),
            json!({"name": "bash", "version": "5.2", "release": "1.fc39", "epoch": null,
                   "arch": "x86_64", "sigmd5": "abc", "sha1header": null, "sha256header": null, "sha3_256header": null,
                   "sigpgp": null, "siggpg": null})
        );
    }
}
