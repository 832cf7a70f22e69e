//! `listings finetune` and `listings merge-lora`: chapter 6's fine-tuning
//! runs on a checkpoint, from the command line.
//!
//! Everything is checked before the first step: the flags (each against the
//! method), `--out` (see [`crate::guard`]), the base checkpoint, every record
//! of the data and its length in tokens. The result is written once, at the
//! end, atomically: a run that fails or is stopped leaves `--out` as it was.
//!
//! `--out` is a checkpoint file for `full`, `last-block` and `dpo` (the
//! base's format and tokenizer), and for `lora` (or `dpo --dpo-base lora`)
//! a folder holding an adapter in Hugging Face PEFT's format. An adapter is
//! written to a temporary folder beside `--out` and then renamed into place,
//! so the folder at `--out` always holds a whole adapter.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, ValueEnum};

use crate::error::{CliError, Result, bail, err};
use crate::guard::{self, Existing, OutputLock};
use crate::train::{Fingerprint, describe, say};
use crate::{as_text, read_input};
use listings::checkpoint::{self, Checkpoint};
use listings::finetune::chat::{
    DataError, Encoded, Instruction, LossOn, Preference, encode_all, encode_chat, end_of_turn,
    read_jsonl,
};
use listings::finetune::lora::{Lora, LoraConfig, LoraError};
use listings::finetune::peft::{self, CONFIG_FILE, WEIGHTS_FILE};
use listings::finetune::run::{
    EncodedPair, FinetuneConfig, mean_loss, reference_logprobs, train_dpo, train_instructions,
};
use listings::finetune::tuner::{FineTuner, Method};
use listings::model::{Gpt, GptParams};
use listings::optim::AdamWConfig;
use listings::tokens::TextTokenizer;
use listings::train::step::TrainError;

/// How many records the loss before and after the run is measured on.
const EVAL_RECORDS: usize = 256;

/// The library's defaults: 300 steps of 16 at 1e-3, clip 1, β 0.1, seed 1.
fn defaults() -> FinetuneConfig {
    FinetuneConfig::default()
}

/// What `--method` trains, and on what.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum MethodArg {
    /// Every weight, on instruction records.
    Full,
    /// The last block and the final LayerNorm, on instruction records.
    LastBlock,
    /// LoRA adapters, on instruction records.
    Lora,
    /// Preference tuning (DPO) on preference records, of the weights
    /// `--dpo-base` names.
    Dpo,
}

/// What DPO trains.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DpoBase {
    /// Every weight.
    Full,
    /// The last block and the final LayerNorm.
    LastBlock,
    /// LoRA adapters (`--out` is then an adapter folder).
    Lora,
}

/// Which tokens the instruction loss counts.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LossOnArg {
    /// The response's tokens (and its end token) only.
    Response,
    /// Every token, prompt included.
    All,
}

