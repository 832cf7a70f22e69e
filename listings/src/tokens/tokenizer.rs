//! [`Tokenizer`]: encoding with merge ranks, decoding, special tokens.
//!
//! A tokenizer is three things: a pre-tokeniser pattern, a vocabulary (the
//! bytes of each token id) and a few special tokens. Everything else is
//! derived. The *rank* of a pair of neighbouring tokens is the id of the
//! token their bytes spell together, if there is one; encoding a chunk
//! merges the lowest-ranked pair, again and again, until no pair has a
//! rank. That is tiktoken's algorithm, so given tiktoken's vocabulary this
//! encoder gives tiktoken's ids (see [`super::tiktoken`]).
//!
//! Two encoders are here: [`Tokenizer::encode_simple`], a direct transcription
//! of the rule through [`apply_merges`], and [`Tokenizer::encode`], the same
//! rule without a new allocation per chunk, which the rest of the book uses.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;

use rustc_hash::FxHashMap;

use super::BuildError;
use super::bpe::apply_merges;
use super::pretokenize::{Chunks, Pretokenizer};

/// The rank of a pair that cannot merge.
const NO_RANK: u32 = u32::MAX;

/// Chunks longer than this many bytes are merged with a heap, so a
/// megabyte of spaces costs `n log n`, not `n²`.
const LARGE_CHUNK: usize = 128;

/// A byte-level BPE tokenizer: pattern, vocabulary, special tokens.
///
/// Build one by training ([`super::train_tokenizer`]), from merges
/// ([`Tokenizer::from_merges`]), from a vocabulary ([`Tokenizer::from_ranks`],
/// which is how tiktoken's encodings are loaded) or from a file
/// ([`Tokenizer::load`]).
///
/// ```
/// use listings::tokens::{Tokenizer, BOOK_PATTERN};
/// // Two merges: "h" + "i" = 256, then " " + "hi" = 257.
/// let tok = Tokenizer::from_merges(&[(104, 105), (32, 256)], BOOK_PATTERN, &[("<|endoftext|>", 258)])?;
/// assert_eq!(tok.encode("hi hi!"), [256, 257, 33]);
/// assert_eq!(tok.encode_with_special("hi<|endoftext|>"), [256, 258]);
/// assert_eq!(tok.decode(&[256, 257, 33])?, "hi hi!");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Tokenizer {
    pretokenizer: Pretokenizer,
    /// The bytes of each ordinary token, by id; `None` for an id that is not
    /// an ordinary token (a gap, or a special token).
    vocab: Vec<Option<Box<[u8]>>>,
    /// The id of each ordinary token, by its bytes.
    ids: FxHashMap<Box<[u8]>, u32>,
    /// The id of the token for each single byte.
    byte_ids: [u32; 256],
    /// The rank of each pair that can merge: the id of the merged token.
    ranks: FxHashMap<(u32, u32), u32>,
    /// Special tokens and their ids, sorted by id.
    specials: Vec<(String, u32)>,
    /// Finds any special token in a text, the longest first.
    special_regex: Option<regex::Regex>,
    /// The merges this tokenizer was built from, if it was.
    merges: Option<Vec<(u32, u32)>>,
}

/// Why ids could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// An id is not a token of this tokenizer.
    #[error("token id {id} at position {position} is not in the vocabulary (size {vocab_size})")]
    UnknownId {
        /// The id.
        id: u32,
        /// Its position in the list of ids, from 0.
        position: usize,
        /// The tokenizer's [`Tokenizer::vocab_size`].
        vocab_size: usize,
    },
    /// The tokens' bytes are not UTF-8 text (a character was cut between
    /// tokens, or the ids are not a prefix of a text's encoding).
    #[error("the tokens' bytes are not valid UTF-8 at byte offset {offset}")]
    InvalidUtf8 {
        /// Offset of the first byte that is not part of a valid character.
        offset: usize,
    },
}

