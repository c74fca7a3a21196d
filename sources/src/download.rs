//! Bringing files into a source cache by checksum: the download machinery that
//! `org.osbuild.files` (v10's options) and `org.osbuild.curl` (HEAD's v2 items) share.
//!
//! Each [`Download`] names a checksum, one or more URLs (mirrors, tried in order) and the HTTP
//! client to use. A mirror that answers a 4xx or serves other bytes is dropped; one that fails
//! transiently (a connection error, a timeout, a truncated body, an HTTP 5xx/408/429) is tried
//! again in the next round, after an exponential backoff, up to `retries` further rounds. The
//! next mirror is tried at once in the same round. When every mirror failed, the error names
//! each of them and why.
//!
//! The cache invariant: `CACHE/CHECKSUM` exists only with verified content. A download goes to a
//! temporary `.unverified-*` file in the cache directory (same filesystem, flock'ed while
//! written), is hashed while it streams, and is renamed into place only if the digest matches.
//! A cache entry is hashed again before each use; a corrupt one is removed and fetched again.
//!
//! Secrets (headers, client certificates) live in the clients; messages carry URLs without
//! their user name or password, and reqwest errors without their URL.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::checksum::{hash_file, Checksum};
use crate::progress::Progress;

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
    /// Reads the tuning options (`parallel`, `retries`, `retry_delay_ms`, `connect_timeout`,
    /// `read_timeout`, `sslcacert`); other members are left to the caller.
    pub fn from_options(options: &serde_json::Map<String, Value>) -> Result<Self, String> {
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

/// One file to bring into the cache.
#[derive(Debug, Clone)]
pub struct Download {
    pub checksum: Checksum,
    /// Tried in this order; never empty.
    pub urls: Vec<String>,
    /// Index into the clients given to [`download_all`].
    pub client: usize,
}

/// A file that is in the cache now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub checksum: String,
    /// It was there (verified) before; nothing was downloaded.
    pub cached: bool,
}

/// What the TLS side of a client carries beyond the system's roots and `sslcacert`.
#[derive(Default)]
pub struct Tls {
    /// Further CA certificates (PEM).
    pub ca: Option<Vec<u8>>,
    /// A client certificate followed by its key (PEM).
    pub identity: Option<Vec<u8>>,
    /// Secret headers sent with every request.
    pub headers: reqwest::header::HeaderMap,
    /// Accept any server certificate (HEAD's `insecure`).
    pub insecure: bool,
    /// A proxy for every scheme (on top of the usual environment variables).
    pub proxy: Option<String>,
}

