//! `listings`: the book's code on your own text, from the command line.
//!
//! ```text
//! listings tokenize --encoding cl100k_base notes.txt      # token ids
//! listings tokenize --encoding o200k_base --count -        # count stdin's tokens
//! echo 9906 1917 | listings tokenize -e cl100k_base --decode
//! listings train-tokenizer corpus.txt --vocab-size 1024 -o my.bpe
//! listings tokenize --encoding my.bpe notes.txt
//! listings corpus > corpus.txt                             # the book's text
//! listings train --data input.txt --out ckpt.safetensors --n-layer 4 --n-head 4 \\
//!     --n-embd 128 --block-size 64 --batch-size 12 --max-iters 2000 --lr-decay-iters 2000
//! listings sample --checkpoint ckpt.safetensors --prompt "Once upon a time"
//! listings eval --checkpoint ckpt.safetensors --data input.txt
//! ```
//!
//! Errors go to standard error, with exit code 1.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod error;

use clap::{Args, Parser, Subcommand};
use error::{Context, Result, bail, err};
use listings::checkpoint;
use listings::model::{Gpt, GptConfig};
use listings::sample::{SampleConfig, sample_text};
use listings::tokens::{
    BOOK_VOCAB_SIZE, Encoding, Tokenizer, train_book_tokenizer, train_with_endoftext,
};
use listings::tokens::{CharVocab, TextTokenizer};
use listings::train::batches::{TokenData, evaluate_text};
use listings::train::run::{Event, TrainConfig, run, split};
use listings::train::step::Trainer;

/// The small GPT of "Build Your Own AI", from the command line.
#[derive(Parser)]
#[command(name = "listings", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Turn text into token ids, or token ids back into text.
    Tokenize(TokenizeArgs),
    /// Train a byte-level BPE tokenizer on a text and save it.
    TrainTokenizer(TrainTokenizerArgs),
    /// Print the book's generated corpus (about 1.2 MB), to train on.
    Corpus,
    /// Train a GPT on a text file and save it as a checkpoint.
    Train(Box<TrainArgs>),
    /// Continue a prompt with a trained model.
    Sample(SampleArgs),
    /// Print a model's mean loss (cross-entropy) over every window of
    /// block_size + 1 tokens of a text file.
    Eval(EvalArgs),
}

/// `--checkpoint`: a model saved by `train`.
#[derive(Args)]
struct CheckpointArg {
    /// The checkpoint file (safetensors, written by `listings train`).
    #[arg(long)]
    checkpoint: PathBuf,
}

/// `--data`: the text a command reads.
#[derive(Args)]
struct DataArg {
    /// A UTF-8 text file, or `-` for standard input.
    #[arg(long)]
    data: String,
}

/// How to sample; the defaults are nanoGPT's `sample.py`. (Without the seed,
/// so that a command with a `--seed` of its own can use these too.)
#[derive(Args)]
struct SamplingArgs {
    /// The text to continue; `\n` and `\t` stand for a newline and a tab
    /// (nanoGPT starts from a newline).
    #[arg(long, default_value = "\\n")]
    prompt: String,
    /// How many tokens to add.
    #[arg(long, default_value_t = 500)]
    max_new_tokens: usize,
    /// 0 always takes the most likely token; below 1 is safer, above 1 wilder.
    #[arg(long, default_value_t = 0.8, allow_negative_numbers = true)]
    temperature: f32,
    /// Draw only among the K most likely tokens (K at least the vocabulary
    /// size keeps them all).
    #[arg(long, default_value_t = 200)]
    top_k: usize,
}

impl SamplingArgs {
    /// The library's settings, with `seed`.
    fn config(&self, seed: u64) -> SampleConfig {
        SampleConfig {
            max_new_tokens: self.max_new_tokens,
            temperature: self.temperature,
            top_k: Some(self.top_k),
            seed,
        }
    }

    /// The prompt, with the two-character escapes `\n` and `\t` turned
    /// into a newline and a tab (so `--prompt 'ROMEO:\n'` works in any shell).
    fn prompt(&self) -> String {
        self.prompt.replace("\\n", "\n").replace("\\t", "\t")
    }
}

