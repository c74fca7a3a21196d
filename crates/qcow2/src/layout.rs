//! The qcow2 file as data, without I/O: where each guest cluster lands in the host file (the
//! L2 entries), the refcount of every host cluster, and the bytes of the tables and the header
//! that close the file.
//!
//! The file is laid out as: cluster 0 the header; from cluster 1 the data, compressed clusters
//! packed byte after byte (a cluster whose deflate stream does not fit is stored whole at the
//! next cluster boundary); then, from the first cluster boundary after the data, the L2
//! tables, the L1 table, the refcount table and the refcount blocks.

use std::collections::BTreeMap;
use std::io;

/// log2 of the cluster size (qemu-img's default, 64 KiB).
pub const CLUSTER_BITS: u32 = 16;
/// The size of a cluster, guest and host.
pub const CLUSTER_SIZE: u64 = 1 << CLUSTER_BITS;
/// Compressed data is addressed in 512-byte sectors beyond its first byte.
const SECTOR: u64 = 512;
/// Entries of an L2 table (8 bytes each, no extended L2).
const L2_ENTRIES: u64 = CLUSTER_SIZE / 8;
/// Refcounts in a refcount block (refcount_order 4: 16 bits each).
const REFCOUNTS_PER_BLOCK: u64 = CLUSTER_SIZE / 2;
/// L1/L2 flag: the cluster's refcount is exactly one.
const COPIED: u64 = 1 << 63;
/// L2 flag: a compressed cluster descriptor.
const COMPRESSED: u64 = 1 << 62;
/// Where a compressed descriptor's count of additional sectors starts.
const SECTORS_SHIFT: u32 = 62 - (CLUSTER_BITS - 8);
/// The header's length: the v3 fields and the compression type byte, padded to 8.
const HEADER_LENGTH: u32 = 112;

/// The guest-to-host map and host allocation of an image being written.
#[derive(Debug)]
pub struct Map {
    virtual_size: u64,
    /// The next free byte of the data area.
    next: u64,
    /// The refcount of each host cluster of the data area; cluster 0 is the header.
    refcounts: Vec<u16>,
    /// The L2 tables that have an entry, by their L1 index.
    l2: BTreeMap<u64, Box<[u64]>>,
}

/// The end of the file: its tables, and the header that points at them.
#[derive(Debug)]
pub struct Metadata {
    /// Where the tables start (the first cluster boundary after the data).
    pub tables_offset: u64,
    /// The L2 tables, L1 table, refcount table and refcount blocks, whole clusters.
    pub tables: Vec<u8>,
    /// The header and the (empty) header extension area, for offset 0.
    pub header: Vec<u8>,
}

impl Map {
    /// An empty image of `virtual_size` bytes: only the header cluster is allocated.
    pub fn new(virtual_size: u64) -> Self {
        Map {
            virtual_size,
            next: CLUSTER_SIZE,
            refcounts: vec![1],
            l2: BTreeMap::new(),
        }
    }

    /// Places guest cluster `guest`'s deflate stream of `len` bytes right after the previous
    /// data; returns its host offset. Each host cluster that the stream's sectors touch counts
    /// one more reference (as `qemu-img check` counts them).
    pub fn place_compressed(&mut self, guest: u64, len: u64) -> io::Result<u64> {
        let offset = self.next;
        let first_sector = offset / SECTOR;
        let last_sector = (offset + len - 1) / SECTOR;
        let end = (last_sector + 1) * SECTOR;
        for cluster in offset / CLUSTER_SIZE..end.div_ceil(CLUSTER_SIZE) {
            let count = self.refcount_mut(cluster);
            *count = count.checked_add(1).ok_or_else(|| {
                io::Error::other(format!(
                    "host cluster {cluster} is shared by more compressed clusters than a 16-bit refcount counts"
                ))
            })?;
        }
        let extra_sectors = last_sector - first_sector;
        self.set_l2(
            guest,
            COMPRESSED | (extra_sectors << SECTORS_SHIFT) | offset,
        );
        self.next = offset + len;
        Ok(offset)
    }

    /// Places guest cluster `guest` uncompressed at the next cluster boundary; returns its host
    /// offset.
    pub fn place_stored(&mut self, guest: u64) -> u64 {
        let offset = self.next.next_multiple_of(CLUSTER_SIZE);
        *self.refcount_mut(offset / CLUSTER_SIZE) = 1;
        self.set_l2(guest, COPIED | offset);
        self.next = offset + CLUSTER_SIZE;
        offset
    }

    fn refcount_mut(&mut self, cluster: u64) -> &mut u16 {
        let i = cluster as usize;
        if self.refcounts.len() <= i {
            self.refcounts.resize(i + 1, 0);
        }
        &mut self.refcounts[i]
    }

    fn set_l2(&mut self, guest: u64, entry: u64) {
        debug_assert!(guest < self.virtual_size.div_ceil(CLUSTER_SIZE));
        let table = self
            .l2
            .entry(guest / L2_ENTRIES)
            .or_insert_with(|| vec![0; L2_ENTRIES as usize].into_boxed_slice());
        table[(guest % L2_ENTRIES) as usize] = entry;
    }

