//! Turning token ids into vectors, and telling the model where each token is.
//!
//! The model itself uses GPT-2's scheme, [`encoder_forward`]: a learned vector
//! per token (`wte`) plus a learned vector per position (`wpe`). The two
//! other schemes the book discusses are here as standalone functions:
//! [`sinusoidal_positions`] (the original transformer's fixed table) and
//! [`rope_apply`] (rotary embeddings, which rotate queries and keys instead
//! of adding anything).

use ndarray::{Array2, ArrayRef1, ArrayRef2, ArrayRef3, Zip};

// ANCHOR: encoder_forward
/// The embedding layer: each token's vector plus its position's vector.
///
/// `out[b, t, :] = wte[idx[b, t], :] + wpe[t, :]`. Looking up row `i` of
/// `wte` is the same as multiplying a one-hot vector (1 at `i`, 0 elsewhere)
/// by `wte`, without the multiplications.
///
/// Shapes: `idx` `(B, T)`, `wte` `(V, C)`, `wpe` `(block_size, C)`, `out`
/// `(B, T, C)`. Every id must be below `V` and `T` at most `block_size`
/// ([`crate::model::Gpt`] checks both before calling this).
///
/// ```
/// use listings::model::encoder_forward;
/// use ndarray::{array, Array3};
/// let wte = array![[1.0_f32, 0.0], [0.0, 1.0], [5.0, 5.0]]; // V = 3, C = 2
/// let wpe = array![[0.1_f32, 0.1], [0.2, 0.2]]; //              block_size = 2
/// let idx = array![[2_u32, 0]]; //                              B = 1, T = 2
/// let mut out = Array3::zeros((1, 2, 2));
/// encoder_forward(&mut out, &idx, &wte, &wpe);
/// assert_eq!(out, array![[[5.1, 5.1], [1.2, 0.2]]]);
/// ```
pub fn encoder_forward(
    out: &mut ArrayRef3<f32>,
    idx: &ArrayRef2<u32>,
    wte: &ArrayRef2<f32>,
    wpe: &ArrayRef2<f32>,
) {
    for ((b, t), &token) in idx.indexed_iter() {
        let token_vector = wte.row(token as usize); // (C)
        let position_vector = wpe.row(t); // (C)
        Zip::from(out.slice_mut(ndarray::s![b, t, ..]))
            .and(&token_vector)
            .and(&position_vector)
            .for_each(|y, &e, &p| *y = e + p);
    }
}
// ANCHOR_END: encoder_forward

// ANCHOR: encoder_backward
/// The backward pass of [`encoder_forward`]: each position's gradient goes
/// back to the two rows that were added to make it.
///
/// The forward pass copied row `idx[b, t]` of `wte` and row `t` of `wpe`, so
/// their gradients receive `dout[b, t, :]`; a token that appears several
/// times, or a position shared by every sequence, collects the sum (a
/// scatter-add): `dwte[idx[b, t], :] += dout[b, t, :]`,
/// `dwpe[t, :] += dout[b, t, :]`.
///
/// Shapes: `dwte` `(V, C)`, `dwpe` `(block_size, C)`, `dout` `(B, T, C)`,
/// `idx` `(B, T)`. Both gradients are added to.
///
/// ```
/// use listings::model::encoder_backward;
/// use ndarray::{array, Array2};
/// let (mut dwte, mut dwpe) = (Array2::zeros((3, 2)), Array2::zeros((2, 2)));
/// let idx = array![[2_u32, 2]]; //                   the same token twice
/// let dout = array![[[1.0_f32, 0.0], [0.0, 1.0]]]; // (B, T, C) = (1, 2, 2)
/// encoder_backward(&mut dwte, &mut dwpe, &dout, &idx);
/// assert_eq!(dwte, array![[0.0, 0.0], [0.0, 0.0], [1.0, 1.0]]);
/// assert_eq!(dwpe, array![[1.0, 0.0], [0.0, 1.0]]);
/// ```
pub fn encoder_backward(
    dwte: &mut ArrayRef2<f32>,
    dwpe: &mut ArrayRef2<f32>,
    dout: &ArrayRef3<f32>,
    idx: &ArrayRef2<u32>,
) {
    for ((b, t), &token) in idx.indexed_iter() {
        let dy = dout.slice(ndarray::s![b, t, ..]); // (C)
        Zip::from(dwte.row_mut(token as usize))
            .and(dwpe.row_mut(t))
            .and(&dy)
            .for_each(|dw, dp, &d| {
                *dw += d;
                *dp += d;
            });
    }
}
// ANCHOR_END: encoder_backward

