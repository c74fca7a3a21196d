//! Clients of osbuildd end to end, as root: download progress (a unicast signal to the job's
//! owner), the example desktop client (examples/desktop-client.py, Python with Gio) as an
//! unprivileged user allowed by a polkit rule, and the README's `busctl`/`gdbus` lines.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::http::Server;
use common::service::*;
use common::{privileged, processes_matching};
use futures_util::StreamExt;
use osbuild::service::client::Builder1Proxy;
use osbuild::service::wire::BuildOptions;
use serde_json::{json, Value};

/// How long one build of these tests may take before it counts as hung.
const LIMIT: Duration = Duration::from_secs(90);

fn sha256(data: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(data);
    format!(
        "sha256:{}",
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// A manifest whose one stage gets `url` (content `data`) through org.osbuild.files.
fn fetch_manifest(url: &str, data: &[u8]) -> Value {
    let sum = sha256(data);
    json!({
        "pipeline": {"stages": [{"name": "org.osbuild.test.fetch", "options": {
            "source": "org.osbuild.files", "checksums": [&sum]}}]},
        "sources": {"org.osbuild.files": {"urls": {&sum: url}}},
    })
}

/// 2 MiB of bytes that differ with `seed`.
fn payload(seed: u8) -> Vec<u8> {
    (0..2u32 << 20).map(|i| (i % 251) as u8 ^ seed).collect()
}

/// One `DownloadProgress` as received: when, and its arguments.
type Report = (Instant, (String, u64, u64, u64, u64));

/// Builds `manifest` as root over zbus and collects the job's `DownloadProgress` signals.
async fn download_reports(f: &Fixture, manifest: &Value) -> Vec<Report> {
    let conn = f.conn().await;
    let p = Builder1Proxy::new(&conn).await.unwrap();
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .interface("org.osbuild.Builder1.Job")
        .member("DownloadProgress")
        .build()
        .unwrap();
    let mut reports = zbus::MessageStream::for_match_rule(rule, &conn, None)
        .await
        .unwrap();
    let mut done = p.receive_job_finished().await.unwrap();
    let job = p
        .build(&manifest.to_string(), &BuildOptions::default())
        .await
        .unwrap();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        tokio::select! {
            Some(Ok(msg)) = reports.next() => {
                assert_eq!(msg.header().path().unwrap().as_str(), job.as_str());
                seen.push((Instant::now(), msg.body().deserialize().unwrap()));
            }
            Some(sig) = done.next() => {
                let a = sig.args().unwrap();
                if a.job == job.as_ref() {
                    assert!(a.success, "{}", a.result);
                    return seen;
                }
            }
            _ = tokio::time::sleep_until(deadline) => panic!("no JobFinished within {LIMIT:?}"),
        }
    }
}

#[test]
fn privileged_clients_download_progress_reaches_the_owner_only_and_osbuildctl_shows_it() {
    if !privileged(
        "privileged_clients_download_progress_reaches_the_owner_only_and_osbuildctl_shows_it",
    ) {
        return;
    }
    let f = Fixture::new();
    let (first, second) = (payload(0), payload(0x5a));
    // 64 KiB every 80 ms: 2 MiB take about 2.5 s.
    let server = Server::start_paced(
        vec![("/first", first.clone()), ("/second", second.clone())],
        64 << 10,
        Duration::from_millis(80),
    );
    let monitor = watch_as_outsider(&f);

    let started = Instant::now();
    let reports = rt().block_on(download_reports(
        &f,
        &fetch_manifest(&server.url("/first"), &first),
    ));
    let took = started.elapsed();
    assert!(reports.len() >= 4, "several reports: {reports:?}");
    let figures: Vec<_> = reports.iter().map(|(_, a)| a.clone()).collect();
    assert!(
        figures.iter().all(|a| a.0 == "org.osbuild.files"),
        "{figures:?}"
    );
    assert!(
        figures.windows(2).all(|w| w[0].1 <= w[1].1),
        "bytes only grow: {figures:?}"
    );
    let total = first.len() as u64;
    assert_eq!(
        figures.last().unwrap(),
        &("org.osbuild.files".to_owned(), total, total, 1, 1),
        "the last report is where the download ended"
    );
    assert!(
        figures.iter().any(|a| a.1 > 0 && a.1 < total),
        "reports while it downloads: {figures:?}"
    );
    // At most 10 a second (one more: the last figures when the source is done).
    let span = reports.last().unwrap().0 - reports[0].0;
    let allowed = (span.as_secs_f64() * 10.0).floor() as usize + 2;
    assert!(
        reports.len() <= allowed,
        "{} reports in {span:?} (the build took {took:?})",
        reports.len()
    );

    let m = f.manifest(
        "second.json",
        &fetch_manifest(&server.url("/second"), &second),
    );
    let o = f.ctl_within(None, &["build", &m], LIMIT);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("org.osbuild.files: "))
        .collect();
    assert!(lines.len() >= 2, "plain progress lines: {stdout}");
    assert_eq!(
        lines.last().copied(),
        Some("org.osbuild.files: 1/1 files, 2.00 MiB of 2.00 MiB"),
        "{stdout}"
    );
    assert!(
        lines[0].starts_with("org.osbuild.files: 0/1 files, "),
        "{stdout}"
    );

    let seen = monitor_output(monitor);
    assert!(
        seen.contains("JobNew"),
        "the outsider was listening: {seen}"
    );
    assert!(
        !seen.contains("DownloadProgress"),
        "progress leaked: {seen}"
    );
}

