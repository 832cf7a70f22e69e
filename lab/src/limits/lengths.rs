//! Chapter 8: limits that come from how the input is cut and laid out,
//! measured on small models trained for the purpose (each trained once,
//! then read from [`crate::cache`]).
//!
//! **Longer sums.** Three character-level models learn to add numbers of
//! one to three digits, each in its own [`Notation`], and are tested on
//! held-out sums of one to five digits ([`length_curve`]):
//!
//! - plain, as we write sums: `123+45=168`;
//! - reversed, every number least significant digit first: `321+54=861`,
//!   so that each digit of the answer depends on digits already written;
//! - reversed with index hints: `a3b2c1+a5b4=a8b6c1`, a letter before each
//!   digit naming its place. This is a data-side stand-in for the Abacus
//!   embeddings of McLeish et al. (2024), which add to each digit's
//!   embedding a learned vector for its place in its number. The model may
//!   not change here, so the place is written into the text instead (as
//!   the "index hints" of Zhou et al. do), and, as Abacus draws a random
//!   offset for its places in training, the letters start at a random
//!   place, so that the letters of places past the third are trained too.
//!
//! The sum models train as the book model does, on random windows of one
//! long text of lines ([`train_on_text`]). A window starts anywhere, so a
//! line falls at every position of the context, and every row of the
//! position table `wpe` is trained; the context, 48 characters, holds the
//! longest test line. A wrong answer to a long sum is therefore not an
//! untrained position but an unseen length. (A prompt longer than the
//! context is not even read: [`LineWriter::complete`] refuses it.)
//!
//! **Letters inside tokens.** Two models of the same shape, trained for
//! the same steps on the same examples, one reading the book's BPE tokens
//! and one reading characters ([`Cut`]), learn to spell invented names and
//! count their letters (`Spell Tarrow: T a r r o w`, `Count the r in
//! Tarrow: 2`). They are tested on names they never saw spelled or counted
//! ([`blindness`]): held-out invented names, which the BPE cuts into
//! pieces that training spelled in other names, and the world's town
//! names, most of which the BPE keeps whole ([`bpe_pieces`]). Both models
//! see every name (`Say Tarrow: Tarrow`), so the BPE model has learned its
//! tokens; what it never saw is the letters inside them.
//!
//! The name models train on one question per row of a batch, the loss on
//! the answer only ([`train_on_examples`], as chapter 6 tunes on
//! instructions), so that a count sees its own name and no other. Rows
//! start at position 0, so the rows of `wpe` past the longest example are
//! never read: [`position_drift`] shows they are still the random vectors
//! they started as.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result, bail};
use listings::checkpoint;
use listings::finetune::chat::{Encoded, LossOn, lm_batch};
use listings::finetune::tuner::{FineTuner, Method};
use listings::infer::decode::Decoder;
use listings::infer::generate::{GenerateConfig, StopReason, generate};
use listings::infer::quant::Format;
use listings::infer::sampler::Sampling;
use listings::model::{Gpt, GptConfig};
use listings::rng::{ChaCha8Rng, RngExt, seeded};
use listings::tokens::{CharVocab, TextTokenizer};
use listings::train::batches::TokenData;
use listings::train::run::{TrainConfig, run, split};
use listings::train::step::Trainer;

use crate::cache;

// ---------------------------------------------------------------------------
// Sums: how they are written.

/// A sum to write out: `a + b`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sum {
    /// The first number.
    pub a: u64,
    /// The second number.
    pub b: u64,
}

impl Sum {
    /// `a + b`.
    pub fn total(self) -> u64 {
        self.a + self.b
    }
}

/// How many index letters there are (`a` to `j`): enough for a 6-digit
/// answer at offset 0, and for a 4-digit one at offsets up to 6.
pub const INDEX_LETTERS: usize = 10;

// ANCHOR: notation
/// How a sum is written in a line of the training text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Notation {
    /// As we write it, most significant digit first: `123+45=168`.
    Plain,
    /// Every number's digits reversed, least significant first:
    /// `321+54=861`. Each digit of the answer then depends only on digits
    /// already written (the operands' digits of the same place, and the
    /// carry from the answer digit just before).
    Reversed,
    /// Reversed, with a letter before each digit naming its place:
    /// `a3b2c1+a5b4=a8b6c1` (units `a`, tens `b`, ...). An answer digit
    /// finds the operand digits it needs by their letter, wherever they
    /// are, instead of by counting positions. The letters start at a random
    /// offset in training (`d3e2f1+d5e4=d8e6f1` is the same sum), so every
    /// letter is trained, though no training sum has more than three
    /// digits; the tests use offset 0.
    Indexed,
}
// ANCHOR_END: notation

impl Notation {
    /// The three notations, in the order the chapter shows them.
    pub const ALL: [Notation; 3] = [Notation::Plain, Notation::Reversed, Notation::Indexed];

