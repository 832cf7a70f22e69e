//! Every backward pass checked against central finite differences.
//!
//! For a layer `out = f(inputs)`, pick random weights `w` of the output's
//! shape and look at the number `L = Σ w·out`. Its gradient with respect to
//! the output is `w`, so the layer's backward pass, fed `dout = w`, must
//! return `dL/dinput`. Central differences estimate the same thing from
//! the forward pass alone, one number at a time, here to fourth order:
//! `dL/dx ≈ (8·(L(x+h) - L(x-h)) - (L(x+2h) - L(x-2h))) / 12h`.
//!
//! The forward passes compute in f32 (`L` is added up in f64), so each
//! estimate carries rounding noise of about 1e-5 to 1e-4 here, whatever the
//! size of the gradient; the fourth-order formula allows a larger step
//! (`h = 0.05`), which divides that noise by more, without its curvature
//! error growing. The error of a gradient entry is
//! `|analytic - numeric| / max(|analytic|, |numeric|, 0.01)`: relative
//! above 0.01, absolute (in hundredths) below, where the noise would
//! swamp a relative error. An entry that is not a finite number, analytic
//! or numeric, has an infinite error: the checks fill the gradients a
//! backward pass should overwrite with NaN, so an entry it forgets fails.
//! Each check prints the largest error it saw (run with `--nocapture` to
//! read the report) and asserts it is below [`TOLERANCE`]. The last tests
//! show that the check can fail: a wrong derivative, one gradient entry 5%
//! off, or one left unwritten, is caught.

use listings::model::gradcheck::{
    ALL, SAMPLES, TOLERANCE, assert_grad, compare, flat, flat_mut, rand, report, view, weighted,
};
use listings::model::{
    ActivationGrads, Activations, BlockGrads, BlockParams, Gpt, GptConfig, GptParams,
    LayerActivations, LayerNormParams, LinearParams, attention_backward, attention_forward,
    block_backward, block_forward, crossentropy_forward, crossentropy_softmax_backward,
    encoder_backward, encoder_forward, gelu, gelu_backward, gelu_forward, layernorm_backward,
    layernorm_forward, lm_head_backward, lm_head_forward, matmul_backward, matmul_forward,
    residual_backward, residual_forward,
};
use listings::model::{Arch, Positions, attention_forward_alibi, rope_backward, rope_forward};
use listings::parallel::par_zip_map;
use listings::rng::{RngExt, randn, seeded};
use ndarray::{Array1, Array2, Array3, Array4};

// ---------------------------------------------------------------- layers

#[test]
fn encoder() {
    let (v, block, b, t, c) = (5, 4, 2, 3, 6);
    let idx = ndarray::array![[1_u32, 4, 1], [0, 1, 3]]; // token 1 three times
    let (mut wte, mut wpe) = (rand((v, c), 1.0, 1), rand((block, c), 1.0, 2));
    let w = rand((b, t, c), 1.0, 3);
    let (mut dwte, mut dwpe) = (Array2::zeros((v, c)), Array2::zeros((block, c)));
    encoder_backward(&mut dwte, &mut dwpe, &w, &idx);
    let forward = |wte: &ndarray::ArrayRef2<f32>, wpe: &ndarray::ArrayRef2<f32>| {
        let mut out = Array3::zeros((b, t, c));
        encoder_forward(&mut out, &idx, wte, wpe);
        weighted(&w, &out)
    };
    let wpe0 = wpe.clone();
    let c1 = compare(flat_mut(&mut wte), flat(&dwte), ALL, |x| {
        forward(&view(x, &dwte), &wpe0)
    });
    assert_grad("encoder", "wte", c1);
    let wte0 = wte.clone();
    let c2 = compare(flat_mut(&mut wpe), flat(&dwpe), ALL, |x| {
        forward(&wte0, &view(x, &dwpe))
    });
    assert_grad("encoder", "wpe", c2);
}

