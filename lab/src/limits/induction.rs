//! Chapter 8's experiment on in-context learning: how a model copies a
//! pattern it has never seen, read off the attention weights.
//!
//! The task has nothing to learn from the data itself: each sequence is a
//! run of tokens drawn at random from [`VOCAB`], of a random length (its
//! *period*, [`MIN_PERIOD`] to [`MAX_PERIOD`]), repeated until the
//! sequence is full. The first pass through the run cannot be predicted
//! better than chance (loss `ln VOCAB`); the repeats can, by a model that
//! finds where the current token appeared before and copies the token that
//! followed it. The period changes from sequence to sequence, so a head
//! that looks a fixed distance back cannot do it.
//! That is what an *induction head* does, and it needs two layers: one
//! head moves "the token before me" into each position, and a head of the
//! next layer matches the current token against it.
//!
//! [`induction_run`] trains an attention-only model ([`Setup`]: 1 or 2
//! layers, RoPE or learned positions) on fresh random sequences, records
//! the loss on the first pass and on the repeats at every step, and scores
//! every head on a held-out batch: its *prefix-matching score* (the mean
//! weight from a position of a repeat to the position just after the
//! current token's previous occurrence) and its *previous-token score*
//! (the mean weight on the position just before).
//!
//! The models have rotary positions ([`Positions::Rope`]) because with
//! GPT-2's learned positions the 2-layer model did not find the copying
//! rule in these steps: a head that looks at the previous token must then
//! learn "one position back" separately for every position, where RoPE
//! makes it one rotation. [`SETUPS`] includes that model, so the chapter
//! shows it.
//!
//! The runs are kept on disk ([`crate::cache`]) as JSON, keyed by this
//! file and the settings.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use listings::model::{Arch, Gpt, GptConfig, Positions};
use listings::optim::AdamWConfig;
use listings::rng::{ChaCha8Rng, RngExt, seeded};
use listings::train::step::Trainer;
use ndarray::{Array2, Axis, s};
use serde_json::{Value, json};

use crate::cache;

/// Tokens in the vocabulary of the random sequences.
pub const VOCAB: usize = 128;

/// The shortest run of random tokens a sequence repeats.
pub const MIN_PERIOD: usize = 8;

/// The longest run of random tokens a sequence repeats.
pub const MAX_PERIOD: usize = 32;

/// Tokens the model reads.
pub const SEQ: usize = 64;

/// Sequences per training step.
pub const BATCH: usize = 32;

/// Training steps of each run.
pub const STEPS: usize = 1500;

/// The learning rate after a 100-step warm-up (constant after it, so the
/// moment the loss falls is the model's doing, not the schedule's).
pub const LEARNING_RATE: f32 = 1e-3;

/// Steps of linear warm-up.
pub const WARMUP: usize = 100;

/// The seed of the models' initial weights.
pub const INDUCTION_SEED: u64 = 31;

/// The seed of the held-out sequences the heads are scored on.
pub const HELD_OUT_SEED: u64 = 9_999;

// ANCHOR: repeated_batch
/// A batch of sequences for the copying task.
pub struct Repeats {
    /// The tokens the model reads, `(B, SEQ)`.
    pub inputs: Array2<u32>,
    /// The tokens it should predict: the inputs shifted by one, `(B, SEQ)`.
    pub targets: Array2<u32>,
    /// Each sequence's period: position `i` of sequence `b` holds the same
    /// token as position `i - periods[b]`.
    pub periods: Vec<usize>,
}

/// `batch` sequences for the copying task, drawn with `rng`: each a run of
/// random tokens of a random period, repeated to fill the sequence.
pub fn repeated_batch(rng: &mut ChaCha8Rng, batch: usize) -> Repeats {
    let mut tokens = Array2::<u32>::zeros((batch, SEQ + 1));
    let mut periods = Vec::with_capacity(batch);
    for mut row in tokens.rows_mut() {
        let period = rng.random_range(MIN_PERIOD..=MAX_PERIOD);
        for i in 0..=SEQ {
            row[i] = if i < period {
                rng.random_range(0..VOCAB as u32)
            } else {
                row[i - period]
            };
        }
        periods.push(period);
    }
    Repeats {
        inputs: tokens.slice(s![.., ..SEQ]).to_owned(),
        targets: tokens.slice(s![.., 1..]).to_owned(),
        periods,
    }
}
// ANCHOR_END: repeated_batch

