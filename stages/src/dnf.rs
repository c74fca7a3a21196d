//! `org.osbuild.dnf` and `org.osbuild.yum`: resolve and install packages from repositories
//! with the build root's dnf (or yum) and `--installroot`, as osbuild v10 does.
//!
//! The repositories are written into a private configuration (the build root's own repo files
//! are never read); a repository given as a string is a checksum that the `org.osbuild.dnf`
//! source resolves, through the sources API, into its configuration, client certificate and
//! key included. Those are only ever written to 0600 files in a 0700 directory of the stage's
//! private `/tmp`, removed before any package code runs; nothing here prints them. (A
//! password in a repository URL is not a secret: dnf prints and logs URLs.)
//!
//! These are the only stages that declare network use, and they use it for two steps:
//! 1. dnf: dnf downloads the repositories' metadata (`makecache`); each repository's
//!    `repodata/repomd.xml` must have the sha256 the manifest gives, otherwise the stage fails
//!    naming the repository, before any package is downloaded;
//! 2. dnf resolves the transaction with that metadata and downloads the packages
//!    (`--downloadonly`);
//! 3. the client keys are deleted, the stage moves into a new, empty network namespace, mounts
//!    `/proc`, `/sys` and `/dev` into the tree (private mount namespace; `/sys` mounted only
//!    now shows no host interface) and writes a placeholder machine-id; the same transaction
//!    is installed from the cache (`-C`), so package scriptlets can reach nothing;
//! 4. the cache is emptied, the machine-id emptied, the random seed removed.
//!
//! Package specs are names, globs, groups or provides, never URLs (which would bypass the
//! checksums and signatures and cannot be installed from the cache). The rpm database goes
//! where [`rpmtree::dbpath`] says (dnf is told through `HOME/.rpmmacros`). dnf5 (Fedora 41 and
//! later) is not supported, as in v10: its cache layout differs and the metadata check says so.

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::args::{Args, Opts};
use crate::command;
use crate::error::StageError;
use crate::mounts::{no_network, private_mounts, Mounts};
use crate::rpmtree::{self, MachineId};
use crate::sources_api;
use crate::tree;

/// Which front end a stage drives.
#[derive(Clone, Copy, PartialEq)]
enum Flavour {
    Dnf,
    Yum,
}

/// One repository, as written into the configuration.
struct Repo {
    /// Where the manifest lists it, for messages: `repos[1]`.
    name: String,
    /// The checksum the manifest named it by, when the `org.osbuild.dnf` source resolved it.
    reference: Option<String>,
    /// Key and value of each location given (metalink, mirrorlist, baseurl), in that order.
    locations: Vec<(&'static str, String)>,
    /// Lowercase hex sha256 of `repomd.xml` the manifest promises (dnf only).
    checksum: Option<String>,
    /// PEM or armored contents: sslcacert, sslclientcert, sslclientkey, gpgkey.
    files: Vec<(&'static str, String)>,
}

const LOCATIONS: [&str; 3] = ["metalink", "mirrorlist", "baseurl"];
const FILES: [&str; 4] = ["sslcacert", "sslclientcert", "sslclientkey", "gpgkey"];

impl Repo {
    fn parse(name: String, obj: &Map<String, Value>, flavour: Flavour) -> Result<Repo, StageError> {
        let text = |key: &str| -> Result<Option<String>, StageError> {
            match obj.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(StageError::option(
                    format!("{name}.{key}"),
                    "must be a string",
                )),
            }
        };
        let mut locations = Vec::new();
        for key in LOCATIONS {
            if let Some(url) = text(key)?.filter(|u| !u.is_empty()) {
                if url.chars().any(char::is_control) {
                    return Err(StageError::option(
                        format!("{name}.{key}"),
                        "must not contain control characters",
                    ));
                }
                locations.push((key, url));
            }
        }
        if locations.is_empty() {
            return Err(StageError::option(
                name,
                "needs one of metalink, mirrorlist or baseurl",
            ));
        }
        let mut files = Vec::new();
        for key in FILES {
            if let Some(contents) = text(key)? {
                files.push((key, contents));
            }
        }
        let checksum = match (flavour, text("checksum")?) {
            (Flavour::Yum, _) => None,
            (Flavour::Dnf, None) => {
                return Err(StageError::option(
                    format!("{name}.checksum"),
                    "is required (sha256:<hex> of the repository's repomd.xml)",
                ))
            }
            (Flavour::Dnf, Some(c)) => Some(parse_checksum(&c).ok_or_else(|| {
                StageError::option(
                    format!("{name}.checksum"),
                    format!("{c:?} is not sha256:<64 hexadecimal digits>"),
                )
            })?),
        };
        Ok(Repo {
            name,
            reference: None,
            locations,
            checksum,
            files,
        })
    }

    /// The URL libdnf names the cache after (and messages show): metalink, else mirrorlist,
    /// else baseurl.
    fn main_url(&self) -> &str {
        &self.locations[0].1
    }

    /// `repos[1] (https://mirror/...)`, or `repos[1] (https://mirror/..., "sha256:..." of
    /// the org.osbuild.dnf source)`; credentials in the URL hidden.
    fn describe(&self) -> String {
        let url = redact_url(self.main_url());
        match &self.reference {
            None => format!("{} ({url})", self.name),
            Some(r) => format!("{} ({url}, {r:?} of the org.osbuild.dnf source)", self.name),
        }
    }
}

/// `sha256:HEX` -> lowercase HEX.
fn parse_checksum(c: &str) -> Option<String> {
    let hex = c.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_lowercase())
}

