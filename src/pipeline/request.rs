//! One build request, checked in one place for every front end (`osbuild`, osbuildd's `Build`,
//! tests): the manifest and what overrides it (sources, secrets, checkpoints, build
//! environment). Each front end maps [`RequestError`] to its own exit codes or D-Bus errors.

use std::collections::BTreeSet;
use std::fmt;

use crate::id::ObjectId;
use crate::json::{self, ParseError, Value};
use crate::manifest::{self, Manifest, ManifestError};
use crate::modules::Index;

/// What a request may change besides the manifest, as the caller gave it (JSON texts, ids).
#[derive(Default)]
pub struct Overrides {
    /// Source options replacing the manifest's `"sources"` (a JSON object).
    pub sources: Option<String>,
    /// Secrets for the sources (`{SOURCE: {...}}`, a JSON object).
    pub secrets: Option<String>,
    /// Stage ids after which the tree is committed.
    pub checkpoints: Vec<String>,
    /// A build section `{"pipeline", "runner"}` to build in (it does not change ids).
    pub build_env: Option<String>,
    /// `SOURCE_DATE_EPOCH` for a reproducible build (seconds since 1970): every stage and the
    /// assembler see it, trees are clamped to it at commit, and it changes every id.
    pub source_epoch: Option<u64>,
}

/// Secrets for the sources: they reach the source processes' stdin and nothing else, and
/// `Debug` never shows them.
pub struct Secrets(Value);

impl Secrets {
    /// The `{SOURCE: {...}}` object, for the sources only.
    pub(crate) fn value(&self) -> &Value {
        &self.0
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secrets(<redacted>)")
    }
}

/// Why a request was refused. Messages never contain a secret.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("invalid manifest:\n{0}")]
    Manifest(ManifestError),
    #[error("invalid build environment:\n{0}")]
    BuildEnv(ManifestError),
    #[error("the sources are not valid JSON: {0}")]
    SourcesNotJson(ParseError),
    #[error("the sources must be a JSON object")]
    SourcesNotObject,
    #[error("the secrets are not valid JSON: {0}")]
    SecretsNotJson(ParseError),
    #[error("the secrets must be a JSON object")]
    SecretsNotObject,
    /// Every checkpoint that names no stage of the manifest, as given.
    #[error("checkpoint '{}' is not the id of a stage of this manifest", .0.join("', '"))]
    UnknownCheckpoints(Vec<String>),
}

/// A build request whose manifest, overrides and checkpoints are valid.
#[derive(Debug)]
pub struct Request {
    pub manifest: Manifest,
    /// Stage ids after which the tree is committed; each is a stage of the manifest.
    pub checkpoints: BTreeSet<ObjectId>,
    pub secrets: Option<Secrets>,
    /// The build is for a caller who is not root (osbuildd's): the sources, which run as root,
    /// read no host path for it (`file://` URLs, certificate files).
    pub unprivileged_caller: bool,
    /// The build's `SOURCE_DATE_EPOCH`, if reproducible (already mixed into the ids).
    pub source_epoch: Option<u64>,
}

impl Request {
    /// Loads `manifest` against the schemas of `index` and applies `overrides`, in this order:
    /// manifest, build environment, sources, secrets, checkpoints (the first problem wins).
    pub fn new(manifest: &str, index: &Index, overrides: Overrides) -> Result<Self, RequestError> {
        let mut manifest = manifest::load(manifest, index).map_err(RequestError::Manifest)?;
        // Before the build environment, which keeps the ids the manifest alone has.
        if let Some(epoch) = overrides.source_epoch {
            manifest.set_source_epoch(epoch);
        }
        if let Some(text) = &overrides.build_env {
            let build = manifest::parse_build_env(text).map_err(RequestError::BuildEnv)?;
            manifest.prepend_build_env(build);
        }
        if let Some(text) = &overrides.sources {
            manifest.sources = match json::parse(text) {
                Ok(Value::Object(map)) => map,
                Ok(_) => return Err(RequestError::SourcesNotObject),
                Err(e) => return Err(RequestError::SourcesNotJson(e)),
            };
        }
        let secrets = match overrides.secrets.as_deref().map(json::parse) {
            None => None,
            Some(Ok(v @ Value::Object(_))) => Some(Secrets(v)),
            Some(Ok(_)) => return Err(RequestError::SecretsNotObject),
            Some(Err(e)) => return Err(RequestError::SecretsNotJson(e)),
        };
        let checkpoints = checkpoints(&manifest, &overrides.checkpoints)?;
        Ok(Request {
            manifest,
            checkpoints,
            secrets,
            unprivileged_caller: false,
            source_epoch: overrides.source_epoch,
        })
    }
}