#[test]
fn layernorm() {
    let (b, t, c) = (2, 3, 8);
    let mut inp = rand((b, t, c), 2.0, 1) + 0.5;
    let params = LayerNormParams {
        weight: rand(c, 0.5, 2) + 1.0,
        bias: rand(c, 0.5, 3),
    };
    let w = rand((b, t, c), 1.0, 4);
    let forward = |inp: &ndarray::ArrayRef3<f32>, params: &LayerNormParams| {
        let mut out = Array3::zeros((b, t, c));
        let (mut mean, mut rstd) = (Array2::zeros((b, t)), Array2::zeros((b, t)));
        layernorm_forward(&mut out, &mut mean, &mut rstd, inp, params);
        (weighted(&w, &out), mean, rstd)
    };
    let (_, mean, rstd) = forward(&inp, &params);
    let mut dinp = Array3::zeros((b, t, c));
    let mut dparams = LayerNormParams {
        weight: Array1::zeros(c),
        bias: Array1::zeros(c),
    };
    layernorm_backward(&mut dinp, &mut dparams, &w, &inp, &params, &mean, &rstd);

    let p0 = params.clone();
    let c1 = compare(flat_mut(&mut inp), flat(&dinp), ALL, |x| {
        forward(&view(x, &dinp), &p0).0
    });
    assert_grad("layernorm", "inp", c1);
    let inp0 = inp.clone();
    let mut weight = params.weight.clone();
    let c2 = compare(flat_mut(&mut weight), flat(&dparams.weight), ALL, |x| {
        let p = LayerNormParams {
            weight: view(x, &params.weight).to_owned(),
            bias: params.bias.clone(),
        };
        forward(&inp0, &p).0
    });
    assert_grad("layernorm", "weight", c2);
    let c3 = compare(
        flat_mut(&mut params.bias.clone()),
        flat(&dparams.bias),
        ALL,
        |x| {
            let p = LayerNormParams {
                weight: params.weight.clone(),
                bias: view(x, &params.bias).to_owned(),
            };
            forward(&inp0, &p).0
        },
    );
    assert_grad("layernorm", "bias", c3);
    // The input's gradient is added to, not written: a second call doubles it.
    let once = dinp.clone();
    layernorm_backward(&mut dinp, &mut dparams, &w, &inp, &params, &mean, &rstd);
    assert!((&dinp - &(2.0 * &once)).iter().all(|d| d.abs() < 1e-6));
}

#[test]
fn matmul() {
    let (b, t, c, oc) = (2, 3, 5, 7);
    let inp = rand((b, t, c), 1.0, 1);
    let layer = LinearParams {
        weight: rand((c, oc), 1.0, 2),
        bias: rand(oc, 1.0, 3),
    };
    let w = rand((b, t, oc), 1.0, 4);
    let forward = |inp: &ndarray::ArrayRef3<f32>, layer: &LinearParams| {
        let mut out = Array3::zeros((b, t, oc));
        matmul_forward(&mut out, inp, layer);
        weighted(&w, &out)
    };
    let mut dinp = Array3::from_elem((b, t, c), f32::NAN); // overwritten
    let mut dlayer = LinearParams::zeros(c, oc);
    matmul_backward(&mut dinp, &mut dlayer, &w, &inp, &layer);

    let c1 = compare(flat_mut(&mut inp.clone()), flat(&dinp), ALL, |x| {
        forward(&view(x, &inp), &layer)
    });
    assert_grad("matmul", "inp", c1);
    let c2 = compare(
        flat_mut(&mut layer.weight.clone()),
        flat(&dlayer.weight),
        ALL,
        |x| {
            let l = LinearParams {
                weight: view(x, &layer.weight).to_owned(),
                bias: layer.bias.clone(),
            };
            forward(&inp, &l)
        },
    );
    assert_grad("matmul", "weight", c2);
    let c3 = compare(
        flat_mut(&mut layer.bias.clone()),
        flat(&dlayer.bias),
        ALL,
        |x| {
            let l = LinearParams {
                weight: layer.weight.clone(),
                bias: view(x, &layer.bias).to_owned(),
            };
            forward(&inp, &l)
        },
    );
    assert_grad("matmul", "bias", c3);
}

#[test]
fn gelu_layer() {
    let shape = (2, 3, 16);
    let inp = rand(shape, 2.0, 1);
    let w = rand(shape, 1.0, 2);
    let mut dinp = Array3::from_elem(shape, f32::NAN);
    gelu_backward(&mut dinp, &inp, &w);
    let c = compare(flat_mut(&mut inp.clone()), flat(&dinp), ALL, |x| {
        let mut out = Array3::zeros(shape);
        gelu_forward(&mut out, &view(x, &inp));
        weighted(&w, &out)
    });
    assert_grad("gelu", "inp", c);
}

#[test]
fn residual() {
    let shape = (2, 3, 4);
    let (a, b) = (rand(shape, 1.0, 1), rand(shape, 1.0, 2));
    let w = rand(shape, 1.0, 3);
    let (mut da, mut db) = (Array3::zeros(shape), Array3::zeros(shape));
    residual_backward(&mut da, &mut db, &w);
    let forward = |a: &ndarray::ArrayRef3<f32>, b: &ndarray::ArrayRef3<f32>| {
        let mut out = Array3::zeros(shape);
        residual_forward(&mut out, a, b);
        weighted(&w, &out)
    };
    let c1 = compare(flat_mut(&mut a.clone()), flat(&da), ALL, |x| {
        forward(&view(x, &a), &b)
    });
    assert_grad("residual", "a", c1);
    let c2 = compare(flat_mut(&mut b.clone()), flat(&db), ALL, |x| {
        forward(&a, &view(x, &b))
    });
    assert_grad("residual", "b", c2);
}

