//! A campaign: every chosen target run by a worker process of its own (this binary with
//! `--worker`), so that a crash the process cannot survive (a stack overflow aborts) is caught
//! too. The campaign reads the worker's lines (see [`crate::worker`]), writes every failing
//! input to a file for `--replay`, starts a new worker after the input that hung or crashed,
//! and prints one row per target.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::libdir::Libdir;
use crate::targets::{Generator, Target};

/// How much the RSS may grow between warm-up (a tenth of the inputs) and the end. A leak
/// of 64 bytes per input over the 90,000 inputs after warm-up of a full run is 5.5 MiB
/// and fails; what does not leak stays far below (glibc keeps freed heap for reuse, so
/// the RSS reaches its high-water mark during warm-up and then moves by a few hundred KiB).
pub const RSS_GROWTH_LIMIT_KIB: u64 = 4096;

pub struct Campaign {
    pub targets: Vec<&'static Target>,
    pub iterations: u64,
    pub seed: u64,
    /// Where failing inputs are written.
    pub out_dir: PathBuf,
    /// This binary (the workers).
    pub exe: PathBuf,
}

/// One target's row.
#[derive(Debug, Default)]
pub struct Report {
    pub target: &'static str,
    pub inputs: u64,
    pub seconds: f64,
    pub panics: u64,
    pub hangs: u64,
    pub crashes: u64,
    pub rss_warm_kib: u64,
    pub rss_end_kib: u64,
    /// The inputs that failed, written for `--replay`.
    pub failures: Vec<PathBuf>,
}

impl Report {
    pub fn rss_growth_kib(&self) -> i64 {
        self.rss_end_kib as i64 - self.rss_warm_kib as i64
    }

    pub fn passed(&self) -> bool {
        self.panics == 0
            && self.hangs == 0
            && self.crashes == 0
            && self.rss_growth_kib() <= RSS_GROWTH_LIMIT_KIB as i64
    }

    pub const HEADER: &str = "target               inputs    time s   inputs/s  panics  hangs  crashes  RSS warm KiB  RSS end KiB  growth KiB";

    pub fn row(&self) -> String {
        format!(
            "{:<18} {:>8} {:>9.1} {:>10.0} {:>7} {:>6} {:>8} {:>13} {:>12} {:>11}",
            self.target,
            self.inputs,
            self.seconds,
            self.inputs as f64 / self.seconds.max(1e-9),
            self.panics,
            self.hangs,
            self.crashes,
            self.rss_warm_kib,
            self.rss_end_kib,
            self.rss_growth_kib()
        )
    }
}

/// How one worker process ended.
enum End {
    Done { rss_warm_kib: u64, rss_end_kib: u64 },
    Hang(u64),
    /// It died while running this input (or before the first one: `None`).
    Crash(Option<u64>, String),
}

impl Campaign {
    /// Runs every target in turn, handing each report to `on_report` as it is ready.
    pub fn run(&self, on_report: &mut dyn FnMut(&Report)) -> std::io::Result<Vec<Report>> {
        let libdir = Libdir::new()?;
        let mut reports = Vec::new();
        for target in &self.targets {
            let report = self.run_target(target, libdir.path())?;
            on_report(&report);
            reports.push(report);
        }
        Ok(reports)
    }

