//! The routes the routers register, read from their source (axum cannot list a router's
//! routes), so a test can hold the OpenAPI document to them. It reads every `route` call
//! under `src/api/` (every route carries its whole path: `api::router` nests none), with
//! the `{slash}` variants a `for slash in [...]` loop adds, TPP's `dispatch` table and the
//! rotation paths of `tpp::rotation::owns`.
//! A route's path must be a string literal (or `&format!("…")` in the `{slash}` loop): a
//! `const` or computed path fails the scan rather than being guessed.
//!
//! `metrics::listener_router` is left out: it is the metrics-only listener (`[metrics]
//! listen`), another port with no authentication, not the API the document describes;
//! [`metrics_listener`] lists its routes so a test can hold them to what the document says.

use std::path::{Path, PathBuf};

/// TPP paths ignore case: compared lower-cased.
pub fn normalize(path: &str) -> String {
    let l = path.to_ascii_lowercase();
    if l.starts_with("/vedauth/") || l.starts_with("/vedsdk/") {
        l
    } else {
        path.to_string()
    }
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The text inside the parenthesis that opens at `open` (balanced, strings skipped).
fn balanced(s: &str, open: usize) -> &str {
    let b = s.as_bytes();
    let (mut depth, mut i, mut in_str) = (0, open, false);
    while i < b.len() {
        match b[i] {
            b'\\' if in_str => i += 1,
            b'"' => in_str = !in_str,
            b'(' if !in_str => depth += 1,
            b')' if !in_str => {
                depth -= 1;
                if depth == 0 {
                    return &s[open + 1..i];
                }
            }
            _ => {}
        }
        i += 1;
    }
    panic!("unbalanced parenthesis");
}

/// `text` without the function whose signature starts at `sig` (its `{ … }` body, braces in
/// strings skipped), and that function's text.
fn split_fn(text: &str, sig: &str) -> (String, String) {
    let Some(start) = text.find(sig) else { return (text.to_string(), String::new()) };
    let b = text.as_bytes();
    let (mut depth, mut i, mut in_str) = (0, start + text[start..].find('{').expect("a function body"), false);
    while i < b.len() {
        match b[i] {
            b'\\' if in_str => i += 1,
            b'"' => in_str = !in_str,
            b'{' if !in_str => depth += 1,
            b'}' if !in_str => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            _ => {}
        }
        i += 1;
    }
    (format!("{}{}", &text[..start], &text[i + 1..]), text[start..=i].to_string())
}

fn first_literal(s: &str) -> Option<&str> {
    let start = s.find('"')? + 1;
    let end = start + s[start..].find('"')?;
    Some(&s[start..end])
}

const METHODS: [&str; 7] = ["get", "post", "put", "delete", "patch", "head", "options"];

/// (METHOD, path) of every route registered under `src/api/`.
pub fn registered() -> Vec<(String, String)> {
    let api = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
    let mut list = Vec::new();
    files(&api, &mut list);
    let needle = concat!(".rou", "te(");
    let mut out = Vec::new();
    for file in list {
        let text = std::fs::read_to_string(&file).unwrap();
        // Routers built by unit tests are not the daemon's.
        let text = text.split("#[cfg(test)]\nmod tests").next().unwrap().to_string();
        let rel = file.strip_prefix(&api).unwrap();
        let text = if rel == Path::new("metrics.rs") { split_fn(&text, LISTENER).0 } else { text };
        let slashes: Vec<String> = match text.find("for slash in [") {
            Some(i) => {
                let inner = &text[i + "for slash in [".len()..];
                inner[..inner.find(']').unwrap()].split(',').map(|s| s.trim().trim_matches('"').to_string()).collect()
            }
            None => vec![String::new()],
        };
        for (i, _) in text.match_indices(needle) {
            let call = balanced(&text, i + needle.len() - 1);
            let (path, methods) = route_call(call, &file);
            let variants: Vec<String> = if path.contains("{slash}") {
                slashes.iter().map(|s| path.replace("{slash}", s)).collect()
            } else {
                vec![path.to_string()]
            };
            for v in variants {
                let v = v.replace("{{", "{").replace("}}", "}");
                for m in &methods {
                    out.push((m.to_ascii_uppercase(), v.clone()));
                }
            }
        }
        if rel == Path::new("tpp.rs") {
            out.extend(tpp_routes(&text));
        }
        // TPP's rotation calls: the paths `tpp::rotation::owns` matches, all POST.
        if rel == Path::new("tpp/rotation.rs") {
            let (_, owns) = split_fn(&text, "pub fn owns(");
            assert!(!owns.is_empty(), "tpp/rotation.rs has no `pub fn owns(`");
            out.extend(
                owns.split('"').skip(1).step_by(2).filter(|l| l.starts_with("/vedsdk/")).map(|l| ("POST".to_string(), l.to_string())),
            );
        }
    }
    out
}

/// The path and methods of one `route(…)` call's arguments.
fn route_call<'a>(call: &'a str, file: &Path) -> (&'a str, Vec<&'static str>) {
    let lead = call.trim_start();
    assert!(
        lead.starts_with('"') || lead.starts_with("&format!(\""),
        "{}: route({}…) has no path literal: register routes with a literal path (the OpenAPI route scan reads them)",
        file.display(),
        lead.chars().take(40).collect::<String>()
    );
    let path = first_literal(call).expect("a route path literal");
    let args = &call[call.find(path).unwrap() + path.len()..];
    let methods: Vec<&'static str> = METHODS
        .iter()
        .copied()
        .filter(|m| {
            args.match_indices(&format!("{m}("))
                .any(|(j, _)| j == 0 || !args.as_bytes()[j - 1].is_ascii_alphanumeric() && args.as_bytes()[j - 1] != b'_')
        })
        .collect();
    assert!(!methods.is_empty(), "{}: no method in route {path}", file.display());
    (path, methods)
}

/// The metrics-only listener's function in `metrics.rs`.
const LISTENER: &str = "pub fn listener_router(";

/// (METHOD, path) of the metrics-only listener's routes (`metrics::listener_router`).
pub fn metrics_listener() -> Vec<(String, String)> {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api/metrics.rs");
    let (_, body) = split_fn(&std::fs::read_to_string(&file).unwrap(), LISTENER);
    assert!(!body.is_empty(), "no {LISTENER} in {}", file.display());
    let needle = concat!(".rou", "te(");
    let mut out = Vec::new();
    for (i, _) in body.match_indices(needle) {
        let (path, methods) = route_call(balanced(&body, i + needle.len() - 1), &file);
        out.extend(methods.iter().map(|m| (m.to_ascii_uppercase(), path.to_string())));
    }
    out
}

/// TPP's `dispatch`: `(&Method::X, "/ved…")` arms and the POST SSH calls of `ssh_call`.
fn tpp_routes(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices("(&Method::") {
        let rest = &text[i + "(&Method::".len()..];
        let method: String = rest.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
        let after = &rest[method.len()..];
        if let Some(p) = after.strip_prefix(", \"").and_then(|a| a.split('"').next()) {
            out.push((method, p.to_string()));
        }
    }
    let start = text.find("let ssh_call").expect("tpp's ssh_call table");
    let block = &text[start..start + text[start..].find("};").unwrap()];
    for lit in block.split('"').skip(1).step_by(2) {
        if lit.starts_with("/vedsdk/") {
            out.push(("POST".into(), lit.to_string()));
        }
    }
    out
}
