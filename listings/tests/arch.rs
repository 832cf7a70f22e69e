//! The architectures other than GPT-2's (`model::Arch`): what each kind of
//! position promises, that GPT-2's choices compute what they always did,
//! that training leaves what is not learned alone, and that the code which
//! only knows GPT-2's block refuses the others. (Their gradients are checked
//! in `gradcheck.rs`.)

use listings::checkpoint::{load, save};
use listings::infer::decode::Decoder;
use listings::infer::quant::{Format, QuantError};
use listings::model::{
    ActivationGrads, Activations, Arch, Gpt, GptConfig, GptParams, ModelError, Positions,
    alibi_slopes, attention_forward, attention_forward_alibi, block_backward, block_backward_arch,
    block_forward, block_forward_arch, rope_apply, rope_forward, sinusoidal_table,
};
use listings::optim::AdamWConfig;
use listings::rng::{RngExt, randn, seeded};
use listings::tokens::{CharVocab, TextTokenizer};
use listings::train::step::Trainer;
use ndarray::{Array2, Array3, Array4, s};

fn small() -> GptConfig {
    GptConfig {
        vocab_size: 13,
        block_size: 16,
        n_layer: 2,
        n_head: 2,
        n_embd: 16,
    }
}

fn tokens(b: usize, t: usize, seed: u64) -> Array2<u32> {
    let mut rng = seeded(seed);
    Array2::from_shape_simple_fn((b, t), || rng.random_range(0..13_u32))
}

#[test]
fn gpt2_arch_is_the_default_and_changes_nothing() {
    let config = small();
    let (idx, targets) = (tokens(3, 16, 1), tokens(3, 16, 2));
    let old = Gpt::new(config, 7).unwrap();
    let new = Gpt::with_arch(config, Arch::default(), 7).unwrap();
    assert!(new.arch().is_gpt2());
    assert_eq!(old.params(), new.params());
    let (a, la) = old.forward(&idx, Some(&targets)).unwrap();
    let (b, lb) = new.forward(&idx, Some(&targets)).unwrap();
    assert_eq!(a, b);
    assert_eq!(la, lb);
    assert_eq!(old.num_parameters(), new.num_parameters());
}

#[test]
fn the_general_block_with_gpt2_choices_is_gpt2s_block_to_the_bit() {
    let config = GptConfig {
        n_layer: 1,
        ..small()
    };
    let (b, t, c) = (2, 9, config.n_embd);
    let params = GptParams::init(&config, 3);
    let x = randn((b, t, c), 1.0, &mut seeded(4));
    let dout = randn((b, t, c), 1.0, &mut seeded(5));
    let run = |general: bool| {
        let mut a = Activations::new(&config, b, t).layers.remove(0);
        let mut g = ActivationGrads::new(&config, b, t).block;
        let mut dp = GptParams::zeros(&config);
        let mut dx = dout.clone();
        let (p, nh, arch) = (&params.h[0], config.n_head, Arch::default());
        if general {
            block_forward_arch(&mut a, &x, p, nh, &arch);
            block_backward_arch(&mut dx, &mut g, &mut dp.h[0], &a, &x, p, nh, &arch);
        } else {
            block_forward(&mut a, &x, p, nh);
            block_backward(&mut dx, &mut g, &mut dp.h[0], &a, &x, p, nh);
        }
        (a.residual3, dx, dp)
    };
    let (y1, dx1, dp1) = run(false);
    let (y2, dx2, dp2) = run(true);
    assert_eq!(y1, y2);
    assert_eq!(dx1, dx2);
    assert_eq!(dp1, dp2);
}

#[test]
fn rope_forward_rotates_every_head_as_rope_apply_does() {
    let (t, c, nh) = (7, 12, 3);
    let hs = c / nh;
    let qkv = randn((1, t, 3 * c), 1.0, &mut seeded(1));
    let mut rotated = qkv.clone();
    rope_forward(&mut rotated, nh);
    let positions: Vec<usize> = (0..t).collect();
    for h in 0..2 * nh {
        let cols = h * hs..(h + 1) * hs; // the queries' heads, then the keys'
        let expected = rope_apply(&qkv.slice(s![0, .., cols.clone()]), &positions);
        assert_eq!(rotated.slice(s![0, .., cols]), expected);
    }
    assert_eq!(
        rotated.slice(s![.., .., 2 * c..]),
        qkv.slice(s![.., .., 2 * c..]),
        "values are not rotated"
    );
}

