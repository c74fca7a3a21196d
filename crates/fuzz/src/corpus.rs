//! The seeds every target starts from, all from this repository: the manifests and id vectors
//! of `tests/vectors` and `samples` and the meta files of `stages/meta` and `assemblers/meta`
//! (embedded by `build.rs`), the golden wire texts of `crates/protocol`'s tests, and the
//! dictionary of tokens the mutator splices in.

include!(concat!(env!("OUT_DIR"), "/corpus_files.rs"));

/// A 64-hex-digit id, as stage and object ids are.
const ID: &str = "7a1e0a1fd3c9e4c4ac8af1b1f06d6e1f27b9f3a5a2b5dbe3f9d7a2f2e5b8c7d1";

/// Wire texts from `crates/protocol`'s golden tests, per protocol.
pub const SOURCES_API: &[&str] = &[
    r#"{"source":"org.osbuild.files","checksums":["sha256:ab","sha256:cd"]}"#,
    r#"{"source": "org.osbuild.files", "checksums": ["sha256:ab", "sha256:cd"]}"#,
    r#"{"source": "x"}"#,
    r#"{"error": "gone"}"#,
    r#"{"error": 3}"#,
    r#"{"path": "/x"}"#,
];

pub const STDIO: &[&str] = &[
    r#"{"method": "setup-stdio"}"#,
    r#"{"stdin": 0, "stdout": 1, "stderr": 2}"#,
    r#"{"stdin": 0}"#,
    "{}",
];

pub const SOURCE: &[&str] = &[
    r#"{"cache": "/c", "checksums": [], "options": {}, "output": "/o", "secrets": {}, "unprivileged-caller": true}"#,
    r#"{"cache": "/store/sources/org.osbuild.files", "checksums": ["sha256:00"], "options": {"n": 1e+100, "urls": {"sha256:00": "http://x/\u00e9"}}, "output": "/tmp/out", "secrets": {"token": "s3cret"}}"#,
    r#"{"cache": "/c", "output": "/o", "unprivileged-caller": 1}"#,
    r#"{"secrets": 1}"#,
    r#"{}"#,
    r#"{"error": "download failed"}"#,
    r#"[{"name": "bash", "checksum": "sha256:00"}]"#,
];

pub const ARGS: &[&str] = &[
    r#"{"options": {"big": 123456789012345678901234567890, "f": 1.0, "u": "caf\u00e9", "z": NaN}, "sources": "/run/osbuild/sources", "tree": "/run/osbuild/tree"}"#,
    r#"{"options": {"big": 123456789012345678901234567890, "f": 1.0, "u": "caf\u00e9", "z": NaN}, "output_dir": "/run/osbuild/output", "tree": "/run/osbuild/tree"}"#,
    r#"{"options": {}}"#,
    r#"{"tree": "/t", "sources": 1}"#,
    r#"{"tree": "/t", "options": 5}"#,
    r#"{"tree": "/t"}"#,
];

pub const REMOTELOOP: &[&str] = &[
    r#"{"fd":0,"dir_fd":1}"#,
    r#"{"fd":0,"dir_fd":1,"offset":1048576}"#,
    r#"{"fd":0,"dir_fd":1,"offset":512,"sizelimit":4096}"#,
    r#"{"fd": 0, "dir_fd": 1, "offset": null, "sizelimit": null}"#,
    r#"{"devname":"loop0"}"#,
    r#"{"devname": "loop12"}"#,
    r#"{"error":"no loop device"}"#,
];