/// One model of the experiment: attention only (no MLPs, so whatever it
/// learns is done by attention heads), with `n_layer` layers and
/// `positions`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setup {
    /// Layers.
    pub n_layer: usize,
    /// How the model knows where each token is.
    pub positions: Positions,
}

impl Setup {
    /// The model's blocks: attention only, with the setup's positions.
    pub fn arch(self) -> Arch {
        Arch {
            positions: self.positions,
            mlp: false,
            ..Arch::gpt2()
        }
    }

    /// A short name, for tables and legends: `2 layers, rope`.
    pub fn name(self) -> String {
        let s = if self.n_layer == 1 { "" } else { "s" };
        format!("{} layer{s}, {}", self.n_layer, self.positions)
    }
}

/// The chapter's three models: 2 layers and 1 with RoPE, and 2 layers
/// with learned positions.
pub const SETUPS: [Setup; 3] = [
    Setup {
        n_layer: 2,
        positions: Positions::Rope,
    },
    Setup {
        n_layer: 1,
        positions: Positions::Rope,
    },
    Setup {
        n_layer: 2,
        positions: Positions::Learned,
    },
];

/// The model of `n_layer` layers: 4 heads of 16 channels, 64 wide, a
/// context of [`SEQ`] tokens.
pub fn induction_config(n_layer: usize) -> GptConfig {
    GptConfig {
        vocab_size: VOCAB,
        block_size: SEQ,
        n_layer,
        n_head: 4,
        n_embd: 64,
    }
}

/// One head's scores on the held-out batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HeadScore {
    /// The layer, from 0.
    pub layer: usize,
    /// The head within the layer, from 0.
    pub head: usize,
    /// Mean weight from a position `i` of a repeat to position
    /// `i - period + 1`: the token after the current token's previous
    /// occurrence.
    pub prefix_matching: f32,
    /// Mean weight from every position `i ≥ 1` to position `i - 1`.
    pub previous_token: f32,
}

/// What one training run measured.
#[derive(Clone, Debug, PartialEq)]
pub struct InductionRun {
    /// The model.
    pub setup: Setup,
    /// At every step, the batch's mean loss on the first pass's targets
    /// (positions `0..period`) and on the repeats' (`period..SEQ`), before
    /// the step's update.
    pub losses: Vec<(f32, f32)>,
    /// Every head's scores after training.
    pub heads: Vec<HeadScore>,
    /// The held-out batch's mean loss on the first pass and on the repeats
    /// after training.
    pub held_out: (f32, f32),
    /// The attention weights of the head with the highest prefix-matching
    /// score on the first held-out sequence, `(SEQ, SEQ)`, row-major.
    pub pattern: Vec<f32>,
    /// The tokens of that sequence.
    pub pattern_tokens: Vec<u32>,
    /// Its period.
    pub pattern_period: usize,
    /// Wall time of the training run, in seconds (when it was trained, not
    /// read from the cache).
    pub seconds: f32,
}

impl InductionRun {
    /// The head with the highest prefix-matching score.
    pub fn best_head(&self) -> HeadScore {
        *self
            .heads
            .iter()
            .max_by(|a, b| a.prefix_matching.total_cmp(&b.prefix_matching))
            .expect("a model has at least one head")
    }

    /// The first step from which the repeats' loss, averaged over 20
    /// steps, stays below half the first pass's: the moment copying works.
    pub fn transition_step(&self) -> Option<usize> {
        let smooth: Vec<(f32, f32)> = (0..self.losses.len().saturating_sub(19))
            .map(|i| {
                let w = &self.losses[i..i + 20];
                let n = w.len() as f32;
                (
                    w.iter().map(|l| l.0).sum::<f32>() / n,
                    w.iter().map(|l| l.1).sum::<f32>() / n,
                )
            })
            .collect();
        let below = |&(first, second): &(f32, f32)| second < 0.5 * first;
        let last_above = smooth.iter().rposition(|l| !below(l))?;
        (last_above + 1 < smooth.len()).then_some(last_above + 1)
    }
}

/// Mean of `losses` `(B, SEQ)` over the first pass's positions and over
/// the repeats'.
fn pass_means(losses: &Array2<f32>, periods: &[usize]) -> (f32, f32) {
    let (mut first, mut repeats) = ((0.0, 0), (0.0, 0));
    for (row, &period) in losses.rows().into_iter().zip(periods) {
        for (i, &loss) in row.iter().enumerate() {
            let sum = if i < period { &mut first } else { &mut repeats };
            sum.0 += loss;
            sum.1 += 1;
        }
    }
    (first.0 / first.1 as f32, repeats.0 / repeats.1 as f32)
}

