//! The dnf and yum stages end to end, as root: rpms this test builds and signs, a repository
//! made with createrepo_c and served on 127.0.0.1, the closure installed, the metadata
//! checksum enforced, client certificates only from the secrets, and no network for stages
//! that do not declare it.

mod common;

use std::path::PathBuf;

use common::http::Server;
use common::rpm_repo::{tools_present, Pki, Repo, TlsServer, CLOSURE};
use common::rpms::{self, have, Signer};
use common::{files_containing, mounts_under, privileged, Env};
use serde_json::{json, Value};

fn dnf_stage(repos: Value, extra: Value) -> Value {
    let mut options = json!({
        "repos": repos,
        "packages": ["osbuild-app"],
        "releasever": "39",
        "basearch": "x86_64",
    });
    for (k, v) in extra.as_object().unwrap() {
        options[k] = v.clone();
    }
    json!({"name": "org.osbuild.dnf", "options": options})
}

/// Builds `manifest` keeping its first stage's tree; returns the tree and the build's output.
fn build_first_stage(env: &Env, manifest: &Value, extra_args: &[&str]) -> (PathBuf, String) {
    let id = env.first_stage_id(manifest);
    let mut args = vec!["--checkpoint", id.as_str()];
    args.extend_from_slice(extra_args);
    let out = env.osbuild(&args, &manifest.to_string());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    (env.committed(&id, ""), text)
}

fn rpm_requests(server: &Server) -> Vec<String> {
    server
        .requests()
        .iter()
        .filter_map(|r| r.split_whitespace().nth(1).map(str::to_owned))
        .filter(|p| p.ends_with(".rpm"))
        .collect()
}

