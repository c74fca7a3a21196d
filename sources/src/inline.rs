//! `org.osbuild.inline`: osbuild HEAD's v2 source for data carried in the manifest.
//!
//! The request's `items` map a checksum to `{"encoding": "base64" | "lzma+base64", "data":
//! TEXT}` (HEAD's encodings; `lzma` takes an xz stream or a legacy `.lzma` one, as Python's
//! `lzma.decompress` does). The checksum is of the decoded bytes; they are verified and land
//! in `CACHE/CHECKSUM` (the engine's `STORE/sources/org.osbuild.files`, HEAD's layout) through
//! an `.unverified-*` file, so nothing unverified ever carries a checksum's name. A verified
//! cache entry is kept as it is. The reply is HEAD's `SourceResults`, or `{"error": ...}`
//! naming every item that failed.

use std::io::Write;

use base64::Engine;
use serde_json::{Map, Value};

use crate::checksum::Checksum;
use crate::download::{self, CacheLock, Fetched};
use crate::Request;

/// The source's name.
pub const NAME: &str = "org.osbuild.inline";

/// The bytes an item stands for.
pub fn decode(path: &str, desc: &Value) -> Result<Vec<u8>, String> {
    let field = |key: &str| match desc.get(key) {
        Some(Value::String(s)) => Ok(s.as_str()),
        _ => Err(format!("{path}.{key}: expected a string (required)")),
    };
    if !desc.is_object() {
        return Err(format!("{path}: expected {{\"encoding\", \"data\"}}"));
    }
    let (encoding, data) = (field("encoding")?, field("data")?);
    // Python's b64decode skips what is not of the alphabet, such as line breaks.
    let text: String = data.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let base64 = |t: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(t)
            .map_err(|e| format!("{path}.data: not base64: {e}"))
    };
    match encoding {
        "base64" => base64(&text),
        "lzma+base64" => unlzma(&base64(&text)?).map_err(|e| format!("{path}.data: {e}")),
        other => Err(format!(
            "{path}.encoding: unknown encoding '{other}' (known: base64, lzma+base64)"
        )),
    }
}

/// An xz stream, or a legacy `.lzma` one.
fn unlzma(data: &[u8]) -> Result<Vec<u8>, String> {
    const XZ_MAGIC: &[u8] = b"\xfd7zXZ\0";
    let mut out = Vec::new();
    let mut input = std::io::BufReader::new(data);
    let r = match data.starts_with(XZ_MAGIC) {
        true => lzma_rs::xz_decompress(&mut input, &mut out),
        false => lzma_rs::lzma_decompress(&mut input, &mut out),
    };
    r.map(|()| out)
        .map_err(|e| format!("not lzma-compressed: {e}"))
}

/// Runs `org.osbuild.inline`: every requested item (all when the request names none) into the
/// cache.
pub fn run(request: &Request) -> Result<Value, String> {
    let empty = Map::new();
    let items = request.items.as_ref().unwrap_or(&empty);
    let checksums: Vec<&String> = match request.checksums.is_empty() {
        true => items.keys().collect(),
        false => request.checksums.iter().collect(),
    };
    let _lock = CacheLock::acquire(&request.cache)?;
    let mut fetched = Vec::new();
    let mut failures = Vec::new();
    for c in checksums {
        match store_one(request, items, c) {
            Ok(cached) => fetched.push(Fetched {
                checksum: c.clone(),
                cached,
            }),
            Err(e) => failures.push(e),
        }
    }
    match failures.len() {
        0 => Ok(crate::source_results(NAME, &fetched)),
        1 => Err(failures.remove(0)),
        n => Err(format!("{n} items failed: {}", failures.join("; "))),
    }
}

/// Decodes, verifies and caches one item; `Ok(true)` when it was cached already.
fn store_one(request: &Request, items: &Map<String, Value>, c: &str) -> Result<bool, String> {
    let desc = items.get(c).ok_or_else(|| format!("unknown item: {c}"))?;
    let checksum = Checksum::parse(c).map_err(|e| e.to_string())?;
    if download::verified_entry(NAME, &request.cache, &checksum)?.is_some() {
        return Ok(true);
    }
    let data = decode(&format!("items.{c}"), desc)?;
    let mut hasher = checksum.hasher();
    hasher.update(&data);
    let digest = hasher.finish();
    if digest != checksum.as_str() {
        return Err(format!(
            "{c}: checksum mismatch: the data decodes to {digest} ({} bytes)",
            data.len()
        ));
    }
    let mut tmp = download::partial_file(&request.cache).map_err(|e| format!("{c}: {e}"))?;
    tmp.write_all(&data)
        .map_err(|e| format!("{c}: writing the cache: {e}"))?;
    download::publish(tmp, &request.cache, &checksum).map_err(|e| format!("{c}: {e}"))?;
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn both_encodings_decode() {
        // "hello\n", as base64, as xz then base64 and as legacy lzma then base64 (made with
        // `xz` and `xz --format=lzma`).
        let cases = [
            (
                json!({"encoding": "base64", "data": "aGVs\nbG8K"}),
                "hello\n",
            ),
            (
                json!({"encoding": "lzma+base64",
                       "data": "/Td6WFoAAATm1rRGAgAhARYAAAB0L+WjAQAFaGVsbG8KAAAApWCX8ZT2/eAAAR4GwS+kHR+2830BAAAAAARZWg=="}),
                "hello\n",
            ),
            (
                json!({"encoding": "lzma+base64",
                       "data": "XQAAgAD//////////wA0GUnujd09Ot///90SAAA="}),
                "hello\n",
            ),
        ];
        for (desc, want) in cases {
            assert_eq!(decode("items.c", &desc).unwrap(), want.as_bytes(), "{desc}");
        }
    }

    #[test]
    fn bad_items_say_where() {
        let cases = [
            (json!("x"), "items.c: expected {\"encoding\", \"data\"}"),
            (
                json!({"data": "x"}),
                "items.c.encoding: expected a string (required)",
            ),
            (
                json!({"encoding": "gzip", "data": "x"}),
                "items.c.encoding: unknown encoding 'gzip' (known: base64, lzma+base64)",
            ),
            (
                json!({"encoding": "base64", "data": "!!"}),
                "items.c.data: not base64",
            ),
            (
                json!({"encoding": "lzma+base64", "data": "aGVsbG8K"}),
                "items.c.data: not lzma-compressed",
            ),
        ];
        for (desc, want) in cases {
            let e = decode("items.c", &desc).unwrap_err();
            assert!(e.starts_with(want), "{e}");
        }
    }
}
