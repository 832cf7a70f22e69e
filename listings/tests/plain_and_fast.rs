//! The plain versions written for reading agree with the fast ones the
//! model runs: the backward passes of LayerNorm and attention to float
//! rounding, the AdamW step and the whole training step to the bit.
//!
//! `cargo test -p listings --test plain_and_fast -- --nocapture` prints the
//! largest differences found.

use listings::model::{
    Gpt, GptConfig, LayerNormParams, attention_backward, attention_backward_reference,
    attention_forward, layernorm_backward, layernorm_backward_reference, layernorm_forward,
};
use listings::optim::{AdamW, AdamWConfig, Param};
use listings::rng::{RngExt, randn, seeded};
use listings::train::step::{TrainError, Trainer, step_reference};
use ndarray::{Array2, Array3, Array4, ArrayRef, Dimension};

/// The largest `|a - b|`, and the largest `|a|`, over two arrays of one shape.
fn largest_difference<D: Dimension>(a: &ArrayRef<f32, D>, b: &ArrayRef<f32, D>) -> (f32, f32) {
    assert_eq!(a.shape(), b.shape());
    let diff = (a.iter().zip(b)).fold(0.0_f32, |m, (x, y)| m.max((x - y).abs()));
    let size = a.iter().fold(0.0_f32, |m, x| m.max(x.abs()));
    (diff, size)
}

#[test]
fn layernorm_backward_plain_and_fast_agree_to_rounding() {
    // (B, T, C): the toy model's 64 channels, GPT-2 small's 768, odd sizes
    // that leave a remainder after the fast version's 16 lanes.
    for (b, t, c) in [(4, 64, 64), (2, 5, 768), (3, 7, 5), (1, 1, 1), (2, 3, 17)] {
        let mut rng = seeded((b * 1000 + t * 10 + c) as u64);
        // Inputs with a mean far from 0 and a spread far from 1, as a
        // residual stream has.
        let inp = randn((b, t, c), 3.0, &mut rng) + 2.0;
        let dout = randn((b, t, c), 1.0, &mut rng);
        let params = LayerNormParams {
            weight: randn(c, 1.0, &mut rng) + 1.0,
            bias: randn(c, 1.0, &mut rng),
        };
        let (mut mean, mut rstd) = (Array2::zeros((b, t)), Array2::zeros((b, t)));
        layernorm_forward(
            &mut Array3::zeros((b, t, c)),
            &mut mean,
            &mut rstd,
            &inp,
            &params,
        );
        // Both add into what is there: start them from the same numbers.
        let dinp0 = randn((b, t, c), 1.0, &mut rng);
        let dparams0 = LayerNormParams {
            weight: randn(c, 1.0, &mut rng),
            bias: randn(c, 1.0, &mut rng),
        };
        let (mut fast, mut fast_params) = (dinp0.clone(), dparams0.clone());
        layernorm_backward(
            &mut fast,
            &mut fast_params,
            &dout,
            &inp,
            &params,
            &mean,
            &rstd,
        );
        let (mut plain, mut plain_params) = (dinp0, dparams0);
        layernorm_backward_reference(
            &mut plain,
            &mut plain_params,
            &dout,
            &inp,
            &params,
            &mean,
            &rstd,
        );
        for (name, (diff, size)) in [
            ("dinp", largest_difference(&fast, &plain)),
            (
                "dweight",
                largest_difference(&fast_params.weight, &plain_params.weight),
            ),
            (
                "dbias",
                largest_difference(&fast_params.bias, &plain_params.bias),
            ),
        ] {
            println!(
                "layernorm_backward (B, T, C) = ({b}, {t}, {c}), {name}: \
                 largest difference {diff:.3e}, largest value {size:.3}"
            );
            // A few units in the last place of the largest value: the two
            // add up the same numbers in different orders.
            assert!(diff <= 1e-5 * size.max(1.0), "{name}: {diff} of {size}");
        }
    }
}

#[test]
fn attention_backward_plain_and_fast_agree_to_rounding() {
    // (B, T, nh, hs): the toy model's heads, GPT-2 small's, odd sizes.
    for (b, t, n_head, hs) in [(4, 64, 4, 16), (1, 32, 12, 64), (3, 7, 2, 5), (1, 1, 1, 1)] {
        let c = n_head * hs;
        let mut rng = seeded((b * 1000 + t * 10 + c) as u64);
        let qkv = randn((b, t, 3 * c), 1.0, &mut rng);
        let dout = randn((b, t, c), 1.0, &mut rng);
        let mut att = Array4::zeros((b, n_head, t, t));
        attention_forward(&mut Array3::zeros((b, t, c)), &mut att, &qkv, n_head);
        let mut fast = Array3::from_elem((b, t, 3 * c), f32::NAN); // overwritten
        let mut datt = Array4::zeros((b, n_head, t, t));
        attention_backward(&mut fast, &mut datt, &dout, &qkv, &att, n_head);
        let plain = attention_backward_reference(&dout, &qkv, &att, n_head);
        let (diff, size) = largest_difference(&fast, &plain);
        println!(
            "attention_backward (B, T, nh, hs) = ({b}, {t}, {n_head}, {hs}): \
             largest difference {diff:.3e}, largest value {size:.3}"
        );
        assert!(diff <= 1e-5 * size.max(1.0), "{diff} of {size}");
    }
}

