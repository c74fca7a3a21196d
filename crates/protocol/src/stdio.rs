//! `setup-stdio` on the `osbuild` API socket: a runner asks the engine for the module's
//! stdin (the arguments JSON), stdout and stderr, which come by SCM_RIGHTS beside the reply.
//!
//! Both messages are written as v10's Python writes them (`json.dumps`):
//! `{"method": "setup-stdio"}` and `{"stdin": 0, "stdout": 1, "stderr": 2}`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::json;

/// The method a runner calls.
pub const SETUP_STDIO: &str = "setup-stdio";

/// A call on the `osbuild` socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub method: String,
}

impl Request {
    /// `{"method": "setup-stdio"}`.
    pub fn setup_stdio() -> Self {
        Self {
            method: SETUP_STDIO.into(),
        }
    }

    /// Parses a datagram; `None` if it is not a call.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }

    pub fn to_wire(&self) -> String {
        json::to_python(self).expect("a request is plain JSON")
    }
}

/// The reply to `setup-stdio`: which of the passed descriptors is which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub stdin: usize,
    pub stdout: usize,
    pub stderr: usize,
}

impl Reply {
    /// The engine passes stdin, stdout and stderr in this order.
    pub const IN_ORDER: Reply = Reply {
        stdin: 0,
        stdout: 1,
        stderr: 2,
    };

    pub fn to_wire(&self) -> String {
        json::to_python(self).expect("a reply is plain JSON")
    }

    /// Parses a reply datagram.
    pub fn parse(bytes: &[u8]) -> Result<Self, ReplyError> {
        let reply: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| ReplyError::NotJson(e.to_string()))?;
        let index = |key: &'static str| {
            reply
                .get(key)
                .and_then(serde_json::Value::as_u64)
                .map(|i| i as usize)
                .ok_or_else(|| ReplyError::NoInteger {
                    key,
                    reply: reply.to_string(),
                })
        };
        Ok(Reply {
            stdin: index("stdin")?,
            stdout: index("stdout")?,
            stderr: index("stderr")?,
        })
    }
}

/// Why a `setup-stdio` reply is unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyError {
    NotJson(String),
    NoInteger { key: &'static str, reply: String },
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::NotJson(e) => write!(f, "not JSON ({e})"),
            ReplyError::NoInteger { key, reply } => write!(f, "no integer {key:?} in {reply}"),
        }
    }
}

impl std::error::Error for ReplyError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_bytes() {
        let wire = r#"{"method": "setup-stdio"}"#;
        assert_eq!(Request::setup_stdio().to_wire(), wire);
        assert_eq!(
            Request::parse(wire.as_bytes()),
            Some(Request::setup_stdio())
        );
        assert_eq!(Request::parse(b"{}"), None);
    }

    #[test]
    fn reply_bytes() {
        let wire = r#"{"stdin": 0, "stdout": 1, "stderr": 2}"#;
        assert_eq!(Reply::IN_ORDER.to_wire(), wire);
        assert_eq!(Reply::parse(wire.as_bytes()), Ok(Reply::IN_ORDER));
        let err = Reply::parse(br#"{"stdin": 0}"#).unwrap_err();
        assert_eq!(err.to_string(), r#"no integer "stdout" in {"stdin":0}"#);
        assert!(Reply::parse(b"x")
            .unwrap_err()
            .to_string()
            .starts_with("not JSON ("));
    }
}
