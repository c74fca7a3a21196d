//! `org.osbuild.curl`: osbuild HEAD's v2 source for files by URL, natively (no curl).
//!
//! The request's `items` (a v2 manifest's `"sources": {"org.osbuild.curl": {"items": ...}}`)
//! map a checksum (md5, sha1, sha256, sha384, sha512) to its description, in HEAD's forms:
//! - `"URL"`;
//! - `{"url": URL, "insecure"?: bool, "secrets"?: {"name": PROVIDER}}`;
//!
//! and, on top of HEAD, mirrors tried in order (the next one after a 404 or other 4xx, a
//! timeout or connection error, or bytes with another checksum):
//! - `[URL, URL, ...]`;
//! - `{"url": URL, "mirrors": [URL, ...], ...}` (`url` first, then the mirrors).
//!
//! A manifest that gives one URL per checksum is valid under HEAD's schema; the mirror forms
//! are ours. Files land in `CACHE/CHECKSUM`, where `CACHE` is the engine's
//! `STORE/sources/org.osbuild.files` (HEAD's layout, so a store shared with HEAD reuses its
//! downloads). Secret providers: `org.osbuild.mtls` (client certificate, key and CA from the
//! paths in `OSBUILD_SOURCES_CURL_SSL_CLIENT_CERT`, `..._CLIENT_KEY`, `..._CA_CERT`) and
//! `org.osbuild.rhsm` (the host's entitlement certificate and the Red Hat CA); both read host
//! files, so a caller who is not root may use neither. `insecure` accepts any server
//! certificate. `OSBUILD_SOURCES_CURL_PROXY` is a proxy for every download. The options take
//! the tuning of `org.osbuild.files` (`parallel`, `retries`, `retry_delay_ms`,
//! `connect_timeout`, `read_timeout`, `sslcacert`); the request's secrets take its `headers`,
//! `sslclientcert` and `sslclientkey`, for every item.
//!
//! The reply is HEAD's `SourceResults` (`{"name", "source_type", "success", "output",
//! "results": [{"success", "metadata": {"checksum", "cached"}, "error"}]}`), or
//! `{"error": ...}` naming every file that could not be had and, per mirror, why.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};

use crate::checksum::Checksum;
use crate::download::{self, CacheLock, Download, Settings, Tls};
use crate::Request;

/// The source's name.
pub const NAME: &str = "org.osbuild.curl";
/// The environment variable naming a proxy for every download (HEAD's).
pub const PROXY_ENV: &str = "OSBUILD_SOURCES_CURL_PROXY";
/// The environment variables of the `org.osbuild.mtls` secrets provider (HEAD's).
pub const MTLS_ENV: [&str; 3] = [
    "OSBUILD_SOURCES_CURL_SSL_CLIENT_CERT",
    "OSBUILD_SOURCES_CURL_SSL_CLIENT_KEY",
    "OSBUILD_SOURCES_CURL_SSL_CA_CERT",
];

/// One item: where to get it and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub urls: Vec<String>,
    pub insecure: bool,
    /// The secrets provider's name.
    pub secrets: Option<String>,
}

/// Reads one item's description; `path` (`items.CHECKSUM`) starts its errors.
pub fn item(path: &str, v: &Value) -> Result<Item, String> {
    let url_list = |v: &Value, at: &str| -> Result<Vec<String>, String> {
        let list = v.as_array().filter(|a| !a.is_empty());
        let list = list.ok_or_else(|| format!("{at}: expected a non-empty list of URLs"))?;
        list.iter()
            .map(|u| u.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| format!("{at}: expected a list of URL strings"))
    };
    let plain = |urls| Item {
        urls,
        insecure: false,
        secrets: None,
    };
    let obj = match v {
        Value::String(url) => return Ok(plain(vec![url.clone()])),
        Value::Array(_) => return url_list(v, path).map(plain),
        Value::Object(obj) => obj,
        _ => {
            return Err(format!(
                "{path}: expected a URL, a list of URLs or an object"
            ))
        }
    };
    let allowed = ["url", "mirrors", "insecure", "secrets"];
    if let Some(k) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(format!(
            "{path}: unknown key '{k}' (allowed: {})",
            allowed.join(", ")
        ));
    }
    let mut urls = match obj.get("url") {
        Some(Value::String(u)) => vec![u.clone()],
        _ => return Err(format!("{path}.url: expected a URL (required)")),
    };
    if let Some(m) = obj.get("mirrors") {
        urls.extend(url_list(m, &format!("{path}.mirrors"))?);
    }
    let insecure = match obj.get("insecure") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(format!("{path}.insecure: expected a boolean")),
    };
    let secrets = match obj.get("secrets") {
        None => None,
        Some(s) => match s.get("name") {
            Some(Value::String(n)) if s.as_object().is_some_and(|o| o.len() == 1) => {
                Some(n.clone())
            }
            _ => return Err(format!("{path}.secrets: expected {{\"name\": PROVIDER}}")),
        },
    };
    Ok(Item {
        urls,
        insecure,
        secrets,
    })
}