#[derive(Args)]
struct SampleArgs {
    #[command(flatten)]
    checkpoint: CheckpointArg,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// Seeds the draws: the same seed gives the same text.
    #[arg(long, default_value_t = 1337)]
    seed: u64,
}

#[derive(Args)]
struct EvalArgs {
    #[command(flatten)]
    checkpoint: CheckpointArg,
    #[command(flatten)]
    data: DataArg,
}

#[derive(Args)]
struct TokenizeArgs {
    /// r50k_base, cl100k_base, o200k_base, book (the book's own tokenizer),
    /// or the path of a file saved by `train-tokenizer`.
    #[arg(long, short)]
    encoding: String,
    /// The input, read as one text; `-` for standard input.
    #[arg(default_value = "-")]
    input: String,
    /// Print only the number of tokens.
    #[arg(long, conflicts_with = "decode")]
    count: bool,
    /// Read whitespace-separated token ids and print the text they stand for.
    #[arg(long)]
    decode: bool,
    /// Treat special tokens such as <|endoftext|> as single tokens (by
    /// default they are plain text).
    #[arg(long, conflicts_with = "decode")]
    special: bool,
}

#[derive(Args)]
struct TrainTokenizerArgs {
    /// The text to train on, or `-` for standard input; the book's corpus
    /// (its first 90%) if omitted.
    input: Option<String>,
    /// The number of token ids, the 256 bytes and <|endoftext|> included.
    #[arg(long, default_value_t = BOOK_VOCAB_SIZE)]
    vocab_size: usize,
    /// Where to save the tokenizer.
    #[arg(long, short)]
    output: PathBuf,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout and succeed; usage errors fail.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let result = match cli.command {
        Command::Tokenize(args) => tokenize(&args),
        Command::TrainTokenizer(args) => train_tokenizer(&args),
        Command::Corpus => write_stdout(listings::corpus::corpus().as_bytes()),
        Command::Train(args) => train(&args),
        Command::Sample(args) => sample(&args),
        Command::Eval(args) => eval(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `listings tokenize`.
fn tokenize(args: &TokenizeArgs) -> Result<()> {
    let tokenizer = load_encoding(&args.encoding)?;
    let bytes = read_input(&args.input)?;
    let text = as_text(&bytes, &args.input)?;
    if args.decode {
        let ids = parse_ids(text, &args.input)?;
        let decoded = tokenizer
            .decode_bytes(&ids)
            .with_context(|| format!("cannot decode with {}", args.encoding))?;
        return write_stdout(&decoded);
    }
    let ids = if args.special {
        tokenizer.encode_with_special(text)
    } else {
        tokenizer.encode(text)
    };
    let out = if args.count {
        format!("{}\n", ids.len())
    } else if ids.is_empty() {
        String::new()
    } else {
        let words: Vec<String> = ids.iter().map(u32::to_string).collect();
        words.join(" ") + "\n"
    };
    write_stdout(out.as_bytes())
}

/// `listings train`: the flags and defaults of nanoGPT's
/// `config/train_shakespeare_char.py` (no dropout: the book's model has none).
#[derive(Args)]
struct TrainArgs {
    #[command(flatten)]
    data: DataArg,
    /// Where to write the checkpoint (written whenever the validation loss
    /// improves; `--resume` continues from it).
    #[arg(long)]
    out: PathBuf,
    /// `char` (the sorted distinct characters of the text, as nanoGPT's
    /// prepare.py), `bpe` (the book's own tokenizer), or the path
    /// of a tokenizer file saved by `train-tokenizer`.
    #[arg(long, default_value = "char")]
    tokenizer: String,
    /// Continue the run saved at `--out`, with its optimiser state.
    #[arg(long)]
    resume: bool,
    /// Transformer blocks.
    #[arg(long, default_value_t = 6)]
    n_layer: usize,
    /// Attention heads per block.
    #[arg(long, default_value_t = 6)]
    n_head: usize,
    /// Width of each token's vector.
    #[arg(long, default_value_t = 384)]
    n_embd: usize,
    /// Context length: tokens per training sequence.
    #[arg(long, default_value_t = 256)]
    block_size: usize,
    /// Sequences per batch.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Updates in all.
    #[arg(long, default_value_t = 5000)]
    max_iters: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 1e-3)]
    learning_rate: f32,
    /// Final learning rate.
    #[arg(long, default_value_t = 1e-4)]
    min_lr: f32,
    /// Steps of linear warm-up.
    #[arg(long, default_value_t = 100)]
    warmup_iters: usize,
    /// Step at which the cosine decay reaches --min-lr.
    #[arg(long, default_value_t = 5000)]
    lr_decay_iters: usize,
    /// AdamW weight decay (on weight matrices and embeddings).
    #[arg(long, default_value_t = 0.1)]
    weight_decay: f32,
    /// AdamW beta1.
    #[arg(long, default_value_t = 0.9)]
    beta1: f32,
    /// AdamW beta2.
    #[arg(long, default_value_t = 0.99)]
    beta2: f32,
    /// Clip the gradients' global norm to this; 0 turns clipping off.
    #[arg(long, default_value_t = 1.0)]
    grad_clip: f32,
    /// Evaluate on both splits every this many steps.
    #[arg(long, default_value_t = 250)]
    eval_interval: usize,
    /// Batches per evaluation.
    #[arg(long, default_value_t = 200)]
    eval_iters: usize,
    /// Print the training loss every this many steps.
    #[arg(long, default_value_t = 10)]
    log_interval: usize,
    /// Seeds the weights and the batches.
    #[arg(long, default_value_t = 1337)]
    seed: u64,
}

impl TrainArgs {
    fn train_config(&self) -> TrainConfig {
        TrainConfig {
            batch_size: self.batch_size,
            block_size: self.block_size,
            max_iters: self.max_iters,
            learning_rate: self.learning_rate,
            min_lr: self.min_lr,
            warmup_iters: self.warmup_iters,
            lr_decay_iters: self.lr_decay_iters,
            weight_decay: self.weight_decay,
            beta1: self.beta1,
            beta2: self.beta2,
            grad_clip: self.grad_clip,
            eval_interval: self.eval_interval,
            eval_iters: self.eval_iters,
            log_interval: self.log_interval.max(1),
            seed: self.seed,
        }
    }