#[test]
fn privileged_dnf_installs_the_closure_and_enforces_the_metadata_checksum() {
    if !tools_present("privileged_dnf_installs_the_closure_and_enforces_the_metadata_checksum") {
        return;
    }
    let env = Env::new();
    let repo = Repo::create(env.dir.path());
    let server = Server::serve_dir(&repo.dir);
    let baseurl = server.url("/");
    let good = json!({"pipeline": {"stages": [dnf_stage(
        json!([{"baseurl": baseurl, "checksum": repo.checksum(), "gpgkey": repo.signer.public_key}]),
        json!({"exclude_packages": ["osbuild-weak"]}),
    )]}});
    let (tree, output) = build_first_stage(&env, &good, &[]);

    // The whole closure and nothing else; files in place; signatures were checked.
    assert_eq!(rpms::installed(&tree, "/usr/lib/sysimage/rpm"), CLOSURE);
    assert_eq!(
        std::fs::read_to_string(tree.join("usr/share/osbuild-base/greeting")).unwrap(),
        "osbuild-base\n"
    );
    assert!(
        output.contains(&format!(
            "repos[0] ({baseurl}): metadata checksum {} as expected",
            repo.checksum()
        )),
        "{output}"
    );
    assert!(
        output.contains("installing from the downloaded packages, without network"),
        "{output}"
    );
    let mut fetched = rpm_requests(&server);
    fetched.sort();
    assert_eq!(
        fetched,
        [
            "/osbuild-app-1.0-1.noarch.rpm",
            "/osbuild-base-1.0-1.noarch.rpm",
            "/osbuild-lib-1.0-1.noarch.rpm"
        ],
        "each package downloaded once, not the excluded weak dependency"
    );
    // What osbuild-base's scriptlet saw: no network interface but loopback (not even in
    // /sys), and the placeholder machine-id.
    let probe = std::fs::read_to_string(tree.join("osbuild-probe")).unwrap();
    let interfaces: Vec<&str> = probe
        .lines()
        .skip_while(|l| !l.starts_with("net/dev:"))
        .skip(3)
        .take_while(|l| l.contains(':') && !l.starts_with("sys/"))
        .map(|l| l.split(':').next().unwrap().trim())
        .collect();
    assert_eq!(interfaces, ["lo"], "{probe}");
    assert!(probe.contains("sys/class/net: lo\n"), "{probe}");
    assert!(
        probe.contains("machine-id: ffffffffffffffffffffffffffffffff\n"),
        "{probe}"
    );
    // Tree hygiene: no dnf cache, an empty machine-id, nothing mounted, nothing left over.
    let cache: Vec<_> = std::fs::read_dir(tree.join("var/cache/dnf"))
        .unwrap()
        .collect();
    assert!(cache.is_empty(), "{cache:?}");
    assert_eq!(std::fs::read(tree.join("etc/machine-id")).unwrap(), b"");
    assert_eq!(mounts_under(&env.store), Vec::<String>::new());
    assert_eq!(env.store_entries("tmp"), Vec::<String>::new());

    // The metadata does not match the manifest: the stage names the repository and what it
    // found, downloads no package, and nothing is committed.
    let env = Env::new();
    let wrong = format!("sha256:{}", "0".repeat(64));
    let bad = json!({"pipeline": {"stages": [dnf_stage(
        json!([{"baseurl": baseurl, "checksum": wrong}]),
        json!({}),
    )]}});
    let before = rpm_requests(&server).len();
    let (result, code) = env.build_json(&[], &bad.to_string());
    assert_eq!(code, 1, "{result}");
    let out = result["stages"][0]["output"].as_str().unwrap_or_default();
    assert!(
        out.contains(&format!(
            "org.osbuild.dnf: repos[0] ({baseurl}): the repository's metadata (repodata/repomd.xml) \
             has checksum {}, but the manifest expects {wrong}",
            repo.checksum()
        )),
        "{out}"
    );
    assert_eq!(rpm_requests(&server).len(), before, "no package downloaded");
    assert_eq!(env.store_entries("refs"), Vec::<String>::new());
    assert_eq!(env.store_entries("objects"), Vec::<String>::new());
    assert_eq!(env.store_entries("tmp"), Vec::<String>::new());
    assert_eq!(mounts_under(&env.store), Vec::<String>::new());

    // A repository named by a checksum the manifest's sources do not know.
    let unknown = json!({"pipeline": {"stages": [dnf_stage(json!([wrong]), json!({}))]},
                         "sources": {"org.osbuild.dnf": {"repos": {}}}});
    let (result, code) = env.build_json(&[], &unknown.to_string());
    assert_eq!(code, 1, "{result}");
    let out = result["stages"][0]["output"].as_str().unwrap_or_default();
    assert!(
        out.contains(&format!(
            "option \"repos\": the org.osbuild.dnf source cannot resolve [\"{wrong}\"]: \
             source unknown: {wrong}"
        )),
        "{out}"
    );

    // Packages signed by another key than the manifest's are refused.
    let stranger_home = env.dir.path().join("stranger");
    std::fs::create_dir(&stranger_home).unwrap();
    let stranger = Signer::new(&stranger_home);
    let unsigned = json!({"pipeline": {"stages": [dnf_stage(
        json!([{"baseurl": baseurl, "checksum": repo.checksum(), "gpgkey": stranger.public_key}]),
        json!({}),
    )]}});
    let (result, code) = env.build_json(&[], &unsigned.to_string());
    assert_eq!(code, 1, "{result}");
    let out = result["stages"][0]["output"].as_str().unwrap_or_default();
    assert!(
        out.contains("GPG key") && out.contains("Failing package is: osbuild-app-1.0-1.noarch"),
        "{out}"
    );
    assert_eq!(env.store_entries("refs"), Vec::<String>::new());

    // The yum stage, with dnf standing in for yum (Debian has no yum): weak dependencies are
    // installed by default.
    let env = Env::new();
    let yum = json!({"pipeline": {"stages": [{"name": "org.osbuild.yum", "options": {
        "repos": [{"baseurl": baseurl, "gpgkey": repo.signer.public_key}],
        "packages": ["osbuild-app"], "releasever": "7"}}]}});
    let (tree, _) = build_first_stage(&env, &yum, &[]);
    let mut want = CLOSURE.to_vec();
    want.push("osbuild-weak-1.0-1.noarch");
    assert_eq!(rpms::installed(&tree, "/usr/lib/sysimage/rpm"), want);

    // A second dnf stage works on the tree's database: `remove` takes osbuild-base and what
    // needs it, and leaves the unrelated package.
    let env = Env::new();
    let repos = json!([{"baseurl": baseurl, "checksum": repo.checksum()}]);
    let two = json!({"pipeline": {"stages": [
        dnf_stage(repos.clone(), json!({"packages": ["osbuild-app", "osbuild-other"]})),
        dnf_stage(repos, json!({"operation": "remove", "packages": ["osbuild-base"]})),
    ]}});
    let id = env.inspect(&two)["pipeline"]["stages"][1]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (result, code) = env.build_json(&["--checkpoint", &id], &two.to_string());
    assert_eq!(code, 0, "{result}");
    assert_eq!(
        rpms::installed(&env.committed(&id, ""), "/usr/lib/sysimage/rpm"),
        ["osbuild-other-1.0-1.noarch"]
    );
}

