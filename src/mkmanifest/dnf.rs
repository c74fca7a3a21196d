//! dnf manifests: pin rpm repositories by the sha256 of their metadata and write a v1 manifest
//! that installs packages from them with the `org.osbuild.dnf` stage.
//!
//! The metadata is fetched by this machine's dnf (`makecache` into a private, throwaway
//! installroot), so metalinks, mirrorlists and proxies behave as they will in the stage; the
//! checksum is that of the `repodata/repomd.xml` dnf got, which the stage then requires.
//! Packages are resolved when the image is built, against exactly that metadata.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::id::hex;

/// How a repository is located.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    Baseurl,
    Metalink,
    Mirrorlist,
}

impl Location {
    /// The key in dnf.conf and in the stage's options.
    pub fn key(self) -> &'static str {
        match self {
            Location::Baseurl => "baseurl",
            Location::Metalink => "metalink",
            Location::Mirrorlist => "mirrorlist",
        }
    }
}

/// A repository to pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoSpec {
    pub location: Location,
    pub url: String,
    /// ASCII-armored GPG key the packages must be signed with.
    pub gpgkey: Option<String>,
}

/// Repositories in the order they are pinned: base URLs, then metalinks, then mirrorlists,
/// each signed with `gpgkey`.
pub fn repositories(
    baseurls: &[String],
    metalinks: &[String],
    mirrorlists: &[String],
    gpgkey: Option<&str>,
) -> Vec<RepoSpec> {
    [
        (Location::Baseurl, baseurls),
        (Location::Metalink, metalinks),
        (Location::Mirrorlist, mirrorlists),
    ]
    .into_iter()
    .flat_map(|(location, urls)| {
        urls.iter().map(move |url| RepoSpec {
            location,
            url: url.clone(),
            gpgkey: gpgkey.map(str::to_owned),
        })
    })
    .collect()
}

