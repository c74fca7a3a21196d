//! Making inputs: byte mutations of a seed (bit flips, byte inserts, deletes and duplicates,
//! splices of dictionary tokens and of other seeds, deep nesting, huge numbers, long strings)
//! and a generator of random JSON documents with the same extremes.

use std::fmt::Write as _;

use osbuild_protocol::json::{self, Int, Value};

use crate::corpus::{KEYS, STRINGS, TOKENS};
use crate::rng::Rng;

/// No input grows beyond this: big enough for every limit of the parsers (nesting of 512,
/// 4300-digit integers, 64 KiB datagrams) to be crossed, small enough for 100,000 inputs.
pub const MAX_INPUT: usize = 1 << 20;

/// Nesting deeper than every parser's limit (512 for ours, 128 for serde_json), as text.
const DEEP: usize = 2048;

/// Nesting of a tree the mutator itself walks and writes (recursively, on the input thread's
/// stack): just past the parsers' limit of 512.
const DEEP_TREE: usize = 600;

/// Applies one to eight mutations to `input`; `others` are seeds to splice from.
pub fn mutate(rng: &mut Rng, input: &mut Vec<u8>, others: &[&[u8]]) {
    for _ in 0..1 + rng.below(8) {
        mutate_once(rng, input, others);
        input.truncate(MAX_INPUT);
    }
}

fn mutate_once(rng: &mut Rng, input: &mut Vec<u8>, others: &[&[u8]]) {
    let at = rng.below(input.len() + 1);
    match rng.below(13) {
        0 if !input.is_empty() => {
            let i = at.min(input.len() - 1);
            input[i] ^= 1 << rng.below(8);
        }
        1 if !input.is_empty() => {
            let i = at.min(input.len() - 1);
            input[i] = rng.pick(&[0, 0x7f, 0x80, 0xff, b'"', b'\\', b'{', b'[', b'0', b'-']);
        }
        2 => input.insert(at, rng.next_u64() as u8),
        3 => {
            let len = rng.size(input.len() - at + 1);
            input.drain(at..at + len);
        }
        4 => {
            let len = rng.size(input.len() - at + 1);
            let chunk = input[at..at + len].to_vec();
            let to = rng.below(input.len() + 1);
            splice_in(input, to, &chunk, 1 + rng.size(16));
        }
        5 | 6 => splice_in(input, at, rng.pick(TOKENS), 1),
        7 => {
            // Replace a run with a token.
            let len = rng.size(input.len() - at + 1).min(16);
            let token = rng.pick(TOKENS);
            input.splice(at..at + len, token.iter().copied());
        }
        8 if !others.is_empty() => {
            let other = rng.pick(others);
            let from = rng.below(other.len() + 1);
            let len = rng.size(other.len() - from + 1);
            splice_in(input, at, &other[from..from + len], 1);
        }
        9 => nest(rng, input, at),
        10 => {
            let digits = 1 + rng.size(20_000);
            let mut number = if rng.one_in(2) {
                "-".to_owned()
            } else {
                String::new()
            };
            number.push('9');
            number.extend(std::iter::repeat_n('0', digits));
            if rng.one_in(2) {
                let _ = write!(number, "e{}", rng.size(100_000));
            }
            splice_in(input, at, number.as_bytes(), 1);
        }
        11 => {
            let mut s = vec![b'"'];
            let unit: &[u8] = rng.pick(&[
                &b"a"[..],
                b"\\u00e9",
                b"\\\\",
                b"\xc3\xa9",
                b"\\ud83d\\ude00",
            ]);
            splice_in(&mut s, 1, unit, 1 + rng.size(200_000 / unit.len()));
            s.push(b'"');
            splice_in(input, at, &s, 1);
        }
        _ => {
            let mut text = String::new();
            json_value(rng, &mut text, 0);
            splice_in(input, at, text.as_bytes(), 1);
        }
    }
}

