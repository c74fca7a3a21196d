//! `org.osbuild.files`: files by checksum, downloaded into the cache and handed to the output.
//!
//! Options (v10's `urls`, plus tuning):
//! - `urls`: `{CHECKSUM: URL}` (or `{CHECKSUM: {"url": URL}}`); `http://`, `https://`, `file://`;
//! - `parallel` (default 16): downloads at once;
//! - `retries` (default 5): further attempts after a connection error, a timeout, a truncated
//!   body or an HTTP 5xx/408/429, with exponential backoff from `retry_delay_ms` (default 500);
//!   never after a 4xx or a checksum mismatch;
//! - `connect_timeout` (default 10) and `read_timeout` (default 60): seconds;
//! - `sslcacert`: extra CA certificates (the system's roots are always trusted), as PEM
//!   contents or the path of a PEM file.
//!
//! Secrets (never printed): `headers` (`{NAME: VALUE}`, sent with every HTTP(S) request; a
//! redirect to another host, port or scheme is then refused, not followed, since reqwest would
//! send the headers along), `sslclientcert` and `sslclientkey` (a client certificate and its
//! key, PEM contents or paths). Proxies come from the usual environment variables
//! (`http_proxy`, `https_proxy`, `all_proxy`, `no_proxy`).
//!
//! For a caller who is not root (the request's `unprivileged-caller`), nothing on the host is
//! read on their behalf, since this runs as root: `file://` URLs and certificate paths are
//! refused (PEM contents are fine).
//!
//! The cache invariant: `CACHE/CHECKSUM` exists only with verified content. A download goes to a
//! temporary file in the cache directory (same filesystem), is hashed while it streams, and is
//! renamed into place only if the digest matches. A cache entry is hashed again before each use;
//! a corrupt one is removed and fetched again. The output gets each file by reflink, else hard
//! link, else copy.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::checksum::{hash_file, Checksum};
use crate::progress::Progress;
use crate::Request;

/// Tunables, from the options.
#[derive(Debug, Clone)]
pub struct Settings {
    pub parallel: usize,
    pub retries: u32,
    pub retry_delay: Duration,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    /// `sslcacert`: PEM contents or a path.
    pub ca_cert: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            parallel: 16,
            retries: 5,
            retry_delay: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            ca_cert: None,
        }
    }
}

impl Settings {
    fn from_options(options: &serde_json::Map<String, Value>) -> Result<Self, String> {
        let mut s = Self::default();
        let uint = |key: &str, min: u64| -> Result<Option<u64>, String> {
            match options.get(key) {
                None => Ok(None),
                Some(v) => match v.as_u64() {
                    Some(n) if n >= min => Ok(Some(n)),
                    _ => Err(format!(
                        "option {key}: expected an integer >= {min}, found {v}"
                    )),
                },
            }
        };
        if let Some(n) = uint("parallel", 1)? {
            s.parallel = n.min(256) as usize;
        }
        if let Some(n) = uint("retries", 0)? {
            s.retries = n.min(100) as u32;
        }
        if let Some(n) = uint("retry_delay_ms", 0)? {
            s.retry_delay = Duration::from_millis(n);
        }
        if let Some(n) = uint("connect_timeout", 1)? {
            s.connect_timeout = Duration::from_secs(n);
        }
        if let Some(n) = uint("read_timeout", 1)? {
            s.read_timeout = Duration::from_secs(n);
        }
        match options.get("sslcacert") {
            None => {}
            Some(Value::String(p)) => s.ca_cert = Some(p.clone()),
            Some(v) => {
                return Err(format!(
                    "option sslcacert: expected PEM contents or a path, found {v}"
                ))
            }
        }
        Ok(s)
    }
}

/// The URL of each known checksum, from `options.urls`.
fn urls(options: &serde_json::Map<String, Value>) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    let Some(urls) = options.get("urls") else {
        return Ok(out);
    };
    let urls = urls
        .as_object()
        .ok_or("option urls: expected an object {checksum: url}")?;
    for (checksum, v) in urls {
        let url = match v {
            Value::String(s) => s.clone(),
            Value::Object(o) => match o.get("url") {
                Some(Value::String(s)) => s.clone(),
                _ => return Err(format!("option urls.{checksum}: expected a URL")),
            },
            _ => return Err(format!("option urls.{checksum}: expected a URL")),
        };
        out.insert(checksum.clone(), url);
    }
    Ok(out)
}

/// A URL fit for messages: without user name or password.
pub fn display_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            if !u.username().is_empty() || u.password().is_some() {
                let _ = u.set_username("");
                let _ = u.set_password(None);
            }
            u.to_string()
        }
        Err(_) => url.to_owned(),
    }
}

