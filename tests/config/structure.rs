//! The shape of `src/` itself: no import circle between modules, and no file over 600
//! lines without a sentence at its top saying why.
//!
//! The import graph is read from the source text with a small lexer rather than a Rust
//! parser crate (`syn` would add a parser to every test build for two checks): comments,
//! strings and `#[cfg(test)] mod` blocks are dropped, then every `crate::`/`super::` path
//! (brace groups expanded) is an edge to the longest module it names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/a/b.rs` → `["a", "b"]`; `src/a/mod.rs` → `["a"]`; `src/lib.rs` → `[]`.
fn module_of(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src()).expect("under src");
    let mut parts: Vec<String> = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The text with comments, string and char literals blanked out.
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let rest = &text[i..];
        if rest.starts_with("//") {
            i += rest.find('\n').unwrap_or(rest.len());
        } else if rest.starts_with("/*") {
            i += rest.find("*/").map_or(rest.len(), |e| e + 2);
        } else if let Some(hashes) = raw_string_start(rest) {
            let close = format!("\"{}", "#".repeat(hashes));
            let body = 2 + hashes;
            i += body
                + rest[body..]
                    .find(&close)
                    .map_or(rest.len() - body, |e| e + close.len());
            out.push_str("\"\"");
        } else if b[i] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            i = j + 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && is_char_literal(rest) {
            let end = rest[1..].find('\'').map_or(1, |e| e + 2);
            i += end;
            out.push_str("' '");
        } else {
            let c = rest.chars().next().expect("not at the end");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// `r"`, `r#"`, `br"`… at the start: the number of `#`.
fn raw_string_start(s: &str) -> Option<usize> {
    let s = s.strip_prefix('b').unwrap_or(s);
    let s = s.strip_prefix('r')?;
    let hashes = s.len() - s.trim_start_matches('#').len();
    s[hashes..].starts_with('"').then_some(hashes)
}

/// `'x'` or `'\n'` (as opposed to a lifetime `'a`).
fn is_char_literal(s: &str) -> bool {
    let mut chars = s.chars().skip(1);
    match chars.next() {
        Some('\\') => true,
        Some(_) => chars.next() == Some('\''),
        None => false,
    }
}

/// The code without `#[cfg(test)] mod x { … }` / `mod x;` items.
fn without_test_modules(code: &str) -> String {
    let mut out = String::new();
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = rest[at + "#[cfg(test)]".len()..].trim_start();
        let item = after
            .trim_start_matches("pub ")
            .trim_start_matches("pub(crate) ");
        if let Some(m) = item.strip_prefix("mod ") {
            let semi = m.find(';');
            let open = m.find('{');
            match (open, semi) {
                (Some(o), s) if s.is_none_or(|s| o < s) => {
                    let body = &m[o..];
                    let mut depth = 0usize;
                    let mut end = body.len();
                    for (k, c) in body.char_indices() {
                        match c {
                            '{' => depth += 1,
                            '}' => {
                                depth -= 1;
                                if depth == 0 {
                                    end = k + 1;
                                    break;
                                }
                            }
                            _ => {}
                        }
                    }
                    rest = &body[end..];
                }
                (_, Some(s)) => rest = &m[s + 1..],
                _ => rest = "",
            }
        } else {
            // A test-only field or function: keep it (it imports little and rarely).
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The paths a `crate::…`/`super::…` reference starting at `s` names, brace groups
/// expanded: `a::{b, c::d}` → `a::b`, `a::c::d`.
fn expand(s: &str) -> Vec<Vec<String>> {
    fn path(s: &str, prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
        let mut parts = prefix;
        let mut i = 0;
        loop {
            let rest = &s[i..];
            if rest.starts_with('{') {
                let mut k = 1;
                loop {
                    let inner = s[i + k..].trim_start();
                    k = s.len() - i - inner.len();
                    if inner.starts_with('}') {
                        return i + k + 1;
                    }
                    k += path(inner, parts.clone(), out);
                    let inner = s[i + k..].trim_start();
                    k = s.len() - i - inner.len();
                    if inner.starts_with(',') {
                        k += 1;
                    } else if inner.starts_with('}') {
                        return i + k + 1;
                    } else {
                        return i + k;
                    }
                }
            }
            let ident: String = rest.chars().take_while(|c| is_ident(*c)).collect();
            if ident.is_empty() {
                out.push(parts);
                return i;
            }
            i += ident.len();
            parts.push(ident);
            if s[i..].starts_with("::") {
                i += 2;
            } else {
                out.push(parts);
                return i;
            }
        }
    }
    let mut out = Vec::new();
    path(s, Vec::new(), &mut out);
    out
}

/// Every module of `src/` and the modules each one imports (outside its own subtree).
fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let me = module_of(file);
        if me.iter().any(|p| p == "tests" || p == "suite") {
            continue;
        }
        let text = std::fs::read_to_string(file).expect("read a source file");
        let code = without_test_modules(&code_only(&text));
        let bytes = code.as_bytes();
        for (at, _) in code.match_indices("::") {
            // The start of a path: `crate` or a run of `super`s, not preceded by an ident
            // character or `::`.
            let head_start = code[..at]
                .rfind(|c: char| !(is_ident(c) || c == ':'))
                .map_or(0, |p| p + 1);
            if code[head_start..at].contains("::") || at + 2 > bytes.len() {
                continue;
            }
            let head = &code[head_start..at];
            let mut base: Vec<String> = match head {
                "crate" => Vec::new(),
                "super" => me[..me.len().saturating_sub(1)].to_vec(),
                _ => continue,
            };
            let mut rest = &code[at + 2..];
            while let Some(r) = rest.strip_prefix("super::") {
                base.pop();
                rest = r;
            }
            for tail in expand(rest) {
                let mut target = base.clone();
                target.extend(tail);
                while !target.is_empty() && !modules.contains(&target) {
                    target.pop();
                }
                let (a, b) = (me.join("::"), target.join("::"));
                let related = a == b
                    || target.is_empty()
                    || me.starts_with(&target)
                    || target.starts_with(&me);
                if !related {
                    graph.entry(a).or_default().insert(b);
                }
            }
        }
    }
    graph
}

/// One circle of the graph, if there is any.
fn a_circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        v: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|s| s == v) {
            let mut circle = stack[at..].to_vec();
            circle.push(v.to_string());
            return Some(circle);
        }
        if done.contains(v) {
            return None;
        }
        stack.push(v.to_string());
        for w in graph.get(v).into_iter().flatten() {
            if let Some(c) = visit(w, graph, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(v.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|v| visit(v, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_reader_sees_imports_in_every_form() {
    let code = code_only(
        "use crate::a::{b, c::{d, e}};\n// use crate::z;\nlet s = \"crate::y\";\nuse super::super::q;",
    );
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        found.extend(expand(&code[at + 7..]));
    }
    let names: Vec<String> = found.iter().map(|p| p.join("::")).collect();
    assert_eq!(names, ["a::b", "a::c::d", "a::c::e"]);
    let stripped = without_test_modules("a\n#[cfg(test)]\nmod tests {\n fn x() { {} }\n}\nb");
    assert_eq!(stripped.replace(char::is_whitespace, ""), "ab");
    let mut g = BTreeMap::new();
    g.insert("x".to_string(), BTreeSet::from(["y".to_string()]));
    g.insert("y".to_string(), BTreeSet::from(["x".to_string()]));
    assert!(a_circle(&g).is_some());
}

#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    let graph = import_graph();
    assert!(
        graph.len() > 40 && graph.values().map(BTreeSet::len).sum::<usize>() > 150,
        "the reader found too few imports to be reading the code: {graph:?}"
    );
    assert!(
        graph
            .get("tools::add")
            .is_some_and(|d| d.contains("bitrix")),
        "tools::add imports the portal client: {:?}",
        graph.get("tools::add")
    );
    if let Some(circle) = a_circle(&graph) {
        panic!(
            "import circle: {} (break it by moving what both need into a module of its own)",
            circle.join(" -> ")
        );
    }
}

#[test]
fn a_file_over_600_lines_says_why_at_its_top() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut silent = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read a source file");
        let lines = text.lines().count();
        if lines <= 600 {
            continue;
        }
        let header: String = text
            .lines()
            .take_while(|l| l.starts_with("//!"))
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase();
        let says_why = header.contains("long because")
            || header.contains("long for")
            || (header.contains("over ") && header.contains(" lines"));
        if !says_why {
            silent.push(format!("{} ({lines} lines)", file.display()));
        }
    }
    assert!(
        silent.is_empty(),
        "files over 600 lines whose top comment does not say why they are long (\"Over N lines: …\"): {silent:?}"
    );
}