/// `listings finetune`.
#[derive(Args)]
pub struct FinetuneArgs {
    /// The model to start from: a checkpoint written by `listings train`
    /// (with a BPE tokenizer, which has <|endoftext|> to end a response).
    #[arg(long)]
    base: PathBuf,
    /// JSON Lines, one record per line: {"prompt": ..., "response": ...}
    /// for full, last-block and lora; {"prompt": ..., "chosen": ...,
    /// "rejected": ...} for dpo. `-` reads standard input.
    #[arg(long)]
    data: String,
    /// What trains: every weight (full), the last block (last-block), LoRA
    /// adapters (lora), or preference tuning (dpo, of the weights
    /// --dpo-base names).
    #[arg(long, value_enum)]
    method: MethodArg,
    /// Where to write: a checkpoint file (full, last-block, dpo), or for
    /// lora a folder for the adapter. A new path; an existing one of the
    /// same kind only with --overwrite.
    #[arg(long)]
    out: PathBuf,
    /// Replace what --out holds: a checkpoint of the base's model and
    /// tokenizer, or a folder holding only an adapter.
    #[arg(long)]
    overwrite: bool,
    /// LoRA's rank r [default: 8].
    #[arg(long)]
    rank: Option<usize>,
    /// LoRA's alpha: the adapters' output is scaled by alpha / rank
    /// [default: 16].
    #[arg(long, allow_hyphen_values = true)]
    alpha: Option<f32>,
    /// The layers LoRA adapts, comma-separated: c_attn, c_proj (both
    /// attn.c_proj and mlp.c_proj), c_fc, attn.c_proj, mlp.c_proj
    /// [default: c_attn].
    #[arg(long, value_delimiter = ',')]
    target_modules: Option<Vec<String>>,
    /// What --method dpo trains [default: full].
    #[arg(long, value_enum)]
    dpo_base: Option<DpoBase>,
    /// Optimiser steps.
    #[arg(long, default_value_t = defaults().steps)]
    steps: usize,
    /// Records per step (for dpo, pairs).
    #[arg(long, default_value_t = defaults().batch_size)]
    batch_size: usize,
    /// AdamW's learning rate, the same at every step.
    #[arg(long, default_value_t = defaults().learning_rate, allow_hyphen_values = true)]
    learning_rate: f32,
    /// Clip the gradients' global norm to this; 0 turns clipping off.
    #[arg(long, default_value_t = defaults().grad_clip, allow_hyphen_values = true)]
    grad_clip: f32,
    /// DPO's beta: larger keeps the model closer to the base [default: 0.1].
    #[arg(long, allow_hyphen_values = true)]
    beta: Option<f32>,
    /// Which tokens the loss counts (not for dpo) [default: response].
    #[arg(long, value_enum)]
    loss_on: Option<LossOnArg>,
    /// Do not end each response with <|endoftext|> (the model then never
    /// learns where a response ends).
    #[arg(long)]
    no_end_token: bool,
    /// With LoRA, train the embedding row of <|endoftext|> too (PEFT's
    /// trainable_token_indices): a base that never wrote that token cannot
    /// learn to end its answers with adapters alone (chapter 6).
    #[arg(long)]
    train_end_token: bool,
    /// Seeds the order of the records and LoRA's initial A.
    #[arg(long, default_value_t = defaults().seed)]
    seed: u64,
    /// Print the loss every this many steps (and at the first and last).
    #[arg(long, default_value_t = 10)]
    log_interval: usize,
}

/// `listings merge-lora`.
#[derive(Args)]
pub struct MergeLoraArgs {
    /// The checkpoint the adapter was trained on.
    #[arg(long)]
    base: PathBuf,
    /// The adapter's folder (adapter_config.json and
    /// adapter_model.safetensors), from `listings finetune --method lora`
    /// or Hugging Face PEFT.
    #[arg(long)]
    adapter: PathBuf,
    /// Where to write the merged model: a new checkpoint file, or with
    /// --overwrite a checkpoint of the base's model and tokenizer.
    #[arg(long)]
    out: PathBuf,
    /// Replace the checkpoint at --out.
    #[arg(long)]
    overwrite: bool,
}

/// The loss a run minimises.
#[derive(Clone, Copy)]
enum Objective {
    /// Next-token loss on instruction records.
    Instructions,
    /// DPO on preference records.
    Dpo,
}

/// A run's settings, checked.
struct Plan {
    method: Method,
    objective: Objective,
    config: FinetuneConfig,
    end_token: bool,
    /// LoRA trains `<|endoftext|>`'s embedding row as well.
    train_end_token: bool,
    log_interval: usize,
}

impl Plan {
    /// Whether `--out` is an adapter folder (else a checkpoint file).
    fn writes_adapter(&self) -> bool {
        matches!(self.method, Method::Lora(_))
    }
}

