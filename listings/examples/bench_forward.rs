//! The forward pass of nanoGPT's "baby GPT" (4 layers, 4 heads, 128 wide,
//! vocabulary 65 as Tiny Shakespeare's characters) on a batch of 12 x 64
//! tokens, with the loss: milliseconds per pass, and where they go.
//!
//! ```text
//! cargo run --release -p listings --example bench_forward [ITERS]
//! MATMUL_NUM_THREADS=1 cargo run --release -p listings --example bench_forward
//! ```
//!
//! The inputs are random tokens (speed does not depend on what they are).
//! After 10 warm-up passes, ITERS passes (default 200) are timed with
//! [`Gpt::forward_with`], which reuses its arrays; the median and the
//! fastest are printed. Then the same pass is taken apart layer by layer
//! (the same functions `forward_with` calls, each timed) to show where
//! the time goes.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use listings::model::{
    Activations, Gpt, GptConfig, attention_forward, crossentropy_forward, encoder_forward,
    gelu_forward, layernorm_forward, lm_head_forward, matmul_forward, residual_forward,
};
use listings::ndarray::Array2;
use listings::parallel::num_threads;
use listings::rng::{RngExt, seeded};

const VOCAB: usize = 65;
const B: usize = 12;
const T: usize = 64;
const WARMUP: usize = 10;

fn main() -> Result<()> {
    let iters: usize = match std::env::args().nth(1) {
        Some(s) => s
            .parse()
            .with_context(|| format!("ITERS must be a number, got {s:?}"))?,
        None => 200,
    };
    if iters == 0 {
        bail!("ITERS must be at least 1");
    }
    let config = GptConfig::baby(VOCAB);
    let gpt = Gpt::new(config, 1337)?;
    let mut rng = seeded(0);
    let idx = Array2::from_shape_simple_fn((B, T), || rng.random_range(0..VOCAB as u32));
    let targets = Array2::from_shape_simple_fn((B, T), || rng.random_range(0..VOCAB as u32));
    let mut acts = Activations::new(&config, B, T);

    println!(
        "baby GPT: {} layers, {} heads, n_embd {}, vocab {VOCAB}, {} parameters",
        config.n_layer,
        config.n_head,
        config.n_embd,
        gpt.num_parameters()
    );
    println!(
        "batch {B} x {T} tokens; threads: {} (MATMUL_NUM_THREADS={}); CPU has AVX-512F: {}",
        num_threads(),
        std::env::var("MATMUL_NUM_THREADS").unwrap_or_else(|_| "unset".into()),
        avx512()
    );

    let mut times = Vec::with_capacity(iters);
    let mut loss = 0.0;
    for i in 0..WARMUP + iters {
        let start = Instant::now();
        loss = gpt
            .forward_with(&mut acts, &idx, Some(&targets))?
            .unwrap_or(f32::NAN);
        if i >= WARMUP {
            times.push(start.elapsed());
        }
    }
    times.sort();
    let median = times[times.len() / 2];
    let best = times[0];
    println!("loss {loss:.4} (ln {VOCAB} = {:.4})", (VOCAB as f32).ln());
    println!(
        "forward with loss: median {:.3} ms/iter, best {:.3} ms ({iters} iterations), \
         {:.0} tokens/s",
        ms(median),
        ms(best),
        (B * T) as f64 / median.as_secs_f64()
    );

    // The same pass, layer by layer, each kind of layer timed.
    let mut spent: BTreeMap<&str, Duration> = BTreeMap::new();
    let mut time = |name: &'static str, f: &mut dyn FnMut()| {
        let start = Instant::now();
        f();
        *spent.entry(name).or_default() += start.elapsed();
    };
    let p = gpt.params();
    let a = &mut acts;
    for _ in 0..iters {
        time("embeddings", &mut || {
            encoder_forward(&mut a.encoded, &idx, &p.wte, &p.wpe)
        });
        for l in 0..config.n_layer {
            let (done, todo) = a.layers.split_at_mut(l);
            let x = done.last().map_or(&a.encoded, |prev| &prev.residual3);
            let (la, bp) = (&mut todo[0], &p.h[l]);
            time("layernorm", &mut || {
                layernorm_forward(&mut la.ln1, &mut la.ln1_mean, &mut la.ln1_rstd, x, &bp.ln_1)
            });
            time("matmul c_attn", &mut || {
                matmul_forward(&mut la.qkv, &la.ln1, &bp.attn.c_attn)
            });
            time("attention", &mut || {
                attention_forward(&mut la.atty, &mut la.att, &la.qkv, config.n_head)
            });
            time("matmul attn.c_proj", &mut || {
                matmul_forward(&mut la.attproj, &la.atty, &bp.attn.c_proj)
            });
            time("residual", &mut || {
                residual_forward(&mut la.residual2, x, &la.attproj)
            });
            time("layernorm", &mut || {
                let (ln2, mean, rstd) = (&mut la.ln2, &mut la.ln2_mean, &mut la.ln2_rstd);
                layernorm_forward(ln2, mean, rstd, &la.residual2, &bp.ln_2)
            });
            time("matmul c_fc", &mut || {
                matmul_forward(&mut la.fch, &la.ln2, &bp.mlp.c_fc)
            });
            time("gelu", &mut || gelu_forward(&mut la.fch_gelu, &la.fch));
            time("matmul mlp.c_proj", &mut || {
                matmul_forward(&mut la.fcproj, &la.fch_gelu, &bp.mlp.c_proj)
            });
            time("residual", &mut || {
                residual_forward(&mut la.residual3, &la.residual2, &la.fcproj)
            });
        }
        let x = a.layers.last().map_or(&a.encoded, |last| &last.residual3);
        time("layernorm", &mut || {
            layernorm_forward(&mut a.lnf, &mut a.lnf_mean, &mut a.lnf_rstd, x, &p.ln_f)
        });
        time("lm_head", &mut || {
            lm_head_forward(&mut a.logits, &a.lnf, &p.wte)
        });
        time("crossentropy", &mut || {
            black_box(crossentropy_forward(&mut a.losses, &a.logits, &targets));
        });
    }
    let total: Duration = spent.values().sum();
    println!("\nwhere the time goes (mean per forward pass):");
    let mut rows: Vec<_> = spent.into_iter().collect();
    rows.sort_by_key(|&(_, d)| std::cmp::Reverse(d));
    for (name, d) in rows {
        let share = 100.0 * d.as_secs_f64() / total.as_secs_f64();
        println!(
            "  {name:<20} {:>7.3} ms  {share:>5.1}%",
            ms(d) / iters as f64
        );
    }
    println!("  {:<20} {:>7.3} ms", "total", ms(total) / iters as f64);
    Ok(())
}

/// Whether matrixmultiply (and the model's own loops) can use AVX-512 here.
fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
