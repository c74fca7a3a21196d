//! Progress lines for the engine.
//!
//! When the environment has `OSBUILD_SOURCE_PROGRESS=1` (the engine sets it), a source prints
//! lines `osbuild-source-progress {"files_done":N,"files_total":N,"bytes_done":N,"bytes_total":N}`
//! on stderr, at most every 200 ms and whenever a file is finished. `bytes_total` counts what is
//! known so far (cached files, and the length of each response once its headers arrive), so it
//! may grow while files are fetched. stdout stays the reply alone.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The environment variable that turns progress lines on.
pub use osbuild_protocol::source::PROGRESS_ENV as ENV;
/// The prefix of each progress line.
pub use osbuild_protocol::source::PROGRESS_PREFIX as PREFIX;

const INTERVAL: Duration = Duration::from_millis(200);

/// Shared counters; cheap to update from many downloads at once.
pub struct Progress {
    enabled: bool,
    files_total: u64,
    files_done: AtomicU64,
    bytes_done: AtomicU64,
    bytes_total: AtomicU64,
    last: Mutex<Option<Instant>>,
}

impl Progress {
    /// Counters for `files_total` files, printing only if the engine asked for it.
    pub fn new(files_total: u64) -> Self {
        Self::with_output(files_total, std::env::var(ENV).is_ok_and(|v| v == "1"))
    }

    pub fn with_output(files_total: u64, enabled: bool) -> Self {
        Self {
            enabled,
            files_total,
            files_done: AtomicU64::new(0),
            bytes_done: AtomicU64::new(0),
            bytes_total: AtomicU64::new(0),
            last: Mutex::new(None),
        }
    }

    /// `n` more bytes are expected.
    pub fn expect(&self, n: u64) {
        self.bytes_total.fetch_add(n, Ordering::Relaxed);
    }

    /// `n` bytes arrived.
    pub fn advance(&self, n: u64) {
        self.bytes_done.fetch_add(n, Ordering::Relaxed);
        self.report(false);
    }

    /// A failed attempt: its bytes (`done` of `expected`) no longer count.
    pub fn rewind(&self, done: u64, expected: u64) {
        self.bytes_done.fetch_sub(done, Ordering::Relaxed);
        self.bytes_total.fetch_sub(expected, Ordering::Relaxed);
    }

    /// One file is in place.
    pub fn file_done(&self) {
        self.files_done.fetch_add(1, Ordering::Relaxed);
        self.report(true);
    }

    /// `(files_done, files_total, bytes_done, bytes_total)`.
    pub fn snapshot(&self) -> (u64, u64, u64, u64) {
        (
            self.files_done.load(Ordering::Relaxed),
            self.files_total,
            self.bytes_done.load(Ordering::Relaxed),
            self.bytes_total.load(Ordering::Relaxed),
        )
    }

    /// The progress line for the current counters.
    pub fn line(&self) -> String {
        let (fd, ft, bd, bt) = self.snapshot();
        format!(
            "{PREFIX}{{\"files_done\":{fd},\"files_total\":{ft},\"bytes_done\":{bd},\"bytes_total\":{}}}",
            bt.max(bd)
        )
    }

    pub fn report(&self, force: bool) {
        if !self.enabled {
            return;
        }
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        let now = Instant::now();
        if !force && last.is_some_and(|l| now.duration_since(l) < INTERVAL) {
            return;
        }
        *last = Some(now);
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{}", self.line());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_bytes_and_forgets_failed_attempts() {
        let p = Progress::with_output(3, false);
        p.expect(100);
        p.advance(40);
        p.rewind(40, 100);
        p.expect(100);
        p.advance(100);
        p.file_done();
        assert_eq!(p.snapshot(), (1, 3, 100, 100));
        assert_eq!(
            p.line(),
            r#"osbuild-source-progress {"files_done":1,"files_total":3,"bytes_done":100,"bytes_total":100}"#
        );
    }
}
