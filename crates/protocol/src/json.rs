//! JSON values as Python's `json` module sees them, and an encoder byte-identical to
//! `json.dumps(value, sort_keys=True)`.
//!
//! Every osbuild id is a SHA-256 over `json.dumps` texts, so this module owns the exact
//! encoding: arbitrary-precision integers (kept as their decimal text), Python's float `repr`,
//! ASCII-only output with `\uXXXX` escapes, and keys sorted by code point. The parser
//! accepts what `json.loads` accepts (RFC 8259 plus `NaN`/`Infinity`, duplicate keys with the
//! last one winning) and reports errors with a 1-based line and column.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

/// A JSON object: keys in the order the document has them (a later duplicate replaces the
/// value in place), as a Python dict built by `json.loads`. Modules get their options in this
/// order, as osbuild gives them (a stage that creates users or writes sections in the order
/// of its options depends on it); [`dumps`] sorts the keys, as every id needs. Two maps with
/// the same entries are equal whatever their order.
pub type Map = indexmap::IndexMap<String, Value>;

/// How deep arrays and objects may nest before [`parse`] gives up (instead of overflowing
/// the stack).
pub const MAX_DEPTH: usize = 512;

/// Python (3.11+) refuses to convert integers with more digits than this.
const MAX_INT_DIGITS: usize = 4300;

/// An integer of any size, kept as its normalized decimal text (`-0` becomes `0`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Int(String);

impl Int {
    /// Parses an optional `-` followed by decimal digits; leading zeros are dropped.
    pub fn parse(text: &str) -> Option<Int> {
        let (neg, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let digits = digits.trim_start_matches('0');
        if digits.is_empty() {
            return Some(Int("0".to_owned()));
        }
        Some(Int(if neg {
            format!("-{digits}")
        } else {
            digits.to_owned()
        }))
    }

    /// The decimal text, exactly as `json.dumps` writes it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The value if it fits an `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        self.0.parse().ok()
    }

    /// The value if it fits a `u64`.
    pub fn as_u64(&self) -> Option<u64> {
        self.0.parse().ok()
    }

    /// The nearest `f64` (infinite beyond its range).
    pub fn to_f64(&self) -> f64 {
        self.0.parse().unwrap_or(f64::NAN)
    }
}

impl From<i64> for Int {
    fn from(v: i64) -> Int {
        Int(v.to_string())
    }
}

impl From<u64> for Int {
    fn from(v: u64) -> Int {
        Int(v.to_string())
    }
}

