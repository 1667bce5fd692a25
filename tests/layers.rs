//! The module layering of docs/architecture.md, checked: a module may use modules
//! listed before it, never one after it, so data and calls flow one way
//! (transport → session → engine → registry/queue → outbox → writer) and the
//! crate has no module cycles. Comments are not imports and are skipped.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Top-level modules of `src/`, lowest first. Keep in step with the diagram in
/// docs/architecture.md.
const LAYERS: &[&str] = &[
    "codec",
    "metrics",
    "command",
    "destination",
    "outbox",
    "store",
    "auth",
    "registry",
    "transport",
    "writer",
    "queue",
    "engine",
    "config",
    "admission",
    "drain",
    "app",
    "broker",
    "session",
    "listen",
    "server",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`None` for lib.rs, main.rs).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_owned())
}

/// Every `crate::NAME` a file's code (not its comments) names.
fn uses(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        let code = code.split(" //").next().unwrap_or(code);
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
            rest = after;
        }
    }
    found
}

#[test]
fn no_module_uses_a_module_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let rank = |m: &str| LAYERS.iter().position(|l| *l == m);
    let mut broken = Vec::new();
    let mut seen = BTreeSet::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        seen.insert(module.clone());
        let Some(own) = rank(&module) else {
            broken.push(format!("{module} is not in LAYERS"));
            continue;
        };
        let text = std::fs::read_to_string(file).expect("readable file");
        for used in uses(&text) {
            match rank(&used) {
                Some(r) if r > own => broken.push(format!(
                    "{}: {module} uses {used}, which is above it",
                    file.strip_prefix(&src).unwrap_or(file).display()
                )),
                None => broken.push(format!("{module} uses unknown module {used}")),
                _ => {}
            }
        }
    }
    assert!(broken.is_empty(), "layering broken:\n{}", broken.join("\n"));
    // Every listed layer exists, so the list cannot silently go stale.
    for layer in LAYERS {
        assert!(seen.contains(*layer), "{layer} is listed but has no file");
    }
}

#[test]
fn the_checker_sees_an_upward_use() {
    let text = "use crate::codec::Frame;\n// crate::server in a comment\nfn f() { crate::session::run(); }\n";
    let found = uses(text);
    assert_eq!(
        found.into_iter().collect::<Vec<_>>(),
        ["codec", "session"],
        "code is read, comments are not"
    );
}
