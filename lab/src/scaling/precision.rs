//! Low precision, simulated: what training in bf16 or fp16 does to the
//! book's model, with every number still an `f32` but rounded, at the
//! places mixed-precision training rounds, to what the narrower format can
//! hold.
//!
//! # The formats
//!
//! An `f32` has 1 sign bit, 8 exponent bits and 23 fraction bits. The two
//! 16-bit formats of training hardware cut it in two ways:
//!
//! - **bf16** ("brain float") keeps the 8 exponent bits and 7 fraction bits:
//!   the range of `f32` (up to 3.4e38), with about 2 to 3 significant
//!   decimal digits. It is the top half of an `f32`, so rounding to it is
//!   rounding away the low 16 bits ([`round_bf16`]).
//! - **fp16** (IEEE half precision) has 5 exponent bits and 10 fraction
//!   bits: about 3 decimal digits, but a range that ends at 65,504
//!   ([`FP16_MAX`]; anything from 65,520 up rounds to infinity) and, at the
//!   small end, normal numbers down to 6.1e-5 ([`FP16_MIN_NORMAL`]) and
//!   subnormals, with fewer and fewer significant bits, down to 6.0e-8
//!   ([`FP16_MIN_SUBNORMAL`]); anything below half of that rounds to 0
//!   ([`round_fp16`]).
//!
//! Both round to nearest, ties to even, as the hardware does. The
//! conversions are written out by hand here and checked against the bit
//! patterns of known values and, exhaustively, against every boundary
//! between two neighbouring 16-bit numbers.
//!
//! # Mixed precision, simulated
//!
//! Mixed-precision training (Micikevicius et al. 2018, "Mixed Precision
//! Training", arXiv:1710.03740) keeps an `f32` *master copy* of the weights
//! and `f32` optimiser state, and does the passes in 16 bits:
//!
//! 1. each step, the weights are cast to 16 bits for the forward pass
//!    ([`round_params`]);
//! 2. every layer's output is stored in 16 bits ([`forward_rounded`]: the
//!    embeddings, each LayerNorm's output, `qkv`, attention's output, each
//!    linear layer's output, GELU's, the residual stream after each
//!    addition, the logits). Inside a layer the sums are `f32`, as tensor
//!    cores accumulate; attention is treated as one fused kernel (its
//!    weights are not rounded), and the loss is computed in `f32` from the
//!    rounded logits, as PyTorch's autocast does;
//! 3. the backward pass stores every activation gradient in 16 bits
//!    ([`backward_rounded`]) and the weights' gradients too, after the
//!    backward pass;
//! 4. the gradients are unscaled (see below), clipped and applied by AdamW
//!    to the `f32` master copy.
//!
//! Both passes are built from the public layer functions of
//! [`listings::model`], in the order [`Gpt::forward_with`] and
//! [`Gpt::backward`] call them; with [`Format::F32`] (no rounding) they
//! give the same numbers as the library's, to the bit (a test checks it),
//! so every difference between the runs is the rounding's.
//!
//! # Loss scaling
//!
//! The gradient of the mean loss with respect to a logit is
//! `(p - [target]) / (B·T)`: with 1,024 positions a step and a vocabulary
//! of 2,048 tokens, most of them are far below fp16's smallest normal
//! number, and many below its smallest subnormal: they *underflow* to 0.
//! Loss scaling multiplies the loss (so every gradient) by a factor `S`
//! before the backward pass and divides the weights' gradients by it, in
//! `f32`, before the update. Too small a factor leaves gradients in the
//! underflow; too large a one pushes some above 65,504, to infinity.
//! *Dynamic* loss scaling ([`Scaling::Dynamic`], PyTorch's `GradScaler`)
//! finds the factor as it trains: it doubles `S` after a run of good
//! steps, and when a gradient comes out infinite or NaN it skips that
//! step's update and halves `S`.
//!
//! # What the runs show
//!
//! [`precision_runs`] trains the book's toy model (the book model's shape,
//! seed, batches and optimiser, [`STEPS`] steps) six ways ([`RECIPES`]):
//! `f32`; bf16; fp16 without loss scaling; fp16 with dynamic loss scaling;
//! `f32` again from initial weights one bit off, as a control; and fp16 at
//! a fixed loss scale too large for it. Each run is trained once and kept
//! in [`crate::cache`]. [`scale_window`] runs one batch through the trained
//! book model at fixed loss scales from 1 to 2^24 and counts, for each,
//! the gradient entries lost to underflow and the ones that overflow.
//! `cargo run --release -p lab -- precision` prints both
//! ([`precision_report`]); [`loss_figure`] draws the runs.
//!
//! On this machine (the numbers are the runs', but they are quoted here by
//! hand: the report prints them):
//!
//! - every run that trains to the end ends within 0.006 of `f32`'s
//!   validation loss (1.730; bf16 1.736, fp16 without scaling 1.736, fp16
//!   with dynamic scaling 1.733). The control, whose weights start one
//!   unit in the last place away, never differs from `f32` by more than
//!   1.3e-5 on a batch: training this model is not chaotic, so the other
//!   runs' differences (up to 0.015 in a 20-step mean) are the rounding's;
//! - without loss scaling, fp16 flushes to 0 half of the nonzero entries
//!   of the logits' gradient (51% over the run) and 1.4% of the other
//!   activation gradients. In the trained book model, 19% of the weights'
//!   gradient entries that are nonzero in `f32` come out exactly 0 at a
//!   loss scale of 1: nearly all in `wte`, 696 whole rows of it, for
//!   tokens the batch does not read, whose only gradient comes through
//!   the logits' (flushed) gradient. At 2^16 one entry is lost;
//! - at a fixed scale of 2^17 the gradient of block 0's `attn.c_proj` bias
//!   (a sum over all 1,024 positions) passes 65,504 at step 76, and with
//!   no scaler to skip the step the run stops there; in the trained model
//!   the first infinities appear at 2^22, and at 2^24 19% of the entries
//!   are infinite;
//! - the dynamic scaler starts at 2^16, doubles at steps 100, 200 and 300,
//!   overflows at 2^19 at step 300, skips that one update and halves: one
//!   step skipped in 400.
//!
//! Cold, the six runs took 145 s of CPU time here (`cargo xtask figures
//! precision-loss`, on a machine shared with other work): a little over a
//! minute of two cores. An fp16 step costs about a fifth more than an
//! `f32` one, for the rounding.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use ndarray::{Array2, ArrayRef2};
use serde_json::{Value, json};

use listings::model::{
    ActivationGrads, Activations, BlockGrads, BlockParams, Gpt, GptConfig, GptParams,
    LayerActivations, attention_backward, attention_forward, crossentropy_forward,
    crossentropy_softmax_backward, encoder_backward, encoder_forward, gelu_backward, gelu_forward,
    layernorm_backward, layernorm_forward, lm_head_backward, lm_head_forward, matmul_backward,
    matmul_forward, residual_forward,
};
use listings::optim::{AdamW, Param, clip_grad_norm, cosine_lr};
use listings::parallel::pool;
use listings::rng::seeded;
use listings::train::batches::Split;
use listings::train::step::adamw_params;

use crate::book_model::{BOOK_MODEL_SEED, book_model_config, book_train_config};
use crate::cache;

// ---------------------------------------------------------------------------
// The formats
// ---------------------------------------------------------------------------

/// The largest finite fp16 number, `(2 - 2^-10)·2^15`.
pub const FP16_MAX: f32 = 65504.0;
/// The smallest normal fp16 number, `2^-14`.
pub const FP16_MIN_NORMAL: f32 = 6.103_515_6e-5;
/// The smallest fp16 number above 0, a subnormal, `2^-24`.
pub const FP16_MIN_SUBNORMAL: f32 = 5.960_464_5e-8;

// ANCHOR: bf16
/// The bf16 number nearest to `x` (ties to even), as its 16 bits: the top
/// half of the `f32`'s bits, rounded on the half thrown away.
///
/// Adding `0x7FFF` plus the lowest kept bit to the bits, then dropping the
/// low 16, rounds to nearest with ties to even; a carry out of the fraction
/// moves the exponent up, and out of the largest exponent gives infinity,
/// as it should. A NaN stays a NaN (made quiet, so that dropping its low
/// bits cannot turn it into infinity).
pub fn f32_to_bf16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x0040) as u16;
    }
    let rounded = bits + 0x7FFF + ((bits >> 16) & 1);
    (rounded >> 16) as u16
}

