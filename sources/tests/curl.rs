//! `org.osbuild.curl` and `org.osbuild.inline` (osbuild HEAD's v2 sources) against a local
//! HTTP server: every item form, mirrors that fail in every way before a good one, the cache
//! reused, nothing unverified left behind, secrets kept to the server.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// A scratch cache and output directory.
struct Dirs {
    _root: tempfile::TempDir,
    cache: PathBuf,
    output: PathBuf,
}

fn dirs() -> Dirs {
    let root = tempfile::tempdir().unwrap();
    let (cache, output) = (root.path().join("cache"), root.path().join("output"));
    Dirs {
        _root: root,
        cache,
        output,
    }
}

/// A v2 request: all items, short timeouts and backoff.
fn request(d: &Dirs, items: Value, options: Value) -> Value {
    let mut opts = json!({"retry_delay_ms": 20, "read_timeout": 1, "connect_timeout": 1});
    for (k, v) in options.as_object().unwrap() {
        opts[k] = v.clone();
    }
    json!({"items": items, "options": opts, "secrets": {}, "cache": d.cache, "output": d.output})
}

fn digest(algorithm: &str, body: &[u8]) -> String {
    use sha2::Digest;
    let hex = |d: &[u8]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let d = match algorithm {
        "sha256" => hex(&sha2::Sha256::digest(body)),
        "sha384" => hex(&sha2::Sha384::digest(body)),
        _ => hex(&sha2::Sha512::digest(body)),
    };
    format!("{algorithm}:{d}")
}

fn serve(server: &Server, path: &str, body: Vec<u8>) {
    server.route(path, move |_, c| respond(c, 200, &body));
}

/// The names in the cache: exactly the verified files, no partial download.
fn assert_cache(cache: &Path, want: &[&str]) {
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(
        names(cache),
        want,
        "the cache holds exactly the verified files"
    );
}

fn results(reply: &Reply) -> Vec<(String, bool)> {
    let mut r: Vec<(String, bool)> = reply.json["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results: {} {}", reply.stdout, reply.stderr))
        .iter()
        .map(|r| {
            assert_eq!((&r["success"], &r["error"]), (&json!(true), &json!("")));
            let m = &r["metadata"];
            (
                m["checksum"].as_str().unwrap().to_owned(),
                m["cached"].as_bool().unwrap(),
            )
        })
        .collect();
    r.sort();
    r
}

#[test]
fn every_item_form_is_fetched_verified_and_then_reused() {
    let server = Server::start();
    let d = dirs();
    let bodies: Vec<Vec<u8>> = (0..5).map(|i| content(i, 20_000 + i as usize)).collect();
    let algorithms = ["sha256", "sha384", "sha512", "sha256", "sha512"];
    let sums: Vec<String> = bodies
        .iter()
        .zip(algorithms)
        .map(|(b, a)| digest(a, b))
        .collect();
    for (i, b) in bodies.iter().enumerate() {
        serve(&server, &format!("/f{i}"), b.clone());
    }
    let items = json!({
        &sums[0]: server.url("/f0"),
        &sums[1]: {"url": server.url("/f1")},
        &sums[2]: {"url": server.url("/f2"), "insecure": true},
        &sums[3]: [server.url("/f3")],
        &sums[4]: {"url": server.url("/f4"), "mirrors": [server.url("/unused")]},
    });
    let reply = run_source(
        "org.osbuild.curl",
        &request(&d, items.clone(), json!({})),
        &[],
    );
    assert_eq!(reply.status, 0, "{} {}", reply.stdout, reply.stderr);
    assert_eq!(reply.json["source_type"], "org.osbuild.curl");
    assert_eq!(reply.json["success"], true);
    let mut want: Vec<(String, bool)> = sums.iter().map(|s| (s.clone(), false)).collect();
    want.sort();
    assert_eq!(results(&reply), want);
    for (sum, body) in sums.iter().zip(&bodies) {
        assert_eq!(&std::fs::read(d.cache.join(sum)).unwrap(), body);
    }
    let refs: Vec<&str> = sums.iter().map(String::as_str).collect();
    assert_cache(&d.cache, &refs);
    assert_eq!(server.total_hits(), 5);
    assert_eq!(
        server.hits("/unused"),
        0,
        "a mirror is asked only when needed"
    );

    // Again: everything comes from the cache, nothing is requested.
    let reply = run_source("org.osbuild.curl", &request(&d, items, json!({})), &[]);
    assert_eq!(reply.status, 0, "{}", reply.stderr);
    assert!(results(&reply).iter().all(|(_, cached)| *cached));
    assert_eq!(server.total_hits(), 5, "cached items are not fetched again");
}