/// The shared lock on a cache directory, held while a source writes into it: the store prunes
/// a cache directory only under an exclusive lock.
pub struct CacheLock(#[allow(dead_code)] std::fs::File);

impl CacheLock {
    /// Creates `cache` if need be and locks it shared.
    pub fn acquire(cache: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(cache).map_err(|e| format!("creating {}: {e}", cache.display()))?;
        std::fs::File::open(cache)
            .and_then(|dir| dir.lock_shared().map(|()| Self(dir)))
            .map_err(|e| format!("locking the cache {}: {e}", cache.display()))
    }
}

/// A `file://` URL would be read as root: refused for a caller who is not root.
pub fn refuse_host_url(checksum: &str, url: &str, unprivileged_caller: bool) -> Result<(), String> {
    if unprivileged_caller && url.trim_start().to_ascii_lowercase().starts_with("file:") {
        return Err(format!(
            "{checksum}: a file:// URL would be read as root, so it is refused for a caller who is not root; serve the file over HTTP, or build as root (sudo osbuild)"
        ));
    }
    Ok(())
}

/// Downloads every file of `wanted` that the cache lacks, `settings.parallel` at once, with
/// `clients` (each [`Download`] names its own). `label` (the source's name) starts log lines.
/// The caller holds the [`CacheLock`].
pub fn download_all(
    label: &'static str,
    settings: Settings,
    clients: Vec<reqwest::Client>,
    cache: &Path,
    wanted: Vec<Download>,
) -> Result<Vec<Fetched>, String> {
    let progress = Arc::new(Progress::new(wanted.len() as u64));
    progress.report(true);
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the download runtime: {e}"))?;
    let job = Arc::new(Job {
        label,
        settings,
        clients,
        cache: cache.to_owned(),
        progress: progress.clone(),
    });
    let (fetched, failures) = runtime.block_on(fetch_all(job, wanted));
    progress.report(true);
    if failures.is_empty() {
        Ok(fetched)
    } else {
        Err(summarize(failures))
    }
}

/// What every download task of one run shares.
struct Job {
    label: &'static str,
    settings: Settings,
    clients: Vec<reqwest::Client>,
    cache: PathBuf,
    progress: Arc<Progress>,
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

/// The TLS identity and headers of v10-style secrets: `sslclientcert` and `sslclientkey`
/// (PEM contents, or paths for a privileged caller) and `headers` (`{NAME: VALUE}`).
pub fn secrets_tls(
    secrets: &serde_json::Map<String, Value>,
    unprivileged_caller: bool,
) -> Result<Tls, String> {
    let secret_pem = |key: &str| -> Result<Option<Vec<u8>>, String> {
        match secrets.get(key) {
            None => Ok(None),
            Some(Value::String(p)) => {
                pem_contents(p, &format!("secret {key}"), unprivileged_caller).map(Some)
            }
            Some(_) => Err(format!("secret {key}: expected PEM contents or a path")),
        }
    };
    let mut tls = Tls::default();
    match (secret_pem("sslclientcert")?, secret_pem("sslclientkey")?) {
        (Some(mut cert), key) => {
            if let Some(key) = key {
                cert.push(b'\n');
                cert.extend_from_slice(&key);
            }
            tls.identity = Some(cert);
        }
        (None, Some(_)) => return Err("secret sslclientkey given without sslclientcert".into()),
        (None, None) => {}
    }
    if let Some(headers) = secrets.get("headers") {
        let headers = headers
            .as_object()
            .ok_or("secret headers: expected an object {name: value}")?;
        for (name, value) in headers {
            let n = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("secret headers: invalid header name {name:?}"))?;
            let mut v = value
                .as_str()
                .and_then(|s| reqwest::header::HeaderValue::from_str(s).ok())
                .ok_or_else(|| format!("secret headers: the value of {name} is not valid"))?;
            v.set_sensitive(true);
            tls.headers.insert(n, v);
        }
    }
    Ok(tls)
}

/// An HTTP client: the system's roots plus `sslcacert` and `tls.ca`, the client identity and
/// secret headers of `tls` (with headers, redirects stay within the origin).
pub fn client(
    settings: &Settings,
    tls: &Tls,
    unprivileged_caller: bool,
) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .user_agent(concat!("osbuild-sources/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(settings.connect_timeout)
        .read_timeout(settings.read_timeout)
        .pool_max_idle_per_host(settings.parallel);
    let option_ca = match &settings.ca_cert {
        Some(value) => Some(pem_contents(
            value,
            "option sslcacert",
            unprivileged_caller,
        )?),
        None => None,
    };
    for (what, pem) in [
        ("option sslcacert", &option_ca),
        ("CA certificate", &tls.ca),
    ] {
        let Some(pem) = pem else { continue };
        let certs =
            reqwest::Certificate::from_pem_bundle(pem).map_err(|e| format!("{what}: {e}"))?;
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    if let Some(pem) = &tls.identity {
        let id = reqwest::Identity::from_pem(pem)
            .map_err(|_| "secret sslclientcert/sslclientkey: not a PEM certificate and key")?;
        b = b.identity(id);
    }
    if !tls.headers.is_empty() {
        b = b
            .default_headers(tls.headers.clone())
            .redirect(reqwest::redirect::Policy::custom(same_origin_redirects));
    }
    if tls.insecure {
        b = b.danger_accept_invalid_certs(true);
    }
    if let Some(proxy) = &tls.proxy {
        let p = reqwest::Proxy::all(proxy).map_err(|_| "the proxy URL is not valid".to_owned())?;
        b = b.proxy(p);
    }
    b.build()
        .map_err(|e| format!("setting up the HTTP client: {e}"))
}

/// PEM given inline (`-----BEGIN ...`) or the path of a PEM file; a path is read only for a
/// privileged caller (this runs as root).
pub fn pem_contents(value: &str, what: &str, unprivileged_caller: bool) -> Result<Vec<u8>, String> {
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

async fn fetch_all(job: Arc<Job>, wanted: Vec<Download>) -> (Vec<Fetched>, Vec<String>) {
    let permits = Arc::new(tokio::sync::Semaphore::new(job.settings.parallel));
    let mut tasks = tokio::task::JoinSet::new();
    for (index, download) in wanted.into_iter().enumerate() {
        let (job, permits) = (job.clone(), permits.clone());
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let r = fetch_one(&job, &download).await;
            if r.is_ok() {
                job.progress.file_done();
            }
            (index, download.checksum, r)
        });
    }
    let (mut fetched, mut failures) = (Vec::new(), Vec::new());
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((index, checksum, Ok(cached))) => fetched.push((index, checksum, cached)),
            Ok((index, _, Err(e))) => failures.push((index, e)),
            Err(e) => failures.push((usize::MAX, format!("a download task failed: {e}"))),
        }
    }
    fetched.sort();
    failures.sort();
    let fetched = fetched.into_iter().map(|(_, checksum, cached)| Fetched {
        checksum: checksum.as_str().to_owned(),
        cached,
    });
    let failures = failures.into_iter().map(|(_, e)| e).collect();
    (fetched.collect(), failures)
}

