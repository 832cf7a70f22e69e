//! The book's own trained model: the toy GPT of chapter 4, trained on the
//! book's corpus with the book's tokenizer. Chapters 2, 3, 5 and later look
//! inside it (its embeddings, its attention, its samples); the training run
//! is deterministic, so every chapter sees the same model.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use listings::checkpoint;
use listings::model::{Gpt, GptConfig};
use listings::sample::{SampleConfig, sample_text};
use listings::tokens::{TextTokenizer, book_tokenizer};
use listings::train::batches::TokenData;
use listings::train::run::{Event, HandlerResult, History, RunError, TrainConfig, run, split};
use listings::train::step::{TrainError, Trainer};

use crate::cache;

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
    /// What it wrote at a few steps of its training, in step order.
    pub snapshots: Vec<Snapshot>,
}

/// The prompt the book model continues at a few steps of its training.
pub const SNAPSHOT_PROMPT: &str = "Once upon a time";

/// The evaluations at which the model stops to write: the steps of
/// [`Snapshot`].
pub const SNAPSHOT_STEPS: [usize; 5] = [0, 250, 500, 1000, 2000];

/// How the snapshots are sampled: [`SampleConfig::default`] (nanoGPT's
/// temperature 0.8 and 200 likeliest tokens, and its seed), as chapter 5's
/// before-and-after samples are, so the first and last snapshots begin as
/// those do. Sampling draws from a generator of its own, seeded afresh for
/// each snapshot, and only reads the weights: the run's batches, weights
/// and losses are the same with or without the snapshots.
pub fn snapshot_sampling() -> SampleConfig {
    SampleConfig {
        max_new_tokens: 24,
        ..SampleConfig::default()
    }
}

/// What the book model wrote at one evaluation of its training run.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// The step: the number of updates made before it.
    pub step: usize,
    /// The mean loss on the validation split at that step.
    pub val_loss: f32,
    /// [`SNAPSHOT_PROMPT`] and its continuation ([`snapshot_sampling`]).
    pub text: String,
}

// ANCHOR: train_book_model
/// Trains the book model on the corpus for `config.max_iters` steps,
/// calling `on_event` at every step and evaluation. At the evaluations of
/// [`SNAPSHOT_STEPS`] the model also continues [`SNAPSHOT_PROMPT`].
pub fn train_book_model(
    config: &TrainConfig,
    mut on_event: impl FnMut(&Event, &Trainer) -> HandlerResult,
) -> Result<BookModel, RunError> {
    let tokenizer = TextTokenizer::Bpe(book_tokenizer().clone());
    let tokens = TokenData::from_text(&listings::corpus::corpus(), &tokenizer)?;
    let data = split(&tokens, config.block_size)?;
    let gpt = Gpt::new(book_model_config(), BOOK_MODEL_SEED).map_err(TrainError::from)?;
    let mut trainer = Trainer::new(gpt, config.adamw(), config.batch_size, config.block_size)?;
    let mut snapshots = Vec::new();
    let history = run(&mut trainer, &data, config, |event, trainer| {
        if let Event::Eval { step, val_loss, .. } = *event
            && SNAPSHOT_STEPS.contains(&step)
        {
            let (prompt, sampling) = (SNAPSHOT_PROMPT, snapshot_sampling());
            let text = sample_text(trainer.gpt(), &tokenizer, prompt, &sampling)?;
            snapshots.push(Snapshot {
                step,
                val_loss,
                text,
            });
        }
        on_event(event, trainer)
    })?;
    Ok(BookModel {
        gpt: trainer.into_gpt(),
        tokenizer,
        history,
        config: *config,
        snapshots,
    })
}
// ANCHOR_END: train_book_model

/// The book model, trained with [`book_train_config`]; the same model on
/// every run and machine (up to last-bit float differences between CPUs).
///
/// It is trained once and kept on disk ([`crate::cache`]): the first call
/// trains it, later calls (in any process) read the result, until the code
/// that trains it changes.
pub fn book_model() -> anyhow::Result<BookModel> {
    let config = book_train_config();
    cache::cached(
        &book_model_cache_key(),
        save_book_model,
        |path| load_book_model(path, config),
        || Ok(train_book_model(&config, |_, _| Ok(()))?),
    )
}

