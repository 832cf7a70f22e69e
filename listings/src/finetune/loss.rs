//! Losses chosen token by token: the response-only loss of instruction
//! tuning and the sequence scores of preference tuning are both sums of
//! `-ln p(target)` over some positions, each with a weight.

use ndarray::{Array2, ArrayRef2, ArrayRef3, Axis, Zip};

use crate::model::{crossentropy_forward, softmax};

// ANCHOR: token_nll
/// `-ln p(target)` at every position: how surprised the model is by each
/// next token, kept apart rather than averaged.
///
/// Shapes: `logits` `(B, T, V)`, `targets` `(B, T)`; returns `(B, T)`.
pub fn token_nll(logits: &ArrayRef3<f32>, targets: &ArrayRef2<u32>) -> Array2<f32> {
    let mut nll = Array2::zeros(targets.raw_dim());
    crossentropy_forward(&mut nll, logits, targets); // the per-position losses it keeps
    nll
}
// ANCHOR_END: token_nll

// ANCHOR: weighted_nll
/// The loss `Σ weights · nll`: positions with weight 0 do not count.
///
/// With weight `1 / n` on the `n` positions of a response and 0 elsewhere,
/// this is the mean loss over the response alone.
pub fn weighted_nll(nll: &ArrayRef2<f32>, weights: &ArrayRef2<f32>) -> f32 {
    Zip::from(nll)
        .and(weights)
        .fold(0.0, |sum, &l, &w| if w == 0.0 { sum } else { sum + w * l })
}

/// The backward pass of [`weighted_nll`] over [`token_nll`]: the gradient of
/// `Σ weights · nll` with respect to the logits.
///
/// At one position, `-ln p(target)` has the gradient `softmax - onehot`
/// (chapter 5's cross-entropy backward pass, before its division by `B·T`),
/// so each row is that times its weight; a position of weight 0 gets a zero
/// row and moves nothing. A negative weight pushes the target's
/// probability down instead of up (preference tuning uses both signs).
/// `dlogits` is overwritten.
///
/// Shapes: `dlogits`, `logits` `(B, T, V)`; `targets`, `weights` `(B, T)`.
pub fn weighted_nll_backward(
    dlogits: &mut ArrayRef3<f32>,
    logits: &ArrayRef3<f32>,
    targets: &ArrayRef2<u32>,
    weights: &ArrayRef2<f32>,
) {
    let rows = dlogits
        .lanes_mut(Axis(2))
        .into_iter()
        .zip(logits.lanes(Axis(2))); // (V) each
    for ((mut dz, z), (&target, &w)) in rows.zip(targets.iter().zip(weights)) {
        if w == 0.0 {
            dz.fill(0.0);
            continue;
        }
        dz.assign(&(softmax(&z) * w)); // w · p
        dz[target as usize] -= w; // w · (p - onehot)
    }
}
// ANCHOR_END: weighted_nll