/// A URL with any `user:password@` replaced, for messages.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// The `repos` option: objects as they are, strings (dnf only) resolved through the
/// `org.osbuild.dnf` source at `socket` (one request for all of them), in the manifest's order.
fn resolve_repos(
    opts: &Opts,
    raw: &[Value],
    flavour: Flavour,
    socket: &Path,
) -> Result<Vec<Repo>, StageError> {
    if raw.is_empty() {
        return Err(StageError::option(
            opts.name("repos"),
            "needs at least one repository",
        ));
    }
    for (i, item) in raw.iter().enumerate() {
        let name = format!("{}[{i}]", opts.name("repos"));
        match item {
            Value::Object(obj) => {
                if let Some(key) = ["sslclientcert", "sslclientkey"]
                    .into_iter()
                    .find(|k| obj.contains_key(*k))
                {
                    return Err(StageError::option(
                        format!("{name}.{key}"),
                        "belongs in the secrets (--secrets) of the org.osbuild.dnf source, \
                         never in the manifest",
                    ));
                }
            }
            Value::String(_) if flavour == Flavour::Dnf => {}
            _ => return Err(StageError::option(name, "must be a repository object")),
        }
    }
    let refs: Vec<&str> = raw.iter().filter_map(Value::as_str).collect();
    let mut resolved = if refs.is_empty() {
        Vec::new()
    } else {
        let reply = sources_api::get(socket, "org.osbuild.dnf", &refs).map_err(|e| {
            StageError::option(
                opts.name("repos"),
                format!("the org.osbuild.dnf source cannot resolve {refs:?}: {e}"),
            )
        })?;
        match reply {
            Value::Array(items) if items.len() == refs.len() => items,
            _ => {
                return Err(StageError::Other(
                    "the org.osbuild.dnf source did not reply with one repository per checksum"
                        .into(),
                ))
            }
        }
    }
    .into_iter();
    let mut repos = Vec::with_capacity(raw.len());
    for (i, item) in raw.iter().enumerate() {
        let name = format!("{}[{i}]", opts.name("repos"));
        let repo = match item {
            Value::String(reference) => {
                let from_source = |m: &str| {
                    StageError::option(
                        name.clone(),
                        format!("{reference:?} of the org.osbuild.dnf source: {m}"),
                    )
                };
                let Some(Value::Object(obj)) = resolved.next() else {
                    return Err(from_source("the source sent no configuration"));
                };
                let mut repo = Repo::parse(name.clone(), &obj, flavour)?;
                if repo.checksum.as_deref() != parse_checksum(reference).as_deref() {
                    return Err(from_source(
                        "the source sent the configuration of another repository",
                    ));
                }
                repo.reference = Some(reference.clone());
                repo
            }
            Value::Object(obj) => Repo::parse(name, obj, flavour)?,
            _ => unreachable!("checked above"),
        };
        repos.push(repo);
    }
    Ok(repos)
}