/// Mutates `input` as a JSON document, when it is one: one to four changes to its tree
/// (replace, delete or duplicate a node, add a known key, change a value's type, wrap a node in
/// deep nesting), written back as `json.dumps` writes it. The result is JSON (until a byte
/// mutation follows), so the checks behind the parser see it.
pub fn mutate_tree(rng: &mut Rng, input: &[u8]) -> Option<Vec<u8>> {
    let mut root = json::parse(std::str::from_utf8(input).ok()?).ok()?;
    let mut text = json::dumps(&root);
    // One deep nesting per input at most: two, one inside the other, would be twice as deep.
    let mut nested = false;
    for _ in 0..1 + rng.below(4) {
        let before = root.clone();
        let donor = pick_node(rng, &mut root.clone()).clone();
        let mut walk = rng.clone();
        nested |= change_node(rng, pick_node(&mut walk, &mut root), donor, !nested);
        rng.next_u64();
        let changed = json::dumps(&root);
        if changed.len() > MAX_INPUT {
            // Too big (copies of copies): keep the tree before this change.
            root = before;
        } else {
            text = changed;
        }
    }
    // Indented only when small: indentation grows with the square of the depth.
    if text.len() < 1 << 16 && rng.one_in(4) {
        text = json::dumps_pretty(&root);
    }
    Some(text.into_bytes())
}

/// A node of the tree, reached by a random walk from the root.
fn pick_node<'a>(rng: &mut Rng, v: &'a mut Value) -> &'a mut Value {
    let len = match v {
        Value::Array(a) => a.len(),
        Value::Object(m) => m.len(),
        _ => 0,
    };
    if len == 0 || rng.one_in(4) {
        return v;
    }
    let i = rng.below(len);
    match v {
        Value::Array(a) => pick_node(rng, &mut a[i]),
        Value::Object(m) => pick_node(rng, m.values_mut().nth(i).expect("i < len")),
        _ => v,
    }
}

fn generated(rng: &mut Rng) -> Value {
    let mut text = String::new();
    json_value(rng, &mut text, 0);
    json::parse(&text).unwrap_or(Value::Null)
}

/// One change to `node`; `donor` is a copy of some node of the same tree. True when it
/// nested the node deep (only when `may_nest`).
fn change_node(rng: &mut Rng, node: &mut Value, donor: Value, may_nest: bool) -> bool {
    match (rng.below(7), &mut *node) {
        (0, _) => *node = generated(rng),
        (1, _) => *node = donor,
        (2, _) if may_nest => {
            let mut v = std::mem::replace(node, Value::Null);
            for _ in 0..1 + rng.size(DEEP_TREE) {
                v = if rng.one_in(2) {
                    Value::Array(vec![v])
                } else {
                    Value::Object([("a".to_owned(), v)].into())
                };
            }
            *node = v;
            return true;
        }
        (3, Value::Object(m)) if !m.is_empty() && rng.one_in(2) => {
            let key = m.keys().nth(rng.below(m.len())).expect("a key").clone();
            m.shift_remove(&key);
        }
        (3, Value::Array(a)) if !a.is_empty() && rng.one_in(2) => {
            a.remove(rng.below(a.len()));
        }
        (3, Value::Object(m)) => {
            let value = if rng.one_in(2) { donor } else { generated(rng) };
            m.insert(rng.pick(KEYS).to_owned(), value);
        }
        (3, Value::Array(a)) => {
            let room = MAX_INPUT / (json::dumps(&donor).len() + 1);
            a.extend(std::iter::repeat_n(donor, 1 + rng.size(1000).min(room)));
        }
        (4, _) => *node = retyped(rng, node),
        _ => *node = extreme(rng),
    }
    false
}

/// The same content as another type: `1` as `"1"`, `1.0` or `[1]`, a string as a number.
fn retyped(rng: &mut Rng, v: &Value) -> Value {
    match v {
        Value::Int(i) if rng.one_in(2) => Value::Float(i.to_f64()),
        Value::Int(i) => Value::String(i.to_string()),
        Value::Float(f) => Value::Int(Int::from(*f as i64)),
        Value::String(s) => Int::parse(s).map_or(Value::Bool(!s.is_empty()), Value::Int),
        Value::Bool(b) => Value::String(b.to_string()),
        Value::Null => Value::Object(Default::default()),
        other => Value::Array(vec![other.clone()]),
    }
}

/// A value at the edge of what a parser expects.
fn extreme(rng: &mut Rng) -> Value {
    match rng.below(5) {
        0 => Value::String(rng.pick(STRINGS).to_owned()),
        1 => Value::String("x".repeat(rng.size(1 << 18))),
        2 => Value::Float(rng.pick(&[
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            5e-324,
            f64::MAX,
        ])),
        3 => {
            Value::Int(Int::parse(&format!("-{}", "9".repeat(1 + rng.size(4400)))).expect("digits"))
        }
        _ => Value::Int(Int::from(rng.pick(&[
            i64::MIN,
            -1,
            0,
            1,
            255,
            256,
            65536,
            i64::MAX,
        ]))),
    }
}

