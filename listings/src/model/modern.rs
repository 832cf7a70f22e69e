//! The layers LLaMA-style models put in GPT-2's block, each a forward pass
//! and its backward pass in the style of [`layers`](super::layers):
//!
//! | layer | replaces | paper |
//! |---|---|---|
//! | [`rmsnorm_forward`] | LayerNorm: rescale by the root mean square, no mean subtracted, no shift | Zhang and Sennrich 2019 |
//! | [`swiglu_forward`] | GELU: a gated unit, `silu(gate)·up`, from a layer twice as wide | Shazeer 2020 |
//! | [`matmul_forward_no_bias`] | a linear layer's `+ b` dropped | (LLaMA, PaLM) |
//! | [`layernorm_forward_no_bias`] | LayerNorm without its shift | (PaLM) |
//!
//! Grouped-query attention is in [`attention`](super::attention)
//! ([`attention_forward_gqa`](super::attention_forward_gqa)) and RoPE for it
//! in [`arch`](super::arch) ([`rope_forward_gqa`](super::rope_forward_gqa));
//! [`Arch`](super::Arch) switches each change on.
//!
//! Shapes: `B` batch, `T` time, `C` channels, `H` the SwiGLU's hidden width
//! ([`swiglu_hidden`]), `OC` output channels.

use ndarray::{ArrayRef1, ArrayRef2, ArrayRef3};

use super::layers::{LAYERNORM_EPS, fast_exp, flatten_mut};
use crate::parallel::{in_slice, out_slice, par_mat_mul, pool, simd, sum_map, sum_zip, sum_zip3};

/// The small number RMSNorm adds to the mean square before its square root
/// (LLaMA's value, and GPT-2's LayerNorm's: [`LAYERNORM_EPS`]).
pub const RMSNORM_EPS: f32 = LAYERNORM_EPS;

// ANCHOR: rmsnorm_row
/// RMSNorm of one position: divide its `C` numbers by their root mean
/// square, then apply a learned scale. No mean is subtracted and there is
/// no shift, so it is LayerNorm with two of its four steps left out.
///
/// `rstd = 1 / sqrt(Σx² / C + 1e-5)` and `y = x · rstd · weight`. Returns
/// `rstd`, which the backward pass needs. All three slices are `C` long.
///
/// ```
/// use listings::model::rmsnorm_row;
/// let mut y = [0.0; 2];
/// let rstd = rmsnorm_row(&mut y, &[3.0, 4.0], &[1.0, 2.0]);
/// // The mean square is (9 + 16) / 2 = 12.5.
/// assert!((rstd - 1.0 / 12.5_f32.sqrt()).abs() < 1e-6);
/// assert!((y[1] - 8.0 / 12.5_f32.sqrt()).abs() < 1e-5);
/// ```
#[inline(always)] // into `simd`'s closure, to be compiled for wide vectors
pub fn rmsnorm_row(y: &mut [f32], x: &[f32], weight: &[f32]) -> f32 {
    let c = x.len() as f32;
    let mean_square = sum_map(x, |v| v * v) / c;
    let rstd = 1.0 / (mean_square + RMSNORM_EPS).sqrt();
    for ((y, &x), &w) in y.iter_mut().zip(x).zip(weight) {
        *y = x * rstd * w;
    }
    rstd
}
// ANCHOR_END: rmsnorm_row

// ANCHOR: rmsnorm_forward
/// RMSNorm at every position ([`rmsnorm_row`] on each row of `C`).
///
/// Shapes: `inp` and `out` `(B, T, C)`; `rstd` `(B, T)`, kept for the
/// backward pass; `weight` `(C)`.
pub fn rmsnorm_forward(
    out: &mut ArrayRef3<f32>,
    rstd: &mut ArrayRef2<f32>,
    inp: &ArrayRef3<f32>,
    weight: &ArrayRef1<f32>,
) {
    let c = inp.dim().2;
    let (x, w) = (in_slice(inp), in_slice(weight));
    let rows = x.chunks_exact(c).zip(out_slice(out).chunks_exact_mut(c)); // (C) each
    let stats = out_slice(rstd).iter_mut();
    simd(
        #[inline(always)]
        || {
            for ((x, y), rstd) in rows.zip(stats) {
                *rstd = rmsnorm_row(y, x, &w);
            }
        },
    );
}
// ANCHOR_END: rmsnorm_forward

