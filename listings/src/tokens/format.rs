//! Saving and loading a trained tokenizer.
//!
//! The file is UTF-8 text, one item per line, so it can be read and diffed:
//!
//! ```text
//! listings-bpe 1
//! pattern 's|'t| ?\p{L}+| ?\p{N}+|\s+
//! merges 2
//! 104 105
//! 32 256
//! specials 1
//! 258 <|endoftext|>
//! ```
//!
//! - line 1: the magic word `listings-bpe` and the format version, `1`;
//! - line 2: `pattern `, then the pre-tokeniser pattern, verbatim, to the end
//!   of the line;
//! - then `merges N` and N lines of two ids: merge `i` (from 0) makes token
//!   `256 + i` from the two tokens it names, which must exist before it;
//! - then `specials M` and M lines: an id, one space, the special token's
//!   text to the end of the line.
//!
//! Nothing may follow the last special token but an empty line. Lines may end
//! in `\n` or `\r\n`. Only tokenizers built from merges can be saved:
//! tiktoken's encodings come with tiktoken-rs and are not merge lists.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::str::Lines;

use super::{BuildError, Tokenizer};

/// The first word of every tokenizer file.
pub const MAGIC: &str = "listings-bpe";

/// The format version this code writes and reads.
pub const VERSION: u32 = 1;

/// A tokenizer file's text is wrong: where, and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct ParseError {
    /// The line, counted from 1.
    pub line: usize,
    /// What is wrong there.
    pub problem: Problem,
}

/// What can be wrong in a tokenizer file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The bytes are not UTF-8.
    #[error("not valid UTF-8 text")]
    NotUtf8,
    /// The first line is not `listings-bpe <version>`.
    #[error("expected `{MAGIC} {VERSION}`, found {found:?}: this is not a tokenizer file")]
    NotATokenizerFile {
        /// The first line.
        found: String,
    },
    /// The version is not one this code reads.
    #[error("format version {found:?} is not supported (this code reads version {VERSION})")]
    UnsupportedVersion {
        /// The version as written.
        found: String,
    },
    /// A line does not have the expected shape.
    #[error("expected {expected}, found {found:?}")]
    Expected {
        /// What should be there.
        expected: &'static str,
        /// What is there.
        found: String,
    },
    /// The file ends before it should.
    #[error("the file ends early: expected {expected}")]
    Truncated {
        /// What should come next.
        expected: String,
    },
    /// Text follows the last special token.
    #[error("unexpected text after the last special token: {found:?}")]
    TrailingText {
        /// The first such line.
        found: String,
    },
    /// The lines are well formed but do not make a tokenizer.
    #[error("{0}")]
    Invalid(BuildError),
}

/// Why a tokenizer file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read tokenizer file {}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The system's error.
        error: io::Error,
    },
    /// The file's contents are wrong.
    #[error("{}: {error}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Where and what.
        error: ParseError,
    },
}

/// Why a tokenizer could not be saved.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    /// The tokenizer was built from ranks, not merges.
    #[error(
        "only a tokenizer built from merges can be saved (this one was built from ranks, like tiktoken's)"
    )]
    NoMerges,
    /// The pattern or a special token contains a line break.
    #[error("the {what} contains a line break, which the file format cannot hold")]
    LineBreak {
        /// `"pattern"` or `"special token ..."`.
        what: String,
    },
    /// The file could not be written.
    #[error("cannot write tokenizer file {}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The system's error.
        error: io::Error,
    },
}

impl Tokenizer {
    // ANCHOR: to_text
    /// The tokenizer in the file format described in [`super::format`].
    pub fn to_text(&self) -> Result<String, SaveError> {
        let merges = self.merges().ok_or(SaveError::NoMerges)?;
        let has_break = |s: &str| s.contains(['\n', '\r']);
        if has_break(self.pattern()) {
            return Err(SaveError::LineBreak {
                what: "pattern".into(),
            });
        }
        let mut text = format!(
            "{MAGIC} {VERSION}\npattern {}\nmerges {}\n",
            self.pattern(),
            merges.len()
        );
        for (left, right) in merges {
            text += &format!("{left} {right}\n");
        }
        text += &format!("specials {}\n", self.special_tokens().len());
        for (special, id) in self.special_tokens() {
            if has_break(special) {
                return Err(SaveError::LineBreak {
                    what: format!("special token {special:?}"),
                });
            }
            text += &format!("{id} {special}\n");
        }
        Ok(text)
    }
    // ANCHOR_END: to_text

