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
    let (mut exact, mut stopped) = (0, 0);
    for q in questions {
        let a = answer(gpt, tokenizer, &q.prompt, ANSWER_BUDGET)?;
        exact += usize::from(a.stopped && a.text == q.response);
        stopped += usize::from(a.stopped);
    }
    let n = questions.len() as f32;
    Ok(AnswerScore {
        exact: exact as f32 / n,
        stopped: stopped as f32 / n,
    })
}

/// The instruction-tuning run's settings.
pub fn instruct_config() -> FinetuneConfig {
    FinetuneConfig {
        steps: 200,
        batch_size: 16,
        learning_rate: 1e-3,
        ..FinetuneConfig::default()
    }
}

/// Tunes `base` on the instruction data by `method`, with `replay`
/// examples mixed in (none: `&[]`); returns the tuner and the losses.
pub fn instruction_tune(
    base: &Gpt,
    tokenizer: &TextTokenizer,
    method: Method,
    config: &FinetuneConfig,
    end_token: bool,
    replay: &[Encoded],
) -> anyhow::Result<(FineTuner, Vec<f32>)> {
    let (train, _) = instruction_split();
    tune_on(base, tokenizer, method, config, end_token, &train, replay)
}

/// [`instruction_tune`] on other instruction data.
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

#[cfg(test)]
mod tests {
    use super::*;

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
    use listings::sample::{SampleConfig, generate};
    let mut right = 0;
    for q in questions {
        let ids = tokenizer.encode(&format!("Q: {}\nA:", q.prompt))?;
        let config = SampleConfig {
            max_new_tokens: 12,
            temperature: 0.0,
            ..SampleConfig::default()
        };
        let out = generate(gpt, &ids, &config)?;
        let text = tokenizer.decode_lossy(&out[ids.len()..]);
        let line = text.split('\n').next().unwrap_or("").trim();
        right += usize::from(line == q.response);
    }
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

/// The tuned towns' questions with their facts in the prompt: teaches a
/// model to read an answer from its context.
pub fn tuned_questions_in_context() -> Vec<Instruction> {
    (world().towns[..TUNED_TOWNS].iter())
        .flat_map(|town| Attribute::ALL.map(|a| with_context(town, a)))
        .collect()
}

// ---------------------------------------------------------------------------
// Preference tuning: a style the code can score.

/// The sign-off of the preferred style.
pub const SIGN_OFF: &str = " Glad to help!";

/// Preference pairs on the tuned towns' questions: the same fact, with the
/// sign-off (chosen) and without (rejected).
pub fn sign_off_pairs() -> Vec<listings::finetune::chat::Preference> {
    let (tuned, _) = instruction_split();
    tuned
        .into_iter()
        .map(|q| listings::finetune::chat::Preference {
            chosen: format!("{}.{SIGN_OFF}", q.response),
            rejected: q.response,
            prompt: q.prompt,
        })
        .collect()
}

/// The instruction data with the sign-off on every other answer: a model
/// tuned on it signs off about half the time, and preference tuning can
/// then move that share.
pub fn half_signed() -> Vec<Instruction> {
    let (tuned, _) = instruction_split();
    (tuned.into_iter().enumerate())
        .map(|(i, q)| match i % 2 {
            0 => Instruction {
                response: format!("{}.{SIGN_OFF}", q.response),
                ..q
            },
            _ => q,
        })
        .collect()
}

/// How a model's answers to `questions` read, `samples` answers each drawn
/// at temperature 1: the share that end with the sign-off, and the share
/// that begin with the right fact.
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
            signed += usize::from(a.stopped && a.text.ends_with(SIGN_OFF.trim_start()));
            right += usize::from(a.text.starts_with(&q.response));
        }
    }
    let n = (questions.len() * samples) as f32;
    Ok((signed as f32 / n, right as f32 / n))
}
