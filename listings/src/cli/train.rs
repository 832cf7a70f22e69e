//! `listings train`: nanoGPT's training run from the command line, with a
//! checkpoint that is never lost.
//!
//! Before any work: `--out` is checked and locked (see [`crate::guard`]), the
//! text is read and split, the settings are checked against each other, the
//! checkpoint being resumed and the machine's memory. During the run the
//! checkpoint is replaced (atomically) only by a model with a lower
//! validation loss than the one it holds. At the end, or on an error or
//! Ctrl-C, the last line says what is on disk.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use crate::error::{CliError, Context, Result, bail, err};
use crate::guard::{self, Existing};
use crate::{DataArg, as_text, read_input};
use listings::checkpoint::{self, Checkpoint};
use listings::model::{Gpt, GptConfig};
use listings::tokens::{CharVocab, TextTokenizer, Tokenizer};
use listings::train::batches::TokenData;
use listings::train::memory::{Setting, available_memory, estimate};
use listings::train::run::{Event, RunError, TrainConfig, run, split};
use listings::train::step::Trainer;

/// The defaults: nanoGPT's `config/train_shakespeare_char.py`.
fn nano() -> TrainConfig {
    TrainConfig::shakespeare_char()
}

/// The default model: nanoGPT's for the same run.
fn nano_model() -> GptConfig {
    GptConfig::shakespeare_char(0)
}

/// `listings train`: the flags and defaults of nanoGPT's
/// `config/train_shakespeare_char.py` (no dropout: the book's model has none).
#[derive(Args)]
pub struct TrainArgs {
    #[command(flatten)]
    data: DataArg,
    /// Where to write the checkpoint (written whenever the validation loss
    /// improves): a new file, or with --resume or --overwrite a checkpoint
    /// of the same model.
    #[arg(long)]
    out: PathBuf,
    /// `char` (the sorted distinct characters of the text, as nanoGPT's
    /// prepare.py), `bpe` (the book's own tokenizer), or the path
    /// of a tokenizer file saved by `train-tokenizer`.
    #[arg(long, default_value = "char")]
    tokenizer: String,
    /// Continue the run saved at `--out`, with its optimiser state; the
    /// settings not given are the saved run's.
    #[arg(long, conflicts_with = "overwrite")]
    resume: bool,
    /// Start a new run even though `--out` holds a checkpoint of the same
    /// model; it is replaced at the new run's first improvement.
    #[arg(long)]
    overwrite: bool,
    #[command(flatten)]
    model: ModelFlags,
    #[command(flatten)]
    run: RunFlags,
}

/// The model's shape (its context length is `--block-size`).
#[derive(Args)]
struct ModelFlags {
    /// Transformer blocks.
    #[arg(long, default_value_t = nano_model().n_layer)]
    n_layer: usize,
    /// Attention heads per block.
    #[arg(long, default_value_t = nano_model().n_head)]
    n_head: usize,
    /// Width of each token's vector.
    #[arg(long, default_value_t = nano_model().n_embd)]
    n_embd: usize,
}

/// The run's settings: [`TrainConfig`]'s fields under the same names, so the
/// two convert into each other (and into a checkpoint's hparams) field by
/// field, through serde.
#[derive(Args, Serialize)]
struct RunFlags {
    /// Sequences per batch.
    #[arg(long, default_value_t = nano().batch_size)]
    batch_size: usize,
    /// Context length: tokens per training sequence.
    #[arg(long, default_value_t = nano().block_size)]
    block_size: usize,
    /// Updates in all.
    #[arg(long, default_value_t = nano().max_iters)]
    max_iters: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = nano().learning_rate, allow_negative_numbers = true)]
    learning_rate: f32,
    /// Final learning rate.
    #[arg(long, default_value_t = nano().min_lr, allow_negative_numbers = true)]
    min_lr: f32,
    /// Steps of linear warm-up.
    #[arg(long, default_value_t = nano().warmup_iters)]
    warmup_iters: usize,
    /// Step at which the cosine decay reaches --min-lr.
    #[arg(long, default_value_t = nano().lr_decay_iters)]
    lr_decay_iters: usize,
    /// AdamW weight decay (on weight matrices and embeddings).
    #[arg(long, default_value_t = nano().weight_decay, allow_negative_numbers = true)]
    weight_decay: f32,
    /// AdamW beta1.
    #[arg(long, default_value_t = nano().beta1, allow_negative_numbers = true)]
    beta1: f32,
    /// AdamW beta2.
    #[arg(long, default_value_t = nano().beta2, allow_negative_numbers = true)]
    beta2: f32,
    /// Clip the gradients' global norm to this; 0 turns clipping off.
    #[arg(long, default_value_t = nano().grad_clip, allow_negative_numbers = true)]
    grad_clip: f32,
    /// Evaluate on both splits every this many steps; 0 never (the last
    /// step's model is saved).
    #[arg(long, default_value_t = nano().eval_interval)]
    eval_interval: usize,
    /// Batches per evaluation.
    #[arg(long, default_value_t = nano().eval_iters)]
    eval_iters: usize,
    /// Print the training loss every this many steps.
    #[arg(long, default_value_t = nano().log_interval)]
    log_interval: usize,
    /// Seeds the weights and the batches.
    #[arg(long, default_value_t = nano().seed)]
    seed: u64,
}

