//! The whole model: parameter counts, initialisation, causality, the loss of
//! an untrained model, activations reused across calls, and bad input.

use listings::model::{
    Activations, ConfigError, Gpt, GptConfig, GptParams, INIT_STD, ModelError, count_parameters,
    parameter_breakdown,
};
use listings::rng::{RngExt, seeded};
use ndarray::{Array2, Axis, array, s};

/// `b` sequences of `t` random tokens below `v`.
fn random_tokens(b: usize, t: usize, v: usize, seed: u64) -> Array2<u32> {
    let mut rng = seeded(seed);
    Array2::from_shape_simple_fn((b, t), || rng.random_range(0..v as u32))
}

/// A config small enough for a test to run many forward passes.
fn tiny(vocab_size: usize) -> GptConfig {
    GptConfig {
        vocab_size,
        block_size: 16,
        n_layer: 2,
        n_head: 2,
        n_embd: 16,
    }
}

#[test]
fn gpt2_sizes_by_formula() {
    // Hugging Face's published counts, with lm_head tied to wte.
    assert_eq!(count_parameters(&GptConfig::gpt2()), 124_439_808);
    assert_eq!(count_parameters(&GptConfig::gpt2_medium()), 354_823_168);
    assert_eq!(count_parameters(&GptConfig::gpt2_large()), 774_030_080);
    assert_eq!(count_parameters(&GptConfig::gpt2_xl()), 1_557_611_200);
    assert_eq!(count_parameters(&GptConfig::baby(65)), 809_856);
    assert_eq!(count_parameters(&GptConfig::toy(65)), 108_352);
}

#[test]
fn formula_equals_the_tensors() {
    let configs = [
        GptConfig::toy(65),
        GptConfig::baby(65),
        tiny(11),
        GptConfig {
            vocab_size: 1,
            block_size: 1,
            n_layer: 1,
            n_head: 1,
            n_embd: 1,
        },
        GptConfig {
            vocab_size: 300,
            block_size: 7,
            n_layer: 3,
            n_head: 5,
            n_embd: 20,
        },
    ];
    for config in configs {
        let gpt = Gpt::new(config, 0).unwrap();
        assert_eq!(
            gpt.num_parameters(),
            count_parameters(&config),
            "{config:?}"
        );
        assert_eq!(
            parameter_breakdown(&config).total,
            count_parameters(&config),
            "{config:?}"
        );
    }
    // For GPT-2 itself, count the shapes the model would allocate.
    let specs = GptParams::specs(&GptConfig::gpt2());
    let total: usize = specs
        .iter()
        .map(|s| s.shape.iter().product::<usize>())
        .sum();
    assert_eq!(total, 124_439_808);
}

#[test]
fn tensors_have_hugging_face_names_and_shapes() {
    let config = GptConfig::baby(65);
    let specs = GptParams::specs(&config);
    assert_eq!(specs.len(), 2 + 12 * config.n_layer + 2);
    let find = |name: &str| {
        specs
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.shape.clone())
    };
    assert_eq!(find("transformer.wte.weight"), Some(vec![65, 128]));
    assert_eq!(find("transformer.wpe.weight"), Some(vec![64, 128]));
    assert_eq!(find("transformer.h.0.ln_1.weight"), Some(vec![128]));
    assert_eq!(
        find("transformer.h.0.attn.c_attn.weight"),
        Some(vec![128, 384])
    );
    assert_eq!(find("transformer.h.0.attn.c_attn.bias"), Some(vec![384]));
    assert_eq!(
        find("transformer.h.1.attn.c_proj.weight"),
        Some(vec![128, 128])
    );
    assert_eq!(find("transformer.h.2.ln_2.bias"), Some(vec![128]));
    assert_eq!(
        find("transformer.h.3.mlp.c_fc.weight"),
        Some(vec![128, 512])
    );
    assert_eq!(
        find("transformer.h.3.mlp.c_proj.weight"),
        Some(vec![512, 128])
    );
    assert_eq!(find("transformer.ln_f.bias"), Some(vec![128]));
    assert_eq!(find("lm_head.weight"), None, "lm_head is tied to wte");
    let mut names: Vec<_> = specs.iter().map(|s| &s.name).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), specs.len(), "names are unique");
    // The writable list has the same names in the same order.
    let mut params = GptParams::zeros(&config);
    let mut_names: Vec<String> = params.tensors_mut().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        mut_names,
        specs.iter().map(|s| s.name.clone()).collect::<Vec<_>>()
    );
}

