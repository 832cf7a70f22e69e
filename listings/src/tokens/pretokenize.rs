//! Pre-tokenisation: cutting text into chunks before any merging.
//!
//! BPE never merges across a chunk boundary, so the chunking decides what a
//! token *can* be. GPT-2 and its successors cut text with a regular
//! expression: words with their leading space, runs of digits, runs of
//! punctuation, runs of whitespace. This file holds the three patterns that
//! tiktoken uses and a [`Pretokenizer`] that applies any of them.
//!
//! The published patterns use two features of backtracking regex engines:
//! possessive quantifiers (`\p{L}++`) and a look-ahead (`\s+(?!\S)`, "a run
//! of whitespace, minus its last character if a non-space follows"). The
//! `regex` crate has neither, so tiktoken-rs runs them on `fancy-regex`,
//! which is correct but slow. For the three known patterns this file keeps a
//! hand translation into plain alternatives (see [`Pretokenizer::new`]) that
//! runs on `regex-automata`'s DFAs and emulates the look-ahead in a few
//! lines of Rust; any other pattern runs on `fancy-regex` unchanged.

use fancy_regex::Regex as FancyRegex;
use regex_automata::{Anchored, Input, PatternID, meta::Regex as MetaRegex};

use super::BuildError;

// ANCHOR: patterns
/// GPT-2's pattern, used by tiktoken's `r50k_base` (and `p50k_base`).
///
/// Contractions (`'s`, `'ll`, ...), then a word, a number or a run of
/// punctuation, each with at most one leading space; then whitespace.
pub const GPT2_PATTERN: &str =
    r"'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s";

/// GPT-4's pattern, used by tiktoken's `cl100k_base`.
///
/// Changes from GPT-2: contractions in any case; a word may start with any
/// one non-letter, non-digit character other than a newline (so `_name` or
/// `(word` stay one chunk); numbers are cut into groups of at most three
/// digits; punctuation keeps the newlines that follow it; runs of whitespace
/// ending in a newline are their own chunk.
pub const CL100K_PATTERN: &str = r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s";

/// GPT-4o's pattern, used by tiktoken's `o200k_base`.
///
/// Words are split at case changes (`camelCase` is two chunks) and carry
/// their contraction (`don't` is `don` + `'t` no more); marks (`\p{M}`)
/// count as letters, which helps scripts such as Hindi.
pub const O200K_PATTERN: &str = concat!(
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|\p{N}{1,3}",
    r"| ?[^\s\p{L}\p{N}]+[\r\n/]*",
    r"|\s*[\r\n]+",
    r"|\s+(?!\S)",
    r"|\s+",
);
// ANCHOR_END: patterns

/// A pattern rewritten as a list of alternatives the `regex` crate accepts.
struct Translation {
    /// The published pattern this stands for, byte for byte.
    pattern: &'static str,
    /// Its top-level alternatives, in order, without possessive quantifiers.
    branches: &'static [&'static str],
    /// The alternative that stood for `\s+(?!\S)`; it is written `\s+` and
    /// the look-ahead is applied after the match.
    lookahead: usize,
}

// Why these are equivalent to the originals, for every input:
// - A possessive quantifier only differs from a greedy one when the engine
//   would backtrack into it to let what follows match. In these patterns a
//   possessive run is either the end of its alternative, or is followed by
//   a class it cannot overlap (`[^\s..]++` then `[\r\n]`; `[^..\p{L}..]?+`
//   then `\p{L}`), so backtracking could never help.
// - `regex` reports the same match as a backtracking engine for patterns
//   without look-around ("leftmost-first" semantics), and a multi-pattern
//   regex reports the first alternative that matches, in order.
// - `\s+(?!\S)` is tried only after the alternatives before it failed. A
//   greedy `\s+` takes the whole run of whitespace; the look-ahead then
//   gives back the last character if a non-space follows. A run of one
//   character followed by a non-space fails there and falls to the next
//   alternative, which is `\s` or `\s+` and matches that same character.
const TRANSLATIONS: [Translation; 3] = [
    Translation {
        pattern: GPT2_PATTERN,
        branches: &[
            r"'(?:[sdmt]|ll|ve|re)",
            r" ?\p{L}+",
            r" ?\p{N}+",
            r" ?[^\s\p{L}\p{N}]+",
            r"\s+$",
            r"\s+",
            r"\s",
        ],
        lookahead: 5,
    },
    Translation {
        pattern: CL100K_PATTERN,
        branches: &[
            r"'(?i:[sdmt]|ll|ve|re)",
            r"[^\r\n\p{L}\p{N}]?\p{L}+",
            r"\p{N}{1,3}",
            r" ?[^\s\p{L}\p{N}]+[\r\n]*",
            r"\s+$",
            r"\s*[\r\n]",
            r"\s+",
            r"\s",
        ],
        lookahead: 6,
    },
    Translation {
        pattern: O200K_PATTERN,
        branches: &[
            r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
            r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
            r"\p{N}{1,3}",
            r" ?[^\s\p{L}\p{N}]+[\r\n/]*",
            r"\s*[\r\n]+",
            r"\s+",
            r"\s+",
        ],
        lookahead: 5,
    },
];