/// The `f32` a bf16 number stands for (exact: its bits, then 16 zeros).
pub fn bf16_bits_to_f32(b: u16) -> f32 {
    f32::from_bits(u32::from(b) << 16)
}

/// `x` rounded to bf16 and back: the nearest number bf16 can hold.
pub fn round_bf16(x: f32) -> f32 {
    bf16_bits_to_f32(f32_to_bf16_bits(x))
}
// ANCHOR_END: bf16

// ANCHOR: fp16
/// The fp16 number nearest to `x` (ties to even), as its 16 bits.
///
/// Four cases, by the size of `|x|`:
///
/// - 65,520 and up (the midpoint between [`FP16_MAX`] and the next power of
///   two) rounds to infinity;
/// - a normal fp16 number (`|x| >= 2^-14`): the exponent is rebiased from
///   `f32`'s 127 to fp16's 15 (subtract `112·2^23` from the bits) and the
///   fraction rounded from 23 bits to 10, as for bf16;
/// - below that, fp16 has only multiples of `2^-24` (the subnormals):
///   `|x|·2^24` rounded to a whole number, ties to even, is the bits;
///   below `2^-25` that is 0, the underflow;
/// - NaN stays NaN.
pub fn f32_to_fp16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let abs = bits & 0x7FFF_FFFF;
    if abs > 0x7F80_0000 {
        return sign | 0x7E00 | ((abs >> 13) & 0x3FF) as u16; // NaN, quiet
    }
    if abs >= 0x477F_F000 {
        return sign | 0x7C00; // 65,520 and above (and infinity): infinity
    }
    if abs >= 0x3880_0000 {
        // normal: rebias the exponent, round the fraction to 10 bits
        let rounded = abs + 0x0FFF + ((abs >> 13) & 1);
        return sign | ((rounded - 0x3800_0000) >> 13) as u16;
    }
    // subnormal or zero: a whole number of 2^-24 (exact: a power-of-two scaling)
    let units = (f32::from_bits(abs) * 16_777_216.0).round_ties_even();
    sign | units as u16
}

/// The `f32` an fp16 number stands for (exact: `f32` holds every fp16 value).
pub fn fp16_bits_to_f32(h: u16) -> f32 {
    let sign = u32::from(h & 0x8000) << 16;
    let exponent = u32::from((h >> 10) & 0x1F);
    let fraction = u32::from(h & 0x3FF);
    match exponent {
        0 => {
            let magnitude = fraction as f32 / 16_777_216.0; // fraction·2^-24
            f32::from_bits(sign | magnitude.to_bits())
        }
        31 => f32::from_bits(sign | 0x7F80_0000 | (fraction << 13)), // inf, NaN
        _ => f32::from_bits(sign | ((exponent + 112) << 23) | (fraction << 13)),
    }
}

/// `x` rounded to fp16 and back: the nearest number fp16 can hold,
/// infinity above 65,504 and 0 below about 3e-8.
pub fn round_fp16(x: f32) -> f32 {
    fp16_bits_to_f32(f32_to_fp16_bits(x))
}
// ANCHOR_END: fp16

/// The number format a run stores its weights, activations and gradients in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// `f32`: no rounding.
    F32,
    /// bf16: `f32`'s range, 8 significant bits.
    Bf16,
    /// fp16: 11 significant bits, a range of 6e-8 to 65,504.
    Fp16,
}

impl Format {
    /// `x` rounded to this format.
    #[inline]
    pub fn round(self, x: f32) -> f32 {
        match self {
            Format::F32 => x,
            Format::Bf16 => round_bf16(x),
            Format::Fp16 => round_fp16(x),
        }
    }

    /// Its usual name: "fp32", "bf16", "fp16".
    pub fn name(self) -> &'static str {
        match self {
            Format::F32 => "fp32",
            Format::Bf16 => "bf16",
            Format::Fp16 => "fp16",
        }
    }
}

/// What rounding did to a set of numbers, counted as they were rounded.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Tally {
    /// Numbers rounded.
    pub values: u64,
    /// Of those, the ones that were not 0 before rounding.
    pub nonzero: u64,
    /// Nonzero numbers that rounded to 0: lost to underflow.
    pub flushed: u64,
    /// Finite numbers that rounded to infinity: overflow.
    pub overflowed: u64,
    /// Numbers that were already infinite or NaN (from an overflow upstream).
    pub non_finite: u64,
    /// The largest finite magnitude seen, before rounding.
    pub max_abs: f32,
}

impl Tally {
    /// The share of nonzero numbers that rounding flushed to 0.
    pub fn flushed_share(&self) -> f64 {
        self.flushed as f64 / self.nonzero.max(1) as f64
    }

    /// Both tallies together.
    pub fn merge(&mut self, other: &Tally) {
        self.values += other.values;
        self.nonzero += other.nonzero;
        self.flushed += other.flushed;
        self.overflowed += other.overflowed;
        self.non_finite += other.non_finite;
        self.max_abs = self.max_abs.max(other.max_abs);
    }
}

/// Rounds every number of `xs` to `format` in place, counting in `tally`.
pub fn round_slice(format: Format, xs: &mut [f32], tally: &mut Tally) {
    let (mut nonzero, mut flushed, mut overflowed, mut non_finite) = (0u64, 0u64, 0u64, 0u64);
    let mut max_abs = tally.max_abs;
    for x in xs.iter_mut() {
        let before = *x;
        let after = format.round(before);
        *x = after;
        if before.is_finite() {
            max_abs = max_abs.max(before.abs());
            overflowed += u64::from(after.is_infinite());
        } else {
            non_finite += 1;
        }
        nonzero += u64::from(before != 0.0);
        flushed += u64::from(before != 0.0 && after == 0.0);
    }
    tally.values += xs.len() as u64;
    tally.nonzero += nonzero;
    tally.flushed += flushed;
    tally.overflowed += overflowed;
    tally.non_finite += non_finite;
    tally.max_abs = max_abs;
}

/// [`round_slice`] on an array of any shape (laid out in memory in order,
/// as every array the model allocates is).
fn round_array<D: ndarray::Dimension>(
    format: Format,
    x: &mut ndarray::ArrayRef<f32, D>,
    tally: &mut Tally,
) {
    if format == Format::F32 {
        tally_only(x.as_slice().expect("contiguous"), tally);
        return;
    }
    round_slice(
        format,
        x.as_slice_mut().expect("the model's arrays are contiguous"),
        tally,
    );
}

/// [`round_slice`]'s counts for `f32`, which rounds nothing: the largest
/// magnitude is still worth knowing (how far from fp16's limit the run is).
fn tally_only(xs: &[f32], tally: &mut Tally) {
    let mut max_abs = tally.max_abs;
    let (mut nonzero, mut non_finite) = (0u64, 0u64);
    for &x in xs {
        if x.is_finite() {
            max_abs = max_abs.max(x.abs());
        } else {
            non_finite += 1;
        }
        nonzero += u64::from(x != 0.0);
    }
    tally.values += xs.len() as u64;
    tally.nonzero += nonzero;
    tally.non_finite += non_finite;
    tally.max_abs = max_abs;
}

/// A copy of `params` rounded to `format`: the 16-bit weights of the
/// forward and backward passes, cast from the `f32` master copy.
pub fn round_params(params: &GptParams, format: Format) -> GptParams {
    let mut low = params.clone();
    if format != Format::F32 {
        let mut tally = Tally::default();
        for (tensor, _) in low.slices_mut() {
            round_slice(format, tensor, &mut tally);
        }
    }
    low
}

/// What rounding did in one or more passes, by kind of array.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PassTallies {
    /// Every activation of the forward pass, the logits included.
    pub activations: Tally,
    /// The logits alone.
    pub logits: Tally,
    /// The gradient of the logits (the first gradient of the backward pass).
    pub dlogits: Tally,
    /// Every other activation gradient.
    pub act_grads: Tally,
    /// The weights' gradients, after the backward pass.
    pub param_grads: Tally,
}

impl PassTallies {
    /// Both sets of tallies together.
    pub fn merge(&mut self, other: &PassTallies) {
        self.activations.merge(&other.activations);
        self.logits.merge(&other.logits);
        self.dlogits.merge(&other.dlogits);
        self.act_grads.merge(&other.act_grads);
        self.param_grads.merge(&other.param_grads);
    }
}

// ---------------------------------------------------------------------------
// The passes, rounding between layers
// ---------------------------------------------------------------------------