#[test]
fn attention() {
    let (b, t, c, nh) = (2, 5, 8, 2);
    let qkv = rand((b, t, 3 * c), 1.0, 1);
    let w = rand((b, t, c), 1.0, 2);
    let forward = |qkv: &ndarray::ArrayRef3<f32>| {
        let mut out = Array3::zeros((b, t, c));
        let mut att = Array4::zeros((b, nh, t, t));
        attention_forward(&mut out, &mut att, qkv, nh);
        (weighted(&w, &out), att)
    };
    let (_, att) = forward(&qkv);
    let mut dqkv = Array3::from_elem((b, t, 3 * c), f32::NAN);
    let mut datt = Array4::from_elem((b, nh, t, t), f32::NAN);
    attention_backward(&mut dqkv, &mut datt, &w, &qkv, &att, nh);
    let cmp = compare(flat_mut(&mut qkv.clone()), flat(&dqkv), ALL, |x| {
        forward(&view(x, &qkv)).0
    });
    assert_grad("attention", "qkv", cmp);
}

#[test]
fn lm_head() {
    let (b, t, c, v) = (2, 3, 6, 9);
    let (x, wte) = (rand((b, t, c), 1.0, 1), rand((v, c), 1.0, 2));
    let w = rand((b, t, v), 1.0, 3);
    let forward = |x: &ndarray::ArrayRef3<f32>, wte: &ndarray::ArrayRef2<f32>| {
        let mut logits = Array3::zeros((b, t, v));
        lm_head_forward(&mut logits, x, wte);
        weighted(&w, &logits)
    };
    let mut dx = Array3::from_elem((b, t, c), f32::NAN);
    let mut dwte = Array2::zeros((v, c));
    lm_head_backward(&mut dx, &mut dwte, &w, &x, &wte);
    let c1 = compare(flat_mut(&mut x.clone()), flat(&dx), ALL, |p| {
        forward(&view(p, &x), &wte)
    });
    assert_grad("lm_head", "x", c1);
    let c2 = compare(flat_mut(&mut wte.clone()), flat(&dwte), ALL, |p| {
        forward(&x, &view(p, &wte))
    });
    assert_grad("lm_head", "wte", c2);
}

#[test]
fn crossentropy() {
    let (b, t, v) = (2, 3, 7);
    let logits = rand((b, t, v), 2.0, 1);
    let targets = ndarray::array![[0_u32, 6, 3], [3, 3, 1]];
    let mut dlogits = Array3::from_elem((b, t, v), f32::NAN);
    crossentropy_softmax_backward(&mut dlogits, &logits, &targets);
    let cmp = compare(flat_mut(&mut logits.clone()), flat(&dlogits), ALL, |x| {
        let mut losses = Array2::zeros((b, t));
        crossentropy_forward(&mut losses, &view(x, &logits), &targets);
        losses.iter().map(|&l| f64::from(l)).sum::<f64>() / (b * t) as f64
    });
    assert_grad("crossentropy", "logits", cmp);
    for row in dlogits.rows() {
        assert!(row.sum().abs() < 1e-6, "each row of dlogits sums to 0");
    }
}

// ------------------------------------------------- a block, the whole model

/// The tiny model of the whole-model check.
fn tiny() -> GptConfig {
    GptConfig {
        vocab_size: 11,
        block_size: 6,
        n_layer: 2,
        n_head: 2,
        n_embd: 8,
    }
}

/// Parameters with every number drawn at random (LayerNorm scales near 1),
/// larger than GPT-2's initialisation so that every gradient is well above
/// the finite differences' noise and the LayerNorms' scales and biases
/// matter.
fn random_params(config: &GptConfig, seed: u64) -> GptParams {
    let mut params = GptParams::zeros(config);
    let mut rng = seeded(seed);
    for (name, mut tensor) in params.tensors_mut() {
        let is_ln_scale = name.contains("ln_") && name.ends_with(".weight");
        let std = if name.contains("wte") || name.contains("wpe") {
            1.0
        } else {
            0.3
        };
        for x in tensor.iter_mut() {
            let z = randn(1, std, &mut rng)[0];
            *x = if is_ln_scale { 1.0 + z } else { z };
        }
    }
    params
}

