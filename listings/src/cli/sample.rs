//! `listings sample` and `listings eval` on a model from a checkpoint
//! (`--checkpoint`, written by `listings train`) or from a Hugging Face
//! GPT-2 directory (`--model`, read with GPT-2's tokenizer, tiktoken's
//! `r50k_base`; a directory whose `tokenizer.json` is another tokenizer, as
//! `listings export` writes, is refused rather than read with the wrong
//! one).
//!
//! `sample` runs the library's generation loop on a [`Decoder`]: the prompt
//! in one pass, then one token a pass through the KV cache (or, with
//! `--no-kv-cache`, the whole context every pass), each token's text
//! written to standard output as soon as it is drawn. Every flag is checked
//! before the model is read; the prompt is checked against the model before
//! anything is written, so a refused command prints nothing on standard
//! output. The last line on standard error says how many tokens were made
//! and how fast.

use std::collections::BTreeSet;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use clap::builder::{PossibleValuesParser, TypedValueParser};

use crate::error::{CliError, Context, Result, bail, err};
use crate::{DataArg, as_text, read_input};
use listings::checkpoint::{self, hf::load_hf_gpt2};
use listings::infer::decode::Decoder;
use listings::infer::generate::{GenerateConfig, StopReason, beam_search, generate};
use listings::infer::quant::Format;
use listings::infer::sampler::Sampling;
use listings::model::Gpt;
use listings::tokens::{ENDOFTEXT, Encoding, TextTokenizer};
use listings::train::batches::evaluate_text;

/// `--checkpoint` or `--model`: where the model comes from.
#[derive(Args)]
#[group(required = true, multiple = false)]
pub struct ModelArg {
    /// A checkpoint file written by `listings train` (safetensors; the
    /// tokenizer travels in it).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// A Hugging Face GPT-2 directory: config.json beside model.safetensors
    /// (as `save_pretrained` writes it, or as the hub's `gpt2` repo holds
    /// it). Its text is read and written with GPT-2's tokenizer, tiktoken's
    /// r50k_base.
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,
}

/// `listings sample`. The sampling defaults are nanoGPT's `sample.py`.
#[derive(Args)]
pub struct SampleArgs {
    #[command(flatten)]
    model: ModelArg,
    /// The text to continue; `\n` and `\t` stand for a newline and a tab
    /// (nanoGPT starts from a newline). A prompt longer than the model's
    /// context is cut to its last block_size tokens, with a warning.
    #[arg(long, default_value = "\\n")]
    prompt: String,
    /// How many tokens to add, at most.
    #[arg(long, default_value_t = 500)]
    max_new_tokens: usize,
    /// 0 always takes the most likely token (greedy decoding); below 1 is
    /// safer, above 1 wilder.
    #[arg(long, default_value_t = 0.8, allow_negative_numbers = true)]
    temperature: f32,
    /// Draw only among the K most likely tokens (K at least the vocabulary
    /// size keeps them all).
    #[arg(long, default_value_t = 200)]
    top_k: usize,
    /// Draw only among the likeliest tokens that together have probability
    /// P (nucleus sampling, after top-k), in (0, 1]; off by default.
    #[arg(long, allow_negative_numbers = true)]
    top_p: Option<f32>,
    /// Above 1, every token already in the text (prompt included) becomes
    /// less likely; 1 is off.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    repetition_penalty: f32,
    /// Seeds the draws: the same seed gives the same text.
    #[arg(long, default_value_t = 1337)]
    seed: u64,
    /// Stop as soon as the new text contains TEXT (`\n` and `\t` as in
    /// --prompt); TEXT itself and what follows it are not printed. Give it
    /// several times for several stop texts.
    #[arg(long, value_name = "TEXT")]
    stop: Vec<String>,
    /// Beam search with N beams instead of sampling: the likeliest
    /// continuation it finds, printed when the search ends (no streaming).
    /// It draws nothing at random, so it refuses the sampling flags, and it
    /// stays within the model's context.
    #[arg(long, value_name = "N")]
    beams: Option<usize>,
    /// Recompute the whole context for every token instead of keeping keys
    /// and values in the KV cache: the same tokens while the text fits in
    /// the context, much slower. (Past the context the cached run restarts
    /// from the last half of the window, the uncached one slides by one
    /// token, so the texts part there.)
    #[arg(long)]
    no_kv_cache: bool,
    /// The weight matrices' format: f32 as stored, or quantised: int8 (8
    /// bits a weight), q8_0 or q4_0 (llama.cpp's blocks of 32 weights, 8 or
    /// 4 bits each, with a scale per block).
    #[arg(
        long,
        default_value = "f32",
        value_name = "FORMAT",
        value_parser = PossibleValuesParser::new(["f32", "int8", "q8_0", "q4_0"]).map(|s| parse_format(&s))
    )]
    quantize: Format,
    /// Go on past <|endoftext|>. By default, when the tokenizer has that
    /// token, drawing it ends the text (it is not printed).
    #[arg(long)]
    ignore_end_token: bool,
}