/// examples/desktop-client.py, copied where the users can read it.
fn desktop_client(f: &Fixture) -> String {
    let dest = f.env.dir.path().join("desktop-client.py");
    let script = std::fs::read(repo().join("examples/desktop-client.py")).unwrap();
    osbuild_sys::process::write_executable(&dest, &script, 0o755).unwrap();
    dest.to_string_lossy().into_owned()
}

/// The desktop client as `user` (its uid and gid, as a desktop session runs it).
fn client_command(f: &Fixture, script: &str, user: &str, args: &[&str]) -> Command {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new("/usr/bin/python3");
    c.uid(uid_of(user))
        .gid(gid_of(user))
        .arg(script)
        .args(["--address", &f.address])
        .args(args)
        .current_dir("/");
    c
}

/// One run of the desktop client, under a deadline (`timeout` ends it with 124).
fn client(f: &Fixture, script: &str, user: &str, args: &[&str]) -> Output {
    let client = client_command(f, script, user, args);
    let mut c = Command::new("timeout");
    c.args(["--kill-after=5", &LIMIT.as_secs().to_string()])
        .arg(client.get_program())
        .args(client.get_args())
        .current_dir("/");
    use std::os::unix::process::CommandExt;
    c.uid(uid_of(user)).gid(gid_of(user));
    run(&mut c)
}

fn record_and_tar() -> Value {
    json!({"pipeline": {
        "stages": [{"name": "org.osbuild.test.record", "options": {"n": 1}}],
        "assembler": {"name": "org.osbuild.tar", "options": {"filename": "tree.tar"}}
    }})
}

