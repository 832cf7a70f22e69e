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

// ANCHOR: train_classifier
/// Which position of a sequence the head reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readout {
    /// The last token: under the causal mask, the only position that has
    /// seen the whole sequence.
    Last,
    /// The first token, which has seen only itself.
    First,
}

/// Token sequences padded at the end into one batch, with the position
/// `readout` reads in each row.
pub fn classifier_batch(
    sequences: &[&[u32]],
    readout: Readout,
    pad: u32,
) -> (Array2<u32>, Vec<usize>) {
    let t = sequences.iter().map(|s| s.len()).max().unwrap_or(1);
    let mut idx = Array2::from_elem((sequences.len(), t), pad);
    for (row, s) in sequences.iter().enumerate() {
        idx.row_mut(row)
            .slice_mut(s![..s.len()])
            .assign(&ndarray::aview1(s));
    }
    let positions = (sequences.iter())
        .map(|s| match readout {
            Readout::Last => s.len() - 1,
            Readout::First => 0,
        })
        .collect();
    (idx, positions)
}

/// Trains `head` (and whatever `tuner`'s method trains of the model) for
/// `steps` steps on all of `examples` at once: token sequences and their
/// labels. The head has an AdamW of its own, at the same learning rate.
/// Returns the losses.
pub fn train_classifier(
    tuner: &mut crate::finetune::tuner::FineTuner,
    head: &mut ClassifierHead,
    examples: &[(Vec<u32>, usize)],
    readout: Readout,
    steps: usize,
    lr: f32,
) -> Result<Vec<f32>, crate::train::step::TrainError> {
    let sequences: Vec<&[u32]> = examples.iter().map(|(s, _)| s.as_slice()).collect();
    let labels: Vec<usize> = examples.iter().map(|&(_, l)| l).collect();
    let (idx, positions) = classifier_batch(&sequences, readout, 0);
    let mut optimizer = crate::optim::AdamW::new(crate::optim::AdamWConfig {
        lr,
        ..Default::default()
    });
    let mut losses = Vec::new(); // not sized by `steps`, which may be huge
    for _ in 0..steps {
        let mut dhead = head.zeros_like();
        let loss = tuner.step_hidden(&idx, lr, 1.0, |h, dh| {
            let (loss, dscores) = classify_loss(&classify_forward(h, &positions, head), &labels);
            classify_backward(dh, &mut dhead, &dscores, h, &positions, head);
            loss
        })?;
        let mut params = [
            (head.weight.as_slice_mut(), dhead.weight.as_slice(), true),
            (head.bias.as_slice_mut(), dhead.bias.as_slice(), false),
        ]
        .map(|(value, grad, decay)| crate::optim::Param {
            value: value.expect("contiguous"),
            grad: grad.expect("contiguous"),
            decay,
        });
        optimizer.step(&mut params);
        losses.push(loss);
    }
    Ok(losses)
}

/// The share of `examples` whose label the head scores highest.
pub fn accuracy(
    gpt: &crate::model::Gpt,
    head: &ClassifierHead,
    examples: &[(Vec<u32>, usize)],
    readout: Readout,
) -> Result<f32, crate::model::ModelError> {
    let sequences: Vec<&[u32]> = examples.iter().map(|(s, _)| s.as_slice()).collect();
    let (idx, positions) = classifier_batch(&sequences, readout, 0);
    let mut acts = crate::model::Activations::new(gpt.config(), 0, 0);
    gpt.forward_with(&mut acts, &idx, None)?;
    let scores = classify_forward(&acts.lnf, &positions, head);
    let right = (scores.rows().into_iter().zip(examples))
        .filter(|(row, (_, label))| {
            let best = (row.iter().enumerate()).fold((0, f32::NEG_INFINITY), |b, (i, &v)| {
                if v > b.1 { (i, v) } else { b }
            });
            best.0 == *label
        })
        .count();
    Ok(right as f32 / examples.len() as f32)
}
// ANCHOR_END: train_classifier