impl fmt::Display for Int {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A JSON value. Integers and floats are distinct, as in Python: `1` and `1.0` encode
/// differently and so give different ids.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(Int),
    Float(f64),
    String(String),
    Array(Vec<Value>),
    Object(Map),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<&Int> {
        match self {
            Value::Int(i) => Some(i),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&Vec<Value>> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&Map> {
        match self {
            Value::Object(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_object_mut(&mut self) -> Option<&mut Map> {
        match self {
            Value::Object(m) => Some(m),
            _ => None,
        }
    }

    /// The member `key` of an object; `None` for a missing key or a non-object.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_object().and_then(|m| m.get(key))
    }

    /// Python's truthiness: `null`, `false`, `0`, `0.0`, `""`, `[]` and `{}` are false.
    pub fn is_truthy(&self) -> bool {
        match self {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Int(i) => i.as_str() != "0",
            Value::Float(f) => *f != 0.0,
            Value::String(s) => !s.is_empty(),
            Value::Array(a) => !a.is_empty(),
            Value::Object(m) => !m.is_empty(),
        }
    }

    /// The JSON type name used in messages (`object`, `array`, `string`, ...).
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Int(_) => "integer",
            Value::Float(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }

    /// Converts to serde_json: integers beyond `i64`/`u64` become floats and `NaN`/infinities
    /// become `null` (serde_json has no representation for them).
    pub fn to_serde(&self) -> serde_json::Value {
        self.to_serde_with(&|i| i.to_f64(), &|_| None)
    }

    /// Converts for schema validation, so that a schema judges the document that is hashed
    /// as osbuild v10 (Python's `jsonschema`) judges it. serde_json numbers are `i64`, `u64`
    /// or finite `f64`, so:
    /// - an integer beyond `i64`/`u64` becomes the nearest `f64`, saturating at `±f64::MAX`:
    ///   like Python's int it is an `"integer"` and a `"number"`, and it orders against any
    ///   bound as the exact integer does (not `null`, which every numeric schema refuses);
    /// - `±Infinity` becomes `±f64::MAX`: a `"number"` (Python's float) that exceeds every
    ///   `maximum` (or undercuts every `minimum`); unlike v10, `"integer"` accepts it;
    /// - `NaN` becomes `f64::MIN_POSITIVE`: a `"number"` and not an `"integer"`, as Python's
    ///   NaN, and within any bound that allows zero (v10's NaN passes every bound).
    pub fn to_schema_instance(&self) -> serde_json::Value {
        let saturate = |f: f64| f.clamp(f64::MIN, f64::MAX);
        let special = |f: f64| {
            Some(if f.is_nan() {
                f64::MIN_POSITIVE
            } else {
                saturate(f)
            })
        };
        self.to_serde_with(&|i| saturate(i.to_f64()), &special)
    }

    /// `big` maps an integer beyond `i64`/`u64` to a float, `special` a non-finite float to
    /// a finite one (`None`: `null`).
    fn to_serde_with(
        &self,
        big: &dyn Fn(&Int) -> f64,
        special: &dyn Fn(f64) -> Option<f64>,
    ) -> serde_json::Value {
        use serde_json::Value as S;
        let float = |f: f64| {
            let f = if f.is_finite() { Some(f) } else { special(f) };
            f.and_then(serde_json::Number::from_f64)
                .map_or(S::Null, S::Number)
        };
        match self {
            Value::Null => S::Null,
            Value::Bool(b) => S::Bool(*b),
            Value::Int(i) => {
                if let Some(v) = i.as_i64() {
                    S::from(v)
                } else if let Some(v) = i.as_u64() {
                    S::from(v)
                } else {
                    float(big(i))
                }
            }
            Value::Float(f) => float(*f),
            Value::String(s) => S::String(s.clone()),
            Value::Array(a) => S::Array(a.iter().map(|v| v.to_serde_with(big, special)).collect()),
            Value::Object(m) => S::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), v.to_serde_with(big, special)))
                    .collect(),
            ),
        }
    }

    /// Converts from serde_json; numbers that serde_json holds as integers stay integers.
    pub fn from_serde(v: &serde_json::Value) -> Value {
        use serde_json::Value as S;
        match v {
            S::Null => Value::Null,
            S::Bool(b) => Value::Bool(*b),
            S::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Value::Int(Int::from(i))
                } else if let Some(u) = n.as_u64() {
                    Value::Int(Int::from(u))
                } else {
                    Value::Float(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            S::String(s) => Value::String(s.clone()),
            S::Array(a) => Value::Array(a.iter().map(Value::from_serde).collect()),
            S::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), Value::from_serde(v)))
                    .collect(),
            ),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::String(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::String(s)
    }
}

impl From<Map> for Value {
    fn from(m: Map) -> Value {
        Value::Object(m)
    }
}