/// One URL of a download and how it fared.
struct Mirror<'a> {
    url: &'a str,
    attempts: u32,
    error: Option<String>,
    /// Failed for good (a 4xx, other bytes): not tried again.
    dropped: bool,
}

impl Mirror<'_> {
    fn failure(&self) -> String {
        let e = self.error.as_deref().unwrap_or("not tried");
        match (self.dropped, self.attempts) {
            (true, _) | (false, 0) => e.to_owned(),
            (false, 1) => format!("{e} (gave up after 1 attempt)"),
            (false, n) => format!("{e} (gave up after {n} attempts)"),
        }
    }
}

/// Makes `cache/checksum` a verified file: reuses a good cache entry (`Ok(true)`), else tries
/// the mirrors in rounds (`Ok(false)`). The error names the checksum and each mirror's failure.
async fn fetch_one(job: &Job, download: &Download) -> Result<bool, String> {
    let checksum = &download.checksum;
    let (label, cache, c) = (job.label, job.cache.clone(), checksum.clone());
    let cached = tokio::task::spawn_blocking(move || verified_entry(label, &cache, &c))
        .await
        .map_err(|e| format!("{checksum}: hashing the cache entry: {e}"))??;
    if let Some(size) = cached {
        job.progress.expect(size);
        job.progress.advance(size);
        return Ok(true);
    }
    let client = &job.clients[download.client];
    let mut mirrors: Vec<Mirror> = download
        .urls
        .iter()
        .map(|url| Mirror {
            url,
            attempts: 0,
            error: None,
            dropped: false,
        })
        .collect();
    for round in 0..=job.settings.retries {
        if round > 0 {
            let delay = job.settings.retry_delay * 2u32.saturating_pow((round - 1).min(6));
            eprintln!(
                "{label}: {checksum}: retrying in {:.1}s",
                delay.as_secs_f64()
            );
            tokio::time::sleep(delay).await;
        }
        for m in mirrors.iter_mut().filter(|m| !m.dropped) {
            m.attempts += 1;
            match attempt_once(client, &job.cache, checksum, m.url, &job.progress).await {
                Ok(()) => return Ok(false),
                Err(Failure::Permanent(e)) => (m.error, m.dropped) = (Some(e), true),
                Err(Failure::Transient(e)) => m.error = Some(e),
            }
            let shown = display_url(m.url);
            eprintln!(
                "{label}: {checksum} ({shown}): {}",
                m.error.as_deref().unwrap_or("")
            );
        }
        if mirrors.iter().all(|m| m.dropped) {
            break;
        }
    }
    Err(match mirrors.as_slice() {
        [one] => format!("{checksum} ({}): {}", display_url(one.url), one.failure()),
        all => {
            let each: Vec<String> = all
                .iter()
                .map(|m| format!("{}: {}", display_url(m.url), m.failure()))
                .collect();
            let n = all.len();
            format!("{checksum}: all {n} mirrors failed: [{}]", each.join("; "))
        }
    })
}