// ANCHOR: forward_rounded
/// The forward pass of a GPT-2 model ([`Gpt::forward_with`]'s, layer by
/// layer from [`listings::model`]'s functions), with every activation
/// rounded to `format` as the layer that wrote it returns. Fills `acts`
/// (sized for `idx`'s shape) and returns the mean loss, computed in `f32`
/// from the rounded logits: infinite or NaN if a logit overflowed.
///
/// `params` are the weights as the pass should see them: cast to the
/// format first ([`round_params`]) for mixed precision.
#[allow(clippy::too_many_arguments)] // the model, the batch, the format and the counts
pub fn forward_rounded(
    params: &GptParams,
    config: &GptConfig,
    acts: &mut Activations,
    idx: &ArrayRef2<u32>,
    targets: &ArrayRef2<u32>,
    format: Format,
    tally: &mut PassTallies,
) -> f32 {
    let p = params;
    acts.inputs.assign(idx);
    acts.targets.assign(targets);
    encoder_forward(&mut acts.encoded, idx, &p.wte, &p.wpe);
    round_array(format, &mut acts.encoded, &mut tally.activations);
    for l in 0..config.n_layer {
        let (done, todo) = acts.layers.split_at_mut(l);
        let x = done.last().map_or(&acts.encoded, |prev| &prev.residual3);
        let t = &mut tally.activations;
        block_forward_rounded(&mut todo[0], x, &p.h[l], config.n_head, format, t);
    }
    let x = (acts.layers.last()).map_or(&acts.encoded, |last| &last.residual3); // (B, T, C)
    let (mean, rstd) = (&mut acts.lnf_mean, &mut acts.lnf_rstd);
    layernorm_forward(&mut acts.lnf, mean, rstd, x, &p.ln_f);
    round_array(format, &mut acts.lnf, &mut tally.activations);
    lm_head_forward(&mut acts.logits, &acts.lnf, &p.wte); // (B, T, V)
    let mut logits = Tally::default();
    round_array(format, &mut acts.logits, &mut logits);
    tally.logits.merge(&logits);
    tally.activations.merge(&logits);
    let loss = crossentropy_forward(&mut acts.losses, &acts.logits, targets);
    acts.loss = Some(loss);
    loss
}

/// [`listings::model::block_forward`], rounding each activation as it is
/// written. Attention is one fused step: `qkv` in, `atty` out.
fn block_forward_rounded(
    a: &mut LayerActivations,
    x: &ndarray::ArrayRef3<f32>,
    p: &BlockParams,
    n_head: usize,
    format: Format,
    tally: &mut Tally,
) {
    let (mean, rstd) = (&mut a.ln1_mean, &mut a.ln1_rstd);
    layernorm_forward(&mut a.ln1, mean, rstd, x, &p.ln_1);
    round_array(format, &mut a.ln1, tally);
    matmul_forward(&mut a.qkv, &a.ln1, &p.attn.c_attn);
    round_array(format, &mut a.qkv, tally);
    attention_forward(&mut a.atty, &mut a.att, &a.qkv, n_head);
    round_array(format, &mut a.atty, tally);
    matmul_forward(&mut a.attproj, &a.atty, &p.attn.c_proj);
    round_array(format, &mut a.attproj, tally);
    residual_forward(&mut a.residual2, x, &a.attproj);
    round_array(format, &mut a.residual2, tally);
    let (mean, rstd) = (&mut a.ln2_mean, &mut a.ln2_rstd);
    layernorm_forward(&mut a.ln2, mean, rstd, &a.residual2, &p.ln_2);
    round_array(format, &mut a.ln2, tally);
    matmul_forward(&mut a.fch, &a.ln2, &p.mlp.c_fc);
    round_array(format, &mut a.fch, tally);
    gelu_forward(&mut a.fch_gelu, &a.fch);
    round_array(format, &mut a.fch_gelu, tally);
    matmul_forward(&mut a.fcproj, &a.fch_gelu, &p.mlp.c_proj);
    round_array(format, &mut a.fcproj, tally);
    residual_forward(&mut a.residual3, &a.residual2, &a.fcproj);
    round_array(format, &mut a.residual3, tally);
}
// ANCHOR_END: forward_rounded

// ANCHOR: backward_rounded
/// The backward pass of [`forward_rounded`] ([`Gpt::backward`]'s, layer by
/// layer), with the loss multiplied by `loss_scale`: every activation
/// gradient is rounded to `format` as it is written, and the weights'
/// gradients, *added* into `grads` (zero it first), are rounded at the
/// end. They are the gradients of `loss_scale` times the loss: the caller
/// divides by it.
#[allow(clippy::too_many_arguments)] // as forward_rounded, and the gradients
pub fn backward_rounded(
    params: &GptParams,
    config: &GptConfig,
    grads: &mut GptParams,
    dacts: &mut ActivationGrads,
    acts: &Activations,
    format: Format,
    loss_scale: f32,
    tally: &mut PassTallies,
) {
    let p = params;
    let g = &mut *dacts;
    crossentropy_softmax_backward(&mut g.dlogits, &acts.logits, &acts.targets); // (B, T, V)
    if loss_scale != 1.0 {
        g.dlogits.mapv_inplace(|d| d * loss_scale);
    }
    round_array(format, &mut g.dlogits, &mut tally.dlogits);
    lm_head_backward(&mut g.dlnf, &mut grads.wte, &g.dlogits, &acts.lnf, &p.wte);
    round_array(format, &mut g.dlnf, &mut tally.act_grads);
    let (mean, rstd, x) = (&acts.lnf_mean, &acts.lnf_rstd, acts.last_residual());
    let dx = &mut g.dresidual; // (B, T, C), walked back through the blocks
    dx.fill(0.0);
    layernorm_backward(dx, &mut grads.ln_f, &g.dlnf, x, &p.ln_f, mean, rstd);
    round_array(format, dx, &mut tally.act_grads);
    for l in (0..config.n_layer).rev() {
        let x = match l {
            0 => &acts.encoded,
            _ => &acts.layers[l - 1].residual3,
        }; // the block's input, (B, T, C)
        let (dp, a, bp) = (&mut grads.h[l], &acts.layers[l], &p.h[l]);
        let t = &mut tally.act_grads;
        block_backward_rounded(dx, &mut g.block, dp, a, x, bp, config.n_head, format, t);
    }
    encoder_backward(&mut grads.wte, &mut grads.wpe, dx, &acts.inputs);
    for (tensor, _) in grads.slices_mut() {
        round_slice_or_tally(format, tensor, &mut tally.param_grads);
    }
}

/// [`listings::model::block_backward`], rounding each activation gradient
/// as it is written (the residual stream's after each addition into it).
#[allow(clippy::too_many_arguments)] // block_backward's, and the format and counts
fn block_backward_rounded(
    dx: &mut ndarray::ArrayRef3<f32>,
    g: &mut BlockGrads,
    dp: &mut BlockParams,
    a: &LayerActivations,
    x: &ndarray::ArrayRef3<f32>,
    p: &BlockParams,
    n_head: usize,
    format: Format,
    tally: &mut Tally,
) {
    let mlp = (&p.mlp.c_proj, &p.mlp.c_fc);
    matmul_backward(&mut g.dfch_gelu, &mut dp.mlp.c_proj, dx, &a.fch_gelu, mlp.0);
    round_array(format, &mut g.dfch_gelu, tally);
    gelu_backward(&mut g.dfch, &a.fch, &g.dfch_gelu);
    round_array(format, &mut g.dfch, tally);
    matmul_backward(&mut g.dln2, &mut dp.mlp.c_fc, &g.dfch, &a.ln2, mlp.1);
    round_array(format, &mut g.dln2, tally);
    let (mean, rstd) = (&a.ln2_mean, &a.ln2_rstd);
    layernorm_backward(dx, &mut dp.ln_2, &g.dln2, &a.residual2, &p.ln_2, mean, rstd);
    round_array(format, dx, tally);
    matmul_backward(
        &mut g.datty,
        &mut dp.attn.c_proj,
        dx,
        &a.atty,
        &p.attn.c_proj,
    );
    round_array(format, &mut g.datty, tally);
    attention_backward(&mut g.dqkv, &mut g.datt, &g.datty, &a.qkv, &a.att, n_head);
    round_array(format, &mut g.dqkv, tally);
    matmul_backward(
        &mut g.dln1,
        &mut dp.attn.c_attn,
        &g.dqkv,
        &a.ln1,
        &p.attn.c_attn,
    );
    round_array(format, &mut g.dln1, tally);
    let (mean, rstd) = (&a.ln1_mean, &a.ln1_rstd);
    layernorm_backward(dx, &mut dp.ln_1, &g.dln1, x, &p.ln_1, mean, rstd);
    round_array(format, dx, tally);
}
// ANCHOR_END: backward_rounded