/// The name of the book model's file in the cache: a hash of the code that
/// trains it and of its settings.
pub fn book_model_cache_key() -> String {
    let settings = format!(
        "{:?}\n{:?}\nseed {BOOK_MODEL_SEED}",
        book_train_config(),
        book_model_config()
    );
    cache::key("book-model", &["book_model.rs"], &settings)
}

/// Whether the book model is in the cache (and the cache is on), so that
/// [`book_model`] loads it in a fraction of a second instead of training it.
pub fn book_model_is_cached() -> bool {
    cache::enabled() && cache::cache_dir().join(book_model_cache_key()).is_file()
}

/// Writes a trained book model, its tokenizer, its history and its
/// snapshots to `path`: a checkpoint, with the rest in its metadata.
pub fn save_book_model(model: &BookModel, path: &Path) -> anyhow::Result<()> {
    let h = &model.history;
    let join = |values: &mut dyn Iterator<Item = String>| values.collect::<Vec<_>>().join(" ");
    let mut hparams = BTreeMap::from([
        (
            "history.evals".to_string(),
            join(&mut h.evals.iter().map(|(s, t, v)| format!("{s}:{t}:{v}"))),
        ),
        (
            "history.losses".to_string(),
            join(&mut h.losses.iter().map(f32::to_string)),
        ),
        (
            "history.lrs".to_string(),
            join(&mut h.lrs.iter().map(f32::to_string)),
        ),
        ("history.step_ms".to_string(), h.step_ms.to_string()),
    ]);
    for s in &model.snapshots {
        hparams.insert(format!("{SNAPSHOT_KEY}{}", s.step), s.text.clone());
        hparams.insert(
            format!("{SNAPSHOT_LOSS_KEY}{}", s.step),
            s.val_loss.to_string(),
        );
    }
    let step = h.losses.len() as u64;
    checkpoint::save(path, &model.gpt, &model.tokenizer, None, step, &hparams)?;
    Ok(())
}

/// The metadata key of a snapshot's text, before its step.
const SNAPSHOT_KEY: &str = "snapshot.text.";
/// The metadata key of a snapshot's validation loss, before its step.
const SNAPSHOT_LOSS_KEY: &str = "snapshot.val_loss.";

/// Reads what [`save_book_model`] wrote: the same weights, tokenizer,
/// history and snapshots, to the bit. `config` is the training settings it was made with.
pub fn load_book_model(path: &Path, config: TrainConfig) -> anyhow::Result<BookModel> {
    let ckpt = checkpoint::load(path)?;
    let field = |name: &str| {
        ckpt.hparams
            .get(name)
            .with_context(|| format!("{} has no {name}", path.display()))
    };
    fn numbers<T: std::str::FromStr>(text: &str) -> anyhow::Result<Vec<T>>
    where
        T::Err: std::error::Error + Send + Sync + 'static,
    {
        Ok(text
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()?)
    }
    let mut evals = Vec::new();
    for item in field("history.evals")?.split_whitespace() {
        let parts: Vec<&str> = item.split(':').collect();
        let [step, train, val] = parts[..] else {
            anyhow::bail!("bad evaluation {item:?} in {}", path.display());
        };
        evals.push((step.parse()?, train.parse()?, val.parse()?));
    }
    let history = History {
        evals,
        losses: numbers(field("history.losses")?)?,
        lrs: numbers(field("history.lrs")?)?,
        step_ms: field("history.step_ms")?.parse()?,
    };
    let mut snapshots = Vec::new();
    for (key, text) in &ckpt.hparams {
        if let Some(step) = key.strip_prefix(SNAPSHOT_KEY) {
            snapshots.push(Snapshot {
                step: step.parse()?,
                val_loss: field(&format!("{SNAPSHOT_LOSS_KEY}{step}"))?.parse()?,
                text: text.clone(),
            });
        }
    }
    snapshots.sort_by_key(|s| s.step);
    Ok(BookModel {
        gpt: ckpt.gpt,
        tokenizer: ckpt.tokenizer,
        history,
        config,
        snapshots,
    })
}

/// [`book_model`], trained once per process and shared: for code that
/// looks at the model several times (the figures, for instance).
pub fn shared_book_model() -> Result<&'static BookModel, String> {
    static MODEL: std::sync::OnceLock<Result<BookModel, String>> = std::sync::OnceLock::new();
    MODEL
        .get_or_init(|| book_model().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(Clone::clone)
}
