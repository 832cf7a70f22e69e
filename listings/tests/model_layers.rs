//! The model's layers on small inputs whose answers were worked out by hand
//! (or with a calculator, to 7 digits), one layer at a time.

use listings::model::{
    LayerNormParams, LinearParams, attention_forward, attention_head, attention_reference,
    causal_mask, cosine_similarity, crossentropy_forward, encoder_forward, fast_exp, gelu,
    gelu_forward, layernorm_forward, layernorm_row, lm_head_forward, matmul_forward,
    residual_forward, rope_apply, sinusoidal_positions, softmax,
};
use listings::parallel::max;
use listings::parallel::{par_map, simd, sum_map};
use listings::rng::{randn, seeded};
use ndarray::{Array1, Array2, Array3, Array4, array, s};

/// Asserts that two sequences of floats agree to within `tol`, naming the
/// first place they do not.
fn assert_close<'a>(
    actual: impl IntoIterator<Item = &'a f32>,
    expected: impl IntoIterator<Item = &'a f32>,
    tol: f32,
) {
    let (a, e): (Vec<f32>, Vec<f32>) = (
        actual.into_iter().copied().collect(),
        expected.into_iter().copied().collect(),
    );
    assert_eq!(a.len(), e.len(), "lengths differ");
    for (i, (x, y)) in a.iter().zip(&e).enumerate() {
        assert!(
            (x - y).abs() <= tol,
            "element {i}: got {x}, expected {y} (tolerance {tol})"
        );
    }
}

#[test]
fn fast_exp_matches_std_exp_to_a_few_ulps() {
    let mut worst = 0.0_f64;
    let mut x = -87.0_f32;
    while x < 88.0 {
        let rel = ((fast_exp(x) as f64 - (x as f64).exp()) / (x as f64).exp()).abs();
        worst = worst.max(rel);
        x += 0.0137;
    }
    assert!(worst < 5e-7, "max relative error {worst:e}");
    assert_eq!(fast_exp(0.0), 1.0);
    assert_eq!(fast_exp(f32::NEG_INFINITY), 0.0);
    assert_eq!(fast_exp(-1000.0), 0.0);
    assert_eq!(fast_exp(1000.0), f32::INFINITY);
    assert!(fast_exp(f32::NAN).is_nan());
}

#[test]
fn layernorm_of_one_two_three_four() {
    // mean 2.5, variance (2.25 + 0.25 + 0.25 + 2.25) / 4 = 1.25
    let x = array![[[1.0_f32, 2.0, 3.0, 4.0]]];
    let mut out = Array3::zeros((1, 1, 4));
    let (mut mean, mut rstd) = (Array2::zeros((1, 1)), Array2::zeros((1, 1)));
    layernorm_forward(&mut out, &mut mean, &mut rstd, &x, &LayerNormParams::new(4));
    assert_eq!(mean[[0, 0]], 2.5);
    assert_close(&rstd, &[1.0 / (1.25_f32 + 1e-5).sqrt()], 1e-7);
    let expected = [-1.341_635_4, -0.447_211_8, 0.447_211_8, 1.341_635_4];
    assert_close(&out, &expected, 1e-6);

    // The learned scale and shift apply after normalising: 2·x̂ + 0.5.
    let params = LayerNormParams {
        weight: Array1::from_elem(4, 2.0),
        bias: Array1::from_elem(4, 0.5),
    };
    layernorm_forward(&mut out, &mut mean, &mut rstd, &x, &params);
    let scaled: Vec<f32> = expected.iter().map(|v| 2.0 * v + 0.5).collect();
    assert_close(&out, &scaled, 1e-6);
}

#[test]
fn layernorm_rows_have_mean_zero_and_variance_one() {
    let x = randn((3, 5, 16), 3.0, &mut seeded(1)) + 7.0;
    let mut out = Array3::zeros((3, 5, 16));
    let (mut mean, mut rstd) = (Array2::zeros((3, 5)), Array2::zeros((3, 5)));
    layernorm_forward(
        &mut out,
        &mut mean,
        &mut rstd,
        &x,
        &LayerNormParams::new(16),
    );
    for row in out.rows() {
        let m = row.mean().unwrap();
        let var = row.mapv(|v| (v - m) * (v - m)).mean().unwrap();
        assert!(m.abs() < 1e-5, "mean {m}");
        assert!((var - 1.0).abs() < 1e-3, "variance {var}");
    }
}

