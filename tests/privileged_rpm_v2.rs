//! org.osbuild.rpm in a version 2 manifest with HEAD's options: rpms built here (one signed
//! and checked, one unsigned with rpm.check_gpg false), fetched by org.osbuild.curl from a
//! local server, installed into an empty tree. A lua scriptlet records what rpm's scriptlets
//! saw (environment, ostree marker, dracut masked); the tree is read back for the rest
//! (database path, docs and languages left out, keys imported from the tree, nothing left
//! behind).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::http::Server;
use common::rpms::{self, have, Signer};
use common::{output, privileged, Env};
use serde_json::{json, Value};

/// What the scriptlet of `osbuild-opts` writes to `/etc/osbuild-opts.seen`.
const SCRIPTLET: &str = r#"%post -p <lua>
local out = io.open("/etc/osbuild-opts.seen", "w")
out:write("BOOT_ROOT=", os.getenv("BOOT_ROOT") or "", "\n")
out:write("OSBUILD_TEST=", os.getenv("OSBUILD_TEST") or "", "\n")
local marker = io.open("/run/ostree-booted")
out:write("ostree-booted=", marker and "yes" or "no", "\n")
out:write("dracut=", posix.readlink("/etc/kernel/install.d/50-dracut.install") or "", "\n")
out:close()
"#;

/// Builds the unsigned `osbuild-opts`: a doc file, a German and a French message catalog,
/// the armored key `key` at /etc/pki/osbuild-test.asc, and [`SCRIPTLET`].
fn build_opts_rpm(dir: &Path, key: &str) -> PathBuf {
    let spec = dir.join("osbuild-opts.spec");
    let locale = "%{buildroot}/usr/share/locale";
    std::fs::write(
        &spec,
        format!(
            "Name: osbuild-opts\nVersion: 1.0\nRelease: 1\nSummary: test\nLicense: MIT\n\
             BuildArch: noarch\n%description\ntest\n%install\n\
             mkdir -p %{{buildroot}}/usr/share/doc/osbuild-opts %{{buildroot}}/etc/pki\n\
             mkdir -p {locale}/de/LC_MESSAGES {locale}/fr/LC_MESSAGES\n\
             echo doc > %{{buildroot}}/usr/share/doc/osbuild-opts/README\n\
             echo de > {locale}/de/LC_MESSAGES/osbuild-opts.mo\n\
             echo fr > {locale}/fr/LC_MESSAGES/osbuild-opts.mo\n\
             cat > %{{buildroot}}/etc/pki/osbuild-test.asc <<'EOF'\n{key}EOF\n\
             %files\n%doc /usr/share/doc/osbuild-opts/README\n\
             %lang(de) /usr/share/locale/de/LC_MESSAGES/osbuild-opts.mo\n\
             %lang(fr) /usr/share/locale/fr/LC_MESSAGES/osbuild-opts.mo\n\
             /etc/pki/osbuild-test.asc\n{SCRIPTLET}"
        ),
    )
    .unwrap();
    let top = dir.join("rpm");
    output(
        Command::new("rpmbuild")
            .arg("--quiet")
            .arg("--define")
            .arg(format!("_topdir {}", top.display()))
            .arg("-bb")
            .arg(&spec),
    );
    top.join("RPMS/noarch/osbuild-opts-1.0-1.noarch.rpm")
}

/// The manifest installing `rpms` (path, rpm.check_gpg), fetched from `server`.
fn manifest(server: &Server, rpms: &[(PathBuf, bool)], options: Value) -> Value {
    let mut items = serde_json::Map::new();
    let mut references = serde_json::Map::new();
    for (rpm, check_gpg) in rpms {
        let sum = rpms::sha256_file(rpm);
        let name = rpm.file_name().unwrap().to_str().unwrap();
        items.insert(sum.clone(), json!({"url": server.url(&format!("/{name}"))}));
        references.insert(sum, json!({"metadata": {"rpm.check_gpg": check_gpg}}));
    }
    json!({
        "version": "2",
        "pipelines": [{"name": "os", "stages": [{
            "type": "org.osbuild.rpm",
            "inputs": {"packages": {"type": "org.osbuild.files", "origin": "org.osbuild.source",
                                    "references": references}},
            "options": options
        }]}],
        "sources": {"org.osbuild.curl": {"items": items}}
    })
}

/// A scratch environment for `test`: the Env, its directory of served rpms and a signer;
/// `None` (the test skips) unprivileged or without rpmbuild, rpmsign and gpg.
fn setup(test: &str) -> Option<(Env, PathBuf, Signer)> {
    if !privileged(test) {
        return None;
    }
    if !(have("rpmbuild") && have("rpmsign") && have("gpg")) {
        eprintln!("skipping {test}: needs rpmbuild, rpmsign and gpg (apt: rpm gnupg)");
        return None;
    }
    let env = Env::new();
    let served = env.dir.path().join("work/served");
    std::fs::create_dir_all(&served).unwrap();
    let signer = Signer::new(served.parent().unwrap());
    Some((env, served, signer))
}

