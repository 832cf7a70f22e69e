//! `listings sample` and `listings eval`, run as a user would, on a
//! checkpoint of a freshly initialised tiny model.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use listings::checkpoint::{load, save};
use listings::infer::decode::Decoder;
use listings::infer::generate::{GenerateConfig, generate};
use listings::infer::quant::Format;
use listings::infer::sampler::Sampling;
use listings::model::{Gpt, GptConfig};
use listings::tokens::{CharVocab, TextTokenizer};
use listings::train::batches::mean_window_loss;

const TEXT: &str = "the quick brown fox jumps over the lazy dog.\nTHE END\n";

/// A folder holding `ckpt.safetensors`: an untrained model with a character
/// vocabulary of [`TEXT`], block size 8.
fn checkpoint_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let tok = TextTokenizer::Char(CharVocab::from_text(TEXT).unwrap());
    let config = GptConfig {
        vocab_size: tok.vocab_size(),
        block_size: 8,
        n_layer: 2,
        n_head: 2,
        n_embd: 16,
    };
    let gpt = Gpt::new(config, 42).unwrap();
    let path = dir.path().join("ckpt.safetensors");
    save(&path, &gpt, &tok, None, 0, &BTreeMap::new()).unwrap();
    (dir, path)
}

fn listings(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_listings"))
        .args(args)
        .output()
        .expect("the listings binary runs")
}

fn ok(args: &[&str]) -> String {
    let out = listings(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a command that must fail with exit code 1 and returns its stderr.
fn fails(args: &[&str]) -> String {
    let out = listings(args);
    assert_eq!(out.status.code(), Some(1), "{args:?} should fail");
    assert!(out.stdout.is_empty(), "nothing on stdout when failing");
    String::from_utf8(out.stderr).unwrap()
}

fn sample_args<'a>(ckpt: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "sample",
        "--checkpoint",
        ckpt,
        "--prompt",
        "the ",
        "--max-new-tokens",
        "40",
    ];
    args.extend_from_slice(extra);
    args
}

#[test]
fn sample_is_deterministic_for_a_seed_and_continues_the_prompt() {
    let (_dir, path) = checkpoint_dir();
    let ckpt = path.to_str().unwrap();
    let flags = ["--temperature", "1.0", "--seed", "7"];
    let a = ok(&sample_args(ckpt, &flags));
    let b = ok(&sample_args(ckpt, &flags));
    assert_eq!(a, b);
    assert!(a.starts_with("the ") && a.ends_with('\n'), "{a:?}");
    assert_eq!(a.chars().count(), 4 + 40 + 1);
    let c = ok(&sample_args(ckpt, &["--temperature", "1.0", "--seed", "8"]));
    assert_ne!(a, c, "another seed should give other text");
}

#[test]
fn sample_prints_what_the_library_generates() {
    let (_dir, path) = checkpoint_dir();
    let ckpt = path.to_str().unwrap();
    let out = ok(&sample_args(
        ckpt,
        &["--temperature", "0.7", "--top-k", "5", "--seed", "3"],
    ));
    let loaded = load(&path).unwrap();
    let prompt = loaded.tokenizer.encode("the ").unwrap();
    let config = GenerateConfig {
        max_new_tokens: 40,
        sampling: Sampling {
            temperature: 0.7,
            top_k: Some(5),
            seed: 3,
            ..Sampling::default()
        },
        ..GenerateConfig::default()
    };
    let decoder = Decoder::new(&loaded.gpt, Format::F32).unwrap();
    let new = generate(&decoder, &prompt, &config, |_| true)
        .unwrap()
        .tokens;
    assert_eq!(
        out,
        format!("the {}\n", loaded.tokenizer.decode(&new).unwrap())
    );
}

#[test]
fn temperature_zero_is_greedy_whatever_the_seed() {
    let (_dir, path) = checkpoint_dir();
    let ckpt = path.to_str().unwrap();
    let greedy = ok(&sample_args(ckpt, &["--temperature", "0", "--seed", "1"]));
    assert_eq!(
        greedy,
        ok(&sample_args(ckpt, &["--temperature", "0", "--seed", "2"]))
    );
    // Keeping only the best token is greedy too.
    assert_eq!(
        greedy,
        ok(&sample_args(
            ckpt,
            &["--temperature", "1", "--top-k", "1", "--seed", "5"]
        ))
    );
}