/// Why repositories could not be pinned.
#[derive(Debug, thiserror::Error)]
pub enum DnfError {
    #[error("no repositories given")]
    NoRepos,
    #[error("no packages given")]
    NoPackages,
    #[error("{0}: must not contain control characters")]
    Control(String),
    #[error("cannot run dnf (is it installed?): {0}")]
    Spawn(#[source] std::io::Error),
    #[error("dnf could not fetch the repositories' metadata ({status}):\n{stderr}")]
    Fetch { status: String, stderr: String },
    #[error("dnf left no metadata for repository {index} ({url}) in {dir}")]
    NoMetadata {
        index: usize,
        url: String,
        dir: PathBuf,
    },
    #[error("cannot run the depsolver {program}: {source}")]
    DepsolverSpawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the depsolver {program} failed: {detail}")]
    DepsolverOutput { program: PathBuf, detail: String },
    #[error("the depsolver could not resolve the packages ({kind}): {reason}")]
    Depsolve { kind: String, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What the stage is told besides the repositories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub releasever: String,
    pub basearch: String,
}

/// Fetches every repository's metadata with dnf and returns `sha256:<hex>` of each
/// `repomd.xml`, in order.
pub fn pin(repos: &[RepoSpec], target: &Target) -> Result<Vec<String>, DnfError> {
    if repos.is_empty() {
        return Err(DnfError::NoRepos);
    }
    for r in repos {
        if r.url.chars().any(char::is_control) {
            return Err(DnfError::Control(r.url.clone()));
        }
    }
    for v in [&target.releasever, &target.basearch] {
        if v.chars().any(char::is_control) || v.starts_with('-') || v.is_empty() {
            return Err(DnfError::Control(v.clone()));
        }
    }
    let work = tempfile::Builder::new()
        .prefix("osbuild-mkmanifest-dnf-")
        .tempdir()
        .map_err(|source| DnfError::Io {
            path: std::env::temp_dir(),
            source,
        })?;
    let conf = work.path().join("dnf.conf");
    let mut text = String::new();
    for (i, r) in repos.iter().enumerate() {
        text.push_str(&format!(
            "[repo{i}]\nname=repo{i}\n{}={}\n\n",
            r.location.key(),
            r.url
        ));
    }
    std::fs::write(&conf, text).map_err(|source| DnfError::Io {
        path: conf.clone(),
        source,
    })?;
    let root = work.path().join("root");
    let out = Command::new("dnf")
        .args(["-q", "-y", "--installroot"])
        .arg(&root)
        .args(["--forcearch", &target.basearch])
        .args(["--releasever", &target.releasever])
        .args([
            "--setopt",
            "reposdir=",
            "--setopt",
            "skip_if_unavailable=false",
        ])
        .args(["--noplugins", "--config"])
        .arg(&conf)
        .arg("makecache")
        .stdin(Stdio::null())
        .output()
        .map_err(DnfError::Spawn)?;
    if !out.status.success() {
        return Err(DnfError::Fetch {
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    let cache = root.join("var/cache/dnf");
    repos
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let dir = cache_dir(&cache, i).ok_or_else(|| DnfError::NoMetadata {
                index: i,
                url: r.url.clone(),
                dir: cache.clone(),
            })?;
            let repomd = dir.join("repodata/repomd.xml");
            let data = std::fs::read(&repomd).map_err(|source| DnfError::Io {
                path: repomd,
                source,
            })?;
            Ok(format!("sha256:{}", hex(&Sha256::digest(data))))
        })
        .collect()
}

/// The one cache directory dnf made for `repo{i}` (`repo{i}-` and 16 hex digits): this cache
/// is new, so there is exactly one.
fn cache_dir(cache: &Path, i: usize) -> Option<PathBuf> {
    let prefix = format!("repo{i}-");
    std::fs::read_dir(cache).ok()?.find_map(|e| {
        let e = e.ok()?;
        let name = e.file_name().into_string().ok()?;
        let rest = name.strip_prefix(&prefix)?;
        (rest.len() == 16 && rest.bytes().all(|b| b.is_ascii_hexdigit())).then(|| e.path())
    })
}

/// Options of the stage besides repositories and target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstallOptions {
    pub packages: Vec<String>,
    pub exclude: Vec<String>,
    pub weak_deps: bool,
}

/// A v1 manifest whose pipeline installs `install.packages` from `repos` (pinned by
/// `checksums`) into an empty tree.
pub fn manifest(
    repos: &[RepoSpec],
    checksums: &[String],
    target: &Target,
    install: &InstallOptions,
) -> Result<Value, DnfError> {
    if install.packages.is_empty() {
        return Err(DnfError::NoPackages);
    }
    let repos: Vec<Value> = repos
        .iter()
        .zip(checksums)
        .map(|(r, c)| {
            let mut o = Map::new();
            o.insert(r.location.key().into(), Value::String(r.url.clone()));
            o.insert("checksum".into(), Value::String(c.clone()));
            if let Some(k) = &r.gpgkey {
                o.insert("gpgkey".into(), Value::String(k.clone()));
            }
            Value::Object(o)
        })
        .collect();
    let mut options = json!({
        "repos": repos,
        "packages": install.packages,
        "releasever": target.releasever,
        "basearch": target.basearch,
    });
    if !install.weak_deps {
        options["install_weak_deps"] = Value::Bool(false);
    }
    if !install.exclude.is_empty() {
        options["exclude_packages"] = json!(install.exclude);
    }
    Ok(json!({"pipeline": {"stages": [{"name": "org.osbuild.dnf", "options": options}]}}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_pins_each_repository() {
        let repos = [
            RepoSpec {
                location: Location::Baseurl,
                url: "http://r/$basearch/".into(),
                gpgkey: Some("KEY".into()),
            },
            RepoSpec {
                location: Location::Metalink,
                url: "https://m/?repo=x".into(),
                gpgkey: None,
            },
        ];
        let sums = vec![
            format!("sha256:{}", "a".repeat(64)),
            format!("sha256:{}", "b".repeat(64)),
        ];
        let target = Target {
            releasever: "39".into(),
            basearch: "x86_64".into(),
        };
        let install = InstallOptions {
            packages: vec!["@core".into()],
            exclude: vec!["dracut-config-rescue".into()],
            weak_deps: false,
        };
        let m = manifest(&repos, &sums, &target, &install).unwrap();
        assert_eq!(
            m,
            json!({"pipeline": {"stages": [{"name": "org.osbuild.dnf", "options": {
                "repos": [{"baseurl": "http://r/$basearch/", "checksum": sums[0], "gpgkey": "KEY"},
                          {"metalink": "https://m/?repo=x", "checksum": sums[1]}],
                "packages": ["@core"], "releasever": "39", "basearch": "x86_64",
                "install_weak_deps": false, "exclude_packages": ["dracut-config-rescue"]}}]}})
        );
        let none = InstallOptions::default();
        assert!(matches!(
            manifest(&repos, &sums, &target, &none),
            Err(DnfError::NoPackages)
        ));
    }

    #[test]
    fn bad_input_is_refused_before_dnf_runs() {
        let target = Target {
            releasever: "39".into(),
            basearch: "x86_64".into(),
        };
        assert!(matches!(pin(&[], &target), Err(DnfError::NoRepos)));
        let evil = RepoSpec {
            location: Location::Baseurl,
            url: "http://r/\ngpgcheck=0".into(),
            gpgkey: None,
        };
        assert!(matches!(pin(&[evil], &target), Err(DnfError::Control(_))));
    }
}
