//! Encoding speed: the book's encoder against tiktoken-rs, same encoding,
//! same text, and a check that both give the same ids.
//!
//! ```text
//! cargo run --release -p listings --example bench_tokenize [FILE]
//! ```
//!
//! The text is FILE if given, else the book's corpus; it is repeated until
//! it is at least 4 MB. Each encoder's time is the best of five runs, the two
//! encoders taking turns.

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use listings::tokens::Encoding;

/// The least number of bytes to encode.
const MIN_BYTES: usize = 4_000_000;

/// Runs per measurement; the fastest counts.
const RUNS: usize = 5;

fn main() -> Result<()> {
    let (label, text) = match std::env::args().nth(1) {
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {path} as UTF-8 text"))?;
            (path, text)
        }
        None => ("the book corpus".to_string(), listings::corpus::corpus()),
    };
    if text.is_empty() {
        bail!("{label} is empty");
    }
    let repeats = MIN_BYTES.div_ceil(text.len());
    let text = text.repeat(repeats);
    let mb = text.len() as f64 / 1e6;
    println!("{label}, repeated {repeats}x: {mb:.1} MB\n");
    println!(
        "{:<12} {:>8} {:>10} {:>10} {:>13} {:>6}",
        "encoding", "tokens", "build ms", "book MB/s", "tiktoken MB/s", "ratio"
    );
    for encoding in Encoding::ALL {
        let (build, book) = timed(|| encoding.tokenizer());
        let book = book?;
        let tiktoken = encoding.tiktoken()?;
        let ids = book.encode(&text);
        if ids != tiktoken.encode_ordinary(&text) {
            bail!("{encoding}: the two encoders disagree");
        }
        let (book_time, tiktoken_time) = best_of(
            || book.encode(black_box(&text)).len(),
            || tiktoken.encode_ordinary(black_box(&text)).len(),
        );
        let (book_speed, tiktoken_speed) = (
            mb / book_time.as_secs_f64(),
            mb / tiktoken_time.as_secs_f64(),
        );
        println!(
            "{:<12} {:>8} {:>10.0} {:>10.1} {:>13.1} {:>6.2}",
            encoding.name(),
            ids.len(),
            build.as_secs_f64() * 1e3,
            book_speed,
            tiktoken_speed,
            book_speed / tiktoken_speed
        );
    }
    Ok(())
}

/// Runs `f` once and times it.
fn timed<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let start = Instant::now();
    let out = f();
    (start.elapsed(), out)
}

/// The fastest of [`RUNS`] runs of `a` and of `b`, taking turns so that a
/// busy machine slows both alike.
fn best_of(mut a: impl FnMut() -> usize, mut b: impl FnMut() -> usize) -> (Duration, Duration) {
    let (mut best_a, mut best_b) = (Duration::MAX, Duration::MAX);
    for _ in 0..RUNS {
        best_a = best_a.min(timed(|| black_box(a())).0);
        best_b = best_b.min(timed(|| black_box(b())).0);
    }
    (best_a, best_b)
}
