//! The glossary's links (WRITING.md, "The glossary").
//!
//! `src/appendix-b-glossary.md` defines each term once, as a paragraph that
//! starts with an explicit anchor and the term in bold:
//!
//! ```text
//! <a id="kv-cache"></a>**KV cache.** The keys and values ... See
//! [chapter 7](ch07-inference.md#the-kv-cache).
//! ```
//!
//! and the chapters link a term's first use to its entry:
//! `[KV cache](appendix-b-glossary.md#kv-cache)`. This test fails, with the
//! file, the line and the link, when
//!
//! - a link anywhere under `src/` to `appendix-b-glossary.md#x` names no
//!   anchor of the glossary;
//! - a link from the glossary names a file that does not exist, or a
//!   fragment that is neither a heading id of that file (computed as
//!   mdBook 0.5 computes it) nor an explicit `id="..."` in it;
//! - an entry links to no other page of the book;
//! - an entry is not linked from the chapters (`preface.md`,
//!   `chNN-*.md`) exactly once: the first use links, later uses do not;
//! - an anchor is defined twice, or the entries are out of alphabetical
//!   order or under the wrong letter.
//!
//! Links are read as mdBook reads them: not inside code fences, inline code
//! spans or HTML comments. Inline links `[text](dest)`, reference
//! definitions `[ref]: dest` and `href="dest"` attributes all count.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The glossary's file name, relative to `src/`.
const GLOSSARY: &str = "appendix-b-glossary.md";

// ---------------------------------------------------------------------------
// Reading markdown

/// `text` with fenced code blocks and HTML comments replaced by spaces, line
/// breaks kept, so that byte offsets and line numbers stay those of `text`.
fn mask_blocks(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut fence: Option<(char, usize)> = None;
    for line in text.split_inclusive('\n') {
        let rest = line.trim_start();
        let ch = rest.chars().next().unwrap_or(' ');
        let run = rest.chars().take_while(|&c| c == ch).count();
        let is_fence_char = ch == '`' || ch == '~';
        let in_fence = match fence {
            None if is_fence_char && run >= 3 => {
                fence = Some((ch, run));
                true
            }
            None => false,
            Some((c, n)) => {
                let closes = ch == c && run >= n && rest.trim_end().chars().all(|x| x == c);
                if closes {
                    fence = None;
                }
                true
            }
        };
        if in_fence {
            out.push_str(&blank(line));
        } else {
            out.push_str(line);
        }
    }
    // HTML comments, which may span lines.
    let mut masked = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(start) = rest.find("<!--") {
        masked.push_str(&rest[..start]);
        let end = rest[start..]
            .find("-->")
            .map_or(rest.len(), |e| start + e + 3);
        masked.push_str(&blank(&rest[start..end]));
        rest = &rest[end..];
    }
    masked.push_str(rest);
    masked
}

/// `s` as spaces of the same byte length, line breaks kept.
fn blank(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\n' => "\n".to_string(),
            c => " ".repeat(c.len_utf8()),
        })
        .collect()
}

/// The byte ranges of the inline code spans of `text` (contents and
/// backticks). A span closes at the next run of as many backticks within
/// its paragraph; an unclosed run is literal text.
fn code_spans(text: &str) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut spans = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'`' || (i > 0 && bytes[i - 1] == b'\\') {
            i += 1;
            continue;
        }
        let n = bytes[i..].iter().take_while(|&&b| b == b'`').count();
        let paragraph_end = text[i..].find("\n\n").map_or(text.len(), |e| i + e);
        let mut j = i + n;
        let mut close = None;
        while j < paragraph_end {
            if bytes[j] == b'`' {
                let m = bytes[j..].iter().take_while(|&&b| b == b'`').count();
                if m == n {
                    close = Some(j + m);
                    break;
                }
                j += m;
            } else {
                j += 1;
            }
        }
        match close {
            Some(end) => {
                spans.push((i, end));
                i = end;
            }
            None => i += n,
        }
    }
    spans
}

