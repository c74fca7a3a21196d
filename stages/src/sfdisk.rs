//! `org.osbuild.sfdisk`: writes a partition table (dos/mbr or gpt) to the device `device` by
//! feeding `sfdisk` a script, as HEAD does, then prints the table read back.

use std::path::Path;

use crate::args::{Args, Opts};
use crate::command;
use crate::error::StageError;

pub fn run(args: &Args) -> Result<i32, StageError> {
    let device = args.device("device")?;
    let script = script(&args.opts(), device)?;
    println!("{script}");
    command::run_with_input(
        command::tool("sfdisk")
            .args(["-q", "--no-tell-kernel"])
            .arg(device),
        script.as_bytes(),
    )?;
    // Shown for the log only, as HEAD does; the write above already succeeded.
    let _ = command::status(command::tool("sfdisk").arg("--json").arg(device));
    Ok(0)
}

/// The sfdisk script for the options: `label`, `label-id`, then one line per partition
/// with the fields HEAD writes (those with a value that is not 0, empty or false).
fn script(opts: &Opts, device: &Path) -> Result<String, StageError> {
    let label = opts.choice("label", &["mbr", "dos", "gpt"], None)?;
    let uuid = opts.str("uuid")?;
    let mut out = format!("label: {label}\nlabel-id: {uuid}");
    let partitions = opts.opt_object_list("partitions")?.unwrap_or_default();
    for p in &partitions {
        out.push('\n');
        out.push_str(&partition_line(p, device)?);
    }
    Ok(out)
}

fn partition_line(p: &Opts, device: &Path) -> Result<String, StageError> {
    let mut fields = Vec::new();
    for key in ["start", "size"] {
        if let Some(v) = p.opt_i64(key)?.filter(|v| *v != 0) {
            fields.push(format!("{key}=\"{v}\""));
        }
    }
    for key in ["type", "name", "uuid"] {
        if let Some(v) = p.opt_str(key)?.filter(|v| !v.is_empty()) {
            fields.push(format!("{key}=\"{v}\""));
        }
    }
    if let Some(attrs) = attrs(p)? {
        fields.push(format!("attrs=\"{attrs}\""));
    }
    if p.bool_or("bootable", false)? {
        fields.push("bootable".into());
    }
    let line = fields.join(", ");
    Ok(match p.opt_i64("partnum")?.filter(|n| *n != 0) {
        Some(n) => format!("{}p{n}: {line}", device.display()),
        None => line,
    })
}

/// GPT attribute bits as sfdisk names them: 0-2 by name, 48-63 by number; other bits are
/// dropped, as HEAD drops them. `None` when the list is absent or empty.
fn attrs(p: &Opts) -> Result<Option<String>, StageError> {
    let Some(bits) = p.opt_i64_list("attrs")? else {
        return Ok(None);
    };
    if bits.is_empty() {
        return Ok(None);
    }
    let names: Vec<String> = bits
        .iter()
        .filter_map(|bit| match bit {
            0 => Some("RequiredPartition".to_owned()),
            1 => Some("NoBlockIOProtocol".to_owned()),
            2 => Some("LegacyBIOSBootable".to_owned()),
            48..=63 => Some(bit.to_string()),
            _ => None,
        })
        .collect();
    Ok(Some(names.join(",")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn script_has_heads_fields() {
        let opts = json!({"label": "gpt", "uuid": "D209C89E-EA5E-4FBD-B161-B461CCE297E0",
        "partitions": [
            {"start": 2048, "size": 2048, "type": "21686148-6449-6E6F-744E-656564454649",
             "bootable": true, "attrs": [0, 2, 7, 60]},
            {"partnum": 3, "start": 0, "size": 100, "name": "root", "uuid": ""},
            {}
        ]});
        let args =
            crate::args::Args::parse(&json!({"tree": "/t", "options": opts}).to_string()).unwrap();
        assert_eq!(
            script(&args.opts(), Path::new("/dev/loop0")).unwrap(),
            "label: gpt\nlabel-id: D209C89E-EA5E-4FBD-B161-B461CCE297E0\n\
             start=\"2048\", size=\"2048\", type=\"21686148-6449-6E6F-744E-656564454649\", \
             attrs=\"RequiredPartition,LegacyBIOSBootable,60\", bootable\n\
             /dev/loop0p3: size=\"100\", name=\"root\"\n"
        );
        let bad =
            crate::args::Args::parse(r#"{"tree": "/t", "options": {"label": "sun", "uuid": "x"}}"#)
                .unwrap();
        assert_eq!(
            script(&bad.opts(), Path::new("/dev/loop0"))
                .unwrap_err()
                .to_string(),
            "option \"label\": \"sun\" is not one of mbr, dos, gpt"
        );
    }
}