impl Tokenizer {
    /// Builds a tokenizer from the bytes of each token id.
    ///
    /// `vocab[id]` is the token's bytes, or `None` for an id that is not an
    /// ordinary token (tiktoken's vocabularies have such gaps). Every single
    /// byte must be a token and no two tokens may have the same bytes.
    /// Special token ids must not be ordinary tokens.
    pub fn from_ranks(
        vocab: Vec<Option<Vec<u8>>>,
        pattern: &str,
        specials: &[(&str, u32)],
    ) -> Result<Self, BuildError> {
        let vocab: Vec<Option<Box<[u8]>>> = vocab
            .into_iter()
            .map(|t| t.map(Vec::into_boxed_slice))
            .collect();
        let ids = index_vocab(&vocab)?;
        let mut byte_ids = [0; 256];
        for (byte, slot) in (0..=255u8).zip(&mut byte_ids) {
            *slot = *ids.get(&[byte][..]).ok_or(BuildError::MissingByte(byte))?;
        }
        let ranks = pair_ranks(&vocab, &ids);
        let specials = check_specials(specials, &vocab)?;
        let special_regex = special_regex(&specials);
        let pretokenizer = Pretokenizer::new(pattern)?;
        Ok(Tokenizer {
            pretokenizer,
            vocab,
            ids,
            byte_ids,
            ranks,
            specials,
            special_regex,
            merges: None,
        })
    }

    /// Builds a tokenizer from merges, as [`super::train_merges`] returns them.
    ///
    /// Ids 0 to 255 are the bytes; merge `i` makes id `256 + i` from the two
    /// ids it names, which must exist before it.
    pub fn from_merges(
        merges: &[(u32, u32)],
        pattern: &str,
        specials: &[(&str, u32)],
    ) -> Result<Self, BuildError> {
        let mut vocab: Vec<Option<Vec<u8>>> = (0..=255u8).map(|b| Some(vec![b])).collect();
        for (index, &(left, right)) in merges.iter().enumerate() {
            let next = vocab.len() as u32;
            let unknown = BuildError::UnknownMergeToken {
                index,
                left,
                right,
                next,
            };
            let bytes = |id: u32| vocab.get(id as usize).and_then(|t| t.as_deref());
            let (Some(a), Some(b)) = (bytes(left), bytes(right)) else {
                return Err(unknown);
            };
            vocab.push(Some([a, b].concat()));
        }
        let mut tokenizer = Tokenizer::from_ranks(vocab, pattern, specials)?;
        tokenizer.merges = Some(merges.to_vec());
        Ok(tokenizer)
    }

    /// The pre-tokeniser pattern.
    pub fn pattern(&self) -> &str {
        self.pretokenizer.pattern()
    }

    /// The chunks the pre-tokeniser cuts `text` into.
    pub fn chunks<'a>(&'a self, text: &'a str) -> Chunks<'a> {
        self.pretokenizer.chunks(text)
    }

    /// One more than the largest id, ordinary or special: the number of
    /// rows an embedding table needs to hold every id.
    pub fn vocab_size(&self) -> usize {
        let last_special = self.specials.iter().map(|&(_, id)| id as usize + 1).max();
        self.vocab.len().max(last_special.unwrap_or(0))
    }

    /// The special tokens and their ids, sorted by id.
    pub fn special_tokens(&self) -> &[(String, u32)] {
        &self.specials
    }

    /// The merges this tokenizer was built from, if it was built from merges
    /// (tiktoken's encodings are built from ranks and have none).
    pub fn merges(&self) -> Option<&[(u32, u32)]> {
        self.merges.as_deref()
    }

    /// The bytes of token `id` (ordinary or special), or `None` if `id` is
    /// not a token.
    pub fn token_bytes(&self, id: u32) -> Option<&[u8]> {
        match self.vocab.get(id as usize) {
            Some(Some(bytes)) => Some(bytes),
            _ => self.special_text(id).map(str::as_bytes),
        }
    }

    /// The id of the ordinary token with these bytes, if there is one.
    pub fn token_id(&self, bytes: &[u8]) -> Option<u32> {
        self.ids.get(bytes).copied()
    }

    fn special_text(&self, id: u32) -> Option<&str> {
        let i = self
            .specials
            .binary_search_by_key(&id, |&(_, id)| id)
            .ok()?;
        Some(&self.specials[i].0)
    }

    fn rank(&self, left: u32, right: u32) -> u32 {
        self.ranks.get(&(left, right)).copied().unwrap_or(NO_RANK)
    }

    // ANCHOR: encode_simple
    /// Encodes `text`, special tokens included, as plain text (plain version).
    ///
    /// Each chunk that is a token becomes that token; any other chunk
    /// starts as its bytes and is merged by rank. Same ids as
    /// [`Tokenizer::encode`], more slowly.
    pub fn encode_simple(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        for chunk in self.chunks(text) {
            let bytes = chunk.as_bytes();
            if let Some(id) = self.token_id(bytes) {
                out.push(id);
            } else {
                let ids = bytes.iter().map(|&b| self.byte_ids[b as usize]).collect();
                out.extend(apply_merges(ids, &self.ranks));
            }
        }
        out
    }
    // ANCHOR_END: encode_simple

