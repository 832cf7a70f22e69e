//! Chapter 7's inference code checked against what it must not change: the
//! KV cache gives the tokens recomputation gives, speculative decoding
//! writes with the target's distribution, beam search finds likelier text
//! than greedy decoding, and the samplers' filters keep what they say.

use listings::infer::decode::{Decoder, Logits, Segment};
use listings::infer::generate::{GenerateConfig, GenerateError, StopReason, beam_search, generate};
use listings::infer::quant::Format;
use listings::infer::sampler::{Sampler, Sampling, SamplingError};
use listings::infer::speculative::speculative_generate;
use listings::model::{Gpt, GptConfig};

/// A model whose next token depends strongly on its context: the
/// initialisation's weights ten times larger.
fn opinionated(config: GptConfig, seed: u64) -> Gpt {
    let mut params = Gpt::new(config, seed).unwrap().params().clone();
    for (name, mut tensor) in params.tensors_mut() {
        if !name.contains("ln_") {
            tensor.mapv_inplace(|x| 10.0 * x);
        }
    }
    Gpt::from_params(config, params).unwrap()
}

fn small(vocab_size: usize, block_size: usize) -> GptConfig {
    GptConfig {
        vocab_size,
        block_size,
        n_layer: 2,
        n_head: 4,
        n_embd: 32,
    }
}

fn decoder(config: GptConfig, seed: u64) -> Decoder {
    Decoder::new(&opinionated(config, seed), Format::F32).unwrap()
}

fn run(dec: &Decoder, prompt: &[u32], config: &GenerateConfig) -> Vec<u32> {
    generate(dec, prompt, config, |_| true).unwrap().tokens
}

#[test]
fn the_cache_changes_no_token_greedy_or_sampled() {
    let dec = decoder(small(50, 32), 1);
    for sampling in [
        Sampling::greedy(),
        Sampling {
            seed: 7,
            ..Sampling::default()
        },
    ] {
        let cached = GenerateConfig {
            max_new_tokens: 28,
            sampling,
            ..GenerateConfig::default()
        };
        let uncached = GenerateConfig {
            kv_cache: false,
            ..cached.clone()
        };
        let a = run(&dec, &[3, 1, 4], &cached);
        assert_eq!(a, run(&dec, &[3, 1, 4], &uncached), "{sampling:?}");
        assert_eq!(a.len(), 28);
    }
}

#[test]
fn past_the_context_keeping_the_whole_window_is_exactly_the_uncached_loop() {
    let dec = decoder(small(30, 8), 2);
    let sampling = Sampling {
        seed: 3,
        ..Sampling::default()
    };
    let exact = GenerateConfig {
        max_new_tokens: 30,
        sampling,
        keep: Some(8),
        ..GenerateConfig::default()
    };
    let uncached = GenerateConfig {
        kv_cache: false,
        ..exact.clone()
    };
    let a = generate(&dec, &[1, 2], &exact, |_| true).unwrap();
    assert_eq!(a.tokens, run(&dec, &[1, 2], &uncached));
    // Keeping half the window rebuilds it less often: fewer positions computed.
    let half = GenerateConfig {
        keep: None,
        ..exact.clone()
    };
    let b = generate(&dec, &[1, 2], &half, |_| true).unwrap();
    assert!(
        b.positions < a.positions,
        "{} vs {}",
        b.positions,
        a.positions
    );
    assert_eq!(b.tokens.len(), 30);
}

#[test]
fn stop_tokens_sequences_and_the_callback_end_generation() {
    let dec = decoder(small(20, 32), 4);
    let free = run(
        &dec,
        &[5],
        &GenerateConfig {
            max_new_tokens: 20,
            ..GenerateConfig::default()
        },
    );
    let stop = free[6];
    let first = free.iter().position(|&t| t == stop).unwrap();
    let config = GenerateConfig {
        max_new_tokens: 20,
        stop_tokens: vec![stop],
        ..GenerateConfig::default()
    };
    let g = generate(&dec, &[5], &config, |_| true).unwrap();
    assert_eq!(
        (g.tokens.as_slice(), g.stop),
        (&free[..=first], StopReason::StopToken)
    );
    let seq = free[3..5].to_vec();
    let config = GenerateConfig {
        max_new_tokens: 20,
        stop_sequences: vec![seq],
        ..GenerateConfig::default()
    };
    let g = generate(&dec, &[5], &config, |_| true).unwrap();
    assert_eq!(g.stop, StopReason::StopSequence);
    assert!(g.tokens.len() <= 5);
    // Streaming: the callback sees each token as it comes, and can stop.
    let mut seen = Vec::new();
    let config = GenerateConfig {
        max_new_tokens: 20,
        ..GenerateConfig::default()
    };
    let g = generate(&dec, &[5], &config, |t| {
        seen.push(t);
        seen.len() < 4
    })
    .unwrap();
    assert_eq!((g.tokens.clone(), g.stop), (seen, StopReason::Caller));
    assert_eq!(g.tokens, free[..4]);
}