/// `listings eval`.
#[derive(Args)]
pub struct EvalArgs {
    #[command(flatten)]
    model: ModelArg,
    #[command(flatten)]
    data: DataArg,
}

/// A `--quantize` value (one of the four names clap has already checked).
fn parse_format(name: &str) -> Format {
    match name {
        "int8" => Format::Int8,
        "q8_0" => Format::Q8_0,
        "q4_0" => Format::Q4_0,
        _ => Format::F32,
    }
}

/// The name `--quantize` gives `format`.
fn format_name(format: Format) -> &'static str {
    match format {
        Format::F32 => "f32",
        Format::Int8 => "int8",
        Format::Q8_0 => "q8_0",
        Format::Q4_0 => "q4_0",
    }
}

/// A model and the tokenizer its ids belong to.
struct Loaded {
    gpt: Gpt,
    tokenizer: TextTokenizer,
}

/// Reads the model `--checkpoint` or `--model` names.
fn load(arg: &ModelArg) -> Result<Loaded> {
    if let Some(path) = &arg.checkpoint {
        let ckpt = checkpoint::load(path)?;
        return Ok(Loaded {
            gpt: ckpt.gpt,
            tokenizer: ckpt.tokenizer,
        });
    }
    let dir = arg.model.as_deref().expect("clap requires one of the two");
    check_model_dir(dir)?;
    let gpt = load_hf_gpt2(dir)?;
    let tokenizer = TextTokenizer::Bpe(Encoding::R50kBase.tokenizer()?);
    if let Some(n) = own_tokenizer_size(dir)
        && n != tokenizer.vocab_size()
    {
        bail!(
            "--model {}: its tokenizer.json has {n} tokens, not GPT-2's {}, and `--model` reads \
             with GPT-2's tokenizer only, which would print other tokens' text for this model's \
             ids (a folder written by `listings export` carries the book's tokenizer: sample \
             from the checkpoint it was exported from, with --checkpoint)",
            dir.display(),
            tokenizer.vocab_size()
        );
    }
    let (v, known) = (gpt.config().vocab_size, tokenizer.vocab_size());
    if v > known {
        eprintln!(
            "warning: the model has {v} token ids and r50k_base {known}: the ids from {known} \
             on have no text and print as ?"
        );
    }
    Ok(Loaded { gpt, tokenizer })
}

