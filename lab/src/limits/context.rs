//! Chapter 8: the context wall, and what a model does inside its window.
//!
//! **The wall.** Five small character-level models, identical but for how
//! they know where a token is ([`Positions`]: learned, sinusoidal, RoPE,
//! ALiBi, none), train on the book's corpus with the same seed, the same
//! batches and the same steps, on windows of [`TRAIN_LEN`] characters.
//! Then each reads held-out windows four times as long, and
//! [`context_wall`] measures the mean loss at every position
//! ([`position_losses`]). A model with learned positions cannot even be
//! asked: it has no row of `wpe` past [`TRAIN_LEN`], and
//! [`Gpt::with_block_size`] refuses with an error that says so
//! ([`ContextWall::learned_refusal`]). To see what it would do, the curve
//! drawn for it appends freshly initialised rows ([`Gpt::with_new_positions`]),
//! as untrained as the rows past a real model's table.
//!
//! What the run found (the test `the_context_wall` prints it and checks
//! each of these): learned positions break at once, the loss jumping by
//! more than a nat at the first position past the table; RoPE holds for a
//! while past the wall (to about position 50 in this run), then degrades
//! to worse than no positions at all; ALiBi stays flat out to four
//! times its training length and is the best of the five there; the fixed
//! sinusoidal table and no positions at all degrade, but much less than
//! learned rows that were never trained. (The sinusoidal table is scaled to
//! the size of the initial token vectors, [`listings::model::sinusoidal_table`];
//! unscaled, it drowned them and the model learned almost nothing in these
//! steps.)
//!
//! **Inside the window.** A model learns a recall task
//! ([`recall_example`]): a list of key-value pairs, `c4k9a0`, then a
//! question mark and one of the keys, `?k`, and the answer is its value,
//! `9`. Keys are distinct within a list; lists have 2 to [`RECALL_PAIRS`]
//! pairs, all within the context. [`recall_accuracy`] scores it on fresh
//! lists of every length, by where the queried pair sits in the list.
//!
//! The recall model is attention-only ([`RECALL_ARCH`]) and small, and in
//! the budget's steps it learns only part of the task: it answers with a
//! value from the list far more often than with a random digit, and it is
//! right more often than a guess among the list's values would be, but far
//! from always, and less often the longer the list; the first pairs of a
//! list are recalled a little more often than the last. The binding of a value
//! to the key before it needs two attention steps (one to see the key
//! beside each value, one to find the key asked for), which small models
//! learn late; variants tried while choosing (one token per pair, 1,000
//! steps; a key and a value per token with MLPs, 1,500 steps at two
//! learning rates) did no better.
//!
//! Everything is trained once and kept in [`crate::cache`]. Measured cold
//! (nothing cached, dev profile, the tests run two at a time on two cores
//! shared with another session's builds): `cargo test -p lab --lib
//! limits::context` took 90 to 105 s over five runs, the five position
//! models (about 45 s of work) and the recall model (about 40 s) training
//! side by side in their two tests; the evaluations take a few seconds.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use ndarray::{Array2, Axis, s};

use listings::checkpoint;
use listings::finetune::chat::LmBatch;
use listings::finetune::tuner::{FineTuner, Method};
use listings::model::{Arch, Gpt, GptConfig, Positions};
use listings::rng::{ChaCha8Rng, RngExt, seeded};
use listings::tokens::{CharVocab, TextTokenizer};
use listings::train::batches::{TRAIN_FRACTION, TokenData};
use listings::train::run::{TrainConfig, run};
use listings::train::step::Trainer;

use crate::cache;

// ---------------------------------------------------------------------------
// Trained models and the cache.

/// A model trained by this module, with its tokenizer and the loss of
/// every training step.
#[derive(Clone, Debug)]
pub struct Trained {
    /// The model.
    pub gpt: Gpt,
    /// What it reads.
    pub tokenizer: TextTokenizer,
    /// The batch loss of every step, before its update.
    pub losses: Vec<f32>,
}

impl Trained {
    /// The mean batch loss of the last 50 steps.
    pub fn final_loss(&self) -> f32 {
        let tail = &self.losses[self.losses.len().saturating_sub(50)..];
        tail.iter().sum::<f32>() / tail.len() as f32
    }
}

