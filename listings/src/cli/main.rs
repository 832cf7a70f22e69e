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
//! listings sample --model gpt2/ --prompt "Hello, I'm a language model," --top-p 0.9
//! listings sample --model gpt2/ --prompt "The capital of France is" --beams 4 --max-new-tokens 8
//! listings eval --checkpoint ckpt.safetensors --data input.txt
//! listings eval --model gpt2/ --data input.txt
//! listings finetune --base ckpt.safetensors --data chat.jsonl --method lora --out adapter
//! listings merge-lora --base ckpt.safetensors --adapter adapter --out tuned.safetensors
//! listings export --checkpoint ckpt.safetensors --hf my-gpt/   # for transformers
//! ```
//!
//! Errors go to standard error, with exit code 1 (130 for a run stopped by
//! Ctrl-C). `train`, `train-tokenizer`, `finetune` and `merge-lora` never
//! replace a file they did not make, and `export` never writes into a
//! folder that holds anything (see `guard`).

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod error;
mod export;
mod finetune;
mod guard;
mod sample;
mod train;

use std::collections::BTreeSet;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use error::{Context, Result, bail, err};
use export::ExportArgs;
use finetune::{FinetuneArgs, MergeLoraArgs};
use listings::tokens::{
    BOOK_VOCAB_SIZE, Encoding, Tokenizer, train_book_tokenizer, train_with_endoftext,
};
use sample::{EvalArgs, SampleArgs};
use train::TrainArgs;

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
    /// Continue a prompt with a trained model (a checkpoint, or a Hugging
    /// Face GPT-2 directory), writing each token as it is drawn.
    Sample(SampleArgs),
    /// Print a model's mean loss (cross-entropy) over every window of
    /// block_size + 1 tokens of a text file.
    Eval(EvalArgs),
    /// Fine-tune a checkpoint on instruction or preference records (JSON
    /// Lines): every weight, the last block, LoRA adapters, or DPO.
    Finetune(Box<FinetuneArgs>),
    /// Fold a LoRA adapter into its base checkpoint's weights and save the
    /// result as a checkpoint.
    MergeLora(MergeLoraArgs),
    /// Write a checkpoint as a Hugging Face GPT-2 folder (config, weights
    /// and tokenizer) that transformers loads as it loads GPT-2.
    Export(ExportArgs),
}

/// `--data`: the text a command reads.
#[derive(Args)]
pub(crate) struct DataArg {
    /// A UTF-8 text file, or `-` for standard input.
    #[arg(long)]
    pub(crate) data: String,
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
    /// Where to save the tokenizer: a new file, or with --overwrite a
    /// tokenizer file saved before.
    #[arg(long, short)]
    output: PathBuf,
    /// Replace the tokenizer file at --output.
    #[arg(long)]
    overwrite: bool,
}

fn main() -> ExitCode {
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|matches| Ok((Cli::from_arg_matches(&matches)?, matches)));
    let (cli, matches) = match parsed {
        Ok(parsed) => parsed,
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
        Command::Train(args) => {
            let given = matches
                .subcommand_matches("train")
                .map(given_flags)
                .unwrap_or_default();
            train::train(&args, &given)
        }
        Command::Sample(args) => {
            let given = matches
                .subcommand_matches("sample")
                .map(given_flags)
                .unwrap_or_default();
            sample::sample(&args, &given)
        }
        Command::Eval(args) => sample::eval(&args),
        Command::Finetune(args) => finetune::finetune(&args),
        Command::MergeLora(args) => finetune::merge_lora(&args),
        Command::Export(args) => export::export(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.code())
        }
    }
}

/// The flags given on the command line (by field name), as opposed to
/// those left at their default values.
fn given_flags(matches: &ArgMatches) -> BTreeSet<String> {
    matches
        .ids()
        .filter(|id| matches.value_source(id.as_str()) == Some(ValueSource::CommandLine))
        .map(|id| id.as_str().to_string())
        .collect()
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

/// `listings train-tokenizer`.
fn train_tokenizer(args: &TrainTokenizerArgs) -> Result<()> {
    // 256 byte tokens and <|endoftext|>: fewer ids would be no BPE at all.
    let least = 256 + 1;
    if args.vocab_size < least {
        bail!(
            "--vocab-size {}: a byte-level BPE needs at least {least} ids (the 256 bytes and \
             <|endoftext|>), and each merge adds one",
            args.vocab_size
        );
    }
    let out = &args.output;
    let input = args.input.as_deref().unwrap_or("-");
    let inputs = [("the input", input)];
    if let guard::Existing::File = guard::check_output(out, "--output", &inputs)? {
        if let Err(e) = Tokenizer::load(out) {
            bail!(
                "--output {} exists and is not a tokenizer file ({e}); refusing to replace it: \
                 choose another --output",
                out.display()
            );
        }
        if !args.overwrite {
            bail!(
                "--output {} already holds a tokenizer; add --overwrite to replace it, or choose \
                 another --output",
                out.display()
            );
        }
    }
    let _lock = guard::lock(out, "--output")?;
    guard::remove_stale_temporaries(out);
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
pub(crate) fn read_input(input: &str) -> Result<Vec<u8>> {
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
pub(crate) fn as_text<'a>(bytes: &'a [u8], input: &str) -> Result<&'a str> {
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
        .map(|(i, word)| match word.parse::<u128>() {
            Ok(id) => u32::try_from(id).map_err(|_| {
                err!(
                    "{source}: the token id at position {i} ({word}) is larger than any token \
                     id can be ({})",
                    u32::MAX
                )
            }),
            Err(_) => Err(err!(
                "{source}: the item at position {i} ({word:?}) is not a token id (a whole number)"
            )),
        })
        .collect()
}

/// Writes to standard output; a closed pipe (`| head`) is not an error.
pub(crate) fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut stdout = io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            Err(e).context("cannot write to standard output")
        }
        _ => Ok(()),
    }
}
