//! The service over a peer-to-peer connection (a socket pair, no bus, no root): admission,
//! errors, the queue, cancel rules, unexport, and the introspection XML in `dbus/`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use zbus::{Connection, OwnedObjectPath, Variant};

use super::*;
use crate::modules::{describe_os, Index};
use crate::service::client::{Builder1Proxy, JobProxy};
use crate::service::wire::BuildOptions;
use crate::store::Store;

struct Fixture {
    _dir: tempfile::TempDir,
    svc: Arc<Service>,
    server: Connection,
    client: Connection,
}

/// A libdir with one shell stage, a v2 stage that takes inputs (`.test.b`), the tree input
/// and the host's runner name; nothing will run (max_jobs 0).
fn libdir(root: &std::path::Path) -> std::path::PathBuf {
    let lib = root.join("lib");
    for d in ["stages", "runners", "assemblers", "inputs"] {
        std::fs::create_dir_all(lib.join(d)).unwrap();
    }
    let os = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    std::fs::write(
        lib.join("stages/org.osbuild.test.b.meta.json"),
        r#"{"summary": "v2 test stage", "schema_2": {"options": {}, "inputs": {"type": "object"}}}"#,
    )
    .unwrap();
    std::fs::write(
        lib.join("inputs/org.osbuild.tree.meta.json"),
        r#"{"summary": "tree input", "schema_2": {"additionalProperties": true}}"#,
    )
    .unwrap();
    for f in [
        lib.join("stages/org.osbuild.test.a"),
        lib.join("stages/org.osbuild.test.b"),
        lib.join("inputs/org.osbuild.tree"),
        lib.join(format!("runners/org.osbuild.{}", describe_os(&os))),
    ] {
        osbuild_sys::process::write_executable(&f, b"#!/bin/sh\ncat >/dev/null\n", 0o755).unwrap();
    }
    lib
}

async fn fixture(limits: Limits, authority: Authority) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let svc = Service::new(store, Index::new(libdir(dir.path())), limits, authority);
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    let server = serve_p2p(svc.clone(), a);
    let client = zbus::connection::Builder::unix_stream(b).p2p().build();
    let (server, client) = futures_util::future::try_join(server, client)
        .await
        .unwrap();
    Fixture {
        _dir: dir,
        svc,
        server,
        client,
    }
}

fn queued_only() -> Limits {
    Limits {
        max_jobs: 0,
        max_jobs_per_user: 2,
        max_manifest_bytes: 4096,
        keep_finished: Duration::from_secs(60),
        ..Limits::default()
    }
}

fn allow_all() -> Authority {
    Authority::Fixed(Arc::new(|_, _| true))
}

const MANIFEST: &str = r#"{"pipeline": {"stages": [{"name": "org.osbuild.test.a"}]}}"#;

fn error_name(e: &zbus::Error) -> (String, String) {
    match e {
        zbus::Error::MethodError(name, msg, _) => {
            (name.to_string(), msg.clone().unwrap_or_default())
        }
        zbus::Error::FDO(e) => (
            zbus::DBusError::name(e.as_ref()).to_string(),
            zbus::DBusError::description(e.as_ref())
                .unwrap_or_default()
                .to_owned(),
        ),
        other => panic!("not a method error: {other:?}"),
    }
}

async fn job_proxy(conn: &Connection, job: OwnedObjectPath) -> JobProxy<'static> {
    JobProxy::builder(conn).path(job).build().await.unwrap()
}

fn no_options() -> BuildOptions {
    BuildOptions::default()
}

/// A Build call that is refused: manifest, options, error name, fragments of its message.
type Case<'a> = (
    &'a str,
    HashMap<&'a str, Variant<'a>>,
    &'a str,
    Vec<&'a str>,
);

/// Calls Build for each case and checks the error's name and message.
async fn assert_refused(proxy: &Builder1Proxy<'_>, cases: Vec<Case<'_>>) {
    for (manifest, options, want, fragments) in cases {
        let e = proxy
            .inner()
            .call::<_, _, OwnedObjectPath>("Build", &(manifest, options))
            .await
            .unwrap_err();
        let (name, msg) = error_name(&e);
        assert_eq!(name, want, "{msg}");
        for frag in fragments {
            assert!(msg.contains(frag), "{want}: '{frag}' not in: {msg}");
        }
    }
}

