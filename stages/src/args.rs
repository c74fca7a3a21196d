//! Stage arguments, read in one place for every stage: osbuild HEAD's arguments file
//! (`/run/osbuild/api/arguments`: tree, options, inputs, devices, mounts) when it exists, else
//! v10's `{"tree", "sources", "options"}` on stdin; and typed, error-reporting access to the
//! options, so every stage names the offending option the same way
//! (`option "users.alice.uid": ...`).

use std::io::Read;
use std::ops::Deref;
use std::path::{Path, PathBuf};

use osbuild_protocol::args::{ArgsError, StageArgs};
use osbuild_protocol::paths::ARGUMENTS_FILE;
use serde_json::{Map, Value};

use crate::error::StageError;
use crate::head::{Head, Input};

/// What a stage receives (the protocol's [`StageArgs`]: `tree`, `sources`, `options`, plus
/// HEAD's inputs, devices and mounts when run with HEAD's protocol), with typed access to
/// the options.
#[derive(Debug)]
pub struct Args {
    base: StageArgs,
    /// HEAD's members; `None` under v10's protocol.
    head: Option<Head>,
}

impl Deref for Args {
    type Target = StageArgs;

    fn deref(&self) -> &StageArgs {
        &self.base
    }
}

fn args_error(e: ArgsError) -> String {
    match e {
        ArgsError::NotJson(e) => e.to_string(),
        ArgsError::NotObject => "expected a JSON object".into(),
        e => e.to_string(),
    }
}