#[test]
fn initialisation_is_gpt2s() {
    let config = GptConfig {
        n_layer: 8,
        ..GptConfig::baby(500)
    };
    let params = GptParams::init(&config, 7);
    let std = |x: ndarray::ArrayViewD<f32>| {
        let m = x.mean().unwrap();
        (x.mapv(|v| (v - m) * (v - m)).mean().unwrap()).sqrt()
    };
    let residual_std = INIT_STD / (2.0 * 8.0_f32).sqrt();
    for (name, tensor) in params.tensors() {
        let s = std(tensor.view());
        if name.ends_with(".bias") {
            assert!(tensor.iter().all(|&v| v == 0.0), "{name} starts at 0");
        } else if name.contains(".ln_") {
            assert!(tensor.iter().all(|&v| v == 1.0), "{name} starts at 1");
        } else if name.ends_with("c_proj.weight") {
            assert!(
                (s / residual_std - 1.0).abs() < 0.05,
                "{name}: std {s}, expected {residual_std}"
            );
        } else {
            assert!(
                (s / INIT_STD - 1.0).abs() < 0.05,
                "{name}: std {s}, expected {INIT_STD}"
            );
        }
    }
    assert_eq!(
        GptParams::init(&config, 7),
        params,
        "a seed names one model"
    );
    assert_ne!(GptParams::init(&config, 8), params);
}

#[test]
fn untrained_loss_is_about_ln_vocab() {
    for config in [GptConfig::toy(65), GptConfig::baby(65), tiny(1000)] {
        let gpt = Gpt::new(config, 1).unwrap();
        let v = config.vocab_size;
        let idx = random_tokens(4, config.block_size, v, 2);
        let targets = random_tokens(4, config.block_size, v, 3);
        let (logits, loss) = gpt.forward(&idx, Some(&targets)).unwrap();
        let loss = loss.unwrap();
        let ln_v = (v as f32).ln();
        assert!((loss - ln_v).abs() < 0.1, "loss {loss}, ln {v} = {ln_v}");
        assert!(logits.iter().all(|x| x.is_finite()));
    }
}

#[test]
fn changing_a_token_never_changes_earlier_logits() {
    let config = tiny(50);
    let gpt = Gpt::new(config, 3).unwrap();
    let t = config.block_size;
    let idx = random_tokens(2, t, 50, 4);
    let (logits, _) = gpt.forward(&idx, None).unwrap();
    for j in [0, 1, 7, t - 1] {
        let mut changed = idx.clone();
        changed[[1, j]] = (changed[[1, j]] + 1) % 50;
        let (after, _) = gpt.forward(&changed, None).unwrap();
        // Before position j: identical, bit for bit. At j: different.
        assert_eq!(
            after.slice(s![1, ..j, ..]),
            logits.slice(s![1, ..j, ..]),
            "position < {j}"
        );
        assert_ne!(
            after.slice(s![1, j, ..]),
            logits.slice(s![1, j, ..]),
            "position {j}"
        );
        // And the other sequence of the batch is untouched.
        assert_eq!(after.index_axis(Axis(0), 0), logits.index_axis(Axis(0), 0));
    }
}

#[test]
fn the_same_input_gives_the_same_logits_bit_for_bit() {
    let config = GptConfig::baby(65);
    let gpt = Gpt::new(config, 21).unwrap();
    let idx = random_tokens(12, 64, 65, 22);
    let targets = random_tokens(12, 64, 65, 23);
    let (a, loss_a) = gpt.forward(&idx, Some(&targets)).unwrap();
    let (b, loss_b) = gpt.forward(&idx, Some(&targets)).unwrap();
    assert_eq!(a, b);
    assert_eq!(loss_a, loss_b);
}

#[test]
fn a_prefix_gives_the_same_logits_as_the_whole_sequence() {
    let config = tiny(30);
    let gpt = Gpt::new(config, 5).unwrap();
    let idx = random_tokens(3, 16, 30, 6);
    let (full, _) = gpt.forward(&idx, None).unwrap();
    let (prefix, _) = gpt.forward(&idx.slice(s![.., ..5]), None).unwrap();
    let diff = (&prefix - &full.slice(s![.., ..5, ..])).mapv(f32::abs);
    assert!(
        diff.iter().all(|&d| d < 1e-5),
        "max difference {}",
        diff.fold(0.0_f32, |m, &d| m.max(d))
    );
}

#[test]
fn forward_with_reuses_activations_and_matches_forward() {
    let config = tiny(40);
    let gpt = Gpt::new(config, 9).unwrap();
    let mut acts = Activations::new(&config, 2, 8);
    for seed in 0..3 {
        let idx = random_tokens(2, 8, 40, seed);
        let targets = random_tokens(2, 8, 40, seed + 10);
        let loss = gpt.forward_with(&mut acts, &idx, Some(&targets)).unwrap();
        let (logits, fresh_loss) = gpt.forward(&idx, Some(&targets)).unwrap();
        assert_eq!(loss, fresh_loss);
        assert_eq!(acts.logits, logits);
        assert_eq!(acts.inputs, idx);
        assert_eq!(acts.targets, targets);
        assert_eq!(acts.losses.mean(), loss);
    }
    // Without targets there is no loss; another shape reallocates.
    let idx = random_tokens(3, 5, 40, 99);
    assert_eq!(gpt.forward_with(&mut acts, &idx, None).unwrap(), None);
    assert_eq!(acts.shape(), (3, 5));
    assert_eq!(acts.logits.dim(), (3, 5, 40));
    assert_eq!(acts.layers[1].att.dim(), (3, 2, 5, 5));
}