/// The broadcast summary `result`, which must contain none of `markers`.
fn summary_without(result: &str, markers: &[&str]) -> serde_json::Value {
    for marker in markers {
        assert!(!result.contains(marker), "{marker} broadcast: {result}");
    }
    serde_json::from_str(result).unwrap()
}

/// Options as any client could send them, unknown keys included.
fn raw_options() -> HashMap<&'static str, Variant<'static>> {
    HashMap::new()
}

#[tokio::test]
async fn build_queues_a_job_with_its_properties_and_signal() {
    let f = fixture(queued_only(), allow_all()).await;
    let proxy = Builder1Proxy::new(&f.client).await.unwrap();
    let mut new = proxy.receive_job_new().await.unwrap();
    let job = proxy.build(MANIFEST, &no_options()).await.unwrap();
    assert_eq!(job.as_str(), "/org/osbuild/Builder1/job/1");
    let sig = new.next().await.unwrap();
    assert_eq!(sig.args().unwrap().job, job.as_ref());
    assert_eq!(proxy.list_jobs().await.unwrap(), vec![job.clone()]);

    let jp = job_proxy(&f.client, job.clone()).await;
    assert_eq!(jp.state().await.unwrap(), "queued");
    assert_eq!(jp.progress().await.unwrap(), 0.0);
    assert_eq!(
        jp.owner_uid().await.unwrap(),
        nix::unistd::getuid().as_raw()
    );
    assert_eq!(jp.tree_id().await.unwrap().len(), 64);
    assert_eq!(jp.output_id().await.unwrap(), "");
}

#[tokio::test]
async fn a_source_epoch_reaches_the_request_and_its_ids() {
    let f = fixture(queued_only(), allow_all()).await;
    let proxy = Builder1Proxy::new(&f.client).await.unwrap();
    let with_epoch = BuildOptions {
        source_epoch: Some(1_700_000_000),
        ..BuildOptions::default()
    };
    let plain = proxy.build(MANIFEST, &no_options()).await.unwrap();
    let epoch = proxy.build(MANIFEST, &with_epoch).await.unwrap();
    let tree_id = |job| async { job_proxy(&f.client, job).await.tree_id().await.unwrap() };
    let mut manifest = crate::manifest::parse(MANIFEST).unwrap();
    let v10 = manifest.pipeline.tree_id().unwrap().to_string();
    manifest.set_source_epoch(1_700_000_000);
    let under_epoch = manifest.pipeline.tree_id().unwrap().to_string();
    assert_eq!(tree_id(plain).await, v10);
    assert_eq!(tree_id(epoch).await, under_epoch);
    assert_ne!(v10, under_epoch);
}

