//! osbuildd end to end, as root: a private system-type bus, the real polkitd, throwaway users,
//! the policy and bus configuration of this checkout, and `osbuildctl`.
//!
//! The fixture (tests/common/service.rs) changes system files, so these tests run one at a time,
//! also across processes.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::service::*;
use common::{peak_rss_kib, privileged, processes_matching, rpm_repo};
use futures_util::StreamExt;
use osbuild::service::client::{error_reply, Builder1Proxy};
use osbuild::service::wire::BuildOptions;
use serde_json::{json, Value};

fn record_and_tar() -> Value {
    json!({"pipeline": {
        "stages": [{"name": "org.osbuild.test.record", "options": {"n": 1}}],
        "assembler": {"name": "org.osbuild.tar", "options": {"filename": "tree.tar"}}
    }})
}

fn tar_list(path: &Path) -> String {
    let out = run(Command::new("tar").arg("-tf").arg(path));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn privileged_service_root_builds_with_output_and_signals_in_order() {
    if !privileged("privileged_service_root_builds_with_output_and_signals_in_order") {
        return;
    }
    let f = Fixture::new();
    let m = f.manifest("m.json", &record_and_tar());
    let out_dir = f.env.dir.path().join("out");
    let o = f.ctl(None, &["build", &m, "--output", out_dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("recorded to stdout"),
        "owner sees stage output: {stdout}"
    );
    assert!(tar_list(&out_dir.join("tree.tar")).contains("args.json"));

    // Signals, in order, for a second (uncached) manifest, seen by a plain bus client.
    rt().block_on(async {
        let conn = f.conn().await;
        let p = Builder1Proxy::new(&conn).await.unwrap();
        let mut all = p.inner().receive_all_signals().await.unwrap();
        let mut m2 = record_and_tar();
        m2["pipeline"]["stages"][0]["options"]["n"] = json!(2);
        let job = p
            .build(&m2.to_string(), &BuildOptions::default())
            .await
            .unwrap();
        let mut seen = Vec::new();
        while let Some(msg) = all.next().await {
            let h = msg.header();
            let member = h.member().map(|m| m.to_string()).unwrap_or_default();
            if member == "PropertiesChanged" {
                continue;
            }
            seen.push(member.clone());
            if member == "JobFinished" {
                let (path, ok, result): (zbus::OwnedObjectPath, bool, String) =
                    msg.body().deserialize().unwrap();
                assert_eq!(path, job);
                assert!(ok, "{result}");
                let r: Value = serde_json::from_str(&result).unwrap();
                assert_eq!(r["success"], true);
                assert_eq!(r["output_id"].as_str().unwrap().len(), 64);
                break;
            }
        }
        let expected = [
            "JobNew",
            "StageStarted",
            "StageOutput",
            "StageOutput",
            "StageFinished",
            "StageStarted",
            "StageFinished",
            "JobFinished",
        ];
        let filtered: Vec<&str> = seen
            .iter()
            .map(String::as_str)
            .filter(|s| *s != "StageOutput")
            .collect();
        let want: Vec<&str> = expected
            .iter()
            .copied()
            .filter(|s| *s != "StageOutput")
            .collect();
        assert_eq!(filtered, want, "all signals: {seen:?}");
        assert!(seen.iter().any(|s| s == "StageOutput"), "{seen:?}");
    });
}

#[test]
fn privileged_service_user_denied_until_a_rule_grants_the_group() {
    if !privileged("privileged_service_user_denied_until_a_rule_grants_the_group") {
        return;
    }
    let f = Fixture::new();
    let m = f.manifest("m.json", &record_and_tar());
    let o = f.ctl(Some(BUILDER), &["build", &m]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("org.osbuild.builder1.build"), "{err}");
    assert!(f.store_names("refs").is_empty() && f.store_names("objects").is_empty());

    let _rule = f.grant_group();
    let out_dir = f.env.dir.path().join("user-out");
    std::fs::create_dir(&out_dir).unwrap();
    let uid = uid_of(BUILDER);
    nix::unistd::chown(&out_dir, Some(nix::unistd::Uid::from_raw(uid)), None).unwrap();
    // polkitd notices new rules within a few seconds.
    let deadline = Instant::now() + Duration::from_secs(15);
    let o = loop {
        let o = f.ctl(
            Some(BUILDER),
            &["build", &m, "--output", out_dir.to_str().unwrap()],
        );
        if o.status.code() != Some(3) || Instant::now() > deadline {
            break o;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let tar = out_dir.join("tree.tar");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(&tar).unwrap().uid(),
        uid,
        "owned by the caller"
    );
    // The outsider, in no group, is still refused.
    let o = f.ctl(Some(OUTSIDER), &["objects"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
}

fn sleep_manifest() -> Value {
    json!({"pipeline": {"stages": [{"name": "org.osbuild.test.sleep"}]}})
}

fn daemon_mounts(f: &Fixture) -> Vec<String> {
    let text =
        std::fs::read_to_string(format!("/proc/{}/mountinfo", f.daemon_pid())).unwrap_or_default();
    let store = f.env.store.to_string_lossy().into_owned();
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&store))
        .map(str::to_owned)
        .collect()
}

/// The fixture with the group rule in force, and the outsider watching.
fn granted_and_watched() -> (Fixture, Installed, Proc) {
    let f = Fixture::new();
    let rule = f.grant_group();
    // polkitd notices new rules within a few seconds.
    std::thread::sleep(Duration::from_secs(3));
    let monitor = watch_as_outsider(&f);
    (f, rule, monitor)
}

#[test]
fn privileged_service_owner_cancels_others_cannot_and_see_no_output() {
    if !privileged("privileged_service_owner_cancels_others_cannot_and_see_no_output") {
        return;
    }
    let (f, _rule, monitor) = granted_and_watched();
    let m = f.manifest("sleep.json", &sleep_manifest());
    let o = f.ctl(Some(BUILDER), &["build", &m, "--detach"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let job = String::from_utf8_lossy(&o.stdout).trim().to_owned();
    assert!(job.starts_with("/org/osbuild/Builder1/job/"), "{job}");
    wait_state(&f, &job, "running");
    let deadline = Instant::now() + Duration::from_secs(10);
    while processes_matching("sleep 600").is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));

    let o = f.ctl(Some(OUTSIDER), &["cancel", &job]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("cancel-other-user"),
        "{}",
        text(&o)
    );
    let o = f.ctl(Some(BUILDER), &["cancel", &job]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    wait_state(&f, &job, "cancelled");

    assert!(
        processes_matching("sleep 600").is_empty(),
        "no stage process left"
    );
    assert!(daemon_mounts(&f).is_empty(), "{:?}", daemon_mounts(&f));
    assert!(f.store_names("refs").is_empty(), "nothing committed");
    assert!(
        f.store_names("tmp").is_empty(),
        "{:?}",
        f.store_names("tmp")
    );

    let seen = monitor_output(monitor);
    assert!(
        seen.contains("StageStarted"),
        "broadcast signals are public: {seen}"
    );
    assert!(!seen.contains("StageOutput"), "output lines leaked: {seen}");
    assert!(!seen.contains("sleeping"), "output lines leaked: {seen}");
}

/// A stage printing 60 MiB (10 of them in one unterminated line) through osbuildd: the job
/// succeeds, its result keeps a bounded tail, and the daemon's memory stays bounded (the
/// build thread waits for the bus instead of the daemon buffering every line).
#[test]
fn privileged_service_a_flooding_stage_leaves_the_daemon_bounded() {
    if !privileged("privileged_service_a_flooding_stage_leaves_the_daemon_bounded") {
        return;
    }
    let f = Fixture::new();
    let flood = json!({"pipeline": {"stages": [{"name": "org.osbuild.test.flood"}]}});
    let m = f.manifest("flood.json", &flood);
    let o = f.ctl(None, &["build", &m, "--detach"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let job = String::from_utf8_lossy(&o.stdout).trim().to_owned();
    wait_state(&f, &job, "succeeded");
    let o = run(Command::new("busctl")
        .arg(format!("--address={}", f.address))
        .args(["--json=short", "call", "org.osbuild.Builder1", &job])
        .args(["org.osbuild.Builder1.Job", "GetResult"]));
    assert!(o.status.success(), "{}", text(&o));
    let reply: Value = serde_json::from_slice(&o.stdout).unwrap();
    let result: Value = serde_json::from_str(reply["data"][0].as_str().unwrap()).unwrap();
    let output = result["stages"][0]["output"].as_str().unwrap();
    assert!(output.len() <= 1024 * 1024 + 100, "{}", output.len());
    assert!(output.starts_with("[... the first "), "{}", &output[..100]);
    assert!(output.ends_with(" bytes of this line dropped]"));
    let peak = peak_rss_kib(f.daemon_pid()).expect("osbuildd still runs");
    assert!(peak < 48 * 1024, "osbuildd's peak RSS: {peak} KiB");
}

/// Cancel replies only once the sandbox is gone: right after it, the job is cancelled and no
/// process of it runs, even a grandchild of a stage that ignores SIGTERM.
#[test]
fn privileged_service_cancel_returns_when_no_process_of_the_sandbox_remains() {
    if !privileged("privileged_service_cancel_returns_when_no_process_of_the_sandbox_remains") {
        return;
    }
    let f = Fixture::new();
    let stubborn = json!({"pipeline": {"stages": [{"name": "org.osbuild.test.stubborn"}]}});
    let m = f.manifest("stubborn.json", &stubborn);
    let o = f.ctl(None, &["build", &m, "--detach"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let job = String::from_utf8_lossy(&o.stdout).trim().to_owned();
    wait_state(&f, &job, "running");
    let deadline = Instant::now() + Duration::from_secs(10);
    while processes_matching("sleep 1000").is_empty() {
        assert!(
            Instant::now() < deadline,
            "the stage's grandchild never ran"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = f.ctl(None, &["cancel", &job]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        processes_matching("sleep 1000"),
        Vec::<String>::new(),
        "no process of the sandbox once cancel returned"
    );
    let o = run(Command::new("busctl")
        .arg(format!("--address={}", f.address))
        .args(["get-property", "org.osbuild.Builder1", &job])
        .args(["org.osbuild.Builder1.Job", "State"]));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "s \"cancelled\"");
    assert!(daemon_mounts(&f).is_empty(), "{:?}", daemon_mounts(&f));
    assert!(
        f.store_names("tmp").is_empty(),
        "{:?}",
        f.store_names("tmp")
    );
}

/// A stage whose options and output carry markers, then optionally one that never ends.
fn marked_manifest(fail: bool, then_sleep: bool) -> Value {
    let mut stages = vec![json!({
        "name": "org.osbuild.test.say",
        "options": {"password": "$6$OPTION-MARKER", "fail": fail}
    })];
    if then_sleep {
        stages.push(json!({"name": "org.osbuild.test.sleep"}));
    }
    json!({"pipeline": {"stages": stages}})
}

/// `Job.GetResult` of `job` called by `user` with gdbus.
fn get_result_as(f: &Fixture, user: &str, job: &str) -> Output {
    run(Command::new("runuser")
        .args(["-u", user, "--", "gdbus", "call", "--address", &f.address])
        .args(["--dest", "org.osbuild.Builder1", "--object-path", job])
        .args(["--method", "org.osbuild.Builder1.Job.GetResult"])
        .current_dir("/"))
}

#[test]
fn privileged_service_others_see_nothing_of_a_job_but_its_summary() {
    if !privileged("privileged_service_others_see_nothing_of_a_job_but_its_summary") {
        return;
    }
    let (f, _rule, monitor) = granted_and_watched();

    // Succeeded and failed: the owner's --json prints the full result (through GetResult).
    for (fail, code) in [(false, 0), (true, 1)] {
        let m = f.manifest("marked.json", &marked_manifest(fail, false));
        let o = f.ctl(Some(BUILDER), &["build", &m, "--json"]);
        assert_eq!(o.status.code(), Some(code), "{}", text(&o));
        let r: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
        assert_eq!(r["success"], !fail);
        assert_eq!(r["stages"][0]["options"]["password"], "$6$OPTION-MARKER");
        assert!(
            r["stages"][0]["output"]
                .as_str()
                .unwrap()
                .contains("OUTPUT-MARKER"),
            "{r}"
        );
    }
    // Cancelled after the marked stage ran.
    let m = f.manifest("marked-sleep.json", &marked_manifest(false, true));
    let o = f.ctl(Some(BUILDER), &["build", &m, "--detach"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let cancelled = String::from_utf8_lossy(&o.stdout).trim().to_owned();
    wait_state(&f, &cancelled, "running");
    let deadline = Instant::now() + Duration::from_secs(10);
    while processes_matching("sleep 600").is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = f.ctl(Some(BUILDER), &["cancel", &cancelled]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    wait_state(&f, &cancelled, "cancelled");

    let jobs = rt().block_on(async {
        let conn = f.conn().await;
        let p = Builder1Proxy::new(&conn).await.unwrap();
        p.list_jobs().await.unwrap()
    });
    assert_eq!(jobs.len(), 3, "{jobs:?}");
    // The outsider is refused, under one of the service's two refusal names (polkit would
    // ask an administrator's password, which this call did not allow).
    let refusals = [
        "org.freedesktop.DBus.Error.AccessDenied",
        "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired",
    ];
    for job in &jobs {
        let o = get_result_as(&f, OUTSIDER, job.as_str());
        assert!(!o.status.success(), "{}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(refusals.iter().any(|r| err.contains(r)), "{}", text(&o));
        assert!(err.contains("cancel-other-user"), "{}", text(&o));
        assert!(!err.contains("MARKER"), "{}", text(&o));
    }
    let o = get_result_as(&f, BUILDER, jobs[1].as_str());
    assert!(o.status.success(), "{}", text(&o));
    let full = String::from_utf8_lossy(&o.stdout);
    assert!(
        full.contains("OPTION-MARKER") && full.contains("OUTPUT-MARKER"),
        "{full}"
    );

    std::thread::sleep(Duration::from_millis(500));
    let seen = monitor_output(monitor);
    assert_eq!(seen.matches("JobFinished").count(), 3, "{seen}");
    assert!(
        seen.contains("org.osbuild.test.say"),
        "summaries name stages: {seen}"
    );
    assert!(!seen.contains("OPTION-MARKER"), "an option leaked: {seen}");
    assert!(
        !seen.contains("OUTPUT-MARKER"),
        "an output line leaked: {seen}"
    );
}

fn slow_manifest(tag: &str) -> Value {
    json!({"pipeline": {
        "stages": [
            {"name": "org.osbuild.test.slow", "options": {"shared": true}},
            {"name": "org.osbuild.test.record", "options": {"tag": tag}}
        ],
        "assembler": {"name": "org.osbuild.tar", "options": {"filename": "t.tar"}}
    }})
}

#[test]
fn privileged_service_concurrent_jobs_share_a_stage_built_once() {
    if !privileged("privileged_service_concurrent_jobs_share_a_stage_built_once") {
        return;
    }
    let f = Fixture::new();
    rt().block_on(async {
        let conn = f.conn().await;
        let p = Builder1Proxy::new(&conn).await.unwrap();
        let mut started = p.receive_stage_started().await.unwrap();
        let mut finished = p.receive_job_finished().await.unwrap();
        let manifests = [slow_manifest("a"), slow_manifest("a"), slow_manifest("b")];
        let (j1, j2, j3) = futures_util::future::join3(
            p.build(&manifests[0].to_string(), &BuildOptions::default()),
            p.build(&manifests[1].to_string(), &BuildOptions::default()),
            p.build(&manifests[2].to_string(), &BuildOptions::default()),
        )
        .await;
        let jobs = [j1.unwrap(), j2.unwrap(), j3.unwrap()];
        let mut results = HashMap::new();
        while results.len() < 3 {
            let s = tokio::time::timeout(Duration::from_secs(60), finished.next())
                .await
                .expect("jobs finish")
                .unwrap();
            let a = s.args().unwrap();
            results.insert(a.job.to_string(), (a.success, a.result.to_string()));
        }
        for j in &jobs {
            let (ok, r) = &results[j.as_str()];
            assert!(*ok, "{j}: {r}");
        }
        let mut slow_runs = 0;
        while let Ok(Some(s)) =
            tokio::time::timeout(Duration::from_millis(200), started.next()).await
        {
            if s.args().unwrap().name == "org.osbuild.test.slow" {
                slow_runs += 1;
            }
        }
        assert_eq!(slow_runs, 1, "the shared stage ran once");
        let objects = p.list_objects().await.unwrap();
        let outputs = objects.iter().filter(|o| o.kind == "output").count();
        assert_eq!(outputs, 2, "two different outputs");
    });
    assert!(f.store_names("tmp").is_empty());
}

#[test]
fn privileged_service_client_disconnect_does_not_kill_the_job() {
    if !privileged("privileged_service_client_disconnect_does_not_kill_the_job") {
        return;
    }
    let f = Fixture::new();
    let m = f.manifest("slow.json", &slow_manifest("disconnect"));
    let mut client = Proc(
        Command::new(env!("CARGO_BIN_EXE_osbuildctl"))
            .arg("--address")
            .arg(&f.address)
            .args(["build", &m])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut first = String::new();
    BufReader::new(client.0.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains("org.osbuild.test.slow"), "{first}");
    client.0.kill().unwrap();
    let _ = client.0.wait();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = f.ctl(None, &["objects"]);
        if String::from_utf8_lossy(&o.stdout).contains(" output ") {
            break;
        }
        assert!(Instant::now() < deadline, "{}", text(&o));
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn privileged_service_sigkilled_daemon_leaves_nothing_behind() {
    if !privileged("privileged_service_sigkilled_daemon_leaves_nothing_behind") {
        return;
    }
    let mut f = Fixture::new();
    // Something committed first, so there are treesums to verify.
    let m = f.manifest("m.json", &record_and_tar());
    assert_eq!(f.ctl(None, &["build", &m]).status.code(), Some(0));
    let s = f.manifest("sleep.json", &sleep_manifest());
    let o = f.ctl(None, &["build", &s, "--detach"]);
    let job = String::from_utf8_lossy(&o.stdout).trim().to_owned();
    wait_state(&f, &job, "running");
    // A client following a build (the same stage: it waits for the first job's).
    let mut follower = f.ctl_command(None, &["build", &s]);
    follower.stdout(Stdio::piped()).stderr(Stdio::piped());
    let follower = follower.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while processes_matching("sleep 600").is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!processes_matching("sleep 600").is_empty());
    // The follower's job exists (the first build's, the sleeping one's, then its own): it
    // subscribed to the daemon before asking for it, so it can see the daemon go. Killed any
    // earlier, it finds no daemon at all (ServiceUnknown) instead.
    let jobs = |f: &Fixture| {
        let o = f.ctl(None, &["jobs"]);
        String::from_utf8_lossy(&o.stdout).lines().count()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while jobs(&f) < 3 {
        assert!(Instant::now() < deadline, "the follower's job never came");
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = nix::unistd::Pid::from_raw(f.daemon_pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    let _ = f.daemon.take();
    // The follower notices the daemon is gone (its name lost its owner) and says so.
    let o = wait_within(
        follower,
        Duration::from_secs(10),
        "the following osbuildctl",
    );
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(
        text(&o).contains("osbuildd went away while job "),
        "{}",
        text(&o)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !processes_matching("sleep 600").is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        processes_matching("sleep 600").is_empty(),
        "stage killed with the daemon"
    );
    assert!(common::mounts_under(&f.env.store).is_empty());
    f.start_daemon(&[]);
    assert!(
        f.store_names("tmp").is_empty(),
        "{:?}",
        f.store_names("tmp")
    );
    for name in f.store_names("objects") {
        let sum = osbuild::store::treesum(&f.env.store.join("objects").join(&name)).unwrap();
        assert_eq!(sum.to_string(), name);
    }
    assert!(!f.store_names("objects").is_empty());
}

#[test]
fn privileged_service_bad_manifests_get_clear_errors_and_no_side_effects() {
    if !privileged("privileged_service_bad_manifests_get_clear_errors_and_no_side_effects") {
        return;
    }
    let f = Fixture::new();
    let huge = json!({"pipeline": {"stages": [
        {"name": "org.osbuild.test.record", "options": {"pad": "x".repeat(5 << 20)}}
    ]}});
    let cases: Vec<(String, &str, &str)> = vec![
        ("{\"pipeline\": [".into(), "InvalidManifest", "invalid JSON"),
        (
            huge.to_string(),
            "ManifestTooLarge",
            "accepts at most 4194304",
        ),
        (
            json!({"pipeline": {"stages": [{"name": "org.osbuild.nonexistent"}]}}).to_string(),
            "InvalidManifest",
            "org.osbuild.nonexistent",
        ),
        (
            json!({"pipeline": {"assembler": {"name": "org.osbuild.tar",
                "options": {"filename": "../../../etc/evil"}}}})
            .to_string(),
            "InvalidManifest",
            "pipeline.assembler.options.filename",
        ),
        (
            json!({"pipeline": {"stages": [{"name": "../../../usr/bin/sh"}]}}).to_string(),
            "InvalidManifest",
            "pipeline.stages[0]",
        ),
    ];
    rt().block_on(async {
        let conn = f.conn().await;
        let p = Builder1Proxy::new(&conn).await.unwrap();
        for (manifest, name, fragment) in &cases {
            let e = p
                .build(manifest, &BuildOptions::default())
                .await
                .unwrap_err();
            let (got, msg) = error_reply(&e).unwrap();
            assert_eq!(got, format!("org.osbuild.Builder1.Error.{name}"), "{msg}");
            assert!(msg.contains(fragment), "{name}: '{fragment}' not in {msg}");
        }
        assert!(p.list_jobs().await.unwrap().is_empty());
    });
    for sub in ["refs", "objects", "tmp"] {
        assert!(
            f.store_names(sub).is_empty(),
            "{sub}: {:?}",
            f.store_names(sub)
        );
    }
    assert!(!Path::new("/etc/evil").exists());
}

#[test]
fn privileged_service_dnf_keeps_repository_secrets_out_of_logs_and_results() {
    let test = "privileged_service_dnf_keeps_repository_secrets_out_of_logs_and_results";
    if !rpm_repo::tools_present(test) {
        return;
    }
    let f = Fixture::new();
    let work = f.env.dir.path().join("dnf");
    std::fs::create_dir(&work).unwrap();
    let repo = rpm_repo::Repo::create(&work);
    let pki = rpm_repo::Pki::create(work.join("pki"));
    let server = rpm_repo::TlsServer::start(&pki, &repo.dir);
    let checksum = repo.checksum();
    let m = f.manifest(
        "dnf.json",
        &json!({
            "pipeline": {
                "stages": [{"name": "org.osbuild.dnf", "options": {
                    "repos": [checksum], "packages": ["osbuild-app"],
                    "releasever": "39", "basearch": "x86_64"}}],
                "assembler": {"name": "org.osbuild.tar", "options": {"filename": "tree.tar"}}
            },
            "sources": {"org.osbuild.dnf": {"repos": {&checksum: {
                "baseurl": format!("https://127.0.0.1:{}/", server.port),
                "sslcacert": pki.pem("ca.crt")}}}},
        }),
    );
    let client_key = pki.pem("client.key");
    let secrets = f.env.dir.path().join("secrets.json");
    std::fs::write(
        &secrets,
        json!({"org.osbuild.dnf": {"repos": {&checksum: {
            "sslclientcert": pki.pem("client.crt"), "sslclientkey": client_key}}}})
        .to_string(),
    )
    .unwrap();
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();

    let out_dir = f.env.dir.path().join("out");
    let o = f.ctl(
        None,
        &[
            "build",
            &m,
            "--secrets",
            secrets.to_str().unwrap(),
            "--output",
            out_dir.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(tar_list(&out_dir.join("tree.tar")).contains("usr/share/osbuild-base/greeting"));

    // The daemon logs every stage line (the journal, in production): the key is in none.
    let key_body = client_key
        .lines()
        .find(|l| l.len() > 40 && !l.starts_with("-----"))
        .unwrap()
        .to_owned();
    let log = std::fs::read_to_string(f.env.dir.path().join("osbuildd.log")).unwrap();
    assert!(log.contains("Complete!"), "stage output is logged: {log}");
    assert!(!log.contains(&key_body), "key in the daemon's log");
    assert!(!text(&o).contains(&key_body), "key in osbuildctl's output");
    let leaked: Vec<PathBuf> = [f.env.store.as_path(), out_dir.as_path()]
        .iter()
        .flat_map(|d| common::files_containing(d, key_body.as_bytes()))
        .collect();
    assert_eq!(leaked, Vec::<PathBuf>::new());
}

/// The daemon keeps its store to itself (0700, whatever made the directory) and verifies it on
/// request of an administrator only: `osbuildctl verify` reports, and a corrupt object is
/// quarantined with its refs.
#[test]
fn privileged_service_store_is_private_and_verified_on_request() {
    if !privileged("privileged_service_store_is_private_and_verified_on_request") {
        return;
    }
    let f = Fixture::new();
    let mode = std::fs::metadata(&f.env.store)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(mode, 0o700, "the store's mode");
    let m = f.manifest("m.json", &record_and_tar());
    let o = f.ctl(None, &["build", &m]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = f.ctl(None, &["verify"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let objects = f.store_names("objects");
    assert!(
        String::from_utf8_lossy(&o.stdout).ends_with(&format!(
            "checked {} object(s) and 0 download(s): all match their names\n",
            objects.len()
        )),
        "{}",
        text(&o)
    );
    // Someone else may not, even to look.
    let o = f.ctl(Some(OUTSIDER), &["verify"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    // Damage one object: verify exits 1, names it, and quarantines it.
    let victim = f.env.store.join("objects").join(&objects[0]);
    let file = std::fs::read_dir(&victim)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_file())
        .expect("a file in the object");
    std::fs::write(&file, b"damaged").unwrap();
    let o = f.ctl(None, &["verify"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let report = String::from_utf8_lossy(&o.stdout);
    assert!(
        report.contains(&format!(
            "corrupt: objects/{} (its content hashes to ",
            objects[0]
        )),
        "{report}"
    );
    assert!(!victim.exists());
    assert_eq!(f.store_names("quarantine").len(), 1);
}

/// The sources run as root; for a caller who is not, they read nothing of the host: a
/// `file:///etc/shadow` source fails without reading it (so no digest or size of it appears),
/// and so does a certificate path.
#[test]
fn privileged_service_sources_read_no_host_file_for_a_user() {
    if !privileged("privileged_service_sources_read_no_host_file_for_a_user") {
        return;
    }
    let f = Fixture::new();
    let _rule = f.grant_group();
    let shadow = std::fs::read("/etc/shadow").unwrap();
    let digest = {
        use sha2::Digest;
        let d = sha2::Sha256::digest(&shadow);
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let claimed = format!("sha256:{}", "0".repeat(64));
    let fetch = |sources: Value| {
        json!({"pipeline": {"stages": [{"name": "org.osbuild.test.fetch", "options": {
            "source": "org.osbuild.files", "checksums": [&claimed]}}]},
            "sources": {"org.osbuild.files": sources}})
    };
    let shadow_url = fetch(json!({"urls": {&claimed: "file:///etc/shadow"}}));
    let ca_path =
        fetch(json!({"urls": {&claimed: "http://127.0.0.1:9/x"}, "sslcacert": "/etc/shadow"}));
    for (name, manifest, want) in [
        ("shadow.json", shadow_url, "a file:// URL would be read as root, so it is refused for a caller who is not root"),
        ("ca.json", ca_path, "option sslcacert: a path would be read as root, so it is refused for a caller who is not root"),
    ] {
        let m = f.manifest(name, &manifest);
        // polkitd notices the new rule within a few seconds.
        let deadline = Instant::now() + Duration::from_secs(15);
        let o = loop {
            let o = f.ctl(Some(BUILDER), &["build", &m]);
            if o.status.code() != Some(3) || Instant::now() > deadline {
                break o;
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        let all = text(&o);
        assert_eq!(o.status.code(), Some(1), "{all}");
        assert!(all.contains(want), "{all}");
        assert!(!all.contains(&digest) && !all.contains(&format!("{} bytes", shadow.len())), "{all}");
        let log = std::fs::read_to_string(f.env.dir.path().join("osbuildd.log")).unwrap();
        assert!(!log.contains(&digest), "the daemon's log");
        assert!(f.store_names("objects").is_empty());
    }
    // Root may (it could read the file anyway): the source reads it and finds the wrong sum.
    let m = f.manifest(
        "root.json",
        &fetch(json!({"urls": {&claimed: "file:///etc/shadow"}})),
    );
    let o = f.ctl(None, &["build", &m]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("checksum mismatch"), "{}", text(&o));
}

/// `osbuildctl export` and `build --output` end in seconds, with a reason, when the daemon
/// refuses: a missing object, an id that is none.
#[test]
fn privileged_service_export_of_a_missing_object_fails_in_seconds() {
    if !privileged("privileged_service_export_of_a_missing_object_fails_in_seconds") {
        return;
    }
    let f = Fixture::new();
    let dir = f.env.dir.path().join("out");
    let dir = dir.to_str().unwrap();
    let missing = "0".repeat(64);
    for (id, want) in [
        (missing.as_str(), "NoSuchObject: "),
        ("nope", "NoSuchObject: "),
    ] {
        let o = f.ctl_within(None, &["export", id, dir], Duration::from_secs(10));
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(text(&o).contains(want), "{}", text(&o));
    }
}
