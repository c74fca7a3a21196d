//! Partition tables: the layout as the manifest gives it, the `sfdisk` script that writes it,
//! and the layout `sfdisk --json` reads back (the starts and sizes sfdisk chose).

use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use serde_json::Value;

use crate::image::filesystem::{self, Filesystem};
use crate::image::Placed;
use crate::{tool, AssemblerError};

/// GPT type of the BIOS-boot partition that holds GRUB's core image.
pub const BIOS_BOOT_GUID: &str = "21686148-6449-6E6F-744E-656564454649";
/// GPT type of an EFI system partition.
pub const ESP_GUID: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";

/// Partition table types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PtType {
    Dos,
    Gpt,
}

impl PtType {
    fn label(self) -> &'static str {
        match self {
            PtType::Dos => "dos",
            PtType::Gpt => "gpt",
        }
    }
}

/// One partition as the manifest gives it (start and size in 512-byte sectors).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Partition {
    pub start: Option<u64>,
    pub size: Option<u64>,
    pub ptype: Option<String>,
    pub bootable: bool,
    pub name: Option<String>,
    pub filesystem: Option<Filesystem>,
}

/// A partition table to write: its type, its id and the partitions in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionTable {
    pub pttype: PtType,
    pub ptuuid: String,
    pub partitions: Vec<Partition>,
}

impl PartitionTable {
    /// The partition whose filesystem holds `/boot` (mounted at `/boot`, else at `/`), with
    /// its index: where boot loaders look for their files.
    pub fn boot_filesystem(&self) -> Option<(usize, &Filesystem)> {
        let find = |mp: &str| {
            self.partitions.iter().enumerate().find_map(|(i, p)| {
                p.filesystem
                    .as_ref()
                    .filter(|f| f.mountpoint == mp)
                    .map(|f| (i, f))
            })
        };
        find("/boot").or_else(|| find("/"))
    }

    /// Makes the filesystems of the partitions (laid out as `placed`), parents before the
    /// filesystems mounted below them.
    pub fn make_filesystems(
        &self,
        placed: &[Placed],
        image: &Path,
        tree: &Path,
    ) -> Result<(), AssemblerError> {
        let mut order: Vec<(&Filesystem, &Placed)> = self
            .partitions
            .iter()
            .zip(placed)
            .filter_map(|(p, at)| p.filesystem.as_ref().map(|fs| (fs, at)))
            .collect();
        order.sort_by_key(|(fs, _)| fs.mountpoint.len());
        order
            .into_iter()
            .try_for_each(|(fs, at)| filesystem::make_filesystem(fs, at, image, tree))
    }

    /// The `sfdisk` script: the label, its id, then one line per partition.
    pub fn sfdisk_script(&self) -> String {
        let mut s = format!(
            "label: {}\nlabel-id: {}\n",
            self.pttype.label(),
            self.ptuuid
        );
        for p in &self.partitions {
            let mut fields = Vec::new();
            if let Some(start) = p.start {
                fields.push(format!("start=\"{start}\""));
            }
            if let Some(size) = p.size {
                fields.push(format!("size=\"{size}\""));
            }
            if let Some(t) = &p.ptype {
                fields.push(format!("type=\"{t}\""));
            }
            if let Some(n) = &p.name {
                fields.push(format!("name=\"{n}\""));
            }
            if p.bootable {
                fields.push("bootable".into());
            }
            s.push_str(&fields.join(", "));
            s.push('\n');
        }
        s
    }

    /// Writes the table into `image` with sfdisk and returns the partitions as laid out.
    pub fn write(&self, image: &Path) -> Result<Vec<Placed>, AssemblerError> {
        self.run_sfdisk(image)?;
        let placed = parse_sfdisk_json(&tool::run_args(
            "sfdisk",
            &["--json".as_ref(), image.as_os_str()],
        )?)?;
        if placed.len() != self.partitions.len() {
            return Err(AssemblerError::Tool(format!(
                "sfdisk made {} partitions, the manifest has {}",
                placed.len(),
                self.partitions.len()
            )));
        }
        Ok(placed)
    }

    fn run_sfdisk(&self, image: &Path) -> Result<(), AssemblerError> {
        let mut cmd = tool::command("sfdisk", &["-q".as_ref(), image.as_os_str()]);
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| AssemblerError::Tool(format!("cannot run sfdisk: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(self.sfdisk_script().as_bytes());
        }
        let out = child
            .wait_with_output()
            .map_err(|e| AssemblerError::Tool(format!("waiting for sfdisk: {e}")))?;
        if !out.status.success() {
            return Err(AssemblerError::Tool(format!(
                "sfdisk failed ({}) writing the partition table: {}",
                out.status,
                tool::tail(&String::from_utf8_lossy(&out.stderr))
            )));
        }
        Ok(())
    }
}

/// Reads the partitions out of `sfdisk --json` output.
pub fn parse_sfdisk_json(text: &[u8]) -> Result<Vec<Placed>, AssemblerError> {
    let bad = |why: &str| AssemblerError::Tool(format!("unexpected sfdisk --json output: {why}"));
    let v: Value = serde_json::from_slice(text).map_err(|_| bad("not JSON"))?;
    let parts = v
        .pointer("/partitiontable/partitions")
        .and_then(|p| p.as_array())
        .map(|a| a.as_slice())
        .unwrap_or(&[]);
    parts
        .iter()
        .map(|p| {
            Ok(Placed {
                start: p["start"].as_u64().ok_or_else(|| bad("no start"))?,
                size: p["size"].as_u64().ok_or_else(|| bad("no size"))?,
                ptype: p["type"].as_str().unwrap_or_default().to_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sfdisk_json_is_read() {
        let text = br#"{"partitiontable": {"label": "dos", "id": "0x1", "device": "d", "unit": "sectors",
            "partitions": [{"node": "d1", "start": 2048, "size": 4096, "type": "83", "bootable": true}]}}"#;
        assert_eq!(
            parse_sfdisk_json(text).unwrap(),
            vec![Placed {
                start: 2048,
                size: 4096,
                ptype: "83".into()
            }]
        );
        assert!(parse_sfdisk_json(b"{").is_err());
    }
}
