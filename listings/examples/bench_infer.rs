//! Inference speed: the generation loop (`infer::generate`) on two shapes
//! with random weights, with the KV cache and without it, in f32 and Q8_0.
//!
//! ```text
//! cargo run --release -p listings --example bench_infer
//! cargo run --release -p listings --example bench_infer -- --quick
//! cargo run --release -p listings --example bench_infer -- --only gpt2 --context 512 --new 32
//! MATMUL_NUM_THREADS=1 cargo run --release -p listings --example bench_infer
//! ```
//!
//! The shapes: the book model's (`GptConfig::toy` with the book tokenizer's
//! vocabulary: 2 blocks, 64 wide, 64 tokens of context) and GPT-2 small's
//! (`GptConfig::gpt2()`: 124M parameters, 1,024 tokens of context), each
//! with the random weights of `Gpt::new(config, 1337)` (speed does not
//! depend on what the weights or tokens are). The prompt is random tokens,
//! long enough that prompt and new tokens fill the context: for GPT-2,
//! `--context` (1,024) minus `--new` (64), 960 tokens.
//!
//! For each format, one warm-up generation, then greedy generations of
//! `--new` tokens with the cache and `--uncached-new` tokens (default 8)
//! without it, timed by the loop itself ([`Generation`]'s `prefill` and
//! `decode`, as `listings sample` reports them):
//!
//! - prefill: the prompt's tokens in one forward pass (and the first
//!   token's draw), in prompt tokens per second;
//! - decode: every later token, one pass each, in tokens per second. With
//!   the cache a pass computes one position; without it, the whole context
//!   again, so an uncached pass costs about a prefill of the context and
//!   fewer tokens measure it as well (`--uncached-new`).
//!
//! The ratio is cached over uncached decode speed. The book shape is timed
//! `--reps` times (default 50) and the medians printed. GPT-2's cached run
//! is timed `--gpt2-reps` times (default 3) and its uncached run once (its
//! 7 passes of a whole context already take about half a minute); the
//! prefill speed is the median over all its runs, uncached included.
//! `bench/transformers_generate.py` measures the same things on the same
//! GPT-2 shape with Hugging Face transformers, for a comparison on one
//! machine.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use listings::infer::decode::Decoder;
use listings::infer::generate::{GenerateConfig, Generation, generate};
use listings::infer::quant::Format;
use listings::infer::sampler::Sampling;
use listings::model::{Gpt, GptConfig};
use listings::parallel::num_threads;
use listings::rng::{RngExt, seeded};
use listings::tokens::book_tokenizer;

/// The formats timed.
const FORMATS: [(Format, &str); 2] = [(Format::F32, "f32"), (Format::Q8_0, "q8_0")];

/// The command line.
struct Args {
    /// `book`, `gpt2`, or both (`None`).
    only: Option<String>,
    /// GPT-2's context: prompt plus new tokens.
    context: usize,
    /// New tokens with the cache.
    new: usize,
    /// New tokens without the cache.
    uncached_new: usize,
    /// Runs of the book shape.
    reps: usize,
    /// Cached runs of GPT-2's shape.
    gpt2_reps: usize,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        only: None,
        context: 1024,
        new: 64,
        uncached_new: 8,
        reps: 50,
        gpt2_reps: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| -> Result<usize> {
            let v = it.next().with_context(|| format!("{name} needs a value"))?;
            v.parse()
                .with_context(|| format!("{name} takes a number, not {v:?}"))
        };
        match arg.as_str() {
            "--quick" => {
                (args.context, args.new, args.uncached_new) = (128, 8, 2);
                (args.reps, args.gpt2_reps) = (3, 1);
            }
            "--only" => {
                let shape = it.next().context("--only needs book or gpt2")?;
                if shape != "book" && shape != "gpt2" {
                    bail!("--only takes book or gpt2, not {shape:?}");
                }
                args.only = Some(shape);
            }
            "--context" => args.context = value("--context")?,
            "--new" => args.new = value("--new")?,
            "--uncached-new" => args.uncached_new = value("--uncached-new")?,
            "--reps" => args.reps = value("--reps")?,
            "--gpt2-reps" => args.gpt2_reps = value("--gpt2-reps")?,
            other => bail!(
                "unknown argument {other:?}; expected --quick, --only book|gpt2, --context T, \
                 --new N, --uncached-new M, --reps R, --gpt2-reps R"
            ),
        }
    }
    if args.new < 2 || args.uncached_new < 2 {
        bail!("--new and --uncached-new must be at least 2: the first token is the prefill's");
    }
    if args.context > GptConfig::gpt2().block_size || args.new >= args.context {
        bail!(
            "--context must be at most GPT-2's 1024 and more than --new ({})",
            args.new
        );
    }
    if args.reps == 0 || args.gpt2_reps == 0 {
        bail!("--reps and --gpt2-reps must be at least 1");
    }
    Ok(args)
}

/// The first `model name` of `/proc/cpuinfo`.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, name)| name.trim().to_string())
        })
        .unwrap_or_else(|| "unknown (no /proc/cpuinfo)".to_string())
}

