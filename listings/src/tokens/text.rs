//! Text to token ids for training: a character vocabulary, as nanoGPT's
//! `shakespeare_char/prepare.py` builds it, or the book's byte-level BPE,
//! behind one type a checkpoint can store.
//!
//! - [`CharVocab`] is the sorted unique characters of the text, each
//!   character's id its position in that list;
//! - [`TextTokenizer`] is either that or [`Tokenizer`], with one string form
//!   to store in a checkpoint.

use rustc_hash::FxHashMap;
use thiserror::Error;

use super::{ParseError, SaveError, Tokenizer};

/// What went wrong turning text into ids, ids into text, or a tokenizer
/// into its stored form and back.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum TokenizerError {
    /// A character vocabulary cannot be built from nothing.
    #[error("cannot build a character vocabulary from an empty text; give it the training text")]
    EmptyVocab,
    /// The text has a character the vocabulary does not have.
    #[error(
        "character {ch:?} (U+{code:04X}) at position {position} is not in the vocabulary \
         of {vocab_size} characters, which holds only the characters of the training text; \
         remove it or train on a text that has it",
        code = u32::from(*ch)
    )]
    UnknownChar {
        /// The character.
        ch: char,
        /// Its position in the text, counted in characters from 0.
        position: usize,
        /// How many characters the vocabulary has.
        vocab_size: usize,
    },
    /// An id has no token.
    #[error(
        "token id {id} at position {position} is not in the vocabulary \
         (ids run from 0 to {})", vocab_size.saturating_sub(1)
    )]
    UnknownId {
        /// The id.
        id: u32,
        /// Its position in the list of ids, from 0.
        position: usize,
        /// The tokenizer's vocabulary size.
        vocab_size: usize,
    },
    /// BPE tokens decoded to bytes that are not UTF-8 text.
    #[error(
        "the tokens' bytes are not valid UTF-8 at byte offset {offset} \
         (a character was cut between tokens)"
    )]
    InvalidUtf8 {
        /// Offset of the first bad byte.
        offset: usize,
    },
    /// The stored form of a tokenizer does not parse.
    #[error("the stored tokenizer is damaged: {0}")]
    Parse(String),
    /// This tokenizer has no stored form.
    #[error("this tokenizer cannot be stored: {0}")]
    Unstorable(String),
}

// ANCHOR: char_vocab
/// A character-level vocabulary, as nanoGPT's `prepare.py` builds it: the
/// sorted unique characters of the text; a character's id is its position.
///
/// ```
/// use listings::tokens::CharVocab;
/// let vocab = CharVocab::from_text("hello")?;
/// assert_eq!(vocab.chars(), ['e', 'h', 'l', 'o']);
/// assert_eq!(vocab.encode("hole")?, [1, 3, 2, 0]);
/// assert_eq!(vocab.decode(&[1, 0, 2, 2, 3])?, "hello");
/// # Ok::<(), listings::tokens::TokenizerError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CharVocab {
    /// The characters, sorted; `chars[id]` is the character of `id`.
    chars: Vec<char>,
    /// The id of each character.
    ids: FxHashMap<char, u32>,
}

impl CharVocab {
    /// The vocabulary of `text`: its distinct characters in sorted order.
    pub fn from_text(text: &str) -> Result<Self, TokenizerError> {
        let mut chars: Vec<char> = text.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        Self::from_sorted(chars)
    }

    /// A vocabulary from its characters, which must be sorted and distinct
    /// (as [`CharVocab::chars`] returns them).
    pub fn from_chars(chars: &[char]) -> Result<Self, TokenizerError> {
        if let Some(pair) = chars.windows(2).find(|pair| pair[0] >= pair[1]) {
            return Err(TokenizerError::Parse(format!(
                "the characters must be sorted and distinct, but {:?} comes before {:?}",
                pair[0], pair[1]
            )));
        }
        Self::from_sorted(chars.to_vec())
    }

    fn from_sorted(chars: Vec<char>) -> Result<Self, TokenizerError> {
        if chars.is_empty() {
            return Err(TokenizerError::EmptyVocab);
        }
        let ids = chars.iter().zip(0..).map(|(&ch, id)| (ch, id)).collect();
        Ok(Self { chars, ids })
    }

