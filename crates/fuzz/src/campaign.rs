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

/// How much the RSS floor may grow from the second quarter of the inputs to the last (see
/// [`crate::worker`]). A leak of 100 bytes per input over the 50,000 inputs between the two
/// quarters of a full run is 4.8 MiB and fails; without a leak the floor moves by a few
/// hundred KiB (glibc's heap layout).
pub const RSS_GROWTH_LIMIT_KIB: u64 = 4096;

/// Below this many inputs the growth is reported but not judged: too few inputs after warm-up
/// to tell a leak from the first large inputs (a short CI run).
pub const RSS_MIN_INPUTS: u64 = 10_000;

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
    /// Inputs a parser accepted (the rest it refused with an error).
    pub accepted: u64,
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
        self.panics == 0 && self.hangs == 0 && self.crashes == 0 && !self.memory_grew()
    }

    /// The RSS grew past [`RSS_GROWTH_LIMIT_KIB`] in a run long enough to tell.
    pub fn memory_grew(&self) -> bool {
        self.inputs >= RSS_MIN_INPUTS && self.rss_growth_kib() > RSS_GROWTH_LIMIT_KIB as i64
    }

    pub const HEADER: &str = "target               inputs   time s  inputs/s  panics  hangs  crashes  accepted  RSS warm KiB  RSS end KiB  growth KiB";

    pub fn row(&self) -> String {
        format!(
            "{:<18} {:>8} {:>8.1} {:>9.0} {:>7} {:>6} {:>8} {:>8.1}% {:>13} {:>12} {:>11}",
            self.target,
            self.inputs,
            self.seconds,
            self.inputs as f64 / self.seconds.max(1e-9),
            self.panics,
            self.hangs,
            self.crashes,
            100.0 * self.accepted as f64 / self.inputs.max(1) as f64,
            self.rss_warm_kib,
            self.rss_end_kib,
            self.rss_growth_kib()
        )
    }
}

/// How one worker process ended.
enum End {
    Done {
        accepted: u64,
        rss_warm_kib: u64,
        rss_end_kib: u64,
    },
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
                self.failure(
                    &generator,
                    target,
                    i,
                    &format!("panic: {message}"),
                    &mut report.failures,
                );
            };
            let end = self.worker(target, libdir, start, &mut on_panic)?;
            start = match end {
                End::Done {
                    accepted,
                    rss_warm_kib,
                    rss_end_kib,
                } => {
                    report.accepted += accepted;
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
            // glibc set to give memory back as soon as it is freed: a fixed mmap threshold (a
            // large block is unmapped when freed, the threshold does not rise), no fast bins and
            // no thread cache (freed chunks coalesce, so the heap's top can be trimmed). The
            // RSS then follows the memory in use, not the largest input seen so far.
            .env(
                "GLIBC_TUNABLES",
                "glibc.malloc.mmap_threshold=131072:glibc.malloc.trim_threshold=131072:\
                 glibc.malloc.mxfast=0:glibc.malloc.tcache_count=0",
            )
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
                    // INPUTS SECONDS ACCEPTED RSS_WARM RSS_END (SECONDS is no integer).
                    end = Some(End::Done {
                        accepted: n.get(1).copied().unwrap_or(0),
                        rss_warm_kib: n.get(2).copied().unwrap_or(0),
                        rss_end_kib: n.get(3).copied().unwrap_or(0),
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
    fn failure(
        &self,
        generator: &Generator,
        target: &Target,
        i: u64,
        what: &str,
        files: &mut Vec<PathBuf>,
    ) {
        let file = self.out_dir.join(format!(
            "{}-seed{}-iteration{i}.input",
            target.name, self.seed
        ));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in worker: from `--start 0` it starts inputs 0, 1 and 2 and dies by SIGSEGV in
    /// input 2 (as a stack overflow would kill it); from a later start it hangs on input 4;
    /// after that it finishes.
    const FAKE_WORKER: &str = r#"#!/bin/sh
while [ "$1" != --start ]; do shift; done
case $2 in
0) echo "at 0"; echo "at 1"; echo "panic 1 boom"; echo "at 2"; echo "dying" >&2; kill -SEGV $$ ;;
3) echo "at 3"; echo "at 4"; echo "hang 4" ;;
*) echo "at $2"; echo "done 5 0.1 3 1000 1100" ;;
esac
"#;

    #[test]
    fn crashes_hangs_and_panics_are_counted_written_and_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("worker");
        osbuild_sys::process::write_executable(&exe, FAKE_WORKER.as_bytes(), 0o755).unwrap();
        let campaign = Campaign {
            targets: vec![Target::by_name("json").unwrap()],
            iterations: 8,
            seed: 4,
            out_dir: dir.path().join("failures"),
            exe,
        };
        let mut rows = Vec::new();
        let reports = campaign.run(&mut |r| rows.push(r.row())).unwrap();
        let r = &reports[0];
        assert_eq!((r.panics, r.crashes, r.hangs), (1, 1, 1), "{r:?}");
        assert_eq!(
            (r.inputs, r.accepted, r.rss_warm_kib, r.rss_end_kib),
            (8, 3, 1000, 1100)
        );
        assert!(!r.passed());
        let names: Vec<String> = r
            .failures
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "json-seed4-iteration1.input",
                "json-seed4-iteration2.input",
                "json-seed4-iteration4.input"
            ]
        );
        let generator = Generator::new(Target::by_name("json").unwrap());
        assert_eq!(
            std::fs::read(&r.failures[1]).unwrap(),
            generator.input(4, 2)
        );
        assert_eq!(rows.len(), 1);
    }
}
