//! A source executable's protocol: the request on its stdin,
//! `{"options", "secrets", "cache", "output", "checksums", "items"?}`; its reply on stdout, `{}` (or,
//! for `org.osbuild.dnf`, a list) or `{"error": MESSAGE}`; and its side channel: with
//! [`PROGRESS_ENV`]`=1` in its environment it prints progress lines on stderr, each
//! [`PROGRESS_PREFIX`] followed by
//! `{"files_done":N,"files_total":N,"bytes_done":N,"bytes_total":N}`.
//!
//! Secrets travel in the request and nowhere else; [`Request`]'s `Debug` leaves them out.

use std::fmt;
use std::path::PathBuf;

use crate::json::{self, Value};

/// The environment variable that turns progress lines on (the engine sets it to `1`).
pub const PROGRESS_ENV: &str = "OSBUILD_SOURCE_PROGRESS";
/// The prefix of a progress line.
pub const PROGRESS_PREFIX: &str = "osbuild-source-progress ";

/// The name prefix of a download in progress in the cache directory. The downloader holds an
/// exclusive flock(2) on the file while it writes and renames it to its checksum once verified
/// and flushed; the store removes such files nobody holds (a downloader that died).
pub const PARTIAL_DOWNLOAD_PREFIX: &str = ".unverified-";

/// An object as a source reads it.
pub type Object = serde_json::Map<String, serde_json::Value>;

/// What a source reads on stdin. `O` is [`Object`] on the source's side and the engine's
/// `&Value` on the engine's.
#[derive(Clone, PartialEq)]
pub struct Request<O = Object> {
    pub options: O,
    /// Never printed, logged or returned.
    pub secrets: O,
    pub cache: PathBuf,
    pub output: PathBuf,
    pub checksums: Vec<String>,
    /// A v2 manifest's `items` of this source (`{CHECKSUM: description}`), as osbuild HEAD
    /// hands them to its sources; absent for v1 manifests, so v10's request stays byte for byte.
    pub items: Option<O>,
    /// The build's caller is not root: the source, which runs as root, must read no host path
    /// on its behalf (`file://` URLs, certificate and key files). Sent as
    /// `"unprivileged-caller": true`, and only then, so v10's request stays byte for byte.
    pub unprivileged_caller: bool,
}

impl<O: fmt::Debug> fmt::Debug for Request<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("options", &self.options)
            .field("secrets", &"<redacted>")
            .field("cache", &self.cache)
            .field("output", &self.output)
            .field("checksums", &self.checksums)
            .field("items", &self.items.as_ref().map(|_| "<items>"))
            .field("unprivileged_caller", &self.unprivileged_caller)
            .finish()
    }
}

/// Why a source's stdin is not a request.
#[derive(Debug)]
pub enum RequestError {
    NotJson(serde_json::Error),
    NotObject,
    /// A member has the wrong type: `request: "KEY" must be EXPECTED`.
    Member {
        key: &'static str,
        expected: &'static str,
    },
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::NotJson(e) => write!(f, "the request is not valid JSON: {e}"),
            RequestError::NotObject => f.write_str("the request is not a JSON object"),
            RequestError::Member { key, expected } => {
                write!(f, "request: \"{key}\" must be {expected}")
            }
        }
    }
}

impl std::error::Error for RequestError {}

impl Request<&Value> {
    /// The stdin text, as v10 writes it (`json.dumps`: keys in v10's order, the options in the
    /// manifest's).
    pub fn to_json(&self) -> String {
        let path = |p: &PathBuf| Value::String(p.to_string_lossy().into_owned());
        let mut m = json::Map::new();
        m.insert("options".into(), self.options.clone());
        m.insert("secrets".into(), self.secrets.clone());
        m.insert("cache".into(), path(&self.cache));
        m.insert("output".into(), path(&self.output));
        m.insert(
            "checksums".into(),
            Value::Array(self.checksums.iter().cloned().map(Value::String).collect()),
        );
        if let Some(items) = self.items {
            m.insert("items".into(), items.clone());
        }
        if self.unprivileged_caller {
            m.insert("unprivileged-caller".into(), Value::Bool(true));
        }
        json::dumps_in_order(&Value::Object(m))
    }
}

