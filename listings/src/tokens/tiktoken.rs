//! OpenAI's encodings: the book's [`Tokenizer`] with tiktoken's ranks.
//!
//! tiktoken-rs ships the vocabularies of `r50k_base` (GPT-2), `cl100k_base`
//! (GPT-3.5 and GPT-4) and `o200k_base` (GPT-4o) inside the crate, so they
//! work offline. It does not export them, but decoding each id on its own
//! gives that token's bytes: that is the whole vocabulary, and with the
//! encoding's pattern and special tokens the book's encoder reproduces
//! tiktoken's ids exactly.

use std::fmt;
use std::str::FromStr;

use tiktoken_rs::CoreBPE;

use super::pretokenize::{CL100K_PATTERN, GPT2_PATTERN, O200K_PATTERN};
use super::{BuildError, Tokenizer};

/// One of tiktoken's encodings.
///
/// ```
/// use listings::tokens::Encoding;
/// let cl100k: Encoding = "cl100k_base".parse()?;
/// assert_eq!(cl100k, Encoding::Cl100kBase);
/// assert!("gpt5".parse::<Encoding>().unwrap_err().contains("r50k_base, cl100k_base, o200k_base"));
/// # Ok::<(), String>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// GPT-2 and GPT-3: 50,256 ranks and `<|endoftext|>`.
    R50kBase,
    /// GPT-3.5 and GPT-4: 100,256 ranks and five special tokens.
    Cl100kBase,
    /// GPT-4o and later: 199,998 ranks and two special tokens.
    O200kBase,
}

impl Encoding {
    /// All three, oldest first.
    pub const ALL: [Encoding; 3] = [
        Encoding::R50kBase,
        Encoding::Cl100kBase,
        Encoding::O200kBase,
    ];

    /// tiktoken's name for it, such as `"cl100k_base"`.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::R50kBase => "r50k_base",
            Encoding::Cl100kBase => "cl100k_base",
            Encoding::O200kBase => "o200k_base",
        }
    }

    /// The pre-tokeniser pattern.
    pub fn pattern(self) -> &'static str {
        match self {
            Encoding::R50kBase => GPT2_PATTERN,
            Encoding::Cl100kBase => CL100K_PATTERN,
            Encoding::O200kBase => O200K_PATTERN,
        }
    }

    /// The special tokens and their ids, as tiktoken-rs defines them.
    pub fn special_tokens(self) -> &'static [(&'static str, u32)] {
        match self {
            Encoding::R50kBase => &[("<|endoftext|>", 50256)],
            Encoding::Cl100kBase => &[
                ("<|endoftext|>", 100257),
                ("<|fim_prefix|>", 100258),
                ("<|fim_middle|>", 100259),
                ("<|fim_suffix|>", 100260),
                ("<|endofprompt|>", 100276),
            ],
            Encoding::O200kBase => &[("<|endoftext|>", 199999), ("<|endofprompt|>", 200018)],
        }
    }

    /// tiktoken-rs's own encoder for this encoding.
    pub fn tiktoken(self) -> Result<CoreBPE, BuildError> {
        let built = match self {
            Encoding::R50kBase => tiktoken_rs::r50k_base(),
            Encoding::Cl100kBase => tiktoken_rs::cl100k_base(),
            Encoding::O200kBase => tiktoken_rs::o200k_base(),
        };
        built.map_err(|e| BuildError::Tiktoken {
            encoding: self.name(),
            message: e.to_string(),
        })
    }

    // ANCHOR: tokenizer
    /// The book's encoder with this encoding's ranks, pattern and special
    /// tokens.
    pub fn tokenizer(self) -> Result<Tokenizer, BuildError> {
        let vocab = ranks_from_tiktoken(&self.tiktoken()?, self.special_tokens());
        Tokenizer::from_ranks(vocab, self.pattern(), self.special_tokens())
    }
    // ANCHOR_END: tokenizer
}

// ANCHOR: ranks_from_tiktoken
/// Rebuilds a vocabulary from tiktoken-rs: the bytes of each id, `None`
/// where the id is not an ordinary token.
///
/// Decoding one id gives that token's bytes. Ordinary ids run from 0 up to
/// just below the special tokens (with gaps where decoding fails), so every
/// id below the largest special id is tried, skipping the special ones.
pub fn ranks_from_tiktoken(bpe: &CoreBPE, specials: &[(&str, u32)]) -> Vec<Option<Vec<u8>>> {
    let end = specials.iter().map(|&(_, id)| id).max().unwrap_or(0);
    let is_special = |id| specials.iter().any(|&(_, s)| s == id);
    let mut vocab: Vec<Option<Vec<u8>>> = (0..end)
        .map(|id| {
            if is_special(id) {
                None
            } else {
                bpe.decode_bytes(&[id]).ok()
            }
        })
        .collect();
    while vocab.last().is_some_and(Option::is_none) {
        vocab.pop();
    }
    vocab
}
// ANCHOR_END: ranks_from_tiktoken

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Encoding {
    type Err = String;

    /// Parses tiktoken's name; the error lists the valid names.
    fn from_str(name: &str) -> Result<Self, String> {
        Encoding::ALL
            .into_iter()
            .find(|e| e.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Encoding::ALL.iter().map(|e| e.name()).collect();
                format!(
                    "unknown encoding {name:?}: expected one of {}",
                    names.join(", ")
                )
            })
    }
}
