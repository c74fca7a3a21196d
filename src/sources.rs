//! Sources on the engine's side: running `LIBDIR/sources/<name>` on the host, fetching
//! everything a manifest names before the first stage, and answering the stages' sources API.
//!
//! The protocol is osbuild v10's (DESIGN.md §4.4): the request
//! `{"options", "secrets", "cache", "output", "checksums"}` goes to the source's stdin, its reply
//! (`{}`, a list, or `{"error": ...}`) comes back on stdout. The cache of source `NAME` is
//! `STORE/sources/NAME`. Secrets go to the source's stdin and nowhere else: not into argv, the
//! environment, logs, events or results.
//!
//! A v2 manifest's sources (`{TYPE: {"items", "options"?}}`, [`Sources::for_v2`]) travel the
//! same way, with the items as the request's `"items"`; all their items are fetched before
//! the first stage. HEAD's file sources (`org.osbuild.curl`, `org.osbuild.inline`,
//! `org.osbuild.librepo`) share HEAD's cache `STORE/sources/org.osbuild.files`, where a
//! stage's `org.osbuild.files` input finds a file by its checksum ([`cached_file`]).
//!
//! Sources that our binaries implement print progress lines on stderr when
//! `OSBUILD_SOURCE_PROGRESS=1` (see the `osbuild-sources` crate); they become
//! [`Event::SourceProgress`]. Other stderr lines are logged.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use osbuild_protocol::source::{self, PROGRESS_ENV, PROGRESS_PREFIX};
use osbuild_protocol::sources_api::{self, error_reply};
use osbuild_sys::process::{describe_status, Child};

use crate::buildroot::Cancel;
use crate::events::SourceProgress as Progress;
use crate::events::{Event, Monitor};
use crate::json::{self, Value};
use crate::modules::{Index, ModuleKind};
use crate::store::{Store, StoreError};

/// Environment variables a source inherits from the engine (proxies and TLS roots); nothing
/// else is passed.
const PASSED_ENV: &[&str] = &[
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    // org.osbuild.curl's proxy and its org.osbuild.mtls secrets provider (as osbuild HEAD).
    "OSBUILD_SOURCES_CURL_PROXY",
    "OSBUILD_SOURCES_CURL_SSL_CLIENT_CERT",
    "OSBUILD_SOURCES_CURL_SSL_CLIENT_KEY",
    "OSBUILD_SOURCES_CURL_SSL_CA_CERT",
];

/// The cache of HEAD's file sources, keyed by checksum (HEAD's `content_type`).
pub const FILES_CACHE: &str = "org.osbuild.files";

/// The cache directory name of v2 source `name`: HEAD's file sources share [`FILES_CACHE`].
fn v2_cache_name(name: &str) -> &str {
    match name {
        "org.osbuild.curl" | "org.osbuild.inline" | "org.osbuild.librepo" => FILES_CACHE,
        other => other,
    }
}

/// The verified file of `checksum` in HEAD's file cache (`STORE/sources/org.osbuild.files/
/// CHECKSUM`), if it is there: what a stage's `org.osbuild.files` input with origin
/// `org.osbuild.source` hands over. `checksum` must be `ALGORITHM:HEX`; nothing else is looked
/// up.
pub fn cached_file(store: &Store, checksum: &str) -> Option<PathBuf> {
    let (algorithm, hex) = checksum.split_once(':')?;
    let plain = ["md5", "sha1", "sha256", "sha384", "sha512"].contains(&algorithm)
        && !hex.is_empty()
        && hex.bytes().all(|b| b.is_ascii_hexdigit());
    if !plain {
        return None;
    }
    let path = store.sources_dir(FILES_CACHE).ok()?.join(checksum);
    path.is_file().then_some(path)
}

/// Why sources could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source {name} is not in the libdir {}: the manifest's \"sources\" names it", libdir.display())]
    Missing { name: String, libdir: PathBuf },
    #[error("{name}: {message}")]
    Failed { name: String, message: String },
    #[error("cannot run source {name}: {source}")]
    Spawn {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("secrets: {0}")]
    Secrets(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cancelled")]
    Cancelled,
}

impl Progress {
    /// Parses the JSON after the progress prefix.
    fn parse(text: &str) -> Option<Self> {
        let v = json::parse(text).ok()?;
        let n = |k: &str| v.get(k).and_then(Value::as_int).and_then(|i| i.as_u64());
        Some(Self {
            files_done: n("files_done")?,
            files_total: n("files_total")?,
            bytes_done: n("bytes_done")?,
            bytes_total: n("bytes_total")?,
        })
    }
}