impl Args {
    /// Reads the arguments: HEAD's arguments file when the engine wrote one, else stdin.
    pub fn load() -> Result<Args, StageError> {
        match std::fs::read_to_string(ARGUMENTS_FILE) {
            Ok(text) => Args::parse_head(&text).map_err(|m| {
                StageError::Other(format!("invalid stage arguments in {ARGUMENTS_FILE}: {m}"))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut input = String::new();
                std::io::stdin()
                    .read_to_string(&mut input)
                    .map_err(|e| StageError::Arguments(e.to_string()))?;
                Args::parse(&input)
            }
            Err(e) => Err(StageError::io("cannot read", ARGUMENTS_FILE, e)),
        }
    }

    /// Parses v10's stdin text.
    pub fn parse(input: &str) -> Result<Args, StageError> {
        let base = StageArgs::parse(input).map_err(|e| StageError::Arguments(args_error(e)))?;
        Ok(Args { base, head: None })
    }

    /// Parses HEAD's arguments file.
    pub fn parse_head(text: &str) -> Result<Args, String> {
        let base = StageArgs::parse(text).map_err(args_error)?;
        let obj: Map<String, Value> = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let head = Head::from_object(&obj)?;
        Ok(Args {
            base,
            head: Some(head),
        })
    }

    /// HEAD's members, or an error for a stage that needs them and was run with v10's
    /// protocol (no inputs, devices or mounts).
    fn head(&self) -> Result<&Head, StageError> {
        self.head.as_ref().ok_or_else(|| {
            StageError::Other(
                "this stage needs osbuild's v2 module protocol (inputs, devices, mounts): \
                 run it from a version 2 manifest"
                    .into(),
            )
        })
    }

    /// The node of device `name`.
    pub fn device(&self, name: &str) -> Result<&Path, StageError> {
        self.head()?.device(name)
    }

    /// Input `name`.
    pub fn input(&self, name: &str) -> Result<&Input, StageError> {
        self.head()?.input(name)
    }

    /// Whether the stage runs under osbuild HEAD's protocol (from a version 2 manifest).
    pub fn is_head(&self) -> bool {
        self.head.is_some()
    }

    /// The files of files input `name`: name and path of each; see [`Head::files`].
    pub fn input_files(&self, name: &str) -> Result<Vec<(String, PathBuf)>, StageError> {
        self.head()?.files(name)
    }

    /// The one file of files input `name`.
    pub fn single_file(&self, name: &str) -> Result<PathBuf, StageError> {
        self.head()?.single_file(name)
    }

    /// Location `loc` (`tree://`, `mount://`, `input://`) as a path; see
    /// [`Head::location`]. Under v10's protocol only tree locations exist.
    pub fn location(&self, loc: &str, follow_last: bool) -> Result<PathBuf, StageError> {
        match &self.head {
            Some(head) => head.location(&self.tree, loc, follow_last),
            None if loc.contains("://") && !loc.starts_with("tree://") => {
                Err(self.head().expect_err("v10's protocol has no head"))
            }
            None => Head::default().location(&self.tree, loc, follow_last),
        }
    }

    /// The root location `loc` is in; see [`Head::location_root`].
    pub fn location_root(&self, loc: &str) -> Result<PathBuf, StageError> {
        self.head()?.location_root(&self.tree, loc)
    }

    /// An optional object whose values are strings (`{"tree:///etc": "system_u:..."}`), in
    /// document order.
    pub fn str_map(&self, key: &str) -> Result<Vec<(&str, &str)>, StageError> {
        match self.options.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.as_str(), s.as_str())),
                    _ => Err(StageError::option(format!("{key}.{k}"), "must be a string")),
                })
                .collect(),
            Some(_) => Err(StageError::option(key, "must be an object")),
        }
    }

    /// The files named by checksum in the required list option `key`, as paths of the
    /// `org.osbuild.files` source (`<sources>/org.osbuild.files/<checksum>`), each checked to
    /// be a well-formed checksum and present.
    pub fn source_files(&self, key: &str) -> Result<Vec<(String, PathBuf)>, StageError> {
        let checksums = self.opts().required_str_list(key)?;
        let sources = self
            .sources
            .as_ref()
            .ok_or_else(|| StageError::Arguments("\"sources\" is required by this stage".into()))?;
        let files = sources.join("org.osbuild.files");
        let mut out = Vec::with_capacity(checksums.len());
        for (i, c) in checksums.iter().enumerate() {
            check_checksum(c).map_err(|m| StageError::option(format!("{key}[{i}]"), m))?;
            let path = files.join(c);
            if !path.is_file() {
                return Err(StageError::Other(format!(
                    "package {c} is not in the sources ({} does not exist); \
                     is it listed in the manifest's org.osbuild.files source?",
                    path.display()
                )));
            }
            out.push((c.to_string(), path));
        }
        Ok(out)
    }

    /// The options, for typed access.
    pub fn opts(&self) -> Opts<'_> {
        Opts {
            map: &self.options,
            prefix: String::new(),
        }
    }
}

/// A JSON object of options plus its dotted path for messages.
#[derive(Debug, Clone)]
pub struct Opts<'a> {
    map: &'a Map<String, Value>,
    prefix: String,
}

