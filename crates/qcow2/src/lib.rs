//! A compressed qcow2 writer: what `qemu-img convert -O qcow2 -c` makes from a raw disk image,
//! compressed on every core, and the same bytes whatever the number of threads.
//!
//! The image is qcow2 version 3 (compat 1.1) with 64 KiB clusters, 16-bit refcounts, zlib
//! (raw deflate) compression, no backing file, no snapshots, no extended L2 entries. Every
//! guest cluster that holds data is compressed; an all-zero one is left unallocated (it reads
//! as zeros), and one whose deflate stream would not be smaller than a cluster is stored whole,
//! as qemu-img does. Only the raw image's data is read: its holes are skipped
//! (`SEEK_DATA`/`SEEK_HOLE`), so a sparse 2 GiB image costs what its data costs.
//!
//! - [`layout`]: the file as data (L2 entries, refcounts, tables, header); no I/O.
//! - [`cluster`]: reading, zero-testing and deflating one guest cluster.
//! - [`ordered`]: workers in parallel, one sink in order, a bounded window between.

#![forbid(unsafe_code)]

pub mod cluster;
pub mod layout;
pub mod ordered;

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;

use cluster::{Cluster, Deflater};
use layout::{Map, CLUSTER_SIZE};

/// The threads to compress on: one per core this process may run on.
pub fn available_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// What a conversion wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// The guest disk's size: the raw image's, rounded up to 512 bytes.
    pub virtual_size: u64,
    /// Guest clusters stored compressed.
    pub compressed: u64,
    /// Guest clusters stored whole (their deflate stream was no smaller).
    pub stored: u64,
    /// Guest clusters with data extents but only zeros, left unallocated.
    pub zero: u64,
    /// The qcow2 file's size.
    pub file_size: u64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} clusters compressed, {} stored whole, {} zero; {} of {} bytes",
            self.compressed, self.stored, self.zero, self.file_size, self.virtual_size
        )
    }
}

/// Writes `out` (created or truncated) as a compressed qcow2 of the raw image `raw`,
/// compressing on `threads` threads (at least one). Every error names the file and, for
/// reads and writes, the byte offset.
pub fn write_compressed(raw: &Path, out: &Path, threads: usize) -> io::Result<Summary> {
    let named =
        |path: &Path, e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let raw_file = File::open(raw).map_err(|e| named(raw, e))?;
    let size = raw_file.metadata().map_err(|e| named(raw, e))?.len();
    let extents = data_extents(&raw_file, size).map_err(|e| named(raw, e))?;
    let out_file = File::create(out).map_err(|e| named(out, e))?;
    let written = convert(&raw_file, extents, out_file, size, threads);
    if written.is_err() {
        // Half a qcow2 (no header yet) is of no use to anyone.
        let _ = std::fs::remove_file(out);
    }
    written.map_err(|(file, e)| named(if file == Side::Raw { raw } else { out }, e))
}

/// Which file an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Raw,
    Out,
}

/// Compresses the clusters of `extents` of `raw` into `out`.
fn convert(
    raw: &File,
    extents: Vec<Range<u64>>,
    out: File,
    size: u64,
    threads: usize,
) -> Result<Summary, (Side, io::Error)> {
    let on = |side| move |e| (side, e);
    let mut sink = Sink::new(out, size.next_multiple_of(512)).map_err(on(Side::Out))?;
    let mut read_error = None;
    let written = ordered::ordered_map(
        clusters(extents),
        threads,
        Deflater::default,
        |deflater, guest| (guest, deflater.cluster(raw, guest)),
        |(guest, cluster)| match cluster {
            Ok(cluster) => sink.put(guest, cluster),
            Err(e) => {
                read_error = Some(e);
                Err(io::Error::other("stopped at a read error"))
            }
        },
    );
    if let Some(e) = read_error {
        return Err((Side::Raw, e));
    }
    written.map_err(on(Side::Out))?;
    sink.finish().map_err(on(Side::Out))
}

