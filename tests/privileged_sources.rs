//! Sources end to end, as root: files fetched from a local HTTP server before the first stage,
//! handed to a foreign stage through the v10 sources API, secrets kept out of everything but
//! the source, and a failed fetch stopping the build before anything runs.

mod common;

use common::http::Server;
use common::{mounts_under, privileged, Env};
use serde_json::{json, Value};

fn sha256(data: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(data);
    format!(
        "sha256:{}",
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

fn fetch_manifest(urls: Value, checksums: &[&str]) -> Value {
    json!({
        "pipeline": {"stages": [{"name": "org.osbuild.test.fetch", "options": {
            "source": "org.osbuild.files", "checksums": checksums}}]},
        "sources": {"org.osbuild.files": {"urls": urls, "retry_delay_ms": 50}},
    })
}

#[test]
fn privileged_stage_gets_fetched_files_through_the_sources_api() {
    if !privileged("privileged_stage_gets_fetched_files_through_the_sources_api") {
        return;
    }
    let env = Env::new();
    let a: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let b = b"second file\n".to_vec();
    let (sa, sb) = (sha256(&a), sha256(&b));
    let server = Server::start(vec![("/a.rpm", a.clone()), ("/b.deb", b.clone())]);
    let manifest = fetch_manifest(
        json!({&sa: server.url("/a.rpm"), &sb: server.url("/b.deb")}),
        &[&sa, &sb],
    );
    let secrets = env.dir.path().join("secrets.json");
    let token = "Bearer t0p-s3cr3t";
    std::fs::write(
        &secrets,
        json!({"org.osbuild.files": {"headers": {"Authorization": token}}}).to_string(),
    )
    .unwrap();
    let id = env.first_stage_id(&manifest);
    let secrets_arg = secrets.to_str().unwrap();
    let out = env.osbuild(
        &["--checkpoint", &id, "--secrets", secrets_arg],
        &manifest.to_string(),
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("org.osbuild.files: fetching 2 files"),
        "{stdout}"
    );
    assert!(
        stdout.contains("org.osbuild.files: 2 files, 0.3 MiB"),
        "{stdout}"
    );
    assert!(stdout.contains("fetched 2 files from org.osbuild.files"));
    // The stage copied the files it was given; inside, they could not be written to.
    let fetched = |name: &str| std::fs::read(env.committed(&id, &format!("fetched/{name}")));
    assert_eq!(fetched(&sa).unwrap(), a);
    assert_eq!(fetched(&sb).unwrap(), b);
    assert_eq!(fetched("readonly").unwrap(), b"yes");
    assert_eq!(fetched("reply.json").unwrap(), b"{}");
    // Each file was downloaded once (before the stage; the stage's request hit the cache),
    // with the secret header, which appears nowhere else.
    let requests = server.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert!(requests
        .iter()
        .all(|r| r.contains(&format!("authorization: {token}"))
            || r.contains(&format!("Authorization: {token}"))));
    assert!(!stdout.contains("s3cr3t") && !stderr.contains("s3cr3t"));
    let cache = env.store.join("sources/org.osbuild.files");
    assert_eq!(std::fs::read(cache.join(&sa)).unwrap(), a);
    assert_eq!(env.store_entries("tmp"), Vec::<String>::new());
    assert_eq!(mounts_under(&env.store), Vec::<String>::new());

    // A second build with the same sources reuses the cache: no new download.
    let manifest2 = fetch_manifest(
        json!({&sa: server.url("/a.rpm"), &sb: server.url("/b.deb")}),
        &[&sb],
    );
    let out = env.osbuild(&[], &manifest2.to_string());
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn privileged_a_source_that_fails_stops_the_build_before_any_stage() {
    if !privileged("privileged_a_source_that_fails_stops_the_build_before_any_stage") {
        return;
    }
    let env = Env::new();
    let server = Server::start::<String>(vec![]);
    let missing = sha256(b"never served");
    let manifest = fetch_manifest(json!({&missing: server.url("/gone.rpm")}), &[&missing]);
    let id = env.first_stage_id(&manifest);
    let out = env.osbuild(&["--checkpoint", &id], &manifest.to_string());
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let want = format!(
        "osbuild: fetching sources failed, nothing was built: org.osbuild.files: {missing} ({}): HTTP 404 Not Found",
        server.url("/gone.rpm")
    );
    assert!(stderr.contains(&want), "{stderr}");
    assert!(
        !stdout.contains("org.osbuild.test.fetch"),
        "no stage ran: {stdout}"
    );
    assert_eq!(env.store_entries("refs"), Vec::<String>::new());
    assert_eq!(env.store_entries("objects"), Vec::<String>::new());
    assert_eq!(env.store_entries("tmp"), Vec::<String>::new());
    let cache = env.store.join("sources/org.osbuild.files");
    assert_eq!(
        std::fs::read_dir(cache).unwrap().count(),
        0,
        "nothing unverified cached"
    );

    // A source the libdir lacks is named.
    let manifest = json!({"pipeline": {}, "sources": {"org.osbuild.nope": {}}});
    let out = env.osbuild(&[], &manifest.to_string());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("source org.osbuild.nope is not in the libdir"),
        "{stderr}"
    );
}

/// Secret headers go only where the manifest sends them: a redirect to another origin is
/// refused with a clear error (reqwest would carry custom headers along), while a redirect
/// within the same server is followed.
#[test]
fn privileged_secret_headers_never_follow_a_redirect_to_another_host() {
    if !privileged("privileged_secret_headers_never_follow_a_redirect_to_another_host") {
        return;
    }
    let env = Env::new();
    let body = b"the file\n".to_vec();
    let sum = sha256(&body);
    let elsewhere = Server::start(vec![("/f", body.clone())]);
    let origin = Server::start(vec![
        (
            "/away",
            format!("redirect:{}", elsewhere.url("/f")).into_bytes(),
        ),
        ("/here", format!("redirect:{}", "/f").into_bytes()),
        ("/f", body.clone()),
    ]);
    let secrets = env.dir.path().join("secrets.json");
    let token = "k3y-n0t-f0r-others";
    std::fs::write(
        &secrets,
        json!({"org.osbuild.files": {"headers": {"X-Api-Key": token}}}).to_string(),
    )
    .unwrap();
    let secrets_arg = secrets.to_str().unwrap();
    let manifest = fetch_manifest(json!({&sum: origin.url("/away")}), &[&sum]);
    let out = env.osbuild(&["--secrets", secrets_arg], &manifest.to_string());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("redirected to http://127.0.0.1, which is not followed: the request carries secret headers"),
        "{stderr}"
    );
    assert!(
        elsewhere.requests().is_empty(),
        "{:?}",
        elsewhere.requests()
    );
    assert!(!stderr.contains(token));
    // Within the same server the redirect is followed, headers and all.
    let manifest = fetch_manifest(json!({&sum: origin.url("/here")}), &[&sum]);
    let out = env.osbuild(&["--secrets", secrets_arg], &manifest.to_string());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let requests = origin.requests();
    assert!(
        requests.iter().any(|r| r.starts_with("GET /f ")),
        "{requests:?}"
    );
    assert!(requests.iter().all(|r| r
        .to_ascii_lowercase()
        .contains(&format!("x-api-key: {token}").to_ascii_lowercase())));
}

/// Downloads count in the store's budget: a prune removes the least recently used ones (a
/// cache hit counts as a use), and none of a cache a running source holds.
#[test]
fn privileged_prune_removes_least_recently_used_downloads_but_not_a_busy_cache() {
    if !privileged("privileged_prune_removes_least_recently_used_downloads_but_not_a_busy_cache") {
        return;
    }
    let env = Env::new();
    let (a, b) = (vec![b'a'; 50_000], vec![b'b'; 70_000]);
    let (sa, sb) = (sha256(&a), sha256(&b));
    let server = Server::start(vec![("/a", a.clone()), ("/b", b.clone())]);
    let urls = json!({&sa: server.url("/a"), &sb: server.url("/b")});
    let fetch = |sums: &[&str]| {
        let out = env.osbuild(&[], &fetch_manifest(urls.clone(), sums).to_string());
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        std::thread::sleep(std::time::Duration::from_millis(1100));
    };
    fetch(&[&sa]);
    fetch(&[&sb]);
    fetch(&[&sa]); // a cache hit: a is now the most recently used
    let store = osbuild::store::Store::open(&env.store).unwrap();
    let cache = env.store.join("sources/org.osbuild.files");
    // A source running on the cache (it holds a shared lock): nothing of it goes.
    let busy = std::fs::File::open(&cache).unwrap();
    busy.lock_shared().unwrap();
    let report = store.prune(0).unwrap();
    assert!(report.downloads_removed.is_empty(), "{report:?}");
    assert!(cache.join(&sa).exists() && cache.join(&sb).exists());
    drop(busy);
    // Over budget by less than b: b, the least recently used, goes; a stays.
    let report = store.prune(a.len() as u64).unwrap();
    assert_eq!(
        report.downloads_removed,
        [format!("org.osbuild.files/{sb}")]
    );
    assert!(cache.join(&sa).exists() && !cache.join(&sb).exists());
    assert_eq!(report.remaining, a.len() as u64);
}