fn tar_names(path: &Path) -> Vec<String> {
    let out = run(Command::new("tar").arg("-tf").arg(path));
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A directory `user` may write into.
fn users_dir(f: &Fixture, user: &str) -> PathBuf {
    let dir = f.env.dir.path().join(format!("{user}-out"));
    std::fs::create_dir(&dir).unwrap();
    let uid = nix::unistd::Uid::from_raw(uid_of(user));
    nix::unistd::chown(&dir, Some(uid), None).unwrap();
    dir
}

/// The fixture with the group rule in force (polkitd reads new rules within seconds).
fn granted(f: &Fixture, script: &str) -> Installed {
    let rule = f.grant_group();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let o = client(f, script, BUILDER, &["list"]);
        if o.status.code() == Some(0) {
            return rule;
        }
        assert!(
            o.status.code() == Some(3) && Instant::now() < deadline,
            "{}",
            text(&o)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn privileged_clients_desktop_client_builds_saves_and_cancels_as_a_user() {
    if !privileged("privileged_clients_desktop_client_builds_saves_and_cancels_as_a_user") {
        return;
    }
    let f = Fixture::new();
    let script = desktop_client(&f);
    let o = client(&f, &script, BUILDER, &["list"]);
    assert_eq!(o.status.code(), Some(3), "no rule yet: {}", text(&o));
    let _rule = granted(&f, &script);
    let out = users_dir(&f, BUILDER);

    // Build and save the image: one file of the output, through OpenOutput's fd.
    let m = f.manifest("tar.json", &record_and_tar());
    let image = out.join("image.tar");
    let args = [
        "build",
        &m,
        "--save",
        image.to_str().unwrap(),
        "--file",
        "tree.tar",
    ];
    let o = client(&f, &script, BUILDER, &args);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    for want in [
        "job /org/osbuild/Builder1/job/",
        "[1/2] org.osbuild.test.record ",
        "  recorded to stdout",
        "org.osbuild.test.record finished in ",
        "[2/2] org.osbuild.tar ",
        "progress 100%",
        "saved ",
    ] {
        assert!(stdout.contains(want), "{want:?} not in: {}", text(&o));
    }
    let names = tar_names(&image);
    assert!(names.iter().any(|n| n.ends_with("args.json")), "{names:?}");
    assert!(
        names.iter().any(|n| n.ends_with("sandbox.txt")),
        "{names:?}"
    );
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&image).unwrap();
    assert_eq!(meta.uid(), uid_of(BUILDER), "the user's file");

    // The whole output as a tar stream the daemon writes into the user's file.
    let output_id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("output id: "))
        .unwrap()
        .to_owned();
    let whole = out.join("output.tar");
    let o = client(
        &f,
        &script,
        BUILDER,
        &["save", &output_id, whole.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let names = tar_names(&whole);
    assert!(
        names
            .iter()
            .any(|n| n.trim_start_matches("./") == "tree.tar"),
        "{names:?}"
    );
    let o = client(&f, &script, BUILDER, &["list"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&output_id),
        "{}",
        text(&o)
    );

    // A long build, cancelled from a second client while the first one follows it, then
    // one cancelled by Ctrl-C in the client that follows it.
    let m = f.manifest(
        "sleep.json",
        &json!({"pipeline": {"stages": [{"name": "org.osbuild.test.sleep"}]}}),
    );
    cancel_while_following(
        &f,
        &script,
        &out.join("by-call"),
        &m,
        CancelBy::SecondClient,
    );
    cancel_while_following(&f, &script, &out.join("by-ctrl-c"), &m, CancelBy::CtrlC);
}

enum CancelBy {
    SecondClient,
    CtrlC,
}

/// Builds `manifest` (a stage that never ends) with the desktop client following it, cancels
/// it `how`, and checks the follower ends with 130, the job is cancelled and no stage process
/// is left. `logs`: a path prefix for the follower's output.
fn cancel_while_following(f: &Fixture, script: &str, logs: &Path, manifest: &str, how: CancelBy) {
    let (log, errors) = (logs.with_extension("log"), logs.with_extension("err"));
    let mut follow = client_command(f, script, BUILDER, &["build", manifest]);
    follow.stdout(std::fs::File::create(&log).unwrap());
    follow.stderr(std::fs::File::create(&errors).unwrap());
    let mut follower = Proc(follow.spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    let job = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(job) = text.lines().find_map(|l| l.strip_prefix("job ")) {
            break job.to_owned();
        }
        assert!(Instant::now() < deadline, "no job path printed: {text}");
        std::thread::sleep(Duration::from_millis(100));
    };
    wait_state(f, &job, "running");
    while processes_matching("sleep 600").is_empty() {
        assert!(Instant::now() < deadline, "the stage never ran");
        std::thread::sleep(Duration::from_millis(100));
    }
    match how {
        CancelBy::SecondClient => {
            let o = client(f, script, BUILDER, &["cancel", &job]);
            assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        }
        CancelBy::CtrlC => {
            let pid = nix::unistd::Pid::from_raw(follower.0.id() as i32);
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
        }
    }
    let status = loop {
        if let Some(status) = follower.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the following client did not end"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let followed = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(130), "{followed}");
    assert!(followed.contains("  sleeping"), "{followed}");
    let said = std::fs::read_to_string(&errors).unwrap();
    assert_eq!(said.trim(), "cancelled", "{followed}");
    wait_state(f, &job, "cancelled");
    assert!(
        processes_matching("sleep 600").is_empty(),
        "no stage process left"
    );
}

/// The shell lines of README.md's marked block (between `<!-- client-interface: begin -->`
/// and `<!-- client-interface: end -->`, inside its sh fence).
fn readme_client_lines() -> String {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let begin = "<!-- client-interface: begin -->";
    let end = "<!-- client-interface: end -->";
    let start = readme
        .find(begin)
        .expect("README.md has the client-interface block")
        + begin.len();
    let stop = start + readme[start..].find(end).expect("the block ends");
    let block = readme[start..stop].trim();
    let body = block
        .strip_prefix("```sh\n")
        .and_then(|b| b.strip_suffix("```"))
        .unwrap_or_else(|| panic!("the block is one sh fence:\n{block}"));
    body.to_owned()
}

#[test]
fn privileged_clients_the_readme_busctl_and_gdbus_lines_work() {
    if !privileged("privileged_clients_the_readme_busctl_and_gdbus_lines_work") {
        return;
    }
    let f = Fixture::new();
    let lines = readme_client_lines();
    let dir = f.env.dir.path().join("readme");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("manifest.json"), record_and_tar().to_string()).unwrap();
    let long = json!({"pipeline": {"stages": [{"name": "org.osbuild.test.sleep"}]}});
    std::fs::write(dir.join("long.json"), long.to_string()).unwrap();
    // On the private bus; whatever happens, nothing the lines start outlives them (`timeout`
    // kills its process group at the deadline, the trap a background job on an early exit).
    let script = format!("set -e\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n{lines}");
    let o = run(Command::new("timeout")
        .args(["--kill-after=5", &LIMIT.as_secs().to_string()])
        .args(["bash", "-c", &script])
        .env("DBUS_SYSTEM_BUS_ADDRESS", &f.address)
        .current_dir(&dir));
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}\n--- the lines:\n{lines}",
        text(&o)
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    for want in [
        // busctl introspect, then gdbus introspect
        ".ExportOutput                       method    sh",
        "ExportOutput(in  s id,",
        // ListObjects: an empty store
        "aa{sv} 0",
        // the build's State, Progress, OutputId
        "s \"succeeded\"",
        "d 1",
        // the cancelled job
        "s \"cancelled\"",
        // the monitor
        "org.osbuild.Builder1.JobNew (objectpath '/org/osbuild/Builder1/job/1',)",
        "org.osbuild.Builder1.JobFinished (objectpath '/org/osbuild/Builder1/job/1', true,",
        "org.osbuild.Builder1.JobFinished (objectpath '/org/osbuild/Builder1/job/2', false,",
    ] {
        assert!(stdout.contains(want), "{want:?} not in:\n{}", text(&o));
    }
    // GetResult, as gdbus prints a string: in single quotes, or in double quotes with inner
    // ones escaped when the text has a single quote (a stage's output may).
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("('{\"success\": true")
                || l.starts_with("(\"{\\\"success\\\": true")),
        "no GetResult line in:\n{}",
        text(&o)
    );
    assert!(
        processes_matching("sleep 600").is_empty(),
        "the cancelled job left a process"
    );
    assert!(
        processes_matching("gdbus monitor").is_empty(),
        "the monitor was left"
    );
}
