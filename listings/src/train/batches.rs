//! Training data: the train/validation split, random batches, and the loss
//! of a model over a whole file.
//!
//! Everything follows nanoGPT, so a run can be held beside its scripts
//! (text becomes ids through [`TextTokenizer`], in [`crate::tokens`]):
//!
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
//! use listings::tokens::{CharVocab, TextTokenizer};
//! use listings::train::batches::TokenData;
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
use thiserror::Error;

use crate::model::{Activations, Gpt, GptConfig, ModelError};
use crate::rng::{ChaCha8Rng, RngExt};
use crate::tokens::{TextTokenizer, TokenizerError};

/// The share of the tokens used for training, as nanoGPT; the rest validate.
pub const TRAIN_FRACTION: f64 = 0.9;

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
/// use listings::train::batches::mean_window_loss;
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
