//! Chapter 9's scaling sweep: small GPTs trained at fixed compute budgets,
//! and one trained with the same compute on repeated text. What the runs
//! say (the best size of each budget, the laws fitted to them) is
//! [`super::laws`]'s, and so is the command that prints it all:
//!
//! ```text
//! cargo run -p lab --release -- sweep
//! ```
//!
//! **The iso-FLOP sweep.** Ten shapes ([`GRID`]: widths 16 to 128, depths
//! 1 to 4, 5,488 to 215,936 parameters) train at three compute budgets
//! ([`BUDGETS`]: 1e11, 2e11 and 4e11 FLOPs): every shape at the smallest
//! budget, and at the others the shapes within reach of their best size
//! ([`trains`]), 23 runs in all. A run's budget buys its tokens:
//! `steps = round(budget / (flops_per_token · tokens_per_step))`, with the
//! exact count of [`training_flops_per_token`], so a big model reads few
//! tokens and a small one many, and every run of a budget spends the same
//! compute to within half a batch. Every run reads fresh text (no window
//! twice), in the same order, with a cosine schedule as long as the run
//! (Hoffmann et al. 2022, section 3.1 and figure A1: a cosine cycle much
//! longer than the run leaves the model worse than it could be) and a peak
//! learning rate that falls with the width ([`peak_lr`]). Every run's
//! held-out loss is taken on the same text ([`VAL_WINDOWS`] windows of the
//! book corpus's last 10%).
//!
//! **Repetition.** One shape ([`REPEAT_SHAPE`]) at one budget
//! ([`REPEAT_BUDGET`]) trains on as many tokens as the sweep gives it, but
//! drawn from a quarter or a sixteenth as much text, read 4 or 16 times
//! ([`REPEAT_EPOCHS`], [`run_windows`]); its run on fresh text is the
//! sweep's own.
//!
//! **The tokenizer: characters.** The book's BPE has 2,048 tokens, so at
//! width 16 its embedding table holds 32,768 of a model's 37,104
//! parameters and its output layer does 196,608 of the 221,280 FLOPs a
//! token costs to train: a sweep over widths 16 to 64 would mostly vary
//! the embedding. Over the corpus's 72 characters the blocks hold most of
//! the parameters and do most of the work from width 16 up, as in the
//! models the published laws were fitted to. So the sweep reads
//! characters.
//!
//! **The text.** The longest run reads 6.5 million characters, six times
//! the book corpus's 1.08 million for training, and a sweep run that read
//! some text twice would mix repetition into the sweep. So the training
//! text is the book corpus's first 90% followed by more text from the
//! same generator ([`listings::corpus::generate`], seeds 2, 3, ...), as
//! much as the longest run needs. The held-out text is the book corpus's
//! last 10%, as for the book's model. (The generator states its facts
//! many times over, so some of its sentences recur in the training text,
//! as they do in the book corpus's own first 90%.)
//!
//! **Cost.** The runs spend 5.2e12 FLOPs of training between them. Each
//! is trained once and kept in [`crate::cache`], one small file per run,
//! keyed by this file, the ledger (which counts the FLOPs) and the run's
//! settings; read back, the whole sweep takes milliseconds. (The time it
//! takes cold is in [`super::laws`], whose file can change without
//! training the sweep again.)

use std::path::Path;
use std::sync::OnceLock;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use ndarray::Array2;

use listings::corpus::{CORPUS_SEED, DEFAULT_BYTES, generate, train_val_split};
use listings::model::{Gpt, GptConfig, count_parameters};
use listings::rng::{RngExt, seeded};
use listings::tokens::{CharVocab, TextTokenizer};
use listings::train::batches::{TRAIN_FRACTION, mean_window_loss};
use listings::train::run::TrainConfig;
use listings::train::step::Trainer;

use super::ledger::training_flops_per_token;
use crate::cache;