#[test]
fn bad_settings_and_prompts_are_refused_before_any_work() {
    let dec = decoder(small(20, 8), 4);
    let with = |sampling| GenerateConfig {
        sampling,
        ..GenerateConfig::default()
    };
    let err = |c: &GenerateConfig, prompt: &[u32]| generate(&dec, prompt, c, |_| true).unwrap_err();
    let s = Sampling::default();
    assert_eq!(
        err(
            &with(Sampling {
                temperature: -1.0,
                ..s
            }),
            &[1]
        ),
        GenerateError::Sampling(SamplingError::Temperature(-1.0))
    );
    assert_eq!(
        err(
            &with(Sampling {
                top_k: Some(0),
                ..s
            }),
            &[1]
        ),
        GenerateError::Sampling(SamplingError::TopK)
    );
    for p in [0.0, 1.5, f32::NAN] {
        assert!(matches!(
            err(
                &with(Sampling {
                    top_p: Some(p),
                    ..s
                }),
                &[1]
            ),
            GenerateError::Sampling(SamplingError::TopP(_))
        ));
    }
    assert!(matches!(
        err(
            &with(Sampling {
                repetition_penalty: 0.0,
                ..s
            }),
            &[1]
        ),
        GenerateError::Sampling(_)
    ));
    assert_eq!(
        err(&GenerateConfig::default(), &[]),
        GenerateError::EmptyPrompt
    );
    let long = err(&GenerateConfig::default(), &[1; 9]);
    assert_eq!(
        long,
        GenerateError::PromptTooLong {
            tokens: 9,
            block_size: 8
        }
    );
    assert!(long.to_string().contains("at most 8"), "{long}");
    assert!(
        err(&GenerateConfig::default(), &[25])
            .to_string()
            .contains("outside the model's vocabulary")
    );
    assert!(matches!(
        err(
            &GenerateConfig {
                keep: Some(9),
                ..GenerateConfig::default()
            },
            &[1]
        ),
        GenerateError::Keep { .. }
    ));
}

fn probs(sampling: Sampling, logits: &[f32], history: &[u32]) -> Vec<f32> {
    let mut out = Vec::new();
    assert!(
        Sampler::new(sampling)
            .unwrap()
            .probabilities(logits, history, &mut out)
    );
    out
}

#[test]
fn the_filters_keep_what_they_say() {
    let ln = |p: f32| p.ln();
    let logits = [ln(0.5), ln(0.3), ln(0.15), ln(0.05)];
    let s = Sampling::default();
    let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6);
    assert!(close(&probs(s, &logits, &[]), &[0.5, 0.3, 0.15, 0.05]));
    assert_eq!(
        probs(Sampling::greedy(), &logits, &[]),
        [1.0, 0.0, 0.0, 0.0]
    );
    assert!(close(
        &probs(
            Sampling {
                top_k: Some(2),
                ..s
            },
            &logits,
            &[]
        ),
        &[0.625, 0.375, 0.0, 0.0]
    ));
    // Top-p keeps the token that crosses p: 0.5 < 0.6, 0.5 + 0.3 >= 0.6.
    assert!(close(
        &probs(
            Sampling {
                top_p: Some(0.6),
                ..s
            },
            &logits,
            &[]
        ),
        &[0.625, 0.375, 0.0, 0.0]
    ));
    assert!(close(
        &probs(
            Sampling {
                top_p: Some(0.5),
                ..s
            },
            &logits,
            &[]
        ),
        &[1.0, 0.0, 0.0, 0.0]
    ));
    // Temperature 2 takes the square root of each probability, renormalised.
    let t2 = probs(
        Sampling {
            temperature: 2.0,
            ..s
        },
        &logits,
        &[],
    );
    let roots: Vec<f32> = [0.5_f32, 0.3, 0.15, 0.05]
        .iter()
        .map(|p| p.sqrt())
        .collect();
    let z: f32 = roots.iter().sum();
    assert!(close(&t2, &roots.iter().map(|r| r / z).collect::<Vec<_>>()));
    // The penalty divides a positive logit, multiplies a negative one, once per token.
    let pen = Sampling {
        repetition_penalty: 2.0,
        temperature: 0.0,
        ..s
    };
    assert_eq!(probs(pen, &[2.0, 1.5, -1.0], &[0, 0, 0]), [0.0, 1.0, 0.0]);
    assert_eq!(probs(pen, &[2.0, 1.5, -1.0], &[1, 0]), [1.0, 0.0, 0.0]);
    let soft = probs(
        Sampling {
            repetition_penalty: 2.0,
            ..s
        },
        &[1.0, 0.0, -1.0],
        &[0, 2],
    );
    let e = [0.5_f32.exp(), 1.0, (-2.0_f32).exp()];
    let z: f32 = e.iter().sum();
    assert!(close(&soft, &e.map(|x| x / z)));
}