/// `text` with its code spans replaced by spaces (line breaks kept).
fn mask_code(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (start, end) in code_spans(text) {
        out.push_str(&text[at..start]);
        out.push_str(&blank(&text[start..end]));
        at = end;
    }
    out.push_str(&text[at..]);
    out
}

/// The 1-based line of byte offset `at`.
fn line_of(text: &str, at: usize) -> usize {
    text[..at].matches('\n').count() + 1
}

/// A link as written: where, its text (when it has one), its destination.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Link {
    line: usize,
    text: String,
    dest: String,
}

impl Link {
    /// The link as the reader of an error wants to see it.
    fn shown(&self) -> String {
        if self.text.is_empty() {
            format!("`{}`", self.dest)
        } else {
            format!("[{}]({})", self.text.replace('\n', " "), self.dest)
        }
    }
}

/// Every link of `text`: inline links, reference definitions and `href`
/// attributes, outside fences, comments and code spans.
fn links(text: &str) -> Vec<Link> {
    let prose = mask_code(&mask_blocks(text));
    let mut out = Vec::new();
    // Inline links and images: `[text](dest)`.
    for (at, _) in prose.match_indices("](") {
        let start = at + 2;
        let rest = prose[start..].trim_start();
        let dest = if let Some(inner) = rest.strip_prefix('<') {
            inner.split('>').next().unwrap_or("").to_string()
        } else {
            let mut depth = 0usize;
            rest.chars()
                .take_while(|&c| match c {
                    '(' => {
                        depth += 1;
                        true
                    }
                    ')' if depth == 0 => false,
                    ')' => {
                        depth -= 1;
                        true
                    }
                    c => !c.is_whitespace(),
                })
                .collect()
        };
        // The text: back from `]` to its matching `[`.
        let mut depth = 0usize;
        let mut open = None;
        for (i, c) in prose[..at].char_indices().rev() {
            match c {
                ']' => depth += 1,
                '[' if depth == 0 => {
                    open = Some(i);
                    break;
                }
                '[' => depth -= 1,
                _ => {}
            }
        }
        let text = open.map_or(String::new(), |o| text[o + 1..at].to_string());
        out.push(Link {
            line: line_of(&prose, at),
            text,
            dest,
        });
    }
    // Reference definitions: `[name]: dest` at the start of a line.
    let mut offset = 0;
    for line in prose.split_inclusive('\n') {
        let t = line.trim_start();
        if line.len() - t.len() <= 3
            && t.starts_with('[')
            && let Some(close) = t.find("]:")
            && !t[1..close].contains(']')
        {
            let dest = t[close + 2..].split_whitespace().next().unwrap_or("");
            if !dest.is_empty() {
                out.push(Link {
                    line: line_of(&prose, offset),
                    text: String::new(),
                    dest: dest.trim_matches(['<', '>']).to_string(),
                });
            }
        }
        offset += line.len();
    }
    // HTML attributes.
    for (at, value) in attribute_values(&prose, "href") {
        out.push(Link {
            line: line_of(&prose, at),
            text: String::new(),
            dest: value,
        });
    }
    out.sort_by_key(|l| l.line);
    out
}

