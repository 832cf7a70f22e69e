//! The KV cache: every block's keys and values for the tokens seen so far.
//!
//! Attention at a new position needs a query for that position alone, but
//! the keys and values of every position before it. Those keys and values
//! depend only on their own token and everything before it (the mask sees
//! to that), so they never change once computed: the cache keeps them, and
//! each new token costs one position's work instead of the whole context's.
//!
//! The price is memory: two vectors of `C` numbers (a key and a value) per
//! block per position, `2 · n_layer · n_embd · 4` bytes per token in f32
//! ([`KvCache::bytes_per_token`]).
//!
//! A model with grouped-query attention keeps a key and a value per
//! key-value head, `n_kv_head·hs` numbers each instead of `C`:
//! [`kv_bytes_per_token`] counts them. This cache stores GPT-2's block
//! only (the [`Decoder`](super::decode::Decoder) runs no other), so it has
//! no room for shared heads.
//!
//! Shapes: `nh` heads, `cap` positions of capacity, `hs` head size.

use crate::model::{Arch, GptConfig};

// ANCHOR: kv_bytes_per_token
/// What one position of context costs a KV cache for a model with the
/// choices of `arch`, at `bytes` bytes a number (4 for f32, 2 for f16):
/// a key and a value of `n_kv_head·hs` numbers in each of `n_layer`
/// blocks, `n_layer · 2 · n_kv_head · hs · bytes`. Grouped-query attention
/// divides it by `n_head / n_kv_head`; nothing else in [`Arch`] changes it.
///
/// ```
/// use listings::infer::kv::{KvCache, kv_bytes_per_token};
/// use listings::model::{Arch, GptConfig};
/// let config = GptConfig::gpt2(); // 12 heads
/// assert_eq!(kv_bytes_per_token(&config, &Arch::gpt2(), 4), KvCache::bytes_per_token(&config));
/// let gqa = Arch { kv_heads: Some(3), ..Arch::gpt2() };
/// assert_eq!(kv_bytes_per_token(&config, &gqa, 4) * 4, KvCache::bytes_per_token(&config));
/// ```
pub fn kv_bytes_per_token(config: &GptConfig, arch: &Arch, bytes: usize) -> usize {
    config.n_layer * 2 * arch.n_kv_head(config) * config.head_size() * bytes
}
// ANCHOR_END: kv_bytes_per_token

// ANCHOR: kv_cache
/// Keys and values of every block for the first [`KvCache::len`] positions
/// of one sequence.
///
/// Each block's keys are stored head by head, `(nh, cap, hs)`, so that one
/// head's keys for positions `0..len` are one contiguous run of memory, read
/// straight through by the attention of a new query.
#[derive(Clone, Debug)]
pub struct KvCache {
    n_head: usize,
    head_size: usize,
    capacity: usize,
    len: usize,
    /// Per block, `(nh, cap, hs)`.
    keys: Vec<Vec<f32>>,
    /// Per block, `(nh, cap, hs)`.
    values: Vec<Vec<f32>>,
}
// ANCHOR_END: kv_cache

impl KvCache {
    /// An empty cache with room for `capacity` positions (at most the
    /// model's `block_size`: learned positions stop there), all of it
    /// allocated now.
    ///
    /// ```
    /// use listings::infer::kv::KvCache;
    /// use listings::model::GptConfig;
    /// let config = GptConfig::gpt2();
    /// let cache = KvCache::new(&config, 1024);
    /// // 2 (K and V) x 12 blocks x 768 channels x 1024 positions x 4 bytes:
    /// assert_eq!(cache.bytes(), 75_497_472);
    /// assert_eq!(cache.bytes(), KvCache::bytes_per_token(&config) * 1024);
    /// ```
    pub fn new(config: &GptConfig, capacity: usize) -> Self {
        let capacity = capacity.min(config.block_size);
        let block = || vec![0.0; config.n_embd * capacity];
        Self {
            n_head: config.n_head,
            head_size: config.head_size(),
            capacity,
            len: 0,
            keys: (0..config.n_layer).map(|_| block()).collect(),
            values: (0..config.n_layer).map(|_| block()).collect(),
        }
    }

    // ANCHOR: bytes_per_token
    /// What one position costs: a key and a value of `n_embd` f32 numbers in
    /// each of `n_layer` blocks.
    pub fn bytes_per_token(config: &GptConfig) -> usize {
        2 * config.n_layer * config.n_embd * size_of::<f32>()
    }
    // ANCHOR_END: bytes_per_token

    /// The bytes this cache holds, counted from its buffers' allocations.
    pub fn bytes(&self) -> usize {
        let buffers = self.keys.iter().chain(&self.values);
        buffers.map(|b| b.capacity() * size_of::<f32>()).sum()
    }

    /// How many positions are filled.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no position is filled.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many positions fit.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forgets every position (the memory is kept).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Keeps the first `len` positions and forgets the rest (speculative
    /// decoding rolls back rejected guesses this way).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// The number of blocks.
    pub fn n_layer(&self) -> usize {
        self.keys.len()
    }

    /// Stores the key and value of position `pos` for block `layer`: `k` and
    /// `v` are `(C)`, heads side by side, as `c_attn` writes them.
    pub(crate) fn store(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        let (hs, cap) = (self.head_size, self.capacity);
        for h in 0..self.n_head {
            let at = (h * cap + pos) * hs;
            self.keys[layer][at..at + hs].copy_from_slice(&k[h * hs..(h + 1) * hs]);
            self.values[layer][at..at + hs].copy_from_slice(&v[h * hs..(h + 1) * hs]);
        }
    }

    /// Head `head`'s keys and values in block `layer` for positions
    /// `0..upto`, each `(upto, hs)`.
    pub(crate) fn head(&self, layer: usize, head: usize, upto: usize) -> (&[f32], &[f32]) {
        let at = head * self.capacity * self.head_size;
        let end = at + upto * self.head_size;
        (&self.keys[layer][at..end], &self.values[layer][at..end])
    }

    /// Marks `n` more positions as filled.
    pub(crate) fn advance(&mut self, n: usize) {
        self.len += n;
        debug_assert!(self.len <= self.capacity);
    }
}
