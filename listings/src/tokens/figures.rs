//! The chapter's figures, each drawn from a run of the code above.

use std::path::Path;

use anyhow::Result;

use super::measure::{TRANSLATIONS, compression_table};
use super::{BOOK_PATTERN, BOOK_VOCAB_SIZE, Encoding};
use crate::data;
use crate::figures::{Axes, Bars, Series, bar_chart, line_chart_with_legend};
use plotters::prelude::SeriesLabelPosition;

/// Vocabulary sizes for the compression curve: every 64 from 256 until the
/// corpus runs out of pairs to merge.
const CURVE_STEP: usize = 64;

/// The largest vocabulary size the curve asks for; training stops before it.
const CURVE_END: usize = 4096;

/// Figure: bytes per token against vocabulary size for the book's BPE, on
/// the text it was trained on and on held-out text, with the book's choice
/// marked.
pub fn compression(path: &Path) -> Result<()> {
    let corpus = data::corpus();
    let (train_text, heldout) = data::train_val_split(&corpus, 0.9);
    let sizes: Vec<usize> = (256..=CURVE_END).step_by(CURVE_STEP).collect();
    let table = compression_table(train_text, heldout, &sizes, BOOK_PATTERN)?;
    // Past the last size that could be learned, every row is the same.
    let learned = table.iter().map(|r| r.learned).max().unwrap_or(256);
    let rows: Vec<_> = table.iter().filter(|r| r.vocab_size <= learned).collect();
    let mut train_points: Vec<(f64, f64)> = rows
        .iter()
        .map(|r| (r.learned as f64, r.train_bytes_per_token))
        .collect();
    let mut heldout_points: Vec<(f64, f64)> = rows
        .iter()
        .map(|r| (r.learned as f64, r.heldout_bytes_per_token))
        .collect();
    if let Some(last) = table
        .last()
        .filter(|r| r.learned > rows.last().map_or(0, |r| r.learned))
    {
        train_points.push((last.learned as f64, last.train_bytes_per_token));
        heldout_points.push((last.learned as f64, last.heldout_bytes_per_token));
    }
    let top = heldout_points.iter().map(|p| p.1).fold(0.0, f64::max);
    let chosen = BOOK_VOCAB_SIZE as f64;
    let series = [
        Series {
            name: "held-out text (last 10%)",
            points: heldout_points,
        },
        Series {
            name: "training text (first 90%)",
            points: train_points,
        },
        Series {
            name: "the book's choice: 2048",
            points: vec![(chosen, 1.0), (chosen, top)],
        },
    ];
    let axes = Axes {
        title: "Compression of the book's corpus against vocabulary size",
        x_label: "vocabulary size (tokens)",
        y_label: "bytes per token",
        log_y: false,
        log_x: false,
    };
    line_chart_with_legend(path, &axes, &series, SeriesLabelPosition::LowerMiddle)
}

/// The number of tokens of each text of [`TRANSLATIONS`] in each of
/// tiktoken's encodings, in the order of [`Encoding::ALL`].
pub fn tokens_per_language() -> Result<Vec<Vec<usize>>> {
    let mut counts = Vec::new();
    for encoding in Encoding::ALL {
        let tokenizer = encoding.tokenizer()?;
        let row = TRANSLATIONS
            .iter()
            .map(|(_, text)| tokenizer.encode(text).len())
            .collect();
        counts.push(row);
    }
    Ok(counts)
}

/// Figure: tokens for the same two sentences in eleven languages, in
/// r50k_base, cl100k_base and o200k_base.
pub fn languages(path: &Path) -> Result<()> {
    let counts = tokens_per_language()?;
    let names = [
        "r50k_base (GPT-2)",
        "cl100k_base (GPT-4)",
        "o200k_base (GPT-4o)",
    ];
    let series: Vec<Bars> = names
        .iter()
        .zip(&counts)
        .map(|(name, row)| Bars {
            name,
            values: row.iter().map(|&n| n as f64).collect(),
        })
        .collect();
    let groups: Vec<&str> = TRANSLATIONS.iter().map(|(language, _)| *language).collect();
    let axes = Axes {
        title: "The same two sentences, in tokens",
        x_label: "",
        y_label: "tokens",
        log_y: false,
        log_x: false,
    };
    bar_chart(path, &axes, &groups, &series)
}
