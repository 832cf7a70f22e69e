//! The layers that work on each token on its own: LayerNorm, linear layers,
//! GELU, residual additions, and the loss.
//!
//! Each is a `*_forward` function in the style of llm.c: it writes its result
//! into an output array the caller owns (so a training loop allocates nothing)
//! and keeps whatever the matching backward pass will need. Arrays are taken
//! as `&ArrayRef3<f32>` / `&mut ArrayRef3<f32>`, which are to ndarray's
//! arrays what `&[f32]` is to `Vec<f32>`: pass `&x` for an owned array or a
//! view alike.
//!
//! Shapes: `B` batch, `T` time, `C` channels, `OC` output channels, `V` vocabulary.

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayRef2, ArrayRef3, ArrayViewMut2, Zip};

use super::parallel::{in_slice, out_slice, par_map, simd, sum_map};
use super::params::{LayerNormParams, LinearParams};

/// The small number LayerNorm adds to the variance before its square root,
/// so a constant row does not divide by zero (GPT-2's value).
pub const LAYERNORM_EPS: f32 = 1e-5;

// ANCHOR: fast_exp
/// `e^x`, computed so that the compiler can run it on several numbers at once.
///
/// `f32::exp` calls the C library one number at a time; on this book's
/// machine that was the slowest part of GELU and softmax. This version
/// uses only multiplications, additions and bit operations, so a loop over
/// it becomes SIMD code. The idea: write `x = n·ln 2 + r` with `n` a whole
/// number and `|r| <= ln(2)/2`, so that `e^x = 2^n · e^r`. The power of two
/// is built directly in the float's exponent bits, and `e^r` is the Taylor
/// series to `r^6`, accurate here to a few parts in ten million (2 units in
/// the last place).
///
/// Below -87.3 the result is 0 and above 88.7 it is infinite, as for `exp`.
///
/// ```
/// use listings::model::fast_exp;
/// assert!((fast_exp(1.0) - std::f32::consts::E).abs() < 1e-6);
/// assert_eq!(fast_exp(-100.0), 0.0);
/// ```
#[inline]
pub fn fast_exp(x: f32) -> f32 {
    // Keep x where 2^n is a normal float; the ends are patched up below.
    let xc = x.clamp(-87.3, 88.7);
    // n = round(x / ln 2): adding 1.5·2^23 pushes the fraction out of an f32,
    // so the sum is rounded to a whole number, kept in the low mantissa bits.
    let shifted = xc * std::f32::consts::LOG2_E + 12_582_912.0;
    let n = shifted - 12_582_912.0;
    // r = x - n·ln 2, with ln 2 split in two parts to keep r's low bits.
    let r = xc - n * 0.693_145_75 - n * 1.428_606_8e-6;
    let p = 1.0
        + r * (1.0
            + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r / 720.0)))));
    // 2^n has exponent bits n + 127; `shifted`'s low bits hold n + 0x40_0000.
    let two_to_n = f32::from_bits(shifted.to_bits().wrapping_sub(0x4B40_0000 - 127) << 23);
    let y = p * two_to_n;
    if x < -87.3 {
        0.0
    } else if x > 88.7 {
        f32::INFINITY
    } else {
        y
    }
}
// ANCHOR_END: fast_exp

