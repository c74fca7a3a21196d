//! The `a{sv}` dictionaries of `org.osbuild.Builder1`, as typed structs both the daemon and
//! its clients ([`super::client`]) use: [`BuildOptions`] (the options of `Build`) and
//! [`ObjectInfo`] (one row of `ListObjects`).

use std::collections::HashMap;
use std::fmt;

use zbus::wire::serialized::Context;
use zbus::wire::{DeserializeDict, SerializeDict, Signature, Type, LE};
use zbus::OwnedVariant;

/// The options of `Build`; unknown keys and wrong types are refused.
#[derive(Default, PartialEq, SerializeDict, DeserializeDict, Type)]
#[zbus(signature = "a{sv}", deny_unknown_fields)]
pub struct BuildOptions {
    /// Stage ids after which the tree is committed (v1 manifests); for v2 manifests, `fnmatch`
    /// patterns over pipeline names, stage ids and stage types (osbuild HEAD's `--checkpoint`).
    pub checkpoints: Option<Vec<String>>,
    /// The pipelines (names or ids) of a v2 manifest to build: only they and what they need
    /// are built (osbuild HEAD's `--export`); clients fetch their trees with `ExportOutput`.
    pub exports: Option<Vec<String>>,
    /// Source options replacing the manifest's `"sources"` (a JSON object).
    pub sources: Option<String>,
    /// Secrets for the sources (a JSON object); never logged, never echoed.
    pub secrets: Option<String>,
    /// `SOURCE_DATE_EPOCH` for a reproducible build (changes every id).
    #[zbus(rename = "source-epoch")]
    pub source_epoch: Option<u64>,
}

/// Every option with the D-Bus type of its value, in the order error messages list them.
const OPTIONS: [(&str, &Signature); 5] = [
    ("checkpoints", <Vec<String> as Type>::SIGNATURE),
    ("sources", <String as Type>::SIGNATURE),
    ("secrets", <String as Type>::SIGNATURE),
    ("source-epoch", <u64 as Type>::SIGNATURE),
    ("exports", <Vec<String> as Type>::SIGNATURE),
];

impl BuildOptions {
    /// The options of a `Build` call, checked key by key so the error names the culprit.
    pub fn from_dict(dict: HashMap<String, OwnedVariant>) -> Result<Self, String> {
        let mut keys: Vec<_> = dict.iter().collect();
        keys.sort_by(|a, b| a.0.cmp(b.0));
        for (key, value) in keys {
            let Some((_, want)) = OPTIONS.iter().find(|(name, _)| name == key) else {
                let known: Vec<String> =
                    OPTIONS.iter().map(|(n, s)| format!("{n} ({s})")).collect();
                return Err(format!(
                    "unknown option '{key}'; known: {}",
                    known.join(", ")
                ));
            };
            if value.value_signature() != *want {
                return Err(format!("option '{key}' must be of type {want}"));
            }
        }
        // Keys and types are right: the typed decoding cannot disagree.
        let ctxt = Context::new(LE, 0);
        zbus::wire::to_bytes(ctxt, &dict)
            .and_then(|data| data.deserialize().map(|(options, _)| options))
            .map_err(|e| format!("invalid options: {e}"))
    }
}

impl fmt::Debug for BuildOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BuildOptions")
            .field("checkpoints", &self.checkpoints)
            .field("exports", &self.exports)
            .field("sources", &self.sources)
            .field("secrets", &self.secrets.as_ref().map(|_| "<redacted>"))
            .field("source_epoch", &self.source_epoch)
            .finish()
    }
}

/// One object of the store, as `ListObjects` reports it.
#[derive(Debug, Default, Clone, PartialEq, SerializeDict, DeserializeDict, Type)]
#[zbus(signature = "a{sv}")]
pub struct ObjectInfo {
    pub id: String,
    pub treesum: String,
    /// `tree` or `output`.
    pub kind: String,
    /// Bytes.
    pub size: u64,
    /// Unix seconds.
    pub created: u64,
    /// Unix seconds.
    pub last_used: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: Vec<(&str, OwnedVariant)>) -> HashMap<String, OwnedVariant> {
        pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    #[test]
    fn build_options_are_checked() {
        let s = |t: &str| OwnedVariant::from(zbus::Str::from(t.to_owned()));
        let ok = BuildOptions::from_dict(opts(vec![("sources", s("{}")), ("secrets", s("{}"))]))
            .unwrap();
        assert_eq!(ok.sources.as_deref(), Some("{}"));
        let secret = BuildOptions {
            secrets: Some("hunter2".into()),
            ..BuildOptions::default()
        };
        assert!(
            !format!("{secret:?}").contains("hunter2"),
            "secrets stay out of Debug"
        );
        let cases: Vec<(HashMap<String, OwnedVariant>, &str)> = vec![
            (
                opts(vec![("libdir", s("/x"))]),
                "unknown option 'libdir'; known: checkpoints (as), sources (s), secrets (s), source-epoch (t), exports (as)",
            ),
            (
                opts(vec![("sources", OwnedVariant::from(3u32))]),
                "option 'sources' must be of type s",
            ),
            (
                opts(vec![("checkpoints", s("abc"))]),
                "option 'checkpoints' must be of type as",
            ),
            (
                opts(vec![("source-epoch", s("1700000000"))]),
                "option 'source-epoch' must be of type t",
            ),
            (
                opts(vec![("exports", s("image"))]),
                "option 'exports' must be of type as",
            ),
        ];
        for (o, want) in cases {
            match BuildOptions::from_dict(o) {
                Err(m) => assert_eq!(m, want),
                Ok(_) => panic!("accepted: {want}"),
            }
        }
    }

    #[test]
    fn build_options_round_trip_through_a_dict() {
        let sent = BuildOptions {
            checkpoints: Some(vec!["a".repeat(64)]),
            exports: Some(vec!["image".into(), "build".into()]),
            sources: Some("{}".into()),
            secrets: None,
            source_epoch: Some(1_700_000_000),
        };
        let ctxt = Context::new(LE, 0);
        let data = zbus::wire::to_bytes(ctxt, &sent).unwrap();
        let (dict, _): (HashMap<String, OwnedVariant>, _) = data.deserialize().unwrap();
        assert!(!dict.contains_key("secrets"), "unset options are not sent");
        assert_eq!(BuildOptions::from_dict(dict).unwrap(), sent);
    }
}
