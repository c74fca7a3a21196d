//! Debian manifests in osbuild's current format (v2), structured as osbuild/images structures
//! its images: a pipeline `os` (the installed tree), and with `--image` a pipeline `image`
//! (the raw disk: truncate, partition, make the filesystems on loop devices, copy the tree in
//! through mounts, GRUB's boot code and core for BIOS) and, unless the format is raw, a
//! pipeline named after the format (`qcow2`, ...) converting it. Every module is one this
//! project ships natively: no Python runs in the build root.
//!
//! The `.deb`s are pinned by SHA256 in `org.osbuild.curl` and handed to `org.osbuild.dpkg` as
//! an `org.osbuild.files` input. The image's build root is the host (as the v1 manifests'),
//! so the host needs the disk tools: sfdisk, mkfs.ext4, mkfs.fat, grub-mkimage (grub-pc-bin)
//! and qemu-img.

use serde_json::{json, Map, Value};

use super::debian::{
    fstab_and_grub2_options, Boot, DebianError, ImageOptions, ManifestOptions, PinnedDeb,
    BIOS_BOOT_TYPE, ESP_TYPE, LINUX_FS_TYPE, PROBE_UNIT,
};

/// Where the first partition starts, in 512-byte sectors (1 MiB, as every tool aligns).
const FIRST_SECTOR: u64 = 2048;
/// The raw disk's name in the `image` pipeline's tree.
const RAW: &str = "disk.raw";

/// The v2 manifest installing `debs` (plus what `opts` asks for); see the module's doc.
pub fn manifest(debs: &[PinnedDeb], opts: &ManifestOptions) -> Result<Value, DebianError> {
    let mut items = Map::new();
    for d in debs {
        items.insert(d.checksum(), Value::String(d.url.clone()));
    }
    let mut pipelines = vec![os_pipeline(debs, opts)];
    if let Some(img) = &opts.image {
        pipelines.push(image_pipeline(img)?);
        if let Some(convert) = convert_pipeline(img)? {
            pipelines.push(convert);
        }
    }
    Ok(json!({
        "version": "2",
        "pipelines": pipelines,
        "sources": {"org.osbuild.curl": {"items": items}},
    }))
}

/// The name of the pipeline whose tree holds the image file ([`ImageOptions::filename`]):
/// what to `--export`.
pub fn image_export(img: &ImageOptions) -> &str {
    match img.format.as_str() {
        "raw" => "image",
        other => other,
    }
}

fn stage(kind: &str, options: Value) -> Value {
    json!({"type": format!("org.osbuild.{kind}"), "options": options})
}

fn os_pipeline(debs: &[PinnedDeb], opts: &ManifestOptions) -> Value {
    let mut dpkg_options = json!({});
    if !opts.initramfs_modules.is_empty() {
        dpkg_options["initramfs"] = json!({"modules": opts.initramfs_modules});
    }
    let mut dpkg = stage("dpkg", dpkg_options);
    dpkg["inputs"] = json!({"packages": {
        "type": "org.osbuild.files",
        "origin": "org.osbuild.source",
        "references": debs.iter().map(PinnedDeb::checksum).collect::<Vec<_>>(),
    }});
    let mut stages = vec![dpkg];
    if let Some(h) = &opts.hostname {
        stages.push(stage("hostname", json!({"hostname": h})));
    }
    if let Some(tz) = &opts.timezone {
        stages.push(stage("timezone", json!({"zone": tz})));
    }
    if let Some(l) = &opts.locale {
        stages.push(stage("locale", json!({"language": l})));
    }
    if let Some(img) = &opts.image {
        stages.extend(boot_stages(img));
    }
    json!({"name": "os", "stages": stages})
}

/// fstab and GRUB's configuration for `img` (and the probe unit), as the v1 manifest's.
fn boot_stages(img: &ImageOptions) -> Vec<Value> {
    let (fstab, grub) = fstab_and_grub2_options(img);
    let mut stages = vec![stage("fstab", fstab), stage("grub2", grub)];
    if img.probe {
        stages.push(probe_stage());
    }
    stages
}