// ANCHOR: rmsnorm_backward
/// The backward pass of [`rmsnorm_forward`].
///
/// With `x̂ = x·rstd` the normalised input and `dx̂ = dy·weight` its
/// gradient, the scale's gradient is `Σ dy·x̂` over the positions, and the
/// input's is LayerNorm's with the mean's term gone (RMSNorm does not
/// subtract the mean, so there is no change of the mean to take out):
///
/// `dweight += Σ dy·x̂` and `dx += rstd·(dx̂ - x̂·mean(dx̂·x̂))`.
///
/// `dinp` and `dweight` are added to, as in
/// [`layernorm_backward`](super::layernorm_backward).
///
/// Shapes: `dinp`, `dout`, `inp` `(B, T, C)`; `rstd` `(B, T)`; `dweight`,
/// `weight` `(C)`.
pub fn rmsnorm_backward(
    dinp: &mut ArrayRef3<f32>,
    dweight: &mut ArrayRef1<f32>,
    dout: &ArrayRef3<f32>,
    inp: &ArrayRef3<f32>,
    weight: &ArrayRef1<f32>,
    rstd: &ArrayRef2<f32>,
) {
    let c = inp.dim().2;
    let (x, dy, w) = (in_slice(inp), in_slice(dout), in_slice(weight));
    let dw = out_slice(dweight);
    let rows = (x.chunks_exact(c).zip(dy.chunks_exact(c))) // (C) each
        .zip(out_slice(dinp).chunks_exact_mut(c))
        .zip(rstd.iter());
    simd(
        #[inline(always)]
        || {
            for (((x, dy), dx), &rstd) in rows {
                // mean(dx̂·x̂), with dx̂ = dy·w and x̂ = x·rstd
                let mean_dxhat_xhat = sum_zip3(dy, &w, x, |dy, w, x| dy * w * x) * rstd / c as f32;
                for ((((dx, dw), &dy), &x), &w) in
                    dx.iter_mut().zip(&mut *dw).zip(dy).zip(x).zip(&*w)
                {
                    let xhat = x * rstd;
                    *dw += dy * xhat;
                    *dx += rstd * (dy * w - xhat * mean_dxhat_xhat);
                }
            }
        },
    );
}
// ANCHOR_END: rmsnorm_backward

/// LayerNorm without its shift: `y = (x - mean)·rstd·weight`, as
/// [`layernorm_forward`](super::layernorm_forward) with no bias to add.
///
/// Shapes: `inp` and `out` `(B, T, C)`; `mean` and `rstd` `(B, T)`, kept
/// for the backward pass; `weight` `(C)`.
pub fn layernorm_forward_no_bias(
    out: &mut ArrayRef3<f32>,
    mean: &mut ArrayRef2<f32>,
    rstd: &mut ArrayRef2<f32>,
    inp: &ArrayRef3<f32>,
    weight: &ArrayRef1<f32>,
) {
    let c = inp.dim().2;
    let (x, w) = (in_slice(inp), in_slice(weight));
    let rows = x.chunks_exact(c).zip(out_slice(out).chunks_exact_mut(c)); // (C) each
    let stats = out_slice(mean).iter_mut().zip(out_slice(rstd));
    simd(
        #[inline(always)]
        || {
            for ((x, y), (mean, rstd)) in rows.zip(stats) {
                let n = c as f32;
                *mean = sum_map(x, |v| v) / n;
                let m = *mean;
                let var = sum_map(x, |v| (v - m) * (v - m)) / n;
                *rstd = 1.0 / (var + LAYERNORM_EPS).sqrt();
                for ((y, &x), &w) in y.iter_mut().zip(x).zip(&*w) {
                    *y = (x - m) * *rstd * w;
                }
            }
        },
    );
}

/// The backward pass of [`layernorm_forward_no_bias`]: the input's and the
/// scale's gradients of [`layernorm_backward`](super::layernorm_backward),
/// and no shift to have one. `dinp` and `dweight` are added to.
///
/// Shapes: `dinp`, `dout`, `inp` `(B, T, C)`; `mean`, `rstd` `(B, T)`;
/// `dweight`, `weight` `(C)`.
pub fn layernorm_backward_no_bias(
    dinp: &mut ArrayRef3<f32>,
    dweight: &mut ArrayRef1<f32>,
    dout: &ArrayRef3<f32>,
    inp: &ArrayRef3<f32>,
    weight: &ArrayRef1<f32>,
    mean: &ArrayRef2<f32>,
    rstd: &ArrayRef2<f32>,
) {
    let c = inp.dim().2;
    let (x, dy, w) = (in_slice(inp), in_slice(dout), in_slice(weight));
    let dw = out_slice(dweight);
    let rows = (x.chunks_exact(c).zip(dy.chunks_exact(c))) // (C) each
        .zip(out_slice(dinp).chunks_exact_mut(c))
        .zip(mean.iter().zip(rstd.iter()));
    simd(
        #[inline(always)]
        || {
            for (((x, dy), dx), (&mean, &rstd)) in rows {
                let n = c as f32;
                let mean_dxhat = sum_zip(dy, &w, |dy, w| dy * w) / n;
                let mean_dxhat_xhat =
                    sum_zip3(dy, &w, x, |dy, w, x| dy * w * (x - mean)) * rstd / n;
                for ((((dx, dw), &dy), &x), &w) in
                    dx.iter_mut().zip(&mut *dw).zip(dy).zip(x).zip(&*w)
                {
                    let xhat = (x - mean) * rstd;
                    *dw += dy * xhat;
                    *dx += rstd * (dy * w - mean_dxhat - xhat * mean_dxhat_xhat);
                }
            }
        },
    );
}