/// The flags, checked against each other and the method, before any work.
fn plan(args: &FinetuneArgs) -> Result<Plan> {
    let dpo = args.method == MethodArg::Dpo;
    let trains = match (args.method, args.dpo_base) {
        (MethodArg::Dpo, base) => base.unwrap_or(DpoBase::Full),
        (_, Some(_)) => {
            bail!("--dpo-base applies only to --method dpo (it says what preference tuning trains)")
        }
        (MethodArg::Full, None) => DpoBase::Full,
        (MethodArg::LastBlock, None) => DpoBase::LastBlock,
        (MethodArg::Lora, None) => DpoBase::Lora,
    };
    let lora_flags = [
        ("--rank", args.rank.is_some()),
        ("--alpha", args.alpha.is_some()),
        ("--target-modules", args.target_modules.is_some()),
        ("--train-end-token", args.train_end_token),
    ];
    if trains != DpoBase::Lora
        && let Some((flag, _)) = lora_flags.iter().find(|(_, given)| *given)
    {
        bail!("{flag} applies only to LoRA: --method lora, or --method dpo --dpo-base lora");
    }
    if args.train_end_token && args.no_end_token {
        bail!("--train-end-token trains the end token's row: it cannot go with --no-end-token");
    }
    if !dpo && args.beta.is_some() {
        bail!("--beta is DPO's: it applies only to --method dpo");
    }
    if dpo && args.loss_on.is_some() {
        bail!(
            "--loss-on applies to instruction tuning; --method dpo always scores the responses \
             alone"
        );
    }
    if args.steps == 0 {
        bail!("--steps 0: there is nothing to train");
    }
    if args.batch_size == 0 {
        bail!("--batch-size 0: a step needs at least one record");
    }
    let lr = args.learning_rate;
    if !(lr.is_finite() && lr > 0.0) {
        bail!("--learning-rate {lr}: the learning rate must be a finite number above 0");
    }
    let clip = args.grad_clip;
    if !(clip.is_finite() && clip >= 0.0) {
        bail!("--grad-clip {clip}: the clip must be a finite number >= 0 (0 turns clipping off)");
    }
    let beta = args.beta.unwrap_or(defaults().beta);
    if !(beta.is_finite() && beta > 0.0) {
        bail!("--beta {beta}: DPO's beta must be a finite number above 0");
    }
    let method = match trains {
        DpoBase::Full => Method::Full,
        DpoBase::LastBlock => Method::LastBlock,
        DpoBase::Lora => {
            let default = LoraConfig::default();
            let config = LoraConfig {
                r: args.rank.unwrap_or(default.r),
                alpha: args.alpha.unwrap_or(default.alpha),
                target_modules: args
                    .target_modules
                    .clone()
                    .unwrap_or(default.target_modules),
                trainable_tokens: Vec::new(),
            };
            config.validate().map_err(|e| {
                let flag = match &e {
                    LoraError::ZeroRank => format!("--rank {}", config.r),
                    LoraError::BadAlpha { alpha } => format!("--alpha {alpha}"),
                    _ => format!("--target-modules {}", config.target_modules.join(",")),
                };
                err!("{flag}: {e}")
            })?;
            Method::Lora(config)
        }
    };
    let loss_on = match args.loss_on {
        Some(LossOnArg::All) => LossOn::All,
        _ => LossOn::Response,
    };
    Ok(Plan {
        method,
        objective: if dpo {
            Objective::Dpo
        } else {
            Objective::Instructions
        },
        config: FinetuneConfig {
            steps: args.steps,
            batch_size: args.batch_size,
            learning_rate: lr,
            grad_clip: clip,
            loss_on,
            beta,
            seed: args.seed,
        },
        end_token: !args.no_end_token,
        train_end_token: args.train_end_token,
        log_interval: args.log_interval.max(1),
    })
}

/// What `--out` holds before the run.
enum Before {
    /// Nothing: the run creates it.
    Nothing,
    /// An empty folder, which the adapter's folder replaces.
    EmptyFolder,
    /// A file, to be recognised as a checkpoint before it is replaced.
    File,
    /// A folder holding an adapter and nothing else.
    Adapter,
}

/// Loads the checkpoint `--base` names.
fn load_base(path: &Path) -> Result<Checkpoint> {
    checkpoint::load(path).map_err(|e| err!("--base: {e}"))
}

/// Checks that the checkpoint at `out` may be replaced by a model of
/// `base`'s shape and tokenizer: only with `--overwrite`, and only a
/// checkpoint of the same model.
fn check_replaceable(out: &Path, base: &Checkpoint, overwrite: bool) -> Result<()> {
    let shown = out.display();
    let old = checkpoint::load(out).map_err(|e| {
        err!(
            "--out {shown} exists and is not a checkpoint this program can read ({e}); \
             refusing to replace it: choose another --out"
        )
    })?;
    if !overwrite {
        bail!(
            "--out {shown} already holds a checkpoint ({}); add --overwrite to replace it, or \
             choose another --out",
            describe(&old)
        );
    }
    if old.gpt.config() != base.gpt.config()
        || old.tokenizer.to_text()? != base.tokenizer.to_text()?
    {
        bail!(
            "--overwrite: {shown} holds a different model ({}) from --base's; --overwrite \
             replaces only a checkpoint of the base's model and tokenizer: delete it yourself \
             or choose another --out",
            describe(&old)
        );
    }
    Ok(())
}