/// Writes a [`Trained`] to `path`: a checkpoint (which keeps the model's
/// [`Arch`]), the losses in its metadata.
fn save_trained(trained: &Trained, path: &Path) -> Result<()> {
    let losses: Vec<String> = trained.losses.iter().map(f32::to_string).collect();
    let hparams = BTreeMap::from([("losses".to_string(), losses.join(" "))]);
    let step = trained.losses.len() as u64;
    checkpoint::save(path, &trained.gpt, &trained.tokenizer, None, step, &hparams)?;
    Ok(())
}

/// Reads what [`save_trained`] wrote, to the bit.
fn load_trained(path: &Path) -> Result<Trained> {
    let ckpt = checkpoint::load(path)?;
    let losses = (ckpt.hparams.get("losses"))
        .with_context(|| format!("{} has no losses", path.display()))?
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    Ok(Trained {
        gpt: ckpt.gpt,
        tokenizer: ckpt.tokenizer,
        losses,
    })
}

/// A model trained by `train` once and kept in [`crate::cache`] under
/// `name`, its settings and this file's code.
fn cached_training(
    name: &str,
    settings: String,
    train: impl FnOnce() -> Result<Trained>,
) -> Result<Trained> {
    let key = cache::key(name, &["limits/context.rs"], &settings);
    cache::cached(&key, save_trained, load_trained, train)
}

// ---------------------------------------------------------------------------
// The context wall.

/// The length of the training windows, in characters.
pub const TRAIN_LEN: usize = 32;

/// How far the test windows reach: four times the training length.
pub const TEST_LEN: usize = 4 * TRAIN_LEN;

/// Held-out windows the per-position loss is averaged over.
pub const TEST_WINDOWS: usize = 512;

/// The seed of every position model's initial weights (the same numbers
/// wherever two kinds have the same tensor) and of the rows appended to
/// the learned table.
pub const WALL_SEED: u64 = 11;

/// The corpus's characters, the position models' vocabulary.
pub fn corpus_vocab(corpus: &str) -> Result<CharVocab> {
    Ok(CharVocab::from_text(corpus)?)
}

/// The shape of the position models: 2 blocks, 4 heads of 16 channels, 64
/// wide (the book's toy model), over the corpus's characters, with a
/// context of [`TRAIN_LEN`].
pub fn wall_model_config(vocab_size: usize) -> GptConfig {
    GptConfig {
        block_size: TRAIN_LEN,
        ..GptConfig::toy(vocab_size)
    }
}

/// How the position models train: 600 steps of 16 windows of
/// [`TRAIN_LEN`] characters, AdamW at 3e-3 decaying to 3e-4.
pub fn wall_train_config() -> TrainConfig {
    TrainConfig {
        batch_size: 16,
        block_size: TRAIN_LEN,
        max_iters: 600,
        learning_rate: 3e-3,
        min_lr: 3e-4,
        warmup_iters: 50,
        lr_decay_iters: 600,
        eval_interval: 0,
        eval_iters: 1,
        weight_decay: 0.1,
        seed: 5,
        ..TrainConfig::shakespeare_char()
    }
}

// ANCHOR: position_model
/// The character model with positions of kind `positions`, trained on the
/// first 90% of the corpus (once, then read from the cache).
pub fn position_model(positions: Positions) -> Result<Trained> {
    let corpus = listings::corpus::corpus();
    let tokenizer = TextTokenizer::Char(corpus_vocab(&corpus)?);
    let (model, config) = (
        wall_model_config(tokenizer.vocab_size()),
        wall_train_config(),
    );
    let arch = Arch::with_positions(positions);
    let settings = format!("{model:?}\n{config:?}\n{arch:?}\nseed {WALL_SEED}");
    cached_training(&format!("ch08-wall-{positions}"), settings, || {
        let data = TokenData::from_text(&corpus, &tokenizer)?.split(TRAIN_FRACTION, TEST_LEN)?;
        let gpt = Gpt::with_arch(model, arch, WALL_SEED)?;
        let mut trainer = Trainer::new(gpt, config.adamw(), config.batch_size, TRAIN_LEN)?;
        let history = run(&mut trainer, &data, &config, |_, _| Ok(()))?;
        Ok(Trained {
            gpt: trainer.into_gpt(),
            tokenizer,
            losses: history.losses,
        })
    })
}
// ANCHOR_END: position_model

