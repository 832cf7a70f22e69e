//! The ledger of a training run, for chapter 9: how many floating-point
//! operations a token costs, how many bytes the training state and the
//! activations take, and how long a compute-optimal run takes, for the
//! book's model and three production shapes; checked against measurements
//! where the book's model allows (the time of a training step, the peak
//! memory of a process that trains).
//!
//! ```text
//! cargo run -p lab --release -- ledger [book|gpt2]
//! ```
//!
//! times a few steps of the real training step ([`Trainer::step`]) on the
//! book model (or on GPT-2 small), prints the FLOP/s achieved and the peak
//! memory against [`estimate`], then the table ([`ledger_table`]) at the
//! FLOP/s it measured.
//!
//! # Counting
//!
//! A FLOP is one floating-point addition or multiplication, so a
//! multiply-add is two. Only matrix products are counted: per token they
//! grow with `C²` or `C·T` or `V·C`, while LayerNorm, GELU, softmax, the
//! residual adds, the biases and AdamW grow with `C` or `T` alone, a
//! rounding error beside them ([`flops_per_new_token`](crate::inference::flops_per_new_token)
//! counts the same way).
//!
//! Attention is counted twice over. The *model* count is the work causal
//! attention needs: the token at position `p` (from 1) scores `p` keys and
//! sums `p` values. The listings code computes the whole `T x T` square of
//! scores, a future half included, and masks it afterwards (a
//! [`par_mat_mul`](listings::parallel::par_mat_mul) per head is much faster than `T`
//! ragged products), so it *executes* the model count plus
//! [`ForwardFlops::attention_masked`]. FLOP/s are quoted on the model
//! count, as model FLOPs utilisation is (PaLM, Chowdhery et al. 2022,
//! appendix B, counts `6N + 12·L·H·Q·T` a token: the whole square).
//!
//! The backward pass of a matrix product `Y = X·W` is two products of the
//! same size (`dX = dY·Wᵀ` and `dW = Xᵀ·dY`), and the listings code runs
//! both for every product, the first layer's and `lm_head`'s included;
//! attention's backward is four products of the forward's two. So training
//! costs exactly three forward passes' worth of products:
//! [`BACKWARD_PER_FORWARD`] is 2.
//!
//! # The rules of thumb
//!
//! Kaplan et al. 2020 ("Scaling Laws for Neural Language Models",
//! arXiv:2001.08361, section 2.1 and table 1) count a forward pass as
//! `2N + 2·n_layer·n_ctx·d_attn` FLOPs a token and training as `6N`, with
//! `N` the *non-embedding* parameters, `12·n_layer·d_model²` ("excluding
//! biases and other sub-leading terms"); their count leaves the output layer
//! out too. [`ParameterCounts::kaplan`] is that `N`. The book's models tie
//! `lm_head` to `wte`, and at a vocabulary of 50,257 that product is a third
//! of GPT-2 small's work, so `6N` with `N` = *all* parameters is the closer
//! rule here ([`LedgerRow::six_n_all`]); the tests check both.
//!
//! # Sources of the constants
//!
//! - 20 tokens per parameter: Hoffmann et al. 2022 ("Training
//!   Compute-Optimal Large Language Models", arXiv:2203.15556), the
//!   compute-optimal ratio of Chinchilla (70B parameters, 1.4T tokens).
//! - 16 bytes a parameter for mixed-precision Adam: Rajbhandari et al. 2020
//!   ("ZeRO: Memory Optimizations Toward Training Trillion Parameter
//!   Models", arXiv:1910.02054, section 3.1): 2 (fp16/bf16 weights) + 2
//!   (their gradients) + 4 (fp32 master weights) + 4 + 4 (Adam's two
//!   moments in fp32).
//! - 989 TFLOP/s: NVIDIA's H100 Tensor Core GPU datasheet, H100 SXM, BF16
//!   Tensor Core 1,979 TFLOPS "with sparsity"; dense is half.

use std::fmt::Write as _;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use ndarray::Array2;

use listings::model::{Gpt, GptConfig, parameter_breakdown};
use listings::optim::AdamWConfig;
use listings::rng::{RngExt, seeded};
use listings::tokens::BOOK_VOCAB_SIZE;
use listings::train::batches::TokenData;
use listings::train::memory::{TrainingMemory, estimate};
use listings::train::step::Trainer;

use crate::book_model::BOOK_MODEL_SEED;

/// FLOPs of the backward pass per FLOP of the forward pass, for every
/// matrix product the listings code runs (see the module documentation).
pub const BACKWARD_PER_FORWARD: u64 = 2;

// ANCHOR: forward_flops
/// The FLOPs of one token's forward pass, product by product, averaged
/// over the `T` positions of a training sequence of `T` tokens. Built by
/// [`forward_flops`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForwardFlops {
    /// `c_attn`, every block: `2·L·C·3C`.
    pub qkv: u64,
    /// Attention's two products, causal: the token at position `p` scores
    /// `p` keys and sums `p` values, `2·p·C` multiply-adds a block; on
    /// average over `p = 1..T`, `2·L·C·(T + 1)` FLOPs.
    pub attention: u64,
    /// The future half of the `T x T` scores, which the listings code
    /// computes and then masks: `2·L·C·(T - 1)`. Not in [`ForwardFlops::total`].
    pub attention_masked: u64,
    /// Attention's output projection `attn.c_proj`: `2·L·C·C`.
    pub proj: u64,
    /// The MLP, `c_fc` and `mlp.c_proj`: `2·L·(C·4C + 4C·C)`.
    pub mlp: u64,
    /// The output layer `lm_head` (the tied `wte`): `2·C·V`.
    pub lm_head: u64,
}

impl ForwardFlops {
    /// The model count: every product but the masked half of attention.
    pub fn total(&self) -> u64 {
        self.qkv + self.attention + self.proj + self.mlp + self.lm_head
    }

