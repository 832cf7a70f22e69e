//! Sampling: a trained model writes, one token at a time.
//!
//! Each step runs the model on the text so far (its last `block_size`
//! tokens), takes the scores for the next token (the logits at the last
//! position), divides them by a temperature, optionally keeps only the `k`
//! highest, turns them into probabilities with a softmax, and draws one
//! token. The token joins the text and the loop goes on. A temperature of 0
//! means no drawing at all: always the most likely token (greedy decoding).
//!
//! This is nanoGPT's `generate`. The model reruns on the whole context for
//! every token; chapter 7's KV cache removes that waste.
//!
//! ```
//! use listings::model::{Gpt, GptConfig};
//! use listings::sample::{generate, SampleConfig};
//! let gpt = Gpt::new(GptConfig::toy(10), 0)?;
//! let config = SampleConfig { max_new_tokens: 5, ..SampleConfig::default() };
//! let ids = generate(&gpt, &[1, 2, 3], &config)?;
//! assert_eq!(ids.len(), 3 + 5);
//! assert_eq!(ids, generate(&gpt, &[1, 2, 3], &config)?); // same seed, same text
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use ndarray::Array2;
use thiserror::Error;

use crate::model::{Activations, Gpt, ModelError};
use crate::rng::{ChaCha8Rng, RngExt, seeded};
use crate::tokens::{TextTokenizer, TokenizerError};

/// How to sample. The defaults are those of nanoGPT's `sample.py`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SampleConfig {
    /// How many tokens to add to the prompt.
    pub max_new_tokens: usize,
    /// Divides the logits: below 1 sharpens the distribution (safer, duller
    /// text), above 1 flattens it (more surprising, more mistakes); 0 takes
    /// the most likely token every time. Must be finite and at least 0.
    pub temperature: f32,
    /// Keep only the `k` most likely tokens before drawing (ties with the
    /// `k`-th are kept too); `None` keeps all. Must be at least 1.
    pub top_k: Option<usize>,
    /// Seeds the ChaCha8 generator that draws the tokens.
    pub seed: u64,
}

impl Default for SampleConfig {
    fn default() -> Self {
        Self {
            max_new_tokens: 500,
            temperature: 0.8,
            top_k: Some(200),
            seed: 1337,
        }
    }
}

/// Why sampling could not run.
#[derive(Clone, Debug, Error, PartialEq)]
pub enum SampleError {
    /// The temperature is negative or not a number.
    #[error(
        "temperature {0} is not allowed: use 0 for greedy decoding, or a positive number \
         (0.8 is usual; 1 samples from the model's own probabilities)"
    )]
    Temperature(f32),
    /// `top_k` is 0, which would keep no token.
    #[error(
        "top_k = 0 keeps no token; use at least 1 (1 is greedy decoding), \
         or a value at least the vocabulary size to keep every token"
    )]
    TopKZero,
    /// There is nothing to continue.
    #[error("the prompt is empty; give at least one token (nanoGPT starts from \"\\n\")")]
    EmptyPrompt,
    /// The prompt could not be tokenized.
    #[error("cannot encode the prompt: {0}")]
    Prompt(TokenizerError),
    /// The model rejected the context (an id outside its vocabulary).
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The model produced scores that are not numbers.
    #[error(
        "the model's logits for new token {step} are not finite numbers; \
         the weights are damaged (did training diverge?)"
    )]
    NonFiniteLogits {
        /// Which new token, from 0.
        step: usize,
    },
}

impl SampleConfig {
    /// Checks the temperature and `top_k`.
    pub fn validate(&self) -> Result<(), SampleError> {
        let t = self.temperature;
        if t.is_nan() || t.is_infinite() || t < 0.0 {
            return Err(SampleError::Temperature(self.temperature));
        }
        if self.top_k == Some(0) {
            return Err(SampleError::TopKZero);
        }
        Ok(())
    }
}

// ANCHOR: next_token
/// Picks the next token from one position's logits, `(V)`, using `scratch`
/// for the probabilities (so a loop allocates nothing).
///
/// With temperature 0 this is the arg max (the lowest id among equal
/// maxima). Otherwise: logits / temperature, every logit below the `k`-th
/// largest set to −∞, softmax, one draw. The config must be valid
/// ([`SampleConfig::validate`]). Returns `None` if the logits are not finite.
pub fn next_token(
    logits: &[f32],
    temperature: f32,
    top_k: Option<usize>,
    rng: &mut ChaCha8Rng,
    scratch: &mut Vec<f32>,
) -> Option<u32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() || logits.iter().any(|l| l.is_nan()) {
        return None;
    }
    if temperature == 0.0 {
        return logits.iter().position(|&l| l == max).map(|i| i as u32);
    }
    let threshold = top_k.map_or(f32::NEG_INFINITY, |k| kth_largest(logits, k, scratch));
    scratch.clear();
    scratch.extend(logits.iter().map(|&l| {
        if l < threshold {
            0.0
        } else {
            ((l - max) / temperature).exp() // softmax numerator, at most 1
        }
    }));
    let total: f32 = scratch.iter().sum();
    let mut u = rng.random::<f32>() * total;
    let last = scratch.iter().rposition(|&p| p > 0.0)?;
    for (i, &p) in scratch.iter().enumerate().take(last) {
        if u < p {
            return Some(i as u32);
        }
        u -= p;
    }
    Some(last as u32) // rounding left u just past the end
}
// ANCHOR_END: next_token