/// The values of every `name="..."` (or `'...'`) attribute in `text`, with
/// their offsets.
fn attribute_values(text: &str, name: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let pattern = format!("{name}=");
    for (at, _) in text.match_indices(&pattern) {
        let before = text[..at].chars().next_back();
        if before.is_some_and(|c| !c.is_whitespace()) {
            continue; // `data-id=`, `xid=`: another attribute
        }
        let rest = &text[at + pattern.len()..];
        let Some(quote) = rest.chars().next().filter(|&q| q == '"' || q == '\'') else {
            continue;
        };
        if let Some(end) = rest[1..].find(quote) {
            out.push((at, rest[1..1 + end].to_string()));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Anchors, as mdBook 0.5 makes them

/// mdBook 0.5's `id_from_content`: trim, lowercase ASCII letters, keep
/// letters, digits, `_` and `-`, turn each whitespace character into `-`,
/// drop everything else.
fn id_from_content(content: &str) -> String {
    content
        .trim()
        .chars()
        .filter_map(|c| {
            if c.is_alphanumeric() || c == '_' || c == '-' {
                Some(c.to_ascii_lowercase())
            } else if c.is_whitespace() {
                Some('-')
            } else {
                None
            }
        })
        .collect()
}

/// The text a reader sees of a heading's inline markdown, which is what
/// mdBook makes the id from: code spans' contents as written, HTML tags
/// dropped (their contents kept), links reduced to their text, emphasis
/// markers dropped, entities and escapes decoded, and `--` turned into a
/// dash by smart punctuation (on by default in mdBook 0.5).
fn heading_text(inline: &str) -> String {
    let spans = code_spans(inline);
    let mut out = String::new();
    let mut at = 0;
    for (start, end) in spans.iter().copied().chain([(inline.len(), inline.len())]) {
        out.push_str(&plain_text(&inline[at..start]));
        if start < end {
            let ticks = inline[start..].chars().take_while(|&c| c == '`').count();
            let inner = &inline[start + ticks..end - ticks];
            // One leading and trailing space is stripped when both are there.
            let inner = match inner.strip_prefix(' ').and_then(|s| s.strip_suffix(' ')) {
                Some(s) if !s.trim().is_empty() => s,
                _ => inner,
            };
            out.push_str(inner);
        }
        at = end;
    }
    out
}

/// [`heading_text`] for a stretch without code spans.
fn plain_text(s: &str) -> String {
    // Links: keep the text, drop `(dest)`.
    let mut no_links = String::new();
    let mut rest = s;
    while let Some(at) = rest.find("](") {
        no_links.push_str(&rest[..at + 1]);
        let after = &rest[at + 2..];
        rest = after.find(')').map_or("", |e| &after[e + 1..]);
    }
    no_links.push_str(rest);
    let mut out = String::new();
    let chars: Vec<char> = no_links.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            '\\' if next.is_some_and(|n| n.is_ascii_punctuation()) => {
                out.push(next.unwrap_or(' '));
                i += 2;
                continue;
            }
            '<' if next.is_some_and(|n| n.is_ascii_alphabetic() || n == '/') => {
                // An HTML tag: skip to its end.
                match chars[i..].iter().position(|&x| x == '>') {
                    Some(p) => i += p + 1,
                    None => i += 1,
                }
                continue;
            }
            '&' => {
                let end = chars[i..].iter().take(10).position(|&x| x == ';');
                if let Some(p) = end {
                    let entity: String = chars[i + 1..i + p].iter().collect();
                    if let Some(d) = decode_entity(&entity) {
                        out.push(d);
                        i += p + 1;
                        continue;
                    }
                }
                out.push('&');
            }
            '[' | ']' | '*' => {}
            '~' if next == Some('~') => i += 1,
            '_' => {
                // An emphasis marker opens or closes a word: one side is
                // part of a word, the other not. (An approximation of
                // CommonMark's flanking rules; the book's headings use `_`
                // only inside code.)
                let prev = i.checked_sub(1).map(|p| chars[p]);
                let word_before = prev.is_some_and(char::is_alphanumeric);
                let word_after = next.is_some_and(char::is_alphanumeric);
                if word_before == word_after {
                    out.push('_');
                }
            }
            '-' if next == Some('-') => {
                out.push('\u{2013}'); // smart punctuation: `--` is a dash
                i += 2;
                if chars.get(i) == Some(&'-') {
                    i += 1;
                }
                continue;
            }
            c => out.push(c),
        }
        i += 1;
    }
    out
}

fn decode_entity(entity: &str) -> Option<char> {
    if let Some(num) = entity.strip_prefix('#') {
        let n = match num.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => num.parse().ok()?,
        };
        return char::from_u32(n);
    }
    Some(match entity {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => '\u{a0}',
        _ => return None,
    })
}

