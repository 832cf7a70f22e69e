//! The book's own trained model: the toy GPT of chapter 4, trained on the
//! book's corpus with the book's tokenizer. Chapters 2, 3, 5 and later look
//! inside it (its embeddings, its attention, its samples); the training run
//! is deterministic, so every chapter sees the same model.

use super::data::{TextTokenizer, TokenData};
use super::run::{Event, History, RunError, TrainConfig, run, split};
use super::step::Trainer;
use crate::model::{Gpt, GptConfig};
use crate::optim::AdamWConfig;
use crate::tokens::book_tokenizer;

/// The seed of the book model's initial weights.
pub const BOOK_MODEL_SEED: u64 = 1337;

// ANCHOR: book_config
/// How the book model is trained: nanoGPT's small-model settings, sized to
/// finish in well under a minute on two CPU cores.
pub fn book_train_config() -> TrainConfig {
    TrainConfig {
        batch_size: 16,
        block_size: 64,
        max_iters: 2000,
        learning_rate: 3e-3,
        min_lr: 3e-4,
        warmup_iters: 100,
        lr_decay_iters: 2000,
        eval_interval: 250,
        eval_iters: 20,
        ..TrainConfig::shakespeare_char()
    }
}
// ANCHOR_END: book_config

/// The book model's shape: [`GptConfig::toy`] over the book tokenizer.
pub fn book_model_config() -> GptConfig {
    GptConfig::toy(book_tokenizer().vocab_size())
}

/// A finished run of the book model.
pub struct BookModel {
    /// The trained model.
    pub gpt: Gpt,
    /// The tokenizer it reads and writes (chapter 1's BPE).
    pub tokenizer: TextTokenizer,
    /// Its losses and learning rates.
    pub history: History,
    /// The settings it was trained with.
    pub config: TrainConfig,
}

/// The AdamW settings a [`TrainConfig`] implies.
pub fn adamw_config(config: &TrainConfig) -> AdamWConfig {
    AdamWConfig {
        lr: config.learning_rate,
        beta1: config.beta1,
        beta2: config.beta2,
        eps: 1e-8,
        weight_decay: config.weight_decay,
    }
}

// ANCHOR: train_book_model
/// Trains the book model on the corpus for `config.max_iters` steps,
/// calling `on_event` at every step and evaluation.
pub fn train_book_model(
    config: &TrainConfig,
    on_event: impl FnMut(&Event, &Trainer) -> super::run::HandlerResult,
) -> Result<BookModel, RunError> {
    let tokenizer = TextTokenizer::Bpe(book_tokenizer().clone());
    let tokens = TokenData::from_text(&crate::data::corpus(), &tokenizer)?;
    let data = split(&tokens, config.block_size)?;
    let gpt =
        Gpt::new(book_model_config(), BOOK_MODEL_SEED).map_err(super::step::TrainError::from)?;
    let mut trainer = Trainer::new(
        gpt,
        adamw_config(config),
        config.batch_size,
        config.block_size,
    )?;
    let history = run(&mut trainer, &data, config, on_event)?;
    Ok(BookModel {
        gpt: trainer.into_gpt(),
        tokenizer,
        history,
        config: *config,
    })
}
// ANCHOR_END: train_book_model

/// The book model, trained with [`book_train_config`]; the same model on
/// every run and machine (up to last-bit float differences between CPUs).
pub fn book_model() -> Result<BookModel, RunError> {
    train_book_model(&book_train_config(), |_, _| Ok(()))
}

/// [`book_model`], trained once per process and shared: for code that
/// looks at the model several times (the figures, for instance).
pub fn shared_book_model() -> Result<&'static BookModel, String> {
    static MODEL: std::sync::OnceLock<Result<BookModel, String>> = std::sync::OnceLock::new();
    MODEL
        .get_or_init(|| book_model().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(Clone::clone)
}