// ANCHOR: matmul_no_bias
/// A linear layer without a bias, `out = inp · W`: [`matmul_forward`]'s
/// product alone.
///
/// Shapes: `inp` `(B, T, C)`, `weight` `(C, OC)`, `out` `(B, T, OC)`.
///
/// [`matmul_forward`]: super::matmul_forward
pub fn matmul_forward_no_bias(
    out: &mut ArrayRef3<f32>,
    inp: &ArrayRef3<f32>,
    weight: &ArrayRef2<f32>,
) {
    let (b, t, c) = inp.dim();
    let oc = weight.dim().1;
    let x = inp
        .to_shape((b * t, c))
        .expect("B·T·C numbers fold to (B·T, C)"); // (B·T, C)
    let mut y = flatten_mut(out, b * t, oc); // (B·T, OC)
    par_mat_mul(1.0, &x, weight, 0.0, &mut y); // (B·T, C) x (C, OC) -> (B·T, OC)
}

/// The backward pass of [`matmul_forward_no_bias`]: [`matmul_backward`]'s
/// `dinp = dout·Wᵀ` (overwritten) and `dW += inpᵀ·dout`, with no bias to
/// get a gradient.
///
/// Shapes: `dinp`, `inp` `(B, T, C)`; `dout` `(B, T, OC)`; `dweight`,
/// `weight` `(C, OC)`.
///
/// [`matmul_backward`]: super::matmul_backward
pub fn matmul_backward_no_bias(
    dinp: &mut ArrayRef3<f32>,
    dweight: &mut ArrayRef2<f32>,
    dout: &ArrayRef3<f32>,
    inp: &ArrayRef3<f32>,
    weight: &ArrayRef2<f32>,
) {
    let (b, t, c) = inp.dim();
    let oc = weight.dim().1;
    let x = inp
        .to_shape((b * t, c))
        .expect("B·T·C numbers fold to (B·T, C)"); // (B·T, C)
    let dy = dout
        .to_shape((b * t, oc))
        .expect("B·T·OC numbers fold to (B·T, OC)"); // (B·T, OC)
    let mut dx = flatten_mut(dinp, b * t, c); // (B·T, C)
    par_mat_mul(1.0, &dy, &weight.t(), 0.0, &mut dx); // (B·T, OC) x (OC, C) -> (B·T, C)
    par_mat_mul(1.0, &x.t(), &dy, 1.0, dweight); // (C, B·T) x (B·T, OC) -> (C, OC)
}
// ANCHOR_END: matmul_no_bias

// ANCHOR: swiglu_hidden
/// The hidden width `H` of a SwiGLU MLP in a model `c` wide: `8C/3`
/// rounded to the nearest multiple of 8, which is `8·round(C/3)`.
///
/// A SwiGLU MLP has three weight matrices of `C·H` (the gate, the "up"
/// projection and the way down) where GELU's has two of `C·4C`; with
/// `H = 8C/3` both have `8·C²` weights. When 3 does not divide `C`, the
/// nearest multiple of 8 keeps the count within `8·C` of that
/// (`C = 64`: `H = 168`, 32,256 weights against 32,768), for any `C` from
/// 2 (below, `H` is 8).
///
/// ```
/// use listings::model::swiglu_hidden;
/// assert_eq!(swiglu_hidden(768), 2048); // 8·768/3 exactly
/// assert_eq!(swiglu_hidden(64), 168); // 8·64/3 = 170.7
/// assert_eq!(3 * 768 * swiglu_hidden(768), 8 * 768 * 768);
/// ```
pub fn swiglu_hidden(c: usize) -> usize {
    8 * ((c + 1) / 3).max(1) // (C + 1) / 3 is C / 3 rounded to the nearest whole number
}
// ANCHOR_END: swiglu_hidden

