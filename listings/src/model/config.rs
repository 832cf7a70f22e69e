//! The model's hyper-parameters, their presets, and the parameter count they imply.

use serde::{Deserialize, Serialize};
use thiserror::Error;

// Stored in checkpoints as JSON under these field names (see `checkpoint`).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
// ANCHOR: config
/// The shape of a GPT: five numbers fix every tensor in it.
///
/// The names are GPT-2's (and nanoGPT's, and Hugging Face's), so a config can
/// be read beside theirs. There is no dropout (the book's models are small
/// and trained briefly) and no option to drop biases: GPT-2 has them.
///
/// ```
/// use listings::model::GptConfig;
/// let config = GptConfig::baby(65);
/// assert_eq!(config.head_size(), 32);
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GptConfig {
    /// How many different tokens exist: the rows of `wte`, the width of the
    /// logits. Token ids run from 0 to `vocab_size - 1`.
    pub vocab_size: usize,
    /// The longest sequence the model accepts (the context window): the rows
    /// of the learned position table `wpe`.
    pub block_size: usize,
    /// How many transformer blocks are stacked, one after the other.
    pub n_layer: usize,
    /// How many attention heads share each block's attention; each head
    /// works on `n_embd / n_head` channels.
    pub n_head: usize,
    /// The width of the residual stream: how many numbers describe each
    /// token between layers (`C` in the shape comments).
    pub n_embd: usize,
}
// ANCHOR_END: config

// ANCHOR: presets
impl GptConfig {
    /// The book's toy model: 2 blocks, 4 heads of 16 channels, 64 wide, 64
    /// tokens of context. It has about 100,000 parameters plus the embedding
    /// table, small enough to learn something in a minute on two cores.
    pub fn toy(vocab_size: usize) -> Self {
        Self {
            vocab_size,
            block_size: 64,
            n_layer: 2,
            n_head: 4,
            n_embd: 64,
        }
    }

    /// nanoGPT's "baby GPT" for CPUs (its `train_shakespeare_char` config
    /// shrunk for a laptop): 4 blocks, 4 heads, 128 wide, 64 tokens.
    pub fn baby(vocab_size: usize) -> Self {
        Self {
            vocab_size,
            block_size: 64,
            n_layer: 4,
            n_head: 4,
            n_embd: 128,
        }
    }

    /// GPT-2 small, the 124M model: 12 blocks, 12 heads, 768 wide, 1024
    /// tokens, GPT-2's vocabulary of 50,257 tokens.
    pub fn gpt2() -> Self {
        Self {
            vocab_size: 50257,
            block_size: 1024,
            n_layer: 12,
            n_head: 12,
            n_embd: 768,
        }
    }

    /// GPT-2 medium (350M): 24 blocks, 16 heads, 1024 wide.
    pub fn gpt2_medium() -> Self {
        Self {
            n_layer: 24,
            n_head: 16,
            n_embd: 1024,
            ..Self::gpt2()
        }
    }

    /// GPT-2 large (774M): 36 blocks, 20 heads, 1280 wide.
    pub fn gpt2_large() -> Self {
        Self {
            n_layer: 36,
            n_head: 20,
            n_embd: 1280,
            ..Self::gpt2()
        }
    }

    /// GPT-2 XL (1558M): 48 blocks, 25 heads, 1600 wide.
    pub fn gpt2_xl() -> Self {
        Self {
            n_layer: 48,
            n_head: 25,
            n_embd: 1600,
            ..Self::gpt2()
        }
    }
}
// ANCHOR_END: presets

impl GptConfig {
    /// nanoGPT's `config/train_shakespeare_char.py` model: 6 blocks, 6
    /// heads, 384 wide, 256 tokens of context (the CLI's defaults).
    pub fn shakespeare_char(vocab_size: usize) -> Self {
        Self {
            vocab_size,
            block_size: 256,
            n_layer: 6,
            n_head: 6,
            n_embd: 384,
        }
    }

    /// The channels each attention head works on: `hs = n_embd / n_head`.
    pub fn head_size(&self) -> usize {
        self.n_embd / self.n_head
    }

    // ANCHOR: validate
    /// Checks that the five numbers make a model: none is zero, and the
    /// heads split the channels evenly.
    ///
    /// ```
    /// use listings::model::{ConfigError, GptConfig};
    /// let bad = GptConfig { n_head: 3, ..GptConfig::baby(65) };
    /// assert_eq!(bad.validate(), Err(ConfigError::HeadsDoNotDivide { n_embd: 128, n_head: 3 }));
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        let sizes = [
            ("vocab_size", self.vocab_size),
            ("block_size", self.block_size),
            ("n_layer", self.n_layer),
            ("n_head", self.n_head),
            ("n_embd", self.n_embd),
        ];
        if let Some(&(field, _)) = sizes.iter().find(|(_, value)| *value == 0) {
            return Err(ConfigError::Zero { field });
        }
        if self.vocab_size > u32::MAX as usize {
            return Err(ConfigError::VocabTooLarge {
                vocab_size: self.vocab_size,
            });
        }
        if !self.n_embd.is_multiple_of(self.n_head) {
            return Err(ConfigError::HeadsDoNotDivide {
                n_embd: self.n_embd,
                n_head: self.n_head,
            });
        }
        Ok(())
    }
    // ANCHOR_END: validate
}

