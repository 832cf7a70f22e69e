//! Training data: text to token ids, the train/validation split, random
//! batches, and the loss of a model over a whole file.
//!
//! Everything follows nanoGPT, so a run can be held beside its scripts:
//!
//! - [`CharVocab`] is the vocabulary of its `shakespeare_char/prepare.py`:
//!   the sorted unique characters of the text, each character's id its
//!   position in that list;
//! - [`TextTokenizer`] is either that or the book's byte-level BPE
//!   ([`Tokenizer`]), with one string form to store in a checkpoint;
//! - [`TokenData::split`] keeps the first 90% of the tokens for training and
//!   the last 10% for validation;
//! - [`TokenData::get_batch`] is nanoGPT's `get_batch`: `B` random windows,
//!   inputs `x` and the same windows shifted by one token as targets `y`;
//! - [`mean_window_loss`] scores a model on a whole file, window after
//!   window, the number `listings eval` prints.
//!
//! Shapes: `B` batch, `T` time (`block_size`), `V` vocabulary size.
//!
//! ```
//! use listings::train::data::{CharVocab, TextTokenizer, TokenData};
//! use listings::rng::seeded;
//! use ndarray::Array2;
//! let text = "to be or not to be, that is the question";
//! let tok = TextTokenizer::Char(CharVocab::from_text(text)?);
//! let data = TokenData::new(tok.encode(text)?);
//! let split = data.split(0.9, 3)?; // 36 tokens to train on, 4 to validate
//! let (mut x, mut y) = (Array2::zeros((2, 3)), Array2::zeros((2, 3))); // (B, T)
//! split.train.get_batch(&mut seeded(0), &mut x, &mut y)?;
//! assert_eq!(x[[0, 1]], y[[0, 0]]); // y is x shifted by one token
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use ndarray::{Array2, s};
use rustc_hash::FxHashMap;
use thiserror::Error;

use crate::model::{Activations, Gpt, GptConfig, ModelError};
use crate::rng::{ChaCha8Rng, RngExt};
use crate::tokens::{ParseError, SaveError, Tokenizer};

/// The share of the tokens used for training, as nanoGPT; the rest validate.
pub const TRAIN_FRACTION: f64 = 0.9;

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
/// use listings::train::data::CharVocab;
/// let vocab = CharVocab::from_text("hello")?;
/// assert_eq!(vocab.chars(), ['e', 'h', 'l', 'o']);
/// assert_eq!(vocab.encode("hole")?, [1, 3, 2, 0]);
/// assert_eq!(vocab.decode(&[1, 0, 2, 2, 3])?, "hello");
/// # Ok::<(), listings::train::data::TokenizerError>(())
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
/// use listings::train::data::{CharVocab, TextTokenizer};
/// let tok = TextTokenizer::Char(CharVocab::from_text("ba\n")?);
/// assert_eq!(tok.to_text()?, "char\n\nab");
/// let back = TextTokenizer::from_text(&tok.to_text()?)?;
/// assert_eq!(back.encode("abba\n")?, [1, 2, 2, 1, 0]);
/// # Ok::<(), listings::train::data::TokenizerError>(())
/// ```
#[derive(Clone, Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "a program holds one or two tokenizers; a Box would only add noise"
)]
pub enum TextTokenizer {
    /// One token per character, as nanoGPT's `shakespeare_char`.
    Char(CharVocab),
    /// The book's byte-level BPE (chapter 1). Special tokens such as
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

/// What is wrong with the data for training or evaluating.
#[derive(Clone, Debug, Error, PartialEq)]
pub enum DataError {
    /// There is no text.
    #[error("the text is empty; give it a file with something to learn from")]
    EmptyText,
    /// The text could not be tokenized.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// The train fraction is not a fraction.
    #[error("train_fraction = {0} must be between 0 and 1 (nanoGPT uses 0.9)")]
    BadFraction(f64),
    /// A part of the data is too short to hold one window.
    #[error(
        "the {part} has {tokens} tokens but one window needs block_size + 1 = {} \
         (block_size {block_size} inputs, plus one more for the last target); \
         use more text (or, to train, a smaller block_size)",
        block_size + 1
    )]
    TooShort {
        /// Which part: "training split", "validation split", "text".
        part: &'static str,
        /// How many tokens it has.
        tokens: usize,
        /// The window length asked for.
        block_size: usize,
    },
    /// The arrays given to [`TokenData::get_batch`] do not fit.
    #[error(
        "x has shape {x:?} and y has shape {y:?}; they must both be (B, T) \
         with B >= 1 and 1 <= T <= {max_time} for this data"
    )]
    BatchShape {
        /// `(B, T)` of `x`.
        x: (usize, usize),
        /// `(B, T)` of `y`.
        y: (usize, usize),
        /// The longest window this data holds with its targets.
        max_time: usize,
    },
    /// The model rejected the tokens (a tokenizer larger than its vocabulary).
    #[error(transparent)]
    Model(#[from] ModelError),
}