#[derive(Clone)]
struct Entry {
    executable: PathBuf,
    options: Value,
    secrets: Value,
    cache: PathBuf,
    /// A v2 source's `items` (all fetched ahead); `None` for a v1 source.
    items: Option<Value>,
}

/// Without the secrets, and with the items only counted.
impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let items = self
            .items
            .as_ref()
            .and_then(Value::as_object)
            .map(|m| m.len());
        f.debug_struct("Entry")
            .field("executable", &self.executable)
            .field("options", &self.options)
            .field("secrets", &"<redacted>")
            .field("cache", &self.cache)
            .field("items", &items)
            .finish()
    }
}

/// The sources of one build: their executables, options, secrets and caches. Cheap to share
/// with the API threads (wrap it in an `Arc`).
#[derive(Debug, Clone, Default)]
pub struct Sources {
    entries: BTreeMap<String, Entry>,
    unprivileged_caller: bool,
}

impl Sources {
    /// The sources `options` names (the manifest's `"sources"`), with `secrets` (`--secrets`:
    /// `{NAME: {...}}`). Every named source must exist in the libdir.
    pub fn new(
        index: &Index,
        store: &Store,
        options: &json::Map,
        secrets: Option<&Value>,
    ) -> Result<Self, SourceError> {
        let secrets = match secrets {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => Some(m),
            Some(_) => {
                return Err(SourceError::Secrets(
                    "expected a JSON object {source-name: {...}}".into(),
                ))
            }
        };
        let mut entries = BTreeMap::new();
        for (name, opts) in options {
            let executable =
                index
                    .path(ModuleKind::Source, name)
                    .ok_or_else(|| SourceError::Missing {
                        name: name.clone(),
                        libdir: index.libdir().to_owned(),
                    })?;
            let secret = secrets
                .and_then(|s| s.get(name))
                .cloned()
                .unwrap_or_else(|| Value::Object(json::Map::new()));
            entries.insert(
                name.clone(),
                Entry {
                    executable,
                    options: opts.clone(),
                    secrets: secret,
                    cache: store.sources_dir(name)?,
                    items: None,
                },
            );
        }
        Ok(Self {
            entries,
            unprivileged_caller: false,
        })
    }

    /// The sources of a v2 manifest (`{TYPE: {"items", "options"?}}`, as checked by the
    /// manifest loader), with `secrets` as for [`Self::new`]. Every item of every source is
    /// fetched by [`Self::fetch_all`]; HEAD's file sources write into [`FILES_CACHE`].
    pub fn for_v2(
        index: &Index,
        store: &Store,
        sources: &json::Map,
        secrets: Option<&Value>,
    ) -> Result<Self, SourceError> {
        let options: json::Map = sources
            .iter()
            .map(|(name, source)| {
                let opts = source.get("options").cloned();
                (
                    name.clone(),
                    opts.unwrap_or(Value::Object(json::Map::new())),
                )
            })
            .collect();
        let mut this = Self::new(index, store, &options, secrets)?;
        for (name, entry) in &mut this.entries {
            let items = sources.get(name).and_then(|s| s.get("items")).cloned();
            entry.items = Some(items.unwrap_or(Value::Object(json::Map::new())));
            entry.cache = store.sources_dir(v2_cache_name(name))?;
        }
        Ok(this)
    }

    /// Tells every source that the build's caller is not root, so that it reads no host path
    /// for them (the request's `unprivileged-caller`).
    pub fn for_unprivileged_caller(mut self, unprivileged: bool) -> Self {
        self.unprivileged_caller = unprivileged;
        self
    }

    /// The names of the sources.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// What to fetch ahead of the build: every item of a v2 source, and every file
    /// `org.osbuild.files` knows (the keys of its `urls`). Other v1 sources (such as
    /// `org.osbuild.dnf`, which downloads nothing) are only run when a stage asks.
    pub fn prefetch_list(&self) -> Vec<(&str, Vec<String>)> {
        self.entries
            .iter()
            .filter_map(|(name, e)| {
                let known = match &e.items {
                    Some(items) => items.as_object()?,
                    None if name == "org.osbuild.files" => e.options.get("urls")?.as_object()?,
                    None => return None,
                };
                let list: Vec<String> = known.keys().cloned().collect();
                (!list.is_empty()).then_some((name.as_str(), list))
            })
            .collect()
    }