/// The `k`-th largest logit (the smallest one top-k keeps).
fn kth_largest(logits: &[f32], k: usize, scratch: &mut Vec<f32>) -> f32 {
    if k >= logits.len() {
        return f32::NEG_INFINITY;
    }
    scratch.clear();
    scratch.extend_from_slice(logits);
    let (_, kth, _) = scratch.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    *kth
}

// ANCHOR: generate
/// The prompt's ids followed by `config.max_new_tokens` sampled ones.
///
/// The model sees at most its last `block_size` tokens. Only the first
/// `vocab_limit` ids are ever drawn: use the tokenizer's vocabulary size
/// when the model's is padded larger (as nanoGPT pads GPT-2's 50257 to 50304).
pub fn generate_limited(
    gpt: &Gpt,
    prompt: &[u32],
    config: &SampleConfig,
    vocab_limit: usize,
) -> Result<Vec<u32>, SampleError> {
    config.validate()?;
    if prompt.is_empty() {
        return Err(SampleError::EmptyPrompt);
    }
    let block_size = gpt.config().block_size;
    let vocab = vocab_limit.clamp(1, gpt.config().vocab_size);
    let mut rng = seeded(config.seed);
    let (mut acts, mut scratch) = (Activations::new(gpt.config(), 1, 1), Vec::new());
    let mut ids = prompt.to_vec();
    for step in 0..config.max_new_tokens {
        let context = &ids[ids.len().saturating_sub(block_size)..]; // crop to the window
        let idx = Array2::from_shape_vec((1, context.len()), context.to_vec())
            .expect("one row of context.len() ids");
        gpt.forward_with(&mut acts, &idx, None)?;
        let last = acts.logits.shape()[1] - 1;
        let logits = acts.logits.slice(ndarray::s![0, last, ..vocab]); // (V)
        let logits = logits.as_slice().expect("a row of a standard-layout array");
        let next = next_token(
            logits,
            config.temperature,
            config.top_k,
            &mut rng,
            &mut scratch,
        )
        .ok_or(SampleError::NonFiniteLogits { step })?;
        ids.push(next);
    }
    Ok(ids)
}
// ANCHOR_END: generate

/// [`generate_limited`] drawing from the model's whole vocabulary.
pub fn generate(gpt: &Gpt, prompt: &[u32], config: &SampleConfig) -> Result<Vec<u32>, SampleError> {
    generate_limited(gpt, prompt, config, gpt.config().vocab_size)
}

