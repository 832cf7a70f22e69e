//! The training step: it learns, it is reproducible, it resumes exactly,
//! and it refuses to apply an update that would spoil the model.

use listings::model::{Gpt, GptConfig, GptParams, ModelError};
use listings::optim::{AdamW, AdamWConfig};
use listings::rng::{RngExt, seeded};
use listings::train::step::{TrainError, Trainer};
use ndarray::Array2;

/// A model small enough to train for hundreds of steps in a test.
fn tiny() -> GptConfig {
    GptConfig {
        vocab_size: 16,
        block_size: 8,
        n_layer: 2,
        n_head: 2,
        n_embd: 32,
    }
}

/// `b` sequences of `t` random tokens, and the same shifted by one (as
/// batches of text are).
fn batch(b: usize, t: usize, seed: u64) -> (Array2<u32>, Array2<u32>) {
    let mut rng = seeded(seed);
    let tokens = Array2::from_shape_simple_fn((b, t + 1), || rng.random_range(0..16_u32));
    let idx = tokens.slice(ndarray::s![.., ..t]).to_owned();
    let targets = tokens.slice(ndarray::s![.., 1..]).to_owned();
    (idx, targets)
}

fn trainer(seed: u64) -> Trainer {
    let gpt = Gpt::new(tiny(), seed).expect("valid config");
    Trainer::new(gpt, AdamWConfig::default(), 4, 8).expect("valid shapes")
}

#[test]
fn a_tiny_model_learns_one_batch_by_heart() {
    let mut trainer = trainer(0);
    let (idx, targets) = batch(4, 8, 1);
    let mut losses = Vec::new();
    for _ in 0..300 {
        losses.push(trainer.step(&idx, &targets, 1e-2, 1.0).unwrap().loss);
    }
    let last = trainer.evaluate(&idx, &targets).unwrap();
    println!(
        "loss at steps 0, 50, 100, 200, 299: {:?}; after: {last}",
        [0, 50, 100, 200, 299].map(|i| losses[i])
    );
    assert!((losses[0] - 16_f32.ln()).abs() < 0.2, "starts near ln 16");
    assert!(last < 0.1, "after 300 steps the loss is still {last}");
    assert_eq!(trainer.steps_done(), 300);
}

#[test]
fn the_same_seed_gives_the_same_losses_bit_for_bit() {
    let run = || {
        let mut trainer = trainer(3);
        let losses: Vec<u32> = (0..20)
            .map(|i| {
                let (idx, targets) = batch(4, 8, 100 + i);
                let lr = 1e-3 * (1 + i) as f32;
                trainer
                    .step(&idx, &targets, lr, 1.0)
                    .unwrap()
                    .loss
                    .to_bits()
            })
            .collect();
        (losses, trainer.into_gpt())
    };
    let (a, gpt_a) = run();
    let (b, gpt_b) = run();
    assert_eq!(a, b);
    assert_eq!(gpt_a.params(), gpt_b.params());
    // A different seed is a different model.
    let (idx, targets) = batch(4, 8, 100);
    let other = trainer(4).step(&idx, &targets, 1e-3, 1.0).unwrap().loss;
    assert_ne!(other.to_bits(), a[0]);
}

#[test]
fn resuming_from_parts_continues_exactly() {
    let batches: Vec<_> = (0..12).map(|i| batch(4, 8, 200 + i)).collect();
    let mut straight = trainer(5);
    for (idx, targets) in &batches {
        straight.step(idx, targets, 3e-3, 1.0).unwrap();
    }
    let mut first = trainer(5);
    for (idx, targets) in &batches[..7] {
        first.step(idx, targets, 3e-3, 1.0).unwrap();
    }
    let (gpt, optimizer) = first.into_parts();
    assert_eq!(optimizer.t, 7);
    let mut resumed = Trainer::from_parts(gpt, optimizer).unwrap();
    for (idx, targets) in &batches[7..] {
        resumed.step(idx, targets, 3e-3, 1.0).unwrap();
    }
    assert_eq!(resumed.gpt().params(), straight.gpt().params());
    assert_eq!(resumed.optimizer().m, straight.optimizer().m);
}

#[test]
fn optimiser_state_of_another_model_is_refused() {
    let gpt = Gpt::new(tiny(), 0).unwrap();
    let mut optimizer = AdamW::new(AdamWConfig::default());
    optimizer.m = vec![vec![0.0; 3]; 2];
    optimizer.v = optimizer.m.clone();
    let err = Trainer::from_parts(gpt.clone(), optimizer).err().unwrap();
    assert!(
        err.to_string()
            .contains("m has 2 tensors but the model has"),
        "{err}"
    );
    let tensors = GptParams::zeros(&tiny()).tensors().len();
    let mut optimizer = AdamW::new(AdamWConfig::default());
    optimizer.m = vec![vec![0.0; 5]; tensors];
    optimizer.v = optimizer.m.clone();
    let err = Trainer::from_parts(gpt, optimizer).err().unwrap();
    assert!(
        err.to_string()
            .contains("m for transformer.wte.weight has 5 numbers, not 512"),
        "{err}"
    );
}