/// A flag's name on the command line, from its field's name.
fn flag(id: &str) -> String {
    format!("--{}", id.replace('_', "-"))
}

/// The keys a checkpoint's hparams hold beside the [`TrainConfig`] fields.
const BEST_VAL_LOSS: &str = "best_val_loss";
const DATA_BYTES: &str = "data_bytes";
const DATA_FNV1A64: &str = "data_fnv1a64";

/// A text's length and 64-bit FNV-1a hash, kept with a checkpoint so that
/// `--resume` knows it continues on the same text.
pub(crate) struct Fingerprint {
    pub(crate) bytes: usize,
    pub(crate) fnv1a64: String,
}

impl Fingerprint {
    pub(crate) fn of(bytes: &[u8]) -> Self {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in bytes {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        Fingerprint {
            bytes: bytes.len(),
            fnv1a64: format!("{hash:016x}"),
        }
    }
}

/// A run's settings: the flags' values, except that when resuming, a flag
/// not given on the command line takes the value the checkpoint recorded.
fn settings(
    flags: &RunFlags,
    given: &BTreeSet<String>,
    saved: Option<&BTreeMap<String, String>>,
) -> Result<TrainConfig> {
    let json = serde_json::to_string(flags).context("cannot read the flags")?;
    let mut map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&json).context("cannot read the flags")?;
    if let Some(saved) = saved {
        for (key, value) in map.iter_mut() {
            if let (false, Some(text)) = (given.contains(key), saved.get(key)) {
                *value = serde_json::from_str(text).with_context(|| {
                    format!("--resume: the checkpoint's {key} {text:?} is not a number")
                })?;
            }
        }
    }
    let mut config: TrainConfig = serde_json::from_value(serde_json::Value::Object(map))
        .context("--resume: the checkpoint's settings do not fit the flags")?;
    config.log_interval = config.log_interval.max(1);
    Ok(config)
}

/// What a checkpoint keeps of a run: its settings, its text's fingerprint,
/// and the validation loss of the model saved (when evaluated).
fn hparams(
    cfg: &TrainConfig,
    data: &Fingerprint,
    val_loss: Option<f32>,
) -> BTreeMap<String, String> {
    let json = serde_json::to_string(cfg).expect("a TrainConfig serialises");
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&json).expect("and reads back");
    let mut out: BTreeMap<String, String> =
        map.into_iter().map(|(k, v)| (k, v.to_string())).collect();
    out.insert(DATA_BYTES.into(), data.bytes.to_string());
    out.insert(DATA_FNV1A64.into(), data.fnv1a64.clone());
    if let Some(loss) = val_loss {
        out.insert(BEST_VAL_LOSS.into(), loss.to_string());
    }
    out
}

/// The tokenizer `--tokenizer` names, for a text.
fn text_tokenizer(name: &str, text: &str) -> Result<TextTokenizer> {
    Ok(match name {
        "char" => TextTokenizer::Char(CharVocab::from_text(text)?),
        "bpe" => TextTokenizer::Bpe(listings::tokens::book_tokenizer().clone()),
        path => TextTokenizer::Bpe(Tokenizer::load(path).with_context(|| {
            format!("--tokenizer {path}: expected char, bpe, or a tokenizer file")
        })?),
    })
}

