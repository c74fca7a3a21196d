//! osbuildd and the real journal, as root: `systemd-journald` runs in a private mount namespace
//! whose /run is its own (so neither it nor osbuildd touches the machine's journal), osbuildd
//! runs in that namespace, a build goes through `osbuildctl`, and `journalctl -o json` reads
//! the structured fields back. Then a journal socket that nobody serves: osbuildd logs to
//! stderr instead of losing its log.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::privileged;
use common::service::*;
use serde_json::{json, Value};

/// Mounts a tmpfs over /run (and /var/log/journal), binds `$SOCKETS` and `$FILES` where the
/// journal keeps its sockets and files when given, then execs its arguments.
const PRIVATE_RUN: &str = r#"set -e
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/systemd/journal /run/log/journal
if [ -n "$SOCKETS" ]; then mount --bind "$SOCKETS" /run/systemd/journal; fi
if [ -n "$FILES" ]; then mount --bind "$FILES" /run/log/journal; fi
if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal; fi
exec "$@"
"#;

/// A private mount namespace held by one process (journald, or a sleeper), killed on drop;
/// the namespace and its mounts end with the last process in it.
struct PrivateRun {
    holder: Proc,
    /// Where the journal's files land (bound at /run/log/journal inside).
    dir: tempfile::TempDir,
}