// ---------------------------------------------------------------------------
// The settings.

/// A model's shape: its width and its depth. Its heads are [`HEAD_SIZE`]
/// channels wide, or as wide as the model below 32 (one head of 24 at
/// width 24, two of 20 at width 40).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Shape {
    /// `n_embd`.
    pub width: usize,
    /// `n_layer`.
    pub depth: usize,
}

impl Shape {
    /// The model of this shape over `vocab_size` tokens, with a context of
    /// [`SEQ_LEN`].
    pub fn config(&self, vocab_size: usize) -> GptConfig {
        GptConfig {
            vocab_size,
            block_size: SEQ_LEN,
            n_layer: self.depth,
            n_head: (self.width / HEAD_SIZE).max(1),
            n_embd: self.width,
        }
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.width, self.depth)
    }
}

const fn shape(width: usize, depth: usize) -> Shape {
    Shape { width, depth }
}

// ANCHOR: grid
/// The shapes of the sweep, smallest first: widths 16 to 128, depths 1 to
/// 4, 5,488 to 215,936 parameters over the corpus's characters (39 times).
/// Each shape is wider or deeper than the one before, but the last: width
/// 128 fits under the others' largest size only one block deep.
pub const GRID: [Shape; 10] = [
    shape(16, 1),
    shape(24, 1),
    shape(32, 1),
    shape(40, 1),
    shape(48, 1),
    shape(48, 2),
    shape(64, 2),
    shape(64, 3),
    shape(64, 4),
    shape(128, 1),
];

/// The compute budgets, in training FLOPs, a factor of 2 apart.
pub const BUDGETS: [u64; 3] = [100_000_000_000, 200_000_000_000, 400_000_000_000];

/// Which shapes a budget trains: every shape at the smallest budget (so
/// every shape trains once, the largest far to the right of that budget's
/// best size); at the others, the shapes whose run reads between 2 and 700
/// tokens per parameter. Pilot runs put the best size between 60 and 150
/// tokens per parameter, so the shapes left out are far from it, and
/// leaving them out saves 2e12 of the 7e12 FLOPs that every shape at every
/// budget would take.
pub fn trains(shape: Shape, budget: u64) -> bool {
    let config = shape.config(VOCAB_SIZE);
    let tokens = steps_for_budget(&config, budget) as f64 * TOKENS_PER_STEP as f64;
    let per_param = tokens / count_parameters(&config) as f64;
    budget == BUDGETS[0] || (2.0..=700.0).contains(&per_param)
}
// ANCHOR_END: grid

/// Channels per attention head.
pub const HEAD_SIZE: usize = 16;

/// Characters per training sequence (and the models' context).
pub const SEQ_LEN: usize = 64;

/// Sequences per batch.
pub const BATCH_SIZE: usize = 8;

/// Tokens per training step.
pub const TOKENS_PER_STEP: u64 = (BATCH_SIZE * SEQ_LEN) as u64;

/// The peak learning rate of a model of width 16; a wider one's is
/// smaller in proportion ([`peak_lr`]).
pub const PEAK_LR_16: f32 = 1e-2;

/// The peak learning rate at `width`: [`PEAK_LR_16`] · 16 / width, 1e-2 at
/// width 16 down to 1.25e-3 at 128. A pilot at 3e10 FLOPs tried one rate
/// for every shape (1e-3, 3e-3 or 1e-2): the narrowest models did best at
/// 1e-2 and the widest at 3e-3 or less, about as this rule has it (the
/// rule μP gives Adam's hidden layers, Yang et al. 2022, "Tensor Programs
/// V", arXiv:2203.03466). One rate for all would have favoured the sizes it
/// suits.
pub fn peak_lr(width: usize) -> f32 {
    PEAK_LR_16 * 16.0 / width as f32
}

/// The seed of every model's initial weights.
pub const MODEL_SEED: u64 = 9;