/// Checks the gradients of the tensors of `params` whose names pass
/// `wanted`, with `loss` computed from a perturbed copy of `params`; prints
/// a line per tensor and returns the largest error with its tensor's name.
fn check_params(
    layer: &str,
    params: &GptParams,
    grads: &GptParams,
    wanted: impl Fn(&str) -> bool,
    samples: usize,
    loss: impl Fn(&GptParams) -> f64,
) -> (f64, String) {
    let mut worst = (0.0, String::new());
    let grad_tensors = grads.tensors();
    for (k, (name, value)) in params.tensors().into_iter().enumerate() {
        if !wanted(&name) {
            continue;
        }
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
        let err = report(layer, short, &cmp);
        if err >= worst.0 {
            worst = (err, short.to_string());
        }
    }
    worst
}

#[test]
fn transformer_block() {
    let config = GptConfig {
        n_layer: 1,
        ..tiny()
    };
    let (b, t, c) = (2, 4, config.n_embd);
    let params = random_params(&config, 7);
    let x = rand((b, t, c), 1.0, 1);
    let w = rand((b, t, c), 1.0, 2);
    let new_acts = || -> LayerActivations { Activations::new(&config, b, t).layers.remove(0) };
    let forward = |x: &ndarray::ArrayRef3<f32>, p: &BlockParams, a: &mut LayerActivations| {
        block_forward(a, x, p, config.n_head);
        weighted(&w, &a.residual3)
    };
    let mut acts = new_acts();
    forward(&x, &params.h[0], &mut acts);
    let mut grads = GptParams::zeros(&config);
    let mut dx = w.clone(); // the gradient of the output in, of the input out
    let mut g: BlockGrads = ActivationGrads::new(&config, b, t).block;
    block_backward(
        &mut dx,
        &mut g,
        &mut grads.h[0],
        &acts,
        &x,
        &params.h[0],
        config.n_head,
    );

    let cmp = compare(flat_mut(&mut x.clone()), flat(&dx), ALL, |p| {
        forward(&view(p, &x), &params.h[0], &mut new_acts())
    });
    assert_grad("block", "x", cmp);
    let (err, name) = check_params(
        "block",
        &params,
        &grads,
        |name| name.contains(".h.0."),
        ALL,
        |p| forward(&x, &p.h[0], &mut new_acts()),
    );
    assert!(
        err < TOLERANCE,
        "block {name}: max relative error {err:.2e}"
    );
}

/// The tiny model, a batch, its parameters' gradients, and a function
/// giving the loss (in f64) of any parameters on that batch.
fn whole_model() -> (GptParams, GptParams, impl Fn(&GptParams) -> f64) {
    let config = tiny();
    let (b, t) = (2, config.block_size);
    let mut rng = seeded(3);
    let mut tokens = || Array2::from_shape_simple_fn((b, t), || rng.random_range(0..11_u32));
    let (idx, targets) = (tokens(), tokens());
    let params = random_params(&config, 5);
    let gpt = Gpt::from_params(config, params.clone()).expect("shapes fit");
    let mut acts = Activations::new(&config, b, t);
    let mut dacts = ActivationGrads::new(&config, b, t);
    let mut grads = GptParams::zeros(&config);
    gpt.forward_with(&mut acts, &idx, Some(&targets))
        .expect("valid input");
    gpt.backward(&mut grads, &mut dacts, &acts);
    let loss = move |p: &GptParams| {
        let gpt = Gpt::from_params(config, p.clone()).expect("shapes fit");
        let mut acts = Activations::new(&config, b, t);
        gpt.forward_with(&mut acts, &idx, Some(&targets))
            .expect("valid input");
        acts.losses.iter().map(|&l| f64::from(l)).sum::<f64>() / (b * t) as f64
    };
    (params, grads, loss)
}

#[test]
fn whole_model_every_parameter_tensor() {
    let (params, grads, loss) = whole_model();
    let (err, name) = check_params("gpt", &params, &grads, |_| true, SAMPLES, loss);
    println!("gpt            all tensors            max rel err {err:9.2e} (in {name})");
    assert!(err < TOLERANCE, "{name}: max relative error {err:.2e}");
}

// ------------------------------------------- architectures other than GPT-2's

