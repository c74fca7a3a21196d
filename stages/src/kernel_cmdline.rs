//! `org.osbuild.kernel-cmdline`: writes `/etc/kernel/cmdline` (`root=UUID=<uuid> <opts>`,
//! no trailing newline), read by kernel-install. Under osbuild HEAD's protocol the line may
//! be at most `kernel_cmdline_size` bytes (by default the kernel's limit for the build
//! root's architecture, as HEAD's stage checks it).

use crate::args::Args;
use crate::error::StageError;
use crate::tree;

pub fn run(args: &Args) -> Result<i32, StageError> {
    let opts = args.opts();
    let mut params = Vec::new();
    if let Some(uuid) = opts.opt_str("root_fs_uuid")?.filter(|u| !u.is_empty()) {
        params.push(format!("root=UUID={uuid}"));
    }
    if let Some(extra) = opts.opt_str("kernel_opts")?.filter(|k| !k.is_empty()) {
        params.push(extra.to_string());
    }
    let line = params.join(" ");
    if args.is_head() {
        let max = match opts.opt_i64("kernel_cmdline_size")? {
            Some(n) => usize::try_from(n).unwrap_or(0),
            None => default_max_size(std::env::consts::ARCH),
        };
        if line.len() > max {
            return Err(StageError::option(
                "kernel_opts",
                format!(
                    "the kernel command line is {} bytes, more than the {max} this kernel takes \
                     (kernel_cmdline_size)",
                    line.len()
                ),
            ));
        }
    }
    tree::write_file(&args.tree, "etc/kernel/cmdline", line.as_bytes(), 0o644)?;
    Ok(0)
}

/// The kernel's command line limit (`COMMAND_LINE_SIZE`) on `arch`, 4096 where unknown.
fn default_max_size(arch: &str) -> usize {
    match arch {
        "x86_64" | "x86" | "aarch64" | "powerpc" | "powerpc64" => 2048,
        "arm" | "riscv64" | "riscv32" => 1024,
        _ => 4096,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn limits_per_architecture() {
        for (arch, max) in [
            ("x86_64", 2048),
            ("arm", 1024),
            ("s390x", 4096),
            ("aarch64", 2048),
        ] {
            assert_eq!(super::default_max_size(arch), max, "{arch}");
        }
    }
}