impl From<Vec<Value>> for Value {
    fn from(a: Vec<Value>) -> Value {
        Value::Array(a)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(Int::from(v))
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Float(v)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing

/// Why a text is not JSON, with a 1-based line and column (in characters).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

impl std::error::Error for ParseError {}

/// Parses JSON text as Python's `json.loads` does: `NaN`, `Infinity` and `-Infinity` are
/// accepted, a duplicate key keeps its last value, numbers with a fraction or exponent are
/// floats (overflowing to infinity) and all others integers of any size.
pub fn parse(text: &str) -> Result<Value, ParseError> {
    let mut p = Parser {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        depth: 0,
    };
    p.skip_ws();
    let v = p.value()?;
    p.skip_ws();
    if p.pos != p.bytes.len() {
        return Err(p.error_at(p.pos, "unexpected data after the JSON value".into()));
    }
    Ok(v)
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn error_at(&self, pos: usize, message: String) -> ParseError {
        let before = &self.text[..pos];
        let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        ParseError {
            line,
            column,
            message,
        }
    }

    fn describe_here(&self) -> String {
        match self.text[self.pos..].chars().next() {
            None => "end of input".to_owned(),
            Some(c) if c.is_control() => format!("{:?}", c),
            Some(c) => format!("'{c}'"),
        }
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    fn eat_literal(&mut self, lit: &str) -> bool {
        if self.bytes[self.pos..].starts_with(lit.as_bytes()) {
            self.pos += lit.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Result<Value, ParseError> {
        match self.bytes.get(self.pos) {
            Some(b'{') => self.nested(Self::object),
            Some(b'[') => self.nested(Self::array),
            Some(b'"') => Ok(Value::String(self.string()?)),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => self.literal(),
        }
    }

    /// `null`, `true`, `false`, `NaN` or `Infinity`. Out of line: its table would otherwise
    /// sit in the frame of every nesting level.
    #[inline(never)]
    fn literal(&mut self) -> Result<Value, ParseError> {
        for (lit, v) in [
            ("null", Value::Null),
            ("true", Value::Bool(true)),
            ("false", Value::Bool(false)),
            ("NaN", Value::Float(f64::NAN)),
            ("Infinity", Value::Float(f64::INFINITY)),
        ] {
            if self.eat_literal(lit) {
                return Ok(v);
            }
        }
        Err(self.error_at(
            self.pos,
            format!("expected a value, found {}", self.describe_here()),
        ))
    }

    fn nested(
        &mut self,
        f: fn(&mut Self) -> Result<Value, ParseError>,
    ) -> Result<Value, ParseError> {
        if self.depth >= MAX_DEPTH {
            return Err(self.error_at(
                self.pos,
                format!("arrays and objects nested deeper than {MAX_DEPTH} levels"),
            ));
        }
        self.depth += 1;
        let v = f(self);
        self.depth -= 1;
        v
    }

    fn object(&mut self) -> Result<Value, ParseError> {
        self.pos += 1; // '{'
        let mut map = Map::new();
        self.skip_ws();
        if self.bytes.get(self.pos) == Some(&b'}') {
            self.pos += 1;
            return Ok(Value::Object(map));
        }
        loop {
            if self.bytes.get(self.pos) != Some(&b'"') {
                return Err(self.error_at(
                    self.pos,
                    format!(
                        "expected a property name in double quotes, found {}",
                        self.describe_here()
                    ),
                ));
            }
            let key = self.string()?;
            self.skip_ws();
            if self.bytes.get(self.pos) != Some(&b':') {
                return Err(self.error_at(
                    self.pos,
                    format!(
                        "expected ':' after a property name, found {}",
                        self.describe_here()
                    ),
                ));
            }
            self.pos += 1;
            self.skip_ws();
            let v = self.value()?;
            map.insert(key, v); // a duplicate key: the last value wins, as in Python
            self.skip_ws();
            match self.bytes.get(self.pos) {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_ws();
                }
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Value::Object(map));
                }
                _ => {
                    return Err(self.error_at(
                        self.pos,
                        format!(
                            "expected ',' or '}}' in an object, found {}",
                            self.describe_here()
                        ),
                    ))
                }
            }
        }
    }

    fn array(&mut self) -> Result<Value, ParseError> {
        self.pos += 1; // '['
        let mut items = Vec::new();
        self.skip_ws();
        if self.bytes.get(self.pos) == Some(&b']') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            items.push(self.value()?);
            self.skip_ws();
            match self.bytes.get(self.pos) {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_ws();
                }
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::Array(items));
                }
                _ => {
                    return Err(self.error_at(
                        self.pos,
                        format!(
                            "expected ',' or ']' in an array, found {}",
                            self.describe_here()
                        ),
                    ))
                }
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while self.bytes.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Result<Value, ParseError> {
        let start = self.pos;
        if self.bytes[self.pos] == b'-' {
            self.pos += 1;
            if self.eat_literal("Infinity") {
                return Ok(Value::Float(f64::NEG_INFINITY));
            }
        }
        match self.bytes.get(self.pos) {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => {
                return Err(self.error_at(
                    start,
                    "expected a value, found '-' without digits".to_owned(),
                ))
            }
        }
        let int_end = self.pos;
        let mut is_float = false;
        // Like Python's scanner, a '.' or 'e' that is not followed by digits is not part of
        // the number (and then fails as unexpected data).
        if self.bytes.get(self.pos) == Some(&b'.') {
            let save = self.pos;
            self.pos += 1;
            if self.digits() == 0 {
                self.pos = save;
            } else {
                is_float = true;
            }
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.pos) {
            let save = self.pos;
            self.pos += 1;
            if let Some(b'+' | b'-') = self.bytes.get(self.pos) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                self.pos = save;
            } else {
                is_float = true;
            }
        }
        let text = &self.text[start..self.pos];
        if is_float {
            let f: f64 = text
                .parse()
                .map_err(|e| self.error_at(start, format!("invalid number '{text}': {e}")))?;
            Ok(Value::Float(f))
        } else {
            let digits = int_end - start - usize::from(text.starts_with('-'));
            if digits > MAX_INT_DIGITS {
                return Err(self.error_at(
                    start,
                    format!("integer with {digits} digits exceeds the limit of {MAX_INT_DIGITS}"),
                ));
            }
            Int::parse(text)
                .map(Value::Int)
                .ok_or_else(|| self.error_at(start, format!("invalid number '{text}'")))
        }
    }

