//! The layering rule of the crate's map (see the crate docs): a top-level module uses only
//! the modules listed before it. Read from the sources, so that an import running back up the
//! layers fails the tests, not a later review.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The top-level modules, lowest first: the one place the allowed direction is written.
const LAYERS: &[&str] = &[
    "text",
    "bundled",
    "config",
    "model",
    "registry",
    "telemetry",
    "sources",
    "tracking",
    "feedback",
    "retraining",
    "service",
    "functions",
    "api",
    "server",
    "cli",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("source directory").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a source file belongs to.
fn owner(src: &Path, file: &Path) -> Option<String> {
    let first = file.strip_prefix(src).ok()?.components().next()?;
    let name = first.as_os_str().to_str()?;
    Some(name.trim_end_matches(".rs").to_string())
}

/// The top-level modules a file names as `crate::<module>` outside comments.
fn used_modules(text: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or_default();
        for (at, _) in code.match_indices("crate::") {
            let rest = &code[at + "crate::".len()..];
            let mut names = vec![rest];
            // `crate::{a, b::c}` names several modules at once.
            if let Some(group) = rest.strip_prefix('{') {
                names = group.split(',').collect();
            }
            for name in names {
                let module: String = name
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !module.is_empty() {
                    used.insert(module);
                }
            }
        }
    }
    used
}

#[test]
fn no_module_uses_a_module_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let rank = |name: &str| LAYERS.iter().position(|layer| *layer == name);
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    for file in &files {
        let Some(module) = owner(&src, file) else {
            continue;
        };
        let Some(own_rank) = rank(&module) else {
            continue; // lib.rs, main.rs and this test
        };
        let text = std::fs::read_to_string(file).expect("source file");
        for used in used_modules(&text) {
            if rank(&used).is_some_and(|used_rank| used_rank > own_rank) {
                violations.push(format!("{} uses crate::{used}", file.display()));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports that run up the layers:\n{}",
        violations.join("\n")
    );
}

#[test]
fn every_top_level_module_has_a_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
    for line in lib.lines() {
        if let Some(name) = line.strip_prefix("pub mod ") {
            let name = name.trim_end_matches(';');
            assert!(LAYERS.contains(&name), "{name} is missing from LAYERS");
        }
    }
}

#[test]
fn grouped_imports_are_read() {
    let used = used_modules("use crate::{model::features, registry::Registry}; // crate::cli");
    assert_eq!(
        used.into_iter().collect::<Vec<_>>(),
        vec!["model".to_string(), "registry".to_string()]
    );
}