    // ANCHOR: encode
    /// Encodes `text`, treating special tokens such as `<|endoftext|>` as
    /// plain text (tiktoken's `encode_ordinary`).
    ///
    /// ```
    /// use listings::tokens::Encoding;
    /// let gpt2 = Encoding::R50kBase.tokenizer()?;
    /// assert_eq!(gpt2.encode("Hello world"), [15496, 995]);
    /// # Ok::<(), listings::tokens::BuildError>(())
    /// ```
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 4);
        self.encode_into(text, &mut out, &mut Vec::new());
        out
    }
    // ANCHOR_END: encode

    /// Encodes `text` with every special token of this tokenizer recognised
    /// (tiktoken's `encode_with_special_tokens`).
    pub fn encode_with_special(&self, text: &str) -> Vec<u32> {
        let all: Vec<&str> = self
            .specials
            .iter()
            .map(|(text, _)| text.as_str())
            .collect();
        self.encode_allowing(text, &all)
    }

    /// Encodes `text`, recognising the special tokens named in `allowed` and
    /// treating any other as plain text (tiktoken's
    /// `encode(text, allowed_special)`). Names that are not special tokens
    /// of this tokenizer are ignored.
    ///
    /// Where two special tokens start at the same place, the longer wins
    /// (none of tiktoken's encodings has such a pair).
    pub fn encode_allowing(&self, text: &str, allowed: &[&str]) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 4);
        let mut parts = Vec::new();
        let mut start = 0;
        while let Some((found, end, id)) = self.next_special(text, start, allowed) {
            self.encode_into(&text[start..found], &mut out, &mut parts);
            out.push(id);
            start = end;
        }
        self.encode_into(&text[start..], &mut out, &mut parts);
        out
    }

    /// The next allowed special token at or after byte `from`: its start,
    /// end and id.
    fn next_special(
        &self,
        text: &str,
        mut from: usize,
        allowed: &[&str],
    ) -> Option<(usize, usize, u32)> {
        let regex = self.special_regex.as_ref()?;
        while let Some(m) = regex.find_at(text, from) {
            let name = m.as_str();
            if allowed.contains(&name) {
                let &(_, id) = self.specials.iter().find(|(text, _)| text == name)?;
                return Some((m.start(), m.end(), id));
            }
            // Not allowed: plain text. Look again one character further on.
            from = m.start() + name.chars().next().map_or(1, char::len_utf8);
        }
        None
    }

    // ANCHOR: encode_into
    /// Appends the ids of `text` to `out`; `parts` is scratch space reused
    /// from chunk to chunk.
    fn encode_into(&self, text: &str, out: &mut Vec<u32>, parts: &mut Vec<Part>) {
        for chunk in self.chunks(text) {
            let bytes = chunk.as_bytes();
            match self.token_id(bytes) {
                Some(id) => out.push(id),
                None if bytes.len() > LARGE_CHUNK => self.merge_large(bytes, out),
                None => self.merge_small(bytes, parts, out),
            }
        }
    }
    // ANCHOR_END: encode_into

    // ANCHOR: merge_small
    /// Encodes one chunk by merging the lowest-ranked pair, leftmost first,
    /// until no pair can merge. Each part remembers the rank of merging it
    /// with the next part, so a merge only recomputes two ranks.
    fn merge_small(&self, chunk: &[u8], parts: &mut Vec<Part>, out: &mut Vec<u32>) {
        parts.clear();
        parts.extend(chunk.iter().map(|&b| Part {
            id: self.byte_ids[b as usize],
            rank: NO_RANK,
        }));
        for i in 1..parts.len() {
            parts[i - 1].rank = self.rank(parts[i - 1].id, parts[i].id);
        }
        while let Some((i, rank)) = lowest_rank(parts) {
            parts[i].id = rank;
            parts.remove(i + 1);
            parts[i].rank = match parts.get(i + 1) {
                Some(next) => self.rank(parts[i].id, next.id),
                None => NO_RANK,
            };
            if i > 0 {
                parts[i - 1].rank = self.rank(parts[i - 1].id, parts[i].id);
            }
        }
        out.extend(parts.iter().map(|p| p.id));
    }
    // ANCHOR_END: merge_small

    /// Same result as [`Tokenizer::merge_small`] for long chunks: the parts
    /// form a linked list and candidate merges wait in a heap ordered by
    /// (rank, position). A heap entry is checked when it comes out: if its
    /// pair has changed since it went in, it is skipped.
    fn merge_large(&self, chunk: &[u8], out: &mut Vec<u32>) {
        const GONE: u32 = u32::MAX;
        let n = chunk.len();
        let mut id: Vec<u32> = chunk.iter().map(|&b| self.byte_ids[b as usize]).collect();
        let mut next: Vec<usize> = (1..=n).collect();
        let mut prev: Vec<usize> = (0..n).map(|i| i.wrapping_sub(1)).collect();
        let mut heap = BinaryHeap::new();
        let push = |heap: &mut BinaryHeap<_>, rank: u32, at: usize| {
            if rank != NO_RANK {
                heap.push(Reverse((rank, at)));
            }
        };
        for i in 1..n {
            push(&mut heap, self.rank(id[i - 1], id[i]), i - 1);
        }
        while let Some(Reverse((rank, i))) = heap.pop() {
            let j = next[i];
            if id[i] == GONE || j >= n || self.rank(id[i], id[j]) != rank {
                continue; // stale: this pair no longer exists
            }
            id[i] = rank;
            id[j] = GONE;
            let k = next[j];
            next[i] = k;
            if k < n {
                prev[k] = i;
                push(&mut heap, self.rank(id[i], id[k]), i);
            }
            let before = prev[i];
            if before < n {
                push(&mut heap, self.rank(id[before], id[i]), before);
            }
        }
        let mut i = 0;
        while i < n {
            out.push(id[i]);
            i = next[i];
        }
    }

    // ANCHOR: decode
    /// The bytes that `ids` stand for, special tokens included.
    pub fn decode_bytes(&self, ids: &[u32]) -> Result<Vec<u8>, DecodeError> {
        let mut out = Vec::with_capacity(ids.len() * 4);
        for (position, &id) in ids.iter().enumerate() {
            let vocab_size = self.vocab_size();
            let bytes = self.token_bytes(id).ok_or(DecodeError::UnknownId {
                id,
                position,
                vocab_size,
            })?;
            out.extend_from_slice(bytes);
        }
        Ok(out)
    }

    /// The text that `ids` stand for. Fails if an id is unknown or if the
    /// bytes are not valid UTF-8 (use [`Tokenizer::decode_bytes`] and
    /// [`String::from_utf8_lossy`] to see such bytes anyway).
    pub fn decode(&self, ids: &[u32]) -> Result<String, DecodeError> {
        let bytes = self.decode_bytes(ids)?;
        String::from_utf8(bytes).map_err(|e| DecodeError::InvalidUtf8 {
            offset: e.utf8_error().valid_up_to(),
        })
    }
    // ANCHOR_END: decode

    // ANCHOR: pieces
    /// Each token of `ids` as text, to show where a text was cut. A token
    /// that holds only part of a character shows as `�` (U+FFFD), and an id
    /// that is not a token as `?`.
    ///
    /// ```
    /// use listings::tokens::Encoding;
    /// let gpt2 = Encoding::R50kBase.tokenizer()?;
    /// assert_eq!(gpt2.pieces(&gpt2.encode("Hello world")), ["Hello", " world"]);
    /// # Ok::<(), listings::tokens::BuildError>(())
    /// ```
    pub fn pieces(&self, ids: &[u32]) -> Vec<String> {
        let piece = |&id: &u32| match self.token_bytes(id) {
            Some(bytes) => String::from_utf8_lossy(bytes).into_owned(),
            None => "?".to_string(),
        };
        ids.iter().map(piece).collect()
    }
    // ANCHOR_END: pieces
}

