//! The `remoteloop` API: an assembler asks the engine, outside the sandbox, for a loop device
//! over a file of its own.
//!
//! v10's protocol: one datagram `{"fd": 0, "dir_fd": 1, "offset"?: N, "sizelimit"?: N}` with
//! two descriptors by SCM_RIGHTS (the backing file, read-write, and the sandbox's `/dev`),
//! answered with `{"devname": "loopN"}` (the node the engine made in that directory) or
//! `{"error": MESSAGE}`.

use std::fmt;

use serde::Serialize;

/// A request; the descriptors travel beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Request {
    /// Index of the backing file among the passed descriptors.
    pub fd: usize,
    /// Index of the directory for the node.
    pub dir_fd: usize,
    #[serde(skip_serializing_if = "is_zero")]
    pub offset: u64,
    /// 0: to the end of the file.
    #[serde(skip_serializing_if = "is_zero")]
    pub sizelimit: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Why a request cannot be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    NotJson(String),
    NotAnIndex(&'static str),
    MissingFd {
        key: &'static str,
        index: usize,
        passed: usize,
    },
    NotACount(&'static str),
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::NotJson(e) => write!(f, "request is not JSON: {e}"),
            RequestError::NotAnIndex(key) => write!(f, "\"{key}\" must be a descriptor index"),
            RequestError::MissingFd { key, index, passed } => write!(
                f,
                "\"{key}\" is {index} but only {passed} descriptors were passed"
            ),
            RequestError::NotACount(key) => write!(f, "\"{key}\" must be a non-negative integer"),
        }
    }
}

impl std::error::Error for RequestError {}

impl Request {
    /// The request for the two descriptors in v10's order (file, then directory).
    pub fn new(offset: u64, sizelimit: u64) -> Self {
        Self {
            fd: 0,
            dir_fd: 1,
            offset,
            sizelimit,
        }
    }

    /// The datagram as the Rust assemblers send it: compact, zero values left out (as v10).
    pub fn to_wire(&self) -> String {
        serde_json::to_string(self).expect("a request is plain JSON")
    }

    /// Parses a datagram; `fds` is the number of descriptors that came with it. An absent or
    /// `null` offset or size limit is 0.
    pub fn parse(body: &[u8], fds: usize) -> Result<Self, RequestError> {
        let v: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| RequestError::NotJson(e.to_string()))?;
        let index = |key: &'static str| -> Result<usize, RequestError> {
            let index = v
                .get(key)
                .and_then(serde_json::Value::as_u64)
                .ok_or(RequestError::NotAnIndex(key))? as usize;
            if index >= fds {
                return Err(RequestError::MissingFd {
                    key,
                    index,
                    passed: fds,
                });
            }
            Ok(index)
        };
        let count = |key: &'static str| -> Result<u64, RequestError> {
            match v.get(key) {
                None | Some(serde_json::Value::Null) => Ok(0),
                Some(n) => n.as_u64().ok_or(RequestError::NotACount(key)),
            }
        };
        Ok(Request {
            fd: index("fd")?,
            dir_fd: index("dir_fd")?,
            offset: count("offset")?,
            sizelimit: count("sizelimit")?,
        })
    }
}

/// The engine's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The node's name in the directory, `loopN`.
    Devname(String),
    Error(String),
}

/// Why a reply is unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyError {
    NotJson(String),
    NoDevname,
    BadDevname(String),
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::NotJson(e) => write!(f, "reply is not JSON: {e}"),
            ReplyError::NoDevname => write!(f, "reply has no \"devname\""),
            ReplyError::BadDevname(name) => write!(f, "unexpected device name {name:?}"),
        }
    }
}

impl std::error::Error for ReplyError {}

impl Reply {
    /// The datagram the engine sends (compact JSON).
    pub fn to_wire(&self) -> String {
        let (key, text) = match self {
            Reply::Devname(name) => ("devname", name),
            Reply::Error(message) => ("error", message),
        };
        serde_json::json!({ key: text }).to_string()
    }

    /// Parses a reply; only a plain `loopN` is accepted as a device name.
    pub fn parse(bytes: &[u8]) -> Result<Self, ReplyError> {
        let v: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| ReplyError::NotJson(e.to_string()))?;
        if let Some(err) = v.get("error").and_then(serde_json::Value::as_str) {
            return Ok(Reply::Error(err.to_owned()));
        }
        let name = v
            .get("devname")
            .and_then(serde_json::Value::as_str)
            .ok_or(ReplyError::NoDevname)?;
        let digits = name.strip_prefix("loop").unwrap_or("");
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ReplyError::BadDevname(name.to_owned()));
        }
        Ok(Reply::Devname(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_bytes() {
        let cases = [
            (0, 0, r#"{"fd":0,"dir_fd":1}"#),
            (1048576, 0, r#"{"fd":0,"dir_fd":1,"offset":1048576}"#),
            (
                512,
                4096,
                r#"{"fd":0,"dir_fd":1,"offset":512,"sizelimit":4096}"#,
            ),
        ];
        for (offset, size, wire) in cases {
            let req = Request::new(offset, size);
            assert_eq!(req.to_wire(), wire);
            assert_eq!(Request::parse(wire.as_bytes(), 2), Ok(req));
        }
        // v10's Python client: spaces, and null for "none".
        let python = br#"{"fd": 0, "dir_fd": 1, "offset": null, "sizelimit": 7}"#;
        assert_eq!(Request::parse(python, 2), Ok(Request::new(0, 7)));
    }

    #[test]
    fn request_errors() {
        let cases: [(&str, usize, &str); 4] = [
            (
                r#"{"fd": 0, "dir_fd": 1}"#,
                1,
                r#""dir_fd" is 1 but only 1 descriptors were passed"#,
            ),
            (
                r#"{"fd": 0, "dir_fd": 1, "offset": -1}"#,
                2,
                r#""offset" must be a non-negative integer"#,
            ),
            (r#"{"dir_fd": 1}"#, 2, r#""fd" must be a descriptor index"#),
            ("x", 2, "request is not JSON"),
        ];
        for (body, n, want) in cases {
            let err = Request::parse(body.as_bytes(), n).unwrap_err().to_string();
            assert!(err.contains(want), "{body}: {err}");
        }
    }

    #[test]
    fn reply_bytes() {
        let ok = Reply::Devname("loop7".into());
        assert_eq!(ok.to_wire(), r#"{"devname":"loop7"}"#);
        let err = Reply::Error("no free loop".into());
        assert_eq!(err.to_wire(), r#"{"error":"no free loop"}"#);
        for reply in [ok, err] {
            assert_eq!(Reply::parse(reply.to_wire().as_bytes()), Ok(reply));
        }
        let cases: [(&str, ReplyError); 4] = [
            (
                r#"{"devname": "../sda"}"#,
                ReplyError::BadDevname("../sda".into()),
            ),
            (
                r#"{"devname": "loop"}"#,
                ReplyError::BadDevname("loop".into()),
            ),
            (r#"{}"#, ReplyError::NoDevname),
            (
                "nope",
                ReplyError::NotJson("expected ident at line 1 column 2".into()),
            ),
        ];
        for (wire, want) in cases {
            assert_eq!(Reply::parse(wire.as_bytes()), Err(want), "{wire}");
        }
    }
}