/// Runs `org.osbuild.curl`: every requested checksum (all items when the request names none)
/// into the cache.
pub fn run(request: &Request) -> Result<Value, String> {
    let empty = Map::new();
    let items = request.items.as_ref().unwrap_or(&empty);
    let settings = Settings::from_options(&request.options)?;
    let checksums: Vec<&String> = match request.checksums.is_empty() {
        true => items.keys().collect(),
        false => request.checksums.iter().collect(),
    };
    let mut clients: BTreeMap<(bool, Option<String>), usize> = BTreeMap::new();
    let mut wanted = Vec::new();
    for c in checksums {
        let path = format!("items.{c}");
        let desc = items.get(c).ok_or_else(|| format!("unknown item: {c}"))?;
        let item = item(&path, desc)?;
        for url in &item.urls {
            download::refuse_host_url(c, url, request.unprivileged_caller)?;
        }
        let checksum = Checksum::parse(c).map_err(|e| e.to_string())?;
        let next = clients.len();
        let client = *clients.entry((item.insecure, item.secrets)).or_insert(next);
        wanted.push(Download {
            checksum,
            urls: item.urls,
            client,
        });
    }
    let mut built: Vec<(usize, reqwest::Client)> = Vec::new();
    for ((insecure, provider), index) in clients {
        let mut tls = download::secrets_tls(&request.secrets, request.unprivileged_caller)?;
        tls.insecure = insecure;
        tls.proxy = std::env::var(PROXY_ENV).ok().filter(|p| !p.is_empty());
        if let Some(name) = provider {
            provide(&name, &mut tls, request.unprivileged_caller)?;
        }
        built.push((
            index,
            download::client(&settings, &tls, request.unprivileged_caller)?,
        ));
    }
    built.sort_by_key(|(i, _)| *i);
    let clients = built.into_iter().map(|(_, c)| c).collect();
    let _lock = CacheLock::acquire(&request.cache)?;
    let fetched = download::download_all(NAME, settings, clients, &request.cache, wanted)?;
    Ok(crate::source_results(NAME, &fetched))
}

/// Fills `tls` from secrets provider `name`. Both providers read host files as root, which a
/// caller who is not root may not have read on their behalf.
fn provide(name: &str, tls: &mut Tls, unprivileged_caller: bool) -> Result<(), String> {
    if unprivileged_caller && matches!(name, "org.osbuild.mtls" | "org.osbuild.rhsm") {
        return Err(format!(
            "secrets provider {name}: it reads the host's certificates as root, so it is refused for a caller who is not root"
        ));
    }
    let read = |what: &str, path: &str| download::pem_contents(path, what, false);
    match name {
        "org.osbuild.mtls" => {
            let [cert, key, ca] = MTLS_ENV.map(|v| std::env::var(v).ok().filter(|p| !p.is_empty()));
            let (Some(cert), Some(key)) = (cert, key) else {
                return Err(format!(
                    "secrets provider org.osbuild.mtls: {} and {} must name the client certificate and key",
                    MTLS_ENV[0], MTLS_ENV[1]
                ));
            };
            let mut identity = read("secrets provider org.osbuild.mtls: the certificate", &cert)?;
            identity.push(b'\n');
            identity.extend(read("secrets provider org.osbuild.mtls: the key", &key)?);
            tls.identity = Some(identity);
            if let Some(ca) = ca {
                tls.ca = Some(read("secrets provider org.osbuild.mtls: the CA", &ca)?);
            }
            Ok(())
        }
        "org.osbuild.rhsm" => rhsm(tls, Path::new("/")),
        other => Err(format!(
            "unknown secrets provider '{other}' (known: org.osbuild.mtls, org.osbuild.rhsm)"
        )),
    }
}

