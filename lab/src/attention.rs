//! Chapter 3's experiments: the pieces of attention taken apart and tested.
//!
//! - [`TinyAttention`], a model with one attention head and nothing else
//!   (token and position vectors, one head, an output layer), trained on a
//!   task that needs each position to look at the one before it
//!   ([`train_previous_token`]). Its queries and keys come from separate
//!   matrices or from one shared matrix ([`Projections`]): the chapter's
//!   experiment on why Q, K and V are three matrices. [`position_stats`]
//!   shows how each model solved the task;
//! - the same model on a lookup task ([`lookup_batch`], [`Task`]), with a
//!   value matrix of its own or values made by the key matrix
//!   ([`Projections::SharedKV`]), and [`weight_on_entry`], whether its
//!   questions look in the right place;
//! - [`attention_maps`] and [`head_summaries`], where the heads of a trained
//!   GPT look, and the figures drawn from them;
//! - [`time_attention`] and [`time_forward`], the cost of attention against
//!   the sequence length, and its figure, [`attention_cost`].
//!
//! Shapes: `B` batch, `T` time, `C` channels, `V` vocabulary.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use ndarray::{Array2, Array3, Array4, ArrayRef2, Axis, concatenate, s};

use crate::plot::{Axes, HeatmapAxes, Series, heatmap_with_axes, line_chart_with_legend};
use listings::model::{
    Activations, Gpt, GptConfig, LinearParams, ModelError, attention_backward, attention_forward,
    crossentropy_forward, crossentropy_softmax_backward, encoder_backward, encoder_forward,
    matmul_backward, matmul_forward,
};
use listings::optim::{AdamW, AdamWConfig, Param};
use listings::rng::{ChaCha8Rng, RngExt, randn, seeded};
use listings::tokens::TextTokenizer;

// ANCHOR: projections
/// How a [`TinyAttention`] makes each position's query, key and value from
/// its vector `x`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Projections {
    /// One matrix for queries and keys, `q = k = x·W`, and one for values:
    /// every score is symmetric, `score(i, j) = score(j, i)`.
    SharedQK,
    /// Three matrices, `q = x·Wq`, `k = x·Wk`, `v = x·Wv`, as in GPT-2.
    Separate,
    /// One matrix for keys and values, `k = v = x·W`, and one for queries:
    /// what a position is found by is also what it hands over.
    SharedKV,
}
// ANCHOR_END: projections

// ANCHOR: tiny_attention
/// The smallest model that attends: token and position vectors, one
/// causal attention head, and a linear layer from the head's output to a
/// score for every token. No MLP, no LayerNorm, no residual stream.
#[derive(Clone, Debug, PartialEq)]
pub struct TinyAttention {
    /// Queries and keys from one matrix, or from two.
    pub projections: Projections,
    /// Token vectors, `(V, C)`.
    pub wte: Array2<f32>,
    /// Position vectors, `(T, C)`.
    pub wpe: Array2<f32>,
    /// The query projection, `(C, C)`; under [`Projections::SharedQK`] the
    /// key projection too.
    pub query: LinearParams,
    /// The key projection, `(C, C)`; unused under [`Projections::SharedQK`],
    /// and the value projection too under [`Projections::SharedKV`].
    pub key: LinearParams,
    /// The value projection, `(C, C)`; unused under [`Projections::SharedKV`].
    pub value: LinearParams,
    /// From the head's output to the logits, `(C, V)`.
    pub out: LinearParams,
}
// ANCHOR_END: tiny_attention

/// A [`TinyAttention`]'s intermediate arrays, kept for its backward pass.
#[derive(Clone, Debug)]
pub struct TinyActivations {
    /// The input token ids, `(B, T)`.
    pub inputs: Array2<u32>,
    /// Token plus position vectors, `(B, T, C)`.
    pub x: Array3<f32>,
    /// Queries, keys and values side by side, `(B, T, 3C)`.
    pub qkv: Array3<f32>,
    /// The attention weights, `(B, 1, T, T)`.
    pub att: Array4<f32>,
    /// The head's output, `(B, T, C)`.
    pub y: Array3<f32>,
    /// Scores for the next token, `(B, T, V)`.
    pub logits: Array3<f32>,
    /// The loss at each position, `(B, T)`.
    pub losses: Array2<f32>,
}

impl TinyActivations {
    /// Zeroed arrays for `b` sequences of `t` tokens.
    pub fn new(model: &TinyAttention, b: usize, t: usize) -> Self {
        let (v, c) = model.wte.dim();
        Self {
            inputs: Array2::zeros((b, t)),
            x: Array3::zeros((b, t, c)),
            qkv: Array3::zeros((b, t, 3 * c)),
            att: Array4::zeros((b, 1, t, t)),
            y: Array3::zeros((b, t, c)),
            logits: Array3::zeros((b, t, v)),
            losses: Array2::zeros((b, t)),
        }
    }
}

