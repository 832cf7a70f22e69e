//! The generation loop: the prompt in one forward pass (prefill), then one
//! token per pass (decode), each drawn by a [`Sampler`] and handed to the
//! caller as soon as it exists (streaming), until a stop condition.
//!
//! With the KV cache each decode pass computes one position; without it
//! ([`GenerateConfig::kv_cache`] off) each pass recomputes the whole
//! context, as chapter 4's `sample::generate` does. Both give the same
//! tokens; only the time differs.
//!
//! At the end of the context the model has no position embedding for one
//! more token. The cache cannot slide along: each cached key was computed
//! with its own position's embedding, and every position would move by
//! one. So the window is rebuilt from the last [`GenerateConfig::keep`]
//! tokens, by a fresh prefill. Keeping all `block_size` tokens gives exactly
//! what the uncached loop computes, at a prefill per token; keeping half
//! the window pays one prefill every half-window of tokens, and the model
//! then sees between half and all of the window.

use std::time::{Duration, Instant};

use thiserror::Error;

use super::decode::{DecodeError, Decoder, Logits, Segment};
use super::kv::KvCache;
use super::sampler::{Sampler, Sampling, SamplingError};

// ANCHOR: generate_config
/// What to generate and when to stop.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerateConfig {
    /// Stop after this many new tokens.
    pub max_new_tokens: usize,
    /// How each token is chosen.
    pub sampling: Sampling,
    /// Stop when one of these tokens is drawn (it is kept in the output):
    /// the end-of-text token, for a model that learned to write one.
    pub stop_tokens: Vec<u32>,
    /// Stop when the text ends with one of these token sequences (kept).
    pub stop_sequences: Vec<Vec<u32>>,
    /// Keep keys and values between passes (`true`), or recompute the whole
    /// context every pass.
    pub kv_cache: bool,
    /// At the end of the context, how many of the latest tokens the rebuilt
    /// window starts from (at least 1, less than `block_size`).
    pub keep: Option<usize>,
}
// ANCHOR_END: generate_config

impl Default for GenerateConfig {
    /// 100 tokens, [`Sampling::default`], no stop token, the cache on, half
    /// the window kept at the end of the context.
    fn default() -> Self {
        Self {
            max_new_tokens: 100,
            sampling: Sampling::default(),
            stop_tokens: Vec::new(),
            stop_sequences: Vec::new(),
            kv_cache: true,
            keep: None,
        }
    }
}

/// Why generation stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// `max_new_tokens` were written.
    MaxTokens,
    /// A stop token was drawn.
    StopToken,
    /// The text ended with a stop sequence.
    StopSequence,
    /// The caller's callback asked to stop.
    Caller,
}

/// A finished generation.
#[derive(Clone, Debug, PartialEq)]
pub struct Generation {
    /// The new tokens (the prompt not included).
    pub tokens: Vec<u32>,
    /// Why it stopped.
    pub stop: StopReason,
    /// Forward passes run.
    pub passes: usize,
    /// Positions computed by those passes (the prompt's included).
    pub positions: usize,
    /// Time spent on the prompt's pass.
    pub prefill: Duration,
    /// Time spent on every later pass, sampling included.
    pub decode: Duration,
}

/// Why generation could not run.
#[derive(Clone, Debug, Error, PartialEq)]
pub enum GenerateError {
    /// A sampling setting out of range.
    #[error(transparent)]
    Sampling(#[from] SamplingError),
    /// The model refused the input.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// Nothing to continue.
    #[error("the prompt is empty: give at least one token")]
    EmptyPrompt,
    /// The prompt does not fit in the context.
    #[error(
        "the prompt has {tokens} tokens but the model sees at most {block_size}: \
         shorten it, or keep its last {block_size} tokens"
    )]
    PromptTooLong {
        /// The prompt's length.
        tokens: usize,
        /// The model's context.
        block_size: usize,
    },
    /// `keep` out of range.
    #[error("keep = {keep} must be between 1 and the context of {block_size} tokens")]
    Keep {
        /// The setting.
        keep: usize,
        /// The model's context.
        block_size: usize,
    },
    /// The model produced scores that are not numbers.
    #[error("the logits for new token {step} are not finite: the weights are damaged")]
    NonFiniteLogits {
        /// Which new token, from 0.
        step: usize,
    },
}

