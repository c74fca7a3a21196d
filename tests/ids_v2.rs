//! v2 manifests: the ids of every vector (`vectors/v2/NAME.json`, with the ids and the
//! `--inspect` output osbuild HEAD's own code computes in `NAME.ids.json`), and the errors a
//! user sees, with their paths, when a v2 manifest is wrong.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use osbuild::json::{self, Map, Value};
use osbuild::manifest::{self, v2, Document, ManifestError};
use osbuild::modules::Index;

/// The host runner HEAD showed when the vectors were computed (on Debian 12).
const HOST_RUNNER: &str = "org.osbuild.debian";

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/v2")
}

fn ids_by_name<'a>(items: impl Iterator<Item = (&'a String, &'a osbuild::id::ObjectId)>) -> Value {
    Value::Object(
        items
            .map(|(name, id)| (name.clone(), Value::from(id.as_str())))
            .collect(),
    )
}

fn stage_ids(s: &v2::Stage) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), Value::from(s.id.as_str()));
    m.insert(
        "inputs".into(),
        ids_by_name(s.inputs.iter().map(|(n, i)| (n, &i.id))),
    );
    m.insert(
        "devices".into(),
        ids_by_name(s.devices.iter().map(|d| (&d.name, &d.id))),
    );
    m.insert(
        "mounts".into(),
        ids_by_name(s.mounts.iter().map(|x| (&x.name, &x.id))),
    );
    Value::Object(m)
}

/// The ids of `m` in the `.ids.json` shape.
fn ids_of(m: &v2::Manifest) -> Value {
    let id = |i: Option<&osbuild::id::ObjectId>| Value::from(i.map(|i| i.as_str()));
    let pipelines = m.pipelines.iter().map(|p| {
        let mut d = Map::new();
        d.insert("name".into(), Value::from(p.name.as_str()));
        d.insert("id".into(), id(p.id()));
        d.insert("build".into(), id(p.build.as_ref()));
        d.insert(
            "stages".into(),
            Value::Array(p.stages.iter().map(stage_ids).collect()),
        );
        Value::Object(d)
    });
    let mut d = Map::new();
    d.insert("pipelines".into(), Value::Array(pipelines.collect()));
    d.insert("inspect".into(), m.describe(Some(HOST_RUNNER)));
    Value::Object(d)
}

fn parse_v2(text: &str) -> Result<v2::Manifest, ManifestError> {
    match manifest::parse_document(text)? {
        Document::V2(m) => Ok(m),
        Document::V1(_) => panic!("read as v1: {text}"),
    }
}

