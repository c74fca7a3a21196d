//! Our qcow2 files read back by qemu-img: `check` finds no error and no leak, `compare` finds
//! the raw image's disk, `info` reads the header we meant; the bytes do not depend on the
//! thread count; bad paths give errors that name them.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

use osbuild_qcow2::{write_compressed, Summary};
use serde_json::Value;

const CLUSTER: u64 = 65536;

fn qemu_img(args: &[&str], image: &Path) -> (bool, String) {
    let out = Command::new("qemu-img")
        .args(args)
        .arg(image)
        .output()
        .expect("qemu-img runs (package qemu-utils)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// Asserts that qemu-img finds `qcow2` a clean image of `raw`'s disk; returns its `info`.
fn assert_qemu_img_reads(raw: &Path, qcow2: &Path) -> Value {
    let (_, check) = qemu_img(&["check", "--output=json", "-f", "qcow2"], qcow2);
    let check: Value = serde_json::from_str(&check).unwrap_or_else(|_| panic!("{check}"));
    for key in ["check-errors", "leaks", "corruptions"] {
        assert_eq!(
            check.get(key).map_or(0, |v| v.as_u64().unwrap()),
            0,
            "{check:#}"
        );
    }
    let out = Command::new("qemu-img")
        .args(["compare", "-f", "raw", "-F", "qcow2"])
        .args([raw, qcow2])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("Images are identical"), "{said}");
    let (ok, info) = qemu_img(&["info", "--output=json", "-f", "qcow2"], qcow2);
    assert!(ok, "{info}");
    let info: Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["format"], "qcow2");
    assert_eq!(info["cluster-size"], CLUSTER);
    assert_eq!(info["format-specific"]["data"]["compat"], "1.1", "{info:#}");
    assert_eq!(info["format-specific"]["data"]["compression-type"], "zlib");
    info
}

/// Writes `bytes` at `offset` of `path` (the file grows; what is skipped stays a hole).
fn put(path: &Path, offset: u64, bytes: &[u8]) {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap();
    f.write_all_at(bytes, offset).unwrap();
}

fn pseudo_random(n: usize, mut x: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn a_mixed_raw_image_reads_back_the_same_for_any_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.raw");
    let text: Vec<u8> = b"a line of an ext4 file, more or less\n".repeat(5000);
    put(&raw, 0, &text); // three clusters and a bit of text
    put(&raw, 4 * CLUSTER, &vec![0; 3 * CLUSTER as usize]); // written zeros
    put(&raw, 9 * CLUSTER + 77, &pseudo_random(CLUSTER as usize, 7)); // straddles 9 and 10
    put(&raw, 40 * CLUSTER, &pseudo_random(CLUSTER as usize, 11)); // one whole random cluster
    put(
        &raw,
        60 * CLUSTER,
        b"the last cluster is short, and so is its last sector",
    );
    let size = 60 * CLUSTER + 52;
    assert_eq!(std::fs::metadata(&raw).unwrap().len(), size);

    let mut first: Option<(Vec<u8>, Summary)> = None;
    for threads in [1, 2, 5] {
        let qcow2 = dir.path().join(format!("disk-{threads}.qcow2"));
        let summary = write_compressed(&raw, &qcow2, threads).unwrap();
        let info = assert_qemu_img_reads(&raw, &qcow2);
        assert_eq!(info["virtual-size"], size.next_multiple_of(512));
        let bytes = std::fs::read(&qcow2).unwrap();
        assert_eq!(bytes.len() as u64, summary.file_size);
        match &first {
            None => first = Some((bytes, summary)),
            Some((want, want_summary)) => {
                assert!(*want == bytes, "{threads} threads wrote other bytes");
                assert_eq!(*want_summary, summary);
            }
        }
    }
    let summary = first.unwrap().1;
    // Text clusters 0-2, 60, and 10 (77 random bytes, then zeros) compress; 9 (random but
    // its first 77 bytes) and 40 do not; 4-6 are zeros.
    assert_eq!(
        (summary.compressed, summary.stored, summary.zero),
        (5, 2, 3),
        "{summary:?}"
    );
}

#[test]
fn an_all_zero_raw_is_an_empty_qcow2() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("zeros.raw");
    put(&raw, 0, &vec![0; 5 * CLUSTER as usize]);
    let qcow2 = dir.path().join("zeros.qcow2");
    let summary = write_compressed(&raw, &qcow2, 2).unwrap();
    assert_eq!(
        (summary.compressed, summary.stored, summary.zero),
        (0, 0, 5)
    );
    assert_qemu_img_reads(&raw, &qcow2);

    let empty = dir.path().join("empty.raw");
    File::create(&empty).unwrap();
    let qcow2 = dir.path().join("empty.qcow2");
    write_compressed(&empty, &qcow2, 2).unwrap();
    let info = assert_qemu_img_reads(&empty, &qcow2);
    assert_eq!(info["virtual-size"], 0);
}

/// A 3 GiB sparse disk with data in the first, second and sixth L2 tables' reach (512 MiB
/// each): several L2 tables, an L1 table with holes, holes never read.
#[test]
fn a_sparse_disk_beyond_one_l2_table() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("sparse.raw");
    put(&raw, 5 * CLUSTER, b"first");
    put(&raw, (600 << 20) + 3, &pseudo_random(200_000, 3));
    put(&raw, (3 << 30) - 10, b"the end");
    let qcow2 = dir.path().join("sparse.qcow2");
    let summary = write_compressed(&raw, &qcow2, 2).unwrap();
    assert_eq!(summary.virtual_size, 3 << 30);
    assert_eq!(summary.compressed + summary.stored, 6, "{summary:?}");
    assert!(summary.file_size < 20 * CLUSTER, "{summary:?}");
    assert_qemu_img_reads(&raw, &qcow2);
}

#[test]
fn errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.raw");
    let out = dir.path().join("out.qcow2");
    let err = write_compressed(&missing, &out, 1).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("{}: ", missing.display())),
        "{err}"
    );
    assert!(err.contains("No such file"), "{err}");

    let raw = dir.path().join("disk.raw");
    put(&raw, 0, b"data");
    let unwritable = dir.path().join("no-such-dir/out.qcow2");
    let err = write_compressed(&raw, &unwritable, 1)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!("{}: ", unwritable.display())),
        "{err}"
    );

    // A directory opens, but its reads fail: the error names it and the offset.
    let err = write_compressed(dir.path(), &out, 1)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!("{}: ", dir.path().display())),
        "{err}"
    );
    assert!(err.contains("at byte 0"), "{err}");
    assert!(!out.exists(), "half a qcow2 is removed");
}