#[test]
fn rope_scores_depend_only_on_the_distance() {
    // The same query at every position and the same key at every position:
    // after RoPE, the score of query i for key j depends on i - j alone.
    let (t, c, nh) = (24, 16, 2);
    let hs = c / nh;
    let q = randn(c, 1.0, &mut seeded(1));
    let k = randn(c, 1.0, &mut seeded(2));
    let mut qkv = Array3::zeros((1, t, 3 * c));
    for p in 0..t {
        qkv.slice_mut(s![0, p, ..c]).assign(&q);
        qkv.slice_mut(s![0, p, c..2 * c]).assign(&k);
    }
    rope_forward(&mut qkv, nh);
    let score = |h: usize, i: usize, j: usize| {
        let qi = qkv.slice(s![0, i, h * hs..(h + 1) * hs]);
        let kj = qkv.slice(s![0, j, c + h * hs..c + (h + 1) * hs]);
        qi.iter().zip(&kj).map(|(a, b)| a * b).sum::<f32>()
    };
    for h in 0..nh {
        for (i, j) in [(5, 2), (9, 9), (20, 3), (11, 0)] {
            for shift in [1, 3] {
                let (a, b) = (score(h, i, j), score(h, i + shift, j + shift));
                assert!(
                    (a - b).abs() < 1e-4,
                    "head {h}: ({i},{j}) {a} vs shifted {b}"
                );
            }
        }
        // ... and it does depend on the distance (else positions would be lost).
        assert!((score(h, 5, 2) - score(h, 5, 4)).abs() > 1e-3);
    }
}

#[test]
fn alibi_with_zero_slopes_is_plain_attention_and_otherwise_the_formula() {
    let (b, t, c, nh) = (2, 11, 8, 2);
    let qkv = randn((b, t, 3 * c), 1.0, &mut seeded(1));
    let run = |slopes: Option<&[f32]>| {
        let (mut out, mut att) = (Array3::zeros((b, t, c)), Array4::zeros((b, nh, t, t)));
        match slopes {
            Some(m) => attention_forward_alibi(&mut out, &mut att, &qkv, nh, m),
            None => attention_forward(&mut out, &mut att, &qkv, nh),
        }
        (out, att)
    };
    assert_eq!(run(Some(&[0.0, 0.0])), run(None));

    let slopes = [0.5, 0.125];
    let (_, att) = run(Some(&slopes));
    let hs = c / nh;
    for batch in 0..b {
        for (h, &m) in slopes.iter().enumerate() {
            let qh = qkv.slice(s![batch, .., h * hs..(h + 1) * hs]);
            let kh = qkv.slice(s![batch, .., c + h * hs..c + (h + 1) * hs]);
            for i in 0..t {
                let scores: Vec<f32> = (0..=i)
                    .map(|j| qh.row(i).dot(&kh.row(j)) / (hs as f32).sqrt() - m * (i - j) as f32)
                    .collect();
                let max = scores.iter().copied().fold(f32::MIN, f32::max);
                let sum: f32 = scores.iter().map(|s| (s - max).exp()).sum();
                for (j, s) in scores.iter().enumerate() {
                    let p = (s - max).exp() / sum;
                    assert!((att[[batch, h, i, j]] - p).abs() < 1e-5);
                }
                assert!(
                    att.slice(s![batch, h, i, i + 1..])
                        .iter()
                        .all(|&p| p == 0.0)
                );
            }
        }
    }
    assert_eq!(alibi_slopes(8)[0], 0.5);
    assert_eq!(alibi_slopes(8)[7], 1.0 / 256.0);
}

#[test]
fn each_kind_of_position_changes_what_the_model_computes() {
    let config = small();
    let idx = tokens(2, 16, 1);
    let logits: Vec<_> = Positions::ALL
        .iter()
        .map(|&p| {
            let gpt = Gpt::with_arch(config, Arch::with_positions(p), 7).unwrap();
            gpt.forward(&idx, None).unwrap().0
        })
        .collect();
    for i in 0..logits.len() {
        for j in 0..i {
            assert_ne!(
                logits[i],
                logits[j],
                "{:?} and {:?}",
                Positions::ALL[i],
                Positions::ALL[j]
            );
        }
    }
}

