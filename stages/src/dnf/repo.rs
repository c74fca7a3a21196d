//! The repositories of the `repos` option: objects as the manifest gives them, or checksums
//! that the `org.osbuild.dnf` source resolves through the sources API; checked, in the
//! manifest's order, with their URLs shown without credentials.

use std::path::Path;

use serde_json::{Map, Value};

use super::Flavour;
use crate::args::Opts;
use crate::error::StageError;
use crate::sources_api;

/// One repository, as written into the configuration.
pub(super) struct Repo {
    /// Where the manifest lists it, for messages: `repos[1]`.
    pub(super) name: String,
    /// The checksum the manifest named it by, when the `org.osbuild.dnf` source resolved it.
    pub(super) reference: Option<String>,
    /// Key and value of each location given (metalink, mirrorlist, baseurl), in that order.
    pub(super) locations: Vec<(&'static str, String)>,
    /// Lowercase hex sha256 of `repomd.xml` the manifest promises (dnf only).
    pub(super) checksum: Option<String>,
    /// PEM or armored contents: sslcacert, sslclientcert, sslclientkey, gpgkey.
    pub(super) files: Vec<(&'static str, String)>,
}

const LOCATIONS: [&str; 3] = ["metalink", "mirrorlist", "baseurl"];
const FILES: [&str; 4] = ["sslcacert", "sslclientcert", "sslclientkey", "gpgkey"];

impl Repo {
    pub(super) fn parse(
        name: String,
        obj: &Map<String, Value>,
        flavour: Flavour,
    ) -> Result<Repo, StageError> {
        let text = |key: &str| -> Result<Option<String>, StageError> {
            match obj.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(StageError::option(
                    format!("{name}.{key}"),
                    "must be a string",
                )),
            }
        };
        let mut locations = Vec::new();
        for key in LOCATIONS {
            if let Some(url) = text(key)?.filter(|u| !u.is_empty()) {
                if url.chars().any(char::is_control) {
                    return Err(StageError::option(
                        format!("{name}.{key}"),
                        "must not contain control characters",
                    ));
                }
                locations.push((key, url));
            }
        }
        if locations.is_empty() {
            return Err(StageError::option(
                name,
                "needs one of metalink, mirrorlist or baseurl",
            ));
        }
        let mut files = Vec::new();
        for key in FILES {
            if let Some(contents) = text(key)? {
                files.push((key, contents));
            }
        }
        let checksum = match (flavour, text("checksum")?) {
            (Flavour::Yum, _) => None,
            (Flavour::Dnf, None) => {
                return Err(StageError::option(
                    format!("{name}.checksum"),
                    "is required (sha256:<hex> of the repository's repomd.xml)",
                ))
            }
            (Flavour::Dnf, Some(c)) => Some(parse_checksum(&c).ok_or_else(|| {
                StageError::option(
                    format!("{name}.checksum"),
                    format!("{c:?} is not sha256:<64 hexadecimal digits>"),
                )
            })?),
        };
        Ok(Repo {
            name,
            reference: None,
            locations,
            checksum,
            files,
        })
    }

    /// The URL libdnf names the cache after (and messages show): metalink, else mirrorlist,
    /// else baseurl.
    pub(super) fn main_url(&self) -> &str {
        &self.locations[0].1
    }

    /// `repos[1] (https://mirror/...)`, or `repos[1] (https://mirror/..., "sha256:..." of
    /// the org.osbuild.dnf source)`; credentials in the URL hidden.
    pub(super) fn describe(&self) -> String {
        let url = redact_url(self.main_url());
        match &self.reference {
            None => format!("{} ({url})", self.name),
            Some(r) => format!("{} ({url}, {r:?} of the org.osbuild.dnf source)", self.name),
        }
    }
}

/// `sha256:HEX` -> lowercase HEX.
fn parse_checksum(c: &str) -> Option<String> {
    let hex = c.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_lowercase())
}

