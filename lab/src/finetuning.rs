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
use listings::finetune::chat::{Encoded, Instruction, encode_all, end_of_turn};
use listings::finetune::lora::LoraConfig;
use listings::finetune::run::{FinetuneConfig, answer, train_instructions};
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

/// Tunes `base` on the instruction data by `method`; returns the tuned
/// model, the losses and the tuner's trainable count and optimiser bytes.
pub fn instruction_tune(
    base: &Gpt,
    tokenizer: &TextTokenizer,
    method: Method,
    config: &FinetuneConfig,
    end_token: bool,
) -> anyhow::Result<(FineTuner, Vec<f32>)> {
    let (train, _) = instruction_split();
    let encoded: Vec<Encoded> = encode_all(tokenizer, &train, end_token, base.config().block_size)?;
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
