//! The fast trainer: the merges of [`super::bpe::train_simple`], in a
//! fraction of the time.
//!
//! Two observations make it fast. A text has far fewer *distinct* chunks
//! than chunks (" the" occurs thousands of times), so each distinct chunk is
//! stored once with its number of occurrences. And a merge only changes the
//! chunks that contain the merged pair, so the trainer keeps, for each pair,
//! its count and the chunks it occurs in, and after a merge updates the
//! counts by the difference instead of recounting everything. The most
//! frequent pair comes off a heap.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rustc_hash::{FxHashMap, FxHashSet};

use super::bpe::merge;
use super::pretokenize::Pretokenizer;
use super::{BuildError, Tokenizer};

/// Learns merges on `text`, cut into chunks by `pattern`, until the
/// vocabulary has `vocab_size` tokens (the 256 bytes included).
///
/// Ties between equally frequent pairs go to the smallest pair, so the
/// result is the same on every run. Training stops early if no pair is left
/// to merge; a `vocab_size` of 256 or less gives no merges. Training to a
/// larger size only appends merges: the first `k` merges are what training
/// to `256 + k` gives.
///
/// ```
/// use listings::tokens::{train_merges, BOOK_PATTERN};
/// let merges = train_merges("low lower lowest", 258, BOOK_PATTERN)?;
/// // "lo" (108, 111) then "low" (256, 119), before " l" and the rest.
/// assert_eq!(merges, [(108, 111), (256, 119)]);
/// # Ok::<(), listings::tokens::BuildError>(())
/// ```
pub fn train_merges(
    text: &str,
    vocab_size: usize,
    pattern: &str,
) -> Result<Vec<(u32, u32)>, BuildError> {
    let pretokenizer = Pretokenizer::new(pattern)?;
    Ok(train_chunks(pretokenizer.chunks(text), vocab_size))
}

/// Trains on `text` and builds the tokenizer (no special tokens).
pub fn train_tokenizer(
    text: &str,
    vocab_size: usize,
    pattern: &str,
) -> Result<Tokenizer, BuildError> {
    Tokenizer::from_merges(&train_merges(text, vocab_size, pattern)?, pattern, &[])
}

// ANCHOR: train_chunks
/// Learns merges on already cut chunks: the same merges as
/// [`super::bpe::train_simple`] on the same chunks.
pub fn train_chunks<'a>(
    chunks: impl IntoIterator<Item = &'a str>,
    vocab_size: usize,
) -> Vec<(u32, u32)> {
    let mut counts: FxHashMap<&str, i64> = FxHashMap::default();
    for chunk in chunks {
        *counts.entry(chunk).or_insert(0) += 1;
    }
    let mut state = State::new(counts);
    let mut merges = Vec::new();
    while state.vocab.len() < vocab_size {
        let Some(pair) = state.most_frequent() else {
            break;
        };
        state.merge(pair);
        merges.push(pair);
    }
    merges
}
// ANCHOR_END: train_chunks

/// A distinct chunk: its current ids and how often it occurs.
struct Word {
    ids: Vec<u32>,
    count: i64,
}

/// Everything the trainer keeps between merges.
struct State {
    words: Vec<Word>,
    /// How often each pair occurs, over all words (absent = 0).
    counts: FxHashMap<(u32, u32), i64>,
    /// The words each pair occurs in (may also list words it has left).
    places: FxHashMap<(u32, u32), Vec<usize>>,
    /// (count, pair) candidates, highest count first, then smallest pair;
    /// an entry whose count is out of date is skipped when it comes out.
    heap: BinaryHeap<(i64, Reverse<(u32, u32)>)>,
    /// The bytes of each token, by id.
    vocab: Vec<Vec<u8>>,
    /// The same bytes, to find a pair that would spell an existing token.
    spelled: FxHashSet<Vec<u8>>,
}