/// How many tokens the `tokenizer.json` in `dir` has (its BPE model's
/// vocabulary), if there is one that says.
fn own_tokenizer_size(dir: &Path) -> Option<usize> {
    let text = std::fs::read_to_string(dir.join("tokenizer.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json.get("model")?
        .get("vocab")?
        .as_object()
        .map(|v| v.len())
}

/// The mistakes a `--model` directory can hold that the loader's own
/// errors would not explain: no such directory, a file, PyTorch weights.
fn check_model_dir(dir: &Path) -> Result<()> {
    let shown = dir.display();
    if !dir.exists() {
        bail!(
            "--model {shown}: there is no such directory (give the folder that holds config.json \
             and model.safetensors)"
        );
    }
    if !dir.is_dir() {
        bail!(
            "--model {shown} is a file, not a directory: give the folder that holds config.json \
             and model.safetensors (for a checkpoint written by `listings train`, use \
             --checkpoint)"
        );
    }
    if !dir.join("model.safetensors").exists() && dir.join("pytorch_model.bin").exists() {
        bail!(
            "--model {shown} holds pytorch_model.bin but no model.safetensors: only safetensors \
             weights are read (a .bin file is a Python pickle, which can run code when loaded). \
             Convert it once with transformers: python3 -c \"from transformers import \
             GPT2LMHeadModel as M; M.from_pretrained('{shown}').save_pretrained('{shown}')\" \
             writes model.safetensors beside it"
        );
    }
    Ok(())
}

/// The prompt, with the two-character escapes `\n` and `\t` turned into a
/// newline and a tab (so `--prompt 'ROMEO:\n'` works in any shell).
fn unescape(text: &str) -> String {
    text.replace("\\n", "\n").replace("\\t", "\t")
}

impl SampleArgs {
    /// The library's sampling settings.
    fn sampling(&self) -> Sampling {
        Sampling {
            temperature: self.temperature,
            top_k: Some(self.top_k),
            top_p: self.top_p,
            repetition_penalty: self.repetition_penalty,
            seed: self.seed,
        }
    }

    /// Every check that needs no model. `given` holds the flags given on
    /// the command line (by field name).
    fn validate(&self, given: &BTreeSet<String>) -> Result<()> {
        if self.prompt.is_empty() {
            bail!("the prompt is empty; give at least one token (nanoGPT starts from \"\\n\")");
        }
        if self.max_new_tokens == 0 {
            bail!("--max-new-tokens 0 asks for no text: give at least 1");
        }
        if self.stop.iter().any(String::is_empty) {
            bail!("--stop \"\" would stop before the first token: give a non-empty text");
        }
        self.sampling().validate()?;
        if let Some(width) = self.beams {
            if width == 0 {
                bail!("--beams 0 keeps no continuation: give at least 1 (1 is greedy decoding)");
            }
            // Beam search draws nothing at random and always uses the cache.
            let (t, r) = (self.temperature, self.repetition_penalty);
            let refused = [
                ("temperature", t > 0.0, format!("--temperature {t}")),
                ("top_k", true, format!("--top-k {}", self.top_k)),
                ("top_p", true, "--top-p".to_string()),
                (
                    "repetition_penalty",
                    r != 1.0,
                    format!("--repetition-penalty {r}"),
                ),
                ("seed", true, "--seed".to_string()),
                ("no_kv_cache", true, "--no-kv-cache".to_string()),
            ];
            if let Some((_, _, flag)) = refused
                .iter()
                .find(|(id, applies, _)| *applies && given.contains(*id))
            {
                bail!(
                    "{flag} does not apply to --beams: beam search draws nothing at random (it \
                     keeps the likeliest continuations) and always uses the KV cache; drop it, or \
                     drop --beams to sample"
                );
            }
        }
        Ok(())
    }
}

/// The id of `<|endoftext|>`, if the tokenizer has it.
fn end_token(tokenizer: &TextTokenizer) -> Option<u32> {
    match tokenizer {
        TextTokenizer::Char(_) => None,
        TextTokenizer::Bpe(t) => t
            .special_tokens()
            .iter()
            .find(|(name, _)| name == ENDOFTEXT)
            .map(|&(_, id)| id),
    }
}

/// The bytes one token stands for (`?` for an id the tokenizer lacks).
fn token_bytes(tokenizer: &TextTokenizer, id: u32) -> Vec<u8> {
    match tokenizer {
        TextTokenizer::Char(vocab) => match vocab.chars().get(id as usize) {
            Some(c) => c.to_string().into_bytes(),
            None => b"?".to_vec(),
        },
        TextTokenizer::Bpe(t) => t.token_bytes(id).unwrap_or(b"?").to_vec(),
    }
}

/// `listings sample`: prints the prompt and its continuation, token by
/// token, and a line of statistics on standard error.
pub fn sample(args: &SampleArgs, given: &BTreeSet<String>) -> Result<()> {
    args.validate(given)?;
    let prompt = unescape(&args.prompt);
    let stops: Vec<String> = args.stop.iter().map(|s| unescape(s)).collect();
    let Loaded { gpt, tokenizer } = load(&args.model)?;
    let mut ids = tokenizer
        .encode(&prompt)
        .map_err(|e| err!("cannot encode the prompt: {e}"))?;
    let block_size = gpt.config().block_size;
    if ids.len() > block_size {
        eprintln!(
            "warning: the prompt has {} tokens, the model sees at most {block_size}: keeping its \
             last {block_size}",
            ids.len()
        );
        ids.drain(..ids.len() - block_size);
    }
    let decoder = Decoder::new(&gpt, args.quantize).with_context(|| {
        format!(
            "cannot lay out the weights in {}",
            format_name(args.quantize)
        )
    })?;
    drop(gpt);
    let end = end_token(&tokenizer).filter(|_| !args.ignore_end_token);
    let mut out = Stream::new(&stops, io::stdout());
    match args.beams {
        Some(width) => beams(&decoder, &tokenizer, &prompt, &ids, width, args, end, out),
        None => {
            let config = GenerateConfig {
                max_new_tokens: args.max_new_tokens,
                sampling: args.sampling(),
                stop_tokens: end.into_iter().collect(),
                stop_sequences: Vec::new(),
                kv_cache: !args.no_kv_cache,
                keep: None,
            };
            let mut failed = None;
            let generation = generate(&decoder, &ids, &config, |id| {
                if !out.started() && !out.begin(&prompt).unwrap_or_else(|e| keep(&mut failed, e)) {
                    return false;
                }
                if Some(id) == end {
                    return true; // the end token ends the text; it is not text
                }
                out.push(&token_bytes(&tokenizer, id))
                    .unwrap_or_else(|e| keep(&mut failed, e))
            })
            .context("cannot continue the prompt")?;
            if let Some(e) = failed {
                return Err(e);
            }
            out.finish()?;
            let n = generation.tokens.len();
            let why = match generation.stop {
                StopReason::StopToken => format!(" (stopped at {ENDOFTEXT})"),
                StopReason::Caller if out.stopped.is_some() => {
                    format!(" (stopped at --stop {:?})", out.stopped.as_deref().unwrap())
                }
                StopReason::Caller => " (standard output closed)".to_string(),
                _ => String::new(),
            };
            let rate = |tokens: usize, secs: f64| {
                if tokens == 0 {
                    "none".to_string()
                } else {
                    let per_second = tokens as f64 / secs;
                    format!("{} at {per_second:.1} tokens/s", count(tokens, "token"))
                }
            };
            eprintln!(
                "{}{why}; prefill: {}; decode: {}; {}; weights {}",
                count(n, "new token"),
                rate(ids.len(), generation.prefill.as_secs_f64()),
                rate(n - 1, generation.decode.as_secs_f64()),
                if args.no_kv_cache {
                    "no KV cache (every pass recomputes the context)"
                } else {
                    "KV cache"
                },
                format_name(decoder.format())
            );
            Ok(())
        }
    }
}

/// `1 token`, `2 tokens`.
fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// Records the first error a callback met, and tells the loop to stop.
fn keep(slot: &mut Option<CliError>, e: CliError) -> bool {
    slot.get_or_insert(e);
    false
}

/// `listings sample --beams`: the best beam, printed when the search ends.
#[allow(clippy::too_many_arguments, reason = "one caller, which has them all")]
fn beams(
    decoder: &Decoder,
    tokenizer: &TextTokenizer,
    prompt: &str,
    ids: &[u32],
    width: usize,
    args: &SampleArgs,
    end: Option<u32>,
    mut out: Stream<'_, io::Stdout>,
) -> Result<()> {
    let block_size = decoder.config().block_size;
    let room = block_size - ids.len();
    let mut new = args.max_new_tokens;
    if new > room {
        if room == 0 {
            bail!(
                "--beams: the prompt fills the model's whole context of {block_size} tokens, and \
                 beam search does not go past it: shorten the prompt"
            );
        }
        eprintln!(
            "warning: beam search stays within the context: the prompt's {} tokens leave room for \
             {room} of the {new} new tokens asked for",
            ids.len()
        );
        new = room;
    }
    let start = Instant::now();
    let found = beam_search(
        decoder,
        ids,
        width,
        new,
        &end.into_iter().collect::<Vec<_>>(),
    )
    .context("cannot continue the prompt")?;
    let seconds = start.elapsed().as_secs_f64();
    let best = &found[0];
    out.begin(prompt)?;
    for &id in &best.tokens {
        if Some(id) == end || !out.push(&token_bytes(tokenizer, id))? {
            break;
        }
    }
    out.finish()?;
    let n = best.tokens.len();
    eprintln!(
        "{} (the best of {}, log-probability {:.3}{}); {:.1} tokens/s for all the beams; KV \
         cache; weights {}",
        count(n, "new token"),
        count(width, "beam"),
        best.log_prob,
        if best.finished {
            format!(", ended by {ENDOFTEXT}")
        } else {
            String::new()
        },
        n as f64 / seconds,
        format_name(decoder.format())
    );
    Ok(())
}

/// Writes a continuation to standard output as it is made, flushed at each
/// token: whole characters only (a BPE token can end in the middle of one,
/// whose other bytes come with the next token), and never text that could
/// be the beginning of a `--stop` text, until it is clear that it is not.
struct Stream<'a, W: Write> {
    /// Where the text goes: standard output.
    out: W,
    /// The `--stop` texts.
    stops: &'a [String],
    /// Bytes that do not make a whole character yet.
    pending: Vec<u8>,
    /// The continuation's text so far.
    text: String,
    /// How many bytes of `text` are written.
    written: usize,
    /// The stop text found, if one was.
    stopped: Option<String>,
    /// Whether the prompt is written.
    begun: bool,
    /// Whether standard output was closed (by `| head`, say).
    closed: bool,
}

impl<'a, W: Write> Stream<'a, W> {
    fn new(stops: &'a [String], out: W) -> Self {
        Self {
            out,
            stops,
            pending: Vec::new(),
            text: String::new(),
            written: 0,
            stopped: None,
            begun: false,
            closed: false,
        }
    }

    fn started(&self) -> bool {
        self.begun
    }

    /// Writes the prompt; `false` if standard output is closed.
    fn begin(&mut self, prompt: &str) -> Result<bool> {
        self.begun = true;
        self.write(prompt.as_bytes())
    }

    // ANCHOR: stream_push
    /// Adds one token's bytes and writes what is certain; `false` once a
    /// stop text is found or standard output is closed.
    fn push(&mut self, bytes: &[u8]) -> Result<bool> {
        self.pending.extend_from_slice(bytes);
        let mut used = 0;
        loop {
            match std::str::from_utf8(&self.pending[used..]) {
                Ok(s) => {
                    self.text.push_str(s);
                    used = self.pending.len();
                    break;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    let s = std::str::from_utf8(&self.pending[used..used + valid])
                        .expect("valid up to here");
                    self.text.push_str(s);
                    match e.error_len() {
                        // Bytes no character starts with: shown as U+FFFD.
                        Some(bad) => {
                            self.text.push(char::REPLACEMENT_CHARACTER);
                            used += valid + bad;
                        }
                        // The start of a character: wait for the rest.
                        None => {
                            used += valid;
                            break;
                        }
                    }
                }
            }
        }
        self.pending.drain(..used);
        // A stop text that ends in the new text starts after what is written:
        // the tail that could begin one is never written before it is known.
        let unsure = &self.text[self.written..];
        let found = self
            .stops
            .iter()
            .filter_map(|s| unsure.find(s.as_str()).map(|at| (at, s)))
            .min();
        if let Some((at, stop)) = found {
            self.stopped = Some(stop.clone());
            let end = self.written + at;
            return self.write_text(end);
        }
        let hold = unsure
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| {
                let tail = &unsure[i..];
                self.stops
                    .iter()
                    .any(|s| s.len() > tail.len() && s.starts_with(tail))
            })
            .unwrap_or(unsure.len());
        let end = self.written + hold;
        self.write_text(end)
    }
    // ANCHOR_END: stream_push

    /// Writes `text[written..end]`; `false` if a stop text was found or
    /// standard output is closed.
    fn write_text(&mut self, end: usize) -> Result<bool> {
        let (from, text) = (self.written, std::mem::take(&mut self.text));
        let open = self.write(&text.as_bytes()[from..end]);
        self.text = text;
        self.written = end;
        Ok(open? && self.stopped.is_none())
    }

    /// Writes everything still held back (unless a stop text was found),
    /// incomplete characters as U+FFFD, and a newline.
    fn finish(&mut self) -> Result<()> {
        if !self.begun {
            return Ok(());
        }
        let mut rest = Vec::new();
        if self.stopped.is_none() {
            rest.extend_from_slice(&self.text.as_bytes()[self.written..]);
            rest.extend_from_slice(String::from_utf8_lossy(&self.pending).as_bytes());
        }
        rest.push(b'\n');
        self.write(&rest).map(|_| ())
    }

    /// Writes and flushes; `false` once standard output is closed (a
    /// closed pipe is not an error: the reader has what it wanted).
    fn write(&mut self, bytes: &[u8]) -> Result<bool> {
        if self.closed {
            return Ok(false);
        }
        match self.out.write_all(bytes).and_then(|()| self.out.flush()) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(false)
            }
            Err(e) => Err(e).context("cannot write to standard output"),
        }
    }
}