    /// A short name, for tables and legends.
    pub fn name(self) -> &'static str {
        match self {
            Notation::Plain => "plain",
            Notation::Reversed => "reversed",
            Notation::Indexed => "reversed, index hints",
        }
    }

    // ANCHOR: write_number
    /// `n` written in this notation; `offset` is the first index letter
    /// (0 is `a`), used by [`Notation::Indexed`] only.
    ///
    /// # Panics
    ///
    /// If the index letters would run past `j` ([`INDEX_LETTERS`]).
    pub fn number(self, n: u64, offset: usize) -> String {
        let digits = n.to_string();
        match self {
            Notation::Plain => digits,
            Notation::Reversed => digits.chars().rev().collect(),
            Notation::Indexed => {
                assert!(
                    offset + digits.len() <= INDEX_LETTERS,
                    "{n} at offset {offset} needs more than {INDEX_LETTERS} index letters"
                );
                (digits.chars().rev().enumerate())
                    .flat_map(|(place, d)| [char::from(b'a' + (offset + place) as u8), d])
                    .collect()
            }
        }
    }
    // ANCHOR_END: write_number

    /// Reads back what [`Notation::number`] wrote: the number and the
    /// offset of its first index letter (0 for the other notations), or
    /// `None` if `text` is not a number in this notation.
    pub fn read_number(self, text: &str) -> Option<(u64, usize)> {
        let digits: String = match self {
            Notation::Plain => text.to_string(),
            Notation::Reversed => text.chars().rev().collect(),
            Notation::Indexed => {
                let chars: Vec<char> = text.chars().collect();
                if chars.is_empty() || !chars.len().is_multiple_of(2) {
                    return None;
                }
                let offset = (chars[0] as usize).checked_sub('a' as usize)?;
                let mut digits = String::new();
                for (place, pair) in chars.chunks(2).enumerate() {
                    if pair[0] as usize != 'a' as usize + offset + place
                        || offset + place >= INDEX_LETTERS
                    {
                        return None;
                    }
                    digits.insert(0, pair[1]);
                }
                return Some((Notation::Plain.read_number(&digits)?.0, offset));
            }
        };
        let canonical = !digits.is_empty()
            && digits.chars().all(|c| c.is_ascii_digit())
            && (digits == "0" || !digits.starts_with('0'));
        if !canonical {
            return None;
        }
        Some((digits.parse().ok()?, 0))
    }

    /// The part of a line the model is given: `123+45=` in the plain
    /// notation.
    pub fn prompt(self, sum: Sum, offset: usize) -> String {
        format!(
            "{}+{}=",
            self.number(sum.a, offset),
            self.number(sum.b, offset)
        )
    }

    /// The part it must write: `168` in the plain notation.
    pub fn answer(self, sum: Sum, offset: usize) -> String {
        self.number(sum.total(), offset)
    }

    /// A whole line of the training text: prompt, answer, newline.
    pub fn line(self, sum: Sum, offset: usize) -> String {
        format!("{}{}\n", self.prompt(sum, offset), self.answer(sum, offset))
    }

    /// Reads a line [`Notation::line`] wrote back into its sum, checking
    /// that the answer is right and every number has the same offset.
    pub fn read_line(self, line: &str) -> Option<(Sum, usize)> {
        let line = line.strip_suffix('\n')?;
        let (a, rest) = line.split_once('+')?;
        let (b, total) = rest.split_once('=')?;
        let ((a, oa), (b, ob)) = (self.read_number(a)?, self.read_number(b)?);
        let (total, ot) = self.read_number(total)?;
        (oa == ob && ob == ot && a + b == total).then_some((Sum { a, b }, oa))
    }
}

/// The characters every sum model reads and writes: newline, `+`, the ten
/// digits, `=` and the index letters `a` to `j`, for all three notations
/// (so the three models have the same shape).
pub fn sum_vocab() -> CharVocab {
    CharVocab::from_text("\n+0123456789=abcdefghij").expect("not empty")
}

// ---------------------------------------------------------------------------
// Sums: the data.

/// The longest numbers in training, in digits.
pub const TRAIN_DIGITS: usize = 3;

/// The longest numbers tested, in digits.
pub const TEST_DIGITS: usize = 5;

/// Test sums per number of digits (two numbers of that many digits each).
pub const TEST_SUMS: usize = 100;

/// Test sums of two 1-digit numbers: a quarter of the 100 there are (the
/// other 75 stay in training).
pub const ONE_DIGIT_TEST_SUMS: usize = 25;

/// Lines of training text.
pub const TRAIN_LINES: usize = 40_000;

/// A number of exactly `digits` digits, uniformly (`0..=9` for one digit).
fn random_number(rng: &mut ChaCha8Rng, digits: usize) -> u64 {
    if digits == 1 {
        return rng.random_range(0..10);
    }
    let low = 10u64.pow(digits as u32 - 1);
    rng.random_range(low..10 * low)
}

// ANCHOR: test_sums
/// The test sums of two `digits`-digit numbers, distinct, seeded:
/// [`TEST_SUMS`] of them ([`ONE_DIGIT_TEST_SUMS`] for one digit). Those of
/// one to three digits are never in the training text.
pub fn test_sums(digits: usize) -> Vec<Sum> {
    let mut rng = seeded(800 + digits as u64);
    let count = if digits == 1 {
        ONE_DIGIT_TEST_SUMS
    } else {
        TEST_SUMS
    };
    let mut seen = BTreeSet::new();
    let mut sums = Vec::with_capacity(count);
    while sums.len() < count {
        let sum = Sum {
            a: random_number(&mut rng, digits),
            b: random_number(&mut rng, digits),
        };
        if seen.insert(sum) {
            sums.push(sum);
        }
    }
    sums
}

/// The training sums: [`TRAIN_LINES`] of them, each number's length drawn
/// from 1 to [`TRAIN_DIGITS`] digits, then its value; a sum that is a test
/// sum is drawn again. The same sums, in the same order, for every
/// notation.
pub fn training_sums() -> Vec<Sum> {
    let held_out: BTreeSet<Sum> = (1..=TRAIN_DIGITS).flat_map(test_sums).collect();
    let mut rng = seeded(80);
    let mut sums = Vec::with_capacity(TRAIN_LINES);
    while sums.len() < TRAIN_LINES {
        let a_digits = rng.random_range(1..=TRAIN_DIGITS);
        let b_digits = rng.random_range(1..=TRAIN_DIGITS);
        let sum = Sum {
            a: random_number(&mut rng, a_digits),
            b: random_number(&mut rng, b_digits),
        };
        if !held_out.contains(&sum) {
            sums.push(sum);
        }
    }
    sums
}
// ANCHOR_END: test_sums

