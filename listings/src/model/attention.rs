//! Causal self-attention: each position takes a weighted average of the
//! values of the positions up to it, weighted by how well its query matches
//! their keys.
//!
//! Two versions of the same computation:
//!
//! - [`attention_head`] and [`attention_reference`] say it plainly: one head
//!   at a time, small matrices, a mask of `-∞` added before the softmax;
//! - [`attention_forward`] is what the model runs: it reads the heads
//!   straight out of the `qkv` array without copying, skips the masked
//!   positions, and shares the sequences out between the machine's cores. The tests
//!   check that both give the same numbers.
//!
//! Shapes: `B` batch, `T` time, `C` channels, `nh` heads, `hs = C / nh` head size.

use ndarray::{
    Array1, Array2, Array3, Array4, ArrayRef1, ArrayRef2, ArrayRef3, ArrayRef4, ArrayView2,
    ArrayView3, ArrayViewMut2, ArrayViewMut3, Axis, Zip, s,
};

use super::layers::fast_exp;
use crate::parallel::{max, out_slice, par_mat_mul, pool, simd, sum_map, sum_zip};

// ANCHOR: softmax
/// Softmax: turn scores into probabilities, bigger scores getting more.
///
/// `p_i = e^(x_i) / Σ_j e^(x_j)`, computed as `e^(x_i - max) / Σ_j e^(x_j -
/// max)`: the same numbers (the factor `e^(-max)` cancels), but no `e^1000`
/// to overflow. Entries of `-∞` get probability 0.
///
/// ```
/// use listings::model::softmax;
/// use ndarray::array;
/// let p = softmax(&array![1000.0, 1000.0, 999.0]);
/// assert!((p.sum() - 1.0).abs() < 1e-6);
/// assert!((p[0] - 0.4223).abs() < 1e-4);
/// ```
pub fn softmax(x: &ArrayRef1<f32>) -> Array1<f32> {
    let max = x.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let e = x.mapv(|v| (v - max).exp());
    let sum = e.sum();
    e / sum
}
// ANCHOR_END: softmax

// ANCHOR: causal_mask
/// The causal mask for `t` positions: 0 where position `i` may look at
/// position `j` (`j <= i`, the past and itself), `-∞` where it may not (the
/// future). Added to the scores before the softmax, it gives the future
/// weight exactly 0.
///
/// ```
/// use listings::model::causal_mask;
/// let m = causal_mask(3);
/// assert_eq!(m.row(0).to_vec(), [0.0, f32::NEG_INFINITY, f32::NEG_INFINITY]);
/// assert_eq!(m.row(2).to_vec(), [0.0, 0.0, 0.0]);
/// ```
pub fn causal_mask(t: usize) -> Array2<f32> {
    Array2::from_shape_fn(
        (t, t),
        |(i, j)| if j <= i { 0.0 } else { f32::NEG_INFINITY },
    )
}
// ANCHOR_END: causal_mask

// ANCHOR: attention_head
/// One attention head, written as the formula:
/// `softmax(Q·Kᵀ / sqrt(hs) + mask) · V`.
///
/// Row `i` of the scores says how well query `i` matches every key; the
/// softmax turns each row into weights that sum to 1; the output row `i` is
/// the weighted average of the value rows. Dividing by `sqrt(hs)` keeps the
/// scores' spread near 1 whatever the head size, so the softmax does not
/// saturate. With `causal`, position `i` only sees positions `0..=i`.
///
/// Shapes: `q`, `k`, `v` `(T, hs)`; returns the output `(T, hs)` and the
/// attention weights `(T, T)`.
pub fn attention_head(
    q: &ArrayRef2<f32>,
    k: &ArrayRef2<f32>,
    v: &ArrayRef2<f32>,
    causal: bool,
) -> (Array2<f32>, Array2<f32>) {
    let (t, hs) = q.dim();
    let mut scores = q.dot(&k.t()) / (hs as f32).sqrt(); // (T, hs) x (hs, T) -> (T, T)
    if causal {
        scores += &causal_mask(t);
    }
    for mut row in scores.rows_mut() {
        let weights = softmax(&row);
        row.assign(&weights);
    }
    let out = scores.dot(v); // (T, T) x (T, hs) -> (T, hs)
    (out, scores)
}
// ANCHOR_END: attention_head