/// The private configuration: dnf.conf plus the repositories' certificates and keys, in a
/// directory only root can read, removed on drop.
struct Config {
    dir: PathBuf,
    file: PathBuf,
}

/// Files the install step does not need and scriptlets must not see.
const SECRET_FILES: [&str; 2] = ["sslclientcert", "sslclientkey"];

impl Config {
    /// Creates the configuration in a new directory under `parent`.
    fn create(
        parent: &Path,
        repos: &[Repo],
        module_platform_id: Option<&str>,
        dbpath: &str,
    ) -> Result<Config, StageError> {
        let dir = parent.join(format!("osbuild-dnf-{}", std::process::id()));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| StageError::io("cannot create", &dir, e))?;
        let config = Config {
            file: dir.join("dnf.conf"),
            dir,
        };
        for (i, repo) in repos.iter().enumerate() {
            for (key, contents) in &repo.files {
                config.private_file(&config.repo_file(i, key), contents)?;
            }
        }
        config.write_conf(repos, module_platform_id, true)?;
        // rpm reads macros from $HOME: where the tree's database goes.
        config.private_file(
            &config.dir.join(".rpmmacros"),
            &format!("%_dbpath {dbpath}\n"),
        )?;
        Ok(config)
    }

    fn repo_file(&self, i: usize, key: &str) -> PathBuf {
        self.dir.join(format!("{}-{key}.pem", repo_id(i)))
    }

    /// dnf.conf, with or without the client certificates and keys.
    fn write_conf(
        &self,
        repos: &[Repo],
        module_platform_id: Option<&str>,
        with_secrets: bool,
    ) -> Result<(), StageError> {
        let mut conf = String::new();
        if let Some(id) = module_platform_id {
            conf.push_str(&format!("[main]\nmodule_platform_id={id}\n"));
        }
        for (i, repo) in repos.iter().enumerate() {
            let id = repo_id(i);
            conf.push_str(&format!("\n[{id}]\nname={id}\n"));
            for (key, url) in &repo.locations {
                conf.push_str(&format!("{key}={url}\n"));
            }
            for (key, _) in &repo.files {
                let path = self.repo_file(i, key);
                match *key {
                    "gpgkey" => {
                        conf.push_str(&format!("gpgcheck=1\ngpgkey=file://{}\n", path.display()))
                    }
                    k if SECRET_FILES.contains(&k) && !with_secrets => {}
                    _ => conf.push_str(&format!("{key}={}\n", path.display())),
                }
            }
        }
        let _ = fs::remove_file(&self.file);
        self.private_file(&self.file, &conf)
    }

    /// Removes the client certificates and keys (and their lines in dnf.conf): installing
    /// from the cache needs neither, and package scriptlets run then.
    fn forget_secrets(
        &self,
        repos: &[Repo],
        module_platform_id: Option<&str>,
    ) -> Result<(), StageError> {
        for (i, repo) in repos.iter().enumerate() {
            for (key, _) in repo.files.iter().filter(|(k, _)| SECRET_FILES.contains(k)) {
                let path = self.repo_file(i, key);
                fs::remove_file(&path).map_err(|e| StageError::io("cannot remove", &path, e))?;
            }
        }
        self.write_conf(repos, module_platform_id, false)
    }

    fn private_file(&self, path: &Path, contents: &str) -> Result<(), StageError> {
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .and_then(|mut f| f.write_all(contents.as_bytes()))
            .map_err(|e| StageError::io("cannot write", path, e))
    }
}

impl Drop for Config {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn repo_id(i: usize) -> String {
    format!("repo{i}")
}

/// The first executable `name` on the tool search path.
fn find_tool(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    command::PATH
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// What one stage run does, for either front end.
struct Install<'a> {
    flavour: Flavour,
    /// `dnf` or `yum`.
    program: &'static str,
    /// The arguments every run gets (root, release, settings), before `--config`.
    args: Vec<OsString>,
    /// dnf: the values of `$basearch` and `$releasever`, to find the metadata to verify.
    vars: Vec<(&'static str, &'a str)>,
    operation: &'a str,
    packages: Vec<&'a str>,
    excludes: Vec<&'a str>,
    repos: Vec<Repo>,
    module_platform_id: Option<&'a str>,
    /// Cache directories in the tree, emptied afterwards.
    caches: &'static [&'static str],
}

