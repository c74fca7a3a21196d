//! The CI version of `bench/fuzz.sh`: every target with a few thousand inputs (a debug build),
//! through the real binary, so a panic, a hang or a crash of any parser fails CI. And the
//! harness itself: it must notice a panic and write the input for `--replay`.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_osbuild-fuzz");

/// Inputs per target: about 15 s for all targets on two busy cores in a debug build.
const ITERATIONS: &str = "3000";

#[test]
fn every_target_survives_a_short_campaign() {
    let out = tempfile::tempdir().unwrap();
    let run = Command::new(BIN)
        .args([
            "--target",
            "all",
            "--iterations",
            ITERATIONS,
            "--seed",
            "11",
        ])
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stdout}\n{stderr}");
    let list = Command::new(BIN).arg("--list").output().unwrap();
    let names: Vec<String> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    assert!(names.len() >= 10, "{names:?}");
    for name in &names {
        let row = stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row for {name}:\n{stdout}"));
        let cols: Vec<&str> = row.split_whitespace().collect();
        // target inputs time inputs/s panics hangs crashes ...
        assert_eq!(cols[1], ITERATIONS, "{row}");
        assert_eq!(&cols[4..7], ["0", "0", "0"], "{row}");
    }
    assert!(stdout.trim_end().ends_with("PASS"), "{stdout}");
    assert_eq!(
        std::fs::read_dir(out.path()).unwrap().count(),
        0,
        "no failing input written"
    );
}

#[test]
fn replay_runs_one_input_and_reports_what_it_did() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("deep.input");
    // Nesting far past the parser's limit: an error, not a stack overflow.
    std::fs::write(&file, "[".repeat(100_000)).unwrap();
    for target in ["json", "manifest-load", "result"] {
        let run = Command::new(BIN)
            .args(["--target", target, "--replay"])
            .arg(&file)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&run.stdout);
        assert!(run.status.success(), "{target}: {stdout}");
        assert!(stdout.contains("100000 bytes, no panic"), "{stdout}");
    }
    let bad = Command::new(BIN)
        .args(["--target", "nope", "--replay"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no target \"nope\"; see --list"));
}