impl TinyAttention {
    /// A model for a vocabulary of `vocab` tokens, sequences of up to
    /// `block` tokens and vectors of `c` numbers, its weights drawn from
    /// normal(0, 0.02) with the given seed (biases start at 0). Both kinds of
    /// model draw the same numbers, so with the same seed they start from the
    /// same weights.
    pub fn new(projections: Projections, vocab: usize, block: usize, c: usize, seed: u64) -> Self {
        let mut rng = seeded(seed);
        let std = listings::model::INIT_STD;
        Self {
            projections,
            wte: randn((vocab, c), std, &mut rng),
            wpe: randn((block, c), std, &mut rng),
            query: LinearParams::new(c, c, std, &mut rng),
            key: LinearParams::new(c, c, std, &mut rng),
            value: LinearParams::new(c, c, std, &mut rng),
            out: LinearParams::new(c, vocab, std, &mut rng),
        }
    }

    /// The same shapes, all zeros: a gradient.
    pub fn zeros_like(&self) -> Self {
        let zero = |p: &LinearParams| LinearParams::zeros(p.weight.nrows(), p.weight.ncols());
        Self {
            projections: self.projections,
            wte: Array2::zeros(self.wte.raw_dim()),
            wpe: Array2::zeros(self.wpe.raw_dim()),
            query: zero(&self.query),
            key: zero(&self.key),
            value: zero(&self.value),
            out: zero(&self.out),
        }
    }

    /// Whether the model uses its key matrix and its value matrix: a matrix
    /// that another one stands in for is left out of training and counting.
    fn uses_key_and_value(&self) -> (bool, bool) {
        let used = |m: usize| (0..3).any(|i| self.matrix_of_block(i) == m);
        (used(1), used(2))
    }

    /// The parameter tensors the model uses, as flat slices, each with
    /// whether weight decay applies (matrices yes, biases no). A projection
    /// that another stands in for is left out.
    fn tensors_mut(&mut self) -> Vec<(&mut [f32], bool)> {
        let (uses_key, uses_value) = self.uses_key_and_value();
        let mut layers = vec![&mut self.query];
        if uses_key {
            layers.push(&mut self.key);
        }
        if uses_value {
            layers.push(&mut self.value);
        }
        layers.push(&mut self.out);
        let mut tensors = vec![
            (self.wte.as_slice_mut().expect("row-major"), true),
            (self.wpe.as_slice_mut().expect("row-major"), true),
        ];
        for layer in layers {
            tensors.push((layer.weight.as_slice_mut().expect("row-major"), true));
            tensors.push((layer.bias.as_slice_mut().expect("row-major"), false));
        }
        tensors
    }

    /// How many numbers the model learns (a projection that another stands
    /// in for not counted).
    pub fn num_parameters(&self) -> usize {
        let linear = |p: &LinearParams| p.weight.len() + p.bias.len();
        let (uses_key, uses_value) = self.uses_key_and_value();
        let key = if uses_key { linear(&self.key) } else { 0 };
        let value = if uses_value { linear(&self.value) } else { 0 };
        let projections = linear(&self.query) + key + value;
        self.wte.len() + self.wpe.len() + projections + linear(&self.out)
    }

    // ANCHOR: tiny_c_attn
    /// Which of the model's matrices (0 `query`, 1 `key`, 2 `value`) makes
    /// block `i` of `c_attn` (0 the queries, 1 the keys, 2 the values).
    fn matrix_of_block(&self, i: usize) -> usize {
        match (self.projections, i) {
            (Projections::SharedQK, 1) => 0, // keys from the query matrix
            (Projections::SharedKV, 2) => 1, // values from the key matrix
            _ => i,
        }
    }

    /// The three projections side by side, `[Wq | Wk | Wv]`, `(C, 3C)`: the
    /// layout of GPT-2's `c_attn`. A shared matrix appears twice.
    pub fn c_attn(&self) -> LinearParams {
        let matrices = [&self.query, &self.key, &self.value];
        let [q, k, v] = [0, 1, 2].map(|i| matrices[self.matrix_of_block(i)]);
        LinearParams {
            weight: concatenate![Axis(1), q.weight, k.weight, v.weight],
            bias: concatenate![Axis(0), q.bias, k.bias, v.bias],
        }
    }
    // ANCHOR_END: tiny_c_attn