impl<'a> Opts<'a> {
    /// The dotted name of `key` in this object, as printed in errors.
    pub fn name(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.prefix)
        }
    }

    /// Every member of this object, in document order (for free-form sections).
    pub fn entries(&self) -> impl Iterator<Item = (&'a str, &'a Value)> {
        self.map.iter().map(|(k, v)| (k.as_str(), v))
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        match self.map.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    fn wrong_type(&self, key: &str, expected: &str) -> StageError {
        StageError::option(self.name(key), format!("must be {expected}"))
    }

    /// A required string.
    pub fn str(&self, key: &str) -> Result<&'a str, StageError> {
        self.opt_str(key)?
            .ok_or_else(|| StageError::option(self.name(key), "is required"))
    }

    /// An optional string.
    pub fn opt_str(&self, key: &str) -> Result<Option<&'a str>, StageError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.wrong_type(key, "a string")),
        }
    }

    /// An optional number that must be a whole number in `0..=u32::MAX` (uids, gids).
    pub fn opt_u32(&self, key: &str) -> Result<Option<u32>, StageError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => {
                let whole = n.as_u64().or_else(|| {
                    n.as_f64()
                        .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u32::MAX as f64)
                        .map(|f| f as u64)
                });
                match whole.and_then(|v| u32::try_from(v).ok()) {
                    Some(v) => Ok(Some(v)),
                    None => Err(self.wrong_type(key, "a whole number between 0 and 4294967295")),
                }
            }
            Some(_) => Err(self.wrong_type(key, "a number")),
        }
    }

    /// An optional boolean.
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, StageError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.wrong_type(key, "true or false")),
        }
    }

    /// An optional boolean, `default` when absent.
    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool, StageError> {
        Ok(self.opt_bool(key)?.unwrap_or(default))
    }

    /// An optional whole number.
    pub fn opt_i64(&self, key: &str) -> Result<Option<i64>, StageError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
                .map(Some)
                .ok_or_else(|| self.wrong_type(key, "a whole number")),
            Some(_) => Err(self.wrong_type(key, "a whole number")),
        }
    }

    /// An optional object.
    pub fn opt_object(&self, key: &str) -> Result<Option<Opts<'a>>, StageError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(Opts {
                map: m,
                prefix: self.name(key),
            })),
            Some(_) => Err(self.wrong_type(key, "an object")),
        }
    }

    /// A string that must be one of `allowed`, `default` when absent.
    pub fn choice(
        &self,
        key: &str,
        allowed: &[&'a str],
        default: Option<&'a str>,
    ) -> Result<&'a str, StageError> {
        let value = match (self.opt_str(key)?, default) {
            (Some(v), _) => v,
            (None, Some(d)) => return Ok(d),
            (None, None) => return Err(StageError::option(self.name(key), "is required")),
        };
        if allowed.contains(&value) {
            Ok(value)
        } else {
            Err(StageError::option(
                self.name(key),
                format!("{value:?} is not one of {}", allowed.join(", ")),
            ))
        }
    }

    /// An optional number, as JSON number.
    pub fn opt_number(&self, key: &str) -> Result<Option<&'a serde_json::Number>, StageError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => Ok(Some(n)),
            Some(_) => Err(self.wrong_type(key, "a number")),
        }
    }

    /// An optional array of strings; absent is empty.
    pub fn str_list(&self, key: &str) -> Result<Vec<&'a str>, StageError> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) => Ok(s.as_str()),
                    _ => Err(StageError::option(
                        format!("{}[{i}]", self.name(key)),
                        "must be a string",
                    )),
                })
                .collect(),
            Some(_) => Err(self.wrong_type(key, "an array of strings")),
        }
    }

    /// An optional array of strings, `None` when absent.
    pub fn opt_str_list(&self, key: &str) -> Result<Option<Vec<&'a str>>, StageError> {
        match self.get(key) {
            None => Ok(None),
            Some(_) => self.str_list(key).map(Some),
        }
    }

    /// A required array of strings.
    pub fn required_str_list(&self, key: &str) -> Result<Vec<&'a str>, StageError> {
        if self.get(key).is_none() {
            return Err(StageError::option(self.name(key), "is required"));
        }
        self.str_list(key)
    }

    /// An optional array of whole numbers.
    pub fn opt_i64_list(&self, key: &str) -> Result<Option<Vec<i64>>, StageError> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        let items = value
            .as_array()
            .ok_or_else(|| self.wrong_type(key, "an array of whole numbers"))?;
        items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_i64().ok_or_else(|| {
                    StageError::option(format!("{}[{i}]", self.name(key)), "must be a whole number")
                })
            })
            .collect::<Result<Vec<i64>, StageError>>()
            .map(Some)
    }

    /// An optional array of objects.
    pub fn opt_object_list(&self, key: &str) -> Result<Option<Vec<Opts<'a>>>, StageError> {
        match self.get(key) {
            None => Ok(None),
            Some(_) => self.object_list(key).map(Some),
        }
    }

    /// A required array of objects.
    pub fn object_list(&self, key: &str) -> Result<Vec<Opts<'a>>, StageError> {
        match self.get(key) {
            None => Err(StageError::option(self.name(key), "is required")),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::Object(m) => Ok(Opts {
                        map: m,
                        prefix: format!("{}[{i}]", self.name(key)),
                    }),
                    _ => Err(StageError::option(
                        format!("{}[{i}]", self.name(key)),
                        "must be an object",
                    )),
                })
                .collect(),
            Some(_) => Err(self.wrong_type(key, "an array of objects")),
        }
    }

    /// An optional object whose values are objects (`{"alice": {...}}`), in document order;
    /// absent is empty.
    pub fn object_map(&self, key: &str) -> Result<Vec<(&'a str, Opts<'a>)>, StageError> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| {
                    let name = format!("{}.{k}", self.name(key));
                    match v {
                        Value::Object(inner) => Ok((
                            k.as_str(),
                            Opts {
                                map: inner,
                                prefix: name,
                            },
                        )),
                        _ => Err(StageError::option(name, "must be an object")),
                    }
                })
                .collect(),
            Some(_) => Err(self.wrong_type(key, "an object")),
        }
    }
}

