//! osbuild's built-in sources: executables the engine runs **on the host** (never in a build
//! root) to bring content in by checksum before any stage runs.
//!
//! The protocol is osbuild v10's ([`osbuild_protocol::source`]): the request is JSON on stdin,
//! `{"options", "secrets", "cache", "output", "checksums"}`; the reply is JSON on stdout, `{}`
//! (or, for `org.osbuild.dnf`, a list) on success and `{"error": "..."}` on failure, with exit
//! status 0 or 1. One multi-call binary serves every source, chosen by the name it is run as
//! (`LIBDIR/sources/org.osbuild.files -> ../libexec/osbuild-sources`), or by its first argument
//! when run as `osbuild-sources NAME`.
//!
//! Where to look:
//! - [`checksum`]: `ALGORITHM:HEX` checksums and streaming hashers.
//! - [`download`]: the downloads by checksum that `files` and `curl` share: mirrors, retries,
//!   clients with secrets, the verified cache.
//! - [`files`]: `org.osbuild.files`, downloads over HTTP(S) (reqwest) and `file://` into the
//!   cache, verified, then linked into the output directory.
//! - [`curl`]: `org.osbuild.curl`, osbuild HEAD's v2 source for URLs (`items`), with mirrors.
//! - [`inline`]: `org.osbuild.inline`, HEAD's v2 source for data in the manifest.
//! - [`progress`]: the progress lines the engine reads from stderr.
//! - [`dnf`]: `org.osbuild.dnf`, repository configurations by metadata checksum.

#![forbid(unsafe_code)]

pub mod checksum;
pub mod curl;
pub mod dnf;
pub mod download;
pub mod files;
pub mod inline;
pub mod progress;

use std::ffi::OsString;
use std::io::{Read, Write};

use osbuild_protocol::source;
use serde_json::{json, Value};

/// The sources this binary provides.
pub const SOURCES: &[&str] = &[
    "org.osbuild.curl",
    "org.osbuild.dnf",
    "org.osbuild.files",
    "org.osbuild.inline",
];

/// The multi-call binary's own name.
const MULTI_CALL: &str = "osbuild-sources";

/// One parsed request (the protocol's; its `Debug` never shows the secrets).
pub type Request = source::Request;

/// `{"error": message}`.
pub fn error_reply(message: impl Into<String>) -> Value {
    source::Reply::Failed(message.into()).into_value()
}

/// osbuild HEAD's reply of a v2 source that succeeded (`SourceResults.as_dict()`): one result
/// per item, with whether it was in the cache already.
pub fn source_results(name: &str, fetched: &[download::Fetched]) -> Value {
    let results: Vec<Value> = fetched
        .iter()
        .map(|f| {
            json!({"success": true, "metadata": {"checksum": f.checksum, "cached": f.cached},
                   "error": ""})
        })
        .collect();
    json!({
        "name": format!("source {name}"),
        "source_type": name,
        "success": true,
        "output": format!("source {name} finished successfully"),
        "results": results,
    })
}

/// Runs source `name` on the request bytes; returns the reply and whether it succeeded.
pub fn run(name: &str, input: &[u8]) -> (Value, bool) {
    let request = match Request::parse(input) {
        Ok(r) => r,
        Err(e) => return (error_reply(e.to_string()), false),
    };
    let result = match name {
        "org.osbuild.files" => files::run(&request).map(|()| json!({})),
        "org.osbuild.dnf" => dnf::run(&request),
        "org.osbuild.curl" => curl::run(&request),
        "org.osbuild.inline" => inline::run(&request),
        other => Err(format!("unknown source {other}")),
    };
    match result {
        Ok(v) => (v, true),
        Err(e) => (error_reply(e), false),
    }
}

/// The binary's entry point: picks the source from argv, reads stdin, prints the reply.
pub fn main(argv: &[OsString]) -> i32 {
    let called = argv
        .first()
        .map(std::path::Path::new)
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = if called == MULTI_CALL {
        match argv.get(1) {
            Some(n) => n.to_string_lossy().into_owned(),
            None => {
                eprintln!("usage: {MULTI_CALL} SOURCE < request.json (sources: {SOURCES:?})");
                return 2;
            }
        }
    } else {
        called
    };
    let mut input = Vec::new();
    let (reply, ok) = match std::io::stdin().read_to_end(&mut input) {
        Ok(_) => run(&name, &input),
        Err(e) => (error_reply(format!("reading the request: {e}")), false),
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{reply}");
    let _ = out.flush();
    if ok {
        0
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_requests_are_error_replies() {
        let cases: &[(&[u8], &str)] = &[
            (b"not json", "not valid JSON"),
            (b"[]", "not a JSON object"),
            (
                br#"{"cache": "/c", "output": "/o", "options": 3}"#,
                "\"options\" must be an object",
            ),
            (br#"{"output": "/o"}"#, "\"cache\" must be a path"),
            (
                br#"{"cache": "/c", "output": "/o", "checksums": [1]}"#,
                "list of strings",
            ),
        ];
        for (input, want) in cases {
            let (reply, ok) = run("org.osbuild.files", input);
            assert!(!ok);
            let msg = reply["error"].as_str().unwrap();
            assert!(msg.contains(want), "{msg}");
        }
        let (reply, ok) = run("org.osbuild.nope", br#"{"cache": "/c", "output": "/o"}"#);
        assert!(!ok);
        assert_eq!(reply["error"], "unknown source org.osbuild.nope");
    }
}
