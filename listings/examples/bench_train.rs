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
//! With `--profile` it takes the forward and backward passes apart: the
//! library's `Gpt::forward_with` and `Gpt::backward` beside their parts
//! (`block_forward`/`block_backward` for each block, and the functions for
//! the embeddings, `ln_f`, `lm_head` and the loss), then the time of each
//! kind of layer inside a block, each layer function timed alone, with the
//! share of the block's time they account for (see `support/profile.rs`).

#[path = "support/profile.rs"]
mod profile;

use anyhow::{Context, Result, bail};
use std::time::{Duration, Instant};

use listings::model::{Gpt, GptConfig};
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
        let iters = 100;
        let profile = profile::profile(trainer.gpt(), &idx, &targets, iters, true)?;
        println!("\nthe forward and backward passes taken apart (mean per step, {iters} steps):");
        profile.print();
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
