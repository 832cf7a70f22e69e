//! Chapter 1's measurement still picks the book's vocabulary size.

/// The book's vocabulary size is still what the measurement picks.
#[test]
fn book_vocab_size_is_where_compression_flattens() {
    use lab::tokens::{book_compression_table, choose_vocab_size};
    let table = book_compression_table();
    assert_eq!(
        choose_vocab_size(&table),
        Some(listings::tokens::BOOK_VOCAB_SIZE),
        "{table:#?}"
    );
    let book = listings::tokens::book_tokenizer();
    assert_eq!(book.vocab_size(), listings::tokens::BOOK_VOCAB_SIZE);
    assert_eq!(book.special_tokens(), [("<|endoftext|>".to_string(), 2047)]);
}