/// [`round_slice`], or for `f32` only the counts.
fn round_slice_or_tally(format: Format, xs: &mut [f32], tally: &mut Tally) {
    if format == Format::F32 {
        tally_only(xs, tally);
    } else {
        round_slice(format, xs, tally);
    }
}

// ---------------------------------------------------------------------------
// Training
// ---------------------------------------------------------------------------

/// How a run scales its loss before the backward pass.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scaling {
    /// No scaling: the gradients as they come.
    None,
    /// Always the same factor.
    Static(f32),
    /// PyTorch's `GradScaler`: start at `init`; after `interval` steps in a
    /// row with finite gradients, double the factor; on a gradient that is
    /// infinite or NaN, skip the update and halve it.
    Dynamic {
        /// The first factor.
        init: f32,
        /// Good steps between doublings.
        interval: usize,
    },
}

/// One way to train: a format and a loss scaling.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Recipe {
    /// The label of the run in tables and figures.
    pub name: &'static str,
    /// The format of weights (for the passes), activations and gradients.
    pub format: Format,
    /// The loss scaling.
    pub scaling: Scaling,
    /// Start from the initial weights each moved by one unit in the last
    /// place (their lowest bit flipped): a control, for how far two `f32`
    /// runs drift apart from the smallest difference there is.
    pub nudged: bool,
}

/// Steps each run trains for (of 16 sequences of 64 tokens, as the book
/// model's).
pub const STEPS: usize = 400;
/// Steps between doublings of the dynamic loss scale. PyTorch's default is
/// 2,000; a run of [`STEPS`] steps needs a shorter one to show the scale
/// moving.
pub const GROWTH_INTERVAL: usize = 100;
/// The dynamic loss scale's first factor, PyTorch's `GradScaler` default.
pub const INIT_SCALE: f32 = 65536.0;
/// Batches of the validation split each run is evaluated on at its end.
pub const EVAL_BATCHES: usize = 20;
/// Seeds the validation batches.
const EVAL_SEED: u64 = 7;

/// A fixed loss scale too large for this model: its gradients overflow
/// within the first hundred steps (with the dynamic scaler's first factor,
/// half of it, they do not).
pub const TOO_LARGE_SCALE: f32 = 131_072.0;

/// The six runs [`precision_runs`] trains, in the figure's order (the
/// one that stops early last, so that it is drawn on top).
pub const RECIPES: [Recipe; 6] = [
    Recipe {
        name: "fp32",
        format: Format::F32,
        scaling: Scaling::None,
        nudged: false,
    },
    Recipe {
        name: "bf16",
        format: Format::Bf16,
        scaling: Scaling::None,
        nudged: false,
    },
    Recipe {
        name: "fp16, no loss scaling",
        format: Format::Fp16,
        scaling: Scaling::None,
        nudged: false,
    },
    Recipe {
        name: "fp16, dynamic loss scaling",
        format: Format::Fp16,
        scaling: Scaling::Dynamic {
            init: INIT_SCALE,
            interval: GROWTH_INTERVAL,
        },
        nudged: false,
    },
    Recipe {
        name: "fp32, initial weights 1 ulp off",
        format: Format::F32,
        scaling: Scaling::None,
        nudged: true,
    },
    Recipe {
        name: "fp16, loss scale 2^17 fixed",
        format: Format::Fp16,
        scaling: Scaling::Static(TOO_LARGE_SCALE),
        nudged: false,
    },
];

/// A finished training run of one [`Recipe`].
#[derive(Clone, Debug, PartialEq)]
pub struct PrecisionRun {
    /// The recipe's name.
    pub name: String,
    /// The loss of each step's batch, before its update, as the run's own
    /// forward pass computed it (NaN or infinite if it overflowed).
    pub losses: Vec<f32>,
    /// The loss scale each step used (1 without scaling).
    pub scales: Vec<f32>,
    /// The steps whose update was skipped (gradients not finite).
    pub skipped: Vec<usize>,
    /// The step at which the run stopped because its loss or gradients were
    /// not finite and it had no loss scaler to skip the step; `None` if it
    /// trained to the end.
    pub diverged_at: Option<usize>,
    /// The first step whose gradients overflowed, the loss scale then, and
    /// the weight tensors whose gradients held infinities or NaNs.
    pub first_overflow: Option<(usize, f32, Vec<String>)>,
    /// What rounding did over the whole run.
    pub tallies: PassTallies,
    /// The mean loss of the final `f32` master weights on [`EVAL_BATCHES`]
    /// validation batches, computed in `f32`.
    pub val_loss: f32,
    /// Wall-clock seconds of the training steps.
    pub seconds: f32,
}

impl PrecisionRun {
    /// The mean of the last `n` finite step losses.
    pub fn final_loss(&self, n: usize) -> f32 {
        let finite: Vec<f32> = self
            .losses
            .iter()
            .copied()
            .filter(|l| l.is_finite())
            .collect();
        let tail = &finite[finite.len().saturating_sub(n)..];
        tail.iter().sum::<f32>() / tail.len().max(1) as f32
    }
}

/// The corpus split every run trains on, tokenized once per process.
fn data() -> Result<&'static Split> {
    static DATA: OnceLock<Result<Split, String>> = OnceLock::new();
    DATA.get_or_init(|| crate::training::corpus_split().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// The mean `f32` loss of `gpt` on [`EVAL_BATCHES`] seeded batches of the
/// validation split.
fn val_loss(gpt: &Gpt, data: &Split, b: usize, t: usize) -> Result<f32> {
    let mut rng = seeded(EVAL_SEED);
    let (mut x, mut y) = (Array2::zeros((b, t)), Array2::zeros((b, t)));
    let mut sum = 0.0;
    for _ in 0..EVAL_BATCHES {
        data.val.get_batch(&mut rng, &mut x, &mut y)?;
        sum += gpt.forward(&x, Some(&y))?.1.expect("targets were given");
    }
    Ok(sum / EVAL_BATCHES as f32)
}

/// The settings of a training run: the book model's shape, seed and
/// optimiser (its [`book_train_config`]), for `steps` steps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RunShape {
    /// The model.
    pub config: GptConfig,
    /// Sequences per batch.
    pub batch: usize,
    /// Tokens per sequence.
    pub time: usize,
    /// Steps to train.
    pub steps: usize,
    /// The seed of the initial weights.
    pub seed: u64,
}

impl RunShape {
    /// The book model's shape, batch and seed, for [`STEPS`] steps.
    pub fn book() -> Self {
        let train = book_train_config();
        RunShape {
            config: book_model_config(),
            batch: train.batch_size,
            time: train.block_size,
            steps: STEPS,
            seed: BOOK_MODEL_SEED,
        }
    }
}