// ANCHOR: layernorm_row
/// LayerNorm of one position: rescale its `C` numbers to mean 0 and
/// variance 1, then apply a learned scale and shift.
///
/// `mean = Σx / C`, `var = Σ(x - mean)² / C`, `rstd = 1 / sqrt(var + 1e-5)`,
/// and `y = (x - mean) · rstd · weight + bias`. Returns `(mean, rstd)`,
/// which the backward pass needs. All four slices are `C` long.
///
/// ```
/// use listings::model::layernorm_row;
/// let mut y = [0.0; 4];
/// let (mean, rstd) = layernorm_row(&mut y, &[1.0, 2.0, 3.0, 4.0], &[1.0; 4], &[0.0; 4]);
/// assert_eq!(mean, 2.5); // and the variance is 1.25
/// assert!((rstd - 1.0 / 1.25_f32.sqrt()).abs() < 1e-5);
/// assert!((y[0] + 1.3416).abs() < 1e-4); // (1 - 2.5) / sqrt(1.25)
/// ```
#[inline(always)] // into `simd`'s closure, to be compiled for wide vectors
pub fn layernorm_row(y: &mut [f32], x: &[f32], weight: &[f32], bias: &[f32]) -> (f32, f32) {
    let c = x.len() as f32;
    let mean = sum_map(x, |v| v) / c;
    let var = sum_map(x, |v| (v - mean) * (v - mean)) / c;
    let rstd = 1.0 / (var + LAYERNORM_EPS).sqrt();
    for (((y, &x), &w), &b) in y.iter_mut().zip(x).zip(weight).zip(bias) {
        *y = (x - mean) * rstd * w + b;
    }
    (mean, rstd)
}
// ANCHOR_END: layernorm_row

// ANCHOR: layernorm_forward
/// LayerNorm at every position ([`layernorm_row`] on each row of `C`).
///
/// Shapes: `inp` and `out` `(B, T, C)`; `mean` and `rstd` `(B, T)`, kept for
/// the backward pass; `params.weight` and `params.bias` `(C)`.
pub fn layernorm_forward(
    out: &mut ArrayRef3<f32>,
    mean: &mut ArrayRef2<f32>,
    rstd: &mut ArrayRef2<f32>,
    inp: &ArrayRef3<f32>,
    params: &LayerNormParams,
) {
    let c = inp.dim().2;
    let (x, w, b) = (
        in_slice(inp),
        in_slice(&params.weight),
        in_slice(&params.bias),
    );
    let rows = x.chunks_exact(c).zip(out_slice(out).chunks_exact_mut(c)); // (C) each
    let stats = out_slice(mean).iter_mut().zip(out_slice(rstd));
    simd(
        #[inline(always)]
        || {
            for ((x, y), (mean, rstd)) in rows.zip(stats) {
                (*mean, *rstd) = layernorm_row(y, x, &w, &b);
            }
        },
    );
}
// ANCHOR_END: layernorm_forward

// ANCHOR: matmul_forward
/// A linear layer applied to every token: `out = inp · W + b`.
///
/// The batch and time axes are folded into one, so the whole layer is a
/// single matrix product of a `(B·T, C)` matrix by the `(C, OC)` weight,
/// which ndarray hands to matrixmultiply's fast kernels.
///
/// Shapes: `inp` `(B, T, C)`, weight `(C, OC)`, bias `(OC)`, `out` `(B, T, OC)`.
/// `out` must be in row-major layout, as every array ndarray allocates is.
pub fn matmul_forward(out: &mut ArrayRef3<f32>, inp: &ArrayRef3<f32>, layer: &LinearParams) {
    let (b, t, c) = inp.dim();
    let oc = layer.weight.dim().1;
    let x = inp
        .to_shape((b * t, c))
        .expect("B·T·C numbers fold to (B·T, C)"); // (B·T, C)
    let mut y = flatten_mut(out, b * t, oc); // (B·T, OC)
    y.assign(&layer.bias); // every row starts as the bias
    general_mat_mul(1.0, &x, &layer.weight, 1.0, &mut y); // (B·T, C) x (C, OC) -> (B·T, OC)
}
// ANCHOR_END: matmul_forward

/// `(B, T, N)` seen as `(B·T, N)`, without copying.
pub(crate) fn flatten_mut(
    x: &mut ArrayRef3<f32>,
    rows: usize,
    cols: usize,
) -> ArrayViewMut2<'_, f32> {
    assert!(
        x.is_standard_layout(),
        "an output array must be in row-major layout"
    );
    x.view_mut()
        .into_shape_with_order((rows, cols))
        .expect("checked layout and size")
}