#[test]
fn every_vector_gives_head_ids() {
    for (name, text, want) in common::id_vectors(&vectors_dir(), 10) {
        let m = parse_v2(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = ids_of(&m);
        assert_eq!(
            json::dumps(got.get("pipelines").unwrap()),
            json::dumps(want.get("pipelines").unwrap()),
            "{name}"
        );
        assert_eq!(
            json::dumps(got.get("inspect").unwrap()),
            json::dumps(want.get("inspect").unwrap()),
            "{name}: --inspect"
        );
    }
}

#[test]
fn v2_is_chosen_by_version_and_not_taken_by_the_v1_path() {
    let text = std::fs::read_to_string(vectors_dir().join("v01-minimal.json")).unwrap();
    let e = manifest::parse(&text).unwrap_err();
    assert!(matches!(e, ManifestError::V2NotBuildable));
    assert!(e
        .to_string()
        .starts_with("v2 manifests are built by osbuild"));
    // Another version is not v2: the v1 loader judges it (as before).
    let e = manifest::parse(r#"{"version": "3"}"#).unwrap_err();
    assert_eq!(
        e.to_string(),
        "version: unknown key 'version' (allowed: build, stages, assembler, sources)"
    );
    // Errors of a v2 manifest win over "not built yet".
    let e = manifest::parse(r#"{"version": "2", "pipelines": 1}"#).unwrap_err();
    assert_eq!(e.to_string(), "pipelines: expected an array, found integer");
}

fn errors(result: Result<Document, ManifestError>) -> Vec<String> {
    match result {
        Err(ManifestError::Invalid(list)) => list.iter().map(ToString::to_string).collect(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn structural_errors_are_all_reported_with_paths() {
    let cases: [(&str, &[&str]); 6] = [
        (
            r#"{"version": "2", "extra": 1, "sources": [], "metadata": {"exports": [{}]}}"#,
            &[
                "extra: unknown key 'extra' (allowed: version, pipelines, sources, metadata)",
                "metadata.exports[0]: 'name' is required",
                "sources: expected an object, found array",
            ],
        ),
        (
            r#"{"version": "2", "pipelines": [{"stages": [{"options": 1}]}, {"name": "a", "source-epoch": 1.0, "build": "name:zz"}]}"#,
            &[
                "pipelines[0]: 'name' is required",
                "pipelines[0].stages[0]: 'type' is required",
                "pipelines[0].stages[0].options: expected an object, found integer",
                "pipelines[1].build: unknown pipeline 'name:zz' (expected name:PIPELINE naming an earlier pipeline, or its id)",
                "pipelines[1].source-epoch: expected an integer, found number",
            ],
        ),
        (
            r#"{"version": "2", "pipelines": [{"name": "a"}, {"name": "a"}]}"#,
            &["pipelines[1].name: a pipeline named 'a' comes earlier"],
        ),
        (
            r#"{"version": "2", "pipelines": [{"name": "p", "stages": [{"type": "t", "inputs": {
                "1x": {"type": "i", "origin": "org.osbuild.source", "references": []},
                "y": {"type": "i", "origin": "elsewhere", "references": {}},
                "z": {"type": "i", "origin": "org.osbuild.source", "references": ["sha256:00"]}}}]}]}"#,
            &[
                "pipelines[0].stages[0].inputs.1x: an input name must start with a letter",
                "pipelines[0].stages[0].inputs.1x.references: expected an object, a non-empty array of strings or a non-empty array of {\"id\", \"options\"} objects, found array",
                "pipelines[0].stages[0].inputs.y.origin: unknown origin 'elsewhere' (allowed: org.osbuild.source, org.osbuild.pipeline)",
                "pipelines[0].stages[0].inputs.z.references: unknown source reference 'sha256:00' (not an item of any source)",
            ],
        ),
        (
            r#"{"version": "2", "pipelines": [{"name": "p", "stages": [{"type": "t", "devices": {
                "a": {"type": "d", "parent": "b"}, "b": {"type": "d", "parent": "a"}}},
                {"type": "t", "devices": {"c": {"type": "d", "parent": "nope"}}},
                {"type": "t", "mounts": [{"name": "m", "type": "x", "source": "none"}, {"name": "m", "type": "x", "partition": "1"}]}]}]}"#,
            &[
                "pipelines[0].stages[0].devices: the devices' parents form a cycle",
                "pipelines[0].stages[1].devices.c: missing parent device 'nope' for 'c'",
                "pipelines[0].stages[2].mounts[0].source: unknown device 'none' for mount 'm'",
                "pipelines[0].stages[2].mounts[1].partition: expected a number, found string",
            ],
        ),
        (
            r#"{"version": "2", "pipelines": [{"name": "p", "stages": [{"type": "t", "mounts": [
                {"name": "m", "type": "x"}, {"name": "m", "type": "x"}]}]}]}"#,
            &["pipelines[0].stages[0].mounts[1].name: duplicated mount 'm'"],
        ),
    ];
    for (text, want) in cases {
        assert_eq!(errors(manifest::parse_document(text)), want, "{text}");
    }
}

fn write_module(lib: &Path, dir: &str, name: &str, meta: &str) {
    let path = lib.join(dir).join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(lib.join(dir).join(format!("{name}.meta.json")), meta).unwrap();
}

/// A libdir with a v2 stage, a v1-only stage, an input, a device and a mount.
fn libdir() -> tempfile::TempDir {
    let lib = tempfile::tempdir().unwrap();
    let p = lib.path();
    write_module(
        p,
        "stages",
        "org.osbuild.v2",
        r#"{"summary": "s", "schema_2": {
            "options": {"additionalProperties": false, "properties": {"n": {"type": "integer"}}},
            "inputs": {"type": "object", "required": ["tree"]}}}"#,
    );
    write_module(
        p,
        "stages",
        "org.osbuild.v1only",
        r#"{"summary": "s", "schema": {"additionalProperties": false}}"#,
    );
    write_module(
        p,
        "inputs",
        "org.osbuild.tree",
        r#"{"summary": "i", "schema": {"additionalProperties": false, "required": ["type", "origin", "references"],
            "properties": {"type": {}, "origin": {"enum": ["org.osbuild.pipeline"]}, "references": {"type": "array", "maxItems": 1}}}}"#,
    );
    write_module(
        p,
        "devices",
        "org.osbuild.loopback",
        r#"{"summary": "d", "schema": {"additionalProperties": false, "required": ["filename"], "properties": {"filename": {"type": "string"}}}}"#,
    );
    write_module(
        p,
        "mounts",
        "org.osbuild.ext4",
        r#"{"summary": "m", "schema_2": {"additionalProperties": false, "required": ["name", "type", "source", "target"],
            "properties": {"name": {}, "type": {}, "source": {}, "target": {}, "partition": {}, "options": {"additionalProperties": false}}}}"#,
    );
    write_module(p, "mounts", "org.osbuild.noschema", r#"{"summary": "m"}"#);
    lib
}

