//! The one-way layers of docs/ARCHITECTURE.md, checked on the source: each top-level module
//! names only the modules below it, and the faces (`src/api/`) neither call the token's object
//! functions nor the store's key-creation writers — creating, replacing and deleting keys is the
//! core's (`core::create`, `core::keys`, `core::deploy`). A new violation fails here, with the
//! file and line, instead of waiting for a reviewer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Top-level module → the modules it may name (`crate::<module>`).
fn allowed() -> BTreeMap<&'static str, &'static [&'static str]> {
    BTreeMap::from([
        ("names", &[][..]),
        ("clock", &[][..]),
        ("test_hooks", &[][..]),
        ("material", &["clock", "names"][..]),
        ("config", &["clock", "material", "names"][..]),
        ("token", &["clock", "config", "material", "names"][..]),
        ("store", &["clock", "material", "names"][..]),
        ("core", &["clock", "config", "material", "names", "store", "token", "test_hooks"][..]),
        ("sync", &["clock", "config", "core", "material", "names", "store", "token", "test_hooks"][..]),
        ("api", &["clock", "config", "core", "material", "names", "store", "sync", "token", "test_hooks"][..]),
        // The client, and the commands that run without a daemon (`config check` opens tokens).
        ("cli", &["clock", "config", "core", "material", "names", "store", "token"][..]),
        ("server", &["clock", "api", "config", "core", "material", "names", "store", "sync", "token", "test_hooks"][..]),
    ])
}

/// What a face may not call: the token's object functions and the store's writers of keys.
const FACE_FORBIDDEN: &[&str] = &[
    "token::objects",
    "token::secret::create",
    "token::at_rest",
    "token::byok",
    "token::wrap",
    ".add_intent(",
    ".add_intents(",
    ".commit_key(",
    ".commit_keys(",
    ".drop_intent(",
    ".begin_delete(",
    ".finish_delete(",
    ".forget_missing(",
    ".apiops_remove(",
];

/// Files of `src/api/` exempt from the rule (none: the HTTPS listener's own key is the core's,
/// `core::tls_identity`).
const FACE_EXEMPT: &[&str] = &[];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The source without comments (doc comments name other layers freely).
fn code_lines(text: &str) -> Vec<(usize, String)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.split("//").next().unwrap_or("").to_string()))
        .filter(|(_, l)| !l.trim().is_empty())
        .collect()
}

#[test]
fn top_level_modules_name_only_the_layers_below_them() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let allowed = allowed();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut violations = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&root).unwrap();
        let top = rel.components().next().unwrap().as_os_str().to_str().unwrap().trim_end_matches(".rs").to_string();
        let Some(ok) = allowed.get(top.as_str()) else { continue }; // lib.rs, main.rs
        for (n, line) in code_lines(&std::fs::read_to_string(f).unwrap()) {
            for (i, _) in line.match_indices("crate::") {
                let name: String = line[i + 7..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                if name != top && allowed.contains_key(name.as_str()) && !ok.contains(&name.as_str()) {
                    violations.push(format!("src/{}:{n}: {top} names crate::{name}", rel.display()));
                }
            }
        }
    }
    assert!(violations.is_empty(), "layers run one way (docs/ARCHITECTURE.md):\n{}", violations.join("\n"));
}

#[test]
fn faces_neither_touch_token_objects_nor_write_keys_to_the_store() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src/api"), &mut files);
    assert!(files.len() > 20, "the faces are where this test looks: {files:?}");
    let mut violations = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(root).unwrap().to_string_lossy().to_string();
        if FACE_EXEMPT.contains(&rel.as_str()) {
            continue;
        }
        for (n, line) in code_lines(&std::fs::read_to_string(f).unwrap()) {
            for bad in FACE_FORBIDDEN.iter().filter(|b| line.contains(*b)) {
                violations.push(format!("{rel}:{n}: {bad}"));
            }
        }
    }
    assert!(violations.is_empty(), "faces translate; the core writes (docs/ARCHITECTURE.md):\n{}", violations.join("\n"));
}

/// The checks above can fail: a line that breaks each rule is found.
#[test]
fn the_checks_find_what_they_look_for() {
    let lines = code_lines("use crate::api::tls; // crate::sync in a comment\nlet x = token::objects::destroy(c, id);");
    assert_eq!(lines.len(), 2);
    assert!(lines[0].1.contains("crate::api") && !lines[0].1.contains("crate::sync"));
    assert!(FACE_FORBIDDEN.iter().any(|b| lines[1].1.contains(b)));
}
