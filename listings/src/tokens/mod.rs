//! Chapter 1, Tokens: how text becomes numbers, and why those numbers.
//!
//! A byte-level BPE (byte pair encoding) tokenizer, built from scratch, that
//! also reproduces tiktoken's token ids exactly when given tiktoken's merge
//! ranks. The files, in reading order, each adding one idea to the last:
//!
//! | file | what it adds |
//! |---|---|
//! | [`bpe`] | the idea on one list of ids: count adjacent pairs, merge the most frequent, repeat; the plain trainer |
//! | [`pretokenize`] | cutting text into chunks with GPT's regex patterns, so merges never cross a word boundary |
//! | [`tokenizer`] | [`Tokenizer`]: encode with merge ranks (tiktoken's algorithm), decode, special tokens |
//! | [`trainer`] | the fast trainer: unique chunks with counts, pair counts updated incrementally |
//! | [`tiktoken`] | [`Encoding`]: `r50k_base`, `cl100k_base`, `o200k_base`, with their ranks rebuilt from tiktoken-rs |
//! | [`mod@format`] | saving and loading a trained tokenizer as a small text file |
//! | [`book_bpe`] | the book's own tokenizer, trained on its corpus |
//! | [`text`] | [`TextTokenizer`]: what a model trains with, characters ([`CharVocab`], as nanoGPT's) or BPE |
//!
//! Token ids are `u32`, as in tiktoken. In a BPE vocabulary a token's id is
//! also its *rank*: the lower the id, the earlier the merge that made it, and
//! the earlier an encoder applies it.
//!
//! ```
//! use listings::tokens::{train_tokenizer, BOOK_PATTERN};
//! let text = "the cat sat on the mat; the cat ate the rat";
//! let tok = train_tokenizer(text, 260, BOOK_PATTERN)?;
//! let ids = tok.encode("the cat");
//! assert_eq!(tok.decode(&ids)?, "the cat");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod book_bpe;
pub mod bpe;
pub mod format;
pub mod pretokenize;
pub mod text;
pub mod tiktoken;
pub mod tokenizer;
pub mod trainer;

pub use book_bpe::{BOOK_VOCAB_SIZE, book_tokenizer, train_book_tokenizer, train_with_endoftext};
pub use bpe::{count_pairs, merge};
pub use format::{LoadError, ParseError, Problem, SaveError};
pub use pretokenize::{CL100K_PATTERN, GPT2_PATTERN, O200K_PATTERN, Pretokenizer};
pub use text::{CharVocab, TextTokenizer, TokenizerError};
pub use tiktoken::Encoding;
pub use tokenizer::{DecodeError, Tokenizer};
pub use trainer::{train_merges, train_tokenizer};

/// The pattern the book's own tokenizer uses: GPT-4's ([`CL100K_PATTERN`]).
///
/// Of the three published patterns it is the one that cuts numbers into
/// groups of at most three digits (so the vocabulary does not fill up with
/// whatever numbers the corpus happens to contain), keeps newlines apart
/// from the words around them, and still treats a word as one chunk
/// whatever its case (o200k's split at case changes matters little for a
/// small English corpus). Using a pattern tiktoken uses also lets the book
/// compare its tokenizer with GPT-4's chunk for chunk.
pub const BOOK_PATTERN: &str = CL100K_PATTERN;

/// The special token that separates documents, as in GPT-2.
pub const ENDOFTEXT: &str = "<|endoftext|>";

/// Why a tokenizer could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// The pre-tokeniser pattern does not compile.
    #[error("invalid pre-tokenizer pattern: {0}")]
    Pattern(String),
    /// Some byte has no token, so some texts could not be encoded.
    #[error("byte 0x{0:02x} has no token: a byte-level vocabulary needs all 256 bytes")]
    MissingByte(u8),
    /// Two ids stand for the same bytes.
    #[error("tokens {first} and {second} have the same bytes {bytes:?}")]
    DuplicateToken {
        /// The lower id.
        first: u32,
        /// The higher id.
        second: u32,
        /// The bytes both stand for, written lossily as text.
        bytes: String,
    },
    /// A merge names a token that does not exist yet.
    #[error(
        "merge {index} ({left}, {right}) names a token that does not exist before it (ids so far: 0..{next})"
    )]
    UnknownMergeToken {
        /// Position of the merge, from 0.
        index: usize,
        /// Left id of the pair.
        left: u32,
        /// Right id of the pair.
        right: u32,
        /// The id this merge would create.
        next: u32,
    },
    /// A special token is empty, repeated, or its id is taken.
    #[error("special token {text:?} (id {id}): {reason}")]
    BadSpecial {
        /// The special token's text.
        text: String,
        /// Its id.
        id: u32,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// tiktoken-rs failed to build an encoding.
    #[error("tiktoken-rs could not build {encoding}: {message}")]
    Tiktoken {
        /// The encoding's name.
        encoding: &'static str,
        /// tiktoken-rs's message.
        message: String,
    },
}