/// The held-out windows: the first [`TEST_WINDOWS`] non-overlapping
/// windows of `TEST_LEN + 1` characters of the corpus's last 10%, as
/// inputs and targets, `(TEST_WINDOWS, TEST_LEN)` each.
pub fn test_windows(tokenizer: &TextTokenizer) -> Result<(Array2<u32>, Array2<u32>)> {
    let corpus = listings::corpus::corpus();
    let data = TokenData::from_text(&corpus, tokenizer)?.split(TRAIN_FRACTION, TEST_LEN)?;
    let ids = data.val.ids();
    let w = TEST_LEN + 1;
    if ids.len() < TEST_WINDOWS * w {
        bail!(
            "the held-out text has {} characters, fewer than {} windows",
            ids.len(),
            TEST_WINDOWS
        );
    }
    let x = Array2::from_shape_fn((TEST_WINDOWS, TEST_LEN), |(b, t)| ids[b * w + t]);
    let y = Array2::from_shape_fn((TEST_WINDOWS, TEST_LEN), |(b, t)| ids[b * w + t + 1]);
    Ok((x, y))
}

// ANCHOR: position_losses
/// The mean cross-entropy at each position `0..T` of the windows `x`,
/// `(B, T)`, with targets `y`: how well the model predicts the character
/// after `t + 1` characters of context, averaged over the windows. The
/// windows run 64 at a time, and the sums are taken in window order, so
/// the result does not depend on the machine.
pub fn position_losses(gpt: &Gpt, x: &Array2<u32>, y: &Array2<u32>) -> Result<Vec<f32>> {
    let (b, t) = x.dim();
    let mut acts = listings::model::Activations::new(gpt.config(), 0, 0);
    let mut sums = vec![0.0_f64; t];
    for (xs, ys) in x
        .axis_chunks_iter(Axis(0), 64)
        .zip(y.axis_chunks_iter(Axis(0), 64))
    {
        gpt.forward_with(&mut acts, &xs, Some(&ys))?;
        for row in acts.losses.outer_iter() {
            for (sum, &l) in sums.iter_mut().zip(row) {
                *sum += f64::from(l);
            }
        }
    }
    Ok(sums.iter().map(|&s| (s / b as f64) as f32).collect())
}
// ANCHOR_END: position_losses

/// One kind of position's curve.
#[derive(Clone, Debug, PartialEq)]
pub struct PositionCurve {
    /// How the model knows positions.
    pub positions: Positions,
    /// The mean batch loss of its last 50 training steps.
    pub final_train_loss: f32,
    /// The mean held-out loss at each position `0..TEST_LEN`.
    pub losses: Vec<f32>,
}

impl PositionCurve {
    /// The mean of the losses at `range` of positions.
    pub fn mean(&self, range: std::ops::Range<usize>) -> f32 {
        let part = &self.losses[range];
        part.iter().sum::<f32>() / part.len() as f32
    }

    /// The mean loss over the second half of the training window
    /// (positions `TRAIN_LEN/2 .. TRAIN_LEN`), where the model has plenty of
    /// context and was trained.
    pub fn inside(&self) -> f32 {
        self.mean(TRAIN_LEN / 2..TRAIN_LEN)
    }

    /// The mean loss past the training length (`TRAIN_LEN .. TEST_LEN`).
    pub fn beyond(&self) -> f32 {
        self.mean(TRAIN_LEN..TEST_LEN)
    }

    /// The mean loss over the last training-length of the test window
    /// (`TEST_LEN - TRAIN_LEN .. TEST_LEN`), furthest from anything seen.
    pub fn far(&self) -> f32 {
        self.mean(TEST_LEN - TRAIN_LEN..TEST_LEN)
    }
}

/// The context-wall experiment's results.
#[derive(Clone, Debug, PartialEq)]
pub struct ContextWall {
    /// The training length, [`TRAIN_LEN`].
    pub train_len: usize,
    /// The test length, [`TEST_LEN`].
    pub test_len: usize,
    /// How many held-out windows each position's loss averages.
    pub windows: usize,
    /// What the learned model says when asked for a context of
    /// [`TEST_LEN`]: [`Gpt::with_block_size`]'s error, displayed.
    pub learned_refusal: String,
    /// One curve per kind, in [`Positions::ALL`]'s order; the learned
    /// model's past [`TRAIN_LEN`] reads freshly initialised rows.
    pub curves: Vec<PositionCurve>,
}

impl ContextWall {
    /// The curve of one kind.
    pub fn curve(&self, positions: Positions) -> &PositionCurve {
        (self.curves.iter())
            .find(|c| c.positions == positions)
            .expect("every kind has a curve")
    }
}

