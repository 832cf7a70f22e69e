//! A classifier on top of a language model: a new output layer that reads
//! the hidden state of one position and scores `K` labels instead of `V`
//! tokens.

use ndarray::{Array1, Array2, ArrayRef1, ArrayRef2, ArrayRef3, s};

use crate::model::softmax;
use crate::rng::{randn, seeded};

// ANCHOR: head
/// A linear head `(C) -> (K)`: weight `(C, K)`, bias `(K)`.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassifierHead {
    /// `(C, K)`, drawn normal with standard deviation 0.02.
    pub weight: Array2<f32>,
    /// `(K)`, zero.
    pub bias: Array1<f32>,
}

impl ClassifierHead {
    /// A fresh head for `n_embd` channels and `labels` labels.
    pub fn new(n_embd: usize, labels: usize, seed: u64) -> Self {
        Self {
            weight: randn((n_embd, labels), 0.02, &mut seeded(seed)),
            bias: Array1::zeros(labels),
        }
    }

    /// A head of zeros of this one's shape (a gradient).
    pub fn zeros_like(&self) -> Self {
        Self {
            weight: Array2::zeros(self.weight.raw_dim()),
            bias: Array1::zeros(self.bias.raw_dim()),
        }
    }
}

/// The head's scores for each row, read at position `positions[b]` of row
/// `b` of `h` (`ln_f`'s output).
///
/// Shapes: `h` `(B, T, C)`; returns `(B, K)`.
pub fn classify_forward(
    h: &ArrayRef3<f32>,
    positions: &[usize],
    head: &ClassifierHead,
) -> Array2<f32> {
    let rows: Vec<_> = (positions.iter().enumerate())
        .map(|(b, &t)| h.slice(s![b, t, ..]).dot(&head.weight) + &head.bias) // (C) x (C, K) -> (K)
        .collect();
    let views: Vec<_> = rows.iter().map(|r| r.view()).collect();
    ndarray::stack(ndarray::Axis(0), &views).expect("rows of K scores")
}

/// The mean cross-entropy of the scores against the labels, and its
/// gradient with respect to the scores (softmax minus one-hot, over `B`).
///
/// Shapes: `scores` `(B, K)`, `labels` `(B)`.
pub fn classify_loss(scores: &ArrayRef2<f32>, labels: &[usize]) -> (f32, Array2<f32>) {
    let b = labels.len() as f32;
    let mut dscores = Array2::zeros(scores.raw_dim());
    let mut loss = 0.0;
    for ((z, mut dz), &label) in scores
        .rows()
        .into_iter()
        .zip(dscores.rows_mut())
        .zip(labels)
    {
        let p = softmax(&z);
        loss -= p[label].ln() / b;
        dz.assign(&(p / b));
        dz[label] -= 1.0 / b;
    }
    (loss, dscores)
}

/// The backward pass of [`classify_forward`]: the head's gradients added
/// into `dhead`, and the gradient of `h` added into `dh` at the positions
/// read (every other position had no effect on the scores).
pub fn classify_backward(
    dh: &mut ArrayRef3<f32>,
    dhead: &mut ClassifierHead,
    dscores: &ArrayRef2<f32>,
    h: &ArrayRef3<f32>,
    positions: &[usize],
    head: &ClassifierHead,
) {
    for (b, &t) in positions.iter().enumerate() {
        let (x, dy) = (h.slice(s![b, t, ..]), dscores.row(b)); // (C), (K)
        outer_add(&mut dhead.weight, &x, &dy); // dW += xᵀ·dy
        dhead.bias += &dy;
        let mut dx = dh.slice_mut(s![b, t, ..]);
        dx += &head.weight.dot(&dy); // (C, K) x (K) -> (C)
    }
}
// ANCHOR_END: head

/// `m += x ⊗ y`.
fn outer_add(m: &mut Array2<f32>, x: &ArrayRef1<f32>, y: &ArrayRef1<f32>) {
    for (mut row, &xi) in m.rows_mut().into_iter().zip(x) {
        row.scaled_add(xi, y);
    }
}
