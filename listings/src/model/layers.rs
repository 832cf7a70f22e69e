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

use ndarray::{ArrayRef1, ArrayRef2, ArrayRef3, ArrayViewMut2, Zip, s};

use super::params::{LayerNormParams, LinearParams};
use crate::parallel::{
    in_slice, out_slice, par_map, par_mat_mul, par_zip_map, simd, sum_map, sum_zip, sum_zip3,
};

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

// ANCHOR: layernorm_backward
/// The backward pass of [`layernorm_forward`]: from the gradient of its
/// output, the gradients of its input, its scale and its shift.
///
/// In words: the shift's gradient is the output's gradient summed over every
/// position, the scale's is that times the normalised input `x̂`; and the
/// input's gradient is the normalised gradient `dx̂ = dy·weight` with the two
/// directions LayerNorm removes (a change of the row's mean, a change of its
/// spread) taken out, then scaled by `rstd`. Per row of `C`, with
/// `x̂ = (x - mean)·rstd` rebuilt from the stored `mean` and `rstd`:
///
/// `dbias += Σ dy`, `dweight += Σ dy·x̂` (sums over `B·T`), and
/// `dx += rstd·(dx̂ - mean(dx̂) - x̂·mean(dx̂·x̂))`.
///
/// `dinp` is *added to*, not overwritten: LayerNorm's input is the residual
/// stream, whose gradient also arrives by the residual connection.
///
/// Shapes: `dinp`, `dout`, `inp` `(B, T, C)`; `mean`, `rstd` `(B, T)`;
/// `dparams` and `params` `(C)` each.
pub fn layernorm_backward(
    dinp: &mut ArrayRef3<f32>,
    dparams: &mut LayerNormParams,
    dout: &ArrayRef3<f32>,
    inp: &ArrayRef3<f32>,
    params: &LayerNormParams,
    mean: &ArrayRef2<f32>,
    rstd: &ArrayRef2<f32>,
) {
    let c = inp.dim().2;
    let (x, dy, w) = (in_slice(inp), in_slice(dout), in_slice(&params.weight));
    let (dw, db) = (out_slice(&mut dparams.weight), out_slice(&mut dparams.bias));
    let rows = (x.chunks_exact(c).zip(dy.chunks_exact(c))) // (C) each
        .zip(out_slice(dinp).chunks_exact_mut(c))
        .zip(mean.iter().zip(rstd.iter()));
    simd(
        #[inline(always)]
        || {
            for (((x, dy), dx), (&mean, &rstd)) in rows {
                layernorm_row_backward(dx, dw, db, dy, x, &w, mean, rstd);
            }
        },
    );
}

/// [`layernorm_backward`] for one row of `C` numbers: adds into `dx`, `dw`
/// and `db`.
#[inline(always)] // into `simd`'s closure, to be compiled for wide vectors
#[allow(clippy::too_many_arguments)] // the gradients, then the row, as llm.c
fn layernorm_row_backward(
    dx: &mut [f32],
    dw: &mut [f32],
    db: &mut [f32],
    dy: &[f32],
    x: &[f32],
    w: &[f32],
    mean: f32,
    rstd: f32,
) {
    let c = x.len() as f32;
    // mean(dx̂) and mean(dx̂·x̂), with dx̂ = dy·w
    let mean_dxhat = sum_zip(dy, w, |dy, w| dy * w) / c;
    let mean_dxhat_xhat = sum_zip3(dy, w, x, |dy, w, x| dy * w * (x - mean)) * rstd / c;
    for (((((dx, dw), db), &dy), &x), &w) in dx.iter_mut().zip(dw).zip(db).zip(dy).zip(x).zip(w) {
        let xhat = (x - mean) * rstd;
        *db += dy;
        *dw += dy * xhat;
        *dx += rstd * (dy * w - mean_dxhat - xhat * mean_dxhat_xhat);
    }
}
// ANCHOR_END: layernorm_backward

// ANCHOR: layernorm_backward_reference
/// [`layernorm_backward`] written to be read: one position at a time, and
/// each part of the formula one line of array arithmetic. The model runs
/// the fast version; a test checks that the two agree.
///
/// Shapes and what is added to are as in [`layernorm_backward`].
pub fn layernorm_backward_reference(
    dinp: &mut ArrayRef3<f32>,
    dparams: &mut LayerNormParams,
    dout: &ArrayRef3<f32>,
    inp: &ArrayRef3<f32>,
    params: &LayerNormParams,
    mean: &ArrayRef2<f32>,
    rstd: &ArrayRef2<f32>,
) {
    let (batch, time, _) = inp.dim();
    for b in 0..batch {
        for t in 0..time {
            let x = inp.slice(s![b, t, ..]); // this position's input, (C)
            let dy = dout.slice(s![b, t, ..]); // the gradient of its output, (C)
            let rstd = rstd[[b, t]];
            let xhat = x.mapv(|x| (x - mean[[b, t]]) * rstd); // the normalised input
            let dxhat = &dy * &params.weight; // the gradient that reaches it
            let mean_dxhat = dxhat.mean().expect("C > 0");
            let mean_dxhat_xhat = (&dxhat * &xhat).mean().expect("C > 0");
            let dx = (&dxhat - mean_dxhat - &xhat * mean_dxhat_xhat) * rstd;
            let mut dinp_row = dinp.slice_mut(s![b, t, ..]);
            dinp_row += &dx;
            dparams.weight += &(&dy * &xhat);
            dparams.bias += &dy;
        }
    }
}
// ANCHOR_END: layernorm_backward_reference

