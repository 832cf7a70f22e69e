//! Training speed: nanoGPT's "baby GPT" (4 layers, 4 heads, 128 wide, 64
//! tokens of context) trained on characters with nanoGPT's
//! `train_shakespeare_char` settings (batch 12, learning rate 1e-3 warmed up
//! over 100 steps then cosine-decayed to 1e-4 at step 2000, AdamW with
//! beta2 0.99 and weight decay 0.1, gradients clipped to norm 1).
//!
//! ```text
//! cargo run --release -p listings --example bench_train [FILE] [--iters N] [--eval] [--profile]
//! cargo run --release -p listings --example bench_train ../shared/data/tinyshakespeare.txt
//! cargo run --release -p listings --example bench_train FILE --iters 2000 --eval
//! MATMUL_NUM_THREADS=1 cargo run --release -p listings --example bench_train
//! ```
//!
//! FILE is any UTF-8 text; without one, the book's own corpus
//! (`listings::corpus::corpus()`). The vocabulary is the text's sorted unique
//! characters; the first 90% of the tokens train, the last 10% validate.
//! Batches are drawn at random positions by a seeded ChaCha8.
//!
//! The run makes N training steps (default 210); the first 10 warm the
//! caches up and are not timed. It prints milliseconds per step (median and
//! mean), tokens per second, where each step's time goes (forward,
//! backward, optimiser), and the process's peak memory (`VmHWM`). With
//! `--eval` it then prints the mean loss over 200 random batches of the
//! training and of the validation tokens, as nanoGPT's `estimate_loss` does.
//! With `--profile` it takes the forward and backward passes apart and
//! prints the time each kind of layer takes.

use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use listings::model::{
    ActivationGrads, Activations, Gpt, GptConfig, GptParams, attention_backward, attention_forward,
    crossentropy_forward, crossentropy_softmax_backward, encoder_backward, encoder_forward,
    gelu_backward, gelu_forward, layernorm_backward, layernorm_forward, lm_head_backward,
    lm_head_forward, matmul_backward, matmul_forward, residual_forward,
};
use listings::ndarray::Array2;
use listings::optim::{AdamWConfig, cosine_lr};
use listings::parallel::num_threads;
use listings::rng::{ChaCha8Rng, RngExt, seeded};
use listings::train::step::{StepTimes, Trainer};

const B: usize = 12;
const T: usize = 64;
const WARMUP: usize = 10;
const EVAL_BATCHES: usize = 200;

/// The command line: `[FILE] [--iters N] [--eval] [--profile] [--seed S]`.
struct Args {
    file: Option<String>,
    iters: usize,
    eval: bool,
    profile: bool,
    seed: u64,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        file: None,
        iters: WARMUP + 200,
        eval: false,
        profile: false,
        seed: 1337,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--iters" => args.iters = value("--iters")?.parse().context("--iters N")?,
            "--seed" => args.seed = value("--seed")?.parse().context("--seed S")?,
            "--eval" => args.eval = true,
            "--profile" => args.profile = true,
            flag if flag.starts_with("--") => bail!("unknown option {flag}"),
            file => args.file = Some(file.to_string()),
        }
    }
    if args.iters <= WARMUP {
        bail!("--iters must be more than the {WARMUP} warm-up steps");
    }
    Ok(args)
}

/// Token ids of `text`, one per character, in a vocabulary of its sorted
/// unique characters (nanoGPT's `prepare.py` for Shakespeare).
fn encode_chars(text: &str) -> (Vec<u32>, usize) {
    let mut chars: Vec<char> = text.chars().collect();
    chars.sort_unstable();
    chars.dedup();
    let ids = text
        .chars()
        .map(|c| {
            chars
                .binary_search(&c)
                .expect("every char is in the vocabulary") as u32
        })
        .collect();
    (ids, chars.len())
}

