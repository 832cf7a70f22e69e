//! `listings export --checkpoint FILE --hf DIR` run as a user would: the
//! folder it writes is the library's (`listings::export::save_hf_gpt2`,
//! checked against transformers in `hf_export.rs`), and every bad input is
//! refused with one line that names it, before anything is written.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{listing, listings, refused, text};
use listings::checkpoint::{load_hf_gpt2, save};
use listings::export::{TOKENIZER_FILE, hf_tokenizer};
use listings::model::{Arch, Gpt, GptConfig, Positions};
use listings::tokens::{TextTokenizer, train_with_endoftext};

const FILES: [&str; 4] = [
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
];

fn tokenizer() -> TextTokenizer {
    let text = "the cat sat on the mat; the cat ate the rat, 1234 times.\n";
    TextTokenizer::Bpe(train_with_endoftext(text, 280))
}

/// A checkpoint of a small model with `arch` in `dir`: its path and model.
fn checkpoint(dir: &Path, arch: Arch) -> (PathBuf, Gpt) {
    let tokenizer = tokenizer();
    let gpt = Gpt::with_arch(GptConfig::toy(tokenizer.vocab_size()), arch, 3).unwrap();
    let path = dir.join("ckpt.safetensors");
    save(&path, &gpt, &tokenizer, None, 0, &Default::default()).unwrap();
    (path, gpt)
}

fn export(ckpt: &Path, out: &Path) -> std::process::Output {
    let (ckpt, out) = (ckpt.to_str().unwrap(), out.to_str().unwrap());
    listings(&["export", "--checkpoint", ckpt, "--hf", out])
}

/// A refused export: one line on stderr, nothing on stdout.
fn fails(ckpt: &Path, out: &Path) -> String {
    let run = export(ckpt, out);
    let stderr = refused(&run);
    assert!(run.stdout.is_empty(), "{}", text(&run.stdout));
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    stderr
}

#[test]
fn export_writes_the_library_s_folder_and_says_how_to_load_it() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, gpt) = checkpoint(dir.path(), Arch::default());
    let out = dir.path().join("my-gpt");
    let run = export(&ckpt, &out);
    let stdout = text(&run.stdout);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert_eq!(listing(&out), FILES);
    assert_eq!(listing(dir.path()), ["ckpt.safetensors", "my-gpt"]);
    assert!(
        stdout.contains("config.json, model.safetensors, tokenizer.json, tokenizer_config.json"),
        "{stdout}"
    );
    assert!(stdout.contains("a bpe tokenizer of 280 ids"), "{stdout}");
    assert!(
        stdout.contains("GPT2LMHeadModel.from_pretrained("),
        "{stdout}"
    );
    assert!(
        stdout.contains("AutoTokenizer.from_pretrained("),
        "{stdout}"
    );
    assert_eq!(load_hf_gpt2(&out).unwrap().params(), gpt.params());
    let (json, _) = hf_tokenizer(&tokenizer(), gpt.config().block_size);
    assert_eq!(fs::read_to_string(out.join(TOKENIZER_FILE)).unwrap(), json);

    // A second export onto the first replaces nothing.
    let stderr = fails(&ckpt, &out);
    assert!(
        stderr.contains("is not empty (it holds config.json, model.safetensors"),
        "{stderr}"
    );
    assert_eq!(listing(&out), FILES);
}

#[test]
fn an_empty_folder_is_filled_one_that_holds_anything_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, _) = checkpoint(dir.path(), Arch::default());
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    fs::write(out.join("notes.txt"), "mine").unwrap();
    let stderr = fails(&ckpt, &out);
    assert!(stderr.contains("--hf"), "{stderr}");
    assert!(
        stderr.contains("is not empty (it holds notes.txt)"),
        "{stderr}"
    );
    assert_eq!(listing(&out), ["notes.txt"]);
    assert_eq!(listing(dir.path()), ["ckpt.safetensors", "out"]);

    fs::remove_file(out.join("notes.txt")).unwrap();
    let run = export(&ckpt, &out);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert_eq!(listing(&out), FILES);
}