    /// What the listings code executes: [`ForwardFlops::total`] plus the
    /// masked half of attention.
    pub fn executed(&self) -> u64 {
        self.total() + self.attention_masked
    }

    /// The products with a weight matrix: two FLOPs for each weight of the
    /// blocks' four linear layers and of `lm_head`.
    pub fn weights(&self) -> u64 {
        self.qkv + self.proj + self.mlp + self.lm_head
    }
}

/// The FLOPs of one token's forward pass through `config`, for sequences
/// of `context` tokens (`T`, at most `block_size`), product by product.
/// Averaged over the positions of the sequence, so `T` times it is the
/// forward pass of one sequence; with `context` 0 there is no attention.
pub fn forward_flops(config: &GptConfig, context: usize) -> ForwardFlops {
    let (c, l, v) = (
        config.n_embd as u64,
        config.n_layer as u64,
        config.vocab_size as u64,
    );
    let t = context as u64;
    ForwardFlops {
        qkv: 2 * l * c * 3 * c,
        attention: if t == 0 { 0 } else { 2 * l * c * (t + 1) },
        attention_masked: 2 * l * c * t.saturating_sub(1),
        proj: 2 * l * c * c,
        mlp: 2 * l * (c * 4 * c + 4 * c * c),
        lm_head: 2 * c * v,
    }
}

/// The model FLOPs of one token's forward pass ([`ForwardFlops::total`]).
pub fn forward_flops_per_token(config: &GptConfig, context: usize) -> u64 {
    forward_flops(config, context).total()
}

/// The model FLOPs of training on one token: the forward pass and the
/// backward pass, `1 + BACKWARD_PER_FORWARD` forward passes' worth.
pub fn training_flops_per_token(config: &GptConfig, context: usize) -> u64 {
    (1 + BACKWARD_PER_FORWARD) * forward_flops_per_token(config, context)
}
// ANCHOR_END: forward_flops

/// A model's parameters counted four ways.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParameterCounts {
    /// Every parameter, `lm_head` tied to `wte` as in the book's models
    /// ([`count_parameters`](listings::model::count_parameters)).
    pub total: u64,
    /// The same model with an `lm_head` of its own (`V·C` more), as
    /// LLaMA's are.
    pub untied: u64,
    /// Everything but the embedding tables `wte` and `wpe`: the blocks and
    /// `ln_f`, biases and norms included.
    pub non_embedding: u64,
    /// Kaplan et al.'s `N`: the blocks' weight matrices alone, `12·L·C²`.
    pub kaplan: u64,
}

/// The parameters of `config`, counted four ways.
pub fn parameter_counts(config: &GptConfig) -> ParameterCounts {
    let p = parameter_breakdown(config);
    let (c, l) = (config.n_embd as u64, config.n_layer as u64);
    ParameterCounts {
        total: p.total as u64,
        untied: (p.total + p.wte) as u64,
        non_embedding: (p.total - p.wte - p.wpe) as u64,
        kaplan: 12 * l * c * c,
    }
}

// ANCHOR: state_bytes
/// Bytes a parameter of training state takes in fp32, as the book trains:
/// the weight, its gradient, AdamW's two moments, four bytes each.
pub const FP32_STATE_BYTES_PER_PARAMETER: u64 = 4 + 4 + 4 + 4;

/// Bytes a parameter of training state takes in bf16 mixed precision (ZeRO's
/// accounting): the bf16 weight and its bf16 gradient (2 each), the fp32
/// master weight (4), AdamW's two fp32 moments (8). As many as in fp32:
/// mixed precision halves the activations and doubles the speed, not the
/// optimiser's state.
pub const MIXED_STATE_BYTES_PER_PARAMETER: u64 = 2 + 2 + 4 + 8;

/// The weights, gradients and AdamW moments of a run: in the book's fp32,
/// the sum of those three parts of `memory`.
pub fn fp32_state_bytes(memory: &TrainingMemory) -> u128 {
    memory.parameters.bytes + memory.gradients.bytes + memory.moments.bytes
}
// ANCHOR_END: state_bytes

/// The bytes of every block's attention weights for `batch` sequences of
/// `context` tokens, in fp32: `4·L·B·n_head·T²`, the part of the
/// activations that grows with the square of the context (and that
/// FlashAttention does not keep).
pub fn attention_weight_bytes(config: &GptConfig, batch: usize, context: usize) -> u128 {
    let t = context as u128;
    4 * (config.n_layer * batch * config.n_head) as u128 * t * t
}

/// The tokens of a compute-optimal run per parameter (Hoffmann et al.
/// 2022, Chinchilla).
pub const CHINCHILLA_TOKENS_PER_PARAMETER: u64 = 20;

/// An H100 SXM's dense bf16 peak, in FLOP/s (NVIDIA's datasheet: 1,979
/// TFLOPS with sparsity, half without).
pub const H100_BF16_DENSE_FLOPS: f64 = 989e12;

/// A cluster of accelerators, as far as the ledger needs one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cluster {
    /// How many accelerators.
    pub gpus: u64,
    /// Each one's peak, in FLOP/s.
    pub peak_flops_per_s: f64,
    /// The fraction of the peak a training run achieves (model FLOPs
    /// utilisation).
    pub utilisation: f64,
}

impl Cluster {
    /// The ledger's cluster: 1,000 H100s at their dense bf16 peak, 40% of
    /// it achieved.
    pub fn h100s() -> Self {
        Cluster {
            gpus: 1000,
            peak_flops_per_s: H100_BF16_DENSE_FLOPS,
            utilisation: 0.4,
        }
    }

    /// The FLOP/s the cluster achieves.
    pub fn flops_per_s(&self) -> f64 {
        self.gpus as f64 * self.peak_flops_per_s * self.utilisation
    }
}

