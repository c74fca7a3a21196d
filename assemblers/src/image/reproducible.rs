//! Reproducible images: what the assemblers do when the engine set `SOURCE_DATE_EPOCH` (a
//! reproducible build), and nothing when it did not.
//!
//! - every tool they run gets `SOURCE_DATE_EPOCH` (mkfs.fat, xz, grub-mkimage honour it) and
//!   `E2FSPROGS_FAKE_TIME` (mke2fs's clock for the superblock, root and lost+found);
//! - what a tool would pick at random is derived from the epoch, the manifest's own ids and the
//!   partition's place ([`derived_uuid`]): ext4's directory hash seed, GPT partition UUIDs;
//! - what a tool copies from the tree that the engine cannot clamp, the change and access
//!   times mke2fs -d copies into every inode, is set to the epoch afterwards with `debugfs`
//!   ([`ext4_times_script`]).

use sha2::{Digest, Sha256};

/// The build's `SOURCE_DATE_EPOCH`, read once from the assembler's environment.
pub fn source_epoch() -> Option<u64> {
    static EPOCH: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(|| {
        std::env::var("SOURCE_DATE_EPOCH")
            .ok()
            .and_then(|v| v.parse().ok())
    })
}

/// The environment a tool gets for a reproducible build with `epoch`.
pub fn tool_env(epoch: Option<u64>) -> Vec<(&'static str, String)> {
    match epoch {
        Some(e) => vec![
            ("SOURCE_DATE_EPOCH", e.to_string()),
            ("E2FSPROGS_FAKE_TIME", e.to_string()),
        ],
        None => Vec::new(),
    }
}

/// A UUID (random-looking: version 4, RFC 4122 variant) derived from the epoch, what it is
/// for (`"ext4-hash-seed"`, `"gpt-partition"`), a seed from the manifest (a filesystem UUID,
/// the table's id) and an index (a partition's number or start): the same inputs give the same
/// UUID, any other input another.
pub fn derived_uuid(epoch: u64, purpose: &str, seed: &str, index: u64) -> String {
    let mut h = Sha256::new();
    for part in [&epoch.to_string(), purpose, seed, &index.to_string()] {
        h.update(part.len().to_le_bytes());
        h.update(part.as_bytes());
    }
    let mut b: [u8; 16] = h.finalize()[..16].try_into().expect("16 of 32 bytes");
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// The inode numbers in use, from `dumpe2fs` output: every inode of every group but those in
/// the group's "Free inodes:" ranges. `None` when the output is not what dumpe2fs prints.
pub fn used_inodes(dumpe2fs: &str) -> Option<Vec<u64>> {
    let per_group: u64 = dumpe2fs
        .lines()
        .find_map(|l| l.strip_prefix("Inodes per group:"))?
        .trim()
        .parse()
        .ok()?;
    let mut used = Vec::new();
    let groups = dumpe2fs
        .lines()
        .filter_map(|l| l.strip_prefix("  Free inodes:"));
    for (group, free) in groups.enumerate() {
        let mut ranges = Vec::new();
        for part in free.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            ranges.push((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?));
        }
        let first = group as u64 * per_group + 1;
        used.extend(
            (first..first + per_group).filter(|i| !ranges.iter().any(|(a, b)| a <= i && i <= b)),
        );
    }
    Some(used)
}

/// The `debugfs -f` script that sets the access and change times of `inodes` to `epoch`.
pub fn ext4_times_script(inodes: &[u64], epoch: u64) -> String {
    inodes
        .iter()
        .map(|i| format!("sif <{i}> atime @{epoch}\nsif <{i}> ctime @{epoch}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_uuids_are_stable_and_tell_their_inputs_apart() {
        let u = derived_uuid(1_700_000_000, "gpt-partition", "0x14fc63d2", 1);
        assert_eq!(
            u,
            derived_uuid(1_700_000_000, "gpt-partition", "0x14fc63d2", 1)
        );
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4", "version 4: {u}");
        assert!("89ab".contains(&u[19..20]), "RFC 4122 variant: {u}");
        let others = [
            derived_uuid(1_700_000_001, "gpt-partition", "0x14fc63d2", 1),
            derived_uuid(1_700_000_000, "ext4-hash-seed", "0x14fc63d2", 1),
            derived_uuid(1_700_000_000, "gpt-partition", "0x14fc63d3", 1),
            derived_uuid(1_700_000_000, "gpt-partition", "0x14fc63d2", 2),
            // Lengths are hashed too: moving a character between fields changes the UUID.
            derived_uuid(1_700_000_000, "gpt-partitio", "n0x14fc63d2", 1),
        ];
        for o in others {
            assert_ne!(o, u);
        }
    }

    #[test]
    fn used_inodes_are_the_complement_of_the_free_ranges() {
        let out = "Inode count:              24\nInodes per group:         8\n\
                   Group 0: (Blocks 0-8191)\n  Free inodes: 4-6, 8\n\
                   Group 1: (Blocks 8192-16383)\n  Free inodes: 9-16\n\
                   Group 2: (Blocks 16384-24575)\n  Free inodes: \n";
        let want: Vec<u64> = vec![1, 2, 3, 7, 17, 18, 19, 20, 21, 22, 23, 24];
        assert_eq!(used_inodes(out), Some(want));
        assert_eq!(used_inodes("not dumpe2fs"), None);
        assert_eq!(
            used_inodes("Inodes per group: 8\n  Free inodes: x-2\n"),
            None
        );
    }

    #[test]
    fn the_times_script_sets_atime_and_ctime() {
        assert_eq!(
            ext4_times_script(&[2, 11], 5),
            "sif <2> atime @5\nsif <2> ctime @5\nsif <11> atime @5\nsif <11> ctime @5\n"
        );
        assert_eq!(tool_env(None), vec![]);
        assert_eq!(
            tool_env(Some(5)),
            vec![
                ("SOURCE_DATE_EPOCH", "5".into()),
                ("E2FSPROGS_FAKE_TIME", "5".into())
            ]
        );
    }
}