impl Request {
    /// Parses the stdin bytes. `options` and `secrets` may be absent or `null`, `checksums`
    /// absent.
    pub fn parse(input: &[u8]) -> Result<Self, RequestError> {
        use serde_json::Value as J;
        let member = |key, expected| RequestError::Member { key, expected };
        let obj = match serde_json::from_slice(input).map_err(RequestError::NotJson)? {
            J::Object(m) => m,
            _ => return Err(RequestError::NotObject),
        };
        let object = |key: &'static str| match obj.get(key) {
            None | Some(J::Null) => Ok(Object::new()),
            Some(J::Object(m)) => Ok(m.clone()),
            Some(_) => Err(member(key, "an object")),
        };
        let path = |key: &'static str| match obj.get(key) {
            Some(J::String(s)) if !s.is_empty() => Ok(PathBuf::from(s)),
            _ => Err(member(key, "a path")),
        };
        let checksums = match obj.get("checksums") {
            Some(J::Array(a)) => a
                .iter()
                .map(|c| c.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or(member("checksums", "a list of strings"))?,
            None => Vec::new(),
            Some(_) => return Err(member("checksums", "a list of strings")),
        };
        let unprivileged_caller = match obj.get("unprivileged-caller") {
            None => false,
            Some(J::Bool(b)) => *b,
            Some(_) => return Err(member("unprivileged-caller", "a boolean")),
        };
        let items = match obj.get("items") {
            None | Some(J::Null) => None,
            Some(J::Object(m)) => Some(m.clone()),
            Some(_) => return Err(member("items", "an object")),
        };
        Ok(Self {
            options: object("options")?,
            secrets: object("secrets")?,
            cache: path("cache")?,
            output: path("output")?,
            checksums,
            items,
            unprivileged_caller,
        })
    }
}

/// A source's reply: its result, or `{"error": MESSAGE}`. `V` is `serde_json::Value` on the
/// source's side and the engine's [`Value`] on the engine's.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply<V = serde_json::Value> {
    Done(V),
    Failed(String),
}

impl Reply {
    /// The reply as our sources print it (compact JSON).
    pub fn into_value(self) -> serde_json::Value {
        match self {
            Reply::Done(v) => v,
            Reply::Failed(message) => serde_json::json!({ "error": message }),
        }
    }
}

