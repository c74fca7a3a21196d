//! osbuild HEAD's side of the stage arguments: the `devices`, `inputs` and `mounts` a v2
//! stage gets in `/run/osbuild/api/arguments` beside its tree and options, and the locations
//! (`tree:///p`, `mount://NAME/p`, `input://NAME/p`) that stages taking URLs resolve against
//! them, as HEAD's `parsing.parse_location` does but never outside the root they name.

use std::path::{Component, Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::StageError;
use crate::tree;

/// One of the stage's inputs: where it is mapped and the `data` its input service gave.
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    pub path: PathBuf,
    pub data: Value,
}

/// What HEAD's arguments file adds to v10's `{"tree", "options"}`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Head {
    /// `paths.mounts`: the root of every mount (a `mount:///p` location without a name).
    pub mounts_root: PathBuf,
    /// Device name to its node (`/dev/loop0`).
    pub devices: Vec<(String, PathBuf)>,
    pub inputs: Vec<(String, Input)>,
    /// Mount name to where it is mounted.
    pub mounts: Vec<(String, PathBuf)>,
}

/// A malformed member of the arguments file.
fn malformed(what: &str, why: &str) -> String {
    format!("\"{what}\" {why}")
}

/// A named entry of `devices`, `inputs` or `mounts`: its name, its `path`, the whole entry.
type NamedPath<'a> = (String, PathBuf, &'a Map<String, Value>);

/// `{name: {"path": "...", ...}}` as [`NamedPath`]s.
fn named_paths<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<Vec<NamedPath<'a>>, String> {
    let group = match obj.get(key) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(malformed(key, "must be an object")),
    };
    group
        .iter()
        .map(|(name, entry)| {
            let entry = entry
                .as_object()
                .ok_or_else(|| malformed(&format!("{key}.{name}"), "must be an object"))?;
            let path = entry
                .get("path")
                .and_then(Value::as_str)
                .ok_or_else(|| malformed(&format!("{key}.{name}.path"), "must be a string"))?;
            Ok((name.clone(), PathBuf::from(path), entry))
        })
        .collect()
}

impl Head {
    /// Reads HEAD's members of the arguments object.
    pub fn from_object(obj: &Map<String, Value>) -> Result<Head, String> {
        let mounts_root = obj
            .get("paths")
            .and_then(|p| p.get("mounts"))
            .and_then(Value::as_str)
            .unwrap_or(osbuild_protocol::paths::MOUNTS_DIR);
        let plain =
            |key| named_paths(obj, key).map(|v| v.into_iter().map(|(n, p, _)| (n, p)).collect());
        let inputs = named_paths(obj, "inputs")?
            .into_iter()
            .map(|(name, path, entry)| {
                let data = entry.get("data").cloned().unwrap_or(Value::Null);
                (name, Input { path, data })
            })
            .collect();
        Ok(Head {
            mounts_root: PathBuf::from(mounts_root),
            devices: plain("devices")?,
            inputs,
            mounts: plain("mounts")?,
        })
    }

    /// The node of device `name` (e.g. `"device"` for the mkfs and sfdisk stages).
    pub fn device(&self, name: &str) -> Result<&Path, StageError> {
        find(&self.devices, name)
            .map(PathBuf::as_path)
            .ok_or_else(|| missing("device", name, &self.devices))
    }

    /// Input `name`.
    pub fn input(&self, name: &str) -> Result<&Input, StageError> {
        find(&self.inputs, name).ok_or_else(|| missing("input", name, &self.inputs))
    }