/// What is wrong with a [`GptConfig`].
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A size that must be at least 1 is 0.
    #[error("{field} is 0; every size in a GptConfig must be at least 1")]
    Zero {
        /// The field's name, as in [`GptConfig`].
        field: &'static str,
    },
    /// The channels cannot be split evenly between the heads.
    #[error(
        "n_embd = {n_embd} is not divisible by n_head = {n_head}; \
         each head needs the same number of channels, so pick n_embd as a multiple of n_head"
    )]
    HeadsDoNotDivide {
        /// The residual width asked for.
        n_embd: usize,
        /// The number of heads asked for.
        n_head: usize,
    },
    /// Token ids are `u32`, so a vocabulary cannot have more than 2^32 - 1 entries here.
    #[error("vocab_size = {vocab_size} is larger than the largest u32 token id allows")]
    VocabTooLarge {
        /// The vocabulary size asked for.
        vocab_size: usize,
    },
}

// ANCHOR: count_parameters
/// The number of parameters a config implies, by formula rather than by
/// counting tensors (the tests check that both agree).
///
/// In words: two embedding tables, then per block two LayerNorms (a weight
/// and a bias of `C` each) and four linear layers (weights `C x 3C`, `C x C`,
/// `C x 4C`, `4C x C`, each with a bias as wide as its output), then the
/// final LayerNorm. The output layer `lm_head` reuses `wte`, so it adds
/// nothing. In symbols, with `L` layers and `T` = `block_size`:
///
/// `V·C + T·C + L·(12·C² + 13·C) + 2·C`
///
/// ```
/// use listings::model::{count_parameters, GptConfig};
/// assert_eq!(count_parameters(&GptConfig::gpt2()), 124_439_808);
/// ```
pub fn count_parameters(config: &GptConfig) -> usize {
    let GptConfig {
        vocab_size: v,
        block_size: t,
        n_layer: l,
        n_embd: c,
        ..
    } = *config;
    let embeddings = v * c + t * c; // wte, wpe
    let layer_norms = 2 * (2 * c); // ln_1, ln_2: weight and bias
    let attention = (c * 3 * c + 3 * c) + (c * c + c); // c_attn, c_proj
    let mlp = (c * 4 * c + 4 * c) + (4 * c * c + c); // c_fc, c_proj
    let final_norm = 2 * c; // ln_f
    embeddings + l * (layer_norms + attention + mlp) + final_norm
}
// ANCHOR_END: count_parameters

/// Where a model's parameters are: the rows of a parameter table.
///
/// ```
/// use listings::model::{parameter_breakdown, GptConfig};
/// let p = parameter_breakdown(&GptConfig::gpt2());
/// assert_eq!(p.wte, 38_597_376);
/// assert_eq!(p.total, 124_439_808);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParameterBreakdown {
    /// The token embedding table `wte`, `V·C` (also the output layer).
    pub wte: usize,
    /// The position table `wpe`, `T·C`.
    pub wpe: usize,
    /// One block's attention: `c_attn` and `c_proj`, `4·C² + 4·C`.
    pub attention_per_layer: usize,
    /// One block's MLP: `c_fc` and `c_proj`, `8·C² + 5·C`.
    pub mlp_per_layer: usize,
    /// One block's two LayerNorms, `4·C`.
    pub layer_norms_per_layer: usize,
    /// All blocks together, `L·(12·C² + 13·C)`.
    pub blocks: usize,
    /// The final LayerNorm `ln_f`, `2·C`.
    pub ln_f: usize,
    /// Everything: the same number as [`count_parameters`].
    pub total: usize,
}

/// The parameter count of a config, split by where the parameters sit.
pub fn parameter_breakdown(config: &GptConfig) -> ParameterBreakdown {
    let GptConfig {
        vocab_size: v,
        block_size: t,
        n_layer: l,
        n_embd: c,
        ..
    } = *config;
    let attention_per_layer = 4 * c * c + 4 * c;
    let mlp_per_layer = 8 * c * c + 5 * c;
    let layer_norms_per_layer = 4 * c;
    let blocks = l * (attention_per_layer + mlp_per_layer + layer_norms_per_layer);
    let (wte, wpe, ln_f) = (v * c, t * c, 2 * c);
    ParameterBreakdown {
        wte,
        wpe,
        attention_per_layer,
        mlp_per_layer,
        layer_norms_per_layer,
        blocks,
        ln_f,
        total: wte + wpe + blocks + ln_f,
    }
}
