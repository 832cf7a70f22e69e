//! Optimisers, the learning-rate schedule and gradient clipping.
//!
//! An optimiser turns gradients into changes of the parameters. All of them
//! here work on flat `f32` slices, one per parameter tensor, so they do not
//! care about the model's shapes:
//!
//! - [`Sgd`]: step against the gradient, `p -= lr * g`;
//! - [`Momentum`]: step against a running average of gradients, so that
//!   directions that agree from step to step build up speed;
//! - [`AdamW`]: scale each parameter's step by a running estimate of its
//!   gradient's size, and shrink weights towards zero separately from the
//!   gradient step (decoupled weight decay).
//!
//! [`cosine_lr`] is nanoGPT's schedule: linear warm-up, then a cosine decay to
//! a floor. [`clip_grad_norm`] rescales all gradients together when their
//! combined length is too large.

use crate::parallel::simd;

/// One parameter tensor as the optimiser sees it.
pub struct Param<'a> {
    /// The values, updated in place.
    pub value: &'a mut [f32],
    /// d(loss)/d(value), same length.
    pub grad: &'a [f32],
    /// Whether weight decay applies: nanoGPT decays the 2-D weight matrices
    /// and embeddings, not biases or LayerNorm parameters.
    pub decay: bool,
}

fn check_lengths(params: &[Param], state: &[Vec<f32>], name: &str) {
    assert_eq!(
        params.len(),
        state.len(),
        "{name}: the number of parameter tensors changed"
    );
    for (i, p) in params.iter().enumerate() {
        assert_eq!(
            p.value.len(),
            p.grad.len(),
            "{name}: tensor {i}: value and grad lengths differ"
        );
        assert_eq!(
            p.value.len(),
            state[i].len(),
            "{name}: tensor {i} changed size"
        );
    }
}

// ANCHOR: sgd
/// Plain stochastic gradient descent.
pub struct Sgd {
    /// Learning rate: how far to step against the gradient.
    pub lr: f32,
}

impl Sgd {
    /// p -= lr * g, for every parameter.
    pub fn step(&mut self, params: &mut [Param]) {
        for p in params.iter_mut() {
            for (w, g) in p.value.iter_mut().zip(p.grad) {
                *w -= self.lr * g;
            }
        }
    }
}
// ANCHOR_END: sgd

// ANCHOR: momentum
/// SGD with momentum: the step follows a decaying sum of past gradients.
pub struct Momentum {
    /// Learning rate.
    pub lr: f32,
    /// How much of the previous velocity is kept each step (0.9 is usual).
    pub beta: f32,
    velocity: Vec<Vec<f32>>,
}

impl Momentum {
    /// A momentum optimiser with zero initial velocity.
    pub fn new(lr: f32, beta: f32) -> Momentum {
        Momentum {
            lr,
            beta,
            velocity: Vec::new(),
        }
    }

    /// v = beta * v + g; p -= lr * v.
    pub fn step(&mut self, params: &mut [Param]) {
        if self.velocity.is_empty() {
            self.velocity = params.iter().map(|p| vec![0.0; p.value.len()]).collect();
        }
        check_lengths(params, &self.velocity, "Momentum");
        for (p, v) in params.iter_mut().zip(&mut self.velocity) {
            for ((w, g), v) in p.value.iter_mut().zip(p.grad).zip(v.iter_mut()) {
                *v = self.beta * *v + g;
                *w -= self.lr * *v;
            }
        }
    }
}
// ANCHOR_END: momentum

/// AdamW's settings; the defaults are nanoGPT's (`beta2` 0.95 there for
/// large runs, 0.99 for the small Shakespeare model).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWConfig {
    /// Learning rate (overwritten each step by the schedule, if one is used).
    pub lr: f32,
    /// Decay of the running mean of gradients.
    pub beta1: f32,
    /// Decay of the running mean of squared gradients.
    pub beta2: f32,
    /// Added to the denominator so that a zero gradient history cannot divide by zero.
    pub eps: f32,
    /// How strongly decayed weights are pulled towards zero each step.
    pub weight_decay: f32,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: 0.1,
        }
    }
}

