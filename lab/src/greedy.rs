//! Greedy continuations of many prompts at once, through chapter 7's
//! KV-cached decoder, with the distribution each token was chosen from:
//! the one decoding loop behind the greedy answers of chapters 6 and 8.

use anyhow::Result;
use listings::infer::decode::{Decoder, Logits, Segment};
use listings::infer::kv::KvCache;

/// What a model wrote after one prompt, greedily, and the distributions it
/// chose each token from.
#[derive(Clone, Debug, PartialEq)]
pub struct Continuation {
    /// The tokens written, the stop token included if one was written.
    pub ids: Vec<u32>,
    /// The logits each token of `ids` was chosen from, one row per token.
    pub logits: Vec<Vec<f32>>,
    /// Whether a stop token ended it within the budget.
    pub stopped: bool,
    /// The tokens that would have stopped it.
    pub stops: Vec<u32>,
}

impl Continuation {
    /// The natural log of the probability of what the model wrote, with
    /// every distribution at `temperature` (logits divided by it): the
    /// product of its tokens' probabilities, the last one (if it stopped)
    /// being the probability of stopping there with any stop token, since
    /// they all end the answer alike.
    pub fn log_prob(&self, temperature: f64) -> f64 {
        let last = self.ids.len().saturating_sub(1);
        (self.logits.iter().zip(&self.ids).enumerate())
            .map(|(i, (row, &id))| {
                if self.stopped && i == last {
                    log_softmax_of(row, &self.stops, temperature)
                } else {
                    log_softmax_of(row, &[id], temperature)
                }
            })
            .sum()
    }
}

/// `ln Σ softmax(logits / temperature)[id]` over `ids`, in f64.
pub fn log_softmax_of(logits: &[f32], ids: &[u32], temperature: f64) -> f64 {
    let max = f64::from(logits.iter().fold(f32::NEG_INFINITY, |m, &l| m.max(l)));
    let weight = |l: f32| ((f64::from(l) - max) / temperature).exp();
    let sum: f64 = logits.iter().map(|&l| weight(l)).sum();
    let part: f64 = ids.iter().map(|&id| weight(logits[id as usize])).sum();
    (part / sum).ln()
}

/// `ln softmax(logits / temperature)[id]`, in f64: [`log_softmax_of`] one
/// token.
pub fn log_softmax_at(logits: &[f32], id: u32, temperature: f64) -> f64 {
    log_softmax_of(logits, &[id], temperature)
}

/// The index of the largest logit (the first, on a tie).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// Greedy continuations of every prompt at once (the KV-cached decoder of
/// chapter 7, one batch per step), up to `max_tokens` each, a prompt
/// stopping at a token `stop` marks or when its context is full.
pub fn continuations(
    decoder: &Decoder,
    prompts: &[Vec<u32>],
    max_tokens: usize,
    stop: &[bool],
) -> Result<Vec<Continuation>> {
    let n = prompts.len();
    let block = decoder.config().block_size;
    let mut caches: Vec<KvCache> = (0..n).map(|_| decoder.new_cache()).collect();
    let stops: Vec<u32> = (0..stop.len() as u32)
        .filter(|&id| stop[id as usize])
        .collect();
    let mut out = vec![
        Continuation {
            ids: Vec::new(),
            logits: Vec::new(),
            stopped: false,
            stops,
        };
        n
    ];
    let mut feed: Vec<Vec<u32>> = prompts.to_vec();
    let mut active: Vec<bool> = prompts.iter().map(|p| !p.is_empty()).collect();
    for _ in 0..max_tokens {
        let rows: Vec<usize> = (0..n).filter(|&i| active[i]).collect();
        if rows.is_empty() {
            break;
        }
        let mut segments: Vec<Segment> = (caches.iter_mut().zip(&feed).zip(&active))
            .filter(|(_, a)| **a)
            .map(|((cache, tokens), _)| Segment { cache, tokens })
            .collect();
        let logits = decoder.forward(&mut segments, Logits::Last)?;
        drop(segments);
        for (row, &i) in logits.rows().into_iter().zip(&rows) {
            let row = row.to_vec();
            let next = argmax(&row);
            out[i].ids.push(next);
            out[i].logits.push(row);
            feed[i] = vec![next];
            if stop.get(next as usize).copied().unwrap_or(false) {
                out[i].stopped = true;
                active[i] = false;
            } else if caches[i].len() >= block {
                active[i] = false;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use listings::model::{Gpt, GptConfig};
    use listings::tokens::{TextTokenizer, book_tokenizer};

    /// Greedy tokens by a full forward pass per token, one prompt at a
    /// time: no cache, no batch.
    fn by_full_passes(gpt: &Gpt, prompt: &[u32], n: usize) -> Vec<u32> {
        let mut ids = prompt.to_vec();
        for _ in 0..n {
            let idx = ndarray::Array2::from_shape_vec((1, ids.len()), ids.clone()).unwrap();
            let (logits, _) = gpt.forward(&idx, None).unwrap();
            let last = logits.slice(ndarray::s![0, ids.len() - 1, ..]).to_vec();
            ids.push(argmax(&last));
        }
        ids[prompt.len()..].to_vec()
    }

    #[test]
    fn cached_batched_decoding_agrees_with_full_forward_passes() {
        let tok = TextTokenizer::Bpe(book_tokenizer().clone());
        let gpt = Gpt::new(GptConfig::toy(tok.vocab_size()), 3).unwrap();
        let decoder = Decoder::new(&gpt, listings::infer::quant::Format::F32).unwrap();
        let texts = [
            "Q: Who is the mayor of Pellmere?\nA:",
            "Once upon a time",
            "A",
        ];
        let prompts: Vec<Vec<u32>> = texts.iter().map(|t| tok.encode(t).unwrap()).collect();
        let none = vec![false; tok.vocab_size()];
        let ours = continuations(&decoder, &prompts, 6, &none).unwrap();
        for (o, p) in ours.iter().zip(&prompts) {
            assert_eq!(o.ids, by_full_passes(&gpt, p, 6));
            assert_eq!(o.logits.len(), 6);
            assert!(!o.stopped);
        }
        // A stop token ends a row and is kept; the others go on.
        let first = ours[1].ids[2];
        let mut stop = none.clone();
        stop[first as usize] = true;
        let stopped = continuations(&decoder, &prompts, 6, &stop).unwrap();
        assert!(stopped[1].stopped);
        assert_eq!(
            stopped[1].ids,
            ours[1].ids[..=ours[1].ids.iter().position(|&i| i == first).unwrap()]
        );
        assert_eq!(stopped[1].stops, vec![first]);
        // A row whose context is full stops without a stop token.
        let short = GptConfig {
            block_size: 8,
            ..GptConfig::toy(tok.vocab_size())
        };
        let small = Decoder::new(
            &Gpt::new(short, 3).unwrap(),
            listings::infer::quant::Format::F32,
        )
        .unwrap();
        let out = continuations(&small, &prompts[1..2], 20, &none).unwrap();
        assert!(!out[0].stopped);
        assert_eq!(prompts[1].len() + out[0].ids.len(), 9);
    }

    #[test]
    fn log_probabilities_count_every_stop_token_and_the_temperature() {
        assert!((log_softmax_of(&[0.0, 3f32.ln()], &[1], 1.0) - 0.75_f64.ln()).abs() < 1e-6);
        assert!(
            (log_softmax_at(&[0.0, 2.0], 1, 2.0) - log_softmax_of(&[0.0, 1.0], &[1], 1.0)).abs()
                < 1e-9
        );
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
    }
}
