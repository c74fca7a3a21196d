//! osbuild HEAD's own Python modules import its `osbuild` package from `/run/osbuild/lib`
//! (`PYTHONPATH`). A libdir that holds the package itself is self-contained; one with an
//! empty `osbuild` directory (as osbuild's distribution packages install `/usr/lib/osbuild`)
//! gets the host's installed package bound there, as HEAD binds its own.

use std::path::{Path, PathBuf};

/// Where distributions install Python packages, below each `ROOT/lib/python3*`.
const PACKAGE_DIRS: &[&str] = &["site-packages", "dist-packages"];

/// The host's installed `osbuild` package when `libdir/osbuild` is an empty directory.
pub fn osbuild_package_for(libdir: &Path) -> Option<PathBuf> {
    find_osbuild_package(libdir, &[Path::new("/usr"), Path::new("/usr/local")])
}

/// [`osbuild_package_for`], looking below `roots` (`ROOT/lib/python3*/{site,dist}-packages`,
/// and Debian's `ROOT/lib/python3/dist-packages`).
fn find_osbuild_package(libdir: &Path, roots: &[&Path]) -> Option<PathBuf> {
    let mut entries = std::fs::read_dir(libdir.join("osbuild")).ok()?;
    if entries.next().is_some() {
        return None;
    }
    roots.iter().find_map(|root| {
        let lib = root.join("lib");
        let mut pythons: Vec<PathBuf> = std::fs::read_dir(&lib)
            .ok()?
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
            .map(|e| e.path())
            .collect();
        pythons.sort();
        pythons.iter().rev().find_map(|python| {
            PACKAGE_DIRS
                .iter()
                .map(|dir| python.join(dir).join("osbuild"))
                .find(|p| p.join("__init__.py").is_file())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_osbuild_dir_gets_the_installed_package_and_a_full_one_keeps_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let (libdir, root) = (dir.path().join("lib"), dir.path().join("usr"));
        std::fs::create_dir_all(libdir.join("osbuild")).unwrap();
        assert_eq!(
            find_osbuild_package(&libdir, &[&root]),
            None,
            "nothing installed"
        );
        let package = root.join("lib/python3.11/site-packages/osbuild");
        std::fs::create_dir_all(&package).unwrap();
        std::fs::write(package.join("__init__.py"), "").unwrap();
        assert_eq!(find_osbuild_package(&libdir, &[&root]), Some(package));
        std::fs::write(libdir.join("osbuild/__init__.py"), "").unwrap();
        assert_eq!(
            find_osbuild_package(&libdir, &[&root]),
            None,
            "the libdir has its own"
        );
        assert_eq!(
            find_osbuild_package(&dir.path().join("none"), &[&root]),
            None
        );
    }
}