    /// The first cluster boundary after the data (every sector a descriptor names lies below).
    pub fn data_end(&self) -> u64 {
        self.next.next_multiple_of(CLUSTER_SIZE)
    }

    /// The tables and the header that complete the file after the data.
    pub fn finish(&self) -> Metadata {
        let first = self.data_end() / CLUSTER_SIZE;
        let l1_size = self.virtual_size.div_ceil(CLUSTER_SIZE * L2_ENTRIES);
        let l1_clusters = (l1_size * 8).div_ceil(CLUSTER_SIZE);
        let l2_count = self.l2.len() as u64;
        let before_refcounts = first + l2_count + l1_clusters;
        let (table_clusters, blocks) = refcount_structure(before_refcounts);
        let total = before_refcounts + table_clusters + blocks;

        // An empty disk has no L1 table (qemu-img writes offset 0 too).
        let l1_offset = match l1_size {
            0 => 0,
            _ => (first + l2_count) * CLUSTER_SIZE,
        };
        let table_offset = before_refcounts * CLUSTER_SIZE;
        let blocks_offset = table_offset + table_clusters * CLUSTER_SIZE;

        let mut tables = Vec::with_capacity(((total - first) * CLUSTER_SIZE) as usize);
        let mut l1 = vec![0u64; l1_size as usize];
        for (n, (index, entries)) in self.l2.iter().enumerate() {
            l1[*index as usize] = COPIED | ((first + n as u64) * CLUSTER_SIZE);
            push_u64s(&mut tables, entries);
        }
        push_u64s(&mut tables, &l1);
        pad_to_clusters(&mut tables, l2_count + l1_clusters);
        let block_offsets: Vec<u64> = (0..blocks)
            .map(|b| blocks_offset + b * CLUSTER_SIZE)
            .collect();
        push_u64s(&mut tables, &block_offsets);
        pad_to_clusters(&mut tables, l2_count + l1_clusters + table_clusters);
        let mut refcounts = self.refcounts.clone();
        refcounts.resize(first as usize, 0);
        refcounts.resize(total as usize, 1);
        for count in &refcounts {
            tables.extend_from_slice(&count.to_be_bytes());
        }
        pad_to_clusters(&mut tables, total - first);

        let header = Header {
            virtual_size: self.virtual_size,
            l1_size: l1_size as u32,
            l1_offset,
            refcount_table_offset: table_offset,
            refcount_table_clusters: table_clusters as u32,
        };
        Metadata {
            tables_offset: first * CLUSTER_SIZE,
            tables,
            header: header.encode(),
        }
    }
}

/// The refcount table's clusters and the refcount blocks that count `clusters` host clusters
/// plus themselves.
fn refcount_structure(clusters: u64) -> (u64, u64) {
    let (mut table, mut blocks) = (1, 1);
    loop {
        let need_blocks = (clusters + table + blocks).div_ceil(REFCOUNTS_PER_BLOCK);
        let need_table = (need_blocks * 8).div_ceil(CLUSTER_SIZE);
        if (need_table, need_blocks) == (table, blocks) {
            return (table, blocks);
        }
        (table, blocks) = (need_table, need_blocks);
    }
}

fn push_u64s(out: &mut Vec<u8>, values: &[u64]) {
    for v in values {
        out.extend_from_slice(&v.to_be_bytes());
    }
}

/// Zeros up to the end of the tables' `clusters`th cluster.
fn pad_to_clusters(out: &mut Vec<u8>, clusters: u64) {
    debug_assert!(out.len() as u64 <= clusters * CLUSTER_SIZE);
    out.resize((clusters * CLUSTER_SIZE) as usize, 0);
}

/// The header fields that vary; the rest are fixed: version 3, no backing file, no
/// encryption, no snapshots, no feature bits, refcount_order 4, compression type zlib.
struct Header {
    virtual_size: u64,
    l1_size: u32,
    l1_offset: u64,
    refcount_table_offset: u64,
    refcount_table_clusters: u32,
}