/// A checkpoint in a few words: its step, its validation loss and model.
pub(crate) fn describe(ckpt: &Checkpoint) -> String {
    let c = ckpt.gpt.config();
    let val = match ckpt.hparams.get(BEST_VAL_LOSS).map(|v| v.parse::<f32>()) {
        Some(Ok(loss)) => format!(", val loss {loss:.4}"),
        _ => String::new(),
    };
    format!(
        "step {}{val}, model {}-{}-{} with {} {} tokens",
        ckpt.step,
        c.n_layer,
        c.n_head,
        c.n_embd,
        ckpt.tokenizer.vocab_size(),
        ckpt.tokenizer.kind()
    )
}

/// Prints a progress line. Best effort: a closed or full standard output
/// (`| head`, `> /dev/full`) must not stop a run, whose result is the
/// checkpoint.
pub(crate) fn say(bar: &Option<indicatif::ProgressBar>, line: &str) {
    match bar {
        Some(bar) => bar.println(line),
        None => {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}").and_then(|()| out.flush());
        }
    }
}

/// `listings train`. `given` holds the flags given on the command line (by
/// field name); the others have their default values.
pub fn train(args: &TrainArgs, given: &BTreeSet<String>) -> Result<()> {
    let out = &args.out;
    let shown = out.display();
    let mut inputs = vec![("--data", args.data.data.as_str())];
    if !matches!(args.tokenizer.as_str(), "char" | "bpe") {
        inputs.push(("--tokenizer", args.tokenizer.as_str()));
    }
    let existing = guard::check_output(out, "--out", &inputs)?;
    if args.resume && matches!(existing, Existing::Nothing) {
        bail!("--resume: there is no checkpoint at {shown} to resume from");
    }
    if !args.resume && args.run.max_iters == 0 {
        bail!("--max-iters 0: there is nothing to train");
    }
    let _lock = guard::lock(out, "--out")?;
    for (name, size) in guard::remove_stale_temporaries(out) {
        say(
            &None,
            &format!("removed {name} ({size} bytes), left by an interrupted save"),
        );
    }
    // What --out holds now, read before anything replaces it.
    let previous = match existing {
        Existing::Nothing => None,
        Existing::File => Some(checkpoint::load(out).map_err(|e| {
            err!(
                "--out {shown} exists and is not a checkpoint this program can read ({e}); \
                 refusing to replace it: choose another --out"
            )
        })?),
    };
    let bytes = read_input(&args.data.data)?;
    let text = as_text(&bytes, &args.data.data)?;
    let fingerprint = Fingerprint::of(&bytes);

    let (cfg, trainer, tokenizer, best_before) = match previous {
        Some(ckpt) if args.resume => resume(args, given, ckpt, text, &fingerprint)?,
        previous => {
            let (cfg, tokenizer, model) = fresh(args, given, text)?;
            if let Some(ckpt) = previous {
                let old = ckpt.gpt.config();
                if !args.overwrite {
                    bail!(
                        "--out {shown} already holds a checkpoint ({}); add --resume to continue \
                         it, --overwrite to replace it with this new run, or choose another --out",
                        describe(&ckpt)
                    );
                }
                if *old != model || ckpt.tokenizer.to_text()? != tokenizer.to_text()? {
                    bail!(
                        "--overwrite: {shown} holds a different model ({}); --overwrite replaces \
                         only a checkpoint of the same model and tokenizer: delete it yourself \
                         or choose another --out",
                        describe(&ckpt)
                    );
                }
            }
            // The text is split before the model is allocated: a text too
            // short for the settings is refused first.
            let prepared = Prepared::new(text, cfg, tokenizer)?;
            check_memory(&model, &cfg, false)?;
            let gpt = Gpt::new(model, cfg.seed)?;
            let trainer = Trainer::new(gpt, cfg.adamw(), cfg.batch_size, cfg.block_size)?;
            return train_loop(args, prepared, trainer, &fingerprint, None);
        }
    };
    let prepared = Prepared::new(text, cfg, tokenizer)?;
    train_loop(args, prepared, trainer, &fingerprint, Some(best_before))
}

/// A fresh run's settings, tokenizer and model, checked.
fn fresh(
    args: &TrainArgs,
    given: &BTreeSet<String>,
    text: &str,
) -> Result<(TrainConfig, TextTokenizer, GptConfig)> {
    let cfg = settings(&args.run, given, None)?;
    let tokenizer = text_tokenizer(&args.tokenizer, text)?;
    if tokenizer.vocab_size() < 2 {
        bail!(
            "--data {}: the text has only one distinct character, so there is nothing to predict",
            args.data.data
        );
    }
    let model = GptConfig {
        vocab_size: tokenizer.vocab_size(),
        block_size: cfg.block_size,
        n_layer: args.model.n_layer,
        n_head: args.model.n_head,
        n_embd: args.model.n_embd,
    };
    model.validate()?;
    cfg.validate(&model)?;
    Ok((cfg, tokenizer, model))
}

