//! The workspace's layers, checked from its sources: each heavy dependency
//! is named by exactly one crate (its fence), and no crate's top-level
//! modules import each other in a cycle.
//!
//! Module edges are the `crate::NAME` paths a top-level module's files use
//! (comments left out; `super::` only reaches within one top-level module).
//! Dependencies are the `[dependencies]` of each member's `Cargo.toml`,
//! the normal edges `cargo tree -i NAME -e normal` follows.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each heavy dependency and the only workspace crates that may name it.
const FENCES: &[(&str, &[&str])] = &[
    ("rocksdb", &["batos-store"]),
    ("wasmtime", &["batos-sandbox"]),
    ("wasmparser", &["batos-sandbox"]),
    ("wat", &["batos-sandbox"]),
    ("tantivy", &["batos-memory"]),
    ("mistralrs", &["batos-cognition"]),
    ("safetensors", &["batos-cognition"]),
    ("ratatui", &["batos-inspect"]),
    // The bridge and the client; the bench measures a bare ROUTER too.
    ("zmq", &["batos-kernel", "batos-client", "batos-bench"]),
    ("tmq", &["batos-kernel"]),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf()
}

fn read_toml(path: &Path) -> toml::Table {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.parse()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Workspace members: (package name, directory).
fn members() -> Vec<(String, PathBuf)> {
    let root = root();
    let workspace = read_toml(&root.join("Cargo.toml"));
    let members = workspace["workspace"]["members"]
        .as_array()
        .expect("workspace.members");
    members
        .iter()
        .map(|m| {
            let dir = root.join(m.as_str().expect("member path"));
            let manifest = read_toml(&dir.join("Cargo.toml"));
            let name = manifest["package"]["name"]
                .as_str()
                .expect("package.name")
                .to_string();
            (name, dir)
        })
        .collect()
}

#[test]
fn each_heavy_dependency_is_named_by_its_one_crate() {
    let mut named_by: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (name, dir) in members() {
        let manifest = read_toml(&dir.join("Cargo.toml"));
        let Some(deps) = manifest.get("dependencies").and_then(|d| d.as_table()) else {
            continue;
        };
        for (dep, _) in FENCES {
            if deps.contains_key(*dep) {
                named_by.entry(dep).or_default().insert(name.clone());
            }
        }
    }
    let mut breaches = Vec::new();
    for (dep, allowed) in FENCES {
        let users = named_by.remove(dep).unwrap_or_default();
        for user in &users {
            if !allowed.contains(&user.as_str()) {
                breaches.push(format!("{user} names {dep}, which only {allowed:?} may"));
            }
        }
        assert!(!users.is_empty(), "no crate names {dep}: update the fences");
    }
    assert!(
        breaches.is_empty(),
        "fences breached:\n{}",
        breaches.join("\n")
    );
}

/// The top-level modules of a crate's `src/` and the files of each.
fn modules(src: &Path) -> BTreeMap<String, Vec<PathBuf>> {
    let mut out: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("dir entry").path();
            let rel = path.strip_prefix(src).expect("under src");
            if path.is_dir() {
                // Binaries are roots of their own, not modules of the library.
                if rel != Path::new("bin") {
                    stack.push(path);
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let mut parts = rel.components();
            let first = parts.next().expect("a file").as_os_str().to_string_lossy();
            let top = match parts.next() {
                None if first == "lib.rs" || first == "main.rs" => continue,
                None => first.trim_end_matches(".rs").to_string(),
                Some(_) => first.to_string(),
            };
            out.entry(top).or_default().push(path);
        }
    }
    out
}

/// The names `crate::NAME` and `crate::{NAME, ...}` paths in `text` start with.
fn crate_paths(text: &str) -> BTreeSet<String> {
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut names = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `batos_crate::`, not `crate::`
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut segment = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                if depth == 0 || (c == ',' && depth == 1) {
                    names.insert(leading_ident(&segment));
                    segment.clear();
                    if depth == 0 {
                        break;
                    }
                } else {
                    segment.push(c);
                }
            }
        } else {
            names.insert(leading_ident(rest));
        }
    }
    names.remove("");
    names
}

fn leading_ident(s: &str) -> String {
    s.trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// Strongly connected components of more than one module (Tarjan).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<BTreeSet<String>> {
    struct State<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<BTreeSet<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in &s.graph[v] {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = BTreeSet::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.insert(w.to_string());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                s.found.push(component);
            }
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !state.index.contains_key(v.as_str()) {
            visit(&mut state, v);
        }
    }
    state.found
}

fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let modules = modules(src);
    modules
        .iter()
        .map(|(name, files)| {
            let mut uses = BTreeSet::new();
            for file in files {
                let text = std::fs::read_to_string(file).expect("read source");
                uses.extend(
                    crate_paths(&text)
                        .into_iter()
                        .filter(|n| n != name && modules.contains_key(n)),
                );
            }
            (name.clone(), uses)
        })
        .collect()
}

#[test]
fn no_crate_has_an_import_cycle() {
    let root = root();
    let mut failures = Vec::new();
    let mut checked = 0;
    for (name, dir) in members() {
        let src = dir.join("src");
        if !src.is_dir() {
            continue;
        }
        checked += 1;
        let rel = src
            .strip_prefix(&root)
            .expect("under root")
            .display()
            .to_string();
        for cycle in cycles(&module_graph(&src)) {
            failures.push(format!(
                "{name} ({rel}): modules {cycle:?} import each other"
            ));
        }
    }
    assert!(checked >= 8, "only {checked} crates found");
    assert!(
        failures.is_empty(),
        "import cycles:\n{}",
        failures.join("\n")
    );
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let graph = |edges: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            g.entry(a.to_string()).or_default().insert(b.to_string());
            g.entry(b.to_string()).or_default();
        }
        g
    };
    assert!(cycles(&graph(&[("a", "b"), ("b", "c")])).is_empty());
    let found = cycles(&graph(&[("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")]));
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].len(), 3);
    let text = "use crate::{a::X, b};\n// crate::c\nlet y = crate::d::f(); batos_crate::e;";
    let names: Vec<String> = crate_paths(text).into_iter().collect();
    assert_eq!(names, ["a", "b", "d"]);
}