/// Why one file could not be had.
#[derive(Debug)]
enum Failure {
    /// Worth another attempt (connection, timeout, truncated body, 5xx).
    Transient(String),
    /// Final (4xx, mismatch, missing local file, bad URL).
    Permanent(String),
}

/// Runs `org.osbuild.files`.
pub fn run(request: &Request) -> Result<(), String> {
    let settings = Settings::from_options(&request.options)?;
    let urls = urls(&request.options)?;
    let mut wanted: Vec<(Checksum, String)> = Vec::new();
    for c in &request.checksums {
        let url = urls.get(c).ok_or_else(|| format!("unknown file: {c}"))?;
        if request.unprivileged_caller && url.trim_start().to_ascii_lowercase().starts_with("file:")
        {
            return Err(format!(
                "{c}: a file:// URL would be read as root, so it is refused for a caller who is not root; serve the file over HTTP, or build as root (sudo osbuild)"
            ));
        }
        let checksum = Checksum::parse(c).map_err(|e| e.to_string())?;
        if !wanted.iter().any(|(w, _)| w == &checksum) {
            wanted.push((checksum, url.clone()));
        }
    }
    for dir in [&request.cache, &request.output] {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    // Shared while this runs: the store prunes a cache directory only under an exclusive lock.
    let cache_lock = std::fs::File::open(&request.cache)
        .and_then(|dir| dir.lock_shared().map(|()| dir))
        .map_err(|e| format!("locking the cache {}: {e}", request.cache.display()))?;
    let progress = Arc::new(Progress::new(wanted.len() as u64));
    progress.report(true);
    if !wanted.is_empty() {
        let client = client(&settings, &request.secrets, request.unprivileged_caller)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("starting the download runtime: {e}"))?;
        let failures = runtime.block_on(fetch_all(
            client,
            Arc::new(settings),
            request.cache.clone(),
            wanted.clone(),
            progress.clone(),
        ));
        if !failures.is_empty() {
            return Err(summarize(failures));
        }
    }
    for (checksum, _) in &wanted {
        let name = checksum.as_str();
        place(&request.cache.join(name), &request.output.join(name))
            .map_err(|e| format!("{name}: placing it in {}: {e}", request.output.display()))?;
    }
    progress.report(true);
    drop(cache_lock);
    Ok(())
}

fn summarize(mut failures: Vec<String>) -> String {
    if failures.len() == 1 {
        return failures.remove(0);
    }
    format!(
        "{} files could not be fetched: {}",
        failures.len(),
        failures.join("; ")
    )
}

/// The HTTP client: system roots plus `sslcacert`, client identity and headers from secrets.
fn client(
    settings: &Settings,
    secrets: &serde_json::Map<String, Value>,
    unprivileged_caller: bool,
) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .user_agent(concat!("osbuild-sources/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(settings.connect_timeout)
        .read_timeout(settings.read_timeout)
        .pool_max_idle_per_host(settings.parallel);
    if let Some(value) = &settings.ca_cert {
        let pem = pem_contents(value, "option sslcacert", unprivileged_caller)?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("option sslcacert: {e}"))?;
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    let secret_path = |key: &str| -> Result<Option<Vec<u8>>, String> {
        match secrets.get(key) {
            None => Ok(None),
            Some(Value::String(p)) => {
                pem_contents(p, &format!("secret {key}"), unprivileged_caller).map(Some)
            }
            Some(_) => Err(format!("secret {key}: expected PEM contents or a path")),
        }
    };
    match (secret_path("sslclientcert")?, secret_path("sslclientkey")?) {
        (Some(mut cert), key) => {
            if let Some(key) = key {
                cert.push(b'\n');
                cert.extend_from_slice(&key);
            }
            let id = reqwest::Identity::from_pem(&cert)
                .map_err(|_| "secret sslclientcert/sslclientkey: not a PEM certificate and key")?;
            b = b.identity(id);
        }
        (None, Some(_)) => return Err("secret sslclientkey given without sslclientcert".into()),
        (None, None) => {}
    }
    if let Some(headers) = secrets.get("headers") {
        let headers = headers
            .as_object()
            .ok_or("secret headers: expected an object {name: value}")?;
        let mut map = reqwest::header::HeaderMap::new();
        for (name, value) in headers {
            let n = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("secret headers: invalid header name {name:?}"))?;
            let mut v = value
                .as_str()
                .and_then(|s| reqwest::header::HeaderValue::from_str(s).ok())
                .ok_or_else(|| format!("secret headers: the value of {name} is not valid"))?;
            v.set_sensitive(true);
            map.insert(n, v);
        }
        b = b
            .default_headers(map)
            .redirect(reqwest::redirect::Policy::custom(same_origin_redirects));
    }
    b.build()
        .map_err(|e| format!("setting up the HTTP client: {e}"))
}

