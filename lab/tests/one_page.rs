//! Appendix A: the model on one page (`lab/one_page/gpt.rs`) starts from the
//! library's weights, trains to the library's losses and weights, and
//! stands on its own as a program.

// The file as a module of this test, so that the test can call its `train`.
// That it needs nothing but `std` is checked below by compiling it alone.
#[path = "../one_page/gpt.rs"]
mod gpt;

use lab::one_page::{SEED, library_run};
use listings::model::{GptConfig, GptParams};

/// Steps of the training comparison: enough for the loss to fall by a
/// quarter, few enough for a test of a few seconds.
const STEPS: usize = 50;

/// The largest `|a - b|` over two lists of numbers of the same length.
fn max_abs_diff<'a>(
    a: impl IntoIterator<Item = &'a f32>,
    b: impl IntoIterator<Item = &'a f32>,
) -> f32 {
    let pairs: Vec<(f32, f32)> = a.into_iter().copied().zip(b.into_iter().copied()).collect();
    pairs.iter().map(|(a, b)| (a - b).abs()).fold(0.0, f32::max)
}

#[test]
fn the_one_page_model_starts_from_the_library_weights() {
    let cfg = gpt::Config::default();
    let model = GptConfig {
        vocab_size: 65,
        block_size: cfg.block_size,
        n_layer: cfg.n_layer,
        n_head: cfg.n_head,
        n_embd: cfg.n_embd,
    };
    let library = GptParams::init(&model, SEED);
    let mut one_page = gpt::Params::new(65, &cfg, SEED);
    let (tensors, mine) = (library.tensors(), one_page.tensors());
    assert_eq!(tensors.len(), mine.len());
    for ((name, theirs), (mine, _)) in tensors.iter().zip(&mine) {
        let theirs: Vec<f32> = theirs.iter().copied().collect();
        assert_eq!(&theirs, *mine, "{name}");
    }
}

#[test]
fn the_one_page_model_trains_as_the_library_does() {
    let corpus = listings::corpus::corpus();
    let (gpt, library) = library_run(&corpus, STEPS).unwrap();
    let cfg = gpt::Config::default();
    let (mut params, one_page) = gpt::train(&corpus, &cfg, STEPS, SEED, |_, _| {});
    assert_eq!((library.len(), one_page.len()), (STEPS, STEPS));
    let loss_diff = max_abs_diff(&library, &one_page);
    let mut weight_diff = 0.0_f32;
    for ((name, theirs), (mine, _)) in gpt.params().tensors().iter().zip(params.tensors()) {
        assert_eq!(theirs.len(), mine.len(), "{name}");
        weight_diff = weight_diff.max(max_abs_diff(theirs.iter(), mine.iter()));
    }
    println!(
        "{STEPS} steps: loss {:.4} -> {:.4}; largest difference of a loss {loss_diff:e}, \
         of a trained weight {weight_diff:e}",
        library[0],
        library[STEPS - 1]
    );
    // The same arithmetic in the same order: 0 on a CPU with fused
    // multiply-adds. Without them the library's products round twice per
    // term; the file's `matmul` made to do the same (`ab += a * b`) moved
    // the losses by 9.5e-7 and the trained weights by 5.0e-5 over these
    // 50 steps. The bounds leave room for that, and fail on any change to
    // the model (LayerNorm's eps at 1e-4 instead of 1e-5 moves a loss by 0.04).
    assert!(loss_diff < 1e-4, "losses differ by {loss_diff}");
    assert!(weight_diff < 1e-3, "weights differ by {weight_diff}");
    assert!(
        library[STEPS - 1] < 0.8 * library[0],
        "the model did not learn"
    );
}

#[test]
fn the_one_page_file_stands_on_its_own() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/one_page/gpt.rs");
    let source = std::fs::read_to_string(path).unwrap();
    for path in ["listings", "lab::", "crate::", "super::", "extern crate"] {
        assert!(
            !source.contains(path),
            "the one-page file mentions `{path}`"
        );
    }
    for line in source
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("use "))
    {
        assert!(
            line.starts_with("use std::"),
            "the one-page file has `{line}`"
        );
    }
    // Compiled alone by rustc, with no crate but std: a program.
    let dir = std::env::temp_dir().join(format!("one-page-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let program = dir.join("gpt");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let compiled = std::process::Command::new(rustc)
        .args(["--edition", "2024", "-D", "warnings", "-o"])
        .args([&program, std::path::Path::new(path)])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&compiled.stderr);
    assert!(compiled.status.success(), "rustc failed:\n{stderr}");
    // Run on a text file for two steps, it prints the losses `train` returns.
    let text: String = listings::corpus::corpus().chars().take(20_000).collect();
    let input = dir.join("input.txt");
    std::fs::write(&input, &text).unwrap();
    let run = std::process::Command::new(&program)
        .args([input.as_os_str(), "2".as_ref()])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let printed = String::from_utf8(run.stdout).unwrap();
    let (_, losses) = gpt::train(&text, &gpt::Config::default(), 2, 1337, |_, _| {});
    let expected = format!(
        "step    0: loss {:.4}\nstep    1: loss {:.4}\n",
        losses[0], losses[1]
    );
    assert_eq!(printed, expected);
    std::fs::remove_dir_all(&dir).unwrap();
}