/// A URL with any `user:password@` replaced, for messages.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// The `repos` option: objects as they are, strings (dnf only) resolved through the
/// `org.osbuild.dnf` source at `socket` (one request for all of them), in the manifest's order.
pub(super) fn resolve_repos(
    opts: &Opts,
    raw: &[Value],
    flavour: Flavour,
    socket: &Path,
) -> Result<Vec<Repo>, StageError> {
    if raw.is_empty() {
        return Err(StageError::option(
            opts.name("repos"),
            "needs at least one repository",
        ));
    }
    check_items(opts, raw, flavour)?;
    let mut resolved = from_source(opts, raw, socket)?.into_iter();
    let mut repos = Vec::with_capacity(raw.len());
    for (i, item) in raw.iter().enumerate() {
        let name = format!("{}[{i}]", opts.name("repos"));
        let repo = match item {
            Value::String(reference) => {
                let from_source = |m: &str| {
                    StageError::option(
                        name.clone(),
                        format!("{reference:?} of the org.osbuild.dnf source: {m}"),
                    )
                };
                let Some(Value::Object(obj)) = resolved.next() else {
                    return Err(from_source("the source sent no configuration"));
                };
                let mut repo = Repo::parse(name.clone(), &obj, flavour)?;
                if repo.checksum.as_deref() != parse_checksum(reference).as_deref() {
                    return Err(from_source(
                        "the source sent the configuration of another repository",
                    ));
                }
                repo.reference = Some(reference.clone());
                repo
            }
            Value::Object(obj) => Repo::parse(name, obj, flavour)?,
            _ => unreachable!("check_items let only objects and strings through"),
        };
        repos.push(repo);
    }
    Ok(repos)
}

/// Each item is an object without client keys, or (dnf only) a checksum string.
fn check_items(opts: &Opts, raw: &[Value], flavour: Flavour) -> Result<(), StageError> {
    for (i, item) in raw.iter().enumerate() {
        let name = format!("{}[{i}]", opts.name("repos"));
        match item {
            Value::Object(obj) => {
                if let Some(key) = ["sslclientcert", "sslclientkey"]
                    .into_iter()
                    .find(|k| obj.contains_key(*k))
                {
                    return Err(StageError::option(
                        format!("{name}.{key}"),
                        "belongs in the secrets (--secrets) of the org.osbuild.dnf source, \
                         never in the manifest",
                    ));
                }
            }
            Value::String(_) if flavour == Flavour::Dnf => {}
            _ => return Err(StageError::option(name, "must be a repository object")),
        }
    }
    Ok(())
}

/// The configurations the `org.osbuild.dnf` source gives for the checksum strings of
/// `raw`, one per string, in order (one request for all of them).
fn from_source(opts: &Opts, raw: &[Value], socket: &Path) -> Result<Vec<Value>, StageError> {
    let refs: Vec<&str> = raw.iter().filter_map(Value::as_str).collect();
    if refs.is_empty() {
        return Ok(Vec::new());
    }
    let reply = sources_api::get(socket, "org.osbuild.dnf", &refs).map_err(|e| {
        StageError::option(
            opts.name("repos"),
            format!("the org.osbuild.dnf source cannot resolve {refs:?}: {e}"),
        )
    })?;
    match reply {
        Value::Array(items) if items.len() == refs.len() => Ok(items),
        _ => Err(StageError::Other(
            "the org.osbuild.dnf source did not reply with one repository per checksum".into(),
        )),
    }
}

/// The id of repository `i` in dnf.conf and in the cache.
pub(super) fn repo_id(i: usize) -> String {
    format!("repo{i}")
}

#[cfg(test)]
mod tests {
    use super::super::repos_option;
    use super::*;
    use crate::args::Args;
    use serde_json::json;
    use std::path::PathBuf;

    fn parse(v: Value, flavour: Flavour) -> Result<Repo, String> {
        Repo::parse("repos[0]".into(), v.as_object().unwrap(), flavour).map_err(|e| e.to_string())
    }

    #[test]
    fn repositories_are_checked() {
        let sum = format!("sha256:{}", "AB".repeat(32));
        let repo = parse(
            json!({"baseurl": "http://b", "metalink": "http://m", "checksum": sum, "gpgkey": "K"}),
            Flavour::Dnf,
        )
        .unwrap();
        assert_eq!(repo.main_url(), "http://m", "metalink first, as libdnf");
        assert_eq!(repo.checksum.as_deref(), Some("ab".repeat(32).as_str()));
        assert_eq!(repo.files, [("gpgkey", "K".to_string())]);
        let cases = [
            (
                json!({"checksum": sum}),
                "needs one of metalink, mirrorlist or baseurl",
            ),
            (
                json!({"baseurl": "http://b"}),
                "\"repos[0].checksum\": is required",
            ),
            (
                json!({"baseurl": "http://b", "checksum": "sha256:ab"}),
                "is not sha256:<64",
            ),
            (
                json!({"baseurl": "http://b\ngpgcheck=0", "checksum": sum}),
                "control characters",
            ),
            (
                json!({"baseurl": 3, "checksum": sum}),
                "\"repos[0].baseurl\": must be a string",
            ),
        ];
        for (v, want) in cases {
            let err = parse(v.clone(), Flavour::Dnf).err().unwrap_or_default();
            assert!(err.contains(want), "{v}: {err}");
        }
        assert!(
            parse(json!({"baseurl": "http://b"}), Flavour::Yum).is_ok(),
            "yum has no checksum"
        );
    }

