//! Output formats, and the conversion of the finished raw image into one: a rename for `raw`,
//! `xz` for `raw.xz`, our own writer ([`osbuild_qcow2`]) for a qcow2 with zlib clusters,
//! `qemu-img convert` (with v10's flags) for the rest.
//!
//! The qcow2 writer compresses the clusters on every core and appends them in the disk's
//! order: the same bytes every time, so a reproducible build (`SOURCE_DATE_EPOCH`) needs
//! nothing else; about half the time of `qemu-img convert -c -W -m 16` and 0.4x its CPU time on
//! two cores (`bench/qcow2.sh`).
//!
//! A qcow2's clusters are compressed with zlib unless the options ask for zstd
//! ([`Qcow2Compression`]; qemu-img writes those): about 5x faster to write than zlib with
//! qemu-img and a little smaller, but only qemu 5.1 and later (and other readers that know the
//! qcow2 `compression type` header field) read it.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::Path;
use std::process::Stdio;

use crate::image::output::TempFile;
use crate::image::reproducible;
use crate::{tool, AssemblerError};

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Raw,
    RawXz,
    Qcow2,
    Vdi,
    Vmdk,
    Vpc,
}

impl Format {
    const ALL: &'static [(&'static str, Format)] = &[
        ("raw", Format::Raw),
        ("raw.xz", Format::RawXz),
        ("qcow2", Format::Qcow2),
        ("vdi", Format::Vdi),
        ("vmdk", Format::Vmdk),
        ("vpc", Format::Vpc),
    ];

    /// The format named `s` in the options.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == s).map(|(_, f)| *f)
    }

    /// The format's name in the options.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, f)| *f == self)
            .map_or("?", |(n, _)| n)
    }

    /// `qemu-img convert` arguments for speed: parallel compression, unless the output must be
    /// reproducible (see the module's documentation).
    pub fn parallel_args(self, reproducible: bool) -> &'static [&'static str] {
        match (self, reproducible) {
            (Format::Qcow2, false) => &["-W", "-m", "16"],
            _ => &[],
        }
    }

    /// `qemu-img convert` arguments between the input and output names (v10's choices).
    pub fn qemu_img_args(self) -> Option<Vec<&'static str>> {
        match self {
            Format::Raw | Format::RawXz => None,
            Format::Qcow2 => Some(vec!["-O", "qcow2", "-c"]),
            Format::Vdi => Some(vec!["-O", "vdi"]),
            Format::Vmdk => Some(vec!["-O", "vmdk", "-c"]),
            Format::Vpc => Some(vec!["-O", "vpc", "-o", "subformat=fixed,force_size"]),
        }
    }
}

/// How a compressed qcow2's clusters are compressed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Qcow2Compression {
    /// The qcow2 default, which every reader knows.
    #[default]
    Zlib,
    /// Needs qcow2 compat 1.1 (qemu-img's default) and a reader of qemu 5.1 or later.
    Zstd,
}

impl Qcow2Compression {
    /// The names the options accept.
    pub const NAMES: &'static str = "zlib, zstd";

    /// The compression named `s` in the options.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "zlib" => Some(Qcow2Compression::Zlib),
            "zstd" => Some(Qcow2Compression::Zstd),
            _ => None,
        }
    }

    /// `qemu-img convert` arguments choosing it (zlib is qemu-img's default: none, so a
    /// manifest that does not ask gets the same command as before).
    pub fn qemu_img_args(self) -> &'static [&'static str] {
        match self {
            Qcow2Compression::Zlib => &[],
            Qcow2Compression::Zstd => &["-o", "compression_type=zstd"],
        }
    }
}

