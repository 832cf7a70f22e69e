//! Chapter 5's small experiments, and its figures drawn from real runs.
//!
//! The experiments are functions so that the chapter's snippets and the
//! figures run the same code: [`train_with`] trains the toy model with any
//! optimiser (the chapter compares SGD, momentum and AdamW with it), and
//! [`small_slice_run`] trains it on a slice of text too small to
//! generalise from. The figures: the book model's loss curve and learning
//! rate (from [`shared_book_model`], so the model is trained once), the
//! optimisers' loss curves, and the overfitting run.

use std::path::Path;

use anyhow::{Result, anyhow};
use ndarray::Array2;
use plotters::prelude::SeriesLabelPosition;

use listings::tokens::TextTokenizer;
use listings::train::batches::{Split, TRAIN_FRACTION, TokenData};
use listings::train::run::{History, RunError, TrainConfig, run};
use listings::train::step::{TrainError, Trainer, adamw_params};

use crate::book_model::{BOOK_MODEL_SEED, BookModel, book_model_config, shared_book_model};
use crate::plot::{Axes, Series, line_chart, line_chart_with_legend};
use listings::model::{ActivationGrads, Activations, Gpt, GptParams};
use listings::optim::{AdamW, AdamWConfig, Momentum, Param, Sgd};
use listings::rng::seeded;
use listings::tokens::book_tokenizer;

/// The corpus in the book's tokens, split as every run splits it: the
/// first 90% to train on, the last 10% to validate on.
pub fn corpus_split() -> Result<Split, RunError> {
    let tokenizer = TextTokenizer::Bpe(book_tokenizer().clone());
    let tokens = TokenData::from_text(&listings::corpus::corpus(), &tokenizer)?;
    Ok(tokens.split(TRAIN_FRACTION, 64)?)
}

// ANCHOR: train_with
/// Trains the book's toy model (chapter 4's, with the book's seed) for
/// `steps` steps on random batches of 8 sequences of 64 tokens of `data`,
/// letting `update` change the parameters after each backward pass.
/// Returns the loss of every step's batch, before its update.
pub fn train_with(
    data: &TokenData,
    steps: usize,
    mut update: impl FnMut(&mut [Param]),
) -> Result<Vec<f32>, RunError> {
    let (b, t) = (8, 64);
    let config = book_model_config();
    let mut gpt = Gpt::new(config, BOOK_MODEL_SEED).map_err(TrainError::from)?;
    let mut acts = Activations::new(&config, b, t);
    let mut dacts = ActivationGrads::new(&config, b, t);
    let mut grads = GptParams::zeros(&config);
    let (mut x, mut y) = (Array2::zeros((b, t)), Array2::zeros((b, t))); // (B, T)
    let mut rng = seeded(1);
    let mut losses = Vec::with_capacity(steps);
    for _ in 0..steps {
        data.get_batch(&mut rng, &mut x, &mut y)?;
        let loss = gpt
            .forward_with(&mut acts, &x, Some(&y))
            .map_err(TrainError::from)?;
        losses.push(loss.expect("targets were given"));
        grads.fill_zero();
        gpt.backward(&mut grads, &mut dacts, &acts);
        let mut params: Vec<Param> = adamw_params(gpt.params_mut(), &grads).collect();
        update(&mut params);
    }
    Ok(losses)
}
// ANCHOR_END: train_with

/// The optimisers the chapter compares, at the learning rates it uses.
pub fn optimizer_losses(data: &TokenData, steps: usize) -> Result<[(&'static str, Vec<f32>); 3]> {
    let mut sgd = Sgd { lr: SGD_LR };
    let mut momentum = Momentum::new(MOMENTUM_LR, 0.9);
    let mut adamw = AdamW::new(AdamWConfig {
        lr: ADAMW_LR,
        ..AdamWConfig::default()
    });
    Ok([
        ("SGD", train_with(data, steps, |p| sgd.step(p))?),
        ("momentum", train_with(data, steps, |p| momentum.step(p))?),
        ("AdamW", train_with(data, steps, |p| adamw.step(p))?),
    ])
}

/// SGD's learning rate in the comparison: the best of 0.1, 0.3, 1 and 3
/// by the mean loss of steps 180 to 199 (3 diverged).
pub const SGD_LR: f32 = 0.3;
/// Momentum's learning rate in the comparison (with β = 0.9): the best of
/// 0.01, 0.03, 0.1 and 0.3, measured the same way.
pub const MOMENTUM_LR: f32 = 0.1;
/// AdamW's learning rate in the comparison: the best of 0.001, 0.003 and
/// 0.01, measured the same way.
pub const ADAMW_LR: f32 = 3e-3;

// ANCHOR: small_slice_run
/// Trains the toy model on the first `tokens` tokens of the corpus's
/// training split only (`tokens` at most its length), evaluating every 25
/// steps (on 25 batches) on that slice and on the validation split: a
/// model with far more parameters than its training data has tokens.
pub fn small_slice_run(tokens: usize, max_iters: usize) -> Result<History, RunError> {
    let corpus = corpus_split()?;
    let data = Split {
        train: TokenData::new(corpus.train.ids()[..tokens].to_vec()),
        val: corpus.val,
    };
    let config = TrainConfig {
        batch_size: 8,
        block_size: 64,
        max_iters,
        learning_rate: 3e-3,
        min_lr: 3e-4,
        warmup_iters: 20,
        lr_decay_iters: max_iters,
        eval_interval: 25,
        eval_iters: 25,
        ..TrainConfig::shakespeare_char()
    };
    let gpt = Gpt::new(book_model_config(), BOOK_MODEL_SEED).map_err(TrainError::from)?;
    let mut trainer = Trainer::new(gpt, config.adamw(), 8, 64)?;
    run(&mut trainer, &data, &config, |_, _| Ok(()))
}
// ANCHOR_END: small_slice_run

/// The mean of each window of `n` consecutive values, placed at the
/// window's last step: a smoothed curve.
fn moving_average(values: &[f32], n: usize) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    let mut sum = 0.0_f64;
    for (i, &v) in values.iter().enumerate() {
        sum += f64::from(v);
        if i >= n {
            sum -= f64::from(values[i - n]);
        }
        if i + 1 >= n {
            out.push((i as f64, sum / n as f64));
        }
    }
    out
}