/// Where the lowest-ranked pair starts, and its rank; `None` if no pair can
/// merge. `min_by_key` keeps the first of equal minima: the leftmost pair.
fn lowest_rank(parts: &[Part]) -> Option<(usize, u32)> {
    let (i, part) = parts.iter().enumerate().min_by_key(|(_, p)| p.rank)?;
    (part.rank != NO_RANK).then_some((i, part.rank))
}

/// One part of a chunk being encoded.
#[derive(Debug, Clone, Copy)]
struct Part {
    /// The token this part is now.
    id: u32,
    /// The rank of merging it with the next part, or [`NO_RANK`].
    rank: u32,
}

impl fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("pattern", &self.pattern())
            .field("specials", &self.specials)
            .finish_non_exhaustive()
    }
}

/// The id of each token by its bytes; fails on two tokens with the same
/// bytes.
fn index_vocab(vocab: &[Option<Box<[u8]>>]) -> Result<FxHashMap<Box<[u8]>, u32>, BuildError> {
    let mut ids = FxHashMap::default();
    ids.reserve(vocab.len());
    for (id, bytes) in vocab.iter().enumerate() {
        let Some(bytes) = bytes else { continue };
        if let Some(first) = ids.insert(bytes.clone(), id as u32) {
            let bytes = String::from_utf8_lossy(bytes).into_owned();
            return Err(BuildError::DuplicateToken {
                first,
                second: id as u32,
                bytes,
            });
        }
    }
    Ok(ids)
}