// ANCHOR: context_wall
/// Trains (or reads) the five position models and measures each one's
/// loss at every position of held-out windows of [`TEST_LEN`].
pub fn context_wall() -> Result<ContextWall> {
    let mut curves = Vec::new();
    let mut learned_refusal = String::new();
    for positions in Positions::ALL {
        let model = position_model(positions)?;
        let (x, y) = test_windows(&model.tokenizer)?;
        let long = match model.gpt.with_block_size(TEST_LEN) {
            Ok(long) => long,
            Err(refusal) => {
                learned_refusal = refusal.to_string();
                model
                    .gpt
                    .with_new_positions(TEST_LEN - TRAIN_LEN, WALL_SEED)?
            }
        };
        curves.push(PositionCurve {
            positions,
            final_train_loss: model.final_loss(),
            losses: position_losses(&long, &x, &y)?,
        });
    }
    Ok(ContextWall {
        train_len: TRAIN_LEN,
        test_len: TEST_LEN,
        windows: TEST_WINDOWS,
        learned_refusal,
        curves,
    })
}
// ANCHOR_END: context_wall

/// Figure: the held-out loss at each position, one line per kind of
/// position, the training length marked.
pub fn context_wall_figure(path: &Path) -> Result<()> {
    use crate::plot::{Axes, Series, line_chart_with_legend};
    let wall = context_wall()?;
    let names: Vec<String> = (wall.curves.iter())
        .map(|c| c.positions.name().to_string()) // the caption says which rows are untrained
        .collect();
    let mut series: Vec<Series> = (wall.curves.iter().zip(&names))
        .map(|(c, name)| Series {
            name,
            points: (c.losses.iter().enumerate())
                .map(|(t, &l)| (t as f64, f64::from(l)))
                .collect(),
        })
        .collect();
    let all = wall.curves.iter().flat_map(|c| c.losses.iter().copied());
    let (lo, hi) = all.fold((f32::MAX, f32::MIN), |(lo, hi), l| (lo.min(l), hi.max(l)));
    let mark = TRAIN_LEN as f64 - 0.5; // between the last trained position and the first new one
    series.push(Series {
        name: "training length",
        points: vec![(mark, f64::from(lo)), (mark, f64::from(hi))],
    });
    let axes = Axes {
        title: "Character models trained on 32 positions, tested on 128",
        x_label: "position in the window",
        y_label: "held-out loss at that position (nats)",
        log_y: false,
        log_x: false,
    };
    line_chart_with_legend(
        path,
        &axes,
        &series,
        // Top left, above the first positions' losses: lower down the
        // legend covered the ALiBi line.
        plotters::prelude::SeriesLabelPosition::UpperLeft,
    )
}

// ---------------------------------------------------------------------------
// Recall inside the window.

/// The most pairs in a recall list.
pub const RECALL_PAIRS: usize = 12;

/// The keys: 16 letters.
pub const RECALL_KEYS: &str = "abcdefghijklmnop";

/// The values: the ten digits.
pub const RECALL_VALUES: &str = "0123456789";

/// The recall task's characters: the keys, the values and the question
/// mark.
pub fn recall_vocab() -> CharVocab {
    CharVocab::from_text(&format!("{RECALL_KEYS}{RECALL_VALUES}?")).expect("not empty")
}

/// One recall question: the list of pairs, which pair is asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecallExample {
    /// The pairs, `(key, value)` as indices into [`RECALL_KEYS`] and
    /// digits, keys distinct.
    pub pairs: Vec<(usize, usize)>,
    /// The index in `pairs` of the pair asked for.
    pub asked: usize,
}

impl RecallExample {
    /// The question as the model reads it: each pair's key and value,
    /// back to back, `?`, the key asked for (`c4k9a0?k`).
    pub fn prompt(&self) -> String {
        let mut text: String = (0..self.pairs.len())
            .flat_map(|i| [self.key(i), self.value(i)])
            .collect();
        text.push('?');
        text.push(self.key(self.asked));
        text
    }

    /// The question written for people: `c4 k9 a0 ?k`.
    pub fn display(&self) -> String {
        let pairs: Vec<String> = (0..self.pairs.len())
            .map(|i| format!("{}{}", self.key(i), self.value(i)))
            .collect();
        format!("{} ?{}", pairs.join(" "), self.key(self.asked))
    }

    /// The key of pair `i`, a letter.
    pub fn key(&self, i: usize) -> char {
        RECALL_KEYS.as_bytes()[self.pairs[i].0] as char
    }

    /// The value of pair `i`, a digit.
    pub fn value(&self, i: usize) -> char {
        RECALL_VALUES.as_bytes()[self.pairs[i].1] as char
    }

    /// The answer: the value of the pair asked for.
    pub fn answer(&self) -> char {
        self.value(self.asked)
    }
}