/// `listings eval`: prints `loss X over N windows of T tokens`.
pub fn eval(args: &EvalArgs) -> Result<()> {
    let Loaded { gpt, tokenizer } = load(&args.model)?;
    let bytes = read_input(&args.data.data)?;
    let text = as_text(&bytes, &args.data.data)?;
    let result = evaluate_text(&gpt, &tokenizer, text)
        .with_context(|| format!("cannot evaluate on {}", args.data.data))?;
    if !result.loss.is_finite() {
        bail!(
            "the loss on {} is {}: the model's outputs overflow on this text",
            args.data.data,
            result.loss
        );
    }
    crate::write_stdout(format!("{result}\n").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a [`Stream`] has written after each push of `tokens`, and at
    /// the end.
    fn written(stops: &[&str], tokens: &[&[u8]]) -> (Vec<String>, String) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut stream = Stream::new(&stops, Vec::new());
        stream.begin("> ").unwrap();
        let mut after = Vec::new();
        for t in tokens {
            let go_on = stream.push(t).unwrap();
            after.push(String::from_utf8(stream.out.clone()).unwrap());
            if !go_on {
                break;
            }
        }
        stream.finish().unwrap();
        (after, String::from_utf8(stream.out).unwrap())
    }

    #[test]
    fn a_character_cut_between_two_tokens_is_written_whole() {
        let e = "é".as_bytes(); // 0xC3 0xA9
        let (after, end) = written(&[], &[b"caf", &e[..1], &e[1..], b"!"]);
        assert_eq!(after, ["> caf", "> caf", "> café", "> café!"]);
        assert_eq!(end, "> café!\n");
        // An unfinished character at the end shows as U+FFFD.
        let (_, end) = written(&[], &[b"caf", &e[..1]]);
        assert_eq!(end, "> caf\u{FFFD}\n");
        // A byte that starts no character is U+FFFD at once.
        let (after, _) = written(&[], &[&[0xA9, b'x']]);
        assert_eq!(after, ["> \u{FFFD}x"]);
    }

    #[test]
    fn a_stop_text_is_held_back_then_dropped_with_what_follows() {
        // "\n\n" arrives one newline at a time: the first is held back.
        let (after, end) = written(&["\n\n"], &[b"one", b"\n", b"\n", b"two"]);
        assert_eq!(after, ["> one", "> one", "> one"]);
        assert_eq!(end, "> one\n");
        // A held-back beginning that does not go on is written after all.
        let (after, end) = written(&["\n\n"], &[b"one", b"\n", b"two"]);
        assert_eq!(after, ["> one", "> one", "> one\ntwo"]);
        assert_eq!(end, "> one\ntwo\n");
        // A stop text inside a token: the token's text before it is written.
        let (_, end) = written(&["END", "."], &[b"a b", b"c. dEND"]);
        assert_eq!(end, "> a bc\n");
        // Only the new text counts, not the prompt.
        let (_, end) = written(&["> "], &[b"x"]);
        assert_eq!(end, "> x\n");
    }
}