// ANCHOR: attention_reference
/// Multi-head causal self-attention, one head at a time: the plain version
/// that [`attention_forward`] is checked against.
///
/// `qkv` holds each token's query, key and value side by side (`c_attn`'s
/// output). Head `h` owns channels `h·hs .. (h+1)·hs` of each; its outputs are
/// written to the same channels of the result, so the heads end up side by
/// side again (the "merge" of the heads).
///
/// Shapes: `qkv` `(B, T, 3C)`; returns the output `(B, T, C)` and the
/// attention weights `(B, nh, T, T)`.
pub fn attention_reference(qkv: &ArrayRef3<f32>, n_head: usize) -> (Array3<f32>, Array4<f32>) {
    let (b, t, c3) = qkv.dim();
    let c = c3 / 3;
    let hs = c / n_head;
    let mut out = Array3::zeros((b, t, c));
    let mut att = Array4::zeros((b, n_head, t, t));
    for batch in 0..b {
        for h in 0..n_head {
            let cols = h * hs..(h + 1) * hs;
            let q = qkv.slice(s![batch, .., cols.clone()]); // (T, hs)
            let k = qkv.slice(s![batch, .., c + cols.start..c + cols.end]); // (T, hs)
            let v = qkv.slice(s![batch, .., 2 * c + cols.start..2 * c + cols.end]); // (T, hs)
            let (y, weights) = attention_head(&q, &k, &v, true);
            out.slice_mut(s![batch, .., cols]).assign(&y);
            att.slice_mut(s![batch, h, .., ..]).assign(&weights);
        }
    }
    (out, att)
}
// ANCHOR_END: attention_reference

// ANCHOR: attention_forward
/// Multi-head causal self-attention, as the model runs it.
///
/// The same numbers as [`attention_reference`], computed without copies:
/// each head's `q`, `k`, `v` are views into `qkv`, its scores are written
/// straight into `att`, and its output straight into its channels of `out`.
/// The sequences of the batch are independent, so they are shared out
/// between threads (`par_for_each`).
///
/// Shapes: `qkv` `(B, T, 3C)`; `out` `(B, T, C)`; `att` `(B, nh, T, T)`, the
/// attention weights, kept for the backward pass and for drawing (row `i`
/// of a head's `(T, T)` matrix sums to 1, and is 0 after column `i`).
pub fn attention_forward(
    out: &mut ArrayRef3<f32>,
    att: &mut ArrayRef4<f32>,
    qkv: &ArrayRef3<f32>,
    n_head: usize,
) {
    let sequences = Zip::from(out.outer_iter_mut())
        .and(att.outer_iter_mut())
        .and(qkv.outer_iter());
    pool().install(|| {
        sequences.par_for_each(|out, att, qkv| {
            simd(
                #[inline(always)]
                || attention_sequence(out, att, qkv, n_head),
            )
        })
    });
}
// ANCHOR_END: attention_forward

// ANCHOR: attention_sequence
/// [`attention_forward`] for one sequence, head after head.
///
/// Shapes: `qkv` `(T, 3C)`, `out` `(T, C)`, `att` `(nh, T, T)`.
#[inline(always)] // into `simd`'s closure, to be compiled for wide vectors
fn attention_sequence(
    mut out: ArrayViewMut2<f32>,
    mut att: ArrayViewMut3<f32>,
    qkv: ArrayView2<f32>,
    n_head: usize,
) {
    let (t, c) = out.dim();
    let hs = c / n_head;
    let scale = 1.0 / (hs as f32).sqrt();
    for h in 0..n_head {
        let q = qkv.slice(s![.., h * hs..(h + 1) * hs]); // (T, hs)
        let k = qkv.slice(s![.., c + h * hs..c + (h + 1) * hs]); // (T, hs)
        let v = qkv.slice(s![.., 2 * c + h * hs..2 * c + (h + 1) * hs]); // (T, hs)
        let mut weights = att.index_axis_mut(Axis(0), h); // (T, T)
        par_mat_mul(scale, &q, &k.t(), 0.0, &mut weights); // (T, hs) x (hs, T) -> (T, T)
        for (i, row) in out_slice(&mut weights).chunks_exact_mut(t).enumerate() {
            causal_softmax(row, i);
        }
        let mut y = out.slice_mut(s![.., h * hs..(h + 1) * hs]); // (T, hs)
        par_mat_mul(1.0, &weights, &v, 0.0, &mut y); // (T, T) x (T, hs) -> (T, hs)
    }
}
// ANCHOR_END: attention_sequence