    /// The characters, in id order.
    pub fn chars(&self) -> &[char] {
        &self.chars
    }

    /// How many characters (ids) there are.
    pub fn vocab_size(&self) -> usize {
        self.chars.len()
    }

    /// The id of every character of `text`; fails on the first character
    /// the vocabulary does not have, naming it and its position.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        text.chars()
            .enumerate()
            .map(|(position, ch)| {
                self.ids
                    .get(&ch)
                    .copied()
                    .ok_or(TokenizerError::UnknownChar {
                        ch,
                        position,
                        vocab_size: self.chars.len(),
                    })
            })
            .collect()
    }

    /// The text that `ids` stand for.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        ids.iter()
            .enumerate()
            .map(|(position, &id)| {
                self.chars
                    .get(id as usize)
                    .copied()
                    .ok_or(TokenizerError::UnknownId {
                        id,
                        position,
                        vocab_size: self.chars.len(),
                    })
            })
            .collect()
    }
}
// ANCHOR_END: char_vocab

// ANCHOR: text_tokenizer
/// The tokenizer a model is trained with: characters, or byte-level BPE.
///
/// Its stored form ([`TextTokenizer::to_text`]) is one line naming the kind,
/// `char` or `bpe`, then the vocabulary: for `char` the characters in id
/// order, verbatim; for `bpe` the tokenizer file of [`crate::tokens::format`].
///
/// ```
/// use listings::tokens::{CharVocab, TextTokenizer};
/// let tok = TextTokenizer::Char(CharVocab::from_text("ba\n")?);
/// assert_eq!(tok.to_text()?, "char\n\nab");
/// let back = TextTokenizer::from_text(&tok.to_text()?)?;
/// assert_eq!(back.encode("abba\n")?, [1, 2, 2, 1, 0]);
/// # Ok::<(), listings::tokens::TokenizerError>(())
/// ```
#[derive(Clone, Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "a program holds one or two tokenizers; a Box would only add noise"
)]
pub enum TextTokenizer {
    /// One token per character, as nanoGPT's `shakespeare_char`.
    Char(CharVocab),
    /// Byte-level BPE ([`Tokenizer`]). Special tokens such as
    /// `<|endoftext|>` are encoded as plain text.
    Bpe(Tokenizer),
}
// ANCHOR_END: text_tokenizer

