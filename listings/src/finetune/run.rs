//! Fine-tuning runs: instruction tuning and preference tuning, step after
//! step over shuffled examples.

use ndarray::Axis;

use super::chat::{Encoded, LossOn, lm_batch, pack};
use super::dpo::{DpoStats, dpo_objective, sequence_logprobs};
use super::loss::token_nll;
use super::tuner::FineTuner;
use crate::model::{Gpt, ModelError};
use crate::rng::{ChaCha8Rng, RngExt, seeded};
use crate::train::step::TrainError;

// ANCHOR: finetune_config
/// The settings of a fine-tuning run.
#[derive(Clone, Debug, PartialEq)]
pub struct FinetuneConfig {
    /// Optimiser steps.
    pub steps: usize,
    /// Examples (for DPO, pairs) per step.
    pub batch_size: usize,
    /// AdamW's learning rate, the same at every step.
    pub learning_rate: f32,
    /// The gradients' global norm is clipped to this (0: no clipping).
    pub grad_clip: f32,
    /// Which positions the loss counts (instruction tuning).
    pub loss_on: LossOn,
    /// DPO's β: how far from the reference the model may move for a given
    /// gain in margin (larger keeps it closer).
    pub beta: f32,
    /// The seed of the order examples are drawn in.
    pub seed: u64,
}

impl Default for FinetuneConfig {
    /// 300 steps of 16 examples at 1e-3, clipped at 1, loss on responses, β 0.1.
    fn default() -> Self {
        Self {
            steps: 300,
            batch_size: 16,
            learning_rate: 1e-3,
            grad_clip: 1.0,
            loss_on: LossOn::Response,
            beta: 0.1,
            seed: 1,
        }
    }
}
// ANCHOR_END: finetune_config

/// Draws batches of indices: every example once per pass, in a new
/// shuffled order each pass.
struct Shuffler {
    order: Vec<usize>,
    next: usize,
    rng: ChaCha8Rng,
}

impl Shuffler {
    fn new(n: usize, seed: u64) -> Self {
        let mut s = Self {
            order: (0..n).collect(),
            next: n,
            rng: seeded(seed),
        };
        s.reshuffle();
        s
    }

    fn reshuffle(&mut self) {
        for i in (1..self.order.len()).rev() {
            let j = self.rng.random_range(0..=i);
            self.order.swap(i, j);
        }
        self.next = 0;
    }

    fn batch(&mut self, size: usize) -> Vec<usize> {
        (0..size.min(self.order.len()))
            .map(|_| {
                if self.next == self.order.len() {
                    self.reshuffle();
                }
                self.next += 1;
                self.order[self.next - 1]
            })
            .collect()
    }
}

// ANCHOR: train_instructions
/// Instruction tuning: `config.steps` steps, each on `batch_size` examples
/// packed by [`lm_batch`] (`pad` fills short rows). `on_step` sees each
/// step's number and loss, and the tuner after the step (to evaluate it).
/// Returns the losses.
pub fn train_instructions(
    tuner: &mut FineTuner,
    examples: &[Encoded],
    config: &FinetuneConfig,
    pad: u32,
    mut on_step: impl FnMut(usize, f32, &FineTuner),
) -> Result<Vec<f32>, TrainError> {
    let mut order = Shuffler::new(examples.len(), config.seed);
    let mut losses = Vec::new(); // not sized by `steps`: a huge --steps must not allocate up front
    for step in 0..config.steps {
        let batch: Vec<&Encoded> = order
            .batch(config.batch_size)
            .iter()
            .map(|&i| &examples[i])
            .collect();
        let batch = lm_batch(&batch, config.loss_on, pad);
        let loss = tuner.step_lm(&batch, config.learning_rate, config.grad_clip)?;
        on_step(step, loss, tuner);
        losses.push(loss);
    }
    Ok(losses)
}
// ANCHOR_END: train_instructions

// ANCHOR: train_dpo
/// A preference pair in the chat template: the same prompt, two responses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedPair {
    /// The prompt and the preferred response.
    pub chosen: Encoded,
    /// The prompt and the other one.
    pub rejected: Encoded,
}

/// The batch of `pairs`: chosen responses in rows `0..N`, rejected in
/// `N..2N`, with a mask of 1 on the responses' positions.
fn pair_batch(pairs: &[&EncodedPair], pad: u32) -> super::chat::LmBatch {
    let rows: Vec<&Encoded> = (pairs.iter().map(|p| &p.chosen))
        .chain(pairs.iter().map(|p| &p.rejected))
        .collect();
    pack(&rows, LossOn::Response, pad)
}

/// `ln π(y)` of each pair's chosen and rejected response under `gpt`:
/// DPO's reference, computed once, before tuning.
pub fn reference_logprobs(
    gpt: &Gpt,
    pairs: &[EncodedPair],
    pad: u32,
) -> Result<Vec<[f32; 2]>, ModelError> {
    let mut out = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(32) {
        let refs: Vec<&EncodedPair> = chunk.iter().collect();
        let batch = pair_batch(&refs, pad);
        let (logits, _) = gpt.forward(&batch.idx, None)?;
        let logp = sequence_logprobs(&token_nll(&logits, &batch.targets), &batch.weights);
        let n = chunk.len();
        out.extend((0..n).map(|k| [logp[k], logp[n + k]]));
    }
    Ok(out)
}

