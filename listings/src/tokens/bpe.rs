//! The idea of byte pair encoding, on one list of ids.
//!
//! Start from the bytes of a text: ids 0 to 255. Count every pair of
//! neighbours, give the most frequent pair a new id (256, then 257, ...) and
//! replace it everywhere; repeat. Each round is one *merge*, and the list of
//! merges, in order, is the tokenizer. Encoding a new text replays them:
//! merge the pair that was learned first, then the next, until no learned
//! pair is left.
//!
//! This file is the plain version the chapter walks through, slow but short.
//! [`super::trainer`] learns the same merges much faster, and
//! [`super::Tokenizer`] encodes with the same rule much faster.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

// ANCHOR: count_pairs
/// Counts each pair of neighbouring ids.
///
/// `[1, 2, 3, 1, 2]` has the pairs (1, 2), (2, 3), (3, 1) and (1, 2) again:
///
/// ```
/// use listings::tokens::count_pairs;
/// let counts = count_pairs(&[1, 2, 3, 1, 2]);
/// assert_eq!(format!("{counts:?}"), "{(1, 2): 2, (2, 3): 1, (3, 1): 1}");
/// ```
pub fn count_pairs(ids: &[u32]) -> BTreeMap<(u32, u32), usize> {
    let mut counts = BTreeMap::new();
    for pair in ids.windows(2) {
        *counts.entry((pair[0], pair[1])).or_insert(0) += 1;
    }
    counts
}
// ANCHOR_END: count_pairs

// ANCHOR: merge
/// Replaces each occurrence of `pair` in `ids` by `new_id`, left to right.
///
/// Overlapping occurrences are taken from the left, so `[7, 7, 7]` with the
/// pair (7, 7) becomes `[8, 7]`:
///
/// ```
/// use listings::tokens::merge;
/// assert_eq!(merge(&[1, 2, 3, 1, 2], (1, 2), 4), [4, 3, 4]);
/// assert_eq!(merge(&[7, 7, 7], (7, 7), 8), [8, 7]);
/// ```
pub fn merge(ids: &[u32], pair: (u32, u32), new_id: u32) -> Vec<u32> {
    let mut out = Vec::with_capacity(ids.len());
    let mut i = 0;
    while i < ids.len() {
        if i + 1 < ids.len() && (ids[i], ids[i + 1]) == pair {
            out.push(new_id);
            i += 2;
        } else {
            out.push(ids[i]);
            i += 1;
        }
    }
    out
}
// ANCHOR_END: merge

// ANCHOR: most_frequent
/// The pair with the highest count; among equal counts, the smallest pair.
///
/// The tie rule makes training give the same merges on every run and every
/// machine (a `HashMap`'s order would not).
///
/// ```
/// use listings::tokens::{bpe::most_frequent, count_pairs};
/// // (1, 2) and (2, 1) both appear twice: the smaller pair wins.
/// assert_eq!(most_frequent(&count_pairs(&[1, 2, 1, 2, 1])), Some((1, 2)));
/// ```
pub fn most_frequent(counts: &BTreeMap<(u32, u32), usize>) -> Option<(u32, u32)> {
    let best = counts.iter().max_by_key(|&(&pair, &n)| (n, Reverse(pair)));
    best.map(|(&pair, _)| pair)
}
// ANCHOR_END: most_frequent

// ANCHOR: train_simple
/// Learns merges on `chunks` until there are `vocab_size` tokens (plain version).
///
/// Every round recounts all pairs in all chunks. Pairs are counted inside
/// chunks only, never across two. A pair whose bytes already spell a token
/// is skipped, so no two tokens stand for the same bytes. Stops early if no
/// pair is left to merge.
///
/// ```
/// use listings::tokens::bpe::train_simple;
/// // "aaabdaaabac": "aa" (97, 97) appears 4 times and becomes 256:
/// //   [256, a, b, d, 256, a, b, a, c]
/// // then (256, a) and (a, b) both appear twice; the smaller pair,
/// // "ab" (97, 98), wins and becomes 257: [256, 257, d, 256, 257, a, c]
/// // then (256, 257) appears twice and becomes 258, "aaab".
/// let merges = train_simple(&["aaabdaaabac"], 259);
/// assert_eq!(merges, [(97, 97), (97, 98), (256, 257)]);
/// ```
pub fn train_simple(chunks: &[&str], vocab_size: usize) -> Vec<(u32, u32)> {
    let mut chunks: Vec<Vec<u32>> = chunks
        .iter()
        .map(|c| c.bytes().map(u32::from).collect())
        .collect();
    let mut vocab: Vec<Vec<u8>> = (0..=255).map(|b| vec![b]).collect();
    let mut merges = Vec::new();
    while vocab.len() < vocab_size {
        let mut counts = BTreeMap::new();
        for ids in &chunks {
            for (pair, n) in count_pairs(ids) {
                *counts.entry(pair).or_insert(0) += n;
            }
        }
        counts.retain(|&(a, b), _| {
            !vocab.contains(&[&vocab[a as usize][..], &vocab[b as usize]].concat())
        });
        let Some(pair) = most_frequent(&counts) else {
            break;
        };
        let new_id = vocab.len() as u32;
        for ids in &mut chunks {
            *ids = merge(ids, pair, new_id);
        }
        vocab.push([&vocab[pair.0 as usize][..], &vocab[pair.1 as usize]].concat());
        merges.push(pair);
    }
    merges
}
// ANCHOR_END: train_simple

// ANCHOR: apply_merges
/// Merges neighbours by rank until no pair can merge (plain version).
///
/// `ranks` maps a pair to the id of the token it becomes. A lower id was
/// learned earlier, so it is merged first; among equal ranks the leftmost
/// pair goes first. This is tiktoken's rule.
///
/// ```
/// use std::collections::HashMap;
/// use listings::tokens::bpe::apply_merges;
/// // Learned: "aa" = 256, then "aa" + "a" = 257, then "aaa" + "b" = 258.
/// let ranks = HashMap::from([((97, 97), 256), ((256, 97), 257), ((257, 98), 258)]);
/// let ids = "aaabaa".bytes().map(u32::from).collect();
/// assert_eq!(apply_merges(ids, &ranks), [258, 256]);
/// ```
pub fn apply_merges<S: BuildHasher>(
    mut ids: Vec<u32>,
    ranks: &HashMap<(u32, u32), u32, S>,
) -> Vec<u32> {
    loop {
        let best = ids
            .windows(2)
            .enumerate()
            .filter_map(|(i, pair)| ranks.get(&(pair[0], pair[1])).map(|&rank| (rank, i)))
            .min();
        let Some((new_id, i)) = best else { return ids };
        ids[i] = new_id;
        ids.remove(i + 1);
    }
}
// ANCHOR_END: apply_merges