pub fn run_dnf(args: &Args) -> Result<i32, StageError> {
    let opts = args.opts();
    let flag = |key: &str| -> Result<&'static str, StageError> {
        match args.options.get(key) {
            None | Some(Value::Null) | Some(Value::Bool(true)) => Ok("True"),
            Some(Value::Bool(false)) => Ok("False"),
            Some(_) => Err(StageError::option(opts.name(key), "must be a boolean")),
        }
    };
    let (weak_deps, fastestmirror) = (flag("install_weak_deps")?, flag("fastestmirror")?);
    let releasever = plain(&opts, "releasever")?;
    let basearch = plain(&opts, "basearch")?;
    let module_platform_id = opts.opt_str("module_platform_id")?;
    if module_platform_id.is_some_and(|s| s.chars().any(char::is_control)) {
        return Err(StageError::option(
            opts.name("module_platform_id"),
            "must not contain control characters",
        ));
    }
    let socket = Path::new(sources_api::SOCKET);
    let repos = resolve_repos(&opts, repos_option(&opts, args)?, Flavour::Dnf, socket)?;
    let mut base: Vec<OsString> = vec!["-yv".into(), "--installroot".into()];
    base.push(args.tree.clone().into());
    for arg in [
        "--forcearch",
        basearch,
        "--setopt",
        "reposdir=",
        "--setopt",
        &format!("install_weak_deps={weak_deps}"),
        "--setopt",
        &format!("fastestmirror={fastestmirror}"),
        "--setopt",
        "skip_if_unavailable=false",
        "--releasever",
        releasever,
        "--noplugins",
    ] {
        base.push(arg.into());
    }
    install(
        args,
        Install {
            flavour: Flavour::Dnf,
            program: "dnf",
            args: base,
            vars: vec![("$basearch", basearch), ("$releasever", releasever)],
            operation: operation(&opts)?,
            packages: opts.required_str_list("packages")?,
            excludes: opts.str_list("exclude_packages")?,
            repos,
            module_platform_id,
            // dnf5's cache too: a dnf5 build root fails the metadata check, with a message.
            caches: &["var/cache/dnf", "var/cache/libdnf5"],
        },
    )
}

pub fn run_yum(args: &Args) -> Result<i32, StageError> {
    let opts = args.opts();
    let releasever = plain(&opts, "releasever")?;
    let verbosity = match opts.opt_str("verbosity")? {
        None => "info",
        Some(_) => plain(&opts, "verbosity")?,
    };
    let socket = Path::new(sources_api::SOCKET);
    let repos = resolve_repos(&opts, repos_option(&opts, args)?, Flavour::Yum, socket)?;
    // dnf is yum's successor with the same command line (Fedora ships yum as a link to it).
    let program = if find_tool("yum").is_some() {
        "yum"
    } else {
        "dnf"
    };
    let mut installroot = OsString::from("--installroot=");
    installroot.push(&args.tree);
    install(
        args,
        Install {
            flavour: Flavour::Yum,
            program,
            args: vec![
                "--assumeyes".into(),
                installroot,
                "--setopt=reposdir=".into(),
                format!("--releasever={releasever}").into(),
                format!("--rpmverbosity={verbosity}").into(),
            ],
            vars: Vec::new(),
            operation: operation(&opts)?,
            packages: opts.required_str_list("packages")?,
            excludes: Vec::new(),
            repos,
            module_platform_id: None,
            caches: &["var/cache/yum", "var/cache/dnf"],
        },
    )
}

/// A required string option that goes onto a command line: not empty, not an option itself.
fn plain<'a>(opts: &Opts<'a>, key: &str) -> Result<&'a str, StageError> {
    let s = opts.str(key)?;
    if s.is_empty() || s.starts_with('-') || s.chars().any(char::is_control) {
        return Err(StageError::option(
            opts.name(key),
            format!("{s:?} is not a valid value"),
        ));
    }
    Ok(s)
}

/// `operation`, by default `install`.
fn operation<'a>(opts: &Opts<'a>) -> Result<&'a str, StageError> {
    match opts.opt_str("operation")? {
        None => Ok("install"),
        Some(_) => plain(opts, "operation"),
    }
}