    fn sum(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    /// Serves one sources API request at a new socket with `reply`; returns the socket path
    /// and a handle yielding the request.
    fn fake_source(dir: &Path, reply: Value) -> (PathBuf, std::thread::JoinHandle<Value>) {
        let path = dir.join("sources");
        let server = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        let handle = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            let (n, from) = server.recv_from(&mut buf).unwrap();
            server
                .send_to_addr(reply.to_string().as_bytes(), &from)
                .unwrap();
            serde_json::from_slice(&buf[..n]).unwrap()
        });
        (path, handle)
    }

    fn resolve(options: Value, flavour: Flavour, socket: &Path) -> Result<Vec<Repo>, String> {
        let args = Args::parse(&json!({"tree": "/t", "options": options}).to_string()).unwrap();
        let opts = args.opts();
        resolve_repos(&opts, repos_option(&opts, &args).unwrap(), flavour, socket)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn objects_and_source_checksums_keep_the_manifest_order() {
        let dir = tempfile::tempdir().unwrap();
        let (socket, request) = fake_source(
            dir.path(),
            json!([{"checksum": sum('a'), "baseurl": "https://a/", "sslclientkey": "KEY"},
                   {"checksum": sum('b'), "metalink": "https://b/"}]),
        );
        let repos = resolve(
            json!({"repos": [{"baseurl": "http://x/", "checksum": sum('0')}, sum('a'),
                             {"mirrorlist": "http://y/", "checksum": sum('1')}, sum('b')]}),
            Flavour::Dnf,
            &socket,
        )
        .unwrap();
        assert_eq!(
            request.join().unwrap(),
            json!({"source": "org.osbuild.dnf", "checksums": [sum('a'), sum('b')]})
        );
        let urls: Vec<&str> = repos.iter().map(Repo::main_url).collect();
        assert_eq!(urls, ["http://x/", "https://a/", "http://y/", "https://b/"]);
        assert_eq!(repos[1].reference.as_deref(), Some(sum('a').as_str()));
        assert_eq!(repos[1].files, [("sslclientkey", "KEY".to_string())]);
        assert_eq!(
            repos[3].describe(),
            format!(
                "repos[3] (https://b/, \"{}\" of the org.osbuild.dnf source)",
                sum('b')
            )
        );
    }

    #[test]
    fn source_replies_are_checked() {
        let cases = [
            (
                json!([{"checksum": sum('b'), "baseurl": "https://b/"}]),
                "the source sent the configuration of another repository",
            ),
            (json!({"error": "source unknown: x"}), "cannot resolve"),
            (json!([]), "did not reply with one repository per checksum"),
        ];
        for (reply, want) in cases {
            let dir = tempfile::tempdir().unwrap();
            let (socket, _request) = fake_source(dir.path(), reply.clone());
            let err = resolve(json!({"repos": [sum('a')]}), Flavour::Dnf, &socket)
                .err()
                .unwrap_or_default();
            assert!(err.contains(want), "{reply}: {err}");
        }
    }

    #[test]
    fn manifests_cannot_carry_client_keys_and_yum_has_no_source() {
        let nowhere = Path::new("/nonexistent/sources");
        let err = resolve(
            json!({"repos": [{"baseurl": "http://x/", "checksum": sum('0'), "sslclientkey": "K"}]}),
            Flavour::Dnf,
            nowhere,
        )
        .err()
        .unwrap();
        assert!(
            err.starts_with("option \"repos[0].sslclientkey\": belongs in the secrets"),
            "{err}"
        );
        // Checked before any request: the socket is never used.
        let err = resolve(json!({"repos": [sum('a')]}), Flavour::Yum, nowhere)
            .err()
            .unwrap();
        assert_eq!(err, "option \"repos[0]\": must be a repository object");
    }

    #[test]
    fn urls_in_messages_hide_credentials() {
        for (url, want) in [
            ("https://user:pw@host/repo/", "https://***@host/repo/"),
            ("https://host/a@b", "https://host/a@b"),
            ("http://host", "http://host"),
            ("file:///srv/repo", "file:///srv/repo"),
        ] {
            assert_eq!(redact_url(url), want);
        }
    }
}