/// The checkpoints as ids of the manifest's stages; all unknown ones are reported together.
fn checkpoints(manifest: &Manifest, given: &[String]) -> Result<BTreeSet<ObjectId>, RequestError> {
    let known: BTreeSet<&ObjectId> = manifest.ids().into_iter().collect();
    let mut found = BTreeSet::new();
    let mut unknown = Vec::new();
    for c in given {
        match ObjectId::parse(c) {
            Ok(id) if known.contains(&id) => {
                found.insert(id);
            }
            _ => unknown.push(c.clone()),
        }
    }
    if unknown.is_empty() {
        Ok(found)
    } else {
        Err(RequestError::UnknownCheckpoints(unknown))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"{"pipeline": {"stages": [{"name": "org.osbuild.noop"}]}}"#;

    /// Loads [`MANIFEST`] against a libdir that has its one stage.
    fn request(overrides: Overrides) -> Result<Request, RequestError> {
        let lib = tempfile::tempdir().unwrap();
        std::fs::create_dir(lib.path().join("stages")).unwrap();
        let stage = lib.path().join("stages/org.osbuild.noop");
        std::fs::write(&stage, "#!/bin/sh\n").unwrap();
        let executable = std::os::unix::fs::PermissionsExt::from_mode(0o755);
        std::fs::set_permissions(&stage, executable).unwrap();
        Request::new(MANIFEST, &Index::new(lib.path()), overrides)
    }

    #[test]
    fn overrides_are_checked_once_here() {
        let bad = "f".repeat(64);
        let cases: Vec<(Overrides, &str)> = vec![
            (
                Overrides {
                    sources: Some("[]".into()),
                    ..Overrides::default()
                },
                "the sources must be a JSON object",
            ),
            (
                Overrides {
                    secrets: Some("\"hunter2\"".into()),
                    ..Overrides::default()
                },
                "the secrets must be a JSON object",
            ),
            (
                Overrides {
                    checkpoints: vec![bad.clone(), "x".into()],
                    ..Overrides::default()
                },
                "is not the id of a stage",
            ),
        ];
        for (o, want) in cases {
            let e = request(o).unwrap_err();
            assert!(e.to_string().contains(want), "{e}");
            assert!(!e.to_string().contains("hunter2"));
        }
        match request(Overrides {
            checkpoints: vec![bad.clone(), "x".into()],
            ..Overrides::default()
        }) {
            Err(RequestError::UnknownCheckpoints(list)) => assert_eq!(list, [bad, "x".into()]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let r = request(Overrides {
            secrets: Some(r#"{"org.osbuild.files": {"token": "hunter2"}}"#.into()),
            ..Overrides::default()
        })
        .unwrap();
        assert!(!format!("{r:?}").contains("hunter2"));
        assert!(r.secrets.is_some());
    }

    #[test]
    fn a_source_epoch_changes_every_id_and_only_then() {
        let ids = |epoch| {
            let r = request(Overrides {
                source_epoch: epoch,
                ..Overrides::default()
            })
            .unwrap();
            assert_eq!(r.source_epoch, epoch);
            r.manifest.pipeline.stages[0].id.to_string()
        };
        let plain = ids(None);
        let v10 = manifest::parse(MANIFEST).unwrap().pipeline.stages[0]
            .id
            .to_string();
        assert_eq!(plain, v10, "without an epoch the ids are v10's");
        assert_ne!(ids(Some(1_700_000_000)), plain);
        assert_eq!(ids(Some(1_700_000_000)), ids(Some(1_700_000_000)));
        assert_ne!(ids(Some(1_700_000_000)), ids(Some(1_700_000_001)));
    }
}
