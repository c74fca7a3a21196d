//! Benchmark driver for `bench/treesum.sh` (not a test).
//!
//! - `store_bench treesum DIR`: prints `treesum <hex> <seconds>`.
//! - `store_bench import DIR STORE`: commits a copy of DIR (made with `cp -a`) into STORE under
//!   a fixed id (untimed setup).
//! - `store_bench init STORE`: times `new_object(base) + write()` of that id, prints `init <seconds>`.
//! - `store_bench commit-sparse STORE MIB`: writes a sparse raw image of MIB MiB into a new
//!   object (data in its first 32nd, then 1 MiB every 64 MiB, like a fresh filesystem;
//!   untimed), times its commit, prints `commit <seconds>`.
//! - `store_bench write-sparse FILE MIB`: writes that sparse raw image to FILE (for a peer).

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use osbuild::id::ObjectId;
use osbuild::store::{treesum, ObjectKind, Store};

fn bench_id() -> ObjectId {
    ObjectId::parse(&"be".repeat(32)).expect("valid id")
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["treesum", dir] => {
            let t = Instant::now();
            let sum = treesum(Path::new(dir))?;
            println!("treesum {sum} {:.3}", t.elapsed().as_secs_f64());
        }
        ["import", dir, store] => {
            osbuild::mount::enter_private_namespace()?;
            let store = Store::open(Path::new(store))?;
            let obj = store.new_object(None)?;
            {
                let w = obj.write()?;
                let status = std::process::Command::new("cp")
                    .arg("-a")
                    .arg(format!("{dir}/."))
                    .arg(w.path())
                    .status()
                    .context("running cp")?;
                if !status.success() {
                    bail!("cp -a failed");
                }
            }
            let ts = store.commit(&obj, &bench_id(), ObjectKind::Tree)?;
            println!("imported {ts}");
        }
        ["init", store] => {
            osbuild::mount::enter_private_namespace()?;
            let store = Store::open(Path::new(store))?;
            let t = Instant::now();
            let obj = store.new_object(Some(&bench_id()))?;
            let w = obj.write()?;
            let secs = t.elapsed().as_secs_f64();
            drop(w);
            println!("init {secs:.3}");
        }
        ["commit-sparse", store, mib] => {
            osbuild::mount::enter_private_namespace()?;
            let store = Store::open(Path::new(store))?;
            let mib: u64 = mib.parse().context("MIB")?;
            let obj = store.new_object(None)?;
            {
                let w = obj.write()?;
                write_sparse_image(&w.path().join("disk.raw"), mib)?;
            }
            let t = Instant::now();
            store.commit(&obj, &bench_id(), ObjectKind::Tree)?;
            println!("commit {:.3}", t.elapsed().as_secs_f64());
        }
        ["write-sparse", file, mib] => {
            write_sparse_image(Path::new(file), mib.parse().context("MIB")?)?;
        }
        _ => bail!(
            "usage: store_bench treesum DIR | import DIR STORE | init STORE \
             | commit-sparse STORE MIB | write-sparse FILE MIB"
        ),
    }
    Ok(())
}

/// A sparse file of `mib` MiB: data in its first 32nd, then 1 MiB every 64 MiB.
fn write_sparse_image(path: &Path, mib: u64) -> Result<()> {
    use std::os::unix::fs::FileExt;
    const MIB: u64 = 1 << 20;
    let f = std::fs::File::create(path)?;
    let block: Vec<u8> = (0..MIB).map(|i| (i * 31 % 251) as u8).collect();
    let data_at = (0..mib / 32).chain((64..mib).step_by(64));
    for at in data_at {
        f.write_all_at(&block, at * MIB)?;
    }
    f.set_len(mib * MIB)?;
    Ok(())
}