// ANCHOR: attention_forward_alibi
/// [`attention_forward`] with ALiBi's linear biases: before the softmax,
/// head `h` subtracts `slopes[h]·(i - j)` from the score of query `i` for
/// key `j` (`j <= i`), so each step back costs a key the same amount of
/// score. The bias is a constant, so [`attention_backward`] serves as the
/// backward pass unchanged: it reads only the weights.
///
/// Shapes as [`attention_forward`]; `slopes` has one entry per head
/// ([`alibi_slopes`](super::alibi_slopes)).
///
/// # Panics
///
/// If `slopes` does not have `n_head` entries.
pub fn attention_forward_alibi(
    out: &mut ArrayRef3<f32>,
    att: &mut ArrayRef4<f32>,
    qkv: &ArrayRef3<f32>,
    n_head: usize,
    slopes: &[f32],
) {
    assert_eq!(slopes.len(), n_head, "one ALiBi slope per head");
    let sequences = Zip::from(out.outer_iter_mut())
        .and(att.outer_iter_mut())
        .and(qkv.outer_iter());
    pool().install(|| {
        sequences.par_for_each(|out, att, qkv| {
            simd(
                #[inline(always)]
                || attention_sequence_alibi(out, att, qkv, n_head, slopes),
            )
        })
    });
}

/// [`attention_forward_alibi`] for one sequence: [`attention_sequence`]
/// with the bias added to each row of scores before its softmax.
#[inline(always)] // into `simd`'s closure, to be compiled for wide vectors
fn attention_sequence_alibi(
    mut out: ArrayViewMut2<f32>,
    mut att: ArrayViewMut3<f32>,
    qkv: ArrayView2<f32>,
    n_head: usize,
    slopes: &[f32],
) {
    let (t, c) = out.dim();
    let hs = c / n_head;
    let scale = 1.0 / (hs as f32).sqrt();
    for (h, &slope) in slopes.iter().enumerate() {
        let q = qkv.slice(s![.., h * hs..(h + 1) * hs]); // (T, hs)
        let k = qkv.slice(s![.., c + h * hs..c + (h + 1) * hs]); // (T, hs)
        let v = qkv.slice(s![.., 2 * c + h * hs..2 * c + (h + 1) * hs]); // (T, hs)
        let mut weights = att.index_axis_mut(Axis(0), h); // (T, T)
        par_mat_mul(scale, &q, &k.t(), 0.0, &mut weights); // (T, hs) x (hs, T) -> (T, T)
        for (i, row) in out_slice(&mut weights).chunks_exact_mut(t).enumerate() {
            for (j, score) in row[..=i].iter_mut().enumerate() {
                *score -= slope * (i - j) as f32; // the further back, the lower
            }
            causal_softmax(row, i);
        }
        let mut y = out.slice_mut(s![.., h * hs..(h + 1) * hs]); // (T, hs)
        par_mat_mul(1.0, &weights, &v, 0.0, &mut y); // (T, T) x (T, hs) -> (T, hs)
    }
}
// ANCHOR_END: attention_forward_alibi

