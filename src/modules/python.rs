//! Reading what a foreign Python module (osbuild v10's, which has no `NAME.meta.json`) says
//! about itself from its source, without running it: its `STAGE_DESC` string as summary and
//! the options schema in its `STAGE_OPTS = """..."""` (or `ASSEMBLER_OPTS`, or HEAD's
//! `SCHEMA`) string, and HEAD's `SCHEMA_2` string for v2 manifests.
//!
//! Scraped by hand: no crate reads a Python literal without Python.

use osbuild_protocol::meta::Meta;

use crate::json;

/// Whether `executable` starts with a `#!` line naming python.
pub(super) fn is_python(executable: &[u8]) -> bool {
    let first_line = executable.split(|&b| b == b'\n').next().unwrap_or_default();
    first_line.starts_with(b"#!") && first_line.windows(6).any(|w| w == b"python")
}

/// What the module with this source says about itself; its schema, if any, is not yet
/// checked. Fails when the schema string is not JSON.
pub(super) fn scrape_meta(source: &str) -> Result<Meta, String> {
    let summary = python_string_assignment(source, &["STAGE_DESC"]).unwrap_or_default();
    let schema = python_string_assignment(source, &["STAGE_OPTS", "ASSEMBLER_OPTS", "SCHEMA"])
        .map(|fragment| schema_from_fragment(&fragment, "options schema"))
        .transpose()?;
    let schema_2 = python_string_assignment(source, &["SCHEMA_2"])
        .map(|fragment| schema_from_fragment(&fragment, "SCHEMA_2"))
        .transpose()?;
    Ok(Meta {
        summary,
        schema,
        schema_2,
        ..Meta::default()
    })
}

/// A schema string of a Python module as JSON; `what` names it in the error.
fn schema_from_fragment(fragment: &str, what: &str) -> Result<serde_json::Value, String> {
    // v10's fragment is the inside of an object schema (`"properties": {...}`); v10's own
    // test suite wraps it in braces unless it already starts with one (HEAD's loader always
    // wraps its `SCHEMA`/`SCHEMA_2` the same way).
    let text = if fragment.trim_start().starts_with('{') {
        fragment.to_owned()
    } else {
        format!("{{{fragment}}}")
    };
    Ok(json::parse(&text)
        .map_err(|e| format!("its {what} string is not JSON: {e}"))?
        .to_serde())
}

/// The value of the first top-level `NAME = "..."` (any Python string literal form) for
/// one of `names`, without running the module.
fn python_string_assignment(source: &str, names: &[&str]) -> Option<String> {
    let mut offset = 0;
    for line in source.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        for name in names {
            let Some(rest) = line.strip_prefix(name) else {
                continue;
            };
            let rest_trimmed = rest.trim_start_matches([' ', '\t']);
            let Some(after_eq) = rest_trimmed.strip_prefix('=') else {
                continue;
            };
            if after_eq.starts_with('=') {
                continue;
            }
            let literal_start = start + line.len() - after_eq.len();
            let literal = source[literal_start..].trim_start_matches([' ', '\t']);
            if let Some(value) = python_string_literal(literal) {
                return Some(value);
            }
        }
    }
    None
}

/// Decodes the Python string literal at the start of `text` (prefixes r/u, single or triple
/// quotes, the common backslash escapes).
fn python_string_literal(text: &str) -> Option<String> {
    let mut rest = text;
    let mut raw = false;
    while let Some(c) = rest.chars().next() {
        match c {
            'r' | 'R' => raw = true,
            'u' | 'U' => {}
            _ => break,
        }
        rest = &rest[1..];
    }
    let quote = ["\"\"\"", "'''", "\"", "'"]
        .into_iter()
        .find(|q| rest.starts_with(q))?;
    let body = &rest[quote.len()..];
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        if body[i..].starts_with(quote) {
            return Some(out);
        }
        if c == '\n' && quote.len() == 1 {
            return None;
        }
        if c != '\\' {
            out.push(c);
            continue;
        }
        let (_, next) = chars.next()?;
        if raw {
            out.push('\\');
            out.push(next);
            continue;
        }
        match next {
            '\n' => {}
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            '\\' | '\'' | '"' => out.push(next),
            other => {
                out.push('\\');
                out.push(other);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_string_literals() {
        let cases = [
            ("X = \"a\\\"b\"\n", Some("a\"b")),
            ("X = 'it''s'\n", Some("it")),
            ("X = r\"\\d\"\n", Some("\\d")),
            ("X = \"\"\"\nline\\\nmore\"\"\"\n", Some("\nlinemore")),
            ("X == \"no\"\n", None),
            ("  X = \"indented\"\n", None),
            ("X = 1\n", None),
            ("XY = \"other\"\n", None),
            ("X = \"unterminated\n\"\n", None),
        ];
        for (src, want) in cases {
            assert_eq!(
                python_string_assignment(src, &["X"]).as_deref(),
                want,
                "{src:?}"
            );
        }
    }
}
