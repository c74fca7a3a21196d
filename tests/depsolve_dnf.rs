//! `tools/osbuild-depsolve-dnf` (HEAD's depsolver protocol over python3-dnf) and
//! `osbuild-mkmanifest-dnf --format v2` against a local repository: signed rpms built here,
//! indexed with createrepo_c, served on 127.0.0.1. What a client checks: the resolved
//! closure, each package's checksum equal to the sha256 of its .rpm and its URL in the
//! repository, dump and search listings, `{kind, reason}` with exit status 1 on errors, and a
//! manifest that pins every rpm in org.osbuild.curl and validates (`osbuild --inspect`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::http::Server;
use common::rpm_repo::{Repo, CLOSURE};
use common::rpms::{self, have};
use common::{run_with_stdin, Env};
use serde_json::{json, Value};

fn depsolver() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/osbuild-depsolve-dnf")
}

/// Whether this machine has what the tests need (CI installs it: dnf brings python3-dnf).
fn tools_present(test: &str) -> bool {
    let missing: Vec<&str> = ["createrepo_c", "rpmbuild", "rpmsign", "gpg"]
        .into_iter()
        .filter(|t| !have(t))
        .collect();
    let dnf = Command::new("/usr/bin/python3")
        .args(["-c", "import dnf, hawkey"])
        .output()
        .is_ok_and(|o| o.status.success());
    if missing.is_empty() && dnf {
        return true;
    }
    eprintln!("skipping {test}: missing {missing:?}, python3-dnf: {dnf} (apt: dnf createrepo-c rpm gnupg)");
    false
}

/// A served, signed repository (see [`Repo`]) and a cache directory, gone on drop.
struct Fixture {
    dir: tempfile::TempDir,
    repo: Repo,
    server: Server,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix("osbuild-depsolve-")
            .tempdir()
            .unwrap();
        let repo = Repo::create(dir.path());
        let server = Server::serve_dir(&repo.dir);
        Fixture { dir, repo, server }
    }

    fn request(&self, command: &str, arguments: Value) -> Value {
        let mut arguments = arguments;
        arguments["repos"] = json!([{
            "id": "local",
            "name": "local test repository",
            "baseurl": [self.server.url("/")],
            "gpgcheck": true,
            "gpgkeys": [self.repo.signer.public_key],
        }]);
        json!({
            "command": command,
            "arch": "x86_64",
            "releasever": "39",
            "module_platform_id": "platform:f39",
            "cachedir": self.dir.path().join("cache"),
            "arguments": arguments,
        })
    }

    fn rpm(&self, file: &str) -> PathBuf {
        self.repo.dir.join(file)
    }
}

fn solve(request: &Value) -> Output {
    run_with_stdin(Command::new(depsolver()), &request.to_string())
}

/// The response of a request that must succeed.
fn answer(request: &Value) -> Value {
    let out = solve(request);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `(kind, reason)` of a request that must fail with exit status 1.
fn failure(request: &str) -> (String, String) {
    let out = run_with_stdin(Command::new(depsolver()), request);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let err: Value = serde_json::from_str(&stdout).unwrap();
    let (kind, reason) = (
        err["kind"].as_str().unwrap(),
        err["reason"].as_str().unwrap(),
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("{kind}: {reason}")),
        "stderr names the error too"
    );
    (kind.to_owned(), reason.to_owned())
}

