//! The trainer on small texts worked out by hand, and the file format:
//! round trips and malformed files.

use std::path::PathBuf;

use listings::tokens::bpe::train_simple;
use listings::tokens::trainer::train_chunks;
use listings::tokens::{
    BOOK_PATTERN, BuildError, Encoding, LoadError, Problem, SaveError, Tokenizer, train_merges,
    train_tokenizer,
};

/// Worked out by hand. The chunks are "hug", " hugs", " pug", " pugs", " hug".
///
/// | round | most frequent pair (count)              | new token |
/// |-------|-----------------------------------------|-----------|
/// | 1     | u g (5)                                 | 256 "ug"  |
/// | 2     | h 256 (3)                               | 257 "hug" |
/// | 3     | tie at 2: " " p (32, 112), " " 257 (32, 257), p 256 (112, 256): smallest is (32, 112) | 258 " p" |
/// | 4     | tie at 2: (32, 257), (258, 256): smallest (32, 257) | 259 " hug" |
/// | 5     | 258 256 (2)                             | 260 " pug" |
/// | 6     | tie at 1: (259, 115), (260, 115)        | 261 " hugs" |
/// | 7     | 260 s (1)                               | 262 " pugs" |
///
/// Then every chunk is a single token and training stops.
#[test]
fn trainer_learns_the_hand_checked_merges() {
    let merges = train_merges("hug hugs pug pugs hug", 1000, BOOK_PATTERN).unwrap();
    let expected = [
        (117, 103),
        (104, 256),
        (32, 112),
        (32, 257),
        (258, 256),
        (259, 115),
        (260, 115),
    ];
    assert_eq!(merges, expected);

    let tok = train_tokenizer("hug hugs pug pugs hug", 1000, BOOK_PATTERN).unwrap();
    assert_eq!(tok.encode("hug pugs"), [257, 262]);
    // " hugging": "ug" (256), then "hug" (257), then " hug" (259); "ging" stays bytes.
    assert_eq!(tok.encode(" hugging"), [259, 103, 105, 110, 103]);
    assert_eq!(tok.decode(&[259, 103, 105, 110, 103]).unwrap(), " hugging");
}

/// "12345 12345" is cut into "123", "45", " ", "123", "45": digits come in
/// groups of three and the space stands alone, so " 1" is never a pair.
/// Pairs: "1" "2", "2" "3" and "4" "5" twice each; the smallest, (49, 50),
/// becomes 256. Then (256, 51) and (52, 53) twice each: (52, 53) is smaller
/// and becomes 257, then (256, 51) becomes 258; then nothing is left.
#[test]
fn trainer_respects_chunk_boundaries() {
    let merges = train_merges("12345 12345", 1000, BOOK_PATTERN).unwrap();
    assert_eq!(merges, [(49, 50), (52, 53), (256, 51)]);
}

/// The vocabulary size counts the 256 bytes; a larger size only appends.
#[test]
fn merges_grow_by_appending() {
    let text = "the cat sat on the mat with the other cat and the hat";
    let small = train_merges(text, 260, BOOK_PATTERN).unwrap();
    let large = train_merges(text, 270, BOOK_PATTERN).unwrap();
    assert_eq!(small.len(), 4);
    assert_eq!(small[..], large[..4]);
    assert!(train_merges(text, 256, BOOK_PATTERN).unwrap().is_empty());
}

#[test]
fn fast_and_simple_trainers_agree_on_the_corpus_start() {
    let corpus = listings::corpus::corpus();
    let text = &corpus[..20_000];
    let pre = listings::tokens::Pretokenizer::new(BOOK_PATTERN).unwrap();
    let chunks: Vec<&str> = pre.chunks(text).collect();
    assert_eq!(
        train_chunks(chunks.iter().copied(), 400),
        train_simple(&chunks, 400)
    );
}

#[test]
fn bad_patterns_are_errors() {
    assert!(matches!(
        train_merges("x", 300, "(unclosed"),
        Err(BuildError::Pattern(_))
    ));
    let error = Tokenizer::from_merges(&[(97, 300)], BOOK_PATTERN, &[]).unwrap_err();
    assert!(
        matches!(error, BuildError::UnknownMergeToken { index: 0, .. }),
        "{error}"
    );
}

/// A small tokenizer with a special token, for the format tests.
fn small() -> Tokenizer {
    Tokenizer::from_merges(
        &[(104, 105), (32, 256)],
        BOOK_PATTERN,
        &[("<|endoftext|>", 258)],
    )
    .unwrap()
}

/// A fresh folder for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("listings-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn file_format_is_as_documented() {
    let text = small().to_text().unwrap();
    let expected = format!(
        "listings-bpe 1\npattern {BOOK_PATTERN}\nmerges 2\n104 105\n32 256\nspecials 1\n258 <|endoftext|>\n"
    );
    assert_eq!(text, expected);
}

