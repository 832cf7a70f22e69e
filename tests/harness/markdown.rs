//! Reading the book's markdown the way mdBook and rustdoc read it.
//!
//! This file is shared by `build.rs` (which turns every Rust block of the
//! book into a module of one test binary) and by the harness's own tests. It
//! uses only `std`, so the build script needs no dependencies.
//!
//! What it reproduces:
//! - code fences (backticks or tildes, any indentation, as in lists);
//! - `{{#include path}}` and `{{#rustdoc_include path}}` with a line range
//!   (`:5`, `:5:10`, `:5:`, `::10`) or an anchor (`:name`, between
//!   `ANCHOR: name` and `ANCHOR_END: name` comments), relative to the file
//!   that contains them, nested up to 10 deep, `\{{#...}}` escaped — all as
//!   mdBook 0.5's links preprocessor does;
//! - rustdoc's hidden lines (`# ` hides a line, `##` shows a literal `#`);
//! - rustdoc's fence attributes and its wrapping of a snippet without
//!   `fn main` into one.

use std::fmt::Write as _;
use std::path::Path;

/// What a snippet's fence asks of it, in rustdoc's terms.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attrs {
    /// `ignore`: not compiled here (allowed only for code included from
    /// `listings`, which the compiler already sees).
    pub ignore: bool,
    /// `no_run`: compiled, not run.
    pub no_run: bool,
    /// `should_panic`: must exit with a failure.
    pub should_panic: bool,
    /// `compile_fail`: must not compile.
    pub compile_fail: bool,
    /// `E0308` and the like, with `compile_fail`: the error that must occur.
    pub error_codes: Vec<String>,
}

/// One Rust block of the book, ready to compile.
#[derive(Clone, Debug)]
pub struct Snippet {
    /// The markdown file, as given to [`snippets`] (e.g. `src/ch00-arrays.md`).
    pub file: String,
    /// 1-based line of the opening fence.
    pub line: usize,
    pub attrs: Attrs,
    /// The code rustdoc would compile: includes expanded, hidden lines shown.
    pub code: String,
    /// The stated output: the line of its fence and its text.
    pub expected: Option<(usize, String)>,
    /// `<!-- harness: ... -->` written just before the fence (used by the
    /// harness's own fixtures to say what must happen).
    pub directive: Option<String>,
}

/// A fenced block as written.
#[derive(Clone, Debug)]
pub struct Fence {
    line: usize,
    /// What follows the opening fence (`rust`, `output`, `rust,no_run`, ...).
    pub info: String,
    /// The lines between the fences, each ending with a newline.
    pub body: String,
    /// The nearest non-blank line before the opening fence.
    line_before: String,
    /// Whether only blank lines separate this fence from the previous one.
    follows_fence: bool,
}

/// rustdoc's attributes; any of them alone makes a block Rust.
const RUSTDOC_ATTRS: &[&str] = &[
    "ignore",
    "should_panic",
    "no_run",
    "compile_fail",
    "test_harness",
    "standalone_crate",
    "edition2015",
    "edition2018",
    "edition2021",
    "edition2024",
];

/// mdBook's own attributes for Rust blocks, which rustdoc ignores.
const MDBOOK_ATTRS: &[&str] = &["editable", "noplayground", "mdbook-runnable"];

/// The fence language that marks a stated output.
pub const OUTPUT_LANG: &str = "output";

/// Every fenced block of `text`, in order; an unclosed fence is an error.
pub fn fences(text: &str) -> Result<Vec<Fence>, String> {
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    let mut line_before = String::new();
    let mut last_close: Option<usize> = None;
    let mut blank_since_close = true;
    while i < lines.len() {
        let line = lines[i];
        let indent = line.len() - line.trim_start().len();
        let rest = &line[indent..];
        let fence_char = rest.chars().next().filter(|c| *c == '`' || *c == '~');
        let Some(ch) = fence_char else {
            if !line.trim().is_empty() {
                line_before = line.trim().to_string();
                blank_since_close = false;
            }
            i += 1;
            continue;
        };
        let count = rest.chars().take_while(|c| *c == ch).count();
        if count < 3 {
            line_before = line.trim().to_string();
            blank_since_close = false;
            i += 1;
            continue;
        }
        let info = rest[count..].trim().to_string();
        let open = i;
        let mut body = String::new();
        i += 1;
        let mut closed = false;
        while i < lines.len() {
            let l = lines[i];
            let t = l.trim();
            if t.len() >= count && t.chars().all(|c| c == ch) {
                closed = true;
                break;
            }
            // Content lines lose up to the fence's indentation.
            let strip = l.len() - l.trim_start().len();
            body.push_str(&l[strip.min(indent)..]);
            body.push('\n');
            i += 1;
        }
        if !closed {
            return Err(format!("line {}: code fence is never closed", open + 1));
        }
        let follows_fence = last_close.is_some() && blank_since_close;
        out.push(Fence {
            line: open + 1,
            info,
            body,
            line_before: std::mem::take(&mut line_before),
            follows_fence,
        });
        last_close = Some(i);
        blank_since_close = true;
        i += 1;
    }
    Ok(out)
}

