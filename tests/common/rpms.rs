//! Test rpms: built with rpmbuild from a generated spec, optionally signed with a throwaway
//! GPG key, for the rpm, dnf and yum stage tests.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::output as run;

/// Whether `tool` is on the PATH.
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `sha256:<hex>` of a file.
pub fn sha256_file(path: &Path) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(std::fs::read(path).unwrap());
    format!(
        "sha256:{}",
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

/// A throwaway GPG key (in `DIR/gnupg`) that signs rpms.
pub struct Signer {
    gnupg: PathBuf,
    /// The ASCII-armored public key, as a manifest gives it.
    pub public_key: String,
}

impl Signer {
    pub fn new(dir: &Path) -> Signer {
        let gnupg = dir.join("gnupg");
        std::fs::create_dir(&gnupg).unwrap();
        std::fs::set_permissions(&gnupg, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        let gpg = |args: &[&str]| {
            let mut c = Command::new("gpg");
            c.env("GNUPGHOME", &gnupg).arg("--batch").args(args);
            run(&mut c)
        };
        gpg(&[
            "--passphrase",
            "",
            "--quick-gen-key",
            "osbuild test <test@osbuild.invalid>",
            "rsa2048",
            "sign",
            "never",
        ]);
        let public_key = gpg(&["--armor", "--export"]);
        Signer { gnupg, public_key }
    }

    fn sign(&self, rpm: &Path) {
        run(Command::new("rpmsign")
            .env("GNUPGHOME", &self.gnupg)
            .args([
                "--define",
                "_gpg_name osbuild test",
                "--define",
                "__gpg /usr/bin/gpg",
                "--addsign",
            ])
            .arg(rpm));
    }
}

/// Builds the noarch package `name`-1.0-1 (it installs `/usr/share/NAME/greeting`, "NAME\n"),
/// with `headers` (such as "Requires: other") added to its spec's preamble and `sections`
/// (such as a `%post` scriptlet) at its end; signed when `signer` is given. Returns the path of
/// the rpm, under `dir/rpm/RPMS/noarch`.
pub fn build(
    dir: &Path,
    name: &str,
    headers: &str,
    sections: &str,
    signer: Option<&Signer>,
) -> PathBuf {
    let spec = dir.join(format!("{name}.spec"));
    std::fs::write(
        &spec,
        format!(
            "Name: {name}\nVersion: 1.0\nRelease: 1\nSummary: test\nLicense: MIT\n\
             BuildArch: noarch\n{headers}\n%description\ntest\n%install\n\
             mkdir -p %{{buildroot}}/usr/share/{name}\n\
             echo {name} > %{{buildroot}}/usr/share/{name}/greeting\n\
             %files\n/usr/share/{name}/greeting\n{sections}"
        ),
    )
    .unwrap();
    let top = dir.join("rpm");
    run(Command::new("rpmbuild")
        .arg("--quiet")
        .arg("--define")
        .arg(format!("_topdir {}", top.display()))
        .arg("-bb")
        .arg(&spec));
    let rpm = top.join(format!("RPMS/noarch/{name}-1.0-1.noarch.rpm"));
    if let Some(s) = signer {
        s.sign(&rpm);
    }
    rpm
}

/// The packages in the rpm database of `tree` at `dbpath` (`NAME-VERSION-RELEASE.ARCH`),
/// sorted, without the imported GPG keys.
pub fn installed(tree: &Path, dbpath: &str) -> Vec<String> {
    let out = run(Command::new("rpm")
        .arg("--root")
        .arg(tree)
        .args(["--dbpath", dbpath, "-qa"]));
    let mut names: Vec<String> = out
        .lines()
        .filter(|l| !l.starts_with("gpg-pubkey"))
        .map(str::to_owned)
        .collect();
    names.sort();
    names
}
