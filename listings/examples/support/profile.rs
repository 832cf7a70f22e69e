//! Where a forward (and backward) pass spends its time, measured on the
//! library's own functions; shared by `bench_forward` and `bench_train`.
//!
//! Three levels, each held against the one above it:
//!
//! 1. the whole pass: [`Gpt::forward_with`], [`Gpt::backward`];
//! 2. its parts: [`block_forward`] ([`block_backward`]) for each block, and
//!    the library's functions for what lies outside the blocks (the
//!    embeddings, `ln_f`, `lm_head`, the loss). Run once on fresh arrays
//!    before the timing, the parts must give the whole pass's results bit
//!    for bit, or the program stops: a model that changed outside its
//!    blocks cannot go unnoticed here. Timed, they should add up to about
//!    100% of the whole pass;
//! 3. inside a block, a micro-benchmark: each layer function the block
//!    calls, timed alone on the inputs the real pass gave it, summed per
//!    kind of layer. The report says what share of the measured
//!    `block_forward` (`block_backward`) time these account for, so a
//!    block that gained a layer this list lacks shows as coverage well
//!    under 100%. (Before the timing, each of these functions is run once
//!    and must rebuild its array of the real pass bit for bit.)
//!
//! Every part is timed in every iteration, interleaved with the whole pass,
//! so that the shares compare like with like.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use listings::model::{
    ActivationGrads, Activations, BlockGrads, BlockParams, Gpt, GptParams, LayerActivations,
    attention_backward, attention_forward, block_backward, block_forward, crossentropy_forward,
    crossentropy_softmax_backward, encoder_backward, encoder_forward, gelu_backward, gelu_forward,
    layernorm_backward, layernorm_forward, lm_head_backward, lm_head_forward, matmul_backward,
    matmul_forward, residual_forward,
};
use listings::ndarray::{Array2, Array3};

/// Untimed iterations before the timed ones.
const WARMUP: usize = 3;

/// What to say when the parts no longer add up to the library's pass.
const STALE: &str = "the parts timed in listings/examples/support/profile.rs no longer \
                     reproduce the library's pass: update them to the model";