/// `Some(size)` when the cache entry `cache/checksum` exists and its content matches; a
/// corrupt entry is removed (and `None` returned, so it is fetched again). A good entry's
/// modification time becomes now: it is its last use, for the store's least-recently-used
/// prune.
pub fn verified_entry(
    label: &str,
    cache: &Path,
    checksum: &Checksum,
) -> Result<Option<u64>, String> {
    let target = cache.join(checksum.as_str());
    let meta = match std::fs::symlink_metadata(&target) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{checksum}: reading the cache: {e}")),
    };
    let digest = match meta.is_file() {
        true => hash_file(&target, checksum.algorithm()).ok(),
        false => None,
    };
    if digest.as_deref() == Some(checksum.as_str()) {
        if let Ok(f) = std::fs::File::options().write(true).open(&target) {
            let _ = f.set_modified(std::time::SystemTime::now());
        }
        return Ok(Some(meta.len()));
    }
    eprintln!("{label}: {checksum}: the cache entry is corrupt; fetching it again");
    let removed = if meta.is_dir() {
        std::fs::remove_dir_all(&target)
    } else {
        std::fs::remove_file(&target)
    };
    removed.map_err(|e| format!("{checksum}: removing the corrupt cache entry: {e}"))?;
    Ok(None)
}

/// A new `.unverified-*` file in `cache`, flock'ed until it is renamed or removed: the store
/// sweeps only partial files nobody holds (a downloader that died).
pub fn partial_file(cache: &Path) -> Result<tempfile::NamedTempFile, String> {
    let tmp = tempfile::Builder::new()
        .prefix(osbuild_protocol::source::PARTIAL_DOWNLOAD_PREFIX)
        .tempfile_in(cache)
        .map_err(|e| format!("creating a temporary file in the cache: {e}"))?;
    tmp.as_file()
        .try_lock()
        .map_err(|e| format!("locking the temporary file: {e}"))?;
    Ok(tmp)
}

/// Renames a verified partial file to `cache/checksum`.
pub fn publish(
    tmp: tempfile::NamedTempFile,
    cache: &Path,
    checksum: &Checksum,
) -> Result<(), String> {
    // No fsync: an entry a crash left incomplete fails its re-verification and is fetched
    // again, so the cache stays correct without paying a sync per file.
    let perms = std::os::unix::fs::PermissionsExt::from_mode(0o644);
    let _ = tmp.as_file().set_permissions(perms);
    // A concurrent fetch of the same file may win; its content is the same.
    tmp.persist(cache.join(checksum.as_str()))
        .map(drop)
        .map_err(|e| format!("moving it into the cache: {}", e.error))
}

/// One download into a temporary file beside the cache entry; renamed into place if verified.
async fn attempt_once(
    client: &reqwest::Client,
    cache: &Path,
    checksum: &Checksum,
    url: &str,
    progress: &Progress,
) -> Result<(), Failure> {
    let mut tmp = partial_file(cache).map_err(Failure::Permanent)?;
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
    publish(tmp, cache, checksum).map_err(Failure::Permanent)
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