/// Every id a reader's browser can jump to in `text`: each ATX heading's
/// (its `{#id}` if it has one, else its text's, numbered `-1`, `-2` when a
/// page repeats one, as mdBook does) and every explicit `id="..."`.
fn anchors(text: &str) -> BTreeSet<String> {
    let blocks = mask_blocks(text);
    let mut out = BTreeSet::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for line in blocks.lines() {
        let Some(content) = atx_heading(line) else {
            continue;
        };
        let (content, explicit) = heading_attribute_id(content);
        if let Some(id) = explicit {
            out.insert(id);
            continue;
        }
        let id = id_from_content(&heading_text(content));
        let n = counts.entry(id.clone()).or_insert(0);
        let unique = if *n == 0 {
            id.clone()
        } else {
            format!("{id}-{n}")
        };
        *n += 1;
        out.insert(unique);
    }
    let prose = mask_code(&blocks);
    out.extend(attribute_values(&prose, "id").into_iter().map(|(_, v)| v));
    out
}

/// The inline content of an ATX heading line (`## Title ##` -> `Title`).
fn atx_heading(line: &str) -> Option<&str> {
    let t = line.trim_start();
    if line.len() - t.len() > 3 {
        return None;
    }
    let hashes = t.chars().take_while(|&c| c == '#').count();
    if hashes == 0 || hashes > 6 {
        return None;
    }
    let rest = &t[hashes..];
    if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None;
    }
    let rest = rest.trim();
    // A closing sequence of `#` after a space is not content.
    let trimmed = rest.trim_end_matches('#');
    let content = if trimmed.len() < rest.len() && (trimmed.is_empty() || trimmed.ends_with(' ')) {
        trimmed.trim_end()
    } else {
        rest
    };
    Some(content)
}

/// A heading's `{#id .class}` attribute block, as pulldown-cmark reads it
/// with heading attributes on: the content before it, and the id.
fn heading_attribute_id(content: &str) -> (&str, Option<String>) {
    if let Some(open) = content.rfind('{')
        && content.ends_with('}')
    {
        let attrs = &content[open + 1..content.len() - 1];
        let id = attrs
            .split_whitespace()
            .find_map(|a| a.strip_prefix('#'))
            .map(str::to_string);
        if id.is_some() {
            return (content[..open].trim_end(), id);
        }
    }
    (content, None)
}

// ---------------------------------------------------------------------------
// The glossary's entries

/// One entry: `<a id="ID"></a>**Term.** definition ... links`.
#[derive(Debug)]
struct Entry {
    line: usize,
    id: String,
    term: String,
    /// The letter heading the entry sits under (`## K`), lowercased.
    letter: Option<String>,
    links: Vec<Link>,
}

/// The entries of the glossary, in order.
fn entries(text: &str) -> Vec<Entry> {
    let prose = mask_blocks(text);
    let all_links = links(text);
    let mut out = Vec::new();
    let mut letter = None;
    let mut offset = 0;
    let paragraphs: Vec<&str> = prose.split("\n\n").collect();
    for para in paragraphs {
        let start = offset + (para.len() - para.trim_start().len());
        offset += para.len() + 2;
        let p = para.trim();
        if let Some(h) = atx_heading(p).filter(|_| !p.contains('\n')) {
            letter = Some(heading_text(h).trim().to_lowercase());
            continue;
        }
        let Some(rest) = p.strip_prefix("<a id=\"") else {
            continue;
        };
        let id = rest.split('"').next().unwrap_or("").to_string();
        let term = rest
            .split_once("**")
            .and_then(|(_, t)| t.split_once("**"))
            .map(|(t, _)| t.trim_end_matches(['.', ':']).to_string())
            .unwrap_or_default();
        let first = line_of(&prose, start);
        let last = first + p.matches('\n').count();
        let links = (all_links.iter())
            .filter(|l| (first..=last).contains(&l.line))
            .cloned()
            .collect();
        out.push(Entry {
            line: first,
            id,
            term,
            letter: letter.clone(),
            links,
        });
    }
    out
}

