//! The sources API on the `sources` socket: a stage sends `{"source": NAME, "checksums":
//! [...]}` as one datagram and gets the source's reply JSON, or `{"error": MESSAGE}`.

use serde::{Deserialize, Serialize};

use crate::json::{self, Value};

/// The largest datagram either side handles (v10's client reads 64 KiB).
pub const MAX_DATAGRAM: usize = 65536;

/// A stage's request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub source: String,
    pub checksums: Vec<String>,
}

impl Request {
    /// Parses a datagram; `None` if it is not a request.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }

    /// The datagram the Rust stages send (compact JSON).
    pub fn to_wire(&self) -> String {
        serde_json::to_string(self).expect("a request is plain JSON")
    }
}

/// The reply the engine sends: the source's own reply, or an error.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Ok(serde_json::Value),
    Error(String),
}

impl Reply {
    /// Parses a reply datagram; a reply with an `"error"` member is an error (its text, or
    /// the member's JSON when it is not a string).
    pub fn parse(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        let reply: serde_json::Value = serde_json::from_slice(bytes)?;
        Ok(match reply.get("error") {
            Some(err) => Reply::Error(err.as_str().map_or_else(|| err.to_string(), str::to_owned)),
            None => Reply::Ok(reply),
        })
    }
}

/// The engine's error reply, `{"error": message}` in Python's `json.dumps` style.
pub fn error_reply(message: &str) -> String {
    let mut m = json::Map::new();
    m.insert("error".into(), Value::String(message.to_owned()));
    json::dumps(&Value::Object(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_bytes() {
        let req = Request {
            source: "org.osbuild.files".into(),
            checksums: vec!["sha256:ab".into(), "sha256:cd".into()],
        };
        let wire = r#"{"source":"org.osbuild.files","checksums":["sha256:ab","sha256:cd"]}"#;
        assert_eq!(req.to_wire(), wire);
        assert_eq!(Request::parse(wire.as_bytes()), Some(req.clone()));
        // v10's Python client writes with spaces; the engine reads both.
        let python = br#"{"source": "org.osbuild.files", "checksums": ["sha256:ab", "sha256:cd"]}"#;
        assert_eq!(Request::parse(python), Some(req));
        assert_eq!(Request::parse(br#"{"source": "x"}"#), None);
    }

    #[test]
    fn reply_bytes() {
        assert_eq!(error_reply("no \u{e9}"), r#"{"error": "no \u00e9"}"#);
        let cases: [(&str, Reply); 3] = [
            (r#"{"error": "gone"}"#, Reply::Error("gone".into())),
            (r#"{"error": 3}"#, Reply::Error("3".into())),
            (
                r#"{"path": "/x"}"#,
                Reply::Ok(serde_json::json!({"path": "/x"})),
            ),
        ];
        for (wire, want) in cases {
            assert_eq!(Reply::parse(wire.as_bytes()).unwrap(), want, "{wire}");
        }
        assert!(Reply::parse(b"nope").is_err());
    }
}
