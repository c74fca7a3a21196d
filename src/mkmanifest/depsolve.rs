//! Resolving rpm package sets before the build: the client side of `osbuild-depsolve-dnf`
//! (HEAD's depsolver protocol, API 1), and the v2 manifest that pins what it resolved.
//!
//! The depsolver itself is `tools/osbuild-depsolve-dnf`, a Python program over python3-dnf
//! installed as `PREFIX/libexec/osbuild-depsolve-dnf` (where HEAD's clients look for it). It
//! stays a separate program, not a Rust binary: dnf's solver and metadata fetching are
//! reachable only through libdnf's Python bindings, the tool runs on the client before a
//! build (never inside osbuildd), and keeping it a script lets osbuild-composer-style tooling
//! run it exactly as it runs HEAD's. Here we only write its request and read its answer.
//!
//! The manifest is HEAD's model: every rpm pinned by its checksum in `org.osbuild.curl`, and
//! installed by `org.osbuild.rpm` from a `packages` input of type `org.osbuild.files`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::dnf::{DnfError, InstallOptions, RepoSpec, Target};

/// Where the depsolver is when `--depsolver` is not given: `OSBUILD_DEPSOLVE_DNF` at build
/// time (install.sh sets it from the prefix), else HEAD's place.
pub const DEFAULT_DEPSOLVER: &str = match option_env!("OSBUILD_DEPSOLVE_DNF") {
    Some(path) => path,
    None => "/usr/libexec/osbuild-depsolve-dnf",
};

/// One resolved package: what the manifest needs to fetch and check it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Package {
    pub name: String,
    pub epoch: u64,
    pub version: String,
    pub release: String,
    pub arch: String,
    pub repo_id: String,
    pub remote_location: String,
    /// `ALGORITHM:HEX` of the .rpm file.
    pub checksum: String,
}

impl Package {
    /// `name-[epoch:]version-release.arch`, as dnf prints it.
    pub fn nevra(&self) -> String {
        let epoch = match self.epoch {
            0 => String::new(),
            e => format!("{e}:"),
        };
        format!(
            "{}-{epoch}{}-{}.{}",
            self.name, self.version, self.release, self.arch
        )
    }
}

#[derive(Deserialize)]
struct Response {
    packages: Vec<Package>,
}

#[derive(Deserialize)]
struct Failure {
    kind: String,
    reason: String,
}

/// The repository id the request gives `repos[index]`.
pub fn repo_id(index: usize) -> String {
    format!("repo{index}")
}

/// HEAD's depsolve request (API 1) for `install` from `repos`.
pub fn request(
    repos: &[RepoSpec],
    target: &Target,
    install: &InstallOptions,
    cachedir: &Path,
) -> Value {
    let repos: Vec<Value> = repos
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut o = Map::new();
            o.insert("id".into(), json!(repo_id(i)));
            let url = match r.location {
                super::dnf::Location::Baseurl => json!([r.url]),
                _ => json!(r.url),
            };
            o.insert(r.location.key().into(), url);
            if let Some(key) = &r.gpgkey {
                o.insert("gpgcheck".into(), json!(true));
                o.insert("gpgkeys".into(), json!([key]));
            }
            Value::Object(o)
        })
        .collect();
    json!({
        "command": "depsolve",
        "arch": target.basearch,
        "releasever": target.releasever,
        "cachedir": cachedir.to_string_lossy(),
        "arguments": {
            "repos": repos,
            "transactions": [{
                "package-specs": install.packages,
                "exclude-specs": install.exclude,
                "install_weak_deps": install.weak_deps,
            }],
        },
    })
}

