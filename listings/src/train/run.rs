//! The training loop: batches, the learning-rate schedule, periodic
//! evaluation, as nanoGPT's `train.py` runs them.
//!
//! [`TrainConfig`] holds nanoGPT's hyper-parameters under nanoGPT's names;
//! [`run`] takes a [`Trainer`] from where it is to `max_iters`, reporting
//! what happens through a callback (the CLI prints it; the book's chapters
//! collect it), and returns the [`History`] of losses and learning rates.

use ndarray::Array2;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::batches::{DataError, Split, TokenData};
use super::step::{TrainError, Trainer};
use crate::model::GptConfig;
use crate::optim::{AdamWConfig, cosine_lr};
use crate::rng::{ChaCha8Rng, seeded};

// Kept with a checkpoint (its `hparams`) under these field names.
#[derive(Serialize, Deserialize)]
// ANCHOR: train_config
/// The hyper-parameters of a training run, named as in nanoGPT.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainConfig {
    /// Sequences per batch (`B`).
    pub batch_size: usize,
    /// Tokens per sequence (`T`), at most the model's `block_size`.
    pub block_size: usize,
    /// Updates to make in all.
    pub max_iters: usize,
    /// The peak learning rate, reached at the end of the warm-up.
    pub learning_rate: f32,
    /// The learning rate at the end of the cosine decay, and after it.
    pub min_lr: f32,
    /// Steps of linear warm-up from 0 to `learning_rate`.
    pub warmup_iters: usize,
    /// The step at which the cosine decay reaches `min_lr`.
    pub lr_decay_iters: usize,
    /// AdamW's decoupled weight decay (on 2-D tensors only).
    pub weight_decay: f32,
    /// AdamW's decay of the running mean of gradients.
    pub beta1: f32,
    /// AdamW's decay of the running mean of squared gradients.
    pub beta2: f32,
    /// The largest global gradient norm allowed; 0 turns clipping off.
    pub grad_clip: f32,
    /// Evaluate on both splits every this many steps (and at the end).
    pub eval_interval: usize,
    /// Batches averaged for each evaluation.
    pub eval_iters: usize,
    /// Report the training loss every this many steps.
    pub log_interval: usize,
    /// Seeds the batches (the model's weights have their own seed).
    pub seed: u64,
}
// ANCHOR_END: train_config

impl TrainConfig {
    /// The AdamW settings this run implies: its peak learning rate, betas
    /// and weight decay (the schedule then sets the rate of each step), and
    /// AdamW's default `eps`.
    pub fn adamw(&self) -> AdamWConfig {
        AdamWConfig {
            lr: self.learning_rate,
            beta1: self.beta1,
            beta2: self.beta2,
            weight_decay: self.weight_decay,
            ..AdamWConfig::default()
        }
    }

    /// nanoGPT's `config/train_shakespeare_char.py` (without dropout, which
    /// the book's model does not have).
    pub fn shakespeare_char() -> Self {
        TrainConfig {
            batch_size: 64,
            block_size: 256,
            max_iters: 5000,
            learning_rate: 1e-3,
            min_lr: 1e-4,
            warmup_iters: 100,
            lr_decay_iters: 5000,
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.99,
            grad_clip: 1.0,
            eval_interval: 250,
            eval_iters: 200,
            log_interval: 10,
            seed: 1337,
        }
    }

    /// nanoGPT's "baby GPT" run on a laptop CPU (its README's settings:
    /// batch 12, block 64, 2000 iterations, warm-up 100, decay to 1e-4 at
    /// 2000; evaluation every 250 steps on 20 batches).
    pub fn baby() -> Self {
        TrainConfig {
            batch_size: 12,
            block_size: 64,
            max_iters: 2000,
            lr_decay_iters: 2000,
            eval_iters: 20,
            ..Self::shakespeare_char()
        }
    }

    /// The learning rate at step `it`: warm-up, cosine decay, floor.
    pub fn lr(&self, it: usize) -> f32 {
        cosine_lr(
            it,
            self.learning_rate,
            self.min_lr,
            self.warmup_iters,
            self.lr_decay_iters,
        )
    }