    fn run_target(&self, target: &'static Target, libdir: &Path) -> std::io::Result<Report> {
        let mut report = Report {
            target: target.name,
            ..Report::default()
        };
        let generator = Generator::new(target);
        let started = Instant::now();
        let mut start = 0;
        while start < self.iterations {
            let mut on_panic = |i: u64, message: &str| {
                report.panics += 1;
                self.failure(&generator, target, i, &format!("panic: {message}"), &mut report.failures);
            };
            let end = self.worker(target, libdir, start, &mut on_panic)?;
            start = match end {
                End::Done { rss_warm_kib, rss_end_kib } => {
                    report.rss_warm_kib = rss_warm_kib;
                    report.rss_end_kib = rss_end_kib;
                    self.iterations
                }
                End::Hang(i) => {
                    report.hangs += 1;
                    let what = format!("hang: still running after {:?}", crate::worker::HANG);
                    self.failure(&generator, target, i, &what, &mut report.failures);
                    i + 1
                }
                End::Crash(i, stderr) => {
                    report.crashes += 1;
                    let i = i.unwrap_or(start);
                    let what = format!("the worker died: {}", stderr.trim());
                    self.failure(&generator, target, i, &what, &mut report.failures);
                    i + 1
                }
            };
        }
        report.inputs = self.iterations;
        report.seconds = started.elapsed().as_secs_f64();
        Ok(report)
    }

    /// Runs a worker from input `start` to the end, or until it hangs or dies.
    fn worker(
        &self,
        target: &Target,
        libdir: &Path,
        start: u64,
        on_panic: &mut dyn FnMut(u64, &str),
    ) -> std::io::Result<End> {
        let mut child = Command::new(&self.exe)
            .args(["--worker", "--target", target.name])
            .arg("--libdir")
            .arg(libdir)
            .args(["--seed", &self.seed.to_string()])
            .args(["--start", &start.to_string()])
            .args(["--iterations", &(self.iterations - start).to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut stderr = child.stderr.take().expect("piped stderr");
        // The parsers warn on stderr (a manifest's stray "runner"); keep the tail for a crash.
        let tail = std::thread::spawn(move || {
            let mut text = Vec::new();
            let mut buf = [0; 8192];
            while let Ok(n @ 1..) = stderr.read(&mut buf) {
                text.extend_from_slice(&buf[..n]);
                let cut = text.len().saturating_sub(4096);
                text.drain(..cut);
            }
            String::from_utf8_lossy(&text).into_owned()
        });
        let mut last = None;
        let mut end = None;
        for line in BufReader::new(child.stdout.take().expect("piped stdout")).lines() {
            let line = line?;
            let (word, rest) = line.split_once(' ').unwrap_or((&line, ""));
            let number = |s: &str| s.split(' ').next().and_then(|n| n.parse::<u64>().ok());
            match word {
                "at" => last = number(rest),
                "panic" => {
                    let (i, message) = rest.split_once(' ').unwrap_or((rest, ""));
                    on_panic(number(i).unwrap_or(0), message);
                }
                "hang" => end = number(rest).map(End::Hang),
                "done" => {
                    let n: Vec<u64> = rest.split(' ').filter_map(|n| n.parse().ok()).collect();
                    end = Some(End::Done {
                        rss_warm_kib: n.get(1).copied().unwrap_or(0),
                        rss_end_kib: n.get(2).copied().unwrap_or(0),
                    });
                }
                _ => {}
            }
        }
        let status = child.wait()?;
        let stderr = tail.join().unwrap_or_default();
        Ok(match end {
            Some(end) if status.success() => end,
            _ => End::Crash(last, format!("{status}; stderr ends: {stderr}")),
        })
    }

    /// Writes input `i` to the output directory and says how to replay it.
    fn failure(&self, generator: &Generator, target: &Target, i: u64, what: &str, files: &mut Vec<PathBuf>) {
        let file = self.out_dir.join(format!("{}-seed{}-iteration{i}.input", target.name, self.seed));
        let written = std::fs::create_dir_all(&self.out_dir)
            .and_then(|()| std::fs::write(&file, generator.input(self.seed, i)));
        eprintln!(
            "FAIL {} seed {} iteration {i}: {what}\n  input: {} ({})\n  replay: osbuild-fuzz --target {} --replay {}",
            target.name,
            self.seed,
            file.display(),
            written.map_or_else(|e| format!("not written: {e}"), |()| "written".to_owned()),
            target.name,
            file.display()
        );
        files.push(file);
    }
}