#[test]
fn module_schemas_are_checked_with_paths() {
    let lib = libdir();
    let index = Index::new(lib.path());
    let text = r#"{"version": "2", "pipelines": [
        {"name": "os", "stages": [{"type": "org.osbuild.v1only", "options": {"x": 1}}]},
        {"name": "img", "stages": [{"type": "org.osbuild.v2", "options": {"n": "one"}, "inputs": {
            "tree": {"type": "org.osbuild.tree", "origin": "org.osbuild.pipeline", "references": ["name:os", "name:os"]}},
            "devices": {"disk": {"type": "org.osbuild.loopback", "options": {}}},
            "mounts": [{"name": "root", "type": "org.osbuild.ext4", "source": "disk", "target": "/", "options": {"bad": true}},
                       {"name": "other", "type": "org.osbuild.noschema"}]},
          {"type": "org.osbuild.v1only", "inputs": {}},
          {"type": "org.osbuild.missing"}]}]}"#;
    let got = errors(manifest::load_document(text, &index));
    let libdir = lib.path().display();
    let want = [
        "pipelines[0].stages[0].options: False schema does not allow 1".to_owned(),
        "pipelines[1].stages[0].options.n: \"one\" is not of type \"integer\"".to_owned(),
        "pipelines[1].stages[0].devices.disk.options: \"filename\" is a required property".to_owned(),
        "pipelines[1].stages[0].inputs.tree.references: [\"name:os\",\"name:os\"] has more than 1 item".to_owned(),
        "pipelines[1].stages[0].mounts[0].options: False schema does not allow true".to_owned(),
        "pipelines[1].stages[0].mounts[1]: the mount 'org.osbuild.noschema' has no schema for v2 manifests (schema_2)".to_owned(),
        "pipelines[1].stages[1]: Additional properties are not allowed ('inputs' was unexpected)".to_owned(),
        format!("pipelines[1].stages[2].type: unknown stage 'org.osbuild.missing' (not in {libdir}/stages)"),
    ];
    assert_eq!(got, want);
}

#[test]
fn a_valid_manifest_loads_against_its_libdir() {
    let lib = libdir();
    let index = Index::new(lib.path());
    let text = r#"{"version": "2", "pipelines": [
        {"name": "os", "stages": [{"type": "org.osbuild.v1only"}]},
        {"name": "img", "stages": [{"type": "org.osbuild.v2", "options": {"n": 1}, "inputs": {
            "tree": {"type": "org.osbuild.tree", "origin": "org.osbuild.pipeline", "references": ["name:os"]}},
            "devices": {"disk": {"type": "org.osbuild.loopback", "options": {"filename": "d.img"}}},
            "mounts": [{"name": "root", "type": "org.osbuild.ext4", "source": "disk", "target": "/"}]}]}]}"#;
    let Document::V2(m) = manifest::load_document(text, &index).unwrap() else {
        panic!("not v2");
    };
    let parsed = parse_v2(text).unwrap();
    assert_eq!(
        m.pipelines.last().unwrap().id(),
        parsed.pipelines.last().unwrap().id()
    );
    let e = manifest::load(text, &index).unwrap_err();
    assert!(matches!(e, ManifestError::V2NotBuildable));
}

#[test]
fn osbuild_inspects_v2_and_checks_its_exports() {
    let lib = tempfile::tempdir().unwrap();
    write_module(
        lib.path(),
        "stages",
        "org.osbuild.noop",
        r#"{"summary": "n"}"#,
    );
    let vector = vectors_dir().join("v01-minimal.json");
    let run = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_osbuild"))
            .arg("--libdir")
            .arg(lib.path())
            .args(extra)
            .arg(&vector)
            .output()
            .unwrap()
    };
    let out = run(&["--inspect"]);
    assert_eq!(out.status.code(), Some(0));
    let want_text = std::fs::read_to_string(vectors_dir().join("v01-minimal.ids.json")).unwrap();
    let want = json::parse(&want_text).unwrap();
    let got = json::parse(&String::from_utf8(out.stdout).unwrap()).unwrap();
    assert_eq!(json::dumps(&got), json::dumps(want.get("inspect").unwrap()));

    // An export that names no pipeline fails before anything else (HEAD's exit code 1).
    let out = run(&["--export", "nope", "--output-directory", "/nonexistent"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("export nope is not a pipeline"), "{stdout}");
}
