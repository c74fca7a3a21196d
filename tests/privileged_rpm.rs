//! The rpm stage through the engine: rpms this test builds with rpmbuild and signs with a
//! throwaway GPG key, served by the files source (file:// URLs), installed into an empty tree.

mod common;

use std::path::Path;
use std::process::Command;

use common::{privileged, Env};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const SPEC: &str = "Name: NAME\nVersion: 1.0\nRelease: 1\nSummary: test\nLicense: MIT\nBuildArch: noarch\nREQUIRES\n\
%description\ntest\n%install\nmkdir -p %{buildroot}/usr/share/NAME\necho NAME > %{buildroot}/usr/share/NAME/greeting\n\
%files\n/usr/share/NAME/greeting\n";

/// Builds and signs `osbuild-hello` and `osbuild-extra` (which requires it); returns the
/// armored public key and the rpm paths.
fn build_rpms(dir: &Path) -> (String, Vec<std::path::PathBuf>) {
    let gnupg = dir.join("gnupg");
    std::fs::create_dir(&gnupg).unwrap();
    std::fs::set_permissions(&gnupg, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
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
    let key = gpg(&["--armor", "--export"]);
    let top = dir.join("rpm");
    let mut rpms = Vec::new();
    for (name, requires) in [
        ("osbuild-hello", ""),
        ("osbuild-extra", "Requires: osbuild-hello"),
    ] {
        let spec = dir.join(format!("{name}.spec"));
        std::fs::write(
            &spec,
            SPEC.replace("NAME", name).replace("REQUIRES", requires),
        )
        .unwrap();
        run(Command::new("rpmbuild")
            .arg("--quiet")
            .arg("--define")
            .arg(format!("_topdir {}", top.display()))
            .arg("-bb")
            .arg(&spec));
        let rpm = top.join(format!("RPMS/noarch/{name}-1.0-1.noarch.rpm"));
        run(Command::new("rpmsign")
            .env("GNUPGHOME", &gnupg)
            .args([
                "--define",
                "_gpg_name osbuild test",
                "--define",
                "__gpg /usr/bin/gpg",
                "--addsign",
            ])
            .arg(&rpm));
        rpms.push(rpm);
    }
    (key, rpms)
}

fn manifest(rpms: &[std::path::PathBuf], gpgkeys: &[&str]) -> Value {
    let mut urls = serde_json::Map::new();
    let mut checksums = Vec::new();
    // Listed in reverse dependency order: rpm orders the transaction itself.
    for rpm in rpms.iter().rev() {
        let digest = Sha256::digest(std::fs::read(rpm).unwrap());
        let checksum = format!(
            "sha256:{}",
            digest
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        urls.insert(checksum.clone(), json!(format!("file://{}", rpm.display())));
        checksums.push(checksum);
    }
    json!({
        "pipeline": {"stages": [{"name": "org.osbuild.rpm", "options": {"gpgkeys": gpgkeys, "packages": checksums}}]},
        "sources": {"org.osbuild.files": {"urls": urls}}
    })
}

#[test]
fn privileged_rpm_installs_signed_packages_from_the_files_source() {
    if !privileged("privileged_rpm_installs_signed_packages_from_the_files_source") {
        return;
    }
    if !(have("rpmbuild") && have("rpmsign") && have("gpg")) {
        eprintln!("skipping: needs rpmbuild, rpmsign and gpg (apt: rpm gnupg)");
        return;
    }
    let env = Env::new();
    let (key, rpms) = build_rpms(env.dir.path());

    let good = manifest(&rpms, &[&key]);
    let out = env.osbuild(&["--inspect"], &good.to_string());
    let described: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = described["pipeline"]["stages"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (result, code) = env.build_json(&["--checkpoint", &id], &good.to_string());
    assert_eq!(code, 0, "{result}");
    let tree = env.committed(&id, "");
    let installed = run(Command::new("rpm").arg("--root").arg(&tree).args([
        "--dbpath",
        "/usr/lib/sysimage/rpm",
        "-qa",
    ]));
    let mut names: Vec<&str> = installed
        .lines()
        .filter(|l| !l.starts_with("gpg-pubkey"))
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["osbuild-extra-1.0-1.noarch", "osbuild-hello-1.0-1.noarch"]
    );
    assert_eq!(
        std::fs::read_to_string(tree.join("usr/share/osbuild-hello/greeting")).unwrap(),
        "osbuild-hello\n"
    );
    assert_eq!(
        std::fs::read(tree.join("etc/machine-id")).unwrap(),
        b"",
        "machine-id left empty"
    );

    // Without the key the signatures cannot be verified: the stage fails, nothing is committed.
    let env = Env::new();
    let unsigned = manifest(&rpms, &[]);
    let (result, code) = env.build_json(&[], &unsigned.to_string());
    assert_eq!(code, 1, "{result}");
    let output = result["stages"][0]["output"].as_str().unwrap_or_default();
    assert!(
        output.contains("osbuild-"),
        "rpm names the package it rejected: {output}"
    );
    assert_eq!(env.store_entries("refs"), Vec::<String>::new());
    assert_eq!(env.store_entries("tmp"), Vec::<String>::new());
}
