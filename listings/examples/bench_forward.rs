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
//! fastest are printed. Then ITERS more passes show where the time goes:
//! `forward_with` beside its parts (the library's `block_forward` for each
//! block, its functions for the embeddings, `ln_f`, `lm_head` and the loss),
//! and inside a block each layer function timed alone, with the share of
//! `block_forward`'s time they account for (see `support/profile.rs`).

#[path = "support/profile.rs"]
mod profile;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use listings::model::{Activations, Gpt, GptConfig};
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

    // Where the time goes: the library's own parts of the pass, each timed.
    let profile = profile::profile(&gpt, &idx, &targets, iters, false)?;
    println!("\nwhere the time goes (mean per forward pass, {iters} passes):");
    profile.print();
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