#[test]
fn failing_mirrors_are_passed_over_for_a_good_one() {
    let server = Server::start();
    let d = dirs();
    let good = content(3, 50_000);
    let sum = digest("sha256", &good);
    serve(&server, "/good", good.clone());
    serve(&server, "/wrong", b"other bytes".to_vec());
    let (_hang, hang_url) = never_answering("/slow");
    let mirrors = [
        server.url("/missing"),
        hang_url.clone(),
        server.url("/wrong"),
        server.url("/good"),
    ];
    let started = Instant::now();
    let reply = run_source(
        "org.osbuild.curl",
        &request(&d, json!({ &sum: mirrors }), json!({})),
        &[],
    );
    assert_eq!(reply.status, 0, "{} {}", reply.stdout, reply.stderr);
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(std::fs::read(d.cache.join(&sum)).unwrap(), good);
    assert_cache(&d.cache, &[&sum]);
    assert_eq!(
        (
            server.hits("/missing"),
            server.hits("/wrong"),
            server.hits("/good")
        ),
        (1, 1, 1),
        "each mirror once, in order"
    );
    for want in ["HTTP 404 Not Found", "timed out", "checksum mismatch"] {
        assert!(reply.stderr.contains(want), "{want}: {}", reply.stderr);
    }
}

#[test]
fn all_mirrors_failing_names_each_and_caches_nothing() {
    let server = Server::start();
    let d = dirs();
    let sum = digest("sha256", b"what the manifest expects");
    serve(&server, "/wrong", b"something else".to_vec());
    server.route("/down", |_, c| respond(c, 503, b""));
    let (_hang, hang_url) = never_answering("/slow");
    let other = digest("sha256", b"one more");
    let items = json!({
        &sum: {"url": server.url("/missing"),
               "mirrors": [hang_url.clone(), server.url("/wrong"), server.url("/down")]},
        &other: server.url("/also-missing"),
    });
    let reply = run_source(
        "org.osbuild.curl",
        &request(&d, items, json!({"retries": 1})),
        &[],
    );
    assert_eq!(reply.status, 1, "{}", reply.stdout);
    let err = reply.error();
    let want = [
        "2 files could not be fetched: ".to_owned(),
        format!("{sum}: all 4 mirrors failed: ["),
        format!("{}: HTTP 404 Not Found; ", server.url("/missing")),
        format!("{}: timed out", hang_url),
        "(gave up after 2 attempts)".to_owned(),
        format!(
            "{}: checksum mismatch: the content has {} (14 bytes); ",
            server.url("/wrong"),
            digest("sha256", b"something else")
        ),
        format!(
            "{}: HTTP 503 Service Unavailable (gave up after 2 attempts)]",
            server.url("/down")
        ),
        format!(
            "{other} ({}): HTTP 404 Not Found",
            server.url("/also-missing")
        ),
    ];
    assert_contains_all(err, &want);
    assert_eq!(server.hits("/wrong"), 1, "a mismatch drops the mirror");
    assert_eq!(server.hits("/missing"), 1, "a 404 drops the mirror");
    assert_eq!(server.hits("/down"), 2, "a 503 is tried again next round");
    assert_cache(&d.cache, &[]);
}