/// The probe unit of the v1 manifest ([`super::debian::PROBE_UNIT_TEXT`]) in
/// `org.osbuild.systemd.unit.create`'s terms; not enabled: the kernel argument starts it.
fn probe_stage() -> Value {
    let report = "echo IMGTEST-BEGIN $(uname -r) $(hostname); systemctl --failed --no-legend; \
                  echo \"IMGTEST-END failed=$(systemctl --failed --no-legend | wc -l)\"";
    stage(
        "systemd.unit.create",
        json!({
            "filename": PROBE_UNIT,
            "unit-path": "etc",
            "config": {
                "Unit": {"Description": "osbuild image test probe", "After": ["multi-user.target"]},
                "Service": {
                    "Type": "oneshot",
                    "StandardOutput": "journal+console",
                    "ExecStart": [
                        format!("/bin/sh -c '{report}'"),
                        "/bin/systemctl poweroff --no-block".to_string(),
                    ],
                },
                "Install": {},
            },
        }),
    )
}

/// One partition of the disk: where it is (sectors) and what the sfdisk stage writes.
struct Partition {
    start: u64,
    size: u64,
    entry: Value,
}

/// The partitions of `img`'s disk: for BIOS one bootable Linux partition on an MBR; for UEFI
/// and hybrid the GPT of the v1 manifest (a BIOS boot partition for hybrid, the ESP, root).
/// The root fills the disk (GPT keeps its last 33 sectors for the backup table).
fn partitions(img: &ImageOptions) -> Result<Vec<Partition>, DebianError> {
    let mut sizes = Vec::new();
    if img.boot == Boot::Hybrid {
        sizes.push((2048, BIOS_BOOT_TYPE, "BIOS boot"));
    }
    if img.boot.has_esp() {
        sizes.push((img.esp_size / 512, ESP_TYPE, "EFI System"));
    }
    // Before the root: the first MiB and the partitions above; after it, GPT's backup.
    let backup = if img.boot == Boot::Bios { 0 } else { 34 };
    let taken = FIRST_SECTOR + backup + sizes.iter().map(|(size, _, _)| size).sum::<u64>();
    let root = match (img.size / 512).checked_sub(taken) {
        Some(root) if root > 0 => root,
        _ => {
            return Err(DebianError::Unsupported(format!(
                "an image of {} bytes: the partition table and the partitions before the root \
                 take {} bytes, leaving no room for the root",
                img.size,
                taken * 512
            )))
        }
    };
    sizes.push((root, LINUX_FS_TYPE, "root"));
    let mut parts = Vec::new();
    let mut start = FIRST_SECTOR;
    for (size, kind, name) in sizes {
        let entry = if img.boot == Boot::Bios {
            json!({"start": start, "size": size, "type": "83", "bootable": true})
        } else {
            json!({"start": start, "size": size, "type": kind, "name": name})
        };
        parts.push(Partition { start, size, entry });
        start += size;
    }
    Ok(parts)
}

/// A loop device over partition `p` of the raw disk.
fn loopback(p: &Partition) -> Value {
    json!({"type": "org.osbuild.loopback",
           "options": {"filename": RAW, "start": p.start, "size": p.size, "lock": true}})
}

fn image_pipeline(img: &ImageOptions) -> Result<Value, DebianError> {
    let parts = partitions(img)?;
    let root = parts.last().expect("a disk has a root partition");
    let esp = img.boot.has_esp().then(|| &parts[parts.len() - 2]);
    let label = if img.boot == Boot::Bios { "dos" } else { "gpt" };
    let ptuuid = img.ptuuid.trim_start_matches("0x");

    let mut sfdisk = stage(
        "sfdisk",
        json!({"label": label, "uuid": ptuuid,
               "partitions": parts.iter().map(|p| p.entry.clone()).collect::<Vec<_>>()}),
    );
    sfdisk["devices"] = json!({"device": {"type": "org.osbuild.loopback",
                                          "options": {"filename": RAW, "lock": true}}});
    let mut mkfs_root = stage(
        "mkfs.ext4",
        json!({"uuid": img.root_fs_uuid, "label": "root"}),
    );
    mkfs_root["devices"] = json!({"device": loopback(root)});
    let mut stages = vec![
        stage(
            "truncate",
            json!({"filename": RAW, "size": img.size.to_string()}),
        ),
        sfdisk,
        mkfs_root,
    ];
    let mut devices = json!({"root": loopback(root)});
    let mut mounts =
        vec![json!({"name": "root", "type": "org.osbuild.ext4", "source": "root", "target": "/"})];
    if let Some(esp) = esp {
        let volid = img.esp_fs_uuid.replace('-', "");
        let mut mkfs_fat = stage("mkfs.fat", json!({"volid": volid, "label": "ESP"}));
        mkfs_fat["devices"] = json!({"device": loopback(esp)});
        stages.push(mkfs_fat);
        devices["efi"] = loopback(esp);
        mounts.push(
            json!({"name": "efi", "type": "org.osbuild.fat", "source": "efi", "target": "/boot/efi"}),
        );
    }
    let mut copy = stage(
        "copy",
        json!({"paths": [{"from": "input://tree/", "to": "mount://root/"}]}),
    );
    copy["inputs"] = json!({"tree": {"type": "org.osbuild.tree", "origin": "org.osbuild.pipeline",
                                      "references": ["name:os"]}});
    copy["devices"] = devices;
    copy["mounts"] = Value::Array(mounts);
    stages.push(copy);
    if img.boot != Boot::Uefi {
        stages.push(grub2_inst(img, &parts));
    }
    Ok(json!({"name": "image", "stages": stages}))
}