/// What an adapter folder at `out` holding `names` means for this run.
fn adapter_folder(out: &Path, names: &[String], overwrite: bool) -> Result<Before> {
    let shown = out.display();
    if names.is_empty() {
        return Ok(Before::EmptyFolder);
    }
    let ours = [CONFIG_FILE, WEIGHTS_FILE];
    let others: Vec<&str> = (names.iter().map(String::as_str))
        .filter(|n| !ours.contains(n))
        .collect();
    if !others.is_empty() || !names.iter().any(|n| n == CONFIG_FILE) {
        let mut shown_names = others
            .iter()
            .take(5)
            .copied()
            .collect::<Vec<_>>()
            .join(", ");
        if others.len() > 5 {
            shown_names.push_str(", ...");
        }
        if others.is_empty() {
            shown_names = names.join(", ");
        }
        bail!(
            "--out {shown} is a folder holding files that are not an adapter ({shown_names}); \
             refusing to write into it: give a new folder, an empty one, or one holding only \
             {CONFIG_FILE} and {WEIGHTS_FILE}"
        );
    }
    if !overwrite {
        bail!(
            "--out {shown} already holds an adapter; add --overwrite to replace it, or choose \
             another --out"
        );
    }
    Ok(Before::Adapter)
}

/// What is on disk at `out` after a failed or stopped run: as before.
fn on_disk(out: &Path, before: &Before) -> String {
    let shown = out.display();
    match before {
        Before::Nothing => format!("nothing was written: {shown} was not created"),
        _ => format!("{shown} is unchanged"),
    }
}

/// The file's non-blank lines, by number from 1: record `i` (from 0) is on
/// line `lines[i]` (`read_jsonl` skips blank lines).
fn record_lines(text: &str) -> Vec<usize> {
    (text.lines().enumerate())
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, _)| i + 1)
        .collect()
}

/// The records of a data file.
enum Records {
    Instructions(Vec<Instruction>),
    Pairs(Vec<Preference>),
}

/// The records of `text` for `objective`, or an error naming the line, with
/// a hint when the records are of the other kind.
fn read_records(text: &str, data: &str, objective: Objective) -> Result<Records> {
    match objective {
        Objective::Instructions => read_jsonl::<Instruction>(text)
            .map(Records::Instructions)
            .map_err(|e| {
                let hint = match read_jsonl::<Preference>(text) {
                    Ok(_) => {
                        "; these are preference records (prompt, chosen, rejected): train on \
                         them with --method dpo"
                    }
                    Err(_) => "",
                };
                err!("--data {data}: {e}{hint}")
            }),
        Objective::Dpo => read_jsonl::<Preference>(text)
            .map(Records::Pairs)
            .map_err(|e| {
                let hint = match read_jsonl::<Instruction>(text) {
                    Ok(_) => {
                        "; these are instruction records (prompt, response), and --method dpo \
                         needs preference records: {\"prompt\", \"chosen\", \"rejected\"}"
                    }
                    Err(_) => "",
                };
                err!("--data {data}: {e}{hint}")
            }),
    }
}

/// A data error, with the line of the record it names.
fn data_error(e: DataError, data: &str, lines: &[usize]) -> CliError {
    let line = match &e {
        DataError::TooLong { record, .. } | DataError::Encode { record, .. } => {
            lines.get(record.wrapping_sub(1)).copied()
        }
        _ => None,
    };
    match line {
        Some(line) => err!("--data {data}, line {line}: {e}"),
        None => err!("--data {data}: {e}"),
    }
}

/// Encodes preference records as pairs, refusing any response that does not
/// fit the context (`block_size + 1` tokens with its prompt).
fn encode_pairs(
    tokenizer: &TextTokenizer,
    records: &[Preference],
    end_token: bool,
    block_size: usize,
    data: &str,
    lines: &[usize],
) -> Result<Vec<EncodedPair>> {
    let mut pairs = Vec::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        let record = i + 1;
        let encode = |response: &str, which: &str| {
            let e = encode_chat(tokenizer, &r.prompt, response, end_token).map_err(|e| match e {
                DataError::Encode { message, .. } => DataError::Encode { record, message },
                other => other,
            });
            let e = e.and_then(|e| match e.ids.len() > block_size + 1 {
                true => Err(DataError::TooLong {
                    record,
                    tokens: e.ids.len(),
                    limit: block_size + 1,
                }),
                false => Ok(e),
            });
            e.map_err(|e| {
                let e = data_error(e, data, lines);
                err!("{e} (with its {which} response)")
            })
        };
        pairs.push(EncodedPair {
            chosen: encode(&r.chosen, "chosen")?,
            rejected: encode(&r.rejected, "rejected")?,
        });
    }
    Ok(pairs)
}

/// The data, encoded.
enum Examples {
    Instructions(Vec<Encoded>),
    Pairs(Vec<EncodedPair>),
}

