//! `listings train`: what it prints, what it saves, how it resumes, and how
//! it refuses bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn listings(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_listings"))
        .args(args)
        .output()
        .expect("the listings binary runs")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cli-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A small text with structure a model can pick up.
fn write_text(dir: &Path) -> PathBuf {
    let mut text = String::new();
    for i in 0..400 {
        text.push_str(&format!("the cat {} sat on mat {}.\n", i % 7, i % 5));
    }
    let path = dir.join("input.txt");
    std::fs::write(&path, text).unwrap();
    path
}

/// A tiny model and run, as (flag, value) pairs.
const TINY: &[(&str, &str)] = &[
    ("--n-layer", "1"),
    ("--n-head", "2"),
    ("--n-embd", "16"),
    ("--block-size", "16"),
    ("--batch-size", "4"),
    ("--max-iters", "40"),
    ("--lr-decay-iters", "40"),
    ("--warmup-iters", "5"),
    ("--eval-interval", "20"),
    ("--eval-iters", "2"),
    ("--log-interval", "10"),
    ("--learning-rate", "1e-2"),
];

/// `listings train` with TINY's flags, `extra` replacing any of them and
/// adding others (a flag followed by a value, or `--resume` alone).
fn train(data: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["train", "--data", data.to_str().unwrap()];
    let mut i = 0;
    let mut overrides: Vec<(&str, Option<&str>)> = Vec::new();
    while i < extra.len() {
        if extra[i] == "--resume" {
            overrides.push((extra[i], None));
            i += 1;
        } else {
            overrides.push((extra[i], Some(extra[i + 1])));
            i += 2;
        }
    }
    if !overrides.iter().any(|(f, _)| *f == "--out") {
        args.extend(["--out", out.to_str().unwrap()]);
    }
    for (flag, value) in TINY {
        if !overrides.iter().any(|(f, _)| f == flag) {
            args.extend([*flag, *value]);
        }
    }
    for (flag, value) in overrides {
        args.push(flag);
        args.extend(value);
    }
    listings(&args)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn train_prints_nanogpt_lines_saves_a_checkpoint_that_samples_and_evaluates() {
    let dir = temp_dir("ok");
    let data = write_text(&dir);
    let out = dir.join("model.safetensors");
    let run = train(&data, &out, &[]);
    let stdout = text(&run.stdout);
    assert!(run.status.success(), "{stdout}\n{}", text(&run.stderr));
    for line in [
        "step 0: train loss ",
        "step 20: train loss ",
        "step 40: train loss ",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in\n{stdout}");
    }
    for iter in ["iter 0: loss ", "iter 10: loss ", "iter 30: loss "] {
        assert!(stdout.contains(iter), "missing {iter:?} in\n{stdout}");
    }
    assert!(stdout.contains(" ms\n") && stdout.contains("saved checkpoint to "));
    // Piped output carries no progress bar.
    assert!(!stdout.contains('\r') && !stdout.contains('\u{1b}'));
    let val = |step: &str| -> f32 {
        let line = stdout.lines().find(|l| l.starts_with(step)).unwrap();
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!(val("step 40:") < val("step 0:") - 0.5, "{stdout}");

    let sample = listings(&[
        "sample",
        "--checkpoint",
        out.to_str().unwrap(),
        "--prompt",
        "the",
        "--max-new-tokens",
        "20",
    ]);
    assert!(sample.status.success(), "{}", text(&sample.stderr));
    assert!(text(&sample.stdout).starts_with("the"));
    let eval = listings(&[
        "eval",
        "--checkpoint",
        out.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]);
    assert!(
        text(&eval.stdout).starts_with("loss "),
        "{}",
        text(&eval.stderr)
    );
}

#[test]
fn resume_continues_from_the_saved_step_with_the_optimiser() {
    let dir = temp_dir("resume");
    let data = write_text(&dir);
    let out = dir.join("model.safetensors");
    assert!(train(&data, &out, &[]).status.success());
    let more = train(
        &data,
        &out,
        &["--resume", "--max-iters", "60", "--lr-decay-iters", "60"],
    );
    let stdout = text(&more.stdout);
    assert!(more.status.success(), "{stdout}\n{}", text(&more.stderr));
    assert!(
        !stdout.contains("step 0:") && !stdout.contains("iter 0:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("iter 40: loss ") && stdout.contains("step 60: train loss "),
        "{stdout}"
    );
}

/// Resuming restores the model, AdamW's moments and its step count exactly:
/// the CLI's resumed run ends with the same parameters and moments, bit for
/// bit, as the library's loop continued from the checkpoint it resumed. (Not
/// as one uninterrupted run: a run resumed at step s draws its batches from a
/// stream seeded by the seed and s, see `train::run::run`.) A resume that
/// re-initialised the weights or the optimiser, or lost its step count,
/// fails here.
#[test]
fn a_resumed_run_ends_bit_for_bit_where_the_library_loop_does() {
    use listings::checkpoint::load;
    use listings::train::batches::TokenData;
    use listings::train::run::{TrainConfig, run, split};
    use listings::train::step::Trainer;
    let dir = temp_dir("resume-bits");
    let data = write_text(&dir);
    let out = dir.join("model.safetensors");
    assert!(train(&data, &out, &[]).status.success());
    let start = dir.join("start.safetensors");
    std::fs::copy(&out, &start).unwrap();
    let more = train(
        &data,
        &out,
        &[
            "--resume",
            "--max-iters",
            "60",
            "--lr-decay-iters",
            "60",
            "--eval-interval",
            "0",
        ],
    );
    assert!(more.status.success(), "{}", text(&more.stderr));
    // Without evaluations, the run saves its last step's model.
    let cli = load(&out).unwrap();
    assert_eq!(cli.step, 60, "{}", text(&more.stdout));

    let ckpt = load(&start).unwrap();
    assert_eq!(ckpt.step, 40);
    let config = TrainConfig {
        batch_size: 4,
        block_size: 16,
        max_iters: 60,
        lr_decay_iters: 60,
        warmup_iters: 5,
        eval_interval: 0,
        eval_iters: 2,
        learning_rate: 1e-2,
        ..TrainConfig::shakespeare_char()
    };
    let text = std::fs::read_to_string(&data).unwrap();
    let tokens = TokenData::from_text(&text, &ckpt.tokenizer).unwrap();
    let split = split(&tokens, config.block_size).unwrap();
    let mut trainer = Trainer::from_parts(ckpt.gpt, ckpt.optimizer.unwrap()).unwrap();
    run(&mut trainer, &split, &config, |_, _| Ok(())).unwrap();
    assert!(
        trainer.gpt().params() == cli.gpt.params(),
        "the weights differ"
    );
    let (lib, cli) = (trainer.optimizer(), cli.optimizer.unwrap());
    assert_eq!(lib.t, cli.t);
    assert!(lib.m == cli.m && lib.v == cli.v, "AdamW's moments differ");
}

#[test]
fn bad_input_is_refused_before_training_with_a_reason() {
    let dir = temp_dir("bad");
    let data = write_text(&dir);
    let out = dir.join("model.safetensors");
    let empty = dir.join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    let short = dir.join("short.txt");
    std::fs::write(&short, "just a few characters").unwrap();
    let cases: Vec<(PathBuf, Vec<&str>, &str)> = vec![
        (empty.clone(), vec![], "empty"),
        (short.clone(), vec![], "block_size"),
        (
            data.clone(),
            vec!["--min-lr", "1"],
            "min_lr 1 is above learning_rate",
        ),
        (data.clone(), vec!["--n-embd", "15"], "divisible"),
        (
            data.clone(),
            vec!["--tokenizer", "nowhere.bpe"],
            "--tokenizer nowhere.bpe",
        ),
        (
            data.clone(),
            vec!["--resume", "--out", "/nonexistent/x"],
            "the folder /nonexistent does not exist",
        ),
        (data.clone(), vec!["--resume"], "no checkpoint"),
    ];
    for (input, extra, want) in cases {
        let run = train(&input, &out, &extra);
        let stderr = text(&run.stderr);
        assert!(
            !run.status.success() && stderr.contains(want),
            "{extra:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    assert!(!out.exists(), "a refused run wrote a checkpoint");
}

#[test]
fn a_diverging_run_stops_names_the_step_and_keeps_the_last_good_checkpoint() {
    let dir = temp_dir("nan");
    let data = write_text(&dir);
    let out = dir.join("model.safetensors");
    assert!(train(&data, &out, &[]).status.success());
    let good = std::fs::read(&out).unwrap();
    // Resume with a learning rate so large that the weights overflow.
    let run = train(
        &data,
        &out,
        &[
            "--resume",
            "--max-iters",
            "200",
            "--lr-decay-iters",
            "200",
            "--learning-rate",
            "1e35",
            "--min-lr",
            "1e35",
            "--grad-clip",
            "0",
        ],
    );
    let stderr = text(&run.stderr);
    assert!(!run.status.success(), "{}", text(&run.stdout));
    assert!(
        stderr.contains("training has diverged") && stderr.contains("lower learning rate"),
        "{stderr}"
    );
    assert!(stderr.contains("step "), "{stderr}");
    // The file on disk is still a loadable checkpoint: the last good one.
    let after = std::fs::read(&out).unwrap();
    assert!(
        after == good,
        "the checkpoint changed although no evaluation improved"
    );
    let eval = listings(&[
        "eval",
        "--checkpoint",
        out.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]);
    assert!(eval.status.success(), "{}", text(&eval.stderr));
}

/// `listings train` on the corpus with the book model's flags (the command
/// chapter 5 shows; the `lab` crate checks that they are the book model's
/// settings) runs the library's training loop: the same evaluations, to the
/// four decimals it prints, as `train::run::run` with those settings.
/// Shortened to 60 steps.
#[test]
fn the_book_command_runs_the_library_training_loop() {
    use listings::model::{Gpt, GptConfig};
    use listings::tokens::{TextTokenizer, book_tokenizer};
    use listings::train::batches::TokenData;
    use listings::train::run::{TrainConfig, run, split};
    use listings::train::step::Trainer;
    let dir = temp_dir("book");
    let corpus = dir.join("corpus.txt");
    let out = listings(&["corpus"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::fs::write(&corpus, &out.stdout).unwrap();
    let ckpt = dir.join("book.safetensors");
    #[rustfmt::skip]
    let args = [
        "train", "--data", corpus.to_str().unwrap(), "--out", ckpt.to_str().unwrap(),
        "--tokenizer", "bpe", "--n-layer", "2", "--n-head", "4", "--n-embd", "64",
        "--block-size", "64", "--batch-size", "16", "--max-iters", "60",
        "--learning-rate", "3e-3", "--min-lr", "3e-4", "--lr-decay-iters", "2000",
        "--eval-iters", "20", "--eval-interval", "30",
    ];
    let cli = listings(&args);
    assert!(cli.status.success(), "{}", text(&cli.stderr));
    let first = "323056 tokens (290750 train, 32306 val), vocabulary 2048 (bpe); 235264 parameters";
    assert_eq!(
        text(&cli.stdout).lines().next(),
        Some(first),
        "chapter 5 quotes it"
    );
    let printed: Vec<String> = text(&cli.stdout)
        .lines()
        .filter(|l| l.starts_with("step "))
        .map(String::from)
        .collect();

    let config = TrainConfig {
        batch_size: 16,
        block_size: 64,
        max_iters: 60,
        learning_rate: 3e-3,
        min_lr: 3e-4,
        lr_decay_iters: 2000,
        eval_iters: 20,
        eval_interval: 30,
        ..TrainConfig::shakespeare_char()
    };
    let tokenizer = TextTokenizer::Bpe(book_tokenizer().clone());
    let tokens = TokenData::from_text(&listings::corpus::corpus(), &tokenizer).unwrap();
    let data = split(&tokens, config.block_size).unwrap();
    let model = GptConfig {
        n_layer: 2,
        n_head: 4,
        n_embd: 64,
        block_size: 64,
        ..GptConfig::toy(tokenizer.vocab_size())
    };
    let gpt = Gpt::new(model, config.seed).unwrap();
    let adamw = config.adamw();
    let mut trainer = Trainer::new(gpt, adamw, config.batch_size, config.block_size).unwrap();
    let history = run(&mut trainer, &data, &config, |_, _| Ok(())).unwrap();
    let expected: Vec<String> = (history.evals.iter())
        .map(|(step, train, val)| format!("step {step}: train loss {train:.4}, val loss {val:.4}"))
        .collect();
    assert_eq!(expected.len(), 3, "evaluations at steps 0, 30 and 60");
    assert_eq!(printed, expected);
}