    fn text_tokenizer(&self, text: &str) -> Result<TextTokenizer> {
        Ok(match self.tokenizer.as_str() {
            "char" => TextTokenizer::Char(CharVocab::from_text(text)?),
            "bpe" => TextTokenizer::Bpe(listings::tokens::book_tokenizer().clone()),
            path => TextTokenizer::Bpe(Tokenizer::load(path).with_context(|| {
                format!("--tokenizer {path}: expected char, bpe, or a tokenizer file")
            })?),
        })
    }
}

/// `listings train`: prints nanoGPT's `step N: train loss X, val loss Y`
/// and `iter N: loss X, time Z ms` lines, with a progress bar on a terminal.
fn train(args: &TrainArgs) -> Result<()> {
    let bytes = read_input(&args.data.data)?;
    let text = as_text(&bytes, &args.data.data)?;
    let cfg = args.train_config();
    let (mut trainer, tokenizer) = if args.resume {
        let ckpt = checkpoint::load(&args.out).context("--resume")?;
        let optimizer = ckpt.optimizer.ok_or_else(|| {
            err!(
                "--resume: {} holds no optimiser state to resume from",
                args.out.display()
            )
        })?;
        (Trainer::from_parts(ckpt.gpt, optimizer)?, ckpt.tokenizer)
    } else {
        let tokenizer = args.text_tokenizer(text)?;
        let model = GptConfig {
            vocab_size: tokenizer.vocab_size(),
            block_size: args.block_size,
            n_layer: args.n_layer,
            n_head: args.n_head,
            n_embd: args.n_embd,
        };
        model.validate()?;
        cfg.validate(&model)?;
        let adamw = cfg.adamw();
        let gpt = Gpt::new(model, args.seed)?;
        (
            Trainer::new(gpt, adamw, cfg.batch_size, cfg.block_size)?,
            tokenizer,
        )
    };
    cfg.validate(trainer.gpt().config())?;
    let tokens = TokenData::from_text(text, &tokenizer)?;
    let data = split(&tokens, cfg.block_size)?;
    let model = *trainer.gpt().config();
    println!(
        "{} tokens ({} train, {} val), vocabulary {} ({}); {} parameters",
        tokens.len(),
        data.train.len(),
        data.val.len(),
        tokenizer.vocab_size(),
        tokenizer.kind(),
        trainer.gpt().num_parameters()
    );
    let hparams: std::collections::BTreeMap<String, String> = [
        ("batch_size", cfg.batch_size.to_string()),
        ("block_size", cfg.block_size.to_string()),
        ("max_iters", cfg.max_iters.to_string()),
        ("learning_rate", cfg.learning_rate.to_string()),
        ("min_lr", cfg.min_lr.to_string()),
        ("warmup_iters", cfg.warmup_iters.to_string()),
        ("lr_decay_iters", cfg.lr_decay_iters.to_string()),
        ("weight_decay", cfg.weight_decay.to_string()),
        ("grad_clip", cfg.grad_clip.to_string()),
        ("seed", cfg.seed.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let bar = std::io::IsTerminal::is_terminal(&std::io::stdout()).then(|| {
        let bar = indicatif::ProgressBar::new(cfg.max_iters as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} [{elapsed} < {eta}] {msg}",
            )
            .expect("a valid template"),
        );
        bar.set_position(trainer.steps_done());
        bar
    });
    let say = |line: String| match &bar {
        Some(bar) => bar.println(line),
        None => println!("{line}"),
    };
    let mut best_val = f32::INFINITY;
    let start_step = trainer.steps_done();
    let mut saved_at: Option<usize> = None;
    let result = run(&mut trainer, &data, &cfg, |event, trainer| {
        match *event {
            Event::Eval {
                step,
                train_loss,
                val_loss,
            } => {
                say(format!(
                    "step {step}: train loss {train_loss:.4}, val loss {val_loss:.4}"
                ));
                if val_loss < best_val {
                    best_val = val_loss;
                    // The state at the start of the run is a fresh model or
                    // the checkpoint just resumed: nothing new to save.
                    if step as u64 > start_step {
                        checkpoint::save(
                            &args.out,
                            trainer.gpt(),
                            &tokenizer,
                            Some(trainer.optimizer()),
                            step as u64,
                            &hparams,
                        )?;
                        saved_at = Some(step);
                        say(format!("saved checkpoint to {}", args.out.display()));
                    }
                }
            }
            Event::Iter { iter, loss, ms, .. } => {
                if let Some(bar) = &bar {
                    bar.set_position(iter as u64 + 1);
                    bar.set_message(format!("loss {loss:.4}"));
                }
                if iter % cfg.log_interval == 0 {
                    say(format!("iter {iter}: loss {loss:.4}, time {ms:.2} ms"));
                }
            }
        }
        Ok(())
    });
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let history = result.map_err(|e| {
        let kept = match saved_at {
            Some(step) => format!(
                "the checkpoint saved at step {step} is intact at {}",
                args.out.display()
            ),
            None => "no checkpoint was written by this run".to_string(),
        };
        err!("{e}\n{kept}")
    })?;
    if cfg.eval_interval == 0 {
        // Without evaluations there is no best model to keep: save the end.
        let step = trainer.steps_done();
        checkpoint::save(
            &args.out,
            trainer.gpt(),
            &tokenizer,
            Some(trainer.optimizer()),
            step,
            &hparams,
        )?;
        println!("saved checkpoint to {}", args.out.display());
    }
    let steps = history.losses.len();
    println!(
        "trained {steps} steps of {} x {} tokens in {:.1} s ({:.2} ms per step); best val loss {best_val:.4}; model {}-{}-{}",
        cfg.batch_size,
        cfg.block_size,
        history.step_ms / 1e3,
        history.step_ms / steps.max(1) as f64,
        model.n_layer,
        model.n_head,
        model.n_embd,
    );
    Ok(())
}

/// `listings sample`: prints the prompt and its continuation.
fn sample(args: &SampleArgs) -> Result<()> {
    let ckpt = checkpoint::load(&args.checkpoint.checkpoint)?;
    let config = args.sampling.config(args.seed);
    let text = sample_text(&ckpt.gpt, &ckpt.tokenizer, &args.sampling.prompt(), &config)?;
    write_stdout(format!("{text}\n").as_bytes())
}

/// `listings eval`: prints `loss X over N windows of T tokens`.
fn eval(args: &EvalArgs) -> Result<()> {
    let ckpt = checkpoint::load(&args.checkpoint.checkpoint)?;
    let bytes = read_input(&args.data.data)?;
    let text = as_text(&bytes, &args.data.data)?;
    let result = evaluate_text(&ckpt.gpt, &ckpt.tokenizer, text)
        .with_context(|| format!("cannot evaluate on {}", args.data.data))?;
    write_stdout(format!("{result}\n").as_bytes())
}

/// `listings train-tokenizer`.
fn train_tokenizer(args: &TrainTokenizerArgs) -> Result<()> {
    let tokenizer = match &args.input {
        None => train_book_tokenizer(args.vocab_size),
        Some(input) => {
            let bytes = read_input(input)?;
            train_with_endoftext(as_text(&bytes, input)?, args.vocab_size)
        }
    };
    tokenizer.save(&args.output)?;
    eprintln!(
        "saved a tokenizer of {} ids to {}",
        tokenizer.vocab_size(),
        args.output.display()
    );
    Ok(())
}

/// The tokenizer an `--encoding` value names.
fn load_encoding(name: &str) -> Result<Tokenizer> {
    if let Ok(encoding) = name.parse::<Encoding>() {
        return Ok(encoding.tokenizer()?);
    }
    if name == "book" {
        return Ok(train_book_tokenizer(BOOK_VOCAB_SIZE));
    }
    if Path::new(name).exists() {
        return Ok(Tokenizer::load(name)?);
    }
    let names: Vec<&str> = Encoding::ALL.iter().map(|e| e.name()).collect();
    bail!(
        "unknown encoding {name:?}: expected one of {}, book, or the path of a tokenizer file \
         saved by `listings train-tokenizer` (there is no file {name:?})",
        names.join(", ")
    )
}

/// All the bytes of a file, or of standard input for `-`.
fn read_input(input: &str) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    if input == "-" {
        io::stdin()
            .read_to_end(&mut bytes)
            .context("cannot read standard input")?;
    } else {
        bytes = std::fs::read(input).with_context(|| format!("cannot read {input}"))?;
    }
    Ok(bytes)
}