impl State {
    fn new(chunks: FxHashMap<&str, i64>) -> State {
        let words: Vec<Word> = chunks
            .into_iter()
            .map(|(chunk, count)| Word {
                ids: chunk.bytes().map(u32::from).collect(),
                count,
            })
            .collect();
        let vocab: Vec<Vec<u8>> = (0..=255).map(|b| vec![b]).collect();
        let spelled = vocab.iter().cloned().collect();
        let mut state = State {
            words,
            counts: FxHashMap::default(),
            places: FxHashMap::default(),
            heap: BinaryHeap::new(),
            vocab,
            spelled,
        };
        for (w, word) in state.words.iter().enumerate() {
            for pair in word.ids.windows(2) {
                let pair = (pair[0], pair[1]);
                *state.counts.entry(pair).or_insert(0) += word.count;
                state.places.entry(pair).or_default().push(w);
            }
        }
        state.heap = state
            .counts
            .iter()
            .map(|(&pair, &n)| (n, Reverse(pair)))
            .collect();
        state
    }

    fn bytes_of(&self, (a, b): (u32, u32)) -> Vec<u8> {
        [&self.vocab[a as usize][..], &self.vocab[b as usize]].concat()
    }

    /// The most frequent pair whose bytes are not already a token.
    fn most_frequent(&mut self) -> Option<(u32, u32)> {
        while let Some((n, Reverse(pair))) = self.heap.pop() {
            let current = self.counts.get(&pair).copied().unwrap_or(0);
            if current == n && n > 0 && !self.spelled.contains(&self.bytes_of(pair)) {
                return Some(pair);
            }
        }
        None
    }

    /// Merges `pair` into a new token everywhere and updates the counts.
    fn merge(&mut self, pair: (u32, u32)) {
        let new_id = self.vocab.len() as u32;
        let bytes = self.bytes_of(pair);
        self.spelled.insert(bytes.clone());
        self.vocab.push(bytes);
        let mut places = self.places.remove(&pair).unwrap_or_default();
        places.sort_unstable();
        places.dedup();
        let mut deltas: FxHashMap<(u32, u32), i64> = FxHashMap::default();
        for w in places {
            let word = &mut self.words[w];
            if !word.ids.windows(2).any(|p| (p[0], p[1]) == pair) {
                continue; // the pair left this word in an earlier merge
            }
            for p in word.ids.windows(2) {
                *deltas.entry((p[0], p[1])).or_insert(0) -= word.count;
            }
            word.ids = merge(&word.ids, pair, new_id);
            for p in word.ids.windows(2) {
                *deltas.entry((p[0], p[1])).or_insert(0) += word.count;
                if p[0] == new_id || p[1] == new_id {
                    self.places.entry((p[0], p[1])).or_default().push(w);
                }
            }
        }
        for (p, delta) in deltas {
            if delta != 0 {
                self.add_count(p, delta);
            }
        }
    }

    /// Changes a pair's count and queues its new count.
    fn add_count(&mut self, pair: (u32, u32), delta: i64) {
        let count = self.counts.entry(pair).or_insert(0);
        *count += delta;
        let n = *count;
        if n > 0 {
            self.heap.push((n, Reverse(pair)));
        } else {
            self.counts.remove(&pair);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::bpe::train_simple;
    use crate::tokens::{BOOK_PATTERN, GPT2_PATTERN};

    const TEXT: &str = "It was the best of times, it was the worst of times, it was the age of \
        wisdom, it was the age of foolishness, it was the epoch of belief, it was the epoch of \
        incredulity, 1234567 aaaaaaaa    bbbb\n\n\nthe end.";

    #[test]
    fn fast_trainer_matches_simple_trainer() {
        for pattern in [BOOK_PATTERN, GPT2_PATTERN] {
            let pre = Pretokenizer::new(pattern).unwrap();
            let chunks: Vec<&str> = pre.chunks(TEXT).collect();
            assert_eq!(
                train_chunks(chunks.iter().copied(), 400),
                train_simple(&chunks, 400)
            );
        }
        // One chunk with long runs stresses overlapping pairs.
        let runs = ["aaaaaaaaaaabababababbbbbbbbbaaaaaaa"];
        assert_eq!(train_chunks(runs, 300), train_simple(&runs, 300));
    }

    #[test]
    fn training_stops_when_no_pair_is_left() {
        let merges = train_merges("ab ab", 1000, BOOK_PATTERN).unwrap();
        // "ab", then " " + "ab": then every chunk is one token.
        assert_eq!(merges, [(97, 98), (32, 256)]);
        assert!(train_merges("", 1000, BOOK_PATTERN).unwrap().is_empty());
        assert!(train_merges("abc", 100, BOOK_PATTERN).unwrap().is_empty());
    }
}
