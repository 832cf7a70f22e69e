//! The command-line tool under bad input and faults: every command that
//! writes keeps what the user had (the output policy in the README's CLI
//! section), a run says what it left on disk, and settings that cannot work
//! are refused before any work, naming the flag.

mod common;
use common::{interrupted, listing, listings, refused, text};

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use listings::checkpoint::{self, save};
use listings::model::{Gpt, GptConfig};
use listings::tokens::{CharVocab, TextTokenizer};

/// A small text with structure a model can pick up.
fn write_text(dir: &Path) -> PathBuf {
    let mut text = String::new();
    for i in 0..400 {
        text.push_str(&format!("the cat {} sat on mat {}.\n", i % 7, i % 5));
    }
    let path = dir.join("input.txt");
    fs::write(&path, text).unwrap();
    path
}

/// A tiny model and run.
const TINY: &[&str] = &[
    "--n-layer",
    "1",
    "--n-head",
    "2",
    "--n-embd",
    "16",
    "--block-size",
    "16",
    "--batch-size",
    "4",
    "--warmup-iters",
    "5",
    "--eval-iters",
    "2",
    "--log-interval",
    "10",
    "--learning-rate",
    "1e-2",
];

/// `listings train --data DATA --out OUT` with TINY's flags and `extra`
/// (which must not repeat one of them).
fn train(data: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(TINY);
    args.extend(extra);
    listings(&args)
}

/// 40 steps evaluated every 20, decayed over the 40.
const RUN40: &[&str] = &[
    "--max-iters",
    "40",
    "--lr-decay-iters",
    "40",
    "--eval-interval",
    "20",
];

/// A folder with the text and a checkpoint trained on it (40 steps).
fn trained() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = write_text(dir.path());
    let out = dir.path().join("model.safetensors");
    let run = train(&data, &out, RUN40);
    assert!(run.status.success(), "{}", text(&run.stderr));
    (dir, data, out)
}

#[test]
fn out_is_never_the_input_a_link_a_folder_or_a_device() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_text(dir.path());
    let before = fs::read(&data).unwrap();
    let link = dir.path().join("link.safetensors");
    #[cfg(unix)]
    std::os::unix::fs::symlink(&data, &link).unwrap();
    let cases: Vec<(PathBuf, &str)> = vec![
        (data.clone(), "is the same file as --data"),
        #[cfg(unix)]
        (link.clone(), "is a symbolic link"),
        (dir.path().to_path_buf(), "is a folder"),
        #[cfg(unix)]
        (PathBuf::from("/dev/null"), "is not a regular file"),
    ];
    for (out, want) in cases {
        for extra in [&[][..], &["--overwrite"][..]] {
            let mut args = RUN40.to_vec();
            args.extend(extra);
            let stderr = refused(&train(&data, &out, &args));
            assert!(stderr.contains(want), "{out:?}: {stderr}");
        }
    }
    assert_eq!(fs::read(&data).unwrap(), before, "the text was touched");
}

#[test]
fn a_file_that_is_not_a_checkpoint_is_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_text(dir.path());
    let notes = dir.path().join("notes.txt");
    fs::write(&notes, "my notes").unwrap();
    for extra in [&[][..], &["--overwrite"][..], &["--resume"][..]] {
        let mut args = RUN40.to_vec();
        args.extend(extra);
        let stderr = refused(&train(&data, &notes, &args));
        assert!(
            stderr.contains("is not a checkpoint") && stderr.contains("refusing to replace it"),
            "{extra:?}: {stderr}"
        );
    }
    assert_eq!(fs::read_to_string(&notes).unwrap(), "my notes");
}