fn nevras(packages: &Value) -> Vec<String> {
    packages
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{}-{}-{}.{}",
                p["name"].as_str().unwrap(),
                p["version"].as_str().unwrap(),
                p["release"].as_str().unwrap(),
                p["arch"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn depsolve_pins_the_closure_by_the_checksums_of_the_rpm_files() {
    if !tools_present("depsolve_pins_the_closure_by_the_checksums_of_the_rpm_files") {
        return;
    }
    let f = Fixture::new();
    let resp = answer(&f.request(
        "depsolve",
        json!({"transactions": [{"package-specs": ["osbuild-app"], "install_weak_deps": false}]}),
    ));
    assert_eq!(resp["solver"], "dnf");
    assert_eq!(resp["modules"], json!({}));
    assert_eq!(nevras(&resp["packages"]), CLOSURE);
    for p in resp["packages"].as_array().unwrap() {
        let file = p["path"].as_str().unwrap();
        assert_eq!(p["checksum"], json!(rpms::sha256_file(&f.rpm(file))), "{p}");
        assert_eq!(
            p["remote_location"],
            json!(f.server.url(&format!("/{file}")))
        );
        assert_eq!(p["repo_id"], "local");
        assert_eq!(p["epoch"], 0);
    }
    let repo = &resp["repos"]["local"];
    assert_eq!(repo["baseurl"], json!([f.server.url("/")]));
    assert_eq!(repo["name"], "local test repository");
    assert_eq!(repo["gpgcheck"], true);
    assert_eq!(repo["gpgkeys"], json!([f.repo.signer.public_key]));
    assert_eq!(resp["repos"].as_object().unwrap().len(), 1);

    // Weak dependencies when asked; an excluded one stays out.
    let with_weak = |exclude: Value| {
        nevras(
            &answer(&f.request(
                "depsolve",
                json!({"transactions": [{"package-specs": ["osbuild-app"],
                                         "exclude-specs": exclude, "install_weak_deps": true}]}),
            ))["packages"],
        )
    };
    let mut all = CLOSURE.to_vec();
    all.push("osbuild-weak-1.0-1.noarch");
    all.sort();
    assert_eq!(with_weak(json!([])), all);
    assert_eq!(with_weak(json!(["osbuild-weak"])), CLOSURE);

    // API 2: each transaction lists what it adds on top of the ones before.
    let mut req = f.request(
        "depsolve",
        json!({"transactions": [{"package-specs": ["osbuild-lib"]},
                                {"package-specs": ["osbuild-app"]}]}),
    );
    req["api_version"] = json!(2);
    let resp = answer(&req);
    let t = &resp["transactions"];
    assert_eq!(
        nevras(&t[0]),
        ["osbuild-base-1.0-1.noarch", "osbuild-lib-1.0-1.noarch"]
    );
    assert_eq!(nevras(&t[1]), ["osbuild-app-1.0-1.noarch"]);
    let app = &t[1][0];
    let sum = rpms::sha256_file(&f.rpm("osbuild-app-1.0-1.noarch.rpm"));
    assert_eq!(
        app["checksum"],
        json!({"algorithm": "sha256", "value": sum.strip_prefix("sha256:").unwrap()})
    );
    assert_eq!(app["requires"], json!([{"name": "osbuild-lib"}]), "{app}");
    assert_eq!(
        resp["repos"]["local"]["gpgkey"],
        json!([f.repo.signer.public_key])
    );
}

#[test]
fn dump_and_search_list_the_repository() {
    if !tools_present("dump_and_search_list_the_repository") {
        return;
    }
    let f = Fixture::new();
    let dump = answer(&f.request("dump", json!({})));
    let names: Vec<&str> = dump
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "osbuild-app",
            "osbuild-base",
            "osbuild-lib",
            "osbuild-other",
            "osbuild-weak"
        ]
    );
    let app = &dump[0];
    assert_eq!(app["repo_id"], "local");
    assert_eq!(app["summary"], "test");
    assert_eq!(app["license"], "MIT");
    let buildtime = app["buildtime"].as_str().unwrap();
    assert!(
        buildtime.len() == 20 && buildtime.ends_with('Z') && buildtime.as_bytes()[10] == b'T',
        "RFC 3339 in UTC: {buildtime}"
    );

    let search = |packages: Value| -> Vec<String> {
        answer(&f.request(
            "search",
            json!({"search": {"packages": packages, "latest": true}}),
        ))
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect()
    };
    assert_eq!(search(json!(["osbuild-other"])), ["osbuild-other"]);
    assert_eq!(search(json!(["osbuild-a*"])), ["osbuild-app"]);
    assert_eq!(
        search(json!(["*lib*", "osbuild-weak"])),
        ["osbuild-lib", "osbuild-weak"]
    );
    assert_eq!(search(json!(["nothing-like-it"])), Vec::<String>::new());
}