/// The training text in `notation`: one line per training sum. The index
/// letters of [`Notation::Indexed`] start at a random offset from 0 to 6
/// (drawn from a generator of their own), so that a 4-digit answer still
/// ends at `j`.
pub fn training_text(notation: Notation) -> String {
    let mut offsets = seeded(81);
    let top = INDEX_LETTERS - (TRAIN_DIGITS + 1);
    (training_sums().into_iter())
        .map(|sum| {
            let offset = match notation {
                Notation::Indexed => offsets.random_range(0..=top),
                _ => 0,
            };
            notation.line(sum, offset)
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Training, cached.

/// A model trained by this module, with its tokenizer and the loss of
/// every training step.
#[derive(Clone, Debug)]
pub struct Trained {
    /// The model.
    pub gpt: Gpt,
    /// What it reads and writes.
    pub tokenizer: TextTokenizer,
    /// The batch loss of every step, before its update.
    pub losses: Vec<f32>,
}

impl Trained {
    /// The mean batch loss of the last 100 steps.
    pub fn final_loss(&self) -> f32 {
        let tail = &self.losses[self.losses.len().saturating_sub(100)..];
        tail.iter().sum::<f32>() / tail.len() as f32
    }
}

// ANCHOR: train_on_text
/// Trains a fresh model of shape `model` (weights from `seed`) on `text`,
/// as the book model is trained: random windows of the text's first 90%,
/// the schedule of `config`.
pub fn train_on_text(
    text: &str,
    tokenizer: TextTokenizer,
    model: GptConfig,
    config: &TrainConfig,
    seed: u64,
) -> Result<Trained> {
    let data = split(&TokenData::from_text(text, &tokenizer)?, config.block_size)?;
    let gpt = Gpt::new(model, seed)?;
    let mut trainer = Trainer::new(gpt, config.adamw(), config.batch_size, config.block_size)?;
    let history = run(&mut trainer, &data, config, |_, _| Ok(()))?;
    Ok(Trained {
        gpt: trainer.into_gpt(),
        tokenizer,
        losses: history.losses,
    })
}
// ANCHOR_END: train_on_text

// ANCHOR: train_on_examples
/// Trains a fresh model of shape `model` (weights from `seed`) on
/// question-and-answer examples, one example per row of a batch (padded
/// at the end with id 0, which the loss never counts, as chapter 6 packs
/// instructions), the loss on the answers only: `config`'s batch size,
/// steps and schedule, the examples in a new seeded order each pass.
pub fn train_on_examples(
    examples: &[Encoded],
    tokenizer: TextTokenizer,
    model: GptConfig,
    config: &TrainConfig,
    seed: u64,
) -> Result<Trained> {
    let gpt = Gpt::new(model, seed)?;
    let mut tuner = FineTuner::new(gpt, Method::Full, config.adamw(), seed)?;
    let mut rng = seeded(config.seed);
    let mut order: Vec<usize> = Vec::new();
    let mut losses = Vec::with_capacity(config.max_iters);
    for step in 0..config.max_iters {
        let mut rows = Vec::with_capacity(config.batch_size);
        while rows.len() < config.batch_size {
            if order.is_empty() {
                order = (0..examples.len()).collect();
                for i in (1..order.len()).rev() {
                    order.swap(i, rng.random_range(0..=i));
                }
            }
            rows.push(&examples[order.pop().expect("refilled")]);
        }
        let batch = lm_batch(&rows, LossOn::Response, 0);
        losses.push(tuner.step_lm(&batch, config.lr(step), config.grad_clip)?);
    }
    Ok(Trained {
        gpt: tuner.gpt().clone(),
        tokenizer,
        losses,
    })
}
// ANCHOR_END: train_on_examples

/// Question-and-answer pairs as token ids: each pair's text encoded whole,
/// the question's tokens counted in `prompt_len`. Fails if the answer's
/// first token would merge with the question's last (the question alone
/// must encode as a prefix of the whole, as it is given at test time).
pub fn encode_examples(
    tokenizer: &TextTokenizer,
    pairs: &[(String, String)],
) -> Result<Vec<Encoded>> {
    pairs
        .iter()
        .map(|(prompt, answer)| {
            let ids = tokenizer.encode(&format!("{prompt}{answer}"))?;
            let prompt_ids = tokenizer.encode(prompt)?;
            if !ids.starts_with(&prompt_ids) {
                bail!("{prompt:?} does not encode as a prefix of {prompt:?} + {answer:?}");
            }
            Ok(Encoded {
                prompt_len: prompt_ids.len(),
                ids,
            })
        })
        .collect()
}

/// Writes a [`Trained`] to `path`: a checkpoint, the losses in its
/// metadata.
fn save_trained(trained: &Trained, path: &Path) -> Result<()> {
    let losses = trained
        .losses
        .iter()
        .map(f32::to_string)
        .collect::<Vec<_>>();
    let hparams = BTreeMap::from([("losses".to_string(), losses.join(" "))]);
    let step = trained.losses.len() as u64;
    checkpoint::save(path, &trained.gpt, &trained.tokenizer, None, step, &hparams)?;
    Ok(())
}

/// Reads what [`save_trained`] wrote, to the bit.
fn load_trained(path: &Path) -> Result<Trained> {
    let ckpt = checkpoint::load(path)?;
    let losses = (ckpt.hparams.get("losses"))
        .with_context(|| format!("{} has no losses", path.display()))?
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    Ok(Trained {
        gpt: ckpt.gpt,
        tokenizer: ckpt.tokenizer,
        losses,
    })
}

/// A model trained by `train` once and kept in [`crate::cache`] under
/// `name`, `model`, `config`, `seed` and this file's code.
fn cached_training(
    name: &str,
    model: GptConfig,
    config: &TrainConfig,
    seed: u64,
    train: impl FnOnce() -> Result<Trained>,
) -> Result<Trained> {
    let settings = format!("{model:?}\n{config:?}\nseed {seed}");
    let key = cache::key(name, &["limits/lengths.rs"], &settings);
    cache::cached(&key, save_trained, load_trained, train)
}

// ---------------------------------------------------------------------------
// Greedy answers.

// ANCHOR: complete_line
/// A model ready to finish lines greedily: the likeliest token each step,
/// until a token with a newline in it.
pub struct LineWriter<'a> {
    decoder: Decoder,
    tokenizer: &'a TextTokenizer,
    /// Every token whose text holds a newline.
    stops: Vec<u32>,
}

impl<'a> LineWriter<'a> {
    /// Lays out `gpt` for inference.
    pub fn new(gpt: &Gpt, tokenizer: &'a TextTokenizer) -> Result<Self> {
        let stops = (0..tokenizer.vocab_size() as u32)
            .filter(|&id| tokenizer.decode_lossy(&[id]).contains('\n'))
            .collect();
        Ok(Self {
            decoder: Decoder::new(gpt, Format::F32)?,
            tokenizer,
            stops,
        })
    }

    /// What the model writes after `prompt` up to the end of the line (the
    /// newline left out), and whether it ended the line within
    /// `max_new_tokens`.
    pub fn complete(&self, prompt: &str, max_new_tokens: usize) -> Result<(String, bool)> {
        let ids = self.tokenizer.encode(prompt)?;
        let config = GenerateConfig {
            max_new_tokens,
            sampling: Sampling::greedy(),
            stop_tokens: self.stops.clone(),
            ..GenerateConfig::default()
        };
        let out = generate(&self.decoder, &ids, &config, |_| true)?;
        let text = self.tokenizer.decode_lossy(&out.tokens);
        let line = text.split('\n').next().unwrap_or_default().to_string();
        Ok((line, out.stop == StopReason::StopToken))
    }
}
// ANCHOR_END: complete_line

/// Whether a written line is the expected answer: the line ended, and
/// holds exactly `expected`.
pub fn is_exact(written: &(String, bool), expected: &str) -> bool {
    written.1 && written.0 == expected
}

// ---------------------------------------------------------------------------
// Sums: the models and the results.

/// The shape of the sum models: the book's toy model (2 blocks, 4 heads,
/// 64 wide) over [`sum_vocab`], with a context of 48 characters: the
/// longest test line with index hints (two 5-digit numbers and a 6-digit
/// answer, 35 characters, after a newline) fits with room to spare.
pub fn sum_model_config() -> GptConfig {
    GptConfig {
        block_size: 48,
        ..GptConfig::toy(sum_vocab().vocab_size())
    }
}

/// How the sum models train: 6,000 steps of 32 windows of 48 characters.
///
/// Measured while choosing: after 3,000 steps the reversed model had not
/// yet found the rule (4% of the held-out 1-digit sums right, against 100%
/// after 6,000), and with 16 windows a step it had not found it after
/// 6,000 either; with 16, the model with index hints got 4% of the 4-digit
/// sums right instead of 83%. Length generalisation is fragile.
pub fn sum_train_config() -> TrainConfig {
    TrainConfig {
        batch_size: 32,
        block_size: 48,
        max_iters: 6000,
        learning_rate: 3e-3,
        min_lr: 3e-4,
        warmup_iters: 100,
        lr_decay_iters: 6000,
        eval_interval: 0,
        eval_iters: 1,
        weight_decay: 0.1,
        ..TrainConfig::shakespeare_char()
    }
}

/// The seed of the sum models' initial weights.
pub const SUM_MODEL_SEED: u64 = 8;

/// The model trained on [`training_text`] in `notation`: trained once, then
/// read from the cache.
pub fn sum_model(notation: Notation) -> Result<Trained> {
    let (model, config, seed) = (sum_model_config(), sum_train_config(), SUM_MODEL_SEED);
    cached_training(
        &format!("ch08-sums-{notation:?}"),
        model,
        &config,
        seed,
        || {
            let tokenizer = TextTokenizer::Char(sum_vocab());
            train_on_text(&training_text(notation), tokenizer, model, &config, seed)
        },
    )
}

// ANCHOR: sum_answers
/// The model's greedy answers to `sums` in `notation` (index letters from
/// `a`), each with whether it is exactly right.
pub fn sum_answers(
    model: &Trained,
    notation: Notation,
    sums: &[Sum],
) -> Result<Vec<(String, bool)>> {
    let writer = LineWriter::new(&model.gpt, &model.tokenizer)?;
    sums.iter()
        .map(|&sum| {
            // After a newline, as every line of the training text is.
            let prompt = format!("\n{}", notation.prompt(sum, 0));
            let expected = notation.answer(sum, 0);
            let written = writer.complete(&prompt, expected.len() + 4)?;
            let right = is_exact(&written, &expected);
            Ok((written.0, right))
        })
        .collect()
}
// ANCHOR_END: sum_answers

/// The share of `answers` that are right.
pub fn accuracy(answers: &[(String, bool)]) -> f32 {
    answers.iter().filter(|a| a.1).count() as f32 / answers.len() as f32
}

/// One notation's results: accuracy by the numbers' length.
#[derive(Clone, Debug, PartialEq)]
pub struct LengthCurve {
    /// How the sums were written.
    pub notation: Notation,
    /// The model's mean batch loss over its last 100 training steps.
    pub final_loss: f32,
    /// For 1 to [`TEST_DIGITS`] digits: how many test sums, and the share
    /// answered exactly right.
    pub by_digits: Vec<(usize, usize, f32)>,
    /// The first two test sums of each length from 3 digits on: the prompt,
    /// the right answer and what the model wrote.
    pub examples: Vec<(String, String, String)>,
}

// ANCHOR: length_curve
/// Trains (or reads) the model for `notation` and tests it on held-out
/// sums of 1 to [`TEST_DIGITS`] digits.
pub fn length_curve(notation: Notation) -> Result<LengthCurve> {
    let model = sum_model(notation)?;
    let mut by_digits = Vec::new();
    let mut examples = Vec::new();
    for digits in 1..=TEST_DIGITS {
        let sums = test_sums(digits);
        let answers = sum_answers(&model, notation, &sums)?;
        by_digits.push((digits, sums.len(), accuracy(&answers)));
        if digits >= 3 {
            for (sum, (written, _)) in sums.iter().zip(&answers).take(2) {
                let (prompt, right) = (notation.prompt(*sum, 0), notation.answer(*sum, 0));
                examples.push((prompt, right, written.clone()));
            }
        }
    }
    Ok(LengthCurve {
        notation,
        final_loss: model.final_loss(),
        by_digits,
        examples,
    })
}
// ANCHOR_END: length_curve

/// [`length_curve`] for every notation.
pub fn length_curves() -> Result<Vec<LengthCurve>> {
    Notation::ALL.into_iter().map(length_curve).collect()
}

/// Figure: exact-answer accuracy by the numbers' length, one bar per
/// notation in each group; the models saw 1 to 3 digits only. (Bars, not
/// lines: two notations score the same from 1 to 3 digits, and a line
/// would hide the other.)
pub fn length_figure(path: &Path) -> Result<()> {
    use crate::plot::{Axes, Bars, bar_chart_with_legend};
    let curves = length_curves()?;
    let labels: Vec<String> = (1..=TEST_DIGITS)
        .map(|d| match d {
            1 => "1 digit".to_string(),
            d if d <= TRAIN_DIGITS => format!("{d} digits"),
            d => format!("{d} digits (unseen)"),
        })
        .collect();
    let groups: Vec<&str> = labels.iter().map(String::as_str).collect();
    let series: Vec<Bars> = (curves.iter())
        .map(|c| Bars {
            name: c.notation.name(),
            values: c
                .by_digits
                .iter()
                .map(|&(_, _, acc)| f64::from(acc))
                .collect(),
        })
        .collect();
    let axes = Axes {
        title: "Sums trained on 1 to 3 digits, tested on held-out sums of 1 to 5",
        x_label: "digits in each number",
        y_label: "share of answers exactly right",
        log_y: false,
        log_x: false,
    };
    bar_chart_with_legend(
        path,
        &axes,
        &groups,
        &series,
        plotters::prelude::SeriesLabelPosition::UpperRight,
    )
}

// ---------------------------------------------------------------------------
// Letters inside tokens: spelling names and counting their letters.

/// Syllable onsets of the generated names: every letter of the alphabet
/// is in one of the three lists.
const ONSETS: &[&str] = &[
    "b", "bl", "br", "c", "ch", "cl", "cr", "d", "dr", "f", "fl", "g", "gl", "gr", "h", "j", "k",
    "l", "m", "n", "p", "pl", "qu", "r", "s", "sh", "sk", "sl", "st", "t", "th", "tr", "v", "w",
    "wr", "y", "z",
];

/// Syllable vowels of the generated names.
const VOWELS: &[&str] = &["a", "e", "i", "o", "u", "y", "ai", "ea", "ee", "oo", "ou"];

/// Syllable endings of the generated names (empty a third of the time).
const CODAS: &[&str] = &[
    "", "", "", "", "", "", "", "", "", "", "", "b", "ck", "d", "ff", "g", "k", "l", "ll", "m",
    "n", "nn", "p", "r", "rr", "s", "ss", "t", "tt", "x", "th", "nd", "st",
];

/// Generated names for training.
pub const TRAIN_NAMES: usize = 8000;

/// Generated names held out of the spelling and counting lines.
pub const TEST_NAMES: usize = 100;

// ANCHOR: names
/// [`TRAIN_NAMES`] + [`TEST_NAMES`] invented names of two or three
/// syllables (`Brailoo`, `Kethan`), distinct, seeded, none of them a name
/// of the corpus's world.
pub fn generated_names() -> Vec<String> {
    let world = listings::corpus::world();
    let taken: BTreeSet<&str> = (world.towns.iter().chain(&world.held_out))
        .map(|t| t.name.as_str())
        .collect();
    let mut rng = seeded(88);
    let mut seen = BTreeSet::new();
    let mut names = Vec::new();
    while names.len() < TRAIN_NAMES + TEST_NAMES {
        let mut name = String::new();
        for _ in 0..rng.random_range(2..=3) {
            for part in [ONSETS, VOWELS, CODAS] {
                name.push_str(part[rng.random_range(0..part.len())]);
            }
        }
        let name = capitalised(&name);
        let has_countable = countable(&name).iter().any(|&c| count_letter(&name, c) > 0);
        if (4..=12).contains(&name.len())
            && has_countable
            && !taken.contains(name.as_str())
            && seen.insert(name.clone())
        {
            names.push(name);
        }
    }
    names
}

/// The names the models are tested on, in two sets: generated names held
/// out of every spelling and counting line, and the world's town names
/// (the corpus's 52 towns, which the book's BPE mostly keeps whole).
pub fn test_names() -> [(&'static str, Vec<String>); 2] {
    let generated = generated_names().split_off(TRAIN_NAMES);
    let world = listings::corpus::world();
    let towns = (world.towns.iter().chain(&world.held_out))
        .map(|t| t.name.clone())
        .collect();
    [
        ("held-out generated names", generated),
        ("town names", towns),
    ]
}
// ANCHOR_END: names

/// `word` with its first letter in upper case.
fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

// ANCHOR: tasks
/// The spelling question about `name`.
pub fn spell_prompt(name: &str) -> String {
    format!("Spell {name}:")
}

/// Its answer: the letters, each after a space (` T a r r o w`).
pub fn spell_answer(name: &str) -> String {
    name.chars().map(|c| format!(" {c}")).collect()
}

/// The counting question: how many times `letter` is in `name`.
pub fn count_prompt(name: &str, letter: char) -> String {
    format!("Count the {letter} in {name}:")
}

/// How many times `letter` is in `name`, upper or lower case.
pub fn count_letter(name: &str, letter: char) -> usize {
    let letter = letter.to_ascii_lowercase();
    name.chars()
        .filter(|c| c.to_ascii_lowercase() == letter)
        .count()
}

/// Its answer: ` 2` for two.
pub fn count_answer(name: &str, letter: char) -> String {
    format!(" {}", count_letter(name, letter))
}

/// A line that only uses the name, so that both models see every name
/// (the test names too) as their tokenizer cuts it: `Say Tarrow: Tarrow`.
pub fn say_prompt(name: &str) -> String {
    format!("Say {name}:")
}
// ANCHOR_END: tasks

/// The letters a count may ask about in `name`: every lower-case letter
/// but the name's initial, so that a count never depends on case.
pub fn countable(name: &str) -> Vec<char> {
    let initial = name.chars().next().map(|c| c.to_ascii_lowercase());
    ('a'..='z').filter(|&c| Some(c) != initial).collect()
}

/// The two letters asked about `name` in a test: one it has (drawn from
/// its letters after the first) and one it has not, both lower case.
pub fn test_letters(name: &str, rng: &mut ChaCha8Rng) -> [char; 2] {
    let letters = countable(name);
    let (has, hasnt): (Vec<char>, Vec<char>) = letters
        .into_iter()
        .partition(|&c| count_letter(name, c) > 0);
    [
        has[rng.random_range(0..has.len())],
        hasnt[rng.random_range(0..hasnt.len())],
    ]
}

/// Rounds of the name examples: each repeats every kind of question, with
/// new letters to count.
pub const NAME_ROUNDS: usize = 1;

// ANCHOR: name_examples
/// The training examples of both name models, as (question, answer)
/// pairs, each answer ending with a newline, in a seeded random order. In
/// each of [`NAME_ROUNDS`] rounds, every training name is spelled once,
/// has two letters counted (one of its own, one drawn from the alphabet,
/// most often absent; never its initial) and is said once; every test
/// name is only said.
pub fn name_examples() -> Vec<(String, String)> {
    let names = generated_names();
    let train = &names[..TRAIN_NAMES];
    let test: Vec<String> = test_names().into_iter().flat_map(|(_, n)| n).collect();
    let mut rng = seeded(89);
    let mut pairs = Vec::new();
    for _ in 0..NAME_ROUNDS {
        for name in train {
            pairs.push((spell_prompt(name), format!("{}\n", spell_answer(name))));
            let letters = countable(name);
            let own: Vec<char> = (letters.iter().copied())
                .filter(|&c| count_letter(name, c) > 0)
                .collect();
            let mut pick = |from: &[char]| from[rng.random_range(0..from.len())];
            for letter in [pick(&own), pick(&own), pick(&letters), pick(&letters)] {
                let answer = format!("{}\n", count_answer(name, letter));
                pairs.push((count_prompt(name, letter), answer));
            }
        }
        for name in train.iter().chain(&test) {
            pairs.push((say_prompt(name), format!(" {name}\n")));
        }
    }
    for i in (1..pairs.len()).rev() {
        pairs.swap(i, rng.random_range(0..=i));
    }
    pairs
}
// ANCHOR_END: name_examples

/// The two tokenizers compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// The book's BPE (chapter 1): 2,048 tokens, most town names whole.
    Bpe,
    /// One token per character of the names text.
    Char,
}

impl Cut {
    /// Both, BPE first.
    pub const ALL: [Cut; 2] = [Cut::Bpe, Cut::Char];

    /// The tokenizer.
    pub fn tokenizer(self) -> TextTokenizer {
        match self {
            Cut::Bpe => TextTokenizer::Bpe(listings::tokens::book_tokenizer().clone()),
            Cut::Char => {
                let text: String = (name_examples().into_iter())
                    .map(|(question, answer)| question + &answer)
                    .collect();
                TextTokenizer::Char(CharVocab::from_text(&text).expect("not empty"))
            }
        }
    }

    /// A short name.
    pub fn name(self) -> &'static str {
        match self {
            Cut::Bpe => "BPE",
            Cut::Char => "characters",
        }
    }
}

/// How `name` is cut by the book's BPE, as it follows a space in the
/// names text: ` Tarrow` is one token, ` Kethan` three.
pub fn bpe_pieces(name: &str) -> Vec<String> {
    let bpe = listings::tokens::book_tokenizer();
    bpe.pieces(&bpe.encode(&format!(" {name}")))
}

/// The mean number of BPE tokens the book's tokenizer cuts `names` into
/// ([`bpe_pieces`]).
pub fn bpe_tokens_per_name(names: &[String]) -> f32 {
    let pieces: usize = names.iter().map(|n| bpe_pieces(n).len()).sum();
    pieces as f32 / names.len() as f32
}

/// The shape of both name models: the book's toy model (2 blocks, 4 heads,
/// 64 wide, 64 tokens of context) over each tokenizer's vocabulary.
pub fn name_model_config(cut: Cut) -> GptConfig {
    GptConfig::toy(cut.tokenizer().vocab_size())
}

/// How both name models train: 8,000 steps of 32 examples
/// ([`train_on_examples`]; `block_size` is unused).
///
/// Measured while choosing, every 1,000 steps of a run: the character
/// model's counts on the held-out names were 63% right at step 3,000
/// (answering 0 every time scores 50%), 93% at 5,000 and all right from
/// 7,000.
pub fn name_train_config() -> TrainConfig {
    TrainConfig {
        batch_size: 32,
        block_size: 64,
        max_iters: 8000,
        learning_rate: 3e-3,
        min_lr: 3e-4,
        warmup_iters: 100,
        lr_decay_iters: 8000,
        eval_interval: 0,
        eval_iters: 1,
        weight_decay: 0.1,
        ..TrainConfig::shakespeare_char()
    }
}

/// The seed of the name models' initial weights.
pub const NAME_MODEL_SEED: u64 = 88;

/// The name model with `cut`'s tokenizer: trained once, then read from the
/// cache.
pub fn name_model(cut: Cut) -> Result<Trained> {
    let (model, config, seed) = (name_model_config(cut), name_train_config(), NAME_MODEL_SEED);
    cached_training(&format!("ch08-names-{cut:?}"), model, &config, seed, || {
        let tokenizer = cut.tokenizer();
        let examples = encode_examples(&tokenizer, &name_examples())?;
        train_on_examples(&examples, tokenizer, model, &config, seed)
    })
}

/// A model's scores on one set of test names.
#[derive(Clone, Debug, PartialEq)]
pub struct NameScore {
    /// Which set.
    pub set: &'static str,
    /// How many names.
    pub names: usize,
    /// The share spelled exactly right.
    pub spell: f32,
    /// The share of counts exactly right, over two letters per name: one
    /// it has and one it has not (so answering 0 every time scores 0.5).
    pub count: f32,
    /// The share right among the letters the names have.
    pub count_present: f32,
    /// The share right among the letters they have not.
    pub count_absent: f32,
}

/// One tokenizer's results.
#[derive(Clone, Debug, PartialEq)]
pub struct Blindness {
    /// The tokenizer.
    pub cut: Cut,
    /// The model's mean batch loss over its last 100 training steps.
    pub final_loss: f32,
    /// Its scores on each set of test names.
    pub scores: Vec<NameScore>,
    /// The first three names of each set and the model's spelling of each.
    pub spellings: Vec<(String, String)>,
}

// ANCHOR: blindness
/// Trains (or reads) the name model with `cut`'s tokenizer and tests it on
/// the names it never saw spelled or counted.
pub fn blindness(cut: Cut) -> Result<Blindness> {
    let model = name_model(cut)?;
    let writer = LineWriter::new(&model.gpt, &model.tokenizer)?;
    let mut scores = Vec::new();
    let mut spellings = Vec::new();
    for (set, names) in test_names() {
        let mut rng = seeded(90);
        let (mut spelled, mut counted) = (0, [0, 0]);
        for (i, name) in names.iter().enumerate() {
            let written = writer.complete(&spell_prompt(name), 40)?;
            spelled += usize::from(is_exact(&written, &spell_answer(name)));
            if i < 3 {
                spellings.push((name.clone(), written.0));
            }
            for (k, letter) in test_letters(name, &mut rng).into_iter().enumerate() {
                let written = writer.complete(&count_prompt(name, letter), 4)?;
                counted[k] += usize::from(is_exact(&written, &count_answer(name, letter)));
            }
        }
        let n = names.len() as f32;
        scores.push(NameScore {
            set,
            names: names.len(),
            spell: spelled as f32 / n,
            count: (counted[0] + counted[1]) as f32 / (2.0 * n),
            count_present: counted[0] as f32 / n,
            count_absent: counted[1] as f32 / n,
        });
    }
    Ok(Blindness {
        cut,
        final_loss: model.final_loss(),
        scores,
        spellings,
    })
}
// ANCHOR_END: blindness

/// [`blindness`] for both tokenizers, BPE first.
pub fn blindness_both() -> Result<Vec<Blindness>> {
    Cut::ALL.into_iter().map(blindness).collect()
}

// ---------------------------------------------------------------------------
// Positions no example reached.

// ANCHOR: position_drift
/// For each row of a trained model's position table `wpe`, the cosine
/// similarity with the same row at initialisation (`seed`, as
/// [`Gpt::new`] draws it). A row that training never reached is still its
/// random initial vector, shrunk by weight decay but pointing the same way:
/// cosine 1.
pub fn position_drift(trained: &Gpt, seed: u64) -> Result<Vec<f32>> {
    let initial = Gpt::new(*trained.config(), seed)?;
    let (now, then) = (&trained.params().wpe, &initial.params().wpe);
    Ok((now.outer_iter().zip(then.outer_iter()))
        .map(|(a, b)| {
            let dot = a.dot(&b);
            dot / (a.dot(&a).sqrt() * b.dot(&b).sqrt())
        })
        .collect())
}
// ANCHOR_END: position_drift

/// How many positions the name models' training reads with `cut`'s
/// tokenizer: the longest example's length less one (its last token is
/// only a target). The rows of `wpe` from this one on never see a token.
pub fn name_positions_read(cut: Cut) -> Result<usize> {
    let examples = encode_examples(&cut.tokenizer(), &name_examples())?;
    Ok(examples.iter().map(|e| e.ids.len() - 1).max().unwrap_or(0))
}

/// Fails unless `text` is a line of `notation` for a right sum (a check
/// the tests and the chapter use on generated data).
pub fn check_line(notation: Notation, text: &str) -> Result<Sum> {
    match notation.read_line(text) {
        Some((sum, _)) => Ok(sum),
        None => bail!(
            "{text:?} is not a right sum in the {} notation",
            notation.name()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_in_each_notation_and_read_back() {
        let sum = Sum { a: 123, b: 45 };
        let lines: Vec<String> = Notation::ALL.iter().map(|n| n.line(sum, 0)).collect();
        assert_eq!(
            lines,
            ["123+45=168\n", "321+54=861\n", "a3b2c1+a5b4=a8b6c1\n"]
        );
        assert_eq!(Notation::Indexed.line(sum, 3), "d3e2f1+d5e4=d8e6f1\n");
        let vocab = sum_vocab();
        let mut rng = seeded(1);
        for notation in Notation::ALL {
            for _ in 0..500 {
                let digits = rng.random_range(1..=TEST_DIGITS);
                let b_digits = rng.random_range(1..=digits);
                let sum = Sum {
                    a: random_number(&mut rng, digits),
                    b: random_number(&mut rng, b_digits),
                };
                let offset = if notation == Notation::Indexed {
                    rng.random_range(0..=INDEX_LETTERS - digits - 1)
                } else {
                    0
                };
                let line = notation.line(sum, offset);
                assert_eq!(notation.read_line(&line), Some((sum, offset)), "{line:?}");
                assert!(vocab.encode(&line).is_ok(), "{line:?}");
            }
        }
    }

    #[test]
    fn wrong_or_malformed_lines_are_refused() {
        for (notation, line) in [
            (Notation::Plain, "123+45=167\n"),
            (Notation::Plain, "123+045=168\n"),
            (Notation::Plain, "123+45=168"),
            (Notation::Reversed, "123+45=168\n"),
            (Notation::Indexed, "a3b2c1+a5b4=a8b6\n"),
            (Notation::Indexed, "a3b2c1+b5c4=a8b6c1\n"),
            (Notation::Indexed, "a3c2+a5=a8c2\n"),
        ] {
            assert_eq!(notation.read_line(line), None, "{line:?}");
            assert!(check_line(notation, line).is_err());
        }
    }

    #[test]
    fn test_sums_have_their_length_and_are_never_trained_on() {
        for digits in 1..=TEST_DIGITS {
            let sums = test_sums(digits);
            let distinct: BTreeSet<Sum> = sums.iter().copied().collect();
            assert_eq!(distinct.len(), sums.len());
            let want = if digits == 1 { 25 } else { 100 };
            assert_eq!(sums.len(), want);
            for s in &sums {
                assert_eq!(s.a.to_string().len(), digits, "{s:?}");
                assert_eq!(s.b.to_string().len(), digits, "{s:?}");
            }
        }
        let trained = training_sums();
        assert_eq!(trained.len(), TRAIN_LINES);
        let trained_set: BTreeSet<Sum> = trained.iter().copied().collect();
        for digits in 1..=TEST_DIGITS {
            assert!(test_sums(digits).iter().all(|s| !trained_set.contains(s)));
        }
        assert!(trained.iter().all(|s| s.a < 1000 && s.b < 1000));
        // Every length pairing occurs, two 1-digit numbers included.
        let lengths: BTreeSet<(usize, usize)> = (trained.iter())
            .map(|s| (s.a.to_string().len(), s.b.to_string().len()))
            .collect();
        assert_eq!(lengths.len(), 9);
        for notation in Notation::ALL {
            let text = training_text(notation);
            let lines: Vec<&str> = text.split_inclusive('\n').collect();
            assert_eq!(lines.len(), TRAIN_LINES);
            for (line, sum) in lines.iter().zip(&trained) {
                assert_eq!(check_line(notation, line).unwrap(), *sum);
            }
        }
        let letters: BTreeSet<char> = training_text(Notation::Indexed)
            .chars()
            .filter(char::is_ascii_lowercase)
            .collect();
        assert_eq!(
            letters.len(),
            INDEX_LETTERS,
            "every index letter is trained"
        );
    }

    #[test]
    fn answers_are_scored_exactly() {
        assert!(is_exact(&("168".into(), true), "168"));
        assert!(
            !is_exact(&("168".into(), false), "168"),
            "the line never ended"
        );
        assert!(!is_exact(&("1680".into(), true), "168"));
        assert!(!is_exact(&("16".into(), true), "168"));
        let answers = [("1".into(), true), ("2".into(), false), ("3".into(), true)];
        assert!((accuracy(&answers[..2]) - 0.5).abs() < 1e-6);
        assert!((accuracy(&answers) - 2.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn a_line_writer_stops_at_the_newline() {
        // An untrained model writes something; whatever it is, the line
        // has no newline, and a stop is reported only with one.
        let tokenizer = TextTokenizer::Char(sum_vocab());
        let gpt = Gpt::new(sum_model_config(), 1).unwrap();
        let writer = LineWriter::new(&gpt, &tokenizer).unwrap();
        assert_eq!(writer.stops, [0]);
        let (line, stopped) = writer.complete("\n12+3=", 6).unwrap();
        assert!(!line.contains('\n'));
        assert!(stopped || line.chars().count() == 6);
    }
    fn parse_name<'a>(prompt: &'a str, before: &str) -> Option<&'a str> {
        prompt.strip_prefix(before)?.strip_suffix(':')
    }

    #[test]
    fn generated_names_are_distinct_and_never_the_worlds() {
        let names = generated_names();
        assert_eq!(names.len(), TRAIN_NAMES + TEST_NAMES);
        let distinct: BTreeSet<&String> = names.iter().collect();
        assert_eq!(distinct.len(), names.len());
        let [(_, generated), (_, towns)] = test_names();
        assert_eq!(generated, names[TRAIN_NAMES..]);
        assert_eq!(towns.len(), 52);
        for name in &names {
            assert!((4..=12).contains(&name.len()), "{name}");
            assert!(name.chars().next().unwrap().is_ascii_uppercase(), "{name}");
            assert!(
                name.chars().skip(1).all(|c| c.is_ascii_lowercase()),
                "{name}"
            );
            assert!(!towns.contains(name), "{name}");
        }
        // Every letter is in some training name.
        let letters: BTreeSet<char> = (names[..TRAIN_NAMES].iter())
            .flat_map(|n| n.to_ascii_lowercase().chars().collect::<Vec<_>>())
            .collect();
        assert_eq!(letters.len(), 26);
    }

    #[test]
    fn spelling_and_counting_say_what_they_claim() {
        assert_eq!(spell_prompt("Tarrow"), "Spell Tarrow:");
        assert_eq!(spell_answer("Tarrow"), " T a r r o w");
        assert_eq!(count_prompt("Tarrow", 'r'), "Count the r in Tarrow:");
        assert_eq!(count_answer("Tarrow", 'r'), " 2");
        assert_eq!(count_letter("strawberry", 'r'), 3);
        assert_eq!(count_letter("Tarrow", 't'), 1, "upper or lower case");
        assert_eq!(count_letter("Tarrow", 'z'), 0);
        assert!(!countable("Tarrow").contains(&'t'));
        assert_eq!(countable("Tarrow").len(), 25);
        let mut rng = seeded(3);
        for name in ["Tarrow", "Elverwell", "Gugoo"] {
            for _ in 0..50 {
                let [has, hasnt] = test_letters(name, &mut rng);
                assert!(count_letter(name, has) > 0 && count_letter(name, hasnt) == 0);
                assert!(countable(name).contains(&has) && countable(name).contains(&hasnt));
            }
        }
    }

    #[test]
    fn test_names_are_never_spelled_or_counted_in_training() {
        let test: BTreeSet<String> = test_names().into_iter().flat_map(|(_, n)| n).collect();
        let examples = name_examples();
        let (mut spelled, mut counted, mut said) = (0, 0, BTreeSet::new());
        for (prompt, answer) in &examples {
            assert!(answer.ends_with('\n') && !answer[..answer.len() - 1].contains('\n'));
            if let Some(name) = parse_name(prompt, "Spell ") {
                assert!(!test.contains(name), "{prompt}");
                assert_eq!(*answer, spell_answer(name) + "\n");
                spelled += 1;
            } else if let Some(rest) = prompt.strip_prefix("Count the ") {
                let (letter, name) = rest.strip_suffix(':').unwrap().split_once(" in ").unwrap();
                let letter = letter.chars().next().unwrap();
                assert!(!test.contains(name), "{prompt}");
                assert!(countable(name).contains(&letter), "{prompt}");
                assert_eq!(*answer, count_answer(name, letter) + "\n");
                counted += 1;
            } else {
                let name = parse_name(prompt, "Say ").unwrap();
                assert_eq!(*answer, format!(" {name}\n"));
                said.insert(name.to_string());
            }
        }
        assert_eq!(spelled, TRAIN_NAMES * NAME_ROUNDS);
        assert_eq!(counted, 4 * TRAIN_NAMES * NAME_ROUNDS);
        assert!(
            test.iter().all(|n| said.contains(n)),
            "every test name is said"
        );
        // Both kinds of count occur: letters a name has, and letters it has not.
        let zeros = (examples.iter()).filter(|(_, a)| a == " 0\n").count();
        assert!(
            zeros > counted / 5 && zeros < counted / 2,
            "{zeros} of {counted}"
        );
    }

    #[test]
    fn questions_encode_as_prefixes_for_both_tokenizers() {
        let pairs: Vec<(String, String)> = name_examples().into_iter().take(400).collect();
        for cut in Cut::ALL {
            let tokenizer = cut.tokenizer();
            let encoded = encode_examples(&tokenizer, &pairs).unwrap();
            for ((prompt, answer), e) in pairs.iter().zip(&encoded) {
                assert_eq!(
                    tokenizer.decode(&e.ids).unwrap(),
                    format!("{prompt}{answer}")
                );
                assert_eq!(tokenizer.decode(&e.ids[..e.prompt_len]).unwrap(), *prompt);
            }
        }
        let bad = [("12+3".to_string(), "4=".to_string())];
        let bpe = Cut::Bpe.tokenizer();
        assert!(
            encode_examples(&bpe, &bad).is_err(),
            "3 and 4 merge into one token"
        );
        assert_eq!(bpe_pieces("Tarrow"), [" Tarrow"]);
        assert_eq!(bpe_pieces("Kelmarin"), [" K", "el", "mar", "in"]);
        let two = ["Tarrow".to_string(), "Kelmarin".to_string()];
        assert!((bpe_tokens_per_name(&two) - 2.5).abs() < 1e-6);
        let [(_, generated), (_, towns)] = test_names();
        assert!(bpe_tokens_per_name(&towns) < bpe_tokens_per_name(&generated));
    }

    #[test]
    fn a_row_no_example_reaches_keeps_its_direction() {
        // Train two steps on rows of three tokens: positions 0 and 1 are
        // read, the rest only shrink under weight decay.
        let tokenizer = TextTokenizer::Char(sum_vocab());
        let model = GptConfig {
            block_size: 8,
            ..sum_model_config()
        };
        let pairs = vec![("1+".to_string(), "2\n".to_string())];
        let examples = encode_examples(&tokenizer, &pairs).unwrap();
        let config = TrainConfig {
            max_iters: 2,
            batch_size: 2,
            warmup_iters: 0,
            ..sum_train_config()
        };
        let trained = train_on_examples(&examples, tokenizer, model, &config, 5).unwrap();
        let drift = position_drift(&trained.gpt, 5).unwrap();
        assert_eq!(drift.len(), 8);
        assert!(drift[..3].iter().all(|&c| c < 0.9999), "{drift:?}");
        assert!(drift[3..].iter().all(|&c| c > 0.99999), "{drift:?}");
        let initial = Gpt::new(model, 5).unwrap();
        let shrunk = trained.gpt.params().wpe[[5, 0]] / initial.params().wpe[[5, 0]];
        assert!(
            shrunk > 0.99 && shrunk < 1.0,
            "weight decay shrinks: {shrunk}"
        );
    }

    #[test]
    fn the_context_is_a_wall() {
        // Two 24-digit numbers do not fit in 48 positions: the writer
        // refuses the prompt rather than cut it.
        let tokenizer = TextTokenizer::Char(sum_vocab());
        let gpt = Gpt::new(sum_model_config(), 1).unwrap();
        let writer = LineWriter::new(&gpt, &tokenizer).unwrap();
        let n = "1".repeat(24);
        let err = writer.complete(&format!("\n{n}+{n}="), 4).unwrap_err();
        let err = err.to_string();
        assert!(
            err.contains("51 tokens but the model sees at most 48"),
            "{err}"
        );
    }
}