// ANCHOR: head_scores
/// Every head's prefix-matching and previous-token scores, from the
/// attention weights `att` `(B, nh, SEQ, SEQ)` of each layer, on sequences
/// of the given `periods`.
pub fn head_scores(layers: &[&ndarray::Array4<f32>], periods: &[usize]) -> Vec<HeadScore> {
    let mut scores = Vec::new();
    for (layer, att) in layers.iter().enumerate() {
        let (_, nh, t, _) = att.dim();
        for head in 0..nh {
            let (mut prefix, mut prefix_n, mut previous, mut previous_n) = (0.0, 0, 0.0, 0);
            for (seq, &period) in periods.iter().enumerate() {
                let w = att.slice(s![seq, head, .., ..]);
                prefix += (period..t).map(|i| w[[i, i - period + 1]]).sum::<f32>();
                prefix_n += t - period;
                previous += (1..t).map(|i| w[[i, i - 1]]).sum::<f32>();
                previous_n += t - 1;
            }
            scores.push(HeadScore {
                layer,
                head,
                prefix_matching: prefix / prefix_n as f32,
                previous_token: previous / previous_n as f32,
            });
        }
    }
    scores
}
// ANCHOR_END: head_scores

/// Trains the model of `setup` on the copying task for `steps` steps and
/// measures it ([`InductionRun`]).
pub fn train_induction(setup: Setup, steps: usize) -> Result<InductionRun> {
    let config = induction_config(setup.n_layer);
    let gpt = Gpt::with_arch(config, setup.arch(), INDUCTION_SEED)?;
    let adamw = AdamWConfig {
        lr: LEARNING_RATE,
        weight_decay: 0.0,
        ..AdamWConfig::default()
    };
    let mut trainer = Trainer::new(gpt, adamw, BATCH, SEQ)?;
    let mut rng = seeded(INDUCTION_SEED);
    let start = Instant::now();
    let mut losses = Vec::with_capacity(steps);
    for step in 0..steps {
        let batch = repeated_batch(&mut rng, BATCH);
        let lr = LEARNING_RATE * ((step + 1) as f32 / WARMUP as f32).min(1.0);
        trainer.step(&batch.inputs, &batch.targets, lr, 1.0)?;
        losses.push(pass_means(&trainer.activations().losses, &batch.periods));
    }
    let seconds = start.elapsed().as_secs_f32();
    let held_out = repeated_batch(&mut seeded(HELD_OUT_SEED), BATCH);
    trainer.evaluate(&held_out.inputs, &held_out.targets)?;
    let acts = trainer.activations();
    let layers: Vec<_> = acts.layers.iter().map(|l| &l.att).collect();
    let heads = head_scores(&layers, &held_out.periods);
    let best = (heads.iter())
        .max_by(|a, b| a.prefix_matching.total_cmp(&b.prefix_matching))
        .context("the model has no heads")?;
    let pattern = (acts.layers[best.layer].att)
        .index_axis(Axis(0), 0)
        .index_axis(Axis(0), best.head)
        .iter()
        .copied()
        .collect();
    Ok(InductionRun {
        setup,
        losses,
        heads,
        held_out: pass_means(&acts.losses, &held_out.periods),
        pattern,
        pattern_tokens: held_out.inputs.row(0).to_vec(),
        pattern_period: held_out.periods[0],
        seconds,
    })
}

fn run_to_json(run: &InductionRun) -> Value {
    json!({
        "n_layer": run.setup.n_layer,
        "positions": run.setup.positions.name(),
        "losses": run.losses.iter().map(|l| [l.0, l.1]).collect::<Vec<_>>(),
        "heads": run.heads.iter().map(|h| json!([h.layer, h.head, h.prefix_matching, h.previous_token])).collect::<Vec<_>>(),
        "held_out": [run.held_out.0, run.held_out.1],
        "pattern": run.pattern,
        "pattern_tokens": run.pattern_tokens,
        "pattern_period": run.pattern_period,
        "seconds": run.seconds,
    })
}

