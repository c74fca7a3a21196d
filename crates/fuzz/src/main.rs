#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use osbuild_fuzz::campaign::{Campaign, Report, RSS_GROWTH_LIMIT_KIB, RSS_MIN_INPUTS};
use osbuild_fuzz::targets::{Harness, Target, TARGETS};
use osbuild_fuzz::worker;

/// Fuzzes osbuild's parsers: every target gets ITERATIONS inputs made from SEED; failing
/// inputs are written to OUT for --replay.
#[derive(Parser)]
#[command(name = "osbuild-fuzz")]
struct Args {
    /// A target (see --list) or `all`.
    #[arg(long, default_value = "all")]
    target: String,
    #[arg(long, default_value_t = 100_000)]
    iterations: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where failing inputs are written.
    #[arg(long, default_value = "fuzz-failures")]
    out: PathBuf,
    /// Run one input file (a failure written by an earlier run) against --target.
    #[arg(long)]
    replay: Option<PathBuf>,
    /// List the targets.
    #[arg(long)]
    list: bool,
    /// Internal: run as a campaign's worker.
    #[arg(long, hide = true)]
    worker: bool,
    #[arg(long, hide = true, default_value_t = 0)]
    start: u64,
    #[arg(long, hide = true)]
    libdir: Option<PathBuf>,
}

fn target(name: &str) -> Result<&'static Target, String> {
    Target::by_name(name).ok_or_else(|| format!("no target {name:?}; see --list"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("osbuild-fuzz: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> Result<ExitCode, String> {
    if args.list {
        for t in TARGETS {
            println!("{:<20} {}", t.name, t.about);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(file) = &args.replay {
        return replay(target(&args.target)?, file);
    }
    if args.worker {
        let libdir = args.libdir.clone().ok_or("--worker needs --libdir")?;
        return worker_main(target(&args.target)?, &libdir, &args);
    }
    let targets = match args.target.as_str() {
        "all" => TARGETS.iter().collect(),
        name => vec![target(name)?],
    };
    let campaign = Campaign {
        targets,
        iterations: args.iterations,
        seed: args.seed,
        out_dir: args.out,
        exe: std::env::current_exe().map_err(|e| format!("finding this binary: {e}"))?,
    };
    println!(
        "seed {}, {} inputs per target, each on a {} KiB stack; a hang is an input running over {:?}; \
         the RSS floor may grow {} KiB from the second quarter of the inputs to the last \
         (judged from {} inputs)",
        campaign.seed,
        campaign.iterations,
        worker::STACK / 1024,
        worker::HANG,
        RSS_GROWTH_LIMIT_KIB,
        RSS_MIN_INPUTS
    );
    println!("{}", Report::HEADER);
    let reports = campaign
        .run(&mut |r| {
            println!("{}", r.row());
            if r.memory_grew() {
                println!(
                    "FAIL {}: the RSS grew by {} KiB",
                    r.target,
                    r.rss_growth_kib()
                );
            }
        })
        .map_err(|e| format!("running the campaign: {e}"))?;
    let passed = reports.iter().all(Report::passed);
    println!("{}", if passed { "PASS" } else { "FAIL" });
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Runs inputs as a campaign's worker (lines on stdout, see `worker`); after a hang, exits at
/// once (the input's thread cannot be stopped).
fn worker_main(
    target: &'static Target,
    libdir: &std::path::Path,
    args: &Args,
) -> Result<ExitCode, String> {
    worker::capture_panics();
    let out = Box::new(std::io::stdout());
    match worker::run(
        target,
        Harness::at(libdir),
        args.seed,
        args.start,
        args.iterations,
        out,
    ) {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(iteration) => {
            println!("hang {iteration}");
            std::process::exit(0);
        }
    }
}

/// Runs one input file on the input thread's stack and says what happened.
fn replay(target: &'static Target, file: &std::path::Path) -> Result<ExitCode, String> {
    let input = std::fs::read(file).map_err(|e| format!("reading {}: {e}", file.display()))?;
    let input_len = input.len();
    worker::capture_panics();
    let harness = Harness::new().map_err(|e| format!("making the libdir: {e}"))?;
    let outcome = worker::run_on_stack(move || worker::run_one(target, &harness, &input));
    match outcome {
        Ok(accepted) => {
            let verdict = if accepted { "accepted" } else { "refused" };
            println!("{}: {} bytes, no panic ({verdict})", target.name, input_len);
            Ok(ExitCode::SUCCESS)
        }
        Err(message) => {
            println!("{}: panic: {message}", target.name);
            Ok(ExitCode::FAILURE)
        }
    }
}
