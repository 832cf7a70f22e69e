//! The book's encoder, given tiktoken's ranks, against tiktoken-rs itself:
//! the same ids for r50k_base, cl100k_base and o200k_base, on a varied text
//! and on random strings.

use std::collections::HashSet;
use std::sync::OnceLock;

use listings::tokens::{Encoding, Pretokenizer, Tokenizer};
use proptest::prelude::*;
use tiktoken_rs::CoreBPE;

/// A text meant to hit every rule of the three patterns: several scripts,
/// accents and combining marks, emoji, code, numbers, whitespace of all
/// kinds, mixed line endings and special tokens.
const VARIED: &str = concat!(
    "The quick brown fox jumps over the lazy dog. I'm sure you'll see they've said it's fine; ",
    "DON'T SHOUT, I'M HERE. We'Ve got iT's own rules: l'état, o'clock, rock'n'roll.\n",
    "Naïve café owners in Zürich ate crème brûlée; Straße, Æsir, Øresund, ħ, İstanbul, ǅemal.\n",
    "Combining marks: e\u{301} a\u{308}\u{323} n\u{303}o; Hangul jamo \u{1100}\u{1161}\u{11a8}.\n",
    "¿Dónde está la biblioteca? ¡Olé! Ça va très bien, merci.\r\n",
    "Русский текст: Съешь же ещё этих мягких французских булок, да выпей чаю.\r\n",
    "Ελληνικά: Ξεσκεπάζω την ψυχοφθόρα βδελυγμία.\n",
    "中文：我能吞下玻璃而不伤身体。日本語：私はガラスを食べられます。それは私を傷つけません。\n",
    "한국어: 나는 유리를 먹을 수 있어요. 그래도 아프지 않아요.\n",
    "العربية: أنا قادر على أكل الزجاج و هذا لا يؤلمني. ١٢٣٤٥٦٧٨٩٠\n",
    "עברית: אני יכול לאכול זכוכית וזה לא מזיק לי.\n",
    "हिन्दी: मैं काँच खा सकता हूँ और मुझे उससे कोई चोट नहीं पहुंचती। क्षत्रिय ज्ञान १२३\n",
    "ไทย: ฉันกินกระจกได้ แต่มันไม่ทำให้ฉันเจ็บ\n",
    "Emoji: 👍🏽 👨‍👩‍👧‍👦 🇫🇷🇯🇵 ❤️‍🔥 🤖🤖🤖 🏳️‍🌈 😀😃😄\n",
    "Math: ∀x∈ℝ, x² ≥ 0; ∑ᵢ aᵢ = ½; 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕏 — “quotes” ‘single’ «guillemets» … †‡\n",
    "Numbers: 0 7 42 123 1234 12345 1234567890 3.14159 -2.5e-10 1,000,000 0x1F 0b1010 2024-06-01 ",
    "12:30:45 $19.99 €5 99% 1st 2nd 3rd 10000000000000000000000.\n",
    "Code:\nfn main() {\n    let x: Vec<u32> = (0..10).map(|i| i * i).collect();\n",
    "\tprintln!(\"{x:?}\"); // done\n}\n",
    "def f(a, b=2):\n\treturn a**b  # tabs\tand  spaces\n\n",
    "if (a && b || !c) { return {\"key\": [1, 2, 3], 'k2': null}; }\n",
    "<html><body class=\"main\">&amp; &lt;tag&gt;</body></html> https://example.com/a/b?c=d&e=f#g\n",
    "snake_case_name camelCaseName PascalCaseName SCREAMING_CASE kebab-case-name __dunder__\n",
    "Whitespace:    four spaces,\t\ttwo tabs,                                        forty spaces.\n",
    "trailing spaces   \nand\n\n\nthree newlines\r\n\r\nCRLF twice\r\rtwo CRs\n \n \n\t\n",
    "no\u{a0}break\u{a0}\u{a0}spaces, ideographic\u{3000}\u{3000}space, thin\u{2009}space, zero\u{200b}width, ",
    "BOM\u{feff}here, controls \u{0}\u{1}\u{7f}\u{85}, private \u{e000}\u{f8ff}, ",
    "replacement \u{fffd}, astral \u{1f600}\u{10ffff}.\n",
    "Special tokens: hello<|endoftext|>world <|endoftext|> <|fim_prefix|>a<|fim_middle|>b<|fim_suffix|>",
    "<|endofprompt|> <|endoftext|<|endoftext|><|endoftext|> <|endoftext |> <|unknown|>\n",
    "Glitch tokens: SolidGoldMagikarp  SolidGoldMagikarp  petertodd  TheNitromeFan  davidjl\n",
    "Repeats: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa !!!!!!!!!!!!!!!!! ",
    "............................................................ ________________________ \n",
    "ending with whitespace   \n\n   "
);

/// tiktoken-rs's encoder and the book's, built once per test binary.
fn encoders(encoding: Encoding) -> &'static (CoreBPE, Tokenizer) {
    static CACHE: [OnceLock<(CoreBPE, Tokenizer)>; 3] =
        [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let slot = Encoding::ALL.iter().position(|&e| e == encoding).unwrap();
    CACHE[slot].get_or_init(|| (encoding.tiktoken().unwrap(), encoding.tokenizer().unwrap()))
}