// ANCHOR: token_data
/// A text as token ids, ready to cut into training windows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenData {
    ids: Vec<u32>,
}

/// The two parts of the data: the first `train_fraction` of the tokens to
/// train on, the rest to validate on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    /// The first part, `floor(n · train_fraction)` tokens.
    pub train: TokenData,
    /// The rest.
    pub val: TokenData,
}

impl TokenData {
    /// Wraps token ids.
    pub fn new(ids: Vec<u32>) -> Self {
        Self { ids }
    }

    /// Tokenizes `text`; fails on empty text or a character the tokenizer
    /// does not have.
    pub fn from_text(text: &str, tokenizer: &TextTokenizer) -> Result<Self, DataError> {
        if text.is_empty() {
            return Err(DataError::EmptyText);
        }
        Ok(Self::new(tokenizer.encode(text)?))
    }

    /// The ids.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// How many tokens there are.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// nanoGPT's split: the first `floor(n · train_fraction)` tokens train,
    /// the rest validate. Each part must hold at least one window of
    /// `block_size + 1` tokens.
    pub fn split(&self, train_fraction: f64, block_size: usize) -> Result<Split, DataError> {
        if self.ids.is_empty() {
            return Err(DataError::EmptyText);
        }
        if !(0.0..=1.0).contains(&train_fraction) {
            return Err(DataError::BadFraction(train_fraction));
        }
        let n = (self.ids.len() as f64 * train_fraction) as usize;
        let split = Split {
            train: Self::new(self.ids[..n].to_vec()),
            val: Self::new(self.ids[n..].to_vec()),
        };
        split.train.check_window(block_size, "training split")?;
        split.val.check_window(block_size, "validation split")?;
        Ok(split)
    }

    /// Checks that the data holds a window of `block_size` inputs and their
    /// targets; `part` names the data in the error.
    pub fn check_window(&self, block_size: usize, part: &'static str) -> Result<(), DataError> {
        if self.ids.len() <= block_size {
            return Err(DataError::TooShort {
                part,
                tokens: self.ids.len(),
                block_size,
            });
        }
        Ok(())
    }
    // ANCHOR_END: token_data

    // ANCHOR: get_batch
    /// nanoGPT's `get_batch`, into arrays the caller owns: for each row `b`
    /// of `x` and `y` (both `(B, T)`), a random start `i` in
    /// `0..=len - T - 1`, then `x[b] = data[i..i+T]` and
    /// `y[b] = data[i+1..i+T+1]`: at every position the target is the
    /// token that comes next. Allocates nothing.
    pub fn get_batch(
        &self,
        rng: &mut ChaCha8Rng,
        x: &mut Array2<u32>,
        y: &mut Array2<u32>,
    ) -> Result<(), DataError> {
        let (b, t) = x.dim();
        let max_time = self.ids.len().saturating_sub(1);
        if x.dim() != y.dim() || b == 0 || t == 0 || t > max_time {
            return Err(DataError::BatchShape {
                x: x.dim(),
                y: y.dim(),
                max_time,
            });
        }
        for (mut xs, mut ys) in x.outer_iter_mut().zip(y.outer_iter_mut()) {
            let i = rng.random_range(0..=self.ids.len() - t - 1);
            for (j, (xv, yv)) in xs.iter_mut().zip(ys.iter_mut()).enumerate() {
                *xv = self.ids[i + j];
                *yv = self.ids[i + j + 1];
            }
        }
        Ok(())
    }
    // ANCHOR_END: get_batch
}