// ANCHOR: silu
/// SiLU (the "swish" of SwiGLU): `silu(x) = x·σ(x) = x / (1 + e^(-x))`, a
/// smooth ReLU like GELU (whose tanh form is `x·σ(1.6x)`, nearly).
///
/// ```
/// use listings::model::silu;
/// assert_eq!(silu(0.0), 0.0);
/// assert!((silu(1.0) - 0.731059).abs() < 1e-6);
/// ```
#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + fast_exp(-x))
}

/// The slope of [`silu`]: with `s = σ(x)`, `silu'(x) = s + x·s·(1 - s)`.
///
/// ```
/// use listings::model::{silu, silu_grad};
/// assert_eq!(silu_grad(0.0), 0.5);
/// let h = 1e-3;
/// assert!((silu_grad(1.0) - (silu(1.0 + h) - silu(1.0 - h)) / (2.0 * h)).abs() < 1e-3);
/// ```
#[inline]
pub fn silu_grad(x: f32) -> f32 {
    let s = 1.0 / (1.0 + fast_exp(-x));
    s + x * s * (1.0 - s)
}
// ANCHOR_END: silu

/// Rows of SwiGLU's input handed to one thread at a time.
const SWIGLU_ROWS: usize = 64;

// ANCHOR: swiglu_forward
/// SwiGLU at every position: each row of `inp` is the output of a linear
/// layer twice as wide as the hidden width, `[gate | up]`, and
/// `out = silu(gate) · up`, element by element. With `inp = x·[W1 | W3]`
/// and the MLP's last layer `W2`, the MLP is Shazeer's
/// `(silu(x·W1) ⊙ x·W3)·W2`: the gate decides, channel by channel, how much
/// of the "up" projection passes.
///
/// Shapes: `inp` `(B, T, 2H)`, `out` `(B, T, H)`.
pub fn swiglu_forward(out: &mut ArrayRef3<f32>, inp: &ArrayRef3<f32>) {
    let h = out.dim().2;
    assert_eq!(
        inp.dim().2,
        2 * h,
        "SwiGLU's input is twice as wide as its output"
    );
    let x = in_slice(inp);
    let rows = |(out, inp): (&mut [f32], &[f32])| {
        simd(
            #[inline(always)]
            || {
                for (y, x) in out.chunks_exact_mut(h).zip(inp.chunks_exact(2 * h)) {
                    let (gate, up) = x.split_at(h);
                    for ((y, &g), &u) in y.iter_mut().zip(gate).zip(up) {
                        *y = silu(g) * u;
                    }
                }
            },
        )
    };
    pool().install(|| {
        use rayon::prelude::*;
        out_slice(out)
            .par_chunks_mut(SWIGLU_ROWS * h)
            .zip(x.par_chunks(SWIGLU_ROWS * 2 * h))
            .for_each(rows)
    });
}
// ANCHOR_END: swiglu_forward

// ANCHOR: swiglu_backward
/// The backward pass of [`swiglu_forward`] (`y = silu(g)·u`), by the
/// product rule: `dg = dy·u·silu'(g)` and `du = dy·silu(g)`, written into
/// the gate's and the up projection's halves of `dinp` (overwritten).
///
/// Shapes: `dinp`, `inp` `(B, T, 2H)`; `dout` `(B, T, H)`.
pub fn swiglu_backward(dinp: &mut ArrayRef3<f32>, inp: &ArrayRef3<f32>, dout: &ArrayRef3<f32>) {
    let h = dout.dim().2;
    assert_eq!(
        inp.dim().2,
        2 * h,
        "SwiGLU's input is twice as wide as its output"
    );
    let (x, dy) = (in_slice(inp), in_slice(dout));
    let rows = |((dx, x), dy): ((&mut [f32], &[f32]), &[f32])| {
        simd(
            #[inline(always)]
            || {
                let pairs = dx.chunks_exact_mut(2 * h).zip(x.chunks_exact(2 * h));
                for ((dx, x), dy) in pairs.zip(dy.chunks_exact(h)) {
                    let (gate, up) = x.split_at(h);
                    let (dgate, dup) = dx.split_at_mut(h);
                    for i in 0..h {
                        dgate[i] = dy[i] * up[i] * silu_grad(gate[i]);
                        dup[i] = dy[i] * silu(gate[i]);
                    }
                }
            },
        )
    };
    pool().install(|| {
        use rayon::prelude::*;
        out_slice(dinp)
            .par_chunks_mut(SWIGLU_ROWS * 2 * h)
            .zip(x.par_chunks(SWIGLU_ROWS * 2 * h))
            .zip(dy.par_chunks(SWIGLU_ROWS * h))
            .for_each(rows)
    });
}
// ANCHOR_END: swiglu_backward

#[cfg(test)]
mod tests {
    use ndarray::{Array1, Array2, Array3, Array4, ArrayRef3, s};