#[test]
fn attention_weights_are_causal_probabilities() {
    let config = tiny(20);
    let gpt = Gpt::new(config, 11).unwrap();
    let mut acts = Activations::new(&config, 2, 10);
    gpt.forward_with(&mut acts, &random_tokens(2, 10, 20, 12), None)
        .unwrap();
    for layer in &acts.layers {
        for ((_, _, i, j), &w) in layer.att.indexed_iter() {
            assert!(if j > i { w == 0.0 } else { w > 0.0 });
        }
        for row in layer.att.rows() {
            assert!((row.sum() - 1.0).abs() < 1e-5);
        }
    }
}

#[test]
fn bad_input_gives_errors_that_say_what_and_where() {
    let config = tiny(10);
    let gpt = Gpt::new(config, 0).unwrap();
    let ok = array![[1_u32, 2, 3]];

    let err = gpt
        .forward(&array![[1_u32, 2, 3], [4, 10, 6]], None)
        .unwrap_err();
    assert_eq!(
        err,
        ModelError::TokenOutOfVocab {
            id: 10,
            batch: 1,
            position: 1,
            vocab_size: 10
        }
    );
    let message = err.to_string();
    assert!(
        message.contains("id 10") && message.contains("sequence 1, position 1"),
        "{message}"
    );

    let long = Array2::zeros((1, config.block_size + 1));
    let err = gpt.forward(&long, None).unwrap_err();
    assert_eq!(
        err,
        ModelError::SequenceTooLong {
            time: 17,
            block_size: 16
        }
    );
    assert!(err.to_string().contains("block_size is 16"), "{err}");

    for empty in [Array2::<u32>::zeros((0, 3)), Array2::zeros((2, 0))] {
        let err = gpt.forward(&empty, None).unwrap_err();
        assert!(matches!(err, ModelError::EmptyInput { .. }), "{err}");
    }

    let err = gpt.forward(&ok, Some(&array![[1_u32, 2]])).unwrap_err();
    assert_eq!(
        err,
        ModelError::TargetsShape {
            inputs: (1, 3),
            targets: (1, 2)
        }
    );
    assert!(
        err.to_string().contains("one target per input token"),
        "{err}"
    );

    let err = gpt.forward(&ok, Some(&array![[1_u32, 2, 99]])).unwrap_err();
    assert_eq!(
        err,
        ModelError::TargetOutOfVocab {
            id: 99,
            batch: 0,
            position: 2,
            vocab_size: 10
        }
    );

    // A bad input leaves reusable activations as they were.
    let mut acts = Activations::new(&config, 1, 3);
    gpt.forward_with(&mut acts, &ok, None).unwrap();
    let before = acts.logits.clone();
    assert!(
        gpt.forward_with(&mut acts, &array![[1_u32, 2, 30]], None)
            .is_err()
    );
    assert_eq!(acts.logits, before);
}

#[test]
fn bad_configs_are_refused() {
    let baby = GptConfig::baby(65);
    let err = Gpt::new(GptConfig { n_head: 3, ..baby }, 0).unwrap_err();
    assert_eq!(
        err,
        ModelError::Config(ConfigError::HeadsDoNotDivide {
            n_embd: 128,
            n_head: 3
        })
    );
    assert!(
        err.to_string().contains("not divisible by n_head = 3"),
        "{err}"
    );
    for (field, config) in [
        (
            "vocab_size",
            GptConfig {
                vocab_size: 0,
                ..baby
            },
        ),
        (
            "block_size",
            GptConfig {
                block_size: 0,
                ..baby
            },
        ),
        ("n_layer", GptConfig { n_layer: 0, ..baby }),
        ("n_head", GptConfig { n_head: 0, ..baby }),
        ("n_embd", GptConfig { n_embd: 0, ..baby }),
    ] {
        assert_eq!(config.validate(), Err(ConfigError::Zero { field }));
    }
    for preset in [
        GptConfig::toy(65),
        baby,
        GptConfig::gpt2(),
        GptConfig::gpt2_xl(),
    ] {
        assert_eq!(preset.validate(), Ok(()));
    }
}

#[test]
fn parameters_must_fit_the_config() {
    let config = tiny(10);
    let mut params = GptParams::init(&config, 0);
    params.h[1].mlp.c_fc.weight = Array2::zeros((16, 63));
    let err = Gpt::from_params(config, params).unwrap_err();
    assert_eq!(
        err,
        ModelError::ParamShape {
            name: "transformer.h.1.mlp.c_fc.weight".into(),
            expected: vec![16, 64],
            found: vec![16, 63],
        }
    );
    let three_layers = GptParams::init(
        &GptConfig {
            n_layer: 3,
            ..config
        },
        0,
    );
    let err = Gpt::from_params(config, three_layers).unwrap_err();
    assert_eq!(
        err,
        ModelError::LayerCount {
            config: 2,
            params: 3
        }
    );
    assert!(Gpt::from_params(config, GptParams::init(&config, 0)).is_ok());
}