    // ANCHOR: tiny_forward
    /// The forward pass: the mean loss over every position, the arrays
    /// kept in `acts`. `idx` and `targets` are `(B, T)`.
    pub fn forward(
        &self,
        acts: &mut TinyActivations,
        idx: &ArrayRef2<u32>,
        targets: &ArrayRef2<u32>,
    ) -> f32 {
        acts.inputs.assign(idx);
        encoder_forward(&mut acts.x, idx, &self.wte, &self.wpe); // (B, T) -> (B, T, C)
        matmul_forward(&mut acts.qkv, &acts.x, &self.c_attn()); // (B, T, C) x (C, 3C) -> (B, T, 3C)
        attention_forward(&mut acts.y, &mut acts.att, &acts.qkv, 1); // one head -> (B, T, C)
        matmul_forward(&mut acts.logits, &acts.y, &self.out); // (B, T, C) x (C, V) -> (B, T, V)
        crossentropy_forward(&mut acts.losses, &acts.logits, targets)
    }
    // ANCHOR_END: tiny_forward

    // ANCHOR: tiny_backward
    /// The backward pass of the last [`TinyAttention::forward`]: every
    /// parameter's gradient, added into `grads`.
    ///
    /// The layers' own backward passes do the work, in reverse order. The
    /// one new step is at the end: `c_attn`'s gradient comes back as three
    /// blocks, one each for the query, key and value weights. A matrix that
    /// served in two blocks gets the sum of their gradients, since a change
    /// to it moves both at once.
    pub fn backward(
        &self,
        grads: &mut TinyAttention,
        acts: &TinyActivations,
        targets: &ArrayRef2<u32>,
    ) {
        let c = self.wte.ncols();
        let mut dlogits = Array3::zeros(acts.logits.raw_dim());
        crossentropy_softmax_backward(&mut dlogits, &acts.logits, targets);
        let mut dy = Array3::zeros(acts.y.raw_dim());
        matmul_backward(&mut dy, &mut grads.out, &dlogits, &acts.y, &self.out);
        let mut dqkv = Array3::zeros(acts.qkv.raw_dim());
        let mut datt = Array4::zeros(acts.att.raw_dim());
        attention_backward(&mut dqkv, &mut datt, &dy, &acts.qkv, &acts.att, 1);
        let mut dx = Array3::zeros(acts.x.raw_dim());
        let mut dc_attn = LinearParams::zeros(c, 3 * c);
        matmul_backward(&mut dx, &mut dc_attn, &dqkv, &acts.x, &self.c_attn());
        encoder_backward(&mut grads.wte, &mut grads.wpe, &dx, &acts.inputs);
        for i in 0..3 {
            let grad = match self.matrix_of_block(i) {
                0 => &mut grads.query,
                1 => &mut grads.key,
                _ => &mut grads.value,
            }; // a shared matrix is met twice: dW = dWq + dWk, or dWk + dWv
            grad.weight += &dc_attn.weight.slice(s![.., i * c..(i + 1) * c]);
            grad.bias += &dc_attn.bias.slice(s![i * c..(i + 1) * c]);
        }
    }
    // ANCHOR_END: tiny_backward
}

// ANCHOR: previous_token_batch
/// A batch of the previous-token task: `b` sequences of `t` tokens drawn
/// at random from a vocabulary of `vocab`, and as the target at each
/// position the token just before it. Position 0 has nothing before it;
/// its target is its own token.
pub fn previous_token_batch(
    b: usize,
    t: usize,
    vocab: usize,
    rng: &mut ChaCha8Rng,
) -> (Array2<u32>, Array2<u32>) {
    let idx = Array2::from_shape_simple_fn((b, t), || rng.random_range(0..vocab as u32));
    let targets = Array2::from_shape_fn((b, t), |(i, j)| idx[[i, j.saturating_sub(1)]]);
    (idx, targets) // (B, T) each
}
// ANCHOR_END: previous_token_batch

// ANCHOR: task_size
/// Tokens in the previous-token task's vocabulary.
pub const TASK_VOCAB: usize = 16;
/// Tokens per sequence.
pub const TASK_LEN: usize = 32;
/// The width `C` of every vector of the model.
pub const TASK_WIDTH: usize = 32;
/// Sequences per training step.
pub const TASK_BATCH: usize = 32;
/// Held-out sequences the model is scored on.
pub const TASK_EVAL: usize = 256;
/// AdamW's learning rate (no weight decay, no schedule).
pub const TASK_LR: f32 = 0.02;
// ANCHOR_END: task_size

// ANCHOR: lookup_batch
/// How many keys the lookup task has, and how many values a key can hold.
pub const LOOKUP_KEYS: usize = 8;