impl PrivateRun {
    /// Runs `argv` in a new namespace; `sockets`: a directory to show at /run/systemd/journal.
    fn start(sockets: Option<&Path>, argv: &[&str]) -> PrivateRun {
        let dir = tempfile::Builder::new()
            .prefix("osbuild-journal-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let holder = Proc(
            Command::new("unshare")
                .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
                .arg(PRIVATE_RUN)
                .arg("sh")
                .args(argv)
                .env("SOCKETS", sockets.unwrap_or(Path::new("")))
                .env("FILES", dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        PrivateRun { holder, dir }
    }

    fn pid(&self) -> u32 {
        self.holder.0.id()
    }

    /// A path as the processes inside see it.
    fn inside(&self, path: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{path}", self.pid()))
    }

    /// Waits until the holder runs `comm` (the set-up is done and it exec'd).
    fn wait_for_exec(&self, comm: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let now =
                std::fs::read_to_string(format!("/proc/{}/comm", self.pid())).unwrap_or_default();
            if now.trim() == comm {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the namespace's holder never ran {comm} (now {now:?})"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `nsenter` into the namespace: what osbuildd is started through.
    fn nsenter(&self) -> [String; 2] {
        [
            "nsenter".into(),
            format!("--mount=/proc/{}/ns/mnt", self.pid()),
        ]
    }
}

/// How long a build of these tests may take before it counts as hung.
const LIMIT: Duration = Duration::from_secs(60);

fn journald() -> PrivateRun {
    let j = PrivateRun::start(None, &["/lib/systemd/systemd-journald"]);
    let socket = j.inside("/run/systemd/journal/socket");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "journald never made its socket");
        std::thread::sleep(Duration::from_millis(50));
    }
    j
}

fn start_daemon_in(f: &mut Fixture, ns: &PrivateRun) {
    f.daemon = None;
    let [cmd, mnt] = ns.nsenter();
    f.start_daemon_via(&[&cmd, &mnt, "--"], &[]);
}

/// osbuildd's entries, read with `journalctl -o json` from the journal's files.
fn osbuildd_entries(dir: &Path) -> Vec<Value> {
    let out = run(Command::new("journalctl")
        .arg("--directory")
        .arg(dir)
        .args(["-o", "json", "--no-pager", "SYSLOG_IDENTIFIER=osbuildd"]));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn record_and_tar(n: u32) -> Value {
    json!({"pipeline": {
        "stages": [{"name": "org.osbuild.test.record", "options": {"n": n}}],
        "assembler": {"name": "org.osbuild.tar", "options": {"filename": "tree.tar"}}
    }})
}

/// Each stage osbuildctl showed (plain lines: `[i/n] NAME ID`, the stage's output lines, then
/// `NAME finished in ...`): its name, id and output lines.
fn stages_shown(stdout: &str) -> Vec<(String, String, Vec<String>)> {
    let mut stages: Vec<(String, String, Vec<String>)> = Vec::new();
    let mut open = false;
    for line in stdout.lines() {
        let words: Vec<&str> = line.split(' ').collect();
        if line.starts_with('[') && words.len() == 3 {
            stages.push((words[1].into(), words[2].into(), Vec::new()));
            open = true;
        } else if open && line.starts_with(&format!("{} ", stages.last().unwrap().0)) {
            open = false;
        } else if open {
            stages.last_mut().unwrap().2.push(line.to_owned());
        }
    }
    stages
}

#[test]
fn privileged_journal_keeps_the_build_fields_and_every_stage_line() {
    if !privileged("privileged_journal_keeps_the_build_fields_and_every_stage_line") {
        return;
    }
    let mut f = Fixture::new();
    let _rule = f.grant_group();
    let journal = journald();
    start_daemon_in(&mut f, &journal);
    let m = f.manifest("m.json", &record_and_tar(1));
    // polkitd notices new rules within a few seconds.
    let deadline = Instant::now() + Duration::from_secs(15);
    let o = loop {
        let o = f.ctl_within(Some(BUILDER), &["build", &m], LIMIT);
        if o.status.code() != Some(3) || Instant::now() > deadline {
            break o;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let shown = stages_shown(&String::from_utf8_lossy(&o.stdout));
    assert_eq!(shown.len(), 2, "{}", text(&o));
    assert!(
        shown[0].2.iter().any(|l| l == "recorded to stdout"),
        "{shown:?}"
    );

    let uid = uid_of(BUILDER).to_string();
    let deadline = Instant::now() + Duration::from_secs(15);
    let entries = loop {
        let entries = osbuildd_entries(journal.dir.path());
        let done = entries.iter().any(|e| e["MESSAGE"] == "job 1 succeeded");
        if done || Instant::now() > deadline {
            break entries;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let messages: Vec<&str> = entries
        .iter()
        .filter_map(|e| e["MESSAGE"].as_str())
        .collect();
    assert!(messages.contains(&"job 1 succeeded"), "{messages:#?}");
    assert!(
        entries
            .iter()
            .any(|e| e["OSBUILD_JOB"] == "1" && e["OSBUILD_CALLER_UID"] == uid.as_str()),
        "the queued entry names the caller: {entries:#?}"
    );
    for (name, id, lines) in &shown {
        let of_stage = |e: &&Value| {
            e["OSBUILD_JOB"] == "1"
                && e["OSBUILD_STAGE"] == name.as_str()
                && e["OSBUILD_STAGE_ID"] == id.as_str()
        };
        let stage_messages: Vec<&str> = entries
            .iter()
            .filter(of_stage)
            .filter_map(|e| e["MESSAGE"].as_str())
            .collect();
        assert!(
            stage_messages.iter().any(|m| m.contains("started")),
            "{name}: {stage_messages:#?}"
        );
        for line in lines {
            assert!(
                stage_messages.contains(&line.as_str()),
                "{name}'s line {line:?} is not in the journal: {stage_messages:#?}"
            );
        }
    }
    let stderr = std::fs::read_to_string(f.env.dir.path().join("osbuildd.log")).unwrap();
    assert!(
        !stderr.contains("job 1 succeeded"),
        "with a journal, nothing but the journal gets the log: {stderr}"
    );
}

/// What osbuildd printed on stderr from `offset` on.
fn log_since(f: &Fixture, offset: usize) -> String {
    let all = std::fs::read(f.env.dir.path().join("osbuildd.log")).unwrap();
    String::from_utf8_lossy(&all[offset.min(all.len())..]).into_owned()
}

fn log_len(f: &Fixture) -> usize {
    std::fs::metadata(f.env.dir.path().join("osbuildd.log"))
        .map(|m| m.len() as usize)
        .unwrap_or(0)
}

#[test]
fn privileged_journal_socket_without_a_reader_falls_back_to_stderr() {
    if !privileged("privileged_journal_socket_without_a_reader_falls_back_to_stderr") {
        return;
    }
    let mut f = Fixture::new();
    let sockets = tempfile::tempdir().unwrap();
    let socket = sockets.path().join("socket");
    let mut deaf = Some(UnixDatagram::bind(&socket).unwrap());
    let ns = PrivateRun::start(Some(sockets.path()), &["sleep", "600"]);
    ns.wait_for_exec("sleep");

    for (n, why) in [
        (1, "nobody reads the journal socket"),
        (2, "does not take messages"),
    ] {
        if n == 2 {
            // The listener is gone, its socket file stays: a stale socket.
            drop(deaf.take());
            assert!(socket.exists());
        }
        let offset = log_len(&f);
        start_daemon_in(&mut f, &ns);
        let m = f.manifest(&format!("m{n}.json"), &record_and_tar(n));
        let o = f.ctl_within(None, &["build", &m], LIMIT);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let log = log_since(&f, offset);
        assert!(log.contains(why), "want {why:?} in: {log}");
        assert!(log.contains("/run/systemd/journal/socket"), "{log}");
        for want in [
            "job 1 queued by uid 0",
            "recorded to stdout",
            "job 1 succeeded",
        ] {
            assert!(
                log.contains(want),
                "{want:?} not in osbuildd's stderr: {log}"
            );
        }
    }
}
