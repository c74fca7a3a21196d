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
//! The downloads and the cache invariant are [`crate::download`]'s. The output gets each file
//! by reflink, else hard link, else copy.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::checksum::Checksum;
use crate::download::{self, CacheLock, Download, Settings};
use crate::Request;

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

/// Runs `org.osbuild.files`.
pub fn run(request: &Request) -> Result<(), String> {
    let settings = Settings::from_options(&request.options)?;
    let urls = urls(&request.options)?;
    let mut wanted: Vec<Download> = Vec::new();
    for c in &request.checksums {
        let url = urls.get(c).ok_or_else(|| format!("unknown file: {c}"))?;
        download::refuse_host_url(c, url, request.unprivileged_caller)?;
        let checksum = Checksum::parse(c).map_err(|e| e.to_string())?;
        if !wanted.iter().any(|w| w.checksum == checksum) {
            wanted.push(Download {
                checksum,
                urls: vec![url.clone()],
                client: 0,
            });
        }
    }
    std::fs::create_dir_all(&request.output)
        .map_err(|e| format!("creating {}: {e}", request.output.display()))?;
    let cache_lock = CacheLock::acquire(&request.cache)?;
    let clients = match wanted.is_empty() {
        true => Vec::new(),
        false => {
            let tls = download::secrets_tls(&request.secrets, request.unprivileged_caller)?;
            vec![download::client(
                &settings,
                &tls,
                request.unprivileged_caller,
            )?]
        }
    };
    download::download_all(
        "org.osbuild.files",
        settings,
        clients,
        &request.cache,
        wanted.clone(),
    )?;
    for w in &wanted {
        let name = w.checksum.as_str();
        place(&request.cache.join(name), &request.output.join(name))
            .map_err(|e| format!("{name}: placing it in {}: {e}", request.output.display()))?;
    }
    drop(cache_lock);
    Ok(())
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
    use crate::download::display_url;

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