    /// Fetches everything [`Self::prefetch_list`] names into the caches, before any stage
    /// runs. The first source that fails ends it with its error.
    pub fn fetch_all(
        &self,
        store: &Store,
        cancel: &Cancel,
        monitor: &mut dyn Monitor,
    ) -> Result<(), SourceError> {
        for (name, checksums) in self.prefetch_list() {
            let scratch = store.tempdir("sources-prefetch")?;
            monitor.event(Event::SourceStarted {
                name,
                files: checksums.len(),
            });
            let started = Instant::now();
            let reply = self.run(name, &checksums, scratch.path(), cancel, &mut |p| {
                monitor.event(Event::SourceProgress { name, progress: p })
            });
            let reply = reply.and_then(|r| check_reply(name, r));
            monitor.event(Event::SourceFinished {
                name,
                success: reply.is_ok(),
                seconds: started.elapsed().as_secs_f64(),
            });
            reply?;
        }
        Ok(())
    }

    /// Makes every prefetched file visible in a stage's sources directory (`output/<source>/
    /// <checksum>`, `/run/osbuild/sources/...` inside), so stages that read the files directly
    /// (dpkg) need no API round trip. Only the files this manifest names are linked, never the
    /// rest of the shared cache (which may hold files fetched for other builds and their secrets).
    pub fn expose(&self, output: &Path) -> Result<(), SourceError> {
        for (name, checksums) in self.prefetch_list() {
            let entry = &self.entries[name];
            let dir = output.join(name);
            std::fs::create_dir_all(&dir).map_err(|e| SourceError::Failed {
                name: name.to_owned(),
                message: format!("creating {}: {e}", dir.display()),
            })?;
            for checksum in checksums
                .iter()
                .filter(|c| !c.contains('/') && !c.starts_with('.'))
            {
                let (from, to) = (entry.cache.join(checksum), dir.join(checksum));
                if std::fs::hard_link(&from, &to).is_err() {
                    std::fs::copy(&from, &to).map_err(|e| SourceError::Failed {
                        name: name.to_owned(),
                        message: format!(
                            "{checksum} is not in the cache {}: {e}",
                            entry.cache.display()
                        ),
                    })?;
                }
            }
        }
        Ok(())
    }

    /// The sources API's answer for a stage: the source's reply as JSON text (v10 sends it back
    /// as it came, errors included), with `output` the stage's sources directory
    /// (`/run/osbuild/sources` inside); the files land in `output/<source>/`.
    pub fn api_reply(&self, request: &[u8], output: &Path, cancel: &Cancel) -> String {
        let Some(sources_api::Request { source, checksums }) = sources_api::Request::parse(request)
        else {
            return error_reply(
                "invalid request: expected {\"source\": NAME, \"checksums\": [...]}",
            );
        };
        if !self.entries.contains_key(&source) {
            return error_reply(&format!("unknown source {source}: the manifest names none"));
        }
        let out = output.join(&source);
        match self.run(&source, &checksums, &out, cancel, &mut |_| {}) {
            Ok(reply) => json::dumps(&reply),
            Err(SourceError::Failed { message, .. }) => error_reply(&message),
            Err(e) => error_reply(&e.to_string()),
        }
    }

    /// Runs source `name` for `checksums` with output directory `output`; returns its reply
    /// (which may be an `{"error"}` reply: see [`check_reply`]).
    pub fn run(
        &self,
        name: &str,
        checksums: &[String],
        output: &Path,
        cancel: &Cancel,
        on_progress: &mut dyn FnMut(Progress),
    ) -> Result<Value, SourceError> {
        let entry = self.entries.get(name).ok_or_else(|| SourceError::Failed {
            name: name.to_owned(),
            message: "the manifest names no such source".into(),
        })?;
        let request = source::Request {
            options: &entry.options,
            secrets: &entry.secrets,
            cache: entry.cache.clone(),
            output: output.to_owned(),
            checksums: checksums.to_vec(),
            items: entry.items.as_ref(),
            unprivileged_caller: self.unprivileged_caller,
        }
        .to_json();

        let mut cmd = source_command(&entry.executable);
        let mut child = Child::spawn(&mut cmd).map_err(|source| SourceError::Spawn {
            name: name.to_owned(),
            source,
        })?;
        let io = SourceIo::start(&mut child, request);
        let status = loop {
            match io.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => handle_line(name, &line, on_progress),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    if let Ok(status) = child.wait() {
                        break status;
                    }
                }
            }
            if cancel.is_cancelled() {
                return Err(SourceError::Cancelled);
            }
        };
        let out = io.finish();
        let text = String::from_utf8_lossy(&out);
        json::parse(text.trim()).map_err(|_| SourceError::Failed {
            name: name.to_owned(),
            message: format!(
                "source returned malformed json ({}): {:?}",
                describe_status(status),
                tail(&text)
            ),
        })
    }
}