    /// Reads a tokenizer from the text of a file in the format described in
    /// [`super::format`].
    ///
    /// ```
    /// use listings::tokens::{Problem, Tokenizer};
    /// let text = "listings-bpe 1\npattern \\S+|\\s+\nmerges 2\n104 105\n32 999\nspecials 0\n";
    /// let error = Tokenizer::from_text(text).unwrap_err();
    /// assert_eq!(error.line, 5);
    /// assert_eq!(error.to_string(), "line 5: merge 1 (32, 999) names a token \
    ///     that does not exist before it (ids so far: 0..257)");
    /// ```
    pub fn from_text(text: &str) -> Result<Self, ParseError> {
        let mut lines = Reader {
            lines: text.lines(),
            line: 0,
        };
        let header = lines.next("the header line")?;
        check_header(header).map_err(|problem| ParseError { line: 1, problem })?;
        let pattern = lines.field("pattern", "`pattern <regex>`")?;
        let n_merges = lines.count("merges")?;
        let first_merge = lines.line + 1;
        let mut merges = Vec::with_capacity(n_merges.min(1 << 20));
        for _ in 0..n_merges {
            let line = lines.next("a merge `<id> <id>`")?;
            merges.push(lines.pair(line)?);
        }
        let n_specials = lines.count("specials")?;
        let first_special = lines.line + 1;
        let mut specials = Vec::with_capacity(n_specials.min(1 << 20));
        for _ in 0..n_specials {
            let line = lines.next("a special token `<id> <text>`")?;
            specials.push(lines.special(line)?);
        }
        lines.end()?;
        let specials_ref: Vec<(&str, u32)> = specials.iter().map(|&(s, id)| (s, id)).collect();
        Tokenizer::from_merges(&merges, pattern, &specials_ref).map_err(|error| {
            let line = match &error {
                BuildError::Pattern(_) => 2,
                BuildError::UnknownMergeToken { index, .. } => first_merge + index,
                BuildError::DuplicateToken { second, .. } => {
                    first_merge + (*second as usize).saturating_sub(256)
                }
                BuildError::BadSpecial { text, id, .. } => {
                    first_special
                        + specials
                            .iter()
                            .position(|&(s, i)| s == text && i == *id)
                            .unwrap_or(0)
                }
                _ => 1,
            };
            ParseError {
                line,
                problem: Problem::Invalid(error),
            }
        })
    }

    /// Writes the tokenizer to `path`, atomically: to a temporary file in the
    /// same folder first, then renamed over `path`, so a crash never leaves
    /// half a file behind.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), SaveError> {
        let path = path.as_ref();
        let text = self.to_text()?;
        write_atomically(path, text.as_bytes()).map_err(|error| SaveError::Io {
            path: path.to_path_buf(),
            error,
        })
    }

    /// Reads a tokenizer saved by [`Tokenizer::save`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self, LoadError> {
        let path = path.as_ref();
        let bytes = fs::read(path).map_err(|error| LoadError::Io {
            path: path.to_path_buf(),
            error,
        })?;
        let parsed = match std::str::from_utf8(&bytes) {
            Ok(text) => Tokenizer::from_text(text),
            Err(e) => {
                let line = 1 + bytes[..e.valid_up_to()]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count();
                Err(ParseError {
                    line,
                    problem: Problem::NotUtf8,
                })
            }
        };
        parsed.map_err(|error| LoadError::Parse {
            path: path.to_path_buf(),
            error,
        })
    }
}

/// Checks the first line: the magic word and a version this code reads.
fn check_header(header: &str) -> Result<(), Problem> {
    let not_ours = || Problem::NotATokenizerFile {
        found: header.to_string(),
    };
    let (magic, version) = header.split_once(' ').ok_or_else(not_ours)?;
    if magic != MAGIC {
        return Err(not_ours());
    }
    if version != VERSION.to_string() {
        return Err(Problem::UnsupportedVersion {
            found: version.to_string(),
        });
    }
    Ok(())
}

/// The lines of a file, counted.
struct Reader<'a> {
    lines: Lines<'a>,
    /// The number of the last line read, from 1.
    line: usize,
}

impl<'a> Reader<'a> {
    /// The next line; `expected` says what it should be if it is missing.
    fn next(&mut self, expected: &str) -> Result<&'a str, ParseError> {
        self.line += 1;
        self.lines.next().ok_or_else(|| {
            self.error(Problem::Truncated {
                expected: expected.to_string(),
            })
        })
    }

    fn error(&self, problem: Problem) -> ParseError {
        ParseError {
            line: self.line,
            problem,
        }
    }

    fn expected(&self, expected: &'static str, found: &str) -> ParseError {
        self.error(Problem::Expected {
            expected,
            found: found.to_string(),
        })
    }

    /// The rest of a line `<name> <value>`.
    fn field(&mut self, name: &str, shape: &'static str) -> Result<&'a str, ParseError> {
        let line = self.next(shape)?;
        match line.split_once(' ') {
            Some((key, value)) if key == name => Ok(value),
            _ => Err(self.expected(shape, line)),
        }
    }

    /// The number in a line `<name> <number>`.
    fn count(&mut self, name: &'static str) -> Result<usize, ParseError> {
        let shape = if name == "merges" {
            "`merges <count>`"
        } else {
            "`specials <count>`"
        };
        let value = self.field(name, shape)?;
        value
            .parse()
            .map_err(|_| self.expected(shape, &format!("{name} {value}")))
    }

    /// A merge line: two ids separated by one space.
    fn pair(&self, line: &str) -> Result<(u32, u32), ParseError> {
        let shape = "a merge `<id> <id>`";
        let (left, right) = line
            .split_once(' ')
            .ok_or_else(|| self.expected(shape, line))?;
        match (left.parse(), right.parse()) {
            (Ok(left), Ok(right)) => Ok((left, right)),
            _ => Err(self.expected(shape, line)),
        }
    }

    /// A special token line: an id, one space, the text.
    fn special(&self, line: &'a str) -> Result<(&'a str, u32), ParseError> {
        let shape = "a special token `<id> <text>`";
        let (id, text) = line
            .split_once(' ')
            .ok_or_else(|| self.expected(shape, line))?;
        let id = id.parse().map_err(|_| self.expected(shape, line))?;
        Ok((text, id))
    }

    /// Checks that only empty lines are left.
    fn end(&mut self) -> Result<(), ParseError> {
        for line in self.lines.by_ref() {
            self.line += 1;
            if !line.trim().is_empty() {
                return Err(self.error(Problem::TrailingText {
                    found: line.to_string(),
                }));
            }
        }
        Ok(())
    }
}

/// Writes `bytes` to a temporary file beside `path`, then renames it.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let temp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = (|| {
        let mut file = fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written
}