// ANCHOR: generate
/// Continues `prompt`, calling `on_token` with each new token as soon as it
/// is drawn; `on_token` returns `false` to stop.
pub fn generate(
    decoder: &Decoder,
    prompt: &[u32],
    config: &GenerateConfig,
    mut on_token: impl FnMut(u32) -> bool,
) -> Result<Generation, GenerateError> {
    let block_size = decoder.config().block_size;
    let keep = config.keep.unwrap_or((block_size / 2).max(1));
    if keep == 0 || keep > block_size {
        return Err(GenerateError::Keep { keep, block_size });
    }
    if prompt.is_empty() {
        return Err(GenerateError::EmptyPrompt);
    }
    if prompt.len() > block_size {
        return Err(GenerateError::PromptTooLong {
            tokens: prompt.len(),
            block_size,
        });
    }
    let mut sampler = Sampler::new(config.sampling)?;
    let mut cache = decoder.new_cache();
    let (mut ids, mut probs) = (prompt.to_vec(), Vec::new());
    let mut out = Generation {
        tokens: Vec::new(),
        stop: StopReason::MaxTokens,
        passes: 0,
        positions: 0,
        prefill: Duration::ZERO,
        decode: Duration::ZERO,
    };
    let mut fresh = prompt.len(); // tokens not yet in the cache, at the end of `ids`
    for step in 0..config.max_new_tokens {
        let start = Instant::now();
        if !config.kv_cache {
            cache.clear(); // recompute everything: the window is the last block_size tokens
            fresh = ids.len().min(block_size);
        } else if cache.len() + fresh > block_size {
            cache.clear(); // the end of the context: rebuild from the latest tokens
            fresh = keep;
        }
        let tokens = &ids[ids.len() - fresh..];
        let logits = decoder.forward(
            &mut [Segment {
                cache: &mut cache,
                tokens,
            }],
            Logits::Last,
        )?;
        out.passes += 1;
        out.positions += fresh;
        if !sampler.probabilities(logits.as_slice().expect("one row"), &ids, &mut probs) {
            return Err(GenerateError::NonFiniteLogits { step });
        }
        let next = sampler.draw(&probs);
        ids.push(next);
        out.tokens.push(next);
        fresh = 1;
        *(if step == 0 {
            &mut out.prefill
        } else {
            &mut out.decode
        }) += start.elapsed();
        if !on_token(next) {
            out.stop = StopReason::Caller;
            break;
        }
        if config.stop_tokens.contains(&next) {
            out.stop = StopReason::StopToken;
            break;
        }
        if config
            .stop_sequences
            .iter()
            .any(|s| !s.is_empty() && out.tokens.ends_with(s))
        {
            out.stop = StopReason::StopSequence;
            break;
        }
    }
    Ok(out)
}
// ANCHOR_END: generate

/// One hypothesis of [`beam_search`].
#[derive(Clone, Debug, PartialEq)]
pub struct Beam {
    /// Its new tokens.
    pub tokens: Vec<u32>,
    /// The sum of their log-probabilities under the model.
    pub log_prob: f32,
    /// Whether it ended with a stop token.
    pub finished: bool,
}

