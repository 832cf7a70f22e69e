//! Every figure the book shows exists, every figure file is shown, and the
//! figures are current: drawn again, each gives the same file to the byte.
//!
//! Figures are SVG files in `src/figures/`, drawn by `lab` code from a real
//! run (`lab::figures::all()` lists them with the function that draws each);
//! a chapter shows one with `<img src="figures/NAME.svg">`. Runs are seeded
//! and every sum is in a fixed order, so a figure drawn again from the same
//! code is the same file; one that is not was drawn by older code (or by
//! hand), and the numbers the book quotes from it may be stale too.
//!
//! Redrawing every figure would take a minute or more, so each figure is in
//! one of three lists: the quick ones, redrawn on every run; those drawn
//! from the book's trained model, redrawn when the model is in `lab`'s
//! cache (after `cargo test --test book`, which trains it); and the ones
//! not redrawn here, each with its reason. A test checks that every figure
//! is in exactly one list.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use lab::book_model::book_model_is_cached;

/// Figures whose run takes about a second or less (measured in the test
/// build, where `lab` and `listings` are optimised): redrawn every time.
const QUICK: &[&str] = &[
    "tokens-languages.svg",
    "transformer-parameters.svg",
    "transformer-architecture.svg",
];

/// Figures drawn from the book's trained model, or (chapters 8 and 9's)
/// from small models the chapter trains and caches as it runs. Once the
/// model is cached, chapters 2-5's are drawn in about 0.1 s each; chapter
/// 6's tune the model again (4 to 18 s each, release); training the model
/// takes a minute or more, chapter 8's models a few minutes together, and
/// chapter 9's sweep about four and its six precision runs about 150 s of CPU time (after `cargo test --test book` they are
/// all cached; `cargo run -p lab --release -- sweep` caches the sweep).
const TRAINED: &[&str] = &[
    "embeddings-projection.svg",
    "embeddings-positions.svg",
    "attention-map-block0-head3.svg",
    "attention-map-block0-head0.svg",
    "attention-map-block1-head2.svg",
    "training-loss.svg",
    "training-lr.svg",
    "finetune-scratch.svg",
    "finetune-classifier.svg",
    "finetune-dpo.svg",
    "inference-distribution.svg",
    "inference-speculative.svg",
    "limits-reliability.svg",
    "limits-lengths.svg",
    "limits-context-wall.svg",
    "limits-recall.svg",
    "limits-induction.svg",
    "limits-induction-head.svg",
    "scaling-isoflop.svg",
    "scaling-fit.svg",
    "precision-loss.svg",
];

/// Figures not redrawn here, and why.
const NOT_REDRAWN: &[(&str, &str)] = &[
    (
        "tokens-compression.svg",
        "too slow: it trains the book's BPE to every vocabulary size (2 to 3 s)",
    ),
    (
        "attention-cost.svg",
        "a timing figure: it plots measured speed, which differs on every run",
    ),
    (
        "inference-kv-cache.svg",
        "a timing figure: it plots measured speed, which differs on every run",
    ),
    (
        "inference-batching.svg",
        "a timing figure: it plots measured speed, which differs on every run",
    ),
    (
        "training-optimizers.svg",
        "too slow: it trains the toy model three times (about 14 s)",
    ),
    (
        "training-overfitting.svg",
        "too slow: it trains a model for 2,000 steps (about 14 s)",
    ),
];

fn referenced() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for entry in std::fs::read_dir("src").unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "md") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (i, _) in text.match_indices("figures/") {
            let rest = &text[i + "figures/".len()..];
            let end = rest.find(['"', ')', '\'', ' ']).unwrap_or(rest.len());
            names.insert(rest[..end].to_string());
        }
    }
    names
}

#[test]
fn every_figure_shown_exists_and_every_figure_file_is_shown() {
    let shown = referenced();
    for name in &shown {
        let path = Path::new("src/figures").join(name);
        let svg = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "the book shows {}, which cannot be read: {e}",
                path.display()
            )
        });
        assert!(
            svg.contains("<svg"),
            "{} is not an SVG file",
            path.display()
        );
    }
    let on_disk: BTreeSet<String> = std::fs::read_dir("src/figures")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let unused: Vec<_> = on_disk.difference(&shown).collect();
    assert!(
        unused.is_empty(),
        "figure files no chapter shows: {unused:?}"
    );
}

#[test]
fn every_figure_is_in_exactly_one_list_here() {
    let lists: Vec<&str> = QUICK
        .iter()
        .chain(TRAINED)
        .chain(NOT_REDRAWN.iter().map(|(name, _)| name))
        .copied()
        .collect();
    for figure in lab::figures::all() {
        let times = lists.iter().filter(|&&name| name == figure.file).count();
        assert_eq!(
            times, 1,
            "{} is in {times} of the lists QUICK, TRAINED and NOT_REDRAWN of \
             tests/figures.rs; put it in one (a new figure drawn from the book \
             model goes in TRAINED)",
            figure.file
        );
    }
    let known: BTreeSet<&str> = lab::figures::all().iter().map(|f| f.file).collect();
    for name in lists {
        assert!(
            known.contains(name),
            "{name} is listed in tests/figures.rs but lab::figures::all() has no such figure"
        );
    }
}

/// Draws the named figures into a folder of their own and returns a line
/// for each that differs from its file in `src/figures/`: which line first
/// differs, and how.
fn stale(names: &[&str], folder: &str) -> Vec<String> {
    let out = std::env::temp_dir().join(format!("book-figures-{}-{folder}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    let mut stale = Vec::new();
    for figure in lab::figures::all() {
        if !names.contains(&figure.file) {
            continue;
        }
        let drawn: PathBuf = out.join(figure.file);
        (figure.draw)(&drawn).unwrap_or_else(|e| panic!("drawing {}: {e:#}", figure.file));
        let drawn = std::fs::read_to_string(&drawn).unwrap();
        let book = Path::new("src/figures").join(figure.file);
        let book = std::fs::read_to_string(&book)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", book.display()));
        if drawn != book {
            stale.push(format!(
                "{}: {}",
                figure.file,
                first_difference(&book, &drawn)
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&out);
    stale
}

/// Where two texts first differ, by line, shortened to be readable.
fn first_difference(book: &str, drawn: &str) -> String {
    let short = |line: Option<&str>| -> String {
        let line = line.unwrap_or("(the file ends)");
        line.chars().take(160).collect()
    };
    let (mut book_lines, mut drawn_lines) = (book.lines(), drawn.lines());
    for n in 1.. {
        let (b, d) = (book_lines.next(), drawn_lines.next());
        if b != d {
            return format!(
                "line {n} differs\n  in src/figures: {}\n  drawn now:      {}",
                short(b),
                short(d)
            );
        }
        if b.is_none() {
            break;
        }
    }
    "the files differ only in their line endings".to_string()
}

/// Fails with every stale figure and the command that redraws it.
fn assert_current(stale: &[String]) {
    assert!(
        stale.is_empty(),
        "figures not drawn by the current code; redraw them with \
         `cargo xtask figures NAME` and re-read the prose that quotes them:\n{}",
        stale.join("\n")
    );
}

#[test]
fn the_quick_figures_are_current() {
    assert_current(&stale(QUICK, "quick"));
}

#[test]
fn the_figures_of_the_trained_model_are_current_when_it_is_cached() {
    if !book_model_is_cached() {
        eprintln!(
            "the book model is not cached: {} not compared (`cargo test --test book` caches it)",
            TRAINED.join(", ")
        );
        return;
    }
    assert_current(&stale(TRAINED, "trained"));
}