#[test]
fn a_new_run_replaces_a_checkpoint_only_with_overwrite_and_the_same_model() {
    let (dir, data, out) = trained();
    let before = fs::read(&out).unwrap();
    let stderr = refused(&train(&data, &out, RUN40));
    assert!(
        stderr.contains("already holds a checkpoint (step 40, val loss ")
            && stderr.contains("--resume")
            && stderr.contains("--overwrite"),
        "{stderr}"
    );
    let mut wider = RUN40.to_vec();
    wider.extend(["--overwrite", "--seed", "7"]);
    let mut other = Vec::new();
    for (i, arg) in TINY.iter().enumerate() {
        if i > 0 && TINY[i - 1] == "--n-embd" {
            other.push("32");
        } else {
            other.push(*arg);
        }
    }
    let mut args = vec!["train", "--data", data.to_str().unwrap()];
    args.extend(["--out", out.to_str().unwrap()]);
    args.extend(&other);
    args.extend(&wider);
    let stderr = refused(&listings(&args));
    assert!(
        stderr.contains("holds a different model") && stderr.contains("model 1-2-16"),
        "{stderr}"
    );
    assert_eq!(fs::read(&out).unwrap(), before, "a refused run touched it");
    assert_eq!(listing(dir.path()), ["input.txt", "model.safetensors"]);

    let mut same = RUN40.to_vec();
    same.extend(["--overwrite", "--seed", "7"]);
    let run = train(&data, &out, &same);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert_ne!(fs::read(&out).unwrap(), before, "--overwrite replaced it");
}

#[test]
fn out_in_a_missing_or_unusable_folder_is_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_text(dir.path());
    let file = dir.path().join("plain");
    fs::write(&file, "x").unwrap();
    for (out, want) in [
        (
            dir.path().join("missing/model.safetensors"),
            "does not exist",
        ),
        (file.join("model.safetensors"), "is not a folder"),
    ] {
        let run = train(&data, &out, RUN40);
        let stderr = refused(&run);
        assert!(stderr.contains(want), "{stderr}");
        assert!(
            run.stdout.is_empty(),
            "it trained first: {}",
            text(&run.stdout)
        );
    }
}

/// A read-only folder, which root could still write into: the check must
/// come from trying, so it holds for every user (root included: a folder
/// under /proc cannot take a new file whoever asks).
#[cfg(target_os = "linux")]
#[test]
fn out_in_a_folder_that_refuses_new_files_is_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_text(dir.path());
    let out = Path::new("/proc/self/model.safetensors");
    let run = train(&data, out, RUN40);
    let stderr = refused(&run);
    assert!(stderr.contains("cannot write in its folder"), "{stderr}");
    assert!(
        run.stdout.is_empty(),
        "it trained first: {}",
        text(&run.stdout)
    );
}

#[test]
fn a_resumed_run_saves_only_what_beats_the_checkpoint() {
    let (_dir, data, out) = trained();
    let saved = checkpoint::load(&out).unwrap();
    let best: f32 = saved.hparams["best_val_loss"].parse().unwrap();
    // Evaluations at steps 42, 49, 56 and 60 (not multiples of the saved
    // 20), with a learning rate far too high for the model; the other
    // settings are the checkpoint's.
    let mut args = vec!["train", "--data", data.to_str().unwrap()];
    args.extend(["--out", out.to_str().unwrap(), "--resume"]);
    args.extend(["--max-iters", "60", "--lr-decay-iters", "60"]);
    args.extend(["--eval-interval", "7", "--grad-clip", "0"]);
    args.extend(["--learning-rate", "0.3", "--min-lr", "0.3"]);
    let run = listings(&args);
    let stdout = text(&run.stdout);
    assert!(run.status.success(), "{stdout}\n{}", text(&run.stderr));
    assert!(
        stdout.contains(&format!("its val loss: {best:.4}")),
        "{stdout}"
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let mut bar = best;
    let mut worse = 0;
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line.strip_prefix("step ") else {
            continue;
        };
        let val: f32 = rest.rsplit(' ').next().unwrap().parse().unwrap();
        let saved_now = lines.get(i + 1).is_some_and(|l| l.starts_with("saved"));
        assert_eq!(saved_now, val < bar, "{line} (bar {bar})\n{stdout}");
        if saved_now {
            bar = val;
        } else {
            worse += 1;
        }
    }
    assert!(
        worse > 0,
        "no evaluation was worse: the case is not tested\n{stdout}"
    );
    let after = checkpoint::load(&out).unwrap();
    let kept: f32 = after.hparams["best_val_loss"].parse().unwrap();
    assert!(kept <= best, "the checkpoint got worse: {best} -> {kept}");
}

