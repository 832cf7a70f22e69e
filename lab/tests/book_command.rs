//! The `listings train` command chapter 5 shows trains the book model: its
//! flags are the book model's settings, flag for flag. (The CLI's own test,
//! `the_book_command_runs_the_library_training_loop` in
//! `listings/tests/cli_train.rs`, checks that those flags run the library's
//! training loop and print its evaluations.)

use lab::book_model::{BOOK_MODEL_SEED, book_model_config, book_train_config};
use listings::train::run::TrainConfig;

/// The flags of the `listings -- train` command in chapter 5, as (name,
/// value) pairs.
fn chapter_command() -> Vec<(String, String)> {
    let chapter = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../src/ch05-training.md"
    ))
    .unwrap();
    let start = chapter
        .find("-p listings -- train ")
        .expect("chapter 5 shows the train command");
    let rest = &chapter[start..];
    let command = &rest[..rest.find("```").unwrap()];
    let words: Vec<&str> = command
        .split_whitespace()
        .filter(|w| *w != "\\")
        .skip(4) // -p listings -- train
        .collect();
    words
        .chunks(2)
        .map(|pair| (pair[0].to_string(), pair[1].to_string()))
        .collect()
}

#[test]
fn the_book_command_has_the_book_models_settings() {
    let flags = chapter_command();
    let train = book_train_config();
    let model = book_model_config();
    let defaults = TrainConfig::shakespeare_char();
    let mut seen = Vec::new();
    for (flag, value) in &flags {
        let expected = match flag.as_str() {
            "--data" | "--out" => continue,
            "--tokenizer" => "bpe".to_string(),
            "--n-layer" => model.n_layer.to_string(),
            "--n-head" => model.n_head.to_string(),
            "--n-embd" => model.n_embd.to_string(),
            "--block-size" => train.block_size.to_string(),
            "--batch-size" => train.batch_size.to_string(),
            "--max-iters" => train.max_iters.to_string(),
            "--learning-rate" => format!("{:e}", train.learning_rate),
            "--min-lr" => format!("{:e}", train.min_lr),
            "--lr-decay-iters" => train.lr_decay_iters.to_string(),
            "--eval-iters" => train.eval_iters.to_string(),
            other => panic!("chapter 5's command has a flag this test does not know: {other}"),
        };
        assert_eq!(value, &expected, "{flag}");
        seen.push(flag.as_str());
    }
    assert_eq!(model.block_size, train.block_size);
    // What the command leaves to the CLI's defaults (nanoGPT's
    // shakespeare_char settings) must be the book model's too.
    let unset = TrainConfig {
        block_size: train.block_size,
        batch_size: train.batch_size,
        max_iters: train.max_iters,
        learning_rate: train.learning_rate,
        min_lr: train.min_lr,
        lr_decay_iters: train.lr_decay_iters,
        eval_iters: train.eval_iters,
        ..defaults
    };
    assert_eq!(unset, train, "flags set: {seen:?}");
    assert_eq!(
        defaults.seed, BOOK_MODEL_SEED,
        "the CLI seeds the weights with --seed"
    );
}