// ANCHOR: recall_example
/// A random recall question of `n` pairs asking for pair `asked`: `n`
/// distinct keys, each with a random value.
pub fn recall_example(rng: &mut ChaCha8Rng, n: usize, asked: usize) -> RecallExample {
    let mut keys: Vec<usize> = (0..RECALL_KEYS.len()).collect();
    for i in (1..keys.len()).rev() {
        keys.swap(i, rng.random_range(0..=i));
    }
    let pairs = (keys.into_iter().take(n))
        .map(|k| (k, rng.random_range(0..RECALL_VALUES.len())))
        .collect();
    RecallExample { pairs, asked }
}
// ANCHOR_END: recall_example

/// The recall model's shape: GPT-2's architecture, 2 blocks, 4 heads, 64
/// wide, a context of `4·RECALL_PAIRS` characters (a training row of the
/// longest list, `4·RECALL_PAIRS + 1` characters, less its last).
pub fn recall_model_config() -> GptConfig {
    GptConfig {
        block_size: 4 * RECALL_PAIRS,
        ..GptConfig::toy(recall_vocab().vocab_size())
    }
}

/// How the recall model trains: 3,000 steps of 16 rows, each a new random
/// list of 2 to [`RECALL_PAIRS`] pairs and a question for each pair, the
/// loss on the answers only.
pub fn recall_train_config() -> TrainConfig {
    TrainConfig {
        batch_size: 16,
        block_size: 4 * RECALL_PAIRS,
        max_iters: 3000,
        learning_rate: 1e-2,
        min_lr: 1e-3,
        warmup_iters: 50,
        lr_decay_iters: 3000,
        eval_interval: 0,
        eval_iters: 1,
        weight_decay: 0.1,
        seed: 9,
        ..TrainConfig::shakespeare_char()
    }
}

/// The recall model's architecture: learned positions, no MLPs (an
/// attention-only transformer, a third of the work per step, so more steps
/// fit the budget; recall is attention's job).
pub const RECALL_ARCH: Arch = Arch {
    positions: Positions::Learned,
    mlp: false,
    ..Arch::gpt2()
};

/// The seed of the recall model's initial weights.
pub const RECALL_SEED: u64 = 12;

/// A training row: a list of 2 to [`RECALL_PAIRS`] pairs, `?`, then every
/// key of the list in a random order, each followed by its value
/// (`c4k9a0?k9a0c4` for three pairs), with whether each position's target is an
/// answer. The first question is a test question with its answer; the
/// others give the step more answers to learn from.
fn recall_training_row(
    tokenizer: &TextTokenizer,
    rng: &mut ChaCha8Rng,
) -> Result<(Vec<u32>, Vec<bool>)> {
    let n = rng.random_range(2..=RECALL_PAIRS);
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, rng.random_range(0..=i));
    }
    let example = recall_example(rng, n, order[0]);
    let mut text = example.prompt();
    text.push(example.answer());
    for &i in &order[1..] {
        text.extend([example.key(i), example.value(i)]);
    }
    let ids = tokenizer.encode(&text)?;
    // Position t predicts token t + 1: the answers are at 2n + 2 + 2q.
    let answers: Vec<bool> = (0..ids.len() - 1)
        .map(|t| t + 1 >= 2 * n + 2 && (t + 1 - (2 * n + 2)).is_multiple_of(2))
        .collect();
    Ok((ids, answers))
}

/// A batch of `rows` training rows, padded at the end with id 0, the loss
/// the mean over the answers.
fn recall_batch(tokenizer: &TextTokenizer, rng: &mut ChaCha8Rng, rows: usize) -> Result<LmBatch> {
    let rows: Vec<_> = (0..rows)
        .map(|_| recall_training_row(tokenizer, rng))
        .collect::<Result<_>>()?;
    let t = rows
        .iter()
        .map(|(ids, _)| ids.len() - 1)
        .max()
        .expect("rows");
    let mut batch = LmBatch {
        idx: Array2::zeros((rows.len(), t)),
        targets: Array2::zeros((rows.len(), t)),
        weights: Array2::zeros((rows.len(), t)),
    };
    for (b, (ids, answers)) in rows.iter().enumerate() {
        for (i, &answer) in answers.iter().enumerate() {
            batch.idx[[b, i]] = ids[i];
            batch.targets[[b, i]] = ids[i + 1];
            batch.weights[[b, i]] = if answer { 1.0 } else { 0.0 };
        }
    }
    let n = batch.weights.sum();
    batch.weights /= n;
    Ok(batch)
}

