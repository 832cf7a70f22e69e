//! `listings tokenize` and `listings train-tokenizer`, run as a reader runs
//! them.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// What a run printed and how it ended.
struct Run {
    stdout: Vec<u8>,
    stderr: String,
    code: Option<i32>,
}

impl Run {
    fn stdout(&self) -> String {
        String::from_utf8(self.stdout.clone()).unwrap()
    }

    /// Checks a failure: exit code 1, a message with `needle`, no panic.
    fn assert_fails_with(&self, needle: &str) {
        assert_eq!(self.code, Some(1), "stderr: {}", self.stderr);
        assert!(
            self.stderr.contains(needle),
            "{:?} not in stderr: {}",
            needle,
            self.stderr
        );
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
        assert!(self.stdout.is_empty());
    }
}

/// Runs the binary with `args`, feeding `stdin`.
fn run(args: &[&str], stdin: &[u8]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_listings"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The program may exit (on an error) before reading its input: a
    // closed pipe here is not a failure of the test.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    let out = child.wait_with_output().unwrap();
    Run {
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code(),
    }
}

/// A fresh folder for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("listings-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn prints_ids_on_one_line() {
    let out = run(
        &["tokenize", "--encoding", "cl100k_base", "-"],
        b"Hello world",
    );
    assert_eq!((out.stdout().as_str(), out.code), ("9906 1917\n", Some(0)));
    // Newlines are ordinary text, and stdin is the default input.
    let out = run(
        &["tokenize", "-e", "r50k_base"],
        b"Hello world\nHello world\n",
    );
    assert_eq!(out.stdout(), "15496 995 198 15496 995 198\n");
}

#[test]
fn reads_a_file() {
    let dir = temp_dir("file");
    let path = dir.join("input.txt");
    std::fs::write(&path, "Hello world").unwrap();
    let out = run(
        &["tokenize", "-e", "o200k_base", path.to_str().unwrap()],
        b"",
    );
    assert_eq!(out.stdout(), "13225 2375\n");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn counts_tokens() {
    let text = "Hello world, héllo 世界! 12345";
    let out = run(
        &["tokenize", "-e", "cl100k_base", "--count"],
        text.as_bytes(),
    );
    let expected = tiktoken_rs::cl100k_base()
        .unwrap()
        .encode_ordinary(text)
        .len();
    assert_eq!(out.stdout(), format!("{expected}\n"));
}

#[test]
fn special_tokens_are_text_unless_asked() {
    let text = b"a<|endoftext|>b";
    let plain = run(&["tokenize", "-e", "cl100k_base"], text).stdout();
    let special = run(&["tokenize", "-e", "cl100k_base", "--special"], text).stdout();
    assert!(!plain.contains("100257"), "{plain}");
    assert_eq!(special, "64 100257 65\n");
}

#[test]
fn decode_reverses_encode() {
    let text = "Tokens: é, 日本語, 👍🏽, 12345,\r\n\ttabs   and <|endoftext|>.\n";
    for encoding in ["r50k_base", "cl100k_base", "o200k_base"] {
        let ids = run(&["tokenize", "-e", encoding], text.as_bytes()).stdout;
        let back = run(&["tokenize", "-e", encoding, "--decode"], &ids);
        assert_eq!(
            (back.stdout(), back.code),
            (text.to_string(), Some(0)),
            "{encoding}"
        );
    }
}

#[test]
fn empty_input_gives_empty_output() {
    for args in [
        &["tokenize", "-e", "cl100k_base"][..],
        &["tokenize", "-e", "cl100k_base", "--decode"],
    ] {
        let out = run(args, b"");
        assert_eq!(
            (out.stdout.len(), out.code),
            (0, Some(0)),
            "{args:?}: {}",
            out.stderr
        );
    }
    assert_eq!(
        run(&["tokenize", "-e", "cl100k_base", "--count"], b"").stdout(),
        "0\n"
    );
}

#[test]
fn unknown_encoding_lists_the_valid_names() {
    let out = run(&["tokenize", "-e", "gpt-5"], b"hi");
    out.assert_fails_with(
        "unknown encoding \"gpt-5\": expected one of r50k_base, cl100k_base, o200k_base, book",
    );
}

#[test]
fn invalid_utf8_names_the_offset() {
    run(&["tokenize", "-e", "cl100k_base"], b"caf\xc3\xa9 \xff!").assert_fails_with(
        "standard input is not valid UTF-8 text: the byte at offset 6 (0xff) is not part of a valid character",
    );
    run(&["tokenize", "-e", "cl100k_base"], b"cut \xe2\x82")
        .assert_fails_with("ends in the middle of a character at byte offset 4");
}

#[test]
fn bad_ids_are_errors() {
    run(
        &["tokenize", "-e", "cl100k_base", "--decode"],
        b"9906 hello",
    )
    .assert_fails_with("the item at position 1 (\"hello\") is not a token id");
    run(&["tokenize", "-e", "r50k_base", "--decode"], b"15496 50300")
        .assert_fails_with("token id 50300 at position 1 is not in the vocabulary (size 50257)");
}

#[test]
fn missing_file_is_an_error() {
    run(&["tokenize", "-e", "cl100k_base", "/no/such/file.txt"], b"")
        .assert_fails_with("cannot read /no/such/file.txt");
}

#[test]
fn trains_saves_and_uses_a_tokenizer() {
    let dir = temp_dir("train");
    let (input, model) = (dir.join("text.txt"), dir.join("small.bpe"));
    std::fs::write(&input, "the cat sat on the mat. the cat ate. ".repeat(50)).unwrap();
    let args = [
        "train-tokenizer",
        input.to_str().unwrap(),
        "--vocab-size",
        "270",
        "-o",
        model.to_str().unwrap(),
    ];
    let out = run(&args, b"");
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stderr.contains("saved a tokenizer of 270 ids"),
        "{}",
        out.stderr
    );

    let model = model.to_str().unwrap();
    let ids = run(
        &["tokenize", "-e", model, "--special"],
        b"the cat<|endoftext|>",
    )
    .stdout();
    assert!(ids.ends_with(" 269\n"), "{ids}");
    let back = run(&["tokenize", "-e", model, "--decode"], ids.as_bytes());
    assert_eq!(back.stdout(), "the cat<|endoftext|>");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn malformed_tokenizer_file_names_the_line() {
    let dir = temp_dir("malformed");
    let path = dir.join("broken.bpe");
    std::fs::write(&path, "listings-bpe 1\npattern \\S+\nmerges 2\n97 98\n").unwrap();
    run(&["tokenize", "-e", path.to_str().unwrap()], b"ab")
        .assert_fails_with("broken.bpe: line 5: the file ends early");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn usage_errors_exit_with_1() {
    let out = run(&["tokenize"], b"");
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("--encoding"), "{}", out.stderr);
    assert_eq!(run(&["--help"], b"").code, Some(0));
}