    /// Checks the settings against each other and against the model, so a
    /// run with inconsistent settings stops before it starts.
    pub fn validate(&self, model: &GptConfig) -> Result<(), RunError> {
        let bad = |what: String| Err(RunError::Config(what));
        if self.batch_size == 0 || self.block_size == 0 {
            return bad(format!(
                "batch_size {} and block_size {} must both be at least 1",
                self.batch_size, self.block_size
            ));
        }
        if self.block_size > model.block_size {
            return bad(format!(
                "block_size {} is longer than the model's block_size {}",
                self.block_size, model.block_size
            ));
        }
        let rates = [
            self.learning_rate,
            self.min_lr,
            self.weight_decay,
            self.grad_clip,
        ];
        if rates.iter().any(|r| !(r.is_finite() && *r >= 0.0)) {
            return bad(format!(
                "learning_rate {}, min_lr {}, weight_decay {} and grad_clip {} must be finite and >= 0",
                self.learning_rate, self.min_lr, self.weight_decay, self.grad_clip
            ));
        }
        if self.min_lr > self.learning_rate {
            return bad(format!(
                "min_lr {} is above learning_rate {}: the schedule would rise as it decays",
                self.min_lr, self.learning_rate
            ));
        }
        if self.warmup_iters > self.lr_decay_iters {
            return bad(format!(
                "warmup_iters {} is after lr_decay_iters {}",
                self.warmup_iters, self.lr_decay_iters
            ));
        }
        for (name, beta) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&beta) {
                return bad(format!("{name} {beta} must be in [0, 1)"));
            }
        }
        if self.eval_interval > 0 && self.eval_iters == 0 {
            return bad("eval_iters must be at least 1 when eval_interval is set".into());
        }
        Ok(())
    }
}

/// Why a run could not start or did not finish.
#[derive(Debug, Error)]
pub enum RunError {
    /// The hyper-parameters do not fit together or do not fit the model.
    #[error("inconsistent settings: {0}")]
    Config(String),
    /// The data is too short for the settings.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A step failed, for instance because training diverged.
    #[error(transparent)]
    Train(#[from] TrainError),
    /// The caller's event handler stopped the run (for example, a
    /// checkpoint could not be written).
    #[error("{0}")]
    Stopped(Box<dyn std::error::Error + Send + Sync>),
}

/// What an event handler returns: `Err` stops the run with that error.
pub type HandlerResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// What happened during a run, as it happens.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Event {
    /// An evaluation at `step` (updates made so far) on both splits.
    Eval {
        /// Updates made before the evaluation.
        step: usize,
        /// The mean loss over `eval_iters` training batches.
        train_loss: f32,
        /// The mean loss over `eval_iters` validation batches.
        val_loss: f32,
    },
    /// A training step.
    Iter {
        /// The step's number, from 0.
        iter: usize,
        /// The batch's loss before the update.
        loss: f32,
        /// The learning rate used.
        lr: f32,
        /// The step's wall time in milliseconds.
        ms: f64,
    },
}

/// The record of a run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    /// Every evaluation: (step, train loss, val loss).
    pub evals: Vec<(usize, f32, f32)>,
    /// The loss of every training step, in order.
    pub losses: Vec<f32>,
    /// The learning rate of every training step.
    pub lrs: Vec<f32>,
    /// The total wall time of the training steps, in milliseconds.
    pub step_ms: f64,
}

/// The training and validation tokens of a text: the first 90% and the
/// last 10%, each checked to hold at least one window of `block_size + 1`.
pub fn split(data: &TokenData, block_size: usize) -> Result<Split, DataError> {
    data.split(super::batches::TRAIN_FRACTION, block_size)
}

/// Reusable batch arrays and the batch generator.
struct Batches {
    rng: ChaCha8Rng,
    x: Array2<u32>,
    y: Array2<u32>,
}

// ANCHOR: estimate_loss
/// The mean loss over `eval_iters` random batches of one split, forward
/// passes only, as nanoGPT's `estimate_loss`.
fn estimate_loss(
    trainer: &mut Trainer,
    data: &TokenData,
    b: &mut Batches,
    eval_iters: usize,
) -> Result<f32, RunError> {
    let mut sum = 0.0;
    for _ in 0..eval_iters {
        data.get_batch(&mut b.rng, &mut b.x, &mut b.y)?;
        sum += trainer.evaluate(&b.x, &b.y)?;
    }
    Ok(sum / eval_iters as f32)
}
// ANCHOR_END: estimate_loss