/// Fills `idx` and `targets` (both `(B, T)`) with windows of `data` at random
/// positions: the targets are the inputs shifted by one token.
fn fill_batch(
    idx: &mut Array2<u32>,
    targets: &mut Array2<u32>,
    data: &[u32],
    rng: &mut ChaCha8Rng,
) {
    let t = idx.ncols();
    for b in 0..idx.nrows() {
        let start = rng.random_range(0..data.len() - t);
        for i in 0..t {
            idx[[b, i]] = data[start + i];
            targets[[b, i]] = data[start + i + 1];
        }
    }
}

/// The process's peak resident memory in MB, from `/proc/self/status`.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let (name, text) = match &args.file {
        Some(path) => (
            path.clone(),
            std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
        ),
        None => ("the book's corpus".to_string(), listings::corpus::corpus()),
    };
    let (ids, vocab_size) = encode_chars(&text);
    let split = ids.len() * 9 / 10;
    let (train, val) = ids.split_at(split);
    if val.len() <= T + 1 {
        bail!(
            "{name} is too short: the validation tenth needs more than {} characters",
            T + 1
        );
    }
    let config = GptConfig::baby(vocab_size);
    let gpt = Gpt::new(config, args.seed)?;
    println!(
        "data: {name}, {} characters, vocabulary {vocab_size}; {} train / {} val tokens",
        ids.len(),
        train.len(),
        val.len()
    );
    println!(
        "model: baby GPT, {} layers, {} heads, n_embd {}, block {T}, {} parameters; batch {B}",
        config.n_layer,
        config.n_head,
        config.n_embd,
        gpt.num_parameters()
    );
    println!(
        "threads: {} (MATMUL_NUM_THREADS={})",
        num_threads(),
        std::env::var("MATMUL_NUM_THREADS").unwrap_or_else(|_| "unset".into())
    );
    let adamw = AdamWConfig::default();
    let mut trainer = Trainer::new(gpt, adamw, B, T)?;
    let mut rng = seeded(args.seed);
    let (mut idx, mut targets) = (Array2::zeros((B, T)), Array2::zeros((B, T)));
    let mut step_times = Vec::with_capacity(args.iters);
    let mut phases = StepTimes::default();
    let run_start = Instant::now();
    for it in 0..args.iters {
        fill_batch(&mut idx, &mut targets, train, &mut rng);
        let lr = cosine_lr(it, 1e-3, 1e-4, 100, 2000);
        let start = Instant::now();
        let stats = trainer.step(&idx, &targets, lr, 1.0)?;
        let took = start.elapsed();
        if it >= WARMUP {
            step_times.push(took);
            phases.forward += stats.times.forward;
            phases.backward += stats.times.backward;
            phases.optimizer += stats.times.optimizer;
        }
        if it % 100 == 0 || it + 1 == args.iters {
            println!("iter {it}: loss {:.4}, time {:.2} ms", stats.loss, ms(took));
        }
    }
    let train_time = run_start.elapsed();
    report(&mut step_times, phases);
    println!(
        "{} training steps in {:.1} s",
        args.iters,
        train_time.as_secs_f64()
    );
    // Before the evaluation and the profile, which add nothing to a
    // training run (the profile allocates a second set of arrays).
    match peak_rss_mb() {
        Some(mb) => println!("peak RSS of the training run (VmHWM): {mb:.1} MB"),
        None => println!("peak RSS: unavailable (no /proc/self/status)"),
    }
    if args.eval {
        let mut eval_rng = seeded(args.seed + 1);
        for (split, data) in [("train", train), ("val", val)] {
            let mut sum = 0.0;
            for _ in 0..EVAL_BATCHES {
                fill_batch(&mut idx, &mut targets, data, &mut eval_rng);
                sum += f64::from(trainer.evaluate(&idx, &targets)?);
            }
            let mean = sum / EVAL_BATCHES as f64;
            println!(
                "{split} loss after {} steps: {mean:.4} (mean of {EVAL_BATCHES} batches)",
                args.iters
            );
        }
    }
    if args.profile {
        fill_batch(&mut idx, &mut targets, train, &mut rng);
        profile(trainer.gpt(), &idx, &targets, 100)?;
    }
    Ok(())
}

