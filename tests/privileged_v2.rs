//! Building v2 manifests with HEAD's command line: exports, tree and files inputs, HEAD's
//! module protocol (arguments file, metadata, exceptions), checkpoint patterns, a cached
//! rebuild that runs nothing, and a failing stage that leaves nothing behind.

mod common;

use common::{mounts_under, privileged, processes_matching, Env};
use std::path::Path;

use serde_json::{json, Value};

fn head_stage(options: Value) -> Value {
    json!({"type": "org.osbuild.test.head", "options": options})
}

/// base -> image (tree and files inputs from base); "unused" is never exported.
fn manifest() -> Value {
    let mut image = head_stage(json!({"name": "image"}));
    image["inputs"] = json!({
        "tree": {"type": "org.osbuild.tree", "origin": "org.osbuild.pipeline",
                 "references": ["name:base"]},
        "one": {"type": "org.osbuild.files", "origin": "org.osbuild.pipeline",
                "references": {"name:base": {"file": "/hello"}}}
    });
    json!({
        "version": "2",
        "pipelines": [
            {"name": "base", "source-epoch": 1700000000,
             "stages": [head_stage(json!({"write": {"hello": "world"}, "name": "base"}))]},
            {"name": "image", "stages": [image]},
            {"name": "unused", "stages": [head_stage(json!({"name": "unused"}))]}
        ]
    })
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn stage_id(inspected: &Value, pipeline: usize) -> String {
    inspected["pipelines"][pipeline]["stages"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn privileged_v2_exports_inputs_and_heads_arguments_file() {
    if !privileged("privileged_v2_exports_inputs_and_heads_arguments_file") {
        return;
    }
    let env = Env::new();
    let m = manifest();
    let inspected = env.inspect(&m);
    let out = env.dir.path().join("out");
    let (result, code) = env.export_json(&["image"], &out, &[], &m.to_string());
    assert_eq!(code, 0, "{result:#}");
    assert_eq!(result["type"], "result");
    assert_eq!(result["success"], true);
    let log = result["log"].as_object().unwrap();
    let built: Vec<&String> = log.keys().collect();
    assert_eq!(
        built,
        ["base", "image"],
        "only what the export needs is built"
    );
    assert_eq!(
        log["image"][0]["output"], "image: done\n",
        "the stage's own output only"
    );
    assert_eq!(
        result["metadata"]["image"]["org.osbuild.test.head"],
        json!({"name": "image", "inputs": ["one", "tree"]})
    );
    assert_eq!(
        result["metadata"]["base"]["org.osbuild.test.head"]["name"],
        "base"
    );

    // Exactly HEAD's arguments file (Stage.run + prepare_arguments).
    let image = out.join("image");
    let args: Value = serde_json::from_str(&read(&image.join("args/image.json"))).unwrap();
    assert_eq!(
        args,
        json!({
            "tree": "/run/osbuild/tree",
            "paths": {"devices": "/dev", "inputs": "/run/osbuild/inputs", "mounts": "/run/osbuild/mounts"},
            "devices": {},
            "inputs": {
                "one": {"path": "/run/osbuild/inputs/one", "data": {"files": {"hello": {}}}},
                "tree": {"path": "/run/osbuild/inputs/tree"}
            },
            "mounts": {},
            "options": {"name": "image"},
            "meta": {"id": stage_id(&inspected, 1)}
        })
    );
    // Byte for byte as HEAD's json.dump writes it: keys in the order HEAD builds them, the
    // inputs and the options in the manifest's order.
    let text = read(&image.join("args/image.json"));
    let want = format!(
        "{{\"tree\": \"/run/osbuild/tree\", \"paths\": {{\"devices\": \"/dev\", \"inputs\": \
         \"/run/osbuild/inputs\", \"mounts\": \"/run/osbuild/mounts\"}}, \"devices\": {{}}, \
         \"inputs\": {{\"tree\": {{\"path\": \"/run/osbuild/inputs/tree\"}}, \"one\": {{\"path\": \
         \"/run/osbuild/inputs/one\", \"data\": {{\"files\": {{\"hello\": {{}}}}}}}}}}, \"mounts\": {{}}, \
         \"options\": {{\"name\": \"image\"}}, \"meta\": {{\"id\": \"{}\"}}}}",
        stage_id(&inspected, 1)
    );
    assert_eq!(text, want);
    assert!(
        !image.join("args/base.json").exists(),
        "the image tree starts empty: base's files are only an input"
    );
    let tree_listing = read(&image.join("inputs-image-tree.txt"));
    assert!(tree_listing.contains("hello='world'"), "{tree_listing}");
    assert!(tree_listing.contains("args/base.json="), "{tree_listing}");
    assert_eq!(read(&image.join("inputs-image-one.txt")), "hello='world'\n");
    assert!(!out.join("base").exists(), "only exports are copied out");

    // The source epoch reached base's metadata id, and the export is a plain tree.
    let base_export = env.dir.path().join("out2");
    let (again, code) = env.export_json(&["base", "image"], &base_export, &[], &m.to_string());
    assert_eq!(code, 0, "{again:#}");
    assert_eq!(again["log"], json!({}), "a cached rebuild runs nothing");
    assert_eq!(
        again["metadata"], result["metadata"],
        "metadata survives in the store"
    );
    let base_args: Value =
        serde_json::from_str(&read(&base_export.join("base/args/base.json"))).unwrap();
    let base_text = read(&base_export.join("base/args/base.json"));
    assert!(
        base_text.contains(r#""options": {"write": {"hello": "world"}, "name": "base"}"#),
        "options in the manifest's order: {base_text}"
    );
    assert_eq!(
        base_args["meta"],
        json!({"id": stage_id(&inspected, 0), "source-epoch": 1700000000})
    );
    assert_eq!(
        read(&base_export.join("image/inputs-image-one.txt")),
        "hello='world'\n"
    );
    assert!(
        env.store_entries("tmp").is_empty(),
        "{:?}",
        env.store_entries("tmp")
    );
}

#[test]
fn privileged_v2_failing_stage_reports_heads_error_and_leaves_nothing() {
    if !privileged("privileged_v2_failing_stage_reports_heads_error_and_leaves_nothing") {
        return;
    }
    let env = Env::new();
    let m = json!({
        "version": "2",
        "pipelines": [{"name": "os", "stages": [
            head_stage(json!({"name": "first", "write": {"a": "b"}})),
            head_stage(json!({"name": "second", "fail": "disk on fire"}))
        ]}]
    });
    let inspected = env.inspect(&m);
    let out = env.dir.path().join("out");
    let (result, code) = env.export_json(&["os"], &out, &["--checkpoint", "os"], &m.to_string());
    assert_eq!(code, 1, "{result:#}");
    assert_eq!(result["type"], "error");
    assert_eq!(result["success"], false);
    let stage = &result["error"]["details"]["stage"];
    assert_eq!(result["error"]["type"], "org.osbuild.error.stage");
    assert_eq!(stage["type"], "org.osbuild.test.head");
    assert_eq!(stage["id"], inspected["pipelines"][0]["stages"][1]["id"]);
    assert_eq!(stage["error"]["type"], "exception");
    assert_eq!(stage["error"]["data"]["value"], "disk on fire");
    assert!(stage["output"]
        .as_str()
        .unwrap()
        .contains("second: failing with disk on fire"));
    let log = result["log"]["os"].as_array().unwrap();
    assert_eq!(log.len(), 2);
    assert!(
        log[0].get("success").is_none(),
        "a successful entry has no success key (HEAD)"
    );
    assert_eq!(log[1]["success"], false);
    assert!(!out.exists(), "nothing is exported after a failure");
    assert!(
        env.store_entries("refs").is_empty(),
        "{:?}",
        env.store_entries("refs")
    );
    assert!(
        env.store_entries("tmp").is_empty(),
        "{:?}",
        env.store_entries("tmp")
    );
    assert!(mounts_under(&env.store).is_empty());
}

#[test]
fn privileged_v2_command_line_errors_are_heads() {
    if !privileged("privileged_v2_command_line_errors_are_heads") {
        return;
    }
    let env = Env::new();
    let m = manifest().to_string();
    let text = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).into_owned();

    let o = env.osbuild(
        &["--export", "nope", "--output-directory", "/nonexistent"],
        &m,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains(
            "export nope is not a pipeline of the manifest (pipelines: base, image, unused)"
        ),
        "{}",
        text(&o)
    );

    let o = env.osbuild(&["--export", "image"], &m);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("Need --output-directory for --export"));

    let o = env.osbuild(&["--checkpoint", "nothing-*"], &m);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("No checkpoints matched provided patterns!"));

    let o = env.osbuild(&["--cache-max-size", "12 parsecs"], &m);
    assert_eq!(o.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown unit"));

    // An input name is one directory in the sandbox: a '/' in it is refused, nothing left.
    let mut slash = manifest();
    let inputs = slash["pipelines"][1]["stages"][0]["inputs"].take();
    slash["pipelines"][1]["stages"][0]["inputs"] = json!({"a/../b": inputs["tree"]});
    let out = env.dir.path().join("slash");
    let o = env.osbuild(
        &[
            "--export",
            "image",
            "--output-directory",
            out.to_str().unwrap(),
        ],
        &slash.to_string(),
    );
    assert_eq!(o.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("input a/../b: an input name must not contain '/'"),
        "{stderr}"
    );
    assert!(env.store_entries("tmp").is_empty());
    assert!(mounts_under(&env.store).is_empty());
    std::fs::remove_dir_all(&env.store).unwrap();

    // Checkpoints by stage type: the tree after each matching stage is committed.
    let o = env.osbuild(
        &[
            "--checkpoint",
            "org.osbuild.test.*",
            "--cache-max-size",
            "unlimited",
        ],
        &m,
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        env.store_entries("refs").is_empty(),
        "no export: nothing is built"
    );
    assert!(env.store_entries("tmp").is_empty());
}

#[test]
fn privileged_v2_inline_sources_reach_a_files_input() {
    if !privileged("privileged_v2_inline_sources_reach_a_files_input") {
        return;
    }
    let env = Env::new();
    let data = "hello from a source\n";
    let checksum = format!("sha256:{}", sha256_hex(data.as_bytes()));
    // base64 of `data`, by hand (RFC 4648), so the test needs no tool to make it.
    let encoded = base64_of(data.as_bytes());
    let mut stage = head_stage(json!({"name": "files"}));
    stage["inputs"] = json!({"f": {"type": "org.osbuild.files", "origin": "org.osbuild.source",
                                   "references": {checksum.clone(): {"metadata": {"k": "v"}}}}});
    let m = json!({
        "version": "2",
        "sources": {"org.osbuild.inline": {"items": {checksum.clone(): {"encoding": "base64", "data": encoded}}}},
        "pipelines": [{"name": "os", "stages": [stage]}]
    });
    let out = env.dir.path().join("out");
    let (result, code) = env.export_json(&["os"], &out, &[], &m.to_string());
    assert_eq!(code, 0, "{result:#}");
    let args: Value = serde_json::from_str(&read(&out.join("os/args/files.json"))).unwrap();
    assert_eq!(
        args["inputs"]["f"],
        json!({"path": "/run/osbuild/inputs/f", "data": {"files": {checksum.clone(): {"k": "v"}}}})
    );
    assert_eq!(
        read(&out.join("os/inputs-files-f.txt")),
        format!("{checksum}={data:?}\n").replace('"', "'")
    );

    // A source that cannot deliver: HEAD's source error, no stage runs, exit 1.
    let wrong = format!("sha256:{}", "0".repeat(64));
    let mut bad = m.clone();
    bad["sources"] = json!({"org.osbuild.inline": {"items": {wrong.clone(): {"encoding": "base64", "data": encoded}}}});
    bad["pipelines"][0]["stages"][0]["inputs"]["f"]["references"] = json!([wrong]);
    let out2 = env.dir.path().join("out2");
    let (result, code) = env.export_json(&["os"], &out2, &[], &bad.to_string());
    assert_eq!(code, 1, "{result:#}");
    assert_eq!(result["error"]["type"], "org.osbuild.error.source");
    assert_eq!(
        result["error"]["details"]["source"]["type"],
        "org.osbuild.inline"
    );
    assert_eq!(result["log"], json!({}));
    assert!(env.store_entries("tmp").is_empty());
}

fn base64_of(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn base64_is_rfc_4648() {
    assert_eq!(
        base64_of(b"hello from a source\n"),
        "aGVsbG8gZnJvbSBhIHNvdXJjZQo="
    );
    assert_eq!(base64_of(b"ab"), "YWI=");
}

/// RFC 7464, strictly: every record is RS, one JSON text, LF; nothing before the first RS.
fn json_seq(bytes: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(bytes).expect("UTF-8");
    let mut parts = text.split('\x1e');
    assert_eq!(
        parts.next(),
        Some(""),
        "bytes before the first record separator"
    );
    parts
        .map(|record| {
            let body = record
                .strip_suffix('\n')
                .unwrap_or_else(|| panic!("record without LF: {record:?}"));
            serde_json::from_str(body)
                .unwrap_or_else(|e| panic!("not one JSON text ({e}): {body:?}"))
        })
        .collect()
}

#[test]
fn privileged_v2_composers_command_line_streams_json_seq_on_fd_3() {
    if !privileged("privileged_v2_composers_command_line_streams_json_seq_on_fd_3") {
        return;
    }
    let env = Env::new();
    let out = env.dir.path().join("out");
    let seq = env.dir.path().join("monitor.seq");
    // osbuild/images' osbuild-exec.go, word for word (the manifest on stdin, records on fd 3).
    let script = format!(
        "exec \"$0\" --libdir {lib} --store {store} --output-directory {out} --cache-max-size=21474836480 - \
         --export image --checkpoint base --checkpoint image --monitor=JSONSeqMonitor --monitor-fd=3 --json 3>{seq}",
        lib = env.libdir.display(),
        store = env.store.display(),
        out = out.display(),
        seq = seq.display()
    );
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c").arg(script).arg(env!("CARGO_BIN_EXE_osbuild"));
    let o = common::run_with_stdin(cmd, &manifest().to_string());
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let result: Value =
        serde_json::from_slice(&o.stdout).expect("stdout is the --json result alone");
    assert_eq!(result["success"], true);

    let records = json_seq(&std::fs::read(&seq).unwrap());
    let messages: Vec<&str> = records
        .iter()
        .map(|r| r["message"].as_str().unwrap())
        .collect();
    let status: Vec<&&str> = messages
        .iter()
        .filter(|m| m.starts_with("Starting ") || m.starts_with("Finished "))
        .collect();
    assert_eq!(
        status,
        [
            &"Starting pipeline base",
            &"Starting module org.osbuild.test.head",
            &"Finished module org.osbuild.test.head",
            &"Finished pipeline base",
            &"Starting pipeline image",
            &"Starting module org.osbuild.test.head",
            &"Finished module org.osbuild.test.head",
            &"Finished pipeline image"
        ]
    );
    assert!(
        messages.contains(&"image: done\n"),
        "stage output is streamed: {messages:?}"
    );
    let last = records.last().unwrap();
    assert_eq!(
        last["progress"],
        json!({"name": "pipelines/sources", "total": 2, "done": 2})
    );
    let finished = records
        .iter()
        .find(|r| r["message"] == "Finished module org.osbuild.test.head")
        .unwrap();
    assert_eq!(finished["result"]["success"], true);
    assert_eq!(finished["metadata"], json!({"name": "base", "inputs": []}));
    assert!(finished["duration"].as_f64().unwrap() >= 0.0);
    assert_eq!(
        finished["progress"]["progress"],
        json!({"name": "pipeline: base", "total": 1, "done": 1})
    );
    // Every context id is announced in full once, then referred to by id alone.
    let mut seen = std::collections::HashSet::new();
    for r in &records {
        let ctx = r["context"].as_object().unwrap();
        let id = ctx["id"].as_str().unwrap().to_owned();
        if seen.insert(id) {
            assert!(ctx.contains_key("origin"), "{ctx:?}");
        } else {
            assert_eq!(ctx.len(), 1, "{ctx:?}");
        }
    }
    assert!(out.join("image/args/image.json").is_file());
}

#[test]
fn privileged_v2_checkpoint_patterns_commit_the_stages_they_match() {
    if !privileged("privileged_v2_checkpoint_patterns_commit_the_stages_they_match") {
        return;
    }
    let m = json!({
        "version": "2",
        "pipelines": [{"name": "os", "stages": [
            head_stage(json!({"name": "one", "write": {"a": "1"}})),
            head_stage(json!({"name": "two", "write": {"b": "2"}})),
            head_stage(json!({"name": "three"}))
        ]}]
    });
    for (pattern, first_two_committed) in [
        ("org.osbuild.test.*", [true, true]),
        ("nothing-*", [false, false]),
    ] {
        let env = Env::new();
        let inspected = env.inspect(&m);
        let ids: Vec<String> = (0..3)
            .map(|i| {
                inspected["pipelines"][0]["stages"][i]["id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        // A pattern over stage ids marks one stage; another over types marks every stage.
        let first = format!("{}*", &ids[0][..12]);
        let out = env.dir.path().join("out");
        let (result, code) = env.export_json(
            &["os"],
            &out,
            &["--checkpoint", pattern, "--checkpoint", &first],
            &m.to_string(),
        );
        assert_eq!(code, 0, "{result:#}");
        let refs = env.store_entries("refs");
        assert!(
            refs.contains(&ids[0]),
            "the id pattern matched the first stage: {refs:?}"
        );
        assert_eq!(
            refs.contains(&ids[1]),
            first_two_committed[1],
            "{pattern}: {refs:?}"
        );
        assert!(
            refs.contains(&ids[2]),
            "the exported pipeline's tree is kept: {refs:?}"
        );
        // The checkpoint holds the tree as it was after that stage.
        assert!(env.committed(&ids[0], "a").is_file());
        assert!(!env.committed(&ids[0], "b").exists());
    }
}

/// Partitions (start, size in 512-byte sectors) of the test disk: ext4, btrfs, xfs.
const PARTITIONS: [(u64, u64); 3] = [(2048, 131072), (133120, 262144), (395264, 655360)];

/// A 600 MiB sparse GPT disk with three file systems made through loopback devices, filled
/// through ext4 "/", btrfs "/var" and xfs "/boot" mounts (HEAD's order: "/" first).
fn disk_manifest(fail_while_mounted: bool) -> Value {
    let table: String = PARTITIONS
        .iter()
        .map(|(start, size)| format!("start={start}, size={size}\\n"))
        .collect();
    let create = head_stage(json!({"name": "create", "run": [
        ["truncate", "-s", "600M", "{tree}/disk.raw"],
        ["sh", "-c", format!("printf 'label: gpt\\n{table}' | sfdisk -q {{tree}}/disk.raw")]
    ]}));
    let names = ["root", "var", "boot"];
    let parts: Vec<(&str, (u64, u64))> = names.into_iter().zip(PARTITIONS).collect();
    let devices = common::loopback_devices(&parts);
    let mut mkfs = head_stage(json!({"name": "mkfs", "run": [
        ["mkfs.ext4", "-q", "-L", "root", "{dev:root}"],
        ["mkfs.btrfs", "-q", "-L", "var", "{dev:var}"],
        ["mkfs.xfs", "-q", "-L", "boot", "{dev:boot}"]
    ]}));
    mkfs["devices"] = devices.clone();
    let mut fill_options = json!({"name": "fill", "run": [["sh", "-c",
        "echo root > {mount:root}/hello && mkdir -p {mount:root}/var {mount:root}/boot && echo var > {mount:var}/v && echo boot > {mount:boot}/b"]]});
    if fail_while_mounted {
        fill_options["fail"] = json!("after mounting");
    }
    let mut fill = head_stage(fill_options);
    fill["devices"] = devices;
    fill["mounts"] = json!([
        {"name": "root", "type": "org.osbuild.ext4", "source": "root", "target": "/"},
        {"name": "var", "type": "org.osbuild.btrfs", "source": "var", "target": "/var"},
        {"name": "boot", "type": "org.osbuild.xfs", "source": "boot", "target": "/boot"}
    ]);
    json!({"version": "2", "pipelines": [{"name": "image", "stages": [create, mkfs, fill]}]})
}

#[test]
fn privileged_v2_loopback_devices_and_mounts_fill_a_partitioned_disk() {
    if !privileged("privileged_v2_loopback_devices_and_mounts_fill_a_partitioned_disk") {
        return;
    }
    let env = Env::new();
    let out = env.dir.path().join("out");
    let (result, code) = env.export_json(&["image"], &out, &[], &disk_manifest(false).to_string());
    assert_eq!(code, 0, "{result:#}");
    let disk = out.join("image/disk.raw");
    let table = common::output(
        std::process::Command::new("sfdisk")
            .arg("--dump")
            .arg(&disk),
    );
    for (start, size) in PARTITIONS {
        assert!(
            table.contains(&format!("start={start:>12}, size={size:>12}")),
            "{table}"
        );
    }
    assert_eq!(
        common::read_back(&disk, PARTITIONS[0].0, "hello", false),
        "root\n"
    );
    assert_eq!(
        common::read_back(&disk, PARTITIONS[1].0, "v", false),
        "var\n"
    );
    assert_eq!(
        common::read_back(&disk, PARTITIONS[2].0, "b", false),
        "boot\n"
    );
    // The stage got HEAD's devices and mounts entries.
    let args: Value = serde_json::from_str(&read(&out.join("image/args/fill.json"))).unwrap();
    let root = &args["devices"]["root"];
    assert!(
        root["path"].as_str().unwrap().starts_with("/dev/loop"),
        "{args:#}"
    );
    assert!(root["node"]["major"].as_u64().is_some());
    assert_eq!(args["mounts"]["root"]["path"], "/run/osbuild/mounts/.");
    assert_eq!(args["mounts"]["boot"]["path"], "/run/osbuild/mounts/boot");
    assert!(mounts_under(&env.store).is_empty());
    assert_eq!(common::loops_backed_under(&env.store), Vec::<String>::new());
}

#[test]
fn privileged_v2_a_stage_failing_while_mounted_leaves_no_mount_or_loop_device() {
    if !privileged("privileged_v2_a_stage_failing_while_mounted_leaves_no_mount_or_loop_device") {
        return;
    }
    let env = Env::new();
    let (result, code) = env.export_json(
        &["image"],
        Path::new("/nonexistent"),
        &[],
        &disk_manifest(true).to_string(),
    );
    assert_eq!(code, 1, "{result:#}");
    assert_eq!(
        result["error"]["details"]["stage"]["error"]["data"]["value"],
        "after mounting"
    );
    assert!(
        mounts_under(&env.store).is_empty(),
        "{:?}",
        mounts_under(&env.store)
    );
    assert_eq!(common::loops_backed_under(&env.store), Vec::<String>::new());
    assert!(
        env.store_entries("tmp").is_empty(),
        "{:?}",
        env.store_entries("tmp")
    );
}

#[test]
fn privileged_v2_stage_timeout_kills_a_stage_that_runs_too_long() {
    if !privileged("privileged_v2_stage_timeout_kills_a_stage_that_runs_too_long") {
        return;
    }
    let env = Env::new();
    let m = json!({"version": "2", "pipelines": [{"name": "os", "stages": [
        head_stage(json!({"name": "slow", "run": [["sleep", "60"]]}))
    ]}]});
    let started = std::time::Instant::now();
    let (result, code) = env.export_json(
        &["os"],
        Path::new("/nonexistent"),
        &["--stage-timeout", "1"],
        &m.to_string(),
    );
    assert_eq!(code, 1, "{result:#}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "killed after the timeout, not after the stage"
    );
    let output = result["error"]["details"]["stage"]["output"]
        .as_str()
        .unwrap();
    assert!(
        output.ends_with("the stage ran longer than its timeout (1 s) and was killed\n"),
        "{output}"
    );
    assert!(processes_matching("sleep 60").is_empty());
    assert!(env.store_entries("tmp").is_empty());
}

#[test]
fn privileged_v2_cache_max_size_is_kept_in_the_store_and_prunes_later_builds() {
    if !privileged("privileged_v2_cache_max_size_is_kept_in_the_store_and_prunes_later_builds") {
        return;
    }
    let env = Env::new();
    let out = env.dir.path().join("out");
    let export = [
        "--export",
        "image",
        "--output-directory",
        out.to_str().unwrap(),
    ];
    let m = manifest().to_string();
    let (result, code) = env.build_json(
        &[&export[..], &["--cache-max-size", "unlimited"]].concat(),
        &m,
    );
    assert_eq!(code, 0, "{result:#}");
    assert_eq!(
        read(&env.store.join("cache.info")),
        r#"{"maximum-size":"unlimited"}"#
    );
    assert_eq!(
        env.store_entries("refs").len(),
        2,
        "base and image are kept"
    );

    // An export never lands on an earlier one.
    let o = env.osbuild(&export, &m);
    assert_eq!(o.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("/out/image is not empty: remove it or export elsewhere"),
        "{stdout}"
    );
    std::fs::remove_dir_all(&out).unwrap();

    // A limit of one byte, once: this build and the next (without the option) keep nothing.
    let (result, code) = env.build_json(&[&export[..], &["--cache-max-size", "1"]].concat(), &m);
    assert_eq!(code, 0, "{result:#}");
    assert_eq!(read(&env.store.join("cache.info")), r#"{"maximum-size":1}"#);
    assert!(
        env.store_entries("refs").is_empty(),
        "{:?}",
        env.store_entries("refs")
    );
    assert!(
        out.join("image/args/image.json").is_file(),
        "the export came before the prune"
    );
    std::fs::remove_dir_all(&out).unwrap();
    let (result, code) = env.build_json(&export, &m);
    assert_eq!(code, 0, "{result:#}");
    assert_eq!(
        result["log"].as_object().unwrap().len(),
        2,
        "everything was built again"
    );
    assert!(
        env.store_entries("refs").is_empty(),
        "the kept limit pruned again"
    );
}