    use super::*;
    use crate::model::gradcheck::{
        ALL, TOLERANCE, assert_grad, compare, flat, flat_mut, rand, report, view, weighted,
    };
    use crate::model::{
        LayerNormParams, LinearParams, alibi_slopes, attention_backward, attention_backward_gqa,
        attention_forward, attention_forward_gqa, layernorm_backward, layernorm_forward,
        matmul_backward, matmul_forward, rope_backward_gqa, rope_forward, rope_forward_gqa,
    };

    #[test]
    fn rmsnorm_gradients() {
        let (b, t, c) = (2, 3, 8);
        let inp = rand((b, t, c), 2.0, 1) + 0.5;
        let weight = rand(c, 0.5, 2) + 1.0;
        let w = rand((b, t, c), 1.0, 3);
        let forward = |inp: &ArrayRef3<f32>, weight: &ArrayRef1<f32>| {
            let (mut out, mut rstd) = (Array3::zeros((b, t, c)), Array2::zeros((b, t)));
            rmsnorm_forward(&mut out, &mut rstd, inp, weight);
            (weighted(&w, &out), rstd)
        };
        let (_, rstd) = forward(&inp, &weight);
        let (mut dinp, mut dweight) = (Array3::zeros((b, t, c)), Array1::zeros(c));
        rmsnorm_backward(&mut dinp, &mut dweight, &w, &inp, &weight, &rstd);
        let c1 = compare(flat_mut(&mut inp.clone()), flat(&dinp), ALL, |x| {
            forward(&view(x, &inp), &weight).0
        });
        assert_grad("rmsnorm", "inp", c1);
        let c2 = compare(flat_mut(&mut weight.clone()), flat(&dweight), ALL, |x| {
            forward(&inp, &view(x, &weight)).0
        });
        assert_grad("rmsnorm", "weight", c2);
        // Both gradients are added to: a second call doubles them.
        let once = (dinp.clone(), dweight.clone());
        rmsnorm_backward(&mut dinp, &mut dweight, &w, &inp, &weight, &rstd);
        assert!((&dinp - &(2.0 * &once.0)).iter().all(|d| d.abs() < 1e-6));
        assert!((&dweight - &(2.0 * &once.1)).iter().all(|d| d.abs() < 1e-5));
    }

    #[test]
    fn layernorm_without_bias_gradients() {
        let (b, t, c) = (2, 3, 8);
        let inp = rand((b, t, c), 2.0, 1) + 0.5;
        let weight = rand(c, 0.5, 2) + 1.0;
        let w = rand((b, t, c), 1.0, 3);
        let forward = |inp: &ArrayRef3<f32>, weight: &ArrayRef1<f32>| {
            let mut out = Array3::zeros((b, t, c));
            let (mut mean, mut rstd) = (Array2::zeros((b, t)), Array2::zeros((b, t)));
            layernorm_forward_no_bias(&mut out, &mut mean, &mut rstd, inp, weight);
            (weighted(&w, &out), mean, rstd, out)
        };
        let (_, mean, rstd, out) = forward(&inp, &weight);
        let (mut dinp, mut dweight) = (Array3::zeros((b, t, c)), Array1::zeros(c));
        layernorm_backward_no_bias(&mut dinp, &mut dweight, &w, &inp, &weight, &mean, &rstd);
        let c1 = compare(flat_mut(&mut inp.clone()), flat(&dinp), ALL, |x| {
            forward(&view(x, &inp), &weight).0
        });
        assert_grad("layernorm nb", "inp", c1);
        let c2 = compare(flat_mut(&mut weight.clone()), flat(&dweight), ALL, |x| {
            forward(&inp, &view(x, &weight)).0
        });
        assert_grad("layernorm nb", "weight", c2);
        // The same numbers as LayerNorm with a zero shift, whose shift
        // alone gets a gradient.
        let params = LayerNormParams {
            weight: weight.clone(),
            bias: Array1::zeros(c),
        };
        let mut with_bias = Array3::zeros((b, t, c));
        let (mut m2, mut r2) = (Array2::zeros((b, t)), Array2::zeros((b, t)));
        layernorm_forward(&mut with_bias, &mut m2, &mut r2, &inp, &params);
        assert_eq!((with_bias, m2, r2), (out, mean.clone(), rstd.clone()));
        let (mut dinp2, mut dparams) = (Array3::zeros((b, t, c)), LayerNormParams::new(c));
        dparams.weight.fill(0.0);
        layernorm_backward(&mut dinp2, &mut dparams, &w, &inp, &params, &mean, &rstd);
        assert_eq!((dinp2, dparams.weight), (dinp, dweight));
    }