#[test]
fn a_nan_learning_rate_is_refused_and_changes_nothing() {
    let mut trainer = trainer(0);
    let (idx, targets) = batch(4, 8, 1);
    trainer.step(&idx, &targets, 1e-3, 1.0).unwrap();
    let before = trainer.gpt().params().clone();
    for lr in [f32::NAN, f32::INFINITY, -1e-3] {
        let err = trainer.step(&idx, &targets, lr, 1.0).unwrap_err();
        assert!(
            matches!(err, TrainError::BadLearningRate { step: 1, .. }),
            "{err}"
        );
    }
    assert_eq!(trainer.gpt().params(), &before);
    assert_eq!(trainer.steps_done(), 1);
}

#[test]
fn divergence_is_caught_before_it_reaches_the_parameters() {
    // A learning rate of 1e30 moves every parameter by about 1e30 in one
    // step: the next forward pass overflows.
    let mut trainer = trainer(0);
    let (idx, targets) = batch(4, 8, 1);
    let mut last_good = trainer.gpt().params().clone();
    let mut failure = None;
    for step in 0..5 {
        match trainer.step(&idx, &targets, 1e30, 0.0) {
            Ok(_) => last_good = trainer.gpt().params().clone(),
            Err(err) => {
                failure = Some((step, err));
                break;
            }
        }
    }
    let (step, err) = failure.expect("a learning rate of 1e30 diverges");
    println!("{err}");
    assert!(matches!(err, TrainError::Diverged { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("step {step}: the ")),
        "{message}"
    );
    assert!(message.contains("try a lower learning rate"), "{message}");
    assert_eq!(
        trainer.gpt().params(),
        &last_good,
        "the update was not applied"
    );
    assert_eq!(trainer.steps_done(), step);
}

#[test]
fn a_nan_parameter_stops_training_at_once() {
    let gpt = Gpt::new(tiny(), 0).unwrap();
    let (config, mut params) = gpt.into_parts();
    params.h[1].mlp.c_fc.weight[[3, 7]] = f32::NAN;
    let gpt = Gpt::from_params(config, params.clone()).unwrap();
    let mut trainer = Trainer::new(gpt, AdamWConfig::default(), 4, 8).unwrap();
    let (idx, targets) = batch(4, 8, 1);
    let err = trainer.step(&idx, &targets, 1e-3, 1.0).unwrap_err();
    assert!(
        matches!(err, TrainError::Diverged { step: 0, quantity: "loss", value, .. } if value.is_nan()),
        "{err}"
    );
    // Parameters compared bit for bit (NaN != NaN as numbers).
    let bits = |p: &GptParams| -> Vec<u32> {
        p.slices()
            .flat_map(|(t, _)| t.iter().map(|x| x.to_bits()))
            .collect()
    };
    assert_eq!(bits(trainer.gpt().params()), bits(&params));
}

#[test]
fn gradients_are_clipped_to_the_given_norm() {
    let mut trainer = trainer(0);
    let (idx, targets) = batch(4, 8, 1);
    let stats = trainer.step(&idx, &targets, 1e-3, 1e-3).unwrap();
    let norm = |p: &GptParams| {
        p.slices()
            .flat_map(|(t, _)| t.iter())
            .map(|&g| f64::from(g) * f64::from(g))
            .sum::<f64>()
            .sqrt()
    };
    assert!(
        stats.grad_norm > 1e-2,
        "the norm before clipping: {}",
        stats.grad_norm
    );
    assert!((norm(trainer.gradients()) - 1e-3).abs() < 1e-6);
    // With no clipping, the gradients keep their norm.
    let stats = trainer.step(&idx, &targets, 1e-3, 0.0).unwrap();
    let after = norm(trainer.gradients());
    assert!((after - f64::from(stats.grad_norm)).abs() < 1e-5 * after);
}

#[test]
fn batches_that_do_not_fit_are_reported() {
    let gpt = Gpt::new(tiny(), 0).unwrap();
    let err = Trainer::new(gpt.clone(), AdamWConfig::default(), 4, 9)
        .err()
        .unwrap();
    assert_eq!(
        err,
        TrainError::Model(ModelError::SequenceTooLong {
            time: 9,
            block_size: 8
        })
    );
    let err = Trainer::new(gpt, AdamWConfig::default(), 0, 8)
        .err()
        .unwrap();
    assert!(matches!(
        err,
        TrainError::Model(ModelError::EmptyInput { .. })
    ));
    let mut trainer = trainer(0);
    let (idx, mut targets) = batch(4, 8, 1);
    targets[[2, 5]] = 99;
    let err = trainer.step(&idx, &targets, 1e-3, 1.0).unwrap_err();
    assert!(err.to_string().contains("target token id 99"), "{err}");
    assert_eq!(trainer.steps_done(), 0);
    let err = trainer.step(&idx, &idx, 1e-3, f32::NAN).unwrap_err();
    assert!(matches!(err, TrainError::BadGradClip { .. }), "{err}");
}