/// The key entries are sorted by: letters and digits only, lowercased
/// ("Pre-LN" sorts as "preln", "`wte`" as "wte").
fn sort_key(term: &str) -> String {
    term.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

// ---------------------------------------------------------------------------
// The checks, on any set of files so that fixtures can exercise them

/// The book's markdown, as (path relative to `src/`, text), sorted.
type Files = BTreeMap<String, String>;

fn book_files() -> Files {
    fn walk(dir: &Path, base: &Path, out: &mut Files) {
        for entry in std::fs::read_dir(dir).expect("src/ is readable").flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, base, out);
            } else if path.extension().is_some_and(|e| e == "md") {
                let name = path.strip_prefix(base).unwrap().to_string_lossy();
                let text = std::fs::read_to_string(&path).unwrap();
                out.insert(name.replace('\\', "/"), text);
            }
        }
    }
    let mut files = Files::new();
    walk(Path::new("src"), Path::new("src"), &mut files);
    files
}

/// Whether `name` is one of the chapters whose first uses link the glossary.
fn is_chapter(name: &str) -> bool {
    let digits = name
        .strip_prefix("ch")
        .map_or(0, |r| r.chars().take_while(char::is_ascii_digit).count());
    name == "preface.md" || (digits == 2 && name.as_bytes().get(4) == Some(&b'-'))
}