// ANCHOR: recall_model
/// The recall model: every step a batch of fresh random questions (so it
/// never sees one twice), trained once, then read from the cache.
pub fn recall_model() -> Result<Trained> {
    let (model, config) = (recall_model_config(), recall_train_config());
    let settings = format!("{model:?}\n{config:?}\n{RECALL_ARCH:?}\nseed {RECALL_SEED}");
    cached_training("ch08-recall", settings, || {
        let tokenizer = TextTokenizer::Char(recall_vocab());
        let gpt = Gpt::with_arch(model, RECALL_ARCH, RECALL_SEED)?;
        let mut tuner = FineTuner::new(gpt, Method::Full, config.adamw(), RECALL_SEED)?;
        let mut rng = seeded(config.seed);
        let mut losses = Vec::with_capacity(config.max_iters);
        for step in 0..config.max_iters {
            let batch = recall_batch(&tokenizer, &mut rng, config.batch_size)?;
            losses.push(tuner.step_lm(&batch, config.lr(step), config.grad_clip)?);
        }
        Ok(Trained {
            gpt: tuner.gpt().clone(),
            tokenizer,
            losses,
        })
    })
}
// ANCHOR_END: recall_model

/// Test questions per list length and queried position.
pub const RECALL_TESTS: usize = 200;

/// The seed of the test questions (the training questions come from
/// [`recall_train_config`]'s seed).
pub const RECALL_TEST_SEED: u64 = 1001;

/// The recall model's accuracy on lists of one length.
#[derive(Clone, Debug, PartialEq)]
pub struct RecallRow {
    /// Pairs in each list.
    pub pairs: usize,
    /// For each position of the queried pair, `0..pairs`, the share of
    /// [`RECALL_TESTS`] questions answered right (the likeliest character).
    pub by_position: Vec<f32>,
}

impl RecallRow {
    /// The accuracy over every position.
    pub fn mean(&self) -> f32 {
        self.by_position.iter().sum::<f32>() / self.by_position.len() as f32
    }
}

/// The recall experiment's results.
#[derive(Clone, Debug, PartialEq)]
pub struct RecallAccuracy {
    /// The mean training loss of the last 50 steps.
    pub final_train_loss: f32,
    /// One row per list length, 2 to [`RECALL_PAIRS`].
    pub rows: Vec<RecallRow>,
}

impl RecallAccuracy {
    /// The row of lists of `pairs` pairs.
    pub fn row(&self, pairs: usize) -> &RecallRow {
        (self.rows.iter())
            .find(|r| r.pairs == pairs)
            .expect("a row per length")
    }
}

// ANCHOR: recall_accuracy
/// Trains (or reads) the recall model and asks it [`RECALL_TESTS`] fresh
/// questions for every list length and every position of the queried
/// pair; an answer is right if the likeliest next character is the value.
pub fn recall_accuracy() -> Result<RecallAccuracy> {
    let model = recall_model()?;
    let mut rng = seeded(RECALL_TEST_SEED);
    let mut rows = Vec::new();
    for n in 2..=RECALL_PAIRS {
        let mut by_position = Vec::with_capacity(n);
        for asked in 0..n {
            let examples: Vec<RecallExample> = (0..RECALL_TESTS)
                .map(|_| recall_example(&mut rng, n, asked))
                .collect();
            let prompts = examples
                .iter()
                .map(|e| model.tokenizer.encode(&e.prompt()))
                .collect::<Result<Vec<_>, _>>()?;
            let t = prompts[0].len();
            let idx = Array2::from_shape_fn((RECALL_TESTS, t), |(b, i)| prompts[b][i]);
            let (logits, _) = model.gpt.forward(&idx, None)?;
            let mut right = 0;
            for (e, row) in examples.iter().zip(logits.outer_iter()) {
                let last = row.slice(s![t - 1, ..]);
                let best = (0..last.len())
                    .max_by(|&i, &j| last[i].total_cmp(&last[j]))
                    .expect("a vocabulary");
                let answer = model.tokenizer.encode(&e.answer().to_string())?;
                right += usize::from(answer == [best as u32]);
            }
            by_position.push(right as f32 / RECALL_TESTS as f32);
        }
        rows.push(RecallRow {
            pairs: n,
            by_position,
        });
    }
    Ok(RecallAccuracy {
        final_train_loss: model.final_loss(),
        rows,
    })
}
// ANCHOR_END: recall_accuracy