/// The evaluations of a run as two series, train and validation.
fn eval_series(history: &History) -> [Vec<(f64, f64)>; 2] {
    let point = |step: usize, loss: f32| (step as f64, f64::from(loss));
    [
        history.evals.iter().map(|e| point(e.0, e.1)).collect(),
        history.evals.iter().map(|e| point(e.0, e.2)).collect(),
    ]
}

fn book() -> Result<&'static BookModel> {
    shared_book_model().map_err(|e| anyhow!("training the book model: {e}"))
}

/// Figure: the book model's loss during its run: the batch loss of every
/// step averaged over 50 steps, and the evaluations on both splits.
pub fn loss_curve(path: &Path) -> Result<()> {
    let history = &book()?.history;
    let [train, val] = eval_series(history);
    let series = [
        Series {
            name: "batch loss (mean of the last 50 steps)",
            points: moving_average(&history.losses, 50),
        },
        Series {
            name: "training split (evaluation)",
            points: train,
        },
        Series {
            name: "validation split (evaluation)",
            points: val,
        },
    ];
    let axes = Axes {
        title: "Training the book's toy GPT on its corpus",
        x_label: "step",
        y_label: "loss (cross-entropy, nats per token)",
        log_y: true,
        log_x: false,
    };
    line_chart(path, &axes, &series)
}

/// Figure: the learning rate of every step of the book model's run.
pub fn lr_schedule(path: &Path) -> Result<()> {
    let model = book()?;
    // In thousandths, so that the axis labels need few decimals.
    let points = (model.history.lrs.iter().enumerate())
        .map(|(i, &lr)| (i as f64, f64::from(lr) * 1e3))
        .collect();
    let series = [Series { name: "", points }];
    let axes = Axes {
        title: "Warm-up, then cosine decay (the book model's run)",
        x_label: "step",
        y_label: "learning rate (thousandths)",
        log_y: false,
        log_x: false,
    };
    line_chart(path, &axes, &series)
}

/// Figure: the toy model's loss over 200 steps with SGD, momentum and
/// AdamW, each averaged over 20 steps.
pub fn optimizers(path: &Path) -> Result<()> {
    let split = corpus_split()?;
    let runs = optimizer_losses(&split.train, 200)?;
    let series: Vec<Series> = runs
        .iter()
        .map(|(name, losses)| Series {
            name,
            points: moving_average(losses, 20),
        })
        .collect();
    let axes = Axes {
        title: "One model, one data order, three optimisers",
        x_label: "step",
        y_label: "batch loss (mean of the last 20 steps)",
        log_y: false,
        log_x: false,
    };
    line_chart(path, &axes, &series)
}

/// Figure: training on 2,000 tokens: the loss on them falls towards 0
/// while the loss on unseen text turns and rises.
pub fn overfitting(path: &Path) -> Result<()> {
    let history = small_slice_run(2000, 300)?;
    let [train, val] = eval_series(&history);
    let series = [
        Series {
            name: "the 2,000 training tokens",
            points: train,
        },
        Series {
            name: "the validation split (unseen text)",
            points: val,
        },
    ];
    let axes = Axes {
        title: "Too little data: the toy model memorises 2,000 tokens",
        x_label: "step",
        y_label: "loss (cross-entropy, nats per token)",
        log_y: false,
        log_x: false,
    };
    line_chart_with_legend(path, &axes, &series, SeriesLabelPosition::MiddleRight)
}