    fn hex4(&mut self, escape_start: usize) -> Result<u32, ParseError> {
        let hex = self
            .bytes
            .get(self.pos..self.pos + 4)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .ok_or_else(|| {
                self.error_at(
                    escape_start,
                    "invalid \\uXXXX escape: expected 4 hex digits".to_owned(),
                )
            })?;
        let hex = std::str::from_utf8(hex).expect("ASCII hex digits");
        self.pos += 4;
        Ok(u32::from_str_radix(hex, 16).expect("4 hex digits"))
    }

    fn string(&mut self) -> Result<String, ParseError> {
        let start = self.pos;
        self.pos += 1; // '"'
        let mut out = String::new();
        loop {
            let run = self.pos;
            while let Some(&b) = self.bytes.get(self.pos) {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            out.push_str(&self.text[run..self.pos]);
            match self.bytes.get(self.pos) {
                None => {
                    return Err(self.error_at(start, "unterminated string".to_owned()));
                }
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    let esc = self.pos;
                    self.pos += 1;
                    let c = match self.bytes.get(self.pos) {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            self.pos += 1;
                            let c = self.unicode_escape(esc)?;
                            out.push(c);
                            continue;
                        }
                        None => return Err(self.error_at(start, "unterminated string".to_owned())),
                        Some(_) => {
                            let c = self.text[self.pos..].chars().next().unwrap_or('?');
                            return Err(self.error_at(esc, format!("invalid escape '\\{c}'")));
                        }
                    };
                    self.pos += 1;
                    out.push(c);
                }
                Some(&b) => {
                    return Err(self.error_at(
                        self.pos,
                        format!("invalid control character U+{b:04X} in a string"),
                    ));
                }
            }
        }
    }

    /// Decodes `\uXXXX` (the `\u` already consumed), joining a surrogate pair.
    fn unicode_escape(&mut self, esc: usize) -> Result<char, ParseError> {
        let hi = self.hex4(esc)?;
        let code = if (0xD800..0xDC00).contains(&hi) {
            let second = self.pos;
            let lo = if self.bytes[self.pos..].starts_with(b"\\u") {
                self.pos += 2;
                self.hex4(second)?
            } else {
                0
            };
            if !(0xDC00..0xE000).contains(&lo) {
                return Err(self.error_at(
                    esc,
                    format!(
                        "lone surrogate \\u{hi:04x} in a string (not followed by a low surrogate)"
                    ),
                ));
            }
            0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
        } else if (0xDC00..0xE000).contains(&hi) {
            return Err(self.error_at(
                esc,
                format!("lone surrogate \\u{hi:04x} in a string (no high surrogate before it)"),
            ));
        } else {
            hi
        };
        Ok(char::from_u32(code).expect("a valid scalar value"))
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding

/// One node of a tree the encoder walks: [`Value`] (keys sorted, as `sort_keys=True` writes
/// them) or `serde_json::Value` (keys in insertion order, as Python writes a dict).
enum Node<'a, T> {
    Null,
    Bool(bool),
    Int(Cow<'a, str>),
    Float(f64),
    Str(&'a str),
    Array(&'a [T]),
    Object(Box<dyn Iterator<Item = (&'a String, &'a T)> + 'a>),
}

trait Tree: Sized {
    fn node(&self) -> Node<'_, Self>;
}

impl Tree for Value {
    fn node(&self) -> Node<'_, Self> {
        match self {
            Value::Null => Node::Null,
            Value::Bool(b) => Node::Bool(*b),
            Value::Int(i) => Node::Int(Cow::Borrowed(i.as_str())),
            Value::Float(f) => Node::Float(*f),
            Value::String(s) => Node::Str(s),
            Value::Array(a) => Node::Array(a),
            Value::Object(m) => Node::Object(Box::new(sorted_entries(m).into_iter())),
        }
    }
}

impl Tree for serde_json::Value {
    fn node(&self) -> Node<'_, Self> {
        use serde_json::Value as S;
        match self {
            S::Null => Node::Null,
            S::Bool(b) => Node::Bool(*b),
            S::Number(n) if n.is_f64() => Node::Float(n.as_f64().unwrap_or(f64::NAN)),
            S::Number(n) => Node::Int(Cow::Owned(n.to_string())),
            S::String(s) => Node::Str(s),
            S::Array(a) => Node::Array(a),
            S::Object(m) => Node::Object(Box::new(m.iter())),
        }
    }
}

/// The entries of `m` as Python's `sort_keys` orders them: by code point, which is the byte
/// order of UTF-8.
fn sorted_entries(m: &Map) -> Vec<(&String, &Value)> {
    let mut entries: Vec<(&String, &Value)> = m.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    entries
}

/// Encodes as Python's `json.dumps(v, sort_keys=True)`, byte for byte.
pub fn dumps(v: &Value) -> String {
    let mut out = String::new();
    write_compact(&mut out, v);
    out
}

/// Encodes as Python's `json.dumps(v)` (no `sort_keys`): objects keep the order of the
/// document they came from. This is how osbuild hands a module its arguments, options in the
/// manifest's order; scalars are written exactly as [`dumps`] writes them.
pub fn dumps_in_order(v: &Value) -> String {
    let mut out = String::new();
    write_in_order(&mut out, v);
    out
}

fn write_in_order(out: &mut String, v: &Value) {
    match v {
        Value::Array(a) => write_array(out, a, write_in_order),
        Value::Object(m) => {
            write_object(out, m.iter().map(|(k, v)| (k.as_str(), v)), write_in_order)
        }
        scalar => write_scalar(out, scalar.node()),
    }
}

/// Encodes as Python's `json.dumps(v, indent=2, sort_keys=True)`, for people to read.
pub fn dumps_pretty(v: &Value) -> String {
    let mut out = String::new();
    write_pretty(&mut out, v, 0);
    out
}

/// Encodes a serde value as Python's `json.dumps(v)` (no `sort_keys`): struct fields and map
/// entries keep their order. This is how messages that v10 writes with `json.dumps` are sent.
pub fn to_python<T: serde::Serialize + ?Sized>(v: &T) -> Result<String, serde_json::Error> {
    let tree = serde_json::to_value(v)?;
    let mut out = String::new();
    write_compact(&mut out, &tree);
    Ok(out)
}

/// A document whose objects keep their keys in the order given, as Python writes a dict built
/// key by key without `sort_keys` (v10's build results). Its [`Ordered::Value`] leaves are
/// written as [`dumps_in_order`] writes them: options embedded in a result appear as the
/// manifest has them, as in v10's.
#[derive(Clone, Debug, PartialEq)]
pub enum Ordered<'a> {
    Value(Cow<'a, Value>),
    Array(Vec<Ordered<'a>>),
    Object(Vec<(&'static str, Ordered<'a>)>),
}

impl Ordered<'_> {
    /// Encodes as Python's `json.dumps(document)`: default separators, ASCII only.
    pub fn dumps(&self) -> String {
        let mut out = String::new();
        write_ordered(&mut out, self);
        out
    }
}

fn write_ordered(out: &mut String, doc: &Ordered<'_>) {
    match doc {
        Ordered::Value(v) => write_in_order(out, v.as_ref()),
        Ordered::Array(items) => write_array(out, items, write_ordered),
        Ordered::Object(entries) => {
            write_object(out, entries.iter().map(|(k, v)| (*k, v)), write_ordered)
        }
    }
}

fn write_array<T>(out: &mut String, items: &[T], write: fn(&mut String, &T)) {
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write(out, item);
    }
    out.push(']');
}

fn write_object<'t, T: 't>(
    out: &mut String,
    entries: impl Iterator<Item = (&'t str, &'t T)>,
    write: fn(&mut String, &T),
) {
    out.push('{');
    for (i, (k, item)) in entries.enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_string(out, k);
        out.push_str(": ");
        write(out, item);
    }
    out.push('}');
}

