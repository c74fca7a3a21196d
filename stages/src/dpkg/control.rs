//! Reading every package's control fields at once: the `control.tar.xz` member of each `.deb`
//! (an `ar` archive) is read here, all of them are decompressed by one `xz -dc` (which
//! decompresses concatenated streams as one), and the `control` file of each archive in that
//! output is parsed. One `dpkg-deb --show` per package cost 0.42 s for Debian 12's 111
//! packages on two cores (a process, the dynamic loader and a decompressor each); this takes
//! 0.05 s.
//!
//! Anything else (another compressor, no `xz` in the build root, an archive that does not read
//! as expected) returns `None`, and the caller asks `dpkg-deb` package by package.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::Stdio;

use crate::command;

/// The fields of one control file, `(name, value)` in their order.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Fields {
    pub values: Vec<(String, String)>,
}

impl Fields {
    /// The value of `name` (case-insensitive, as in deb822), or "".
    pub fn get(&self, name: &str) -> &str {
        self.values
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map_or("", |(_, v)| v.as_str())
    }
}

/// The control fields of each of `debs`, in order; `None` when they cannot all be read this way.
pub fn read_all(debs: &[&Path]) -> Option<Vec<Fields>> {
    let mut compressed = Vec::new();
    for deb in debs {
        compressed.extend(control_member(deb)?);
    }
    let tar = xz_decompress(&compressed)?;
    let archives = control_files(&tar)?;
    (archives.len() == debs.len()).then(|| archives.iter().map(|c| parse(c)).collect())
}

/// The bytes of the `control.tar.xz` member of the `.deb` at `path`.
fn control_member(path: &Path) -> Option<Vec<u8>> {
    let mut f = File::open(path).ok()?;
    let mut magic = [0u8; 8];
    f.read_exact(&mut magic).ok()?;
    if &magic != b"!<arch>\n" {
        return None;
    }
    // Members: `debian-binary`, then the control archive, then the data archive.
    for _ in 0..3 {
        let mut header = [0u8; 60];
        f.read_exact(&mut header).ok()?;
        if &header[58..60] != b"`\n" {
            return None;
        }
        let name = std::str::from_utf8(&header[..16]).ok()?.trim_end();
        let size: u64 = std::str::from_utf8(&header[48..58])
            .ok()?
            .trim()
            .parse()
            .ok()?;
        if name.trim_end_matches('/') == "control.tar.xz" {
            // A control archive is small; a size that is not is not one to read whole.
            if size > 64 << 20 {
                return None;
            }
            let mut data = vec![0u8; usize::try_from(size).ok()?];
            f.read_exact(&mut data).ok()?;
            return Some(data);
        }
        f.seek(SeekFrom::Current(i64::try_from(size + size % 2).ok()?))
            .ok()?;
    }
    None
}

/// `xz -dc` of `data` (several concatenated streams give their outputs one after the other).
fn xz_decompress(data: &[u8]) -> Option<Vec<u8>> {
    let mut cmd = command::tool("xz");
    cmd.args(["-dc", "-T1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().ok()?;
    let Some(mut stdin) = child.stdin.take() else {
        let _ = child.kill();
        let _ = child.wait();
        return None;
    };
    let data = data.to_vec();
    // Written from a thread: xz's output would otherwise fill its pipe while we write.
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &data));
    let out = child.wait_with_output().ok()?;
    writer.join().ok()?.ok()?;
    out.status.success().then_some(out.stdout)
}

/// The `control` file of each tar archive in `stream`, archives one after the other (each ends
/// with zero blocks; the next starts at the next block that is not zero).
fn control_files(stream: &[u8]) -> Option<Vec<Vec<u8>>> {
    const BLOCK: usize = 512;
    let mut archives = Vec::new();
    let mut current: Option<Vec<u8>> = None;
    let mut in_archive = false;
    let mut at = 0;
    while at + BLOCK <= stream.len() {
        let header = &stream[at..at + BLOCK];
        at += BLOCK;
        if header.iter().all(|&b| b == 0) {
            if in_archive {
                archives.push(current.take().unwrap_or_default());
                in_archive = false;
            }
            continue;
        }
        in_archive = true;
        let name = cstr(&header[..100]);
        let size = usize::from_str_radix(cstr(&header[124..136]).trim(), 8).ok()?;
        let end = at.checked_add(size)?;
        if end > stream.len() {
            return None;
        }
        let regular = matches!(header[156], b'0' | 0);
        if regular && matches!(name, "./control" | "control") {
            current = Some(stream[at..end].to_vec());
        }
        at = end.div_ceil(BLOCK) * BLOCK;
    }
    (!in_archive).then_some(archives)
}

/// The text of a NUL-padded header field.
fn cstr(field: &[u8]) -> &str {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    std::str::from_utf8(&field[..end]).unwrap_or("")
}

/// The fields of a control file: `Name: value`, continuation lines (starting with a space or a
/// tab) joined to the value with a space.
fn parse(control: &[u8]) -> Fields {
    let text = String::from_utf8_lossy(control);
    let mut values: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = values.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            values.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    Fields { values }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_parsed_with_continuation_lines() {
        let f = parse(b"Package: a\nDepends: b (>= 1),\n c | d\nDescription: x\n more\n");
        assert_eq!(f.get("package"), "a");
        assert_eq!(f.get("Depends"), "b (>= 1), c | d");
        assert_eq!(f.get("Essential"), "");
    }

    #[test]
    fn archives_one_after_the_other_are_told_apart() {
        fn tar_with(files: &[(&str, &[u8])]) -> Vec<u8> {
            let mut out = Vec::new();
            for (name, data) in files {
                let mut h = [0u8; 512];
                h[..name.len()].copy_from_slice(name.as_bytes());
                let size = format!("{:011o}\0", data.len());
                h[124..136].copy_from_slice(size.as_bytes());
                h[156] = b'0';
                out.extend(h);
                out.extend(*data);
                out.resize(out.len().div_ceil(512) * 512, 0);
            }
            out.resize(out.len() + 10240 - out.len() % 10240, 0);
            out
        }
        let mut stream = tar_with(&[("./", b""), ("./control", b"Package: one\n")]);
        stream.extend(tar_with(&[
            ("./md5sums", b"x"),
            ("./control", b"Package: two\n"),
        ]));
        stream.extend(tar_with(&[
            ("./control", b"Package: three\n"),
            ("./postinst", b"#!/bin/sh\n"),
        ]));
        let found = control_files(&stream).unwrap();
        let names: Vec<String> = found
            .iter()
            .map(|c| parse(c).get("Package").to_owned())
            .collect();
        assert_eq!(names, ["one", "two", "three"]);
        // The last archive cut before its end: not read.
        let cut = stream.len() - 10240 + 1024;
        assert!(control_files(&stream[..cut]).is_none());
    }
}
