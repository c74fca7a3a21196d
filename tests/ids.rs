//! The ids of every manifest in the public vectors (`vectors/ids/NAME.json` with the ids
//! osbuild v10 computes in `NAME.ids.json`), and what a user sees when a manifest is wrong.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use osbuild::json::{self, Value};
use osbuild::manifest::{self, ManifestError, Pipeline};
use osbuild::modules::Index;

/// The vectors, copied into the repository from osbuild v10's ids (`tests/vectors/README.md`).
fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/ids")
}

/// The ids of `p` in the `.ids.json` shape: tree_id, output_id, stages, build (if any).
fn ids_of(p: &Pipeline) -> Value {
    let id = |i: Option<&osbuild::id::ObjectId>| Value::from(i.map(|i| i.as_str()));
    let mut m = json::Map::new();
    m.insert("tree_id".into(), id(p.tree_id()));
    m.insert("output_id".into(), id(p.output_id()));
    m.insert(
        "stages".into(),
        Value::Array(
            p.stages
                .iter()
                .map(|s| Value::from(s.id.as_str()))
                .collect(),
        ),
    );
    if let Some(b) = &p.build {
        m.insert("build".into(), ids_of(&b.pipeline));
    }
    Value::Object(m)
}

#[test]
fn every_vector_gives_v10_ids() {
    for (name, text, want) in common::id_vectors(&vectors_dir(), 12) {
        let m = manifest::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            json::dumps(&ids_of(&m.pipeline)),
            json::dumps(&want),
            "{name}"
        );
    }
}

#[test]
fn m2_canonical_options_text() {
    let text = std::fs::read_to_string(vectors_dir().join("m2.json")).unwrap();
    let m = manifest::parse(&text).unwrap();
    assert_eq!(
        json::dumps(&m.pipeline.stages[0].options),
        r#"{"alpha": "h\u00e9llo \u2603 \ud83d\ude00", "big": 18446744073709551616, "ctl": "tab\tnl\n\u007f/\"\\", "neg": 0, "nested": {"a": {"x": null, "y": true}, "b": [1, 2.0, 1e+100, -0.0, 0.1, 1e+16, 1000000000000000.0, 1e-05, 100.0]}, "zeta": 1.5}"#
    );
}

#[test]
fn ids_do_not_depend_on_runner_or_sources() {
    let dir = vectors_dir();
    let m3 = std::fs::read_to_string(dir.join("m3.json")).unwrap();
    let other = m3.replace("org.osbuild.linux", "org.osbuild.fedora30");
    assert_ne!(m3, other);
    let a = manifest::parse(&m3).unwrap();
    let b = manifest::parse(&other).unwrap();
    assert_eq!(a.ids(), b.ids());

    let m9 = std::fs::read_to_string(dir.join("m9.json")).unwrap();
    let no_sources = r#"{"pipeline":{"stages":[{"name":"org.osbuild.rpm","options":{"packages":["sha256:0000000000000000000000000000000000000000000000000000000000000000"]}}]}}"#;
    assert_eq!(
        manifest::parse(&m9).unwrap().ids(),
        manifest::parse(no_sources).unwrap().ids()
    );
}

/// A libdir with a Rust-like noop stage (no schema), v10 Python stages carrying STAGE_OPTS,
/// our meta.json format, one assembler and two runners.
fn libdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let put = |rel: &str, content: &str, exec: bool| {
        let p = dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        let mode = if exec { 0o755 } else { 0o644 };
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    put("stages/org.osbuild.noop", "\x7fELF", true);
    put(
        "stages/org.osbuild.hostname",
        "#!/usr/bin/python3\nSTAGE_DESC = \"Set system hostname\"\nSTAGE_OPTS = \"\"\"\n\"required\": [\"hostname\"],\n\"properties\": {\n  \"hostname\": {\"type\": \"string\"}\n}\n\"\"\"\n",
        true,
    );
    put("stages/org.osbuild.locale", "\x7fELF", true);
    put(
        "stages/org.osbuild.locale.meta.json",
        r#"{"summary": "Set locale", "description": [], "schema": {"additionalProperties": false, "required": ["language"], "properties": {"language": {"type": "string"}, "fs": {"type": "array", "items": {"type": "object", "properties": {"freq": {"type": "number"}}}}}}}"#,
        false,
    );
    put(
        "assemblers/org.osbuild.tar",
        "#!/usr/bin/python3\nSTAGE_OPTS = \"\"\"\n\"required\": [\"filename\"],\n\"properties\": {\"filename\": {\"type\": \"string\"}, \"compression\": {\"enum\": [\"xz\", \"gzip\"]}}\n\"\"\"\n",
        true,
    );
    put("assemblers/org.osbuild.noop", "\x7fELF", true);
    put("runners/org.osbuild.linux", "#!/bin/sh\n", true);
    put("runners/org.osbuild.fedora30", "#!/bin/sh\n", true);
    dir
}

fn invalid(text: &str, index: &Index) -> Vec<String> {
    match manifest::load(text, index) {
        Err(ManifestError::Invalid(errors)) => {
            let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
            // The Display of the whole error is those lines, one per line.
            assert_eq!(ManifestError::Invalid(errors).to_string(), lines.join("\n"));
            lines
        }
        other => panic!("expected validation errors for {text}, got {other:?}"),
    }
}