#[tokio::test]
async fn bad_requests_get_named_errors_and_create_nothing() {
    let f = fixture(queued_only(), allow_all()).await;
    let proxy = Builder1Proxy::new(&f.client).await.unwrap();
    let big = format!(
        r#"{{"pipeline": {{"stages": [{{"name": "org.osbuild.test.a", "options": {{"x": "{}"}}}}]}}}}"#,
        "a".repeat(5000)
    );
    let traversal = r#"{"pipeline": {"stages": [{"name": "../../bin/sh"}]}}"#;
    let two_errors = r#"{"pipeline": {"stages": [{"name": "org.osbuild.nope"}, {"options": {}}]}}"#;
    let mut bad_opt = raw_options();
    bad_opt.insert("libdir", Variant::from("/tmp"));
    let mut bad_cp = raw_options();
    bad_cp.insert("checkpoints", Variant::from(vec!["f".repeat(64)]));
    let cases: Vec<Case<'_>> = vec![
        (
            "{not json",
            raw_options(),
            "org.osbuild.Builder1.Error.InvalidManifest",
            vec!["invalid manifest"],
        ),
        (
            &big,
            raw_options(),
            "org.osbuild.Builder1.Error.ManifestTooLarge",
            vec!["accepts at most 4096"],
        ),
        (
            traversal,
            raw_options(),
            "org.osbuild.Builder1.Error.InvalidManifest",
            vec!["pipeline.stages[0]", "../../bin/sh"],
        ),
        (
            two_errors,
            raw_options(),
            "org.osbuild.Builder1.Error.InvalidManifest",
            vec![
                "pipeline.stages[0]",
                "org.osbuild.nope",
                "pipeline.stages[1]",
            ],
        ),
        (
            MANIFEST,
            bad_opt,
            "org.osbuild.Builder1.Error.InvalidOption",
            vec!["unknown option 'libdir'"],
        ),
        (
            MANIFEST,
            bad_cp,
            "org.osbuild.Builder1.Error.UnknownCheckpoint",
            vec!["is not the id of a stage"],
        ),
    ];
    assert_refused(&proxy, cases).await;
    assert!(proxy.list_jobs().await.unwrap().is_empty());
    let e = proxy
        .cancel(&zbus::ObjectPath::try_from("/org/osbuild/Builder1/job/9").unwrap())
        .await
        .unwrap_err();
    assert_eq!(error_name(&e).0, "org.osbuild.Builder1.Error.NoSuchJob");
}

#[tokio::test]
async fn jobs_per_user_are_bounded() {
    let f = fixture(queued_only(), allow_all()).await;
    let proxy = Builder1Proxy::new(&f.client).await.unwrap();
    proxy.build(MANIFEST, &no_options()).await.unwrap();
    let second = proxy.build(MANIFEST, &no_options()).await.unwrap();
    let e = proxy.build(MANIFEST, &no_options()).await.unwrap_err();
    let (name, msg) = error_name(&e);
    assert_eq!(name, "org.osbuild.Builder1.Error.TooManyJobs");
    assert!(msg.contains("already has 2 unfinished jobs"), "{msg}");
    // A cancelled job no longer counts.
    proxy.cancel(&second.as_ref()).await.unwrap();
    proxy.build(MANIFEST, &no_options()).await.unwrap();
}

#[tokio::test]
async fn builds_are_refused_during_shutdown() {
    let f = fixture(queued_only(), allow_all()).await;
    let proxy = Builder1Proxy::new(&f.client).await.unwrap();
    let queued = proxy.build(MANIFEST, &no_options()).await.unwrap();
    f.svc.shutdown(Duration::from_millis(100)).await;
    let e = proxy.build(MANIFEST, &no_options()).await.unwrap_err();
    let (name, msg) = error_name(&e);
    assert_eq!(name, "org.osbuild.Builder1.Error.ShuttingDown");
    assert_eq!(msg, "osbuildd is shutting down; try again when it is back");
    assert_eq!(proxy.list_jobs().await.unwrap(), vec![queued], "no new job");
}

#[tokio::test]
async fn cancel_of_a_queued_job_finishes_it_and_it_is_forgotten_later() {
    let limits = Limits {
        keep_finished: Duration::from_millis(300),
        ..queued_only()
    };
    let f = fixture(limits, allow_all()).await;
    let proxy = Builder1Proxy::new(&f.client).await.unwrap();
    let mut finished = proxy.receive_job_finished().await.unwrap();
    let job = proxy.build(MANIFEST, &no_options()).await.unwrap();
    let jp = job_proxy(&f.client, job.clone()).await;
    jp.cancel().await.unwrap();
    let sig = finished.next().await.unwrap();
    let a = sig.args().unwrap();
    assert_eq!(a.job, job.as_ref());
    assert!(!a.success);
    let result: serde_json::Value = serde_json::from_str(a.result).unwrap();
    assert_eq!(
        result,
        serde_json::json!({"success": false, "error": "cancelled"})
    );
    assert_eq!(jp.state().await.unwrap(), "cancelled");
    let e = jp.cancel().await.unwrap_err();
    assert_eq!(error_name(&e).0, "org.osbuild.Builder1.Error.NotRunning");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(proxy.list_jobs().await.unwrap().is_empty());
    let e = jp.cancel().await.unwrap_err();
    assert_eq!(
        error_name(&e).0,
        "org.freedesktop.DBus.Error.UnknownObject",
        "the job object is gone"
    );
}