fn write_compact<T: Tree>(out: &mut String, v: &T) {
    match v.node() {
        Node::Array(a) => write_array(out, a, write_compact),
        Node::Object(entries) => {
            write_object(out, entries.map(|(k, v)| (k.as_str(), v)), write_compact)
        }
        scalar => write_scalar(out, scalar),
    }
}

fn newline_indent(out: &mut String, level: usize) {
    out.push('\n');
    for _ in 0..level {
        out.push_str("  ");
    }
}

fn write_pretty(out: &mut String, v: &Value, level: usize) {
    match v {
        Value::Array(a) if !a.is_empty() => {
            out.push('[');
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline_indent(out, level + 1);
                write_pretty(out, item, level + 1);
            }
            newline_indent(out, level);
            out.push(']');
        }
        Value::Object(m) if !m.is_empty() => {
            out.push('{');
            for (i, (k, item)) in sorted_entries(m).into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline_indent(out, level + 1);
                write_string(out, k);
                out.push_str(": ");
                write_pretty(out, item, level + 1);
            }
            newline_indent(out, level);
            out.push('}');
        }
        other => write_compact(out, other),
    }
}

fn write_scalar<T>(out: &mut String, v: Node<'_, T>) {
    match v {
        Node::Null => out.push_str("null"),
        Node::Bool(true) => out.push_str("true"),
        Node::Bool(false) => out.push_str("false"),
        Node::Int(i) => out.push_str(&i),
        Node::Float(f) => write_float(out, f),
        Node::Str(s) => write_string(out, s),
        Node::Array(_) | Node::Object(_) => unreachable!("containers are not scalars"),
    }
}

