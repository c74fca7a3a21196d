//! `org.osbuild.qemu` (HEAD's v2 stage): converts the one file of the `image` input to
//! qcow2, vdi, vmdk, vpc or vhdx, with HEAD's format options.
//!
//! A compressed qcow2 of zlib clusters and compat 1.1 (HEAD's defaults: `compression` true,
//! no `compat`, no `compression_type`) is written by our own writer ([`osbuild_qcow2`]): the
//! clusters compressed on every core and appended in the disk's order, so the same bytes every
//! time (a reproducible build needs nothing else), in about half the time of qemu-img's
//! parallel writer on two cores (`bench/qcow2.sh`). Everything else is `qemu-img convert`.
//!
//! qemu-img writes a compressed qcow2 with out-of-order writes and 16 coroutines (`-W -m 16`),
//! so the clusters are compressed on every core (the coroutines bound how many at once; qemu's
//! thread pool runs them): the same guest-visible disk, clusters in the order their
//! compression finishes. In a reproducible build (`SOURCE_DATE_EPOCH`) the writes stay in
//! order: serial, but the same bytes every time.
//!
//! `compression_type` zstd compresses a qcow2's clusters with zstd instead of zlib (about 5x
//! faster to write with qemu-img); such a qcow2 needs compat 1.1 and a reader of qemu 5.1 or
//! later, so it is asked for, never the default, and its contradictions are refused here by
//! name before qemu-img runs.

use crate::args::{Args, Opts};
use crate::command;
use crate::error::StageError;
use crate::tree;

pub fn run(args: &Args) -> Result<i32, StageError> {
    let opts = args.opts();
    let filename = opts.str("filename")?;
    let format = opts
        .opt_object("format")?
        .ok_or_else(|| StageError::option("format", "is required"))?;
    let (kind, mut extra) = format_arguments(&format)?;
    let reproducible = std::env::var_os("SOURCE_DATE_EPOCH").is_some_and(|e| !e.is_empty());
    extra.extend(parallel_arguments(kind, &extra, reproducible));
    let source = args.single_file("image")?;
    let target = tree::tree_path(&args.tree, filename.trim_start_matches('/'))?;
    if ours(kind, &format)? {
        let threads = osbuild_qcow2::available_threads();
        let summary = osbuild_qcow2::write_compressed(&source, &target, threads)
            .map_err(|e| StageError::Other(format!("writing the qcow2: {e}")))?;
        println!("qcow2 ({threads} threads): {summary}");
        return Ok(0);
    }
    if let Ok(n) = std::env::var("OSBUILD_QEMU_IMG_COROUTINES") {
        if !n.is_empty() {
            println!("qemu-img coroutines: {n}");
            if let Some(m) = extra.iter().position(|a| a == "-m") {
                extra.drain(m..m + 2);
            }
            extra.extend(["-m".to_owned(), n]);
        }
    }
    let mut cmd = command::tool("qemu-img");
    cmd.args(["convert", "-O", kind]).args(extra);
    command::run(cmd.arg(source).arg(target))?;
    Ok(0)
}

/// Whether our writer makes this image: a compressed qcow2, compat 1.1 (or unset: qemu-img's
/// default), zlib clusters. Call after [`format_arguments`] checked the options.
fn ours(kind: &str, f: &Opts<'_>) -> Result<bool, StageError> {
    if kind != "qcow2" || !f.bool_or("compression", true)? {
        return Ok(false);
    }
    let compat = f.opt_str("compat")?.filter(|c| !c.is_empty());
    let clusters = f.opt_str("compression_type")?;
    Ok(matches!(compat, None | Some("1.1")) && matches!(clusters, None | Some("zlib")))
}

/// `-W -m 16` for a compressed qcow2 unless the output must be reproducible (see the module's
/// documentation).
fn parallel_arguments(kind: &str, argv: &[String], reproducible: bool) -> Vec<String> {
    if kind == "qcow2" && argv.iter().any(|a| a == "-c") && !reproducible {
        ["-W", "-m", "16"].map(String::from).to_vec()
    } else {
        Vec::new()
    }
}

/// The format's type and the `qemu-img convert` arguments its options stand for.
fn format_arguments<'a>(f: &Opts<'a>) -> Result<(&'a str, Vec<String>), StageError> {
    let kind = f.choice("type", &["qcow2", "vdi", "vmdk", "vpc", "vhdx"], None)?;
    let mut argv = Vec::new();
    let mut o = Vec::new();
    match kind {
        "qcow2" => {
            let compression = f.bool_or("compression", true)?;
            if compression {
                argv.push("-c".to_owned());
            }
            let compat = f.opt_str("compat")?.filter(|c| !c.is_empty());
            if let Some(compat) = compat {
                o.push(format!("compat={compat}"));
            }
            if qcow2_zstd(f, compression, compat)? {
                o.push("compression_type=zstd".to_owned());
            }
        }
        "vmdk" => {
            if f.bool_or("compression", true)? {
                argv.push("-c".to_owned());
            }
            if let Some(adapter) = f.opt_str("adapter_type")?.filter(|a| !a.is_empty()) {
                let allowed = ["ide", "lsilogic", "buslogic", "legacyESX"];
                o.push(format!(
                    "adapter_type={}",
                    f.choice("adapter_type", &allowed, Some(adapter))?
                ));
            }
            if f.bool_or("compat6", false)? {
                o.push("compat6".to_owned());
            }
            if let Some(sub) = f.opt_str("subformat")?.filter(|s| !s.is_empty()) {
                o.push(format!("subformat={sub}"));
            }
        }
        "vpc" => {
            let sub = f.choice("subformat", &["fixed", "dynamic"], Some("fixed"))?;
            o.push(format!("subformat={sub}"));
            if f.bool_or("force_size", true)? {
                o.push("force_size".to_owned());
            }
        }
        _ => {}
    }
    if !o.is_empty() {
        argv.extend(["-o".to_owned(), o.join(",")]);
    }
    Ok((kind, argv))
}