impl Examples {
    /// Every sequence the model reads (a pair's two).
    fn sequences(&self) -> Vec<&Encoded> {
        match self {
            Examples::Instructions(e) => e.iter().collect(),
            Examples::Pairs(p) => p.iter().flat_map(|p| [&p.chosen, &p.rejected]).collect(),
        }
    }

    fn len(&self) -> usize {
        match self {
            Examples::Instructions(e) => e.len(),
            Examples::Pairs(p) => p.len(),
        }
    }
}

/// How many of `values` are NaN or infinite.
fn non_finite<'a>(values: impl Iterator<Item = &'a [f32]>) -> usize {
    values.flatten().filter(|v| !v.is_finite()).count()
}

/// A progress bar on a terminal; plain lines otherwise.
fn progress_bar(steps: usize) -> Option<indicatif::ProgressBar> {
    std::io::IsTerminal::is_terminal(&std::io::stdout()).then(|| {
        let bar = indicatif::ProgressBar::new(steps as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} [{elapsed} < {eta}] {msg}",
            )
            .expect("a valid template"),
        );
        bar
    })
}

/// Ends the process after Ctrl-C (called between two steps, when nothing is
/// being written): says so, removes the lock, exits with 130.
fn stop_interrupted(
    step: usize,
    bar: &Option<indicatif::ProgressBar>,
    lock: &mut Option<OutputLock>,
    on_disk: &str,
) -> ! {
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    eprintln!("error: interrupted at step {}\n{on_disk}", step + 1);
    drop(lock.take());
    std::process::exit(130)
}