/// Durations summed by name, in the order the names first came.
#[derive(Default)]
struct Times(Vec<(&'static str, Duration)>);

impl Times {
    fn add(&mut self, name: &'static str, d: Duration) {
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some((_, total)) => *total += d,
            None => self.0.push((name, d)),
        }
    }

    fn time<R>(&mut self, name: &'static str, f: impl FnOnce() -> R) -> R {
        let start = Instant::now();
        let out = f();
        self.add(name, start.elapsed());
        out
    }

    fn total(&self) -> Duration {
        self.0.iter().map(|&(_, d)| d).sum()
    }
}

/// One pass, taken apart.
struct Pass {
    /// The library's function for the whole pass.
    name: &'static str,
    /// The library's function for one block.
    block: &'static str,
    /// The whole pass, timed in one call.
    whole: Duration,
    /// Its parts: the functions outside the blocks and `block` (all blocks).
    parts: Times,
    /// Each block's time.
    blocks: Vec<Duration>,
    /// Inside the blocks: each layer function timed alone, summed per kind.
    kinds: Times,
}

impl Pass {
    fn new(name: &'static str, block: &'static str, n_layer: usize) -> Self {
        Pass {
            name,
            block,
            whole: Duration::ZERO,
            parts: Times::default(),
            blocks: vec![Duration::ZERO; n_layer],
            kinds: Times::default(),
        }
    }

    /// Runs block `l` (`f`), counting its time for the block and the parts.
    fn time_block(&mut self, l: usize, f: impl FnOnce()) {
        let start = Instant::now();
        f();
        let d = start.elapsed();
        self.blocks[l] += d;
        self.parts.add(self.block, d);
    }

    fn print(&self, iters: usize) {
        let per = |d: Duration| d.as_secs_f64() * 1e3 / iters as f64;
        let share = |d: Duration, of: Duration| 100.0 * d.as_secs_f64() / of.as_secs_f64();
        println!("  {:<36} {:7.3} ms", self.name, per(self.whole));
        for &(name, d) in &self.parts.0 {
            let blocks = if name == self.block {
                let each: Vec<String> = self
                    .blocks
                    .iter()
                    .map(|&d| format!("{:.3}", per(d)))
                    .collect();
                format!("  (one by one: {})", each.join(", "))
            } else {
                String::new()
            };
            let pct = share(d, self.whole);
            println!("    {name:<34} {:7.3} ms {pct:5.1}%{blocks}", per(d));
        }
        let parts = self.parts.total();
        println!(
            "    {:<34} {:7.3} ms {:5.1}% of {}",
            "the parts together",
            per(parts),
            share(parts, self.whole),
            self.name
        );
        let blocks: Duration = self.blocks.iter().sum();
        println!(
            "  inside {}: each layer function alone, on its inputs from the pass",
            self.block
        );
        let mut kinds: Vec<_> = self.kinds.0.iter().collect();
        kinds.sort_by_key(|&&(_, d)| std::cmp::Reverse(d));
        for &&(kind, d) in &kinds {
            println!("    {kind:<34} {:7.3} ms {:5.1}%", per(d), share(d, blocks));
        }
        let layers = self.kinds.total();
        println!(
            "    {:<34} {:7.3} ms {:5.1}% of {}",
            "the layers together",
            per(layers),
            share(layers, blocks),
            self.block
        );
    }
}

/// The forward pass, and the backward pass if it was asked for, taken apart.
pub struct Profile {
    iters: usize,
    forward: Pass,
    backward: Option<Pass>,
}

impl Profile {
    /// Prints both passes: mean milliseconds per pass, and shares.
    pub fn print(&self) {
        self.forward.print(self.iters);
        if let Some(backward) = &self.backward {
            backward.print(self.iters);
        }
    }
}

/// What the backward micro-benchmark reads for block `l`, kept from a real
/// backward pass: the gradient of the block's output, of its `residual2`,
/// and the block's intermediate gradients (working space every block
/// overwrites, so kept block by block).
struct BackwardInputs {
    dout: Vec<Array3<f32>>,
    dresidual2: Vec<Array3<f32>>,
    grads: Vec<BlockGrads>,
}

/// Times `iters` forward passes of `gpt` on `idx` (and `backward` passes)
/// as a whole, in parts and layer by layer (see the module documentation),
/// after checking that the parts reproduce the whole.
pub fn profile(
    gpt: &Gpt,
    idx: &Array2<u32>,
    targets: &Array2<u32>,
    iters: usize,
    backward: bool,
) -> Result<Profile> {
    let config = *gpt.config();
    let (b, t) = idx.dim();
    let inputs = check(gpt, idx, targets)?;
    let mut acts = Activations::new(&config, b, t);
    let mut dacts = ActivationGrads::new(&config, b, t);
    let mut grads = GptParams::zeros(&config);
    let mut layer_out = acts.layers[0].clone();
    let mut grads_out = (
        dacts.block.clone(),
        grads.h[0].clone(),
        dacts.dresidual.clone(),
    );
    let new = |iters| Profile {
        iters,
        forward: Pass::new("Gpt::forward_with", "block_forward", config.n_layer),
        backward: backward.then(|| Pass::new("Gpt::backward", "block_backward", config.n_layer)),
    };
    let mut profile = new(0);
    for i in 0..WARMUP + iters {
        if i == WARMUP {
            profile = new(iters);
        }
        let f = &mut profile.forward;
        let start = Instant::now();
        gpt.forward_with(&mut acts, idx, Some(targets))?;
        f.whole += start.elapsed();
        forward_parts(gpt, &mut acts, idx, targets, f);
        for l in 0..config.n_layer {
            forward_layers(gpt, &acts, l, &mut f.kinds, &mut layer_out);
        }
        if let Some(bw) = &mut profile.backward {
            grads.fill_zero();
            let start = Instant::now();
            gpt.backward(&mut grads, &mut dacts, &acts);
            bw.whole += start.elapsed();
            grads.fill_zero();
            backward_parts(gpt, &mut grads, &mut dacts, &acts, idx, targets, bw, None);
            for l in 0..config.n_layer {
                backward_layers(gpt, &acts, &inputs, l, &mut bw.kinds, &mut grads_out);
            }
        }
    }
    Ok(profile)
}

/// Runs the parts once on fresh arrays and checks that they give what
/// `forward_with` and `backward` give, and that the layer functions of the
/// micro-benchmarks, run once each, rebuild every array of every block;
/// returns what the backward micro-benchmark reads.
fn check(gpt: &Gpt, idx: &Array2<u32>, targets: &Array2<u32>) -> Result<BackwardInputs> {
    let config = *gpt.config();
    let (b, t) = idx.dim();
    let mut reference = Activations::new(&config, b, t);
    let loss = gpt.forward_with(&mut reference, idx, Some(targets))?;
    let mut acts = Activations::new(&config, b, t);
    let mut scratch = Pass::new("", "", config.n_layer);
    let my_loss = forward_parts(gpt, &mut acts, idx, targets, &mut scratch);
    ensure!(
        loss == Some(my_loss) && acts.logits == reference.logits,
        "Gpt::forward_with: {STALE}"
    );
    let mut grads = GptParams::zeros(&config);
    let mut dacts = ActivationGrads::new(&config, b, t);
    gpt.backward(&mut grads, &mut dacts, &reference);
    let mut my_grads = GptParams::zeros(&config);
    let mut my_dacts = ActivationGrads::new(&config, b, t);
    let mut inputs = BackwardInputs {
        dout: Vec::new(),
        dresidual2: Vec::new(),
        grads: Vec::new(),
    };
    let (g, keep) = (&mut my_dacts, Some(&mut inputs));
    backward_parts(
        gpt,
        &mut my_grads,
        g,
        &acts,
        idx,
        targets,
        &mut scratch,
        keep,
    );
    ensure!(
        my_grads == grads && my_dacts.dresidual == dacts.dresidual,
        "Gpt::backward: {STALE}"
    );
    // The gradient of residual2 exists only inside block_backward: the
    // gradient of the block's output plus what ln_2's backward pass adds.
    let p = gpt.params();
    for (l, a) in acts.layers.iter().enumerate() {
        let mut d = inputs.dout[l].clone();
        let mut dp = grads.h[l].clone();
        let (mean, rstd) = (&a.ln2_mean, &a.ln2_rstd);
        let dln2 = &inputs.grads[l].dln2;
        layernorm_backward(
            &mut d,
            &mut dp.ln_2,
            dln2,
            &a.residual2,
            &p.h[l].ln_2,
            mean,
            rstd,
        );
        inputs.dresidual2.push(d);
    }
    for l in 0..config.n_layer {
        let mut out = Activations::new(&config, b, t).layers.remove(0);
        forward_layers(gpt, &acts, l, &mut Times::default(), &mut out);
        ensure!(same_layer(&out, &acts.layers[l]), "block_forward: {STALE}");
        let zero = ActivationGrads::new(&config, b, t).block;
        let mut out = (
            zero,
            GptParams::zeros(&config).h.remove(0),
            inputs.dout[l].clone(),
        );
        backward_layers(gpt, &acts, &inputs, l, &mut Times::default(), &mut out);
        // What block l leaves in the residual stream's gradient: the next
        // block's input, or for the first block, the end result.
        let dx = inputs
            .dout
            .get(l.wrapping_sub(1))
            .unwrap_or(&my_dacts.dresidual);
        ensure!(
            same_grads(&out.0, &inputs.grads[l]) && out.1 == my_grads.h[l] && out.2 == dx,
            "block_backward: {STALE}"
        );
    }
    Ok(inputs)
}

/// Whether two blocks' activations are equal, array by array. The pattern
/// names every field, so an array added to the block breaks the build here.
fn same_layer(a: &LayerActivations, b: &LayerActivations) -> bool {
    let LayerActivations {
        ln1,
        ln1_mean,
        ln1_rstd,
        qkv,
        att,
        atty,
        attproj,
        residual2,
        ln2,
        ln2_mean,
        ln2_rstd,
        fch,
        fch_gelu,
        fcproj,
        residual3,
    } = a;
    let threes = [
        ln1, qkv, atty, attproj, residual2, ln2, fch, fch_gelu, fcproj, residual3,
    ];
    let others = [
        &b.ln1,
        &b.qkv,
        &b.atty,
        &b.attproj,
        &b.residual2,
        &b.ln2,
        &b.fch,
    ];
    let others = others
        .into_iter()
        .chain([&b.fch_gelu, &b.fcproj, &b.residual3]);
    let twos = [ln1_mean, ln1_rstd, ln2_mean, ln2_rstd];
    let other_twos = [&b.ln1_mean, &b.ln1_rstd, &b.ln2_mean, &b.ln2_rstd];
    threes.into_iter().eq(others) && twos.into_iter().eq(other_twos) && *att == b.att
}

/// Whether two blocks' activation gradients are equal, as [`same_layer`].
fn same_grads(a: &BlockGrads, b: &BlockGrads) -> bool {
    let BlockGrads {
        dln1,
        dqkv,
        datt,
        datty,
        dln2,
        dfch,
        dfch_gelu,
    } = a;
    let others = [&b.dln1, &b.dqkv, &b.datty, &b.dln2, &b.dfch, &b.dfch_gelu];
    [dln1, dqkv, datty, dln2, dfch, dfch_gelu]
        .into_iter()
        .eq(others)
        && *datt == b.datt
}

/// [`Gpt::forward_with`]'s parts on `a`, each timed into `pass`; returns
/// the loss.
fn forward_parts(
    gpt: &Gpt,
    a: &mut Activations,
    idx: &Array2<u32>,
    targets: &Array2<u32>,
    pass: &mut Pass,
) -> f32 {
    let (p, nh) = (gpt.params(), gpt.config().n_head);
    pass.parts.time("encoder_forward", || {
        encoder_forward(&mut a.encoded, idx, &p.wte, &p.wpe)
    });
    for l in 0..a.layers.len() {
        let (done, todo) = a.layers.split_at_mut(l);
        let x = done.last().map_or(&a.encoded, |prev| &prev.residual3);
        pass.time_block(l, || block_forward(&mut todo[0], x, &p.h[l], nh));
    }
    let x = a.layers.last().map_or(&a.encoded, |last| &last.residual3);
    pass.parts.time("ln_f: layernorm_forward", || {
        layernorm_forward(&mut a.lnf, &mut a.lnf_mean, &mut a.lnf_rstd, x, &p.ln_f)
    });
    pass.parts.time("lm_head_forward", || {
        lm_head_forward(&mut a.logits, &a.lnf, &p.wte)
    });
    pass.parts.time("crossentropy_forward", || {
        crossentropy_forward(&mut a.losses, &a.logits, targets)
    })
}

/// [`Gpt::backward`]'s parts, each timed into `pass`, adding into `grads`;
/// with `keep`, what each block read and left is kept there.
#[allow(clippy::too_many_arguments)]
fn backward_parts(
    gpt: &Gpt,
    grads: &mut GptParams,
    g: &mut ActivationGrads,
    a: &Activations,
    idx: &Array2<u32>,
    targets: &Array2<u32>,
    pass: &mut Pass,
    mut keep: Option<&mut BackwardInputs>,
) {
    let (p, nh) = (gpt.params(), gpt.config().n_head);
    pass.parts.time("crossentropy_softmax_backward", || {
        crossentropy_softmax_backward(&mut g.dlogits, &a.logits, targets)
    });
    pass.parts.time("lm_head_backward", || {
        lm_head_backward(&mut g.dlnf, &mut grads.wte, &g.dlogits, &a.lnf, &p.wte)
    });
    let x = a.layers.last().map_or(&a.encoded, |last| &last.residual3);
    let (mean, rstd) = (&a.lnf_mean, &a.lnf_rstd);
    pass.parts.time("ln_f: layernorm_backward", || {
        g.dresidual.fill(0.0);
        layernorm_backward(
            &mut g.dresidual,
            &mut grads.ln_f,
            &g.dlnf,
            x,
            &p.ln_f,
            mean,
            rstd,
        )
    });
    for l in (0..a.layers.len()).rev() {
        let x = if l == 0 {
            &a.encoded
        } else {
            &a.layers[l - 1].residual3
        };
        if let Some(keep) = keep.as_deref_mut() {
            keep.dout.insert(0, g.dresidual.clone());
        }
        let (dx, gb, dp) = (&mut g.dresidual, &mut g.block, &mut grads.h[l]);
        pass.time_block(l, || {
            block_backward(dx, gb, dp, &a.layers[l], x, &p.h[l], nh)
        });
        if let Some(keep) = keep.as_deref_mut() {
            keep.grads.insert(0, g.block.clone());
        }
    }
    pass.parts.time("encoder_backward", || {
        encoder_backward(&mut grads.wte, &mut grads.wpe, &g.dresidual, idx)
    });
}

/// One layer function of a block, and the kind it is counted as.
type Layer<'a, Out> = (&'static str, &'a dyn Fn(&mut Out));

/// Block `l`'s layer functions, each timed alone on its inputs from the
/// forward pass in `a`, writing into `out` (the pass's arrays stay as the
/// pass left them).
fn forward_layers(
    gpt: &Gpt,
    a: &Activations,
    l: usize,
    kinds: &mut Times,
    out: &mut LayerActivations,
) {
    let (p, nh): (&BlockParams, usize) = (&gpt.params().h[l], gpt.config().n_head);
    let la = &a.layers[l];
    let x = if l == 0 {
        &a.encoded
    } else {
        &a.layers[l - 1].residual3
    };
    let layers: [Layer<LayerActivations>; 10] = [
        ("layernorm", &|o| {
            layernorm_forward(&mut o.ln1, &mut o.ln1_mean, &mut o.ln1_rstd, x, &p.ln_1)
        }),
        ("matmul", &|o| {
            matmul_forward(&mut o.qkv, &la.ln1, &p.attn.c_attn)
        }),
        ("attention", &|o| {
            attention_forward(&mut o.atty, &mut o.att, &la.qkv, nh)
        }),
        ("matmul", &|o| {
            matmul_forward(&mut o.attproj, &la.atty, &p.attn.c_proj)
        }),
        ("residual", &|o| {
            residual_forward(&mut o.residual2, x, &la.attproj)
        }),
        ("layernorm", &|o| {
            let (y, mean, rstd) = (&mut o.ln2, &mut o.ln2_mean, &mut o.ln2_rstd);
            layernorm_forward(y, mean, rstd, &la.residual2, &p.ln_2)
        }),
        ("matmul", &|o| {
            matmul_forward(&mut o.fch, &la.ln2, &p.mlp.c_fc)
        }),
        ("gelu", &|o| gelu_forward(&mut o.fch_gelu, &la.fch)),
        ("matmul", &|o| {
            matmul_forward(&mut o.fcproj, &la.fch_gelu, &p.mlp.c_proj)
        }),
        ("residual", &|o| {
            residual_forward(&mut o.residual3, &la.residual2, &la.fcproj)
        }),
    ];
    for (kind, layer) in layers {
        kinds.time(kind, || layer(out));
    }
}

/// Where the backward micro-benchmark writes: a block's working space, its
/// parameters' gradients and the residual stream's gradient.
type BackwardOut = (BlockGrads, BlockParams, Array3<f32>);

/// Block `l`'s backward layer functions, each timed alone on its inputs
/// from a real backward pass (`inputs`), writing into `out`.
fn backward_layers(
    gpt: &Gpt,
    a: &Activations,
    inputs: &BackwardInputs,
    l: usize,
    kinds: &mut Times,
    out: &mut BackwardOut,
) {
    let (p, nh): (&BlockParams, usize) = (&gpt.params().h[l], gpt.config().n_head);
    let la = &a.layers[l];
    let x = if l == 0 {
        &a.encoded
    } else {
        &a.layers[l - 1].residual3
    };
    let (dout, dres2, g) = (&inputs.dout[l], &inputs.dresidual2[l], &inputs.grads[l]);
    let layers: [Layer<BackwardOut>; 8] = [
        ("matmul", &|(o, dp, _)| {
            matmul_backward(
                &mut o.dfch_gelu,
                &mut dp.mlp.c_proj,
                dout,
                &la.fch_gelu,
                &p.mlp.c_proj,
            )
        }),
        ("gelu", &|(o, _, _)| {
            gelu_backward(&mut o.dfch, &la.fch, &g.dfch_gelu)
        }),
        ("matmul", &|(o, dp, _)| {
            matmul_backward(&mut o.dln2, &mut dp.mlp.c_fc, &g.dfch, &la.ln2, &p.mlp.c_fc)
        }),
        ("layernorm", &|(_, dp, dx)| {
            let (mean, rstd) = (&la.ln2_mean, &la.ln2_rstd);
            layernorm_backward(
                dx,
                &mut dp.ln_2,
                &g.dln2,
                &la.residual2,
                &p.ln_2,
                mean,
                rstd,
            )
        }),
        ("matmul", &|(o, dp, _)| {
            matmul_backward(
                &mut o.datty,
                &mut dp.attn.c_proj,
                dres2,
                &la.atty,
                &p.attn.c_proj,
            )
        }),
        ("attention", &|(o, _, _)| {
            attention_backward(&mut o.dqkv, &mut o.datt, &g.datty, &la.qkv, &la.att, nh)
        }),
        ("matmul", &|(o, dp, _)| {
            matmul_backward(
                &mut o.dln1,
                &mut dp.attn.c_attn,
                &g.dqkv,
                &la.ln1,
                &p.attn.c_attn,
            )
        }),
        ("layernorm", &|(_, dp, dx)| {
            let (mean, rstd) = (&la.ln1_mean, &la.ln1_rstd);
            layernorm_backward(dx, &mut dp.ln_1, &g.dln1, x, &p.ln_1, mean, rstd)
        }),
    ];
    for (kind, layer) in layers {
        kinds.time(kind, || layer(out));
    }
}
