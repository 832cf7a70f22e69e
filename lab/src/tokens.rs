//! Chapter 1's experiments: choosing the vocabulary size by measurement,
//! the same sentences in eleven languages, and the chapter's figures.
//!
//! More merges make tokens longer, so a text takes fewer tokens; but each
//! token is a row of the model's embedding table and a column of its output
//! layer, and a merge learned from one phrase of the training text does
//! nothing for new text. [`compression_table`] measures bytes per token on
//! text the tokenizer was *not* trained on, for several vocabulary sizes;
//! the book picks its size where that curve flattens.

use std::path::Path;

use anyhow::Result;
use listings::corpus::{corpus, train_val_split};
use listings::tokens::{
    BOOK_PATTERN, BOOK_VOCAB_SIZE, BuildError, Encoding, Tokenizer, train_merges,
};
use plotters::prelude::SeriesLabelPosition;

use crate::plot::{Axes, Bars, Series, bar_chart, line_chart_with_legend};

/// Vocabulary sizes the chapter compares.
pub const VOCAB_SIZES: [usize; 6] = [256, 512, 1024, 2048, 4096, 8192];

/// Compression at one vocabulary size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompressionRow {
    /// The vocabulary size asked for (the 256 bytes included).
    pub vocab_size: usize,
    /// The vocabulary size reached: smaller if the training text ran out of
    /// pairs to merge (every chunk already a single token).
    pub learned: usize,
    /// Bytes per token on the training text.
    pub train_bytes_per_token: f64,
    /// Bytes per token on the held-out text: the number that matters.
    pub heldout_bytes_per_token: f64,
}

// ANCHOR: compression_table
/// Bytes per token on `train_text` and on `heldout`, for a tokenizer trained
/// on `train_text` to each of `vocab_sizes`.
///
/// Training is done once, to the largest size: training to a smaller size
/// gives a prefix of the same merges.
///
/// ```
/// use lab::tokens::compression_table;
/// use listings::tokens::BOOK_PATTERN;
/// let text = "the cat sat on the mat. ".repeat(20);
/// let table = compression_table(&text, "the rat sat on the cat.", &[256, 300], BOOK_PATTERN)?;
/// assert_eq!(table[0].heldout_bytes_per_token, 1.0); // bytes only
/// assert!(table[1].heldout_bytes_per_token > 2.0);
/// # Ok::<(), listings::tokens::BuildError>(())
/// ```
pub fn compression_table(
    train_text: &str,
    heldout: &str,
    vocab_sizes: &[usize],
    pattern: &str,
) -> Result<Vec<CompressionRow>, BuildError> {
    let largest = vocab_sizes.iter().copied().max().unwrap_or(256);
    let merges = train_merges(train_text, largest, pattern)?;
    let mut rows = Vec::with_capacity(vocab_sizes.len());
    for &vocab_size in vocab_sizes {
        let n_merges = vocab_size.saturating_sub(256).min(merges.len());
        let tokenizer = Tokenizer::from_merges(&merges[..n_merges], pattern, &[])?;
        rows.push(CompressionRow {
            vocab_size,
            learned: 256 + n_merges,
            train_bytes_per_token: bytes_per_token(&tokenizer, train_text),
            heldout_bytes_per_token: bytes_per_token(&tokenizer, heldout),
        });
    }
    Ok(rows)
}

/// Bytes of `text` per token (0 for an empty text).
pub fn bytes_per_token(tokenizer: &Tokenizer, text: &str) -> f64 {
    let tokens = tokenizer.encode(text).len();
    if tokens == 0 {
        0.0
    } else {
        text.len() as f64 / tokens as f64
    }
}
// ANCHOR_END: compression_table