/// The whole-model check for a model with the choices of `arch`: every
/// parameter tensor, including those the architecture does not use (its
/// gradient must then be exactly what finite differences find: zero).
fn whole_model_with(arch: Arch) -> (f64, String) {
    let config = tiny();
    let (b, t) = (2, config.block_size);
    let mut rng = seeded(3);
    let mut tokens = || Array2::from_shape_simple_fn((b, t), || rng.random_range(0..11_u32));
    let (idx, targets) = (tokens(), tokens());
    let params = random_params(&config, 5);
    let gpt = Gpt::from_parts(config, arch, params.clone()).expect("shapes fit");
    let mut acts = Activations::new(&config, b, t);
    let mut dacts = ActivationGrads::new(&config, b, t);
    let mut grads = GptParams::zeros(&config);
    gpt.forward_with(&mut acts, &idx, Some(&targets))
        .expect("valid input");
    gpt.backward(&mut grads, &mut dacts, &acts);
    let loss = move |p: &GptParams| {
        let gpt = Gpt::from_parts(config, arch, p.clone()).expect("shapes fit");
        let mut acts = Activations::new(&config, b, t);
        gpt.forward_with(&mut acts, &idx, Some(&targets))
            .expect("valid input");
        acts.losses.iter().map(|&l| f64::from(l)).sum::<f64>() / (b * t) as f64
    };
    let label = format!(
        "{}{}",
        arch.positions,
        if arch.mlp { "" } else { " no mlp" }
    );
    let (err, name) = check_params(&label, &params, &grads, |_| true, SAMPLES, loss);
    if !arch.positions.is_learned() {
        assert!(
            grads.wpe.iter().all(|&g| g == 0.0),
            "{label}: wpe has a gradient"
        );
    }
    if !arch.mlp {
        let touched = grads.h.iter().any(|h| {
            (h.mlp.c_fc.weight.iter().chain(&h.mlp.c_proj.weight)).any(|&g| g != 0.0)
                || h.ln_2.weight.iter().any(|&g| g != 0.0)
        });
        assert!(!touched, "{label}: the unused MLP has a gradient");
    }
    (err, name)
}

#[test]
fn whole_model_with_other_positions_and_without_mlp() {
    let kinds = [
        Positions::Sinusoidal,
        Positions::Rope,
        Positions::Alibi,
        Positions::None,
    ];
    let archs = kinds.map(Arch::with_positions).into_iter().chain([
        Arch {
            positions: Positions::Learned,
            mlp: false,
            ..Arch::gpt2()
        },
        Arch {
            positions: Positions::Rope,
            mlp: false,
            ..Arch::gpt2()
        },
    ]);
    for arch in archs {
        let (err, name) = whole_model_with(arch);
        assert!(
            err < TOLERANCE,
            "{arch}: {name}: max relative error {err:.2e}"
        );
    }
}

#[test]
fn rope_layer() {
    // L = Σ w·rope(qkv): its gradient is rope_backward(w).
    let (b, t, c, nh) = (2, 5, 8, 2);
    let qkv = rand((b, t, 3 * c), 1.0, 1);
    let w = rand((b, t, 3 * c), 1.0, 2);
    let mut dqkv = w.clone();
    rope_backward(&mut dqkv, nh);
    let cmp = compare(flat_mut(&mut qkv.clone()), flat(&dqkv), ALL, |x| {
        let mut out = view(x, &qkv).to_owned();
        rope_forward(&mut out, nh);
        weighted(&w, &out)
    });
    assert_grad("rope", "qkv", cmp);
}

#[test]
fn alibi_attention_layer() {
    let (b, t, c, nh) = (2, 5, 8, 2);
    let slopes = [0.5, 0.125];
    let qkv = rand((b, t, 3 * c), 1.0, 1);
    let w = rand((b, t, c), 1.0, 2);
    let forward = |x: &ndarray::ArrayRef3<f32>| {
        let (mut out, mut att) = (Array3::zeros((b, t, c)), Array4::zeros((b, nh, t, t)));
        attention_forward_alibi(&mut out, &mut att, x, nh, &slopes);
        (out, att)
    };
    let (_, att) = forward(&qkv);
    let mut dqkv = Array3::from_elem((b, t, 3 * c), f32::NAN);
    let mut datt = Array4::zeros((b, nh, t, t));
    attention_backward(&mut dqkv, &mut datt, &w, &qkv, &att, nh);
    let cmp = compare(flat_mut(&mut qkv.clone()), flat(&dqkv), ALL, |x| {
        weighted(&w, &forward(&view(x, &qkv)).0)
    });
    assert_grad("alibi attn", "qkv", cmp);
}

// ------------------------------------------------------ the check can fail

#[test]
fn a_wrong_derivative_is_caught() {
    // A tempting mistake: GELU is x·s(x), and forgetting that s depends on
    // x gives the slope s(x) alone.
    let shape = (2, 3, 16);
    let inp = rand(shape, 2.0, 1);
    let w = rand(shape, 1.0, 2);
    let mut wrong = Array3::zeros(shape);
    par_zip_map(flat_mut(&mut wrong), flat(&inp), flat(&w), |x, dy| {
        dy * gelu(x) / x
    });
    let cmp = compare(flat_mut(&mut inp.clone()), flat(&wrong), ALL, |x| {
        let mut out = Array3::zeros(shape);
        gelu_forward(&mut out, &view(x, &inp));
        weighted(&w, &out)
    });
    let err = report("wrong gelu", "inp", &cmp);
    assert!(err > TOLERANCE, "the check missed a wrong derivative");
}