#[test]
fn the_default_prompt_is_a_newline_and_escapes_work() {
    let (_dir, path) = checkpoint_dir();
    let ckpt = path.to_str().unwrap();
    let out = ok(&["sample", "--checkpoint", ckpt, "--max-new-tokens", "3"]);
    assert!(
        out.starts_with('\n') && out.chars().count() == 1 + 3 + 1,
        "{out:?}"
    );
    let escaped = ok(&[
        "sample",
        "--checkpoint",
        ckpt,
        "--prompt",
        "THE\\n",
        "--max-new-tokens",
        "2",
    ]);
    assert!(escaped.starts_with("THE\n"), "{escaped:?}");
}

/// A file of `text` in `dir`.
fn file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn eval_prints_the_same_number_as_the_library() {
    let (dir, path) = checkpoint_dir();
    let data = TEXT.repeat(3); // 159 characters: 17 windows of 9, 6 left over
    let data_path = file(dir.path(), "data.txt", &data);
    let out = ok(&[
        "eval",
        "--checkpoint",
        path.to_str().unwrap(),
        "--data",
        &data_path,
    ]);
    let loaded = load(&path).unwrap();
    let ids = loaded.tokenizer.encode(&data).unwrap();
    let expected = mean_window_loss(&loaded.gpt, &ids).unwrap();
    assert_eq!((expected.windows, expected.window_len), (17, 9));
    assert_eq!(out, format!("{expected}\n"));
    assert!(out.starts_with("loss ") && out.ends_with(" over 17 windows of 9 tokens\n"));
}

#[test]
fn missing_and_corrupt_checkpoints_are_errors() {
    let (dir, path) = checkpoint_dir();
    let data = file(dir.path(), "data.txt", TEXT);
    let missing = dir.path().join("nope.safetensors");
    let missing = missing.to_str().unwrap();
    let err = fails(&["eval", "--checkpoint", missing, "--data", &data]);
    assert!(err.starts_with("error: there is no checkpoint at"), "{err}");
    let err = fails(&sample_args(missing, &[]));
    assert!(err.contains("there is no checkpoint at"), "{err}");

    let garbage = file(
        dir.path(),
        "garbage.safetensors",
        "not a model at all, just words",
    );
    let err = fails(&sample_args(&garbage, &[]));
    assert!(err.contains("is not a safetensors file"), "{err}");

    let bytes = std::fs::read(&path).unwrap();
    let cut = dir.path().join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = fails(&[
        "eval",
        "--checkpoint",
        cut.to_str().unwrap(),
        "--data",
        &data,
    ]);
    assert!(err.contains("is truncated or damaged"), "{err}");
}

#[test]
fn eval_refuses_short_empty_and_foreign_text() {
    let (dir, path) = checkpoint_dir();
    let ckpt = path.to_str().unwrap();
    let short = file(dir.path(), "short.txt", "the fox");
    let err = fails(&["eval", "--checkpoint", ckpt, "--data", &short]);
    assert!(
        err.contains("the text has 7 tokens but one window needs block_size + 1 = 9"),
        "{err}"
    );
    let empty = file(dir.path(), "empty.txt", "");
    let err = fails(&["eval", "--checkpoint", ckpt, "--data", &empty]);
    assert!(err.contains("the text is empty"), "{err}");
    let foreign = file(dir.path(), "foreign.txt", "the quick brown fox jumps: 42!");
    let err = fails(&["eval", "--checkpoint", ckpt, "--data", &foreign]);
    assert!(
        err.contains("character ':' (U+003A) at position 25 is not in the vocabulary"),
        "{err}"
    );
    let nowhere = dir.path().join("none.txt");
    let err = fails(&[
        "eval",
        "--checkpoint",
        ckpt,
        "--data",
        nowhere.to_str().unwrap(),
    ]);
    assert!(err.contains("cannot read"), "{err}");
}

#[test]
fn sample_refuses_bad_prompts_and_settings() {
    let (_dir, path) = checkpoint_dir();
    let ckpt = path.to_str().unwrap();
    let err = fails(&["sample", "--checkpoint", ckpt, "--prompt", "the cat!"]);
    assert!(
        err.contains("cannot encode the prompt: character '!' (U+0021) at position 7"),
        "{err}"
    );
    let err = fails(&sample_args(ckpt, &["--temperature", "-1"]));
    assert!(err.contains("temperature -1 is not allowed"), "{err}");
    let err = fails(&sample_args(ckpt, &["--top-k", "0"]));
    assert!(err.contains("top-k 0 keeps no token"), "{err}");
    let err = fails(&["sample", "--checkpoint", ckpt, "--prompt", ""]);
    assert!(err.contains("the prompt is empty"), "{err}");
}
