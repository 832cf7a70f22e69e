//! Speculative decoding (Leviathan et al., 2023; Chen et al., 2023): a small
//! draft model guesses a few tokens, the large target model checks them all
//! in one forward pass, and a rule of accepting and resampling makes the
//! text come out exactly as if the target alone had written it.
//!
//! The rule, for a guess `x` the draft drew with probability `q(x)` where
//! the target gives it `p(x)`: accept it with probability
//! `min(1, p(x) / q(x))`; on the first rejection draw a replacement from
//! what is left of the target's distribution, `max(0, p - q)` renormalised,
//! and drop the guesses after it. If every guess is accepted, the target's
//! pass has already computed the distribution after the last one, and one
//! more token is drawn from it for free. Each round costs one target pass
//! and yields between 1 and `g + 1` tokens.
//!
//! Why the output is the target's: a token `x` comes out either as an
//! accepted guess, with probability `q(x) · min(1, p(x)/q(x)) = min(q(x),
//! p(x))`, or as a replacement, with probability `(1 - Σ min(q, p)) · (p(x)
//! - min(q(x), p(x))) / Σ (p - min(q, p))`; the two add up to `p(x)`.

use super::decode::{Decoder, Logits, Segment};
use super::generate::GenerateError;
use super::sampler::{Sampler, Sampling};

/// What a speculative run did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SpeculativeStats {
    /// Rounds: one target forward pass each.
    pub rounds: usize,
    /// Guesses the draft made.
    pub proposed: usize,
    /// Guesses the target accepted.
    pub accepted: usize,
    /// Guesses the target rejected (at most one a round: the guesses after
    /// a rejection are dropped unchecked).
    pub rejected: usize,
    /// Draft forward passes.
    pub draft_passes: usize,
}

impl SpeculativeStats {
    /// The share of checked guesses that were accepted: an estimate of the
    /// probability `α` that the target accepts a guess.
    pub fn acceptance(&self) -> f64 {
        self.accepted as f64 / (self.accepted + self.rejected).max(1) as f64
    }
}

// ANCHOR: speculative
/// Continues `prompt` by `max_new_tokens` tokens, the draft proposing up to
/// `guesses` tokens a round and the target checking them. The models must
/// share a vocabulary. Returns the new tokens and the run's counts.
pub fn speculative_generate(
    target: &Decoder,
    draft: &Decoder,
    prompt: &[u32],
    max_new_tokens: usize,
    guesses: usize,
    sampling: Sampling,
) -> Result<(Vec<u32>, SpeculativeStats), GenerateError> {
    let block_size = target.config().block_size.min(draft.config().block_size);
    if prompt.is_empty() {
        return Err(GenerateError::EmptyPrompt);
    }
    if prompt.len() + max_new_tokens > block_size {
        return Err(GenerateError::PromptTooLong {
            tokens: prompt.len() + max_new_tokens,
            block_size,
        });
    }
    let mut p_sampler = Sampler::new(sampling)?;
    let mut q_sampler = Sampler::new(Sampling {
        seed: sampling.seed ^ 0x5eed,
        ..sampling
    })?;
    let (mut t_cache, mut d_cache) = (target.new_cache(), draft.new_cache());
    let mut ids = prompt.to_vec();
    let end = prompt.len() + max_new_tokens;
    let mut stats = SpeculativeStats::default();
    let (mut p, mut q) = (Vec::new(), Vec::new());
    // Both caches hold every committed token but the last, which the next
    // round feeds.
    while ids.len() < end {
        let g = guesses.min(end - ids.len() - 1);
        // The draft guesses g tokens, one pass each, keeping each q.
        let mut drafted: Vec<u32> = Vec::new();
        let mut qs: Vec<Vec<f32>> = Vec::new();
        for i in 0..g {
            let feed: Vec<u32> = if i == 0 {
                ids[d_cache.len()..].to_vec()
            } else {
                vec![drafted[i - 1]]
            };
            let logits = draft.forward(
                &mut [Segment {
                    cache: &mut d_cache,
                    tokens: &feed,
                }],
                Logits::Last,
            )?;
            stats.draft_passes += 1;
            let history: Vec<u32> = ids.iter().chain(&drafted).copied().collect();
            if !q_sampler.probabilities(logits.as_slice().unwrap(), &history, &mut q) {
                return Err(GenerateError::NonFiniteLogits {
                    step: ids.len() - prompt.len(),
                });
            }
            drafted.push(q_sampler.draw(&q));
            qs.push(q.clone());
        }
        // The target scores the committed tail and every guess in one pass.
        let n = ids.len();
        let feed: Vec<u32> = ids[t_cache.len()..]
            .iter()
            .chain(&drafted)
            .copied()
            .collect();
        let logits = target.forward(
            &mut [Segment {
                cache: &mut t_cache,
                tokens: &feed,
            }],
            Logits::All,
        )?;
        stats.rounds += 1;
        stats.proposed += g;
        let first = feed.len() - g - 1; // the row after the last committed token
        let mut accepted = 0;
        let mut next = None;
        for i in 0..=g {
            let history: Vec<u32> = ids.iter().chain(&drafted[..i]).copied().collect();
            let row = logits.row(first + i);
            if !p_sampler.probabilities(row.as_slice().unwrap(), &history, &mut p) {
                return Err(GenerateError::NonFiniteLogits {
                    step: n - prompt.len() + i,
                });
            }
            if i == g {
                next = Some(p_sampler.draw(&p)); // every guess accepted: a token for free
                break;
            }
            let (x, q) = (drafted[i] as usize, &qs[i]);
            if p_sampler.uniform() * q[x] < p[x] {
                accepted += 1; // accepted with probability min(1, p(x) / q(x))
                continue;
            }
            stats.rejected += 1;
            // Rejected: draw from what the target wants beyond what the draft gave.
            let residual: Vec<f32> = p.iter().zip(q).map(|(&p, &q)| (p - q).max(0.0)).collect();
            next = Some(if residual.iter().sum::<f32>() > 0.0 {
                p_sampler.draw(&residual)
            } else {
                p_sampler.draw(&p) // p == q to rounding: nothing left over
            });
            break;
        }
        stats.accepted += accepted;
        ids.extend_from_slice(&drafted[..accepted]);
        ids.extend(next);
        // Forget the rejected guesses; keep all committed tokens but the last.
        t_cache.truncate(ids.len() - 1);
        d_cache.truncate(ids.len() - 1);
    }
    ids.truncate(end);
    Ok((ids[prompt.len()..].to_vec(), stats))
}
// ANCHOR_END: speculative