// ANCHOR: train_mixed
/// Trains a fresh model of `shape` with `recipe`: each step casts the `f32`
/// master weights to the recipe's format, runs [`forward_rounded`] and
/// [`backward_rounded`] with the current loss scale, checks the gradients,
/// unscales them in `f32`, clips them to a norm of 1 and applies AdamW (the
/// book model's settings and schedule, over `shape.steps`) to the master
/// weights. With [`Format::F32`] and no scaling this is
/// [`listings::train::step::Trainer::step`], to the bit (a test checks it).
pub fn train_mixed(recipe: &Recipe, shape: &RunShape, data: &Split) -> Result<PrecisionRun> {
    let train = book_train_config();
    let (b, t, config) = (shape.batch, shape.time, shape.config);
    let mut master = Gpt::new(config, shape.seed)?;
    if recipe.nudged {
        for (tensor, _) in master.params_mut().slices_mut() {
            for w in tensor.iter_mut().filter(|w| **w != 0.0) {
                *w = f32::from_bits(w.to_bits() ^ 1); // one unit in the last place
            }
        }
    }
    let mut optimizer = AdamW::new(train.adamw());
    let mut acts = Activations::new(&config, b, t);
    let mut dacts = ActivationGrads::new(&config, b, t);
    let mut grads = GptParams::zeros(&config);
    let (mut x, mut y) = (Array2::zeros((b, t)), Array2::zeros((b, t)));
    let mut rng = seeded(train.seed);
    let names: Vec<String> = master
        .params()
        .tensors()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let (mut scale, mut good) = (initial_scale(recipe.scaling), 0);
    let mut run = PrecisionRun {
        name: recipe.name.to_string(),
        losses: Vec::with_capacity(shape.steps),
        scales: Vec::with_capacity(shape.steps),
        skipped: Vec::new(),
        diverged_at: None,
        first_overflow: None,
        tallies: PassTallies::default(),
        val_loss: f32::NAN,
        seconds: 0.0,
    };
    let start = Instant::now();
    for step in 0..shape.steps {
        data.train.get_batch(&mut rng, &mut x, &mut y)?;
        let lr = cosine_lr(
            step,
            train.learning_rate,
            train.min_lr,
            train.warmup_iters,
            shape.steps,
        );
        let low = round_params(master.params(), recipe.format);
        let mut tally = PassTallies::default();
        let loss = pool().install(|| {
            let loss = forward_rounded(&low, &config, &mut acts, &x, &y, recipe.format, &mut tally);
            grads.fill_zero();
            let (format, t) = (recipe.format, &mut tally);
            backward_rounded(
                &low, &config, &mut grads, &mut dacts, &acts, format, scale, t,
            );
            loss
        });
        run.tallies.merge(&tally);
        run.losses.push(loss);
        run.scales.push(scale);
        let bad: Vec<String> = (grads.slices().zip(&names))
            .filter(|((g, _), _)| g.iter().any(|v| !v.is_finite()))
            .map(|(_, name)| name.clone())
            .collect();
        if !bad.is_empty() && run.first_overflow.is_none() {
            run.first_overflow = Some((step, scale, bad.clone()));
        }
        if !loss.is_finite() || !bad.is_empty() {
            if let Scaling::Dynamic { .. } = recipe.scaling {
                // Skip the update, halve the scale; the batch and the
                // schedule move on, as with PyTorch's GradScaler.
                run.skipped.push(step);
                scale /= 2.0;
                good = 0;
                continue;
            }
            run.diverged_at = Some(step);
            break;
        }
        if scale != 1.0 {
            let inverse = 1.0 / scale; // a power of two: exact
            grads
                .slices_mut()
                .for_each(|(g, _)| g.iter_mut().for_each(|v| *v *= inverse));
        }
        pool().install(|| update(&mut master, &mut optimizer, &mut grads, lr, train.grad_clip));
        if let Scaling::Dynamic { interval, .. } = recipe.scaling {
            good += 1;
            if good == interval {
                scale *= 2.0;
                good = 0;
            }
        }
    }
    run.seconds = start.elapsed().as_secs_f32();
    run.val_loss = val_loss(&master, data, b, t)?;
    Ok(run)
}
// ANCHOR_END: train_mixed

/// The loss scale a run starts with.
fn initial_scale(scaling: Scaling) -> f32 {
    match scaling {
        Scaling::None => 1.0,
        Scaling::Static(s) => s,
        Scaling::Dynamic { init, .. } => init,
    }
}

/// Clips `grads` to a global norm of `grad_clip` and applies one AdamW step
/// at `lr` to the master weights, decaying the 2-D tensors only: what
/// [`listings::train::step::Trainer`] does after its backward pass.
fn update(master: &mut Gpt, optimizer: &mut AdamW, grads: &mut GptParams, lr: f32, grad_clip: f32) {
    let max_norm = if grad_clip > 0.0 {
        grad_clip
    } else {
        f32::INFINITY
    };
    let mut all: Vec<&mut [f32]> = grads.slices_mut().map(|(g, _)| g).collect();
    clip_grad_norm(&mut all, max_norm);
    optimizer.config.lr = lr;
    let mut params: Vec<Param> = adamw_params(master.params_mut(), grads).collect();
    optimizer.step(&mut params);
}

fn tally_to_json(t: &Tally) -> Value {
    json!([
        t.values,
        t.nonzero,
        t.flushed,
        t.overflowed,
        t.non_finite,
        t.max_abs
    ])
}

fn tally_from_json(v: &Value) -> Result<Tally> {
    let u = |i: usize| v[i].as_u64().context("a count");
    Ok(Tally {
        values: u(0)?,
        nonzero: u(1)?,
        flushed: u(2)?,
        overflowed: u(3)?,
        non_finite: u(4)?,
        max_abs: v[5].as_f64().context("a magnitude")? as f32,
    })
}

/// A float as JSON, NaN and infinities as strings (JSON has no number for them).
fn float_to_json(x: f32) -> Value {
    if x.is_finite() {
        json!(x)
    } else {
        json!(x.to_string())
    }
}

fn float_from_json(v: &Value) -> Result<f32> {
    match v {
        Value::String(s) => Ok(s.parse()?),
        _ => Ok(v.as_f64().context("a number")? as f32),
    }
}

fn run_to_json(run: &PrecisionRun) -> Value {
    let t = &run.tallies;
    let tallies: Vec<Value> = [
        t.activations,
        t.logits,
        t.dlogits,
        t.act_grads,
        t.param_grads,
    ]
    .iter()
    .map(tally_to_json)
    .collect();
    json!({
        "name": run.name,
        "losses": run.losses.iter().map(|&l| float_to_json(l)).collect::<Vec<_>>(),
        "scales": run.scales,
        "skipped": run.skipped,
        "diverged_at": run.diverged_at,
        "first_overflow": run.first_overflow.as_ref().map(|(s, scale, names)| json!([s, scale, names])),
        "tallies": tallies,
        "val_loss": float_to_json(run.val_loss),
        "seconds": run.seconds,
    })
}

fn run_from_json(v: &Value) -> Result<PrecisionRun> {
    let array = |name: &str| {
        v[name]
            .as_array()
            .with_context(|| format!("no array {name}"))
    };
    let tallies = array("tallies")?
        .iter()
        .map(tally_from_json)
        .collect::<Result<Vec<_>>>()?;
    let [activations, logits, dlogits, act_grads, param_grads] = tallies[..] else {
        bail!("five tallies expected");
    };
    let first_overflow = match &v["first_overflow"] {
        Value::Null => None,
        o => Some((
            o[0].as_u64().context("a step")? as usize,
            o[1].as_f64().context("a scale")? as f32,
            (o[2].as_array().context("names")?.iter())
                .map(|n| Ok(n.as_str().context("a name")?.to_string()))
                .collect::<Result<_>>()?,
        )),
    };
    Ok(PrecisionRun {
        name: v["name"].as_str().context("a name")?.to_string(),
        losses: array("losses")?
            .iter()
            .map(float_from_json)
            .collect::<Result<_>>()?,
        scales: array("scales")?
            .iter()
            .map(float_from_json)
            .collect::<Result<_>>()?,
        skipped: (array("skipped")?.iter())
            .map(|s| Ok(s.as_u64().context("a step")? as usize))
            .collect::<Result<_>>()?,
        diverged_at: v["diverged_at"].as_u64().map(|s| s as usize),
        first_overflow,
        tallies: PassTallies {
            activations,
            logits,
            dlogits,
            act_grads,
            param_grads,
        },
        val_loss: float_from_json(&v["val_loss"])?,
        seconds: v["seconds"].as_f64().context("seconds")? as f32,
    })
}

/// [`train_mixed`] on the book's shape ([`RunShape::book`]), trained once
/// and kept on disk.
pub fn precision_run(recipe: &Recipe) -> Result<PrecisionRun> {
    let shape = RunShape::book();
    let settings = format!("{recipe:?}\n{shape:?}\n{:?}", book_train_config());
    let slug: String = (recipe.name.chars())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let key = cache::key(
        &format!("ch09-precision-{slug}"),
        &["scaling/precision.rs"],
        &settings,
    );
    cache::cached(
        &key,
        |run, path| Ok(std::fs::write(path, run_to_json(run).to_string())?),
        |path| run_from_json(&serde_json::from_str(&std::fs::read_to_string(path)?)?),
        || train_mixed(recipe, &shape, data()?),
    )
}

/// [`precision_run`] for every recipe of [`RECIPES`].
pub fn precision_runs() -> Result<Vec<PrecisionRun>> {
    RECIPES.iter().map(precision_run).collect()
}

// ---------------------------------------------------------------------------
// The loss-scale window
// ---------------------------------------------------------------------------

