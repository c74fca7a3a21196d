//! `osbuild-docgen`: writes the man pages and shell completions of every installed command
//! from the clap definitions ([`osbuild::cli::pages`]), at build time, so the shipped binaries
//! carry no generator and every option is described once.
//!
//! ```text
//! osbuild-docgen --prefix PREFIX OUTDIR
//!   OUTDIR/man1/NAME.1, NAME-SUBCOMMAND.1   man pages (section 1)
//!   OUTDIR/bash/NAME  OUTDIR/zsh/_NAME  OUTDIR/fish/NAME.fish   completions
//! ```
//!
//! PREFIX is where the package is installed: the pages name files below it (`{prefix}` and
//! `{doc}` in [`osbuild::cli::pages`]).

#![forbid(unsafe_code)]

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Parser;
use clap_complete::Shell;
use clap_mangen::roff::{roman, Roff};
use clap_mangen::Man;
use osbuild::cli::pages::{pages, Page, DOC_DIR};

/// Write osbuild's man pages and shell completions.
#[derive(Debug, Parser)]
#[command(name = "osbuild-docgen")]
struct Args {
    /// Installation prefix the pages describe (example lines use its sample manifests).
    #[arg(long, value_name = "DIR", default_value = "/usr/local")]
    prefix: PathBuf,
    /// Output directory (created).
    out: PathBuf,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("osbuild-docgen: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    let prefix = args.prefix.to_string_lossy();
    let doc = args.prefix.join(DOC_DIR);
    let doc = doc.to_string_lossy();
    let places = |text: &str| text.replace("{doc}", &doc).replace("{prefix}", &prefix);
    for page in pages() {
        write_pages(&page, &places, &args.out.join("man1"))?;
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            write_completion(page.command.clone(), shell, &args.out)?;
        }
    }
    Ok(())
}

/// The command's page (with its examples and sections) and one page per subcommand.
fn write_pages(page: &Page, places: &dyn Fn(&str) -> String, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = page.command.clone().disable_help_subcommand(true);
    cmd.build();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let man = Man::new(sub.clone());
        man.generate_to(dir)
            .with_context(|| format!("writing {}", man.get_filename()))?;
    }
    let man = Man::new(cmd);
    let path = dir.join(man.get_filename());
    let mut text = Vec::new();
    man.render(&mut text)?;
    text.extend(extra_sections(page, places).to_roff().into_bytes());
    let mut file =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(&text)
        .with_context(|| format!("writing {}", path.display()))
}

/// EXAMPLES (what, then the command line verbatim) and the page's further sections, with
/// neither hyphenation nor justification (they are full of paths and field names).
fn extra_sections(page: &Page, places: &dyn Fn(&str) -> String) -> Roff {
    let mut roff = Roff::new();
    roff.control("nh", []).control("ad", ["l"]);
    if !page.examples.is_empty() {
        roff.control("SH", ["EXAMPLES"]);
        for example in page.examples {
            roff.control("PP", []).text([roman(places(example.what))]);
            roff.control("RS", ["4"]).control("nf", []);
            for line in places(example.line).lines() {
                roff.text([roman(line)]);
            }
            roff.control("fi", []).control("RE", []);
        }
    }
    for (title, paragraphs) in page.sections {
        roff.control("SH", [*title]);
        for p in *paragraphs {
            roff.control("PP", []).text([roman(places(p))]);
        }
    }
    roff
}

/// OUT/bash/NAME, OUT/zsh/_NAME or OUT/fish/NAME.fish.
fn write_completion(mut cmd: clap::Command, shell: Shell, out: &Path) -> anyhow::Result<()> {
    let name = cmd.get_name().to_owned();
    let (dir, file) = match shell {
        Shell::Bash => ("bash", name.clone()),
        Shell::Zsh => ("zsh", format!("_{name}")),
        _ => ("fish", format!("{name}.fish")),
    };
    let dir = out.join(dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(file);
    let mut f =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    clap_complete::generate(shell, &mut cmd, name, &mut f);
    Ok(())
}