#[test]
fn one_corrupted_gradient_entry_is_caught() {
    let (params, mut grads, loss) = whole_model();
    // 5% too large, on the entry the check always looks at (the largest).
    let g = &mut grads.h[1].mlp.c_fc.weight;
    let largest = g.iter().map(|x| x.abs()).fold(0.0, f32::max);
    let entry = g
        .iter_mut()
        .find(|x| x.abs() == largest)
        .expect("not empty");
    *entry *= 1.05;
    let (err, name) = check_params(
        "corrupted",
        &params,
        &grads,
        |name| name.ends_with("h.1.mlp.c_fc.weight"),
        SAMPLES,
        loss,
    );
    assert!(
        err > TOLERANCE,
        "the check missed a 5% error in {name} ({err:.2e})"
    );
}

#[test]
fn an_unwritten_gradient_entry_is_caught() {
    // A backward pass that forgets one entry leaves the NaN the gradient
    // was filled with; its relative error would be NaN, which is not above
    // any tolerance, so `compare` must count it as the worst error.
    let shape = (2, 3, 16);
    let inp = rand(shape, 2.0, 1);
    let w = rand(shape, 1.0, 2);
    let mut dinp = Array3::from_elem(shape, f32::NAN);
    gelu_backward(&mut dinp, &inp, &w);
    let forgotten = dinp.len() - 1; // as if the loop stopped one short
    flat_mut(&mut dinp)[forgotten] = f32::NAN;
    let gelu_loss = |x: &[f32]| {
        let mut out = Array3::zeros(shape);
        gelu_forward(&mut out, &view(x, &inp));
        weighted(&w, &out)
    };
    let cmp = compare(flat_mut(&mut inp.clone()), flat(&dinp), ALL, gelu_loss);
    let err = report("unwritten", "inp", &cmp);
    assert!(err > TOLERANCE, "the check missed an unwritten entry");
    assert_eq!(cmp.worst.0, forgotten, "the report names the wrong entry");

    // The same with a sound gradient but a forward pass that gives NaN:
    // the numeric estimate is not a number, and the check fails too.
    let mut dinp = Array3::from_elem(shape, f32::NAN);
    gelu_backward(&mut dinp, &inp, &w);
    let cmp = compare(flat_mut(&mut inp.clone()), flat(&dinp), ALL, |x| {
        if x[3] == inp.as_slice().expect("contiguous")[3] {
            gelu_loss(x)
        } else {
            f64::NAN // only while entry 3 is perturbed
        }
    });
    let err = report("nan forward", "inp", &cmp);
    assert!(err > TOLERANCE, "the check missed a NaN estimate");
    assert_eq!(cmp.worst.0, 3, "the report names the wrong entry");
}

// ------------------------------------------------------------ fine-tuning

use listings::finetune::classify::{
    ClassifierHead, classify_backward, classify_forward, classify_loss,
};
use listings::finetune::dpo::dpo_objective;
use listings::finetune::lora::{Lora, LoraConfig, LoraLayer, lora_backward, lora_forward};
use listings::finetune::loss::{token_nll, weighted_nll, weighted_nll_backward};

#[test]
fn lora_layer() {
    let (n, c, oc, r, scale) = (5, 6, 9, 3, 2.0);
    let x = rand((n, c), 1.0, 1);
    let base = LinearParams {
        weight: rand((c, oc), 1.0, 2),
        bias: rand(oc, 1.0, 3),
    };
    let lora = LoraLayer {
        a: rand((r, c), 1.0, 4),
        b: rand((oc, r), 1.0, 5), // not zero, so that A's gradient is not zero
    };
    let w = rand((n, oc), 1.0, 6);
    let forward = |x: &ndarray::ArrayRef2<f32>, lora: &LoraLayer| {
        weighted(&w, &lora_forward(x, &base, lora, scale).0)
    };
    let (_, u) = lora_forward(&x, &base, &lora, scale);
    let mut dlora = lora.zeros_like();
    let dx = lora_backward(&mut dlora, &w, &x, &u, &base, &lora, scale);
    let c1 = compare(flat_mut(&mut x.clone()), flat(&dx), ALL, |p| {
        forward(&view(p, &x), &lora)
    });
    assert_grad("lora", "x", c1);
    let c2 = compare(flat_mut(&mut lora.a.clone()), flat(&dlora.a), ALL, |p| {
        let l = LoraLayer {
            a: view(p, &lora.a).to_owned(),
            b: lora.b.clone(),
        };
        forward(&x, &l)
    });
    assert_grad("lora", "A", c2);
    let c3 = compare(flat_mut(&mut lora.b.clone()), flat(&dlora.b), ALL, |p| {
        let l = LoraLayer {
            a: lora.a.clone(),
            b: view(p, &lora.b).to_owned(),
        };
        forward(&x, &l)
    });
    assert_grad("lora", "B", c3);

    // The model's route: the gradient of the merged weight, xᵀ·dy, turned
    // into A's and B's, gives the same numbers.
    let dw = x.t().dot(&w);
    let mut from_merged = lora.zeros_like();
    lora.grads_from_merged(&dw, scale, &mut from_merged);
    for (a, b) in [(&from_merged.a, &dlora.a), (&from_merged.b, &dlora.b)] {
        let diff = (a - b).mapv(f32::abs).fold(0.0_f32, |m, &d| m.max(d));
        assert!(diff < 1e-4, "merged route differs by {diff}");
    }
}