fn repos_option<'a>(opts: &Opts, args: &'a Args) -> Result<&'a [Value], StageError> {
    match args.options.get("repos") {
        Some(Value::Array(items)) => Ok(items),
        None | Some(Value::Null) => Err(StageError::option(opts.name("repos"), "is required")),
        Some(_) => Err(StageError::option(opts.name("repos"), "must be an array")),
    }
}

/// Checks the package specs: names, globs, groups, provides; never options, and never URLs,
/// which would bypass the repositories' checksums and signatures (and cannot be installed
/// from the cache).
fn check_specs(opts: &Opts, key: &str, specs: &[&str]) -> Result<(), StageError> {
    for (i, spec) in specs.iter().enumerate() {
        let problem = if spec.is_empty() || spec.starts_with('-') {
            "is not a package"
        } else if spec.contains("://") {
            "is a URL: name packages of the repositories (org.osbuild.rpm installs single \
             rpm files from org.osbuild.files)"
        } else {
            continue;
        };
        return Err(StageError::option(
            format!("{}[{i}]", opts.name(key)),
            format!("{spec:?} {problem}"),
        ));
    }
    Ok(())
}

fn install(args: &Args, job: Install) -> Result<i32, StageError> {
    let opts = args.opts();
    if job.packages.is_empty() {
        return Err(StageError::option(
            opts.name("packages"),
            "needs at least one package",
        ));
    }
    check_specs(&opts, "packages", &job.packages)?;
    check_specs(&opts, "exclude_packages", &job.excludes)?;

    let tree = &args.tree;
    private_mounts()?;
    let dbpath = rpmtree::dbpath(tree);
    let config = Config::create(
        &std::env::temp_dir(),
        &job.repos,
        job.module_platform_id,
        &dbpath,
    )?;
    let result = transaction(tree, &job, &config);
    let emptied = job
        .caches
        .iter()
        .try_for_each(|cache| empty_dir(tree, cache));
    drop(config);
    result?;
    emptied?;
    Ok(0)
}

/// The three runs of dnf (or yum) one stage makes.
#[derive(Clone, Copy, PartialEq)]
enum Phase {
    /// Download the repositories' metadata (dnf, to verify it before anything else).
    Metadata,
    /// Resolve the transaction and download its packages, reusing that metadata.
    Download,
    /// Install from the cache alone.
    Install,
}

/// Steps 1 to 3 of the module documentation.
fn transaction(tree: &Path, job: &Install, config: &Config) -> Result<(), StageError> {
    let command = |phase: Phase| {
        let mut cmd = command::tool(job.program);
        cmd.args(&job.args);
        match job.flavour {
            Flavour::Dnf => cmd.arg("--config").arg(&config.file),
            Flavour::Yum => cmd.arg(format!("--config={}", config.file.display())),
        };
        cmd.env("HOME", &config.dir);
        match phase {
            Phase::Metadata => {
                cmd.arg("makecache");
                return cmd;
            }
            // Never refresh the metadata just verified.
            Phase::Download => cmd.arg("--setopt=metadata_expire=-1"),
            Phase::Install => cmd.arg("-C"),
        };
        cmd.arg(job.operation);
        if phase == Phase::Download {
            cmd.arg("--downloadonly");
        }
        cmd.args(&job.packages);
        for p in &job.excludes {
            cmd.args(["--exclude", p]);
        }
        cmd
    };
    if job.flavour == Flavour::Dnf {
        run_printed(command(Phase::Metadata))?;
        for (i, repo) in job.repos.iter().enumerate() {
            verify_metadata(tree, i, repo, &job.vars)?;
        }
    }
    run_printed(command(Phase::Download))?;

    // Package scriptlets run from here on: no client keys, no network, and the API file
    // systems mounted only now, so the tree's /sys shows this namespace's interfaces (lo).
    config.forget_secrets(&job.repos, job.module_platform_id)?;
    no_network()?;
    let mounts = Mounts::setup(tree, None)?;
    let machine_id = MachineId::placeholder(tree)?;
    println!("installing from the downloaded packages, without network");
    let installed = run_printed(command(Phase::Install));
    let finished = machine_id.finish(tree);
    drop(mounts);
    installed.and(finished)
}

fn run_printed(mut cmd: Command) -> Result<(), StageError> {
    println!("{}", command::describe(&cmd));
    let _ = std::io::stdout().flush();
    command::run(&mut cmd)
}