/// Python's `float.__repr__` (and json's `NaN`/`Infinity`): the shortest digits that round
/// trip, in fixed notation when the decimal exponent is in [-4, 16), otherwise `1e+16` style.
fn write_float(out: &mut String, f: f64) {
    if f.is_nan() {
        out.push_str("NaN");
        return;
    }
    if f.is_infinite() {
        out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" });
        return;
    }
    if f.is_sign_negative() {
        out.push('-');
    }
    // Rust's `{:e}` prints the shortest round-trip digits: "d.ddde<exp>".
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').expect("{:e} always has an exponent");
    let exp: i32 = exp.parse().expect("{:e} exponent is an integer");
    let digits: String = mantissa.chars().filter(|&c| c != '.').collect();
    let ndigits = digits.len() as i32;
    if (-4..16).contains(&exp) {
        let decpt = exp + 1; // digits are 0.ddd * 10^decpt
        if decpt <= 0 {
            out.push_str("0.");
            for _ in 0..-decpt {
                out.push('0');
            }
            out.push_str(&digits);
        } else if decpt >= ndigits {
            out.push_str(&digits);
            for _ in 0..decpt - ndigits {
                out.push('0');
            }
            out.push_str(".0");
        } else {
            let (int, frac) = digits.split_at(decpt as usize);
            out.push_str(int);
            out.push('.');
            out.push_str(frac);
        }
    } else {
        out.push_str(&digits[..1]);
        if ndigits > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let sign = if exp < 0 { '-' } else { '+' };
        write!(out, "e{sign}{:02}", exp.abs()).expect("writing to a String cannot fail");
    }
}

