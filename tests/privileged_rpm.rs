//! The rpm stage through the engine: rpms this test builds with rpmbuild and signs with a
//! throwaway GPG key, served by the files source (file:// URLs), installed into an empty tree.

mod common;

use std::path::Path;

use common::rpms::{self, have, Signer};
use common::{privileged, Env};
use serde_json::{json, Value};

/// Builds and signs `osbuild-hello` and `osbuild-extra` (which requires it); returns the
/// armored public key and the rpm paths.
fn build_rpms(dir: &Path) -> (String, Vec<std::path::PathBuf>) {
    let signer = Signer::new(dir);
    let rpms = vec![
        rpms::build(dir, "osbuild-hello", "", "", Some(&signer)),
        rpms::build(
            dir,
            "osbuild-extra",
            "Requires: osbuild-hello",
            "",
            Some(&signer),
        ),
    ];
    (signer.public_key, rpms)
}

fn manifest(rpms: &[std::path::PathBuf], gpgkeys: &[&str]) -> Value {
    let mut urls = serde_json::Map::new();
    let mut checksums = Vec::new();
    // Listed in reverse dependency order: rpm orders the transaction itself.
    for rpm in rpms.iter().rev() {
        let checksum = rpms::sha256_file(rpm);
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
    assert_eq!(
        rpms::installed(&tree, "/usr/lib/sysimage/rpm"),
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
