//! What `systemd-firstboot --root` does for hostname, locale, keymap and timezone, done
//! natively: the same validation and byte-identical files (checked against systemd 252 by
//! the integration tests), so the stages need no systemd in the build root.

use std::io::Read;
use std::path::Path;

use crate::error::StageError;
use crate::tree::{self, tree_path};

/// Linux's `HOST_NAME_MAX`.
const HOST_NAME_MAX: usize = 64;

/// systemd's `hostname_is_valid(s, VALID_HOSTNAME_TRAILING_DOT)`: dot-separated labels of
/// ASCII letters, digits and inner hyphens, at most 64 bytes; one trailing dot is accepted
/// only with at least two dots in all.
pub fn hostname_is_valid(s: &str) -> bool {
    if s.is_empty() {
        return false;
    }
    let (mut dot, mut hyphen, mut dots) = (true, true, 0);
    for c in s.bytes() {
        match c {
            b'.' => {
                if dot || hyphen {
                    return false;
                }
                dot = true;
                hyphen = false;
                dots += 1;
            }
            b'-' => {
                if dot {
                    return false;
                }
                dot = false;
                hyphen = true;
            }
            c if c.is_ascii_alphanumeric() => {
                dot = false;
                hyphen = false;
            }
            _ => return false,
        }
    }
    if (dot && dots < 2) || hyphen {
        return false;
    }
    s.len() <= HOST_NAME_MAX
}

/// The hostname as written: a valid name without its trailing dot.
pub fn hostname_cleanup(s: &str) -> &str {
    s.strip_suffix('.').unwrap_or(s)
}

/// systemd's `locale_is_valid` / `keymap_is_valid`: non-empty, shorter than 128 bytes, a
/// valid file name (no `/`, not `.`/`..`), no control characters, quotes or backslashes.
pub fn name_is_valid(s: &str) -> bool {
    !s.is_empty()
        && s.len() < 128
        && s != "."
        && s != ".."
        && !s
            .chars()
            .any(|c| c == '/' || c == '"' || c == '\'' || c == '\\' || c.is_ascii_control())
}

/// The syntax part of systemd's `verify_timezone`: ASCII letters, digits, `-_+` and single
/// inner slashes.
pub fn timezone_syntax_is_valid(zone: &str) -> bool {
    if zone.is_empty() || zone.starts_with('/') || zone.ends_with('/') || zone.contains("//") {
        return false;
    }
    zone.bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'+' | b'/'))
}

/// Checks `zone` as `systemd-firstboot --timezone` does, but against the tree's tzdata:
/// `UTC` is always accepted; any other zone must be a TZif file under
/// `/usr/share/zoneinfo` in the tree.
pub fn check_timezone(tree_root: &Path, zone: &str) -> Result<(), String> {
    if !timezone_syntax_is_valid(zone) {
        return Err(format!("timezone {zone:?} is not valid"));
    }
    if zone == "UTC" {
        return Ok(());
    }
    let rel = format!("usr/share/zoneinfo/{zone}");
    let path = tree_path(tree_root, &rel).map_err(|e| e.to_string())?;
    let mut magic = [0u8; 4];
    let read = std::fs::File::open(&path).and_then(|f| {
        if !f.metadata()?.is_file() {
            return Err(std::io::Error::other("not a regular file"));
        }
        f.take(4).read_exact(&mut magic)
    });
    match read {
        Ok(()) if &magic == b"TZif" => Ok(()),
        Ok(()) => Err(format!(
            "timezone {zone:?}: /{rel} in the tree is not a TZif file"
        )),
        Err(e) => Err(format!(
            "timezone {zone:?}: cannot open /{rel} in the tree: {e}"
        )),
    }
}

/// One `KEY=value` line as systemd writes environment files: the value is double-quoted
/// when it contains whitespace or shell metacharacters, escaping `` ` `` `$` `"` `\`.
pub fn env_line(key: &str, value: &str) -> String {
    const NEED_QUOTES: &str = " \t\n\r\"\\`$*?['()<>|&;!";
    let mut out = format!("{key}=");
    if value
        .chars()
        .any(|c| c.is_ascii_control() || NEED_QUOTES.contains(c))
    {
        out.push('"');
        for c in value.chars() {
            if "\"\\`$".contains(c) {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
    } else {
        out.push_str(value);
    }
    out.push('\n');
    out
}

/// Removes `path` from the tree, saying so when it existed (the stage replaces it).
pub fn replace_notice(tree_root: &Path, path: &str) -> Result<(), StageError> {
    if tree::remove_file(tree_root, path)? {
        println!("/{path} already exists. Replacing.");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames() {
        let long = "a".repeat(64);
        let too_long = "a".repeat(65);
        let cases: &[(&str, bool)] = &[
            ("myhost", true),
            ("ABC.def", true),
            ("a-b", true),
            ("a.b.", true),
            ("a.b.c.", true),
            (&long, true),
            ("localhost", true),
            ("", false),
            ("a.", false),
            (".a", false),
            ("a..b", false),
            ("-x", false),
            ("x-", false),
            ("a.-b", false),
            ("a-.b", false),
            ("bad_host", false),
            ("h\u{e9}", false),
            ("a b", false),
            (&too_long, false),
        ];
        for (h, want) in cases {
            assert_eq!(hostname_is_valid(h), *want, "{h:?}");
        }
        assert_eq!(hostname_cleanup("a.b."), "a.b");
        assert_eq!(hostname_cleanup("a.b"), "a.b");
    }

    #[test]
    fn locale_and_keymap_names() {
        let cases: &[(&str, bool)] = &[
            ("en_US.UTF-8", true),
            ("C.UTF-8", true),
            ("de-latin1", true),
            ("a b", true),
            ("", false),
            ("a/b", false),
            (".", false),
            ("..", false),
            ("a\"b", false),
            ("a'b", false),
            ("a\\b", false),
            ("a\tb", false),
            (&"x".repeat(128), false),
        ];
        for (n, want) in cases {
            assert_eq!(name_is_valid(n), *want, "{n:?}");
        }
    }

    #[test]
    fn timezone_syntax() {
        let cases: &[(&str, bool)] = &[
            ("UTC", true),
            ("Europe/Berlin", true),
            ("America/Argentina/Buenos_Aires", true),
            ("Etc/GMT+5", true),
            ("", false),
            ("/etc/passwd", false),
            ("../../etc/passwd", false),
            ("Europe//Berlin", false),
            ("Europe/", false),
            ("Europe/Berlin ", false),
        ];
        for (z, want) in cases {
            assert_eq!(timezone_syntax_is_valid(z), *want, "{z:?}");
        }
    }

    #[test]
    fn env_lines() {
        let cases: &[(&str, &str)] = &[
            ("en_US.UTF-8", "LANG=en_US.UTF-8\n"),
            ("a b", "LANG=\"a b\"\n"),
            ("a$b", "LANG=\"a\\$b\"\n"),
            ("a`b", "LANG=\"a\\`b\"\n"),
            ("a*b", "LANG=\"a*b\"\n"),
            ("a(b)", "LANG=\"a(b)\"\n"),
            ("a;b", "LANG=\"a;b\"\n"),
        ];
        for (v, want) in cases {
            assert_eq!(env_line("LANG", v), *want, "{v:?}");
        }
    }
}