// ANCHOR: causal_softmax
/// Softmax of row `i` of the scores over the positions `0..=i` it may see;
/// the rest of the row (the future) gets weight 0.
#[inline(always)]
fn causal_softmax(row: &mut [f32], i: usize) {
    let (seen, future) = row.split_at_mut(i + 1);
    let max = max(seen);
    seen.iter_mut().for_each(|s| *s = fast_exp(*s - max));
    let inv_sum = 1.0 / sum_map(seen, |e| e);
    seen.iter_mut().for_each(|e| *e *= inv_sum);
    future.fill(0.0);
}
// ANCHOR_END: causal_softmax

// ANCHOR: attention_backward
/// The backward pass of [`attention_forward`]: from the gradient of the
/// heads' outputs, the gradient of every query, key and value.
///
/// For one head, the forward pass computed the scores `S = Q·Kᵀ/sqrt(hs)`
/// (masked), the weights `P = softmax(S)` row by row, and `Y = P·V`. Going
/// back through those three steps, with `dY` given:
///
/// - `Y = P·V` is a matrix product, so `dP = dY·Vᵀ` and `dV = Pᵀ·dY`;
/// - softmax: a weight's gradient is shared out by how the weights move
///   together (they always sum to 1), `dS_ij = P_ij·(dP_ij - Σ_k P_ik·dP_ik)`.
///   Masked positions have `P_ij = 0`, so the mask passes no gradient;
/// - `S = Q·Kᵀ/sqrt(hs)` is a product again: `dQ = dS·K/sqrt(hs)` and
///   `dK = dSᵀ·Q/sqrt(hs)`.
///
/// `dQ`, `dK`, `dV` are written into the same channels of `dqkv` as `Q`, `K`,
/// `V` sit in `qkv`. The sequences are shared out between threads, as in the
/// forward pass.
///
/// Shapes: `dqkv`, `qkv` `(B, T, 3C)`, overwritten; `datt` `(B, nh, T, T)`,
/// working space that ends up holding `dS`; `dout` `(B, T, C)`; `att`
/// `(B, nh, T, T)`, the weights kept by the forward pass.
pub fn attention_backward(
    dqkv: &mut ArrayRef3<f32>,
    datt: &mut ArrayRef4<f32>,
    dout: &ArrayRef3<f32>,
    qkv: &ArrayRef3<f32>,
    att: &ArrayRef4<f32>,
    n_head: usize,
) {
    let sequences = Zip::from(dqkv.outer_iter_mut())
        .and(datt.outer_iter_mut())
        .and(dout.outer_iter())
        .and(qkv.outer_iter())
        .and(att.outer_iter());
    pool().install(|| {
        sequences.par_for_each(|dqkv, datt, dout, qkv, att| {
            simd(
                #[inline(always)]
                || attention_sequence_backward(dqkv, datt, dout, qkv, att, n_head),
            )
        })
    });
}
// ANCHOR_END: attention_backward

// ANCHOR: attention_sequence_backward
/// [`attention_backward`] for one sequence, head after head.
///
/// Shapes: `dqkv`, `qkv` `(T, 3C)`; `datt`, `att` `(nh, T, T)`; `dout` `(T, C)`.
#[inline(always)] // into `simd`'s closure, to be compiled for wide vectors
fn attention_sequence_backward(
    mut dqkv: ArrayViewMut2<f32>,
    mut datt: ArrayViewMut3<f32>,
    dout: ArrayView2<f32>,
    qkv: ArrayView2<f32>,
    att: ArrayView3<f32>,
    n_head: usize,
) {
    let (t, c) = dout.dim();
    let hs = c / n_head;
    let scale = 1.0 / (hs as f32).sqrt();
    for h in 0..n_head {
        let [q, k, v] = [0, 1, 2].map(|part| s![.., part * c + h * hs..part * c + (h + 1) * hs]);
        let dy = dout.slice(s![.., h * hs..(h + 1) * hs]); // (T, hs)
        let p = att.index_axis(Axis(0), h); // (T, T)
        let mut ds = datt.index_axis_mut(Axis(0), h); // (T, T)
        par_mat_mul(1.0, &dy, &qkv.slice(v).t(), 0.0, &mut ds); // dP: (T, hs) x (hs, T) -> (T, T)
        par_mat_mul(1.0, &p.t(), &dy, 0.0, &mut dqkv.slice_mut(v)); // dV: (T, T) x (T, hs) -> (T, hs)
        let p = p.as_slice().expect("att is in row-major layout");
        for (i, (ds, p)) in (out_slice(&mut ds).chunks_exact_mut(t))
            .zip(p.chunks_exact(t))
            .enumerate()
        {
            causal_softmax_backward(ds, p, i);
        }
        par_mat_mul(scale, &ds, &qkv.slice(k), 0.0, &mut dqkv.slice_mut(q)); // dQ: (T, T) x (T, hs) -> (T, hs)
        par_mat_mul(scale, &ds.t(), &qkv.slice(q), 0.0, &mut dqkv.slice_mut(k)); // dK: (T, T) x (T, hs) -> (T, hs)
    }
}
// ANCHOR_END: attention_sequence_backward