/// The prompt and its continuation, as text: encodes the prompt with
/// `tokenizer`, samples, decodes. Only the tokenizer's ids are drawn.
/// Bytes that do not form whole characters (possible with BPE) show as `�`.
pub fn sample_text(
    gpt: &Gpt,
    tokenizer: &TextTokenizer,
    prompt: &str,
    config: &SampleConfig,
) -> Result<String, SampleError> {
    config.validate()?;
    let prompt_ids = tokenizer.encode(prompt).map_err(SampleError::Prompt)?;
    let ids = generate_limited(gpt, &prompt_ids, config, tokenizer.vocab_size())?;
    Ok(tokenizer.decode_lossy(&ids))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::GptConfig;
    use crate::tokens::CharVocab;

    fn draws(logits: &[f32], temperature: f32, top_k: Option<usize>, n: usize) -> Vec<usize> {
        let (mut rng, mut scratch) = (seeded(5), Vec::new());
        let mut counts = vec![0; logits.len()];
        for _ in 0..n {
            let id = next_token(logits, temperature, top_k, &mut rng, &mut scratch).unwrap();
            counts[id as usize] += 1;
        }
        counts
    }

    #[test]
    fn greedy_takes_the_first_maximum() {
        assert_eq!(draws(&[0.0, 3.0, 1.0, 3.0], 0.0, None, 10), [0, 10, 0, 0]);
    }

    #[test]
    fn draws_follow_the_softmax() {
        let logits = [0.0, 2_f32.ln(), 0.0]; // probabilities 1/4, 1/2, 1/4
        let counts = draws(&logits, 1.0, None, 40_000);
        for (count, p) in counts.iter().zip([0.25, 0.5, 0.25]) {
            let share = *count as f64 / 40_000.0;
            assert!((share - p).abs() < 0.01, "{counts:?}");
        }
    }

    #[test]
    fn top_k_keeps_only_the_best_and_low_temperature_sharpens() {
        let logits = [1.0, 4.0, 3.0, 2.0];
        let counts = draws(&logits, 1.0, Some(2), 5_000);
        assert_eq!((counts[0], counts[3]), (0, 0));
        assert!(counts[1] > counts[2] && counts[2] > 0);
        let cold = draws(&logits, 0.05, None, 1_000);
        assert_eq!(cold[1], 1_000);
        assert_eq!(draws(&logits, 1.0, Some(1), 100)[1], 100);
        // k beyond V keeps everything.
        assert!(draws(&logits, 1.0, Some(99), 5_000).iter().all(|&c| c > 0));
    }

    #[test]
    fn non_finite_logits_are_refused() {
        let (mut rng, mut s) = (seeded(0), Vec::new());
        assert_eq!(
            next_token(&[0.0, f32::NAN], 1.0, None, &mut rng, &mut s),
            None
        );
        assert_eq!(
            next_token(&[f32::NEG_INFINITY; 2], 0.0, None, &mut rng, &mut s),
            None
        );
    }

    #[test]
    fn bad_settings_are_errors() {
        let gpt = Gpt::new(GptConfig::toy(5), 0).unwrap();
        let bad = |temperature, top_k| SampleConfig {
            temperature,
            top_k,
            ..SampleConfig::default()
        };
        assert_eq!(
            generate(&gpt, &[1], &bad(-0.1, None)),
            Err(SampleError::Temperature(-0.1))
        );
        assert!(generate(&gpt, &[1], &bad(f32::NAN, None)).is_err());
        assert_eq!(
            generate(&gpt, &[1], &bad(1.0, Some(0))),
            Err(SampleError::TopKZero)
        );
        assert_eq!(
            generate(&gpt, &[], &SampleConfig::default()),
            Err(SampleError::EmptyPrompt)
        );
        let tok = TextTokenizer::Char(CharVocab::from_text("abcde").unwrap());
        let err = sample_text(&gpt, &tok, "abz", &SampleConfig::default()).unwrap_err();
        assert!(
            err.to_string().contains("'z' (U+007A) at position 2"),
            "{err}"
        );
    }

    #[test]
    fn long_prompts_are_cropped_to_the_block_and_output_is_seeded() {
        let config = GptConfig {
            block_size: 4,
            ..GptConfig::toy(6)
        };
        let gpt = Gpt::new(config, 3).unwrap();
        let prompt: Vec<u32> = (0..10).map(|i| i % 6).collect();
        let sc = SampleConfig {
            max_new_tokens: 20,
            temperature: 1.0,
            top_k: None,
            seed: 9,
        };
        let a = generate(&gpt, &prompt, &sc).unwrap();
        assert_eq!(a.len(), 30);
        assert_eq!(&a[..10], prompt.as_slice());
        assert_eq!(a, generate(&gpt, &prompt, &sc).unwrap());
        let other = generate(&gpt, &prompt, &SampleConfig { seed: 10, ..sc }).unwrap();
        assert_ne!(a, other);
        let limited = generate_limited(&gpt, &prompt, &sc, 2).unwrap();
        assert!(limited[10..].iter().all(|&id| id < 2));
    }

    /// A model whose next token depends strongly on the context: the
    /// initialisation's weights and embeddings ten times larger (standard
    /// deviations of 0.1 to 0.2), so that one token more or less in its
    /// window changes what it samples. (As initialised, every next token is
    /// about equally likely, whatever the context.)
    fn opinionated_model(config: GptConfig) -> Gpt {
        let mut params = Gpt::new(config, 3).unwrap().params().clone();
        for (name, mut tensor) in params.tensors_mut() {
            if !name.contains("ln_") {
                tensor.mapv_inplace(|x| 10.0 * x);
            }
        }
        Gpt::from_params(config, params).unwrap()
    }

    #[test]
    fn the_model_sees_exactly_the_last_block_size_tokens() {
        let config = GptConfig {
            block_size: 4,
            ..GptConfig::toy(6)
        };
        let gpt = opinionated_model(config);
        let sc = SampleConfig {
            max_new_tokens: 12,
            temperature: 1.0,
            top_k: None,
            seed: 9,
        };
        let continuation =
            |prompt: &[u32]| generate(&gpt, prompt, &sc).unwrap()[prompt.len()..].to_vec();
        let window = [1, 4, 2, 5]; // the last block_size tokens of the prompt
        let prompt = [0, 0, 0, 1, 4, 2, 5];
        let base = continuation(&prompt);
        // What comes before the window is out of sight: other tokens there,
        // or none at all, give the same continuation.
        assert_eq!(continuation(&[3, 5, 1, 1, 4, 2, 5]), base);
        assert_eq!(continuation(&window), base);
        // Every token of the window is in sight: changing any one of them
        // changes what follows.
        for i in 0..window.len() {
            let mut changed = prompt;
            changed[3 + i] = (changed[3 + i] + 1) % 6;
            assert_ne!(
                continuation(&changed),
                base,
                "token {i} of the window made no difference"
            );
        }
    }
}
