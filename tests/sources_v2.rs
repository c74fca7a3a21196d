//! A v2 manifest's sources on the engine's side: `org.osbuild.curl` and `org.osbuild.inline`
//! items checked against the modules' schemas, fetched before any stage into HEAD's cache
//! `STORE/sources/org.osbuild.files`, with failing mirrors passed over, found again by
//! checksum, not fetched twice, and secrets kept out of every message.

mod common;

use std::net::TcpListener;

use common::http::Server;
use osbuild::buildroot::Cancel;
use osbuild::events::{Event, Monitor};
use osbuild::manifest::{self, Document};
use osbuild::modules::Index;
use osbuild::sources::{cached_file, Sources};
use osbuild::store::Store;
use serde_json::{json, Value};

fn sha256(data: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(data);
    format!(
        "sha256:{}",
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// A listener that completes connections (the kernel's backlog) and never answers, until
/// dropped.
fn never_answering(path: &str) -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}{path}", listener.local_addr().unwrap());
    (listener, url)
}

/// Every event, as text.
#[derive(Default)]
struct Recorder(Vec<String>);

impl Monitor for Recorder {
    fn event(&mut self, event: Event<'_>) {
        self.0.push(format!("{event:?}"));
    }
}

/// A store and the built libdir's index.
struct Setup {
    _dir: tempfile::TempDir,
    store: Store,
    index: Index,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let index = Index::new(common::built_libdir());
    Setup {
        _dir: dir,
        store,
        index,
    }
}

fn v2(sources: Value) -> String {
    json!({"version": "2", "pipelines": [], "sources": sources}).to_string()
}

/// Loads the manifest (checking it against the modules' schemas) and fetches its sources.
fn fetch(s: &Setup, text: &str, secrets: Option<&Value>) -> (Result<(), String>, Recorder) {
    let Document::V2(m) = manifest::load_document(text, &s.index).unwrap() else {
        panic!("not read as v2")
    };
    let secrets = secrets.map(|v| osbuild::json::parse(&v.to_string()).unwrap());
    let sources = Sources::for_v2(&s.index, &s.store, &m.sources, secrets.as_ref()).unwrap();
    let mut events = Recorder::default();
    let r = sources.fetch_all(&s.store, &Cancel::new(), &mut events);
    (r.map_err(|e| e.to_string()), events)
}

const FAST: &str =
    r#"{"read_timeout": 1, "connect_timeout": 1, "retry_delay_ms": 20, "retries": 1}"#;

#[test]
fn curl_and_inline_items_land_in_heads_cache_past_failing_mirrors() {
    let s = setup();
    let good: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    let small = b"second file".to_vec();
    let (sg, ss) = (sha256(&good), sha256(&small));
    let server = Server::start(vec![("/good.rpm", good.clone()), ("/small", small.clone())]);
    let liar = Server::start(vec![("/good.rpm", b"not it".to_vec())]);
    let (_hang, hang_url) = never_answering("/good.rpm");
    let inline = b"inline bytes\n".to_vec();
    let si = sha256(&inline);
    // `printf 'inline bytes\n' | base64`
    let data = "aW5saW5lIGJ5dGVzCg==";
    let text = v2(json!({
        "org.osbuild.curl": {
            "items": {
                &sg: {"url": server.url("/missing.rpm"),
                      "mirrors": [hang_url, liar.url("/good.rpm"), server.url("/good.rpm")]},
                &ss: server.url("/small"),
            },
            "options": serde_json::from_str::<Value>(FAST).unwrap(),
        },
        "org.osbuild.inline": {"items": {&si: {"encoding": "base64", "data": data}}},
    }));
    let (r, events) = fetch(&s, &text, None);
    r.unwrap();
    for (sum, body) in [(&sg, &good), (&ss, &small), (&si, &inline)] {
        let path = cached_file(&s.store, sum).expect("cached");
        assert!(path.ends_with(format!("sources/org.osbuild.files/{sum}")));
        assert_eq!(&std::fs::read(path).unwrap(), body);
    }
    let events = events.0.join("\n");
    assert!(events.contains("org.osbuild.curl") && events.contains("org.osbuild.inline"));
    // The good server saw the 404 and the two good requests; the liar one.
    assert_eq!(server.requests().len(), 3, "{:?}", server.requests());
    assert_eq!(liar.requests().len(), 1);

    // A second build fetches nothing.
    let (r, _) = fetch(&s, &text, None);
    r.unwrap();
    assert_eq!(
        server.requests().len(),
        3,
        "cached items are not fetched again"
    );
    assert_eq!(cached_file(&s.store, "sha256:../../etc/passwd"), None);
    assert_eq!(cached_file(&s.store, &sha256(b"never fetched")), None);
}

#[test]
fn all_mirrors_failing_stops_with_each_named_and_nothing_cached() {
    let s = setup();
    let want = b"the file".to_vec();
    let sum = sha256(&want);
    let server = Server::start(vec![("/wrong", b"other".to_vec())]);
    let (_hang, hang_url) = never_answering("/f");
    let token = "Bearer v2-s3cr3t";
    let text = v2(json!({"org.osbuild.curl": {
        "items": {&sum: [server.url("/missing"), hang_url, server.url("/wrong")]},
        "options": serde_json::from_str::<Value>(FAST).unwrap(),
    }}));
    let secrets = json!({"org.osbuild.curl": {"headers": {"Authorization": token}}});
    let (r, events) = fetch(&s, &text, Some(&secrets));
    let err = r.unwrap_err();
    for w in [
        format!("org.osbuild.curl: {sum}: all 3 mirrors failed: ["),
        format!("{}: HTTP 404 Not Found", server.url("/missing")),
        format!("{}: timed out", hang_url),
        format!("{}: checksum mismatch", server.url("/wrong")),
    ] {
        assert!(err.contains(&w), "missing {w:?} in {err}");
    }
    assert!(server.requests().iter().all(|r| r
        .to_ascii_lowercase()
        .contains(&format!("authorization: {}", token.to_ascii_lowercase()))));
    let everything = format!("{err}\n{}", events.0.join("\n"));
    assert!(!everything.contains("s3cr3t"), "{everything}");
    assert_eq!(cached_file(&s.store, &sum), None);
    let cache = s.store.sources_dir("org.osbuild.files").unwrap();
    assert_eq!(
        std::fs::read_dir(cache).unwrap().count(),
        0,
        "nothing, not even a partial file"
    );
}

#[test]
fn items_are_checked_against_the_sources_schemas() {
    let s = setup();
    let sum = sha256(b"x");
    let text = v2(json!({
        "org.osbuild.curl": {"items": {&sum: {"url": 3}}},
        "org.osbuild.inline": {"items": {&sum: {"encoding": "gzip", "data": "eA=="}}},
    }));
    let err = manifest::load_document(&text, &s.index)
        .unwrap_err()
        .to_string();
    for path in [
        format!("sources.org.osbuild.curl.items.{sum}"),
        format!("sources.org.osbuild.inline.items.{sum}"),
    ] {
        assert!(err.contains(&path), "missing {path} in {err}");
    }
}