/// PEM given inline (`-----BEGIN ...`) or the path of a PEM file; a path is read only for a
/// privileged caller (this runs as root).
fn pem_contents(value: &str, what: &str, unprivileged_caller: bool) -> Result<Vec<u8>, String> {
    if value.trim_start().starts_with("-----BEGIN") {
        return Ok(value.as_bytes().to_vec());
    }
    if unprivileged_caller {
        return Err(format!(
            "{what}: a path would be read as root, so it is refused for a caller who is not root; give the PEM contents instead"
        ));
    }
    std::fs::read(value).map_err(|e| format!("{what}: cannot read the file: {}", e.kind()))
}

/// The redirect policy of a client that sends secret headers: follow within the same origin
/// (or from http to https on the same host and port), refuse anything else, since reqwest keeps
/// sending custom headers to wherever it is redirected.
fn same_origin_redirects(attempt: reqwest::redirect::Attempt) -> reqwest::redirect::Action {
    let Some(previous) = attempt.previous().last() else {
        return attempt.follow();
    };
    let next = attempt.url();
    let same_host = previous.host_str() == next.host_str();
    let same_origin = same_host
        && previous.scheme() == next.scheme()
        && previous.port_or_known_default() == next.port_or_known_default();
    let upgrade = same_host && previous.scheme() == "http" && next.scheme() == "https";
    if attempt.previous().len() > 10 {
        attempt.error("too many redirects")
    } else if same_origin || upgrade {
        attempt.follow()
    } else {
        let to = format!("{}://{}", next.scheme(), next.host_str().unwrap_or(""));
        attempt.error(format!(
            "redirected to {to}, which is not followed: the request carries secret headers"
        ))
    }
}

async fn fetch_all(
    client: reqwest::Client,
    settings: Arc<Settings>,
    cache: PathBuf,
    wanted: Vec<(Checksum, String)>,
    progress: Arc<Progress>,
) -> Vec<String> {
    let permits = Arc::new(tokio::sync::Semaphore::new(settings.parallel));
    let mut tasks = tokio::task::JoinSet::new();
    for (index, (checksum, url)) in wanted.into_iter().enumerate() {
        let (client, settings, cache, progress, permits) = (
            client.clone(),
            settings.clone(),
            cache.clone(),
            progress.clone(),
            permits.clone(),
        );
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let r = fetch_one(&client, &settings, &cache, &checksum, &url, &progress).await;
            if r.is_ok() {
                progress.file_done();
            }
            (
                index,
                r.map_err(|e| format!("{checksum} ({}): {e}", display_url(&url))),
            )
        });
    }
    let mut failures = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((index, Err(e))) => failures.push((index, e)),
            Ok((_, Ok(()))) => {}
            Err(e) => failures.push((usize::MAX, format!("a download task failed: {e}"))),
        }
    }
    failures.sort();
    failures.into_iter().map(|(_, e)| e).collect()
}

/// Makes `cache/checksum` a verified file: reuses a good cache entry, else downloads.
async fn fetch_one(
    client: &reqwest::Client,
    settings: &Settings,
    cache: &Path,
    checksum: &Checksum,
    url: &str,
    progress: &Progress,
) -> Result<(), String> {
    let target = cache.join(checksum.as_str());
    if let Some(size) = verify_cached(&target, checksum).await? {
        // Its modification time is its last use, for the store's least-recently-used prune.
        if let Ok(f) = std::fs::File::options().write(true).open(&target) {
            let _ = f.set_modified(std::time::SystemTime::now());
        }
        progress.expect(size);
        progress.advance(size);
        return Ok(());
    }
    let mut attempt = 0;
    loop {
        match attempt_once(client, cache, checksum, url, progress).await {
            Ok(()) => return Ok(()),
            Err(Failure::Permanent(e)) => return Err(e),
            Err(Failure::Transient(e)) if attempt >= settings.retries => {
                let n = attempt + 1;
                return Err(format!(
                    "{e} (gave up after {n} attempt{})",
                    if n == 1 { "" } else { "s" }
                ));
            }
            Err(Failure::Transient(e)) => {
                let delay = settings.retry_delay * 2u32.saturating_pow(attempt.min(6));
                eprintln!(
                    "org.osbuild.files: {checksum}: {e}; retrying in {:.1}s",
                    delay.as_secs_f64()
                );
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
        }
    }
}

/// `Some(size)` when the cache entry exists and its content matches; a corrupt entry is
/// removed (and `None` returned, so it is fetched again).
async fn verify_cached(target: &Path, checksum: &Checksum) -> Result<Option<u64>, String> {
    let meta = match std::fs::symlink_metadata(target) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{checksum}: reading the cache: {e}")),
    };
    let (path, algo) = (target.to_owned(), checksum.algorithm());
    let digest = if meta.is_file() {
        tokio::task::spawn_blocking(move || hash_file(&path, algo))
            .await
            .map_err(|e| format!("{checksum}: hashing the cache entry: {e}"))?
            .ok()
    } else {
        None
    };
    if digest.as_deref() == Some(checksum.as_str()) {
        return Ok(Some(meta.len()));
    }
    eprintln!("org.osbuild.files: {checksum}: the cache entry is corrupt; fetching it again");
    let removed = if meta.is_dir() {
        std::fs::remove_dir_all(target)
    } else {
        std::fs::remove_file(target)
    };
    removed.map_err(|e| format!("{checksum}: removing the corrupt cache entry: {e}"))?;
    Ok(None)
}