/// The byte ranges of `file` that hold data, up to `size` (the whole file where the file
/// system cannot tell).
fn data_extents(file: &File, size: u64) -> io::Result<Vec<Range<u64>>> {
    let mut extents = Vec::new();
    let mut at = 0;
    while at < size {
        let start = match osbuild_sys::fs::seek_data(file, at) {
            Ok(Some(start)) => start,
            Ok(None) => break,
            Err(e) if matches!(io::Error::from(e).kind(), io::ErrorKind::InvalidInput) => {
                return Ok(std::iter::once(0..size).collect());
            }
            Err(e) => {
                return Err(io::Error::new(
                    io::Error::from(e).kind(),
                    format!("seeking data at byte {at}: {e}"),
                ))
            }
        };
        let end = osbuild_sys::fs::seek_hole(file, start)
            .map_err(|e| {
                io::Error::new(
                    io::Error::from(e).kind(),
                    format!("seeking a hole at byte {start}: {e}"),
                )
            })?
            .min(size);
        if start < end {
            extents.push(start..end);
        }
        at = end.max(start + 1);
    }
    Ok(extents)
}

/// The guest clusters that `extents` touch, ascending, each once.
fn clusters(extents: Vec<Range<u64>>) -> impl Iterator<Item = u64> + Send {
    let mut last = None;
    extents
        .into_iter()
        .flat_map(|r| r.start / CLUSTER_SIZE..r.end.div_ceil(CLUSTER_SIZE))
        .filter(move |&c| {
            let new = last.is_none_or(|l| c > l);
            last = Some(c);
            new
        })
}

/// The qcow2 being written: the data appended in guest order, then the tables and header.
struct Sink {
    out: BufWriter<File>,
    /// Where the next byte written to `out` lands.
    at: u64,
    map: Map,
    summary: Summary,
}

impl Sink {
    fn new(mut out: File, virtual_size: u64) -> io::Result<Self> {
        out.seek(SeekFrom::Start(CLUSTER_SIZE))?;
        Ok(Sink {
            out: BufWriter::with_capacity(1 << 20, out),
            at: CLUSTER_SIZE,
            map: Map::new(virtual_size),
            summary: Summary {
                virtual_size,
                ..Summary::default()
            },
        })
    }

    fn put(&mut self, guest: u64, cluster: Cluster) -> io::Result<()> {
        match cluster {
            Cluster::Zero => {
                self.summary.zero += 1;
                Ok(())
            }
            Cluster::Compressed(stream) => {
                self.summary.compressed += 1;
                let at = self.map.place_compressed(guest, stream.len() as u64)?;
                self.append(at, &stream)
            }
            Cluster::Stored(bytes) => {
                self.summary.stored += 1;
                let at = self.map.place_stored(guest);
                self.append(at, &bytes)
            }
        }
    }

    /// Writes `bytes` at `offset`, at or after the end of what was written (zeros between).
    fn append(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let gap = offset - self.at;
        let result = io::copy(&mut io::repeat(0).take(gap), &mut self.out)
            .and_then(|_| self.out.write_all(bytes));
        self.at = offset + bytes.len() as u64;
        result.map_err(|e| io::Error::new(e.kind(), format!("writing at byte {offset}: {e}")))
    }

    /// Appends the tables, then writes the header: only a finished file is a qcow2.
    fn finish(mut self) -> io::Result<Summary> {
        let mut summary = self.summary;
        let metadata = self.map.finish();
        self.append(metadata.tables_offset, &metadata.tables)?;
        let out = self
            .out
            .into_inner()
            .map_err(|e| io::Error::new(e.error().kind(), format!("writing: {}", e.error())))?;
        out.write_all_at(&metadata.header, 0)
            .map_err(|e| io::Error::new(e.kind(), format!("writing the header: {e}")))?;
        summary.file_size = self.at;
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn extents_touch_each_cluster_once() {
        let c = CLUSTER_SIZE;
        let extents = vec![0..100, 200..c + 1, 3 * c..3 * c + 1, 3 * c + 5..5 * c];
        assert_eq!(clusters(extents).collect::<Vec<_>>(), [0, 1, 3, 4]);
    }

    #[test]
    fn holes_are_not_data() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all_at(b"x", 10 << 20).unwrap();
        f.write_all(b"head").unwrap();
        let size = f.metadata().unwrap().len();
        let extents = data_extents(&f, size).unwrap();
        // The file system says where the data is, in blocks: two extents, far apart.
        assert_eq!(extents.len(), 2, "{extents:?}");
        assert_eq!(extents[0].start, 0);
        assert!(extents[0].end < 1 << 20, "{extents:?}");
        assert_eq!(extents[1].end, size);
        assert!(extents[1].start > 9 << 20, "{extents:?}");
    }
}