/// The checkpoint's model and optimiser, the settings (the saved run's,
/// with the flags given), and the validation loss the checkpoint recorded.
/// Flags that contradict the checkpoint are an error naming each of them.
fn resume(
    args: &TrainArgs,
    given: &BTreeSet<String>,
    ckpt: Checkpoint,
    text: &str,
    fingerprint: &Fingerprint,
) -> Result<(TrainConfig, Trainer, TextTokenizer, Option<f32>)> {
    let shown = args.out.display();
    let model = *ckpt.gpt.config();
    let mut conflicts = Vec::new();
    for (id, value, saved) in [
        ("n_layer", args.model.n_layer, model.n_layer),
        ("n_head", args.model.n_head, model.n_head),
        ("n_embd", args.model.n_embd, model.n_embd),
    ] {
        if given.contains(id) && value != saved {
            conflicts.push(format!("{} {value} (the model has {saved})", flag(id)));
        }
    }
    if given.contains("block_size") && args.run.block_size > model.block_size {
        conflicts.push(format!(
            "--block-size {} (the model's context is {})",
            args.run.block_size, model.block_size
        ));
    }
    if given.contains("tokenizer") {
        let wanted = text_tokenizer(&args.tokenizer, text)?;
        if wanted.to_text()? != ckpt.tokenizer.to_text()? {
            conflicts.push(format!(
                "--tokenizer {} (the model was trained with a {} tokenizer of {} ids)",
                args.tokenizer,
                ckpt.tokenizer.kind(),
                ckpt.tokenizer.vocab_size()
            ));
        }
    }
    if !conflicts.is_empty() {
        let (these, them) = match conflicts.len() {
            1 => ("this flag contradicts", "it"),
            _ => ("these flags contradict", "them"),
        };
        bail!(
            "--resume: {these} the checkpoint at {shown}: {}; leave {them} out to continue the \
             saved run, or start a new run at another --out",
            conflicts.join("; "),
        );
    }
    if let Some(saved) = ckpt.hparams.get(DATA_FNV1A64)
        && *saved != fingerprint.fnv1a64
    {
        let saved_bytes = ckpt.hparams.get(DATA_BYTES).map_or("?", String::as_str);
        bail!(
            "--resume: --data {} is not the text the checkpoint at {shown} was trained on ({} \
             bytes with fingerprint {}, where the run's had {saved_bytes} bytes with fingerprint \
             {saved}): its validation losses would not compare with the saved one; resume on the \
             same text, or start a new run at another --out",
            args.data.data,
            fingerprint.bytes,
            fingerprint.fnv1a64
        );
    }
    let mut saved = ckpt.hparams.clone();
    saved
        .entry("block_size".into())
        .or_insert_with(|| model.block_size.to_string());
    let cfg = settings(&args.run, given, Some(&saved))?;
    cfg.validate(&model)?;
    if cfg.max_iters as u64 <= ckpt.step {
        bail!(
            "--max-iters {}: the checkpoint at {shown} has already taken {} steps; give a larger \
             --max-iters to train on",
            cfg.max_iters,
            ckpt.step
        );
    }
    let best = match ckpt.hparams.get(BEST_VAL_LOSS) {
        Some(text) => Some(text.parse::<f32>().map_err(|e| {
            err!("--resume: the checkpoint's {BEST_VAL_LOSS} {text:?} is not a number: {e}")
        })?),
        None => None,
    };
    let optimizer = ckpt
        .optimizer
        .ok_or_else(|| err!("--resume: {shown} holds no optimiser state to resume from"))?;
    check_memory(&model, &cfg, true)?;
    let trainer = Trainer::from_parts(ckpt.gpt, optimizer)?;
    if trainer.steps_done() != ckpt.step {
        bail!(
            "--resume: {shown} says step {} but its optimiser has taken {} steps",
            ckpt.step,
            trainer.steps_done()
        );
    }
    Ok((cfg, trainer, ckpt.tokenizer, best))
}

