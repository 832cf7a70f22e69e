//! Direct preference optimisation (Rafailov et al., 2023): teaching a model
//! to prefer one response to another without a separate reward model.
//!
//! For a prompt with a chosen response `c` and a rejected one `r`, let
//! `ln π(y)` be the model's log-probability of response `y` (the sum over
//! its tokens) and `ln π_ref(y)` the same under the model before tuning.
//! DPO's implicit reward of a response is `β·(ln π(y) - ln π_ref(y))`: how
//! much more likely tuning made it. The loss asks the chosen response's
//! reward to beat the rejected one's:
//!
//! `loss = -ln σ(z)`, `z = β·((ln π(c) - ln π_ref(c)) - (ln π(r) - ln π_ref(r)))`.
//!
//! At the start `π = π_ref`, so `z = 0` and the loss is `ln 2`.

use ndarray::{Array2, ArrayRef2, Axis, Zip};

// ANCHOR: dpo
/// What one DPO step measured, averaged over the pairs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DpoStats {
    /// The loss, `-ln σ(z)`.
    pub loss: f32,
    /// The reward margin `z`: chosen's reward minus rejected's.
    pub margin: f32,
    /// The share of pairs whose chosen response has the larger reward.
    pub accuracy: f32,
}

/// The log-probability of each row's counted tokens: `-Σ mask · nll`.
///
/// Shapes: `nll` and `mask` (1 where a response token is predicted, 0
/// elsewhere) `(B, T)`; returns `(B)`.
pub fn sequence_logprobs(nll: &ArrayRef2<f32>, mask: &ArrayRef2<f32>) -> Vec<f32> {
    (nll * mask).sum_axis(Axis(1)).mapv(|s| -s).to_vec()
}

/// The DPO loss of `N` pairs and its gradient, as the weights
/// [`crate::finetune::tuner::FineTuner::step_logits`] takes: the batch holds
/// the chosen responses in rows `0..N` and the rejected ones in rows
/// `N..2N`; `reference` is `ln π_ref` of each row, computed once before
/// tuning.
///
/// The gradient: with `s = σ(-z)`, `dloss/dz = -s`, so `dloss/d ln π(c) =
/// -β·s` and `dloss/d ln π(r) = +β·s`; and `ln π = -Σ nll`, so each counted
/// position of a chosen row gets weight `β·s / N`, and of a rejected row
/// `-β·s / N`. Pairs the model already ranks well (`z` large, `s` near 0)
/// stop pulling.
///
/// Shapes: `nll` and `mask` `(2N, T)`, `reference` `(2N)`.
pub fn dpo_objective(
    nll: &ArrayRef2<f32>,
    mask: &ArrayRef2<f32>,
    reference: &[f32],
    beta: f32,
) -> (DpoStats, Array2<f32>) {
    let logp = sequence_logprobs(nll, mask);
    let n = logp.len() / 2;
    let mut weights = Array2::zeros(nll.raw_dim());
    let mut stats = DpoStats {
        loss: 0.0,
        margin: 0.0,
        accuracy: 0.0,
    };
    for k in 0..n {
        let (c, r) = (k, n + k);
        let z = beta * ((logp[c] - reference[c]) - (logp[r] - reference[r]));
        stats.loss += softplus(-z) / n as f32; // -ln σ(z)
        stats.margin += z / n as f32;
        stats.accuracy += f32::from(u8::from(z > 0.0)) / n as f32;
        let s = sigmoid(-z);
        for (row, sign) in [(c, 1.0), (r, -1.0)] {
            let w = sign * beta * s / n as f32;
            Zip::from(weights.row_mut(row))
                .and(mask.row(row))
                .for_each(|w_t, &m| *w_t = w * m);
        }
    }
    (stats, weights)
}

/// `σ(x) = 1 / (1 + e^(-x))`.
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// `ln(1 + e^x)`, without overflow for large `x`.
pub fn softplus(x: f32) -> f32 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}
// ANCHOR_END: dpo

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn before_tuning_the_loss_is_ln_2() {
        let nll = array![[0.5_f32, 1.0, 2.0], [0.1, 0.2, 0.3]];
        let mask = array![[0.0_f32, 1.0, 1.0], [0.0, 1.0, 1.0]];
        let reference = sequence_logprobs(&nll, &mask);
        let (stats, weights) = dpo_objective(&nll, &mask, &reference, 0.1);
        assert!((stats.loss - 2_f32.ln()).abs() < 1e-6);
        assert_eq!(stats.margin, 0.0);
        // σ(0) = 1/2: each chosen token is pushed up with weight β/2, each rejected down.
        assert_eq!(weights, array![[0.0, 0.05, 0.05], [0.0, -0.05, -0.05]]);
    }

    #[test]
    fn softplus_is_stable() {
        assert!((softplus(0.0) - 2_f32.ln()).abs() < 1e-7);
        assert_eq!(softplus(200.0), 200.0);
        assert!(softplus(-200.0) >= 0.0);
    }
}