// ANCHOR: matmul_forward
/// A linear layer applied to every token: `out = inp · W + b`.
///
/// The batch and time axes are folded into one, so the whole layer is a
/// single matrix product of a `(B·T, C)` matrix by the `(C, OC)` weight,
/// which [`par_mat_mul`] shares out between the cores, each part a call to
/// matrixmultiply's fast kernels.
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
    par_mat_mul(1.0, &x, &layer.weight, 1.0, &mut y); // (B·T, C) x (C, OC) -> (B·T, OC)
}
// ANCHOR_END: matmul_forward

// ANCHOR: matmul_backward
/// The backward pass of [`matmul_forward`] (`out = inp·W + b`): three matrix
/// products' worth of gradients.
///
/// Each input number reached every output of its row through one weight, so
/// its gradient is that row's output gradient weighted by those weights:
/// `dinp = dout·Wᵀ`. Each weight joined one input channel to one output
/// channel at every position, so its gradient sums, over all `B·T`
/// positions, input times output gradient: `dW += inpᵀ·dout`. The bias was
/// added at every position: `db += Σ dout` over the positions.
///
/// As in the forward pass, batch and time are folded into `B·T` rows so
/// that each product is one call to matrixmultiply, and the transposes are
/// views (`.t()`), never copies. `dinp` is overwritten; `dlayer`'s weight
/// and bias are added to.
///
/// Shapes: `dinp`, `inp` `(B, T, C)`; `dout` `(B, T, OC)`; weights `(C, OC)`,
/// biases `(OC)`.
pub fn matmul_backward(
    dinp: &mut ArrayRef3<f32>,
    dlayer: &mut LinearParams,
    dout: &ArrayRef3<f32>,
    inp: &ArrayRef3<f32>,
    layer: &LinearParams,
) {
    let (b, t, c) = inp.dim();
    let oc = layer.weight.dim().1;
    let x = inp
        .to_shape((b * t, c))
        .expect("B·T·C numbers fold to (B·T, C)"); // (B·T, C)
    let dy = dout
        .to_shape((b * t, oc))
        .expect("B·T·OC numbers fold to (B·T, OC)"); // (B·T, OC)
    let mut dx = flatten_mut(dinp, b * t, c); // (B·T, C)
    par_mat_mul(1.0, &dy, &layer.weight.t(), 0.0, &mut dx); // (B·T, OC) x (OC, C) -> (B·T, C)
    par_mat_mul(1.0, &x.t(), &dy, 1.0, &mut dlayer.weight); // (C, B·T) x (B·T, OC) -> (C, OC)
    bias_backward(&mut dlayer.bias, &dy);
}

/// `db += Σ dout` over the rows of `dout`: a bias's gradient.
///
/// Shapes: `db` `(OC)`, `dout` `(B·T, OC)`.
fn bias_backward(db: &mut ArrayRef1<f32>, dout: &ArrayRef2<f32>) {
    let oc = db.len();
    let (db, dy) = (out_slice(db), in_slice(dout));
    simd(
        #[inline(always)]
        || {
            for row in dy.chunks_exact(oc) {
                db.iter_mut().zip(row).for_each(|(db, &dy)| *db += dy);
            }
        },
    );
}
// ANCHOR_END: matmul_backward

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

// ANCHOR: gelu_grad
/// The slope of [`gelu`] at `x`: how much its output moves per unit of input.
///
/// With `s = 1 / (1 + e^(-2u))` (which is `0.5·(1 + tanh(u))`) and
/// `u = sqrt(2/π)·(x + 0.044715·x³)`, `gelu(x) = x·s`, so by the product
/// rule `gelu'(x) = s + x·s' = s + x·2·s·(1 - s)·u'`, where
/// `u' = sqrt(2/π)·(1 + 3·0.044715·x²)`. One exponential, as in the forward.
///
/// ```
/// use listings::model::{gelu, gelu_grad};
/// assert_eq!(gelu_grad(0.0), 0.5);
/// let h = 1e-3;
/// let slope = (gelu(1.0 + h) - gelu(1.0 - h)) / (2.0 * h);
/// assert!((gelu_grad(1.0) - slope).abs() < 1e-3);
/// ```
#[inline]
pub fn gelu_grad(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let u = SQRT_2_OVER_PI * (x + 0.044715 * x * x * x);
    let du = SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044715 * x * x);
    let s = 1.0 / (1.0 + fast_exp(-2.0 * u));
    s + x * 2.0 * s * (1.0 - s) * du
}
// ANCHOR_END: gelu_grad