/// Adam with decoupled weight decay (Loshchilov and Hutter), as PyTorch's
/// `torch.optim.AdamW` computes it.
pub struct AdamW {
    /// The settings; `lr` may be changed between steps.
    pub config: AdamWConfig,
    /// Steps taken so far.
    pub t: u64,
    /// Running mean of gradients, per tensor.
    pub m: Vec<Vec<f32>>,
    /// Running mean of squared gradients, per tensor.
    pub v: Vec<Vec<f32>>,
}

impl AdamW {
    /// An optimiser with empty state; the state is sized on the first step.
    pub fn new(config: AdamWConfig) -> AdamW {
        AdamW {
            config,
            t: 0,
            m: Vec::new(),
            v: Vec::new(),
        }
    }

    // ANCHOR: adamw_step
    /// One AdamW step over every parameter tensor:
    ///
    /// m = β1·m + (1 − β1)·g, v = β2·v + (1 − β2)·g², then, with the bias
    /// corrections m̂ = m / (1 − β1ᵗ) and v̂ = v / (1 − β2ᵗ),
    /// p = p·(1 − lr·wd) − lr·m̂ / (√v̂ + ε), the decay only where `decay`.
    pub fn step(&mut self, params: &mut [Param]) {
        if self.m.is_empty() {
            self.m = params.iter().map(|p| vec![0.0; p.value.len()]).collect();
            self.v = self.m.clone();
        }
        check_lengths(params, &self.m, "AdamW");
        self.t += 1;
        let AdamWConfig {
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
        } = self.config;
        let bc1 = 1.0 - beta1.powi(self.t as i32);
        let bc2 = 1.0 - beta2.powi(self.t as i32);
        for (i, p) in params.iter_mut().enumerate() {
            let shrink = if p.decay {
                1.0 - lr * weight_decay
            } else {
                1.0
            };
            let (m, v) = (&mut self.m[i], &mut self.v[i]);
            // The loop compiled for wide vector instructions (see `crate::parallel`).
            simd(
                #[inline(always)]
                || {
                    for (((w, &g), m), v) in p
                        .value
                        .iter_mut()
                        .zip(p.grad)
                        .zip(m.iter_mut())
                        .zip(v.iter_mut())
                    {
                        *m = beta1 * *m + (1.0 - beta1) * g;
                        *v = beta2 * *v + (1.0 - beta2) * g * g;
                        let m_hat = *m / bc1;
                        let v_hat = *v / bc2;
                        *w = *w * shrink - lr * m_hat / (v_hat.sqrt() + eps);
                    }
                },
            );
        }
    }
    // ANCHOR_END: adamw_step

    // ANCHOR: adamw_step_reference
    /// [`AdamW::step`] written to be read: the formula one number at a time.
    /// The model runs the fast version; a test checks that the two give the
    /// same numbers, to the bit.
    pub fn step_reference(&mut self, params: &mut [Param]) {
        if self.m.is_empty() {
            // Both running averages start at zero, one number per parameter.
            self.m = params.iter().map(|p| vec![0.0; p.value.len()]).collect();
            self.v = self.m.clone();
        }
        self.t += 1;
        let t = self.t as i32;
        let AdamWConfig {
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
        } = self.config;
        for (i, p) in params.iter_mut().enumerate() {
            let decay = if p.decay { weight_decay } else { 0.0 };
            let averages = self.m[i].iter_mut().zip(self.v[i].iter_mut());
            for ((w, &g), (m, v)) in p.value.iter_mut().zip(p.grad).zip(averages) {
                *m = beta1 * *m + (1.0 - beta1) * g; // the running mean of g
                *v = beta2 * *v + (1.0 - beta2) * g * g; // and of g²
                let m_hat = *m / (1.0 - beta1.powi(t)); // both corrected for
                let v_hat = *v / (1.0 - beta2.powi(t)); // starting at zero
                *w = *w * (1.0 - lr * decay) - lr * m_hat / (v_hat.sqrt() + eps);
            }
        }
    }
    // ANCHOR_END: adamw_step_reference
}