#[test]
fn gelu_at_known_points() {
    // 0.5·x·(1 + tanh(sqrt(2/π)·(x + 0.044715·x³))), computed in double precision.
    let known = [
        (-3.0, -0.003_637_4),
        (-1.0, -0.158_808),
        (-0.5, -0.154_286),
        (0.0, 0.0),
        (0.5, 0.345_714),
        (1.0, 0.841_192),
        (2.0, 1.954_597_7),
        (3.0, 2.996_362_6),
    ];
    for (x, y) in known {
        assert!(
            (gelu(x) - y).abs() < 1e-6,
            "gelu({x}) = {}, expected {y}",
            gelu(x)
        );
    }
    // Far out it is the identity on the right and 0 on the left, with no NaN.
    assert_eq!(gelu(100.0), 100.0);
    assert_eq!(gelu(-100.0), 0.0);
}

#[test]
fn gelu_forward_agrees_with_the_tanh_formula() {
    let x = randn((2, 3, 40), 2.0, &mut seeded(2));
    let mut out = Array3::zeros(x.raw_dim());
    gelu_forward(&mut out, &x);
    let tanh_form = x.mapv(|v: f32| {
        let v = v as f64;
        (0.5 * v
            * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v.powi(3))).tanh()))
            as f32
    });
    assert_close(&out, &tanh_form, 2e-6);
}

#[test]
fn softmax_of_known_logits() {
    let p = softmax(&array![1.0, 2.0, 3.0]);
    assert_close(&p, &[0.090_030_57, 0.244_728_47, 0.665_240_96], 1e-7);
}

#[test]
fn softmax_is_stable_for_large_logits() {
    let p = softmax(&array![1000.0, 1000.0, 999.0]);
    assert!(p.iter().all(|v| v.is_finite()));
    assert!((p.sum() - 1.0).abs() < 1e-6);
    assert_close(&p, &[0.422_318_8, 0.422_318_8, 0.155_362_4], 1e-6);
    // And for very negative ones, and for -∞ (a masked entry).
    let q = softmax(&array![-1000.0, -1001.0, f32::NEG_INFINITY]);
    assert_close(&q, &[0.731_058_6, 0.268_941_4, 0.0], 1e-6);
}

#[test]
fn causal_mask_hides_the_future() {
    let m = causal_mask(4);
    for ((i, j), &v) in m.indexed_iter() {
        assert_eq!(
            v,
            if j <= i { 0.0 } else { f32::NEG_INFINITY },
            "at ({i}, {j})"
        );
    }
}

#[test]
fn attention_of_two_tokens_by_hand() {
    // One head of size 2. Token 0 can only see itself, so its output is v0.
    // Token 1's scores are q1·k0/√2 = 0 and q1·k1/√2 = 2/√2 = √2, so its
    // weights are softmax(0, √2) = (0.1955703, 0.8044297) and its output
    // 0.1955703·(1, 2) + 0.8044297·(3, -1) = (2.6088594, -0.4132890).
    let q = array![[1.0_f32, 0.0], [0.0, 1.0]];
    let k = array![[1.0_f32, 0.0], [0.0, 2.0]];
    let v = array![[1.0_f32, 2.0], [3.0, -1.0]];
    let (out, weights) = attention_head(&q, &k, &v, true);
    assert_close(&weights, &[1.0, 0.0, 0.195_570_3, 0.804_429_7], 1e-6);
    assert_close(&out, &[1.0, 2.0, 2.608_859_4, -0.413_289], 1e-6);

    // The batched version, from q, k, v side by side in one (B, T, 3C) array.
    let mut qkv = Array3::zeros((1, 2, 6));
    qkv.slice_mut(s![0, .., 0..2]).assign(&q);
    qkv.slice_mut(s![0, .., 2..4]).assign(&k);
    qkv.slice_mut(s![0, .., 4..6]).assign(&v);
    let (mut y, mut att) = (Array3::zeros((1, 2, 2)), Array4::zeros((1, 1, 2, 2)));
    attention_forward(&mut y, &mut att, &qkv, 1);
    assert_close(&att, &weights, 1e-6);
    assert_close(&y, &out, 1e-6);
}