/// Writes `output` in `format` from the raw image (which is renamed for raw, else removed);
/// a qcow2's clusters compressed with `clusters`.
pub fn convert(
    format: Format,
    clusters: Qcow2Compression,
    raw: TempFile,
    output: &Path,
) -> Result<(), AssemblerError> {
    if format == Format::Raw {
        return raw.persist(output);
    }
    let tmp = TempFile::new(output.with_file_name(format!(
        ".{}.osbuild-part",
        output.file_name().unwrap_or_default().to_string_lossy()
    )));
    match format.qemu_img_args() {
        None => compress_xz(raw.path(), tmp.path())?,
        Some(_) if ours(format, clusters) => write_qcow2(raw.path(), tmp.path())?,
        Some(flags) => {
            let mut a: Vec<String> = vec!["convert".into(), "-f".into(), "raw".into()];
            a.extend(flags.iter().map(|s| s.to_string()));
            if format == Format::Qcow2 {
                a.extend(clusters.qemu_img_args().iter().map(|s| s.to_string()));
            }
            let reproducible = reproducible::source_epoch().is_some();
            a.extend(
                format
                    .parallel_args(reproducible)
                    .iter()
                    .map(|s| s.to_string()),
            );
            a.extend([
                raw.path().display().to_string(),
                tmp.path().display().to_string(),
            ]);
            tool::run_args("qemu-img", &a)?;
        }
    }
    tmp.persist(output)
}

/// Whether our writer makes this output: a qcow2 of zlib clusters.
fn ours(format: Format, clusters: Qcow2Compression) -> bool {
    format == Format::Qcow2 && clusters == Qcow2Compression::Zlib
}

/// The compressed qcow2 `out` of `raw`, on every core.
fn write_qcow2(raw: &Path, out: &Path) -> Result<(), AssemblerError> {
    let threads = osbuild_qcow2::available_threads();
    let summary = osbuild_qcow2::write_compressed(raw, out, threads)
        .map_err(|e| AssemblerError::Tool(format!("writing the qcow2: {e}")))?;
    println!("qcow2 ({threads} threads): {summary}");
    Ok(())
}

/// `xz --keep --stdout -0 RAW > OUT`.
fn compress_xz(raw: &Path, out: &Path) -> Result<(), AssemblerError> {
    let mut out =
        File::create(out).map_err(|e| AssemblerError::Tool(format!("creating the output: {e}")))?;
    let status = tool::command(
        "xz",
        &[
            "--keep".as_ref(),
            "--stdout".as_ref(),
            "-0".as_ref(),
            raw.as_os_str(),
        ],
    )
    .stdout(
        out.try_clone()
            .map_err(|e| AssemblerError::Tool(e.to_string()))?,
    )
    .stderr(Stdio::inherit())
    .status()
    .map_err(|e| AssemblerError::Tool(format!("cannot run xz: {e}")))?;
    if !status.success() {
        return Err(AssemblerError::Tool(format!("xz failed ({status})")));
    }
    let _ = out.seek(SeekFrom::End(0));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(
            Format::parse("vpc").unwrap().qemu_img_args().unwrap(),
            ["-O", "vpc", "-o", "subformat=fixed,force_size"]
        );
        assert_eq!(Format::parse("raw.xz"), Some(Format::RawXz));
        assert_eq!(Format::Qcow2.parallel_args(false), ["-W", "-m", "16"]);
        assert!(Format::Qcow2.parallel_args(true).is_empty());
        assert!(Format::Vmdk.parallel_args(false).is_empty());
        assert!(Format::parse("raw.xz").unwrap().qemu_img_args().is_none());
        assert_eq!(Format::RawXz.name(), "raw.xz");
    }

    #[test]
    fn zlib_qcow2s_are_ours() {
        use Qcow2Compression::{Zlib, Zstd};
        assert!(ours(Format::Qcow2, Zlib));
        assert!(!ours(Format::Qcow2, Zstd));
        assert!(!ours(Format::Vmdk, Zlib));
    }

    #[test]
    fn qcow2_compression_types() {
        assert_eq!(Qcow2Compression::default(), Qcow2Compression::Zlib);
        assert!(Qcow2Compression::Zlib.qemu_img_args().is_empty());
        assert_eq!(
            Qcow2Compression::parse("zstd").unwrap().qemu_img_args(),
            ["-o", "compression_type=zstd"]
        );
        assert_eq!(Qcow2Compression::parse("lz4"), None);
    }
}