    #[test]
    fn rmsnorm_is_layernorm_on_rows_of_mean_zero() {
        // Rows whose numbers come in pairs x, -x have a mean of exactly 0,
        // so LayerNorm's variance is RMSNorm's mean square, and with a zero
        // shift the two compute the same numbers, to the bit.
        let (b, t, c) = (2, 5, 32);
        let half = rand((b, t, c / 2), 1.5, 1);
        let inp = Array3::from_shape_fn((b, t, c), |(i, j, k)| {
            let x = half[[i, j, k / 2]];
            if k % 2 == 0 { x } else { -x }
        });
        let params = LayerNormParams {
            weight: rand(c, 0.5, 2) + 1.0,
            bias: Array1::zeros(c),
        };
        let (mut ln, mut rms) = (Array3::zeros((b, t, c)), Array3::zeros((b, t, c)));
        let (mut mean, mut rstd_ln, mut rstd_rms) = (
            Array2::zeros((b, t)),
            Array2::zeros((b, t)),
            Array2::zeros((b, t)),
        );
        layernorm_forward(&mut ln, &mut mean, &mut rstd_ln, &inp, &params);
        rmsnorm_forward(&mut rms, &mut rstd_rms, &inp, &params.weight);
        assert!(mean.iter().all(|&m| m == 0.0));
        assert_eq!(rstd_ln, rstd_rms);
        assert_eq!(ln, rms);
        // ... but not on other rows: the mean is what RMSNorm leaves in.
        let shifted = &inp + 1.0;
        layernorm_forward(&mut ln, &mut mean, &mut rstd_ln, &shifted, &params);
        rmsnorm_forward(&mut rms, &mut rstd_rms, &shifted, &params.weight);
        let diff = (&ln - &rms).iter().fold(0.0_f32, |m, d| m.max(d.abs()));
        assert!(diff > 0.1, "{diff}");
    }

    #[test]
    fn linear_without_bias_gradients() {
        let (b, t, c, oc) = (2, 3, 5, 7);
        let inp = rand((b, t, c), 1.0, 1);
        let weight = rand((c, oc), 1.0, 2);
        let w = rand((b, t, oc), 1.0, 3);
        let forward = |inp: &ArrayRef3<f32>, weight: &ArrayRef2<f32>| {
            let mut out = Array3::from_elem((b, t, oc), f32::NAN); // overwritten
            matmul_forward_no_bias(&mut out, inp, weight);
            (weighted(&w, &out), out)
        };
        let mut dinp = Array3::from_elem((b, t, c), f32::NAN); // overwritten
        let mut dweight = Array2::zeros((c, oc));
        matmul_backward_no_bias(&mut dinp, &mut dweight, &w, &inp, &weight);
        let c1 = compare(flat_mut(&mut inp.clone()), flat(&dinp), ALL, |x| {
            forward(&view(x, &inp), &weight).0
        });
        assert_grad("matmul nb", "inp", c1);
        let c2 = compare(flat_mut(&mut weight.clone()), flat(&dweight), ALL, |x| {
            forward(&inp, &view(x, &weight)).0
        });
        assert_grad("matmul nb", "weight", c2);
        // matmul_forward with a zero bias computes the same numbers.
        let layer = LinearParams {
            weight: weight.clone(),
            bias: Array1::zeros(oc),
        };
        let mut with_bias = Array3::zeros((b, t, oc));
        matmul_forward(&mut with_bias, &inp, &layer);
        assert_eq!(with_bias, forward(&inp, &weight).1);
        let (mut dinp2, mut dlayer) = (Array3::zeros((b, t, c)), LinearParams::zeros(c, oc));
        matmul_backward(&mut dinp2, &mut dlayer, &w, &inp, &layer);
        assert_eq!((dinp2, dlayer.weight), (dinp, dweight));
    }

    #[test]
    fn swiglu_gradients() {
        let (b, t, h) = (2, 3, 12);
        let inp = rand((b, t, 2 * h), 2.0, 1);
        let w = rand((b, t, h), 1.0, 2);
        let mut dinp = Array3::from_elem((b, t, 2 * h), f32::NAN); // overwritten
        swiglu_backward(&mut dinp, &inp, &w);
        let forward = |x: &ArrayRef3<f32>| {
            let mut out = Array3::from_elem((b, t, h), f32::NAN);
            swiglu_forward(&mut out, x);
            weighted(&w, &out)
        };
        let cmp = compare(flat_mut(&mut inp.clone()), flat(&dinp), ALL, |x| {
            forward(&view(x, &inp))
        });
        assert_grad("swiglu", "inp", cmp);
        // Large enough to be shared out between threads: the same numbers
        // as the formula, row by row.
        let (b, t, h) = (3, 70, 20);
        let inp = rand((b, t, 2 * h), 2.0, 3);
        let mut out = Array3::zeros((b, t, h));
        swiglu_forward(&mut out, &inp);
        let expected = Array3::from_shape_fn((b, t, h), |(i, j, k)| {
            silu(inp[[i, j, k]]) * inp[[i, j, h + k]]
        });
        assert_eq!(out, expected);
    }

