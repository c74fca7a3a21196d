//! The runs of dnf (or yum) one stage makes: metadata, verified against the manifest's
//! checksums, then the download with network, then the install from the cache without it.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::config::Config;
use super::repo::{repo_id, Repo};
use super::{Flavour, Install};
use crate::command;
use crate::error::StageError;
use crate::mounts::{no_network, Mounts};
use crate::rpmtree::MachineId;
use crate::tree;

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
pub(super) fn transaction(tree: &Path, job: &Install, config: &Config) -> Result<(), StageError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cache_dir_follows_libdnf() {
        let dir = tempfile::tempdir().unwrap();
        let options = json!({"baseurl": "http://127.0.0.1:8931/", "checksum": format!("sha256:{}", "0".repeat(64))});
        let repo = Repo::parse(
            "repos[0]".into(),
            options.as_object().unwrap(),
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