#[test]
fn attention_without_the_mask_lets_token_zero_see_the_future() {
    let q = array![[1.0_f32, 0.0], [0.0, 1.0]];
    let k = array![[1.0_f32, 0.0], [0.0, 2.0]];
    let v = array![[1.0_f32, 2.0], [3.0, -1.0]];
    let (_, weights) = attention_head(&q, &k, &v, false);
    // Token 0's scores: 1/√2 and 0.
    let w0 = 1.0 / (1.0 + (-1.0_f32 / 2.0_f32.sqrt()).exp());
    assert_close(weights.row(0), &[w0, 1.0 - w0], 1e-6);
}

#[test]
fn per_head_reference_equals_batched_attention() {
    for (b, t, n_head, hs) in [
        (3, 17, 4, 8),
        (1, 1, 2, 4),
        (5, 64, 4, 32),
        (2, 9, 1, 5),
        (2, 300, 2, 64),
    ] {
        let c = n_head * hs;
        let qkv = randn((b, t, 3 * c), 1.5, &mut seeded(b as u64 * 100 + t as u64));
        let (ref_out, ref_att) = attention_reference(&qkv, n_head);
        let (mut out, mut att) = (
            Array3::zeros((b, t, c)),
            Array4::from_elem((b, n_head, t, t), f32::NAN),
        );
        attention_forward(&mut out, &mut att, &qkv, n_head);
        assert_close(&att, &ref_att, 1e-6);
        assert_close(&out, &ref_out, 1e-5);
        // Every row of weights sums to 1 and is exactly 0 after the diagonal.
        for ((_, _, i, j), &w) in att.indexed_iter() {
            if j > i {
                assert_eq!(w, 0.0);
            }
        }
        for row in att.rows() {
            assert!((row.sum() - 1.0).abs() < 1e-5);
        }
    }
}

#[test]
fn matmul_forward_is_x_times_w_plus_b() {
    let x = randn((2, 3, 4), 1.0, &mut seeded(3));
    let layer = LinearParams {
        weight: randn((4, 5), 1.0, &mut seeded(4)),
        bias: randn(5, 1.0, &mut seeded(5)),
    };
    let mut out = Array3::zeros((2, 3, 5));
    matmul_forward(&mut out, &x, &layer);
    for b in 0..2 {
        for t in 0..3 {
            for o in 0..5 {
                let expected = layer.bias[o]
                    + (0..4)
                        .map(|i| x[[b, t, i]] * layer.weight[[i, o]])
                        .sum::<f32>();
                assert!((out[[b, t, o]] - expected).abs() < 1e-5);
            }
        }
    }
}

#[test]
fn residual_adds_and_lm_head_dots_with_every_embedding() {
    let a = array![[[1.0_f32, 2.0]]];
    let b = array![[[10.0_f32, 20.0]]];
    let mut out = Array3::zeros((1, 1, 2));
    residual_forward(&mut out, &a, &b);
    assert_eq!(out, array![[[11.0, 22.0]]]);

    let wte = array![[1.0_f32, 0.0], [0.0, 1.0], [1.0, 1.0]]; // V = 3
    let mut logits = Array3::zeros((1, 1, 3));
    lm_head_forward(&mut logits, &out, &wte);
    assert_eq!(logits, array![[[11.0, 22.0, 33.0]]]);
}

