//! How `osbuildctl build` shows a job: a bar on a terminal (stages as `[i/n]`, downloads in
//! bytes), plain lines otherwise (a download at most once a second and when a source is done),
//! nothing with `--json`.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, ProgressBar, ProgressStyle};

/// Where one source's download stands, as `Job.DownloadProgress` tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Download {
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub files_done: u64,
    pub files_total: u64,
}

impl Download {
    fn complete(&self) -> bool {
        self.files_done == self.files_total && self.bytes_done == self.bytes_total
    }

    /// `org.osbuild.files: 2/3 files, 1.50 MiB of 4.00 MiB`.
    fn line(&self, source: &str) -> String {
        format!(
            "{source}: {}/{} files, {} of {}",
            self.files_done,
            self.files_total,
            HumanBytes(self.bytes_done),
            HumanBytes(self.bytes_total)
        )
    }
}

/// How long plain output waits between two lines about one download.
const PLAIN_INTERVAL: Duration = Duration::from_secs(1);

/// A bar on a terminal, plain lines otherwise, nothing with --json.
pub(crate) enum Display {
    Bar(ProgressBar),
    Plain { last_download: Option<Instant> },
    Quiet,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

fn stage_style() -> ProgressStyle {
    style("{spinner} [{pos}/{len}] {msg} {elapsed}")
}

fn download_style() -> ProgressStyle {
    style("{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
}

impl Display {
    /// Quiet with --json, a bar on a terminal, plain lines otherwise.
    pub fn new(json: bool) -> Self {
        if json {
            return Display::Quiet;
        }
        if !std::io::stderr().is_terminal() {
            return Display::Plain {
                last_download: None,
            };
        }
        let bar = ProgressBar::new(1);
        bar.set_style(stage_style());
        bar.enable_steady_tick(Duration::from_millis(200));
        Display::Bar(bar)
    }

    /// A line of text (stage output, a note).
    pub fn line(&self, text: &str) {
        match self {
            Display::Bar(b) => b.println(text),
            Display::Plain { .. } => println!("{text}"),
            Display::Quiet => {}
        }
    }

    /// Stage `index` (from 0) of `total` started.
    pub fn stage_started(&self, name: &str, stage_id: &str, index: u32, total: u32) {
        match self {
            Display::Bar(b) => {
                // The figures first: a style change redraws with whatever they are.
                b.set_length(u64::from(total));
                b.set_position(u64::from(index));
                b.set_message(name.to_owned());
                b.set_style(stage_style());
            }
            d => d.line(&format!("[{}/{total}] {name} {stage_id}", index + 1)),
        }
    }

    pub fn stage_finished(&self, name: &str, success: bool, seconds: f64) {
        match self {
            Display::Bar(b) => b.inc(1),
            d => d.line(&format!(
                "{name} {} in {seconds:.1}s",
                if success { "finished" } else { "FAILED" }
            )),
        }
    }

    /// A source's download moved on.
    pub fn download(&mut self, source: &str, d: Download) {
        match self {
            Display::Bar(b) => {
                b.set_length(d.bytes_total);
                b.set_position(d.bytes_done);
                b.set_message(format!("{source} {}/{}", d.files_done, d.files_total));
                b.set_style(download_style());
            }
            Display::Plain { last_download } => {
                let now = Instant::now();
                let due = last_download.is_none_or(|t| now.duration_since(t) >= PLAIN_INTERVAL);
                if due || d.complete() {
                    *last_download = Some(now);
                    println!("{}", d.line(source));
                }
            }
            Display::Quiet => {}
        }
    }

    /// Removes the bar, if any.
    pub fn finish(&self) {
        if let Display::Bar(b) = self {
            b.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_download_line_says_files_and_bytes() {
        let d = Download {
            bytes_done: 3 << 20,
            bytes_total: 4 << 20,
            files_done: 1,
            files_total: 2,
        };
        assert_eq!(
            d.line("org.osbuild.files"),
            "org.osbuild.files: 1/2 files, 3.00 MiB of 4.00 MiB"
        );
        assert!(!d.complete());
    }
}