#[test]
fn save_and_load_round_trip() {
    let dir = temp_dir("round-trip");
    let path = dir.join("book.bpe");
    let trained =
        train_tokenizer(&listings::corpus::corpus()[..50_000], 600, BOOK_PATTERN).unwrap();
    let with_special = Tokenizer::from_merges(
        trained.merges().unwrap(),
        BOOK_PATTERN,
        &[("<|endoftext|>", 600)],
    )
    .unwrap();
    for tok in [small(), with_special] {
        tok.save(&path).unwrap();
        let loaded = Tokenizer::load(&path).unwrap();
        assert_eq!(loaded.merges(), tok.merges());
        assert_eq!(loaded.pattern(), tok.pattern());
        assert_eq!(loaded.special_tokens(), tok.special_tokens());
        let sample = "hi hi, the story of Tom and his dog.<|endoftext|>";
        assert_eq!(
            loaded.encode_with_special(sample),
            tok.encode_with_special(sample)
        );
    }
    // The temporary file was renamed away.
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["book.bpe"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn windows_line_endings_load() {
    let text = small().to_text().unwrap().replace('\n', "\r\n");
    assert_eq!(
        Tokenizer::from_text(&text).unwrap().merges(),
        small().merges()
    );
}

/// Each malformed file: the line the error names and what it says.
#[test]
fn malformed_files_name_the_line_and_the_problem() {
    let head = "listings-bpe 1\npattern \\S+|\\s+\n";
    let cases: [(String, usize, &str); 16] = [
        (
            String::new(),
            1,
            "the file ends early: expected the header line",
        ),
        ("hello\n".into(), 1, "this is not a tokenizer file"),
        (
            "listings-bpe 2\n".into(),
            1,
            "format version \"2\" is not supported",
        ),
        ("listings-bpe 1\n".into(), 2, "expected `pattern <regex>`"),
        (
            "listings-bpe 1\npatern x\n".into(),
            2,
            "expected `pattern <regex>`, found \"patern x\"",
        ),
        (
            "listings-bpe 1\npattern (\nmerges 0\nspecials 0\n".into(),
            2,
            "invalid pre-tokenizer pattern",
        ),
        (
            format!("{head}merges two\n"),
            3,
            "expected `merges <count>`, found \"merges two\"",
        ),
        (
            format!("{head}merges 3\n97 98\n"),
            5,
            "the file ends early: expected a merge",
        ),
        (
            format!("{head}merges 1\n97\n"),
            4,
            "expected a merge `<id> <id>`, found \"97\"",
        ),
        (
            format!("{head}merges 1\n97 -1\n"),
            4,
            "expected a merge `<id> <id>`, found \"97 -1\"",
        ),
        (
            format!("{head}merges 2\n97 98\n97 300\nspecials 0\n"),
            5,
            "merge 1 (97, 300) names a token that does not exist",
        ),
        (
            format!("{head}merges 2\n97 98\n97 98\nspecials 0\n"),
            5,
            "tokens 256 and 257 have the same bytes",
        ),
        (
            format!("{head}merges 0\n"),
            4,
            "the file ends early: expected `specials <count>`",
        ),
        (
            format!("{head}merges 0\nspecials 1\n<|x|>\n"),
            5,
            "expected a special token `<id> <text>`",
        ),
        (
            format!("{head}merges 0\nspecials 1\n97 <|x|>\n"),
            5,
            "its id is an ordinary token",
        ),
        (
            format!("{head}merges 0\nspecials 0\n\nextra\n"),
            6,
            "unexpected text after the last special token",
        ),
    ];
    for (text, line, message) in cases {
        let error = Tokenizer::from_text(&text).unwrap_err();
        assert_eq!(error.line, line, "{text:?}: {error}");
        assert!(error.to_string().contains(message), "{text:?}: {error}");
    }
}

#[test]
fn load_errors_name_the_file() {
    let dir = temp_dir("load-errors");
    let missing = dir.join("missing.bpe");
    let error = Tokenizer::load(&missing).unwrap_err();
    assert!(matches!(error, LoadError::Io { .. }));
    assert!(error.to_string().contains("missing.bpe"), "{error}");

    let not_utf8 = dir.join("not-utf8.bpe");
    std::fs::write(&not_utf8, b"listings-bpe 1\npattern \xff\n").unwrap();
    let error = Tokenizer::load(&not_utf8).unwrap_err();
    let LoadError::Parse { error: parse, .. } = &error else {
        panic!("{error}")
    };
    assert_eq!((parse.line, &parse.problem), (2, &Problem::NotUtf8));
    assert!(
        error
            .to_string()
            .contains("not-utf8.bpe: line 2: not valid UTF-8"),
        "{error}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn save_errors_are_clear() {
    let gpt2 = Encoding::R50kBase.tokenizer().unwrap();
    assert!(matches!(gpt2.to_text(), Err(SaveError::NoMerges)));
    let error = small()
        .save(temp_dir("save-errors").join("no/such/folder/x.bpe"))
        .unwrap_err();
    assert!(
        error.to_string().contains("cannot write tokenizer file"),
        "{error}"
    );
    let multiline = Tokenizer::from_merges(&[], "a\n|b", &[]).unwrap();
    assert!(matches!(
        multiline.to_text(),
        Err(SaveError::LineBreak { .. })
    ));
}

proptest::proptest! {
    /// The fast trainer learns what the plain one learns, on any chunks.
    #[test]
    fn fast_trainer_matches_plain_trainer(chunks in proptest::collection::vec("[ab c1]{1,12}", 1..12)) {
        let chunks: Vec<&str> = chunks.iter().map(String::as_str).collect();
        proptest::prop_assert_eq!(train_chunks(chunks.iter().copied(), 300), train_simple(&chunks, 300));
    }
}