/// Refuses settings whose arrays would not fit in this machine's memory,
/// before anything is allocated for them, naming the flag that makes them
/// large. `resuming`: the model and AdamW's state are loaded already, so
/// they are no longer part of the memory still available.
fn check_memory(model: &GptConfig, cfg: &TrainConfig, resuming: bool) -> Result<()> {
    let memory = estimate(model, cfg.batch_size, cfg.block_size);
    let Some(available) = available_memory() else {
        return Ok(()); // not Linux: the allocator will say
    };
    let loaded = match resuming {
        true => memory.parameters.bytes + memory.moments.bytes,
        false => 0,
    };
    let needed = memory.total.saturating_sub(loaded);
    if needed <= u128::from(available) {
        return Ok(());
    }
    let blame = match memory.dominant {
        Some(Setting::VocabSize) => format!(
            "the vocabulary ({} tokens, from --tokenizer) makes it large",
            model.vocab_size
        ),
        Some(setting) => {
            let value = match setting {
                Setting::BlockSize => cfg.block_size,
                Setting::NLayer => model.n_layer,
                Setting::NHead => model.n_head,
                Setting::NEmbd => model.n_embd,
                Setting::BatchSize => cfg.batch_size,
                Setting::VocabSize => model.vocab_size,
            };
            format!("{} {value} makes it large: lower it", flag(setting.name()))
        }
        None => "lower the model's size or the batch".to_string(),
    };
    let largest = memory.largest();
    bail!(
        "the run would need {} of memory ({} bytes; the largest part, {}, {}) but this machine \
         has {} available; {blame}",
        human_bytes(needed),
        needed,
        largest.name,
        human_bytes(largest.bytes),
        human_bytes(u128::from(available))
    )
}

/// Bytes in GB (10^9) or MB, readable.
fn human_bytes(bytes: u128) -> String {
    let b = bytes as f64;
    if b >= 1e12 {
        format!("{:.0} GB", b / 1e9)
    } else if b >= 1e9 {
        format!("{:.3} GB", b / 1e9)
    } else {
        format!("{:.1} MB", b / 1e6)
    }
}

/// A run's checked settings and data.
struct Prepared {
    cfg: TrainConfig,
    tokens: TokenData,
    data: listings::train::batches::Split,
    tokenizer: TextTokenizer,
}

impl Prepared {
    /// The text tokenized and split for `cfg`, checked to hold a window of
    /// `block_size + 1` tokens in each split.
    fn new(text: &str, cfg: TrainConfig, tokenizer: TextTokenizer) -> Result<Self> {
        let tokens = TokenData::from_text(text, &tokenizer)?;
        let data = split(&tokens, cfg.block_size)?;
        Ok(Prepared {
            cfg,
            tokens,
            data,
            tokenizer,
        })
    }
}

