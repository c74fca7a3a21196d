//! The dates of the directories in a FAT filesystem, set to the source epoch for a reproducible
//! build: mtools stamps every directory it creates (and its `.` and `..` entries) with the
//! current time, ignoring `SOURCE_DATE_EPOCH`, and mkfs.fat (4.2) does the same for the volume
//! label's entry; files keep the dates `mcopy -m` gave them (the tree's, clamped).
//!
//! The walk reads the boot sector (FAT12, 16 or 32 by cluster count, as the specification
//! decides), follows each directory's cluster chain through the first FAT, and rewrites the
//! creation, access and write date and time of every directory entry.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::AssemblerError;

/// FAT variants, by the width of a FAT entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Fat12,
    Fat16,
    Fat32,
}

/// The geometry from the boot sector, in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Geometry {
    kind: Kind,
    cluster_bytes: u64,
    fat_start: u64,
    /// FAT12/16: the fixed root directory region (start, length).
    root_region: Option<(u64, u64)>,
    /// FAT32: the root directory's first cluster.
    root_cluster: u32,
    data_start: u64,
    clusters: u32,
}

impl Geometry {
    /// Reads the BIOS parameter block of a boot sector.
    fn parse(boot: &[u8; 512]) -> Option<Geometry> {
        let u16_at = |o: usize| u64::from(u16::from_le_bytes([boot[o], boot[o + 1]]));
        let u32_at = |o: usize| {
            u64::from(u32::from_le_bytes([
                boot[o],
                boot[o + 1],
                boot[o + 2],
                boot[o + 3],
            ]))
        };
        let sector = u16_at(11);
        let per_cluster = u64::from(boot[13]);
        let reserved = u16_at(14);
        let fats = u64::from(boot[16]);
        let root_entries = u16_at(17);
        let total = match u16_at(19) {
            0 => u32_at(32),
            n => n,
        };
        let fat_sectors = match u16_at(22) {
            0 => u32_at(36),
            n => n,
        };
        if sector == 0 || per_cluster == 0 || fats == 0 || fat_sectors == 0 {
            return None;
        }
        let root_sectors = (root_entries * 32).div_ceil(sector);
        let root_start = reserved + fats * fat_sectors;
        let data_sector = root_start + root_sectors;
        let clusters = total.checked_sub(data_sector)? / per_cluster;
        let kind = match clusters {
            0..4085 => Kind::Fat12,
            4085..65525 => Kind::Fat16,
            _ => Kind::Fat32,
        };
        Some(Geometry {
            kind,
            cluster_bytes: sector * per_cluster,
            fat_start: reserved * sector,
            root_region: (kind != Kind::Fat32)
                .then_some((root_start * sector, root_sectors * sector)),
            root_cluster: u32_at(44) as u32,
            data_start: data_sector * sector,
            clusters: u32::try_from(clusters).ok()?,
        })
    }

    fn cluster_offset(&self, cluster: u32) -> u64 {
        self.data_start + u64::from(cluster - 2) * self.cluster_bytes
    }
}

/// A FAT filesystem image being walked.
struct Fat<'a> {
    file: &'a File,
    geo: Geometry,
}

impl Fat<'_> {
    /// The cluster after `cluster` in its chain, `None` at the end (or on a bad entry).
    fn next(&self, cluster: u32) -> std::io::Result<Option<u32>> {
        let n = u64::from(cluster);
        let (at, width) = match self.geo.kind {
            Kind::Fat12 => (n + n / 2, 2),
            Kind::Fat16 => (n * 2, 2),
            Kind::Fat32 => (n * 4, 4),
        };
        let mut b = [0u8; 4];
        self.file
            .read_exact_at(&mut b[..width], self.geo.fat_start + at)?;
        let raw = u32::from_le_bytes(b);
        let next = match self.geo.kind {
            Kind::Fat12 if cluster % 2 == 1 => raw >> 4,
            Kind::Fat12 => raw & 0xfff,
            Kind::Fat16 => raw & 0xffff,
            Kind::Fat32 => raw & 0x0fff_ffff,
        };
        Ok((2..self.geo.clusters + 2).contains(&next).then_some(next))
    }

    /// The byte regions of the directory starting at `cluster` (0: the root directory).
    fn regions(&self, cluster: u32) -> std::io::Result<Vec<(u64, u64)>> {
        let first = match (cluster, self.geo.root_region) {
            (0, Some(region)) => return Ok(vec![region]),
            (0, None) => self.geo.root_cluster,
            (c, _) => c,
        };
        let mut out = Vec::new();
        let mut at = Some(first);
        while let Some(c) = at {
            // A chain longer than the filesystem is a loop.
            if out.len() > self.geo.clusters as usize {
                break;
            }
            out.push((self.geo.cluster_offset(c), self.geo.cluster_bytes));
            at = self.next(c)?;
        }
        Ok(out)
    }

    /// Stamps every directory entry and the volume label below the directory at `cluster`.
    fn stamp_tree(&self, cluster: u32, stamp: &DosStamp, depth: usize) -> std::io::Result<()> {
        if depth > 64 {
            return Ok(());
        }
        let mut subdirs = Vec::new();
        for (start, len) in self.regions(cluster)? {
            let mut buf = vec![0u8; len as usize];
            self.file.read_exact_at(&mut buf, start)?;
            let mut end = false;
            for entry in buf.chunks_exact_mut(32) {
                match entry[0] {
                    0 => {
                        end = true;
                        break;
                    }
                    0xe5 => continue,
                    _ => {}
                }
                let attr = entry[11];
                if attr == 0x0f || attr & 0x18 == 0 {
                    continue; // a long-name slot or a file
                }
                stamp.write(entry);
                if attr & 0x10 == 0 {
                    continue; // the volume label
                }
                let first = u32::from(u16::from_le_bytes([entry[20], entry[21]])) << 16
                    | u32::from(u16::from_le_bytes([entry[26], entry[27]]));
                if entry[0] != b'.' && first >= 2 {
                    subdirs.push(first);
                }
            }
            self.file.write_all_at(&buf, start)?;
            if end {
                break;
            }
        }
        for sub in subdirs {
            self.stamp_tree(sub, stamp, depth + 1)?;
        }
        Ok(())
    }
}