/// One download into a temporary file beside the cache entry; renamed into place if verified.
async fn attempt_once(
    client: &reqwest::Client,
    cache: &Path,
    checksum: &Checksum,
    url: &str,
    progress: &Progress,
) -> Result<(), Failure> {
    let mut tmp = tempfile::Builder::new()
        .prefix(osbuild_protocol::source::PARTIAL_DOWNLOAD_PREFIX)
        .tempfile_in(cache)
        .map_err(|e| Failure::Permanent(format!("creating a temporary file in the cache: {e}")))?;
    // Held until the file is renamed or removed: the store sweeps only partial files nobody
    // holds (a downloader that died).
    tmp.as_file()
        .try_lock()
        .map_err(|e| Failure::Permanent(format!("locking the temporary file: {e}")))?;
    let mut hasher = checksum.hasher();
    let parsed =
        reqwest::Url::parse(url).map_err(|e| Failure::Permanent(format!("invalid URL: {e}")))?;
    let (mut done, mut expected) = (0u64, 0u64);
    let result = match parsed.scheme() {
        "http" | "https" => {
            http_get(
                client,
                parsed,
                tmp.as_file_mut(),
                &mut hasher,
                progress,
                &mut done,
                &mut expected,
            )
            .await
        }
        "file" => {
            let path = parsed
                .to_file_path()
                .map_err(|_| Failure::Permanent("invalid file:// URL".into()))?;
            let file = tmp
                .as_file()
                .try_clone()
                .map_err(|e| Failure::Permanent(format!("temporary file: {e}")))?;
            let (r, h) = tokio::task::spawn_blocking(move || {
                let r = copy_local(&path, file, &mut hasher);
                (r, hasher)
            })
            .await
            .map_err(|e| Failure::Permanent(format!("copying: {e}")))?;
            hasher = h;
            r.map(|n| {
                (done, expected) = (n, n);
                progress.expect(n);
                progress.advance(n);
            })
        }
        other => Err(Failure::Permanent(format!(
            "unsupported URL scheme {other}:// (http, https and file are)"
        ))),
    };
    if let Err(e) = result {
        progress.rewind(done, expected);
        return Err(e);
    }
    let digest = hasher.finish();
    if digest != checksum.as_str() {
        progress.rewind(done, expected);
        return Err(Failure::Permanent(format!(
            "checksum mismatch: the content has {digest} ({done} bytes)"
        )));
    }
    // No fsync: an entry a crash left incomplete fails its re-verification and is fetched
    // again, so the cache stays correct without paying a sync per file.
    let perms = std::os::unix::fs::PermissionsExt::from_mode(0o644);
    let _ = tmp.as_file().set_permissions(perms);
    // A concurrent fetch of the same file may win; its content is the same.
    tmp.persist(cache.join(checksum.as_str()))
        .map_err(|e| Failure::Permanent(format!("moving it into the cache: {}", e.error)))?;
    Ok(())
}