#[test]
fn only_added_positions_tell_apart_the_places_of_a_repeated_token() {
    // The same token at every position: every value vector is the same, and
    // attention averages them whatever its weights. RoPE and ALiBi change
    // only the weights, so like no positions at all they compute the same
    // logits at every position; a table added to the input (learned or
    // sinusoidal) makes the vectors themselves differ.
    let config = small();
    let idx = Array2::from_elem((1, 10), 4_u32);
    for p in Positions::ALL {
        let gpt = Gpt::with_arch(config, Arch::with_positions(p), 7).unwrap();
        let logits = gpt.forward(&idx, None).unwrap().0;
        let spread = (1..10)
            .map(|t| {
                let d = &logits.slice(s![0, t, ..]) - &logits.slice(s![0, 0, ..]);
                d.iter().fold(0.0_f32, |m, x| m.max(x.abs()))
            })
            .fold(0.0_f32, f32::max);
        if matches!(p, Positions::Learned | Positions::Sinusoidal) {
            assert!(spread > 1e-4, "{p}: positions are all alike ({spread})");
        } else {
            assert!(spread < 1e-5, "{p}: positions differ by {spread}");
        }
    }
}

#[test]
fn training_moves_learned_positions_only() {
    let config = small();
    let (idx, targets) = (tokens(4, 16, 1), tokens(4, 16, 2));
    for arch in [
        Arch::with_positions(Positions::Learned),
        Arch::with_positions(Positions::Sinusoidal),
        Arch::with_positions(Positions::None),
        Arch::with_positions(Positions::Rope),
        Arch {
            positions: Positions::Alibi,
            mlp: false,
            ..Arch::gpt2()
        },
    ] {
        let gpt = Gpt::with_arch(config, arch, 7).unwrap();
        let before = gpt.clone();
        let mut trainer = Trainer::new(gpt, AdamWConfig::default(), 4, 16).unwrap();
        let first = trainer.step(&idx, &targets, 1e-2, 1.0).unwrap().loss;
        for _ in 0..20 {
            trainer.step(&idx, &targets, 1e-2, 1.0).unwrap();
        }
        let last = trainer.evaluate(&idx, &targets).unwrap();
        assert!(last < first * 0.8, "{arch}: {first} -> {last}");
        let after = trainer.into_gpt();
        assert_eq!(after.arch(), &arch);
        assert_ne!(after.params().wte, before.params().wte);
        if arch.positions.is_learned() {
            assert_ne!(after.params().wpe, before.params().wpe);
        } else {
            assert!(
                after.params().wpe.iter().all(|&w| w == 0.0),
                "{arch}: wpe moved"
            );
        }
        assert_eq!(after.fixed_positions(), before.fixed_positions());
        if arch.positions == Positions::Sinusoidal {
            let table = after
                .fixed_positions()
                .expect("a sinusoidal model has its table");
            assert_eq!(table, &sinusoidal_table(16, 16));
            let expected = 1.0_f32.sin() * 0.02 * std::f32::consts::SQRT_2;
            assert!((table[[1, 0]] - expected).abs() < 1e-7);
        }
        for (h_after, h_before) in after.params().h.iter().zip(&before.params().h) {
            if arch.mlp {
                assert_ne!(h_after.mlp, h_before.mlp);
            } else {
                assert_eq!(h_after.mlp, h_before.mlp, "{arch}: the unused MLP moved");
                assert!(h_after.mlp.c_fc.weight.iter().all(|&w| w == 0.0));
                assert_eq!(h_after.ln_2, h_before.ln_2);
            }
        }
    }
}

