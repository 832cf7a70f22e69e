//! The book's own tokenizer: byte-level BPE with GPT-4's pre-tokenizer
//! pattern, trained on the first 90% of the book's corpus (the part the
//! model trains on), `<|endoftext|>` last.
//!
//! Its size, [`BOOK_VOCAB_SIZE`], was chosen by measurement: chapter 1
//! measures bytes per token on held-out text for several vocabulary sizes
//! and takes the size where that curve flattens (the measurement is one of
//! the book's experiments, in its `lab` crate, which also tests that it
//! still picks this size).

use std::sync::OnceLock;

use super::{BOOK_PATTERN, ENDOFTEXT, Tokenizer, train_merges};
use crate::corpus::{corpus, train_val_split};

/// The book's vocabulary size, `<|endoftext|>` included: the smallest of
/// the sizes the book compares whose compression of held-out text is
/// within 5% of the best.
pub const BOOK_VOCAB_SIZE: usize = 2048;

// ANCHOR: train_book_tokenizer
/// A tokenizer trained on `text` with [`BOOK_PATTERN`]: `vocab_size` ids in
/// all, the last being `<|endoftext|>` (as in GPT-2, whose 50,257 ids are
/// 50,256 ranks and `<|endoftext|>`). A `vocab_size` of 257 or less gives
/// just the 256 bytes and `<|endoftext|>`; a text that runs out of pairs to
/// merge gives fewer ids than asked for.
pub fn train_with_endoftext(text: &str, vocab_size: usize) -> Tokenizer {
    let merges = train_merges(text, vocab_size.saturating_sub(1), BOOK_PATTERN)
        .expect("the book's pattern compiles");
    let endoftext = (256 + merges.len()) as u32;
    Tokenizer::from_merges(&merges, BOOK_PATTERN, &[(ENDOFTEXT, endoftext)])
        .expect("merges from the trainer always make a tokenizer")
}

/// The book's tokenizer: [`train_with_endoftext`] on the first 90% of the
/// corpus (the part the model trains on).
pub fn train_book_tokenizer(vocab_size: usize) -> Tokenizer {
    let corpus = corpus();
    let (train_text, _) = train_val_split(&corpus, 0.9);
    train_with_endoftext(train_text, vocab_size)
}
// ANCHOR_END: train_book_tokenizer

/// [`train_book_tokenizer`]`(`[`BOOK_VOCAB_SIZE`]`)`, trained once per
/// process.
pub fn book_tokenizer() -> &'static Tokenizer {
    static BOOK: OnceLock<Tokenizer> = OnceLock::new();
    BOOK.get_or_init(|| train_book_tokenizer(BOOK_VOCAB_SIZE))
}