/// Checks the sha256 of the `repomd.xml` dnf downloaded for repository `i`.
fn verify_metadata(
    tree: &Path,
    i: usize,
    repo: &Repo,
    vars: &[(&str, &str)],
) -> Result<(), StageError> {
    let Some(want) = &repo.checksum else {
        return Ok(());
    };
    let cache = tree::tree_path(tree, "var/cache/dnf")?;
    let dir = cache_dir(&cache, i, repo, vars).ok_or_else(|| {
        let dnf5 = tree::tree_path(tree, "var/cache/libdnf5").is_ok_and(|p| p.is_dir());
        StageError::Other(format!(
            "{}: dnf left no metadata in {} to verify{}",
            repo.describe(),
            cache.display(),
            if dnf5 {
                " (the build root's dnf is dnf5, which this stage does not support: it \
                 follows dnf 4, as osbuild v10)"
            } else {
                ""
            }
        ))
    })?;
    let repomd = dir.join("repodata/repomd.xml");
    let data = fs::read(&repomd).map_err(|e| StageError::io("cannot read", &repomd, e))?;
    let got = hex(&Sha256::digest(&data));
    if &got != want {
        return Err(StageError::Other(format!(
            "{}: the repository's metadata (repodata/repomd.xml) has checksum sha256:{got}, \
             but the manifest expects sha256:{want} (the repository changed since the \
             manifest was made, or the manifest is wrong); no package was downloaded",
            repo.describe()
        )));
    }
    println!(
        "{}: metadata checksum sha256:{got} as expected",
        repo.describe()
    );
    Ok(())
}

