//! Running inputs: each on a thread with the daemon's stack size, under `catch_unwind`, with a
//! watchdog that calls an input running longer than [`HANG`] a hang, and the process's RSS
//! floor after warm-up (the second quarter of the inputs) and at the end (the last quarter). The worker reports on a writer, one line per event, so
//! that whoever reads it knows which input was running when the process died:
//!
//! ```text
//! at ITERATION             before each input
//! panic ITERATION MESSAGE  a parser panicked or a property failed
//! hang ITERATION           the input ran longer than HANG; the worker stops there
//! done INPUTS SECONDS ACCEPTED RSS_WARM_KIB RSS_END_KIB
//! ```

use std::cell::RefCell;
use std::io::Write;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::targets::{Generator, Harness, Target};

/// An input that runs longer than this is a hang (the slowest legitimate input, a 1 MiB
/// manifest in a debug build, takes well under a second).
pub const HANG: Duration = Duration::from_secs(2);

/// The stack of the thread inputs run on: 2 MiB, the stack of tokio's worker threads (osbuildd
/// runs `Build`'s validation there and keeps tokio's default) and of every `std::thread` the
/// engine spawns (the API socket threads parse the sandbox's messages there).
pub const STACK: usize = 2 << 20;

const THREAD_NAME: &str = "fuzz-input";

thread_local! {
    static PANIC_MESSAGE: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Keeps the message of a panic on the input thread (printed once by the reader, not 10,000
/// times on stderr); other threads panic as usual.
pub fn capture_panics() {
    let default = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        if std::thread::current().name() == Some(THREAD_NAME) {
            let payload = info.payload();
            let text = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("a panic with a non-string payload");
            let at = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()));
            PANIC_MESSAGE.set(Some(format!("{text}{}", at.unwrap_or_default())));
        } else {
            default(info);
        }
    }));
}

/// Runs one input; `Err` is the panic's message.
pub fn run_one(target: &Target, harness: &Harness, input: &[u8]) -> Result<bool, String> {
    panic::catch_unwind(AssertUnwindSafe(|| target.run(harness, input))).map_err(|_| {
        PANIC_MESSAGE
            .take()
            .unwrap_or_else(|| "a panic".to_owned())
            // One line, and bounded: a message may quote a megabyte input.
            .chars()
            .flat_map(char::escape_debug)
            .take(2000)
            .collect()
    })
}

/// Runs `f` on a thread named and sized as the campaign's input thread (for `--replay`).
pub fn run_on_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .name(THREAD_NAME.into())
        .stack_size(STACK)
        .spawn(f)
        .expect("starting the input thread")
        .join()
        .expect("the input thread catches every panic")
}

/// The resident set of this process in KiB (`VmRSS` of /proc/self/status).
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Which input runs, and since when (milliseconds after the run started).
struct Progress {
    epoch: Instant,
    iteration: AtomicU64,
    since_ms: AtomicU64,
}

impl Progress {
    /// Between inputs (making the next one is not watched).
    fn idle(&self) {
        self.since_ms.store(u64::MAX, Ordering::Release);
    }

    fn start(&self, iteration: u64) {
        self.iteration.store(iteration, Ordering::Release);
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.since_ms.store(ms, Ordering::Release);
    }

    /// The input running for longer than [`HANG`], if one is.
    fn hung(&self) -> Option<u64> {
        let since = self.since_ms.load(Ordering::Acquire);
        let iteration = self.iteration.load(Ordering::Acquire);
        let now = self.epoch.elapsed().as_millis() as u64;
        // Still the same input after reading its number: not one that just ended.
        let same = self.since_ms.load(Ordering::Acquire) == since;
        (same && now.saturating_sub(since) > HANG.as_millis() as u64).then_some(iteration)
    }
}

/// What one run measured.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stats {
    pub inputs: u64,
    pub seconds: f64,
    pub panics: u64,
    /// Inputs a parser accepted.
    pub accepted: u64,
    pub rss_warm_kib: u64,
    pub rss_end_kib: u64,
}