/// Builds `manifest` exporting pipeline `os`: the result, the exit code and the tree's path.
fn build_os(env: &Env, manifest: &Value) -> (Value, i32, PathBuf) {
    let exported = env.dir.path().join("out");
    let out = exported.to_str().unwrap();
    let (result, code) = env.build_json(
        &["--export", "os", "--output-directory", out],
        &manifest.to_string(),
    );
    (result, code, exported.join("os"))
}

#[test]
fn privileged_rpm_v2_applies_heads_options() {
    let Some((env, served, signer)) = setup("privileged_rpm_v2_applies_heads_options") else {
        return;
    };
    let work = served.parent().unwrap();
    let tree_keys = work.join("tree-keys");
    std::fs::create_dir(&tree_keys).unwrap();
    let tree_key = Signer::new(&tree_keys).public_key;
    let mut rpms = Vec::new();
    for (rpm, check_gpg) in [
        (
            rpms::build(work, "osbuild-hello", "", "", Some(&signer)),
            true,
        ),
        (build_opts_rpm(work, &tree_key), false),
    ] {
        let copy = served.join(rpm.file_name().unwrap());
        std::fs::copy(&rpm, &copy).unwrap();
        rpms.push((copy, check_gpg));
    }
    let server = Server::serve_dir(&served);
    let options = json!({
        "gpgkeys": [signer.public_key],
        "gpgkeys.fromtree": ["/etc/pki/osbuild-test.asc"],
        "dbpath": "/var/lib/rpm",
        "exclude": {"docs": true},
        "install_langs": ["de"],
        "ostree_booted": true,
        "disable_dracut": true,
        "generic_env": {"OSBUILD_TEST": "v2"},
        "kernel_install_env": {"boot_root": "/boot/efi"}
    });
    let (result, code, tree) = build_os(&env, &manifest(&server, &rpms, options));
    assert_eq!(code, 0, "{result}");

    assert_eq!(
        rpms::installed(&tree, "/var/lib/rpm"),
        ["osbuild-hello-1.0-1.noarch", "osbuild-opts-1.0-1.noarch"]
    );
    let db = tree.join("usr/lib/sysimage/rpm");
    assert!(
        std::fs::read_dir(&db).map_or(true, |mut d| d.next().is_none()),
        "no database at the default path"
    );
    let keys = output(Command::new("rpm").arg("--root").arg(&tree).args([
        "--dbpath",
        "/var/lib/rpm",
        "-q",
        "gpg-pubkey",
    ]));
    assert_eq!(
        keys.lines().count(),
        2,
        "the given key and the tree's: {keys}"
    );

    let share = tree.join("usr/share");
    assert!(
        !share.join("doc/osbuild-opts/README").exists(),
        "docs excluded"
    );
    assert!(share
        .join("locale/de/LC_MESSAGES/osbuild-opts.mo")
        .is_file());
    assert!(
        !share.join("locale/fr/LC_MESSAGES/osbuild-opts.mo").exists(),
        "only de installed"
    );
    assert_eq!(
        std::fs::read_to_string(tree.join("etc/osbuild-opts.seen")).unwrap(),
        "BOOT_ROOT=/boot/efi\nOSBUILD_TEST=v2\nostree-booted=yes\ndracut=/dev/null\n"
    );
    // What the stage set up for rpm is gone again.
    assert!(!tree.join("run/ostree-booted").exists());
    assert!(
        !tree.join("etc/kernel").exists(),
        "the unowned /etc/kernel removed"
    );
    assert_eq!(std::fs::read(tree.join("etc/machine-id")).unwrap(), b"");
}

#[test]
fn privileged_rpm_v2_refuses_an_unsigned_package_it_must_check() {
    let test = "privileged_rpm_v2_refuses_an_unsigned_package_it_must_check";
    let Some((env, served, signer)) = setup(test) else {
        return;
    };
    let rpm = rpms::build(served.parent().unwrap(), "osbuild-unsigned", "", "", None);
    let copy = served.join(rpm.file_name().unwrap());
    std::fs::copy(&rpm, &copy).unwrap();
    let server = Server::serve_dir(&served);
    let m = manifest(
        &server,
        &[(copy.clone(), true)],
        json!({"gpgkeys": [signer.public_key]}),
    );
    let (result, code, tree) = build_os(&env, &m);
    assert_eq!(code, 1, "{result}");
    assert!(!tree.exists(), "nothing exported");
    let sum = rpms::sha256_file(&copy);
    let text = result.to_string();
    assert!(
        text.contains(&format!(
            "package osbuild-unsigned-1.0-1.noarch ({sum}) failed its signature check"
        )) && text.contains("NOTFOUND"),
        "{result}"
    );
    assert_eq!(env.store_entries("refs"), Vec::<String>::new());
}