#[tokio::test]
async fn denied_callers_get_access_denied_and_no_job() {
    let f = fixture(queued_only(), Authority::Fixed(Arc::new(|_, _| false))).await;
    let proxy = Builder1Proxy::new(&f.client).await.unwrap();
    for e in [
        proxy.build(MANIFEST, &no_options()).await.unwrap_err(),
        proxy.list_objects().await.unwrap_err(),
        proxy.prune(0).await.unwrap_err(),
        proxy.verify().await.unwrap_err(),
        proxy.open_output(&"0".repeat(64), "x").await.unwrap_err(),
    ] {
        let (name, msg) = error_name(&e);
        assert_eq!(name, "org.freedesktop.DBus.Error.AccessDenied");
        assert!(
            msg.contains("not authorized for org.osbuild.builder1."),
            "{msg}"
        );
    }
    assert!(proxy.list_jobs().await.unwrap().is_empty());
}

#[tokio::test]
async fn only_the_owner_cancels_without_cancel_other_user() {
    // Everything allowed except cancelling other users' jobs; the peer is always the owner
    // here, so fake ownership by a rule keyed on the action alone.
    let f = fixture(
        queued_only(),
        Authority::Fixed(Arc::new(|_, a| a != Action::CancelOtherUser)),
    )
    .await;
    let proxy = Builder1Proxy::new(&f.client).await.unwrap();
    let job = proxy.build(MANIFEST, &no_options()).await.unwrap();
    // The owner needs no cancel-other-user.
    proxy.cancel(&job.as_ref()).await.unwrap();
}

#[tokio::test]
async fn store_listing_and_output_paths() {
    let f = fixture(queued_only(), allow_all()).await;
    let proxy = Builder1Proxy::new(&f.client).await.unwrap();
    assert!(proxy.list_objects().await.unwrap().is_empty());
    assert_eq!(proxy.prune(0).await.unwrap(), 0);
    let (clean, report) = proxy.verify().await.unwrap();
    assert!(clean);
    assert_eq!(
        report,
        "checked 0 object(s) and 0 download(s): all match their names\n"
    );
    for (id, path, want) in [
        ("nope", "x", "is not an id"),
        (&*"a".repeat(64), "x", "no object"),
        (&*"a".repeat(64), "../x", "invalid path"),
    ] {
        let e = proxy.open_output(id, path).await.unwrap_err();
        let (name, msg) = error_name(&e);
        assert_eq!(name, "org.osbuild.Builder1.Error.NoSuchObject");
        assert!(msg.contains(want), "{msg}");
    }
}

/// The `<interface>` element named `name` in an introspection document.
fn interface_xml(doc: &str, name: &str) -> String {
    let start = doc
        .find(&format!("<interface name=\"{name}\">"))
        .unwrap_or_else(|| panic!("no interface {name} in:\n{doc}"));
    let end = doc[start..].find("</interface>").unwrap() + start + "</interface>".len();
    let mut text = doc[start..end].to_owned();
    while let Some(open) = text.find("<!--") {
        let close = text[open..].find("-->").unwrap() + open + 3;
        text.replace_range(open..close, "");
    }
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn the_xml_in_dbus_is_what_the_daemon_serves() {
    let f = fixture(queued_only(), allow_all()).await;
    let proxy = Builder1Proxy::new(&f.client).await.unwrap();
    let job = proxy.build(MANIFEST, &no_options()).await.unwrap();
    let intro = |path: String| {
        let conn = f.client.clone();
        async move {
            zbus::fdo::IntrospectableProxy::builder(&conn)
                .destination("org.osbuild.Builder1")
                .path(path)
                .build()
                .await
                .unwrap()
                .introspect()
                .await
                .unwrap()
                .to_string()
        }
    };
    let manager = intro(MANAGER_PATH.to_owned()).await;
    let job_doc = intro(job.to_string()).await;
    let file = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dbus/org.osbuild.Builder1.xml"),
    )
    .unwrap();
    if let Some(out) = std::env::var_os("OSBUILD_WRITE_XML") {
        std::fs::write(
            out,
            format!(
                "{}\n{}\n",
                interface_xml(&manager, MANAGER_INTERFACE),
                interface_xml(&job_doc, JOB_INTERFACE)
            ),
        )
        .unwrap();
    }
    assert_eq!(
        interface_xml(&file, MANAGER_INTERFACE),
        interface_xml(&manager, MANAGER_INTERFACE)
    );
    assert_eq!(
        interface_xml(&file, JOB_INTERFACE),
        interface_xml(&job_doc, JOB_INTERFACE)
    );
}

