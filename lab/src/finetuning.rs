//! Chapter 6's experiments: what fine-tuning the book model changes,
//! measured on data generated from the corpus's own world.
//!
//! The instruction data are questions about the world's towns in the chat
//! template, answered in whole sentences that end the turn. The corpus
//! states every fact (in other words, and as terse `Q:`/`A:` tasks), so
//! the book model knows many of them before tuning; what it has never seen
//! is this way of asking and answering. The towns are split: tuning sees
//! questions about the first [`TUNED_TOWNS`], the test asks about the rest,
//! so a right answer on a test town is knowledge from pre-training brought
//! out in the new format, not an answer learned by heart.

use listings::corpus::{Attribute, Town, town_question, world};
use listings::finetune::chat::{Encoded, Instruction, LossOn, encode_all, end_of_turn};
use listings::finetune::lora::LoraConfig;
use listings::finetune::run::{FinetuneConfig, answer, answer_sampled, train_instructions};
use listings::finetune::tuner::{FineTuner, Method};
use listings::infer::decode::Decoder;
use listings::infer::quant::Format;
use listings::model::Gpt;
use listings::optim::AdamWConfig;
use listings::tokens::TextTokenizer;

/// How many of the world's towns the instruction data asks about; the
/// questions about the other towns are the test.
pub const TUNED_TOWNS: usize = 32;

// ANCHOR: town_questions
/// The seven questions about a town, asked as the corpus asks them
/// ([`town_question`]), each answered with the fact alone.
pub fn town_questions(town: &Town) -> Vec<Instruction> {
    Attribute::ALL
        .iter()
        .map(|&attribute| {
            let (prompt, response) = town_question(town, attribute);
            Instruction { prompt, response }
        })
        .collect()
}
// ANCHOR_END: town_questions

/// The instruction data: questions about the first [`TUNED_TOWNS`] towns to
/// tune on, and about the others to test on.
pub fn instruction_split() -> (Vec<Instruction>, Vec<Instruction>) {
    let towns = world().towns;
    let (tuned, test) = towns.split_at(TUNED_TOWNS);
    let questions = |towns: &[Town]| towns.iter().flat_map(town_questions).collect();
    (questions(tuned), questions(test))
}

/// How a model answers a set of questions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AnswerScore {
    /// The share of answers equal to the expected sentence, word for word.
    pub exact: f32,
    /// The share of answers that ended the turn within the token budget.
    pub stopped: f32,
}

/// The longest answer the evaluation lets a model write, in tokens.
pub const ANSWER_BUDGET: usize = 24;

/// Scores greedy answers to `questions` against their expected responses.
pub fn score_answers(
    gpt: &Gpt,
    tokenizer: &TextTokenizer,
    questions: &[Instruction],
) -> anyhow::Result<AnswerScore> {
    let prompts: Vec<&str> = questions.iter().map(|q| q.prompt.as_str()).collect();
    let answers = greedy_answers(gpt, tokenizer, &prompts, ANSWER_BUDGET)?;
    let (mut exact, mut stopped) = (0, 0);
    for (q, a) in questions.iter().zip(&answers) {
        exact += usize::from(a.stopped && a.text == q.response);
        stopped += usize::from(a.stopped);
    }
    let n = questions.len() as f32;
    Ok(AnswerScore {
        exact: exact as f32 / n,
        stopped: stopped as f32 / n,
    })
}

/// [`answer`] for many prompts at once ([`greedy_continuations`] of the
/// prompts in the chat template, stopping at the end-of-turn token).
pub fn greedy_answers(
    gpt: &Gpt,
    tokenizer: &TextTokenizer,
    prompts: &[&str],
    max_tokens: usize,
) -> anyhow::Result<Vec<listings::finetune::run::Answer>> {
    let eot = end_of_turn(tokenizer)?;
    let texts: Vec<String> = (prompts.iter())
        .map(|p| listings::finetune::chat::prompt_text(p))
        .collect();
    let continued = greedy_continuations(gpt, tokenizer, &texts, max_tokens, Some(eot))?;
    Ok((continued.into_iter())
        .map(|(ids, stopped)| {
            let text = tokenizer.decode_lossy(&ids);
            listings::finetune::run::Answer {
                text: text.strip_prefix(' ').unwrap_or(&text).to_string(),
                stopped,
            }
        })
        .collect())
}