/// GRUB's i386-pc boot code into the MBR and its core after it (BIOS: in the gap before the
/// first partition) or into the BIOS boot partition (hybrid), finding `/boot/grub` on root.
fn grub2_inst(img: &ImageOptions, parts: &[Partition]) -> Value {
    let (label, location) = match img.boot {
        Boot::Bios => ("dos", 1),
        _ => ("gpt", parts[0].start),
    };
    stage(
        "grub2.inst",
        json!({
            "filename": RAW,
            "platform": "i386-pc",
            "location": location,
            "core": {"type": "mkimage", "partlabel": label, "filesystem": "ext4",
                     "binary": "grub-mkimage"},
            "prefix": {"type": "partition", "partlabel": label,
                       "number": parts.len() - 1, "path": "/boot/grub"},
        }),
    )
}

/// The pipeline converting the raw disk to `img.format` with `org.osbuild.qemu` (none for
/// raw).
fn convert_pipeline(img: &ImageOptions) -> Result<Option<Value>, DebianError> {
    let format = match img.format.as_str() {
        "raw" => return Ok(None),
        "qcow2" => {
            let mut format = json!({"type": "qcow2", "compat": "1.1"});
            if img.qcow2_zstd {
                format["compression_type"] = json!("zstd");
            }
            format
        }
        "vdi" | "vmdk" | "vpc" | "vhdx" => json!({"type": img.format}),
        other => {
            return Err(DebianError::Unsupported(format!(
                "image format {other:?} in a v2 manifest (raw, qcow2, vdi, vmdk, vpc, vhdx)"
            )))
        }
    };
    let mut qemu = stage(
        "qemu",
        json!({"filename": img.filename(), "format": format}),
    );
    qemu["inputs"] = json!({"image": {
        "type": "org.osbuild.files",
        "origin": "org.osbuild.pipeline",
        "references": {"name:image": {"file": RAW}},
    }});
    Ok(Some(json!({"name": img.format, "stages": [qemu]})))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deb(name: &str, hex: char) -> PinnedDeb {
        PinnedDeb {
            url: format!("http://deb.example/pool/{name}_1_amd64.deb"),
            filename: format!("{name}_1_amd64.deb"),
            size: 1000,
            sha256: hex.to_string().repeat(64),
        }
    }

    fn image_manifest(boot: Boot, format: &str) -> Value {
        let img = ImageOptions {
            format: format.into(),
            probe: true,
            ..ImageOptions::for_boot(boot)
        };
        let opts = ManifestOptions {
            image: Some(img),
            ..ManifestOptions::default()
        };
        manifest(&[deb("a", 'a'), deb("b", 'b')], &opts).unwrap()
    }

    fn stage_types(pipeline: &Value) -> Vec<&str> {
        pipeline["stages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["type"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn debs_are_pinned_in_curl_and_given_to_dpkg_as_a_files_input() {
        let m = image_manifest(Boot::Bios, "qcow2");
        assert_eq!(m["version"], "2");
        let items = m["sources"]["org.osbuild.curl"]["items"]
            .as_object()
            .unwrap();
        let a = format!("sha256:{}", "a".repeat(64));
        assert_eq!(items[&a], "http://deb.example/pool/a_1_amd64.deb");
        let dpkg = &m["pipelines"][0]["stages"][0];
        assert_eq!(dpkg["type"], "org.osbuild.dpkg");
        assert_eq!(dpkg["inputs"]["packages"]["origin"], "org.osbuild.source");
        assert_eq!(dpkg["inputs"]["packages"]["references"][0], json!(a));
    }

    #[test]
    fn a_bios_image_is_os_image_and_qcow2() {
        let m = image_manifest(Boot::Bios, "qcow2");
        let names: Vec<&str> = m["pipelines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["os", "image", "qcow2"]);
        assert_eq!(
            stage_types(&m["pipelines"][1]),
            [
                "org.osbuild.truncate",
                "org.osbuild.sfdisk",
                "org.osbuild.mkfs.ext4",
                "org.osbuild.copy",
                "org.osbuild.grub2.inst"
            ]
        );
        let sfdisk = &m["pipelines"][1]["stages"][1]["options"];
        assert_eq!(sfdisk["label"], "dos");
        assert_eq!(sfdisk["uuid"], "0b0bcafe");
        // One partition from 1 MiB to the end of the 2 GiB disk.
        assert_eq!(sfdisk["partitions"][0]["size"], (2u64 << 30) / 512 - 2048);
        let inst = &m["pipelines"][1]["stages"][4]["options"];
        assert_eq!(inst["location"], 1);
        assert_eq!(inst["prefix"]["number"], 0);
        let qemu = &m["pipelines"][2]["stages"][0];
        assert_eq!(qemu["options"]["filename"], "disk.qcow2");
        assert_eq!(
            qemu["options"]["format"],
            json!({"type": "qcow2", "compat": "1.1"}),
            "zlib clusters unless asked"
        );
        assert_eq!(
            qemu["inputs"]["image"]["references"]["name:image"]["file"],
            "disk.raw"
        );
        let os = stage_types(&m["pipelines"][0]);
        assert_eq!(os.last(), Some(&"org.osbuild.systemd.unit.create"));
    }

    #[test]
    fn zstd_clusters_are_the_qemu_stages_compression_type() {
        let opts = ManifestOptions {
            image: Some(ImageOptions {
                qcow2_zstd: true,
                ..ImageOptions::default()
            }),
            ..ManifestOptions::default()
        };
        let m = manifest(&[], &opts).unwrap();
        assert_eq!(
            m["pipelines"][2]["stages"][0]["options"]["format"],
            json!({"type": "qcow2", "compat": "1.1", "compression_type": "zstd"})
        );
    }

    #[test]
    fn a_hybrid_image_puts_the_core_into_the_bios_boot_partition() {
        let m = image_manifest(Boot::Hybrid, "raw");
        assert_eq!(
            m["pipelines"].as_array().unwrap().len(),
            2,
            "raw: no conversion"
        );
        assert_eq!(image_export(&ImageOptions::for_boot(Boot::Hybrid)), "qcow2");
        let image = &m["pipelines"][1];
        let parts = &image["stages"][1]["options"]["partitions"];
        assert_eq!(parts[0]["type"], BIOS_BOOT_TYPE);
        assert_eq!(parts[1]["type"], ESP_TYPE);
        assert_eq!(parts[2]["type"], LINUX_FS_TYPE);
        let inst = image["stages"].as_array().unwrap().last().unwrap();
        assert_eq!(inst["type"], "org.osbuild.grub2.inst");
        assert_eq!(inst["options"]["location"], 2048);
        assert_eq!(inst["options"]["prefix"]["number"], 2);
        let copy = &image["stages"][4];
        assert_eq!(copy["mounts"][1]["target"], "/boot/efi");
        assert_eq!(image["stages"][3]["options"]["volid"], "0B0BCAFE");
    }

    #[test]
    fn a_uefi_image_has_no_bios_boot_code_and_unknown_formats_are_refused() {
        let m = image_manifest(Boot::Uefi, "vmdk");
        let types = stage_types(&m["pipelines"][1]);
        assert!(!types.contains(&"org.osbuild.grub2.inst"), "{types:?}");
        assert_eq!(m["pipelines"][2]["name"], "vmdk");
        let opts = ManifestOptions {
            image: Some(ImageOptions {
                format: "raw.xz".into(),
                ..ImageOptions::default()
            }),
            ..ManifestOptions::default()
        };
        let err = manifest(&[], &opts).unwrap_err().to_string();
        assert!(err.contains("\"raw.xz\""), "{err}");
    }

    #[test]
    fn a_disk_too_small_for_its_root_is_refused() {
        for (boot, size) in [(Boot::Bios, 1 << 20), (Boot::Uefi, 100 << 20)] {
            let opts = ManifestOptions {
                image: Some(ImageOptions {
                    size,
                    ..ImageOptions::for_boot(boot)
                }),
                ..ManifestOptions::default()
            };
            let err = manifest(&[], &opts).unwrap_err().to_string();
            assert!(
                err.contains("leaving no room for the root"),
                "{boot:?}: {err}"
            );
        }
    }
}