/// libdnf's cache directory for repository `i`: `repoI-` and the first 16 hex digits of the
/// sha256 of its main URL with `vars` (`$basearch`, `$releasever`) substituted; failing that
/// (other variables), the one directory of that repository.
fn cache_dir(cache: &Path, i: usize, repo: &Repo, vars: &[(&str, &str)]) -> Option<PathBuf> {
    let url = vars
        .iter()
        .fold(repo.main_url().to_owned(), |url, (var, value)| {
            url.replace(var, value)
        });
    let id = repo_id(i);
    let exact = cache.join(format!(
        "{id}-{}",
        &hex(&Sha256::digest(url.as_bytes()))[..16]
    ));
    if exact.is_dir() {
        return Some(exact);
    }
    let prefix = format!("{id}-");
    let mut found = fs::read_dir(cache).ok()?.filter_map(|e| {
        let e = e.ok()?;
        let name = e.file_name().into_string().ok()?;
        let rest = name.strip_prefix(&prefix)?;
        (rest.len() == 16 && rest.bytes().all(|b| b.is_ascii_hexdigit()) && e.path().is_dir())
            .then(|| e.path())
    });
    let first = found.next()?;
    found.next().is_none().then_some(first)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Removes everything inside `dir` of the tree (dnf's cache; `dnf clean all` leaves things
/// behind), keeping the directory itself. Symlinks are removed, never followed.
fn empty_dir(tree: &Path, dir: &str) -> Result<(), StageError> {
    let path = tree::tree_path(tree, dir)?;
    let entries = match fs::read_dir(&path) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StageError::io("cannot read", &path, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| StageError::io("cannot read", &path, e))?;
        let p = entry.path();
        let removed = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            fs::remove_dir_all(&p)
        } else {
            fs::remove_file(&p)
        };
        removed.map_err(|e| StageError::io("cannot remove", &p, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value, flavour: Flavour) -> Result<Repo, String> {
        Repo::parse("repos[0]".into(), v.as_object().unwrap(), flavour).map_err(|e| e.to_string())
    }

    #[test]
    fn repositories_are_checked() {
        let sum = format!("sha256:{}", "AB".repeat(32));
        let repo = parse(
            json!({"baseurl": "http://b", "metalink": "http://m", "checksum": sum, "gpgkey": "K"}),
            Flavour::Dnf,
        )
        .unwrap();
        assert_eq!(repo.main_url(), "http://m", "metalink first, as libdnf");
        assert_eq!(repo.checksum.as_deref(), Some("ab".repeat(32).as_str()));
        assert_eq!(repo.files, [("gpgkey", "K".to_string())]);
        let cases = [
            (
                json!({"checksum": sum}),
                "needs one of metalink, mirrorlist or baseurl",
            ),
            (
                json!({"baseurl": "http://b"}),
                "\"repos[0].checksum\": is required",
            ),
            (
                json!({"baseurl": "http://b", "checksum": "sha256:ab"}),
                "is not sha256:<64",
            ),
            (
                json!({"baseurl": "http://b\ngpgcheck=0", "checksum": sum}),
                "control characters",
            ),
            (
                json!({"baseurl": 3, "checksum": sum}),
                "\"repos[0].baseurl\": must be a string",
            ),
        ];
        for (v, want) in cases {
            let err = parse(v.clone(), Flavour::Dnf).err().unwrap_or_default();
            assert!(err.contains(want), "{v}: {err}");
        }
        assert!(
            parse(json!({"baseurl": "http://b"}), Flavour::Yum).is_ok(),
            "yum has no checksum"
        );
    }

    fn sum(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    /// Serves one sources API request at a new socket with `reply`; returns the socket path
    /// and a handle yielding the request.
    fn fake_source(dir: &Path, reply: Value) -> (PathBuf, std::thread::JoinHandle<Value>) {
        let path = dir.join("sources");
        let server = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        let handle = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            let (n, from) = server.recv_from(&mut buf).unwrap();
            server
                .send_to_addr(reply.to_string().as_bytes(), &from)
                .unwrap();
            serde_json::from_slice(&buf[..n]).unwrap()
        });
        (path, handle)
    }

    fn resolve(options: Value, flavour: Flavour, socket: &Path) -> Result<Vec<Repo>, String> {
        let args = Args::parse(&json!({"tree": "/t", "options": options}).to_string()).unwrap();
        let opts = args.opts();
        resolve_repos(&opts, repos_option(&opts, &args).unwrap(), flavour, socket)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn objects_and_source_checksums_keep_the_manifest_order() {
        let dir = tempfile::tempdir().unwrap();
        let (socket, request) = fake_source(
            dir.path(),
            json!([{"checksum": sum('a'), "baseurl": "https://a/", "sslclientkey": "KEY"},
                   {"checksum": sum('b'), "metalink": "https://b/"}]),
        );
        let repos = resolve(
            json!({"repos": [{"baseurl": "http://x/", "checksum": sum('0')}, sum('a'),
                             {"mirrorlist": "http://y/", "checksum": sum('1')}, sum('b')]}),
            Flavour::Dnf,
            &socket,
        )
        .unwrap();
        assert_eq!(
            request.join().unwrap(),
            json!({"source": "org.osbuild.dnf", "checksums": [sum('a'), sum('b')]})
        );
        let urls: Vec<&str> = repos.iter().map(Repo::main_url).collect();
        assert_eq!(urls, ["http://x/", "https://a/", "http://y/", "https://b/"]);
        assert_eq!(repos[1].reference.as_deref(), Some(sum('a').as_str()));
        assert_eq!(repos[1].files, [("sslclientkey", "KEY".to_string())]);
        assert_eq!(
            repos[3].describe(),
            format!(
                "repos[3] (https://b/, \"{}\" of the org.osbuild.dnf source)",
                sum('b')
            )
        );
    }

    #[test]
    fn source_replies_are_checked() {
        let cases = [
            (
                json!([{"checksum": sum('b'), "baseurl": "https://b/"}]),
                "the source sent the configuration of another repository",
            ),
            (json!({"error": "source unknown: x"}), "cannot resolve"),
            (json!([]), "did not reply with one repository per checksum"),
        ];
        for (reply, want) in cases {
            let dir = tempfile::tempdir().unwrap();
            let (socket, _request) = fake_source(dir.path(), reply.clone());
            let err = resolve(json!({"repos": [sum('a')]}), Flavour::Dnf, &socket)
                .err()
                .unwrap_or_default();
            assert!(err.contains(want), "{reply}: {err}");
        }
    }

    #[test]
    fn manifests_cannot_carry_client_keys_and_yum_has_no_source() {
        let nowhere = Path::new("/nonexistent/sources");
        let err = resolve(
            json!({"repos": [{"baseurl": "http://x/", "checksum": sum('0'), "sslclientkey": "K"}]}),
            Flavour::Dnf,
            nowhere,
        )
        .err()
        .unwrap();
        assert!(
            err.starts_with("option \"repos[0].sslclientkey\": belongs in the secrets"),
            "{err}"
        );
        // Checked before any request: the socket is never used.
        let err = resolve(json!({"repos": [sum('a')]}), Flavour::Yum, nowhere)
            .err()
            .unwrap();
        assert_eq!(err, "option \"repos[0]\": must be a repository object");
    }

    #[test]
    fn client_keys_are_gone_before_the_install_step() {
        let dir = tempfile::tempdir().unwrap();
        let repos = vec![Repo {
            name: "repos[0]".into(),
            reference: Some(sum('a')),
            locations: vec![("baseurl", "https://a/".into())],
            checksum: Some("a".repeat(64)),
            files: vec![
                ("sslcacert", "CA".into()),
                ("sslclientcert", "CERT".into()),
                ("sslclientkey", "KEY".into()),
                ("gpgkey", "GPG".into()),
            ],
        }];
        let config =
            Config::create(dir.path(), &repos, Some("platform:f39"), "/var/lib/rpm").unwrap();
        let conf = fs::read_to_string(&config.file).unwrap();
        let key = config.repo_file(0, "sslclientkey");
        assert!(
            conf.contains(&format!("sslclientkey={}\n", key.display())),
            "{conf}"
        );
        assert!(
            conf.starts_with("[main]\nmodule_platform_id=platform:f39\n"),
            "{conf}"
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::metadata(&config.dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(
            fs::read_to_string(config.dir.join(".rpmmacros")).unwrap(),
            "%_dbpath /var/lib/rpm\n"
        );

        config.forget_secrets(&repos, Some("platform:f39")).unwrap();
        let conf = fs::read_to_string(&config.file).unwrap();
        assert!(!conf.contains("sslclient"), "{conf}");
        assert!(conf.contains("sslcacert=") && conf.contains("gpgcheck=1\ngpgkey=file://"));
        assert!(!key.exists() && !config.repo_file(0, "sslclientcert").exists());
        let top = config.dir.clone();
        drop(config);
        assert!(!top.exists(), "removed on drop");
    }

    #[test]
    fn package_specs_are_names() {
        let args = Args::parse(r#"{"tree": "/t"}"#).unwrap();
        let opts = args.opts();
        assert!(check_specs(&opts, "packages", &["@core", "kernel-6.*", "/usr/bin/sh"]).is_ok());
        for (spec, want) in [
            ("-y", "is not a package"),
            ("", "is not a package"),
            ("https://h/x.rpm", "is a URL"),
        ] {
            let err = check_specs(&opts, "packages", &["ok", spec])
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("option \"packages[1]\""), "{err}");
            assert!(err.contains(want), "{err}");
        }
    }

    #[test]
    fn urls_in_messages_hide_credentials() {
        for (url, want) in [
            ("https://user:pw@host/repo/", "https://***@host/repo/"),
            ("https://host/a@b", "https://host/a@b"),
            ("http://host", "http://host"),
            ("file:///srv/repo", "file:///srv/repo"),
        ] {
            assert_eq!(redact_url(url), want);
        }
    }

    #[test]
    fn cache_dir_follows_libdnf() {
        let dir = tempfile::tempdir().unwrap();
        let repo = parse(
            json!({"baseurl": "http://127.0.0.1:8931/", "checksum": format!("sha256:{}", "0".repeat(64))}),
            Flavour::Dnf,
        )
        .unwrap();
        // Seen with dnf 4.14 for this baseurl.
        fs::create_dir(dir.path().join("repo0-86d120bdd5868cae")).unwrap();
        fs::create_dir(dir.path().join("repo1-0123456789abcdef")).unwrap();
        let vars = [("$basearch", "x86_64")];
        assert_eq!(
            cache_dir(dir.path(), 0, &repo, &vars).unwrap(),
            dir.path().join("repo0-86d120bdd5868cae")
        );
        assert_eq!(
            cache_dir(dir.path(), 1, &repo, &vars).unwrap(),
            dir.path().join("repo1-0123456789abcdef"),
            "found by its prefix when the URL has other variables"
        );
        assert!(cache_dir(dir.path(), 2, &repo, &vars).is_none());
    }
}