/// Whether the qcow2's `compression_type` is zstd (zlib, qemu-img's default, adds nothing);
/// zstd needs `compression` on and a compat level that has the header field (1.1).
fn qcow2_zstd(f: &Opts<'_>, compression: bool, compat: Option<&str>) -> Result<bool, StageError> {
    if f.choice("compression_type", &["zlib", "zstd"], Some("zlib"))? == "zlib" {
        return Ok(false);
    }
    let name = f.name("compression_type");
    if !compression {
        return Err(StageError::option(
            name,
            "zstd compresses clusters, but \"compression\" is false: drop one of them",
        ));
    }
    if let Some(old @ ("0.10" | "v2")) = compat {
        return Err(StageError::option(
            name,
            format!("zstd needs qcow2 compat 1.1, but \"compat\" is {old:?}"),
        ));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn argv(format: Value) -> Result<String, String> {
        let text = json!({"tree": "/t", "options": {"format": format}}).to_string();
        let args = Args::parse(&text).unwrap();
        let f = args.opts().opt_object("format").unwrap().unwrap();
        format_arguments(&f)
            .map(|(k, a)| format!("{k}: {}", a.join(" ")))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn format_options_are_heads() {
        let cases: &[(Value, Result<&str, &str>)] = &[
            (json!({"type": "qcow2"}), Ok("qcow2: -c")),
            (
                json!({"type": "qcow2", "compression": false, "compat": "0.10"}),
                Ok("qcow2: -o compat=0.10"),
            ),
            (
                json!({"type": "qcow2", "compression_type": "zlib"}),
                Ok("qcow2: -c"),
            ),
            (
                json!({"type": "qcow2", "compression_type": "zstd"}),
                Ok("qcow2: -c -o compression_type=zstd"),
            ),
            (
                json!({"type": "qcow2", "compression_type": "zstd", "compat": "1.1"}),
                Ok("qcow2: -c -o compat=1.1,compression_type=zstd"),
            ),
            (
                json!({"type": "qcow2", "compression_type": "zstd", "compression": false}),
                Err("option \"format.compression_type\": zstd compresses clusters, but \"compression\" is false"),
            ),
            (
                json!({"type": "qcow2", "compression_type": "zstd", "compat": "0.10"}),
                Err("option \"format.compression_type\": zstd needs qcow2 compat 1.1, but \"compat\" is \"0.10\""),
            ),
            (
                json!({"type": "qcow2", "compression_type": "lz4"}),
                Err("option \"format.compression_type\": \"lz4\" is not one of"),
            ),
            (json!({"type": "vdi"}), Ok("vdi: ")),
            (json!({"type": "vhdx"}), Ok("vhdx: ")),
            (json!({"type": "vmdk"}), Ok("vmdk: -c")),
            (
                json!({"type": "vmdk", "compression": false, "adapter_type": "lsilogic", "compat6": true, "subformat": "streamOptimized"}),
                Ok("vmdk: -o adapter_type=lsilogic,compat6,subformat=streamOptimized"),
            ),
            (
                json!({"type": "vpc"}),
                Ok("vpc: -o subformat=fixed,force_size"),
            ),
            (
                json!({"type": "vpc", "subformat": "dynamic", "force_size": false}),
                Ok("vpc: -o subformat=dynamic"),
            ),
            (
                json!({"type": "raw"}),
                Err("option \"format.type\": \"raw\" is not one of"),
            ),
            (
                json!({"type": "vmdk", "adapter_type": "scsi"}),
                Err("\"scsi\" is not one of"),
            ),
        ];
        for (format, want) in cases {
            match (argv(format.clone()), want) {
                (Ok(got), Ok(want)) => assert_eq!(&got, want),
                (Err(got), Err(want)) => assert!(got.contains(want), "{got}"),
                (got, want) => panic!("{format}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn our_writer_takes_compressed_zlib_qcow2s_of_compat_1_1() {
        let cases = [
            (json!({"type": "qcow2"}), true),
            (json!({"type": "qcow2", "compat": "1.1"}), true),
            (json!({"type": "qcow2", "compat": ""}), true),
            (json!({"type": "qcow2", "compression_type": "zlib"}), true),
            (
                json!({"type": "qcow2", "compression": true, "compat": "1.1"}),
                true,
            ),
            (json!({"type": "qcow2", "compression": false}), false),
            (json!({"type": "qcow2", "compat": "0.10"}), false),
            (json!({"type": "qcow2", "compression_type": "zstd"}), false),
            (json!({"type": "vmdk"}), false),
        ];
        for (format, want) in cases {
            let text = json!({"tree": "/t", "options": {"format": format}}).to_string();
            let args = Args::parse(&text).unwrap();
            let f = args.opts().opt_object("format").unwrap().unwrap();
            let (kind, _) = format_arguments(&f).unwrap();
            assert_eq!(ours(kind, &f).unwrap(), want, "{format}");
        }
    }

    #[test]
    fn compressed_qcow2_in_parallel_unless_reproducible() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            parallel_arguments("qcow2", &args(&["-c"]), false),
            ["-W", "-m", "16"]
        );
        assert!(parallel_arguments("qcow2", &args(&["-c"]), true).is_empty());
        assert!(parallel_arguments("qcow2", &args(&["-o", "compat=0.10"]), false).is_empty());
        assert!(parallel_arguments("vmdk", &args(&["-c"]), false).is_empty());
    }
}