// ANCHOR: ledger_models
/// The ledger's models: the book's (chapter 4's toy model over the book's
/// vocabulary, [`crate::book_model::book_model_config`]), GPT-2 small, and
/// the shapes of LLaMA's 7B and 70B in GPT-2's blocks. GPT-2's blocks are
/// not LLaMA's (a GELU MLP four times as wide instead of SwiGLU, one key and
/// value per head instead of grouped queries, learned positions, a tied
/// output layer), so these come to 6.6 and 64.7 billion parameters rather
/// than 6.7 and 69.
pub fn ledger_models() -> [(&'static str, GptConfig); 4] {
    let llama = |n_layer, n_head, n_embd| GptConfig {
        vocab_size: 32000,
        block_size: 4096,
        n_layer,
        n_head,
        n_embd,
    };
    [
        ("book model", GptConfig::toy(BOOK_VOCAB_SIZE)),
        ("GPT-2 small", GptConfig::gpt2()),
        ("7B shape", llama(32, 32, 4096)),
        ("70B shape", llama(80, 64, 8192)),
    ]
}
// ANCHOR_END: ledger_models

/// One model's column of the ledger: what training it costs, for sequences
/// of its whole `block_size`.
#[derive(Clone, Debug, PartialEq)]
pub struct LedgerRow {
    /// The model's name.
    pub name: &'static str,
    /// Its shape.
    pub config: GptConfig,
    /// Its parameters.
    pub parameters: ParameterCounts,
    /// One token's forward pass at `T` = `block_size`.
    pub forward: ForwardFlops,
    /// Training FLOPs per token, counted ([`training_flops_per_token`]).
    pub training_flops_per_token: u64,
    /// The rule of thumb `6N` with `N` = all parameters.
    pub six_n_all: u64,
    /// The rule of thumb `6N` with Kaplan et al.'s `N` (non-embedding
    /// weights).
    pub six_n_kaplan: u64,
    /// The memory of training it on one sequence of `block_size` tokens
    /// ([`estimate`]).
    pub memory: TrainingMemory,
    /// Weights, gradients and AdamW moments in fp32 ([`fp32_state_bytes`]).
    pub state_fp32: u128,
    /// The same in bf16 mixed precision
    /// ([`MIXED_STATE_BYTES_PER_PARAMETER`] a parameter).
    pub state_mixed: u128,
    /// The forward pass's activations for one sequence, fp32, as the book
    /// keeps them (`memory.activations`).
    pub activations: u128,
    /// Of which the attention weights ([`attention_weight_bytes`]).
    pub attention_weights: u128,
    /// Tokens of a compute-optimal run: [`CHINCHILLA_TOKENS_PER_PARAMETER`]
    /// per parameter (all of them).
    pub tokens: u128,
    /// That run's training FLOPs.
    pub training_flops: u128,
    /// The FLOP/s of the machine the ledger was measured on.
    pub laptop_flops_per_s: f64,
    /// The run's time on that machine, in seconds.
    pub laptop_seconds: f64,
    /// The cluster it is compared with.
    pub cluster: Cluster,
    /// The run's time on the cluster, in seconds.
    pub cluster_seconds: f64,
}

/// The ledger of one model: see [`LedgerRow`].
pub fn ledger_row(
    name: &'static str,
    config: GptConfig,
    laptop_flops_per_s: f64,
    cluster: Cluster,
) -> LedgerRow {
    let t = config.block_size;
    let parameters = parameter_counts(&config);
    let training_flops_per_token = training_flops_per_token(&config, t);
    let memory = estimate(&config, 1, t);
    let tokens = u128::from(CHINCHILLA_TOKENS_PER_PARAMETER * parameters.total);
    let training_flops = tokens * u128::from(training_flops_per_token);
    LedgerRow {
        name,
        config,
        parameters,
        forward: forward_flops(&config, t),
        training_flops_per_token,
        six_n_all: 6 * parameters.total,
        six_n_kaplan: 6 * parameters.kaplan,
        memory,
        state_fp32: fp32_state_bytes(&memory),
        state_mixed: u128::from(MIXED_STATE_BYTES_PER_PARAMETER * parameters.total),
        activations: memory.activations.bytes,
        attention_weights: attention_weight_bytes(&config, 1, t),
        tokens,
        training_flops,
        laptop_flops_per_s,
        laptop_seconds: training_flops as f64 / laptop_flops_per_s,
        cluster,
        cluster_seconds: training_flops as f64 / cluster.flops_per_s(),
    }
}

// ANCHOR: ledger_rows
/// The ledger of [`ledger_models`], with times at `measured_flops_per_s`
/// (this machine's, from [`measure_training_steps`]) and on
/// [`Cluster::h100s`].
pub fn ledger_rows(measured_flops_per_s: f64) -> Vec<LedgerRow> {
    ledger_models()
        .into_iter()
        .map(|(name, config)| ledger_row(name, config, measured_flops_per_s, Cluster::h100s()))
        .collect()
}
// ANCHOR_END: ledger_rows

/// The ledger as a table: one column per model, one line per quantity.
pub fn ledger_table(rows: &[LedgerRow]) -> String {
    let signed_percent = |rule: u64, exact: u64| {
        let diff = 100.0 * (rule as f64 / exact as f64 - 1.0);
        format!("{} ({diff:+.1}%)", sci(rule as f64))
    };
    let laptop = rows.first().map_or(0.0, |r| r.laptop_flops_per_s);
    let cluster = rows.first().map_or(Cluster::h100s(), |r| r.cluster);
    type Line<'a> = (String, Box<dyn Fn(&LedgerRow) -> String + 'a>);
    let lines: Vec<Line> = vec![
        (
            "layers, heads, width".into(),
            Box::new(|r: &LedgerRow| {
                let c = r.config;
                format!("{}, {}, {}", c.n_layer, c.n_head, c.n_embd)
            }),
        ),
        (
            "context T, vocabulary V".into(),
            Box::new(|r: &LedgerRow| format!("{}, {}", r.config.block_size, r.config.vocab_size)),
        ),
        (
            "parameters (lm_head tied)".into(),
            Box::new(|r: &LedgerRow| thousands(r.parameters.total)),
        ),
        (
            "  with lm_head untied".into(),
            Box::new(|r: &LedgerRow| thousands(r.parameters.untied)),
        ),
        (
            "  Kaplan's N = 12·L·C²".into(),
            Box::new(|r: &LedgerRow| thousands(r.parameters.kaplan)),
        ),
        (
            "training FLOPs a token, counted".into(),
            Box::new(|r: &LedgerRow| sci(r.training_flops_per_token as f64)),
        ),
        (
            "  6N, N = all parameters".into(),
            Box::new(move |r: &LedgerRow| signed_percent(r.six_n_all, r.training_flops_per_token)),
        ),
        (
            "  6N, N = Kaplan's".into(),
            Box::new(move |r: &LedgerRow| {
                signed_percent(r.six_n_kaplan, r.training_flops_per_token)
            }),
        ),
        (
            "  share in attention".into(),
            Box::new(|r: &LedgerRow| percent(r.forward.attention, r.forward.total())),
        ),
        (
            "  share in lm_head".into(),
            Box::new(|r: &LedgerRow| percent(r.forward.lm_head, r.forward.total())),
        ),
        (
            "weights+grads+AdamW, fp32".into(),
            Box::new(|r: &LedgerRow| bytes(r.state_fp32)),
        ),
        (
            "weights+grads+AdamW, bf16 mixed".into(),
            Box::new(|r: &LedgerRow| bytes(r.state_mixed)),
        ),
        (
            "activations, one sequence, fp32".into(),
            Box::new(|r: &LedgerRow| bytes(r.activations)),
        ),
        (
            "  of which attention weights".into(),
            Box::new(|r: &LedgerRow| bytes(r.attention_weights)),
        ),
        (
            format!("tokens at {CHINCHILLA_TOKENS_PER_PARAMETER} a parameter"),
            Box::new(|r: &LedgerRow| sci(r.tokens as f64)),
        ),
        (
            "training FLOPs for them".into(),
            Box::new(|r: &LedgerRow| sci(r.training_flops as f64)),
        ),
        (
            format!("time at {:.1} GFLOP/s", laptop / 1e9),
            Box::new(|r: &LedgerRow| duration(r.laptop_seconds)),
        ),
        (
            format!(
                "time on {} H100s at {:.0}%",
                thousands(cluster.gpus),
                cluster.utilisation * 100.0
            ),
            Box::new(|r: &LedgerRow| duration(r.cluster_seconds)),
        ),
    ];
    let label_width = lines
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0);
    let cells: Vec<Vec<String>> = lines
        .iter()
        .map(|(_, cell)| rows.iter().map(cell).collect())
        .collect();
    let widths: Vec<usize> = (0..rows.len())
        .map(|i| {
            cells
                .iter()
                .map(|line| line[i].chars().count())
                .chain([rows[i].name.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let pad = |s: &str, w: usize| " ".repeat(w.saturating_sub(s.chars().count())) + s;
    out.push_str(&pad("", label_width));
    for (row, &w) in rows.iter().zip(&widths) {
        out.push_str("  ");
        out.push_str(&pad(row.name, w));
    }
    out.push('\n');
    for ((label, _), line) in lines.iter().zip(&cells) {
        out.push_str(label);
        out.push_str(&" ".repeat(label_width - label.chars().count()));
        for (cell, &w) in line.iter().zip(&widths) {
            out.push_str("  ");
            out.push_str(&pad(cell, w));
        }
        out.push('\n');
    }
    out
}

/// `n` with a comma every three digits: `124,439,808`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// A number in scientific notation with three significant digits: `7.98e8`.
fn sci(x: f64) -> String {
    format!("{x:.2e}")
}

/// `part` as a percentage of `whole`, one decimal.
fn percent(part: u64, whole: u64) -> String {
    format!("{:.1}%", 100.0 * part as f64 / whole as f64)
}

/// Bytes in SI units, one decimal: `1.9 GB`.
fn bytes(n: u128) -> String {
    let x = n as f64;
    let units = [(1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB")];
    units
        .iter()
        .find(|&&(scale, _)| x >= scale)
        .map_or(format!("{n} B"), |&(scale, unit)| {
            format!("{:.1} {unit}", x / scale)
        })
}

/// A duration in the largest unit that keeps it above about two:
/// microseconds, milliseconds, seconds, minutes, hours, days or years
/// (365.25 days), one decimal; whole years with commas from 100 years up.
fn duration(seconds: f64) -> String {
    const DAY: f64 = 86400.0;
    const YEAR: f64 = 365.25 * DAY;
    if seconds >= 100.0 * YEAR {
        return format!("{} years", thousands((seconds / YEAR).round() as u64));
    }
    let units = [
        (YEAR, YEAR, "years"),
        (2.0 * DAY, DAY, "days"),
        (2.0 * 3600.0, 3600.0, "hours"),
        (2.0 * 60.0, 60.0, "min"),
        (1.0, 1.0, "s"),
        (1e-3, 1e-3, "ms"),
    ];
    let (_, scale, unit) = units
        .into_iter()
        .find(|&(threshold, _, _)| seconds >= threshold)
        .unwrap_or((0.0, 1e-6, "µs"));
    format!("{:.1} {unit}", seconds / scale)
}

/// The resident memory of this process (`VmRSS` in `/proc/self/status`),
/// in bytes; `None` off Linux.
pub fn current_rss() -> Option<u64> {
    status_field("VmRSS:")
}

/// The most resident memory this process has held (`VmHWM`, its high-water
/// mark) since it started or since [`reset_peak_rss`], in bytes; `None` off
/// Linux.
pub fn peak_rss() -> Option<u64> {
    status_field("VmHWM:")
}

/// Sets the high-water mark [`peak_rss`] reads back to the current resident
/// memory (writing `5` to `/proc/self/clear_refs`, Linux 4.0 and later).
/// Returns whether it could.
pub fn reset_peak_rss() -> bool {
    cfg!(target_os = "linux") && std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn status_field(name: &str) -> Option<u64> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    parse_status_kib(&std::fs::read_to_string("/proc/self/status").ok()?, name)
}

/// A `Name:   12345 kB` line of a `/proc/<pid>/status`, in bytes.
fn parse_status_kib(status: &str, name: &str) -> Option<u64> {
    let line = status.lines().find_map(|line| line.strip_prefix(name))?;
    let mut words = line.split_whitespace();
    let kib: u64 = words.next()?.parse().ok()?;
    match (words.next(), words.next()) {
        (Some("kB"), None) => kib.checked_mul(1024),
        _ => None,
    }
}

/// What [`measure_training_steps`] measured.
#[derive(Clone, Debug, PartialEq)]
pub struct StepMeasurement {
    /// The model trained.
    pub config: GptConfig,
    /// Sequences per batch, `B`.
    pub batch_size: usize,
    /// Tokens per sequence, `T`.
    pub block_size: usize,
    /// The steps timed (after the warm-up ones).
    pub steps: usize,
    /// The median time of a whole step ([`Trainer::step`]), in seconds.
    pub step_seconds: f64,
    /// The median time of its forward pass.
    pub forward_seconds: f64,
    /// The median time of its backward pass (zeroing the gradients
    /// included).
    pub backward_seconds: f64,
    /// The median time of clipping and AdamW.
    pub optimizer_seconds: f64,
    /// The model FLOPs of one step: [`training_flops_per_token`] times
    /// `B·T`.
    pub flops_per_step: u64,
    /// The FLOPs the step executes (the masked half of attention too).
    pub executed_flops_per_step: u64,
    /// [`estimate`] for this model and batch shape.
    pub memory: TrainingMemory,
    /// The process's resident memory just before the model was built.
    pub rss_before: Option<u64>,
    /// Its peak resident memory from then to the end of the last step.
    pub peak_rss: Option<u64>,
}

impl StepMeasurement {
    /// The model FLOPs achieved per second.
    pub fn flops_per_s(&self) -> f64 {
        self.flops_per_step as f64 / self.step_seconds
    }

    /// The FLOPs executed per second.
    pub fn executed_flops_per_s(&self) -> f64 {
        self.executed_flops_per_step as f64 / self.step_seconds
    }

    /// The bytes the estimate expects the steps to hold: everything but the
    /// checkpoint copy (nothing is saved).
    pub fn expected_bytes(&self) -> u128 {
        self.memory.total - self.memory.checkpoint.bytes
    }

    /// The memory the training added to the process: peak minus before.
    pub fn measured_bytes(&self) -> Option<u64> {
        Some(self.peak_rss?.saturating_sub(self.rss_before?))
    }
}

// ANCHOR: measure_training_steps
/// Times the listings training step ([`Trainer::step`]) on `config`
/// (initialised with the book's seed) with batches of `batch_size`
/// sequences of `block_size` tokens: `warmup` steps untimed, then `steps`
/// timed, reporting medians. The tokens are drawn at random from the whole
/// vocabulary (a step costs the same whatever they are). On Linux it also
/// reads the process's resident memory before the model is built and its
/// peak afterwards, the peak first reset to the memory of the moment.
pub fn measure_training_steps(
    config: GptConfig,
    batch_size: usize,
    block_size: usize,
    warmup: usize,
    steps: usize,
) -> Result<StepMeasurement> {
    if steps == 0 {
        bail!("time at least one step");
    }
    let mut rng = seeded(0);
    let vocab = config.vocab_size as u32;
    let ids = (0..(batch_size * block_size).max(block_size + 1) * 4)
        .map(|_| rng.random_range(0..vocab))
        .collect();
    let data = TokenData::new(ids);
    reset_peak_rss();
    let rss_before = current_rss();
    let gpt = Gpt::new(config, BOOK_MODEL_SEED)?;
    let mut trainer = Trainer::new(gpt, AdamWConfig::default(), batch_size, block_size)?;
    let (mut x, mut y) = (
        Array2::zeros((batch_size, block_size)),
        Array2::zeros((batch_size, block_size)),
    ); // (B, T)
    let mut times = Vec::with_capacity(steps);
    for i in 0..warmup + steps {
        data.get_batch(&mut rng, &mut x, &mut y)?;
        let start = Instant::now();
        let stats = trainer.step(&x, &y, 1e-3, 1.0)?;
        let seconds = start.elapsed().as_secs_f64();
        if i >= warmup {
            times.push((seconds, stats.times));
        }
    }
    let peak_rss = peak_rss();
    let median = |f: &dyn Fn(&(f64, listings::train::step::StepTimes)) -> f64| {
        let mut v: Vec<f64> = times.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let tokens = (batch_size * block_size) as u64;
    let executed = forward_flops(&config, block_size).executed();
    Ok(StepMeasurement {
        config,
        batch_size,
        block_size,
        steps,
        step_seconds: median(&|t| t.0),
        forward_seconds: median(&|t| t.1.forward.as_secs_f64()),
        backward_seconds: median(&|t| t.1.backward.as_secs_f64()),
        optimizer_seconds: median(&|t| t.1.optimizer.as_secs_f64()),
        flops_per_step: training_flops_per_token(&config, block_size) * tokens,
        executed_flops_per_step: (1 + BACKWARD_PER_FORWARD) * executed * tokens,
        memory: estimate(&config, batch_size, block_size),
        rss_before,
        peak_rss,
    })
}
// ANCHOR_END: measure_training_steps

/// What `cargo run -p lab --release -- ledger [book|gpt2]` measures: the
/// book model at its training batch (16 sequences of 64 tokens, 20 steps
/// after 3), or GPT-2 small at 4 sequences of 256 tokens (3 steps after 1).
pub fn measure_for_ledger(model: &str) -> Result<(&'static str, StepMeasurement)> {
    match model {
        "book" => {
            let train = crate::book_model::book_train_config();
            let config = crate::book_model::book_model_config();
            let m = measure_training_steps(config, train.batch_size, train.block_size, 3, 20)?;
            Ok(("the book model", m))
        }
        "gpt2" => Ok((
            "GPT-2 small",
            measure_training_steps(GptConfig::gpt2(), 4, 256, 1, 3)?,
        )),
        other => bail!("unknown model {other:?} for the ledger; try `book` or `gpt2`"),
    }
}

/// The report of lab's `ledger` command: the measurement, then the table
/// at the FLOP/s it achieved.
pub fn ledger_report(name: &str, m: &StepMeasurement) -> String {
    let c = m.config;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Measured: {name} ({} layers, {} heads, {} wide, vocabulary {}), batches of {} x {} tokens, \
         median of {} steps",
        c.n_layer,
        c.n_head,
        c.n_embd,
        thousands(c.vocab_size as u64),
        m.batch_size,
        m.block_size,
        m.steps
    );
    let _ = writeln!(
        out,
        "  a step: {} (forward {}, backward {}, clip and AdamW {}); backward / forward = {:.2} \
         (the products alone: {BACKWARD_PER_FORWARD})",
        duration(m.step_seconds),
        duration(m.forward_seconds),
        duration(m.backward_seconds),
        duration(m.optimizer_seconds),
        m.backward_seconds / m.forward_seconds
    );
    let _ = writeln!(
        out,
        "  FLOPs a step: {} counted (causal attention), {} executed (its masked half too)",
        sci(m.flops_per_step as f64),
        sci(m.executed_flops_per_step as f64)
    );
    let _ = writeln!(
        out,
        "  achieved: {:.1} GFLOP/s counted, {:.1} GFLOP/s executed",
        m.flops_per_s() / 1e9,
        m.executed_flops_per_s() / 1e9
    );
    let expected = m.expected_bytes();
    match (m.measured_bytes(), m.rss_before, m.peak_rss) {
        (Some(measured), Some(before), Some(peak)) => {
            let _ = writeln!(
                out,
                "  memory: estimate {} (listings::train::memory::estimate, no checkpoint copy); \
                 peak RSS {}, {} above the {} before the model was built: {:.2} x the estimate",
                bytes(expected),
                bytes(u128::from(peak)),
                bytes(u128::from(measured)),
                bytes(u128::from(before)),
                measured as f64 / expected as f64
            );
        }
        _ => {
            let _ = writeln!(
                out,
                "  memory: estimate {} (no /proc/self/status to measure against)",
                bytes(expected)
            );
        }
    }
    out.push('\n');
    out.push_str(&ledger_table(&ledger_rows(m.flops_per_s())));
    out
}

/// lab's `ledger` command: `args` is empty, `book` or `gpt2`.
pub fn ledger_command(args: &[String]) -> Result<()> {
    let model = match args {
        [] => "book",
        [model] => model.as_str(),
        _ => bail!("usage: lab ledger [book|gpt2]"),
    };
    let (name, m) = measure_for_ledger(model).context("timing the training step")?;
    print!("{}", ledger_report(name, &m));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference::flops_per_new_token;
    use listings::model::{Activations, GptParams, count_parameters};

    /// Shapes to check the counts on: odd sizes, the book's, GPT-2's.
    fn configs() -> Vec<GptConfig> {
        vec![
            GptConfig {
                vocab_size: 7,
                block_size: 9,
                n_layer: 3,
                n_head: 2,
                n_embd: 6,
            },
            GptConfig::toy(BOOK_VOCAB_SIZE),
            GptConfig::baby(65),
            GptConfig::gpt2(),
        ]
    }

    /// The matrix products of one forward pass over a batch, as `(m, k, n)`
    /// (an `(m, k)` by `(k, n)` product), read off the arrays the listings
    /// code allocates and multiplies, not off the formula: the linear layers
    /// from the weights' shapes and the activations they fill, attention
    /// as one `(T, hs) x (hs, T)` and one `(T, T) x (T, hs)` product per
    /// head and sequence, the whole square as the code computes it.
    fn executed_products(config: &GptConfig, b: usize, t: usize) -> Vec<(u64, u64, u64)> {
        let params = GptParams::zeros(config);
        let acts = Activations::new(config, b, t);
        let mut products = Vec::new();
        for (p, a) in params.h.iter().zip(&acts.layers) {
            let rows = |x: &ndarray::Array3<f32>| (x.dim().0 * x.dim().1) as u64;
            let linear = |w: &ndarray::Array2<f32>, out: &ndarray::Array3<f32>| {
                let (k, n) = w.dim();
                assert_eq!(out.dim().2, n);
                (rows(out), k as u64, n as u64)
            };
            products.push(linear(&p.attn.c_attn.weight, &a.qkv));
            let (bb, nh, tq, tk) = a.att.dim();
            let hs = (a.atty.dim().2 / nh) as u64;
            for _ in 0..bb * nh {
                products.push((tq as u64, hs, tk as u64)); // Q·Kᵀ
                products.push((tq as u64, tk as u64, hs)); // P·V
            }
            products.push(linear(&p.attn.c_proj.weight, &a.attproj));
            products.push(linear(&p.mlp.c_fc.weight, &a.fch));
            products.push(linear(&p.mlp.c_proj.weight, &a.fcproj));
        }
        let (v, c) = params.wte.dim();
        assert_eq!(acts.logits.dim().2, v);
        products.push(((b * t) as u64, c as u64, v as u64)); // lm_head: x·wteᵀ
        products
    }

    fn flops(products: &[(u64, u64, u64)]) -> u64 {
        products.iter().map(|&(m, k, n)| 2 * m * k * n).sum()
    }

    #[test]
    fn the_count_is_the_sum_of_the_products_the_code_runs() {
        for config in configs() {
            for (b, t) in [(1, 1), (2, 5), (3, config.block_size.min(64))] {
                let counted = forward_flops(&config, t);
                let executed = flops(&executed_products(&config, b, t));
                let tokens = (b * t) as u64;
                assert_eq!(
                    counted.executed() * tokens,
                    executed,
                    "{config:?} B={b} T={t}"
                );
            }
        }
    }

    #[test]
    fn causal_attention_is_counted_position_by_position() {
        for config in configs() {
            let (c, l) = (config.n_embd as u64, config.n_layer as u64);
            let hs = config.head_size() as u64;
            let nh = config.n_head as u64;
            for t in [1, 2, 7, 64] {
                // Position i (from 0) scores i + 1 keys and sums i + 1
                // values, hs multiply-adds each, in every head and block.
                let by_hand: u64 = (0..t as u64).map(|i| l * nh * 2 * (i + 1) * hs * 2).sum();
                let f = forward_flops(&config, t);
                assert_eq!(f.attention * t as u64, by_hand, "{config:?} T={t}");
                // The square, minus what the causal count keeps.
                let square = l * nh * 2 * (t as u64 * t as u64) * hs * 2;
                assert_eq!((f.attention + f.attention_masked) * t as u64, square);
                assert_eq!(
                    f.weights(),
                    2 * (12 * l * c * c + c * config.vocab_size as u64)
                );
            }
        }
        assert_eq!(forward_flops(&GptConfig::gpt2(), 0).attention, 0);
    }

    #[test]
    fn the_count_agrees_with_chapter_7s_count_of_a_new_token() {
        for config in configs() {
            let lm_head = forward_flops(&config, 1).lm_head;
            for t in [1, 2, 17, config.block_size.min(128)] {
                let sequence = t as u64 * forward_flops_per_token(&config, t);
                // With the cache, position p costs one position's products
                // against p keys: the positions of a sequence, one by one.
                let cached: u64 = (1..=t).map(|p| flops_per_new_token(&config, p, true)).sum();
                assert_eq!(cached, sequence, "{config:?} T={t}");
                // Without it, every position again, but lm_head only for
                // the last.
                let uncached = flops_per_new_token(&config, t, false);
                assert_eq!(
                    uncached + (t as u64 - 1) * lm_head,
                    sequence,
                    "{config:?} T={t}"
                );
            }
        }
    }

    #[test]
    fn training_is_three_forward_passes() {
        let config = GptConfig::gpt2();
        let forward = forward_flops_per_token(&config, 1024);
        assert_eq!(training_flops_per_token(&config, 1024), 3 * forward);
        assert_eq!(forward, 265_956_864);
    }

    #[test]
    fn gpt2_small_has_124m_parameters_tied_and_163m_untied() {
        let p = parameter_counts(&GptConfig::gpt2());
        assert_eq!(p.total, 124_439_808);
        assert_eq!(p.total, count_parameters(&GptConfig::gpt2()) as u64);
        assert_eq!(p.untied, 124_439_808 + 50257 * 768);
        assert_eq!(p.untied, 163_037_184);
        assert_eq!(p.kaplan, 84_934_656);
        // The blocks' biases and norms, and ln_f, are what Kaplan's N leaves out.
        assert_eq!(p.non_embedding - p.kaplan, 12 * 13 * 768 + 2 * 768);
    }

    #[test]
    fn six_n_is_close_to_the_count_for_gpt2_at_short_context() {
        let config = GptConfig::gpt2();
        let p = parameter_counts(&config);
        let exact = training_flops_per_token(&config, 64) as f64;
        let all = 6.0 * p.total as f64;
        assert!((all / exact - 1.0).abs() < 0.01, "{all} vs {exact}");
        // Kaplan's N leaves lm_head out, a third of the work at GPT-2's
        // vocabulary; it matches the count without lm_head.
        let kaplan = 6.0 * p.kaplan as f64;
        assert!(kaplan / exact < 0.7, "{kaplan} vs {exact}");
        let lm_head = 3.0 * forward_flops(&config, 64).lm_head as f64;
        assert!((kaplan / (exact - lm_head) - 1.0).abs() < 0.01);
        // At the full context attention adds 7%, and 6N falls short.
        let full = training_flops_per_token(&config, 1024) as f64;
        assert!(all / full < 0.95 && all / full > 0.9, "{all} vs {full}");
    }

    #[test]
    fn the_memory_parts_add_up() {
        for row in ledger_rows(1e11) {
            let n = u128::from(row.parameters.total);
            let m = row.memory;
            assert_eq!(row.state_fp32, 16 * n, "{}", row.name);
            assert_eq!(row.state_mixed, 16 * n, "{}", row.name);
            assert_eq!(m.parameters.bytes, 4 * n);
            let rest = m.activations.bytes
                + m.activation_grads.bytes
                + m.batches.bytes
                + m.bookkeeping.bytes
                + m.checkpoint.bytes;
            assert_eq!(row.state_fp32 + rest, m.total, "{}", row.name);
            assert!(row.attention_weights < row.activations);
        }
        assert_eq!(ledger_rows(1e11)[1].state_fp32, 1_991_036_928);
    }

    #[test]
    fn the_attention_weights_are_what_the_estimate_grows_by_per_head() {
        // The estimate's activations with n_head heads, less those with
        // one head (same width): the extra heads' T x T weights.
        for (config, b, t) in [(GptConfig::gpt2(), 2, 1024), (GptConfig::baby(65), 12, 64)] {
            let one = GptConfig {
                n_head: 1,
                ..config
            };
            let extra =
                estimate(&config, b, t).activations.bytes - estimate(&one, b, t).activations.bytes;
            assert_eq!(
                extra,
                attention_weight_bytes(&config, b, t) - attention_weight_bytes(&one, b, t)
            );
        }
    }

    #[test]
    fn the_ledger_times_follow_from_the_flops() {
        let rows = ledger_rows(1e11);
        let names: Vec<&str> = rows.iter().map(|r| r.name).collect();
        assert_eq!(
            names,
            ["book model", "GPT-2 small", "7B shape", "70B shape"]
        );
        for r in &rows {
            assert_eq!(r.tokens, 20 * u128::from(r.parameters.total));
            let flops = r.tokens as f64 * r.training_flops_per_token as f64;
            assert!((r.laptop_seconds / (flops / 1e11) - 1.0).abs() < 1e-12);
            assert!((r.cluster_seconds / (flops / 395.6e15) - 1.0).abs() < 1e-12);
        }
        // GPT-2's blocks in LLaMA's shapes, as `ledger_models` says.
        assert_eq!(rows[0].parameters.total, 235_264);
        assert_eq!(rows[2].parameters.total, 6_592_012_288);
        assert_eq!(rows[3].parameters.total, 64_728_743_936);
    }

    #[test]
    fn the_book_column_is_the_book_model() {
        assert_eq!(ledger_models()[0].1, crate::book_model::book_model_config());
    }

    #[test]
    fn the_table_prints_every_model_and_quantity() {
        let table = ledger_table(&ledger_rows(1e11));
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 19);
        assert!(lines[0].ends_with("70B shape"), "{table}");
        let params = lines.iter().find(|l| l.starts_with("parameters")).unwrap();
        assert!(params.contains("124,439,808"), "{table}");
        assert!(table.contains("time at 100.0 GFLOP/s"), "{table}");
        // Every line is as wide as the header.
        assert!(
            lines
                .iter()
                .all(|l| l.chars().count() == lines[0].chars().count())
        );
    }

    #[test]
    fn units_are_readable() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(124_439_808), "124,439,808");
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(1_991_036_928), "2.0 GB");
        assert_eq!(bytes(1_035_417_681_920), "1.0 TB");
        assert_eq!(duration(1.7e-5), "17.0 µs");
        assert_eq!(duration(0.0551), "55.1 ms");
        assert_eq!(duration(59.0), "59.0 s");
        assert_eq!(duration(150.0), "2.5 min");
        assert_eq!(duration(3.0 * 3600.0), "3.0 hours");
        assert_eq!(duration(3.0 * 86400.0), "3.0 days");
        assert_eq!(duration(730.5 * 86400.0), "2.0 years");
        assert_eq!(duration(6720.4 * 365.25 * 86400.0), "6,720 years");
        assert_eq!(sci(797_870_592.0), "7.98e8");
    }

    /// The child of [`training_memory_is_the_estimate`]: one training step
    /// of a model whose estimate is about 134 MB, in a process of its own,
    /// printing the memory it added and the estimate.
    #[test]
    #[ignore = "run by training_memory_is_the_estimate, in a process of its own"]
    fn training_memory_child() {
        let config = GptConfig {
            vocab_size: 4096,
            block_size: 64,
            n_layer: 4,
            n_head: 4,
            n_embd: 256,
        };
        let m = measure_training_steps(config, 8, 64, 0, 1).unwrap();
        let measured = m.measured_bytes().expect("Linux reports resident memory");
        println!("LEDGER_RSS {measured} {}", m.expected_bytes());
    }

    #[test]
    fn training_memory_is_the_estimate() {
        if !cfg!(target_os = "linux") || !reset_peak_rss() {
            return; // no resident memory to read
        }
        // The test harness runs other tests in this process at the same
        // time, so the step is measured in a process of its own: this test
        // binary again, running the ignored child alone.
        let name = "scaling::ledger::tests::training_memory_child";
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                name,
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The harness prints the test's name on the same line.
        let line = stdout.lines().find_map(|l| l.split_once("LEDGER_RSS "));
        let numbers: Vec<f64> = line
            .unwrap_or_else(|| panic!("no LEDGER_RSS line in {stdout}"))
            .1
            .split_whitespace()
            .take(2)
            .map(|n| n.parse().unwrap())
            .collect();
        let (measured, expected) = (numbers[0], numbers[1]);
        // Measured 1.03 times the estimate (the allocator, the threads'
        // stacks, matrixmultiply's packing space are not in it).
        assert!(expected > 100e6, "{expected}");
        let ratio = measured / expected;
        assert!(
            (0.95..1.2).contains(&ratio),
            "{measured} bytes vs {expected} estimated"
        );
    }

    #[test]
    fn status_lines_are_read_in_bytes() {
        let status = "Name:\tlab\nVmHWM:\t  45678 kB\nVmRSS:\t   1234 kB\n";
        assert_eq!(parse_status_kib(status, "VmHWM:"), Some(45678 * 1024));
        assert_eq!(parse_status_kib(status, "VmRSS:"), Some(1234 * 1024));
        assert_eq!(parse_status_kib(status, "VmPeak:"), None);
        assert_eq!(parse_status_kib("VmRSS: 12 MB\n", "VmRSS:"), None);
        if cfg!(target_os = "linux") {
            let (rss, peak) = (current_rss().unwrap(), peak_rss().unwrap());
            assert!(rss > 0 && peak >= rss);
        }
    }
}