// ANCHOR: gelu_backward
/// The backward pass of [`gelu_forward`]: each number's gradient is its
/// output's gradient times GELU's slope where it was,
/// `dinp = gelu'(inp)·dout` ([`gelu_grad`]). Shapes `(B, T, 4C)` all;
/// `dinp` is overwritten.
pub fn gelu_backward(dinp: &mut ArrayRef3<f32>, inp: &ArrayRef3<f32>, dout: &ArrayRef3<f32>) {
    par_zip_map(out_slice(dinp), &in_slice(inp), &in_slice(dout), |x, dy| {
        gelu_grad(x) * dy
    });
}
// ANCHOR_END: gelu_backward

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

// ANCHOR: residual_backward
/// The backward pass of [`residual_forward`] (`out = a + b`): a sum passes
/// its gradient unchanged to both terms, `da += dout` and `db += dout`.
///
/// [`crate::model::Gpt::backward`] never needs to call it: the residual
/// stream's gradient lives in one array that the branch reads as its
/// output's gradient and then adds its input's gradient into (see
/// [`crate::model::block_backward`]), which is these additions without the
/// copies. Shapes `(B, T, C)` all.
pub fn residual_backward(da: &mut ArrayRef3<f32>, db: &mut ArrayRef3<f32>, dout: &ArrayRef3<f32>) {
    Zip::from(da).and(db).and(dout).for_each(|da, db, &dy| {
        *da += dy;
        *db += dy;
    });
}
// ANCHOR_END: residual_backward

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
    par_mat_mul(1.0, &x, &wte.t(), 0.0, &mut y); // (B·T, C) x (C, V) -> (B·T, V)
}
// ANCHOR_END: lm_head_forward

// ANCHOR: lm_head_backward
/// The backward pass of [`lm_head_forward`] (`logits = x·wteᵀ`).
///
/// The same rule as [`matmul_backward`] with `W = wteᵀ`: `dx = dlogits·wte`,
/// and `dwte += dlogitsᵀ·x`. Because `wte` is also the embedding table, it
/// gets a second gradient from [`crate::model::encoder_backward`]; both are
/// added into the same `dwte`. `dx` is overwritten.
///
/// Shapes: `dx`, `x` `(B, T, C)`; `dlogits` `(B, T, V)`; `dwte`, `wte` `(V, C)`.
pub fn lm_head_backward(
    dx: &mut ArrayRef3<f32>,
    dwte: &mut ArrayRef2<f32>,
    dlogits: &ArrayRef3<f32>,
    x: &ArrayRef3<f32>,
    wte: &ArrayRef2<f32>,
) {
    let (b, t, c) = x.dim();
    let v = wte.dim().0;
    let x = x
        .to_shape((b * t, c))
        .expect("B·T·C numbers fold to (B·T, C)"); // (B·T, C)
    let dy = dlogits
        .to_shape((b * t, v))
        .expect("B·T·V numbers fold to (B·T, V)"); // (B·T, V)
    let mut dx = flatten_mut(dx, b * t, c); // (B·T, C)
    par_mat_mul(1.0, &dy, wte, 0.0, &mut dx); // (B·T, V) x (V, C) -> (B·T, C)
    par_mat_mul(1.0, &dy.t(), &x, 1.0, dwte); // (V, B·T) x (B·T, C) -> (V, C)
}
// ANCHOR_END: lm_head_backward

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

// ANCHOR: crossentropy_softmax_backward
/// The backward pass of softmax and cross-entropy together: the gradient of
/// the mean loss with respect to the logits.
///
/// Taken apart, softmax's backward pass is a `V x V` matrix per position;
/// taken together with `-ln p[target]` it collapses to the probabilities
/// minus the one-hot target: the model is pushed down on every token by how
/// much it believed in it, and up on the right one by 1. The loss is a mean
/// over `B·T` positions, so each position's share is divided by `B·T`:
///
/// `dlogits[b, t, i] = (softmax(logits[b, t])[i] - [i == target]) / (B·T)`.
///
/// Each row of `dlogits` sums to 0. `dlogits` is overwritten.
///
/// Shapes: `dlogits`, `logits` `(B, T, V)`; `targets` `(B, T)`.
pub fn crossentropy_softmax_backward(
    dlogits: &mut ArrayRef3<f32>,
    logits: &ArrayRef3<f32>,
    targets: &ArrayRef2<u32>,
) {
    let (b, t, v) = logits.dim();
    let scale = 1.0 / (b * t) as f32;
    let logits = in_slice(logits);
    let rows = (logits.chunks_exact(v))
        .zip(out_slice(dlogits).chunks_exact_mut(v))
        .zip(targets.iter()); // (V) each
    simd(
        #[inline(always)]
        || {
            for ((z, dz), &target) in rows {
                let max = z.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
                for (dz, &z) in dz.iter_mut().zip(z) {
                    *dz = fast_exp(z - max);
                }
                let norm = scale / sum_map(dz, |e| e);
                dz.iter_mut().for_each(|d| *d *= norm); // p / (B·T)
                dz[target as usize] -= scale;
            }
        },
    );
}
// ANCHOR_END: crossentropy_softmax_backward