/// The input as text, or an error naming the first byte that is not UTF-8.
fn as_text<'a>(bytes: &'a [u8], input: &str) -> Result<&'a str> {
    std::str::from_utf8(bytes).map_err(|e| {
        let source = if input == "-" { "standard input" } else { input };
        let offset = e.valid_up_to();
        match e.error_len() {
            Some(_) => err!(
                "{source} is not valid UTF-8 text: the byte at offset {offset} (0x{:02x}) is not part of a valid character",
                bytes[offset]
            ),
            None => err!("{source} is not valid UTF-8 text: it ends in the middle of a character at byte offset {offset}"),
        }
    })
}

/// Token ids separated by whitespace.
fn parse_ids(text: &str, input: &str) -> Result<Vec<u32>> {
    let source = if input == "-" {
        "standard input"
    } else {
        input
    };
    text.split_whitespace()
        .enumerate()
        .map(|(i, word)| {
            word.parse().map_err(|_| {
                err!(
                    "{source}: item {} ({word:?}) is not a token id (a whole number)",
                    i + 1
                )
            })
        })
        .collect()
}

/// Writes to standard output; a closed pipe (`| head`) is not an error.
fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut stdout = io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            Err(e).context("cannot write to standard output")
        }
        _ => Ok(()),
    }
}