#[test]
fn resume_refuses_flags_that_contradict_the_checkpoint_naming_each() {
    let (_dir, data, out) = trained();
    let before = fs::read(&out).unwrap();
    let mut args = vec!["train", "--data", data.to_str().unwrap()];
    args.extend(["--out", out.to_str().unwrap(), "--resume"]);
    args.extend(["--n-layer", "3", "--n-embd", "64", "--tokenizer", "bpe"]);
    args.extend(["--max-iters", "80"]);
    let stderr = refused(&listings(&args));
    for want in [
        "--n-layer 3 (the model has 1)",
        "--n-embd 64 (the model has 16)",
        "--tokenizer bpe (the model was trained with a char tokenizer",
    ] {
        assert!(stderr.contains(want), "missing {want:?} in {stderr}");
    }
    // Another text: its validation losses would not compare.
    let other = data.with_file_name("other.txt");
    fs::write(
        &other,
        fs::read_to_string(&data).unwrap().replace("cat", "dog"),
    )
    .unwrap();
    let mut args = vec!["train", "--data", other.to_str().unwrap()];
    args.extend([
        "--out",
        out.to_str().unwrap(),
        "--resume",
        "--max-iters",
        "80",
    ]);
    let stderr = refused(&listings(&args));
    assert!(
        stderr.contains("is not the text the checkpoint"),
        "{stderr}"
    );
    // Nothing left to do.
    let mut args = vec!["train", "--data", data.to_str().unwrap()];
    args.extend(["--out", out.to_str().unwrap(), "--resume"]);
    let stderr = refused(&listings(&args));
    assert!(stderr.contains("has already taken 40 steps"), "{stderr}");
    assert_eq!(fs::read(&out).unwrap(), before);
}

#[test]
fn resume_takes_the_saved_settings_unless_a_flag_is_given() {
    let (_dir, data, out) = trained();
    // Only the data, the path and the new length: the model, batch and
    // schedule are the checkpoint's (the defaults would be nanoGPT's
    // 6-6-384 at batch 64, and fail on this checkpoint).
    let mut args = vec!["train", "--data", data.to_str().unwrap()];
    args.extend(["--out", out.to_str().unwrap(), "--resume"]);
    args.extend(["--max-iters", "60", "--lr-decay-iters", "60"]);
    let run = listings(&args);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let stdout = text(&run.stdout);
    assert!(stdout.contains("steps of 4 x 16 tokens"), "{stdout}");
    assert!(stdout.contains("step 60: train loss"), "{stdout}");
    let ckpt = checkpoint::load(&out).unwrap();
    assert_eq!(ckpt.hparams["batch_size"], "4");
    assert_eq!(ckpt.hparams["learning_rate"], "0.01");
}

#[test]
fn a_run_that_saves_nothing_says_so_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_text(dir.path());
    let out = dir.path().join("model.safetensors");
    // A learning rate so high that every evaluation is far worse than the
    // untrained model's (losses in the hundreds against ln(vocabulary)).
    let mut args = vec!["train", "--data", data.to_str().unwrap()];
    args.extend(["--out", out.to_str().unwrap()]);
    args.extend(["--n-layer", "1", "--n-head", "2", "--n-embd", "16"]);
    args.extend([
        "--block-size",
        "16",
        "--batch-size",
        "4",
        "--eval-iters",
        "2",
    ]);
    args.extend([
        "--max-iters",
        "40",
        "--eval-interval",
        "20",
        "--grad-clip",
        "0",
    ]);
    args.extend([
        "--learning-rate",
        "10",
        "--min-lr",
        "10",
        "--warmup-iters",
        "0",
    ]);
    let stderr = refused(&listings(&args));
    assert!(
        stderr.contains("no evaluation beat the untrained model's validation loss")
            && stderr.contains("nothing was saved"),
        "{stderr}"
    );
    assert!(!out.exists());
    let stderr = refused(&train(&data, &out, &["--max-iters", "0"]));
    assert!(
        stderr.contains("--max-iters 0: there is nothing to train"),
        "{stderr}"
    );
    let one = dir.path().join("one.txt");
    fs::write(&one, "a".repeat(500)).unwrap();
    let stderr = refused(&train(&one, &out, RUN40));
    assert!(stderr.contains("only one distinct character"), "{stderr}");
    assert_eq!(listing(dir.path()), ["input.txt", "one.txt"]);
}