/// A string with `ensure_ascii=True`: short escapes where Python has them, `\uXXXX`
/// (lowercase, surrogate pairs above the BMP) for every other character outside 0x20..=0x7e.
fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(out, "\\u{unit:04x}").expect("writing to a String cannot fail");
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_keep_the_documents_order_and_ids_sort_it() {
        // A duplicate key keeps its first place and its last value, as a Python dict does.
        let v = parse(r#"{"b": 1, "a": {"d": 1, "c": 2}, "b": 3}"#).unwrap();
        assert_eq!(dumps_in_order(&v), r#"{"b": 3, "a": {"d": 1, "c": 2}}"#);
        assert_eq!(dumps(&v), r#"{"a": {"c": 2, "d": 1}, "b": 3}"#);
        assert_eq!(
            dumps_pretty(&v),
            "{\n  \"a\": {\n    \"c\": 2,\n    \"d\": 1\n  },\n  \"b\": 3\n}"
        );
        assert_eq!(v, parse(r#"{"a": {"c": 2, "d": 1}, "b": 3}"#).unwrap());
    }

    #[test]
    fn dumps_matches_python() {
        // (input JSON, Python's json.dumps(json.loads(input), sort_keys=True))
        let cases = [
            ("null", "null"),
            ("true", "true"),
            ("[false]", "[false]"),
            ("-0", "0"),
            ("18446744073709551616", "18446744073709551616"),
            ("-18446744073709551616", "-18446744073709551616"),
            ("1E2", "100.0"),
            ("2.0", "2.0"),
            ("1e15", "1000000000000000.0"),
            ("1e16", "1e+16"),
            ("1e100", "1e+100"),
            ("0.00001", "1e-05"),
            ("0.0001", "0.0001"),
            ("0.1", "0.1"),
            ("-0.0", "-0.0"),
            ("0e0", "0.0"),
            ("123.456", "123.456"),
            ("1.5e-7", "1.5e-07"),
            ("5e-324", "5e-324"),
            ("1.7976931348623157e308", "1.7976931348623157e+308"),
            ("1e400", "Infinity"),
            ("-1e400", "-Infinity"),
            ("NaN", "NaN"),
            ("[Infinity, -Infinity]", "[Infinity, -Infinity]"),
            ("12345678901234567890.0", "1.2345678901234567e+19"),
            ("9007199254740993.0", "9007199254740992.0"),
            (
                r#""h\u00e9llo \u2603 \ud83d\ude00""#,
                r#""h\u00e9llo \u2603 \ud83d\ude00""#,
            ),
            ("\"h\u{e9}llo \u{1F600}\"", r#""h\u00e9llo \ud83d\ude00""#),
            (r#""tab\tnl\n\u007f/\"\\\/""#, r#""tab\tnl\n\u007f/\"\\/""#),
            (r#""\b\f\r\u0000\u001f""#, r#""\b\f\r\u0000\u001f""#),
            (
                r#"{"b": {"d": 2, "c": 1}, "a": [{"z": 0, "y": []}]}"#,
                r#"{"a": [{"y": [], "z": 0}], "b": {"c": 1, "d": 2}}"#,
            ),
            (r#"{"a": 1, "a": 2}"#, r#"{"a": 2}"#),
            (
                r#"{"\u00e9": 1, "z": 2, "Z": 3}"#,
                r#"{"Z": 3, "z": 2, "\u00e9": 1}"#,
            ),
            (" \t\n[ ]\r\n", "[]"),
            ("{}", "{}"),
        ];
        for (input, want) in cases {
            let v = parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(dumps(&v), want, "input {input:?}");
        }
    }

    #[test]
    fn parse_errors_have_line_and_column() {
        let cases = [
            ("", 1, 1, "expected a value, found end of input"),
            ("[1,\n  2,]", 2, 5, "expected a value, found ']'"),
            ("{\"a\" 1}", 1, 6, "expected ':'"),
            ("{'a': 1}", 1, 2, "property name in double quotes"),
            ("[1 2]", 1, 4, "expected ',' or ']'"),
            ("{\"a\": 1 \"b\"}", 1, 9, "expected ',' or '}'"),
            ("\"abc", 1, 1, "unterminated string"),
            ("\"a\nb\"", 1, 3, "invalid control character U+000A"),
            ("\"\\x\"", 1, 2, "invalid escape '\\x'"),
            ("\"\\u12\"", 1, 2, "invalid \\uXXXX escape"),
            ("\"\\ud800\"", 1, 2, "lone surrogate \\ud800"),
            ("\"\\ud800\\u0041\"", 1, 2, "lone surrogate \\ud800"),
            ("\"\\udc00\"", 1, 2, "lone surrogate \\udc00"),
            ("1 2", 1, 3, "unexpected data after the JSON value"),
            ("01", 1, 2, "unexpected data"),
            ("1.", 1, 2, "unexpected data"),
            ("-", 1, 1, "'-' without digits"),
            ("-foo", 1, 1, "'-' without digits"),
            ("nul", 1, 1, "expected a value"),
            ("é [", 1, 1, "expected a value, found 'é'"),
            ("[\"é\", x]", 1, 7, "expected a value, found 'x'"),
        ];
        for (input, line, column, msg) in cases {
            let e = parse(input).expect_err(input);
            assert_eq!((e.line, e.column), (line, column), "{input:?}: {e}");
            assert!(e.message.contains(msg), "{input:?}: {e}");
            assert!(e
                .to_string()
                .starts_with(&format!("line {line}, column {column}: ")));
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(parse(&ok).is_ok());
        let deep = "[".repeat(100_000);
        let e = parse(&deep).unwrap_err();
        assert!(e.message.contains("nested deeper than 512"), "{e}");
        let deep_obj = "{\"a\":".repeat(MAX_DEPTH + 1);
        assert!(parse(&deep_obj).unwrap_err().message.contains("nested"));
        // The deepest object allowed is read, encoded both ways and dropped on a test
        // thread's 2 MiB stack.
        let ok_obj = "{\"a\":".repeat(MAX_DEPTH - 1) + "1" + &"}".repeat(MAX_DEPTH - 1);
        let v = parse(&ok_obj).unwrap();
        assert_eq!(dumps(&v), dumps_in_order(&v));
    }

    #[test]
    fn huge_integers_are_refused_like_python() {
        assert!(parse(&"9".repeat(MAX_INT_DIGITS)).is_ok());
        let e = parse(&"9".repeat(MAX_INT_DIGITS + 1)).unwrap_err();
        assert!(e.message.contains("exceeds the limit"), "{e}");
    }

    #[test]
    fn ints_and_floats_stay_distinct() {
        assert_eq!(parse("1").unwrap(), Value::from(1));
        assert_eq!(parse("1.0").unwrap(), Value::Float(1.0));
        assert_ne!(dumps(&parse("1").unwrap()), dumps(&parse("1.0").unwrap()));
        assert_eq!(parse("-0").unwrap(), Value::from(0));
    }

    #[test]
    fn dumps_pretty_matches_python_indent_2() {
        let v = parse(r#"{"b": [1, {"x": []}, {}], "a": "\u00e9"}"#).unwrap();
        let want = "{\n  \"a\": \"\\u00e9\",\n  \"b\": [\n    1,\n    {\n      \"x\": []\n    },\n    {}\n  ]\n}";
        assert_eq!(dumps_pretty(&v), want);
        assert_eq!(dumps_pretty(&Value::from(1)), "1");
    }

    #[test]
    fn serde_conversion() {
        let v = parse(r#"{"big": 18446744073709551616, "i": -3, "u": 18446744073709551615, "f": 1.5, "n": NaN, "s": "x", "a": [null, true]}"#).unwrap();
        let s = v.to_serde();
        assert_eq!(s["i"], serde_json::json!(-3));
        assert_eq!(s["u"], serde_json::json!(18446744073709551615u64));
        assert_eq!(s["big"].as_f64(), Some(18446744073709551616.0));
        assert!(s["n"].is_null());
        assert_eq!(s["a"], serde_json::json!([null, true]));
        let back = Value::from_serde(&s);
        assert_eq!(back.get("i"), v.get("i"));
        assert_eq!(back.get("f"), Some(&Value::Float(1.5)));
        assert_eq!(back.get("s").and_then(Value::as_str), Some("x"));
    }

    #[test]
    fn schema_instance_keeps_every_number_a_number() {
        let v = parse(r#"{"big": 1234567890123456789012345678901234567890, "huge": 1e400, "nan": NaN, "inf": -Infinity, "i": 7}"#).unwrap();
        let s = v.to_schema_instance();
        assert_eq!(s["big"].as_f64(), Some(1.2345678901234568e39));
        assert_eq!(s["huge"].as_f64(), Some(f64::MAX));
        assert_eq!(s["nan"].as_f64(), Some(f64::MIN_POSITIVE));
        assert_eq!(s["inf"].as_f64(), Some(f64::MIN));
        assert_eq!(s["i"], serde_json::json!(7));
        let digits = "9".repeat(400);
        let v = parse(&digits).unwrap();
        assert_eq!(v.to_schema_instance().as_f64(), Some(f64::MAX));
    }

    #[test]
    fn truthiness_is_pythons() {
        for (text, want) in [
            ("null", false),
            ("{}", false),
            ("[]", false),
            ("\"\"", false),
            ("0", false),
            ("0.0", false),
            ("false", false),
            ("{\"a\": 1}", true),
            ("[0]", true),
            ("-1", true),
            ("NaN", true),
        ] {
            assert_eq!(parse(text).unwrap().is_truthy(), want, "{text}");
        }
    }
}