#[test]
fn crossentropy_by_hand() {
    // Position 0: logits (0, 0, 0, 0), uniform: loss ln 4.
    // Position 1: logits (2, 0), target 0: -ln(e²/(e² + 1)) = ln(1 + e^-2).
    let logits = array![[[0.0_f32, 0.0, 0.0, 0.0], [2.0, 0.0, -1000.0, -1000.0]]];
    let targets = array![[3_u32, 0]];
    let mut losses = Array2::zeros((1, 2));
    let mean = crossentropy_forward(&mut losses, &logits, &targets);
    let expected = [4.0_f32.ln(), (1.0 + (-2.0_f32).exp()).ln()];
    assert_close(&losses, &expected, 1e-6);
    assert!((mean - (expected[0] + expected[1]) / 2.0).abs() < 1e-6);
}

#[test]
fn encoder_is_a_table_lookup_plus_position() {
    let wte = randn((7, 3), 1.0, &mut seeded(6));
    let wpe = randn((4, 3), 1.0, &mut seeded(7));
    let idx = array![[6_u32, 0, 6], [1, 2, 3]];
    let mut out = Array3::zeros((2, 3, 3));
    encoder_forward(&mut out, &idx, &wte, &wpe);
    for ((b, t), &id) in idx.indexed_iter() {
        let expected = &wte.row(id as usize) + &wpe.row(t);
        assert_eq!(out.slice(s![b, t, ..]), expected);
    }
    // A lookup is a one-hot vector times the table.
    let one_hot = Array1::from_shape_fn(7, |i| if i == 6 { 1.0_f32 } else { 0.0 });
    assert_eq!(one_hot.dot(&wte), wte.row(6));
}

#[test]
fn sinusoidal_positions_follow_the_formula() {
    let (t, c) = (50, 16);
    let pe = sinusoidal_positions(t, c);
    assert_eq!(pe.dim(), (t, c));
    for pos in [0, 1, 7, 49] {
        for i in 0..c / 2 {
            let angle = pos as f64 / 10_000_f64.powf(2.0 * i as f64 / c as f64);
            assert!((pe[[pos, 2 * i]] as f64 - angle.sin()).abs() < 1e-6);
            assert!((pe[[pos, 2 * i + 1]] as f64 - angle.cos()).abs() < 1e-6);
        }
    }
    // Every position's vector differs from every other's.
    for a in 0..t {
        for b in a + 1..t {
            assert!((&pe.row(a) - &pe.row(b)).mapv(f32::abs).sum() > 1e-3);
        }
    }
    assert_eq!(sinusoidal_positions(3, 5).dim(), (3, 5));
}

#[test]
fn rope_keeps_lengths_and_sees_only_relative_positions() {
    let d = 8;
    let q = randn((1, d), 1.0, &mut seeded(8));
    let k = randn((1, d), 1.0, &mut seeded(9));
    // Position 0 is no rotation, and rotations keep lengths.
    assert_close(&rope_apply(&q, &[0]), &q, 1e-7);
    let r = rope_apply(&q, &[13]);
    assert!((r.row(0).dot(&r.row(0)) - q.row(0).dot(&q.row(0))).abs() < 1e-4);
    // q at m dotted with k at n depends only on m - n.
    let score = |m: usize, n: usize| {
        rope_apply(&q, &[m])
            .row(0)
            .dot(&rope_apply(&k, &[n]).row(0))
    };
    assert!((score(5, 2) - score(13, 10)).abs() < 1e-4);
    assert!((score(7, 7) - q.row(0).dot(&k.row(0))).abs() < 1e-4);
    assert!((score(5, 2) - score(5, 3)).abs() > 1e-3);
}

#[test]
#[should_panic(expected = "must be even")]
fn rope_refuses_an_odd_dimension() {
    rope_apply(&Array2::zeros((2, 3)), &[0, 1]);
}

#[test]
fn cosine_similarity_by_hand() {
    assert!(
        (cosine_similarity(&array![1.0, 1.0], &array![1.0, 0.0]) - 0.5_f32.sqrt()).abs() < 1e-7
    );
    assert!((cosine_similarity(&array![1.0, 2.0], &array![-1.0, -2.0]) + 1.0).abs() < 1e-6);
    assert_eq!(cosine_similarity(&array![0.0, 0.0], &array![1.0, 2.0]), 0.0);
}