// ANCHOR: cosine_lr
/// nanoGPT's learning-rate schedule at step `it`: a linear warm-up to
/// `max_lr` over `warmup` steps, a cosine decay to `min_lr` at
/// `decay_iters`, and `min_lr` after that.
pub fn cosine_lr(it: usize, max_lr: f32, min_lr: f32, warmup: usize, decay_iters: usize) -> f32 {
    if it < warmup {
        return max_lr * (it + 1) as f32 / (warmup + 1) as f32;
    }
    if it > decay_iters {
        return min_lr;
    }
    let ratio = (it - warmup) as f32 / (decay_iters - warmup).max(1) as f32;
    let coeff = 0.5 * (1.0 + (std::f32::consts::PI * ratio).cos()); // 1 -> 0
    min_lr + coeff * (max_lr - min_lr)
}
// ANCHOR_END: cosine_lr

// ANCHOR: clip_grad_norm
/// Scales all gradients by one factor so that their combined Euclidean norm
/// is at most `max_norm`, as PyTorch's `clip_grad_norm_` does. Returns the
/// norm before clipping, a useful number to log: spikes in it come before
/// divergence.
pub fn clip_grad_norm(grads: &mut [&mut [f32]], max_norm: f32) -> f32 {
    let sum_sq: f64 = grads.iter().map(|g| sum_of_squares(g)).sum();
    let norm = sum_sq.sqrt() as f32;
    let scale = max_norm / (norm + 1e-6);
    if scale < 1.0 {
        for g in grads.iter_mut() {
            for x in g.iter_mut() {
                *x *= scale;
            }
        }
    }
    norm
}
// ANCHOR_END: clip_grad_norm