/// A date and time in a directory entry's encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DosStamp {
    date: u16,
    time: u16,
}

impl DosStamp {
    /// `epoch` (seconds since 1970, UTC) as a DOS date and time; FAT has no date before 1980.
    fn from_epoch(epoch: u64) -> DosStamp {
        let days = epoch / 86_400;
        let secs = epoch % 86_400;
        let (y, m, d) = civil_from_days(days);
        if y < 1980 {
            return DosStamp {
                date: (1 << 5) | 1,
                time: 0,
            };
        }
        let year = (y - 1980).min(127) as u16;
        DosStamp {
            date: (year << 9) | ((m as u16) << 5) | d as u16,
            time: (((secs / 3600) as u16) << 11)
                | ((((secs / 60) % 60) as u16) << 5)
                | ((secs % 60) / 2) as u16,
        }
    }

    /// Sets the creation (with 0 hundredths), access and write stamps of a directory entry.
    fn write(&self, entry: &mut [u8]) {
        let (t, d) = (self.time.to_le_bytes(), self.date.to_le_bytes());
        entry[13] = 0;
        entry[14..16].copy_from_slice(&t);
        entry[16..18].copy_from_slice(&d);
        entry[18..20].copy_from_slice(&d);
        entry[22..24].copy_from_slice(&t);
        entry[24..26].copy_from_slice(&d);
    }
}

/// (year, month, day) of the day `days` after 1970-01-01 (the proleptic Gregorian calendar).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// Sets the dates of every directory in the FAT filesystem image `path` to `epoch`.
pub fn stamp_directories(path: &Path, epoch: u64) -> Result<(), AssemblerError> {
    let fail =
        |e: std::io::Error| AssemblerError::Tool(format!("setting the FAT directory dates: {e}"));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(fail)?;
    let mut boot = [0u8; 512];
    file.read_exact_at(&mut boot, 0).map_err(fail)?;
    let geo = Geometry::parse(&boot).ok_or_else(|| {
        AssemblerError::Tool("setting the FAT directory dates: not a FAT boot sector".into())
    })?;
    Fat { file: &file, geo }
        .stamp_tree(0, &DosStamp::from_epoch(epoch), 0)
        .map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dos_stamps_of_epochs() {
        // 2023-11-14 22:13:20 UTC.
        assert_eq!(
            DosStamp::from_epoch(1_700_000_000),
            DosStamp {
                date: (43 << 9) | (11 << 5) | 14,
                time: (22 << 11) | (13 << 5) | 10
            }
        );
        // 2000-02-29 00:00:59 UTC: a leap day, odd seconds round down.
        assert_eq!(
            DosStamp::from_epoch(951_782_459),
            DosStamp {
                date: (20 << 9) | (2 << 5) | 29,
                time: 29
            }
        );
        assert_eq!(
            DosStamp::from_epoch(0).date,
            (1 << 5) | 1,
            "1980-01-01 at the earliest"
        );
    }

    #[test]
    fn geometry_of_a_fat16_boot_sector() {
        let mut boot = [0u8; 512];
        boot[11..13].copy_from_slice(&512u16.to_le_bytes());
        boot[13] = 4;
        boot[14..16].copy_from_slice(&4u16.to_le_bytes());
        boot[16] = 2;
        boot[17..19].copy_from_slice(&512u16.to_le_bytes());
        boot[22..24].copy_from_slice(&200u16.to_le_bytes());
        boot[32..36].copy_from_slice(&204_800u32.to_le_bytes());
        let g = Geometry::parse(&boot).unwrap();
        assert_eq!(g.kind, Kind::Fat16);
        assert_eq!(g.fat_start, 4 * 512);
        assert_eq!(g.root_region, Some((404 * 512, 32 * 512)));
        assert_eq!(g.data_start, 436 * 512);
        assert_eq!(g.clusters, (204_800 - 436) / 4);
        assert_eq!(g.cluster_offset(2), 436 * 512);
        assert!(Geometry::parse(&[0u8; 512]).is_none());
    }
}