/// Runs `program` (an `osbuild-depsolve-dnf`) on `request`; the resolved packages, or its
/// `{kind, reason}` as an error.
pub fn run(program: &Path, request: &Value) -> Result<Vec<Package>, DnfError> {
    let spawn_error = |source| DnfError::DepsolverSpawn {
        program: program.to_owned(),
        source,
    };
    let mut child = Command::new(program)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_error)?;
    let mut stdin = child.stdin.take().expect("piped");
    // A depsolver that exits early closes its stdin: its output says why, not the write.
    let _ = stdin.write_all(request.to_string().as_bytes());
    drop(stdin);
    let out = child.wait_with_output().map_err(spawn_error)?;
    if out.status.success() {
        let response: Response =
            serde_json::from_slice(&out.stdout).map_err(|e| DnfError::DepsolverOutput {
                program: program.to_owned(),
                detail: format!("{e} in its response"),
            })?;
        return Ok(response.packages);
    }
    match serde_json::from_slice::<Failure>(&out.stdout) {
        Ok(f) => Err(DnfError::Depsolve {
            kind: f.kind,
            reason: f.reason,
        }),
        Err(_) => Err(DnfError::DepsolverOutput {
            program: program.to_owned(),
            detail: format!(
                "{} without an error object: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        }),
    }
}

/// Resolves `install` from `repos` with the depsolver at `program`, its metadata cached in
/// `cachedir` (a throwaway directory if none).
pub fn depsolve(
    program: &Path,
    repos: &[RepoSpec],
    target: &Target,
    install: &InstallOptions,
    cachedir: Option<&Path>,
) -> Result<Vec<Package>, DnfError> {
    if repos.is_empty() {
        return Err(DnfError::NoRepos);
    }
    if install.packages.is_empty() {
        return Err(DnfError::NoPackages);
    }
    let scratch;
    let cachedir: PathBuf = match cachedir {
        Some(dir) => dir.to_owned(),
        None => {
            scratch = tempfile::Builder::new()
                .prefix("osbuild-depsolve-cache-")
                .tempdir()
                .map_err(|source| DnfError::Io {
                    path: std::env::temp_dir(),
                    source,
                })?;
            scratch.path().to_owned()
        }
    };
    run(program, &request(repos, target, install, &cachedir))
}

/// A v2 manifest whose pipeline `os` installs `packages` into an empty tree with
/// `org.osbuild.rpm`, each .rpm pinned by checksum in `org.osbuild.curl`; with `gpgkeys`,
/// rpm checks every package's signature against them.
pub fn manifest_v2(packages: &[Package], gpgkeys: &[String]) -> Result<Value, DnfError> {
    if packages.is_empty() {
        return Err(DnfError::NoPackages);
    }
    let check_gpg = !gpgkeys.is_empty();
    let mut items = Map::new();
    let mut references = Map::new();
    for p in packages {
        items.insert(p.checksum.clone(), json!({"url": p.remote_location}));
        references.insert(
            p.checksum.clone(),
            json!({"metadata": {"rpm.check_gpg": check_gpg}}),
        );
    }
    let mut stage = json!({
        "type": "org.osbuild.rpm",
        "inputs": {"packages": {
            "type": "org.osbuild.files",
            "origin": "org.osbuild.source",
            "references": references,
        }},
    });
    if check_gpg {
        stage["options"] = json!({"gpgkeys": gpgkeys});
    }
    Ok(json!({
        "version": "2",
        "pipelines": [{"name": "os", "stages": [stage]}],
        "sources": {"org.osbuild.curl": {"items": items}},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mkmanifest::dnf::Location;

    fn package(name: &str, sum: char) -> Package {
        Package {
            name: name.into(),
            epoch: 0,
            version: "1".into(),
            release: "2".into(),
            arch: "noarch".into(),
            repo_id: "repo0".into(),
            remote_location: format!("http://r/{name}.rpm"),
            checksum: format!("sha256:{}", sum.to_string().repeat(64)),
        }
    }

    #[test]
    fn request_names_each_repository_and_the_transaction() {
        let repos = [
            RepoSpec {
                location: Location::Baseurl,
                url: "http://r/".into(),
                gpgkey: Some("KEY".into()),
            },
            RepoSpec {
                location: Location::Metalink,
                url: "https://m/".into(),
                gpgkey: None,
            },
        ];
        let target = Target {
            releasever: "39".into(),
            basearch: "x86_64".into(),
        };
        let install = InstallOptions {
            packages: vec!["app".into()],
            exclude: vec!["weak".into()],
            weak_deps: false,
        };
        let req = request(&repos, &target, &install, Path::new("/c"));
        assert_eq!(
            req,
            json!({"command": "depsolve", "arch": "x86_64", "releasever": "39", "cachedir": "/c",
                "arguments": {"repos": [
                    {"id": "repo0", "baseurl": ["http://r/"], "gpgcheck": true, "gpgkeys": ["KEY"]},
                    {"id": "repo1", "metalink": "https://m/"}],
                 "transactions": [{"package-specs": ["app"], "exclude-specs": ["weak"],
                                   "install_weak_deps": false}]}})
        );
    }

    #[test]
    fn manifest_pins_every_rpm_in_curl_and_feeds_the_rpm_stage() {
        let pkgs = [package("a", 'a'), package("b", 'b')];
        let m = manifest_v2(&pkgs, &["KEY".into()]).unwrap();
        let (a, b) = (&pkgs[0].checksum, &pkgs[1].checksum);
        assert_eq!(
            m["sources"],
            json!({"org.osbuild.curl": {"items": {a: {"url": "http://r/a.rpm"}, b: {"url": "http://r/b.rpm"}}}})
        );
        let stage = &m["pipelines"][0]["stages"][0];
        assert_eq!(stage["options"], json!({"gpgkeys": ["KEY"]}));
        assert_eq!(
            stage["inputs"]["packages"]["references"][a],
            json!({"metadata": {"rpm.check_gpg": true}})
        );
        assert_eq!(pkgs[0].nevra(), "a-1-2.noarch");
        assert!(matches!(manifest_v2(&[], &[]), Err(DnfError::NoPackages)));
    }
}