#[test]
fn every_run_ends_saying_what_is_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_text(dir.path());
    let out = dir.path().join("model.safetensors");
    let run = train(&data, &out, RUN40);
    let stdout = text(&run.stdout);
    let last = stdout.lines().last().unwrap();
    assert!(
        last.contains("holds the model of step 40 (val loss ")
            && last.ends_with("saved by this run"),
        "{stdout}"
    );
    // Without evaluations, the last step's model is saved, and said to be
    // unevaluated (not "best val loss inf").
    let end = dir.path().join("end.safetensors");
    let run = train(&data, &end, &["--max-iters", "10", "--eval-interval", "0"]);
    let stdout = text(&run.stdout);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(!stdout.contains("inf"), "{stdout}");
    assert!(
        stdout
            .lines()
            .last()
            .unwrap()
            .contains("step 10 (not evaluated"),
        "{stdout}"
    );
}

#[test]
fn a_closed_or_full_stdout_does_not_stop_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_text(dir.path());
    // A pipe whose reader has gone (`listings train ... | head -1`).
    let out = dir.path().join("piped.safetensors");
    let mut child = Command::new(env!("CARGO_BIN_EXE_listings"))
        .args(["train", "--data", data.to_str().unwrap()])
        .args(["--out", out.to_str().unwrap()])
        .args(TINY)
        .args(RUN40)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains("tokens"), "{first}");
    // The reader is dropped here: later lines hit a broken pipe.
    let done = child.wait_with_output().unwrap();
    assert!(done.status.success(), "{}", text(&done.stderr));
    assert!(!text(&done.stderr).contains("panicked"));
    assert_eq!(checkpoint::load(&out).unwrap().step, 40);
    // A full disk behind stdout (Linux's /dev/full).
    #[cfg(target_os = "linux")]
    {
        let out = dir.path().join("full.safetensors");
        let done = Command::new(env!("CARGO_BIN_EXE_listings"))
            .args(["train", "--data", data.to_str().unwrap()])
            .args(["--out", out.to_str().unwrap()])
            .args(TINY)
            .args(RUN40)
            .stdout(fs::File::create("/dev/full").unwrap())
            .output()
            .unwrap();
        assert!(done.status.success(), "{}", text(&done.stderr));
        assert_eq!(checkpoint::load(&out).unwrap().step, 40);
    }
}

#[test]
fn a_second_run_on_the_same_out_is_refused_naming_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_text(dir.path());
    let out = dir.path().join("model.safetensors");
    // This test holds the lock as a running `listings train` would.
    let lock_path = dir.path().join(".model.safetensors.lock");
    let lock = fs::File::create(&lock_path).unwrap();
    lock.lock().unwrap();
    fs::write(&lock_path, "pid 4242\n").unwrap();
    let stderr = refused(&train(&data, &out, RUN40));
    assert!(
        stderr.contains("is being written by another run (pid 4242)"),
        "{stderr}"
    );
    assert!(!out.exists());
    drop(lock);
    let run = train(&data, &out, RUN40);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert_eq!(listing(dir.path()), ["input.txt", "model.safetensors"]);
}