/// A batch of the lookup task: `b` sequences of `2 · LOOKUP_KEYS` tokens.
/// The first half are entries, one token for a key and its value (id
/// `8 · key + value`), every key once, in a random order, each with a
/// random value. The second half are questions, one token for a key (id
/// `64 + key`), drawn at random. The target at every position is the value
/// stored under that position's key.
pub fn lookup_batch(b: usize, rng: &mut ChaCha8Rng) -> (Array2<u32>, Array2<u32>) {
    let n = LOOKUP_KEYS as u32; // 8 keys, 8 values
    let t = 2 * LOOKUP_KEYS; // the entries, then the questions
    let (mut idx, mut targets) = (Array2::zeros((b, t)), Array2::zeros((b, t)));
    for i in 0..b {
        let mut keys: Vec<u32> = (0..n).collect();
        for j in (1..keys.len()).rev() {
            keys.swap(j, rng.random_range(0..=j)); // shuffled
        }
        let values: Vec<u32> = (0..n).map(|_| rng.random_range(0..n)).collect(); // values[key]
        for (j, &key) in keys.iter().enumerate() {
            idx[[i, j]] = n * key + values[key as usize]; // an entry: "key holds value"
            targets[[i, j]] = values[key as usize];
        }
        for j in keys.len()..t {
            let key = rng.random_range(0..n);
            idx[[i, j]] = n * n + key; // a question: "key?"
            targets[[i, j]] = values[key as usize];
        }
    }
    (idx, targets) // (B, T) each
}
// ANCHOR_END: lookup_batch

/// A task a [`TinyAttention`] is trained on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    /// Output the token before each position ([`previous_token_batch`]).
    PreviousToken,
    /// Output the value stored under each position's key ([`lookup_batch`]).
    Lookup,
}

impl Task {
    /// Tokens in the task's vocabulary.
    pub fn vocab(self) -> usize {
        match self {
            Task::PreviousToken => TASK_VOCAB,
            Task::Lookup => LOOKUP_KEYS * LOOKUP_KEYS + LOOKUP_KEYS,
        }
    }

    /// Tokens per sequence.
    pub fn seq_len(self) -> usize {
        match self {
            Task::PreviousToken => TASK_LEN,
            Task::Lookup => 2 * LOOKUP_KEYS,
        }
    }

    /// The first position the task is scored at: the previous-token task
    /// leaves out position 0, which has no token before it; the lookup task
    /// scores the questions only.
    pub fn scored_from(self) -> usize {
        match self {
            Task::PreviousToken => 1,
            Task::Lookup => LOOKUP_KEYS,
        }
    }

    /// A batch of `b` sequences and their targets, `(B, T)` each.
    pub fn batch(self, b: usize, rng: &mut ChaCha8Rng) -> (Array2<u32>, Array2<u32>) {
        match self {
            Task::PreviousToken => previous_token_batch(b, TASK_LEN, TASK_VOCAB, rng),
            Task::Lookup => lookup_batch(b, rng),
        }
    }
}

/// Loss and accuracy on held-out sequences, at the positions a task is
/// scored at ([`Task::scored_from`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Score {
    /// Mean cross-entropy, in nats.
    pub loss: f32,
    /// Share of positions where the highest logit is the right token.
    pub accuracy: f32,
}

/// Scores `model` on `idx` and `targets` `(B, T)` at positions `from..T`.
pub fn evaluate(
    model: &TinyAttention,
    idx: &ArrayRef2<u32>,
    targets: &ArrayRef2<u32>,
    from: usize,
) -> Score {
    let (b, t) = idx.dim();
    let mut acts = TinyActivations::new(model, b, t);
    model.forward(&mut acts, idx, targets);
    let later = s![.., from..];
    let loss = acts.losses.slice(later).mean().unwrap_or(0.0);
    let (mut right, mut total) = (0, 0);
    for ((bi, ti), &target) in targets.slice(later).indexed_iter() {
        let scores = acts.logits.slice(s![bi, ti + from, ..]);
        let best = (0..scores.len()).fold(0, |m, i| if scores[i] > scores[m] { i } else { m });
        right += usize::from(best == target as usize);
        total += 1;
    }
    Score {
        loss,
        accuracy: right as f32 / total as f32,
    }
}

/// A trained [`TinyAttention`], with its held-out scores along the way.
pub struct TinyRun {
    /// The model after the last step.
    pub model: TinyAttention,
    /// `(steps done, held-out score)`, from step 0 every `report_every` steps.
    pub history: Vec<(usize, Score)>,
}

/// The held-out sequences of a task for a seed.
fn held_out(task: Task, seed: u64) -> (Array2<u32>, Array2<u32>) {
    task.batch(TASK_EVAL, &mut seeded(seed + 2))
}

/// [`train_tiny`] on the previous-token task.
pub fn train_previous_token(
    projections: Projections,
    steps: usize,
    report_every: usize,
    seed: u64,
) -> TinyRun {
    train_tiny(Task::PreviousToken, projections, steps, report_every, seed)
}