/// `Σ x²` over `xs`, in `f64`, for [`clip_grad_norm`].
///
/// One running sum would make every addition wait for the one before it;
/// eight partial sums, one per lane of a vector register, let the CPU do
/// eight at a time. That changes the order of the additions, and so the
/// last bits of the `f64` sum, which are far below what the `f32` norm
/// keeps.
fn sum_of_squares(xs: &[f32]) -> f64 {
    simd(
        #[inline(always)]
        || {
            let mut lanes = [0.0_f64; 8];
            let chunks = xs.chunks_exact(8);
            let rest: f64 = chunks
                .remainder()
                .iter()
                .map(|&x| f64::from(x).powi(2))
                .sum();
            for chunk in chunks {
                for (lane, &x) in lanes.iter_mut().zip(chunk) {
                    *lane += f64::from(x) * f64::from(x);
                }
            }
            lanes.iter().sum::<f64>() + rest
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Minimises f(x, y) = (x - 3)² + 10 (y + 1)², a narrow valley.
    fn valley_grad(p: &[f32]) -> Vec<f32> {
        vec![2.0 * (p[0] - 3.0), 20.0 * (p[1] + 1.0)]
    }

    fn run(mut step: impl FnMut(&mut [Param]), steps: usize) -> Vec<f32> {
        let mut p = vec![0.0_f32, 0.0];
        for _ in 0..steps {
            let g = valley_grad(&p);
            step(&mut [Param {
                value: &mut p,
                grad: &g,
                decay: false,
            }]);
        }
        p
    }

    #[test]
    fn every_optimiser_finds_the_bottom_of_the_valley() {
        let mut sgd = Sgd { lr: 0.04 };
        let mut mom = Momentum::new(0.01, 0.9);
        let mut adam = AdamW::new(AdamWConfig {
            lr: 0.1,
            weight_decay: 0.0,
            ..Default::default()
        });
        for p in [
            run(|ps| sgd.step(ps), 300),
            run(|ps| mom.step(ps), 300),
            run(|ps| adam.step(ps), 300),
        ] {
            assert!(
                (p[0] - 3.0).abs() < 1e-2 && (p[1] + 1.0).abs() < 1e-2,
                "{p:?}"
            );
        }
    }

    #[test]
    fn momentum_gets_further_than_sgd_in_the_same_steps() {
        let mut sgd = Sgd { lr: 0.01 };
        let mut mom = Momentum::new(0.01, 0.9);
        let (a, b) = (run(|ps| sgd.step(ps), 50), run(|ps| mom.step(ps), 50));
        assert!(
            (b[0] - 3.0).abs() < (a[0] - 3.0).abs() / 3.0,
            "sgd {a:?} momentum {b:?}"
        );
    }

    #[test]
    fn adamw_first_step_matches_the_formula() {
        // After one step, m̂ = g and v̂ = g², so the step is lr * g / (|g| + eps).
        let mut w = vec![1.0_f32, -2.0];
        let g = vec![0.5_f32, -4.0];
        let cfg = AdamWConfig {
            lr: 0.1,
            weight_decay: 0.5,
            ..Default::default()
        };
        let mut opt = AdamW::new(cfg);
        opt.step(&mut [Param {
            value: &mut w,
            grad: &g,
            decay: true,
        }]);
        let expect = |w0: f32, g: f32| w0 * (1.0 - 0.1 * 0.5) - 0.1 * g / (g.abs() + 1e-8);
        assert!((w[0] - expect(1.0, 0.5)).abs() < 1e-6);
        assert!((w[1] - expect(-2.0, -4.0)).abs() < 1e-6);
    }

    #[test]
    fn weight_decay_only_touches_tensors_marked_for_it() {
        let (mut a, mut b) = (vec![1.0_f32], vec![1.0_f32]);
        let zero = vec![0.0_f32];
        let mut opt = AdamW::new(AdamWConfig {
            lr: 0.1,
            weight_decay: 0.1,
            ..Default::default()
        });
        opt.step(&mut [
            Param {
                value: &mut a,
                grad: &zero,
                decay: true,
            },
            Param {
                value: &mut b,
                grad: &zero,
                decay: false,
            },
        ]);
        assert!((a[0] - 0.99).abs() < 1e-7);
        assert_eq!(b[0], 1.0);
    }

    #[test]
    fn the_schedule_warms_up_decays_and_floors() {
        let lr = |it| cosine_lr(it, 1e-3, 1e-4, 100, 2000);
        assert!((lr(0) - 1e-3 / 101.0).abs() < 1e-9);
        assert!((lr(99) - 1e-3 * 100.0 / 101.0).abs() < 1e-9);
        assert!((lr(100) - 1e-3).abs() < 1e-9);
        assert!((lr(1050) - 5.5e-4).abs() < 1e-7);
        assert!((lr(2000) - 1e-4).abs() < 1e-9);
        assert_eq!(lr(5000), 1e-4);
        assert!((100..2000).all(|it| lr(it + 1) <= lr(it)));
    }

    #[test]
    fn clipping_scales_all_gradients_together_and_only_when_needed() {
        let (mut a, mut b) = (vec![3.0_f32], vec![4.0_f32]);
        let norm = clip_grad_norm(&mut [&mut a, &mut b], 1.0);
        assert!((norm - 5.0).abs() < 1e-6);
        assert!((a[0] - 0.6).abs() < 1e-5 && (b[0] - 0.8).abs() < 1e-5);
        let mut c = vec![0.3_f32];
        assert!((clip_grad_norm(&mut [&mut c], 1.0) - 0.3).abs() < 1e-7);
        assert_eq!(c[0], 0.3);
    }
}