impl Reply<Value> {
    /// Reads a parsed reply: one with an `"error"` member failed (its text, or the member's
    /// JSON when it is not a string).
    pub fn from_value(reply: Value) -> Self {
        match reply.get("error") {
            Some(e) => Reply::Failed(e.as_str().map_or_else(|| json::dumps(e), str::to_owned)),
            None => Reply::Done(reply),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine_request(options: &Value, secrets: &Value) -> String {
        Request {
            options,
            secrets,
            cache: "/store/sources/org.osbuild.files".into(),
            output: "/tmp/out".into(),
            checksums: vec!["sha256:00".into()],
            items: None,
            unprivileged_caller: false,
        }
        .to_json()
    }

    #[test]
    fn an_unprivileged_caller_is_named_and_read_back() {
        let empty = json::parse("{}").unwrap();
        let text = Request {
            options: &empty,
            secrets: &empty,
            cache: "/c".into(),
            output: "/o".into(),
            checksums: vec![],
            items: None,
            unprivileged_caller: true,
        }
        .to_json();
        assert_eq!(
            text,
            r#"{"options": {}, "secrets": {}, "cache": "/c", "output": "/o", "checksums": [], "unprivileged-caller": true}"#
        );
        assert!(Request::parse(text.as_bytes()).unwrap().unprivileged_caller);
        let v10 = engine_request(&empty, &empty);
        assert!(!Request::parse(v10.as_bytes()).unwrap().unprivileged_caller);
        let bad = br#"{"cache": "/c", "output": "/o", "unprivileged-caller": 1}"#;
        assert_eq!(
            Request::parse(bad).unwrap_err().to_string(),
            r#"request: "unprivileged-caller" must be a boolean"#
        );
    }

    #[test]
    fn request_bytes() {
        let options =
            json::parse(r#"{"urls": {"sha256:00": "http://x/\u00e9"}, "n": 1e100}"#).unwrap();
        let secrets = json::parse(r#"{"token": "s3cret"}"#).unwrap();
        assert_eq!(
            engine_request(&options, &secrets),
            r#"{"options": {"urls": {"sha256:00": "http://x/\u00e9"}, "n": 1e+100}, "secrets": {"token": "s3cret"}, "cache": "/store/sources/org.osbuild.files", "output": "/tmp/out", "checksums": ["sha256:00"]}"#
        );
    }

    #[test]
    fn sources_read_what_the_engine_writes_and_never_show_secrets() {
        let options = json::parse(r#"{"urls": {}}"#).unwrap();
        let secrets = json::parse(r#"{"token": "s3cret"}"#).unwrap();
        let r = Request::parse(engine_request(&options, &secrets).as_bytes()).unwrap();
        assert_eq!(r.secrets["token"], "s3cret");
        assert_eq!(r.checksums, ["sha256:00"]);
        assert_eq!(r.output, PathBuf::from("/tmp/out"));
        let shown = format!("{r:?}");
        assert!(
            !shown.contains("s3cret") && shown.contains("<redacted>"),
            "{shown}"
        );
        let engine_side = Request {
            options: &options,
            secrets: &secrets,
            cache: "/c".into(),
            output: "/o".into(),
            checksums: vec![],
            items: None,
            unprivileged_caller: false,
        };
        assert!(!format!("{engine_side:?}").contains("s3cret"));
    }

    #[test]
    fn v2_items_travel_only_when_given() {
        let empty = json::parse("{}").unwrap();
        let items = json::parse(r#"{"sha256:00": {"url": "http://x/a"}}"#).unwrap();
        let text = Request {
            options: &empty,
            secrets: &empty,
            cache: "/c".into(),
            output: "/o".into(),
            checksums: vec!["sha256:00".into()],
            items: Some(&items),
            unprivileged_caller: false,
        }
        .to_json();
        assert_eq!(
            text,
            r#"{"options": {}, "secrets": {}, "cache": "/c", "output": "/o", "checksums": ["sha256:00"], "items": {"sha256:00": {"url": "http://x/a"}}}"#
        );
        let read = Request::parse(text.as_bytes()).unwrap();
        assert_eq!(read.items.unwrap()["sha256:00"]["url"], "http://x/a");
        assert!(Request::parse(engine_request(&empty, &empty).as_bytes())
            .unwrap()
            .items
            .is_none());
        let bad = br#"{"cache": "/c", "output": "/o", "items": []}"#;
        assert_eq!(
            Request::parse(bad).unwrap_err().to_string(),
            r#"request: "items" must be an object"#
        );
    }

    #[test]
    fn request_errors() {
        let cases: &[(&[u8], &str)] = &[
            (b"not json", "the request is not valid JSON: "),
            (b"[]", "the request is not a JSON object"),
            (
                br#"{"secrets": 1}"#,
                r#"request: "secrets" must be an object"#,
            ),
            (
                br#"{"cache": "", "output": "/o"}"#,
                r#"request: "cache" must be a path"#,
            ),
            (
                br#"{"checksums": "x"}"#,
                r#"request: "checksums" must be a list of strings"#,
            ),
        ];
        for (input, want) in cases {
            let e = Request::parse(input).unwrap_err().to_string();
            assert!(e.starts_with(want), "{e}");
        }
    }

    #[test]
    fn reply_bytes() {
        assert_eq!(
            Reply::Done(serde_json::json!({})).into_value().to_string(),
            "{}"
        );
        assert_eq!(
            Reply::Failed("unknown file: sha256:00".into())
                .into_value()
                .to_string(),
            r#"{"error":"unknown file: sha256:00"}"#
        );
        let read = |t: &str| Reply::from_value(json::parse(t).unwrap());
        assert_eq!(read("[]"), Reply::Done(Value::Array(vec![])));
        assert_eq!(read(r#"{"error": "e"}"#), Reply::Failed("e".into()));
        assert_eq!(
            read(r#"{"error": {"a": 1}}"#),
            Reply::Failed(r#"{"a": 1}"#.into())
        );
    }
}
