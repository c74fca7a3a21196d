//! What `org.osbuild.dpkg` puts on disk before the tree's own dpkg can run: the packages a
//! bootstrap must extract by hand (the essential set and everything it depends on, so that
//! dpkg, a shell and the tools maintainer scripts may assume are there), and the extraction
//! itself, several packages at once.
//!
//! Only that set is extracted twice (by hand, then again by dpkg, as mmdebstrap does); every
//! other package is unpacked once, by dpkg.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::error::StageError;

/// The control fields the bootstrap reads besides name, version and architecture.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Relations {
    /// `Essential: yes`.
    pub essential: bool,
    /// The package names `Pre-Depends` and `Depends` mention (every alternative, without
    /// versions or architecture qualifiers).
    pub depends: Vec<String>,
    /// The names `Provides` gives the package.
    pub provides: Vec<String>,
}

impl Relations {
    /// Reads the `Essential`, `Pre-Depends`, `Depends` and `Provides` values.
    pub fn parse(essential: &str, pre_depends: &str, depends: &str, provides: &str) -> Self {
        Relations {
            essential: essential.trim() == "yes",
            depends: names(pre_depends).chain(names(depends)).collect(),
            provides: names(provides).collect(),
        }
    }
}

/// The package names of a relationship field: `a (>= 1) | b:any, c` gives a, b, c.
fn names(field: &str) -> impl Iterator<Item = String> + '_ {
    field
        .split([',', '|'])
        .filter_map(|alt| alt.split_whitespace().next())
        .map(|n| n.split(':').next().unwrap_or(n).to_string())
        .filter(|n| !n.is_empty())
}

/// Indices of the packages to extract by hand: those named in `core` or marked essential, and
/// within `packages` everything they depend on, directly or not (a virtual name pulls in each
/// package providing it).
pub fn hand_extracted(packages: &[(&str, &Relations)], core: &[&str]) -> BTreeSet<usize> {
    let providers = |name: &str| -> Vec<usize> {
        (0..packages.len())
            .filter(|&i| {
                let (n, r) = packages[i];
                n == name || r.provides.iter().any(|p| p == name)
            })
            .collect()
    };
    let mut todo: Vec<usize> = (0..packages.len())
        .filter(|&i| packages[i].1.essential || core.contains(&packages[i].0))
        .collect();
    let mut set = BTreeSet::new();
    while let Some(i) = todo.pop() {
        if set.insert(i) {
            for d in &packages[i].1.depends {
                todo.extend(providers(d).into_iter().filter(|p| !set.contains(p)));
            }
        }
    }
    set
}

/// Indices of the kernel images (`linux-image-*`) in `packages` and of every package depending
/// on one, directly or not.
pub fn kernels_and_dependents(packages: &[(&str, &Relations)]) -> BTreeSet<usize> {
    let mut late: BTreeSet<usize> = (0..packages.len())
        .filter(|&i| packages[i].0.starts_with("linux-image-"))
        .collect();
    loop {
        let names: Vec<&str> = late.iter().map(|&i| packages[i].0).collect();
        let more: Vec<usize> = (0..packages.len())
            .filter(|i| !late.contains(i))
            .filter(|&i| {
                packages[i]
                    .1
                    .depends
                    .iter()
                    .any(|d| names.contains(&d.as_str()))
            })
            .collect();
        if more.is_empty() {
            return late;
        }
        late.extend(more);
    }
}

/// How many jobs run at once: one per core the stage may use.
pub fn jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `f` on every item, `jobs` at a time, results in the items' order; the first failure (in
/// that order) is the error, after every started job has finished.
pub fn each_parallel<T: Sync, R: Send>(
    items: &[T],
    jobs: usize,
    f: impl Fn(&T) -> Result<R, StageError> + Sync,
) -> Result<Vec<R>, StageError> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<R, StageError>>>> =
        Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, items.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                let r = f(item);
                let failed = r.is_err();
                results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
                if failed {
                    // Later items are not started once one failed.
                    next.store(items.len(), Ordering::Relaxed);
                }
            });
        }
    });
    let mut out = Vec::with_capacity(items.len());
    for r in results.into_inner().unwrap_or_else(|e| e.into_inner()) {
        match r {
            Some(r) => out.push(r?),
            None => break,
        }
    }
    Ok(out)
}