#[test]
fn positions_that_are_not_learned_run_past_the_training_length() {
    let config = small(); // block_size 16
    let long = tokens(2, 40, 3);
    for p in [
        Positions::Sinusoidal,
        Positions::Rope,
        Positions::Alibi,
        Positions::None,
    ] {
        let gpt = Gpt::with_arch(config, Arch::with_positions(p), 7).unwrap();
        assert_eq!(
            gpt.forward(&long, None).unwrap_err(),
            ModelError::SequenceTooLong {
                time: 40,
                block_size: 16
            }
        );
        let longer = gpt.with_block_size(40).unwrap();
        assert_eq!(longer.config().block_size, 40);
        assert_eq!(longer.arch(), gpt.arch());
        let (all, _) = longer.forward(&long, None).unwrap();
        // Causal: the first 16 positions compute what the short model does.
        let (short, _) = gpt.forward(&long.slice(s![.., ..16]), None).unwrap();
        let diff = (&all.slice(s![.., ..16, ..]) - &short)
            .iter()
            .fold(0.0_f32, |m, x| m.max(x.abs()));
        assert!(diff < 1e-4, "{p}: {diff}");
    }
}

#[test]
fn learned_positions_refuse_to_grow_unless_asked_for_untrained_rows() {
    let config = small();
    let gpt = Gpt::new(config, 7).unwrap();
    let err = gpt.with_block_size(40).unwrap_err();
    assert_eq!(
        err,
        ModelError::PositionsNotTrained {
            block_size: 16,
            asked: 40
        }
    );
    assert!(err.to_string().contains("never trained"), "{err}");
    let shorter = gpt.with_block_size(8).unwrap();
    assert_eq!(shorter.params().wpe, gpt.params().wpe.slice(s![..8, ..]));
    let grown = gpt.with_new_positions(24, 1).unwrap();
    assert_eq!(grown.config().block_size, 40);
    assert_eq!(grown.params().wpe.slice(s![..16, ..]), gpt.params().wpe);
    let new_rows = grown.params().wpe.slice(s![16.., ..]).to_owned();
    let std = (new_rows.mapv(|x| x * x).mean().unwrap()).sqrt();
    assert!((0.015..0.025).contains(&std), "new rows' std {std}");
    assert!(grown.forward(&tokens(1, 40, 3), None).is_ok());
}

#[test]
fn rope_needs_an_even_head_size() {
    let config = GptConfig {
        n_embd: 18,
        n_head: 6,
        ..small()
    };
    let err = Gpt::with_arch(config, Arch::with_positions(Positions::Rope), 0).unwrap_err();
    assert_eq!(err, ModelError::RopeOddHeadSize { head_size: 3 });
    assert!(Gpt::with_arch(config, Arch::with_positions(Positions::Alibi), 0).is_ok());
}

#[test]
fn the_decoder_refuses_other_architectures() {
    let config = small();
    let arch = Arch::with_positions(Positions::Alibi);
    let gpt = Gpt::with_arch(config, arch, 0).unwrap();
    let Err(err) = Decoder::new(&gpt, Format::F32) else {
        panic!("the decoder took an ALiBi model");
    };
    assert_eq!(err, QuantError::Arch(arch));
    assert!(err.to_string().contains("alibi positions"), "{err}");
    let no_mlp = Arch {
        mlp: false,
        ..Arch::default()
    };
    assert!(Decoder::new(&Gpt::with_arch(config, no_mlp, 0).unwrap(), Format::F32).is_err());
    assert!(Decoder::new(&Gpt::new(config, 0).unwrap(), Format::F32).is_ok());
}

#[test]
fn checkpoints_keep_the_architecture() {
    let dir = tempfile::tempdir().unwrap();
    let tokenizer = TextTokenizer::Char(CharVocab::from_text("abcdefghijklm").unwrap());
    let idx = tokens(1, 16, 4);
    for arch in [
        Arch::default(),
        Arch::with_positions(Positions::Sinusoidal),
        Arch {
            positions: Positions::Rope,
            mlp: false,
            ..Arch::gpt2()
        },
    ] {
        let gpt = Gpt::with_arch(small(), arch, 3).unwrap();
        let path = dir.path().join(format!("{}.safetensors", arch.positions));
        save(&path, &gpt, &tokenizer, None, 0, &Default::default()).unwrap();
        let loaded = load(&path).unwrap().gpt;
        assert_eq!(loaded.arch(), &arch);
        assert_eq!(
            loaded.forward(&idx, None).unwrap().0,
            gpt.forward(&idx, None).unwrap().0
        );
        let header = std::fs::read(&path).unwrap();
        let has_key = header.windows(13).any(|w| w == b"listings.arch");
        assert_eq!(has_key, !arch.is_gpt2(), "{arch}");
    }
}