/// Prints the time per step and where it went.
fn report(step_times: &mut [Duration], phases: StepTimes) {
    let n = step_times.len();
    step_times.sort();
    let median = step_times[n / 2];
    let mean = step_times.iter().sum::<Duration>() / n as u32;
    println!(
        "\n{n} timed steps: median {:.2} ms/iter, mean {:.2} ms/iter, fastest {:.2} ms; \
         {:.0} tokens/s (from the mean)",
        ms(median),
        ms(mean),
        ms(step_times[0]),
        (B * T) as f64 / mean.as_secs_f64()
    );
    let total = phases.forward + phases.backward + phases.optimizer;
    for (name, d) in [
        ("forward", phases.forward),
        ("backward", phases.backward),
        ("optimizer", phases.optimizer),
    ] {
        println!(
            "  {name:<10} {:6.2} ms/iter  {:5.1}%",
            ms(d) / n as f64,
            100.0 * d.as_secs_f64() / total.as_secs_f64()
        );
    }
}

/// The forward and backward passes taken apart: the same functions
/// `Gpt::forward_with` and `Gpt::backward` call, in the same order, each
/// kind timed over `iters` passes. Prints the mean time per step of each.
fn profile(gpt: &Gpt, idx: &Array2<u32>, targets: &Array2<u32>, iters: usize) -> Result<()> {
    let config = *gpt.config();
    let (p, nh) = (gpt.params(), config.n_head);
    let mut a = Activations::new(&config, B, T);
    let mut g = ActivationGrads::new(&config, B, T);
    let mut grads = GptParams::zeros(&config);
    gpt.forward_with(&mut a, idx, Some(targets))?;
    let mut spent: BTreeMap<&str, Duration> = BTreeMap::new();
    let mut time = |name: &'static str, f: &mut dyn FnMut()| {
        let start = Instant::now();
        f();
        *spent.entry(name).or_default() += start.elapsed();
    };
    for _ in 0..iters {
        time("fwd embeddings", &mut || {
            encoder_forward(&mut a.encoded, idx, &p.wte, &p.wpe)
        });
        for l in 0..config.n_layer {
            let (done, todo) = a.layers.split_at_mut(l);
            let x = done.last().map_or(&a.encoded, |prev| &prev.residual3);
            let (la, bp) = (&mut todo[0], &p.h[l]);
            time("fwd layernorm", &mut || {
                layernorm_forward(&mut la.ln1, &mut la.ln1_mean, &mut la.ln1_rstd, x, &bp.ln_1)
            });
            time("fwd matmul", &mut || {
                matmul_forward(&mut la.qkv, &la.ln1, &bp.attn.c_attn)
            });
            time("fwd attention", &mut || {
                attention_forward(&mut la.atty, &mut la.att, &la.qkv, nh)
            });
            time("fwd matmul", &mut || {
                matmul_forward(&mut la.attproj, &la.atty, &bp.attn.c_proj)
            });
            time("fwd residual", &mut || {
                residual_forward(&mut la.residual2, x, &la.attproj)
            });
            time("fwd layernorm", &mut || {
                let (y, mean, rstd) = (&mut la.ln2, &mut la.ln2_mean, &mut la.ln2_rstd);
                layernorm_forward(y, mean, rstd, &la.residual2, &bp.ln_2)
            });
            time("fwd matmul", &mut || {
                matmul_forward(&mut la.fch, &la.ln2, &bp.mlp.c_fc)
            });
            time("fwd gelu", &mut || gelu_forward(&mut la.fch_gelu, &la.fch));
            time("fwd matmul", &mut || {
                matmul_forward(&mut la.fcproj, &la.fch_gelu, &bp.mlp.c_proj)
            });
            time("fwd residual", &mut || {
                residual_forward(&mut la.residual3, &la.residual2, &la.fcproj)
            });
        }
        let x = a.last_residual().clone();
        time("fwd layernorm", &mut || {
            layernorm_forward(&mut a.lnf, &mut a.lnf_mean, &mut a.lnf_rstd, &x, &p.ln_f)
        });
        time("fwd lm_head", &mut || {
            lm_head_forward(&mut a.logits, &a.lnf, &p.wte)
        });
        time("fwd crossentropy", &mut || {
            crossentropy_forward(&mut a.losses, &a.logits, targets);
        });

        time("bwd zero grads", &mut || grads.fill_zero());
        time("bwd crossentropy", &mut || {
            crossentropy_softmax_backward(&mut g.dlogits, &a.logits, targets)
        });
        time("bwd lm_head", &mut || {
            lm_head_backward(&mut g.dlnf, &mut grads.wte, &g.dlogits, &a.lnf, &p.wte)
        });
        time("bwd layernorm", &mut || {
            g.dresidual.fill(0.0);
            let (m, r) = (&a.lnf_mean, &a.lnf_rstd);
            layernorm_backward(
                &mut g.dresidual,
                &mut grads.ln_f,
                &g.dlnf,
                &x,
                &p.ln_f,
                m,
                r,
            )
        });
        for l in (0..config.n_layer).rev() {
            let x = if l == 0 {
                &a.encoded
            } else {
                &a.layers[l - 1].residual3
            };
            let (la, bp, dp, gb) = (&a.layers[l], &p.h[l], &mut grads.h[l], &mut g.block);
            let dx = &mut g.dresidual;
            time("bwd matmul", &mut || {
                matmul_backward(
                    &mut gb.dfch_gelu,
                    &mut dp.mlp.c_proj,
                    dx,
                    &la.fch_gelu,
                    &bp.mlp.c_proj,
                )
            });
            time("bwd gelu", &mut || {
                gelu_backward(&mut gb.dfch, &la.fch, &gb.dfch_gelu)
            });
            time("bwd matmul", &mut || {
                matmul_backward(
                    &mut gb.dln2,
                    &mut dp.mlp.c_fc,
                    &gb.dfch,
                    &la.ln2,
                    &bp.mlp.c_fc,
                )
            });
            time("bwd layernorm", &mut || {
                let (m, r) = (&la.ln2_mean, &la.ln2_rstd);
                layernorm_backward(dx, &mut dp.ln_2, &gb.dln2, &la.residual2, &bp.ln_2, m, r)
            });
            time("bwd matmul", &mut || {
                matmul_backward(
                    &mut gb.datty,
                    &mut dp.attn.c_proj,
                    dx,
                    &la.atty,
                    &bp.attn.c_proj,
                )
            });
            time("bwd attention", &mut || {
                attention_backward(&mut gb.dqkv, &mut gb.datt, &gb.datty, &la.qkv, &la.att, nh)
            });
            time("bwd matmul", &mut || {
                matmul_backward(
                    &mut gb.dln1,
                    &mut dp.attn.c_attn,
                    &gb.dqkv,
                    &la.ln1,
                    &bp.attn.c_attn,
                )
            });
            time("bwd layernorm", &mut || {
                let (m, r) = (&la.ln1_mean, &la.ln1_rstd);
                layernorm_backward(dx, &mut dp.ln_1, &gb.dln1, x, &bp.ln_1, m, r)
            });
        }
        time("bwd embeddings", &mut || {
            encoder_backward(&mut grads.wte, &mut grads.wpe, &g.dresidual, idx)
        });
    }
    let total: Duration = spent.values().sum();
    println!("\nthe forward and backward passes taken apart (mean per step, {iters} steps):");
    let mut rows: Vec<_> = spent.into_iter().collect();
    rows.sort_by_key(|&(_, d)| std::cmp::Reverse(d));
    for (name, d) in rows {
        let share = 100.0 * d.as_secs_f64() / total.as_secs_f64();
        println!("  {name:<18} {:7.3} ms  {share:5.1}%", ms(d) / iters as f64);
    }
    println!("  {:<18} {:7.3} ms", "total", ms(total) / iters as f64);
    Ok(())
}
