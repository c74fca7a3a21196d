//! `qcow2_convert RAW OUT [THREADS]`: writes OUT as a compressed qcow2 of the raw image RAW
//! (bench/qcow2.sh times it against `qemu-img convert -c`). THREADS defaults to the cores.

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (raw, out) = match &args[..] {
        [raw, out] | [raw, out, _] => (raw, out),
        _ => {
            eprintln!("usage: qcow2_convert RAW OUT [THREADS]");
            return ExitCode::from(2);
        }
    };
    let threads = match args.get(2) {
        Some(n) => match n.parse() {
            Ok(n) => n,
            Err(_) => {
                eprintln!("qcow2_convert: THREADS {n:?} is not a number");
                return ExitCode::from(2);
            }
        },
        None => osbuild_qcow2::available_threads(),
    };
    match osbuild_qcow2::write_compressed(Path::new(raw), Path::new(out), threads) {
        Ok(s) => {
            println!("{s}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("qcow2_convert: {e}");
            ExitCode::FAILURE
        }
    }
}