impl Header {
    /// The header, then 8 zero bytes: the end of the header extension area.
    fn encode(&self) -> Vec<u8> {
        let mut h = Vec::with_capacity(HEADER_LENGTH as usize + 8);
        h.extend_from_slice(b"QFI\xfb");
        h.extend_from_slice(&3u32.to_be_bytes());
        h.extend_from_slice(&0u64.to_be_bytes()); // backing_file_offset
        h.extend_from_slice(&0u32.to_be_bytes()); // backing_file_size
        h.extend_from_slice(&CLUSTER_BITS.to_be_bytes());
        h.extend_from_slice(&self.virtual_size.to_be_bytes());
        h.extend_from_slice(&0u32.to_be_bytes()); // crypt_method
        h.extend_from_slice(&self.l1_size.to_be_bytes());
        h.extend_from_slice(&self.l1_offset.to_be_bytes());
        h.extend_from_slice(&self.refcount_table_offset.to_be_bytes());
        h.extend_from_slice(&self.refcount_table_clusters.to_be_bytes());
        h.extend_from_slice(&0u32.to_be_bytes()); // nb_snapshots
        h.extend_from_slice(&0u64.to_be_bytes()); // snapshots_offset
        h.extend_from_slice(&[0; 24]); // incompatible, compatible, autoclear features
        h.extend_from_slice(&4u32.to_be_bytes()); // refcount_order
        h.extend_from_slice(&HEADER_LENGTH.to_be_bytes());
        h.push(0); // compression_type: deflate
        h.resize(HEADER_LENGTH as usize + 8, 0);
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn be64(b: &[u8], at: u64) -> u64 {
        u64::from_be_bytes(b[at as usize..at as usize + 8].try_into().unwrap())
    }

    fn be16(b: &[u8], at: u64) -> u16 {
        u16::from_be_bytes(b[at as usize..at as usize + 2].try_into().unwrap())
    }

    #[test]
    fn compressed_descriptors_name_their_sectors() {
        let mut map = Map::new(4 * CLUSTER_SIZE);
        // 1000 bytes from 64 KiB: sectors 128 and 129, one additional.
        assert_eq!(map.place_compressed(0, 1000).unwrap(), CLUSTER_SIZE);
        assert_eq!(map.l2[&0][0], COMPRESSED | (1 << 54) | CLUSTER_SIZE);
        // The next starts inside the previous one's last sector, and crosses into cluster 2.
        let at = map.place_compressed(1, CLUSTER_SIZE - 900).unwrap();
        assert_eq!(at, CLUSTER_SIZE + 1000);
        let extra = (2 * CLUSTER_SIZE + 99) / 512 - (CLUSTER_SIZE + 1000) / 512;
        assert_eq!(map.l2[&0][1], COMPRESSED | (extra << 54) | at);
        assert_eq!(map.refcounts, [1, 2, 1]);
        // A stored cluster goes to the next boundary, with its refcount of one.
        assert_eq!(map.place_stored(3), 3 * CLUSTER_SIZE);
        assert_eq!(map.l2[&0][3], COPIED | (3 * CLUSTER_SIZE));
        assert_eq!(map.refcounts, [1, 2, 1, 1]);
        assert_eq!(map.data_end(), 4 * CLUSTER_SIZE);
    }

    #[test]
    fn a_stream_ending_on_a_boundary_touches_no_further_cluster() {
        let mut map = Map::new(CLUSTER_SIZE);
        map.place_compressed(0, CLUSTER_SIZE - 1).unwrap();
        assert_eq!(map.refcounts, [1, 1]);
        assert_eq!(map.data_end(), 2 * CLUSTER_SIZE);
    }

    #[test]
    fn tables_follow_the_data_and_count_every_cluster() {
        // Guest clusters 0 and 8192 (the second L2 table) in a 1 GiB disk.
        let mut map = Map::new(1 << 30);
        map.place_compressed(0, 100).unwrap();
        map.place_stored(L2_ENTRIES);
        let m = map.finish();
        let c = CLUSTER_SIZE;
        assert_eq!(m.tables_offset, 3 * c);
        // Two L2 tables, one L1 cluster, one refcount table cluster, one block.
        assert_eq!(m.tables.len() as u64, 5 * c);
        let h = &m.header;
        assert_eq!(&h[..4], b"QFI\xfb");
        assert_eq!(u32::from_be_bytes(h[4..8].try_into().unwrap()), 3);
        assert_eq!(be64(h, 24), 1 << 30);
        assert_eq!(u32::from_be_bytes(h[36..40].try_into().unwrap()), 2); // l1_size
        assert_eq!(be64(h, 40), 5 * c); // L1
        assert_eq!(be64(h, 48), 6 * c); // refcount table
        assert_eq!(u32::from_be_bytes(h[56..60].try_into().unwrap()), 1);
        assert_eq!(u32::from_be_bytes(h[100..104].try_into().unwrap()), 112);
        let t = &m.tables;
        assert_eq!(be64(t, 0), COMPRESSED | c);
        assert_eq!(be64(t, c), COPIED | (2 * c));
        assert_eq!(be64(t, 2 * c), COPIED | (3 * c));
        assert_eq!(be64(t, 2 * c + 8), COPIED | (4 * c));
        assert_eq!(be64(t, 3 * c), 7 * c); // the refcount block
        let counts: Vec<u16> = (0..9).map(|i| be16(t, 4 * c + 2 * i)).collect();
        assert_eq!(counts, [1, 1, 1, 1, 1, 1, 1, 1, 0]);
    }

    #[test]
    fn refcount_structure_counts_itself() {
        assert_eq!(refcount_structure(3), (1, 1));
        // 32766 clusters and the table fill one block exactly; one more needs a second.
        assert_eq!(refcount_structure(REFCOUNTS_PER_BLOCK - 2), (1, 1));
        assert_eq!(refcount_structure(REFCOUNTS_PER_BLOCK - 1), (1, 2));
        // A table of more than one cluster: more than 8192 blocks.
        let (table, blocks) = refcount_structure(8192 * REFCOUNTS_PER_BLOCK);
        assert_eq!((table, blocks), (2, 8193));
    }
}
