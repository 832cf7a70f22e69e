//! How fast [`WeightMatrix::matvec`] reads each weight format: the three
//! matrix shapes of GPT-2 124M's decoding step, in f32, int8, Q8_0 and Q4_0.
//!
//! ```text
//! cargo run --release -p listings --example bench_matvec [RUNS]
//! MATMUL_NUM_THREADS=1 cargo run --release -p listings --example bench_matvec
//! ```
//!
//! Decoding one token multiplies every weight matrix by one vector, so its
//! speed is the speed of reading the weights: the figure to watch is GB/s,
//! the matrix's [`bytes`](WeightMatrix::bytes) over the median time of RUNS
//! calls (default 50, after 5 warm-up calls). The shapes, rows x cols (out x
//! in): the MLP's narrowing layer `c_proj` (768 x 3072), its widening layer
//! `c_fc` (3072 x 768), and the output layer, `wte` (50257 x 768). The
//! weights are random (normal, std 0.02, seeded): speed does not depend on
//! their values.
//!
//! A whole model does not fit in the CPU's caches, so decoding reads each
//! matrix from main memory. The timed calls do the same: they go round
//! copies of the matrix, enough of them (128 MB in all) that each call
//! finds its copy evicted from the caches. The `cached` column repeats the
//! calls on one copy, which a small matrix keeps in the caches: the speed
//! of the arithmetic alone. `quant ms` is the time
//! [`from_rows`](WeightMatrix::from_rows) took to build the matrix.
//!
//! A second table times [`WeightMatrix::matmul`] on 64 positions at once
//! (a prompt's prefill), in GFLOP/s (2 per multiply-add).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use listings::infer::quant::{Format, WeightMatrix};
use listings::ndarray::Array2;
use listings::parallel::num_threads;
use listings::rng::{randn, seeded};

const SHAPES: [(&str, usize, usize); 3] = [
    ("mlp.c_proj", 768, 3072),
    ("mlp.c_fc", 3072, 768),
    ("wte (lm_head)", 50257, 768),
];
const WARMUP: usize = 5;
/// The timed matvecs go round this many bytes of copies of a matrix.
const COPIES_BYTES: usize = 128 << 20;
const PREFILL: usize = 64;

fn main() -> Result<()> {
    let runs: usize = match std::env::args().nth(1) {
        Some(s) => s
            .parse()
            .with_context(|| format!("RUNS must be a number, got {s:?}"))?,
        None => 50,
    };
    if runs == 0 {
        bail!("RUNS must be at least 1");
    }
    println!(
        "threads: {} (MATMUL_NUM_THREADS={}); median of {runs} runs",
        num_threads(),
        std::env::var("MATMUL_NUM_THREADS").unwrap_or_else(|_| "unset".into()),
    );

    let mut matrices = Vec::new();
    println!("\nmatvec: one vector (decoding one token)");
    println!(
        "{:<14} {:>10} {:<6} {:>7} {:>7} {:>9} {:>11} {:>9}",
        "matrix", "rows x cols", "format", "MB", "ms", "GB/s", "cached GB/s", "quant ms"
    );
    for (name, rows, cols) in SHAPES {
        let w = randn((rows, cols), 0.02, &mut seeded(1));
        let x = randn(cols, 1.0, &mut seeded(2));
        let x = x.as_slice().context("a new array is contiguous")?;
        let mut out = vec![0.0; rows];
        for format in Format::ALL {
            let start = Instant::now();
            let q = WeightMatrix::from_rows(w.view(), format)?;
            let quantise = start.elapsed();
            let copies: Vec<WeightMatrix> = (0..COPIES_BYTES.div_ceil(q.bytes()))
                .map(|_| q.clone())
                .collect();
            let mut next = 0;
            let from_memory = median(runs, || {
                copies[next % copies.len()].matvec(x, &mut out);
                next += 1;
            });
            let cached = median(runs, || q.matvec(x, &mut out));
            let gb_s = |t: Duration| q.bytes() as f64 / t.as_secs_f64() / 1e9;
            println!(
                "{name:<14} {:>11} {:<6} {:>7.2} {:>7.3} {:>9.1} {:>11.1} {:>9.1}",
                format!("{rows}x{cols}"),
                format.name(),
                q.bytes() as f64 / 1e6,
                ms(from_memory),
                gb_s(from_memory),
                gb_s(cached),
                ms(quantise),
            );
            matrices.push((name, q));
        }
    }

    println!("\nmatmul: {PREFILL} vectors at once (a prompt's prefill)");
    println!(
        "{:<14} {:>11} {:<6} {:>7} {:>9}",
        "matrix", "rows x cols", "format", "ms", "GFLOP/s"
    );
    for (name, q) in &matrices {
        let x = randn((PREFILL, q.cols()), 1.0, &mut seeded(3));
        let mut out = Array2::zeros((PREFILL, q.rows()));
        let t = median(runs, || q.matmul(x.view(), out.view_mut()));
        let flops = 2.0 * (PREFILL * q.rows() * q.cols()) as f64;
        println!(
            "{name:<14} {:>11} {:<6} {:>7.3} {:>9.1}",
            format!("{}x{}", q.rows(), q.cols()),
            q.format().name(),
            ms(t),
            flops / t.as_secs_f64() / 1e9,
        );
    }
    Ok(())
}

/// The median time of `runs` calls of `f`, after a few untimed ones.
fn median(runs: usize, mut f: impl FnMut()) -> Duration {
    for _ in 0..WARMUP {
        f();
    }
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