/// Checks that `c` looks like `ALGORITHM:HEX` for a digest the files source knows: nothing
/// that could name another path.
pub fn check_checksum(c: &str) -> Result<(), String> {
    let Some((algo, hex)) = c.split_once(':') else {
        return Err(format!(
            "{c:?} is not a checksum (expected e.g. sha256:<hex>)"
        ));
    };
    let len = match algo {
        "md5" => 32,
        "sha1" => 40,
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err(format!("{c:?}: unknown checksum algorithm {algo:?}")),
    };
    if hex.len() != len
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(format!(
            "{c:?}: expected {len} lowercase hexadecimal digits after \"{algo}:\""
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_arguments() {
        /// Input, then the tree and option count or the error text.
        type Case<'a> = (&'a str, Result<(&'a str, usize), &'a str>);
        let cases: &[Case] = &[
            (r#"{"tree": "/t", "options": {"a": 1}}"#, Ok(("/t", 1))),
            (r#"{"tree": "/t", "sources": "/s"}"#, Ok(("/t", 0))),
            (r#"{"tree": "/t", "options": null}"#, Ok(("/t", 0))),
            (
                r#"{"options": {}}"#,
                Err("\"tree\" must be a non-empty string"),
            ),
            (
                r#"{"tree": "/t", "options": []}"#,
                Err("\"options\" must be an object"),
            ),
            (r#"[]"#, Err("expected a JSON object")),
            (r#"{"tree": "#, Err("EOF while parsing")),
        ];
        for (input, want) in cases {
            match (Args::parse(input), want) {
                (Ok(a), Ok((tree, n))) => {
                    assert_eq!(a.tree, PathBuf::from(tree), "{input}");
                    assert_eq!(a.options.len(), *n, "{input}");
                }
                (Err(e), Err(msg)) => assert!(e.to_string().contains(msg), "{input}: {e}"),
                (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn option_errors_name_the_option() {
        let args = Args::parse(
            r#"{"tree": "/t", "options": {"s": 1, "l": ["a", 2], "u": {"bob": {"uid": -1, "g": 1.5}}, "n": 7.0}}"#,
        )
        .unwrap();
        let o = args.opts();
        let cases: Vec<(Result<(), StageError>, &str)> = vec![
            (o.str("s").map(drop), "option \"s\": must be a string"),
            (
                o.str("missing").map(drop),
                "option \"missing\": is required",
            ),
            (
                o.str_list("l").map(drop),
                "option \"l[1]\": must be a string",
            ),
            (
                o.object_map("u").unwrap()[0].1.opt_u32("uid").map(drop),
                "option \"u.bob.uid\": must be a whole number between 0 and 4294967295",
            ),
            (
                o.object_map("u").unwrap()[0].1.opt_u32("g").map(drop),
                "option \"u.bob.g\": must be a whole number",
            ),
        ];
        for (got, want) in cases {
            let e = got.unwrap_err().to_string();
            assert!(e.starts_with(want), "{e} does not start with {want}");
        }
        assert_eq!(o.opt_u32("n").unwrap(), Some(7));
    }
}