/// A build result (v10's `--json`) with a build pipeline, stages and an assembler.
pub fn results() -> Vec<String> {
    vec![
        format!(r#"{{"success": true, "output_id": "{ID}"}}"#),
        format!(
            r#"{{"success": true, "build": {{"success": true}}, "stages": [{{"name": "org.osbuild.noop", "id": "{ID}", "options": {{"a": "\u00e9"}}, "success": true, "output": "caf\u00e9\n"}}], "tree_id": "{ID}"}}"#
        ),
        format!(
            r#"{{"success": true, "assembler": {{"name": "org.osbuild.noop", "id": "{ID}", "options": {{"big": 123456789012345678901234567890, "f": 1e+100, "z": NaN}}, "success": true, "output": null}}}}"#
        ),
        r#"{"success":false,"error":"cancelled"}"#.to_owned(),
        r#"{"success": true, "build": {"success": true, "stages": [{"name": 1}]}}"#.to_owned(),
    ]
}

/// A `--build-env` file: a build section on its own.
pub const BUILD_ENV: &str = r#"{"pipeline": {"stages": [{"name": "org.osbuild.noop", "options": {"level": 1}}]}, "runner": "org.osbuild.linux"}"#;

/// Every text seed of the JSON parser: all of the above and the embedded files.
pub fn json_texts() -> Vec<String> {
    let files = MANIFESTS
        .iter()
        .chain(ID_VECTORS)
        .chain(STAGE_METAS)
        .chain(ASSEMBLER_METAS)
        .map(|(_, text)| (*text).to_owned());
    let wire = [SOURCES_API, STDIO, SOURCE, ARGS, REMOTELOOP]
        .into_iter()
        .flatten()
        .map(|s| (*s).to_owned());
    files.chain(wire).chain(results()).collect()
}

/// Tokens the mutator splices in: JSON's punctuation, Python's extensions, the edges of
/// numbers and of UTF-16 escapes, invalid UTF-8, and the keys the parsers look for.
pub const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"\\",
    b" ",
    b"\n",
    b"\t",
    b"\r",
    b"\0",
    b"null",
    b"true",
    b"false",
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"nan",
    b"inf",
    b"0",
    b"-0",
    b"-",
    b"1e999",
    b"-1e999",
    b"1e-999",
    b"0.0",
    b"1.",
    b".5",
    b"1e",
    b"1e+",
    b"5e-324",
    b"1.7976931348623157e308",
    b"18446744073709551616",
    b"18446744073709551615",
    b"-9223372036854775809",
    b"9223372036854775807",
    b"4294967296",
    b"00",
    b"\\u0000",
    b"\\ud800",
    b"\\udc00",
    b"\\ud83d\\ude00",
    b"\\ud800\\u0041",
    b"\\uffff",
    b"\\u12",
    b"\\x41",
    b"\\",
    b"\xff",
    b"\xc3",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\xc3\xa9",
    b"\xe2\x80\xa8",
    b"\"version\": \"2\"",
    b"\"version\"",
    b"\"2\"",
    b"\"pipeline\"",
    b"\"pipelines\"",
    b"\"stages\"",
    b"\"name\"",
    b"\"type\"",
    b"\"options\"",
    b"\"build\"",
    b"\"runner\"",
    b"\"assembler\"",
    b"\"inputs\"",
    b"\"devices\"",
    b"\"mounts\"",
    b"\"sources\"",
    b"\"origin\"",
    b"\"references\"",
    b"\"source\"",
    b"\"target\"",
    b"\"partition\"",
    b"\"parent\"",
    b"\"name:build\"",
    b"\"org.osbuild.noop\"",
    b"\"org.osbuild.linux\"",
    b"\"org.osbuild.pipeline\"",
    b"\"org.osbuild.tree\"",
    b"\"org.osbuild.files\"",
    b"\"org.osbuild.curl\"",
    b"\"org.osbuild.source\"",
    b"\"org.osbuild.inline\"",
    b"\"org.osbuild.tar\"",
    b"\"org.osbuild.hostname\"",
    b"\"fd\"",
    b"\"dir_fd\"",
    b"\"offset\"",
    b"\"sizelimit\"",
    b"\"devname\"",
    b"\"loop0\"",
    b"\"error\"",
    b"\"method\"",
    b"\"setup-stdio\"",
    b"\"stdin\"",
    b"\"stdout\"",
    b"\"stderr\"",
    b"\"checksums\"",
    b"\"sha256:\"",
    b"\"cache\"",
    b"\"output\"",
    b"\"secrets\"",
    b"\"unprivileged-caller\"",
    b"\"tree\"",
    b"\"output_dir\"",
    b"\"success\"",
    b"\"tree_id\"",
    b"\"output_id\"",
    b"\"id\"",
    b"\"../../etc/shadow\"",
    b"\"/\"",
    b"\"\"",
    b"\"mount://root/\"",
    b"\"tree:///\"",
];

/// Keys the tree mutator adds: every member name the parsers look up.
pub const KEYS: &[&str] = &[
    "version",
    "pipeline",
    "pipelines",
    "stages",
    "name",
    "type",
    "options",
    "build",
    "runner",
    "assembler",
    "inputs",
    "devices",
    "mounts",
    "sources",
    "origin",
    "references",
    "source",
    "target",
    "partition",
    "parent",
    "id",
    "fd",
    "dir_fd",
    "offset",
    "sizelimit",
    "devname",
    "error",
    "method",
    "stdin",
    "stdout",
    "stderr",
    "checksums",
    "cache",
    "output",
    "secrets",
    "unprivileged-caller",
    "tree",
    "output_dir",
    "success",
    "tree_id",
    "output_id",
    "urls",
    "items",
    "metadata",
    "a",
];

/// Strings the tree mutator puts in: module names, references, paths, ids, edges.
pub const STRINGS: &[&str] = &[
    "",
    "2",
    "1",
    "org.osbuild.noop",
    "org.osbuild.linux",
    "org.osbuild.tree",
    "org.osbuild.pipeline",
    "org.osbuild.source",
    "org.osbuild.files",
    "org.osbuild.loopback",
    "org.osbuild.ext4",
    "org.osbuild.curl",
    "org.osbuild.nope",
    "org.osbuild.fedora99",
    "name:build",
    "name:",
    "name:nope",
    "sha256:",
    "loop0",
    "loop",
    "loop-1",
    "/",
    "..",
    "../../etc/shadow",
    "/etc/shadow",
    "tree:///",
    "mount://root/",
    "\u{0}",
    "a\u{0}b",
    "7a1e0a1fd3c9e4c4ac8af1b1f06d6e1f27b9f3a5a2b5dbe3f9d7a2f2e5b8c7d1",
    "NaN",
    "caf\u{e9}",
    "\u{1F600}",
];