/// Preference tuning by DPO: `config.steps` steps of `batch_size` pairs,
/// against the reference log-probabilities `reference` (from
/// [`reference_logprobs`] on the model before tuning). `on_step` sees each
/// step's number and statistics, and the tuner after the step.
pub fn train_dpo(
    tuner: &mut FineTuner,
    pairs: &[EncodedPair],
    reference: &[[f32; 2]],
    config: &FinetuneConfig,
    pad: u32,
    mut on_step: impl FnMut(usize, &DpoStats, &FineTuner),
) -> Result<Vec<DpoStats>, TrainError> {
    let mut order = Shuffler::new(pairs.len(), config.seed);
    let mut history = Vec::new(); // not sized by `steps`: a huge --steps must not allocate up front
    for step in 0..config.steps {
        let picked = order.batch(config.batch_size);
        let batch: Vec<&EncodedPair> = picked.iter().map(|&i| &pairs[i]).collect();
        let batch = pair_batch(&batch, pad);
        let reference: Vec<f32> = (picked.iter().map(|&i| reference[i][0]))
            .chain(picked.iter().map(|&i| reference[i][1]))
            .collect();
        let mask = &batch.weights;
        let mut stats = None;
        tuner.step_logits(
            &batch.idx,
            &batch.targets,
            config.learning_rate,
            config.grad_clip,
            |nll| {
                let (s, weights) = dpo_objective(nll, mask, &reference, config.beta);
                stats = Some(s);
                (s.loss, weights)
            },
        )?;
        let stats = stats.expect("the objective ran");
        on_step(step, &stats, tuner);
        history.push(stats);
    }
    Ok(history)
}
// ANCHOR_END: train_dpo

/// The mean loss per counted token of `examples` under `gpt`
/// ([`lm_batch`]'s weights), in chunks of 32: an evaluation.
pub fn mean_loss(
    gpt: &Gpt,
    examples: &[Encoded],
    loss_on: LossOn,
    pad: u32,
) -> Result<f32, ModelError> {
    let (mut sum, mut count) = (0.0_f64, 0.0_f64);
    for chunk in examples.chunks(32) {
        let refs: Vec<&Encoded> = chunk.iter().collect();
        let batch = pack(&refs, loss_on, pad);
        let (logits, _) = gpt.forward(&batch.idx, None)?;
        let nll = token_nll(&logits, &batch.targets);
        sum += f64::from((&nll * &batch.weights).sum());
        count += f64::from(batch.weights.sum_axis(Axis(1)).sum());
    }
    Ok((sum / count.max(1.0)) as f32)
}

// ANCHOR: answer
/// What a model answered to one prompt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The response's text, without the end-of-turn token.
    pub text: String,
    /// Whether the model ended its turn (wrote the end-of-turn token)
    /// within the token budget.
    pub stopped: bool,
}

/// The model's greedy answer to `prompt` in the chat template: the likeliest
/// token each time, until the end-of-turn token or `max_tokens` tokens.
pub fn answer(
    gpt: &Gpt,
    tokenizer: &crate::tokens::TextTokenizer,
    prompt: &str,
    max_tokens: usize,
) -> Result<Answer, super::chat::DataError> {
    answer_sampled(gpt, tokenizer, prompt, max_tokens, 0.0, &mut seeded(0))
}

/// [`answer`], drawing each token at `temperature` (0: the likeliest)
/// from `rng` ([`crate::sample::next_token`]).
pub fn answer_sampled(
    gpt: &Gpt,
    tokenizer: &crate::tokens::TextTokenizer,
    prompt: &str,
    max_tokens: usize,
    temperature: f32,
    rng: &mut ChaCha8Rng,
) -> Result<Answer, super::chat::DataError> {
    let error = |message: String| super::chat::DataError::Encode { record: 1, message };
    let eot = super::chat::end_of_turn(tokenizer)?;
    let prompt = super::chat::prompt_text(prompt);
    let mut ids = tokenizer
        .encode(&prompt)
        .map_err(|e| error(e.to_string()))?;
    let start = ids.len();
    let block = gpt.config().block_size;
    let mut scratch = Vec::new();
    let mut stopped = false;
    for _ in 0..max_tokens {
        let window = &ids[ids.len().saturating_sub(block)..];
        let idx = ndarray::Array2::from_shape_vec((1, window.len()), window.to_vec())
            .expect("one row of the window's length");
        let (logits, _) = gpt.forward(&idx, None).map_err(|e| error(e.to_string()))?;
        let last = logits.slice(ndarray::s![0, -1, ..]).to_vec();
        let next = crate::sample::next_token(&last, temperature, None, rng, &mut scratch)
            .ok_or_else(|| error("the model's logits are not finite".into()))?;
        if next == eot {
            stopped = true;
            break;
        }
        ids.push(next);
    }
    let text = tokenizer.decode_lossy(&ids[start..]);
    Ok(Answer {
        text: text.strip_prefix(' ').unwrap_or(&text).to_string(),
        stopped,
    })
}
// ANCHOR_END: answer