// ANCHOR: pair_ranks
/// The rank of every pair of tokens that can merge: for each token and each
/// way to cut its bytes in two, if both halves are tokens, the pair
/// (left, right) merges into this token.
fn pair_ranks(
    vocab: &[Option<Box<[u8]>>],
    ids: &FxHashMap<Box<[u8]>, u32>,
) -> FxHashMap<(u32, u32), u32> {
    let mut ranks = FxHashMap::default();
    ranks.reserve(2 * vocab.len());
    for (id, bytes) in vocab.iter().enumerate() {
        let Some(bytes) = bytes else { continue };
        for cut in 1..bytes.len() {
            let Some(&left) = ids.get(&bytes[..cut]) else {
                continue;
            };
            let Some(&right) = ids.get(&bytes[cut..]) else {
                continue;
            };
            ranks.insert((left, right), id as u32);
        }
    }
    ranks
}
// ANCHOR_END: pair_ranks

/// Checks special tokens: non-empty, distinct, with ids of their own.
fn check_specials(
    specials: &[(&str, u32)],
    vocab: &[Option<Box<[u8]>>],
) -> Result<Vec<(String, u32)>, BuildError> {
    let mut checked: Vec<(String, u32)> = Vec::with_capacity(specials.len());
    for &(text, id) in specials {
        let bad = |reason| BuildError::BadSpecial {
            text: text.to_string(),
            id,
            reason,
        };
        if text.is_empty() {
            return Err(bad("it is empty"));
        }
        if matches!(vocab.get(id as usize), Some(Some(_))) {
            return Err(bad("its id is an ordinary token"));
        }
        if checked.iter().any(|(t, i)| t == text || *i == id) {
            return Err(bad("its text or id is repeated"));
        }
        checked.push((text.to_string(), id));
    }
    checked.sort_by_key(|&(_, id)| id);
    Ok(checked)
}

/// A regex matching any special token, the longest first.
fn special_regex(specials: &[(String, u32)]) -> Option<regex::Regex> {
    let mut texts: Vec<&str> = specials.iter().map(|(text, _)| text.as_str()).collect();
    if texts.is_empty() {
        return None;
    }
    texts.sort_by_key(|text| Reverse(text.len()));
    let alternatives: Vec<String> = texts.iter().map(|text| regex::escape(text)).collect();
    // Escaped literals always compile.
    Some(regex::Regex::new(&alternatives.join("|")).expect("escaped literals form a valid regex"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::BOOK_PATTERN;

    /// A tokenizer whose merges make long chains of the same byte.
    fn runs() -> Tokenizer {
        let mut merges = vec![(32, 32), (97, 97), (256, 32), (257, 97), (257, 257)];
        merges.push((258, 258));
        Tokenizer::from_merges(&merges, BOOK_PATTERN, &[]).unwrap()
    }

    #[test]
    fn large_and_small_chunk_merges_agree() {
        let tok = runs();
        for n in 0..300 {
            for text in [
                "a".repeat(n),
                " ".repeat(n),
                format!("{}b{}", " ".repeat(n), "a".repeat(n / 2)),
            ] {
                let bytes = text.as_bytes();
                if bytes.is_empty() {
                    continue;
                }
                let (mut small, mut large) = (Vec::new(), Vec::new());
                tok.merge_small(bytes, &mut Vec::new(), &mut small);
                tok.merge_large(bytes, &mut large);
                assert_eq!(small, large, "{text:?}");
            }
        }
    }

    #[test]
    fn encode_and_encode_simple_agree() {
        let tok = runs();
        let text = format!("{} aaaa aaa{}b", " ".repeat(500), "a".repeat(301));
        assert_eq!(tok.encode(&text), tok.encode_simple(&text));
        assert_eq!(tok.decode(&tok.encode(&text)).unwrap(), text);
    }
}