    #[test]
    fn a_wrong_swiglu_derivative_is_caught() {
        // Forgetting that silu(g) = g·σ(g) depends on g twice: dg = dy·u·σ(g).
        let (b, t, h) = (2, 3, 12);
        let inp = rand((b, t, 2 * h), 2.0, 1);
        let w = rand((b, t, h), 1.0, 2);
        let mut wrong = Array3::zeros((b, t, 2 * h));
        swiglu_backward(&mut wrong, &inp, &w);
        for ((i, j, k), d) in wrong.indexed_iter_mut() {
            if k < h {
                let g = inp[[i, j, k]];
                *d = w[[i, j, k]] * inp[[i, j, h + k]] / (1.0 + (-g).exp());
            }
        }
        let cmp = compare(flat_mut(&mut inp.clone()), flat(&wrong), ALL, |x| {
            let mut out = Array3::zeros((b, t, h));
            swiglu_forward(&mut out, &view(x, &inp));
            weighted(&w, &out)
        });
        let err = report("wrong swiglu", "inp", &cmp);
        assert!(err > TOLERANCE, "the check missed a wrong derivative");
    }

    #[test]
    fn swiglu_hidden_gives_the_gelu_mlps_weights() {
        for c in 2..400 {
            // (C = 1 gets H = 8, the smallest multiple of 8)
            let h = swiglu_hidden(c);
            assert_eq!(h % 8, 0, "C = {c}");
            let (swiglu, gelu) = ((3 * c * h) as i64, (8 * c * c) as i64);
            assert!(
                (swiglu - gelu).abs() <= (8 * c) as i64,
                "C = {c}: {swiglu} vs {gelu}"
            );
            if c % 3 == 0 && c >= 3 {
                assert_eq!(swiglu, gelu, "C = {c}");
            }
        }
        assert_eq!(swiglu_hidden(64), 168);
        assert_eq!(swiglu_hidden(4096), 10_920); // LLaMA-7B rounds up, to 11,008
    }

    /// `qkv` for grouped-query attention with `nh` query heads and `kv`
    /// key-value heads of `hs` channels, and the same numbers laid out for
    /// multi-head attention: each key-value head repeated for every query
    /// head of its group.
    fn grouped_and_repeated(
        b: usize,
        t: usize,
        nh: usize,
        kv: usize,
        hs: usize,
        seed: u64,
    ) -> (Array3<f32>, Array3<f32>) {
        let c = nh * hs;
        let grouped = rand((b, t, c + 2 * kv * hs), 1.0, seed);
        let group = nh / kv;
        let repeated = Array3::from_shape_fn((b, t, 3 * c), |(i, j, k)| match k {
            k if k < c => grouped[[i, j, k]],
            k => {
                let (part, k) = ((k - c) / c, (k - c) % c); // 0 keys, 1 values
                let (head, channel) = (k / hs, k % hs);
                grouped[[i, j, c + part * kv * hs + (head / group) * hs + channel]]
            }
        });
        (grouped, repeated)
    }