/// Trains, saving each improvement; `previous` is `Some` when resuming,
/// with the validation loss the checkpoint recorded (if any).
fn train_loop(
    args: &TrainArgs,
    prepared: Prepared,
    mut trainer: Trainer,
    fingerprint: &Fingerprint,
    previous: Option<Option<f32>>,
) -> Result<()> {
    let Prepared {
        cfg,
        tokens,
        data,
        tokenizer,
    } = prepared;
    let out = &args.out;
    let shown = out.display();
    let start = trainer.steps_done();
    let model = *trainer.gpt().config();
    say(
        &None,
        &format!(
            "{} tokens ({} train, {} val), vocabulary {} ({}); {} parameters",
            tokens.len(),
            data.train.len(),
            data.val.len(),
            tokenizer.vocab_size(),
            tokenizer.kind(),
            trainer.gpt().num_parameters()
        ),
    );
    if let Some(best) = previous {
        let best = best.map_or(
            "not recorded: the first evaluation will be kept".into(),
            |v| format!("{v:.4}"),
        );
        say(
            &None,
            &format!("resuming {shown} at step {start}; its val loss: {best}"),
        );
    }
    guard::catch_interrupts()?;
    let bar = std::io::IsTerminal::is_terminal(&std::io::stdout()).then(|| {
        let bar = indicatif::ProgressBar::new(cfg.max_iters as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} [{elapsed} < {eta}] {msg}",
            )
            .expect("a valid template"),
        );
        bar.set_position(start);
        bar
    });
    // The bar to beat: the checkpoint's recorded loss when resuming; for a
    // fresh run, the untrained model's at step 0.
    let mut best: Option<f32> = previous.flatten();
    let mut step0: Option<f32> = None;
    let mut saved: Option<(u64, Option<f32>)> = None;
    let mut stopped_at = start;
    let result = run(&mut trainer, &data, &cfg, |event, trainer| {
        if guard::interrupted() {
            return Err(Box::new(Interrupted));
        }
        match *event {
            Event::Eval {
                step,
                train_loss,
                val_loss,
            } => {
                say(
                    &bar,
                    &format!("step {step}: train loss {train_loss:.4}, val loss {val_loss:.4}"),
                );
                if step as u64 == start {
                    if previous.is_none() {
                        step0 = Some(val_loss);
                        best = Some(val_loss);
                    }
                } else if best.is_none_or(|b| val_loss < b) {
                    let hp = hparams(&cfg, fingerprint, Some(val_loss));
                    let opt = Some(trainer.optimizer());
                    checkpoint::save(out, trainer.gpt(), &tokenizer, opt, step as u64, &hp)?;
                    best = Some(val_loss);
                    saved = Some((step as u64, Some(val_loss)));
                    say(&bar, &format!("saved checkpoint to {shown}"));
                }
            }
            Event::Iter { iter, loss, ms, .. } => {
                stopped_at = iter as u64 + 1;
                if let Some(bar) = &bar {
                    bar.set_position(iter as u64 + 1);
                    bar.set_message(format!("loss {loss:.4}"));
                }
                if iter % cfg.log_interval == 0 {
                    say(
                        &bar,
                        &format!("iter {iter}: loss {loss:.4}, time {ms:.2} ms"),
                    );
                }
            }
        }
        Ok(())
    });
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let on_disk = |saved: Option<(u64, Option<f32>)>| match (saved, previous) {
        (Some((step, Some(val))), _) => {
            format!("{shown} holds the model of step {step} (val loss {val:.4}), saved by this run")
        }
        (Some((step, None)), _) => format!(
            "{shown} holds the model of step {step} (not evaluated: --eval-interval 0), saved by this run"
        ),
        (None, Some(_)) => format!("{shown} is unchanged: it holds the checkpoint of step {start}"),
        (None, None) => match args.overwrite {
            true => format!("{shown} is unchanged: it still holds the earlier checkpoint"),
            false => format!("nothing was saved: {shown} was not written"),
        },
    };
    let history = match result {
        Ok(history) => history,
        Err(RunError::Stopped(e)) if e.is::<Interrupted>() => {
            return Err(CliError::with_code(
                format!("interrupted at step {stopped_at}\n{}", on_disk(saved)),
                130,
            ));
        }
        Err(e) => return Err(err!("{e}\n{}", on_disk(saved))),
    };
    if cfg.eval_interval == 0 {
        // Without evaluations there is no best model to keep: save the end.
        let step = trainer.steps_done();
        let hp = hparams(&cfg, fingerprint, None);
        let opt = Some(trainer.optimizer());
        checkpoint::save(out, trainer.gpt(), &tokenizer, opt, step, &hp)
            .map_err(|e| err!("{e}\n{}", on_disk(None)))?;
        saved = Some((step, None));
        say(&None, &format!("saved checkpoint to {shown}"));
    }
    let steps = history.losses.len();
    say(
        &None,
        &format!(
            "trained {steps} steps of {} x {} tokens in {:.1} s ({:.2} ms per step); model {}-{}-{}",
            cfg.batch_size,
            cfg.block_size,
            history.step_ms / 1e3,
            history.step_ms / steps.max(1) as f64,
            model.n_layer,
            model.n_head,
            model.n_embd,
        ),
    );
    match (saved, previous, step0) {
        (Some(_), _, _) => {
            say(&None, &on_disk(saved));
            Ok(())
        }
        (None, Some(_), _) => {
            let bar = best.map_or(String::new(), |b| format!(" (val loss {b:.4})"));
            say(
                &None,
                &format!(
                    "no evaluation beat the checkpoint's{bar}; {}",
                    on_disk(None)
                ),
            );
            Ok(())
        }
        (None, None, step0) => {
            let bar = step0.map_or(String::new(), |b| format!(" of {b:.4}"));
            let best = history
                .evals
                .iter()
                .skip(1)
                .min_by(|a, b| a.2.total_cmp(&b.2))
                .map_or(String::new(), |(step, _, val)| {
                    format!(" (the best was {val:.4}, at step {step})")
                });
            bail!(
                "no evaluation beat the untrained model's validation loss{bar}{best}: the run \
                 learned nothing worth keeping; try a lower --learning-rate or more text\n{}",
                on_disk(None)
            )
        }
    }
}

/// The run was stopped by Ctrl-C or SIGTERM.
#[derive(Debug)]
struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}