/// Inserts `times` copies of `chunk` at `at`, within [`MAX_INPUT`].
fn splice_in(input: &mut Vec<u8>, at: usize, chunk: &[u8], times: usize) {
    let room = MAX_INPUT.saturating_sub(input.len()) / chunk.len().max(1);
    let copies = times.min(room);
    let mut added = Vec::with_capacity(chunk.len() * copies);
    for _ in 0..copies {
        added.extend_from_slice(chunk);
    }
    input.splice(at..at, added);
}

/// Wraps the text at `at` in openers (and, half the time, the matching closers at the end):
/// `[`, `{"a":` or a manifest's `{"pipeline": {"build": {"pipeline":`.
fn nest(rng: &mut Rng, input: &mut Vec<u8>, at: usize) {
    let depth = 1 + rng.size(DEEP);
    let (open, close): (&[u8], &[u8]) = rng.pick(&[
        (&b"["[..], &b"]"[..]),
        (b"{\"a\": ", b"}"),
        (
            b"{\"pipeline\": {\"build\": {\"runner\": \"org.osbuild.linux\", \"pipeline\": ",
            b"}}}",
        ),
        (b"{\"options\": ", b"}"),
    ]);
    splice_in(input, at, open, depth);
    if rng.one_in(2) {
        let end = input.len();
        splice_in(input, end, close, depth);
    }
}

/// Appends a random JSON value (sometimes not quite JSON: lone surrogates, bare `-`).
pub fn json_value(rng: &mut Rng, out: &mut String, depth: usize) {
    let leaf = depth > 8 || rng.one_in(3);
    match if leaf { rng.below(6) } else { 6 + rng.below(2) } {
        0 => out.push_str(rng.pick(&["null", "true", "false", "NaN", "Infinity", "-Infinity"])),
        1 => {
            let _ = write!(out, "{}", rng.next_u64() as i64 >> rng.below(64));
        }
        2 => {
            let f = f64::from_bits(rng.next_u64());
            let _ = if f.is_finite() {
                write!(out, "{f:e}")
            } else {
                write!(out, "1e{}", rng.size(1000))
            };
        }
        3 => {
            out.push('-');
            out.extend(std::iter::repeat_n('7', 1 + rng.size(5000)));
        }
        4 | 5 => json_string(rng, out),
        6 => {
            out.push('[');
            for i in 0..rng.size(8) {
                if i > 0 {
                    out.push(',');
                }
                json_value(rng, out, depth + 1);
            }
            out.push(']');
        }
        _ => {
            out.push('{');
            for i in 0..rng.size(8) {
                if i > 0 {
                    out.push_str(", ");
                }
                json_string(rng, out);
                out.push_str(": ");
                json_value(rng, out, depth + 1);
            }
            out.push('}');
        }
    }
}

fn json_string(rng: &mut Rng, out: &mut String) {
    out.push('"');
    for _ in 0..rng.size(24) {
        match rng.below(8) {
            0 => out.push_str(rng.pick(&["\\n", "\\\"", "\\\\", "\\/", "\\u0000", "\\u00e9"])),
            1 => {
                out.push_str(rng.pick(&["\\ud800", "\\udfff", "\\ud83d\\ude00", "\\ud800\\ud800"]))
            }
            2 => out.push(char::from_u32(rng.below(0x11_0000) as u32).unwrap_or('\u{fffd}')),
            3 => out.push_str(rng.pick(&["org.osbuild.", "name:", "sha256:", "loop", "/", ".."])),
            _ => out.push(char::from(b'a' + rng.below(26) as u8)),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_stay_within_the_size_limit() {
        let mut rng = Rng::new(9);
        let seed = br#"{"a": [1, 2.5, "x"]}"#;
        for _ in 0..2000 {
            let mut input = seed.to_vec();
            mutate(&mut rng, &mut input, &[seed]);
            assert!(input.len() <= MAX_INPUT);
        }
    }

    #[test]
    fn generated_values_are_mostly_json() {
        let mut rng = Rng::new(5);
        let parsed = (0..500)
            .filter(|_| {
                let mut text = String::new();
                json_value(&mut rng, &mut text, 0);
                osbuild_protocol::json::parse(&text).is_ok()
            })
            .count();
        // Lone surrogates and bare control characters are the rest.
        assert!(parsed > 250, "{parsed} of 500 parsed");
    }
}
