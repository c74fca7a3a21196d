//! Clients of osbuildd end to end, as root: download progress (a unicast signal to the job's
//! owner), the example desktop client (examples/desktop-client.py, Python with Gio) as an
//! unprivileged user allowed by a polkit rule, and the README's `busctl`/`gdbus` lines.

mod common;

use std::time::{Duration, Instant};

use common::http::Server;
use common::privileged;
use common::service::*;
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
    let o = f.ctl_within(LIMIT, None, &["build", &m]);
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
