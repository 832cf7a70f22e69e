//! Chapter 9: the modern block, one change at a time.
//!
//! The book's model ([`book_model_config`]: 2 blocks, 4 heads of 16
//! channels, 64 wide, 64 tokens of context, the book's 2,048-token BPE) is
//! trained six times on the book's corpus, from the same seed, on the same
//! batches, for the same [`MODERN_STEPS`] steps of the book's schedule
//! shortened to that length ([`modern_train_config`]). Each model adds one
//! of the changes LLaMA-style models made to GPT-2's block to the model
//! before it ([`modern_steps`]):
//!
//! 1. GPT-2's block;
//! 2. RMSNorm instead of LayerNorm;
//! 3. a SwiGLU MLP instead of GELU's (hidden width `8·round(C/3)` = 168,
//!    about as many weights);
//! 4. RoPE instead of a learned position table;
//! 5. grouped-query attention: the 4 query heads share
//!    [`GQA_KV_HEADS`] key-value heads;
//! 6. no biases in the linear layers (the norms have none since step 2).
//!
//! For each, [`modern_block_table`] gives the parameters the model uses,
//! its loss on held-out text after training ([`validation_loss`]: the
//! same windows of the corpus's last 10% for every model), its training
//! speed in steps per second (measured on the run that trained it: a
//! timing, different on every machine and every run), and what one token
//! of context costs a KV cache in f32 ([`kv_bytes_per_token`]).
//!
//! Every model is trained once and kept in [`crate::cache`] (its numbers,
//! not its weights), so the chapter's blocks read the table in
//! milliseconds.

use anyhow::{Context, Result};
use ndarray::Array2;
use serde_json::{Value, json};

use listings::infer::kv::kv_bytes_per_token;
use listings::model::{Activations, Arch, Gpt, GptConfig, Mlp, Norm, Positions};
use listings::tokens::{TextTokenizer, book_tokenizer};
use listings::train::batches::{Split, TRAIN_FRACTION, TokenData};
use listings::train::run::{TrainConfig, run};
use listings::train::step::Trainer;

use crate::book_model::{BOOK_MODEL_SEED, book_model_config, book_train_config};
use crate::cache;

/// How many steps each model trains.
pub const MODERN_STEPS: usize = 600;

/// The key-value heads the grouped-query model's 4 query heads share.
pub const GQA_KV_HEADS: usize = 2;

/// Held-out windows of 64 tokens the validation loss averages over.
pub const VAL_WINDOWS: usize = 256;