#[test]
fn secrets_reach_the_server_only_and_host_paths_are_refused_for_others() {
    let server = Server::start();
    let d = dirs();
    let body = content(5, 1000);
    let sum = digest("sha256", &body);
    serve(&server, "/private", body);
    let token = "Bearer s3cr3t-v2-token";
    let missing = digest("sha256", b"missing");
    let mut req = request(
        &d,
        json!({&sum: server.url("/private"), &missing: server.url("/nope")}),
        json!({}),
    );
    assert_header_secret_kept(&server, "org.osbuild.curl", &mut req, token, "s3cr3t");

    // For a caller who is not root: no file:// URL, no secrets provider reading host files.
    let file = d.output.join("f");
    std::fs::create_dir_all(&d.output).unwrap();
    std::fs::write(&file, b"x").unwrap();
    let cases = [
        (
            json!({&sum: [server.url("/private"), format!("file://{}", file.display())]}),
            "a file:// URL would be read as root",
        ),
        (
            json!({&sum: {"url": server.url("/private"), "secrets": {"name": "org.osbuild.mtls"}}}),
            "secrets provider org.osbuild.mtls: it reads the host's certificates as root",
        ),
    ];
    for (items, want) in cases {
        let mut req = request(&d, items, json!({}));
        req["unprivileged-caller"] = json!(true);
        let reply = run_source("org.osbuild.curl", &req, &[]);
        assert_eq!(reply.status, 1);
        assert!(reply.error().contains(want), "{}", reply.error());
    }
    // mtls without its environment says what is missing.
    let items =
        json!({&sum: {"url": server.url("/private"), "secrets": {"name": "org.osbuild.mtls"}}});
    let reply = run_source("org.osbuild.curl", &request(&d, items, json!({})), &[]);
    assert!(
        reply.error().contains("OSBUILD_SOURCES_CURL_SSL_CLIENT_CERT and OSBUILD_SOURCES_CURL_SSL_CLIENT_KEY must name"),
        "{}",
        reply.error()
    );
}

#[test]
fn inline_items_are_decoded_verified_and_cached() {
    let d = dirs();
    // "hello\n" as xz, then base64 (made with `xz | base64`).
    let xz =
        "/Td6WFoAAATm1rRGAgAhARYAAAB0L+WjAQAFaGVsbG8KAAAApWCX8ZT2/eAAAR4GwS+kHR+2830BAAAAAARZWg==";
    let plain = b"inline data \x00\xff".to_vec();
    let (s1, s2) = (digest("sha512", &plain), digest("sha256", b"hello\n"));
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&plain);
    let items = json!({
        &s1: {"encoding": "base64", "data": b64},
        &s2: {"encoding": "lzma+base64", "data": xz},
    });
    let reply = run_source(
        "org.osbuild.inline",
        &request(&d, items.clone(), json!({})),
        &[],
    );
    assert_eq!(reply.status, 0, "{} {}", reply.stdout, reply.stderr);
    let mut want = vec![(s1.clone(), false), (s2.clone(), false)];
    want.sort();
    assert_eq!(results(&reply), want);
    assert_eq!(std::fs::read(d.cache.join(&s1)).unwrap(), plain);
    assert_eq!(std::fs::read(d.cache.join(&s2)).unwrap(), b"hello\n");
    let reply = run_source("org.osbuild.inline", &request(&d, items, json!({})), &[]);
    assert!(results(&reply).iter().all(|(_, cached)| *cached));

    // Data that does not match its checksum is an error and leaves nothing.
    let e = dirs();
    let wrong = digest("sha256", b"expected");
    let items = json!({&wrong: {"encoding": "base64", "data": "aGVsbG8K"}});
    let reply = run_source("org.osbuild.inline", &request(&e, items, json!({})), &[]);
    assert_eq!(reply.status, 1);
    assert_eq!(
        reply.error(),
        format!("{wrong}: checksum mismatch: the data decodes to {s2} (6 bytes)")
    );
    assert_cache(&e.cache, &[]);
}
