//! The private dnf configuration: dnf.conf plus the repositories' certificates and keys,
//! 0600 files in a 0700 directory, with the client keys removed before any package code runs.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::repo::{repo_id, Repo};
use crate::error::StageError;

/// The private configuration: dnf.conf plus the repositories' certificates and keys, in a
/// directory only root can read, removed on drop.
pub(super) struct Config {
    pub(super) dir: PathBuf,
    pub(super) file: PathBuf,
}

/// Files the install step does not need and scriptlets must not see.
const SECRET_FILES: [&str; 2] = ["sslclientcert", "sslclientkey"];

impl Config {
    /// Creates the configuration in a new directory under `parent`.
    pub(super) fn create(
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
    pub(super) fn forget_secrets(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_keys_are_gone_before_the_install_step() {
        let dir = tempfile::tempdir().unwrap();
        let repos = vec![Repo {
            name: "repos[0]".into(),
            reference: Some(format!("sha256:{}", "a".repeat(64))),
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
}