/// Whether the old way is asked for (every package extracted by hand, one at a time, and the
/// kernels unpacked with the rest): kept so that a test can compare its tree with the one the
/// fast path makes.
pub fn old_way_requested() -> bool {
    std::env::var_os("OSBUILD_DPKG_SERIAL_BOOTSTRAP").is_some_and(|v| v == "1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relationship_names() {
        let r = Relations::parse(
            "yes",
            "libc6 (>= 2.34)",
            "libacl1 (>= 2.2.23), awk | mawk:any, perl-base (>= 5.36)",
            "x-a, x-b (= 1)",
        );
        assert!(r.essential);
        assert_eq!(r.depends, ["libc6", "libacl1", "awk", "mawk", "perl-base"]);
        assert_eq!(r.provides, ["x-a", "x-b"]);
        assert_eq!(Relations::parse("no", "", "", ""), Relations::default());
    }

    #[test]
    fn essential_closure_within_the_set() {
        let rel =
            |e: bool, d: &str, p: &str| Relations::parse(if e { "yes" } else { "" }, "", d, p);
        let pkgs = [
            ("coreutils", rel(true, "libacl1, libc6", "")),
            ("libacl1", rel(false, "libc6", "")),
            ("libc6", rel(false, "libgcc-s1", "")),
            ("libgcc-s1", rel(false, "", "")),
            (
                "linux-image",
                rel(false, "kmod, initramfs-tools | linux-initramfs-tool", ""),
            ),
            ("kmod", rel(false, "libc6", "")),
            ("debconf", rel(false, "perl-base", "")),
            ("perl-base", rel(false, "", "perlapi-5.36")),
            ("dash", rel(true, "", "sh")),
            ("grep", rel(true, "awk", "")),
            ("mawk", rel(false, "", "awk")),
        ];
        let refs: Vec<(&str, &Relations)> = pkgs.iter().map(|(n, r)| (*n, r)).collect();
        let got: Vec<&str> = hand_extracted(&refs, &["debconf"])
            .into_iter()
            .map(|i| pkgs[i].0)
            .collect();
        assert_eq!(
            got,
            [
                "coreutils",
                "libacl1",
                "libc6",
                "libgcc-s1",
                "debconf",
                "perl-base",
                "dash",
                "grep",
                "mawk"
            ]
        );
    }

    #[test]
    fn kernels_and_what_needs_them_go_last() {
        let rel = |d: &str| Relations::parse("", "", d, "");
        let pkgs = [
            (
                "linux-image-amd64",
                rel("linux-image-6.1.0-57-amd64 (= 6.1.192-3)"),
            ),
            ("initramfs-tools", rel("initramfs-tools-core")),
            ("linux-image-6.1.0-57-amd64", rel("kmod, linux-base")),
            ("kmod", rel("")),
            ("firmware-helper", rel("linux-image-amd64")),
        ];
        let refs: Vec<(&str, &Relations)> = pkgs.iter().map(|(n, r)| (*n, r)).collect();
        let got: Vec<usize> = kernels_and_dependents(&refs).into_iter().collect();
        assert_eq!(got, [0, 2, 4]);
        assert!(kernels_and_dependents(&refs[1..2]).is_empty());
    }

    #[test]
    fn parallel_keeps_order_and_reports_the_first_failure() {
        let items: Vec<u32> = (0..20).collect();
        let got = each_parallel(&items, 3, |i| Ok(i * 2)).unwrap();
        assert_eq!(got, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        let err = each_parallel(&items, 2, |i| {
            if *i == 5 {
                Err(StageError::Other(format!("item {i}")))
            } else {
                Ok(*i)
            }
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "item 5");
        assert!(each_parallel(&[] as &[u32], 4, |i| Ok(*i))
            .unwrap()
            .is_empty());
    }
}
