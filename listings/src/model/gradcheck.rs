//! Finite-difference gradient checks: how chapter 5 tests every backward
//! pass. `listings/tests/gradcheck.rs` checks the layers and the model with
//! them, and the model's modules check their own layers (the modern block's,
//! the position kinds') in their unit tests.
//!
//! For a layer `out = f(inputs)`, random weights `w` of the output's shape
//! make the number `L = Σ w·out`, whose gradient with respect to the output
//! is `w`: the layer's backward pass fed `dout = w` must return `dL/dinput`,
//! which fourth-order central differences estimate from the forward pass,
//! `(8·(L(x+h) - L(x-h)) - (L(x+2h) - L(x-2h))) / 12h`, with `h = 0.05`.
//! The forward passes compute in f32 (`L` is summed in f64). The error of
//! an entry is `|analytic - numeric| / max(|analytic|, |numeric|, 0.01)`;
//! an entry that is not a finite number has an infinite error.

use ndarray::{Array, Array2, ArrayView, Dimension, ShapeBuilder};

use super::{ActivationGrads, Activations, Arch, Gpt, GptConfig, GptParams};
use crate::rng::{ChaCha8Rng, RngExt, randn, seeded};

/// The step of the finite differences.
pub const H: f32 = 0.05;

/// The largest error a gradient entry may have.
pub const TOLERANCE: f64 = 2e-2;

/// Gradients smaller than this are compared in absolute terms.
const FLOOR: f64 = 1e-2;

/// How many entries of each tensor a whole-model check samples (the
/// largest analytic gradient always among them).
pub const SAMPLES: usize = 24;

/// Every entry, for [`compare`].
pub const ALL: usize = usize::MAX;

/// One comparison of an analytic gradient with finite differences.
#[derive(Debug)]
pub struct Comparison {
    /// The largest error seen.
    pub max_rel: f64,
    /// How many entries were compared.
    pub checked: usize,
    /// The entry with the largest error: index, analytic, numeric.
    pub worst: (usize, f32, f64),
}

/// Compares `analytic` with central differences of `loss` at `x`, on every
/// entry of `x` or at most `samples` of them; `x` is restored afterwards.
pub fn compare(
    x: &mut [f32],
    analytic: &[f32],
    samples: usize,
    mut loss: impl FnMut(&[f32]) -> f64,
) -> Comparison {
    assert_eq!(x.len(), analytic.len(), "gradient and input differ in size");
    let entries = sample(analytic, samples, &mut seeded(x.len() as u64));
    let mut out = Comparison {
        max_rel: 0.0,
        checked: 0,
        worst: (0, 0.0, 0.0),
    };
    for i in entries {
        let keep = x[i];
        let mut at = |d: f32| {
            x[i] = keep + d;
            loss(x)
        };
        let numeric =
            (8.0 * (at(H) - at(-H)) - (at(2.0 * H) - at(-2.0 * H))) / (12.0 * f64::from(H));
        x[i] = keep;
        let a = f64::from(analytic[i]);
        let rel = if a.is_finite() && numeric.is_finite() {
            (a - numeric).abs() / a.abs().max(numeric.abs()).max(FLOOR)
        } else {
            f64::INFINITY
        };
        if rel >= out.max_rel {
            out.max_rel = rel;
            out.worst = (i, analytic[i], numeric);
        }
        out.checked += 1;
    }
    out
}

/// Every index, or a seeded sample of `samples` including the largest.
fn sample(analytic: &[f32], samples: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    if analytic.len() <= samples {
        return (0..analytic.len()).collect();
    }
    let largest = (0..analytic.len())
        .max_by(|&i, &j| analytic[i].abs().total_cmp(&analytic[j].abs()))
        .expect("not empty");
    let mut picks = vec![largest];
    picks.extend((1..samples).map(|_| rng.random_range(0..analytic.len())));
    picks
}

/// Prints one line of the report and returns the comparison's error.
pub fn report(layer: &str, tensor: &str, c: &Comparison) -> f64 {
    let (i, a, n) = c.worst;
    println!(
        "{layer:<16} {tensor:<22} max rel err {:9.2e} over {:>4} entries \
         (worst: entry {i}, analytic {a:+.6e}, numeric {n:+.6e})",
        c.max_rel, c.checked
    );
    c.max_rel
}

/// Checks and reports one gradient, panicking if its error is too large;
/// returns the error.
pub fn assert_grad(layer: &str, tensor: &str, c: Comparison) -> f64 {
    let err = report(layer, tensor, &c);
    assert!(
        err < TOLERANCE,
        "{layer} {tensor}: max relative error {err:.2e} is above {TOLERANCE:e} ({c:?})"
    );
    err
}

/// Random normal numbers of the given shape.
pub fn rand<Sh: ShapeBuilder>(shape: Sh, std: f32, seed: u64) -> Array<f32, Sh::Dim> {
    randn(shape, std, &mut seeded(seed))
}