    #[test]
    fn grouped_query_attention_is_attention_with_each_kv_head_repeated() {
        let (b, t, nh, hs) = (2, 7, 4, 4);
        let c = nh * hs;
        for kv in [1, 2, 4] {
            let (grouped, repeated) = grouped_and_repeated(b, t, nh, kv, hs, 1);
            let (mut y1, mut y2) = (Array3::zeros((b, t, c)), Array3::zeros((b, t, c)));
            let (mut a1, mut a2) = (Array4::zeros((b, nh, t, t)), Array4::zeros((b, nh, t, t)));
            attention_forward_gqa(&mut y1, &mut a1, &grouped, nh, kv, None);
            attention_forward(&mut y2, &mut a2, &repeated, nh);
            assert_eq!((&y1, &a1), (&y2, &a2), "{kv} kv heads");
            // Backward: a shared head's gradient is the sum of its copies'.
            let dout = rand((b, t, c), 1.0, 2);
            let mut d1 = Array3::from_elem(grouped.raw_dim(), f32::NAN);
            let mut d2 = Array3::zeros(repeated.raw_dim());
            let mut datt = Array4::zeros((b, nh, t, t));
            attention_backward_gqa(&mut d1, &mut datt, &dout, &grouped, &a1, nh, kv);
            attention_backward(&mut d2, &mut datt, &dout, &repeated, &a2, nh);
            let group = nh / kv;
            let mut summed = Array3::<f32>::zeros(grouped.raw_dim());
            summed
                .slice_mut(s![.., .., ..c])
                .assign(&d2.slice(s![.., .., ..c]));
            for part in 0..2 {
                for h in 0..nh {
                    let from = c + part * c + h * hs;
                    let to = c + part * kv * hs + (h / group) * hs;
                    let mut target = summed.slice_mut(s![.., .., to..to + hs]);
                    target += &d2.slice(s![.., .., from..from + hs]);
                }
            }
            let diff = (&d1 - &summed).iter().fold(0.0_f32, |m, d| m.max(d.abs()));
            assert!(diff < 1e-5, "{kv} kv heads: {diff}");
            if kv == nh {
                assert_eq!(d1, d2, "as many kv heads as heads is attention, to the bit");
            } else {
                // A backward pass that kept only one head's share is caught.
                let last_only = Array3::from_shape_fn(grouped.raw_dim(), |(i, j, k)| {
                    if k < c {
                        return d2[[i, j, k]];
                    }
                    let (part, k) = ((k - c) / (kv * hs), (k - c) % (kv * hs));
                    let head = (k / hs) * group + group - 1;
                    d2[[i, j, c + part * c + head * hs + k % hs]]
                });
                let diff = (&last_only - &summed)
                    .iter()
                    .fold(0.0_f32, |m, d| m.max(d.abs()));
                assert!(diff > 1e-2, "{kv} kv heads: {diff}");
            }
        }
    }

    #[test]
    fn grouped_query_attention_gradients() {
        let (b, t, nh, hs) = (2, 5, 4, 4);
        let c = nh * hs;
        let slopes = alibi_slopes(nh);
        for kv in [1, 2] {
            for (name, rope, alibi) in [
                ("gqa", false, None),
                ("gqa rope", true, None),
                ("gqa alibi", false, Some(slopes.as_slice())),
            ] {
                let qkv = rand((b, t, c + 2 * kv * hs), 1.0, 1);
                let w = rand((b, t, c), 1.0, 2);
                let forward = |x: &ArrayRef3<f32>| {
                    let mut x = x.to_owned();
                    if rope {
                        rope_forward_gqa(&mut x, nh, kv);
                    }
                    let (mut out, mut att) =
                        (Array3::zeros((b, t, c)), Array4::zeros((b, nh, t, t)));
                    attention_forward_gqa(&mut out, &mut att, &x, nh, kv, alibi);
                    (weighted(&w, &out), x, att)
                };
                let (_, rotated, att) = forward(&qkv);
                let mut dqkv = Array3::from_elem(qkv.raw_dim(), f32::NAN);
                let mut datt = Array4::from_elem((b, nh, t, t), f32::NAN);
                attention_backward_gqa(&mut dqkv, &mut datt, &w, &rotated, &att, nh, kv);
                if rope {
                    rope_backward_gqa(&mut dqkv, nh, kv);
                }
                let cmp = compare(flat_mut(&mut qkv.clone()), flat(&dqkv), ALL, |x| {
                    forward(&view(x, &qkv)).0
                });
                assert_grad(&format!("{name} kv={kv}"), "qkv", cmp);
            }
        }
    }

    #[test]
    fn rope_for_grouped_heads_rotates_queries_and_shared_keys_alone() {
        let (b, t, nh, hs) = (1, 6, 4, 4);
        let c = nh * hs;
        // With as many key-value heads as heads: rope_forward, to the bit.
        let qkv = rand((b, t, 3 * c), 1.0, 1);
        let (mut a, mut g) = (qkv.clone(), qkv.clone());
        rope_forward(&mut a, nh);
        rope_forward_gqa(&mut g, nh, nh);
        assert_eq!(a, g);
        // With 1: the queries as rope_forward turns them, the one key head
        // as the first key head, the values untouched.
        let (grouped, repeated) = grouped_and_repeated(b, t, nh, 1, hs, 2);
        let (mut g, mut r) = (grouped.clone(), repeated.clone());
        rope_forward_gqa(&mut g, nh, 1);
        rope_forward(&mut r, nh);
        assert_eq!(g.slice(s![.., .., ..c + hs]), r.slice(s![.., .., ..c + hs]));
        assert_eq!(
            g.slice(s![.., .., c + hs..]),
            grouped.slice(s![.., .., c + hs..])
        );
        assert_ne!(
            g.slice(s![.., .., c..c + hs]),
            grouped.slice(s![.., .., c..c + hs])
        );
    }
}