/// What one fp16 backward pass at a fixed loss scale did to the gradients,
/// against the same pass in `f32`.
#[derive(Clone, Debug, PartialEq)]
pub struct ScaleRow {
    /// The loss scale, a power of two.
    pub scale: f32,
    /// The share of the weights' gradient entries that are nonzero in
    /// `f32` and exactly 0 in fp16: lost to underflow, somewhere in the pass.
    pub lost: f64,
    /// The share of the logits' gradient entries that are nonzero in `f32`
    /// and 0 in fp16.
    pub dlogits_lost: f64,
    /// The share of the weights' gradient entries that are infinite or NaN.
    pub overflowed: f64,
    /// The largest magnitude of a weight's gradient in `f32`, times the scale.
    pub max_scaled: f32,
}

/// The loss scales [`scale_window`] tries: 1 to 2^24.
pub fn window_scales() -> Vec<f32> {
    (0..=24).step_by(2).map(|k| 2f32.powi(k)).collect()
}

// ANCHOR: scale_window
/// One batch of the validation split through `gpt` in `f32`, then in fp16
/// mixed precision at each loss scale of `scales`: how many gradient
/// entries each scale loses to underflow and how many overflow.
pub fn scale_window(gpt: &Gpt, scales: &[f32]) -> Result<Vec<ScaleRow>> {
    let train = book_train_config();
    let (b, t) = (train.batch_size, train.block_size);
    let (mut x, mut y) = (Array2::zeros((b, t)), Array2::zeros((b, t)));
    data()?
        .val
        .get_batch(&mut seeded(EVAL_SEED), &mut x, &mut y)?;
    Ok(scale_window_on(gpt, &x, &y, scales))
}

/// [`scale_window`] on a given batch: `x` and `targets` `(B, T)`.
pub fn scale_window_on(
    gpt: &Gpt,
    x: &ArrayRef2<u32>,
    y: &ArrayRef2<u32>,
    scales: &[f32],
) -> Vec<ScaleRow> {
    let ((b, t), config) = (x.dim(), *gpt.config());
    let mut acts = Activations::new(&config, b, t);
    let mut dacts = ActivationGrads::new(&config, b, t);
    let pass = |params: &GptParams,
                format: Format,
                scale: f32,
                acts: &mut Activations,
                dacts: &mut ActivationGrads| {
        let mut grads = GptParams::zeros(&config);
        let mut tally = PassTallies::default();
        pool().install(|| {
            forward_rounded(params, &config, acts, x, y, format, &mut tally);
            backward_rounded(
                params, &config, &mut grads, dacts, acts, format, scale, &mut tally,
            );
        });
        grads
    };
    let exact = pass(gpt.params(), Format::F32, 1.0, &mut acts, &mut dacts);
    let exact_dlogits = dacts.dlogits.clone();
    let max_exact = (exact.slices())
        .flat_map(|(g, _)| g.iter())
        .fold(0f32, |m, g| m.max(g.abs()));
    let low = round_params(gpt.params(), Format::Fp16);
    let mut rows = Vec::new();
    for &scale in scales {
        let half = pass(&low, Format::Fp16, scale, &mut acts, &mut dacts);
        let (mut nonzero, mut lost, mut overflowed, mut total) = (0u64, 0u64, 0u64, 0u64);
        for ((g32, _), (g16, _)) in exact.slices().zip(half.slices()) {
            for (&a, &h) in g32.iter().zip(g16) {
                total += 1;
                nonzero += u64::from(a != 0.0);
                lost += u64::from(a != 0.0 && h == 0.0);
                overflowed += u64::from(!h.is_finite());
            }
        }
        let (mut d_nonzero, mut d_lost) = (0u64, 0u64);
        for (&a, &h) in exact_dlogits.iter().zip(&dacts.dlogits) {
            d_nonzero += u64::from(a != 0.0);
            d_lost += u64::from(a != 0.0 && h == 0.0);
        }
        rows.push(ScaleRow {
            scale,
            lost: lost as f64 / nonzero.max(1) as f64,
            dlogits_lost: d_lost as f64 / d_nonzero.max(1) as f64,
            overflowed: overflowed as f64 / total as f64,
            max_scaled: max_exact * scale,
        });
    }
    rows
}
// ANCHOR_END: scale_window

// ---------------------------------------------------------------------------
// The report and the figure
// ---------------------------------------------------------------------------

/// The runs and the loss-scale window as text: what `lab precision` prints.
pub fn precision_report() -> Result<String> {
    let mut out = String::new();
    let runs = precision_runs()?;
    writeln!(
        out,
        "{:<32} {:>8} {:>8} {:>7} {:>9} {:>9} {:>9} {:>9} {:>6}",
        "run", "last 50", "val", "skipped", "dlogits 0", "dacts 0", "grads 0", "max |z|", "time"
    )?;
    for r in &runs {
        let t = &r.tallies;
        let share = |t: &Tally| format!("{:.2}%", 100.0 * t.flushed_share());
        writeln!(
            out,
            "{:<32} {:>8.3} {:>8.3} {:>7} {:>9} {:>9} {:>9} {:>9.2} {:>5.1}s",
            r.name,
            r.final_loss(50),
            r.val_loss,
            r.skipped.len(),
            share(&t.dlogits),
            share(&t.act_grads),
            share(&t.param_grads),
            t.logits.max_abs,
            r.seconds
        )?;
        if let Some(step) = r.diverged_at {
            writeln!(
                out,
                "  stopped at step {step}: loss or gradients not finite"
            )?;
        }
        if let Some((step, scale, names)) = &r.first_overflow {
            writeln!(
                out,
                "  first overflow at step {step}, loss scale {scale}: {}",
                names.join(", ")
            )?;
        }
        if !r.skipped.is_empty() {
            let steps: Vec<String> = r.skipped.iter().map(usize::to_string).collect();
            let last = r.scales.last().copied().unwrap_or(1.0);
            writeln!(
                out,
                "  skipped steps {}; final scale {last}",
                steps.join(", ")
            )?;
        }
    }
    writeln!(
        out,
        "(dlogits 0, dacts 0, grads 0: nonzero entries that rounding flushed to 0, in the \
         logits' gradient, the other activations' gradients, the weights' gradients)"
    )?;
    let model = crate::book_model::shared_book_model().map_err(anyhow::Error::msg)?;
    writeln!(
        out,
        "\nthe trained book model, one batch, fp16 at a fixed loss scale:"
    )?;
    writeln!(
        out,
        "{:>10} {:>14} {:>14} {:>12} {:>16}",
        "scale", "grads lost", "dlogits lost", "overflowed", "max |grad|·scale"
    )?;
    for row in scale_window(&model.gpt, &window_scales())? {
        writeln!(
            out,
            "{:>10} {:>13.2}% {:>13.1}% {:>11.3}% {:>16.3e}",
            row.scale,
            100.0 * row.lost,
            100.0 * row.dlogits_lost,
            100.0 * row.overflowed,
            row.max_scaled
        )?;
    }
    Ok(out)
}

