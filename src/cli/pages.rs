//! What the man pages and shell completions are made from: the clap definition of every
//! installed command, plus the sections a man page has beyond its options (examples, where the
//! log goes, files). `osbuild-docgen` (crates/docgen) renders them; the shipped binaries only
//! parse their own command line.
//!
//! In the text `{prefix}` stands for the installation prefix and `{doc}` for PREFIX/share/doc/osbuild
//! (the sample manifests are in `{doc}/examples`), so that every example is a line that works as
//! it is on the installed system.

use clap::CommandFactory;

/// One command's page.
pub struct Page {
    pub command: clap::Command,
    pub examples: &'static [Example],
    /// Further sections, each a title and its paragraphs.
    pub sections: &'static [(&'static str, &'static [&'static str])],
}

/// One entry of a page's EXAMPLES: what it does, and the command line (for `sh -c`).
pub struct Example {
    pub what: &'static str,
    pub line: &'static str,
}

/// The documentation directory below the installation prefix (`{doc}`).
pub const DOC_DIR: &str = "share/doc/osbuild";

const DAEMON_LOG: &str = "osbuildd logs to the systemd journal when its socket \
(/run/systemd/journal/socket) exists: journalctl -t osbuildd shows it, and the fields \
OSBUILD_JOB, OSBUILD_PIPELINE (v2 manifests), OSBUILD_STAGE, OSBUILD_STAGE_ID and \
OSBUILD_CALLER_UID select one job, pipeline, stage or caller (journalctl -t osbuildd OSBUILD_JOB=3). Without a journal it logs to its standard error, \
which is the bus daemon's when D-Bus started it.";

const OSBUILDCTL_EXAMPLES: &[Example] = &[
    Example {
        what: "Build the sample manifest and write its output (hello.tar.xz) into ./out; \
               Ctrl-C cancels the build.",
        line: "osbuildctl build {doc}/examples/hello-tar.json --output ./out",
    },
    Example {
        what: "Print the result as JSON (osbuild v10's shape) instead of the progress.",
        line: "osbuildctl build --json {doc}/examples/hello-tar.json > result.json",
    },
    Example {
        what: "Build the pipelines \"image\" and \"base\" of a v2 manifest (and what they need) \
               and write their trees into ./out/image (hello.tar) and ./out/base, files owned by you.",
        line: "osbuildctl build {doc}/examples/hello-v2.json --export image --export base --output ./out",
    },
    Example {
        what: "Start a build and return at once; it prints the job's object path.",
        line: "osbuildctl build --detach {doc}/examples/hello-tar.json",
    },
    Example {
        what: "List the jobs (queued, running, recently finished) and the store's objects.",
        line: "osbuildctl jobs; osbuildctl objects",
    },
    Example {
        what: "Export the first output the store has into ./export.",
        line: "id=$(osbuildctl objects | awk '$2 == \"output\" {print $1; exit}')\n\
               osbuildctl export \"$id\" ./export",
    },
    Example {
        what: "Print the manifest with the id of every stage (local, no daemon).",
        line: "osbuildctl inspect {doc}/examples/hello-tar.json",
    },
    Example {
        what: "Shrink the store to at most 10 GB, least recently used objects first.",
        line: "osbuildctl prune 10000000000",
    },
];

const OSBUILDCTL_SECTIONS: &[(&str, &[&str])] = &[
    (
        "LOGS",
        &[
            "osbuildctl prints the progress of the job it follows and, to the job's owner only, \
             every line its stages print.",
            DAEMON_LOG,
        ],
    ),
    (
        "THE SERVICE",
        &[
            "osbuildctl talks to osbuildd (org.osbuild.Builder1) on the system bus, or on the bus \
             DBUS_SYSTEM_BUS_ADDRESS or --address names. When osbuildd is not running, the first \
             call starts it through D-Bus activation (osbuildd.service under systemd); started that \
             way it exits again after a minute without work. Who may build is decided by polkit \
             (actions org.osbuild.builder1.*); {doc}/50-osbuild.rules.example \
             lets a group build without a password.",
        ],
    ),
    ("SEE ALSO", &["osbuildd(1), osbuild(1), journalctl(1), pkaction(1)"]),
];

const OSBUILDD_SECTIONS: &[(&str, &[&str])] = &[
    ("LOGS", &[DAEMON_LOG]),
    (
        "ACTIVATION",
        &[
            "osbuildd is normally not started by hand: the bus starts it on the first call to \
             org.osbuild.Builder1 (the activation file org.osbuild.Builder1.service, or the unit \
             osbuildd.service on systemd), with --idle-exit 60. It exits 0 after SIGTERM or \
             SIGINT (running jobs cancelled and cleaned up) or after the idle time, and 1 on a \
             set-up error.",
        ],
    ),
    (
        "FILES",
        &[
            "/var/lib/osbuild/store: the object store (root only).",
            "{prefix}/share/dbus-1/system.d/org.osbuild.Builder1.conf: the bus policy.",
            "{prefix}/share/dbus-1/system-services/org.osbuild.Builder1.service: the activation \
             file.",
            "{prefix}/share/polkit-1/actions/org.osbuild.builder1.policy: the polkit actions.",
        ],
    ),
    ("SEE ALSO", &["osbuildctl(1), osbuild(1), journalctl(1)"]),
];

const OSBUILD_EXAMPLES: &[Example] = &[Example {
    what: "Build the sample manifest into the store ./store, printing the result as JSON.",
    line: "osbuild --store ./store --json {doc}/examples/hello-tar.json",
}];

/// Every installed command's page, `osbuild` first.
pub fn pages() -> Vec<Page> {
    let plain = |command: clap::Command| Page {
        command,
        examples: &[],
        sections: &[],
    };
    vec![
        Page {
            command: super::osbuild::Args::command(),
            examples: OSBUILD_EXAMPLES,
            sections: &[("SEE ALSO", &["osbuildctl(1)"])],
        },
        Page {
            command: crate::service::daemon::Args::command(),
            examples: &[],
            sections: OSBUILDD_SECTIONS,
        },
        Page {
            command: super::osbuildctl::Args::command(),
            examples: OSBUILDCTL_EXAMPLES,
            sections: OSBUILDCTL_SECTIONS,
        },
        plain(super::mkmanifest::DebianArgs::command()),
        plain(super::mkmanifest::DnfArgs::command()),
    ]
}
