//! `org.osbuild.rawfs`: the tree as one filesystem image (ext4 or xfs) of a given size and
//! UUID, `output_dir/<filename>`.
//!
//! ext4 is made and filled in one step, without a loop device or a mount (`mkfs.ext4 -d`);
//! xfs is made on the file, then filled through a loop device from the engine's `remoteloop`
//! API and a mount in the sandbox (see [`crate::image::filesystem`]). The image is built under
//! a temporary name and renamed into place.

use serde_json::{Map, Value};

use crate::args::{image_size, required, string, Arguments};
use crate::image::filesystem::{make_filesystem, Filesystem, FsType};
use crate::image::options::{check_keys, fs_type};
use crate::image::output::{check_filename, TempFile};
use crate::image::Placed;
use crate::AssemblerError;

/// The validated options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawfsOptions {
    pub filename: String,
    pub root_fs_uuid: String,
    /// Bytes, a multiple of 512.
    pub size: u64,
    pub fs_type: FsType,
}

impl RawfsOptions {
    /// Validates the options object.
    pub fn parse(options: &Map<String, Value>) -> Result<Self, AssemblerError> {
        check_keys(
            options,
            &["filename", "root_fs_uuid", "size", "fs_type"],
            "options",
        )?;
        let filename = required(options, "filename")?;
        check_filename(&filename)?;
        let size = image_size(options)?;
        let fs_type = match string(options, "fs_type")? {
            None => FsType::Ext4,
            Some(t) => fs_type(&t, "fs_type", &[FsType::Ext4, FsType::Xfs])?,
        };
        Ok(RawfsOptions {
            filename,
            root_fs_uuid: required(options, "root_fs_uuid")?,
            size,
            fs_type,
        })
    }
}

/// Runs the assembler.
pub fn assemble(args: &Arguments) -> Result<(), AssemblerError> {
    let opts = RawfsOptions::parse(&args.options)?;
    let tmp = TempFile::sized(
        args.output_dir
            .join(format!(".{}.osbuild-part", opts.filename)),
        opts.size,
    )
    .map_err(|e| AssemblerError::Tool(format!("creating the image: {e}")))?;
    let fs = Filesystem {
        fstype: opts.fs_type,
        uuid: opts.root_fs_uuid.clone(),
        label: None,
        mountpoint: "/".into(),
    };
    let whole = Placed {
        start: 0,
        size: opts.size / 512,
        ptype: String::new(),
    };
    make_filesystem(&fs, &whole, tmp.path(), &args.tree)?;
    tmp.persist(&args.output_dir.join(&opts.filename))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_table() {
        let cases: [(&str, Result<FsType, &str>); 6] = [
            (
                r#"{"filename": "r.img", "root_fs_uuid": "u", "size": 1048576}"#,
                Ok(FsType::Ext4),
            ),
            (
                r#"{"filename": "r.img", "root_fs_uuid": "u", "size": 1048576, "fs_type": "xfs"}"#,
                Ok(FsType::Xfs),
            ),
            (
                r#"{"filename": "r.img", "root_fs_uuid": "u", "size": 1000}"#,
                Err("1000 is not a multiple of 512"),
            ),
            (
                r#"{"filename": "r.img", "root_fs_uuid": "u", "size": 1024, "fs_type": "vfat"}"#,
                Err(r#""vfat" is not one of ext4, xfs"#),
            ),
            (
                r#"{"filename": "r.img", "size": 1024}"#,
                Err(r#"invalid option "root_fs_uuid": is required"#),
            ),
            (
                r#"{"filename": "../r.img", "root_fs_uuid": "u", "size": 1024}"#,
                Err("without \"/\""),
            ),
        ];
        for (json, want) in cases {
            let v: Value = serde_json::from_str(json).unwrap();
            match (RawfsOptions::parse(v.as_object().unwrap()), want) {
                (Ok(o), Ok(t)) => assert_eq!(o.fs_type, t, "{json}"),
                (Err(e), Err(w)) => assert!(e.to_string().contains(w), "{json}: {e}"),
                (got, _) => panic!("{json}: {got:?}"),
            }
        }
    }
}