// ANCHOR: gelu
/// GELU with GPT-2's tanh approximation: a smooth ReLU that lets a little
/// negative signal through.
///
/// `gelu(x) = 0.5·x·(1 + tanh(u))` with `u = sqrt(2/π)·(x + 0.044715·x³)`.
/// Since `0.5·(1 + tanh(u)) = 1 / (1 + e^(-2u))`, this computes
/// `x / (1 + e^(-2u))`: one exponential and no `tanh` (which the C library
/// computes slowly).
///
/// ```
/// use listings::model::gelu;
/// assert_eq!(gelu(0.0), 0.0);
/// assert!((gelu(1.0) - 0.841192).abs() < 1e-6);
/// assert!((gelu(-1.0) + 0.158808).abs() < 1e-6);
/// ```
#[inline]
pub fn gelu(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let u = SQRT_2_OVER_PI * (x + 0.044715 * x * x * x);
    x / (1.0 + fast_exp(-2.0 * u))
}
// ANCHOR_END: gelu

// ANCHOR: gelu_forward
/// GELU on every number: `out = gelu(inp)`, shapes `(B, T, 4C)` both.
///
/// The loop is split between threads and compiled for wide vector
/// instructions ([`par_map`]); GELU is the one element-by-element step big
/// enough for that to matter.
pub fn gelu_forward(out: &mut ArrayRef3<f32>, inp: &ArrayRef3<f32>) {
    par_map(out_slice(out), &in_slice(inp), gelu);
}
// ANCHOR_END: gelu_forward

// ANCHOR: residual_forward
/// A residual connection: `out = a + b`, all `(B, T, C)`.
///
/// The block's input `a` goes round the layer and is added to what the layer
/// made of it, `b`, so each layer only has to learn a correction.
pub fn residual_forward(out: &mut ArrayRef3<f32>, a: &ArrayRef3<f32>, b: &ArrayRef3<f32>) {
    Zip::from(out)
        .and(a)
        .and(b)
        .for_each(|y, &a, &b| *y = a + b);
}
// ANCHOR_END: residual_forward

// ANCHOR: lm_head_forward
/// The output layer: each position's final vector dotted with every token's
/// embedding gives that token's score (its logit).
///
/// `logits = x · wteᵀ`: the tied `lm_head` reuses `wte`, read transposed.
///
/// Shapes: `x` `(B, T, C)`, `wte` `(V, C)`, `logits` `(B, T, V)`.
pub fn lm_head_forward(logits: &mut ArrayRef3<f32>, x: &ArrayRef3<f32>, wte: &ArrayRef2<f32>) {
    let (b, t, c) = x.dim();
    let v = wte.dim().0;
    let x = x
        .to_shape((b * t, c))
        .expect("B·T·C numbers fold to (B·T, C)"); // (B·T, C)
    let mut y = flatten_mut(logits, b * t, v); // (B·T, V)
    general_mat_mul(1.0, &x, &wte.t(), 0.0, &mut y); // (B·T, C) x (C, V) -> (B·T, V)
}
// ANCHOR_END: lm_head_forward

// ANCHOR: crossentropy_forward
/// Cross-entropy: how surprised the model is by the true next token,
/// averaged over every position.
///
/// At each position the logits become probabilities by softmax, and the loss
/// is `-ln p[target]`. Computed stably as `logsumexp(logits) - logits[target]`
/// with `logsumexp(z) = max + ln Σ e^(z - max)`. A model that spreads its bets
/// evenly over `V` tokens scores `ln V`.
///
/// Shapes: `logits` `(B, T, V)`, `targets` `(B, T)`, `losses` `(B, T)` (kept
/// per position). Returns the mean of `losses`. Every target must be below `V`.
pub fn crossentropy_forward(
    losses: &mut ArrayRef2<f32>,
    logits: &ArrayRef3<f32>,
    targets: &ArrayRef2<u32>,
) -> f32 {
    let v = logits.dim().2;
    let logits = in_slice(logits);
    let rows = logits
        .chunks_exact(v)
        .zip(out_slice(losses))
        .zip(targets.iter()); // (V) each
    simd(
        #[inline(always)]
        || {
            for ((z, loss), &target) in rows {
                let max = z.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
                let sum = sum_map(z, |x| fast_exp(x - max));
                *loss = max + sum.ln() - z[target as usize];
            }
        },
    );
    losses.mean().unwrap_or(0.0)
}
// ANCHOR_END: crossentropy_forward