fn run_from_json(v: &Value) -> Result<InductionRun> {
    let f = |v: &Value| -> Result<f32> { Ok(v.as_f64().context("not a number")? as f32) };
    let u = |v: &Value| -> Result<usize> { Ok(v.as_u64().context("not an integer")? as usize) };
    let arr = |v: &Value, name: &str| -> Result<Vec<Value>> {
        Ok(v.get(name)
            .and_then(Value::as_array)
            .with_context(|| format!("no array {name}"))?
            .clone())
    };
    let losses = arr(v, "losses")?
        .iter()
        .map(|l| Ok((f(&l[0])?, f(&l[1])?)))
        .collect::<Result<_>>()?;
    let heads = arr(v, "heads")?
        .iter()
        .map(|h| {
            Ok(HeadScore {
                layer: u(&h[0])?,
                head: u(&h[1])?,
                prefix_matching: f(&h[2])?,
                previous_token: f(&h[3])?,
            })
        })
        .collect::<Result<_>>()?;
    let held = &v["held_out"];
    Ok(InductionRun {
        setup: Setup {
            n_layer: u(&v["n_layer"])?,
            positions: (Positions::ALL.into_iter())
                .find(|p| Some(p.name()) == v["positions"].as_str())
                .context("unknown positions")?,
        },
        losses,
        heads,
        held_out: (f(&held[0])?, f(&held[1])?),
        pattern: arr(v, "pattern")?.iter().map(f).collect::<Result<_>>()?,
        pattern_tokens: (arr(v, "pattern_tokens")?.iter())
            .map(|t| Ok(u(t)? as u32))
            .collect::<Result<_>>()?,
        pattern_period: u(&v["pattern_period"])?,
        seconds: f(&v["seconds"])?,
    })
}

/// [`train_induction`] for [`STEPS`] steps, trained once and kept on disk.
pub fn induction_run(setup: Setup) -> Result<InductionRun> {
    if setup.n_layer == 0 {
        bail!("the copying task needs a model of at least one layer");
    }
    let settings = format!(
        "{:?}\n{:?}\nsteps {STEPS} batch {BATCH} lr {LEARNING_RATE} warmup {WARMUP} seed {INDUCTION_SEED}",
        induction_config(setup.n_layer),
        setup.arch()
    );
    let name = format!("ch08-induction-{}-{}", setup.n_layer, setup.positions);
    let key = cache::key(&name, &["limits/induction.rs"], &settings);
    cache::cached(
        &key,
        |run, path| Ok(std::fs::write(path, run_to_json(run).to_string())?),
        |path| run_from_json(&serde_json::from_str(&std::fs::read_to_string(path)?)?),
        || train_induction(setup, STEPS),
    )
}

/// [`induction_run`] for every setup of [`SETUPS`].
pub fn induction_runs() -> Result<Vec<InductionRun>> {
    SETUPS.into_iter().map(induction_run).collect()
}

/// A running mean over the last `n` values (from the `n`-th on).
fn running_mean(values: &[f32], n: usize) -> Vec<(f64, f64)> {
    (n - 1..values.len())
        .map(|i| {
            let window = &values[i + 1 - n..=i];
            let mean = window.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
            ((i + 1) as f64, mean)
        })
        .collect()
}

/// Figure: the loss on the repeats during training for every setup, and
/// on the first pass for the first (a 20-step running mean).
pub fn induction_figure(path: &Path) -> Result<()> {
    use crate::plot::{Axes, Series, line_chart_with_legend};
    let runs = induction_runs()?;
    let first: Vec<f32> = runs[0].losses.iter().map(|l| l.0).collect();
    let mut named = vec![(format!("{}, first pass", runs[0].setup.name()), first)];
    for run in &runs {
        let repeats = run.losses.iter().map(|l| l.1).collect();
        named.push((format!("{}, repeats", run.setup.name()), repeats));
    }
    let series: Vec<Series> = (named.iter())
        .map(|(name, values)| Series {
            name,
            points: running_mean(values, 20),
        })
        .collect();
    let axes = Axes {
        title: "Random tokens, repeated: loss on the first pass and on the repeats",
        x_label: "training step",
        y_label: "loss (nats per token)",
        log_y: false,
        log_x: false,
    };
    line_chart_with_legend(
        path,
        &axes,
        &series,
        plotters::prelude::SeriesLabelPosition::LowerLeft,
    )
}