// ANCHOR: beam_search
/// Beam search: keeps the `width` likeliest continuations (by total
/// log-probability) at every step instead of one, and returns them best
/// first. A beam that draws one of `stop_tokens` is finished and set aside;
/// the search ends when `max_new_tokens` are written or the best unfinished
/// beam is already less likely than the worst finished one kept.
///
/// Every live beam is one sequence of a single batched forward pass.
pub fn beam_search(
    decoder: &Decoder,
    prompt: &[u32],
    width: usize,
    max_new_tokens: usize,
    stop_tokens: &[u32],
) -> Result<Vec<Beam>, GenerateError> {
    let block_size = decoder.config().block_size;
    if prompt.is_empty() {
        return Err(GenerateError::EmptyPrompt);
    }
    if prompt.len() + max_new_tokens > block_size {
        return Err(GenerateError::PromptTooLong {
            tokens: prompt.len() + max_new_tokens,
            block_size,
        });
    }
    let width = width.max(1);
    let mut live = vec![(
        decoder.new_cache(),
        Beam {
            tokens: vec![],
            log_prob: 0.0,
            finished: false,
        },
    )];
    let mut done: Vec<Beam> = Vec::new();
    for step in 0..max_new_tokens {
        let inputs: Vec<Vec<u32>> = live
            .iter()
            .map(|(_, b)| {
                if step == 0 {
                    prompt.to_vec()
                } else {
                    vec![*b.tokens.last().unwrap()]
                }
            })
            .collect();
        let mut segments: Vec<Segment<'_>> = live
            .iter_mut()
            .zip(&inputs)
            .map(|((cache, _), tokens)| Segment { cache, tokens })
            .collect();
        let logits = decoder.forward(&mut segments, Logits::Last)?; // (beams, V)
        // Every beam's every continuation, scored by total log-probability.
        let mut candidates: Vec<(f32, usize, u32)> = Vec::new();
        for (b, row) in logits.rows().into_iter().enumerate() {
            let max = row.fold(f32::NEG_INFINITY, |m, &l| m.max(l));
            if !max.is_finite() {
                return Err(GenerateError::NonFiniteLogits { step });
            }
            let log_z = max + row.iter().map(|&l| (l - max).exp()).sum::<f32>().ln();
            let mut best: Vec<(f32, u32)> = row
                .iter()
                .enumerate()
                .map(|(id, &l)| (l - log_z, id as u32))
                .collect();
            best.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            for &(lp, id) in &best[..width.min(best.len())] {
                candidates.push((live[b].1.log_prob + lp, b, id));
            }
        }
        candidates.sort_by(|a, b| b.0.total_cmp(&a.0).then((a.1, a.2).cmp(&(b.1, b.2))));
        // The likeliest until `width` of them go on; finished ones on the
        // way are set aside. `children[b]` counts beam b's that go on.
        let (mut kept, mut children, mut going_on) = (Vec::new(), vec![0; live.len()], 0);
        for (log_prob, b, id) in candidates {
            if going_on == width {
                break;
            }
            if !stop_tokens.contains(&id) {
                children[b] += 1;
                going_on += 1;
            }
            kept.push((log_prob, b, id));
        }
        // A beam's cache goes to its last child going on, and is copied
        // for the others: a cache holds the whole context's keys and values.
        let mut parents: Vec<(Option<KvCache>, Beam)> =
            live.into_iter().map(|(c, b)| (Some(c), b)).collect();
        let mut next = Vec::new();
        for (log_prob, b, id) in kept {
            let mut beam = parents[b].1.clone();
            beam.tokens.push(id);
            beam.log_prob = log_prob;
            if stop_tokens.contains(&id) {
                beam.finished = true;
                done.push(beam);
            } else {
                children[b] -= 1;
                let cache = if children[b] == 0 {
                    parents[b].0.take()
                } else {
                    parents[b].0.clone()
                };
                next.push((cache.expect("moved to the last child only"), beam));
            }
        }
        done.sort_by(|a, b| b.log_prob.total_cmp(&a.log_prob));
        done.truncate(width);
        live = next;
        let worst_done = (done.len() == width).then(|| done[width - 1].log_prob);
        let best_live = live.first().map(|(_, b)| b.log_prob);
        match (best_live, worst_done) {
            (None, _) => break,
            // Log-probabilities only fall as a beam grows: it cannot catch up.
            (Some(l), Some(d)) if l < d => break,
            _ => {}
        }
    }
    done.extend(live.into_iter().map(|(_, b)| b));
    done.sort_by(|a, b| b.log_prob.total_cmp(&a.log_prob));
    done.truncate(width);
    Ok(done)
}
// ANCHOR_END: beam_search
