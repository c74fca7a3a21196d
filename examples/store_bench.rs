//! Benchmark driver for `bench/treesum.sh` (not a test).
//!
//! - `store_bench treesum DIR`: prints `treesum <hex> <seconds>`.
//! - `store_bench import DIR STORE`: commits a copy of DIR (made with `cp -a`) into STORE under
//!   a fixed id (untimed setup).
//! - `store_bench init STORE`: times `new_object(base) + write()` of that id, prints `init <seconds>`.

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
        _ => bail!("usage: store_bench treesum DIR | import DIR STORE | init STORE"),
    }
    Ok(())
}