#[test]
fn a_missing_or_wrong_checkpoint_is_named_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let stderr = fails(&dir.path().join("nope.safetensors"), &out);
    assert!(
        stderr.contains("--checkpoint: there is no checkpoint at"),
        "{stderr}"
    );
    assert!(stderr.contains("nope.safetensors"), "{stderr}");
    let not_a_checkpoint = dir.path().join("notes.txt");
    fs::write(&not_a_checkpoint, "hello").unwrap();
    let stderr = fails(&not_a_checkpoint, &out);
    assert!(stderr.contains("is not a safetensors file"), "{stderr}");
    assert_eq!(listing(dir.path()), ["notes.txt"], "no folder, no lock");
}

#[test]
fn a_model_gpt2_cannot_hold_is_refused_by_its_architecture() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, _) = checkpoint(dir.path(), Arch::with_positions(Positions::Rope));
    let out = dir.path().join("out");
    let stderr = fails(&ckpt, &out);
    assert!(stderr.contains("cannot export --checkpoint"), "{stderr}");
    assert!(
        stderr.contains("rope positions, with MLPs, but a GPT-2 folder holds only GPT-2's"),
        "{stderr}"
    );
    assert_eq!(listing(dir.path()), ["ckpt.safetensors"]);
}

#[test]
fn hf_a_file_or_in_a_missing_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, _) = checkpoint(dir.path(), Arch::default());
    let stderr = fails(&ckpt, &ckpt);
    assert!(
        stderr.contains("is a file, but this command writes a folder"),
        "{stderr}"
    );
    let stderr = fails(&ckpt, &dir.path().join("no/such/out"));
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert_eq!(listing(dir.path()), ["ckpt.safetensors"]);
}

/// A folder no one can create anything in (root included): refused before
/// the checkpoint is read.
#[cfg(target_os = "linux")]
#[test]
fn hf_in_a_folder_that_refuses_new_files_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, _) = checkpoint(dir.path(), Arch::default());
    let stderr = fails(&ckpt, Path::new("/proc/self/exported"));
    assert!(stderr.contains("cannot write in its folder"), "{stderr}");
}

#[test]
fn the_temporary_folder_of_a_killed_export_is_removed_by_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, _) = checkpoint(dir.path(), Arch::default());
    let out = dir.path().join("out");
    // As an export killed half-way leaves it, from a process that no
    // longer runs (no pid is that large on Linux).
    let stale = dir.path().join(".out.4194999999.0.tmp");
    fs::create_dir(&stale).unwrap();
    fs::write(stale.join("model.safetensors"), vec![0u8; 1000]).unwrap();
    let run = export(&ckpt, &out);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(
        text(&run.stdout).contains("removed .out.4194999999.0.tmp (1000 bytes)"),
        "{}",
        text(&run.stdout)
    );
    assert_eq!(listing(dir.path()), ["ckpt.safetensors", "out"]);
}

#[test]
fn both_flags_are_required() {
    let run = listings(&["export", "--hf", "somewhere"]);
    let stderr = refused(&run);
    assert!(stderr.contains("--checkpoint <CHECKPOINT>"), "{stderr}");
    let run = listings(&["export", "--checkpoint", "ckpt.safetensors"]);
    let stderr = refused(&run);
    assert!(stderr.contains("--hf <DIR>"), "{stderr}");
}

#[test]
fn sampling_an_exported_folder_with_gpt2_s_tokenizer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, _) = checkpoint(dir.path(), Arch::default());
    let out = dir.path().join("my-gpt");
    assert!(export(&ckpt, &out).status.success());
    let run = listings(&[
        "sample",
        "--model",
        out.to_str().unwrap(),
        "--prompt",
        "the cat",
    ]);
    let stderr = refused(&run);
    assert!(run.stdout.is_empty(), "{}", text(&run.stdout));
    assert!(
        stderr.contains("its tokenizer.json has 280 tokens, not GPT-2's 50257"),
        "{stderr}"
    );
    assert!(stderr.contains("with --checkpoint"), "{stderr}");
}