async fn http_get(
    client: &reqwest::Client,
    url: reqwest::Url,
    file: &mut std::fs::File,
    hasher: &mut crate::checksum::Hasher,
    progress: &Progress,
    done: &mut u64,
    expected: &mut u64,
) -> Result<(), Failure> {
    let mut response = client
        .get(url)
        .send()
        .await
        .map_err(|e| Failure::Transient(describe(&e)))?;
    let status = response.status();
    if !status.is_success() {
        let text = format!(
            "HTTP {} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        );
        let text = text.trim_end().to_owned();
        return Err(
            if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
                Failure::Transient(text)
            } else {
                Failure::Permanent(text)
            },
        );
    }
    if let Some(n) = response.content_length() {
        *expected = n;
        progress.expect(n);
    }
    // Chunks arrive in a few KiB each: write them in larger pieces.
    let mut out = std::io::BufWriter::with_capacity(256 * 1024, file);
    let write_err = |e: std::io::Error| Failure::Permanent(format!("writing the cache: {e}"));
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                hasher.update(&chunk);
                out.write_all(&chunk).map_err(write_err)?;
                *done += chunk.len() as u64;
                progress.advance(chunk.len() as u64);
            }
            Ok(None) => return out.flush().map_err(write_err),
            Err(e) => {
                return Err(Failure::Transient(format!(
                    "the transfer broke off after {done} bytes: {}",
                    describe(&e)
                )))
            }
        }
    }
}

/// A reqwest error without its URL (which could carry credentials), with its causes.
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "reading the body failed"
    } else {
        "request failed"
    };
    let mut text = kind.to_owned();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

fn copy_local(
    path: &Path,
    mut out: std::fs::File,
    hasher: &mut crate::checksum::Hasher,
) -> Result<u64, Failure> {
    let mut input = std::fs::File::open(path)
        .map_err(|e| Failure::Permanent(format!("cannot open {}: {e}", path.display())))?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        let got = match input.read(&mut buf) {
            Ok(0) => return Ok(n),
            Ok(got) => got,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Failure::Permanent(format!(
                    "reading {}: {e}",
                    path.display()
                )))
            }
        };
        hasher.update(&buf[..got]);
        out.write_all(&buf[..got])
            .map_err(|e| Failure::Permanent(format!("writing the cache: {e}")))?;
        n += got as u64;
    }
}

/// Puts a copy of `src` at `dst`: a reflink where the filesystem has them, else a hard link,
/// else a plain copy. An existing `dst` is replaced.
pub fn place(src: &Path, dst: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(dst) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    if reflink(src, dst).is_ok() {
        return Ok(());
    }
    if std::fs::hard_link(src, dst).is_ok() {
        return Ok(());
    }
    std::fs::copy(src, dst).map(|_| ())
}

fn reflink(src: &Path, dst: &Path) -> std::io::Result<()> {
    let input = std::fs::File::open(src)?;
    let output = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dst)?;
    match osbuild_sys::fs::reflink(&input, &output) {
        Ok(()) => {
            let perms = std::os::unix::fs::PermissionsExt::from_mode(0o644);
            output.set_permissions(perms)
        }
        Err(e) => {
            drop(output);
            let _ = std::fs::remove_file(dst);
            Err(e.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_drop_credentials_in_messages() {
        let cases = [
            (
                "https://user:pw@example.com/a.rpm",
                "https://example.com/a.rpm",
            ),
            ("https://example.com/a.rpm", "https://example.com/a.rpm"),
            ("file:///srv/a", "file:///srv/a"),
        ];
        for (url, want) in cases {
            assert_eq!(display_url(url), want);
        }
    }

    #[test]
    fn options_are_checked() {
        let cases = [
            (
                r#"{"parallel": 0}"#,
                "option parallel: expected an integer >= 1, found 0",
            ),
            (
                r#"{"retries": -1}"#,
                "option retries: expected an integer >= 0, found -1",
            ),
            (
                r#"{"sslcacert": 1}"#,
                "option sslcacert: expected PEM contents or a path, found 1",
            ),
        ];
        for (opts, want) in cases {
            let o: serde_json::Map<String, Value> = serde_json::from_str(opts).unwrap();
            assert_eq!(Settings::from_options(&o).unwrap_err(), want);
        }
        let o = serde_json::from_str(r#"{"parallel": 4, "retries": 0}"#).unwrap();
        let s = Settings::from_options(&o).unwrap();
        assert_eq!((s.parallel, s.retries), (4, 0));
        let o = serde_json::from_str(r#"{"urls": {"sha256:x": 3}}"#).unwrap();
        assert_eq!(
            urls(&o).unwrap_err(),
            "option urls.sha256:x: expected a URL"
        );
    }

    #[test]
    fn place_copies_content() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (dir.path().join("s"), dir.path().join("d"));
        std::fs::write(&src, b"content").unwrap();
        std::fs::write(&dst, b"old").unwrap();
        place(&src, &dst).unwrap();
        assert_eq!(std::fs::read(&dst).unwrap(), b"content");
    }
}