// ANCHOR: modern_steps
/// The six models, each one change after the one before: a short name for
/// the change and the architecture with every change up to it.
pub fn modern_steps() -> [(&'static str, Arch); 6] {
    let gpt2 = Arch::gpt2();
    let rmsnorm = Arch {
        norm: Norm::RmsNorm,
        ..gpt2
    };
    let swiglu = Arch {
        mlp_kind: Mlp::SwiGlu,
        ..rmsnorm
    };
    let rope = Arch {
        positions: Positions::Rope,
        ..swiglu
    };
    let gqa = Arch {
        kv_heads: Some(GQA_KV_HEADS),
        ..rope
    };
    let no_bias = Arch { bias: false, ..gqa };
    [
        ("GPT-2", gpt2),
        ("+ RMSNorm", rmsnorm),
        ("+ SwiGLU", swiglu),
        ("+ RoPE", rope),
        ("+ GQA", gqa),
        ("+ no biases", no_bias),
    ]
}
// ANCHOR_END: modern_steps

/// How each model trains: the book model's settings
/// ([`book_train_config`]: batches of 16 windows of 64 tokens, AdamW at
/// 3e-3 after 100 steps of warm-up, cosine decay to 3e-4) over
/// [`MODERN_STEPS`] steps instead of 2,000, without evaluations (the
/// held-out loss is measured once, at the end).
pub fn modern_train_config() -> TrainConfig {
    TrainConfig {
        max_iters: MODERN_STEPS,
        lr_decay_iters: MODERN_STEPS,
        eval_interval: 0,
        ..book_train_config()
    }
}

/// One row of the table: a model, what it costs and how well it learned.
#[derive(Clone, Debug, PartialEq)]
pub struct ModernRow {
    /// The change this row adds (the names of [`modern_steps`]).
    pub change: &'static str,
    /// The architecture, with every change up to this row.
    pub arch: Arch,
    /// The parameters the model uses ([`Gpt::num_parameters`]).
    pub parameters: usize,
    /// The mean loss on [`VAL_WINDOWS`] held-out windows after training.
    pub val_loss: f32,
    /// The mean batch loss of the last 50 training steps.
    pub train_loss: f32,
    /// Training steps per second on the run that trained the model: a
    /// measurement of one run on one machine.
    pub steps_per_sec: f64,
    /// Bytes a KV cache keeps per token of context, in f32.
    pub kv_bytes_per_token: usize,
}

/// The corpus in the book's tokens, split as the book model's run splits it.
fn corpus_split() -> Result<Split> {
    let tokenizer = TextTokenizer::Bpe(book_tokenizer().clone());
    let tokens = TokenData::from_text(&listings::corpus::corpus(), &tokenizer)?;
    Ok(tokens.split(TRAIN_FRACTION, book_train_config().block_size)?)
}

// ANCHOR: validation_loss
/// The mean loss of `gpt` on the first `windows` non-overlapping windows
/// of `t + 1` tokens of `val`, `t` tokens of context each, run 64 windows
/// at a time, the sums taken in window order: the same text for every
/// model, so their losses can be compared to the last digit.
pub fn validation_loss(gpt: &Gpt, val: &TokenData, windows: usize, t: usize) -> Result<f32> {
    let ids = val.ids();
    let w = t + 1;
    anyhow::ensure!(
        ids.len() >= windows * w,
        "the held-out text has {} tokens, fewer than {windows} windows of {w}",
        ids.len()
    );
    let mut acts = Activations::with_arch(gpt.config(), gpt.arch(), 0, 0);
    let mut sum = 0.0_f64;
    for start in (0..windows).step_by(64) {
        let n = 64.min(windows - start);
        let x = Array2::from_shape_fn((n, t), |(b, i)| ids[(start + b) * w + i]);
        let y = Array2::from_shape_fn((n, t), |(b, i)| ids[(start + b) * w + i + 1]);
        gpt.forward_with(&mut acts, &x, Some(&y))?;
        sum += acts.losses.iter().map(|&l| f64::from(l)).sum::<f64>();
    }
    Ok((sum / (windows * t) as f64) as f32)
}
// ANCHOR_END: validation_loss

/// What a trained model leaves in the cache.
#[derive(Clone, Debug, PartialEq)]
struct Trained {
    parameters: usize,
    val_loss: f32,
    losses: Vec<f32>,
    step_ms: f64,
}

fn to_json(t: &Trained) -> Value {
    json!({
        "parameters": t.parameters,
        "val_loss": t.val_loss,
        "losses": t.losses,
        "step_ms": t.step_ms,
    })
}

fn from_json(v: &Value) -> Result<Trained> {
    let f = |key: &str| v[key].as_f64().with_context(|| format!("no {key}"));
    let losses = (v["losses"].as_array().context("no losses")?.iter())
        .map(|l| l.as_f64().map(|l| l as f32).context("a loss"))
        .collect::<Result<_>>()?;
    Ok(Trained {
        parameters: v["parameters"].as_u64().context("no parameters")? as usize,
        val_loss: f("val_loss")? as f32,
        losses,
        step_ms: f("step_ms")?,
    })
}

// ANCHOR: train_modern
/// Trains the book's model with the choices of `arch` for
/// [`MODERN_STEPS`] steps and measures it.
fn train_modern(arch: Arch, split: &Split) -> Result<Trained> {
    let (model, config) = (book_model_config(), modern_train_config());
    let gpt = Gpt::with_arch(model, arch, BOOK_MODEL_SEED)?;
    let mut trainer = Trainer::new(gpt, config.adamw(), config.batch_size, config.block_size)?;
    let history = run(&mut trainer, split, &config, |_, _| Ok(()))?;
    let gpt = trainer.into_gpt();
    let val_loss = validation_loss(&gpt, &split.val, VAL_WINDOWS, config.block_size)?;
    Ok(Trained {
        parameters: gpt.num_parameters(),
        val_loss,
        losses: history.losses,
        step_ms: history.step_ms,
    })
}
// ANCHOR_END: train_modern

/// [`train_modern`], trained once and kept in the cache.
fn modern_model(name: &str, arch: Arch, split: &Split) -> Result<Trained> {
    let settings = format!(
        "{:?}\n{:?}\n{arch:?}\nseed {BOOK_MODEL_SEED}\nval windows {VAL_WINDOWS}",
        book_model_config(),
        modern_train_config(),
    );
    let slug: String = name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_lowercase();
    let key = cache::key(
        &format!("ch09-modern-{slug}"),
        &["scaling/modern.rs"],
        &settings,
    );
    cache::cached(
        &key,
        |t, path| Ok(std::fs::write(path, to_json(t).to_string())?),
        |path| from_json(&serde_json::from_str(&std::fs::read_to_string(path)?)?),
        || train_modern(arch, split),
    )
}

// ANCHOR: modern_block_table
/// The table: each of [`modern_steps`]'s models, trained (or read from the
/// cache) one after the other, with its parameters, held-out loss,
/// training speed and KV-cache bytes per token.
pub fn modern_block_table() -> Result<Vec<ModernRow>> {
    let split = corpus_split()?;
    let config: GptConfig = book_model_config();
    modern_steps()
        .into_iter()
        .map(|(change, arch)| {
            let trained = modern_model(change, arch, &split)?;
            let tail = &trained.losses[trained.losses.len().saturating_sub(50)..];
            Ok(ModernRow {
                change,
                arch,
                parameters: trained.parameters,
                val_loss: trained.val_loss,
                train_loss: tail.iter().sum::<f32>() / tail.len() as f32,
                steps_per_sec: trained.losses.len() as f64 / (trained.step_ms / 1e3),
                kv_bytes_per_token: kv_bytes_per_token(&config, &arch, size_of::<f32>()),
            })
        })
        .collect()
}
// ANCHOR_END: modern_block_table

// ANCHOR: modern_block_speed
/// Training speed of each of [`modern_steps`]'s models, measured afresh (not
/// cached): `steps` training steps of the book's batch shape on the
/// corpus, after 3 steps not timed (the first allocate and warm the
/// caches), the models one after the other. In steps per second, in
/// [`modern_steps`]'s order. A timing: it changes with the machine and with
/// whatever else runs on it.
pub fn modern_block_speed(steps: usize) -> Result<Vec<(&'static str, f64)>> {
    let split = corpus_split()?;
    let config = modern_train_config();
    let (b, t) = (config.batch_size, config.block_size);
    modern_steps()
        .into_iter()
        .map(|(change, arch)| {
            let gpt = Gpt::with_arch(book_model_config(), arch, BOOK_MODEL_SEED)?;
            let mut trainer = Trainer::new(gpt, config.adamw(), b, t)?;
            let mut rng = listings::rng::seeded(config.seed);
            let (mut x, mut y) = (Array2::zeros((b, t)), Array2::zeros((b, t)));
            let mut timed = std::time::Duration::ZERO;
            for step in 0..3 + steps {
                split.train.get_batch(&mut rng, &mut x, &mut y)?;
                let start = std::time::Instant::now();
                trainer.step(&x, &y, config.lr(step), config.grad_clip)?;
                if step >= 3 {
                    timed += start.elapsed();
                }
            }
            Ok((change, steps as f64 / timed.as_secs_f64()))
        })
        .collect()
}
// ANCHOR_END: modern_block_speed

/// The table as text: one line per model, aligned, with a header.
pub fn format_table(rows: &[ModernRow]) -> String {
    let mut out = format!(
        "{:<12} {:>10} {:>9} {:>8} {:>8}\n",
        "change", "parameters", "val loss", "steps/s", "KV B/tok"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<12} {:>10} {:>9.3} {:>8.1} {:>8}\n",
            r.change, r.parameters, r.val_loss, r.steps_per_sec, r.kv_bytes_per_token
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use listings::model::{count_parameters, count_parameters_arch, swiglu_hidden};

    use super::*;

    #[test]
    fn each_step_adds_one_change_to_the_one_before() {
        let steps = modern_steps();
        let names = [
            "GPT-2",
            "+ RMSNorm",
            "+ SwiGLU",
            "+ RoPE",
            "+ GQA",
            "+ no biases",
        ];
        assert_eq!(steps.map(|(name, _)| name), names);
        assert!(steps[0].1.is_gpt2());
        for pair in steps.windows(2) {
            let ((_, a), (name, b)) = (pair[0], pair[1]);
            let changed = [
                a.norm != b.norm,
                a.mlp_kind != b.mlp_kind,
                a.positions != b.positions,
                a.kv_heads != b.kv_heads,
                a.bias != b.bias,
            ];
            assert_eq!(changed.iter().filter(|&&c| c).count(), 1, "{name}");
            assert_eq!(a.mlp, b.mlp);
        }
        let last = steps[5].1;
        assert_eq!(
            (
                last.norm,
                last.mlp_kind,
                last.positions,
                last.kv_heads,
                last.bias
            ),
            (
                Norm::RmsNorm,
                Mlp::SwiGlu,
                Positions::Rope,
                Some(GQA_KV_HEADS),
                false
            )
        );
    }

    #[test]
    fn the_table_says_what_each_change_costs() {
        // Everything but the timings, on the trained (or cached) models.
        let rows = modern_block_table().unwrap();
        print!("{}", format_table(&rows));
        let config = book_model_config();
        let (c, l, nh) = (config.n_embd, config.n_layer, config.n_head);
        let hs = c / nh;
        let count: Vec<usize> = rows.iter().map(|r| r.parameters).collect();
        for r in &rows {
            assert_eq!(
                r.parameters,
                count_parameters_arch(&config, &r.arch),
                "{}",
                r.change
            );
            assert!(
                r.val_loss.is_finite() && r.val_loss < 6.0,
                "{}: {}",
                r.change,
                r.val_loss
            );
            assert!(r.steps_per_sec > 0.0);
        }
        assert_eq!(count[0], count_parameters(&config));
        // RMSNorm drops the shifts of 2 norms per block and of ln_f.
        assert_eq!(count[0] - count[1], (2 * l + 1) * c);
        // SwiGLU: 3·C·H + 2H + C per MLP against 8C² + 5C.
        let h = swiglu_hidden(c);
        assert_eq!(
            count[2] + l * (8 * c * c + 5 * c),
            count[1] + l * (3 * c * h + 2 * h + c)
        );
        // RoPE: no position table.
        assert_eq!(count[2] - count[3], config.block_size * c);
        // GQA: c_attn loses the keys and values of the heads it shares.
        let dropped = 2 * (nh - GQA_KV_HEADS) * hs;
        assert_eq!(count[3] - count[4], l * (c + 1) * dropped);
        // No biases: c_attn's, attn.c_proj's, c_fc's and mlp.c_proj's.
        let biases = (c + 2 * GQA_KV_HEADS * hs) + c + 2 * h + c;
        assert_eq!(count[4] - count[5], l * biases);
        // The KV cache: GPT-2's 2·L·C f32 numbers a token until GQA
        // divides it by n_head / n_kv_head.
        let kv: Vec<usize> = rows.iter().map(|r| r.kv_bytes_per_token).collect();
        assert_eq!(kv[0], 2 * l * c * 4);
        assert_eq!(kv[..4], [kv[0]; 4]);
        assert_eq!(kv[4] * (nh / GQA_KV_HEADS), kv[0]);
        assert_eq!(kv[5], kv[4]);
        // Each model learned: well below the loss of a uniform guess.
        let uniform = (config.vocab_size as f32).ln();
        assert!(rows.iter().all(|r| r.val_loss < uniform - 2.0));
    }

    /// The bench command for the speeds the chapter quotes:
    /// `cargo test -p lab --lib modern_block_speed -- --ignored --nocapture`.
    #[test]
    #[ignore = "a timing: run it on a quiet machine"]
    fn modern_block_speed_bench() {
        for (change, speed) in modern_block_speed(50).unwrap() {
            println!("{change:<12} {speed:6.1} steps/s");
        }
    }

    #[test]
    fn validation_loss_is_the_mean_over_every_window_position() {
        let split = corpus_split().unwrap();
        let gpt = Gpt::new(
            GptConfig {
                block_size: 8,
                ..book_model_config()
            },
            1,
        )
        .unwrap();
        let loss = validation_loss(&gpt, &split.val, 70, 8).unwrap();
        // Untrained: about ln V.
        assert!((loss - 2048_f32.ln()).abs() < 0.1, "{loss}");
        // The same as one forward pass over the 70 windows.
        let ids = split.val.ids();
        let x = Array2::from_shape_fn((70, 8), |(b, i)| ids[b * 9 + i]);
        let y = Array2::from_shape_fn((70, 8), |(b, i)| ids[b * 9 + i + 1]);
        let (_, mean) = gpt.forward(&x, Some(&y)).unwrap();
        assert!((mean.unwrap() - loss).abs() < 1e-5);
        assert!(validation_loss(&gpt, &split.val, 1_000_000, 8).is_err());
    }
}