const OPTION_MARKER: &str = "$6$OPTION-MARKER";
const OUTPUT_MARKER: &str = "OUTPUT-MARKER";

/// A result whose stage, assembler and build pipeline carry both markers.
fn marked_result(success: bool) -> crate::pipeline::PipelineResult {
    use crate::pipeline::{ModuleResult, PipelineResult};
    let module = |name: &str| ModuleResult {
        name: name.into(),
        id: "c".repeat(64),
        options: crate::json::parse(&format!(r#"{{"password": "{OPTION_MARKER}"}}"#)).unwrap(),
        success,
        output: Some(format!("{OUTPUT_MARKER}\n")),
    };
    let pipeline = |build| PipelineResult {
        success,
        build,
        stages: Some(vec![module("org.osbuild.test.a")]),
        tree_id: Some("c".repeat(64)),
        assembler: Some(module("org.osbuild.tar")),
        output_id: Some("d".repeat(64)),
        ..PipelineResult::success()
    };
    pipeline(Some(Box::new(pipeline(None))))
}

/// Ends queued job `path` with `result`, as its build thread would.
async fn end_job(
    f: &Fixture,
    path: &OwnedObjectPath,
    result: Result<crate::pipeline::PipelineResult, crate::pipeline::BuildError>,
) {
    let id = JobId::from_path(&path.as_ref()).unwrap();
    let job = f.svc.scheduler.job(id).unwrap();
    f.svc.scheduler.dequeue(id);
    interface::finish(&f.svc, &f.server, &job, result.map(Into::into)).await;
}

#[tokio::test]
async fn job_finished_shows_everyone_a_summary_and_get_result_the_owner_everything() {
    use crate::pipeline::BuildError;
    let f = fixture(queued_only(), allow_all()).await;
    let proxy = Builder1Proxy::new(&f.client).await.unwrap();
    let mut finished = proxy.receive_job_finished().await.unwrap();
    let internal = format!("a source printed {OUTPUT_MARKER} {OPTION_MARKER}");
    let outcomes = [
        (Ok(marked_result(true)), true),
        (Ok(marked_result(false)), false),
        (Err(BuildError::Internal(internal)), false),
    ];
    for (result, success) in outcomes {
        let job = proxy.build(MANIFEST, &no_options()).await.unwrap();
        let jp = job_proxy(&f.client, job.clone()).await;
        let e = jp.get_result().await.unwrap_err();
        assert_eq!(error_name(&e).0, "org.osbuild.Builder1.Error.NotFinished");
        let ran = result.is_ok();
        end_job(&f, &job, result).await;

        let sig = finished.next().await.unwrap();
        let a = sig.args().unwrap();
        assert_eq!((a.job.as_str(), a.success), (job.as_str(), success));
        let markers = [OPTION_MARKER, OUTPUT_MARKER, "OPTION-MARKER"];
        let summary = summary_without(a.result, &markers);
        assert_eq!(summary["success"], success);
        assert!(summary.get("error").is_none(), "{summary}");
        if ran {
            for stage in [&summary["stages"][0], &summary["build"]["stages"][0]] {
                assert_eq!(stage["name"], "org.osbuild.test.a");
                assert_eq!(stage["id"], "c".repeat(64));
                assert_eq!(stage["success"], success);
            }
            assert_eq!(summary["assembler"]["name"], "org.osbuild.tar");
            assert_eq!(summary["output_id"], "d".repeat(64));
        }

        let full = jp.get_result().await.unwrap();
        assert!(full.contains(OPTION_MARKER), "{full}");
        assert!(full.contains(OUTPUT_MARKER), "{full}");
        if ran {
            let full = crate::pipeline::PipelineResult::parse(&full).unwrap();
            assert_eq!(full, marked_result(success));
        }
    }
}

#[tokio::test]
async fn get_result_is_for_the_owner_or_cancel_other_user() {
    for (may_cancel_others, allowed) in [(false, false), (true, true)] {
        let decide: auth::Decide =
            Arc::new(move |_, a| a != Action::CancelOtherUser || may_cancel_others);
        let f = fixture(queued_only(), Authority::Fixed(decide)).await;
        // A job of another uid, exported as publish() would.
        let request = request::validate(&f.svc, MANIFEST, HashMap::new()).unwrap();
        let other = scheduler::Owner {
            uid: nix::unistd::getuid().as_raw() + 1,
            name: None,
        };
        let job = f.svc.scheduler.admit(other, request).unwrap();
        let iface = JobIface {
            job: job.clone(),
            svc: f.svc.clone(),
        };
        f.server
            .object_server()
            .at(job.id.path(), iface)
            .await
            .unwrap();
        end_job(&f, &job.id.path(), Ok(marked_result(true))).await;

        let jp = job_proxy(&f.client, job.id.path()).await;
        match jp.get_result().await {
            Ok(full) if allowed => assert!(full.contains(OPTION_MARKER), "{full}"),
            Err(e) if !allowed => {
                let (name, msg) = error_name(&e);
                assert_eq!(name, "org.freedesktop.DBus.Error.AccessDenied", "{msg}");
                assert!(msg.contains("cancel-other-user"), "{msg}");
                assert!(!msg.contains("MARKER"), "{msg}");
            }
            other => panic!("allowed {allowed}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn exports_beyond_the_limit_are_refused() {
    let limits = Limits {
        max_exports: 0,
        ..queued_only()
    };
    let f = fixture(limits, allow_all()).await;
    let proxy = Builder1Proxy::new(&f.client).await.unwrap();
    let (_read, write) = osbuild_sys::process::pipe().unwrap();
    let e = proxy
        .export_output(&"a".repeat(64), zbus::Fd::from(&write))
        .await
        .unwrap_err();
    let (name, msg) = error_name(&e);
    assert_eq!(name, "org.freedesktop.DBus.Error.LimitsExceeded");
    assert!(
        msg.contains("0 exports are running, the most at once"),
        "{msg}"
    );
}

#[tokio::test]
async fn oversized_manifests_are_refused_before_polkit_is_asked() {
    let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = asked.clone();
    let authority = Authority::Fixed(Arc::new(move |_, _| {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        true
    }));
    let f = fixture(queued_only(), authority).await;
    let proxy = Builder1Proxy::new(&f.client).await.unwrap();
    let big = format!(r#"{{"pipeline": {{}}, "x": "{}"}}"#, "a".repeat(5000));
    let e = proxy.build(&big, &no_options()).await.unwrap_err();
    assert_eq!(
        error_name(&e).0,
        "org.osbuild.Builder1.Error.ManifestTooLarge"
    );
    assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[test]
fn a_result_too_large_for_the_bus_drops_the_earliest_outputs() {
    use crate::pipeline::{ModuleResult, PipelineResult};
    let module = |name: &str, mib: usize| ModuleResult {
        name: name.into(),
        id: "0".repeat(64),
        options: crate::json::parse("{}").unwrap(),
        success: true,
        output: Some("x".repeat(mib << 20)),
    };
    let result = PipelineResult {
        success: false,
        error: None,
        build: None,
        stages: Some((0..20).map(|i| module(&format!("s{i}"), 1)).collect()),
        tree_id: None,
        assembler: None,
        output_id: None,
    };
    let whole = result.to_json();
    assert!(whole.len() > outcome::MAX_RESULT_BYTES);
    let fitted = outcome::fit_for_the_bus(result);
    assert!(fitted.len() <= outcome::MAX_RESULT_BYTES);
    let parsed = PipelineResult::parse(&fitted).unwrap();
    let stages = parsed.stages.unwrap();
    let kept: Vec<bool> = stages
        .iter()
        .map(|s| s.output.as_deref().unwrap().len() == 1 << 20)
        .collect();
    assert!(!kept[0] && kept[19], "the earliest go first: {kept:?}");
    assert!(stages[0]
        .output
        .as_deref()
        .unwrap()
        .starts_with("[... 1048576 bytes of output dropped"));
}

/// Two pipelines: "b" takes "a"'s tree as an input.
const V2_MANIFEST: &str = r#"{"version": "2", "pipelines": [
    {"name": "a", "stages": [{"type": "org.osbuild.test.a", "options": {"n": 1}}]},
    {"name": "b", "stages": [{"type": "org.osbuild.test.b", "options": {"n": 2},
        "inputs": {"tree": {"type": "org.osbuild.tree", "origin": "org.osbuild.pipeline",
                            "references": ["name:a"]}}}]},
    {"name": "unused", "stages": [{"type": "org.osbuild.test.a", "options": {"n": 3}}]}
]}"#;

fn v2_ids() -> (String, String) {
    let Ok(crate::manifest::Document::V2(m)) = crate::manifest::parse_document(V2_MANIFEST) else {
        panic!("not a v2 manifest");
    };
    let id = |name| m.get(name).and_then(|p| p.id()).unwrap().to_string();
    (id("a"), id("b"))
}

#[tokio::test]
async fn v2_builds_need_known_exports_and_matching_patterns() {
    let f = fixture(queued_only(), allow_all()).await;
    let proxy = Builder1Proxy::new(&f.client).await.unwrap();
    let list =
        |items: &[&str]| Variant::from(items.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    let opts =
        |pairs: Vec<(&'static str, Variant<'static>)>| -> HashMap<&'static str, Variant<'static>> {
            pairs.into_iter().collect()
        };
    let cases: Vec<Case<'_>> = vec![
        (
            V2_MANIFEST,
            opts(vec![("exports", list(&["b", "nope", "neither"]))]),
            "org.osbuild.Builder1.Error.UnknownExport",
            vec![
                "export 'nope', 'neither' is not a pipeline",
                "pipelines: a, b, unused",
            ],
        ),
        (
            V2_MANIFEST,
            opts(vec![]),
            "org.osbuild.Builder1.Error.InvalidOption",
            vec!["give option 'exports'", "pipelines: a, b, unused"],
        ),
        (
            V2_MANIFEST,
            opts(vec![
                ("exports", list(&["b"])),
                ("checkpoints", list(&["x*", "y"])),
            ]),
            "org.osbuild.Builder1.Error.UnknownCheckpoint",
            vec!["matches the checkpoint patterns 'x*', 'y'"],
        ),
        (
            V2_MANIFEST,
            opts(vec![
                ("exports", list(&["b"])),
                ("sources", Variant::from("{}")),
            ]),
            "org.osbuild.Builder1.Error.InvalidOption",
            vec!["option 'sources' is for v1 manifests"],
        ),
        (
            MANIFEST,
            opts(vec![("exports", list(&["b"]))]),
            "org.osbuild.Builder1.Error.InvalidOption",
            vec!["option 'exports' is for v2 manifests"],
        ),
        (
            MANIFEST,
            opts(vec![("checkpoints", list(&["org.osbuild.*"]))]),
            "org.osbuild.Builder1.Error.UnknownCheckpoint",
            vec!["'org.osbuild.*' is a pattern", "v1 manifest are stage ids"],
        ),
    ];
    assert_refused(&proxy, cases).await;
    assert!(proxy.list_jobs().await.unwrap().is_empty(), "no job");
}

/// Known exports and a pattern that matches: queued, with b's tree as TreeId, and the stages
/// of a and b (not "unused") as what it builds.
#[tokio::test]
async fn a_v2_job_builds_its_exports_and_what_they_need() {
    let f = fixture(queued_only(), allow_all()).await;
    let proxy = Builder1Proxy::new(&f.client).await.unwrap();
    let list =
        |items: &[&str]| Variant::from(items.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    let (a, b) = v2_ids();
    let ok: HashMap<&str, Variant<'_>> =
        HashMap::from([("exports", list(&["b"])), ("checkpoints", list(&["a"]))]);
    let job: OwnedObjectPath = proxy
        .inner()
        .call("Build", &(V2_MANIFEST, ok))
        .await
        .unwrap();
    let jp = job_proxy(&f.client, job.clone()).await;
    assert_eq!(jp.tree_id().await.unwrap(), b);
    assert_eq!(jp.output_id().await.unwrap(), "");
    let queued = f
        .svc
        .scheduler
        .job(JobId::from_path(&job.as_ref()).unwrap())
        .unwrap();
    let order: Vec<String> = queued.order.iter().map(ToString::to_string).collect();
    assert_eq!(order, [a.clone(), b.clone()]);
    let request::JobRequest::V2(r) = &queued.request else {
        panic!("a v2 request");
    };
    assert_eq!(
        r.checkpoints
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        [a]
    );
}

#[tokio::test]
async fn a_v2_job_gives_heads_result_to_its_owner_and_ids_to_everyone() {
    use crate::pipeline::{StageLog, V2Result};
    let f = fixture(queued_only(), allow_all()).await;
    let proxy = Builder1Proxy::new(&f.client).await.unwrap();
    let mut finished = proxy.receive_job_finished().await.unwrap();
    let (a, b) = v2_ids();
    let options = BuildOptions {
        exports: Some(vec!["b".into()]),
        ..BuildOptions::default()
    };
    let job = proxy.build(V2_MANIFEST, &options).await.unwrap();
    let log = |id: &str, module: &str, success| {
        StageLog {
        id: crate::id::ObjectId::parse(id).unwrap(),
        module: module.into(),
        output: format!("{OUTPUT_MARKER}\n"),
        success,
        error: (!success).then(|| {
            crate::json::parse(&format!(
                r#"{{"type": "exception", "data": {{"type": "RuntimeError", "value": "{OPTION_MARKER}", "traceback": ""}}}}"#
            ))
            .unwrap()
        }),
    }
    };
    let result = V2Result {
        success: false,
        log: vec![
            ("a".into(), vec![log(&a, "org.osbuild.test.a", true)]),
            ("b".into(), vec![log(&b, "org.osbuild.test.b", false)]),
        ],
        ..V2Result::default()
    };
    let id = JobId::from_path(&job.as_ref()).unwrap();
    let queued = f.svc.scheduler.job(id).unwrap();
    f.svc.scheduler.dequeue(id);
    interface::finish(&f.svc, &f.server, &queued, Ok(outcome::Built::V2(result))).await;

    let sig = finished.next().await.unwrap();
    let args = sig.args().unwrap();
    assert!(!args.success);
    let summary = summary_without(args.result, &[OPTION_MARKER, OUTPUT_MARKER, "RuntimeError"]);
    assert_eq!(
        summary,
        serde_json::json!({
            "success": false,
            "exports": {"b": b},
            "pipelines": [
                {"name": "a", "id": a, "success": true,
                 "stages": [{"name": "org.osbuild.test.a", "id": a, "success": true}]},
                {"name": "b", "id": b, "success": false,
                 "stages": [{"name": "org.osbuild.test.b", "id": b, "success": false}]}
            ]
        })
    );
    let full = job_proxy(&f.client, job).await.get_result().await.unwrap();
    let full: serde_json::Value = serde_json::from_str(&full).unwrap();
    assert_eq!(full["type"], "error");
    assert_eq!(full["error"]["type"], "org.osbuild.error.stage");
    let stage = &full["error"]["details"]["stage"];
    assert_eq!(stage["id"], b);
    assert_eq!(stage["output"], format!("{OUTPUT_MARKER}\n"));
    assert_eq!(stage["error"]["data"]["value"], OPTION_MARKER);
    assert_eq!(full["log"]["a"][0]["output"], format!("{OUTPUT_MARKER}\n"));
}