/// Cuts text into chunks with a GPT-style pattern.
///
/// ```
/// use listings::tokens::{Pretokenizer, CL100K_PATTERN};
/// let pre = Pretokenizer::new(CL100K_PATTERN)?;
/// let chunks: Vec<&str> = pre.chunks("Hello world, it's 2024!!\n").collect();
/// assert_eq!(chunks, ["Hello", " world", ",", " it", "'s", " ", "202", "4", "!!\n"]);
/// # Ok::<(), listings::tokens::BuildError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Pretokenizer {
    pattern: String,
    engine: Engine,
}

#[derive(Debug, Clone)]
enum Engine {
    /// A known pattern, translated (see `TRANSLATIONS`).
    Fast { regex: MetaRegex, lookahead: usize },
    /// Any other pattern, run as written.
    General(FancyRegex),
}

impl Pretokenizer {
    /// Compiles `pattern`.
    ///
    /// The three patterns above run on a fast translation; any other
    /// pattern is accepted as `fancy-regex` syntax and runs as written.
    pub fn new(pattern: &str) -> Result<Self, BuildError> {
        let engine = match TRANSLATIONS.iter().find(|t| t.pattern == pattern) {
            Some(t) => Engine::Fast {
                regex: MetaRegex::new_many(t.branches)
                    .map_err(|e| BuildError::Pattern(e.to_string()))?,
                lookahead: t.lookahead,
            },
            None => Engine::General(
                FancyRegex::new(pattern).map_err(|e| BuildError::Pattern(e.to_string()))?,
            ),
        };
        Ok(Pretokenizer {
            pattern: pattern.to_string(),
            engine,
        })
    }

    /// Like [`Pretokenizer::new`], but never uses the fast translation: the
    /// reference the translation is tested against.
    pub fn new_general(pattern: &str) -> Result<Self, BuildError> {
        let regex = FancyRegex::new(pattern).map_err(|e| BuildError::Pattern(e.to_string()))?;
        Ok(Pretokenizer {
            pattern: pattern.to_string(),
            engine: Engine::General(regex),
        })
    }

    /// The pattern as given.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Whether this pattern runs on the fast translation.
    pub fn is_fast(&self) -> bool {
        matches!(self.engine, Engine::Fast { .. })
    }

    /// The chunks of `text`, in order.
    ///
    /// Text the pattern does not match is skipped, as tiktoken does (the
    /// three known patterns match every character, so for them the chunks
    /// always join back into `text`). If `fancy-regex` gives up on a
    /// pathological input (its backtracking limit), the rest of the text is
    /// returned as one chunk rather than lost.
    pub fn chunks<'a>(&'a self, text: &'a str) -> Chunks<'a> {
        let inner = match &self.engine {
            Engine::Fast { regex, lookahead } => ChunksInner::Fast {
                regex,
                lookahead: PatternID::must(*lookahead),
                pos: 0,
            },
            Engine::General(regex) => ChunksInner::General { regex, pos: 0 },
        };
        Chunks { text, inner }
    }
}

/// Iterator over the chunks of a text; see [`Pretokenizer::chunks`].
pub struct Chunks<'a> {
    text: &'a str,
    inner: ChunksInner<'a>,
}

enum ChunksInner<'a> {
    Fast {
        regex: &'a MetaRegex,
        lookahead: PatternID,
        pos: usize,
    },
    General {
        regex: &'a FancyRegex,
        pos: usize,
    },
}

impl<'a> Iterator for Chunks<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let text = self.text;
        match &mut self.inner {
            ChunksInner::Fast {
                regex,
                lookahead,
                pos,
            } => {
                let (start, end) = next_fast(regex, *lookahead, text, *pos)?;
                *pos = end;
                Some(&text[start..end])
            }
            ChunksInner::General { regex, pos } => {
                let (start, end) = next_general(regex, text, *pos)?;
                *pos = end;
                Some(&text[start..end])
            }
        }
    }
}

/// The next non-empty match of `regex` in `text` at or after `pos`.
fn next_general(regex: &FancyRegex, text: &str, mut pos: usize) -> Option<(usize, usize)> {
    while pos < text.len() {
        match regex.find_from_pos(text, pos) {
            Ok(Some(m)) if m.end() > m.start() => return Some((m.start(), m.end())),
            // An empty match is no chunk: step over one character.
            Ok(Some(m)) => pos = m.end() + text[m.end()..].chars().next().map_or(1, char::len_utf8),
            Ok(None) => return None,
            // The backtracking limit was hit: hand back the rest whole.
            Err(_) => return Some((pos, text.len())),
        }
    }
    None
}

/// The next chunk of `text` at or after `pos`, as a byte range.
fn next_fast(
    regex: &MetaRegex,
    lookahead: PatternID,
    text: &str,
    pos: usize,
) -> Option<(usize, usize)> {
    if pos >= text.len() {
        return None;
    }
    // Every character starts a match of the known patterns, so an anchored
    // search (no scan for where the match begins) is enough; fall back to a
    // scan only if that ever fails.
    let input = Input::new(text).range(pos..);
    let m = regex
        .search(&input.clone().anchored(Anchored::Yes))
        .or_else(|| regex.search(&input))?;
    let (start, mut end) = (m.start(), m.end());
    if m.pattern() == lookahead && end < text.len() {
        // `\s+(?!\S)`: a non-space follows, so give back the last
        // whitespace character, unless it is the only one.
        let last = text[start..end]
            .chars()
            .next_back()
            .map_or(0, char::len_utf8);
        if end - start > last {
            end -= last;
        }
    }
    Some((start, end))
}