#[test]
fn weighted_token_loss() {
    let (b, t, v) = (2, 3, 7);
    let logits = rand((b, t, v), 2.0, 1);
    let targets = ndarray::array![[0_u32, 6, 3], [3, 3, 1]];
    // A response-only mask on row 0, a negative weight on row 1.
    let weights = ndarray::array![[0.0_f32, 0.5, 0.5], [0.25, 0.0, -0.3]];
    let mut dlogits = Array3::from_elem((b, t, v), f32::NAN);
    weighted_nll_backward(&mut dlogits, &logits, &targets, &weights);
    let cmp = compare(flat_mut(&mut logits.clone()), flat(&dlogits), ALL, |x| {
        let nll = token_nll(&view(x, &logits), &targets);
        f64::from(weighted_nll(&nll, &weights))
    });
    assert_grad("weighted nll", "logits", cmp);
    assert!(
        dlogits
            .slice(ndarray::s![0, 0, ..])
            .iter()
            .all(|&d| d == 0.0)
    );
}

#[test]
fn classifier_head() {
    let (b, t, c, k) = (3, 4, 5, 3);
    let h = rand((b, t, c), 1.0, 1);
    let head = ClassifierHead {
        weight: rand((c, k), 1.0, 2),
        bias: rand(k, 1.0, 3),
    };
    let (positions, labels) = ([3, 0, 2], [2, 0, 1]);
    let loss = |h: &ndarray::ArrayRef3<f32>, head: &ClassifierHead| {
        f64::from(classify_loss(&classify_forward(h, &positions, head), &labels).0)
    };
    let (_, dscores) = classify_loss(&classify_forward(&h, &positions, &head), &labels);
    let mut dh = Array3::zeros((b, t, c));
    let mut dhead = head.zeros_like();
    classify_backward(&mut dh, &mut dhead, &dscores, &h, &positions, &head);
    let c1 = compare(flat_mut(&mut h.clone()), flat(&dh), ALL, |p| {
        loss(&view(p, &h), &head)
    });
    assert_grad("classifier", "h", c1);
    let c2 = compare(
        flat_mut(&mut head.weight.clone()),
        flat(&dhead.weight),
        ALL,
        |p| {
            let hd = ClassifierHead {
                weight: view(p, &head.weight).to_owned(),
                bias: head.bias.clone(),
            };
            loss(&h, &hd)
        },
    );
    assert_grad("classifier", "weight", c2);
    let c3 = compare(
        flat_mut(&mut head.bias.clone()),
        flat(&dhead.bias),
        ALL,
        |p| {
            let hd = ClassifierHead {
                weight: head.weight.clone(),
                bias: view(p, &head.bias).to_owned(),
            };
            loss(&h, &hd)
        },
    );
    assert_grad("classifier", "bias", c3);
}

/// A batch for the fine-tuning checks on the tiny model: 4 rows (two
/// preference pairs), their targets and a mask of the "response" positions.
fn pairs_batch() -> (Array2<u32>, Array2<u32>, Array2<f32>) {
    let (b, t) = (4, tiny().block_size);
    let mut rng = seeded(11);
    let mut tokens = || Array2::from_shape_simple_fn((b, t), || rng.random_range(0..11_u32));
    let (idx, targets) = (tokens(), tokens());
    let mask = Array2::from_shape_fn((b, t), |(row, pos)| f32::from(u8::from(pos >= 2 + row % 2)));
    (idx, targets, mask)
}

