//! From the model's scores to one token: the choices between the logits and
//! the draw.
//!
//! The model gives a logit for every token of the vocabulary. Before a token
//! is drawn, the logits pass through up to four filters, in the order
//! Hugging Face's `generate` applies them:
//!
//! 1. **repetition penalty** (Keskar et al., 2019): every token already in
//!    the text has its logit divided by the penalty if positive, multiplied
//!    by it if negative, so it becomes less likely either way;
//! 2. **temperature**: logits divided by `T` before the softmax; `T < 1`
//!    sharpens the distribution, `T > 1` flattens it, `T = 0` is greedy
//!    decoding (the most likely token, always);
//! 3. **top-k**: only the `k` likeliest tokens keep any probability;
//! 4. **top-p** (nucleus sampling, Holtzman et al., 2020): only the smallest
//!    set of likeliest tokens whose probabilities add up to at least `p`,
//!    the token that crosses `p` included.
//!
//! What is left is renormalised and one token is drawn from it.
//! [`Sampler::probabilities`] returns that final distribution itself, which
//! is what speculative decoding and the chapter's figures need.

use thiserror::Error;

use crate::rng::{ChaCha8Rng, RngExt, seeded};

// ANCHOR: sampling
/// How the next token is chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sampling {
    /// Divides the logits; 0 is greedy decoding. At least 0.
    pub temperature: f32,
    /// Keep only the `k` likeliest tokens; `None` keeps all. At least 1.
    pub top_k: Option<usize>,
    /// Keep only the likeliest tokens that together reach probability `p`;
    /// `None` keeps all. In (0, 1].
    pub top_p: Option<f32>,
    /// Above 1, tokens already in the text become less likely; 1 is off.
    /// Positive.
    pub repetition_penalty: f32,
    /// Seeds the generator the tokens are drawn with.
    pub seed: u64,
}
// ANCHOR_END: sampling

impl Default for Sampling {
    /// Plain sampling from the model's own distribution: temperature 1, no
    /// filter, seed 1337.
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_k: None,
            top_p: None,
            repetition_penalty: 1.0,
            seed: 1337,
        }
    }
}

impl Sampling {
    /// Greedy decoding: the likeliest token every time.
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            ..Self::default()
        }
    }

    /// Checks every setting, naming the first that is out of range.
    pub fn validate(&self) -> Result<(), SamplingError> {
        let t = self.temperature;
        if !t.is_finite() || t < 0.0 {
            return Err(SamplingError::Temperature(t));
        }
        if self.top_k == Some(0) {
            return Err(SamplingError::TopK);
        }
        if let Some(p) = self.top_p
            && !(p > 0.0 && p <= 1.0)
        {
            return Err(SamplingError::TopP(p));
        }
        let r = self.repetition_penalty;
        if !r.is_finite() || r <= 0.0 {
            return Err(SamplingError::RepetitionPenalty(r));
        }
        Ok(())
    }
}

/// A sampling setting out of range.
#[derive(Clone, Copy, Debug, Error, PartialEq)]
pub enum SamplingError {
    /// Negative or not a number.
    #[error(
        "temperature {0} is not allowed: use 0 for greedy decoding or a positive number \
         (1 samples from the model's own probabilities)"
    )]
    Temperature(f32),
    /// `k = 0` keeps no token.
    #[error("top-k 0 keeps no token: use at least 1 (1 is greedy decoding)")]
    TopK,
    /// Outside (0, 1].
    #[error(
        "top-p {0} is outside (0, 1]: it is the share of probability kept, \
         1 keeps every token, 0.9 is usual"
    )]
    TopP(f32),
    /// Zero, negative or not a number.
    #[error(
        "repetition penalty {0} is not allowed: use a positive number \
         (1 is no penalty, 1.2 is usual)"
    )]
    RepetitionPenalty(f32),
}

/// Draws tokens with one [`Sampling`] and its own seeded generator.
#[derive(Debug)]
pub struct Sampler {
    settings: Sampling,
    rng: ChaCha8Rng,
    order: Vec<u32>,
    seen: Vec<bool>,
}