#[test]
fn errors_name_their_kind_and_reason() {
    if !tools_present("errors_name_their_kind_and_reason") {
        return;
    }
    let f = Fixture::new();
    let unknown = f.request(
        "depsolve",
        json!({"transactions": [{"package-specs": ["osbuild-app", "no-such-package"]}]}),
    );
    let (kind, reason) = failure(&unknown.to_string());
    assert_eq!(kind, "MarkingErrors");
    assert!(
        reason.starts_with("Error occurred when marking packages for installation: ")
            && reason.contains("no-such-package"),
        "{reason}"
    );

    let conflict = f.request(
        "depsolve",
        json!({"transactions": [{"package-specs": ["osbuild-app"], "exclude-specs": ["osbuild-base"]}]}),
    );
    let (kind, reason) = failure(&conflict.to_string());
    assert_eq!(kind, "DepsolveError");
    assert!(
        reason.starts_with("There was a problem depsolving osbuild-app: ")
            && reason.contains("osbuild-base"),
        "{reason}"
    );

    let mut missing_repo = f.request("dump", json!({}));
    missing_repo["arguments"]["repos"][0]["baseurl"] = json!([f.server.url("/missing/")]);
    let (kind, reason) = failure(&missing_repo.to_string());
    assert_eq!(kind, "RepoError");
    assert!(
        reason.starts_with("There was a problem reading a repository: ")
            && reason.contains("local"),
        "{reason}"
    );

    let mut no_arch = f.request("dump", json!({}));
    no_arch.as_object_mut().unwrap().remove("arch");
    assert_eq!(
        failure(&no_arch.to_string()),
        (
            "InvalidRequest".into(),
            "Missing required field 'arch'".into()
        )
    );
    let mut bad_command = f.request("dump", json!({}));
    bad_command["command"] = json!("install");
    assert_eq!(
        failure(&bad_command.to_string()).1,
        "Invalid command 'install': must be one of depsolve, dump, search"
    );
    let no_transactions = f.request("depsolve", json!({}));
    assert_eq!(failure(&no_transactions.to_string()).0, "InvalidRequest");
    let (kind, reason) = failure("{not json");
    assert_eq!(kind, "InvalidRequest");
    assert!(reason.starts_with("The request is not JSON: "), "{reason}");
}