impl TextTokenizer {
    /// The ids of `text`. Only a character vocabulary can fail, on a
    /// character it does not have.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        match self {
            Self::Char(vocab) => vocab.encode(text),
            Self::Bpe(tokenizer) => Ok(tokenizer.encode(text)),
        }
    }

    /// The text of `ids`; fails on an unknown id, or on BPE tokens whose
    /// bytes cut a character in two.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        match self {
            Self::Char(vocab) => vocab.decode(ids),
            Self::Bpe(tokenizer) => tokenizer.decode(ids).map_err(|e| match e {
                crate::tokens::DecodeError::UnknownId {
                    id,
                    position,
                    vocab_size,
                } => TokenizerError::UnknownId {
                    id,
                    position,
                    vocab_size,
                },
                crate::tokens::DecodeError::InvalidUtf8 { offset } => {
                    TokenizerError::InvalidUtf8 { offset }
                }
            }),
        }
    }

    /// The text of `ids`, never failing: an unknown id shows as `?` and bytes
    /// that are not UTF-8 as `�` (U+FFFD). For showing what a model wrote.
    pub fn decode_lossy(&self, ids: &[u32]) -> String {
        match self {
            Self::Char(vocab) => ids
                .iter()
                .map(|&id| vocab.chars.get(id as usize).copied().unwrap_or('?'))
                .collect(),
            Self::Bpe(tokenizer) => {
                let mut bytes = Vec::with_capacity(ids.len() * 4);
                for &id in ids {
                    bytes.extend_from_slice(tokenizer.token_bytes(id).unwrap_or(b"?"));
                }
                String::from_utf8_lossy(&bytes).into_owned()
            }
        }
    }

    /// How many ids exist: the smallest `vocab_size` a model needs.
    pub fn vocab_size(&self) -> usize {
        match self {
            Self::Char(vocab) => vocab.vocab_size(),
            Self::Bpe(tokenizer) => tokenizer.vocab_size(),
        }
    }

    /// `"char"` or `"bpe"`, the first line of the stored form.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Char(_) => "char",
            Self::Bpe(_) => "bpe",
        }
    }

    /// The stored form: the kind on the first line, then the vocabulary.
    /// Fails for BPE tokenizers not built from merges (tiktoken's).
    pub fn to_text(&self) -> Result<String, TokenizerError> {
        let body = match self {
            Self::Char(vocab) => vocab.chars.iter().collect(),
            Self::Bpe(tokenizer) => tokenizer
                .to_text()
                .map_err(|e: SaveError| TokenizerError::Unstorable(e.to_string()))?,
        };
        Ok(format!("{}\n{body}", self.kind()))
    }

    /// Reads the stored form written by [`TextTokenizer::to_text`].
    pub fn from_text(text: &str) -> Result<Self, TokenizerError> {
        let (kind, body) = text.split_once('\n').ok_or_else(|| {
            TokenizerError::Parse("expected a first line `char` or `bpe`, found no line".into())
        })?;
        match kind {
            "char" => {
                let chars: Vec<char> = body.chars().collect();
                Ok(Self::Char(CharVocab::from_chars(&chars)?))
            }
            "bpe" => Tokenizer::from_text(body)
                .map(Self::Bpe)
                .map_err(|e: ParseError| TokenizerError::Parse(format!("bpe tokenizer: {e}"))),
            other => Err(TokenizerError::Parse(format!(
                "expected a first line `char` or `bpe`, found {other:?}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab() -> CharVocab {
        CharVocab::from_text("hello world\n").unwrap()
    }

    #[test]
    fn char_vocab_is_sorted_unique_chars() {
        let v = vocab();
        assert_eq!(v.chars(), ['\n', ' ', 'd', 'e', 'h', 'l', 'o', 'r', 'w']);
        let ids = v.encode("hello world\n").unwrap();
        assert_eq!(v.decode(&ids).unwrap(), "hello world\n");
    }

    #[test]
    fn unknown_char_is_named_with_its_position() {
        let err = vocab().encode("hello, world").unwrap_err();
        assert_eq!(
            err,
            TokenizerError::UnknownChar {
                ch: ',',
                position: 5,
                vocab_size: 9
            }
        );
        assert!(
            err.to_string().contains("',' (U+002C) at position 5"),
            "{err}"
        );
    }

    #[test]
    fn unknown_id_is_named() {
        let err = vocab().decode(&[0, 9]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "token id 9 at position 1 is not in the vocabulary (ids run from 0 to 8)"
        );
    }

    #[test]
    fn empty_vocab_and_unsorted_stored_vocab_are_errors() {
        assert_eq!(CharVocab::from_text(""), Err(TokenizerError::EmptyVocab));
        assert!(CharVocab::from_chars(&['b', 'a']).is_err());
        assert!(CharVocab::from_chars(&['a', 'a']).is_err());
    }

    #[test]
    fn stored_form_round_trips_for_both_kinds() {
        let char_tok = TextTokenizer::Char(vocab());
        let back = TextTokenizer::from_text(&char_tok.to_text().unwrap()).unwrap();
        assert_eq!(
            back.encode("world").unwrap(),
            char_tok.encode("world").unwrap()
        );
        let bpe = crate::tokens::train_with_endoftext("the cat sat on the mat", 262);
        let bpe_tok = TextTokenizer::Bpe(bpe);
        let back = TextTokenizer::from_text(&bpe_tok.to_text().unwrap()).unwrap();
        assert_eq!(back.kind(), "bpe");
        assert_eq!(back.vocab_size(), bpe_tok.vocab_size());
        assert_eq!(
            back.encode("the mat").unwrap(),
            bpe_tok.encode("the mat").unwrap()
        );
        assert!(TextTokenizer::from_text("words\nabc").is_err());
        assert!(TextTokenizer::from_text("char").is_err());
    }
}