// ANCHOR: train_tiny
/// Trains a [`TinyAttention`] on `task`: `steps` steps of AdamW, each on a
/// fresh batch, scored on held-out sequences every `report_every` steps.
/// The seed fixes the initial weights, the batches and the held-out set,
/// so every kind of model sees the same data.
pub fn train_tiny(
    task: Task,
    projections: Projections,
    steps: usize,
    report_every: usize,
    seed: u64,
) -> TinyRun {
    let (v, t, c, b) = (task.vocab(), task.seq_len(), TASK_WIDTH, TASK_BATCH);
    let mut model = TinyAttention::new(projections, v, t, c, seed);
    let mut batches = seeded(seed + 1);
    let (eval_idx, eval_targets) = held_out(task, seed);
    let score =
        |model: &TinyAttention| evaluate(model, &eval_idx, &eval_targets, task.scored_from());
    let mut optimizer = AdamW::new(AdamWConfig {
        lr: TASK_LR,
        weight_decay: 0.0,
        ..AdamWConfig::default()
    });
    let mut acts = TinyActivations::new(&model, b, t);
    let mut history = vec![(0, score(&model))];
    for step in 1..=steps {
        let (idx, targets) = task.batch(b, &mut batches);
        model.forward(&mut acts, &idx, &targets);
        let mut grads = model.zeros_like();
        model.backward(&mut grads, &acts, &targets);
        let mut params: Vec<Param> = (model.tensors_mut().into_iter())
            .zip(grads.tensors_mut())
            .map(|((value, decay), (grad, _))| Param { value, grad, decay })
            .collect();
        optimizer.step(&mut params);
        if step % report_every == 0 {
            history.push((step, score(&model)));
        }
    }
    TinyRun { model, history }
}
// ANCHOR_END: train_tiny

/// What a [`TinyAttention`] does at one position, averaged over the
/// held-out sequences.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PositionStats {
    /// The attention weight a position puts on itself.
    pub on_self: f32,
    /// The weight it puts on the position just before it (0 at position 0).
    pub on_previous: f32,
    /// The length of its query vector, `|q|`.
    pub query_length: f32,
}

// ANCHOR: position_stats
/// For each position of the task, where `model` looks and how long its
/// query is, averaged over the held-out sequences of `seed`.
pub fn position_stats(model: &TinyAttention, seed: u64) -> Vec<PositionStats> {
    let (idx, targets) = held_out(Task::PreviousToken, seed);
    let (b, t) = idx.dim();
    let c = model.wte.ncols();
    let mut acts = TinyActivations::new(model, b, t);
    model.forward(&mut acts, &idx, &targets);
    let att = acts.att.mean_axis(Axis(0)).expect("B > 0"); // (1, T, T)
    let queries = acts.qkv.slice(s![.., .., ..c]); // (B, T, C)
    let lengths = queries.mapv(|q| q * q).sum_axis(Axis(2)).mapv(f32::sqrt); // (B, T)
    let query_length = lengths.mean_axis(Axis(0)).expect("B > 0"); // (T)
    (0..t)
        .map(|i| PositionStats {
            on_self: att[[0, i, i]],
            on_previous: if i > 0 { att[[0, i, i - 1]] } else { 0.0 },
            query_length: query_length[i],
        })
        .collect()
}
// ANCHOR_END: position_stats

/// For the lookup task's held-out sequences of `seed`, the attention weight
/// each question puts on the entry that holds its key, averaged over every
/// question: 1 when the model always looks in the right place.
pub fn weight_on_entry(model: &TinyAttention, seed: u64) -> f32 {
    let (idx, targets) = held_out(Task::Lookup, seed);
    let (b, t) = idx.dim();
    let mut acts = TinyActivations::new(model, b, t);
    model.forward(&mut acts, &idx, &targets);
    let n = LOOKUP_KEYS;
    let (mut sum, mut questions) = (0.0, 0);
    for s in 0..b {
        for q in n..t {
            let key = idx[[s, q]] as usize - n * n; // the key asked for
            let entry = (0..n).find(|&e| idx[[s, e]] as usize / n == key);
            sum += acts.att[[s, 0, q, entry.expect("every key has an entry")]];
            questions += 1;
        }
    }
    sum / questions as f32
}

// ANCHOR: map_sentence
/// The sentence of the chapter's attention maps: the opening of a story
/// in the book's corpus (from its training part).
pub const MAP_SENTENCE: &str = "Once upon a time, there was a friendly girl named Lily. \
                                Lily lived with Nana and a hedgehog called Toffee.";
// ANCHOR_END: map_sentence