/// Splits a fence's info string into rustdoc's tokens.
fn tokens(info: &str) -> Vec<&str> {
    info.split([',', ' ', '\t'])
        .filter(|t| !t.is_empty())
        .collect()
}

/// Whether rustdoc (and so `mdbook test`) treats a fence as Rust.
pub fn is_rust(info: &str) -> bool {
    let toks = tokens(info);
    toks.first() == Some(&"rust")
        || (!toks.is_empty()
            && toks
                .iter()
                .all(|t| RUSTDOC_ATTRS.contains(t) || is_error_code(t)))
}

fn is_error_code(t: &str) -> bool {
    t.len() == 5 && t.starts_with('E') && t[1..].chars().all(|c| c.is_ascii_digit())
}

/// Parses the attributes of a Rust fence; an unknown one is an error, so a
/// typo such as `no-run` cannot silently run a block.
pub fn parse_attrs(info: &str) -> Result<Attrs, String> {
    let mut a = Attrs::default();
    for t in tokens(info) {
        match t {
            "rust" => {}
            "ignore" => a.ignore = true,
            "no_run" => a.no_run = true,
            "should_panic" => a.should_panic = true,
            "compile_fail" => a.compile_fail = true,
            t if is_error_code(t) => a.error_codes.push(t.to_string()),
            t if RUSTDOC_ATTRS.contains(&t) || MDBOOK_ATTRS.contains(&t) => {}
            t => return Err(format!("unknown attribute `{t}` in fence `{info}`")),
        }
    }
    if !a.error_codes.is_empty() && !a.compile_fail {
        return Err(format!("error codes need `compile_fail` in fence `{info}`"));
    }
    Ok(a)
}

/// Every Rust block of one markdown file, with its stated output.
///
/// `display` names the file in messages; `path` is where it is on disk (for
/// includes relative to it). Errors name the file and line.
pub fn snippets(display: &str, path: &Path, text: &str) -> Result<Vec<Snippet>, String> {
    let base = path.parent().unwrap_or(Path::new("."));
    let fences = fences(text).map_err(|e| format!("{display}: {e}"))?;
    let mut out: Vec<Snippet> = Vec::new();
    for (idx, f) in fences.iter().enumerate() {
        let at = |msg: String| format!("{display}:{}: {msg}", f.line);
        let first = tokens(&f.info).first().copied().unwrap_or("");
        if f.info.is_empty() {
            return Err(at(
                "fence without a language: rustdoc would test it as Rust; \
                 write ```rust, ```output, ```text, ..."
                    .into(),
            ));
        }
        if first == OUTPUT_LANG {
            let prev_is_rust = idx > 0 && is_rust(&fences[idx - 1].info) && f.follows_fence;
            match out.last_mut() {
                Some(s) if prev_is_rust && s.line == fences[idx - 1].line => {
                    s.expected = Some((f.line, f.body.clone()));
                }
                _ => {
                    return Err(at(
                        "an ```output block must directly follow a ```rust block \
                         (only blank lines between)"
                            .into(),
                    ));
                }
            }
            continue;
        }
        if !is_rust(&f.info) {
            continue;
        }
        let attrs = parse_attrs(&f.info).map_err(at)?;
        let expanded = expand_includes(&f.body, base, 0).map_err(at)?;
        if attrs.ignore && !only_crate_includes(&f.body) {
            return Err(at(
                "`ignore` is allowed only on a block that is nothing but an \
                 {{#include}} of listings/ or lab/ code (which the compiler already sees); \
                 use `no_run` to compile without running"
                    .into(),
            ));
        }
        let code = show_hidden(&expanded);
        if !attrs.ignore {
            for krate in ["lab", "listings", "ndarray"] {
                if mentions_crate(&code, krate) && !code.contains(&format!("extern crate {krate};"))
                {
                    return Err(at(format!(
                        "the snippet uses `{krate}` but has no `# extern crate {krate};` line: \
                         `mdbook test` needs it"
                    )));
                }
            }
        }
        let directive = f
            .line_before
            .strip_prefix("<!-- harness:")
            .and_then(|d| d.strip_suffix("-->"))
            .map(|d| d.trim().to_string());
        out.push(Snippet {
            file: display.to_string(),
            line: f.line,
            attrs,
            code,
            expected: None,
            directive,
        });
    }
    Ok(out)
}