/// Figure: the attention weights of the 2-layer RoPE model's best
/// induction head on one held-out sequence: each row a position, each
/// column a position it may look at.
pub fn induction_pattern_figure(path: &Path) -> Result<()> {
    use crate::plot::{HeatmapAxes, heatmap_with_axes};
    let run = induction_run(SETUPS[0])?;
    let weights = ndarray::ArrayView2::from_shape((SEQ, SEQ), &run.pattern)?;
    let best = run.best_head();
    let title = format!(
        "Layer {} head {} on a run of {} random tokens, repeated",
        best.layer + 1,
        best.head + 1,
        run.pattern_period
    );
    let labels: Vec<String> = (run.pattern_tokens.iter().enumerate())
        .map(|(i, t)| {
            if i % 8 == 0 {
                format!("{i}: {t}")
            } else {
                String::new()
            }
        })
        .collect();
    let axes = HeatmapAxes {
        title: &title,
        x_label: "position looked at (position: token)",
        y_label: "position looking",
        scale_label: "attention weight",
    };
    heatmap_with_axes(path, &axes, &weights, &labels, &labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_repeat_with_their_period() {
        let batch = repeated_batch(&mut seeded(1), 50);
        let rows = batch.inputs.rows().into_iter().zip(batch.targets.rows());
        for ((x, y), &p) in rows.zip(&batch.periods) {
            assert!((MIN_PERIOD..=MAX_PERIOD).contains(&p));
            for i in p..SEQ {
                assert_eq!(x[i], x[i - p]);
                assert_eq!(y[i], x[i - p + 1]);
            }
            assert_eq!(
                &x.as_slice().unwrap()[1..],
                &y.as_slice().unwrap()[..SEQ - 1]
            );
        }
        let mut seen = batch.periods.clone();
        seen.sort_unstable();
        seen.dedup();
        assert!(seen.len() > 10, "periods vary: {seen:?}");
    }

    #[test]
    fn head_scores_find_a_planted_pattern() {
        // One layer, two heads, period 10: head 0 looks at the previous
        // token, head 1 at the position after the current token's previous
        // occurrence.
        let period = 10;
        let mut att = ndarray::Array4::<f32>::zeros((1, 2, SEQ, SEQ));
        att[[0, 0, 0, 0]] = 1.0;
        for i in 1..SEQ {
            att[[0, 0, i, i - 1]] = 1.0;
        }
        for i in 0..SEQ {
            let j = if i >= period { i - period + 1 } else { i };
            att[[0, 1, i, j]] = 1.0;
        }
        let scores = head_scores(&[&att], &[period]);
        assert_eq!(
            (scores[0].previous_token, scores[0].prefix_matching),
            (1.0, 0.0)
        );
        assert_eq!(scores[1].prefix_matching, 1.0);
        assert!(scores[1].previous_token < 0.1);
    }

    #[test]
    fn two_layers_learn_to_copy_and_one_does_not() {
        let runs = induction_runs().unwrap();
        let (two, one, learned) = (&runs[0], &runs[1], &runs[2]);
        let chance = (VOCAB as f32).ln();
        // None can predict the random first pass better than chance (the
        // ones that copy do worse there: they bet on tokens already seen).
        for run in &runs {
            assert!(run.held_out.0 > chance - 0.05, "{:?}", run.held_out);
        }

        // Two layers copy the repeats; one layer cannot.
        assert!(two.held_out.1 < 0.2 * chance, "{:?}", two.held_out);
        assert!(one.held_out.1 > 0.5 * chance, "{:?}", one.held_out);
        // The copying is done by a head of the second layer that attends
        // to the token after the current one's previous occurrence.
        let best = two.best_head();
        assert_eq!(best.layer, 1);
        assert!(best.prefix_matching > 0.5, "{best:?}");
        assert!(
            one.best_head().prefix_matching < 0.2,
            "{:?}",
            one.best_head()
        );
        // A head of the first layer looks at the previous token.
        let previous = (two.heads.iter().filter(|h| h.layer == 0))
            .map(|h| h.previous_token)
            .fold(0.0, f32::max);
        assert!(previous > 0.5, "{:?}", two.heads);
        assert!(two.transition_step().is_some());
        assert!(one.transition_step().is_none());
        // With learned positions, two layers had not found it by the end.
        assert!(learned.held_out.1 > 0.5 * chance, "{:?}", learned.held_out);
        assert!(learned.transition_step().is_none());
    }

    #[test]
    fn runs_survive_the_json_round_trip() {
        let run = InductionRun {
            setup: SETUPS[2],
            losses: vec![(4.8, 4.7), (0.1, f32::MIN_POSITIVE)],
            heads: vec![HeadScore {
                layer: 1,
                head: 3,
                prefix_matching: 0.3,
                previous_token: 1e-7,
            }],
            held_out: (4.85, 0.01),
            pattern: vec![0.25, 1.0 / 3.0],
            pattern_tokens: vec![5, 127],
            pattern_period: 17,
            seconds: 12.5,
        };
        assert_eq!(run_from_json(&run_to_json(&run)).unwrap(), run);
    }
}