/// `Σ w·out`, added up in f64.
pub fn weighted<'a>(
    w: impl IntoIterator<Item = &'a f32>,
    out: impl IntoIterator<Item = &'a f32>,
) -> f64 {
    w.into_iter()
        .zip(out)
        .map(|(&w, &o)| f64::from(w) * f64::from(o))
        .sum()
}

/// Numbers seen with the shape of `like`.
pub fn view<'a, D: Dimension>(x: &'a [f32], like: &Array<f32, D>) -> ArrayView<'a, f32, D> {
    ArrayView::from_shape(like.raw_dim(), x).expect("same size")
}

/// An array's numbers.
pub fn flat<D: Dimension>(x: &Array<f32, D>) -> &[f32] {
    x.as_slice().expect("contiguous")
}

/// An array's numbers, writable.
pub fn flat_mut<D: Dimension>(x: &mut Array<f32, D>) -> &mut [f32] {
    x.as_slice_mut().expect("contiguous")
}

/// The tiny model of the whole-model checks (4 heads of 4 channels, so
/// that key-value heads can be shared by 2 or 4).
pub fn tiny() -> GptConfig {
    GptConfig {
        vocab_size: 11,
        block_size: 6,
        n_layer: 2,
        n_head: 4,
        n_embd: 16,
    }
}

/// Parameters of the shapes of `arch` with every number drawn at random
/// (norm scales near 1), larger than GPT-2's initialisation so that every
/// gradient is well above the finite differences' noise.
pub fn random_params(config: &GptConfig, arch: &Arch, seed: u64) -> GptParams {
    let mut params = GptParams::zeros_arch(config, arch);
    let mut rng = seeded(seed);
    for (name, mut tensor) in params.tensors_mut() {
        let is_norm_scale = name.contains("ln_") && name.ends_with(".weight");
        let std = if name.contains("wte") || name.contains("wpe") {
            1.0
        } else {
            0.3
        };
        for x in tensor.iter_mut() {
            let z = randn(1, std, &mut rng)[0];
            *x = if is_norm_scale { 1.0 + z } else { z };
        }
    }
    params
}

/// Checks the gradients of every tensor of `params` (sampling `samples` of
/// each), with `loss` computed from a perturbed copy; prints a line per
/// tensor and returns the largest error with its tensor's name.
pub fn check_params(
    label: &str,
    params: &GptParams,
    grads: &GptParams,
    samples: usize,
    loss: impl Fn(&GptParams) -> f64,
) -> (f64, String) {
    let mut worst = (0.0, String::new());
    let grad_tensors = grads.tensors();
    for (k, (name, value)) in params.tensors().into_iter().enumerate() {
        let analytic = grad_tensors[k].1.as_slice().expect("contiguous");
        let mut x = value.as_slice().expect("contiguous").to_vec();
        let cmp = compare(&mut x, analytic, samples, |x| {
            let mut p = params.clone();
            let mut tensors = p.tensors_mut();
            tensors[k]
                .1
                .as_slice_mut()
                .expect("contiguous")
                .copy_from_slice(x);
            drop(tensors);
            loss(&p)
        });
        let short = name.trim_start_matches("transformer.");
        let err = report(label, short, &cmp);
        if err >= worst.0 {
            worst = (err, short.to_string());
        }
    }
    worst
}

/// The tiny model with the choices of `arch` and random parameters, its
/// gradients on a random batch, and a function giving the mean loss (in
/// f64) of any parameters on that batch.
pub fn whole_model(arch: Arch) -> (GptParams, GptParams, impl Fn(&GptParams) -> f64) {
    let config = tiny();
    let (b, t) = (2, config.block_size);
    let mut rng = seeded(3);
    let mut tokens = || Array2::from_shape_simple_fn((b, t), || rng.random_range(0..11_u32));
    let (idx, targets) = (tokens(), tokens());
    let params = random_params(&config, &arch, 5);
    let gpt = Gpt::from_parts(config, arch, params.clone()).expect("shapes fit");
    let mut acts = Activations::with_arch(&config, &arch, b, t);
    let mut dacts = ActivationGrads::with_arch(&config, &arch, b, t);
    let mut grads = GptParams::zeros_arch(&config, &arch);
    gpt.forward_with(&mut acts, &idx, Some(&targets))
        .expect("valid input");
    gpt.backward(&mut grads, &mut dacts, &acts);
    let loss = move |p: &GptParams| {
        let gpt = Gpt::from_parts(config, arch, p.clone()).expect("shapes fit");
        let mut acts = Activations::with_arch(&config, &arch, b, t);
        gpt.forward_with(&mut acts, &idx, Some(&targets))
            .expect("valid input");
        acts.losses.iter().map(|&l| f64::from(l)).sum::<f64>() / (b * t) as f64
    };
    (params, grads, loss)
}