fn mentions_crate(code: &str, krate: &str) -> bool {
    let pat = format!("{krate}::");
    code.match_indices(&pat).any(|(i, _)| {
        let before = code[..i].chars().next_back();
        !matches!(before, Some(c) if c.is_alphanumeric() || c == '_' || c == ':')
    })
}

fn only_crate_includes(body: &str) -> bool {
    let lines: Vec<&str> = body.lines().filter(|l| !l.trim().is_empty()).collect();
    !lines.is_empty()
        && lines.iter().all(|l| {
            let t = l.trim();
            (t.starts_with("{{#include") || t.starts_with("{{#rustdoc_include"))
                && (t.contains("listings/") || t.contains("lab/"))
                && t.ends_with("}}")
        })
}

/// Expands mdBook's `{{#include}}` and `{{#rustdoc_include}}` links in `text`,
/// with paths relative to `base`.
pub fn expand_includes(text: &str, base: &Path, depth: usize) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("{{") {
        let escaped = pos > 0 && rest.as_bytes()[pos - 1] == b'\\';
        let Some(end) = rest[pos..].find("}}") else {
            break;
        };
        let inner = rest[pos + 2..pos + end].trim_start();
        if escaped && inner.starts_with('#') {
            // `\{{#include x}}` stands for the literal text `{{#include x}}`.
            out.push_str(&rest[..pos - 1]);
            out.push_str(&rest[pos..pos + end + 2]);
            rest = &rest[pos + end + 2..];
            continue;
        }
        let mut words = inner.split_whitespace();
        let kind = words.next().unwrap_or("");
        let (Some(arg), true) = (
            words.next(),
            kind == "#include" || kind == "#rustdoc_include",
        ) else {
            out.push_str(&rest[..pos + 2]);
            rest = &rest[pos + 2..];
            continue;
        };
        if depth >= 10 {
            return Err(format!("includes nested more than 10 deep at `{arg}`"));
        }
        let (file, selector) = match arg.split_once(':') {
            Some((f, s)) => (f, Some(s)),
            None => (arg, None),
        };
        let target = base.join(file);
        let content = std::fs::read_to_string(&target)
            .map_err(|e| format!("cannot read {} for `{arg}`: {e}", target.display()))?;
        let hidden_outside = kind == "#rustdoc_include";
        let taken =
            take(&content, selector, hidden_outside).map_err(|e| format!("`{arg}`: {e}"))?;
        let nested_base = target.parent().unwrap_or(base).to_path_buf();
        let taken = expand_includes(&taken, &nested_base, depth + 1)?;
        out.push_str(&rest[..pos]);
        out.push_str(&taken);
        rest = &rest[pos + end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

enum Select {
    Range(usize, Option<usize>),
    Anchor(String),
}

/// mdBook's reading of what follows the path: a 1-based line, a range, or
/// an anchor name.
fn parse_selector(sel: Option<&str>) -> Select {
    let Some(sel) = sel else {
        return Select::Range(0, None);
    };
    let mut parts = sel.splitn(3, ':');
    let first = parts.next().unwrap_or("");
    let start = match first.parse::<usize>() {
        Ok(n) => Some(n.saturating_sub(1)),
        Err(_) if first.is_empty() => None,
        Err(_) => return Select::Anchor(first.to_string()),
    };
    let end = parts.next().map(|s| s.parse::<usize>());
    match (start, end) {
        (Some(s), Some(Ok(e))) => Select::Range(s, Some(e)),
        (Some(s), Some(Err(_))) => Select::Range(s, None),
        (Some(s), None) => Select::Range(s, Some(s + 1)),
        (None, Some(Ok(e))) => Select::Range(0, Some(e)),
        (None, _) => Select::Range(0, None),
    }
}

fn anchor_name<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    let at = line.find(marker)?;
    let name = line[at + marker.len()..].trim_start();
    let len = name
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
        .unwrap_or(name.len());
    (len > 0).then(|| &name[..len])
}

fn is_anchor_line(line: &str) -> bool {
    anchor_name(line, "ANCHOR:").is_some() || anchor_name(line, "ANCHOR_END:").is_some()
}

fn take(content: &str, selector: Option<&str>, hidden_outside: bool) -> Result<String, String> {
    let mut kept: Vec<String> = Vec::new();
    match parse_selector(selector) {
        Select::Range(start, end) => {
            for (i, l) in content.lines().enumerate() {
                let inside = i >= start && end.is_none_or(|e| i < e);
                if inside {
                    kept.push(l.to_string());
                } else if hidden_outside {
                    kept.push(format!("# {l}"));
                }
            }
        }
        Select::Anchor(name) => {
            let mut inside = false;
            let mut found = false;
            for l in content.lines() {
                if inside {
                    if anchor_name(l, "ANCHOR_END:") == Some(name.as_str()) {
                        inside = false;
                        if !hidden_outside {
                            break;
                        }
                    } else if !is_anchor_line(l) {
                        kept.push(l.to_string());
                    }
                } else if let Some(start) = anchor_name(l, "ANCHOR:") {
                    if start == name {
                        inside = true;
                        found = true;
                    }
                } else if hidden_outside && anchor_name(l, "ANCHOR_END:").is_none() {
                    kept.push(format!("# {l}"));
                }
            }
            if !found {
                return Err(format!("no `ANCHOR: {name}` in the file"));
            }
        }
    }
    Ok(kept.join("\n"))
}

/// The code rustdoc compiles: hidden lines (`# ...`) shown, `##` read as `#`.
pub fn show_hidden(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    for line in code.lines() {
        let t = line.trim();
        if t.starts_with("##") {
            out.push_str(&line.replacen("##", "#", 1));
        } else if let Some(rest) = t.strip_prefix("# ") {
            out.push_str(rest);
        } else if t == "#" {
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// What a reader sees: hidden lines removed.
pub fn visible(code: &str) -> String {
    let mut out = String::new();
    for line in code.lines() {
        let t = line.trim();
        if t.starts_with("##") {
            out.push_str(&line.replacen("##", "#", 1));
            out.push('\n');
        } else if !(t.starts_with("# ") || t == "#") {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Whether the code defines `fn main` itself (rustdoc then leaves it alone).
pub fn has_main(code: &str) -> bool {
    code.match_indices("fn main").any(|(i, m)| {
        let before_ok = i == 0 || !code.as_bytes()[i - 1].is_ascii_alphanumeric();
        let after = code[i + m.len()..].trim_start();
        before_ok && (after.starts_with('(') || after.starts_with('<'))
    })
}

/// A Rust source file for the snippet, as rustdoc would build it: crate
/// attributes and leading `extern crate` lines first, the code wrapped in `fn main` unless it has one (with a
/// `Result` wrapper when it ends in `Ok(())`, as rustdoc does), and an entry
/// point `__book_snippet` that runs `main` and reports its result.
pub fn program(s: &Snippet) -> String {
    let mut attrs = String::new();
    let mut body = String::new();
    let mut leading = true;
    for line in s.code.lines() {
        let t = line.trim();
        if leading && (t.starts_with("#![") || t.starts_with("extern crate ")) {
            attrs.push_str(line);
            attrs.push('\n');
            continue;
        }
        if !(t.is_empty() || t.starts_with("//")) {
            leading = false;
        }
        body.push_str(line);
        body.push('\n');
    }
    let mut src = String::new();
    let _ = writeln!(
        src,
        "// Generated from {}:{}: edit the markdown, not this file.",
        s.file, s.line
    );
    src.push_str(&attrs);
    if has_main(&body) {
        src.push_str(&body);
    } else if body.trim_end().ends_with("(())") {
        src.push_str("fn main() {\n    fn _inner() -> ::core::result::Result<(), impl ::core::fmt::Debug> {\n");
        src.push_str(&body);
        src.push_str("    }\n    _inner().unwrap()\n}\n");
    } else {
        src.push_str("fn main() {\n");
        src.push_str(&body);
        src.push_str("}\n");
    }
    src.push_str(
        "\n#[allow(dead_code)]\npub fn __book_snippet() -> ::std::process::ExitCode {\n    \
         ::std::process::Termination::report(main())\n}\n",
    );
    src
}