/// The host's subscription: the first entitlement certificate with its key (in
/// `etc/pki/entitlement`, or a container's `run/secrets/etc-pki-entitlement`) and the Red Hat
/// CA, under `root`.
fn rhsm(tls: &mut Tls, root: &Path) -> Result<(), String> {
    let what = "secrets provider org.osbuild.rhsm";
    let (dir, ca) = [
        (
            "run/secrets/etc-pki-entitlement",
            "run/secrets/rhsm/ca/redhat-uep.pem",
        ),
        ("etc/pki/entitlement", "etc/rhsm/ca/redhat-uep.pem"),
    ]
    .into_iter()
    .map(|(d, c)| (root.join(d), root.join(c)))
    .find(|(d, _)| d.is_dir())
    .ok_or_else(|| format!("{what}: no entitlement directory (is the host subscribed?)"))?;
    let mut certs: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{what}: reading {}: {}", dir.display(), e.kind()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pem"))
        .filter(|p| !p.to_string_lossy().ends_with("-key.pem"))
        .collect();
    certs.sort();
    let cert = certs
        .into_iter()
        .find(|c| c.with_file_name(key_name(c)).is_file())
        .ok_or_else(|| format!("{what}: no certificate with its key in {}", dir.display()))?;
    let read = |p: &Path| {
        std::fs::read(p).map_err(|e| format!("{what}: reading {}: {}", p.display(), e.kind()))
    };
    let mut identity = read(&cert)?;
    identity.push(b'\n');
    identity.extend(read(&cert.with_file_name(key_name(&cert)))?);
    tls.identity = Some(identity);
    if ca.is_file() {
        tls.ca = Some(read(&ca)?);
    }
    Ok(())
}

/// `N.pem` -> `N-key.pem`.
fn key_name(cert: &Path) -> String {
    let stem = cert.file_stem().unwrap_or_default().to_string_lossy();
    format!("{stem}-key.pem")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn items_of_every_form() {
        let plain = |urls: &[&str]| Item {
            urls: urls.iter().map(|u| u.to_string()).collect(),
            insecure: false,
            secrets: None,
        };
        let cases = [
            (json!("http://a/x"), plain(&["http://a/x"])),
            (json!({"url": "http://a/x"}), plain(&["http://a/x"])),
            (
                json!(["http://a/x", "http://b/x"]),
                plain(&["http://a/x", "http://b/x"]),
            ),
            (
                json!({"url": "http://a/x", "mirrors": ["http://b/x"], "insecure": true,
                       "secrets": {"name": "org.osbuild.mtls"}}),
                Item {
                    urls: vec!["http://a/x".into(), "http://b/x".into()],
                    insecure: true,
                    secrets: Some("org.osbuild.mtls".into()),
                },
            ),
        ];
        for (v, want) in cases {
            assert_eq!(item("items.c", &v).unwrap(), want, "{v}");
        }
    }

    #[test]
    fn bad_items_say_where() {
        let cases = [
            (
                json!(3),
                "items.c: expected a URL, a list of URLs or an object",
            ),
            (json!([]), "items.c: expected a non-empty list of URLs"),
            (json!([1]), "items.c: expected a list of URL strings"),
            (
                json!({"mirrors": []}),
                "items.c.url: expected a URL (required)",
            ),
            (
                json!({"url": "u", "x": 1}),
                "items.c: unknown key 'x' (allowed: url, mirrors, insecure, secrets)",
            ),
            (
                json!({"url": "u", "insecure": "yes"}),
                "items.c.insecure: expected a boolean",
            ),
            (
                json!({"url": "u", "secrets": {"name": 1}}),
                "items.c.secrets: expected {\"name\": PROVIDER}",
            ),
        ];
        for (v, want) in cases {
            assert_eq!(item("items.c", &v).unwrap_err(), want, "{v}");
        }
    }

    #[test]
    fn providers_are_refused_for_unprivileged_callers_and_unknown_ones_named() {
        let mut tls = Tls::default();
        let e = provide("org.osbuild.rhsm", &mut tls, true).unwrap_err();
        assert!(e.contains("refused for a caller who is not root"), "{e}");
        let e = provide("org.example.vault", &mut tls, false).unwrap_err();
        assert_eq!(
            e,
            "unknown secrets provider 'org.example.vault' (known: org.osbuild.mtls, org.osbuild.rhsm)"
        );
    }

    #[test]
    fn rhsm_finds_the_entitlement_and_its_key() {
        let root = tempfile::tempdir().unwrap();
        let what = |r: &Path| {
            let mut tls = Tls::default();
            rhsm(&mut tls, r).map(|()| (tls.identity, tls.ca))
        };
        assert!(what(root.path())
            .unwrap_err()
            .contains("no entitlement directory"));
        let dir = root.path().join("etc/pki/entitlement");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("1.pem"), "CERT1").unwrap();
        assert!(what(root.path())
            .unwrap_err()
            .contains("no certificate with its key"));
        std::fs::write(dir.join("1-key.pem"), "KEY1").unwrap();
        let (identity, ca) = what(root.path()).unwrap();
        assert_eq!(identity.unwrap(), b"CERT1\nKEY1");
        assert_eq!(ca, None);
    }
}