/// The result of [`mean_window_loss`]. Displays as
/// `loss 1.8857 over 1234 windows of 65 tokens`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WindowLoss {
    /// The mean cross-entropy per predicted token, in nats.
    pub loss: f32,
    /// How many windows were scored.
    pub windows: usize,
    /// Tokens per window: `block_size + 1`.
    pub window_len: usize,
}

impl std::fmt::Display for WindowLoss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "loss {:.4} over {} windows of {} tokens",
            self.loss, self.windows, self.window_len
        )
    }
}

// ANCHOR: mean_window_loss
/// The mean cross-entropy of `gpt` over a whole token sequence, the number
/// other implementations can be compared with on the same weights.
///
/// The tokens are cut into non-overlapping windows of `block_size + 1`,
/// starting at token 0 (a last, shorter piece is left out). In each window
/// the first `block_size` tokens are the inputs and the last `block_size`
/// the targets. The result is the mean over every target of every window.
/// Windows run through the model in batches, for speed; the batching does
/// not change the result beyond float rounding.
///
/// ```
/// use listings::model::{Gpt, GptConfig};
/// use listings::train::data::mean_window_loss;
/// let config = GptConfig { block_size: 8, ..GptConfig::toy(10) };
/// let gpt = Gpt::new(config, 0)?;
/// let tokens: Vec<u32> = (0..40).map(|i| i % 10).collect();
/// let result = mean_window_loss(&gpt, &tokens)?;
/// assert_eq!((result.windows, result.window_len), (4, 9)); // 40 / 9 = 4 windows
/// assert!((result.loss - 10_f32.ln()).abs() < 0.2); // untrained: about ln V
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn mean_window_loss(gpt: &Gpt, tokens: &[u32]) -> Result<WindowLoss, DataError> {
    let t = gpt.config().block_size;
    let windows = tokens.len() / (t + 1);
    if windows == 0 {
        return Err(DataError::TooShort {
            part: "text",
            tokens: tokens.len(),
            block_size: t,
        });
    }
    let per_batch = eval_batch_size(gpt.config());
    let mut acts = Activations::new(gpt.config(), per_batch.min(windows), t);
    let mut total = 0.0_f64;
    for first in (0..windows).step_by(per_batch) {
        let b = per_batch.min(windows - first);
        let rows = &tokens[first * (t + 1)..(first + b) * (t + 1)];
        let all = Array2::from_shape_vec((b, t + 1), rows.to_vec()).expect("b · (t + 1) tokens");
        let (x, y) = (all.slice(s![.., ..t]), all.slice(s![.., 1..])); // (B, T) each
        gpt.forward_with(&mut acts, &x, Some(&y))?;
        total += acts.losses.iter().map(|&l| f64::from(l)).sum::<f64>();
    }
    Ok(WindowLoss {
        loss: (total / (windows * t) as f64) as f32,
        windows,
        window_len: t + 1,
    })
}
// ANCHOR_END: mean_window_loss

/// [`mean_window_loss`] of `text`, tokenized with `tokenizer`.
pub fn evaluate_text(
    gpt: &Gpt,
    tokenizer: &TextTokenizer,
    text: &str,
) -> Result<WindowLoss, DataError> {
    let data = TokenData::from_text(text, tokenizer)?;
    mean_window_loss(gpt, data.ids())
}