#[test]
fn temporary_files_of_a_killed_save_are_removed_by_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_text(dir.path());
    let out = dir.path().join("model.safetensors");
    // As a save killed half-way leaves it: `.NAME.PID.N.tmp`, from a
    // process that no longer runs (no pid is that large on Linux).
    let stale = dir.path().join(".model.safetensors.4194999999.0.tmp");
    fs::write(&stale, vec![0u8; 4096]).unwrap();
    let run = train(&data, &out, RUN40);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(
        text(&run.stdout).contains(".model.safetensors.4194999999.0.tmp (4096 bytes)"),
        "{}",
        text(&run.stdout)
    );
    assert_eq!(listing(dir.path()), ["input.txt", "model.safetensors"]);
}

#[cfg(unix)]
#[test]
fn ctrl_c_stops_between_steps_and_says_where_the_last_checkpoint_is() {
    let (dir, data, out) = trained();
    let before = fs::read(&out).unwrap();
    let args = [
        "train",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--resume",
        "--max-iters",
        "1000000",
        "--lr-decay-iters",
        "1000000",
        "--eval-interval",
        "1000000",
        "--log-interval",
        "1",
    ];
    // Wait until it trains, then interrupt it as Ctrl-C would.
    let done = interrupted(&args, "iter 45:");
    let stderr = text(&done.stderr);
    assert_eq!(done.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted at step "), "{stderr}");
    assert!(
        stderr.contains("is unchanged: it holds the checkpoint of step 40"),
        "{stderr}"
    );
    assert_eq!(fs::read(&out).unwrap(), before);
    assert_eq!(listing(dir.path()), ["input.txt", "model.safetensors"]);
}

#[test]
fn train_tokenizer_keeps_its_input_and_other_files() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_text(dir.path());
    let input = data.to_str().unwrap();
    let before = fs::read(&data).unwrap();
    let tok = dir.path().join("my.bpe");
    let tok = tok.to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec!["train-tokenizer", input, "--vocab-size", "300"];
        args.extend(extra);
        listings(&args)
    };
    let stderr = refused(&run(&["-o", input]));
    assert!(stderr.contains("is the same file as the input"), "{stderr}");
    assert_eq!(fs::read(&data).unwrap(), before);
    assert!(run(&["-o", tok]).status.success());
    let stderr = refused(&run(&["-o", tok]));
    assert!(
        stderr.contains("already holds a tokenizer; add --overwrite"),
        "{stderr}"
    );
    assert!(run(&["-o", tok, "--overwrite"]).status.success());
    let notes = dir.path().join("notes.txt");
    fs::write(&notes, "my notes").unwrap();
    let stderr = refused(&run(&["-o", notes.to_str().unwrap(), "--overwrite"]));
    assert!(stderr.contains("is not a tokenizer file"), "{stderr}");
    assert_eq!(fs::read_to_string(&notes).unwrap(), "my notes");
    for size in ["0", "1", "256"] {
        let out = listings(&[
            "train-tokenizer",
            input,
            "--vocab-size",
            size,
            "-o",
            "x.bpe",
        ]);
        let stderr = refused(&out);
        assert!(
            stderr.contains("needs at least 257 ids"),
            "{size}: {stderr}"
        );
    }
}

/// Rewrites one metadata entry of a safetensors file in place (the tensor
/// offsets are relative to the end of the header, so they stay valid).
fn rewrite_metadata(path: &Path, key: &str, edit: impl FnOnce(&str) -> String) {
    let bytes = fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let entry = &mut header["__metadata__"][key];
    *entry = serde_json::Value::String(edit(entry.as_str().unwrap()));
    let mut head = serde_json::to_vec(&header).unwrap();
    head.resize(head.len().next_multiple_of(8), b' ');
    let mut out = (head.len() as u64).to_le_bytes().to_vec();
    out.extend(head);
    out.extend(&bytes[8 + n..]);
    fs::write(path, out).unwrap();
}