    /// The files of files input `name`, in the order its input service listed them: each
    /// name (a checksum for downloaded files) and its path in the input's directory. A name
    /// that is not a plain relative path is refused.
    pub fn files(&self, name: &str) -> Result<Vec<(String, PathBuf)>, StageError> {
        let input = self.input(name)?;
        let files = input
            .data
            .get("files")
            .and_then(Value::as_object)
            .ok_or_else(|| {
                StageError::Other(format!(
                    "input {name:?} is not a files input (no \"files\")"
                ))
            })?;
        files
            .keys()
            .map(|file| {
                let relative = Path::new(file.trim_start_matches('/'));
                let plain = relative.components().next().is_some()
                    && relative
                        .components()
                        .all(|c| matches!(c, Component::Normal(_)));
                if !plain {
                    return Err(StageError::Other(format!(
                        "input {name:?}: file {file:?} is not a plain path"
                    )));
                }
                Ok((file.clone(), input.path.join(relative)))
            })
            .collect()
    }

    /// The file of input `name` when it holds exactly one (HEAD's qemu and untar stages).
    pub fn single_file(&self, name: &str) -> Result<PathBuf, StageError> {
        let mut files = self.files(name)?;
        if files.len() != 1 {
            return Err(StageError::Other(format!(
                "input {name:?} must hold exactly one file, it holds {}",
                files.len()
            )));
        }
        Ok(files.remove(0).1)
    }

    /// The root a location's scheme and name stand for.
    fn root<'a>(&'a self, tree: &'a Path, loc: &'a str) -> Result<(&'a Path, &'a str), String> {
        let (scheme, rest) = loc
            .split_once("://")
            .ok_or_else(|| format!("{loc:?} is not a location (scheme://name/path)"))?;
        let (name, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let root = match scheme {
            "tree" => tree,
            "mount" if name.is_empty() => &self.mounts_root,
            "mount" => find(&self.mounts, name)
                .ok_or_else(|| format!("{loc:?}: unknown mount {name:?}"))?,
            "input" => {
                &find(&self.inputs, name)
                    .ok_or_else(|| format!("{loc:?}: unknown input {name:?}"))?
                    .path
            }
            other => return Err(format!("{loc:?}: unsupported scheme {other:?}")),
        };
        if !path.starts_with('/') {
            return Err(format!("{loc:?}: the path must start with '/'"));
        }
        Ok((root, path))
    }

    /// The root location `loc` is in: the tree, a mount's or an input's directory (a bare
    /// path is in the tree).
    pub fn location_root(&self, tree: &Path, loc: &str) -> Result<PathBuf, StageError> {
        if !loc.contains("://") {
            return Ok(tree.to_path_buf());
        }
        self.root(tree, loc)
            .map(|(root, _)| root.to_path_buf())
            .map_err(|m| StageError::Other(format!("location {m}")))
    }

    /// Resolves location `loc` (`tree:///p`, `mount://NAME/p`, `mount:///p`, `input://NAME/p`;
    /// a bare path is `tree://` + path) to a path inside its root. Symlinks are followed
    /// inside the root; the last component is followed only with `follow_last` (a link to be
    /// replaced, a directory to create). A trailing `/` keeps its rsync meaning (`p/.`: the
    /// contents of `p`).
    pub fn location(
        &self,
        tree: &Path,
        loc: &str,
        follow_last: bool,
    ) -> Result<PathBuf, StageError> {
        let bad = |m: String| StageError::Other(format!("location {m}"));
        let owned;
        let loc = if loc.contains("://") {
            loc
        } else {
            owned = format!(
                "tree://{}{loc}",
                if loc.starts_with('/') { "" } else { "/" }
            );
            &owned
        };
        let (root, path) = self.root(tree, loc).map_err(bad)?;
        let normal = normalize(path).ok_or_else(|| bad(format!("{loc:?} leaves its root")))?;
        let contents = path.ends_with('/');
        let resolved = match normal.rsplit_once('/') {
            _ if normal.is_empty() => root.to_path_buf(),
            _ if follow_last || contents => tree::tree_path(root, &normal)?,
            Some((parent, last)) => tree::tree_path(root, parent)?.join(last),
            None => root.join(&normal),
        };
        Ok(if contents {
            resolved.join(".")
        } else {
            resolved
        })
    }
}

/// `path` without `.`, empty components and the `..` it can undo, relative (`a/b`); `None`
/// when a `..` would climb above the root.
fn normalize(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

fn find<'a, T>(items: &'a [(String, T)], name: &str) -> Option<&'a T> {
    items.iter().find(|(n, _)| n == name).map(|(_, t)| t)
}

