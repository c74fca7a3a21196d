//! `org.osbuild.files` against a local HTTP server that fails on demand.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

struct Dirs {
    _root: tempfile::TempDir,
    cache: std::path::PathBuf,
    output: std::path::PathBuf,
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

fn request(d: &Dirs, urls: Value, checksums: &[&str], extra: Value) -> Value {
    let mut options = json!({ "urls": urls, "retry_delay_ms": 50 });
    for (k, v) in extra.as_object().unwrap() {
        options[k] = v.clone();
    }
    json!({
        "options": options,
        "secrets": {},
        "cache": d.cache,
        "output": d.output,
        "checksums": checksums,
    })
}

/// Only verified entries in the cache: no temporary file is left behind.
fn assert_cache_clean(cache: &Path, want: &[&str]) {
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(names(cache), want, "cache holds exactly the verified files");
}

fn serve_file(server: &Server, path: &str, body: Vec<u8>) {
    server.route(path, move |_, c| respond(c, 200, &body));
}

#[test]
fn every_algorithm_fetched_once_then_reused_from_the_cache() {
    let server = Server::start();
    let d = dirs();
    let data: Vec<Vec<u8>> = (0..5).map(|i| content(i, 100_000 + i as usize)).collect();
    // Digests of each body with each algorithm, computed by coreutils.
    let tools = ["md5sum", "sha1sum", "sha256sum", "sha384sum", "sha512sum"];
    let mut urls = serde_json::Map::new();
    let mut checksums = Vec::new();
    for (i, (body, tool)) in data.iter().zip(tools).enumerate() {
        let sum = digest_with(tool, body);
        let path = format!("/f{i}");
        serve_file(&server, &path, body.clone());
        urls.insert(sum.clone(), server.url(&path).into());
        checksums.push(sum);
    }
    let refs: Vec<&str> = checksums.iter().map(String::as_str).collect();
    let reply = run_source(
        "org.osbuild.files",
        &request(&d, urls.clone().into(), &refs, json!({})),
        &[],
    );
    assert_eq!(
        (reply.status, reply.stdout.trim()),
        (0, "{}"),
        "{}",
        reply.stderr
    );
    for (sum, body) in checksums.iter().zip(&data) {
        assert_eq!(&std::fs::read(d.output.join(sum)).unwrap(), body);
        assert_eq!(&std::fs::read(d.cache.join(sum)).unwrap(), body);
    }
    assert_cache_clean(&d.cache, &refs);
    assert_eq!(server.total_hits(), 5);

    // A second build: nothing is downloaded again, the output is filled from the cache.
    std::fs::remove_dir_all(&d.output).unwrap();
    let reply = run_source(
        "org.osbuild.files",
        &request(&d, urls.into(), &refs, json!({})),
        &[],
    );
    assert_eq!(reply.status, 0, "{}", reply.stdout);
    assert_eq!(server.total_hits(), 5, "the cache is reused");
    assert_eq!(names(&d.output).len(), 5);
}

fn digest_with(tool: &str, body: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new(tool)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(body).unwrap();
    let out = child.wait_with_output().unwrap();
    let hex = String::from_utf8(out.stdout).unwrap();
    let algo = tool.trim_end_matches("sum");
    format!("{algo}:{}", hex.split_whitespace().next().unwrap())
}

#[test]
fn transient_failures_are_retried_permanent_ones_are_not() {
    let server = Server::start();
    let d = dirs();
    let good = content(1, 300_000);
    let sum = sha256(&good);
    let body = good.clone();
    server.route("/flaky", move |n, c| {
        if n == 1 {
            respond(c, 500, b"boom")
        } else {
            respond(c, 200, &body)
        }
    });
    // Three different checksums for the same kind of content: vary one byte each.
    let mut v2 = good.clone();
    v2[0] ^= 1;
    let mut v3 = good.clone();
    v3[0] ^= 2;
    let (s2, s3) = (sha256(&v2), sha256(&v3));
    server.route("/truncated-once", {
        let v2 = v2.clone();
        move |n, c| {
            if n == 1 {
                respond_truncated(c, &v2)
            } else {
                respond(c, 200, &v2)
            }
        }
    });
    server.route("/slow-once", {
        let v3 = v3.clone();
        move |n, c| {
            if n == 1 {
                std::thread::sleep(Duration::from_millis(2500));
            }
            respond(c, 200, &v3)
        }
    });
    let urls = json!({
        &sum: server.url("/flaky"),
        &s2: server.url("/truncated-once"),
        &s3: server.url("/slow-once"),
    });
    let checks = [sum.as_str(), s2.as_str(), s3.as_str()];
    let reply = run_source(
        "org.osbuild.files",
        &request(&d, urls, &checks, json!({"read_timeout": 1})),
        &[],
    );
    assert_eq!(
        (reply.status, reply.stdout.trim()),
        (0, "{}"),
        "{}",
        reply.stderr
    );
    assert_eq!(server.hits("/flaky"), 2);
    assert_eq!(server.hits("/truncated-once"), 2);
    assert_eq!(server.hits("/slow-once"), 2);
    assert_eq!(std::fs::read(d.cache.join(&sum)).unwrap(), good);
    assert_eq!(std::fs::read(d.cache.join(&s2)).unwrap(), v2);
    assert_eq!(std::fs::read(d.cache.join(&s3)).unwrap(), v3);
    assert_cache_clean(&d.cache, &checks);
    assert!(reply.stderr.contains("HTTP 500"), "{}", reply.stderr);
}

#[test]
fn failures_name_the_file_and_the_cause_and_leave_nothing() {
    let server = Server::start();
    let d = dirs();
    let good = content(7, 50_000);
    let (ok_sum, wrong_sum, missing_sum, down_sum) = (
        sha256(&good),
        sha256(b"what the manifest expects"),
        sha256(b"missing"),
        sha256(b"down"),
    );
    serve_file(&server, "/ok", good.clone());
    serve_file(&server, "/wrong", b"something else".to_vec());
    server.route("/down", |_, c| respond(c, 503, b""));
    let cut = content(9, 10_000);
    let cut_sum_real = sha256(&cut);
    server.route("/cut", move |_, c| respond_truncated(c, &cut));
    let urls = json!({
        &ok_sum: server.url("/ok"),
        &wrong_sum: server.url("/wrong"),
        &missing_sum: server.url("/missing"),
        &down_sum: server.url("/down"),
        &cut_sum_real: server.url("/cut"),
    });
    let checks = [
        ok_sum.as_str(),
        wrong_sum.as_str(),
        missing_sum.as_str(),
        down_sum.as_str(),
        cut_sum_real.as_str(),
    ];
    let reply = run_source(
        "org.osbuild.files",
        &request(&d, urls, &checks, json!({"retries": 2})),
        &[],
    );
    assert_eq!(reply.status, 1);
    let err = reply.error();
    assert!(err.starts_with("4 files could not be fetched: "), "{err}");
    let want = [
        format!(
            "{wrong_sum} ({}): checksum mismatch: the content has {} (14 bytes)",
            server.url("/wrong"),
            sha256(b"something else")
        ),
        format!(
            "{missing_sum} ({}): HTTP 404 Not Found",
            server.url("/missing")
        ),
        format!(
            "{down_sum} ({}): HTTP 503 Service Unavailable (gave up after 3 attempts)",
            server.url("/down")
        ),
        format!(
            "{cut_sum_real} ({}): the transfer broke off after 5000 bytes",
            server.url("/cut")
        ),
    ];
    assert_contains_all(err, &want);
    assert_eq!(server.hits("/wrong"), 1, "a mismatch is not retried");
    assert_eq!(server.hits("/missing"), 1, "a 404 is not retried");
    assert_eq!(server.hits("/down"), 3);
    assert_eq!(server.hits("/cut"), 3);
    // The good file is cached (it may serve the next build); the bad ones are nowhere.
    assert_cache_clean(&d.cache, &[ok_sum.as_str()]);
}

#[test]
fn request_errors() {
    let d = dirs();
    let cases = [
        (json!({}), "sha256:00", "unknown file: sha256:00"),
        (
            json!({"crc32:abcd": "http://127.0.0.1:1/x"}),
            "crc32:abcd",
            "crc32:abcd: unsupported checksum algorithm \"crc32\" (supported: md5, sha1, sha256, sha384, sha512)",
        ),
        (
            json!({"md5:0123": "http://127.0.0.1:1/x"}),
            "md5:0123",
            "md5:0123: a md5 digest is 32 lowercase hex digits",
        ),
    ];
    for (urls, c, want) in cases {
        let reply = run_source(
            "org.osbuild.files",
            &request(&d, urls, &[c], json!({})),
            &[],
        );
        assert_eq!((reply.status, reply.error()), (1, want));
    }
    let sum = sha256(b"x");
    let reply = run_source(
        "org.osbuild.files",
        &request(&d, json!({&sum: "ftp://127.0.0.1/x"}), &[&sum], json!({})),
        &[],
    );
    assert!(
        reply
            .error()
            .ends_with("unsupported URL scheme ftp:// (http, https and file are)"),
        "{}",
        reply.error()
    );
}

#[test]
fn a_corrupt_cache_entry_is_fetched_again() {
    let server = Server::start();
    let d = dirs();
    let good = content(3, 20_000);
    let sum = sha256(&good);
    serve_file(&server, "/f", good.clone());
    std::fs::create_dir_all(&d.cache).unwrap();
    std::fs::write(d.cache.join(&sum), b"bit rot").unwrap();
    let reply = run_source(
        "org.osbuild.files",
        &request(&d, json!({&sum: server.url("/f")}), &[&sum], json!({})),
        &[],
    );
    assert_eq!(reply.status, 0, "{}", reply.stdout);
    assert!(
        reply.stderr.contains("cache entry is corrupt"),
        "{}",
        reply.stderr
    );
    assert_eq!(server.hits("/f"), 1);
    assert_eq!(std::fs::read(d.cache.join(&sum)).unwrap(), good);
    assert_eq!(std::fs::read(d.output.join(&sum)).unwrap(), good);
}

#[test]
fn file_urls_are_copied_and_verified() {
    let d = dirs();
    let src = tempfile::tempdir().unwrap();
    let body = content(5, 70_000);
    let sum = sha256(&body);
    std::fs::write(src.path().join("a b.rpm"), &body).unwrap();
    let url = format!("file://{}/a%20b.rpm", src.path().display());
    let reply = run_source(
        "org.osbuild.files",
        &request(&d, json!({&sum: url}), &[&sum], json!({})),
        &[],
    );
    assert_eq!(reply.status, 0, "{}", reply.stdout);
    assert_eq!(std::fs::read(d.output.join(&sum)).unwrap(), body);
    let missing = sha256(b"none");
    let url = format!("file://{}/none", src.path().display());
    let reply = run_source(
        "org.osbuild.files",
        &request(&d, json!({&missing: url}), &[&missing], json!({})),
        &[],
    );
    assert!(reply.error().contains("cannot open"), "{}", reply.error());
    assert_cache_clean(&d.cache, &[sum.as_str()]);
}

#[test]
fn secrets_reach_the_server_and_nothing_else() {
    let server = Server::start();
    let d = dirs();
    let body = content(11, 1000);
    let sum = sha256(&body);
    serve_file(&server, "/private", body);
    let token = "Bearer s3cr3t-t0ken-value";
    let mut req = request(
        &d,
        json!({&sum: server.url("/private"), "sha256:0000000000000000000000000000000000000000000000000000000000000000": server.url("/nope")}),
        &[
            &sum,
            "sha256:0000000000000000000000000000000000000000000000000000000000000000",
        ],
        json!({}),
    );
    assert_header_secret_kept(&server, "org.osbuild.files", &mut req, token, "s3cr3t");

    // A bad client certificate path is reported without the file's content.
    let keyfile = d.cache.join("key.pem");
    std::fs::write(&keyfile, "s3cr3t-key-material").unwrap();
    req["secrets"] = json!({"sslclientcert": keyfile, "sslclientkey": keyfile});
    let reply = run_source("org.osbuild.files", &req, &[]);
    assert_eq!(
        reply.error(),
        "secret sslclientcert/sslclientkey: not a PEM certificate and key"
    );
    assert!(!reply.stderr.contains("s3cr3t"));
}

#[test]
fn downloads_are_parallel_but_bounded_and_report_progress() {
    let server = Server::start();
    let d = dirs();
    let mut urls = serde_json::Map::new();
    let mut sums = Vec::new();
    for i in 0..8u8 {
        let body = content(i, 64 * 1024);
        sums.push(sha256(&body));
        urls.insert(sha256(&body), server.url(&format!("/p{i}")).into());
        server.route(&format!("/p{i}"), move |_, c| {
            std::thread::sleep(Duration::from_millis(300));
            respond(c, 200, &body)
        });
    }
    let refs: Vec<&str> = sums.iter().map(String::as_str).collect();
    let started = std::time::Instant::now();
    let reply = run_source(
        "org.osbuild.files",
        &request(&d, urls.into(), &refs, json!({"parallel": 3})),
        &[("OSBUILD_SOURCE_PROGRESS", "1")],
    );
    assert_eq!(reply.status, 0, "{}", reply.stdout);
    assert_eq!(server.max_in_flight(), 3);
    // 8 files, 3 at a time, 300 ms each: 3 rounds, not 8.
    assert!(
        started.elapsed() < Duration::from_millis(2000),
        "{:?}",
        started.elapsed()
    );
    let last = reply
        .stderr
        .lines()
        .filter_map(|l| l.strip_prefix("osbuild-source-progress "))
        .next_back()
        .unwrap();
    let total = 8 * 64 * 1024;
    assert_eq!(
        last,
        format!(r#"{{"files_done":8,"files_total":8,"bytes_done":{total},"bytes_total":{total}}}"#)
    );
}

#[test]
fn dnf_replies_repositories() {
    let d = dirs();
    let req = json!({
        "options": {"repos": {"sha256:aa": {"baseurl": "http://example.invalid/repo"}}},
        "secrets": {"repos": {"sha256:aa": {"sslclientkey": "/etc/pki/key.pem"}}},
        "cache": d.cache, "output": d.output, "checksums": ["sha256:aa"],
    });
    let reply = run_source("org.osbuild.dnf", &req, &[]);
    assert_eq!(reply.status, 0);
    assert_eq!(
        reply.json,
        json!([{"checksum": "sha256:aa", "baseurl": "http://example.invalid/repo", "sslclientkey": "/etc/pki/key.pem"}])
    );
    let mut req = req;
    req["checksums"] = json!(["sha256:bb"]);
    let reply = run_source("org.osbuild.dnf", &req, &[]);
    assert_eq!(
        (reply.status, reply.error()),
        (1, "source unknown: sha256:bb")
    );
}