// ANCHOR: attention_maps
/// The attention weights of every head of `gpt` reading `ids`, one
/// `(nh, T, T)` array per layer: row `i` of a head's matrix is how much
/// position `i` takes from each position `j`.
pub fn attention_maps(gpt: &Gpt, ids: &[u32]) -> Result<Vec<Array3<f32>>, ModelError> {
    let idx =
        Array2::from_shape_vec((1, ids.len()), ids.to_vec()).expect("T ids fill a (1, T) array"); // (B, T) = (1, T)
    let mut acts = Activations::new(gpt.config(), 1, ids.len());
    gpt.forward_with(&mut acts, &idx, None)?;
    let maps = acts
        .layers
        .iter()
        .map(|layer| layer.att.index_axis(Axis(0), 0).to_owned());
    Ok(maps.collect()) // (nh, T, T) per layer
}
// ANCHOR_END: attention_maps

/// Where one head of a trained model looks, on average.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HeadSummary {
    /// The block the head belongs to.
    pub layer: usize,
    /// The head, within its block.
    pub head: usize,
    /// The weight on the position itself.
    pub on_self: f32,
    /// The weight on the position just before.
    pub on_previous: f32,
    /// The weight on the first position of the window.
    pub on_first: f32,
    /// The weight on positions more than 8 back.
    pub far: f32,
}

// ANCHOR: head_summaries
/// For every head of `gpt`, the average of [`HeadSummary`]'s weights over
/// `windows` windows of `block_size` tokens spread evenly through
/// `tokens`, at the positions from 16 on (each of which can see at least
/// 17 tokens, so no head is forced to look anywhere).
pub fn head_summaries(
    gpt: &Gpt,
    tokens: &[u32],
    windows: usize,
) -> Result<Vec<HeadSummary>, ModelError> {
    let (t, n_head) = (gpt.config().block_size, gpt.config().n_head);
    let stride = (tokens.len() - t) / windows;
    let idx = Array2::from_shape_fn((windows, t), |(w, i)| tokens[w * stride + i]); // (B, T)
    let mut acts = Activations::new(gpt.config(), windows, t);
    gpt.forward_with(&mut acts, &idx, None)?;
    let mut summaries = Vec::new();
    for (layer, a) in acts.layers.iter().enumerate() {
        for head in 0..n_head {
            let att = a.att.slice(s![.., head, 16.., ..]); // (B, T - 16, T)
            let n = (windows * (t - 16)) as f32;
            let mean_where = |keep: &dyn Fn(usize, usize) -> bool| {
                let picked = att.indexed_iter().filter(|&((_, i, j), _)| keep(i + 16, j));
                picked.map(|(_, &w)| w).sum::<f32>() / n
            };
            summaries.push(HeadSummary {
                layer,
                head,
                on_self: mean_where(&|i, j| j == i),
                on_previous: mean_where(&|i, j| j + 1 == i),
                on_first: mean_where(&|_, j| j == 0),
                far: mean_where(&|i, j| j + 8 < i),
            });
        }
    }
    Ok(summaries)
}
// ANCHOR_END: head_summaries

/// The token texts of `ids`, for labelling a map: each token decoded on
/// its own, with a line break shown as `\n`.
pub fn token_labels(tokenizer: &TextTokenizer, ids: &[u32]) -> Vec<String> {
    let label = |id: u32| tokenizer.decode_lossy(&[id]).replace('\n', "\\n");
    ids.iter().map(|&id| label(id)).collect()
}

/// Draws the attention map of one head of the book model on
/// [`MAP_SENTENCE`]: rows are the positions that look, columns the
/// positions they look at.
fn book_head_map(path: &Path, layer: usize, head: usize) -> Result<()> {
    let book = crate::book_model::shared_book_model().map_err(anyhow::Error::msg)?;
    let ids = book.tokenizer.encode(MAP_SENTENCE)?;
    let maps = attention_maps(&book.gpt, &ids)?;
    let labels = token_labels(&book.tokenizer, &ids);
    let title = format!("Block {layer}, head {head}: attention weights");
    let weights = maps[layer].index_axis(Axis(0), head);
    let axes = HeatmapAxes {
        title: &title,
        x_label: "token attended to",
        y_label: "token attending",
        scale_label: "attention weight",
    };
    heatmap_with_axes(path, &axes, &weights, &labels, &labels)
}

/// Figure: block 0, head 0 of the book model on [`MAP_SENTENCE`].
pub fn map_block0_head0(path: &Path) -> Result<()> {
    book_head_map(path, 0, 0)
}

/// Figure: block 0, head 3 of the book model on [`MAP_SENTENCE`].
pub fn map_block0_head3(path: &Path) -> Result<()> {
    book_head_map(path, 0, 3)
}

/// Figure: block 1, head 2 of the book model on [`MAP_SENTENCE`].
pub fn map_block1_head2(path: &Path) -> Result<()> {
    book_head_map(path, 1, 2)
}