/// Figure: the recall model's accuracy by the position of the queried
/// pair, one line per list length (4, 8 and 12 pairs).
pub fn recall_figure(path: &Path) -> Result<()> {
    use crate::plot::{Axes, Series, line_chart_with_legend};
    let recall = recall_accuracy()?;
    let lengths = [4, 8, RECALL_PAIRS];
    let names: Vec<String> = lengths.iter().map(|n| format!("{n} pairs")).collect();
    let series: Vec<Series> = (lengths.iter().zip(&names))
        .map(|(&n, name)| Series {
            name,
            points: (recall.row(n).by_position.iter().enumerate())
                .map(|(i, &acc)| ((i + 1) as f64, f64::from(acc)))
                .collect(),
        })
        .collect();
    let axes = Axes {
        title: "Recalling a value from a list of key-value pairs",
        x_label: "position of the queried pair in the list (1 = first)",
        y_label: "share of answers right",
        log_y: false,
        log_x: false,
    };
    line_chart_with_legend(
        path,
        &axes,
        &series,
        plotters::prelude::SeriesLabelPosition::UpperRight,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recall_questions_say_what_they_claim() {
        let mut rng = seeded(1);
        for n in 1..=RECALL_PAIRS {
            for asked in 0..n {
                let e = recall_example(&mut rng, n, asked);
                assert_eq!(e.pairs.len(), n);
                let keys: std::collections::BTreeSet<usize> = e.pairs.iter().map(|p| p.0).collect();
                assert_eq!(keys.len(), n, "keys are distinct");
                let prompt: Vec<char> = e.prompt().chars().collect();
                assert_eq!(prompt.len(), 2 * n + 2);
                assert_eq!(prompt[2 * n], '?');
                assert_eq!(prompt[2 * n + 1], e.key(asked));
                let at = prompt.iter().position(|&c| c == e.key(asked)).unwrap();
                assert_eq!(at, 2 * asked, "pair {asked} is asked for");
                assert_eq!(prompt[at + 1], e.answer());
                assert!(RECALL_VALUES.contains(e.answer()));
                let shown = e.display();
                let key_at = shown.find(e.key(asked)).unwrap();
                assert_eq!(
                    shown[key_at + 1..].chars().next(),
                    Some(e.answer()),
                    "{shown}"
                );
            }
        }
        // Training rows: the weights fall on the answers, each the value
        // of the key just before it.
        let tokenizer = TextTokenizer::Char(recall_vocab());
        let batch = recall_batch(&tokenizer, &mut rng, 64).unwrap();
        assert!(batch.idx.dim().1 <= recall_model_config().block_size);
        assert!((batch.weights.sum() - 1.0).abs() < 1e-5);
        let question = tokenizer.encode("?").unwrap()[0];
        for b in 0..64 {
            let row = batch.idx.row(b).to_vec();
            let n = row.iter().take_while(|&&id| id != question).count();
            let list = tokenizer.decode(&row[..n]).unwrap();
            let answers: Vec<usize> = (0..row.len())
                .filter(|&t| batch.weights[[b, t]] > 0.0)
                .collect();
            assert_eq!(answers.len(), n / 2, "one answer per pair");
            for t in answers {
                let key = tokenizer.decode(&[batch.idx[[b, t]]]).unwrap();
                let value = tokenizer.decode(&[batch.targets[[b, t]]]).unwrap();
                let at = list.find(&key).unwrap();
                assert_eq!(&list[at + 1..at + 2], value, "{list}");
            }
        }
    }

    #[test]
    fn test_windows_come_from_the_held_out_text() {
        let corpus = listings::corpus::corpus();
        let tokenizer = TextTokenizer::Char(corpus_vocab(&corpus).unwrap());
        let (x, y) = test_windows(&tokenizer).unwrap();
        assert_eq!(x.dim(), (TEST_WINDOWS, TEST_LEN));
        assert_eq!(x.slice(s![.., 1..]), y.slice(s![.., ..TEST_LEN - 1]));
        let first = tokenizer.decode(&x.row(0).to_vec()).unwrap();
        let (_, val) = listings::corpus::train_val_split(&corpus, TRAIN_FRACTION);
        assert!(val.starts_with(&first));
    }

    #[test]
    fn the_context_wall() {
        let wall = context_wall().unwrap();
        for c in &wall.curves {
            println!(
                "{:>10}: train {:.3}  pos 0 {:.3}  inside {:.3}  beyond {:.3}  far {:.3}  \
                 at 31 {:.3}  at 33 {:.3}  at 64 {:.3}  at 127 {:.3}",
                c.positions.name(),
                c.final_train_loss,
                c.losses[0],
                c.inside(),
                c.beyond(),
                c.far(),
                c.losses[31],
                c.losses[33],
                c.losses[64],
                c.losses[127],
            );
        }
        assert_eq!(wall.curves.len(), 5);
        assert!(wall.curves.iter().all(|c| c.losses.len() == TEST_LEN));
        assert!(
            wall.learned_refusal.contains("never trained"),
            "{}",
            wall.learned_refusal
        );
        // Every model learned something: inside the window, well below
        // the uniform guess over the characters.
        let uniform = (corpus_vocab(&listings::corpus::corpus())
            .unwrap()
            .vocab_size() as f32)
            .ln();
        for c in &wall.curves {
            assert!(
                c.inside() < uniform - 1.0,
                "{}: {}",
                c.positions,
                c.inside()
            );
            assert!(c.losses.iter().all(|l| l.is_finite()));
        }
        let [learned, sinusoidal, rope, alibi, none] =
            Positions::ALL.map(|p| wall.curve(p).clone());
        // Learned positions hit the wall: untrained rows wreck the loss at
        // once, from the first position past the table.
        assert!(learned.beyond() > learned.inside() + 0.5);
        assert!(learned.losses[TRAIN_LEN] > learned.losses[TRAIN_LEN - 1] + 0.5);
        // RoPE holds just past the wall and degrades further out.
        let just_past = rope.mean(TRAIN_LEN..TRAIN_LEN + 4);
        assert!(just_past < rope.inside() + 0.2, "{just_past}");
        assert!(rope.far() > rope.inside() + 0.5);
        // ALiBi is flat: as good four times past its training length as
        // inside it, and the best of the five out there.
        assert!((alibi.beyond() - alibi.inside()).abs() < 0.1);
        for other in [&learned, &sinusoidal, &rope, &none] {
            assert!(alibi.far() < other.far(), "{}", other.positions);
        }
        // The fixed sinusoidal table and no positions at all degrade, but
        // less than learned rows that were never trained.
        for c in [&sinusoidal, &none] {
            assert!(c.beyond() > c.inside(), "{}", c.positions);
            assert!(c.beyond() - c.inside() < learned.beyond() - learned.inside());
        }
        draws("wall.svg", context_wall_figure);
    }

    /// Draws a figure into a temporary file (from the cache, which the
    /// test calling it has filled) and checks it is an SVG.
    fn draws(name: &str, draw: fn(&Path) -> Result<()>) {
        let dir = std::env::temp_dir().join(format!("lab-context-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        draw(&path).unwrap();
        assert!(std::fs::read_to_string(&path).unwrap().contains("<svg"));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn recall_inside_the_window() {
        let recall = recall_accuracy().unwrap();
        println!("recall: final train loss {:.3}", recall.final_train_loss);
        for row in &recall.rows {
            let cells: Vec<String> = row.by_position.iter().map(|a| format!("{a:.2}")).collect();
            println!(
                "{:>2} pairs: mean {:.3}  [{}]",
                row.pairs,
                row.mean(),
                cells.join(" ")
            );
        }
        assert_eq!(recall.rows.len(), RECALL_PAIRS - 1);
        for row in &recall.rows {
            assert_eq!(row.by_position.len(), row.pairs);
            // Better than a guess among the ten digits...
            assert!(row.mean() > 0.15, "{} pairs: {:.3}", row.pairs, row.mean());
        }
        // ... and than a guess among the list's own values, 1/n: the model
        // has learned something of which value goes with which key.
        for n in [4, 8, RECALL_PAIRS] {
            let mean = recall.row(n).mean();
            assert!(mean > 1.25 / n as f32, "{n} pairs: {mean:.3}");
        }
        // The first pairs of a long list are recalled more often than the
        // last (primacy), over the first and last quarter of the list.
        for n in [8, RECALL_PAIRS] {
            let row = &recall.row(n).by_position;
            let quarter = n / 4;
            let first = row[..quarter].iter().sum::<f32>() / quarter as f32;
            let last = row[n - quarter..].iter().sum::<f32>() / quarter as f32;
            assert!(
                first > last + 0.05,
                "{n} pairs: first {first:.3}, last {last:.3}"
            );
        }
        // Longer lists are harder.
        assert!(recall.row(2).mean() > recall.row(RECALL_PAIRS).mean() + 0.2);
        draws("recall.svg", recall_figure);
    }
}