// ANCHOR: causal_softmax_backward
/// The backward pass of [`causal_softmax`] for row `i`: turns the weights'
/// gradient `dp` into the scores' gradient in place,
/// `ds_j = p_j·(dp_j - Σ_k p_k·dp_k)` over the positions `0..=i`, and 0 for
/// the future.
#[inline(always)]
fn causal_softmax_backward(dp: &mut [f32], p: &[f32], i: usize) {
    let (seen, future) = dp.split_at_mut(i + 1);
    let p = &p[..=i];
    let dot = sum_zip(seen, p, |dp, p| dp * p);
    for (ds, &p) in seen.iter_mut().zip(p) {
        *ds = p * (*ds - dot);
    }
    future.fill(0.0);
}
// ANCHOR_END: causal_softmax_backward

// ANCHOR: attention_backward_reference
/// [`attention_backward`] written to be read: one sequence and one head at
/// a time, the three steps back through attention as three pairs of lines.
/// The model runs the fast version; a test checks that the two agree.
///
/// Shapes: `dout` `(B, T, C)`; `qkv` `(B, T, 3C)`; `att` `(B, nh, T, T)`,
/// the weights the forward pass kept. Returns `dqkv`, `(B, T, 3C)`.
pub fn attention_backward_reference(
    dout: &ArrayRef3<f32>,
    qkv: &ArrayRef3<f32>,
    att: &ArrayRef4<f32>,
    n_head: usize,
) -> Array3<f32> {
    let (b, t, c) = dout.dim();
    let hs = c / n_head;
    let scale = 1.0 / (hs as f32).sqrt();
    let mut dqkv = Array3::zeros((b, t, 3 * c));
    for batch in 0..b {
        for h in 0..n_head {
            let (start, end) = (h * hs, (h + 1) * hs); // the head's channels
            let [q, k, v] = [0, c, 2 * c].map(|at| s![batch, .., at + start..at + end]);
            let p = att.slice(s![batch, h, .., ..]); // the weights, (T, T)
            let dy = dout.slice(s![batch, .., start..end]); // (T, hs)
            // Y = P·V
            let dp = dy.dot(&qkv.slice(v).t()); // (T, T)
            let dv = p.t().dot(&dy); // (T, hs)
            // P = softmax(S), row by row; a masked weight is 0, so is its dS
            let row_sums = (&p * &dp).sum_axis(Axis(1)); // Σ_k P_ik·dP_ik, (T)
            let ds = Array2::from_shape_fn((t, t), |(i, j)| p[[i, j]] * (dp[[i, j]] - row_sums[i]));
            // S = Q·Kᵀ/√hs
            let dq = ds.dot(&qkv.slice(k)) * scale; // (T, hs)
            let dk = ds.t().dot(&qkv.slice(q)) * scale; // (T, hs)
            dqkv.slice_mut(q).assign(&dq);
            dqkv.slice_mut(k).assign(&dk);
            dqkv.slice_mut(v).assign(&dv);
        }
    }
    dqkv
}
// ANCHOR_END: attention_backward_reference