/// The command line of a source: its executable, a cleared environment but for PATH, the
/// progress switch and [`PASSED_ENV`], and pipes for the three standard streams. The source
/// dies with this thread; dropping its [`Child`] (an error or a cancel) kills it.
fn source_command(executable: &Path) -> Command {
    let mut cmd = Command::new(executable);
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env(PROGRESS_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for var in PASSED_ENV {
        if let Some(v) = std::env::var_os(var) {
            cmd.env(var, v);
        }
    }
    osbuild_sys::process::tie_to_thread(&mut cmd, None);
    osbuild_sys::process::inherit_only(&mut cmd, Vec::new());
    cmd
}

/// A running source's standard streams, each on its own thread: the request goes in (so a
/// source that replies before reading everything cannot deadlock us), the reply is collected,
/// and stderr arrives line by line on `lines`.
struct SourceIo {
    writer: std::thread::JoinHandle<()>,
    reader: std::thread::JoinHandle<Vec<u8>>,
    stderr: std::thread::JoinHandle<()>,
    lines: mpsc::Receiver<String>,
}

impl SourceIo {
    fn start(child: &mut Child, request: String) -> Self {
        let (stdin, stdout, stderr) = child.take_pipes();
        let writer = std::thread::spawn(move || {
            if let Some(mut stdin) = stdin {
                let _ = stdin.write_all(request.as_bytes());
            }
        });
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            if let Some(mut stdout) = stdout {
                let _ = stdout.read_to_end(&mut out);
            }
            out
        });
        let (tx, lines) = mpsc::channel::<String>();
        let stderr = std::thread::spawn(move || {
            if let Some(stderr) = stderr {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            }
        });
        SourceIo {
            writer,
            reader,
            stderr,
            lines,
        }
    }

    /// Waits for the three threads and returns what the source wrote on stdout.
    fn finish(self) -> Vec<u8> {
        let _ = self.writer.join();
        let _ = self.stderr.join();
        self.reader.join().unwrap_or_default()
    }
}

fn handle_line(name: &str, line: &str, on_progress: &mut dyn FnMut(Progress)) {
    match line.strip_prefix(PROGRESS_PREFIX).and_then(Progress::parse) {
        Some(p) => on_progress(p),
        None => tracing::info!(source = name, "{line}"),
    }
}

fn tail(text: &str) -> String {
    let t = text.trim();
    let start = t.char_indices().rev().nth(499).map_or(0, |(i, _)| i);
    t[start..].to_owned()
}

/// `Ok` unless the reply is `{"error": ...}`.
pub fn check_reply(name: &str, reply: Value) -> Result<Value, SourceError> {
    match source::Reply::from_value(reply) {
        source::Reply::Done(reply) => Ok(reply),
        source::Reply::Failed(message) => Err(SourceError::Failed {
            name: name.to_owned(),
            message,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_parse_and_others_do_not() {
        let cases = [
            (
                r#"{"files_done":1,"files_total":2,"bytes_done":3,"bytes_total":4}"#,
                Some(Progress {
                    files_done: 1,
                    files_total: 2,
                    bytes_done: 3,
                    bytes_total: 4,
                }),
            ),
            (r#"{"files_done":1}"#, None),
            ("not json", None),
        ];
        for (text, want) in cases {
            assert_eq!(Progress::parse(text), want, "{text}");
        }
    }

    #[test]
    fn error_replies_become_errors() {
        let ok = json::parse("{}").unwrap();
        assert!(check_reply("s", ok).is_ok());
        let list = json::parse("[{\"checksum\": \"x\"}]").unwrap();
        assert!(check_reply("s", list).is_ok());
        let err = json::parse(r#"{"error": "unknown file: sha256:00"}"#).unwrap();
        assert_eq!(
            check_reply("org.osbuild.files", err)
                .unwrap_err()
                .to_string(),
            "org.osbuild.files: unknown file: sha256:00"
        );
    }

    #[test]
    fn api_requests_are_checked() {
        let s = Sources::default();
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&[u8], &str); 3] = [
            (b"garbage", "invalid request"),
            (br#"{"source": "x"}"#, "invalid request"),
            (
                br#"{"source": "org.osbuild.files", "checksums": []}"#,
                "unknown source org.osbuild.files: the manifest names none",
            ),
        ];
        for (req, want) in cases {
            let reply = s.api_reply(req, dir.path(), &Cancel::new());
            let v = json::parse(&reply).unwrap();
            let msg = v.get("error").and_then(Value::as_str).unwrap();
            assert!(msg.contains(want), "{msg}");
        }
    }
}