#[test]
fn load_accepts_valid_manifests_against_a_libdir() {
    let lib = libdir();
    let index = Index::new(lib.path());
    let dir = vectors_dir();
    for name in [
        "m1.json", "m3.json", "m5.json", "m6.json", "m7.json", "m10.json", "m11.json",
    ] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        let loaded = manifest::load(&text, &index).unwrap_or_else(|e| panic!("{name}: {e}"));
        let parsed = manifest::parse(&text).unwrap();
        assert_eq!(loaded.ids(), parsed.ids(), "{name}");
    }
}

#[test]
fn load_reports_every_error_with_its_path() {
    let lib = libdir();
    let index = Index::new(lib.path());
    let stages_dir = lib.path().join("stages");
    let text = r#"{"pipeline": {
        "build": {"pipeline": {"stages": [{"name": "org.osbuild.nope"}]}, "runner": "org.osbuild.debian12"},
        "stages": [
            {"name": "org.osbuild.noop", "options": {"anything": [1, 2]}},
            {"name": "org.osbuild.hostname", "options": {"hostname": 42}},
            {"name": "org.osbuild.locale", "options": {"fs": [{"freq": "1"}], "extra": true}},
            {"name": "org.osbuild.hostname"},
            {"name": "../stages/org.osbuild.noop"}
        ],
        "assembler": {"name": "org.osbuild.tar", "options": {"filename": "a.tar", "compression": "zip"}}
    }}"#;
    let got = invalid(text, &index);
    let want = [
        "pipeline.build.runner: no runner 'org.osbuild.debian12' and no older version of it in the libdir's runners/ (available: org.osbuild.fedora30, org.osbuild.linux); add one there as an executable or as a symlink to a runner that suits this OS, e.g. runners/org.osbuild.debian12 -> org.osbuild.linux".to_owned(),
        format!("pipeline.build.pipeline.stages[0].name: unknown stage 'org.osbuild.nope' (not in {})", stages_dir.display()),
        "pipeline.stages[1].options.hostname: 42 is not of type \"string\"".to_owned(),
        "pipeline.stages[2].options: Additional properties are not allowed ('extra' was unexpected)".to_owned(),
        "pipeline.stages[2].options: \"language\" is a required property".to_owned(),
        "pipeline.stages[2].options.fs[0].freq: \"1\" is not of type \"number\"".to_owned(),
        "pipeline.stages[3].options: \"hostname\" is a required property".to_owned(),
        format!("pipeline.stages[4].name: unknown stage '../stages/org.osbuild.noop' (not in {})", stages_dir.display()),
        "pipeline.assembler.options.compression: \"zip\" is not one of \"xz\" or \"gzip\"".to_owned(),
    ];
    let mut got_sorted = got.clone();
    got_sorted.sort();
    let mut want_sorted = want.to_vec();
    want_sorted.sort();
    assert_eq!(got_sorted, want_sorted, "got:\n{}", got.join("\n"));
}

#[test]
fn load_uses_bare_paths_for_the_bare_form() {
    let lib = libdir();
    let index = Index::new(lib.path());
    let got = invalid(
        r#"{"stages": [{"name": "org.osbuild.hostname", "options": {"hostname": []}}], "assembler": {"name": "org.osbuild.qemu"}}"#,
        &index,
    );
    assert_eq!(
        got,
        [
            "stages[0].options.hostname: [] is not of type \"string\"".to_owned(),
            format!(
                "assembler.name: unknown assembler 'org.osbuild.qemu' (not in {})",
                lib.path().join("assemblers").display()
            ),
        ]
    );
}

#[test]
fn load_reports_json_errors_with_line_and_column() {
    let lib = libdir();
    let index = Index::new(lib.path());
    let e = manifest::load(
        "{\"pipeline\": {\n  \"stages\": [\n    {\"name\": \"x\",}\n]}}",
        &index,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid JSON: line 3, column 18: expected a property name in double quotes, found '}'"
    );
}

#[test]
fn broken_module_description_is_reported_naming_the_file() {
    let lib = libdir();
    std::fs::write(
        lib.path().join("stages/org.osbuild.noop.meta.json"),
        "{\"schema\": ",
    )
    .unwrap();
    let index = Index::new(lib.path());
    let got = invalid(r#"{"stages": [{"name": "org.osbuild.noop"}]}"#, &index);
    assert_eq!(got.len(), 1);
    assert!(
        got[0].starts_with("stages[0]: invalid module description ")
            && got[0].contains("org.osbuild.noop.meta.json"),
        "{}",
        got[0]
    );
}

/// Validation sees the document that is hashed: a 40-digit integer and NaN are numbers to
/// v10's jsonschema, so the manifest loads, and its id is the one v10 computes.
#[test]
fn big_integers_and_nan_validate_as_numbers() {
    let lib = libdir();
    let index = Index::new(lib.path());
    let text = r#"{"pipeline": {"stages": [{"name": "org.osbuild.locale", "options": {"language": "C", "fs": [{"freq": 1234567890123456789012345678901234567890}, {"freq": NaN}]}}]}}"#;
    let loaded = manifest::load(text, &index).unwrap_or_else(|e| panic!("{e}"));
    // sha256(d("org.osbuild.locale") || d(None) || d(None) || d(options)), from v10's Python.
    let v10 = "c2b13536f67bf3dd34f036126dafccc11a12baceae6796ca78f5ca8303cb4746";
    assert_eq!(
        loaded
            .ids()
            .iter()
            .map(|id| id.as_str())
            .collect::<Vec<_>>(),
        [v10]
    );
}