#[test]
fn privileged_stages_without_a_network_declaration_cannot_reach_the_host() {
    if !privileged("privileged_stages_without_a_network_declaration_cannot_reach_the_host") {
        return;
    }
    let env = Env::new();
    let server = Server::start(vec![("/probe", b"here".to_vec())]);
    // The same stage twice: as shipped (no declaration) and declaring the network in its meta.
    let stages = env.libdir.join("stages");
    std::fs::copy(
        stages.join("org.osbuild.test.connect"),
        stages.join("org.osbuild.test.connect-net"),
    )
    .unwrap();
    std::fs::write(
        stages.join("org.osbuild.test.connect-net.meta.json"),
        r#"{"summary": "connect, with network", "network": true}"#,
    )
    .unwrap();
    let probe = |name: &str| {
        let manifest = json!({"pipeline": {"stages": [{"name": name,
            "options": {"host": "127.0.0.1", "port": server.port()}}]}});
        let (tree, _) = build_first_stage(&env, &manifest, &[]);
        let read = |f: &str| std::fs::read_to_string(tree.join(f)).unwrap();
        (read("connect.txt"), read("resolv.txt"))
    };
    let (isolated, resolv) = probe("org.osbuild.test.connect");
    assert!(isolated.starts_with("failed:"), "{isolated}");
    assert_eq!(resolv, "no", "no name resolution either");
    assert_eq!(server.requests().len(), 0, "nothing reached the server");
    let (connected, resolv) = probe("org.osbuild.test.connect-net");
    assert_eq!(connected, "connected");
    let host_has_resolv = std::path::Path::new("/etc/resolv.conf").exists();
    assert_eq!(resolv == "yes", host_has_resolv, "the host's resolv.conf");
    assert_eq!(server.requests().len(), 1, "the declared stage did");
}

