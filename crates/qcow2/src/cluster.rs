//! One guest cluster: read from the raw image, tested for zeros, deflated as qemu does (raw
//! deflate, a 4 KiB window, level 6), or kept whole when its stream would not be smaller.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use flate2::{Compress, Compression, FlushCompress, Status};

use crate::layout::CLUSTER_SIZE;

/// What a guest cluster becomes in the image.
#[derive(Debug, PartialEq, Eq)]
pub enum Cluster {
    /// All zeros: left unallocated.
    Zero,
    /// Its deflate stream, at most `CLUSTER_SIZE - 1` bytes.
    Compressed(Vec<u8>),
    /// The cluster's own bytes (they did not compress).
    Stored(Vec<u8>),
}

/// A worker's compressor and read buffer, reused from cluster to cluster.
pub struct Deflater {
    stream: Compress,
    input: Vec<u8>,
}

/// qemu's window: `deflateInit2(..., -12, ...)`, so its reader inflates with 4 KiB.
const WINDOW_BITS: u8 = 12;
/// zlib's default level, qemu's Z_DEFAULT_COMPRESSION.
const LEVEL: u32 = 6;

impl Default for Deflater {
    fn default() -> Self {
        Deflater {
            stream: Compress::new_with_window_bits(Compression::new(LEVEL), false, WINDOW_BITS),
            input: Vec::new(),
        }
    }
}

impl Deflater {
    /// Reads guest cluster `guest` of `raw` (zeros past its end) and compresses it.
    pub fn cluster(&mut self, raw: &File, guest: u64) -> io::Result<Cluster> {
        let offset = guest * CLUSTER_SIZE;
        self.input.resize(CLUSTER_SIZE as usize, 0);
        read_full_at(raw, &mut self.input, offset)?;
        if is_zero(&self.input) {
            return Ok(Cluster::Zero);
        }
        Ok(match self.deflate() {
            Some(stream) => Cluster::Compressed(stream),
            None => Cluster::Stored(std::mem::take(&mut self.input)),
        })
    }

    /// The input's deflate stream, or None when it would take a whole cluster or more.
    fn deflate(&mut self) -> Option<Vec<u8>> {
        self.stream.reset();
        let mut out = Vec::with_capacity(CLUSTER_SIZE as usize - 1);
        match self
            .stream
            .compress_vec(&self.input, &mut out, FlushCompress::Finish)
        {
            Ok(Status::StreamEnd) => Some(out),
            _ => None,
        }
    }
}

/// Fills `buf` from `offset` of `file`; what lies past the end of the file reads as zeros.
fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => {
                buf[done..].fill(0);
                return Ok(());
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("reading at byte {}: {e}", offset + done as u64),
                ))
            }
        }
    }
    Ok(())
}

/// Whether every byte is zero (in 64-byte strides the compiler vectorizes).
fn is_zero(buf: &[u8]) -> bool {
    let mut chunks = buf.chunks_exact(64);
    chunks.all(|c| c.iter().fold(0, |acc, b| acc | b) == 0)
        && chunks.remainder().iter().all(|&b| b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Decompress, FlushDecompress};
    use std::io::Write;

    fn inflate(stream: &[u8]) -> Vec<u8> {
        let mut d = Decompress::new_with_window_bits(false, WINDOW_BITS);
        let mut out = Vec::with_capacity(CLUSTER_SIZE as usize);
        let status = d
            .decompress_vec(stream, &mut out, FlushDecompress::Finish)
            .unwrap();
        assert_eq!(status, Status::StreamEnd);
        out
    }

    /// A file of: one text cluster, one zero cluster, one random cluster, a short tail.
    fn raw() -> (tempfile::NamedTempFile, Vec<u8>) {
        let c = CLUSTER_SIZE as usize;
        let mut bytes: Vec<u8> = (0..c).map(|i| b"qcow2 cluster "[i % 14]).collect();
        bytes.resize(2 * c, 0);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        bytes.extend((0..c).map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        }));
        bytes.extend_from_slice(b"tail");
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&bytes).unwrap();
        (f, bytes)
    }

    #[test]
    fn clusters_become_streams_zeros_or_themselves() {
        let (f, bytes) = raw();
        let c = CLUSTER_SIZE as usize;
        let mut d = Deflater::default();
        let Cluster::Compressed(stream) = d.cluster(f.as_file(), 0).unwrap() else {
            panic!("text compresses")
        };
        assert!(stream.len() < 1000, "{}", stream.len());
        assert_eq!(inflate(&stream), bytes[..c]);
        assert_eq!(d.cluster(f.as_file(), 1).unwrap(), Cluster::Zero);
        assert_eq!(
            d.cluster(f.as_file(), 2).unwrap(),
            Cluster::Stored(bytes[2 * c..3 * c].to_vec())
        );
        // The last cluster is short in the file: zeros after "tail".
        let Cluster::Compressed(stream) = d.cluster(f.as_file(), 3).unwrap() else {
            panic!("a short tail compresses")
        };
        let mut want = b"tail".to_vec();
        want.resize(c, 0);
        assert_eq!(inflate(&stream), want);
        // Past the end: all zeros.
        assert_eq!(d.cluster(f.as_file(), 9).unwrap(), Cluster::Zero);
    }

    #[test]
    fn zero_test() {
        let mut buf = vec![0u8; 1000];
        assert!(is_zero(&buf));
        buf[999] = 1;
        assert!(!is_zero(&buf));
        buf[999] = 0;
        buf[3] = 0x80;
        assert!(!is_zero(&buf));
    }
}