/// Runs inputs `start..start + count` of `target` and reports on `out`. Returns the stats, or
/// the iteration that hung (its thread is left running; the caller exits).
pub fn run(
    target: &'static Target,
    harness: Harness,
    seed: u64,
    start: u64,
    count: u64,
    out: Box<dyn Write + Send>,
) -> Result<Stats, u64> {
    let progress = Arc::new(Progress {
        epoch: Instant::now(),
        iteration: AtomicU64::new(start),
        since_ms: AtomicU64::new(u64::MAX),
    });
    let shared = progress.clone();
    let thread = std::thread::Builder::new()
        .name(THREAD_NAME.into())
        .stack_size(STACK)
        .spawn(move || run_inputs(target, &harness, seed, start..start + count, &shared, out))
        .expect("starting the input thread");
    loop {
        if thread.is_finished() {
            return Ok(thread.join().expect("the input thread catches every panic"));
        }
        if let Some(iteration) = progress.hung() {
            return Err(iteration);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn run_inputs(
    target: &'static Target,
    harness: &Harness,
    seed: u64,
    range: std::ops::Range<u64>,
    progress: &Progress,
    mut out: Box<dyn Write + Send>,
) -> Stats {
    let generator = Generator::new(target);
    // The RSS floor (lowest sample) of the second quarter and of the last: a leak raises the
    // floor; one large input lifts a sample or two, and glibc's heap keeps such a peak until
    // later allocations reuse it.
    let (first, len) = (range.start, range.end - range.start);
    let every = (len / 100).max(1);
    let (mut warm, mut end) = (u64::MAX, u64::MAX);
    let mut stats = Stats::default();
    let started = Instant::now();
    for i in range {
        let done = i - first;
        if done % every == 0 {
            match done * 4 / len.max(1) {
                1 => warm = warm.min(rss_kib()),
                3 => end = end.min(rss_kib()),
                _ => {}
            }
        }
        // Written (and flushed: a line) before the input is made and run, so a crash names it.
        let _ = writeln!(out, "at {i}");
        progress.idle();
        let input = generator.input(seed, i);
        progress.start(i);
        match run_one(target, harness, &input) {
            Ok(accepted) => stats.accepted += u64::from(accepted),
            Err(message) => {
                stats.panics += 1;
                let _ = writeln!(out, "panic {i} {message}");
            }
        }
        stats.inputs += 1;
    }
    progress.idle();
    stats.seconds = started.elapsed().as_secs_f64();
    stats.rss_end_kib = end.min(rss_kib());
    stats.rss_warm_kib = if warm == u64::MAX {
        stats.rss_end_kib
    } else {
        warm
    };
    let _ = writeln!(
        out,
        "done {} {:.3} {} {} {}",
        stats.inputs, stats.seconds, stats.accepted, stats.rss_warm_kib, stats.rss_end_kib
    );
    stats
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::test_target;
    use std::sync::Mutex;

    /// A writer the test reads back.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Lines {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    #[test]
    fn panics_are_caught_counted_and_named_with_their_input() {
        capture_panics();
        let target = test_target(|_, input| {
            assert!(!input.contains(&b'['), "a bracket");
            true
        });
        let lines = Lines::default();
        let stats = run(
            target,
            Harness::new().unwrap(),
            3,
            10,
            300,
            Box::new(lines.clone()),
        )
        .unwrap();
        let text = lines.text();
        let panics: Vec<&str> = text.lines().filter(|l| l.starts_with("panic ")).collect();
        assert_eq!(stats.inputs, 300);
        assert_eq!(stats.panics as usize, panics.len());
        assert!(stats.panics > 0 && stats.panics < 300, "{}", stats.panics);
        let first: u64 = panics[0].split(' ').nth(1).unwrap().parse().unwrap();
        assert!(Generator::new(target).input(3, first).contains(&b'['));
        assert!(
            panics[0].contains("a bracket at crates/fuzz/src/worker.rs:"),
            "{}",
            panics[0]
        );
        assert!(
            text.starts_with("at 10\n") && text.lines().last().unwrap().starts_with("done 300 ")
        );
        assert!(stats.rss_warm_kib > 0 && stats.rss_end_kib > 0);
    }

    #[test]
    fn an_input_running_past_the_limit_is_a_hang() {
        let target = test_target(|_, _| {
            std::thread::sleep(HANG + Duration::from_millis(500));
            true
        });
        let started = Instant::now();
        // No libdir of its own: the hung thread outlives the test and would never remove it.
        let harness = Harness::at(std::path::Path::new("/nonexistent"));
        let hung = run(target, harness, 1, 5, 10, Box::new(Lines::default()));
        assert_eq!(hung, Err(5));
        assert!(started.elapsed() < HANG + Duration::from_millis(400));
    }
}