/// How many windows to run at once: as many as fit in about 16 MB of
/// activations (enough rows to keep the matrix multiplications efficient,
/// few enough to keep memory small), between 1 and 64.
fn eval_batch_size(config: &GptConfig) -> usize {
    let GptConfig {
        vocab_size: v,
        block_size: t,
        n_layer: l,
        n_head: nh,
        n_embd: c,
    } = *config;
    // Per window: the logits (T, V), the embeddings and ln_f (T, C), and per
    // layer 18 channels' worth of (T, C) arrays plus the attention weights
    // (nh, T, T); f32 each.
    let bytes_per_window = 4 * t * (v + 2 * c + l * (18 * c + nh * t));
    (16_usize << 20)
        .checked_div(bytes_per_window)
        .unwrap_or(1)
        .clamp(1, 64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::seeded;

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

    #[test]
    fn split_is_first_90_percent_and_checks_sizes() {
        let data = TokenData::new((0..100).collect());
        let split = data.split(TRAIN_FRACTION, 8).unwrap();
        assert_eq!(split.train.ids(), (0..90).collect::<Vec<_>>());
        assert_eq!(split.val.ids(), (90..100).collect::<Vec<_>>());
        let err = data.split(0.9, 10).unwrap_err();
        assert_eq!(
            err,
            DataError::TooShort {
                part: "validation split",
                tokens: 10,
                block_size: 10
            }
        );
        assert!(err.to_string().starts_with(
            "the validation split has 10 tokens but one window needs block_size + 1 = 11"
        ));
        assert_eq!(
            TokenData::new(vec![]).split(0.9, 1),
            Err(DataError::EmptyText)
        );
        assert!(matches!(
            data.split(f64::NAN, 1),
            Err(DataError::BadFraction(_))
        ));
    }

    #[test]
    fn batches_are_windows_with_targets_shifted_by_one_and_seeded() {
        let data = TokenData::new((0..20).collect());
        let (mut x, mut y) = (Array2::zeros((64, 5)), Array2::zeros((64, 5)));
        data.get_batch(&mut seeded(3), &mut x, &mut y).unwrap();
        let mut starts = Vec::new();
        for (xs, ys) in x.outer_iter().zip(y.outer_iter()) {
            let i = xs[0];
            starts.push(i);
            assert!(i < 20 - 5, "start {i} leaves no room for the targets");
            assert!(xs.iter().zip(0..).all(|(&v, j)| v == i + j));
            assert!(ys.iter().zip(1..).all(|(&v, j)| v == i + j));
        }
        // Every legal start, the first and the last included, is drawn.
        assert!(starts.contains(&0) && starts.contains(&14));
        let (mut x2, mut y2) = (Array2::zeros((64, 5)), Array2::zeros((64, 5)));
        data.get_batch(&mut seeded(3), &mut x2, &mut y2).unwrap();
        assert_eq!((x, y), (x2, y2));
    }

    #[test]
    fn batch_shape_errors() {
        let data = TokenData::new((0..5).collect());
        let (mut x, mut y) = (Array2::zeros((2, 5)), Array2::zeros((2, 5)));
        let err = data.get_batch(&mut seeded(0), &mut x, &mut y).unwrap_err();
        assert!(matches!(err, DataError::BatchShape { max_time: 4, .. }));
        let mut y = Array2::zeros((2, 3));
        let mut x = Array2::zeros((2, 4));
        assert!(data.get_batch(&mut seeded(0), &mut x, &mut y).is_err());
    }

    #[test]
    fn window_loss_matches_one_window_at_a_time() {
        let config = GptConfig {
            block_size: 6,
            ..GptConfig::toy(9)
        };
        let gpt = Gpt::new(config, 1).unwrap();
        let tokens: Vec<u32> = (0..200).map(|i| (i * 7 % 9) as u32).collect();
        let got = mean_window_loss(&gpt, &tokens).unwrap();
        assert_eq!((got.windows, got.window_len), (28, 7));
        let mut sum = 0.0_f64;
        for w in tokens.chunks_exact(7) {
            let x = Array2::from_shape_vec((1, 6), w[..6].to_vec()).unwrap();
            let y = Array2::from_shape_vec((1, 6), w[1..].to_vec()).unwrap();
            sum += f64::from(gpt.forward(&x, Some(&y)).unwrap().1.unwrap());
        }
        let expected = (sum / 28.0) as f32;
        assert!(
            (got.loss - expected).abs() < 1e-5,
            "{} vs {expected}",
            got.loss
        );
        let short = mean_window_loss(&gpt, &tokens[..6]).unwrap_err();
        assert!(matches!(short, DataError::TooShort { tokens: 6, .. }));
    }

    #[test]
    fn eval_batches_fit_in_memory() {
        assert_eq!(eval_batch_size(&GptConfig::baby(65)), 6);
        assert_eq!(eval_batch_size(&GptConfig::gpt2()), 1);
    }
}