/// One shape to time.
struct Shape {
    name: &'static str,
    config: GptConfig,
    prompt: usize,
    new: usize,
    uncached_new: usize,
    /// Cached runs.
    reps: usize,
    /// Uncached runs.
    uncached_reps: usize,
}

/// Greedy generation of `new` tokens after `prompt`.
fn run(decoder: &Decoder, prompt: &[u32], new: usize, kv_cache: bool) -> Result<Generation> {
    let config = GenerateConfig {
        max_new_tokens: new,
        sampling: Sampling::greedy(),
        stop_tokens: Vec::new(),
        stop_sequences: Vec::new(),
        kv_cache,
        keep: None,
    };
    let generation = generate(decoder, prompt, &config, |_| true)?;
    assert_eq!(generation.tokens.len(), new, "no stop condition is set");
    Ok(generation)
}

/// `1 token`, `7 tokens`.
fn tokens(n: usize) -> String {
    format!("{n} token{}", if n == 1 { "" } else { "s" })
}

/// `124,439,808`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

/// A speed with three significant digits or more: `15952`, `33.8`, `0.291`.
fn rate(x: f64) -> String {
    let decimals = if x >= 100.0 {
        0
    } else if x >= 10.0 {
        1
    } else if x >= 1.0 {
        2
    } else {
        3
    };
    format!("{x:.decimals$}")
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn bench(shape: &Shape) -> Result<()> {
    let c = shape.config;
    let start = Instant::now();
    let gpt = Gpt::new(c, 1337)?;
    println!(
        "{}: {} layers, {} heads, n_embd {}, vocab {}, context {}; {} parameters, random \
         (made in {:.1} s)",
        shape.name,
        c.n_layer,
        c.n_head,
        c.n_embd,
        c.vocab_size,
        c.block_size,
        thousands(gpt.num_parameters()),
        start.elapsed().as_secs_f64()
    );
    let runs = match (shape.reps, shape.uncached_reps) {
        (1, 1) => "one run each".to_string(),
        (r, u) if r == u => format!("medians of {r} runs"),
        (r, 1) => format!("medians of {r} cached runs, one uncached"),
        (r, u) => format!("medians of {r} cached runs and {u} uncached"),
    };
    println!(
        "  a random prompt of {} tokens in one pass, then greedy decoding: {} new tokens with \
         the KV cache, {} without; {runs}",
        shape.prompt, shape.new, shape.uncached_new
    );
    let mut rng = seeded(7);
    let prompt: Vec<u32> = (0..shape.prompt)
        .map(|_| rng.random_range(0..c.vocab_size as u32))
        .collect();
    for (format, name) in FORMATS {
        let decoder = Decoder::new(&gpt, format)
            .map_err(|e| anyhow::anyhow!("cannot lay out the weights in {name}: {e}"))?;
        run(&decoder, &prompt, 2, true)?; // warm-up
        let (mut prefill, mut cached, mut uncached) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..shape.reps.max(shape.uncached_reps) {
            if i < shape.reps {
                let g = run(&decoder, &prompt, shape.new, true)?;
                prefill.push(shape.prompt as f64 / g.prefill.as_secs_f64());
                cached.push((shape.new - 1) as f64 / g.decode.as_secs_f64());
            }
            if i < shape.uncached_reps {
                let g = run(&decoder, &prompt, shape.uncached_new, false)?;
                prefill.push(shape.prompt as f64 / g.prefill.as_secs_f64());
                uncached.push((shape.uncached_new - 1) as f64 / g.decode.as_secs_f64());
            }
        }
        let (cached, uncached) = (median(cached), median(uncached));
        println!(
            "  {name}: weights {:.1} MB; prefill {} at {} tokens/s; decode with KV cache {} at \
             {} tokens/s; without {} at {} tokens/s; cached/uncached decode {}x",
            decoder.bytes() as f64 / 1e6,
            tokens(shape.prompt),
            rate(median(prefill)),
            tokens(shape.new - 1),
            rate(cached),
            tokens(shape.uncached_new - 1),
            rate(uncached),
            rate(cached / uncached)
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    let args = parse_args()?;
    println!(
        "CPU: {}; threads: {} (MATMUL_NUM_THREADS={})",
        cpu_model(),
        num_threads(),
        std::env::var("MATMUL_NUM_THREADS").unwrap_or_else(|_| "unset".into())
    );
    let book = GptConfig::toy(book_tokenizer().vocab_size());
    let book_new = args.new.min(book.block_size / 4);
    let shapes = [
        Shape {
            name: "book model shape",
            config: book,
            prompt: book.block_size - book_new,
            new: book_new,
            uncached_new: book_new,
            reps: args.reps,
            uncached_reps: args.reps,
        },
        Shape {
            name: "GPT-2 124M shape",
            config: GptConfig::gpt2(),
            prompt: args.context - args.new,
            new: args.new,
            uncached_new: args.uncached_new,
            reps: args.gpt2_reps,
            uncached_reps: 1,
        },
    ];
    let wanted = |s: &Shape| match args.only.as_deref() {
        Some("book") => s.config == book,
        Some(_) => s.config != book,
        None => true,
    };
    for shape in shapes.iter().filter(|s| wanted(s)) {
        bench(shape)?;
    }
    Ok(())
}