/// `listings finetune`.
pub fn finetune(args: &FinetuneArgs) -> Result<()> {
    let plan = plan(args)?;
    let out = &args.out;
    let shown = out.display();
    let base_path = args.base.to_string_lossy().into_owned();
    let inputs = [
        ("--base", base_path.as_str()),
        ("--data", args.data.as_str()),
    ];
    // A file, or for an adapter a folder (whose files are looked at once
    // the lock is held): is something there?
    let existing = match plan.writes_adapter() {
        false => guard::check_output(out, "--out", &inputs)?,
        true => match guard::check_output_folder(out, "--out", &inputs)? {
            None => Existing::Nothing,
            Some(_) => Existing::File,
        },
    };
    let mut lock = Some(guard::lock(out, "--out")?);
    for (name, size) in guard::remove_stale_temporaries(out) {
        say(
            &None,
            &format!("removed {name} ({size} bytes), left by an interrupted save"),
        );
    }
    let base = load_base(&args.base)?;
    let before = match (existing, plan.writes_adapter()) {
        (Existing::Nothing, _) => Before::Nothing,
        (Existing::File, false) => {
            check_replaceable(out, &base, args.overwrite)?;
            Before::File
        }
        (Existing::File, true) => {
            // The folder, listed again now that no other run writes it.
            let names = guard::check_output_folder(out, "--out", &inputs)?.unwrap_or_default();
            adapter_folder(out, &names, args.overwrite)?
        }
    };
    let on_disk = on_disk(out, &before);

    // The data: every record read and encoded before the first step.
    let bytes = read_input(&args.data)?;
    let text = as_text(&bytes, &args.data)?;
    let records = read_records(text, &args.data, plan.objective)?;
    let lines = record_lines(text);
    let tokenizer = &base.tokenizer;
    let end = end_of_turn(tokenizer);
    if plan.end_token
        && let Err(e) = &end
    {
        bail!(
            "--base {}: {e}; fine-tune a model trained with a BPE tokenizer (`listings train \
             --tokenizer bpe`, or a tokenizer file from `listings train-tokenizer`), or add \
             --no-end-token (the model then never learns where a response ends)",
            args.base.display()
        );
    }
    // Padding is never attended to nor counted: any id will do.
    let pad = end.unwrap_or(0);
    let model = *base.gpt.config();
    let examples = match &records {
        Records::Instructions(r) => Examples::Instructions(
            encode_all(tokenizer, r, plan.end_token, model.block_size)
                .map_err(|e| data_error(e, &args.data, &lines))?,
        ),
        Records::Pairs(r) => Examples::Pairs(encode_pairs(
            tokenizer,
            r,
            plan.end_token,
            model.block_size,
            &args.data,
            &lines,
        )?),
    };
    let sequences = examples.sequences();
    let tokens: usize = sequences.iter().map(|e| e.ids.len()).sum();
    let longest = sequences.iter().map(|e| e.ids.len()).max().unwrap_or(0);
    let kind = match &examples {
        Examples::Instructions(_) => "instruction records",
        Examples::Pairs(_) => "preference pairs",
    };
    say(
        &None,
        &format!(
            "{} {kind} from {}: {tokens} tokens in the chat template, the longest {longest} of \
             the {} the model reads",
            examples.len(),
            args.data,
            model.block_size + 1
        ),
    );

    let cfg = &plan.config;
    let adamw = AdamWConfig {
        lr: cfg.learning_rate,
        ..AdamWConfig::default()
    };
    // DPO's reference: the base's log-probabilities, before any change.
    let reference = match &examples {
        Examples::Pairs(pairs) => Some(reference_logprobs(&base.gpt, pairs, pad)?),
        Examples::Instructions(_) => None,
    };
    // The loss before and after, on the first records (a few forward
    // passes: cheap beside the run).
    let evaluated = match &examples {
        Examples::Instructions(e) => &e[..e.len().min(EVAL_RECORDS)],
        Examples::Pairs(_) => &[],
    };
    let loss_before = match evaluated.is_empty() {
        false => Some(mean_loss(&base.gpt, evaluated, cfg.loss_on, pad)?),
        true => None,
    };
    let mut method = plan.method.clone();
    if let (true, Method::Lora(c)) = (plan.train_end_token, &mut method) {
        c.trainable_tokens = vec![pad]; // the end-of-turn id: checked above
    }
    let mut tuner = FineTuner::new(base.gpt.clone(), method, adamw, cfg.seed)?;
    let total = base.gpt.num_parameters();
    let what = match &plan.method {
        Method::Lora(c) => {
            let lora = tuner.lora().expect("a LoRA tuner has adapters");
            let rows = match lora.config.trainable_tokens.is_empty() {
                true => "",
                false => ", and the embedding row of <|endoftext|>",
            };
            format!(
                "LoRA adapters (rank {}, alpha {}, {} layers: {}){rows}",
                c.r,
                c.alpha,
                lora.layers.len(),
                c.target_modules.join(", ")
            )
        }
        Method::LastBlock => "the last block and ln_f".to_string(),
        _ => "every weight".to_string(),
    };
    let objective = match plan.objective {
        Objective::Dpo => format!("DPO (beta {})", cfg.beta),
        Objective::Instructions => match cfg.loss_on {
            LossOn::Response => "the loss on the responses".to_string(),
            LossOn::All => "the loss on every token".to_string(),
        },
    };
    say(
        &None,
        &format!(
            "training {what}: {} of the model's {total} parameters, on {objective}; {} steps of \
             {} at learning rate {:e}",
            tuner.trainable_parameters(),
            cfg.steps,
            cfg.batch_size.min(examples.len()),
            cfg.learning_rate
        ),
    );

    guard::catch_interrupts()?;
    let bar = progress_bar(cfg.steps);
    let last = cfg.steps - 1;
    let logged = |step: usize| step.is_multiple_of(plan.log_interval) || step == last;
    let start = Instant::now();
    let mut tick = Instant::now();
    let mut ms = || {
        let now = Instant::now();
        let ms = (now - tick).as_secs_f64() * 1e3;
        tick = now;
        ms
    };
    let result: std::result::Result<(), TrainError> = match &examples {
        Examples::Instructions(e) => {
            train_instructions(&mut tuner, e, cfg, pad, |step, loss, _| {
                let ms = ms();
                if let Some(bar) = &bar {
                    bar.set_position(step as u64 + 1);
                    bar.set_message(format!("loss {loss:.4}"));
                }
                if logged(step) {
                    say(
                        &bar,
                        &format!("step {step}: loss {loss:.4}, time {ms:.1} ms"),
                    );
                }
                if guard::interrupted() {
                    stop_interrupted(step, &bar, &mut lock, &on_disk);
                }
            })
            .map(|_| ())
        }
        Examples::Pairs(pairs) => {
            let reference = reference.as_deref().expect("computed for pairs");
            train_dpo(&mut tuner, pairs, reference, cfg, pad, |step, s, _| {
                let ms = ms();
                if let Some(bar) = &bar {
                    bar.set_position(step as u64 + 1);
                    bar.set_message(format!("loss {:.4}", s.loss));
                }
                if logged(step) {
                    say(
                        &bar,
                        &format!(
                            "step {step}: loss {:.4}, margin {:.4}, accuracy {:.2}, time {ms:.1} ms",
                            s.loss, s.margin, s.accuracy
                        ),
                    );
                }
                if guard::interrupted() {
                    stop_interrupted(step, &bar, &mut lock, &on_disk);
                }
            })
            .map(|_| ())
        }
    };
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    result.map_err(|e| err!("{e}\n{on_disk}"))?;
    let seconds = start.elapsed().as_secs_f64();
    // The last update can overflow the weights (or for LoRA the adapters,
    // or the merged weights) without any loss showing it.
    let bad = non_finite(tuner.gpt().params().slices().map(|(s, _)| s))
        + tuner.lora().map_or(0, |lora| non_finite(lora.slices()));
    if bad > 0 {
        bail!(
            "after the last step {bad} of the trained numbers are NaN or infinite: training has \
             diverged (learning rate {:e}); try a lower --learning-rate\n{on_disk}",
            cfg.learning_rate
        );
    }
    say(
        &None,
        &format!(
            "fine-tuned {} steps in {seconds:.1} s ({:.1} ms per step)",
            cfg.steps,
            seconds * 1e3 / cfg.steps as f64
        ),
    );
    if let Some(before) = loss_before {
        let after = mean_loss(tuner.gpt(), evaluated, cfg.loss_on, pad)?;
        let which = match evaluated.len() == examples.len() {
            true => "the data".to_string(),
            false => format!("the first {} records", evaluated.len()),
        };
        say(
            &None,
            &format!("mean loss on {which}: {before:.4} before, {after:.4} after"),
        );
    }

    match tuner.lora() {
        Some(lora) => {
            save_adapter_folder(
                out,
                lora,
                &base.gpt,
                &base_path,
                matches!(before, Before::Adapter),
            )
            .map_err(|e| err!("{e}\n{on_disk}"))?;
            say(
                &None,
                &format!(
                    "saved the LoRA adapter to {shown} ({CONFIG_FILE} and {WEIGHTS_FILE}: {} \
                     layers, {} parameters, in Hugging Face PEFT's format); `listings merge-lora \
                     --base {} --adapter {shown} --out FILE` folds it into a checkpoint",
                    lora.layers.len(),
                    lora.num_parameters(),
                    args.base.display()
                ),
            );
        }
        None => {
            let mut hparams = BTreeMap::new();
            let fingerprint = Fingerprint::of(&bytes);
            for (key, value) in [
                ("finetune_base", base_path.clone()),
                ("finetune_method", plan.method.name().to_string()),
                (
                    "finetune_objective",
                    match plan.objective {
                        Objective::Dpo => "dpo".to_string(),
                        Objective::Instructions => "instructions".to_string(),
                    },
                ),
                ("finetune_steps", cfg.steps.to_string()),
                ("finetune_batch_size", cfg.batch_size.to_string()),
                ("finetune_learning_rate", cfg.learning_rate.to_string()),
                ("finetune_seed", cfg.seed.to_string()),
                ("finetune_data_bytes", fingerprint.bytes.to_string()),
                ("finetune_data_fnv1a64", fingerprint.fnv1a64.clone()),
            ] {
                hparams.insert(key.to_string(), value);
            }
            let step = base.step + cfg.steps as u64;
            checkpoint::save(out, tuner.gpt(), tokenizer, None, step, &hparams)
                .map_err(|e| err!("{e}\n{on_disk}"))?;
            say(
                &None,
                &format!(
                    "saved the fine-tuned model to {shown}: a checkpoint with the base's \
                     tokenizer (sample it with a prompt \"User: ...\\nAssistant:\")"
                ),
            );
        }
    }
    drop(lock);
    Ok(())
}

