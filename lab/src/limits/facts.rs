//! Chapter 8's experiments on facts: what a model says about things it
//! was told once, or never; how far its confidence can be trusted; and
//! what it cannot say about a fact it read only one way round.
//!
//! Three experiments, each on a model the book trains and each scored on
//! questions whose answers the code knows:
//!
//! - **Hallucination and exposure** ([`hallucination`]): invented people,
//!   each with a pet, stated 1, 2, 5 or 20 times in a small model's
//!   training text among the corpus's own documents. The model's greedy
//!   answers are scored by how often each fact was seen, and it is asked
//!   about people who never existed.
//! - **Calibration** ([`book_calibration`], [`tuned_calibration`],
//!   [`never_seen_towns`]): the book model's confidence in its answers to
//!   the world's questions against how often it is right; a reliability
//!   diagram, the expected calibration error, and temperature scaling
//!   fitted on half the towns and tested on the other half.
//! - **The reversal curse** ([`reversal`], [`reversal_with_reading`]): "A's
//!   pet is called B" taught in one direction only, then asked the other
//!   way round, beside pairs taught both ways, and with the fact given in
//!   the prompt, to a model that never practised reading its prompt and to
//!   one that did.
//!
//! The small models ([`GptConfig::toy`] on the book tokenizer, trained
//! from scratch) are trained once and kept on disk ([`crate::cache`]),
//! keyed by this file, as the book model is.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use listings::checkpoint;
use listings::corpus::{Attribute, Town, town_question, world};
use listings::infer::decode::{Decoder, Logits, Segment};
use listings::infer::kv::KvCache;
use listings::infer::quant::Format;
use listings::model::{Gpt, GptConfig};
use listings::rng::{ChaCha8Rng, RngExt, seeded};
use listings::tokens::{TextTokenizer, book_tokenizer};
use listings::train::batches::{Split, TokenData};
use listings::train::run::{TrainConfig, run};
use listings::train::step::{TrainError, Trainer};

use crate::cache;
use crate::greedy::{Continuation, continuations, log_softmax_at};

// ---------------------------------------------------------------------------
// Invented people and pets.

/// First names of the invented people: none is a name or a word of the
/// corpus.
pub const FIRST_NAMES: [&str; 26] = [
    "Alma", "Bruno", "Cora", "Dexter", "Edith", "Felix", "Greta", "Harriet", "Ines", "Jasper",
    "Kira", "Linus", "Marta", "Nils", "Opal", "Piers", "Quentin", "Rhea", "Silas", "Tilda",
    "Ulric", "Vera", "Wade", "Xavier", "Yvonne", "Zelda",
];

/// Family names of the invented people: none is a word of the corpus.
pub const LAST_NAMES: [&str; 24] = [
    "Abbott", "Birch", "Colley", "Drake", "Elwood", "Fincher", "Gorse", "Hadley", "Ingram",
    "Jessop", "Kemble", "Lowry", "Marsh", "Nolan", "Oakes", "Pryce", "Quarles", "Redfern",
    "Sowerby", "Tulley", "Varley", "Wetherby", "Yeoman", "Zouch",
];

/// The animals the invented people keep: animals of the corpus's stories,
/// each one token of the book tokenizer after a space, and each written
/// after "a" (none starts with a vowel), so no word before the answer
/// gives it away.
pub const PET_ANIMALS: [&str; 15] = [
    "dog", "cat", "rabbit", "duck", "goat", "pony", "hen", "mouse", "hedgehog", "pig", "fox",
    "frog", "goose", "squirrel", "sheep",
];

/// The first syllables of invented pet names.
const PET_ONSETS: [&str; 30] = [
    "Bim", "Dax", "Fen", "Gub", "Hox", "Jup", "Kip", "Lom", "Mux", "Nib", "Pod", "Quib", "Rux",
    "Sib", "Tav", "Vob", "Wiz", "Yop", "Zim", "Cag", "Bor", "Dun", "Fip", "Gol", "Hib", "Jor",
    "Kez", "Lub", "Mip", "Nox",
];

/// The endings of invented pet names.
const PET_ENDINGS: [&str; 11] = [
    "ble", "do", "kin", "per", "sy", "tle", "wick", "zo", "let", "ny", "rum",
];

/// Shuffles `items` in place (Fisher-Yates), from `rng`.
fn shuffle<T>(items: &mut [T], rng: &mut ChaCha8Rng) {
    for i in (1..items.len()).rev() {
        let j = rng.random_range(0..=i);
        items.swap(i, j);
    }
}

/// `count` different invented full names ("Alma Birch"): every pairing of
/// [`FIRST_NAMES`] and [`LAST_NAMES`], in an order `seed` shuffles, cut
/// to `count`.
///
/// # Panics
///
/// If `count` is more than the 624 pairings.
pub fn invented_people(count: usize, seed: u64) -> Vec<String> {
    let mut all: Vec<String> = (FIRST_NAMES.iter())
        .flat_map(|f| LAST_NAMES.iter().map(move |l| format!("{f} {l}")))
        .collect();
    assert!(count <= all.len(), "only {} names", all.len());
    shuffle(&mut all, &mut seeded(seed));
    all.truncate(count);
    all
}

/// `count` different invented pet names ("Bimble", "Daxkin"): a first
/// syllable and an ending, in an order `seed` shuffles.
///
/// # Panics
///
/// If `count` is more than the 330 pairings.
pub fn invented_pet_names(count: usize, seed: u64) -> Vec<String> {
    let mut all: Vec<String> = (PET_ONSETS.iter())
        .flat_map(|o| PET_ENDINGS.iter().map(move |e| format!("{o}{e}")))
        .collect();
    assert!(count <= all.len(), "only {} pet names", all.len());
    shuffle(&mut all, &mut seeded(seed));
    all.truncate(count);
    all
}

// ---------------------------------------------------------------------------
// Small models trained on generated documents among the corpus's own.

/// The corpus seed of the filler documents (the book's corpus is seed 1).
const FILLER_SEED: u64 = 81;

/// The corpus seed of the validation text the training run requires.
const VAL_SEED: u64 = 82;

/// The seed of the small models' initial weights.
pub const FACTS_MODEL_SEED: u64 = 8;

// ANCHOR: facts_train_config
/// How the chapter's small models train: the book model's settings
/// (batches of 16 windows of 64 tokens, AdamW at 3e-3 decaying to 3e-4),
/// for `steps` steps, with no evaluation along the way.
pub fn facts_train_config(steps: usize) -> TrainConfig {
    TrainConfig {
        batch_size: 16,
        block_size: 64,
        max_iters: steps,
        learning_rate: 3e-3,
        min_lr: 3e-4,
        warmup_iters: 100,
        lr_decay_iters: steps,
        eval_interval: 0,
        eval_iters: 1,
        ..TrainConfig::shakespeare_char()
    }
}
// ANCHOR_END: facts_train_config

/// What a small model was trained on, and how long it took.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainingSummary {
    /// Tokens of training text.
    pub tokens: usize,
    /// Of those, the tokens of the generated documents.
    pub fact_tokens: usize,
    /// Training steps.
    pub steps: usize,
    /// Passes over the training text: steps × 16 × 64 / tokens.
    pub epochs: f32,
    /// The mean loss of the last 100 steps' batches.
    pub final_loss: f32,
    /// The wall time of the training run (when it was trained, not read
    /// from the cache), in seconds.
    pub seconds: f32,
}

/// A small model trained on generated documents among the corpus's.
pub struct FactsModel {
    /// The model: [`GptConfig::toy`] on the book tokenizer.
    pub gpt: Gpt,
    /// The book tokenizer.
    pub tokenizer: TextTokenizer,
    /// Its training.
    pub summary: TrainingSummary,
}

// ANCHOR: mix_documents
/// The training text: the generated `documents` shuffled (with `seed`)
/// among corpus documents of about `filler_bytes` bytes (stories, town
/// facts and `Q:`/`A:` tasks), each followed by a blank line, as in the
/// corpus.
pub fn mix_documents(documents: &[String], filler_bytes: usize, seed: u64) -> String {
    let mut all: Vec<String> = listings::corpus::documents(FILLER_SEED, filler_bytes)
        .into_iter()
        .map(|d| d.text)
        .chain(documents.iter().cloned())
        .collect();
    shuffle(&mut all, &mut seeded(seed));
    all.iter().map(|d| format!("{d}\n\n")).collect()
}
// ANCHOR_END: mix_documents