// ANCHOR: run
/// Trains from the trainer's current step up to `config.max_iters`
/// updates: for each step, a seeded random batch, the scheduled learning
/// rate, one [`Trainer::step`]; every `eval_interval` steps and at the end,
/// the mean loss on both splits. `on_event` sees every step and evaluation,
/// and may stop the run by returning an error.
pub fn run(
    trainer: &mut Trainer,
    data: &Split,
    config: &TrainConfig,
    mut on_event: impl FnMut(&Event, &Trainer) -> HandlerResult,
) -> Result<History, RunError> {
    config.validate(trainer.gpt().config())?;
    data.train.check_window(config.block_size, "training")?;
    data.val.check_window(config.block_size, "validation")?;
    let shape = (config.batch_size, config.block_size);
    let start = trainer.steps_done() as usize;
    // A run resumed at step s draws from a stream of its own, seeded by the
    // seed and s, so a resumed run is as reproducible as a fresh one.
    let mut b = Batches {
        rng: seeded(config.seed ^ start as u64),
        x: Array2::zeros(shape),
        y: Array2::zeros(shape),
    };
    let mut history = History::default();
    for iter in start..=config.max_iters {
        let evaluate = config.eval_interval > 0
            && (iter % config.eval_interval == 0 || iter == config.max_iters);
        if evaluate {
            let train_loss = estimate_loss(trainer, &data.train, &mut b, config.eval_iters)?;
            let val_loss = estimate_loss(trainer, &data.val, &mut b, config.eval_iters)?;
            history.evals.push((iter, train_loss, val_loss));
            on_event(
                &Event::Eval {
                    step: iter,
                    train_loss,
                    val_loss,
                },
                trainer,
            )
            .map_err(RunError::Stopped)?;
        }
        if iter == config.max_iters {
            break;
        }
        data.train.get_batch(&mut b.rng, &mut b.x, &mut b.y)?;
        let lr = config.lr(iter);
        let stats = trainer.step(&b.x, &b.y, lr, config.grad_clip)?;
        let t = stats.times;
        let ms = (t.forward + t.backward + t.optimizer).as_secs_f64() * 1e3;
        history.losses.push(stats.loss);
        history.lrs.push(lr);
        history.step_ms += ms;
        on_event(
            &Event::Iter {
                iter,
                loss: stats.loss,
                lr,
                ms,
            },
            trainer,
        )
        .map_err(RunError::Stopped)?;
    }
    Ok(history)
}
// ANCHOR_END: run

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Gpt;

    fn tiny() -> (GptConfig, TrainConfig, Split) {
        let model = GptConfig {
            vocab_size: 7,
            block_size: 8,
            n_layer: 1,
            n_head: 2,
            n_embd: 8,
        };
        let train = TrainConfig {
            batch_size: 4,
            block_size: 8,
            max_iters: 60,
            warmup_iters: 5,
            lr_decay_iters: 60,
            learning_rate: 1e-2,
            eval_interval: 20,
            eval_iters: 3,
            ..TrainConfig::baby()
        };
        // A repeating pattern a model can learn: 0 1 2 3 4 5 6 0 1 2 ...
        let ids: Vec<u32> = (0..2000).map(|i| (i % 7) as u32).collect();
        let data = split(&TokenData::new(ids), 8).unwrap();
        (model, train, data)
    }

    #[test]
    fn a_run_learns_evaluates_on_schedule_and_repeats_exactly() {
        let (model, cfg, data) = tiny();
        let go = || {
            let mut t = Trainer::new(
                Gpt::new(model, 1).unwrap(),
                cfg.adamw(),
                cfg.batch_size,
                cfg.block_size,
            )
            .unwrap();
            let mut events = 0;
            let h = run(&mut t, &data, &cfg, |_, _| {
                events += 1;
                Ok(())
            })
            .unwrap();
            (h, events)
        };
        let (h, events) = go();
        assert_eq!(
            h.evals.iter().map(|e| e.0).collect::<Vec<_>>(),
            [0, 20, 40, 60]
        );
        assert_eq!((h.losses.len(), h.lrs.len(), events), (60, 60, 64));
        let (first, last) = (h.evals[0].2, h.evals[3].2);
        assert!(last < first / 3.0, "val loss {first} -> {last}");
        assert_eq!(go().0.losses, h.losses);
    }

    #[test]
    fn inconsistent_settings_are_refused_before_training() {
        let (model, cfg, data) = tiny();
        let mut t = Trainer::new(Gpt::new(model, 1).unwrap(), cfg.adamw(), 4, 8).unwrap();
        let cases = [
            (
                TrainConfig { min_lr: 1.0, ..cfg },
                "min_lr 1 is above learning_rate",
            ),
            (
                TrainConfig {
                    warmup_iters: 100,
                    ..cfg
                },
                "warmup_iters 100 is after lr_decay_iters 60",
            ),
            (
                TrainConfig {
                    block_size: 9,
                    ..cfg
                },
                "block_size 9 is longer than the model's block_size 8",
            ),
            (
                TrainConfig { beta2: 1.0, ..cfg },
                "beta2 1 must be in [0, 1)",
            ),
            (
                TrainConfig {
                    eval_iters: 0,
                    ..cfg
                },
                "eval_iters must be at least 1",
            ),
        ];
        for (bad, want) in cases {
            let err = run(&mut t, &data, &bad, |_, _| Ok(()))
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{err}");
        }
        assert_eq!(t.steps_done(), 0);
    }

    #[test]
    fn a_diverging_run_stops_with_the_step_and_advice() {
        let (model, cfg, data) = tiny();
        let mut t = Trainer::new(Gpt::new(model, 1).unwrap(), cfg.adamw(), 4, 8).unwrap();
        let huge = TrainConfig {
            learning_rate: 1e30,
            min_lr: 1e30,
            grad_clip: 0.0,
            warmup_iters: 0,
            ..cfg
        };
        let err = run(&mut t, &data, &huge, |_, _| Ok(()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("training has diverged") && err.contains("lower learning rate"),
            "{err}"
        );
    }
}