fn missing<T>(kind: &str, name: &str, have: &[(String, T)]) -> StageError {
    let names: Vec<&str> = have.iter().map(|(n, _)| n.as_str()).collect();
    StageError::Other(format!(
        "this stage needs the {kind} {name:?}; the stage has {}",
        if names.is_empty() {
            format!("no {kind}s")
        } else {
            format!("{kind}s {}", names.join(", "))
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn head() -> Head {
        let args = json!({
            "tree": "/run/osbuild/tree",
            "paths": {"devices": "/dev", "inputs": "/run/osbuild/inputs", "mounts": "/m"},
            "devices": {"device": {"path": "/dev/loop3", "node": {"major": 7, "minor": 3}}},
            "inputs": {"tree": {"path": "/i/tree", "data": {}},
                       "image": {"path": "/i/image", "data": {"files": {"disk.raw": {}}}}},
            "mounts": {"root": {"path": "/m/."}, "boot": {"path": "/m/boot"}},
            "options": {}
        });
        Head::from_object(args.as_object().unwrap()).unwrap()
    }

    #[test]
    fn devices_inputs_and_single_files() {
        let h = head();
        assert_eq!(h.device("device").unwrap(), Path::new("/dev/loop3"));
        assert_eq!(
            h.device("disk").unwrap_err().to_string(),
            "this stage needs the device \"disk\"; the stage has devices device"
        );
        assert_eq!(
            h.single_file("image").unwrap(),
            Path::new("/i/image/disk.raw")
        );
        assert!(h
            .single_file("tree")
            .unwrap_err()
            .to_string()
            .contains("not a files input"));
    }

    #[test]
    fn locations_resolve_inside_their_root() {
        let tree = tempfile::tempdir().unwrap();
        let t = tree.path();
        std::fs::create_dir(t.join("real")).unwrap();
        std::os::unix::fs::symlink("/real", t.join("abs")).unwrap();
        let h = head();
        let cases: &[(&str, bool, Result<PathBuf, &str>)] = &[
            ("tree:///etc/x", false, Ok(t.join("etc/x"))),
            ("tree:///", false, Ok(t.join("."))),
            ("tree:///abs/x", false, Ok(t.join("real/x"))),
            ("tree:///abs", false, Ok(t.join("abs"))),
            ("tree:///abs", true, Ok(t.join("real"))),
            ("tree:///abs/", false, Ok(t.join("real/."))),
            ("tree:///a/../b", false, Ok(t.join("b"))),
            ("relative/dir", false, Ok(t.join("relative/dir"))),
            ("/abs/y", false, Ok(t.join("real/y"))),
            ("mount://boot/efi", false, Ok(PathBuf::from("/m/boot/efi"))),
            ("mount://root/", false, Ok(PathBuf::from("/m/./."))),
            ("input://tree/", false, Ok(PathBuf::from("/i/tree/."))),
            ("mount:///boot/x", false, Ok(PathBuf::from("/m/boot/x"))),
            (
                "input://tree/usr/",
                false,
                Ok(PathBuf::from("/i/tree/usr/.")),
            ),
            ("tree:///../etc", false, Err("leaves its root")),
            ("mount://nope/x", false, Err("unknown mount \"nope\"")),
            ("input://nope/x", false, Err("unknown input \"nope\"")),
            ("ftp://host/x", false, Err("unsupported scheme \"ftp\"")),
            ("mount://boot", false, Err("must start with '/'")),
        ];
        for (loc, follow, want) in cases {
            match (h.location(t, loc, *follow), want) {
                (Ok(got), Ok(want)) => assert_eq!(&got, want, "{loc}"),
                (Err(e), Err(msg)) => assert!(e.to_string().contains(msg), "{loc}: {e}"),
                (got, want) => panic!("{loc}: got {got:?}, want {want:?}"),
            }
        }
    }
}
