//! End-to-end builds through the `osbuild` binary, as root: the sandbox, the stage protocol,
//! caching, checkpoints, failures and interruption.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{mounts_under, peak_rss_kib, privileged, processes_matching, Env};
use serde_json::{json, Value};

fn ids(result: &Value) -> Vec<String> {
    result["stages"]
        .as_array()
        .map(|s| {
            s.iter()
                .map(|r| r["id"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Each stage's output, in the order the stages ran.
fn stage_outputs(result: &Value) -> Vec<&str> {
    result["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["output"].as_str().unwrap())
        .collect()
}

fn assert_store_clean(env: &Env) {
    assert_eq!(
        env.store_entries("tmp"),
        Vec::<String>::new(),
        "tmp/ must be empty after a build"
    );
    assert_eq!(
        mounts_under(&env.store),
        Vec::<String>::new(),
        "no mount may remain on the host"
    );
}

#[test]
fn privileged_foreign_stage_gets_v10_arguments_in_a_sandbox() {
    if !privileged("privileged_foreign_stage_gets_v10_arguments_in_a_sandbox") {
        return;
    }
    let env = Env::new();
    let manifest = json!({"pipeline": {"stages": [
        {"name": "org.osbuild.test.record", "options": {"x": 1, "u": "caf\u{e9}", "f": 1.0}}
    ]}});
    let described = env.inspect(&manifest);
    let id = described["pipeline"]["stages"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let (result, code) = env.build_json(&["--checkpoint", &id], &manifest.to_string());
    assert_eq!(code, 0, "{result}");
    assert_eq!(result["success"], true);
    assert_eq!(result["tree_id"], id.as_str());
    let output = result["stages"][0]["output"].as_str().unwrap();
    assert!(output.contains("recorded to stdout\n"), "{output}");
    assert!(output.contains("recorded to stderr\n"), "{output}");

    // Byte for byte what osbuild v10 hands a stage: Python's json.dumps of the arguments.
    let args = std::fs::read_to_string(env.committed(&id, "args.json")).unwrap();
    assert_eq!(
        args,
        r#"{"tree": "/run/osbuild/tree", "sources": "/run/osbuild/sources", "options": {"x": 1, "u": "caf\u00e9", "f": 1.0}}"#
    );
    let facts = std::fs::read_to_string(env.committed(&id, "sandbox.txt")).unwrap();
    assert!(
        facts.contains("pid=1\n") || facts.contains("pid=2\n"),
        "own PID namespace:\n{facts}"
    );
    assert!(facts.contains("usr=ro\n"), "{facts}");
    assert!(facts.contains("sources=yes\n"), "{facts}");
    // The build root (the host here) lends its mke2fs.conf, whole, or none when it has none.
    let mke2fs = match std::fs::read("/etc/mke2fs.conf") {
        Ok(bytes) => osbuild::id::hex(&<sha2::Sha256 as sha2::Digest>::digest(bytes)),
        Err(_) => String::new(),
    };
    assert!(
        facts.contains(&format!("mke2fs.conf={mke2fs}\n")),
        "{facts}"
    );
    assert!(
        facts.contains("net=lo\n"),
        "only loopback in the network namespace:\n{facts}"
    );
    // osbuild's DEFAULT_CAPABILITIES without CAP_SYS_ADMIN (bit 21: the stage has no meta file
    // declaring it), as far as this host's bounding set has them.
    let host = std::fs::read_to_string("/proc/self/status").unwrap();
    let bounding = host
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:\t"))
        .unwrap();
    let expected = 0x1_a9a4_47df_u64 & !(1 << 21) & u64::from_str_radix(bounding, 16).unwrap();
    assert!(
        facts.contains(&format!("CapEff:\t{expected:016x}\n")),
        "{facts}"
    );
    assert_store_clean(&env);
}

/// A stage printing 60 MiB, 50 in lines of 1 KiB and 10 in one unterminated line: the build succeeds, the
/// result keeps a bounded tail with notices of what was dropped, osbuild's memory stays small.
#[test]
fn privileged_a_flooding_stage_is_bounded_in_memory_and_result() {
    if !privileged("privileged_a_flooding_stage_is_bounded_in_memory_and_result") {
        return;
    }
    let env = Env::new();
    let manifest = json!({"pipeline": {"stages": [{"name": "org.osbuild.test.flood"}]}});
    let path = env.dir.path().join("flood.json");
    std::fs::write(&path, manifest.to_string()).unwrap();
    let mut child = env
        .osbuild_cmd(&["--json"])
        .arg(&path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut out).unwrap();
        out
    });
    let mut peak = 0;
    while child.try_wait().unwrap().is_none() {
        peak = peak_rss_kib(pid).unwrap_or(peak).max(peak);
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = child.wait().unwrap();
    let out = reader.join().unwrap();
    let result: Value = serde_json::from_str(out.trim()).expect("--json prints valid JSON");
    assert_eq!(status.code(), Some(0), "{result}");
    let output = result["stages"][0]["output"].as_str().unwrap();
    assert!(output.len() <= 1024 * 1024 + 100, "{}", output.len());
    assert!(
        output.starts_with("[... the first ")
            && output.contains(" bytes of this output dropped]\n"),
        "{}",
        &output[..200]
    );
    let dropped = 10 * 1024 * 1024 - 64 * 1024;
    assert!(
        output.ends_with(&format!("a[... {dropped} bytes of this line dropped]")),
        "{}",
        &output[output.len() - 200..]
    );
    assert!(output.contains(&format!("\n{}\n", "s".repeat(1023))));
    assert!(
        peak > 0 && peak < 64 * 1024,
        "osbuild's peak RSS: {peak} KiB"
    );
    assert_store_clean(&env);
}

/// A hostile stage (tests/stages/org.osbuild.test.escape) tries, as root with osbuild's
/// default capabilities, what would reach the host; the sandbox's seccomp filter and namespaces
/// refuse each, while what real stages do (an overlay whiteout, a read-only remount) still works.
/// Without a meta file it gets no `CAP_SYS_ADMIN`: no mount at all, so no fresh procfs whose
/// /proc/sys/kernel/core_pattern no read-only bind covers. The same stage with a meta file
/// declaring `CAP_SYS_ADMIN` may mount, and the filter still refuses the rest.
#[test]
fn privileged_a_hostile_stage_cannot_reach_the_host() {
    if !privileged("privileged_a_hostile_stage_cannot_reach_the_host") {
        return;
    }
    let env = Env::new();
    // A socket of the host's network namespace (its abstract names are per namespace).
    let name = format!("osbuild-test-escape-{}", std::process::id());
    let addr =
        <std::os::unix::net::SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(
            name.as_bytes(),
        )
        .unwrap();
    let _listener = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
    let core_pattern = std::fs::read("/proc/sys/kernel/core_pattern").unwrap();
    let stages = env.libdir.join("stages");
    osbuild_sys::process::copy_executable(
        &stages.join("org.osbuild.test.escape"),
        &stages.join("org.osbuild.test.escape-admin"),
    )
    .unwrap();
    std::fs::write(
        stages.join("org.osbuild.test.escape-admin.meta.json"),
        r#"{"summary": "escape, declaring CAP_SYS_ADMIN", "capabilities": ["CAP_SYS_ADMIN"]}"#,
    )
    .unwrap();
    let attempts = |stage: &str| -> Value {
        let manifest = json!({"pipeline": {"stages": [
            {"name": stage, "options": {"abstract": name}}]}});
        let (result, code) = env.build_json(&[], &manifest.to_string());
        assert_eq!(code, 0, "{result}");
        let output = result["stages"][0]["output"].as_str().unwrap();
        let line = output
            .lines()
            .find_map(|l| l.strip_prefix("escape: "))
            .unwrap_or_else(|| panic!("the stage did not report: {output}"));
        serde_json::from_str(line).unwrap()
    };
    let blocked_either_way = json!({
        "open_by_handle_at": "EPERM",
        "mknod_disk": "EPERM",
        "mknod_mem": "EPERM",
        "mknod_whiteout": "ok made",
        "remount_sys_rw": "EPERM",
        "remount_proc_sys_rw": "EPERM",
        "core_pattern": "EROFS",
        "writable_proc_entries": "ok []",
        "user_namespace": "EPERM",
        "abstract_socket": "ECONNREFUSED",
    });
    let undeclared = json!({
        "fresh_proc_core_pattern": "EPERM",
        "mount_tmpfs": "EPERM",
        "remount_sys_ro": "EPERM",
    });
    // With CAP_SYS_ADMIN declared a fresh procfs can be mounted (that is why only modules
    // that mount declare it, and they run package code without it); not asserted here.
    let declared = json!({
        "mount_tmpfs": "ok 0",
        "remount_sys_ro": "ok 0",
    });
    for (stage, expected) in [
        ("org.osbuild.test.escape", undeclared),
        ("org.osbuild.test.escape-admin", declared),
    ] {
        let got = attempts(stage);
        let expected = expected.as_object().unwrap();
        for (attempt, want) in blocked_either_way
            .as_object()
            .unwrap()
            .iter()
            .chain(expected)
        {
            assert_eq!(&got[attempt], want, "{stage}: {attempt}: {got}");
        }
    }
    assert_eq!(
        std::fs::read("/proc/sys/kernel/core_pattern").unwrap(),
        core_pattern
    );
    assert_store_clean(&env);
}

/// Every sandbox has its own UTS namespace: a stage sees a fixed host name, never the host's.
#[test]
fn privileged_stage_sees_the_sandbox_hostname_not_the_hosts() {
    if !privileged("privileged_stage_sees_the_sandbox_hostname_not_the_hosts") {
        return;
    }
    let env = Env::new();
    let manifest = json!({"pipeline": {"stages": [{"name": "org.osbuild.test.hostname"}]}});
    let (result, code) = env.build_json(&[], &manifest.to_string());
    assert_eq!(code, 0, "{result}");
    let output = result["stages"][0]["output"].as_str().unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_ne!(
        host.trim(),
        "osbuild",
        "this test needs a host with another name"
    );
    assert!(output.contains("hostname=osbuild\n"), "{output}");
    assert_store_clean(&env);
}

/// The build root's set-up (ldconfig, sysusers, tmpfiles, which warns a lot in a sandbox) runs
/// before the first stage, apart from it: each stage's output is its own and nothing else.
#[test]
fn privileged_the_first_stages_output_is_exactly_its_own() {
    if !privileged("privileged_the_first_stages_output_is_exactly_its_own") {
        return;
    }
    let env = Env::new();
    let manifest = json!({"pipeline": {"stages": [
        {"name": "org.osbuild.noop", "options": {"first": 1}},
        {"name": "org.osbuild.noop", "options": {"second": 2}}
    ]}});
    let (result, code) = env.build_json(&[], &manifest.to_string());
    assert_eq!(code, 0, "{result}");
    let outputs = stage_outputs(&result);
    assert_eq!(
        outputs,
        [
            "Not doing anything with these options: {\"first\":1}\n",
            "Not doing anything with these options: {\"second\":2}\n"
        ]
    );
    assert_store_clean(&env);
}

/// A stage's sandbox is started while the stage before it runs, but the stage itself runs
/// only once that one has ended, sees what it left in the tree, and never runs after a
/// failure: its sandbox is killed, and nothing of it is left.
#[test]
fn privileged_each_stage_runs_after_the_one_before_has_ended_and_never_after_a_failure() {
    if !privileged(
        "privileged_each_stage_runs_after_the_one_before_has_ended_and_never_after_a_failure",
    ) {
        return;
    }
    let env = Env::new();
    let manifest = json!({"pipeline": {"stages": [
        {"name": "org.osbuild.test.order", "options": {"name": "a"}},
        {"name": "org.osbuild.test.order", "options": {"name": "b"}},
        {"name": "org.osbuild.test.order", "options": {"name": "c", "fail": true}},
        {"name": "org.osbuild.test.say"}
    ]}});
    let (result, code) = env.build_json(&[], &manifest.to_string());
    assert_eq!(code, 1, "{result}");
    let outputs = stage_outputs(&result);
    assert_eq!(
        outputs,
        [
            "a start\na end\n",
            "a start\na end\nb start\nb end\n",
            "a start\na end\nb start\nb end\nc start\nc end\n"
        ],
        "{result}"
    );
    assert!(!result.to_string().contains("OUTPUT-MARKER"), "{result}");
    let store = env.store.to_string_lossy().into_owned();
    assert_eq!(processes_matching(&store), Vec::<String>::new());
    assert_store_clean(&env);
}

/// Each stage gets an empty `/var` and `/var/tmp` of the usual modes, whatever the stage
/// before it left there (the directories are reused, emptied, between a build root's modules).
#[test]
fn privileged_each_stage_gets_an_empty_var_whatever_the_last_one_left() {
    if !privileged("privileged_each_stage_gets_an_empty_var_whatever_the_last_one_left") {
        return;
    }
    let env = Env::new();
    let manifest = json!({"pipeline": {"stages": [
        {"name": "org.osbuild.test.litter", "options": {"i": 1}},
        {"name": "org.osbuild.test.litter", "options": {"i": 2}},
        {"name": "org.osbuild.test.litter", "options": {"i": 3}}
    ]}});
    let (result, code) = env.build_json(&[], &manifest.to_string());
    assert_eq!(code, 0, "{result}");
    for stage in result["stages"].as_array().unwrap() {
        assert_eq!(
            stage["output"], "var 755: tmp \nvar/tmp 1777: \n",
            "{result}"
        );
    }
    assert_store_clean(&env);
}

/// The runner's set-up of a build root is made once and kept in the store: a later build on
/// the same build root gets a copy of that `/etc` instead of running the set-up again.
#[test]
fn privileged_the_build_roots_set_up_is_kept_for_later_builds() {
    if !privileged("privileged_the_build_roots_set_up_is_kept_for_later_builds") {
        return;
    }
    let env = Env::new();
    let record = |round: u32| {
        let manifest = json!({"pipeline": {"stages": [
            {"name": "org.osbuild.test.record", "options": {"round": round}}
        ]}});
        let id = env.inspect(&manifest)["pipeline"]["stages"][0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let (result, code) = env.build_json(&["--checkpoint", &id], &manifest.to_string());
        assert_eq!(code, 0, "{result}");
        std::fs::read_to_string(env.committed(&id, "sandbox.txt")).unwrap()
    };
    let first = record(1);
    assert!(
        first.contains("\nusers=root"),
        "sysusers made root:\n{first}"
    );
    let kept = env.store_entries("setups");
    assert_eq!(kept.len(), 1, "one build root, one set-up: {kept:?}");
    let etc = env.store.join("setups").join(&kept[0]);
    let marker = std::fs::read_to_string(etc.join(".osbuild-runner-setup")).unwrap();
    assert!(
        !marker.contains("ca-trust"),
        "no network, no CA trust: {marker}"
    );
    if std::path::Path::new("/usr/sbin/ldconfig").exists() {
        assert!(
            etc.join("ld.so.cache").is_file(),
            "ldconfig's cache is kept"
        );
    }

    // A user only the kept copy has: the next build's /etc comes from it, not a new set-up.
    let mut passwd = std::fs::read_to_string(etc.join("passwd")).unwrap();
    passwd.push_str("kept-set-up-witness:x:4242:4242::/:/bin/false\n");
    std::fs::write(etc.join("passwd"), passwd).unwrap();
    let second = record(2);
    assert!(
        second.contains(" kept-set-up-witness"),
        "the kept set-up was used:\n{second}"
    );
    assert_eq!(env.store_entries("setups"), kept);
    assert_store_clean(&env);
}

/// A set-up that fails fails the build before any stage, naming the runner, the tool's
/// output and its status, and leaves nothing behind (no kept set-up either).
#[test]
fn privileged_a_failing_set_up_is_named_and_leaves_nothing() {
    if !privileged("privileged_a_failing_set_up_is_named_and_leaves_nothing") {
        return;
    }
    let env = Env::new();
    let manifest = json!({"pipeline": {
        "build": {
            "pipeline": {"stages": [
                {"name": "org.osbuild.test.minimal-root"},
                {"name": "org.osbuild.test.broken-ldconfig"}
            ]},
            "runner": "org.osbuild.debian"
        },
        "stages": [{"name": "org.osbuild.test.say"}]
    }});
    // Checkpointed, the broken build root is a committed tree: a set-up of it could be kept.
    let build_tree = env.inspect(&manifest)["pipeline"]["build"]["pipeline"]["stages"][1]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = env.osbuild(&["--checkpoint", &build_tree], &manifest.to_string());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr
            .contains("the build root's set-up by runner org.osbuild.debian failed (exit status 1")
            && stderr.contains("BROKEN-LDCONFIG-MARKER"),
        "{stderr}"
    );
    assert!(!stdout.contains("OUTPUT-MARKER"), "no stage ran:\n{stdout}");
    // Only the host's set-up, which the build pipeline's own stages ran in, is kept.
    assert_eq!(env.store_entries("setups").len(), 1);
    assert_eq!(env.store_entries("refs"), [build_tree]);
    assert_store_clean(&env);
}

/// Options that only Python's JSON holds (a 40-digit integer, NaN) reach the stage and the
/// `--json` result verbatim, as osbuild v10 writes them.
#[test]
fn privileged_big_integers_and_nan_in_options_survive_verbatim() {
    if !privileged("privileged_big_integers_and_nan_in_options_survive_verbatim") {
        return;
    }
    let env = Env::new();
    let big = "1234567890123456789012345678901234567890";
    let manifest = format!(
        r#"{{"pipeline": {{"stages": [{{"name": "org.osbuild.test.record", "options": {{"nan": NaN, "big": {big}}}}}]}}}}"#
    );
    let build = |args: &[&str]| {
        let out = env.osbuild(args, &manifest);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(out.status.code(), Some(0), "{stdout}");
        stdout
    };
    let options = format!(r#""options": {{"nan": NaN, "big": {big}}}"#);
    let result = build(&["--json"]);
    assert!(result.contains(&options), "{result}");
    let tree_id = result
        .split(r#""tree_id": ""#)
        .nth(1)
        .and_then(|rest| rest.get(..64))
        .unwrap_or_else(|| panic!("no tree_id in {result}"))
        .to_owned();
    // Again as a checkpoint, to read back what the stage got on stdin.
    let result = build(&["--json", "--checkpoint", &tree_id]);
    assert!(result.contains(&options), "{result}");
    let args = std::fs::read_to_string(env.committed(&tree_id, "args.json")).unwrap();
    assert_eq!(
        args,
        format!(r#"{{"tree": "/run/osbuild/tree", "sources": "/run/osbuild/sources", {options}}}"#)
    );
    assert_store_clean(&env);
}

/// A build pipeline that makes a tiny build root, three stages, a gzip tarball.
fn tar_manifest(hostname: &str) -> Value {
    json!({"pipeline": {
        "build": {
            "pipeline": {"stages": [{"name": "org.osbuild.test.minimal-root"}]},
            "runner": "org.osbuild.linux"
        },
        "stages": [
            {"name": "org.osbuild.kernel-cmdline", "options": {"root_fs_uuid": "6e4ff95f-f662-45ee-a82a-bdf44a2d0b75", "kernel_opts": "ro"}},
            {"name": "org.osbuild.fstab", "options": {"filesystems": [{"uuid": "6e4ff95f-f662-45ee-a82a-bdf44a2d0b75", "vfs_type": "ext4", "path": "/"}]}},
            {"name": "org.osbuild.hostname", "options": {"hostname": hostname}}
        ],
        "assembler": {"name": "org.osbuild.tar", "options": {"filename": "tree.tar.gz", "compression": "gzip"}}
    }})
}

fn tar_list(path: &std::path::Path) -> String {
    let out = std::process::Command::new("tar")
        .arg("-tvzf")
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

fn tar_file(path: &std::path::Path, member: &str) -> String {
    let out = std::process::Command::new("tar")
        .arg("-xzOf")
        .arg(path)
        .arg(member)
        .output()
        .unwrap();
    assert!(out.status.success(), "{member} missing");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn privileged_build_pipeline_stages_tar_cache_and_resume() {
    if !privileged("privileged_build_pipeline_stages_tar_cache_and_resume") {
        return;
    }
    let env = Env::new();
    let manifest = tar_manifest("builder");
    let described = env.inspect(&manifest);
    let stage_ids: Vec<String> = described["pipeline"]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    let output_id = described["pipeline"]["assembler"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // First build: checkpoint the stage before the last.
    let (result, code) = env.build_json(&["--checkpoint", &stage_ids[1]], &manifest.to_string());
    assert_eq!(code, 0, "{result}");
    assert_eq!(ids(&result), stage_ids);
    assert_eq!(result["build"]["success"], true);
    assert_eq!(result["output_id"], output_id.as_str());
    let tarball = env.committed(&output_id, "tree.tar.gz");
    let listing = tar_list(&tarball);
    assert!(listing.contains("./etc/hostname"), "{listing}");
    assert!(
        listing.contains("-rw-r--r-- 0/0"),
        "numeric owners kept: {listing}"
    );
    assert_eq!(tar_file(&tarball, "./etc/hostname"), "builder\n");
    assert_eq!(
        tar_file(&tarball, "./etc/kernel/cmdline"),
        "root=UUID=6e4ff95f-f662-45ee-a82a-bdf44a2d0b75 ro"
    );
    assert!(
        env.store.join("refs").join(&stage_ids[1]).exists(),
        "checkpoint committed"
    );
    assert!(
        !env.store.join("refs").join(&stage_ids[2]).exists(),
        "no implicit commit of the tree"
    );
    assert_store_clean(&env);

    // Same manifest again: the output is cached, nothing runs.
    let (again, code) = env.build_json(&[], &manifest.to_string());
    assert_eq!(code, 0);
    assert_eq!(again, json!({"success": true, "output_id": output_id}));

    // Change the last stage: only it runs, from the checkpoint before it.
    let changed = tar_manifest("changed");
    let (result, code) = env.build_json(&[], &changed.to_string());
    assert_eq!(code, 0, "{result}");
    let ran = ids(&result);
    assert_eq!(ran.len(), 1, "only the changed stage runs: {result}");
    assert_ne!(ran[0], stage_ids[2]);
    assert_eq!(result["assembler"]["success"], true);
    let new_output = result["output_id"].as_str().unwrap();
    assert_eq!(
        tar_file(&env.committed(new_output, "tree.tar.gz"), "./etc/hostname"),
        "changed\n"
    );
    assert_store_clean(&env);
}

#[test]
fn privileged_failing_stage_leaves_the_store_as_it_was() {
    if !privileged("privileged_failing_stage_leaves_the_store_as_it_was") {
        return;
    }
    let env = Env::new();
    let good = json!({"pipeline": {"stages": [{"name": "org.osbuild.noop", "options": {"n": 1}}]}});
    let id = env.inspect(&good)["pipeline"]["stages"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, code) = env.build_json(&["--checkpoint", &id], &good.to_string());
    assert_eq!(code, 0);
    let before = (env.store_entries("objects"), env.store_entries("refs"));

    let bad = json!({"pipeline": {"stages": [
        {"name": "org.osbuild.noop", "options": {"n": 1}},
        {"name": "org.osbuild.test.record"},
        {"name": "org.osbuild.error", "options": {"returncode": 3}}
    ]}});
    let described = env.inspect(&bad);
    let all: Vec<&str> = described["pipeline"]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    let (result, code) = env.build_json(&["--checkpoint", all[2]], &bad.to_string());
    assert_eq!(code, 1, "{result}");
    assert_eq!(result["success"], false);
    let stages = result["stages"].as_array().unwrap();
    assert_eq!(
        stages.len(),
        2,
        "resumed after the cached noop, stopped at the error: {result}"
    );
    assert_eq!(stages[1]["success"], false);
    assert_eq!(
        (env.store_entries("objects"), env.store_entries("refs")),
        before
    );
    assert_store_clean(&env);
}

#[test]
fn privileged_unknown_checkpoint_fails_before_anything_runs() {
    if !privileged("privileged_unknown_checkpoint_fails_before_anything_runs") {
        return;
    }
    let env = Env::new();
    let manifest = json!({"pipeline": {"stages": [{"name": "org.osbuild.test.record"}]}});
    let bogus = "0".repeat(64);
    let out = env.osbuild(&["--checkpoint", &bogus], &manifest.to_string());
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("Checkpoint {bogus} not found!")) || stdout.contains(&bogus),
        "{stdout}"
    );
    assert!(stdout.contains("Failed"), "{stdout}");
    assert_eq!(env.store_entries("objects"), Vec::<String>::new());
}

#[test]
fn privileged_sigterm_kills_the_stage_cleans_up_and_exits_130() {
    if !privileged("privileged_sigterm_kills_the_stage_cleans_up_and_exits_130") {
        return;
    }
    let env = Env::new();
    let manifest = json!({"pipeline": {"stages": [{"name": "org.osbuild.test.sleep", "options": {"tag": env.dir.path().to_string_lossy()}}]}});
    let path = env.dir.path().join("sleep.json");
    std::fs::write(&path, manifest.to_string()).unwrap();
    let mut child = env
        .osbuild_cmd(&[])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let child = KillOnDrop(child);
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let line = lines
            .next()
            .expect("osbuild ended before the stage slept")
            .unwrap();
        if line.contains("sleeping") {
            break;
        }
        assert!(Instant::now() < deadline, "the stage never started");
    }
    // The backgrounded child may not have exec'd `sleep` yet when the line arrives.
    let deadline = Instant::now() + Duration::from_secs(10);
    while processes_matching("sleep 600").is_empty() {
        assert!(Instant::now() < deadline, "the stage's child never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let mut child = child;
    let status = child.0.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{rest:?}");
    assert!(rest.iter().any(|l| l.contains("Aborted")), "{rest:?}");
    assert_eq!(
        processes_matching("sleep 600"),
        Vec::<String>::new(),
        "no stray process"
    );
    assert_eq!(env.store_entries("refs"), Vec::<String>::new());
    assert_store_clean(&env);
}

#[test]
fn privileged_build_env_changes_the_build_root_but_not_the_ids() {
    if !privileged("privileged_build_env_changes_the_build_root_but_not_the_ids") {
        return;
    }
    let env = Env::new();
    let manifest = json!({"pipeline": {"stages": [{"name": "org.osbuild.test.record"}]}});
    let id = env.inspect(&manifest)["pipeline"]["stages"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let build_env = env.dir.path().join("build-env.json");
    let section = json!({"pipeline": {"stages": [{"name": "org.osbuild.test.minimal-root"}]}, "runner": "org.osbuild.linux"});
    std::fs::write(&build_env, section.to_string()).unwrap();
    let build_env = build_env.to_string_lossy().into_owned();

    let (result, code) = env.build_json(
        &["--build-env", &build_env, "--checkpoint", &id],
        &manifest.to_string(),
    );
    assert_eq!(code, 0, "{result}");
    assert_eq!(
        result["tree_id"],
        id.as_str(),
        "v10: --build-env does not change ids"
    );
    assert_eq!(result["build"]["success"], true);
    let facts = std::fs::read_to_string(env.committed(&id, "sandbox.txt")).unwrap();
    assert!(
        facts.contains("buildroot=other\n"),
        "ran in the build env's tree:\n{facts}"
    );
    assert_store_clean(&env);
}

#[test]
fn privileged_concurrent_builds_share_a_store() {
    if !privileged("privileged_concurrent_builds_share_a_store") {
        return;
    }
    let env = Env::new();
    let manifests: Vec<Value> = (0..3)
        .map(|i| {
            json!({"pipeline": {
                "stages": [{"name": "org.osbuild.noop", "options": {"shared": true}},
                           {"name": "org.osbuild.hostname", "options": {"hostname": format!("host{i}")}}],
                "assembler": {"name": "org.osbuild.tar", "options": {"filename": "t.tar"}}}})
        })
        .collect();
    let handles: Vec<_> = manifests
        .iter()
        .map(|m| {
            let cmd = env.osbuild_cmd(&["--json", "-"]);
            let text = m.to_string();
            std::thread::spawn(move || common::run_with_stdin(cmd, &text))
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let out = h.join().unwrap();
        let result: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(result["success"], true, "build {i}: {result}");
        let tarball = env.committed(result["output_id"].as_str().unwrap(), "t.tar");
        let listing = std::process::Command::new("tar")
            .arg("-xOf")
            .arg(&tarball)
            .arg("./etc/hostname")
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&listing.stdout),
            format!("host{i}\n")
        );
    }
    assert_eq!(env.store_entries("refs").len(), 3, "three outputs");
    assert_store_clean(&env);
}

/// Kills the `osbuild` under test if the test fails before it ends, so no stray process of a
/// failed run disturbs the next.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