/// Trains [`GptConfig::toy`] (seed [`FACTS_MODEL_SEED`]) on `documents`
/// mixed with `filler_bytes` of corpus text, for `steps` steps.
pub fn train_facts_model(
    documents: &[String],
    filler_bytes: usize,
    steps: usize,
) -> Result<FactsModel> {
    let tokenizer = TextTokenizer::Bpe(book_tokenizer().clone());
    let text = mix_documents(documents, filler_bytes, FACTS_MODEL_SEED);
    let train = TokenData::from_text(&text, &tokenizer)?;
    let fact_tokens = (documents.iter())
        .map(|d| Ok(tokenizer.encode(&format!("{d}\n\n"))?.len()))
        .sum::<Result<usize>>()?;
    let val_text = listings::corpus::generate(VAL_SEED, 4_000);
    let data = Split {
        train,
        val: TokenData::from_text(&val_text, &tokenizer)?,
    };
    let config = facts_train_config(steps);
    let gpt = Gpt::new(GptConfig::toy(tokenizer.vocab_size()), FACTS_MODEL_SEED)
        .map_err(TrainError::from)?;
    let mut trainer = Trainer::new(gpt, config.adamw(), config.batch_size, config.block_size)?;
    let start = Instant::now();
    let history = run(&mut trainer, &data, &config, |_, _| Ok(()))?;
    let seconds = start.elapsed().as_secs_f32();
    let last = &history.losses[history.losses.len().saturating_sub(100)..];
    let tokens = data.train.len();
    Ok(FactsModel {
        gpt: trainer.into_gpt(),
        tokenizer,
        summary: TrainingSummary {
            tokens,
            fact_tokens,
            steps,
            epochs: (steps * config.batch_size * config.block_size) as f32 / tokens as f32,
            final_loss: last.iter().sum::<f32>() / last.len().max(1) as f32,
            seconds,
        },
    })
}

/// [`train_facts_model`], trained once and kept on disk under `name`.
fn cached_facts_model(
    name: &str,
    documents: &[String],
    filler_bytes: usize,
    steps: usize,
) -> Result<FactsModel> {
    let settings = format!(
        "{:?}\nfiller {filler_bytes}\nseed {FACTS_MODEL_SEED}\ndocuments {}",
        facts_train_config(steps),
        text_hash(documents)
    );
    let key = cache::key(name, &["limits/facts.rs"], &settings);
    cache::cached(&key, save_facts_model, load_facts_model, || {
        train_facts_model(documents, filler_bytes, steps)
    })
}

