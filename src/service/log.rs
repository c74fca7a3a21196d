//! Where the daemon logs: the journal (structured fields `OSBUILD_JOB`, `OSBUILD_STAGE`,
//! `OSBUILD_STAGE_ID`, `OSBUILD_CALLER_UID`) when something reads its socket, stderr otherwise.
//!
//! A socket file alone is not a journal: a stale one (journald gone) refuses datagrams, and a
//! socket bound by a process that never reads would swallow the log. So the daemon first sends
//! the journal an empty datagram and logs there only when it was taken off the queue in time.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// How long journald may take to read the probe (it reads at once unless the machine stalls).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the log goes, and why not to the journal when a journal socket was there.
#[derive(Debug, PartialEq, Eq)]
enum Sink {
    Journal,
    Stderr { why: Option<String> },
}

/// Probes the journal socket at `path`.
fn choose(path: &Path, timeout: Duration) -> Sink {
    if !path.exists() {
        return Sink::Stderr { why: None };
    }
    let why = match osbuild_sys::socket::datagram_listener_reads(path, timeout) {
        Ok(true) => return Sink::Journal,
        Ok(false) => format!(
            "nobody reads the journal socket {} (it took no message in {timeout:?})",
            path.display()
        ),
        Err(e) => format!(
            "the journal socket {} does not take messages ({e}: a stale socket?)",
            path.display()
        ),
    };
    Sink::Stderr { why: Some(why) }
}

/// Installs the global subscriber (`RUST_LOG` overrides the default `info`).
pub fn init() {
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let why = match choose(Path::new(JOURNAL_SOCKET), PROBE_TIMEOUT) {
        Sink::Journal => match tracing_journald::layer() {
            Ok(layer) => {
                let layer = layer
                    .with_field_prefix(None)
                    .with_syslog_identifier("osbuildd".into());
                let _ = tracing_subscriber::registry()
                    .with(filter())
                    .with(layer)
                    .try_init();
                return;
            }
            Err(e) => Some(format!("cannot open the journal: {e}")),
        },
        Sink::Stderr { why } => why,
    };
    let _ = tracing_subscriber::registry()
        .with(filter())
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                // Colours only for a person watching; a log file or a pipe gets plain text.
                .with_ansi(std::io::stderr().is_terminal())
                .with_target(false),
        )
        .try_init();
    if let Some(why) = why {
        tracing::warn!("logging to stderr: {why}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    #[test]
    fn only_a_socket_that_is_read_is_a_journal() {
        let dir = tempfile::tempdir().unwrap();
        let short = Duration::from_millis(100);
        assert_eq!(
            choose(&dir.path().join("none"), short),
            Sink::Stderr { why: None },
            "no journal: stderr, nothing to explain"
        );
        let deaf = dir.path().join("deaf");
        let _bound = UnixDatagram::bind(&deaf).unwrap();
        let Sink::Stderr { why: Some(why) } = choose(&deaf, short) else {
            panic!("a socket nobody reads is no journal");
        };
        assert!(
            why.contains("nobody reads") && why.contains("deaf"),
            "{why}"
        );
        let stale = dir.path().join("stale");
        drop(UnixDatagram::bind(&stale).unwrap());
        let Sink::Stderr { why: Some(why) } = choose(&stale, short) else {
            panic!("a stale socket is no journal");
        };
        assert!(
            why.contains("stale") && why.contains("ECONNREFUSED"),
            "{why}"
        );
    }
}