// ANCHOR: sinusoidal_positions
/// The original transformer's fixed position table ("Attention Is All You
/// Need"): sines and cosines of the position at geometrically spaced
/// frequencies, nothing learned.
///
/// For position `pos` and channel pair `i` (channels `2i` and `2i+1`), with
/// angle `a = pos / 10000^(2i/C)`: `pe[pos, 2i] = sin(a)`, `pe[pos, 2i+1] =
/// cos(a)`. Low channels turn fast, high channels slowly, so every position
/// gets a distinct pattern. Shape `(T, C)`; with odd `C` the last channel is
/// a sine.
///
/// ```
/// use listings::model::sinusoidal_positions;
/// let pe = sinusoidal_positions(4, 6);
/// assert_eq!(pe.shape(), &[4, 6]);
/// assert_eq!(pe[[0, 0]], 0.0); // sin 0
/// assert_eq!(pe[[0, 1]], 1.0); // cos 0
/// assert_eq!(pe[[1, 0]], 1.0_f32.sin());
/// ```
pub fn sinusoidal_positions(t: usize, c: usize) -> Array2<f32> {
    Array2::from_shape_fn((t, c), |(pos, ch)| {
        let i = (ch / 2) as f64;
        let angle = pos as f64 / 10_000_f64.powf(2.0 * i / c as f64);
        if ch % 2 == 0 {
            angle.sin() as f32
        } else {
            angle.cos() as f32
        }
    })
}
// ANCHOR_END: sinusoidal_positions

// ANCHOR: rope_apply
/// Rotary position embedding (RoPE): rotate each pair of channels of a
/// query or key by an angle proportional to its position.
///
/// Channel pair `i` (channels `2i`, `2i+1`) of the vector at position `p` is
/// turned by `θ = p · 10000^(-2i/d)`:
/// `(x, y) -> (x·cos θ - y·sin θ, x·sin θ + y·cos θ)`. A rotated query
/// dotted with a rotated key then depends on their positions only through
/// the difference between them, which is what attention should care about.
///
/// Shapes: `x` `(T, d)` (one head's queries or keys), `positions` `T` long;
/// returns `(T, d)`.
///
/// # Panics
///
/// If `d` is odd or `positions` does not have one entry per row of `x`.
///
/// ```
/// use listings::model::rope_apply;
/// use ndarray::array;
/// let q = array![[1.0_f32, 0.0], [1.0, 0.0]];
/// let r = rope_apply(&q, &[0, 1]);
/// assert_eq!(r.row(0), q.row(0)); // position 0: no rotation
/// assert!((r[[1, 0]] - 1.0_f32.cos()).abs() < 1e-6);
/// assert!((r[[1, 1]] - 1.0_f32.sin()).abs() < 1e-6);
/// ```
pub fn rope_apply(x: &ArrayRef2<f32>, positions: &[usize]) -> Array2<f32> {
    let (t, d) = x.dim();
    assert!(
        d.is_multiple_of(2),
        "RoPE rotates pairs of channels, so d = {d} must be even"
    );
    assert_eq!(positions.len(), t, "one position per row of x");
    let mut out = x.to_owned();
    for (mut row, &p) in out.rows_mut().into_iter().zip(positions) {
        for i in 0..d / 2 {
            let theta = p as f64 * 10_000_f64.powf(-2.0 * i as f64 / d as f64);
            let (sin, cos) = (theta.sin() as f32, theta.cos() as f32);
            let (a, b) = (row[2 * i], row[2 * i + 1]);
            row[2 * i] = a * cos - b * sin;
            row[2 * i + 1] = a * sin + b * cos;
        }
    }
    out
}
// ANCHOR_END: rope_apply

// ANCHOR: cosine_similarity
/// How closely two vectors point the same way: `a·b / (|a|·|b|)`, from -1
/// (opposite) through 0 (unrelated) to 1 (same direction). Returns 0 if
/// either vector is all zeros.
///
/// ```
/// use listings::model::cosine_similarity;
/// use ndarray::array;
/// assert_eq!(cosine_similarity(&array![1.0, 0.0], &array![2.0, 0.0]), 1.0);
/// assert_eq!(cosine_similarity(&array![1.0, 0.0], &array![0.0, 3.0]), 0.0);
/// ```
pub fn cosine_similarity(a: &ArrayRef1<f32>, b: &ArrayRef1<f32>) -> f32 {
    let norms = a.dot(a).sqrt() * b.dot(b).sqrt();
    if norms == 0.0 { 0.0 } else { a.dot(b) / norms }
}
// ANCHOR_END: cosine_similarity