/// `lab precision`: trains (or reads from the cache) the four runs and
/// prints [`precision_report`].
pub fn precision_command() -> Result<()> {
    let start = Instant::now();
    print!("{}", precision_report()?);
    eprintln!("took {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}

/// A running mean over the last `n` finite values (from the `n`-th on).
fn running_mean(values: &[f32], n: usize) -> Vec<(f64, f64)> {
    (n - 1..values.len())
        .filter_map(|i| {
            let window = &values[i + 1 - n..=i];
            let finite: Vec<f64> = (window.iter())
                .filter(|v| v.is_finite())
                .map(|&v| f64::from(v))
                .collect();
            (finite.len() == n).then(|| ((i + 1) as f64, finite.iter().sum::<f64>() / n as f64))
        })
        .collect()
}

/// Figure: each run's batch loss minus the `f32` run's on the same batch
/// (every run draws the same batches), a 20-step running mean, labelled
/// with its skipped steps or the step its gradients overflowed at. The
/// plain loss curves lie on top of each other (7.6 down to 1.7, all within
/// 0.02 of `f32`'s), so the figure shows the differences, beside those of
/// an `f32` run whose initial weights differ in their last bit.
pub fn loss_figure(path: &Path) -> Result<()> {
    use crate::plot::{Axes, Series, line_chart_with_legend};
    let runs = precision_runs()?;
    let reference = &runs[0].losses;
    let names: Vec<String> = (runs.iter())
        .map(|r| match (r.diverged_at, r.skipped.len()) {
            (Some(step), _) => format!("{}: overflow at step {step}, stopped", r.name),
            (None, 0) => r.name.clone(),
            (None, 1) => format!("{}: 1 step skipped", r.name),
            (None, n) => format!("{}: {n} steps skipped", r.name),
        })
        .collect();
    let series: Vec<Series> = (runs.iter().zip(&names))
        .map(|(r, name)| {
            let diffs: Vec<f32> = (r.losses.iter().zip(reference))
                .map(|(l, f)| l - f)
                .collect();
            Series {
                name,
                points: running_mean(&diffs, 20),
            }
        })
        .collect();
    let axes = Axes {
        title: "Mixed precision against fp32, batch by batch",
        x_label: "step",
        y_label: "loss minus fp32's on the same batch (20-step mean)",
        log_y: false,
        log_x: false,
    };
    let legend = plotters::prelude::SeriesLabelPosition::UpperLeft;
    line_chart_with_legend(path, &axes, &series, legend)
}

#[cfg(test)]
mod tests {
    use super::*;
    use listings::optim::AdamWConfig;
    use listings::train::step::Trainer;

    #[test]
    fn bf16_of_known_values() {
        let cases: [(f32, u16); 12] = [
            (0.0, 0x0000),
            (-0.0, 0x8000),
            (1.0, 0x3F80),
            (-2.0, 0xC000),
            (std::f32::consts::PI, 0x4049), // 3.140625, the nearest
            (1.0 / 3.0, 0x3EAB),
            (1.0 + 1.0 / 256.0, 0x3F80), // a tie: to the even 1.0
            (1.0 + 3.0 / 256.0, 0x3F82), // a tie: to the even 1 + 2/128
            (f32::MAX, 0x7F80),          // past bf16's largest: infinity
            (f32::INFINITY, 0x7F80),
            (f32::NEG_INFINITY, 0xFF80),
            (1e-40, 0x0001), // an f32 subnormal stays a (bf16) subnormal
        ];
        for (x, bits) in cases {
            assert_eq!(f32_to_bf16_bits(x), bits, "{x:e}");
        }
        assert_eq!(bf16_bits_to_f32(0x7F7F), 3.389_531_4e38); // bf16's largest
        assert!(round_bf16(f32::NAN).is_nan());
        assert!(round_bf16(f32::from_bits(0x7F80_0001)).is_nan()); // not infinity
    }

    #[test]
    fn fp16_of_known_values() {
        let cases: [(f32, u16); 18] = [
            (0.0, 0x0000),
            (-0.0, 0x8000),
            (1.0, 0x3C00),
            (-2.0, 0xC000),
            (0.1, 0x2E66),
            (1.0 / 3.0, 0x3555),
            (65504.0, 0x7BFF),
            (65519.99, 0x7BFF), // below the midpoint to 65,536
            (65520.0, 0x7C00),  // the midpoint: to even, which is infinity
            (1e6, 0x7C00),
            (-1e6, 0xFC00),
            (FP16_MIN_NORMAL, 0x0400),
            (FP16_MIN_SUBNORMAL, 0x0001),
            (FP16_MIN_SUBNORMAL / 2.0, 0x0000), // a tie between 0 and 2^-24: to even, 0
            (FP16_MIN_SUBNORMAL * 0.500_001, 0x0001),
            (FP16_MIN_SUBNORMAL * 1.5, 0x0002), // a tie between 1 and 2 units: to even
            (1e-10, 0x0000),
            (f32::INFINITY, 0x7C00),
        ];
        for (x, bits) in cases {
            assert_eq!(f32_to_fp16_bits(x), bits, "{x:e}");
        }
        assert_eq!(fp16_bits_to_f32(0x7BFF), FP16_MAX);
        assert_eq!(fp16_bits_to_f32(0x0400), 2f32.powi(-14));
        assert_eq!(fp16_bits_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(fp16_bits_to_f32(0x03FF), 1023.0 * 2f32.powi(-24)); // largest subnormal
        assert_eq!(fp16_bits_to_f32(0xFC00), f32::NEG_INFINITY);
        assert!(round_fp16(f32::NAN).is_nan());
        assert!(fp16_bits_to_f32(0x7E00).is_nan());
    }

    /// Every fp16 bit pattern survives the trip through `f32`, and every
    /// boundary between two neighbours rounds the right way: the midpoint to
    /// the even one, the numbers just either side of it to the nearer.
    #[test]
    fn fp16_rounds_every_boundary_to_nearest_even() {
        for h in 0..=u16::MAX {
            let x = fp16_bits_to_f32(h);
            if x.is_nan() {
                assert!(round_fp16(x).is_nan());
                continue;
            }
            assert_eq!(f32_to_fp16_bits(x), h, "{h:#06x}");
            let magnitude = h & 0x7FFF;
            if magnitude >= 0x7C00 {
                continue; // infinity has no upper neighbour
            }
            let (next, sign) = (h + 1, h & 0x8000);
            let (a, b) = (x.abs(), fp16_bits_to_f32(next & 0x7FFF));
            let mid = if b.is_infinite() {
                FP16_MAX + 16.0
            } else {
                (a + b) / 2.0
            };
            let signed = |v: f32| if sign != 0 { -v } else { v };
            let even = if magnitude % 2 == 0 { h } else { next };
            assert_eq!(
                f32_to_fp16_bits(signed(mid)),
                even,
                "midpoint above {h:#06x}"
            );
            let below = f32::from_bits(mid.to_bits() - 1);
            let above = f32::from_bits(mid.to_bits() + 1);
            assert_eq!(
                f32_to_fp16_bits(signed(below)),
                h,
                "below the midpoint above {h:#06x}"
            );
            assert_eq!(
                f32_to_fp16_bits(signed(above)),
                next,
                "above the midpoint above {h:#06x}"
            );
        }
    }

    /// The same for bf16: the midpoint between neighbours `h` and `h + 1`
    /// is the `f32` with bits `h·2^16 + 2^15`.
    #[test]
    fn bf16_rounds_every_boundary_to_nearest_even() {
        for h in 0..=u16::MAX {
            let x = bf16_bits_to_f32(h);
            if x.is_nan() {
                assert!(round_bf16(x).is_nan());
                continue;
            }
            assert_eq!(f32_to_bf16_bits(x), h);
            if h & 0x7FFF >= 0x7F80 {
                continue;
            }
            let mid = (u32::from(h) << 16) | 0x8000;
            let even = if h % 2 == 0 { h } else { h + 1 };
            assert_eq!(f32_to_bf16_bits(f32::from_bits(mid)), even, "{h:#06x}");
            assert_eq!(f32_to_bf16_bits(f32::from_bits(mid - 1)), h);
            assert_eq!(f32_to_bf16_bits(f32::from_bits(mid + 1)), h + 1);
        }
    }

    #[test]
    fn tallies_count_underflow_and_overflow() {
        let mut xs = [1.0, 0.0, 1e-9, -1e-9, 7e4, -1e5, 3.0, f32::INFINITY];
        let mut tally = Tally::default();
        round_slice(Format::Fp16, &mut xs, &mut tally);
        assert_eq!(xs[2], 0.0);
        assert_eq!(xs[4], f32::INFINITY);
        assert_eq!(xs[5], f32::NEG_INFINITY);
        assert_eq!((tally.values, tally.nonzero, tally.flushed), (8, 7, 2)); // infinity is nonzero
        assert_eq!(
            (tally.overflowed, tally.non_finite, tally.max_abs),
            (2, 1, 1e5)
        );
        let mut ys = [1e-9_f32, 7e4];
        let mut bf = Tally::default();
        round_slice(Format::Bf16, &mut ys, &mut bf);
        assert_eq!((bf.flushed, bf.overflowed), (0, 0)); // bf16 has f32's range
    }

    fn small_config() -> GptConfig {
        GptConfig {
            vocab_size: 40,
            block_size: 16,
            n_layer: 2,
            n_head: 2,
            n_embd: 16,
        }
    }

    fn small_batch(b: usize, t: usize, seed: u64) -> (Array2<u32>, Array2<u32>) {
        use listings::rng::RngExt;
        let mut rng = seeded(seed);
        let ids: Vec<u32> = (0..b * (t + 1)).map(|_| rng.random_range(0..40)).collect();
        let x = Array2::from_shape_fn((b, t), |(i, j)| ids[i * (t + 1) + j]);
        let y = Array2::from_shape_fn((b, t), |(i, j)| ids[i * (t + 1) + j + 1]);
        (x, y)
    }

    /// Without rounding, the lab's passes are the library's, to the bit:
    /// the loss, every activation the backward pass reads, and every
    /// weight's gradient.
    #[test]
    fn unrounded_passes_are_the_librarys_to_the_bit() {
        let config = small_config();
        let gpt = Gpt::new(config, 3).unwrap();
        let (b, t) = (3, 16);
        let (x, y) = small_batch(b, t, 5);
        let mut lib_acts = Activations::new(&config, b, t);
        let mut lib_dacts = ActivationGrads::new(&config, b, t);
        let mut lib_grads = GptParams::zeros(&config);
        let lib_loss = gpt
            .forward_with(&mut lib_acts, &x, Some(&y))
            .unwrap()
            .unwrap();
        gpt.backward(&mut lib_grads, &mut lib_dacts, &lib_acts);

        let mut acts = Activations::new(&config, b, t);
        let mut dacts = ActivationGrads::new(&config, b, t);
        let mut grads = GptParams::zeros(&config);
        let mut tally = PassTallies::default();
        let p = gpt.params();
        let loss = forward_rounded(p, &config, &mut acts, &x, &y, Format::F32, &mut tally);
        backward_rounded(
            p,
            &config,
            &mut grads,
            &mut dacts,
            &acts,
            Format::F32,
            1.0,
            &mut tally,
        );
        assert_eq!(loss.to_bits(), lib_loss.to_bits());
        assert_eq!(acts.logits, lib_acts.logits);
        assert_eq!(acts.lnf, lib_acts.lnf);
        for (a, l) in acts.layers.iter().zip(&lib_acts.layers) {
            assert_eq!(
                (&a.qkv, &a.att, &a.residual3),
                (&l.qkv, &l.att, &l.residual3)
            );
        }
        assert_eq!(dacts.dresidual, lib_dacts.dresidual);
        for ((g, _), (l, _)) in grads.slices().zip(lib_grads.slices()) {
            let (g, l): (Vec<u32>, Vec<u32>) = (
                g.iter().map(|v| v.to_bits()).collect(),
                l.iter().map(|v| v.to_bits()).collect(),
            );
            assert_eq!(g, l);
        }
        assert_eq!(tally.param_grads.flushed, 0);
    }

    /// With rounding, the passes differ from the library's by about the
    /// format's precision, no more.
    #[test]
    fn rounded_passes_stay_close() {
        let config = small_config();
        let gpt = Gpt::new(config, 3).unwrap();
        let (x, y) = small_batch(2, 16, 6);
        let (exact, _) = gpt.forward(&x, Some(&y)).unwrap();
        for (format, tolerance) in [(Format::Bf16, 3e-2), (Format::Fp16, 4e-3)] {
            let low = round_params(gpt.params(), format);
            let mut acts = Activations::new(&config, 2, 16);
            let mut tally = PassTallies::default();
            forward_rounded(&low, &config, &mut acts, &x, &y, format, &mut tally);
            let worst =
                (acts.logits.iter().zip(&exact)).fold(0f32, |m, (a, e)| m.max((a - e).abs()));
            let spread = exact.iter().fold(0f32, |m, e| m.max(e.abs()));
            assert!(
                worst > 0.0 && worst < tolerance * spread,
                "{format:?}: {worst} of {spread}"
            );
            // every stored activation is a number of the format
            assert!(acts.layers[0].fch.iter().all(|&v| format.round(v) == v));
        }
    }

    /// `train_mixed` in `f32` without scaling is the library's training
    /// step: the same losses and the same weights after a few steps.
    #[test]
    fn f32_training_is_the_trainers_to_the_bit() {
        let config = small_config();
        let ids: Vec<u32> = (0..4000u32).map(|i| (i * 7 + i / 13) % 40).collect();
        let data = listings::train::batches::TokenData::new(ids)
            .split(0.9, 16)
            .unwrap();
        let shape = RunShape {
            config,
            batch: 4,
            time: 16,
            steps: 5,
            seed: 9,
        };
        let recipe = RECIPES[0];
        let run = train_mixed(&recipe, &shape, &data).unwrap();

        let train = book_train_config();
        let gpt = Gpt::new(config, 9).unwrap();
        let adamw: AdamWConfig = train.adamw();
        let mut trainer = Trainer::new(gpt, adamw, 4, 16).unwrap();
        let mut rng = seeded(train.seed);
        let (mut x, mut y) = (Array2::zeros((4, 16)), Array2::zeros((4, 16)));
        let mut losses = Vec::new();
        for step in 0..5 {
            data.train.get_batch(&mut rng, &mut x, &mut y).unwrap();
            let lr = cosine_lr(
                step,
                train.learning_rate,
                train.min_lr,
                train.warmup_iters,
                5,
            );
            losses.push(trainer.step(&x, &y, lr, train.grad_clip).unwrap().loss);
        }
        let bits = |v: &[f32]| v.iter().map(|l| l.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&run.losses), bits(&losses));
        let expected = val_loss(trainer.gpt(), &data, 4, 16).unwrap();
        assert_eq!(run.val_loss.to_bits(), expected.to_bits());
    }

    /// A loss scale far too large overflows in the very first backward
    /// pass, and the dynamic scaler skips steps and halves the scale until
    /// the gradients are finite again.
    #[test]
    fn dynamic_scaling_skips_overflowing_steps() {
        let config = small_config();
        let ids: Vec<u32> = (0..4000u32).map(|i| (i * 7 + i / 13) % 40).collect();
        let data = listings::train::batches::TokenData::new(ids)
            .split(0.9, 16)
            .unwrap();
        let shape = RunShape {
            config,
            batch: 4,
            time: 16,
            steps: 30,
            seed: 9,
        };
        let recipe = Recipe {
            name: "fp16 from 2^40",
            format: Format::Fp16,
            scaling: Scaling::Dynamic {
                init: 2f32.powi(40),
                interval: 10,
            },
            nudged: false,
        };
        let run = train_mixed(&recipe, &shape, &data).unwrap();
        assert!(!run.skipped.is_empty() && run.skipped[0] == 0);
        assert_eq!(run.first_overflow.as_ref().map(|o| o.0), Some(0));
        let last_skip = *run.skipped.last().unwrap();
        assert!(last_skip < 29 && run.scales[last_skip + 1] == run.scales[last_skip] / 2.0);
        assert!(run.diverged_at.is_none() && run.val_loss.is_finite());
        let stopped = train_mixed(
            &Recipe {
                scaling: Scaling::Static(2f32.powi(40)),
                ..recipe
            },
            &shape,
            &data,
        )
        .unwrap();
        assert_eq!(stopped.diverged_at, Some(0)); // no scaler to skip the step
    }

    /// Scaling the loss up rescues gradients from underflow until it
    /// pushes some past 65,504.
    #[test]
    fn the_scale_window_has_two_walls() {
        let config = small_config();
        let gpt = Gpt::new(config, 3).unwrap();
        let (x, y) = small_batch(4, 16, 8);
        let rows = scale_window_on(&gpt, &x, &y, &[2f32.powi(-12), 1.0, 2f32.powi(40)]);
        assert!(rows[0].lost > rows[1].lost, "{rows:?}");
        assert_eq!((rows[0].overflowed, rows[1].overflowed), (0.0, 0.0));
        assert!(rows[2].overflowed > 0.0 && rows[2].max_scaled > FP16_MAX);
        assert!(rows[0].dlogits_lost >= rows[1].dlogits_lost);
    }

    #[test]
    fn runs_survive_the_json_round_trip() {
        let run = PrecisionRun {
            name: "x".into(),
            losses: vec![1.5, f32::NAN, f32::INFINITY],
            scales: vec![1.0, 65536.0, 0.5],
            skipped: vec![1],
            diverged_at: Some(2),
            first_overflow: Some((1, 65536.0, vec!["transformer.wte.weight".into()])),
            tallies: PassTallies {
                dlogits: Tally {
                    values: 9,
                    nonzero: 8,
                    flushed: 7,
                    overflowed: 1,
                    non_finite: 2,
                    max_abs: 3.5,
                },
                ..PassTallies::default()
            },
            val_loss: 2.25,
            seconds: 1.0,
        };
        let back =
            run_from_json(&serde_json::from_str(&run_to_json(&run).to_string()).unwrap()).unwrap();
        assert!(back.losses[1].is_nan() && back.losses[2] == f32::INFINITY);
        let (mut a, mut b) = (run.clone(), back);
        a.losses.truncate(1);
        b.losses.truncate(1);
        assert_eq!(a, b);
    }
}