// ANCHOR: time_attention
/// The fastest of `reps` runs of `f`, in seconds.
fn fastest(reps: usize, mut f: impl FnMut()) -> f64 {
    (0..reps)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// Seconds for one call of [`attention_forward`] on one sequence of `t`
/// positions, `c` channels and `n_head` heads (random queries, keys and
/// values), the fastest of `reps` calls.
pub fn time_attention(t: usize, c: usize, n_head: usize, reps: usize) -> f64 {
    let qkv = randn((1, t, 3 * c), 1.0, &mut seeded(0)); // (B, T, 3C)
    let mut out = Array3::zeros((1, t, c));
    let mut att = Array4::zeros((1, n_head, t, t));
    fastest(reps, || attention_forward(&mut out, &mut att, &qkv, n_head))
}

/// Seconds for one forward pass of the toy model (untrained, its
/// `block_size` stretched to `t`) on one sequence of `t` tokens, the
/// fastest of `reps` passes.
pub fn time_forward(t: usize, reps: usize) -> Result<f64, ModelError> {
    let toy = GptConfig::toy(listings::tokens::BOOK_VOCAB_SIZE);
    let config = GptConfig {
        block_size: t,
        ..toy
    };
    let gpt = Gpt::new(config, 0)?;
    let idx = Array2::from_shape_fn((1, t), |(_, i)| (i * 7 % config.vocab_size) as u32);
    let mut acts = Activations::new(&config, 1, t);
    let mut result = Ok(None);
    let secs = fastest(reps, || result = gpt.forward_with(&mut acts, &idx, None));
    result.map(|_| secs)
}
// ANCHOR_END: time_attention

/// The sequence lengths of the cost figure.
pub const COST_LENGTHS: [usize; 8] = [32, 64, 128, 256, 512, 1024, 2048, 4096];

/// Figure: the time of attention and of the toy model's whole forward pass
/// against the sequence length, log-log. Prints the timings as it goes.
pub fn attention_cost(path: &Path) -> Result<()> {
    let (mut attention, mut forward) = (Vec::new(), Vec::new());
    for t in COST_LENGTHS {
        let reps = (16384 / t).clamp(5, 64);
        let a = time_attention(t, 64, 4, reps) * 1e3;
        let f = time_forward(t, reps)? * 1e3;
        println!("T = {t:>5}: attention_forward {a:>9.3} ms, whole forward {f:>9.3} ms");
        attention.push((t as f64, a));
        forward.push((t as f64, f));
    }
    // A line of slope 2 through the longest measurement: what time
    // proportional to T² would look like.
    let (t_max, a_max) = attention[attention.len() - 1];
    let square = COST_LENGTHS.map(|t| (t as f64, a_max * (t as f64 / t_max).powi(2)));
    let axes = Axes {
        title: "The cost of attention grows with the square of the length",
        x_label: "sequence length T (tokens)",
        y_label: "time per sequence (ms)",
        log_y: true,
        log_x: true,
    };
    let series = [
        Series {
            name: "whole forward pass, toy model (2 blocks)",
            points: forward,
        },
        Series {
            name: "attention_forward, one block (C = 64, 4 heads)",
            points: attention,
        },
        Series {
            name: "proportional to T², through the last attention point",
            points: square.to_vec(),
        },
    ];
    line_chart_with_legend(
        path,
        &axes,
        &series,
        plotters::prelude::SeriesLabelPosition::UpperLeft,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `dL/dx` by fourth-order central differences, `h` = 0.01.
    fn numeric(mut loss_at: impl FnMut(f32) -> f64, x: f32) -> f64 {
        let h = 1e-2;
        let mut l = |d: f32| loss_at(x + d);
        (8.0 * (l(h) - l(-h)) - (l(2.0 * h) - l(-2.0 * h))) / (12.0 * f64::from(h))
    }

    /// A small model with weights large enough for sizeable gradients.
    fn small(projections: Projections) -> TinyAttention {
        let mut m = TinyAttention::new(projections, 5, 4, 6, 3);
        let mut rng = seeded(5);
        for (t, _) in m.tensors_mut() {
            t.iter_mut()
                .for_each(|w| *w = listings::rng::normal(&mut rng, 0.0, 0.5));
        }
        m
    }

    #[test]
    fn gradients_match_finite_differences() {
        for projections in [
            Projections::SharedQK,
            Projections::Separate,
            Projections::SharedKV,
        ] {
            let model = small(projections);
            let (idx, targets) = previous_token_batch(3, 4, 5, &mut seeded(1));
            let mut acts = TinyActivations::new(&model, 3, 4);
            model.forward(&mut acts, &idx, &targets);
            let mut grads = model.zeros_like();
            model.backward(&mut grads, &acts, &targets);
            let analytic: Vec<Vec<f32>> = grads
                .tensors_mut()
                .iter()
                .map(|(g, _)| g.to_vec())
                .collect();
            let mut worst: f64 = 0.0;
            for (k, grad) in analytic.iter().enumerate() {
                for (i, &a) in grad.iter().enumerate() {
                    let x = model.clone().tensors_mut()[k].0[i];
                    let n = numeric(
                        |v| {
                            let mut m = model.clone();
                            m.tensors_mut()[k].0[i] = v;
                            let mut acts = TinyActivations::new(&m, 3, 4);
                            f64::from(m.forward(&mut acts, &idx, &targets))
                        },
                        x,
                    );
                    let err = (f64::from(a) - n).abs() / f64::from(a).abs().max(n.abs()).max(1e-2);
                    worst = worst.max(err);
                }
            }
            println!("{projections:?}: largest gradient error {worst:.2e}");
            assert!(worst < 1e-2, "{projections:?}: gradient error {worst}");
        }
    }

    #[test]
    fn the_shared_model_has_symmetric_scores_and_fewer_parameters() {
        let (idx, targets) = previous_token_batch(1, 4, 5, &mut seeded(2));
        for projections in [
            Projections::SharedQK,
            Projections::Separate,
            Projections::SharedKV,
        ] {
            let model = small(projections);
            let mut acts = TinyActivations::new(&model, 1, 4);
            model.forward(&mut acts, &idx, &targets);
            let c = model.wte.ncols();
            let q: ndarray::ArrayView2<f32> = acts.qkv.slice(s![0, .., ..c]); // (T, C)
            let k: ndarray::ArrayView2<f32> = acts.qkv.slice(s![0, .., c..2 * c]); // (T, C)
            let scores = q.dot(&k.t()); // (T, T)
            let asymmetry = (&scores - &scores.t())
                .mapv(f32::abs)
                .fold(0.0_f32, |m, &v| m.max(v));
            match projections {
                Projections::SharedQK => assert!(asymmetry < 1e-5),
                Projections::Separate | Projections::SharedKV => assert!(asymmetry > 0.1),
            }
        }
        let shared = small(Projections::SharedQK).num_parameters();
        let separate = small(Projections::Separate).num_parameters();
        assert_eq!(separate - shared, 6 * 6 + 6);
        assert_eq!(small(Projections::SharedKV).num_parameters(), shared);
    }

    #[test]
    fn shared_keys_and_values_are_one_block_twice() {
        let model = small(Projections::SharedKV);
        let c_attn = model.c_attn();
        let c = model.wte.ncols();
        assert_eq!(c_attn.weight.slice(s![.., ..c]), model.query.weight);
        assert_eq!(c_attn.weight.slice(s![.., c..2 * c]), model.key.weight);
        assert_eq!(c_attn.weight.slice(s![.., 2 * c..]), model.key.weight);
        assert_eq!(c_attn.bias.slice(s![2 * c..]), model.key.bias);
    }

    #[test]
    fn a_question_targets_the_value_stored_under_its_key() {
        let n = LOOKUP_KEYS;
        let (idx, targets) = lookup_batch(3, &mut seeded(4));
        assert_eq!(idx.dim(), (3, Task::Lookup.seq_len()));
        for b in 0..3 {
            let mut keys: Vec<usize> = (0..n).map(|e| idx[[b, e]] as usize / n).collect();
            for e in 0..n {
                assert_eq!(targets[[b, e]] as usize, idx[[b, e]] as usize % n);
            }
            keys.sort_unstable();
            assert_eq!(keys, (0..n).collect::<Vec<_>>(), "every key once");
            for q in n..2 * n {
                let key = idx[[b, q]] as usize - n * n;
                let entry = (0..n).find(|&e| idx[[b, e]] as usize / n == key).unwrap();
                assert_eq!(targets[[b, q]], targets[[b, entry]]);
            }
        }
        assert!(idx.iter().all(|&id| (id as usize) < Task::Lookup.vocab()));
    }

    #[test]
    fn targets_are_the_previous_tokens() {
        let (idx, targets) = previous_token_batch(2, 5, 7, &mut seeded(0));
        for b in 0..2 {
            assert_eq!(targets[[b, 0]], idx[[b, 0]]);
            for t in 1..5 {
                assert_eq!(targets[[b, t]], idx[[b, t - 1]]);
            }
        }
    }

    #[test]
    fn separate_projections_learn_the_task() {
        let run = train_previous_token(Projections::Separate, 200, 200, 0);
        let (_, last) = run.history.last().unwrap();
        assert!(last.accuracy > 0.95, "{last:?}");
        let stats = position_stats(&run.model, 0);
        assert_eq!(stats.len(), TASK_LEN);
        assert!((stats[0].on_self - 1.0).abs() < 1e-6);
    }

    #[test]
    fn timings_are_positive() {
        assert!(time_attention(16, 8, 2, 2) > 0.0);
        assert!(time_forward(16, 1).unwrap() > 0.0);
    }
}
