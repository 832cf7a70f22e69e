//! Appendix A: the complete model on one page, `lab/one_page/gpt.rs`,
//! trained beside the library on the same text, with the same seed, and
//! the two compared step by step.
//!
//! The one-page file depends on nothing from this repository (a test
//! compiles it alone with `rustc`); it is compiled here as a module so
//! that the appendix can run it.

use anyhow::Result;
use listings::model::{Gpt, GptConfig};
use listings::tokens::{CharVocab, TextTokenizer};
use listings::train::batches::{TRAIN_FRACTION, TokenData};
use listings::train::run::{TrainConfig, run};
use listings::train::step::Trainer;

#[path = "../one_page/gpt.rs"]
mod gpt;

/// The seed of both runs: the weights and the batches.
pub const SEED: u64 = 1337;

/// The library's and the one-page model's losses, step by step.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    /// The library's loss at every step (`listings::train::run`).
    pub library: Vec<f32>,
    /// The one-page model's loss at every step.
    pub one_page: Vec<f32>,
    /// The largest `|library - one_page|` over the steps.
    pub max_abs_diff: f32,
    /// How many steps' losses are the same `f32`, bit for bit.
    pub identical: usize,
}

/// The library's settings for the one-page model's default [`gpt::Config`]:
/// the model's shape (with the text's vocabulary) and the training run.
fn library_settings(
    cfg: &gpt::Config,
    vocab_size: usize,
    steps: usize,
) -> (GptConfig, TrainConfig) {
    let model = GptConfig {
        vocab_size,
        block_size: cfg.block_size,
        n_layer: cfg.n_layer,
        n_head: cfg.n_head,
        n_embd: cfg.n_embd,
    };
    let train = TrainConfig {
        batch_size: cfg.batch_size,
        block_size: cfg.block_size,
        max_iters: steps,
        learning_rate: cfg.learning_rate,
        min_lr: cfg.min_lr,
        warmup_iters: cfg.warmup_iters,
        lr_decay_iters: steps,
        weight_decay: cfg.weight_decay,
        beta1: cfg.beta1,
        beta2: cfg.beta2,
        grad_clip: cfg.grad_clip,
        eval_interval: 0,
        eval_iters: 1,
        log_interval: 1,
        seed: SEED,
    };
    (model, train)
}

// ANCHOR: library_run
/// The library's model trained on `text`, character by character, with
/// the one-page model's default settings and [`SEED`], and the loss of
/// every step.
pub fn library_run(text: &str, steps: usize) -> Result<(Gpt, Vec<f32>)> {
    let tokenizer = TextTokenizer::Char(CharVocab::from_text(text)?);
    let cfg = gpt::Config::default();
    let (model, train) = library_settings(&cfg, tokenizer.vocab_size(), steps);
    let data = TokenData::from_text(text, &tokenizer)?.split(TRAIN_FRACTION, cfg.block_size)?;
    let gpt = Gpt::new(model, SEED)?;
    let mut trainer = Trainer::new(gpt, train.adamw(), train.batch_size, train.block_size)?;
    let history = run(&mut trainer, &data, &train, |_, _| Ok(()))?;
    Ok((trainer.into_gpt(), history.losses))
}
// ANCHOR_END: library_run

/// The one-page model's training losses on `text`, with its default
/// settings and [`SEED`].
pub fn one_page_losses(text: &str, steps: usize) -> Vec<f32> {
    gpt::train(text, &gpt::Config::default(), steps, SEED, |_, _| {}).1
}

// ANCHOR: compare
/// Trains the library's model and the one-page model for `steps` steps on
/// the book's corpus, character by character, and compares their losses.
pub fn compare(steps: usize) -> Result<Comparison> {
    let corpus = listings::corpus::corpus();
    let library = library_run(&corpus, steps)?.1;
    let one_page = one_page_losses(&corpus, steps);
    let pairs = library.iter().zip(&one_page);
    let max_abs_diff = pairs
        .clone()
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    let identical = pairs.filter(|(a, b)| a.to_bits() == b.to_bits()).count();
    Ok(Comparison {
        library,
        one_page,
        max_abs_diff,
        identical,
    })
}
// ANCHOR_END: compare