/// The seed of the order the training windows are read in.
pub const DATA_SEED: u64 = 23;

/// Held-out windows of `SEQ_LEN + 1` characters the validation loss is
/// the mean over: the first of the book corpus's last 10%.
pub const VAL_WINDOWS: usize = 256;

/// The shape of the repetition experiment: the best of [`REPEAT_BUDGET`].
pub const REPEAT_SHAPE: Shape = shape(32, 1);

/// The budget of the repetition experiment.
pub const REPEAT_BUDGET: u64 = BUDGETS[0];

/// How many times the repetition runs read their text: once (the sweep's
/// run), 4 and 16 times.
pub const REPEAT_EPOCHS: [usize; 3] = [1, 4, 16];

/// The schedule of a run of `steps` steps at `width`: warm-up for a tenth
/// of the run (at most 100 steps) to [`peak_lr`], cosine decay to a tenth
/// of it at the last step; AdamW as nanoGPT's character model (betas 0.9
/// and 0.99, weight decay 0.1, gradients clipped to norm 1).
pub fn train_config(steps: usize, width: usize) -> TrainConfig {
    TrainConfig {
        batch_size: BATCH_SIZE,
        block_size: SEQ_LEN,
        max_iters: steps,
        learning_rate: peak_lr(width),
        min_lr: peak_lr(width) / 10.0,
        warmup_iters: (steps / 10).min(100),
        lr_decay_iters: steps,
        eval_interval: 0,
        seed: DATA_SEED,
        ..TrainConfig::shakespeare_char()
    }
}

// ANCHOR: steps_for_budget
/// The steps that spend `budget` FLOPs training `config`: the budget over
/// the FLOPs of one step ([`training_flops_per_token`] times
/// [`TOKENS_PER_STEP`]), to the nearest step, at least one.
pub fn steps_for_budget(config: &GptConfig, budget: u64) -> usize {
    let per_step = training_flops_per_token(config, SEQ_LEN) * TOKENS_PER_STEP;
    ((budget + per_step / 2) / per_step).max(1) as usize
}
// ANCHOR_END: steps_for_budget

// ---------------------------------------------------------------------------
// The text.

/// The sweep's text, as characters.
pub struct SweepText {
    /// The characters of all of it.
    pub tokenizer: TextTokenizer,
    /// The training text: the book corpus's first 90%, then more of the
    /// generator's text.
    pub train: Vec<u32>,
    /// The held-out text: the first [`VAL_WINDOWS`] windows of the book
    /// corpus's last 10%.
    pub val: Vec<u32>,
    /// The order the training windows are read in: a seeded shuffle of
    /// `0..windows`, window `w` being `train[w·T .. w·T + T + 1]`.
    pub order: Vec<u32>,
}

/// The training windows the runs need, at most: the most any run reads.
pub fn windows_needed() -> usize {
    (all_runs().iter())
        .map(|&(s, b, _)| steps_for_budget(&s.config(VOCAB_SIZE), b))
        .max()
        .expect("runs")
        * BATCH_SIZE
}

/// Builds the sweep's text: enough training windows for the longest run.
fn build_text() -> Result<SweepText> {
    let corpus = listings::corpus::corpus();
    let (train_text, val_text) = train_val_split(&corpus, TRAIN_FRACTION);
    let chars_needed = windows_needed() * SEQ_LEN + 1;
    let mut train_text = train_text.to_string();
    let mut seed = CORPUS_SEED;
    while train_text.len() < chars_needed {
        seed += 1;
        train_text.push_str(&generate(seed, DEFAULT_BYTES));
    }
    let val_chars = VAL_WINDOWS * (SEQ_LEN + 1);
    let val_text = val_text
        .get(..val_chars)
        .ok_or_else(|| anyhow!("the held-out text has fewer than {val_chars} characters"))?;
    let vocab = CharVocab::from_text(&format!("{train_text}{val_text}"))?;
    let tokenizer = TextTokenizer::Char(vocab);
    if tokenizer.vocab_size() != VOCAB_SIZE {
        bail!(
            "the sweep's text has {} characters, not VOCAB_SIZE = {VOCAB_SIZE}",
            tokenizer.vocab_size()
        );
    }
    let train = tokenizer.encode(&train_text)?;
    let val = tokenizer.encode(val_text)?;
    let windows = (train.len() - 1) / SEQ_LEN;
    let mut order: Vec<u32> = (0..windows as u32).collect();
    let mut rng = seeded(DATA_SEED);
    for i in (1..order.len()).rev() {
        order.swap(i, rng.random_range(0..=i));
    }
    Ok(SweepText {
        tokenizer,
        train,
        val,
        order,
    })
}