/// The greedy continuations of `texts`, up to `max_tokens` new tokens each
/// or until `stop` (not included), and whether each stopped: every text at
/// once through chapter 7's KV-cached decoder ([`crate::greedy`]).
pub fn greedy_continuations(
    gpt: &Gpt,
    tokenizer: &TextTokenizer,
    texts: &[String],
    max_tokens: usize,
    stop: Option<u32>,
) -> anyhow::Result<Vec<(Vec<u32>, bool)>> {
    let prompts = (texts.iter())
        .map(|t| tokenizer.encode(t))
        .collect::<Result<Vec<_>, _>>()?;
    let mut stops = vec![false; tokenizer.vocab_size()];
    if let Some(id) = stop {
        stops[id as usize] = true;
    }
    let decoder = Decoder::new(gpt, Format::F32)?;
    let continued = crate::greedy::continuations(&decoder, &prompts, max_tokens, &stops)?;
    Ok((continued.into_iter())
        .map(|mut c| {
            if c.stopped {
                c.ids.pop();
            }
            (c.ids, c.stopped)
        })
        .collect())
}

/// The instruction-tuning runs' settings: 200 steps of 16 examples, at
/// `learning_rate`.
pub fn tuning_config(learning_rate: f32) -> FinetuneConfig {
    FinetuneConfig {
        steps: 200,
        batch_size: 16,
        learning_rate,
        ..FinetuneConfig::default()
    }
}

// ANCHOR: recipe
/// The ways the chapter tunes the book model, each at the learning rate
/// that suits it (LoRA's few numbers take larger steps).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Recipe {
    /// Every weight, at 1e-4.
    Full,
    /// The last block and `ln_f`, at 1e-4.
    LastBlock,
    /// LoRA of rank `r` on `c_attn` (alpha = 2r), at 3e-3, with or without
    /// the end-of-turn token's embedding row trainable too.
    Lora {
        /// The rank.
        r: usize,
        /// Whether `<|endoftext|>`'s row trains.
        end_row: bool,
    },
}

impl Recipe {
    /// The method and the run's settings, for a model using `tokenizer`.
    pub fn method(self, tokenizer: &TextTokenizer) -> anyhow::Result<(Method, FinetuneConfig)> {
        Ok(match self {
            Recipe::Full => (Method::Full, tuning_config(1e-4)),
            Recipe::LastBlock => (Method::LastBlock, tuning_config(1e-4)),
            Recipe::Lora { r, end_row } => {
                let mut lora = lora_config(r);
                if end_row {
                    lora.trainable_tokens = vec![end_of_turn(tokenizer)?];
                }
                (Method::Lora(lora), tuning_config(3e-3))
            }
        })
    }
}
// ANCHOR_END: recipe

/// What one tuning run gives.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// How many numbers trained.
    pub trainable: usize,
    /// The bytes of AdamW's running averages.
    pub optimizer_bytes: usize,
    /// The last step's loss.
    pub final_loss: f32,
    /// Greedy answers to the questions about 8 of the tuned towns.
    pub tuned: AnswerScore,
    /// Greedy answers to the test towns' questions.
    pub test: AnswerScore,
    /// The loss on stories the model never saw ([`story_loss`]).
    pub story: f32,
    /// The answers to the first four test questions.
    pub answers: Vec<String>,
    /// What the model writes after `User:`, greedily (12 tokens).
    pub after_user: String,
}

// ANCHOR: outcome
/// Tunes the book model on the tuned towns' questions by `recipe` (with
/// `replay`), and measures the result.
pub fn outcome(recipe: Recipe, replay: &[Encoded]) -> anyhow::Result<Outcome> {
    let tokenizer = TextTokenizer::Bpe(listings::tokens::book_tokenizer().clone());
    let (method, config) = recipe.method(&tokenizer)?;
    outcome_of(method, &config, true, replay)
}

/// [`outcome`] for any method and settings, with or without the end token.
pub fn outcome_of(
    method: Method,
    config: &FinetuneConfig,
    end_token: bool,
    replay: &[Encoded],
) -> anyhow::Result<Outcome> {
    let settings = format!(
        "{method:?}\n{config:?}\nend token {end_token}\nreplay {}",
        ids_hash(replay)
    );
    let key = crate::cache::key(
        "ch06-outcome",
        &["finetuning.rs", "greedy.rs", "book_model.rs"],
        &settings,
    );
    crate::cache::cached(&key, write_outcome, read_outcome, || {
        let book = crate::book_model::shared_book_model().map_err(anyhow::Error::msg)?;
        let (gpt, tokenizer) = (&book.gpt, &book.tokenizer);
        let (tuned, test) = instruction_split();
        let (tuner, losses) = tune_on(gpt, tokenizer, method, config, end_token, &tuned, replay)?;
        let gpt = tuner.gpt();
        let greedy = listings::sample::SampleConfig {
            max_new_tokens: 12,
            temperature: 0.0,
            ..listings::sample::SampleConfig::default()
        };
        let after_user = listings::sample::sample_text(gpt, tokenizer, "User:", &greedy)?;
        let answers = (test[..4].iter())
            .map(|q| Ok(answer(gpt, tokenizer, &q.prompt, ANSWER_BUDGET)?.text))
            .collect::<anyhow::Result<_>>()?;
        Ok(Outcome {
            trainable: tuner.trainable_parameters(),
            optimizer_bytes: tuner.optimizer_state_bytes(),
            final_loss: *losses.last().expect("at least one step"),
            tuned: score_answers(gpt, tokenizer, &tuned[..56])?,
            test: score_answers(gpt, tokenizer, &test)?,
            story: story_loss(gpt, tokenizer)?,
            answers,
            after_user,
        })
    })
}
// ANCHOR_END: outcome

