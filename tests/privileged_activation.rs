//! D-Bus activation, as root: no osbuildd runs until the first `osbuildctl` call makes the
//! bus start one through this checkout's activation file; it builds, leaves when idle, and the
//! next call starts it again (tests/common/service.rs, `Fixture::activatable`).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::privileged;
use common::service::*;
use serde_json::{json, Value};

const NAME: &str = "org.osbuild.Builder1";

/// `stages` slow stages (2 s each), then a tar of the tree.
fn slow_manifest(stages: usize, n: u32) -> Value {
    let mut list = vec![json!({"name": "org.osbuild.test.record", "options": {"n": n}})];
    for i in 0..stages {
        list.push(json!({"name": "org.osbuild.test.slow", "options": {"i": i}}));
    }
    json!({"pipeline": {
        "stages": list,
        "assembler": {"name": "org.osbuild.tar", "options": {"filename": "tree.tar"}}
    }})
}

fn cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// Waits (at most `limit`) until the name has no owner and `pid` has exited.
fn wait_for_exit(f: &Fixture, pid: u32, limit: Duration) -> Duration {
    let start = Instant::now();
    while f.has_owner(NAME) || process_alive(pid) {
        assert!(
            start.elapsed() < limit,
            "osbuildd {pid} still running after {limit:?}; bus log:\n{}",
            std::fs::read_to_string(f.env.dir.path().join("bus.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}

#[test]
fn privileged_activation_starts_osbuildd_which_leaves_when_idle_and_comes_back() {
    if !privileged("privileged_activation_starts_osbuildd_which_leaves_when_idle_and_comes_back") {
        return;
    }
    let f = Fixture::activatable("--idle-exit 2 --keep-finished 1");
    let _rules = f.grant_group();
    assert!(!f.has_owner(NAME), "no osbuildd before the first call");
    let names = run(Command::new("busctl")
        .arg(format!("--address={}", f.address))
        .args(["call", "org.freedesktop.DBus", "/org/freedesktop/DBus"])
        .args(["org.freedesktop.DBus", "ListActivatableNames"]));
    assert!(String::from_utf8_lossy(&names.stdout).contains(NAME));

    // The first call starts osbuildd; the build (6 s of stages, longer than the idle time)
    // runs to its end: a running job keeps the daemon.
    let m = f.manifest("slow.json", &slow_manifest(3, 1));
    let out = f.env.dir.path().join("out");
    let o = f.ctl(None, &["build", &m, "--output", out.to_str().unwrap()]);
    let first = f.owner_pid(NAME);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("slow stage done"));
    let listing = run(Command::new("tar").arg("-tf").arg(out.join("tree.tar")));
    assert!(String::from_utf8_lossy(&listing.stdout).contains("slow-args.json"));
    let first = first.expect("the bus started osbuildd");
    let args = cmdline(first);
    assert_eq!(args[0], env!("CARGO_BIN_EXE_osbuildd"), "{args:?}");
    assert!(
        args.windows(2).any(|w| w == ["--idle-exit", "2"]),
        "{args:?}"
    );

    // Idle: the finished job is kept 1 s, then 2 s without work, and it leaves by itself.
    let waited = wait_for_exit(&f, first, Duration::from_secs(30));
    assert!(waited >= Duration::from_secs(2), "left after {waited:?}");

    // The next call starts a new one, which finds the store the first one filled.
    let o = f.ctl(Some(BUILDER), &["objects"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("output"),
        "{}",
        text(&o)
    );
    let second = f.owner_pid(NAME).expect("activated again");
    assert_ne!(second, first);
    let o = f.ctl(Some(BUILDER), &["build", "--json", &m]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let result: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(result["success"], true, "{result}");
    wait_for_exit(&f, second, Duration::from_secs(30));
}