// ANCHOR: choose_vocab_size
/// The smallest vocabulary size whose held-out compression is within 5% of
/// the best in `table`: past it, more tokens buy little.
///
/// ```
/// use lab::tokens::{choose_vocab_size, CompressionRow};
/// let row = |vocab_size, bpt| CompressionRow {
///     vocab_size, learned: vocab_size, train_bytes_per_token: bpt, heldout_bytes_per_token: bpt,
/// };
/// let table = [row(256, 1.0), row(512, 2.0), row(1024, 2.9), row(2048, 3.0)];
/// assert_eq!(choose_vocab_size(&table), Some(1024));
/// ```
pub fn choose_vocab_size(table: &[CompressionRow]) -> Option<usize> {
    let best = table
        .iter()
        .map(|row| row.heldout_bytes_per_token)
        .fold(0.0, f64::max);
    let good_enough = table
        .iter()
        .filter(|row| row.heldout_bytes_per_token >= 0.95 * best);
    good_enough.map(|row| row.vocab_size).min()
}
// ANCHOR_END: choose_vocab_size

/// [`compression_table`] on the book's corpus: trained on its first 90%,
/// measured on the last 10% (the same split the model trains on), for
/// [`VOCAB_SIZES`].
pub fn book_compression_table() -> Vec<CompressionRow> {
    let corpus = corpus();
    let (train_text, heldout) = train_val_split(&corpus, 0.9);
    compression_table(train_text, heldout, &VOCAB_SIZES, BOOK_PATTERN)
        .expect("the book's pattern compiles")
}

// ANCHOR: translations
/// The same two sentences in eleven languages, for comparing what each
/// costs in tokens. (English name of the language, text.)
pub const TRANSLATIONS: [(&str, &str); 11] = [
    (
        "English",
        "My friend bought fresh bread at the market this morning. \
         The train to the city leaves at eight o'clock.",
    ),
    (
        "French",
        "Mon ami a acheté du pain frais au marché ce matin. \
         Le train pour la ville part à huit heures.",
    ),
    (
        "German",
        "Mein Freund hat heute Morgen auf dem Markt frisches Brot gekauft. \
         Der Zug in die Stadt fährt um acht Uhr ab.",
    ),
    (
        "Spanish",
        "Mi amigo compró pan fresco en el mercado esta mañana. \
         El tren a la ciudad sale a las ocho.",
    ),
    (
        "Russian",
        "Мой друг купил свежий хлеб на рынке сегодня утром. \
         Поезд в город отправляется в восемь часов.",
    ),
    (
        "Greek",
        "Ο φίλος μου αγόρασε φρέσκο ψωμί στην αγορά σήμερα το πρωί. \
         Το τρένο για την πόλη φεύγει στις οκτώ.",
    ),
    (
        "Arabic",
        "اشترى صديقي خبزًا طازجًا من السوق هذا الصباح. \
         يغادر القطار إلى المدينة في الساعة الثامنة.",
    ),
    (
        "Hindi",
        "मेरे दोस्त ने आज सुबह बाज़ार से ताज़ी रोटी खरीदी। \
         शहर जाने वाली ट्रेन आठ बजे निकलती है।",
    ),
    (
        "Chinese",
        "我的朋友今天早上在市场买了新鲜的面包。去城里的火车八点出发。",
    ),
    (
        "Japanese",
        "私の友達は今朝、市場で焼きたてのパンを買いました。街へ行く電車は八時に出発します。",
    ),
    (
        "Korean",
        "내 친구는 오늘 아침 시장에서 신선한 빵을 샀다. \
         도시로 가는 기차는 여덟 시에 출발한다.",
    ),
];
// ANCHOR_END: translations

// The chapter's figures, each drawn from a run of the code above.

/// Vocabulary sizes for the compression curve: every 64 from 256 until the
/// corpus runs out of pairs to merge.
const CURVE_STEP: usize = 64;

/// The largest vocabulary size the curve asks for; training stops before it.
const CURVE_END: usize = 4096;

/// Figure: bytes per token against vocabulary size for the book's BPE, on
/// the text it was trained on and on held-out text, with the book's choice
/// marked.
pub fn compression(path: &Path) -> Result<()> {
    let corpus = corpus();
    let (train_text, heldout) = train_val_split(&corpus, 0.9);
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
        x_label: "language",
        y_label: "tokens",
        log_y: false,
        log_x: false,
    };
    bar_chart(path, &axes, &groups, &series)
}