/// `dest` resolved against the file `from` (both relative to `src/`): the
/// file it names, if it names a page of the book, and its fragment.
fn resolve(from: &str, dest: &str) -> Option<(String, Option<String>)> {
    if dest.contains("://") || dest.starts_with("mailto:") {
        return None;
    }
    let (path, fragment) = match dest.split_once('#') {
        Some((p, f)) => (p, Some(f.to_string())),
        None => (dest, None),
    };
    if path.is_empty() {
        return Some((from.to_string(), fragment));
    }
    if !path.ends_with(".md") {
        return None;
    }
    let mut parts: Vec<&str> = from.split('/').collect();
    parts.pop();
    for part in path.split('/') {
        match part {
            "." | "" => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    Some((parts.join("/"), fragment))
}

/// Every link under `src/` into the glossary must name an anchor of it.
fn check_links_into_glossary(files: &Files) -> Vec<String> {
    let mut errors = Vec::new();
    let Some(glossary) = files.get(GLOSSARY) else {
        return vec![format!("src/{GLOSSARY} does not exist")];
    };
    let known = anchors(glossary);
    for (name, text) in files {
        for link in links(text) {
            let Some((target, fragment)) = resolve(name, &link.dest) else {
                continue;
            };
            if target != GLOSSARY || name == GLOSSARY {
                continue; // the glossary's own links are the next check's
            }
            if let Some(f) = fragment.filter(|f| !known.contains(f)) {
                errors.push(format!(
                    "src/{name}:{}: {}: no anchor `{f}` in src/{GLOSSARY}",
                    link.line,
                    link.shown()
                ));
            }
        }
    }
    errors
}

/// Every link from the glossary must name a page of the book that exists
/// and, if it has a fragment, an anchor of that page.
fn check_links_from_glossary(files: &Files) -> Vec<String> {
    let mut errors = Vec::new();
    let Some(glossary) = files.get(GLOSSARY) else {
        return vec![format!("src/{GLOSSARY} does not exist")];
    };
    for link in links(glossary) {
        let Some((target, fragment)) = resolve(GLOSSARY, &link.dest) else {
            continue;
        };
        let at = format!("src/{GLOSSARY}:{}: {}", link.line, link.shown());
        let Some(text) = files.get(&target) else {
            errors.push(format!("{at}: src/{target} does not exist"));
            continue;
        };
        if let Some(f) = fragment
            && !anchors(text).contains(&f)
        {
            errors.push(format!(
                "{at}: no heading or anchor with id `{f}` in src/{target}"
            ));
        }
    }
    errors
}

/// The entries themselves: unique anchors, a link to the book each,
/// alphabetical order under the right letter.
fn check_entries(files: &Files) -> Vec<String> {
    let mut errors = Vec::new();
    let Some(glossary) = files.get(GLOSSARY) else {
        return vec![format!("src/{GLOSSARY} does not exist")];
    };
    let entries = entries(glossary);
    if entries.is_empty() {
        errors.push(format!("src/{GLOSSARY}: no entries found"));
    }
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut previous: Option<&Entry> = None;
    for e in &entries {
        let at = format!("src/{GLOSSARY}:{}: entry `{}`", e.line, e.id);
        if let Some(first) = seen.insert(&e.id, e.line) {
            errors.push(format!(
                "{at}: the anchor is already defined on line {first}"
            ));
        }
        if e.term.is_empty() {
            errors.push(format!(
                "{at}: no term in bold after the anchor (`<a id=\"...\"></a>**Term.**`)"
            ));
        }
        let to_book = e
            .links
            .iter()
            .any(|l| resolve(GLOSSARY, &l.dest).is_some_and(|(target, _)| target != GLOSSARY));
        if !to_book {
            errors.push(format!(
                "{at}: links to no chapter (end it with a link to where the book explains the term)"
            ));
        }
        let key = sort_key(&e.term);
        if let Some(letter) = &e.letter
            && !key.starts_with(letter.as_str())
        {
            errors.push(format!(
                "{at}: \"{}\" is under the heading `{}`",
                e.term,
                letter.to_uppercase()
            ));
        }
        if let Some(p) = previous
            && sort_key(&p.term) > key
        {
            errors.push(format!(
                "{at}: \"{}\" comes after \"{}\" (line {}): entries are alphabetical",
                e.term, p.term, p.line
            ));
        }
        previous = Some(e);
    }
    errors
}

/// Each entry is linked from the chapters once: at the term's first use.
fn check_first_uses(files: &Files) -> Vec<String> {
    let Some(glossary) = files.get(GLOSSARY) else {
        return vec![format!("src/{GLOSSARY} does not exist")];
    };
    let mut uses: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, text) in files.iter().filter(|(n, _)| is_chapter(n)) {
        for link in links(text) {
            if let Some((target, Some(f))) = resolve(name, &link.dest)
                && target == GLOSSARY
            {
                uses.entry(f).or_default().push(format!(
                    "src/{name}:{} {}",
                    link.line,
                    link.shown()
                ));
            }
        }
    }
    let mut errors = Vec::new();
    for e in entries(glossary) {
        let at = format!("src/{GLOSSARY}:{}: entry `{}`", e.line, e.id);
        match uses.get(&e.id).map_or(&[][..], Vec::as_slice) {
            [] => errors.push(format!(
                "{at}: no chapter links to it (link the term's first use: \
                 [{}]({GLOSSARY}#{}))",
                e.term, e.id
            )),
            [_] => {}
            many => errors.push(format!(
                "{at}: linked {} times, from {}; only the first use links",
                many.len(),
                many.join(", ")
            )),
        }
    }
    errors
}

fn fail_on(errors: Vec<String>, what: &str) {
    assert!(
        errors.is_empty(),
        "{what} ({}):\n  {}\n(WRITING.md, \"The glossary\", says how glossary links work)",
        errors.len(),
        errors.join("\n  ")
    );
}

// ---------------------------------------------------------------------------
// The book

#[test]
fn links_into_the_glossary_name_its_anchors() {
    fail_on(
        check_links_into_glossary(&book_files()),
        "broken links into the glossary",
    );
}

#[test]
fn links_from_the_glossary_name_headings_that_exist() {
    fail_on(
        check_links_from_glossary(&book_files()),
        "broken links from the glossary",
    );
}

#[test]
fn entries_are_anchored_linked_and_alphabetical() {
    fail_on(
        check_entries(&book_files()),
        "problems with glossary entries",
    );
}

#[test]
fn each_entry_is_linked_from_its_first_use_only() {
    fail_on(
        check_first_uses(&book_files()),
        "glossary entries not linked exactly once from the chapters",
    );
}

#[test]
fn the_book_has_a_glossary_with_entries_and_chapter_links() {
    let files = book_files();
    let glossary = files.get(GLOSSARY).expect("the glossary exists");
    let n = entries(glossary).len();
    let linked: usize = (files.iter())
        .filter(|(name, _)| is_chapter(name))
        .map(|(_, text)| {
            let glossary_links = links(text)
                .into_iter()
                .filter(|l| l.dest.starts_with(GLOSSARY));
            glossary_links.count()
        })
        .sum();
    println!("{n} glossary entries, {linked} links to them from the chapters");
    assert!(n > 0 && linked > 0);
}

// ---------------------------------------------------------------------------
// The checker itself

/// mdBook 0.5's own examples (`mdbook-html`'s `utils.rs` tests).
#[test]
fn ids_are_made_as_mdbook_makes_them() {
    assert_eq!(
        id_from_content("`--passes`: add more rustdoc passes"),
        "--passes-add-more-rustdoc-passes"
    );
    assert_eq!(
        id_from_content("Method-call 🐙 expressions \u{1f47c}"),
        "method-call--expressions-"
    );
    assert_eq!(id_from_content("_-_12345"), "_-_12345");
    assert_eq!(id_from_content("中文標題 CJK title"), "中文標題-cjk-title");
    assert_eq!(id_from_content("Über"), "Über");
    // Through the heading's markdown, and the book's own hard cases.
    let id = |h: &str| id_from_content(&heading_text(h));
    assert_eq!(
        id("`--passes`: add more rustdoc passes"),
        "--passes-add-more-rustdoc-passes"
    );
    assert_eq!(id("*Emphasis* and snake_case"), "emphasis-and-snake_case");
    assert_eq!(id("Why divide by √<var>d</var>"), "why-divide-by-d");
    assert_eq!(
        id("`<|endoftext|>` is text, until it is not"),
        "endoftext-is-text-until-it-is-not"
    );
    assert_eq!(id("The `(B, T, C)` convention"), "the-b-t-c-convention");
    assert_eq!(id("GPT-2, GPT-4 and GPT-4o"), "gpt-2-gpt-4-and-gpt-4o");
    assert_eq!(id("Warm-up and cosine decay"), "warm-up-and-cosine-decay");
    assert_eq!(id("The book's text"), "the-books-text");
    assert_eq!(
        id("**Bold** and [a link](x.md) and &amp;"),
        "bold-and-a-link-and-"
    );
    assert_eq!(id("Smart -- dashes"), "smart--dashes");
}

#[test]
fn anchors_count_repeats_and_skip_code() {
    let text = "# Title\n\n## Twice\n\n## Twice\n\n```rust\n# not a heading\n```\n\n\
                ## Custom {#own-id}\n\n<a id=\"explicit\"></a>text `id=\"in-code\"`\n\
                <!-- <a id=\"commented\"></a> -->\n";
    let got = anchors(text);
    let want = ["title", "twice", "twice-1", "own-id", "explicit"];
    assert_eq!(got, want.iter().map(|s| s.to_string()).collect());
}

#[test]
fn links_are_found_outside_code_and_comments() {
    let text = "See [the `KV`\ncache](appendix-b-glossary.md#kv-cache) and `[no](a.md)`.\n\n\
                ```md\n[no](b.md)\n```\n<!-- [no](c.md) -->\n[ref]: d.md#x\n\
                <a href=\"e.md\">e</a> ![img](f.svg)\n";
    let got: Vec<(usize, String)> = links(text).into_iter().map(|l| (l.line, l.dest)).collect();
    let want = [
        (2, "appendix-b-glossary.md#kv-cache"),
        (8, "d.md#x"),
        (9, "f.svg"),
        (9, "e.md"),
    ];
    assert_eq!(
        got,
        want.map(|(l, d)| (l, d.to_string())).to_vec(),
        "{:?}",
        links(text)
    );
    assert_eq!(
        links(text)[0].shown(),
        "[the `KV` cache](appendix-b-glossary.md#kv-cache)"
    );
}

/// A small book: a glossary of two entries and a chapter that links both.
fn fixture() -> Files {
    let glossary = "# Glossary\n\n## K\n\n\
        <a id=\"key\"></a>**Key.** What a position offers. See [chapter 3](ch03-a.md#keys).\n\n\
        <a id=\"kv-cache\"></a>**KV cache.** Kept keys. See\n[chapter 3](ch03-a.md#the-cache).\n";
    let chapter = "# Attention\n\n## Keys\n\nA [key](appendix-b-glossary.md#key) and a\n\
        [KV cache](appendix-b-glossary.md#kv-cache).\n\n## The cache\n\nThe key again.\n";
    Files::from([
        (GLOSSARY.to_string(), glossary.to_string()),
        ("ch03-a.md".to_string(), chapter.to_string()),
    ])
}

fn all_checks(files: &Files) -> Vec<String> {
    let mut e = check_links_into_glossary(files);
    e.extend(check_links_from_glossary(files));
    e.extend(check_entries(files));
    e.extend(check_first_uses(files));
    e
}

#[test]
fn a_sound_fixture_passes() {
    assert_eq!(all_checks(&fixture()), Vec::<String>::new());
}

#[test]
fn each_kind_of_mistake_fails_with_its_file_and_line() {
    let edit = |file: &str, from: &str, to: &str| {
        let mut f = fixture();
        let text = f.get_mut(file).unwrap();
        assert!(text.contains(from), "{from}");
        *text = text.replacen(from, to, 1);
        all_checks(&f)
    };
    let cases = [
        // A chapter's link to an anchor the glossary lacks.
        (
            edit("ch03-a.md", "#kv-cache)", "#kv-cach)"),
            "src/ch03-a.md:6: [KV cache](appendix-b-glossary.md#kv-cach): no anchor `kv-cach`",
        ),
        // A glossary link to a heading that is not there.
        (
            edit(GLOSSARY, "#the-cache", "#the-kv-cache"),
            "src/appendix-b-glossary.md:8: [chapter 3](ch03-a.md#the-kv-cache): no heading or anchor with id `the-kv-cache` in src/ch03-a.md",
        ),
        // A glossary link to a file that does not exist.
        (
            edit(GLOSSARY, "ch03-a.md#keys", "ch08-b.md#keys"),
            "src/appendix-b-glossary.md:5: [chapter 3](ch08-b.md#keys): src/ch08-b.md does not exist",
        ),
        // An entry without a link to the book.
        (
            edit(GLOSSARY, " See [chapter 3](ch03-a.md#keys).", ""),
            "src/appendix-b-glossary.md:5: entry `key`: links to no chapter",
        ),
        // Entries out of order.
        (
            edit(GLOSSARY, "**Key.**", "**Kz.**"),
            "entry `kv-cache`: \"KV cache\" comes after \"Kz\" (line 5)",
        ),
        // An entry under the wrong letter.
        (
            edit(GLOSSARY, "## K", "## L"),
            "entry `key`: \"Key\" is under the heading `L`",
        ),
        // A term the chapters never link.
        (
            edit("ch03-a.md", "[key](appendix-b-glossary.md#key)", "key"),
            "src/appendix-b-glossary.md:5: entry `key`: no chapter links to it",
        ),
        // A term linked twice.
        (
            edit(
                "ch03-a.md",
                "The key again.",
                "The [key](appendix-b-glossary.md#key) again.",
            ),
            "entry `key`: linked 2 times, from src/ch03-a.md:5 [key](appendix-b-glossary.md#key), src/ch03-a.md:10",
        ),
        // An anchor defined twice.
        (
            edit(GLOSSARY, "id=\"kv-cache\"", "id=\"key\""),
            "src/appendix-b-glossary.md:7: entry `key`: the anchor is already defined on line 5",
        ),
    ];
    for (errors, want) in cases {
        assert!(
            errors.iter().any(|e| e.contains(want)),
            "expected an error containing\n  {want}\ngot\n  {}",
            errors.join("\n  ")
        );
    }
}