#[test]
fn vector_instructions_and_threads_change_no_bit() {
    // gelu_forward runs in pieces on the worker threads, compiled for AVX-512
    // where the CPU has it; this test's own loop is plain, one thread.
    let x = randn((8, 64, 512), 3.0, &mut seeded(10));
    let mut fast = Array3::zeros(x.raw_dim());
    gelu_forward(&mut fast, &x);
    assert_eq!(fast, x.mapv(gelu));

    let inp: Vec<f32> = x.iter().copied().collect();
    let mut out = vec![0.0; inp.len()];
    par_map(&mut out, &inp, |v| fast_exp(v) - 1.0);
    assert!(out.iter().zip(&inp).all(|(y, &x)| *y == fast_exp(x) - 1.0));

    // LayerNorm inside row by row outside it.
    let x = randn((3, 7, 100), 2.0, &mut seeded(11));
    let params = LayerNormParams {
        weight: randn(100, 1.0, &mut seeded(12)),
        bias: randn(100, 1.0, &mut seeded(13)),
    };
    let (mut out, mut mean, mut rstd) = (
        Array3::zeros((3, 7, 100)),
        Array2::zeros((3, 7)),
        Array2::zeros((3, 7)),
    );
    layernorm_forward(&mut out, &mut mean, &mut rstd, &x, &params);
    let (w, b) = (params.weight.to_vec(), params.bias.to_vec());
    for ((bt, t), &m) in mean.indexed_iter() {
        let mut y = vec![0.0; 100];
        let (row_mean, row_rstd) =
            layernorm_row(&mut y, x.slice(s![bt, t, ..]).as_slice().unwrap(), &w, &b);
        assert_eq!((m, rstd[[bt, t]]), (row_mean, row_rstd));
        assert_eq!(out.slice(s![bt, t, ..]).to_vec(), y);
    }
}

#[test]
fn sums_and_maxima_in_sixteen_lanes() {
    let xs: Vec<f32> = (0..1000).map(|i| ((i * 37) % 101) as f32 - 50.0).collect();
    for n in [0, 1, 15, 16, 17, 33, 1000] {
        let plain: f32 = xs[..n].iter().sum();
        assert_eq!(
            sum_map(&xs[..n], |x| x),
            plain,
            "{n} numbers (whole numbers add exactly)"
        );
        let plain_max = xs[..n].iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
        assert_eq!(max(&xs[..n]), plain_max);
        assert_eq!(
            simd(|| sum_map(&xs[..n], |x| x * x)),
            sum_map(&xs[..n], |x| x * x)
        );
    }
}

#[test]
fn par_mat_mul_is_general_mat_mul_bit_for_bit() {
    use listings::parallel::par_mat_mul;
    use ndarray::linalg::general_mat_mul;
    let mut rng = seeded(5);
    // Tall, wide, square, odd sizes, under the threshold (no split), and
    // transposed views as the backward pass passes them.
    for (m, k, n) in [
        (768, 128, 384),
        (128, 768, 512),
        (65, 300, 1001),
        (3, 4, 5),
        (300, 257, 33),
    ] {
        let a = randn((m, k), 1.0, &mut rng);
        let b = randn((k, n), 1.0, &mut rng);
        let at = randn((k, m), 1.0, &mut rng);
        let start = randn((m, n), 1.0, &mut rng);
        for beta in [0.0, 1.0] {
            let (mut split, mut whole) = (start.clone(), start.clone());
            par_mat_mul(0.5, &a, &b, beta, &mut split);
            general_mat_mul(0.5, &a, &b, beta, &mut whole);
            assert_eq!(split, whole, "({m}, {k}) x ({k}, {n}), beta {beta}");
            par_mat_mul(1.0, &at.t(), &b, beta, &mut split);
            general_mat_mul(1.0, &at.t(), &b, beta, &mut whole);
            assert_eq!(
                split, whole,
                "transposed ({k}, {m})ᵀ x ({k}, {n}), beta {beta}"
            );
        }
    }
}