impl Sampler {
    /// A sampler whose draws are fixed by `settings.seed`.
    pub fn new(settings: Sampling) -> Result<Self, SamplingError> {
        settings.validate()?;
        Ok(Self {
            settings,
            rng: seeded(settings.seed),
            order: Vec::new(),
            seen: Vec::new(),
        })
    }

    /// The settings.
    pub fn settings(&self) -> &Sampling {
        &self.settings
    }

    // ANCHOR: probabilities
    /// The distribution the next token is drawn from, into `probs` (`V`
    /// numbers summing to 1): the logits after the repetition penalty for
    /// the tokens in `history`, the temperature, top-k and top-p. Greedy
    /// decoding gives all the probability to the likeliest token (the lowest
    /// id among equals). Returns `false`, leaving `probs` unspecified, if a
    /// logit is NaN or none is finite. Every id in `history` must be below
    /// `logits.len()`.
    pub fn probabilities(&mut self, logits: &[f32], history: &[u32], probs: &mut Vec<f32>) -> bool {
        let s = self.settings;
        probs.clear();
        probs.extend_from_slice(logits);
        if logits.iter().any(|l| l.is_nan()) {
            return false;
        }
        if s.repetition_penalty != 1.0 {
            self.seen.clear();
            self.seen.resize(probs.len(), false);
            for &id in history {
                let (l, seen) = (&mut probs[id as usize], &mut self.seen[id as usize]);
                if !std::mem::replace(seen, true) {
                    // Once per token, however often it occurred.
                    *l = if *l > 0.0 {
                        *l / s.repetition_penalty
                    } else {
                        *l * s.repetition_penalty
                    };
                }
            }
        }
        let max = probs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if !max.is_finite() {
            return false;
        }
        if s.temperature == 0.0 {
            let best = probs
                .iter()
                .position(|&l| l == max)
                .expect("the maximum is in the row");
            probs.fill(0.0);
            probs[best] = 1.0;
            return true;
        }
        // Softmax at temperature T.
        let mut total = 0.0;
        for l in probs.iter_mut() {
            *l = ((*l - max) / s.temperature).exp();
            total += *l;
        }
        probs.iter_mut().for_each(|p| *p /= total);
        if s.top_k.is_some() || s.top_p.is_some() {
            self.order.clear();
            self.order.extend(0..probs.len() as u32);
            // Likeliest first; equal probabilities by id, so the order is fixed.
            self.order.sort_unstable_by(|&a, &b| {
                probs[b as usize]
                    .total_cmp(&probs[a as usize])
                    .then(a.cmp(&b))
            });
            let mut keep = s.top_k.unwrap_or(probs.len()).min(probs.len());
            if let Some(p) = s.top_p {
                let mut sum = 0.0;
                // The smallest prefix reaching p: the token crossing p is kept.
                let reach = self.order[..keep].iter().position(|&id| {
                    sum += probs[id as usize];
                    sum >= p
                });
                keep = reach.map_or(keep, |i| i + 1);
            }
            for &id in &self.order[keep..] {
                probs[id as usize] = 0.0;
            }
            let kept: f32 = probs.iter().sum();
            probs.iter_mut().for_each(|p| *p /= kept);
        }
        true
    }
    // ANCHOR_END: probabilities

    /// Draws one token from `probs` (which need not sum exactly to 1).
    pub fn draw(&mut self, probs: &[f32]) -> u32 {
        let total: f32 = probs.iter().sum();
        let mut u = self.rng.random::<f32>() * total;
        let last = probs.iter().rposition(|&p| p > 0.0).unwrap_or(0);
        for (i, &p) in probs.iter().enumerate().take(last) {
            if u < p {
                return i as u32;
            }
            u -= p;
        }
        last as u32 // rounding left u just past the end
    }

    /// A uniform number in [0, 1) from the sampler's generator.
    pub fn uniform(&mut self) -> f32 {
        self.rng.random::<f32>()
    }
}