fn mkmanifest(f: &Fixture, extra: &[&str]) -> Output {
    let key = f.dir.path().join("key.asc");
    std::fs::write(&key, &f.repo.signer.public_key).unwrap();
    Command::new(env!("CARGO_BIN_EXE_osbuild-mkmanifest-dnf"))
        .args(["--format", "v2", "--depsolver"])
        .arg(depsolver())
        .args(["--baseurl", &f.server.url("/"), "--releasever", "39"])
        .arg("--gpgkey")
        .arg(&key)
        .arg("--cachedir")
        .arg(f.dir.path().join("cache"))
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn mkmanifest_dnf_v2_pins_every_resolved_rpm_in_curl() {
    if !tools_present("mkmanifest_dnf_v2_pins_every_resolved_rpm_in_curl") {
        return;
    }
    let f = Fixture::new();
    let out = mkmanifest(&f, &["--no-weak-deps", "osbuild-app"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let manifest: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut items = serde_json::Map::new();
    for nevra in CLOSURE {
        let file = format!("{nevra}.rpm");
        let sum = rpms::sha256_file(&f.rpm(&file));
        assert!(stderr.contains(&format!("{nevra} {sum}")), "{stderr}");
        items.insert(sum, json!({"url": f.server.url(&format!("/{file}"))}));
    }
    assert_eq!(manifest["version"], "2");
    assert_eq!(
        manifest["sources"],
        json!({"org.osbuild.curl": {"items": items}})
    );
    let stage = &manifest["pipelines"][0]["stages"][0];
    assert_eq!(manifest["pipelines"][0]["name"], "os");
    assert_eq!(stage["type"], "org.osbuild.rpm");
    assert_eq!(
        stage["options"],
        json!({"gpgkeys": [f.repo.signer.public_key]})
    );
    let input = &stage["inputs"]["packages"];
    assert_eq!(input["type"], "org.osbuild.files");
    assert_eq!(input["origin"], "org.osbuild.source");
    let refs = input["references"].as_object().unwrap();
    assert_eq!(
        refs.keys().collect::<Vec<_>>(),
        items.keys().collect::<Vec<_>>()
    );
    assert!(refs
        .values()
        .all(|r| *r == json!({"metadata": {"rpm.check_gpg": true}})));

    // The manifest validates against the libdir's stages (org.osbuild.rpm's schema_2).
    let env = Env::new();
    let inspect = env.osbuild(&["--inspect"], &manifest.to_string());
    assert_eq!(
        inspect.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&inspect.stdout)
    );

    // What the depsolver refuses is an error naming its kind.
    let out = mkmanifest(&f, &["osbuild-app", "no-such-package"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot resolve the packages: the depsolver could not resolve the packages (MarkingErrors): Error occurred when marking packages for installation")
            && stderr.contains("no-such-package"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

/// The v2 manifest `osbuild-mkmanifest-dnf` makes for `osbuild-app` from the fixture's
/// repository.
fn depsolved_manifest(f: &Fixture) -> Value {
    let out = mkmanifest(f, &["--no-weak-deps", "osbuild-app"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Builds `manifest` exporting pipeline `os`: the result, the exit code and the tree's path.
fn build_os(env: &Env, manifest: &Value) -> (Value, i32, PathBuf) {
    let exported = env.dir.path().join("out");
    let (result, code) = env.export_json(&["os"], &exported, &[], &manifest.to_string());
    (result, code, exported.join("os"))
}

#[test]
fn privileged_depsolved_manifest_builds_with_the_rpm_stage() {
    let test = "privileged_depsolved_manifest_builds_with_the_rpm_stage";
    if !common::privileged(test) || !tools_present(test) {
        return;
    }
    let env = Env::new();
    let f = Fixture::new();
    let (result, code, tree) = build_os(&env, &depsolved_manifest(&f));
    assert_eq!(code, 0, "{result}");
    // The stage reports what it installed, as HEAD's does (and the imported key).
    let reported: Vec<Value> = result["metadata"]["os"]["org.osbuild.rpm"]["packages"]
        .as_array()
        .expect("package metadata")
        .iter()
        .filter(|p| p["name"] != "gpg-pubkey")
        .cloned()
        .collect();
    assert_eq!(nevras(&Value::Array(reported)), CLOSURE, "{result}");
    let dbpath = ["/usr/lib/sysimage/rpm", "/var/lib/rpm"]
        .into_iter()
        .find(|d| tree.join(d.trim_start_matches('/')).is_dir())
        .expect("an rpm database in the tree");
    assert_eq!(rpms::installed(&tree, dbpath), CLOSURE);
    assert_eq!(
        std::fs::read_to_string(tree.join("usr/share/osbuild-app/greeting")).unwrap(),
        "osbuild-app\n"
    );
}

#[test]
fn privileged_rpm_stage_refuses_a_package_signed_with_another_key() {
    let test = "privileged_rpm_stage_refuses_a_package_signed_with_another_key";
    if !common::privileged(test) || !tools_present(test) {
        return;
    }
    let env = Env::new();
    let f = Fixture::new();
    let mut manifest = depsolved_manifest(&f);
    // The packages must pass rpm.check_gpg against a key that did not sign them.
    let stranger = f.dir.path().join("stranger");
    std::fs::create_dir(&stranger).unwrap();
    let other_key = rpms::Signer::new(&stranger).public_key;
    manifest["pipelines"][0]["stages"][0]["options"]["gpgkeys"] = json!([other_key]);

    let (result, code, tree) = build_os(&env, &manifest);
    assert_eq!(code, 1, "{result}");
    // Whichever package is checked first is named, with its checksum.
    let text = result.to_string();
    let named = CLOSURE.iter().any(|nevra| {
        let sum = rpms::sha256_file(&f.rpm(&format!("{nevra}.rpm")));
        text.contains(&format!(
            "package {nevra} ({sum}) failed its signature check against the given gpgkeys \
             (rpm.check_gpg is set): "
        ))
    });
    assert!(named, "the error names the package: {result}");
    assert!(text.contains("NOKEY"), "and why: {result}");
    assert!(!tree.exists(), "nothing exported");
}