#[test]
fn privileged_dnf_reaches_a_repository_with_the_client_certificate_from_the_secrets() {
    let test = "privileged_dnf_reaches_a_repository_with_the_client_certificate_from_the_secrets";
    if !tools_present(test) {
        return;
    }
    if !(have("openssl") && have("python3")) {
        eprintln!("skipping {test}: needs openssl and python3");
        return;
    }
    let env = Env::new();
    let repo = Repo::create(env.dir.path());
    let pki = Pki::create(env.dir.path().join("pki"));
    let server = TlsServer::start(&pki, &repo.dir);
    let checksum = repo.checksum();
    // The manifest names the repository by checksum; the source knows where it is and how
    // to trust it, the secrets how to be let in.
    let manifest = json!({
        "pipeline": {"stages": [dnf_stage(json!([checksum]), json!({"install_weak_deps": false}))]},
        "sources": {"org.osbuild.dnf": {"repos": {&checksum: {
            "baseurl": format!("https://127.0.0.1:{}/", server.port),
            "sslcacert": pki.pem("ca.crt"),
        }}}},
    });
    let client_key = pki.pem("client.key");
    let secrets = env.dir.path().join("secrets.json");
    std::fs::write(
        &secrets,
        json!({"org.osbuild.dnf": {"repos": {&checksum: {
            "sslclientcert": pki.pem("client.crt"), "sslclientkey": client_key}}}})
        .to_string(),
    )
    .unwrap();

    // Without the secrets the server turns dnf away.
    let (result, code) = env.build_json(&[], &manifest.to_string());
    assert_eq!(code, 1, "{result}");
    let out = result["stages"][0]["output"].as_str().unwrap_or_default();
    let repomd = format!("https://127.0.0.1:{}/repodata/repomd.xml", server.port);
    assert!(out.contains(&repomd), "{out}");
    // Refused for the missing client certificate, not for distrust of the server's.
    assert!(
        !out.contains("certificate verification failed")
            && !out.contains("SSL certificate problem"),
        "{out}"
    );
    assert_eq!(env.store_entries("refs"), Vec::<String>::new());

    let secrets_arg = secrets.to_str().unwrap();
    let (tree, output) = build_first_stage(&env, &manifest, &["--secrets", secrets_arg]);
    assert_eq!(rpms::installed(&tree, "/usr/lib/sysimage/rpm"), CLOSURE);
    assert!(
        output.contains(&format!(
            "repos[0] (https://127.0.0.1:{}/, \"{checksum}\" of the org.osbuild.dnf source): \
             metadata checksum {checksum} as expected",
            server.port
        )),
        "{output}"
    );
    // The key reached dnf and nothing else: not the output, not the tree, not the store.
    let key_body = client_key
        .lines()
        .find(|l| l.len() > 40 && !l.starts_with("-----"))
        .unwrap()
        .to_owned();
    assert!(!output.contains(&key_body), "key in the output");
    assert_eq!(
        files_containing(&env.store, key_body.as_bytes()),
        Vec::<PathBuf>::new()
    );
    let env = Env::new();
    let (result, code) = env.build_json(&["--secrets", secrets_arg], &manifest.to_string());
    assert_eq!(code, 0, "{result}");
    assert!(result["stages"][0]["output"]
        .as_str()
        .is_some_and(|o| o.contains("Complete!")));
    assert!(!result.to_string().contains(&key_body), "key in the result");
}

#[test]
fn privileged_mkmanifest_dnf_pins_a_repository_that_then_builds() {
    if !tools_present("privileged_mkmanifest_dnf_pins_a_repository_that_then_builds") {
        return;
    }
    let env = Env::new();
    let repo = Repo::create(env.dir.path());
    let server = Server::serve_dir(&repo.dir);
    let key = env.dir.path().join("key.asc");
    std::fs::write(&key, &repo.signer.public_key).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_osbuild-mkmanifest-dnf"))
        .args(["--baseurl", &server.url("/"), "--releasever", "39"])
        .arg("--gpgkey")
        .arg(&key)
        .args(["--no-weak-deps", "osbuild-app"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains(&repo.checksum()), "{stderr}");
    let manifest: Value = serde_json::from_slice(&out.stdout).unwrap();
    let options = &manifest["pipeline"]["stages"][0]["options"];
    assert_eq!(options["repos"][0]["checksum"], json!(repo.checksum()));
    assert_eq!(options["repos"][0]["gpgkey"], json!(repo.signer.public_key));
    let (tree, _) = build_first_stage(&env, &manifest, &[]);
    assert_eq!(rpms::installed(&tree, "/usr/lib/sysimage/rpm"), CLOSURE);

    // A repository that is not there is an error naming dnf's complaint.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_osbuild-mkmanifest-dnf"))
        .args([
            "--baseurl",
            &server.url("/missing/"),
            "--releasever",
            "39",
            "x",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "cannot pin the repositories: dnf could not fetch the repositories' metadata"
        ),
        "{stderr}"
    );
}