/// A hash of examples' ids and prompt lengths, for a cache key.
fn ids_hash(examples: &[Encoded]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for e in examples {
        for &x in e.ids.iter().chain([&(e.prompt_len as u32)]) {
            h = (h ^ u64::from(x)).wrapping_mul(0x100_0000_01b3);
        }
    }
    format!("{} examples, {h:016x}", examples.len())
}

/// Writes an [`Outcome`] as lines of text, every f32 by its bits.
fn write_outcome(o: &Outcome, path: &std::path::Path) -> anyhow::Result<()> {
    let f = |x: f32| format!("{:08x}", x.to_bits());
    let mut text = format!(
        "{}\n{}\n{}\n{} {}\n{} {}\n{}\n",
        o.trainable,
        o.optimizer_bytes,
        f(o.final_loss),
        f(o.tuned.exact),
        f(o.tuned.stopped),
        f(o.test.exact),
        f(o.test.stopped),
        f(o.story)
    );
    for a in std::iter::once(&o.after_user).chain(&o.answers) {
        text.push_str(&a.bytes().map(|b| format!("{b:02x}")).collect::<String>());
        text.push('\n');
    }
    Ok(std::fs::write(path, text)?)
}

/// Reads what [`write_outcome`] wrote.
fn read_outcome(path: &std::path::Path) -> anyhow::Result<Outcome> {
    let text = std::fs::read_to_string(path)?;
    let mut lines = text.lines();
    let mut next = || {
        lines
            .next()
            .ok_or_else(|| anyhow::anyhow!("short outcome file"))
    };
    let f = |s: &str| -> anyhow::Result<f32> { Ok(f32::from_bits(u32::from_str_radix(s, 16)?)) };
    let pair = |s: &str| -> anyhow::Result<AnswerScore> {
        let (a, b) = s
            .split_once(' ')
            .ok_or_else(|| anyhow::anyhow!("bad score line"))?;
        Ok(AnswerScore {
            exact: f(a)?,
            stopped: f(b)?,
        })
    };
    let trainable = next()?.parse()?;
    let optimizer_bytes = next()?.parse()?;
    let final_loss = f(next()?)?;
    let tuned = pair(next()?)?;
    let test = pair(next()?)?;
    let story = f(next()?)?;
    let mut answers: Vec<String> = Vec::new();
    for line in lines {
        let bytes = (0..line.len() / 2)
            .map(|i| u8::from_str_radix(&line[2 * i..2 * i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()?;
        answers.push(String::from_utf8(bytes)?);
    }
    if answers.is_empty() {
        anyhow::bail!("short outcome file");
    }
    let after_user = answers.remove(0);
    Ok(Outcome {
        trainable,
        optimizer_bytes,
        final_loss,
        tuned,
        test,
        story,
        answers,
        after_user,
    })
}

/// Tunes `base` on `data` (with `replay` examples mixed in) by `recipe`.
pub fn tune(
    base: &Gpt,
    tokenizer: &TextTokenizer,
    recipe: Recipe,
    data: &[Instruction],
    replay: &[Encoded],
) -> anyhow::Result<(FineTuner, Vec<f32>)> {
    let (method, config) = recipe.method(tokenizer)?;
    tune_on(base, tokenizer, method, &config, true, data, replay)
}

/// Tunes `base` on `data` (with `replay` examples mixed in) by `method`,
/// with or without the end-of-turn token; returns the tuner and the losses.
pub fn tune_on(
    base: &Gpt,
    tokenizer: &TextTokenizer,
    method: Method,
    config: &FinetuneConfig,
    end_token: bool,
    data: &[Instruction],
    replay: &[Encoded],
) -> anyhow::Result<(FineTuner, Vec<f32>)> {
    let mut encoded = encode_all(tokenizer, data, end_token, base.config().block_size)?;
    encoded.extend_from_slice(replay);
    let mut tuner = FineTuner::new(base.clone(), method, AdamWConfig::default(), 1)?;
    let pad = end_of_turn(tokenizer)?;
    let losses = train_instructions(&mut tuner, &encoded, config, pad, |_, _, _| {})?;
    Ok((tuner, losses))
}

/// The LoRA configuration of the chapter's runs at rank `r`: alpha = 2r.
pub fn lora_config(r: usize) -> LoraConfig {
    LoraConfig {
        r,
        alpha: 2.0 * r as f32,
        target_modules: vec!["c_attn".into()],
        trainable_tokens: Vec::new(),
    }
}

// ---------------------------------------------------------------------------
// A classifier: which region a town lies in.

/// The text a town is classified from: its name, after a few words.
pub fn town_text(town: &Town) -> String {
    format!("The town of {}", town.name)
}

/// Every region, in the order the world assigns them (town `i` lies in
/// region `i % 8`).
pub fn regions() -> Vec<String> {
    let mut regions: Vec<String> = Vec::new();
    for town in &world().towns {
        if !regions.contains(&town.region) {
            regions.push(town.region.clone());
        }
    }
    regions
}

/// The towns as classifier examples: the ids of [`town_text`] and the
/// region's index.
pub fn region_examples(tokenizer: &TextTokenizer) -> anyhow::Result<Vec<(Vec<u32>, usize)>> {
    let regions = regions();
    world()
        .towns
        .iter()
        .map(|town| {
            let label = regions
                .iter()
                .position(|r| *r == town.region)
                .expect("a region");
            Ok((tokenizer.encode(&town_text(town))?, label))
        })
        .collect()
}

/// The folds of the region classifier's cross-validation: fold `k` tests
/// on the towns `i` with `i % 3 == k` and may train on the others.
pub const FOLDS: usize = 3;

/// The accuracy of a region classifier over all towns, each predicted by
/// a classifier that never saw it: for each fold, a fresh copy of `base`
/// and a fresh head are trained (by `method`, reading `readout`) on the
/// first `labelled` towns outside the fold.
pub fn region_accuracy(
    base: &Gpt,
    examples: &[(Vec<u32>, usize)],
    method: &Method,
    readout: listings::finetune::classify::Readout,
    labelled: usize,
    steps: usize,
    lr: f32,
) -> anyhow::Result<f32> {
    use listings::finetune::classify::{ClassifierHead, accuracy, train_classifier};
    let mut right = 0.0;
    for fold in 0..FOLDS {
        let (test, train): (Vec<_>, Vec<_>) =
            (examples.iter().enumerate()).partition(|(i, _)| i % FOLDS == fold);
        let train: Vec<_> = train
            .into_iter()
            .take(labelled)
            .map(|(_, e)| e.clone())
            .collect();
        let test: Vec<_> = test.into_iter().map(|(_, e)| e.clone()).collect();
        let mut tuner = FineTuner::new(
            base.clone(),
            method.clone(),
            AdamWConfig {
                lr,
                ..Default::default()
            },
            1,
        )?;
        let mut head = ClassifierHead::new(base.config().n_embd, regions().len(), 1);
        train_classifier(&mut tuner, &mut head, &train, readout, steps, lr)?;
        right += accuracy(tuner.gpt(), &head, &test, readout)? * test.len() as f32;
    }
    Ok(right / examples.len() as f32)
}

// ---------------------------------------------------------------------------
// What the base model knows, asked as the corpus asks.

/// The share of `questions` the model answers right in the corpus's own
/// format (`Q: ...` then `A:`, greedy, up to the end of the line): what
/// pre-training put in it, before any tuning.
pub fn base_recall(
    gpt: &Gpt,
    tokenizer: &TextTokenizer,
    questions: &[Instruction],
) -> anyhow::Result<f32> {
    let texts: Vec<String> = questions
        .iter()
        .map(|q| format!("Q: {}\nA:", q.prompt))
        .collect();
    let continued = greedy_continuations(gpt, tokenizer, &texts, 12, None)?;
    let right = (questions.iter().zip(continued))
        .filter(|(q, (ids, _))| {
            let text = tokenizer.decode_lossy(ids);
            text.split('\n').next().unwrap_or("").trim() == q.response
        })
        .count();
    Ok(right as f32 / questions.len() as f32)
}

// ---------------------------------------------------------------------------
// From scratch or from the book model.

/// A tuning run's loss on the test towns' answers, measured every
/// `every` steps (step 0 before any update).
pub fn test_loss_curve(
    base: &Gpt,
    tokenizer: &TextTokenizer,
    method: Method,
    config: &FinetuneConfig,
    every: usize,
) -> anyhow::Result<(FineTuner, Vec<(usize, f32)>)> {
    use listings::finetune::run::mean_loss;
    let block = base.config().block_size;
    let (train, test) = instruction_split();
    let train = encode_all(tokenizer, &train, true, block)?;
    let test = encode_all(tokenizer, &test, true, block)?;
    let pad = end_of_turn(tokenizer)?;
    let mut curve = vec![(0, mean_loss(base, &test, LossOn::Response, pad)?)];
    let mut tuner = FineTuner::new(base.clone(), method, AdamWConfig::default(), 1)?;
    let mut failed = None;
    train_instructions(&mut tuner, &train, config, pad, |step, _, tuner| {
        if (step + 1) % every == 0 {
            match mean_loss(tuner.gpt(), &test, LossOn::Response, pad) {
                Ok(loss) => curve.push((step + 1, loss)),
                Err(e) => failed = Some(e),
            }
        }
    })?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    Ok((tuner, curve))
}

// ---------------------------------------------------------------------------
// Forgetting.

/// Stories the book model never saw: the corpus's grammar with another
/// seed, stories only, about 20 kB.
pub fn fresh_stories() -> String {
    use listings::corpus::{Kind, documents};
    documents(2, 80_000)
        .into_iter()
        .filter(|d| d.kind == Kind::Story)
        .map(|d| d.text + "\n\n")
        .collect()
}

/// The model's mean loss on [`fresh_stories`]: how well it still does what
/// pre-training taught it.
pub fn story_loss(gpt: &Gpt, tokenizer: &TextTokenizer) -> anyhow::Result<f32> {
    let tokens = tokenizer.encode(&fresh_stories())?;
    Ok(listings::train::batches::mean_window_loss(gpt, &tokens)?.loss)
}

/// Windows of pre-training text as examples that count every token
/// (`prompt_len` 0): mixed into tuning data, they replay what the model
/// learned before. `count` windows of `len` tokens from the corpus's
/// training part, at seeded positions.
pub fn replay_windows(
    tokenizer: &TextTokenizer,
    count: usize,
    len: usize,
    seed: u64,
) -> anyhow::Result<Vec<Encoded>> {
    use listings::rng::{RngExt, seeded};
    let corpus = listings::corpus::corpus();
    let (train, _) = listings::corpus::train_val_split(&corpus, 0.9);
    let tokens = tokenizer.encode(train)?;
    let mut rng = seeded(seed);
    Ok((0..count)
        .map(|_| {
            let start = rng.random_range(0..tokens.len() - len);
            Encoded {
                ids: tokens[start..start + len].to_vec(),
                prompt_len: 0,
            }
        })
        .collect())
}

// ---------------------------------------------------------------------------
// New knowledge: towns the corpus never mentions.

/// A fact about a town as one sentence.
pub fn fact_sentence(town: &Town, attribute: Attribute) -> String {
    let (t, v) = (&town.name, town.value(attribute));
    match attribute {
        Attribute::Region => format!("{t} is in the {v}."),
        Attribute::River => format!("{t} is on the river {v}."),
        Attribute::Food => format!("{t} is famous for its {v}."),
        Attribute::Trade => format!("The main trade of {t} is {v}."),
        Attribute::Mayor => format!("The mayor of {t} is {v}."),
        Attribute::Founded => format!("{t} was founded in {v}."),
        Attribute::Neighbour => format!("The nearest town to {t} is {v}."),
    }
}

/// A question with the fact that answers it written before it, as a
/// prompt: the knowledge is in the context.
pub fn with_context(town: &Town, attribute: Attribute) -> Instruction {
    let (question, response) = town_question(town, attribute);
    Instruction {
        prompt: format!("{} {question}", fact_sentence(town, attribute)),
        response,
    }
}

/// Reading drills: questions about the tuned towns with a fact in the
/// prompt that is *not* the world's (another town's value, chosen with
/// `seed`), answered with the value the prompt gives. Only a model that
/// reads its context can get them right, so they teach reading rather
/// than remembering.
pub fn reading_drills(seed: u64) -> Vec<Instruction> {
    use listings::rng::{RngExt, seeded};
    let towns = world().towns;
    let mut rng = seeded(seed);
    let mut drills = Vec::new();
    for town in &towns[..TUNED_TOWNS] {
        for attribute in Attribute::ALL {
            let mut fake = town.clone();
            loop {
                let other = &towns[rng.random_range(0..towns.len())];
                if other.value(attribute) != town.value(attribute) {
                    match attribute {
                        Attribute::Region => fake.region = other.region.clone(),
                        Attribute::River => fake.river = other.river.clone(),
                        Attribute::Food => fake.food = other.food.clone(),
                        Attribute::Trade => fake.trade = other.trade.clone(),
                        Attribute::Mayor => fake.mayor = other.mayor.clone(),
                        Attribute::Founded => fake.founded = other.founded,
                        Attribute::Neighbour => fake.neighbour = other.neighbour.clone(),
                    }
                    break;
                }
            }
            drills.push(with_context(&fake, attribute));
        }
    }
    drills
}

/// Every question about the towns held out of the corpus
/// ([`listings::corpus::World::held_out`]): facts the book model has never
/// read.
pub fn new_town_questions() -> Vec<Instruction> {
    world().held_out.iter().flat_map(town_questions).collect()
}

/// Every question about the held-out towns with its fact in the prompt.
pub fn new_town_questions_in_context() -> Vec<Instruction> {
    (world().held_out.iter())
        .flat_map(|town| Attribute::ALL.map(|a| with_context(town, a)))
        .collect()
}

// ---------------------------------------------------------------------------
// Preference tuning: a style the code can score.

/// How an answer in the preferred style ends: with enthusiasm.
pub const PREFERRED_END: &str = "!";

/// How an answer in the other style ends.
pub const PLAIN_END: &str = ".";

/// Preference pairs on the tuned towns' questions: the same fact, ending
/// with `!` (chosen) or with `.` (rejected).
pub fn sign_off_pairs() -> Vec<listings::finetune::chat::Preference> {
    let (tuned, _) = instruction_split();
    tuned
        .into_iter()
        .map(|q| listings::finetune::chat::Preference {
            chosen: format!("{}{PREFERRED_END}", q.response),
            rejected: format!("{}{PLAIN_END}", q.response),
            prompt: q.prompt,
        })
        .collect()
}

/// The instruction data with every other answer ending in `!` and the
/// rest in `.`: a model tuned on it writes each about half the time, and
/// preference tuning can then move that share.
pub fn mixed_styles() -> Vec<Instruction> {
    let (tuned, _) = instruction_split();
    (tuned.into_iter().enumerate())
        .map(|(i, q)| {
            let end = if i % 2 == 0 { PREFERRED_END } else { PLAIN_END };
            Instruction {
                response: format!("{}{end}", q.response),
                ..q
            }
        })
        .collect()
}

/// How a model's answers to `questions` read, `samples` answers each drawn
/// at temperature 1: the share that end in the preferred style, and the
/// share that begin with the right fact.
pub fn style_score(
    gpt: &Gpt,
    tokenizer: &TextTokenizer,
    questions: &[Instruction],
    samples: usize,
) -> anyhow::Result<(f32, f32)> {
    let mut rng = listings::rng::seeded(5);
    let (mut signed, mut right) = (0, 0);
    for q in questions {
        for _ in 0..samples {
            let a = answer_sampled(gpt, tokenizer, &q.prompt, ANSWER_BUDGET, 1.0, &mut rng)?;
            signed += usize::from(a.stopped && a.text.ends_with(PREFERRED_END));
            right += usize::from(a.text.starts_with(&q.response));
        }
    }
    let n = (questions.len() * samples) as f32;
    Ok((signed as f32 / n, right as f32 / n))
}

// ---------------------------------------------------------------------------
// Looking at the pieces.

/// An encoded example as text, token by token (`|` between tokens), with
/// the tokens the response-only loss predicts in brackets.
pub fn show_mask(tokenizer: &TextTokenizer, example: &Encoded) -> String {
    (example.ids.iter().enumerate())
        .map(|(i, &id)| {
            let text = tokenizer.decode_lossy(&[id]).replace('\n', "\\n");
            if i >= example.prompt_len {
                format!("[{text}]")
            } else {
                text
            }
        })
        .collect::<Vec<_>>()
        .join("|")
}

/// For each adapted layer of a LoRA-tuned model, the largest difference
/// between the merged layer's output (what the tuned model computed on the
/// test questions) and the unmerged one, `x·W + b + s·(x·Aᵀ)·Bᵀ`, on the
/// same inputs.
pub fn merged_vs_unmerged(
    base: &Gpt,
    tuner: &FineTuner,
    tokenizer: &TextTokenizer,
) -> anyhow::Result<Vec<(String, f32)>> {
    use listings::finetune::lora::lora_forward;
    let lora = tuner
        .lora()
        .ok_or_else(|| anyhow::anyhow!("not a LoRA run"))?;
    let (_, test) = instruction_split();
    let encoded = encode_all(tokenizer, &test, true, base.config().block_size)?;
    let refs: Vec<&Encoded> = encoded.iter().collect();
    let batch = listings::finetune::chat::pack(&refs, LossOn::All, end_of_turn(tokenizer)?);
    let gpt = tuner.gpt();
    let mut acts = listings::model::Activations::new(gpt.config(), 0, 0);
    gpt.forward_with(&mut acts, &batch.idx, None)?;
    let mut out = Vec::new();
    for l in &lora.layers {
        if l.module != listings::finetune::lora::Module::AttnCAttn {
            anyhow::bail!("only c_attn's output is kept in the activations");
        }
        let layer = &acts.layers[l.block];
        let (b, t, c) = layer.ln1.dim();
        let x = layer.ln1.to_shape((b * t, c))?; // the layer's input, (N, C)
        let merged = layer.qkv.to_shape((b * t, 3 * c))?; // what the merged layer wrote
        let base_layer = l.module.of(&base.params().h[l.block]);
        let (unmerged, _) = lora_forward(&x, base_layer, &l.lora, lora.config.scale());
        let diff = (&merged - &unmerged)
            .mapv(f32::abs)
            .fold(0.0_f32, |m, &d| m.max(d));
        out.push((format!("h.{}.{}", l.block, l.module.name()), diff));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Figures.

/// Figure: the test towns' answer loss while tuning, from the book model
/// and from fresh weights ([`test_loss_curve`], every 10 steps).
pub fn scratch_figure(path: &std::path::Path) -> anyhow::Result<()> {
    use crate::book_model::{BOOK_MODEL_SEED, book_model_config, shared_book_model};
    use crate::plot::{Axes, Series, line_chart};
    let book = shared_book_model().map_err(anyhow::Error::msg)?;
    let fresh = Gpt::new(book_model_config(), BOOK_MODEL_SEED)?;
    let mut series = Vec::new();
    for (name, start) in [
        ("from the book model", &book.gpt),
        ("from fresh weights", &fresh),
    ] {
        let (_, curve) = test_loss_curve(
            start,
            &book.tokenizer,
            Method::Full,
            &tuning_config(1e-4),
            10,
        )?;
        let points = curve
            .iter()
            .map(|&(s, l)| (s as f64, f64::from(l)))
            .collect();
        series.push(Series { name, points });
    }
    let axes = Axes {
        title: "Tuning on 32 towns' questions: loss on the other 16 towns' answers",
        x_label: "step",
        y_label: "loss on the test answers (nats per token)",
        log_y: false,
        log_x: false,
    };
    line_chart(path, &axes, &series)
}

/// The labelled-town counts of the classifier figure.
pub const LABELLED: [usize; 5] = [2, 4, 8, 16, 32];

/// Figure: the region classifier's accuracy on towns it never saw, against
/// how many towns were labelled, by what trains and from which start.
pub fn classifier_figure(path: &std::path::Path) -> anyhow::Result<()> {
    use crate::book_model::{BOOK_MODEL_SEED, book_model_config, shared_book_model};
    use crate::plot::{Axes, Series, line_chart_with_legend};
    use listings::finetune::classify::Readout;
    let book = shared_book_model().map_err(anyhow::Error::msg)?;
    let fresh = Gpt::new(book_model_config(), BOOK_MODEL_SEED)?;
    let examples = region_examples(&book.tokenizer)?;
    let runs = [
        ("book model, every weight", &book.gpt, Method::Full),
        ("book model, head only", &book.gpt, Method::Frozen),
        ("fresh weights, every weight", &fresh, Method::Full),
    ];
    let mut series = Vec::new();
    for (name, start, method) in runs {
        let mut points = Vec::new();
        for n in LABELLED {
            let acc = region_accuracy(
                start,
                &examples,
                &method,
                Readout::Last,
                n,
                CLASSIFIER_STEPS,
                CLASSIFIER_LR,
            )?;
            points.push((n as f64, f64::from(acc)));
        }
        series.push(Series { name, points });
    }
    series.push(Series {
        name: "chance (1 in 8)",
        points: vec![(2.0, 0.125), (32.0, 0.125)],
    });
    let axes = Axes {
        title: "Which region is a town in? Accuracy on towns never labelled",
        x_label: "labelled towns",
        y_label: "accuracy",
        log_y: false,
        log_x: true,
    };
    line_chart_with_legend(
        path,
        &axes,
        &series,
        plotters::prelude::SeriesLabelPosition::UpperLeft,
    )
}

/// The classifier's training steps (all labelled towns in every step).
pub const CLASSIFIER_STEPS: usize = 100;

/// The classifier's learning rate, for the head and the model alike.
pub const CLASSIFIER_LR: f32 = 3e-3;

/// The DPO runs of the chapter: from the book model tuned (LoRA r = 4,
/// with the end token's row) on [`mixed_styles`], every weight at 1e-5,
/// `steps` steps with β = `beta`. Returns the tuned-on-styles model and
/// the run's statistics, step by step.
pub fn dpo_run(
    beta: f32,
    steps: usize,
) -> anyhow::Result<(Gpt, Vec<listings::finetune::dpo::DpoStats>)> {
    use crate::book_model::shared_book_model;
    use listings::finetune::chat::encode_chat;
    use listings::finetune::run::{EncodedPair, reference_logprobs, train_dpo};
    let book = shared_book_model().map_err(anyhow::Error::msg)?;
    let tok = &book.tokenizer;
    let (sft, _) = tune(
        &book.gpt,
        tok,
        Recipe::Lora {
            r: 4,
            end_row: true,
        },
        &mixed_styles(),
        &[],
    )?;
    let sft = sft.gpt().clone();
    let pairs = (sign_off_pairs().iter())
        .map(|p| {
            Ok(EncodedPair {
                chosen: encode_chat(tok, &p.prompt, &p.chosen, true)?,
                rejected: encode_chat(tok, &p.prompt, &p.rejected, true)?,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let pad = end_of_turn(tok)?;
    let reference = reference_logprobs(&sft, &pairs, pad)?;
    let mut tuner = FineTuner::new(sft.clone(), Method::Full, AdamWConfig::default(), 1)?;
    let config = FinetuneConfig {
        steps,
        learning_rate: 1e-5,
        beta,
        ..FinetuneConfig::default()
    };
    let history = train_dpo(&mut tuner, &pairs, &reference, &config, pad, |_, _, _| {})?;
    Ok((sft, history))
}

/// Figure: DPO's reward margin, step by step, at β = 0.1 and 0.5.
pub fn dpo_figure(path: &std::path::Path) -> anyhow::Result<()> {
    use crate::plot::{Axes, Series, line_chart_with_legend};
    let mut series = Vec::new();
    for (name, beta) in [("β = 0.1", 0.1), ("β = 0.5", 0.5)] {
        let (_, history) = dpo_run(beta, 400)?;
        let points = (history.iter().enumerate())
            .map(|(i, s)| ((i + 1) as f64, f64::from(s.margin)))
            .collect();
        series.push(Series { name, points });
    }
    let axes = Axes {
        title: "Preference tuning: the reward margin of each batch",
        x_label: "step",
        y_label: "margin z = β·(gain of chosen − gain of rejected)",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outcome_survives_the_cache_to_the_bit() {
        let o = Outcome {
            trainable: 2112,
            optimizer_bytes: 16896,
            final_loss: 0.1 + 0.2,
            tuned: AnswerScore {
                exact: 0.75,
                stopped: 1.0,
            },
            test: AnswerScore {
                exact: 1.0 / 3.0,
                stopped: 0.0,
            },
            story: f32::MIN_POSITIVE,
            answers: vec!["Amber Hills".into(), "a\nb \"é\"".into(), String::new()],
            after_user: "User: Tamber<|endoftext|>".into(),
        };
        let path = std::env::temp_dir().join(format!("outcome-{}", std::process::id()));
        write_outcome(&o, &path).unwrap();
        assert_eq!(read_outcome(&path).unwrap(), o);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn answers_in_a_batch_are_the_answers_one_at_a_time() {
        let tokenizer = TextTokenizer::Bpe(listings::tokens::book_tokenizer().clone());
        let config = listings::model::GptConfig::toy(tokenizer.vocab_size());
        let gpt = Gpt::new(config, 3).unwrap();
        let (_, test) = instruction_split();
        let prompts: Vec<&str> = test[..12].iter().map(|q| q.prompt.as_str()).collect();
        let batched = greedy_answers(&gpt, &tokenizer, &prompts, ANSWER_BUDGET).unwrap();
        for (prompt, got) in prompts.iter().zip(&batched) {
            assert_eq!(
                *got,
                answer(&gpt, &tokenizer, prompt, ANSWER_BUDGET).unwrap()
            );
        }
        assert!(batched.iter().any(|a| a.text.len() > 10), "{batched:?}");
    }

    #[test]
    fn the_test_towns_are_never_asked_about_in_tuning() {
        let (tuned, test) = instruction_split();
        assert_eq!(tuned.len(), 7 * TUNED_TOWNS);
        assert_eq!(test.len(), 7 * (listings::corpus::TOWN_COUNT - TUNED_TOWNS));
        for town in &world().towns[TUNED_TOWNS..] {
            assert!(tuned.iter().all(|q| !q.prompt.contains(&town.name)));
        }
    }
}