/// Writes the adapter to a temporary folder beside `out`, then renames it
/// into place; with `replace`, the adapter at `out` is first moved aside
/// (to `.NAME.PID.old`, put back if the rename fails) and removed after.
fn save_adapter_folder(
    out: &Path,
    lora: &Lora,
    base: &Gpt,
    base_name: &str,
    replace: bool,
) -> Result<()> {
    let shown = out.display();
    let name = out
        .file_name()
        .ok_or_else(|| err!("--out {shown}: the path names no folder"))?
        .to_string_lossy()
        .into_owned();
    let pid = std::process::id();
    let tmp: PathBuf = out.with_file_name(format!(".{name}.{pid}.tmp"));
    let _ = fs::remove_dir_all(&tmp);
    let fail = |e: &dyn std::fmt::Display| {
        let _ = fs::remove_dir_all(&tmp);
        err!("cannot write the adapter to {shown}: {e}")
    };
    peft::save_adapter(&tmp, lora, base, Some(base_name)).map_err(|e| fail(&e))?;
    if replace {
        let aside = out.with_file_name(format!(".{name}.{pid}.old"));
        fs::rename(out, &aside).map_err(|e| fail(&e))?;
        if let Err(e) = fs::rename(&tmp, out) {
            let _ = fs::rename(&aside, out);
            return Err(fail(&e));
        }
        let _ = fs::remove_dir_all(&aside);
    } else {
        // Onto nothing, or onto an empty folder (which rename replaces).
        fs::rename(&tmp, out).map_err(|e| fail(&e))?;
    }
    Ok(())
}