#[test]
fn adamw_plain_and_fast_agree_to_the_bit() {
    let mut rng = seeded(7);
    let lengths = [1, 5, 16, 33, 1000];
    let values: Vec<Vec<f32>> = (lengths.iter())
        .map(|&n| (0..n).map(|_| rng.random_range(-1.0..1.0)).collect())
        .collect();
    let config = AdamWConfig {
        lr: 3e-3,
        ..AdamWConfig::default()
    };
    let (mut fast, mut plain) = (values.clone(), values);
    let (mut fast_opt, mut plain_opt) = (AdamW::new(config), AdamW::new(config));
    for step in 0..20 {
        // Gradients from tiny to large, and a learning rate that changes.
        let scale = [1e-6_f32, 1e-2, 1.0, 1e3][step % 4];
        let grads: Vec<Vec<f32>> = (lengths.iter())
            .map(|&n| {
                (0..n)
                    .map(|_| scale * rng.random_range(-1.0..1.0))
                    .collect()
            })
            .collect();
        let lr = 3e-3 * (1.0 + step as f32) / 20.0;
        for (values, opt, plain_version) in [
            (&mut fast, &mut fast_opt, false),
            (&mut plain, &mut plain_opt, true),
        ] {
            opt.config.lr = lr;
            let mut params: Vec<Param> = (values.iter_mut().zip(&grads).enumerate())
                .map(|(i, (value, grad))| Param {
                    value,
                    grad,
                    decay: i % 2 == 0,
                })
                .collect();
            if plain_version {
                opt.step_reference(&mut params);
            } else {
                opt.step(&mut params);
            }
        }
        let bits =
            |v: &Vec<Vec<f32>>| -> Vec<u32> { v.iter().flatten().map(|x| x.to_bits()).collect() };
        assert_eq!(bits(&fast), bits(&plain), "the values after step {step}");
        assert_eq!(bits(&fast_opt.m), bits(&plain_opt.m), "m after step {step}");
        assert_eq!(bits(&fast_opt.v), bits(&plain_opt.v), "v after step {step}");
        assert_eq!(fast_opt.t, plain_opt.t);
    }
    println!("AdamW: 20 steps, plain and fast equal to the bit");
}

fn small() -> GptConfig {
    GptConfig {
        vocab_size: 50,
        block_size: 16,
        n_layer: 2,
        n_head: 2,
        n_embd: 32,
    }
}

/// `b` sequences of `t` random tokens and the same shifted by one.
fn batch(b: usize, t: usize, seed: u64) -> (Array2<u32>, Array2<u32>) {
    let mut rng = seeded(seed);
    let tokens = Array2::from_shape_simple_fn((b, t + 1), || rng.random_range(0..50_u32));
    let idx = tokens.slice(ndarray::s![.., ..t]).to_owned();
    let targets = tokens.slice(ndarray::s![.., 1..]).to_owned();
    (idx, targets)
}

fn bits(gpt: &Gpt) -> Vec<u32> {
    gpt.params()
        .slices()
        .flat_map(|(values, _)| values.iter().map(|v| v.to_bits()))
        .collect()
}

#[test]
fn the_plain_training_step_is_the_trainers_to_the_bit() {
    let config = AdamWConfig::default();
    let mut trainer = Trainer::new(Gpt::new(small(), 3).unwrap(), config, 4, 16).unwrap();
    let (mut gpt, mut adamw) = (Gpt::new(small(), 3).unwrap(), AdamW::new(config));
    for step in 0..12_u64 {
        let (idx, targets) = batch(4, 16, step);
        let lr = 1e-2 * (step + 1) as f32 / 12.0;
        // Clipped to 1, to 0.05 (every step), and not at all.
        let clip = [1.0, 0.05, 0.0][step as usize % 3];
        let stats = trainer.step(&idx, &targets, lr, clip).unwrap();
        let max_norm = if clip > 0.0 { clip } else { f32::INFINITY };
        let (loss, norm) =
            step_reference(&mut gpt, &mut adamw, &idx, &targets, lr, max_norm).unwrap();
        assert_eq!(stats.loss.to_bits(), loss.to_bits(), "loss at step {step}");
        assert_eq!(
            stats.grad_norm.to_bits(),
            norm.to_bits(),
            "norm at step {step}"
        );
        assert_eq!(
            bits(trainer.gpt()),
            bits(&gpt),
            "parameters after step {step}"
        );
    }
    println!("training step: 12 steps, plain and fast equal to the bit");
}

#[test]
fn the_plain_training_step_refuses_to_apply_a_diverged_update() {
    let mut gpt = Gpt::new(small(), 3).unwrap();
    gpt.params_mut().ln_f.weight[0] = f32::NAN;
    let before = bits(&gpt);
    let mut adamw = AdamW::new(AdamWConfig::default());
    let (idx, targets) = batch(2, 8, 0);
    let err = step_reference(&mut gpt, &mut adamw, &idx, &targets, 1e-3, 1.0).unwrap_err();
    assert!(
        matches!(
            err,
            TrainError::Diverged {
                step: 0,
                quantity: "loss",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(bits(&gpt), before, "the parameters are untouched");
    assert_eq!(adamw.t, 0, "no update was counted");
}
