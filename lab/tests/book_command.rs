//! The `listings train` command chapter 5 shows trains the book model: its
//! flags are the book model's settings, flag for flag. (The CLI's own test,
//! `the_book_command_runs_the_library_training_loop` in
//! `listings/tests/cli_train.rs`, checks that those flags run the library's
//! training loop and print its evaluations.) And the `listings sample`
//! command it shows next writes the text of Listing 5-46.

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

/// Chapter 5 says that its `listings sample` command on the book model
/// printed the same continuation of "Once upon a time" as Listing 5-46.
/// The listing calls chapter 4's `sample_text`; the command runs the
/// generation loop of `listings::infer` with its default sampling flags
/// (nanoGPT's: temperature 0.8, top-k 200, seed 1337; stopping at
/// `<|endoftext|>`), whose sampler normalises before drawing and keeps
/// exactly k tokens. On the book model both must still write the same text.
#[test]
fn the_chapters_sample_command_writes_the_listings_text() {
    use lab::book_model::book_model;
    use listings::infer::decode::Decoder;
    use listings::infer::generate::{GenerateConfig, generate};
    use listings::infer::quant::Format;
    use listings::infer::sampler::Sampling;
    use listings::sample::{SampleConfig, sample_text};
    use listings::tokens::{ENDOFTEXT, TextTokenizer};

    let chapter = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../src/ch05-training.md"
    ))
    .unwrap();
    assert!(
        chapter.contains(
            "-- sample --checkpoint book.safetensors \\\n    --prompt \"Once upon a time\" \
             --max-new-tokens 40\n"
        ),
        "chapter 5 shows the sample command this test runs"
    );
    let (prompt, new) = ("Once upon a time", 40);
    let book = book_model().unwrap();
    let sampling = SampleConfig {
        max_new_tokens: new,
        ..SampleConfig::default()
    };
    let listing = sample_text(&book.gpt, &book.tokenizer, prompt, &sampling).unwrap();

    let TextTokenizer::Bpe(bpe) = &book.tokenizer else {
        panic!("the book model reads BPE tokens");
    };
    let end = bpe
        .special_tokens()
        .iter()
        .find(|(name, _)| name == ENDOFTEXT)
        .map(|&(_, id)| id);
    let config = GenerateConfig {
        max_new_tokens: new,
        sampling: Sampling {
            temperature: 0.8,
            top_k: Some(200),
            top_p: None,
            repetition_penalty: 1.0,
            seed: 1337,
        },
        stop_tokens: end.into_iter().collect(),
        ..GenerateConfig::default()
    };
    let decoder = Decoder::new(&book.gpt, Format::F32).unwrap();
    let ids = book.tokenizer.encode(prompt).unwrap();
    let made = generate(&decoder, &ids, &config, |_| true).unwrap().tokens;
    assert_eq!(made.len(), new, "no <|endoftext|> among them");
    let command = format!("{prompt}{}", book.tokenizer.decode(&made).unwrap());
    assert_eq!(command, listing);
}