/// `listings merge-lora`: the base with the adapter folded into its
/// weights, saved as an ordinary checkpoint.
pub fn merge_lora(args: &MergeLoraArgs) -> Result<()> {
    let out = &args.out;
    let shown = out.display();
    let base_path = args.base.to_string_lossy().into_owned();
    let adapter_files =
        [CONFIG_FILE, WEIGHTS_FILE].map(|f| args.adapter.join(f).to_string_lossy().into_owned());
    let inputs = [
        ("--base", base_path.as_str()),
        ("--adapter", adapter_files[0].as_str()),
        ("--adapter", adapter_files[1].as_str()),
    ];
    let existing = guard::check_output(out, "--out", &inputs)?;
    let _lock = guard::lock(out, "--out")?;
    for (name, size) in guard::remove_stale_temporaries(out) {
        say(
            &None,
            &format!("removed {name} ({size} bytes), left by an interrupted save"),
        );
    }
    let base = load_base(&args.base)?;
    let before = match existing {
        Existing::Nothing => Before::Nothing,
        Existing::File => {
            check_replaceable(out, &base, args.overwrite)?;
            Before::File
        }
    };
    if !args.adapter.is_dir() {
        bail!(
            "--adapter {}: there is no folder there (an adapter is a folder holding {CONFIG_FILE} \
             and {WEIGHTS_FILE}, as `listings finetune --method lora` writes)",
            args.adapter.display()
        );
    }
    let lora = peft::load_adapter(&args.adapter, &base.gpt)
        .map_err(|e| err!("--adapter {}: {e}", args.adapter.display()))?;
    let merged: GptParams = lora.merged(base.gpt.params());
    let gpt = Gpt::from_params(*base.gpt.config(), merged)?;
    let bad = non_finite(gpt.params().slices().map(|(s, _)| s));
    if bad > 0 {
        bail!(
            "--adapter {}: the merged weights hold {bad} values that are NaN or infinite; the \
             adapter was saved from a run that diverged\n{}",
            args.adapter.display(),
            on_disk(out, &before)
        );
    }
    let changed: usize = (lora.layers.iter())
        .map(|l| {
            let (n_in, n_out) = l.module.shape(base.gpt.config().n_embd);
            n_in * n_out
        })
        .sum::<usize>()
        + lora.token_delta.len();
    let mut modules: Vec<String> = Vec::new();
    for l in &lora.layers {
        if !modules.iter().any(|m| m == l.module.name()) {
            modules.push(l.module.name().to_string());
        }
    }
    let tokens = &lora.config.trainable_tokens;
    if !tokens.is_empty() {
        modules.push(format!("the embedding rows of tokens {tokens:?}"));
    }
    let hparams = BTreeMap::from([
        ("merged_base".to_string(), base_path.clone()),
        (
            "merged_adapter".to_string(),
            args.adapter.to_string_lossy().into_owned(),
        ),
        ("lora_r".to_string(), lora.config.r.to_string()),
        ("lora_alpha".to_string(), lora.config.alpha.to_string()),
    ]);
    checkpoint::save(out, &gpt, &base.tokenizer, None, base.step, &hparams)
        .map_err(|e| err!("{e}\n{}", on_disk(out, &before)))?;
    say(
        &None,
        &format!(
            "merged {} adapted layers ({}; rank {}, alpha {}, scale {}) into the weights of {}: \
             {changed} weights changed, from {} adapter parameters",
            lora.layers.len(),
            modules.join(", "),
            lora.config.r,
            lora.config.alpha,
            lora.config.scale(),
            args.base.display(),
            lora.num_parameters()
        ),
    );
    say(
        &None,
        &format!("saved the merged model to {shown}: a checkpoint with the base's tokenizer"),
    );
    Ok(())
}
