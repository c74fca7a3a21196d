//! The generated man pages render with man(1) without a warning and say what they must; the
//! generated bash completion loads and completes a subcommand.

use std::path::Path;
use std::process::Command;

const COMMANDS: [&str; 5] = [
    "osbuild",
    "osbuildd",
    "osbuildctl",
    "osbuild-mkmanifest-debian",
    "osbuild-mkmanifest-dnf",
];

fn generate(prefix: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_osbuild-docgen"))
        .args(["--prefix", prefix])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    dir
}

/// The page as man(1) shows it at 80 columns; panics on any warning.
fn render(page: &Path) -> String {
    let out = Command::new("man")
        .args(["-l", "--warnings"])
        .arg(page)
        .env("MANWIDTH", "80")
        .env("MAN_KEEP_FORMATTING", "0")
        .output()
        .expect("man (man-db) is installed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.is_empty(),
        "{}: {stderr}",
        page.display()
    );
    // Plain text: drop overstrike bold and underline when man formats for a terminal.
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut plain = String::new();
    for c in text.chars() {
        if c == '\u{8}' {
            plain.pop();
        } else {
            plain.push(c);
        }
    }
    plain
}

#[test]
fn every_page_renders_without_warnings() {
    let dir = generate("/usr");
    let man1 = dir.path().join("man1");
    let mut names: Vec<String> = std::fs::read_dir(&man1)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for c in COMMANDS {
        assert!(names.contains(&format!("{c}.1")), "{c}.1 in {names:?}");
    }
    for sub in [
        "build", "cancel", "jobs", "objects", "export", "prune", "inspect",
    ] {
        assert!(names.contains(&format!("osbuildctl-{sub}.1")), "{names:?}");
    }
    for name in &names {
        let text = render(&man1.join(name));
        assert!(text.contains("NAME"), "{name}: {text}");
    }
    let build = render(&man1.join("osbuildctl-build.1"));
    assert!(build.contains("--output <DIR>"), "{build}");
}

#[test]
fn osbuildctl_page_has_examples_and_the_daemon_log() {
    let dir = generate("/usr");
    let text = render(&dir.path().join("man1/osbuildctl.1"));
    let examples = text
        .split("\nEXAMPLES\n")
        .nth(1)
        .expect("an EXAMPLES section");
    assert!(
        examples.contains(
            "osbuildctl build /usr/share/doc/osbuild/examples/hello-tar.json --output ./out"
        ),
        "{examples}"
    );
    assert!(text.contains("journalctl -t osbuildd"), "{text}");
    assert!(text.contains("standard\n       error") || text.contains("standard error"));
    // Another prefix, other paths.
    let local = generate("/usr/local");
    let text = render(&local.path().join("man1/osbuildctl.1"));
    assert!(text.contains("/usr/local/share/doc/osbuild/examples/hello-tar.json"));
    let daemon = render(&dir.path().join("man1/osbuildd.1"));
    assert!(daemon.contains("--idle-exit"), "{daemon}");
}

#[test]
fn bash_completion_loads_and_completes_subcommands() {
    let dir = generate("/usr");
    let file = dir.path().join("bash/osbuildctl");
    let script = r#"
        source "$1" || exit 9
        spec=$(complete -p osbuildctl) || exit 8
        echo "$spec"
        fn=$(sed -n 's/.*-F \([^ ]*\).*/\1/p' <<<"$spec")
        COMP_WORDS=(osbuildctl ex); COMP_CWORD=1; COMP_LINE="osbuildctl ex"; COMP_POINT=${#COMP_LINE}
        "$fn" osbuildctl ex osbuildctl
        echo "words: ${COMPREPLY[*]}"
        COMP_WORDS=(osbuildctl build --); COMP_CWORD=2; COMP_LINE="osbuildctl build --"; COMP_POINT=${#COMP_LINE}
        "$fn" osbuildctl -- build
        echo "build: ${COMPREPLY[*]}"
    "#;
    let out = Command::new("bash")
        .args(["-c", script, "bash"])
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("-F _osbuildctl osbuildctl"), "{stdout}");
    assert!(stdout.contains("words: export"), "{stdout}");
    let build = stdout.lines().find(|l| l.starts_with("build:")).unwrap();
    for option in ["--output", "--detach", "--json"] {
        assert!(build.contains(option), "{build}");
    }
    for name in COMMANDS {
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source {}/bash/{name} && complete -p {name}",
                dir.path().display()
            ))
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {out:?}");
    }
}