/// A hash of texts, for a cache key.
fn text_hash(texts: &[String]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for t in texts {
        for b in t.bytes().chain([0]) {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    format!("{} texts, {h:016x}", texts.len())
}

/// Writes a small model and its summary as a checkpoint.
fn save_facts_model(model: &FactsModel, path: &Path) -> Result<()> {
    let s = &model.summary;
    let bits = |x: f32| format!("{:08x}", x.to_bits());
    let hparams = BTreeMap::from([
        ("facts.tokens".to_string(), s.tokens.to_string()),
        ("facts.fact_tokens".to_string(), s.fact_tokens.to_string()),
        ("facts.epochs".to_string(), bits(s.epochs)),
        ("facts.final_loss".to_string(), bits(s.final_loss)),
        ("facts.seconds".to_string(), bits(s.seconds)),
    ]);
    let step = s.steps as u64;
    checkpoint::save(path, &model.gpt, &model.tokenizer, None, step, &hparams)?;
    Ok(())
}

/// Reads what [`save_facts_model`] wrote.
fn load_facts_model(path: &Path) -> Result<FactsModel> {
    let ckpt = checkpoint::load(path)?;
    let field = |name: &str| {
        ckpt.hparams
            .get(name)
            .with_context(|| format!("{} has no {name}", path.display()))
    };
    let bits =
        |name: &str| -> Result<f32> { Ok(f32::from_bits(u32::from_str_radix(field(name)?, 16)?)) };
    let summary = TrainingSummary {
        tokens: field("facts.tokens")?.parse()?,
        fact_tokens: field("facts.fact_tokens")?.parse()?,
        steps: ckpt.step as usize,
        epochs: bits("facts.epochs")?,
        final_loss: bits("facts.final_loss")?,
        seconds: bits("facts.seconds")?,
    };
    Ok(FactsModel {
        gpt: ckpt.gpt,
        tokenizer: ckpt.tokenizer,
        summary,
    })
}

// ---------------------------------------------------------------------------
// Answers, and the probabilities they were written with.

/// For each token id of `tokenizer`, whether its text holds a newline: the
/// tokens that end an answer in the corpus's `Q:`/`A:` format.
pub fn newline_tokens(tokenizer: &TextTokenizer) -> Vec<bool> {
    (0..tokenizer.vocab_size() as u32)
        .map(|id| tokenizer.decode_lossy(&[id]).contains('\n'))
        .collect()
}

// ANCHOR: answer_text
/// The answer in a continuation: its text up to the first newline, without
/// the spaces around it, and without `end` (the end-of-turn token).
pub fn answer_text(tokenizer: &TextTokenizer, ids: &[u32], end: Option<u32>) -> String {
    let ids: Vec<u32> = ids.iter().copied().filter(|&id| Some(id) != end).collect();
    let text = tokenizer.decode_lossy(&ids);
    text.split('\n').next().unwrap_or("").trim().to_string()
}
// ANCHOR_END: answer_text

/// The corpus's question format: `Q: {question}` and `A:` on the next line.
pub fn qa_prompt(question: &str) -> String {
    format!("Q: {question}\nA:")
}

/// Greedy answers to `questions` in the `Q:`/`A:` format (up to 12 tokens,
/// to the end of the line), with their continuations.
pub fn qa_answers(
    gpt: &Gpt,
    tokenizer: &TextTokenizer,
    questions: &[String],
) -> Result<Vec<(String, Continuation)>> {
    let decoder = Decoder::new(gpt, Format::F32)?;
    let prompts = (questions.iter())
        .map(|q| Ok(tokenizer.encode(&qa_prompt(q))?))
        .collect::<Result<Vec<_>>>()?;
    let stop = newline_tokens(tokenizer);
    let continued = continuations(&decoder, &prompts, 12, &stop)?;
    Ok(continued
        .into_iter()
        .map(|c| (answer_text(tokenizer, &c.ids, None), c))
        .collect())
}

/// The log-probability of each candidate answer after its prompt: for
/// prompt `i`, `candidates[i][k]` is scored as the tokens of
/// `" {candidate}"` after `prompts[i]`. One batch per candidate slot, the
/// prompts' caches reused.
pub fn candidate_log_probs(
    gpt: &Gpt,
    tokenizer: &TextTokenizer,
    prompts: &[String],
    candidates: &[Vec<String>],
) -> Result<Vec<Vec<f64>>> {
    let decoder = Decoder::new(gpt, Format::F32)?;
    let prompt_ids = (prompts.iter())
        .map(|p| Ok(tokenizer.encode(p)?))
        .collect::<Result<Vec<Vec<u32>>>>()?;
    let mut caches: Vec<KvCache> = prompts.iter().map(|_| decoder.new_cache()).collect();
    let mut segments: Vec<Segment> = (caches.iter_mut().zip(&prompt_ids))
        .map(|(cache, tokens)| Segment { cache, tokens })
        .collect();
    let first = decoder.forward(&mut segments, Logits::Last)?;
    drop(segments);
    let slots = candidates.iter().map(Vec::len).max().unwrap_or(0);
    let mut out: Vec<Vec<f64>> = vec![Vec::new(); candidates.len()];
    for k in 0..slots {
        let mut ids: Vec<(usize, Vec<u32>)> = Vec::new();
        for (i, c) in candidates.iter().enumerate() {
            if let Some(text) = c.get(k) {
                ids.push((i, tokenizer.encode(&format!(" {text}"))?));
            }
        }
        let mut copies: Vec<KvCache> = ids.iter().map(|(i, _)| caches[*i].clone()).collect();
        let feeds: Vec<&[u32]> = (ids.iter())
            .map(|(_, t)| &t[..t.len().saturating_sub(1)])
            .collect();
        let mut segments: Vec<Segment> = (copies.iter_mut().zip(&feeds))
            .filter(|(_, f)| !f.is_empty())
            .map(|(cache, tokens)| Segment { cache, tokens })
            .collect();
        let rest = if segments.is_empty() {
            ndarray::Array2::zeros((0, 0))
        } else {
            decoder.forward(&mut segments, Logits::All)?
        };
        drop(segments);
        let mut r = 0;
        for (i, tokens) in &ids {
            let mut lp = log_softmax_at(first.row(*i).as_slice().expect("a row"), tokens[0], 1.0);
            for &t in &tokens[1..] {
                lp += log_softmax_at(&rest.row(r).to_vec(), t, 1.0);
                r += 1;
            }
            out[*i].push(lp); // slots go in order, so this is candidate k
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// 1. Hallucination and exposure.

/// How many times each group of facts is stated in the training text.
pub const EXPOSURES: [usize; 4] = [1, 2, 5, 20];

/// How many invented people each exposure count has.
pub const PEOPLE_PER_GROUP: usize = 40;

/// How many more invented people are never mentioned at all.
pub const NEVER_SEEN: usize = 40;

/// The training steps of the exposure model.
pub const EXPOSURE_STEPS: usize = 1500;

/// The bytes of corpus text the pet facts are mixed into.
pub const EXPOSURE_FILLER_BYTES: usize = 150_000;

/// One invented person's pet, and how many times the training text says so.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PetFact {
    /// The person ("Alma Birch").
    pub person: String,
    /// The animal, one of [`PET_ANIMALS`].
    pub animal: String,
    /// How many times the training text states it (0: never).
    pub exposures: usize,
}

/// The exposure experiment's people: [`PEOPLE_PER_GROUP`] for each count of
/// [`EXPOSURES`], then [`NEVER_SEEN`] people with 0. Names are all
/// different; within each group the animals go round [`PET_ANIMALS`] from
/// a seeded start, so every animal is about as common in every group.
pub fn pet_facts() -> Vec<PetFact> {
    let groups: Vec<usize> = EXPOSURES.iter().copied().chain([0]).collect();
    let sizes = |e: usize| if e == 0 { NEVER_SEEN } else { PEOPLE_PER_GROUP };
    let total = groups.iter().map(|&e| sizes(e)).sum();
    let mut people = invented_people(total, 1).into_iter();
    let mut rng = seeded(2);
    let mut facts = Vec::new();
    for exposures in groups {
        let offset = rng.random_range(0..PET_ANIMALS.len());
        for i in 0..sizes(exposures) {
            facts.push(PetFact {
                person: people.next().expect("enough names"),
                animal: PET_ANIMALS[(offset + i) % PET_ANIMALS.len()].to_string(),
                exposures,
            });
        }
    }
    facts
}

// ANCHOR: pet_sentence
/// The question the exposure experiment asks about a person.
pub fn pet_question(person: &str) -> String {
    format!("What animal is {person}'s pet?")
}

/// The `k`-th statement of a fact in the training text: the four ways of
/// saying it in turn, the first being the question and its answer, in the
/// corpus's format (so every fact is stated at least once as the test asks
/// it).
pub fn pet_sentence(fact: &PetFact, k: usize) -> String {
    let (p, a) = (&fact.person, &fact.animal);
    match k % 4 {
        0 => format!("Q: {}\nA: {a}", pet_question(p)),
        1 => format!("{p}'s pet is a {a}."),
        2 => format!("{p} has a pet {a}."),
        _ => format!("{p} keeps a {a} as a pet."),
    }
}

/// The generated documents: each fact stated `exposures` times, one
/// statement per document.
pub fn pet_documents(facts: &[PetFact]) -> Vec<String> {
    (facts.iter())
        .flat_map(|f| (0..f.exposures).map(move |k| pet_sentence(f, k)))
        .collect()
}
// ANCHOR_END: pet_sentence

/// The exposure experiment's model: [`pet_documents`] of [`pet_facts`]
/// among [`EXPOSURE_FILLER_BYTES`] of corpus text, [`EXPOSURE_STEPS`]
/// steps; trained once and cached.
pub fn exposure_model() -> Result<FactsModel> {
    let documents = pet_documents(&pet_facts());
    cached_facts_model(
        "ch08-exposure",
        &documents,
        EXPOSURE_FILLER_BYTES,
        EXPOSURE_STEPS,
    )
}

/// What a model said about one person of [`pet_facts`].
#[derive(Clone, Debug, PartialEq)]
pub struct PetAnswer {
    /// The person.
    pub person: String,
    /// How many times the training text stated their pet.
    pub exposures: usize,
    /// The greedy answer.
    pub answer: String,
    /// Whether it is the person's animal.
    pub right: bool,
    /// The probability of the right animal's token at the answer.
    pub p_right: f32,
    /// The probability of the answer's first token: the model's
    /// confidence.
    pub confidence: f32,
    /// The probability of the 15 animals' tokens together at the answer.
    pub animal_mass: f32,
}

// ANCHOR: pet_answers
/// Asks `model` what animal each person's pet is, greedily, and reads the
/// distribution it chose the answer's first token from.
pub fn pet_answers(model: &FactsModel, facts: &[PetFact]) -> Result<Vec<PetAnswer>> {
    let questions: Vec<String> = facts.iter().map(|f| pet_question(&f.person)).collect();
    let answers = qa_answers(&model.gpt, &model.tokenizer, &questions)?;
    let token = |animal: &str| single_token(&model.tokenizer, &format!(" {animal}"));
    let animals = PET_ANIMALS
        .map(token)
        .into_iter()
        .collect::<Result<Vec<u32>>>()?;
    (facts.iter().zip(answers))
        .map(|(fact, (answer, c))| {
            let p = |id: u32| log_softmax_at(&c.logits[0], id, 1.0).exp() as f32;
            Ok(PetAnswer {
                person: fact.person.clone(),
                exposures: fact.exposures,
                right: answer == fact.animal,
                answer,
                p_right: p(token(&fact.animal)?),
                confidence: p(c.ids[0]),
                animal_mass: animals.iter().map(|&id| p(id)).sum(),
            })
        })
        .collect()
}
// ANCHOR_END: pet_answers

/// How the model answers about the people seen a given number of times:
/// the means of [`PetAnswer`]'s numbers over them.
#[derive(Clone, Debug, PartialEq)]
pub struct ExposureRow {
    /// How many times each fact was stated (0: never).
    pub exposures: usize,
    /// How many people.
    pub people: usize,
    /// The share of greedy answers that are the right animal.
    pub recall: f32,
    /// The share of greedy answers that are some animal of [`PET_ANIMALS`].
    pub animal_answers: f32,
    /// The mean probability of the right animal.
    pub p_right: f32,
    /// The mean confidence.
    pub confidence: f32,
    /// The mean probability on the 15 animals together.
    pub animal_mass: f32,
}

impl ExposureRow {
    /// The row of the `answers` about people seen `exposures` times.
    pub fn of(answers: &[PetAnswer], exposures: usize) -> Self {
        let group: Vec<&PetAnswer> = (answers.iter())
            .filter(|a| a.exposures == exposures)
            .collect();
        let n = group.len().max(1) as f32;
        let mean = |f: &dyn Fn(&PetAnswer) -> f32| group.iter().map(|a| f(a)).sum::<f32>() / n;
        let share = |f: &dyn Fn(&PetAnswer) -> bool| mean(&|a| f32::from(u8::from(f(a))));
        ExposureRow {
            exposures,
            people: group.len(),
            recall: share(&|a| a.right),
            animal_answers: share(&|a| PET_ANIMALS.contains(&a.answer.as_str())),
            p_right: mean(&|a| a.p_right),
            confidence: mean(&|a| a.confidence),
            animal_mass: mean(&|a| a.animal_mass),
        }
    }
}

/// The exposure experiment's measurements.
#[derive(Clone, Debug, PartialEq)]
pub struct Hallucination {
    /// One row per exposure count of [`EXPOSURES`], then the never-seen
    /// people (exposures 0).
    pub rows: Vec<ExposureRow>,
    /// Chance: one animal in 15.
    pub chance: f32,
    /// The share of the trained facts that were stated exactly once.
    pub singleton_share: f32,
    /// The share of the trained facts answered wrong.
    pub error_rate: f32,
    /// The answers about the first five never-seen people.
    pub never_seen: Vec<PetAnswer>,
    /// The most frequent answer about never-seen people, and its share of
    /// them.
    pub commonest_invention: (String, f32),
    /// The model's training.
    pub training: TrainingSummary,
}

/// Trains (or reads) the exposure model and asks it about every person
/// ([`hallucination_of`]).
pub fn hallucination() -> Result<Hallucination> {
    hallucination_of(&exposure_model()?)
}

/// Asks a model trained on [`pet_documents`] about every person of
/// [`pet_facts`] ([`pet_answers`]), and sums up by exposure.
pub fn hallucination_of(model: &FactsModel) -> Result<Hallucination> {
    let answers = pet_answers(model, &pet_facts())?;
    let rows = (EXPOSURES.iter().chain(&[0]))
        .map(|&e| ExposureRow::of(&answers, e))
        .collect();
    let trained: Vec<&PetAnswer> = answers.iter().filter(|a| a.exposures > 0).collect();
    let never: Vec<&PetAnswer> = answers.iter().filter(|a| a.exposures == 0).collect();
    let share = |n: usize, of: usize| n as f32 / of.max(1) as f32;
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for a in &never {
        *counts.entry(a.answer.as_str()).or_default() += 1;
    }
    let (commonest, count) = (counts.iter())
        .max_by_key(|&(a, &c)| (c, std::cmp::Reverse(*a)))
        .map(|(a, c)| (a.to_string(), *c))
        .unwrap_or_default();
    Ok(Hallucination {
        rows,
        chance: 1.0 / PET_ANIMALS.len() as f32,
        singleton_share: share(
            trained.iter().filter(|a| a.exposures == 1).count(),
            trained.len(),
        ),
        error_rate: share(trained.iter().filter(|a| !a.right).count(), trained.len()),
        never_seen: never.iter().take(5).map(|&a| a.clone()).collect(),
        commonest_invention: (commonest, share(count, never.len())),
        training: model.summary,
    })
}

/// The id of `text` if the tokenizer writes it as one token.
fn single_token(tokenizer: &TextTokenizer, text: &str) -> Result<u32> {
    match tokenizer.encode(text)?[..] {
        [id] => Ok(id),
        ref ids => bail!("{text:?} is {} tokens, not one", ids.len()),
    }
}

// ---------------------------------------------------------------------------
// 2. Calibration.

/// One bin of a reliability diagram.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bin {
    /// The lowest confidence the bin holds.
    pub lower: f32,
    /// The highest (excluded, but for the last bin's 1.0).
    pub upper: f32,
    /// The mean confidence of the answers in the bin (0 if empty).
    pub confidence: f32,
    /// The share of them that are right (0 if empty).
    pub accuracy: f32,
    /// How many answers fall in the bin.
    pub count: usize,
}

// ANCHOR: reliability
/// The reliability diagram of `(confidence, right)` pairs: `bins` bins of
/// equal width over [0, 1], each with its answers' mean confidence and
/// accuracy.
pub fn reliability(points: &[(f64, bool)], bins: usize) -> Vec<Bin> {
    let mut sums = vec![(0.0_f64, 0usize, 0usize); bins]; // confidence, right, count
    for &(c, right) in points {
        let b = ((c * bins as f64) as usize).min(bins - 1);
        sums[b].0 += c;
        sums[b].1 += usize::from(right);
        sums[b].2 += 1;
    }
    (sums.iter().enumerate())
        .map(|(b, &(c, right, count))| {
            let n = count.max(1) as f64;
            Bin {
                lower: b as f32 / bins as f32,
                upper: (b + 1) as f32 / bins as f32,
                confidence: (c / n) as f32,
                accuracy: (right as f64 / n) as f32,
                count,
            }
        })
        .collect()
}

/// The expected calibration error: the gap between accuracy and mean
/// confidence in each bin, weighted by the bin's share of the answers.
pub fn expected_calibration_error(bins: &[Bin]) -> f32 {
    let total: usize = bins.iter().map(|b| b.count).sum();
    (bins.iter())
        .map(|b| b.count as f32 / total.max(1) as f32 * (b.accuracy - b.confidence).abs())
        .sum()
}
// ANCHOR_END: reliability

/// The mean negative log-likelihood of being right, when each answer is
/// right with its confidence: `−ln c` for a right answer, `−ln(1 − c)` for
/// a wrong one (confidences clamped to [1e-6, 1 − 1e-6]).
pub fn correctness_nll(points: &[(f64, bool)]) -> f64 {
    let sum: f64 = (points.iter())
        .map(|&(c, right)| {
            let c = c.clamp(1e-6, 1.0 - 1e-6);
            -(if right { c } else { 1.0 - c }).ln()
        })
        .sum();
    sum / points.len().max(1) as f64
}

/// The temperatures [`fit_temperature`] tries: 0.25 to 4 in steps of 0.05.
pub fn temperature_grid() -> Vec<f64> {
    (5..=80).map(|i| f64::from(i) * 0.05).collect()
}

// ANCHOR: fit_temperature
/// The temperature of [`temperature_grid`] whose confidences make
/// [`correctness_nll`] smallest on `answers` (the first, on a tie).
pub fn fit_temperature(answers: &[GradedAnswer]) -> f64 {
    let nll = |t: f64| {
        let points: Vec<(f64, bool)> = answers.iter().map(|a| a.point(t)).collect();
        correctness_nll(&points)
    };
    let grid = temperature_grid();
    let mut best = grid[0];
    for &t in &grid {
        if nll(t) < nll(best) {
            best = t;
        }
    }
    best
}
// ANCHOR_END: fit_temperature

/// A greedy answer, graded: the continuation it came from and whether it is
/// right.
#[derive(Clone, Debug, PartialEq)]
pub struct GradedAnswer {
    /// The answer's text.
    pub text: String,
    /// The expected answer.
    pub expected: String,
    /// Whether the text is the expected answer.
    pub right: bool,
    /// What the model wrote, with its logits.
    pub continuation: Continuation,
}

impl GradedAnswer {
    /// The confidence at `temperature`: the probability of the whole
    /// greedy continuation (every answer token, and ending the answer
    /// there: [`Continuation::log_prob`]), and whether the answer is right.
    pub fn point(&self, temperature: f64) -> (f64, bool) {
        (self.continuation.log_prob(temperature).exp(), self.right)
    }
}

/// A model's calibration on a set of questions.
#[derive(Clone, Debug, PartialEq)]
pub struct Calibration {
    /// How many questions.
    pub questions: usize,
    /// The share answered right.
    pub accuracy: f32,
    /// The mean confidence.
    pub confidence: f32,
    /// The reliability diagram of every answer, 10 bins.
    pub bins: Vec<Bin>,
    /// Its expected calibration error.
    pub ece: f32,
    /// The temperature fitted on the towns of even index.
    pub temperature: f32,
    /// The expected calibration error on the towns of odd index, before
    /// temperature scaling.
    pub ece_before: f32,
    /// The same, after: confidences at the fitted temperature.
    pub ece_after: f32,
    /// [`correctness_nll`] on the odd towns, before.
    pub nll_before: f32,
    /// [`correctness_nll`] on the odd towns, after.
    pub nll_after: f32,
    /// The reliability diagram of the odd towns' answers after scaling.
    pub bins_after: Vec<Bin>,
}

/// The bins of the chapter's reliability diagrams.
pub const BINS: usize = 10;

// ANCHOR: calibration
/// The calibration of graded answers, each tagged with whether it belongs
/// to the half that fits the temperature (the other half tests it).
pub fn calibration(answers: &[(GradedAnswer, bool)]) -> Calibration {
    let points = |t: f64, fit: Option<bool>| -> Vec<(f64, bool)> {
        (answers.iter())
            .filter(|(_, f)| fit.is_none_or(|want| *f == want))
            .map(|(a, _)| a.point(t))
            .collect()
    };
    let all = points(1.0, None);
    let bins = reliability(&all, BINS);
    let fit: Vec<GradedAnswer> = (answers.iter())
        .filter(|(_, f)| *f)
        .map(|(a, _)| a.clone())
        .collect();
    let t = fit_temperature(&fit);
    let (before, after) = (points(1.0, Some(false)), points(t, Some(false)));
    let bins_after = reliability(&after, BINS);
    let n = all.len().max(1) as f32;
    Calibration {
        questions: all.len(),
        accuracy: all.iter().filter(|p| p.1).count() as f32 / n,
        confidence: all.iter().map(|p| p.0 as f32).sum::<f32>() / n,
        ece: expected_calibration_error(&bins),
        bins,
        temperature: t as f32,
        ece_before: expected_calibration_error(&reliability(&before, BINS)),
        ece_after: expected_calibration_error(&bins_after),
        nll_before: correctness_nll(&before) as f32,
        nll_after: correctness_nll(&after) as f32,
        bins_after,
    }
}
// ANCHOR_END: calibration

/// A question about a town, as the corpus asks it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TownQuestion {
    /// The town's index in the list it came from.
    pub town: usize,
    /// What is asked.
    pub attribute: Attribute,
    /// The question ([`town_question`]).
    pub question: String,
    /// The world's answer.
    pub answer: String,
}

/// The seven questions about each of `towns`.
pub fn town_questions(towns: &[Town]) -> Vec<TownQuestion> {
    (towns.iter().enumerate())
        .flat_map(|(town, t)| {
            Attribute::ALL.map(|attribute| {
                let (question, answer) = town_question(t, attribute);
                TownQuestion {
                    town,
                    attribute,
                    question,
                    answer,
                }
            })
        })
        .collect()
}

/// The book model's greedy answers to `questions` in the corpus's format,
/// graded.
pub fn graded_qa(
    gpt: &Gpt,
    tokenizer: &TextTokenizer,
    questions: &[TownQuestion],
) -> Result<Vec<GradedAnswer>> {
    let texts: Vec<String> = questions.iter().map(|q| q.question.clone()).collect();
    let answers = qa_answers(gpt, tokenizer, &texts)?;
    Ok((answers.into_iter().zip(questions))
        .map(|((text, continuation), q)| GradedAnswer {
            right: text == q.answer,
            text,
            expected: q.answer.clone(),
            continuation,
        })
        .collect())
}

/// A model's greedy answers to `questions` in the chat template (up to 24
/// tokens, to the end-of-turn token), graded.
pub fn graded_chat(
    gpt: &Gpt,
    tokenizer: &TextTokenizer,
    questions: &[TownQuestion],
) -> Result<Vec<GradedAnswer>> {
    let decoder = Decoder::new(gpt, Format::F32)?;
    let end = listings::finetune::chat::end_of_turn(tokenizer)?;
    let prompts = (questions.iter())
        .map(|q| Ok(tokenizer.encode(&listings::finetune::chat::prompt_text(&q.question))?))
        .collect::<Result<Vec<_>>>()?;
    let mut stop = vec![false; tokenizer.vocab_size()];
    stop[end as usize] = true;
    let continued = continuations(&decoder, &prompts, 24, &stop)?;
    Ok((continued.into_iter().zip(questions))
        .map(|(c, q)| {
            let text = answer_text(tokenizer, &c.ids, Some(end));
            GradedAnswer {
                right: c.stopped && text == q.answer,
                text,
                expected: q.answer.clone(),
                continuation: c,
            }
        })
        .collect())
}

/// The book model's calibration on the 336 questions about the corpus's
/// 48 towns, in the corpus's `Q:`/`A:` format; the temperature is fitted
/// on the 24 towns of even index and tested on the other 24.
pub fn book_calibration() -> Result<Calibration> {
    let book = crate::book_model::shared_book_model().map_err(anyhow::Error::msg)?;
    let questions = town_questions(&world().towns);
    let graded = graded_qa(&book.gpt, &book.tokenizer, &questions)?;
    let tagged: Vec<(GradedAnswer, bool)> = (graded.into_iter().zip(&questions))
        .map(|(a, q)| (a, q.town % 2 == 0))
        .collect();
    Ok(calibration(&tagged))
}

/// What the book model says about the towns the corpus never mentions.
#[derive(Clone, Debug, PartialEq)]
pub struct NeverSeenTowns {
    /// How many questions (seven per held-out town).
    pub questions: usize,
    /// The share answered right.
    pub accuracy: f32,
    /// The mean confidence ([`GradedAnswer::point`]).
    pub confidence: f32,
    /// The share of answers that are the answer to the same question about
    /// some town of the corpus: a real region, river, mayor, year...
    pub borrowed: f32,
    /// The first few: the question, the answer and its confidence.
    pub answers: Vec<(String, String, f32)>,
}

/// The book model's answers about the towns held out of the corpus
/// ([`listings::corpus::World::held_out`]), in the corpus's format.
pub fn never_seen_towns() -> Result<NeverSeenTowns> {
    let book = crate::book_model::shared_book_model().map_err(anyhow::Error::msg)?;
    let questions = town_questions(&world().held_out);
    let graded = graded_qa(&book.gpt, &book.tokenizer, &questions)?;
    let towns = world().towns;
    let borrowed = (graded.iter().zip(&questions))
        .filter(|(a, q)| towns.iter().any(|t| t.value(q.attribute) == a.text))
        .count();
    let n = graded.len() as f32;
    Ok(NeverSeenTowns {
        questions: graded.len(),
        accuracy: graded.iter().filter(|a| a.right).count() as f32 / n,
        confidence: graded.iter().map(|a| a.point(1.0).0 as f32).sum::<f32>() / n,
        borrowed: borrowed as f32 / n,
        answers: (graded.iter().zip(&questions).take(7))
            .map(|(a, q)| (q.question.clone(), a.text.clone(), a.point(1.0).0 as f32))
            .collect(),
    })
}

/// The book model tuned on the first [`crate::finetuning::TUNED_TOWNS`]
/// towns' questions in the chat template (chapter 6's full tuning,
/// [`crate::finetuning::Recipe::Full`]); trained once and cached.
pub fn tuned_book_model() -> Result<Gpt> {
    use crate::finetuning::{Recipe, instruction_split, tune};
    let settings = format!("{:?}", Recipe::Full);
    let key = cache::key(
        "ch08-tuned",
        &["limits/facts.rs", "finetuning.rs", "book_model.rs"],
        &settings,
    );
    let tokenizer = TextTokenizer::Bpe(book_tokenizer().clone());
    cache::cached(
        &key,
        |gpt: &Gpt, path| {
            checkpoint::save(path, gpt, &tokenizer, None, 0, &BTreeMap::new())?;
            Ok(())
        },
        |path| Ok(checkpoint::load(path)?.gpt),
        || {
            let book = crate::book_model::shared_book_model().map_err(anyhow::Error::msg)?;
            let (tuned, _) = instruction_split();
            let (tuner, _) = tune(&book.gpt, &book.tokenizer, Recipe::Full, &tuned, &[])?;
            Ok(tuner.gpt().clone())
        },
    )
}

/// Calibration before and after instruction tuning.
#[derive(Clone, Debug, PartialEq)]
pub struct TuningCalibration {
    /// The book model, in the corpus's `Q:`/`A:` format.
    pub before: Calibration,
    /// The tuned model ([`tuned_book_model`]), in the chat template.
    pub after: Calibration,
}

/// Calibration before and after instruction tuning, on the 112 questions
/// about the 16 towns tuning never asked about: the book model in the
/// corpus's format, and the tuned model in the chat template (an answer is
/// right if it ends the turn and is the world's answer). Each temperature
/// is fitted on the even towns among them and tested on the odd.
pub fn tuned_calibration() -> Result<TuningCalibration> {
    let book = crate::book_model::shared_book_model().map_err(anyhow::Error::msg)?;
    let towns = &world().towns[crate::finetuning::TUNED_TOWNS..];
    let questions = town_questions(towns);
    let tag = |graded: Vec<GradedAnswer>| -> Vec<(GradedAnswer, bool)> {
        (graded.into_iter().zip(&questions))
            .map(|(a, q)| (a, q.town % 2 == 0))
            .collect()
    };
    let before = tag(graded_qa(&book.gpt, &book.tokenizer, &questions)?);
    let tuned = tuned_book_model()?;
    let after = tag(graded_chat(&tuned, &book.tokenizer, &questions)?);
    Ok(TuningCalibration {
        before: calibration(&before),
        after: calibration(&after),
    })
}

/// Figure: the book model's reliability diagram on the world's questions
/// ([`book_calibration`]): accuracy against mean confidence in each bin
/// that holds answers, before and after temperature scaling, with the
/// diagonal of perfect calibration.
pub fn reliability_figure(path: &Path) -> Result<()> {
    use crate::plot::{Axes, Series, line_chart_with_legend};
    let c = book_calibration()?;
    let points = |bins: &[Bin]| {
        (bins.iter())
            .filter(|b| b.count > 0)
            .map(|b| (f64::from(b.confidence), f64::from(b.accuracy)))
            .collect()
    };
    let after_name = format!("odd towns, T = {:.2}", c.temperature);
    let series = [
        Series {
            name: "perfect calibration",
            points: vec![(0.0, 0.0), (1.0, 1.0)],
        },
        Series {
            name: "every town, T = 1",
            points: points(&c.bins),
        },
        Series {
            name: &after_name,
            points: points(&c.bins_after),
        },
    ];
    let axes = Axes {
        title: "The book model's answers about the towns: accuracy against confidence",
        x_label: "mean confidence in the bin (probability of the greedy answer)",
        y_label: "share of the bin's answers that are right",
        log_y: false,
        log_x: false,
    };
    line_chart_with_legend(
        path,
        &axes,
        &series,
        plotters::prelude::SeriesLabelPosition::UpperLeft,
    )
}

// ---------------------------------------------------------------------------
// 3. The reversal curse.

/// Pairs taught one way only.
pub const ONE_WAY_PAIRS: usize = 100;

/// Pairs taught both ways: the control.
pub const BOTH_WAYS_PAIRS: usize = 50;

/// Pairs never taught, for the facts given in the prompt.
pub const FRESH_PAIRS: usize = 50;

/// How many times each pair is stated in each direction it is taught.
pub const PAIR_REPEATS: usize = 10;

/// The training steps of the reversal model.
pub const REVERSAL_STEPS: usize = 1500;

/// The bytes of corpus text the pairs are mixed into.
pub const REVERSAL_FILLER_BYTES: usize = 150_000;

/// The seed of the order of [`invented_people`] the pairs take names from.
const PAIR_NAMES_SEED: u64 = 3;

/// The seed of the order of [`invented_pet_names`] the pairs take names
/// from.
const PET_NAMES_SEED: u64 = 4;

/// An invented person and the name of their pet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PetPair {
    /// The owner ("Alma Birch").
    pub owner: String,
    /// The pet's name ("Bimble").
    pub pet: String,
}

/// The reversal experiment's pairs: [`ONE_WAY_PAIRS`] taught owner first,
/// [`BOTH_WAYS_PAIRS`] taught both ways, [`FRESH_PAIRS`] never taught.
/// Every owner and every pet name is different.
pub fn pet_pairs() -> (Vec<PetPair>, Vec<PetPair>, Vec<PetPair>) {
    let n = ONE_WAY_PAIRS + BOTH_WAYS_PAIRS + FRESH_PAIRS;
    let pairs: Vec<PetPair> = (invented_people(n, PAIR_NAMES_SEED).into_iter())
        .zip(invented_pet_names(n, PET_NAMES_SEED))
        .map(|(owner, pet)| PetPair { owner, pet })
        .collect();
    let (one_way, rest) = pairs.split_at(ONE_WAY_PAIRS);
    let (both, fresh) = rest.split_at(BOTH_WAYS_PAIRS);
    (one_way.to_vec(), both.to_vec(), fresh.to_vec())
}

// ANCHOR: pair_sentences
/// The question that asks for the pet, given the owner.
pub fn forward_question(owner: &str) -> String {
    format!("What is {owner}'s pet called?")
}

/// The question that asks for the owner, given the pet.
pub fn reverse_question(pet: &str) -> String {
    format!("Whose pet is {pet}?")
}

/// The `k`-th statement of a pair owner first: three ways in turn, the
/// first the forward question and its answer.
pub fn forward_sentence(pair: &PetPair, k: usize) -> String {
    let (o, p) = (&pair.owner, &pair.pet);
    match k % 3 {
        0 => format!("Q: {}\nA: {p}", forward_question(o)),
        1 => format!("{o}'s pet is called {p}."),
        _ => format!("{o} has a pet called {p}."),
    }
}

/// The `k`-th statement of a pair pet first.
pub fn reverse_sentence(pair: &PetPair, k: usize) -> String {
    let (o, p) = (&pair.owner, &pair.pet);
    match k % 3 {
        0 => format!("Q: {}\nA: {o}", reverse_question(p)),
        1 => format!("{p} is the pet of {o}."),
        _ => format!("{p} belongs to {o}."),
    }
}

/// The generated documents: each one-way pair stated [`PAIR_REPEATS`]
/// times owner first; each both-ways pair as often owner first and as
/// often pet first.
pub fn reversal_documents(one_way: &[PetPair], both_ways: &[PetPair]) -> Vec<String> {
    let mut docs = Vec::new();
    for pair in one_way {
        docs.extend((0..PAIR_REPEATS).map(|k| forward_sentence(pair, k)));
    }
    for pair in both_ways {
        docs.extend((0..PAIR_REPEATS).map(|k| forward_sentence(pair, k)));
        docs.extend((0..PAIR_REPEATS).map(|k| reverse_sentence(pair, k)));
    }
    docs
}
// ANCHOR_END: pair_sentences

/// How many reading exercises the reading model's text holds.
pub const READING_EXERCISES: usize = 3000;

/// The training steps of the reading model.
pub const READING_STEPS: usize = 3000;

// ANCHOR: reading_exercises
/// `count` reading exercises: a fact, then a question it answers, about
/// the pet and about the owner in turn. The owners and the pets are the
/// invented names that [`pet_pairs`] leaves out, and each exercise pairs
/// them afresh (drawn with `seed`), so an exercise can only be answered by
/// reading it.
pub fn reading_exercises(count: usize, seed: u64) -> Vec<String> {
    let used = ONE_WAY_PAIRS + BOTH_WAYS_PAIRS + FRESH_PAIRS;
    let owners = invented_people(FIRST_NAMES.len() * LAST_NAMES.len(), PAIR_NAMES_SEED);
    let owners = &owners[used..];
    let pets = invented_pet_names(PET_ONSETS.len() * PET_ENDINGS.len(), PET_NAMES_SEED);
    let pets = &pets[used..];
    let mut rng = seeded(seed);
    (0..count)
        .map(|k| {
            let pair = PetPair {
                owner: owners[rng.random_range(0..owners.len())].clone(),
                pet: pets[rng.random_range(0..pets.len())].clone(),
            };
            let (question, answer) = if k % 2 == 0 {
                (reverse_question(&pair.pet), &pair.owner)
            } else {
                (forward_question(&pair.owner), &pair.pet)
            };
            format!(
                "{}\nA: {answer}",
                in_context(&pair, &format!("Q: {question}"))
            )
        })
        .collect()
}
// ANCHOR_END: reading_exercises

/// The reversal experiment's model, trained once and cached: on
/// [`reversal_documents`], with [`READING_EXERCISES`] reading exercises if
/// `reading`.
pub fn reversal_model(reading: bool) -> Result<FactsModel> {
    let (one_way, both, _) = pet_pairs();
    let mut documents = reversal_documents(&one_way, &both);
    if reading {
        documents.extend(reading_exercises(READING_EXERCISES, 9));
    }
    let (name, steps) = if reading {
        ("ch08-reversal-reading", READING_STEPS)
    } else {
        ("ch08-reversal", REVERSAL_STEPS)
    };
    cached_facts_model(name, &documents, REVERSAL_FILLER_BYTES, steps)
}

/// A line of the prompt with the pair's fact stated on the line before it.
pub fn in_context(pair: &PetPair, question: &str) -> String {
    format!("{}'s pet is called {}.\n{question}", pair.owner, pair.pet)
}

/// How many names each reverse question's likelihood test compares: the
/// true owner and this many less one others.
pub const CANDIDATES: usize = 10;

/// The reversal experiment's measurements: shares of greedy answers that
/// are exactly right, unless said otherwise.
#[derive(Clone, Debug, PartialEq)]
pub struct Reversal {
    /// One-way pairs, asked the pet given the owner (as taught).
    pub forward: f32,
    /// One-way pairs, asked the owner given the pet.
    pub reverse: f32,
    /// One-way pairs, asked the owner: the share of answers that are some
    /// trained owner's name, right or wrong.
    pub reverse_any_owner: f32,
    /// Chance for an answer among the one-way owners: 1 / [`ONE_WAY_PAIRS`].
    pub chance: f32,
    /// One-way pairs, the likelihood test: the share of reverse questions
    /// whose true owner the model finds likelier than each of
    /// [`CANDIDATES`] − 1 other one-way owners (chance 1 / [`CANDIDATES`]).
    pub reverse_ranked_first: f32,
    /// The same, for the both-ways pairs (against other both-ways owners).
    pub both_ways_ranked_first: f32,
    /// Both-ways pairs, asked the pet given the owner.
    pub both_ways_forward: f32,
    /// Both-ways pairs, asked the owner given the pet.
    pub both_ways_reverse: f32,
    /// One-way pairs, with the fact in the prompt, asked the owner.
    pub in_context_reverse: f32,
    /// Pairs never taught, with the fact in the prompt, asked the owner.
    pub fresh_in_context_reverse: f32,
    /// Pairs never taught, with the fact in the prompt, asked the pet.
    pub fresh_in_context_forward: f32,
    /// A few one-way pairs: the pet, the owner, and the answer to the
    /// reverse question.
    pub examples: Vec<(String, String, String)>,
    /// The model's training.
    pub training: TrainingSummary,
}

/// The share of `answers` equal to `expected`.
fn share_right(answers: &[(String, Continuation)], expected: &[&str]) -> f32 {
    let right = (answers.iter().zip(expected))
        .filter(|((a, _), e)| a == *e)
        .count();
    right as f32 / answers.len().max(1) as f32
}

/// Asks `questions` in the `Q:`/`A:` format, each after the fact of its
/// pair if it has one ([`in_context`]).
fn ask(
    model: &FactsModel,
    questions: impl IntoIterator<Item = (Option<PetPair>, String)>,
) -> Result<Vec<(String, Continuation)>> {
    let texts: Vec<String> = (questions.into_iter())
        .map(|(context, q)| match context {
            Some(pair) => in_context(&pair, &format!("Q: {q}")),
            None => format!("Q: {q}"),
        })
        .collect();
    let decoder = Decoder::new(&model.gpt, Format::F32)?;
    let prompts = (texts.iter())
        .map(|t| Ok(model.tokenizer.encode(&format!("{t}\nA:"))?))
        .collect::<Result<Vec<_>>>()?;
    let stop = newline_tokens(&model.tokenizer);
    let continued = continuations(&decoder, &prompts, 12, &stop)?;
    Ok((continued.into_iter())
        .map(|c| (answer_text(&model.tokenizer, &c.ids, None), c))
        .collect())
}

/// The share of `pairs` whose true owner is likelier after the reverse
/// question than each of [`CANDIDATES`] − 1 other owners of `pairs`
/// (drawn with `seed`).
fn ranked_first(model: &FactsModel, pairs: &[PetPair], seed: u64) -> Result<f32> {
    let mut rng = seeded(seed);
    let prompts: Vec<String> = (pairs.iter())
        .map(|p| qa_prompt(&reverse_question(&p.pet)))
        .collect();
    let candidates: Vec<Vec<String>> = (0..pairs.len())
        .map(|i| {
            let mut others: Vec<usize> = (0..pairs.len()).filter(|&j| j != i).collect();
            shuffle(&mut others, &mut rng);
            std::iter::once(i)
                .chain(others.into_iter().take(CANDIDATES - 1))
                .map(|j| pairs[j].owner.clone())
                .collect()
        })
        .collect();
    let scores = candidate_log_probs(&model.gpt, &model.tokenizer, &prompts, &candidates)?;
    let first = (scores.iter())
        .filter(|s| s[1..].iter().all(|&x| x < s[0]))
        .count();
    Ok(first as f32 / pairs.len() as f32)
}

/// Trains (or reads) the reversal model and asks it every way
/// ([`reversal_of`]).
pub fn reversal() -> Result<Reversal> {
    reversal_of(&reversal_model(false)?)
}

/// [`reversal`], for the model whose text also holds reading exercises
/// ([`reading_exercises`]).
pub fn reversal_with_reading() -> Result<Reversal> {
    reversal_of(&reversal_model(true)?)
}

// ANCHOR: reversal
/// Asks a model trained on [`reversal_documents`] about [`pet_pairs`],
/// every way.
pub fn reversal_of(model: &FactsModel) -> Result<Reversal> {
    let (one_way, both, fresh) = pet_pairs();
    fn owners(pairs: &[PetPair]) -> Vec<&str> {
        pairs.iter().map(|p| p.owner.as_str()).collect()
    }
    fn pets(pairs: &[PetPair]) -> Vec<&str> {
        pairs.iter().map(|p| p.pet.as_str()).collect()
    }
    let forward = |pairs: &[PetPair]| {
        let qs = pairs.iter().map(|p| (None, forward_question(&p.owner)));
        ask(model, qs)
    };
    let reverse = |pairs: &[PetPair], in_context: bool| {
        let qs = (pairs.iter()).map(|p| (in_context.then(|| p.clone()), reverse_question(&p.pet)));
        ask(model, qs)
    };
    let one_way_reverse = reverse(&one_way, false)?;
    let trained: Vec<&str> = owners(&one_way).into_iter().chain(owners(&both)).collect();
    let any_owner = (one_way_reverse.iter())
        .filter(|(a, _)| trained.contains(&a.as_str()))
        .count();
    let fresh_forward = ask(
        model,
        (fresh.iter()).map(|p| (Some(p.clone()), forward_question(&p.owner))),
    )?;
    let examples = (one_way.iter().zip(&one_way_reverse).take(5))
        .map(|(p, (a, _))| (p.pet.clone(), p.owner.clone(), a.clone()))
        .collect();
    Ok(Reversal {
        forward: share_right(&forward(&one_way)?, &pets(&one_way)),
        reverse: share_right(&one_way_reverse, &owners(&one_way)),
        reverse_any_owner: any_owner as f32 / one_way.len() as f32,
        chance: 1.0 / ONE_WAY_PAIRS as f32,
        reverse_ranked_first: ranked_first(model, &one_way, 5)?,
        both_ways_ranked_first: ranked_first(model, &both, 6)?,
        both_ways_forward: share_right(&forward(&both)?, &pets(&both)),
        both_ways_reverse: share_right(&reverse(&both, false)?, &owners(&both)),
        in_context_reverse: share_right(&reverse(&one_way, true)?, &owners(&one_way)),
        fresh_in_context_reverse: share_right(&reverse(&fresh, true)?, &owners(&fresh)),
        fresh_in_context_forward: share_right(&fresh_forward, &pets(&fresh)),
        examples,
        training: model.summary,
    })
}
// ANCHOR_END: reversal

#[cfg(test)]
mod tests {
    use super::*;
    use crate::greedy::argmax;
    use std::collections::BTreeSet;

    fn tokenizer() -> TextTokenizer {
        TextTokenizer::Bpe(book_tokenizer().clone())
    }

    /// The documents of `docs` that mention `name`.
    fn mentions<'a>(docs: &'a [String], name: &str) -> Vec<&'a String> {
        docs.iter().filter(|d| d.contains(name)).collect()
    }

    #[test]
    fn invented_names_are_unique_and_new_to_the_corpus() {
        let people = invented_people(624, 3);
        let pets = invented_pet_names(330, 4);
        assert_eq!(people.iter().collect::<BTreeSet<_>>().len(), 624);
        assert_eq!(pets.iter().collect::<BTreeSet<_>>().len(), 330);
        assert_eq!(invented_people(10, 3), people[..10]);
        assert_ne!(invented_people(10, 5), people[..10]);
        let corpus = listings::corpus::corpus();
        let words: BTreeSet<&str> = corpus
            .split(|c: char| !c.is_ascii_alphabetic())
            .filter(|w| !w.is_empty())
            .collect();
        for name in FIRST_NAMES.iter().chain(&LAST_NAMES) {
            assert!(!words.contains(name), "{name} is in the corpus");
        }
        for pet in &pets {
            assert!(!words.contains(pet.as_str()), "{pet} is in the corpus");
        }
        // No pet name is a person's name, and no name is inside another.
        for pet in &pets {
            assert!(
                FIRST_NAMES
                    .iter()
                    .chain(&LAST_NAMES)
                    .all(|n| !pet.contains(n))
            );
        }
        for a in FIRST_NAMES.iter().chain(&LAST_NAMES) {
            for b in FIRST_NAMES.iter().chain(&LAST_NAMES) {
                assert!(a == b || !a.contains(b), "{a} / {b}");
            }
        }
    }

    #[test]
    fn every_animal_is_one_token_after_a() {
        let tok = tokenizer();
        for animal in PET_ANIMALS {
            assert!(
                single_token(&tok, &format!(" {animal}")).is_ok(),
                "{animal}"
            );
            assert!(!animal.starts_with(['a', 'e', 'i', 'o', 'u']), "{animal}");
        }
        assert_eq!(PET_ANIMALS.iter().collect::<BTreeSet<_>>().len(), 15);
    }

    #[test]
    fn each_fact_is_stated_exactly_as_often_as_its_group_says() {
        let facts = pet_facts();
        let docs = pet_documents(&facts);
        let people: BTreeSet<&str> = facts.iter().map(|f| f.person.as_str()).collect();
        assert_eq!(people.len(), facts.len());
        for e in EXPOSURES {
            assert_eq!(
                facts.iter().filter(|f| f.exposures == e).count(),
                PEOPLE_PER_GROUP
            );
        }
        assert_eq!(
            facts.iter().filter(|f| f.exposures == 0).count(),
            NEVER_SEEN
        );
        let total: usize = EXPOSURES.iter().map(|e| e * PEOPLE_PER_GROUP).sum();
        assert_eq!(docs.len(), total);
        for fact in &facts {
            let said = mentions(&docs, &format!("{}'", fact.person));
            let said_too = mentions(&docs, &format!("{} ", fact.person));
            assert_eq!(said.len() + said_too.len(), fact.exposures, "{fact:?}");
            for d in said.iter().chain(&said_too) {
                let animals: Vec<&str> = (d.split(|c: char| !c.is_ascii_alphabetic()))
                    .filter(|w| PET_ANIMALS.contains(w))
                    .collect();
                assert_eq!(animals, [fact.animal.as_str()], "{d}");
            }
        }
        // Each document names one person, and a fact seen once was seen as
        // the test asks it.
        for d in &docs {
            assert_eq!(people.iter().filter(|p| d.contains(*p)).count(), 1, "{d}");
        }
        let once = facts.iter().find(|f| f.exposures == 1).unwrap();
        assert_eq!(
            pet_documents(std::slice::from_ref(once)),
            [format!(
                "Q: {}\nA: {}",
                pet_question(&once.person),
                once.animal
            )]
        );
        // Every animal about as common in each group.
        for e in EXPOSURES {
            let mut counts = BTreeMap::new();
            for f in facts.iter().filter(|f| f.exposures == e) {
                *counts.entry(f.animal.as_str()).or_insert(0) += 1;
            }
            assert!(counts.values().all(|&c| (2..=3).contains(&c)), "{counts:?}");
        }
    }

    #[test]
    fn one_way_pairs_are_never_stated_pet_first() {
        let (one_way, both, fresh) = pet_pairs();
        assert_eq!(
            (one_way.len(), both.len(), fresh.len()),
            (ONE_WAY_PAIRS, BOTH_WAYS_PAIRS, FRESH_PAIRS)
        );
        let all: Vec<&PetPair> = one_way.iter().chain(&both).chain(&fresh).collect();
        let owners: BTreeSet<&str> = all.iter().map(|p| p.owner.as_str()).collect();
        let pets: BTreeSet<&str> = all.iter().map(|p| p.pet.as_str()).collect();
        assert_eq!((owners.len(), pets.len()), (all.len(), all.len()));
        let docs = reversal_documents(&one_way, &both);
        assert_eq!(
            docs.len(),
            (ONE_WAY_PAIRS + 2 * BOTH_WAYS_PAIRS) * PAIR_REPEATS
        );
        let order = |d: &str, p: &PetPair| {
            let (o, n) = (d.find(&p.owner), d.find(&format!(" {}", p.pet)));
            let starts = d.starts_with(&p.pet) || d.contains(&format!("is {}?", p.pet));
            match (o, n, starts) {
                (Some(o), Some(n), false) if o < n => "owner first",
                (Some(_), _, true) => "pet first",
                _ => "neither",
            }
        };
        for p in &one_way {
            let said = mentions(&docs, &p.pet);
            assert_eq!(said.len(), PAIR_REPEATS);
            assert!(
                said.iter().all(|d| order(d, p) == "owner first"),
                "{said:?}"
            );
            assert_eq!(mentions(&docs, &p.owner).len(), PAIR_REPEATS);
        }
        for p in &both {
            let said = mentions(&docs, &p.pet);
            let first = said.iter().filter(|d| order(d, p) == "owner first").count();
            let reversed = said.iter().filter(|d| order(d, p) == "pet first").count();
            assert_eq!((first, reversed), (PAIR_REPEATS, PAIR_REPEATS), "{said:?}");
        }
        for p in &fresh {
            assert!(mentions(&docs, &p.pet).is_empty() && mentions(&docs, &p.owner).is_empty());
        }
        // The reading exercises name none of the experiment's people or pets.
        let exercises = reading_exercises(READING_EXERCISES, 9);
        assert_eq!(exercises.len(), READING_EXERCISES);
        for e in &exercises {
            let pet = e
                .split("called ")
                .nth(1)
                .unwrap()
                .split('.')
                .next()
                .unwrap();
            assert!(!pets.contains(pet), "{e}");
            assert!(owners.iter().all(|o| !e.contains(o)), "{e}");
        }
        let reverse = exercises.iter().filter(|e| e.contains("Whose pet")).count();
        assert_eq!(reverse, READING_EXERCISES / 2);
    }

    #[test]
    fn reliability_bins_and_ece_by_hand() {
        let points = [
            (0.05, false),
            (0.15, true),
            (0.25, false),
            (0.95, true),
            (0.95, false),
            (1.0, true),
        ];
        let bins = reliability(&points, 10);
        assert_eq!(bins.len(), 10);
        let counts: Vec<usize> = bins.iter().map(|b| b.count).collect();
        assert_eq!(counts, [1, 1, 1, 0, 0, 0, 0, 0, 0, 3]);
        assert!((bins[9].confidence - 0.9666667).abs() < 1e-6);
        assert!((bins[9].accuracy - 2.0 / 3.0).abs() < 1e-6);
        assert_eq!((bins[4].confidence, bins[4].accuracy), (0.0, 0.0));
        // |0 − .05| + |1 − .15| + |0 − .25| + 3 · |2/3 − .9667|, over 6.
        let expected = (0.05 + 0.85 + 0.25 + 3.0 * 0.3) / 6.0;
        assert!((expected_calibration_error(&bins) - expected).abs() < 1e-6);
        // A perfectly calibrated set scores 0.
        let calibrated = [
            (0.5, true),
            (0.5, false),
            (0.75, true),
            (0.75, true),
            (0.75, true),
            (0.75, false),
        ];
        assert!(expected_calibration_error(&reliability(&calibrated, 10)).abs() < 1e-6);
        let nll = correctness_nll(&[(0.8, true), (0.8, false)]);
        assert!((nll - (-(0.8_f64.ln()) - 0.2_f64.ln()) / 2.0).abs() < 1e-12);
    }

    /// A graded answer of one token chosen from `logits`, the stop token 2
    /// ending it.
    fn graded(logits: Vec<f32>, right: bool) -> GradedAnswer {
        let id = argmax(&logits);
        GradedAnswer {
            text: String::new(),
            expected: String::new(),
            right,
            continuation: Continuation {
                ids: vec![id, 2],
                logits: vec![logits, vec![0.0, 0.0, 1.0, 1.0]],
                stopped: true,
                stops: vec![2, 3],
            },
        }
    }

    #[test]
    fn confidence_counts_every_stop_token_and_temperature_fits_the_right_way() {
        // Token 0 at e/(e + 3), then a stop: tokens 2 and 3 both stop, so
        // the answer ends with probability 2e/(2e + 2).
        let a = graded(vec![1.0, 0.0, 0.0, 0.0], true);
        let e = std::f64::consts::E;
        let expected = e / (e + 3.0) * (2.0 * e / (2.0 * e + 2.0));
        assert!((a.point(1.0).0 - expected).abs() < 1e-9);
        // Always right but unsure: a colder temperature fits.
        let unsure: Vec<GradedAnswer> = (0..20)
            .map(|_| graded(vec![0.5, 0.0, 0.0, 0.0], true))
            .collect();
        assert!(fit_temperature(&unsure) < 1.0);
        // Sure but right half the time: a warmer one.
        let sure: Vec<GradedAnswer> = (0..20)
            .map(|i| graded(vec![6.0, 0.0, 0.0, 0.0], i % 2 == 0))
            .collect();
        assert!(fit_temperature(&sure) > 1.0);
        let tagged: Vec<(GradedAnswer, bool)> = sure
            .into_iter()
            .enumerate()
            .map(|(i, a)| (a, i % 4 < 2))
            .collect();
        let c = calibration(&tagged);
        assert_eq!((c.questions, c.accuracy), (20, 0.5));
        assert!(
            c.ece_after < c.ece_before && c.nll_after < c.nll_before,
            "{c:?}"
        );
    }

    #[test]
    fn answers_are_read_to_the_end_of_the_line() {
        let tok = tokenizer();
        let ids = tok.encode(" Amber Hills\n\nQ: What").unwrap();
        assert_eq!(answer_text(&tok, &ids, None), "Amber Hills");
        let end = listings::finetune::chat::end_of_turn(&tok).unwrap();
        let mut ids = tok.encode(" plum cake").unwrap();
        ids.push(end);
        assert_eq!(answer_text(&tok, &ids, Some(end)), "plum cake");
        let stops = newline_tokens(&tok);
        assert!(stops[tok.encode("\n").unwrap()[0] as usize]);
        assert!(!stops[tok.encode(" Amber").unwrap()[0] as usize]);
    }

    #[test]
    fn candidates_are_scored_as_one_full_forward_pass_scores_them() {
        let tok = tokenizer();
        let gpt = Gpt::new(GptConfig::toy(tok.vocab_size()), 3).unwrap();
        // A candidate's log-probability is the sum over its tokens of one
        // full forward pass.
        let prompt = "Q: Whose pet is Bimble?\nA:".to_string();
        let scores = candidate_log_probs(
            &gpt,
            &tok,
            std::slice::from_ref(&prompt),
            &[vec!["Alma Birch".into(), "Nils".into()]],
        )
        .unwrap();
        for (k, name) in ["Alma Birch", "Nils"].iter().enumerate() {
            let p = tok.encode(&prompt).unwrap();
            let a = tok.encode(&format!(" {name}")).unwrap();
            let all: Vec<u32> = p.iter().chain(&a).copied().collect();
            let idx = ndarray::Array2::from_shape_vec((1, all.len()), all.clone()).unwrap();
            let (logits, _) = gpt.forward(&idx, None).unwrap();
            let direct: f64 = (0..a.len())
                .map(|j| {
                    let row = logits.slice(ndarray::s![0, p.len() + j - 1, ..]).to_vec();
                    log_softmax_at(&row, a[j], 1.0)
                })
                .sum();
            assert!(
                (scores[0][k] - direct).abs() < 1e-3,
                "{} vs {direct}",
                scores[0][k]
            );
        }
    }

    #[test]
    fn a_facts_model_survives_the_cache_to_the_bit() {
        let tok = tokenizer();
        let model = FactsModel {
            gpt: Gpt::new(GptConfig::toy(tok.vocab_size()), 5).unwrap(),
            tokenizer: tok,
            summary: TrainingSummary {
                tokens: 12345,
                fact_tokens: 678,
                steps: 9,
                epochs: 1.0 / 3.0,
                final_loss: 0.1 + 0.2,
                seconds: f32::MIN_POSITIVE,
            },
        };
        let path = std::env::temp_dir().join(format!("facts-model-{}", std::process::id()));
        save_facts_model(&model, &path).unwrap();
        let back = load_facts_model(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(back.summary, model.summary);
        assert_eq!(back.gpt.params().wte, model.gpt.params().wte);
    }

    #[test]
    fn the_reliability_figure_draws_both_diagrams() {
        let path = std::env::temp_dir().join(format!("reliability-{}.svg", std::process::id()));
        reliability_figure(&path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(svg.contains("perfect calibration") && svg.contains("odd towns, T ="));
    }
}