// ANCHOR: attention_forward_gqa
/// Grouped-query attention (Ainslie et al. 2023): `nh` query heads share
/// `n_kv_head` key-value heads, each pair of a key and a value head serving
/// a group of `nh / n_kv_head` consecutive query heads. The keys and values
/// are what a KV cache keeps, so it shrinks by the same factor; the scores
/// and the weights are computed per query head as in [`attention_forward`].
///
/// `qkv` holds the queries of every head, then the keys of the key-value
/// heads, then their values: `C + 2·n_kv_head·hs` channels. With
/// `n_kv_head == nh` that is [`attention_forward`]'s layout, and the result
/// is its result, to the bit. `alibi` gives ALiBi's slope for each query
/// head ([`attention_forward_alibi`]), or `None`.
///
/// Shapes: `qkv` `(B, T, C + 2·n_kv_head·hs)`; `out` `(B, T, C)`; `att`
/// `(B, nh, T, T)`.
///
/// # Panics
///
/// If `n_kv_head` does not divide `n_head`, or `alibi` does not have
/// `n_head` slopes.
pub fn attention_forward_gqa(
    out: &mut ArrayRef3<f32>,
    att: &mut ArrayRef4<f32>,
    qkv: &ArrayRef3<f32>,
    n_head: usize,
    n_kv_head: usize,
    alibi: Option<&[f32]>,
) {
    assert!(
        n_kv_head > 0 && n_head.is_multiple_of(n_kv_head),
        "{n_kv_head} key-value heads cannot be shared by {n_head} query heads"
    );
    if let Some(slopes) = alibi {
        assert_eq!(slopes.len(), n_head, "one ALiBi slope per head");
    }
    let sequences = Zip::from(out.outer_iter_mut())
        .and(att.outer_iter_mut())
        .and(qkv.outer_iter());
    pool().install(|| {
        sequences.par_for_each(|out, att, qkv| {
            simd(
                #[inline(always)]
                || attention_sequence_gqa(out, att, qkv, n_head, n_kv_head, alibi),
            )
        })
    });
}

/// [`attention_forward_gqa`] for one sequence: [`attention_sequence`] with
/// query head `h` reading key-value head `h / (nh / n_kv_head)`.
#[inline(always)] // into `simd`'s closure, to be compiled for wide vectors
fn attention_sequence_gqa(
    mut out: ArrayViewMut2<f32>,
    mut att: ArrayViewMut3<f32>,
    qkv: ArrayView2<f32>,
    n_head: usize,
    n_kv_head: usize,
    alibi: Option<&[f32]>,
) {
    let (t, c) = out.dim();
    let hs = c / n_head;
    let group = n_head / n_kv_head; // query heads per key-value head
    let (k0, v0) = (c, c + n_kv_head * hs); // where the keys and the values start
    let scale = 1.0 / (hs as f32).sqrt();
    for h in 0..n_head {
        let kv = h / group;
        let q = qkv.slice(s![.., h * hs..(h + 1) * hs]); // (T, hs)
        let k = qkv.slice(s![.., k0 + kv * hs..k0 + (kv + 1) * hs]); // (T, hs)
        let v = qkv.slice(s![.., v0 + kv * hs..v0 + (kv + 1) * hs]); // (T, hs)
        let mut weights = att.index_axis_mut(Axis(0), h); // (T, T)
        par_mat_mul(scale, &q, &k.t(), 0.0, &mut weights); // (T, hs) x (hs, T) -> (T, T)
        for (i, row) in out_slice(&mut weights).chunks_exact_mut(t).enumerate() {
            if let Some(slopes) = alibi {
                for (j, score) in row[..=i].iter_mut().enumerate() {
                    *score -= slopes[h] * (i - j) as f32;
                }
            }
            causal_softmax(row, i);
        }
        let mut y = out.slice_mut(s![.., h * hs..(h + 1) * hs]); // (T, hs)
        par_mat_mul(1.0, &weights, &v, 0.0, &mut y); // (T, T) x (T, hs) -> (T, hs)
    }
}
// ANCHOR_END: attention_forward_gqa