#[test]
fn dpo_through_the_whole_model() {
    let config = tiny();
    let (idx, targets, mask) = pairs_batch();
    let (b, t) = idx.dim();
    let nll_of = |p: &GptParams| {
        let gpt = Gpt::from_params(config, p.clone()).expect("shapes fit");
        let mut acts = Activations::new(&config, b, t);
        gpt.forward_with(&mut acts, &idx, None)
            .expect("valid input");
        (token_nll(&acts.logits, &targets), acts)
    };
    // The reference is another model, so that the margin is not zero.
    let (ref_nll, _) = nll_of(&random_params(&config, 8));
    let reference = listings::finetune::dpo::sequence_logprobs(&ref_nll, &mask);
    let beta = 0.5;
    let params = random_params(&config, 5);
    let (nll, acts) = nll_of(&params);
    let (stats, weights) = dpo_objective(&nll, &mask, &reference, beta);
    assert!(stats.margin.abs() > 0.1, "margin {}", stats.margin);
    let gpt = Gpt::from_params(config, params.clone()).expect("shapes fit");
    let mut dacts = ActivationGrads::new(&config, b, t);
    weighted_nll_backward(&mut dacts.dlogits, &acts.logits, &targets, &weights);
    let mut grads = GptParams::zeros(&config);
    gpt.backward_from_logits(&mut grads, &mut dacts, &acts);
    let loss =
        |p: &GptParams| f64::from(dpo_objective(&nll_of(p).0, &mask, &reference, beta).0.loss);
    let (err, name) = check_params("dpo", &params, &grads, |_| true, SAMPLES, loss);
    println!("dpo            all tensors            max rel err {err:9.2e} (in {name})");
    assert!(err < TOLERANCE, "{name}: max relative error {err:.2e}");
}

#[test]
fn lora_through_the_whole_model() {
    let config = tiny();
    let (idx, targets, _) = pairs_batch();
    let (b, t) = idx.dim();
    let base = random_params(&config, 5);
    let lora_config = LoraConfig {
        r: 2,
        alpha: 4.0,
        target_modules: vec!["c_attn".into(), "c_fc".into()],
        trainable_tokens: vec![3, 7],
    };
    let mut lora = Lora::new(&config, lora_config, 1).expect("valid config");
    for (k, l) in lora.layers.iter_mut().enumerate() {
        // Small, as trained adapters are: with large ones a step of H in one
        // entry of A moves a whole row of the weight, and the finite
        // differences see the curvature, not the slope.
        l.lora.b = rand(l.lora.b.raw_dim(), 0.1, 20 + k as u64);
    }
    let loss_of = |lora: &Lora| {
        let gpt = Gpt::from_params(config, lora.merged(&base)).expect("shapes fit");
        let mut acts = Activations::new(&config, b, t);
        gpt.forward_with(&mut acts, &idx, Some(&targets))
            .expect("valid input");
        acts.losses.iter().map(|&l| f64::from(l)).sum::<f64>() / (b * t) as f64
    };
    let gpt = Gpt::from_params(config, lora.merged(&base)).expect("shapes fit");
    let mut acts = Activations::new(&config, b, t);
    gpt.forward_with(&mut acts, &idx, Some(&targets))
        .expect("valid input");
    let mut grads = GptParams::zeros(&config);
    gpt.backward(&mut grads, &mut ActivationGrads::new(&config, b, t), &acts);
    let mut dlora = lora.zeros_like();
    lora.grads_from_merged(&grads, &mut dlora);
    for k in 0..lora.layers.len() {
        for which in ["A", "B"] {
            let pick = |l: &mut Lora| -> Array2<f32> {
                let layer = &l.layers[k].lora;
                if which == "A" {
                    layer.a.clone()
                } else {
                    layer.b.clone()
                }
            };
            let value = pick(&mut lora.clone());
            let analytic = pick(&mut dlora.clone());
            let cmp = compare(
                &mut value.as_slice().expect("contiguous").to_vec(),
                flat(&analytic),
                ALL,
                |p| {
                    let mut l = lora.clone();
                    let layer = &mut l.layers[k].lora;
                    let target = if which == "A" {
                        &mut layer.a
                    } else {
                        &mut layer.b
                    };
                    target
                        .as_slice_mut()
                        .expect("contiguous")
                        .copy_from_slice(p);
                    loss_of(&l)
                },
            );
            let name = format!(
                "h.{}.{}.{which}",
                lora.layers[k].block,
                lora.layers[k].module.name()
            );
            assert_grad("lora model", &name, cmp);
        }
    }
    // The trainable tokens' embedding rows.
    let mut value = lora.token_delta.clone();
    let cmp = compare(flat_mut(&mut value), flat(&dlora.token_delta), ALL, |p| {
        let mut l = lora.clone();
        l.token_delta
            .as_slice_mut()
            .expect("contiguous")
            .copy_from_slice(p);
        loss_of(&l)
    });
    assert_grad("lora model", "token rows", cmp);
}