/// The sweep's text, built once per process.
pub fn sweep_text() -> Result<&'static SweepText> {
    static TEXT: OnceLock<Result<SweepText, String>> = OnceLock::new();
    TEXT.get_or_init(|| build_text().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow!("{e}"))
}

/// The vocabulary size of the sweep's text, known without building it:
/// the corpus generator writes the same 72 characters in every seed the
/// sweep reads (building the text checks it).
pub const VOCAB_SIZE: usize = 72;

// ANCHOR: run_windows
/// The windows a run reads, in order: `count` of them. Read once each,
/// they are the first `count` of [`SweepText::order`]. Read `epochs`
/// times, they are the first `count / epochs` (rounded up), shuffled
/// afresh for each epoch.
pub fn run_windows(order: &[u32], count: usize, epochs: usize) -> Vec<u32> {
    let unique = count.div_ceil(epochs);
    let subset = &order[..unique];
    let mut windows = Vec::with_capacity(count);
    for epoch in 0..epochs {
        let mut pass = subset.to_vec();
        if epochs > 1 {
            let mut rng = seeded(DATA_SEED + 1 + epoch as u64);
            for i in (1..pass.len()).rev() {
                pass.swap(i, rng.random_range(0..=i));
            }
        }
        windows.extend(pass);
    }
    windows.truncate(count);
    windows
}
// ANCHOR_END: run_windows

// ---------------------------------------------------------------------------
// Runs.

/// One training run and what it reached.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    /// The model's shape.
    pub shape: Shape,
    /// Its parameters, all of them (the output layer is tied to the
    /// embedding).
    pub params: u64,
    /// Training FLOPs per token ([`training_flops_per_token`]).
    pub flops_per_token: u64,
    /// The budget the run was given.
    pub budget: u64,
    /// How many times it read its text.
    pub epochs: usize,
    /// Its steps.
    pub steps: usize,
    /// The tokens it trained on, repeats counted.
    pub tokens: u64,
    /// The distinct tokens among them.
    pub unique_tokens: u64,
    /// The mean batch loss of its last 50 steps (or all, if fewer).
    pub train_loss: f32,
    /// The mean loss on the held-out windows after training.
    pub val_loss: f32,
    /// The wall time of the training, in seconds (not reproducible).
    pub seconds: f64,
}

impl Run {
    /// The FLOPs it spent: tokens times FLOPs per token.
    pub fn flops(&self) -> u64 {
        self.tokens * self.flops_per_token
    }

    /// Tokens trained on per parameter.
    pub fn tokens_per_param(&self) -> f64 {
        self.tokens as f64 / self.params as f64
    }
}

/// The settings that make a run, written out for its cache key.
fn run_settings(shape: Shape, budget: u64, epochs: usize) -> String {
    let config = shape.config(VOCAB_SIZE);
    let steps = steps_for_budget(&config, budget);
    format!(
        "{config:?}\n{:?}\nbudget {budget} epochs {epochs} steps {steps}\n\
         model seed {MODEL_SEED} data seed {DATA_SEED} val windows {VAL_WINDOWS} \
         windows needed {}\n",
        train_config(steps, shape.width),
        windows_needed(),
    )
}