/// Checks every way of encoding `text` against tiktoken-rs, and the round
/// trip.
fn check(encoding: Encoding, text: &str) {
    let (tiktoken, book) = encoders(encoding);
    let name = encoding.name();
    assert_eq!(
        book.encode(text),
        tiktoken.encode_ordinary(text),
        "{name}, ordinary: {text:?}"
    );
    let with_special = book.encode_with_special(text);
    assert_eq!(
        with_special,
        tiktoken.encode_with_special_tokens(text),
        "{name}, special: {text:?}"
    );
    let allowed = HashSet::from(["<|endoftext|>"]);
    let expected = tiktoken.encode(text, &allowed).unwrap().0;
    assert_eq!(
        book.encode_allowing(text, &["<|endoftext|>"]),
        expected,
        "{name}, allowed: {text:?}"
    );
    assert_eq!(
        book.decode(&book.encode(text)).unwrap(),
        text,
        "{name}, round trip"
    );
    assert_eq!(
        book.decode(&with_special).unwrap(),
        text,
        "{name}, round trip with specials"
    );
}

#[test]
fn varied_text_matches_tiktoken() {
    for encoding in Encoding::ALL {
        check(encoding, VARIED);
        // Each line alone: `\s++$` now sees a different end of text.
        for line in VARIED.split_inclusive('\n') {
            check(encoding, line);
        }
    }
}

#[test]
fn simple_encoder_matches_tiktoken() {
    for encoding in Encoding::ALL {
        let (tiktoken, book) = encoders(encoding);
        assert_eq!(
            book.encode_simple(VARIED),
            tiktoken.encode_ordinary(VARIED),
            "{}",
            encoding.name()
        );
    }
}

#[test]
fn edge_cases_match_tiktoken() {
    let long_spaces = " ".repeat(10_000);
    let long_word = "abc".repeat(3_000);
    let long_digits = "9".repeat(5_000);
    let cases = [
        "",
        " ",
        "\n",
        "\r\n",
        "a",
        "<|endoftext|>",
        "<|endoftext|><|endoftext|>",
        "  a",
        " \n a",
        "\t\t x",
        "  123",
        "\t\t¡",
        "x  ",
        "x \u{3000}y",
        &long_spaces,
        &format!("{long_spaces}x"),
        &long_word,
        &long_digits,
    ];
    for encoding in Encoding::ALL {
        for text in cases {
            check(encoding, text);
        }
    }
}

#[test]
fn decoding_matches_tiktoken() {
    for encoding in Encoding::ALL {
        let (tiktoken, book) = encoders(encoding);
        let ids = tiktoken.encode_with_special_tokens(VARIED);
        assert_eq!(
            book.decode_bytes(&ids).unwrap(),
            tiktoken.decode_bytes(&ids).unwrap()
        );
        // Every single token, special ones included, decodes to the same bytes.
        for id in 0..book.vocab_size() as u32 {
            assert_eq!(
                book.token_bytes(id),
                tiktoken.decode_bytes(&[id]).ok().as_deref(),
                "{encoding} id {id}"
            );
        }
    }
}

#[test]
fn vocabularies_have_the_documented_sizes() {
    // (ordinary tokens, vocab_size = one past the largest id)
    let sizes = [(50_256, 50_257), (100_256, 100_277), (199_998, 200_019)];
    for (encoding, (ordinary, vocab_size)) in Encoding::ALL.into_iter().zip(sizes) {
        let (_, book) = encoders(encoding);
        let count = (0..vocab_size as u32)
            .filter(|&id| book.token_id(book.token_bytes(id).unwrap_or(b"")).is_some())
            .count();
        assert_eq!(count, ordinary, "{encoding}");
        assert_eq!(book.vocab_size(), vocab_size, "{encoding}");
    }
}

#[test]
fn fast_pretokenizer_matches_fancy_regex() {
    for encoding in Encoding::ALL {
        let fast = Pretokenizer::new(encoding.pattern()).unwrap();
        let general = Pretokenizer::new_general(encoding.pattern()).unwrap();
        assert!(fast.is_fast() && !general.is_fast());
        let chunks: Vec<&str> = fast.chunks(VARIED).collect();
        assert_eq!(
            chunks,
            general.chunks(VARIED).collect::<Vec<_>>(),
            "{encoding}"
        );
        assert_eq!(chunks.concat(), VARIED);
    }
}

#[test]
fn special_tokens_are_plain_text_unless_allowed() {
    let (_, book) = encoders(Encoding::Cl100kBase);
    let text = "a<|endoftext|>b<|fim_prefix|>";
    assert!(!book.encode(text).contains(&100257));
    assert_eq!(
        book.encode_with_special(text)
            .iter()
            .filter(|&&id| id >= 100257)
            .count(),
        2
    );
    let only_eot = book.encode_allowing(text, &["<|endoftext|>", "<|not_a_special|>"]);
    assert!(only_eot.contains(&100257) && !only_eot.contains(&100258));
}

/// Strings that stress the whitespace and digit rules.
fn whitespace_soup() -> impl Strategy<Value = String> {
    "[ \t\n\r\u{a0}\u{3000}0-9aZé'!.<|>]{0,200}"
}

/// Strings built from pieces that sit on rule boundaries.
fn pieces() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        " ",
        "  ",
        "\n",
        "\r\n",
        "\r",
        "\t",
        "123",
        "4",
        "'s",
        "'LL",
        "x",
        "Word",
        "é",
        "日本",
        "👍🏽",
        "!!",
        "<|endoftext|>",
        "<|endofprompt|>",
        "<|",
        "|>",
        "\u{a0}",
        "a\u{301}",
        "/",
    ]);
    prop::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

proptest! {
    #[test]
    fn random_unicode_matches_tiktoken(text in "(?s:.){0,200}") {
        for encoding in Encoding::ALL {
            check(encoding, &text);
        }
    }

    #[test]
    fn whitespace_soup_matches_tiktoken(text in whitespace_soup()) {
        for encoding in Encoding::ALL {
            check(encoding, &text);
        }
    }

    #[test]
    fn boundary_pieces_match_tiktoken(text in pieces()) {
        for encoding in Encoding::ALL {
            check(encoding, &text);
        }
    }
}