// ANCHOR: attention_backward_gqa
/// The backward pass of [`attention_forward_gqa`]: [`attention_backward`]
/// for each query head, except that a key-value head's gradient is the sum
/// of what the query heads of its group send it (each of them read it).
/// The first head of a group writes it and the others add to it, in head
/// order. ALiBi's bias is a constant, so it needs nothing here.
///
/// Shapes: `dqkv`, `qkv` `(B, T, C + 2·n_kv_head·hs)`, overwritten; `datt`
/// `(B, nh, T, T)`, working space; `dout` `(B, T, C)`; `att`
/// `(B, nh, T, T)`.
pub fn attention_backward_gqa(
    dqkv: &mut ArrayRef3<f32>,
    datt: &mut ArrayRef4<f32>,
    dout: &ArrayRef3<f32>,
    qkv: &ArrayRef3<f32>,
    att: &ArrayRef4<f32>,
    n_head: usize,
    n_kv_head: usize,
) {
    assert!(
        n_kv_head > 0 && n_head.is_multiple_of(n_kv_head),
        "{n_kv_head} key-value heads cannot be shared by {n_head} query heads"
    );
    let sequences = Zip::from(dqkv.outer_iter_mut())
        .and(datt.outer_iter_mut())
        .and(dout.outer_iter())
        .and(qkv.outer_iter())
        .and(att.outer_iter());
    pool().install(|| {
        sequences.par_for_each(|dqkv, datt, dout, qkv, att| {
            simd(
                #[inline(always)]
                || attention_sequence_backward_gqa(dqkv, datt, dout, qkv, att, n_head, n_kv_head),
            )
        })
    });
}

/// [`attention_backward_gqa`] for one sequence, head after head.
#[inline(always)] // into `simd`'s closure, to be compiled for wide vectors
fn attention_sequence_backward_gqa(
    mut dqkv: ArrayViewMut2<f32>,
    mut datt: ArrayViewMut3<f32>,
    dout: ArrayView2<f32>,
    qkv: ArrayView2<f32>,
    att: ArrayView3<f32>,
    n_head: usize,
    n_kv_head: usize,
) {
    let (t, c) = dout.dim();
    let hs = c / n_head;
    let group = n_head / n_kv_head;
    let (k0, v0) = (c, c + n_kv_head * hs);
    let scale = 1.0 / (hs as f32).sqrt();
    for h in 0..n_head {
        let kv = h / group;
        let q = s![.., h * hs..(h + 1) * hs];
        let k = s![.., k0 + kv * hs..k0 + (kv + 1) * hs];
        let v = s![.., v0 + kv * hs..v0 + (kv + 1) * hs];
        let add = if h % group == 0 { 0.0 } else { 1.0 }; // the group's first head writes
        let dy = dout.slice(s![.., h * hs..(h + 1) * hs]); // (T, hs)
        let p = att.index_axis(Axis(0), h); // (T, T)
        let mut ds = datt.index_axis_mut(Axis(0), h); // (T, T)
        par_mat_mul(1.0, &dy, &qkv.slice(v).t(), 0.0, &mut ds); // dP: (T, hs) x (hs, T) -> (T, T)
        par_mat_mul(1.0, &p.t(), &dy, add, &mut dqkv.slice_mut(v)); // dV: (T, T) x (T, hs) -> (T, hs)
        let p = p.as_slice().expect("att is in row-major layout");
        for (i, (ds, p)) in (out_slice(&mut ds).chunks_exact_mut(t))
            .zip(p.chunks_exact(t))
            .enumerate()
        {
            causal_softmax_backward(ds, p, i);
        }
        par_mat_mul(scale, &ds, &qkv.slice(k), 0.0, &mut dqkv.slice_mut(q)); // dQ: (T, T) x (T, hs) -> (T, hs)
        par_mat_mul(scale, &ds.t(), &qkv.slice(q), add, &mut dqkv.slice_mut(k)); // dK: (T, T) x (T, hs) -> (T, hs)
    }
}
// ANCHOR_END: attention_backward_gqa