fn run_key(shape: Shape, budget: u64, epochs: usize) -> String {
    let name = format!("ch09-sweep-{shape}-{budget:e}-x{epochs}");
    cache::key(
        &name,
        &["scaling/sweep.rs", "scaling/ledger.rs"],
        &run_settings(shape, budget, epochs),
    )
}

// ANCHOR: train_run
/// Trains `shape` for the steps `budget` buys on windows of the sweep's
/// text read `epochs` times, and measures it on the held-out windows.
pub fn train_run(text: &SweepText, shape: Shape, budget: u64, epochs: usize) -> Result<Run> {
    let config = shape.config(text.tokenizer.vocab_size());
    let steps = steps_for_budget(&config, budget);
    let schedule = train_config(steps, shape.width);
    let windows = run_windows(&text.order, steps * BATCH_SIZE, epochs);
    let gpt = Gpt::new(config, MODEL_SEED)?;
    let mut trainer = Trainer::new(gpt, schedule.adamw(), BATCH_SIZE, SEQ_LEN)?;
    let (mut x, mut y) = (
        Array2::zeros((BATCH_SIZE, SEQ_LEN)),
        Array2::zeros((BATCH_SIZE, SEQ_LEN)),
    );
    let mut losses = Vec::with_capacity(steps);
    let start = Instant::now();
    for (step, batch) in windows.chunks_exact(BATCH_SIZE).enumerate() {
        for (b, &w) in batch.iter().enumerate() {
            let at = w as usize * SEQ_LEN;
            for t in 0..SEQ_LEN {
                x[[b, t]] = text.train[at + t];
                y[[b, t]] = text.train[at + t + 1];
            }
        }
        let stats = trainer.step(&x, &y, schedule.lr(step), schedule.grad_clip)?;
        losses.push(stats.loss);
    }
    let seconds = start.elapsed().as_secs_f64();
    let tail = &losses[losses.len().saturating_sub(50)..];
    let val = mean_window_loss(trainer.gpt(), &text.val)?;
    let tokens = (steps * BATCH_SIZE * SEQ_LEN) as u64;
    Ok(Run {
        shape,
        params: count_parameters(&config) as u64,
        flops_per_token: training_flops_per_token(&config, SEQ_LEN),
        budget,
        epochs,
        steps,
        tokens,
        unique_tokens: (steps * BATCH_SIZE).div_ceil(epochs) as u64 * SEQ_LEN as u64,
        train_loss: tail.iter().sum::<f32>() / tail.len() as f32,
        val_loss: val.loss,
        seconds,
    })
}
// ANCHOR_END: train_run