#[test]
fn a_checkpoint_whose_tokenizer_is_cut_short_or_whose_weights_are_nan_does_not_load() {
    let (_dir, data, out) = trained();
    let data = data.to_str().unwrap();
    let ckpt = out.to_str().unwrap();
    let good = fs::read(&out).unwrap();
    // Five characters for a model with a row per character of the text.
    rewrite_metadata(&out, "listings.tokenizer", |t| {
        t.chars().take(5 + 5).collect()
    });
    for args in [
        vec!["sample", "--checkpoint", ckpt, "--max-new-tokens", "5"],
        vec!["eval", "--checkpoint", ckpt, "--data", data],
    ] {
        let stderr = refused(&listings(&args));
        assert!(
            stderr.contains("listings.tokenizer") && stderr.contains("it has 5 tokens"),
            "{stderr}"
        );
    }
    fs::write(&out, &good).unwrap();

    let tok = TextTokenizer::Char(CharVocab::from_text("abc").unwrap());
    let gpt = Gpt::new(GptConfig::toy(3), 0).unwrap();
    let (config, mut params) = gpt.into_parts();
    params.ln_f.weight[1] = f32::NAN;
    let nan = Gpt::from_params(config, params).unwrap();
    save(&out, &nan, &tok, None, 0, &BTreeMap::new()).unwrap();
    let stderr = refused(&listings(&["eval", "--checkpoint", ckpt, "--data", data]));
    assert!(
        stderr.contains("transformer.ln_f.weight holds 1 values out of 64 that are NaN"),
        "{stderr}"
    );
}

#[test]
fn small_things_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_text(dir.path());
    let out = dir.path().join("model.safetensors");
    // A negative number is a value, not a flag, and fails validation.
    let mut args = RUN40.to_vec();
    args.extend(["--weight-decay", "-1"]);
    let stderr = refused(&train(&data, &out, &args));
    assert!(stderr.contains("weight_decay -1"), "{stderr}");
    // Token ids too large for any vocabulary, and position numbering.
    let ids = dir.path().join("ids.txt");
    fs::write(&ids, "1 2 4294967296").unwrap();
    let ids = ids.to_str().unwrap();
    let stderr = refused(&listings(&["tokenize", "-e", "r50k_base", "--decode", ids]));
    assert!(
        stderr.contains("the token id at position 2 (4294967296) is larger than any token id"),
        "{stderr}"
    );
    let other = dir.path().join("other.txt");
    fs::write(&other, "1 50300").unwrap();
    let other = other.to_str().unwrap();
    let stderr = refused(&listings(&[
        "tokenize",
        "-e",
        "r50k_base",
        "--decode",
        other,
    ]));
    assert!(stderr.contains("at position 1 "), "{stderr}");
}

/// Settings no machine can hold are refused before anything is allocated
/// (not an allocation abort, exit 134), naming the flag and the bytes; the
/// text's length is checked before the model's size.
#[cfg(target_os = "linux")]
#[test]
fn oversized_settings_are_refused_naming_the_flag_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_text(dir.path());
    let out = dir.path().join("model.safetensors");
    let base = [
        ("--n-layer", "1"),
        ("--n-head", "2"),
        ("--n-embd", "16"),
        ("--block-size", "16"),
        ("--batch-size", "4"),
    ];
    for (flag, value, want) in [
        ("--n-embd", "1000000", "--n-embd 1000000 makes it large"),
        (
            "--batch-size",
            "1000000000",
            "--batch-size 1000000000 makes it large",
        ),
        (
            "--n-layer",
            "100000000",
            "--n-layer 100000000 makes it large",
        ),
        (
            "--block-size",
            "1000000000",
            "the training split has 8640 tokens",
        ),
        ("--block-size", "9000", "the training split has 8640 tokens"),
    ] {
        let mut args = vec!["train", "--data", data.to_str().unwrap()];
        args.extend(["--out", out.to_str().unwrap(), "--max-iters", "10"]);
        for (f, v) in base {
            args.extend([f, if f == flag { value } else { v }]);
        }
        let stderr = refused(&listings(&args));
        assert!(stderr.contains(want), "{flag} {value}: {stderr}");
        if want.contains("makes it large") {
            assert!(
                stderr.contains("the run would need") && stderr.contains(" bytes"),
                "{stderr}"
            );
        }
    }
    assert!(!out.exists());
}
