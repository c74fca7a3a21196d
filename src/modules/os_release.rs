//! os-release(5): the distribution a runner is chosen for.
//!
//! Parsed by hand: the `os-release` crate (0.1.0, its only release) reads only
//! `/etc/os-release` (no `/usr/lib/os-release` fallback), strips quotes without unescaping and
//! pulls in `lazy_static`; what we need is two keys, in the few lines below.

/// `ID` + `VERSION_ID` without dots from an os-release text (defaults `linux` and ""), e.g.
/// `debian12`, `fedora41`, `rhel94`.
pub fn describe_os(os_release: &str) -> String {
    let mut id = "linux".to_owned();
    let mut version_id = String::new();
    for line in os_release.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = unquote(value.trim());
        match key.trim() {
            "ID" => id = value,
            "VERSION_ID" => version_id = value,
            _ => {}
        }
    }
    id + &version_id.replace('.', "")
}

/// A shell-style os-release value without its quotes.
fn unquote(value: &str) -> String {
    let mut out = String::new();
    let mut chars = value.chars();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (Some('"') | None, '\\') => {
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            }
            (_, c) => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_os_reads_id_and_version_id() {
        let cases = [
            ("ID=debian\nVERSION_ID=\"12\"\n", "debian12"),
            ("ID=fedora\nVERSION_ID=41\n", "fedora41"),
            ("ID=\"rhel\"\nVERSION_ID=\"9.4\"\n", "rhel94"),
            ("ID='centos'\nVERSION_ID='10'\n", "centos10"),
            ("# comment\n\n  ID=arch  \nBUILD_ID=rolling\n", "arch"),
            ("VERSION_ID=1.2.3\n", "linux123"),
            ("", "linux"),
            (
                "ID=opensuse-tumbleweed\nVERSION_ID=\"20240101\"\nNAME=\"openSUSE Tumbleweed\"",
                "opensuse-tumbleweed20240101",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(describe_os(text), want, "{text:?}");
        }
    }
}
