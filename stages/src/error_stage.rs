//! `org.osbuild.error`: exits with `returncode` (default 255), for testing failure paths.

use crate::args::Args;
use crate::error::StageError;

pub fn run(args: &Args) -> Result<i32, StageError> {
    let code = match args.opts().opt_number("returncode")? {
        None => 255,
        Some(n) => n
            .as_i64()
            .and_then(|v| i32::try_from(v).ok())
            .ok_or_else(|| StageError::option("returncode", "must be a whole number"))?,
    };
    println!("Error stage will now return error: {code}");
    Ok(code)
}