#[test]
fn beam_search_of_width_one_is_greedy_and_wider_beams_are_likelier() {
    let dec = decoder(small(30, 32), 5);
    let greedy = run(
        &dec,
        &[2, 7],
        &GenerateConfig {
            max_new_tokens: 10,
            sampling: Sampling::greedy(),
            ..GenerateConfig::default()
        },
    );
    let one = beam_search(&dec, &[2, 7], 1, 10, &[]).unwrap();
    assert_eq!(one[0].tokens, greedy);
    let log_prob = |tokens: &[u32]| -> f32 {
        let mut ids = vec![2, 7];
        let mut total = 0.0;
        for &t in tokens {
            let logits = dec.logits_uncached(&ids).unwrap();
            let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let z: f32 = logits.iter().map(|l| (l - max).exp()).sum();
            total += logits[t as usize] - max - z.ln();
            ids.push(t);
        }
        total
    };
    assert!((one[0].log_prob - log_prob(&greedy)).abs() < 1e-3);
    let four = beam_search(&dec, &[2, 7], 4, 10, &[]).unwrap();
    assert_eq!(four.len(), 4);
    assert!(four.windows(2).all(|w| w[0].log_prob >= w[1].log_prob));
    assert!(four[0].log_prob >= one[0].log_prob - 1e-4);
    // Every beam's score is its text's, recomputed without a cache: each
    // beam went on from its own parent's keys and values, whether its
    // cache was moved or copied. With a stop token, some beams end early.
    let stop = four[1].tokens[2];
    let stopped = beam_search(&dec, &[2, 7], 4, 10, &[stop]).unwrap();
    assert!(stopped.iter().any(|b| b.finished), "{stopped:?}");
    for beam in four.iter().chain(&stopped) {
        assert!(
            (beam.log_prob - log_prob(&beam.tokens)).abs() < 1e-3,
            "{beam:?}"
        );
    }
}

#[test]
fn speculative_greedy_writes_the_targets_greedy_text() {
    let target = decoder(small(40, 48), 6);
    let draft = Decoder::new(
        &opinionated(
            GptConfig {
                n_layer: 1,
                ..small(40, 48)
            },
            9,
        ),
        Format::F32,
    )
    .unwrap();
    let want = run(
        &target,
        &[1, 2, 3],
        &GenerateConfig {
            max_new_tokens: 30,
            sampling: Sampling::greedy(),
            ..GenerateConfig::default()
        },
    );
    for g in [1, 3, 5] {
        let (got, stats) =
            speculative_generate(&target, &draft, &[1, 2, 3], 30, g, Sampling::greedy()).unwrap();
        assert_eq!(got, want, "{g} guesses");
        assert!(stats.rounds <= 30);
    }
    // A draft that is the target itself: every guess accepted.
    let (got, stats) =
        speculative_generate(&target, &target, &[1, 2, 3], 30, 4, Sampling::greedy()).unwrap();
    assert_eq!(got, want);
    assert_eq!(stats.accepted, stats.proposed);
    assert_eq!(stats.rounds, 6); // 5 tokens a round
}

#[test]
fn speculative_sampling_draws_from_the_targets_distribution() {
    // Vocabulary 6, so every probability is counted well in a few thousand runs.
    let target = decoder(small(6, 16), 11);
    let draft = decoder(small(6, 16), 12); // another model: many rejections
    let prompt = [0_u32, 1];
    // The target's exact distribution of the first two new tokens.
    let softmax = |l: Vec<f32>| {
        let m = l.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let e: Vec<f64> = l.iter().map(|x| f64::from(x - m).exp()).collect();
        let z: f64 = e.iter().sum();
        e.into_iter().map(|x| x / z).collect::<Vec<f64>>()
    };
    let p1 = softmax(dec_logits(&target, &prompt));
    let mut want = vec![0.0; 36];
    for a in 0..6 {
        let p2 = softmax(dec_logits(&target, &[0, 1, a as u32]));
        for b in 0..6 {
            want[a * 6 + b] = p1[a] * p2[b];
        }
    }
    let runs = 6000;
    let mut counts = vec![0usize; 36];
    let mut stats_total = 0.0;
    for seed in 0..runs {
        let sampling = Sampling {
            seed,
            ..Sampling::default()
        };
        let (got, stats) = speculative_generate(&target, &draft, &prompt, 2, 3, sampling).unwrap();
        counts[got[0] as usize * 6 + got[1] as usize] += 1;
        stats_total += stats.acceptance();
    }
    // Pearson's chi-square over the 36 pairs, 35 degrees of freedom: the
    // 99.9th percentile is 66.6.
    let chi2: f64 = counts
        .iter()
        .zip(&want)
        .filter(|(_, p)| **p > 0.0)
        .map(|(&c, &p)| (c as f64 - p * runs as f64).powi(2) / (p * runs as f64))
        .sum();
    assert!(chi2 < 66.6, "chi-square {chi2:.1}: {counts:?}");
    let acceptance = stats_total / runs as f64;
    assert!(
        acceptance > 0.05 && acceptance < 0.95,
        "acceptance {acceptance}"
    );
}

fn dec_logits(dec: &Decoder, tokens: &[u32]) -> Vec<f32> {
    let mut cache = dec.new_cache();
    dec.forward(
        &mut [Segment {
            cache: &mut cache,
            tokens,
        }],
        Logits::Last,
    )
    .unwrap()
    .into_raw_vec_and_offset()
    .0
}