/// Writes a run as `name value` lines, every float exactly.
fn save_run(run: &Run, path: &Path) -> Result<()> {
    let text = format!(
        "width {}\ndepth {}\nparams {}\nflops_per_token {}\nbudget {}\nepochs {}\nsteps {}\n\
         tokens {}\nunique_tokens {}\ntrain_loss {}\nval_loss {}\nseconds {}\n",
        run.shape.width,
        run.shape.depth,
        run.params,
        run.flops_per_token,
        run.budget,
        run.epochs,
        run.steps,
        run.tokens,
        run.unique_tokens,
        run.train_loss,
        run.val_loss,
        run.seconds,
    );
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Reads what [`save_run`] wrote.
fn load_run(path: &Path) -> Result<Run> {
    let text = std::fs::read_to_string(path)?;
    let field = |name: &str| -> Result<&str> {
        (text.lines())
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .with_context(|| format!("{} has no {name}", path.display()))
    };
    Ok(Run {
        shape: shape(field("width")?.parse()?, field("depth")?.parse()?),
        params: field("params")?.parse()?,
        flops_per_token: field("flops_per_token")?.parse()?,
        budget: field("budget")?.parse()?,
        epochs: field("epochs")?.parse()?,
        steps: field("steps")?.parse()?,
        tokens: field("tokens")?.parse()?,
        unique_tokens: field("unique_tokens")?.parse()?,
        train_loss: field("train_loss")?.parse()?,
        val_loss: field("val_loss")?.parse()?,
        seconds: field("seconds")?.parse()?,
    })
}

/// The sweep's runs, as `(shape, budget, 1)`: budget by budget, the
/// shapes it [`trains`], in [`GRID`] order.
pub fn sweep_runs() -> Vec<(Shape, u64, usize)> {
    (BUDGETS.iter())
        .flat_map(|&b| {
            GRID.iter()
                .filter(move |&&s| trains(s, b))
                .map(move |&s| (s, b, 1))
        })
        .collect()
}

/// Every run of the experiment, as `(shape, budget, epochs)`: the sweep's
/// ([`sweep_runs`]), then the repetition runs beyond the first (whose
/// fresh-text run is the sweep's).
pub fn all_runs() -> Vec<(Shape, u64, usize)> {
    let mut runs = sweep_runs();
    runs.extend(
        (REPEAT_EPOCHS.iter())
            .filter(|&&e| e > 1)
            .map(|&e| (REPEAT_SHAPE, REPEAT_BUDGET, e)),
    );
    runs
}

/// Trains (or reads from the cache) the runs `jobs`, one after the other
/// (each uses both cores), and returns them in the order given.
pub fn runs(jobs: &[(Shape, u64, usize)]) -> Result<Vec<Run>> {
    (jobs.iter())
        .map(|&(shape, budget, epochs)| {
            cache::cached(&run_key(shape, budget, epochs), save_run, load_run, || {
                train_run(sweep_text()?, shape, budget, epochs)
            })
        })
        .collect()
}

/// The experiment's runs, trained or read.
#[derive(Clone, Debug, PartialEq)]
pub struct Runs {
    /// The sweep's, in [`sweep_runs`] order: budget by budget, in [`GRID`]
    /// order within each.
    pub sweep: Vec<Run>,
    /// The repetition runs, in [`REPEAT_EPOCHS`] order (the first is also
    /// in `sweep`).
    pub repetition: Vec<Run>,
}

// ANCHOR: trained
/// Trains every run of the experiment, or reads it from the cache.
pub fn trained() -> Result<Runs> {
    let all = runs(&all_runs())?;
    let (sweep, extra) = all.split_at(sweep_runs().len());
    let find = |epochs: usize| -> Result<Run> {
        (sweep.iter().chain(extra))
            .find(|r| r.shape == REPEAT_SHAPE && r.budget == REPEAT_BUDGET && r.epochs == epochs)
            .cloned()
            .with_context(|| format!("no repetition run of {epochs} epochs"))
    };
    Ok(Runs {
        repetition: REPEAT_EPOCHS
            .iter()
            .map(|&e| find(e))
            .collect::<Result<_>>()?,
        sweep: sweep.to_vec(),
    })
}
// ANCHOR_END: trained

/// Whether every run is in the cache (and the cache is on), so that
/// [`trained`] reads them in milliseconds instead of training them.
pub fn is_cached() -> bool {
    cache::enabled()
        && (all_runs().iter()).all(|&(s, b, e)| cache::cache_dir().join(run_key(s, b, e)).is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grid_spans_the_widths_depths_and_sizes_asked_for() {
        let widths: Vec<usize> = GRID.iter().map(|s| s.width).collect();
        let depths: std::collections::BTreeSet<usize> = GRID.iter().map(|s| s.depth).collect();
        assert_eq!(widths.iter().min(), Some(&16));
        assert_eq!(widths.iter().max(), Some(&128));
        assert_eq!(depths.into_iter().collect::<Vec<_>>(), [1, 2, 3, 4]);
        let params: Vec<usize> = GRID
            .iter()
            .map(|s| count_parameters(&s.config(VOCAB_SIZE)))
            .collect();
        assert!(params.windows(2).all(|w| w[0] < w[1]), "{params:?}");
        let span = params[params.len() - 1] as f64 / params[0] as f64;
        assert!((25.0..50.0).contains(&span), "{span}");
        assert_eq!((params[0], params[9]), (5488, 215_936));
        for s in GRID {
            let config = s.config(VOCAB_SIZE);
            assert_eq!(config.n_embd % config.n_head, 0);
            Gpt::new(config, 0).unwrap();
        }
    }

    #[test]
    fn every_run_spends_its_budget_to_within_half_a_batch() {
        for &(shape, budget, _) in &all_runs() {
            let config = shape.config(VOCAB_SIZE);
            let steps = steps_for_budget(&config, budget);
            let per_token = training_flops_per_token(&config, SEQ_LEN);
            let spent = steps as u64 * TOKENS_PER_STEP * per_token;
            let batch = TOKENS_PER_STEP * per_token;
            assert!(spent.abs_diff(budget) <= batch / 2, "{shape} at {budget}");
            // ... and runs long enough to have a schedule.
            assert!(steps >= 10, "{shape} at {budget}: {steps} steps");
        }
    }

    #[test]
    fn the_text_is_what_the_runs_need() {
        let text = sweep_text().unwrap();
        assert_eq!(text.tokenizer.vocab_size(), VOCAB_SIZE);
        assert_eq!(text.val.len(), VAL_WINDOWS * (SEQ_LEN + 1));
        assert!(text.order.len() >= windows_needed());
        // The windows are a permutation.
        let mut sorted = text.order.clone();
        sorted.sort_unstable();
        assert!(sorted.iter().enumerate().all(|(i, &w)| i as u32 == w));
        // The held-out text is the book corpus's, and none of the
        // training text's first part: the split is the book's.
        let corpus = listings::corpus::corpus();
        let (train, val) = train_val_split(&corpus, TRAIN_FRACTION);
        let decoded = text.tokenizer.decode(&text.val).unwrap();
        assert!(val.starts_with(&decoded));
        let head = text.tokenizer.decode(&text.train[..train.len()]).unwrap();
        assert_eq!(head, train);
    }

    #[test]
    fn repeated_runs_read_a_subset_again_and_fresh_runs_read_nothing_twice() {
        let order: Vec<u32> = (0..1000).rev().collect();
        let fresh = run_windows(&order, 640, 1);
        assert_eq!(fresh, order[..640]);
        for epochs in [4, 16] {
            let windows = run_windows(&order, 640, epochs);
            assert_eq!(windows.len(), 640);
            let distinct: std::collections::BTreeSet<u32> = windows.iter().copied().collect();
            assert_eq!(distinct.len(), 640 / epochs);
            assert!(distinct.iter().all(|w| order[..640 / epochs].contains(w)));
            // Each epoch is every window of the subset once, in an order of
            // its own.
            let n = 640 / epochs;
            for pass in windows.chunks(n) {
                let set: std::collections::BTreeSet<u32> = pass.iter().copied().collect();
                assert_eq!(set, distinct);
            }
            assert_ne!(windows[..n], windows[n..2 * n]);
        }
    }

    #[test]
    fn a_run_is_stored_and_read_back_exactly() {
        let run = Run {
            shape: shape(16, 2),
            params: 8768,
            flops_per_token: 56_256,
            budget: BUDGETS[0],
            epochs: 4,
            steps: 347,
            tokens: 177_664,
            unique_tokens: 44_416,
            train_loss: 1.234_567_8,
            val_loss: 1.0 / 3.0,
            seconds: 0.1 + 0.2,
        };
        let dir = std::env::temp_dir().join(format!("lab-sweep-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("run");
        save_run(&run, &path).unwrap();
        assert_eq!(load_run(&path).unwrap(), run);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
