//! The structure ARCHITECTURE.md promises, checked on the sources themselves: no circle between
//! the modules of a crate, `unsafe` only in the syscall layer (`crates/sys`), no function much
//! over 80 lines, no `too_many_arguments` allowance. Reads files only; needs nothing but the
//! checkout.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The longest production function we accept, in lines from `fn` to its closing brace.
const MAX_FN_LINES: usize = 90;

/// Crates of the workspace whose `src/` is checked (the syscall layer is checked separately).
const CRATES: &[&str] = &[
    ".",
    "stages",
    "assemblers",
    "runners",
    "sources",
    "crates/protocol",
    "crates/qcow2",
    "crates/docgen",
    "crates/fuzz",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.map(Result::unwrap) {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The production code of a source file: everything before its `#[cfg(test)]` module, without
/// comment lines (doc links are no dependency).
fn production(text: &str) -> String {
    let code = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    };
    code.lines()
        .map(|l| {
            if l.trim_start().starts_with("//") {
                ""
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `src/a/b.rs` -> ["a", "b"]; `src/a/mod.rs` -> ["a"]; `src/lib.rs` -> [].
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if !matches!(stem, "mod" | "lib" | "main") {
        parts.push(stem.to_owned());
    }
    parts
}

/// The sibling modules a file refers to, as `crate::X::...` paths resolved to full paths.
fn references(module: &[String], text: &str) -> BTreeSet<Vec<String>> {
    let mut refs = BTreeSet::new();
    let words = |s: &str| -> Vec<String> {
        s.split("::")
            .map(|w| {
                w.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect::<String>()
            })
            .take_while(|w| !w.is_empty() && w.chars().next().unwrap().is_lowercase())
            .collect()
    };
    for (i, _) in text.match_indices("crate::") {
        if text[..i].ends_with('$') || text[..i].ends_with("pub(") {
            continue;
        }
        refs.insert(words(&text[i + "crate::".len()..]));
    }
    for (i, _) in text.match_indices("super::") {
        if text[..i].ends_with("super::") {
            continue;
        }
        let mut base = module.to_vec();
        base.pop();
        base.extend(words(&text[i + "super::".len()..]));
        refs.insert(base);
    }
    refs
}

/// Edges between sibling modules: for every module path and every reference, the pair of
/// children of their deepest common parent (a -> b means something in a uses something in b).
fn sibling_edges(modules: &BTreeMap<Vec<String>, String>) -> BTreeSet<(Vec<String>, Vec<String>)> {
    let mut edges = BTreeSet::new();
    for (from, text) in modules {
        for to in references(from, text) {
            let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
            if common >= from.len() || common >= to.len() {
                continue; // a module using its own descendants or ancestors
            }
            // Resolve `to` to the longest prefix that is a module.
            let to_mod = (common + 1..=to.len())
                .rev()
                .map(|n| to[..n].to_vec())
                .find(|p| modules.contains_key(p));
            if to_mod.is_none() {
                continue;
            }
            edges.insert((from[..=common].to_vec(), to[..=common].to_vec()));
        }
    }
    edges
}

/// Every edge that lies on a circle: a -> b where b leads back to a.
fn edges_on_circles(
    edges: &BTreeSet<(Vec<String>, Vec<String>)>,
) -> Vec<(Vec<String>, Vec<String>)> {
    let reaches = |from: &Vec<String>, to: &Vec<String>| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(n) = todo.pop() {
            if &n == to {
                return true;
            }
            if seen.insert(n.clone()) {
                todo.extend(
                    edges
                        .iter()
                        .filter(|(a, _)| *a == n)
                        .map(|(_, b)| b.clone()),
                );
            }
        }
        false
    };
    edges
        .iter()
        .filter(|(a, b)| reaches(b, a))
        .cloned()
        .collect()
}

#[test]
fn no_circle_between_the_modules_of_a_crate() {
    let mut circles = Vec::new();
    for krate in CRATES {
        let src = root().join(krate).join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let modules: BTreeMap<Vec<String>, String> = files
            .iter()
            .filter(|f| !f.starts_with(src.join("bin")) && !f.ends_with("tests.rs"))
            .map(|f| {
                let text = fs::read_to_string(f).unwrap();
                (module_path(&src, f), production(&text))
            })
            .collect();
        for (a, b) in edges_on_circles(&sibling_edges(&modules)) {
            circles.push(format!("{krate}: {} -> {}", a.join("::"), b.join("::")));
        }
    }
    assert!(
        circles.is_empty(),
        "module circles:\n{}",
        circles.join("\n")
    );
}

/// (file, fn line, length) of every production function longer than `max` lines.
fn long_functions(file: &Path, max: usize) -> Vec<(usize, usize)> {
    let text = fs::read_to_string(file).unwrap();
    let code = production(&text);
    let lines: Vec<&str> = code.lines().collect();
    let mut long = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        let is_fn = [
            "fn ",
            "pub fn ",
            "pub(crate) fn ",
            "async fn ",
            "pub async fn ",
        ]
        .iter()
        .any(|p| t.starts_with(p))
            || (t.starts_with("pub(") && t.contains(") fn "));
        // A declaration without a body (a trait method) ends with `;` before any `{`.
        let head_end = lines[i..]
            .iter()
            .find(|l| l.trim_end().ends_with('{') || l.trim_end().ends_with(';'));
        if !is_fn || head_end.is_none_or(|l| l.trim_end().ends_with(';')) {
            continue;
        }
        let indent = line.len() - t.len();
        let close = " ".repeat(indent) + "}";
        if let Some(len) = lines[i..].iter().position(|l| *l == close) {
            if len + 1 > max {
                long.push((i + 1, len + 1));
            }
        }
    }
    long
}

#[test]
fn no_production_function_much_over_80_lines() {
    let mut long = Vec::new();
    for krate in CRATES.iter().chain(&["crates/sys"]) {
        let mut files = Vec::new();
        rust_files(&root().join(krate).join("src"), &mut files);
        for f in files {
            for (line, len) in long_functions(&f, MAX_FN_LINES) {
                let rel = f.strip_prefix(root()).unwrap().display().to_string();
                long.push(format!("{rel}:{line}: {len} lines"));
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions over {MAX_FN_LINES} lines:\n{}",
        long.join("\n")
    );
}

#[test]
fn unsafe_only_in_the_syscall_layer() {
    let mut found = Vec::new();
    for krate in CRATES {
        let mut files = Vec::new();
        let dir = root().join(krate);
        rust_files(&dir.join("src"), &mut files);
        rust_files(&dir.join("tests"), &mut files);
        for f in files {
            let text = fs::read_to_string(&f).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap();
                if code.contains("unsafe ") || code.contains("unsafe{") {
                    found.push(format!("{}:{}: {}", f.display(), n + 1, line.trim()));
                }
                if line.contains("too_many_arguments") && f != Path::new(file!()) {
                    found.push(format!("{}:{}: {}", f.display(), n + 1, line.trim()));
                }
            }
        }
    }
    // This file names both words in strings; everything else must not.
    found.retain(|l| !l.contains("tests/architecture.rs"));
    assert!(
        found.is_empty(),
        "outside crates/sys:\n{}",
        found.join("\n")
    );
}

#[test]
fn every_crate_outside_the_syscall_layer_forbids_unsafe() {
    let mut missing = Vec::new();
    for krate in CRATES {
        let src = root().join(krate).join("src");
        let mut roots = vec![src.join("lib.rs"), src.join("main.rs")];
        rust_files(&src.join("bin"), &mut roots);
        for p in roots.into_iter().filter(|p| p.exists()) {
            if !fs::read_to_string(&p)
                .unwrap()
                .contains("#![forbid(unsafe_code)]")
            {
                missing.push(p.display().to_string());
            }
        }
    }
    assert!(
        missing.is_empty(),
        "no #![forbid(unsafe_code)] in:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_cycle_finder_finds_a_planted_cycle() {
    let m = |s: &str| -> Vec<String> { s.split("::").map(String::from).collect() };
    let mut modules = BTreeMap::new();
    modules.insert(m("a"), "use crate::b::X;".to_owned());
    modules.insert(m("b"), "use crate::c::Y;".to_owned());
    modules.insert(m("c"), "fn f() { crate::a::g() }".to_owned());
    modules.insert(m("d::e"), "use super::f::Z;".to_owned());
    modules.insert(m("d::f"), "use super::e::W;".to_owned());
    let edges = sibling_edges(&modules);
    assert!(edges.contains(&(m("d::e"), m("d::f"))), "{edges:?}");
    assert_eq!(edges_on_circles(&edges).len(), 5, "{edges:?}");
    modules.insert(m("c"), "fn f() {}".to_owned());
    modules.insert(m("d::f"), "fn g() {}".to_owned());
    assert_eq!(edges_on_circles(&sibling_edges(&modules)), vec![]);
}
