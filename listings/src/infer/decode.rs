//! The forward pass for writing text: a model laid out for inference, and
//! a forward pass that adds tokens to a [`KvCache`] instead of recomputing
//! the whole context.
//!
//! [`Gpt::forward`] is built for training: it computes every position of a
//! batch of equal-length sequences and keeps every intermediate array for
//! the backward pass. Writing text asks for something else: one new token
//! at a time, the scores of the last position only, nothing kept but the
//! keys and values. [`Decoder::forward`] does that, for any number of
//! sequences at once, each at its own length, each adding any number of
//! tokens (a whole prompt at first, then one token a step).
//!
//! Every weight matrix is a [`WeightMatrix`] stored one output per row, in
//! f32 or in a quantised [`Format`]; the same code runs them all.
//!
//! Shapes: `N` the new tokens of every sequence together, `C` channels,
//! `V` vocabulary, `nh` heads, `hs` head size.

use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut2, Axis};
use rayon::prelude::*;
use thiserror::Error;

use super::kv::KvCache;
use super::quant::{Format, QuantError, WeightMatrix};
use crate::model::Gpt;
use crate::model::{GptConfig, LayerNormParams, fast_exp, gelu, layernorm_row};
use crate::parallel::{max, pool, simd, sum_map, sum_zip};

/// Why a forward pass could not run.
#[derive(Clone, Debug, Error, PartialEq)]
pub enum DecodeError {
    /// A token id the model has no embedding for.
    #[error("token id {id} is outside the model's vocabulary of {vocab_size}")]
    Token {
        /// The id.
        id: u32,
        /// The model's vocabulary size.
        vocab_size: usize,
    },
    /// The tokens do not fit in the cache.
    #[error(
        "{adding} more tokens do not fit: the cache holds {len} of at most {capacity} positions \
         (the model has learned positions 0 to {last})"
    )]
    ContextFull {
        /// Positions already filled.
        len: usize,
        /// Tokens being added.
        adding: usize,
        /// The cache's capacity.
        capacity: usize,
        /// The last position the model has an embedding for.
        last: usize,
    },
    /// A cache made for a model with another number of blocks.
    #[error("a cache for {found} blocks used with a model of {expected}")]
    CacheShape {
        /// The model's blocks.
        expected: usize,
        /// The cache's blocks.
        found: usize,
    },
}

/// One block's weights, laid out for inference.
#[derive(Clone, Debug)]
struct DecoderBlock {
    ln_1: LayerNormParams,
    c_attn: (WeightMatrix, Array1<f32>),
    attn_proj: (WeightMatrix, Array1<f32>),
    ln_2: LayerNormParams,
    c_fc: (WeightMatrix, Array1<f32>),
    mlp_proj: (WeightMatrix, Array1<f32>),
}

// ANCHOR: decoder
/// A GPT's weights laid out for writing text: each weight matrix with one
/// output per row (so a new token's product reads each weight once, in
/// order), in f32 or quantised. LayerNorms, biases and position embeddings
/// stay f32: they are a sliver of the model.
#[derive(Clone, Debug)]
pub struct Decoder {
    config: GptConfig,
    /// `(V, C)`: the embedding table, and the output layer read row by row.
    wte: WeightMatrix,
    wpe: Array2<f32>,
    blocks: Vec<DecoderBlock>,
    ln_f: LayerNormParams,
}
// ANCHOR_END: decoder

/// One sequence of a [`Decoder::forward`] call: its cache and the tokens it
/// adds.
#[derive(Debug)]
pub struct Segment<'a> {
    /// The sequence's keys and values so far; the new tokens are added to it.
    pub cache: &'a mut KvCache,
    /// The new tokens, at positions `cache.len()..`.
    pub tokens: &'a [u32],
}

/// Which positions [`Decoder::forward`] computes logits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logits {
    /// The last new token of each sequence: what generation needs.
    Last,
    /// Every new token (speculative decoding checks several guesses at once).
    All,
}

impl Decoder {
    /// Lays out `gpt`'s weights for inference, each matrix in `format`.
    /// Refuses a model whose [`Arch`](crate::model::Arch) is not GPT-2's
    /// ([`QuantError::Arch`]).
    pub fn new(gpt: &Gpt, format: Format) -> Result<Self, QuantError> {
        if !gpt.arch().is_gpt2() {
            return Err(QuantError::Arch(*gpt.arch()));
        }
        let p = gpt.params();
        let linear = |l: &crate::model::LinearParams| -> Result<_, QuantError> {
            Ok((
                WeightMatrix::from_linear(l.weight.view(), format)?,
                l.bias.clone(),
            ))
        };
        let blocks =
            p.h.iter()
                .map(|b| {
                    Ok(DecoderBlock {
                        ln_1: b.ln_1.clone(),
                        c_attn: linear(&b.attn.c_attn)?,
                        attn_proj: linear(&b.attn.c_proj)?,
                        ln_2: b.ln_2.clone(),
                        c_fc: linear(&b.mlp.c_fc)?,
                        mlp_proj: linear(&b.mlp.c_proj)?,
                    })
                })
                .collect::<Result<_, QuantError>>()?;
        Ok(Self {
            config: *gpt.config(),
            wte: WeightMatrix::from_rows(p.wte.view(), format)?,
            wpe: p.wpe.clone(),
            blocks,
            ln_f: p.ln_f.clone(),
        })
    }

    /// The model's shape.
    pub fn config(&self) -> &GptConfig {
        &self.config
    }

    /// The format of the weight matrices.
    pub fn format(&self) -> Format {
        self.wte.format()
    }

    /// The bytes of every weight: matrices as stored, the rest in f32.
    pub fn bytes(&self) -> usize {
        let f32s = |n: usize| n * size_of::<f32>();
        let ln = |l: &LayerNormParams| f32s(l.weight.len() + l.bias.len());
        let lin = |(w, b): &(WeightMatrix, Array1<f32>)| w.bytes() + f32s(b.len());
        let blocks: usize = self
            .blocks
            .iter()
            .map(|b| {
                ln(&b.ln_1)
                    + lin(&b.c_attn)
                    + lin(&b.attn_proj)
                    + ln(&b.ln_2)
                    + lin(&b.c_fc)
                    + lin(&b.mlp_proj)
            })
            .sum();
        self.wte.bytes() + f32s(self.wpe.len()) + blocks + ln(&self.ln_f)
    }

    /// An empty cache for one sequence, with room for the whole context.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(&self.config, self.config.block_size)
    }

    /// Logits for the next token after `tokens`, computed from scratch (an
    /// empty cache filled with all of them): the reference the cache is
    /// checked against.
    pub fn logits_uncached(&self, tokens: &[u32]) -> Result<Vec<f32>, DecodeError> {
        let mut cache = KvCache::new(&self.config, tokens.len());
        let logits = self.forward(
            &mut [Segment {
                cache: &mut cache,
                tokens,
            }],
            Logits::Last,
        )?;
        Ok(logits.into_raw_vec_and_offset().0)
    }

    // ANCHOR: forward
    /// Runs the new tokens of every sequence through the model, adding their
    /// keys and values to the sequences' caches, and returns logits: `(B, V)`
    /// for the last new token of each of the `B` sequences, or `(N, V)` for
    /// every new token, in order.
    ///
    /// All `N` new tokens go through each weight matrix together, so a batch
    /// reads the weights once; attention is per sequence, each new token
    /// looking at its own sequence's cache up to itself.
    ///
    /// Nothing changes if the call fails: the tokens and the room for them
    /// are checked first.
    pub fn forward(
        &self,
        seqs: &mut [Segment<'_>],
        want: Logits,
    ) -> Result<Array2<f32>, DecodeError> {
        self.check(seqs)?;
        let c = self.config.n_embd;
        let starts: Vec<usize> = seqs.iter().map(|s| s.cache.len()).collect();
        let rows: Vec<(usize, usize)> = seqs // (sequence, position) of each new token
            .iter()
            .enumerate()
            .flat_map(|(i, s)| {
                let start = s.cache.len();
                (start..start + s.tokens.len()).map(move |pos| (i, pos))
            })
            .collect();
        let n = rows.len();
        // The embeddings: token row plus position row.
        let mut x = Array2::<f32>::zeros((n, c)); // (N, C)
        let tokens = seqs.iter().flat_map(|s| s.tokens.iter());
        for ((mut xr, &tok), &(_, pos)) in x.rows_mut().into_iter().zip(tokens).zip(&rows) {
            let xr = xr.as_slice_mut().expect("a row of a standard-layout array");
            self.wte.row(tok as usize, xr);
            xr.iter_mut()
                .zip(self.wpe.row(pos))
                .for_each(|(a, &b)| *a += b);
        }
        let mut ln = Array2::<f32>::zeros((n, c)); // (N, C)
        let mut qkv = Array2::<f32>::zeros((n, 3 * c)); // (N, 3C)
        let mut y = Array2::<f32>::zeros((n, c)); // (N, C)
        let mut proj = Array2::<f32>::zeros((n, c)); // (N, C)
        let mut fc = Array2::<f32>::zeros((n, 4 * c)); // (N, 4C)
        for (l, block) in self.blocks.iter().enumerate() {
            layernorm(&mut ln, &x, &block.ln_1);
            linear(&block.c_attn, ln.view(), qkv.view_mut()); // (N, C) -> (N, 3C)
            for (qkv_row, &(i, pos)) in qkv.rows().into_iter().zip(&rows) {
                let qkv_row = qkv_row.to_slice().expect("a standard-layout row");
                seqs[i]
                    .cache
                    .store(l, pos, &qkv_row[c..2 * c], &qkv_row[2 * c..]);
            }
            let caches: Vec<&KvCache> = seqs.iter().map(|s| &*s.cache).collect();
            attention(&mut y, &qkv, &rows, &caches, l, self.config.n_head); // (N, 3C) -> (N, C)
            linear(&block.attn_proj, y.view(), proj.view_mut()); // (N, C) -> (N, C)
            x += &proj; // the residual stream
            layernorm(&mut ln, &x, &block.ln_2);
            linear(&block.c_fc, ln.view(), fc.view_mut()); // (N, C) -> (N, 4C)
            fc.mapv_inplace(gelu);
            linear(&block.mlp_proj, fc.view(), proj.view_mut()); // (N, 4C) -> (N, C)
            x += &proj;
        }
        for (s, t0) in seqs.iter_mut().zip(&starts) {
            s.cache.advance(s.tokens.len());
            debug_assert_eq!(s.cache.len(), t0 + s.tokens.len());
        }
        let picked = match want {
            Logits::All => x,
            Logits::Last => {
                let mut ends = seqs.iter().scan(0, |end, s| {
                    *end += s.tokens.len();
                    Some(*end - 1)
                });
                let ends: Vec<usize> = ends.by_ref().collect();
                x.select(Axis(0), &ends)
            }
        };
        let mut lnf = Array2::<f32>::zeros(picked.dim());
        layernorm(&mut lnf, &picked, &self.ln_f);
        let mut logits = Array2::<f32>::zeros((lnf.nrows(), self.config.vocab_size)); // (B or N, V)
        project(&self.wte, lnf.view(), logits.view_mut()); // the tied output layer: x · wteᵀ
        Ok(logits)
    }
    // ANCHOR_END: forward

    fn check(&self, seqs: &[Segment<'_>]) -> Result<(), DecodeError> {
        let v = self.config.vocab_size;
        for s in seqs {
            if s.cache.n_layer() != self.config.n_layer {
                return Err(DecodeError::CacheShape {
                    expected: self.config.n_layer,
                    found: s.cache.n_layer(),
                });
            }
            if let Some(&id) = s.tokens.iter().find(|&&id| id as usize >= v) {
                return Err(DecodeError::Token { id, vocab_size: v });
            }
            let capacity = s.cache.capacity().min(self.config.block_size);
            if s.cache.len() + s.tokens.len() > capacity {
                return Err(DecodeError::ContextFull {
                    len: s.cache.len(),
                    adding: s.tokens.len(),
                    capacity,
                    last: self.config.block_size - 1,
                });
            }
        }
        Ok(())
    }
}

/// LayerNorm of every row.
fn layernorm(out: &mut Array2<f32>, x: &Array2<f32>, p: &LayerNormParams) {
    let (w, b) = (p.weight.as_slice().unwrap(), p.bias.as_slice().unwrap());
    for (mut o, xr) in out.rows_mut().into_iter().zip(x.rows()) {
        let (o, xr) = (o.as_slice_mut().unwrap(), xr.to_slice().unwrap());
        simd(
            #[inline(always)]
            || layernorm_row(o, xr, w, b),
        );
    }
}

/// `out = x · Wᵀ`, by [`WeightMatrix::matvec`] for one row (each weight read
/// once) and [`WeightMatrix::matmul`] for several.
fn project(w: &WeightMatrix, x: ArrayView2<f32>, mut out: ArrayViewMut2<f32>) {
    if x.nrows() == 1 {
        let xr = x.row(0);
        let mut o = out.row_mut(0);
        w.matvec(xr.to_slice().unwrap(), o.as_slice_mut().unwrap());
    } else {
        w.matmul(x, out);
    }
}

/// A linear layer: `out = x · Wᵀ + b`.
fn linear((w, b): &(WeightMatrix, Array1<f32>), x: ArrayView2<f32>, mut out: ArrayViewMut2<f32>) {
    project(w, x, out.view_mut());
    out += b;
}

// ANCHOR: attention
/// Attention for each new token: its query against its own sequence's
/// cached keys up to its own position, softmax, and the weighted sum of the
/// cached values. `rows[r]` is `(sequence, position)` of new token `r`.
fn attention(
    y: &mut Array2<f32>,
    qkv: &Array2<f32>,
    rows: &[(usize, usize)],
    caches: &[&KvCache],
    layer: usize,
    n_head: usize,
) {
    let c = y.ncols();
    let hs = c / n_head;
    let scale = 1.0 / (hs as f32).sqrt();
    let one = |scores: &mut Vec<f32>, unit: usize, out: &mut [f32]| {
        let (r, h) = (unit / n_head, unit % n_head);
        let (seq, pos) = rows[r];
        let q = &qkv.row(r).to_slice().unwrap()[h * hs..(h + 1) * hs]; // (hs)
        let (keys, values) = caches[seq].head(layer, h, pos + 1); // (pos + 1, hs) each
        simd(
            #[inline(always)]
            || {
                scores.clear();
                scores.extend(
                    keys.chunks_exact(hs)
                        .map(|k| scale * sum_zip(q, k, |a, b| a * b)),
                );
                let m = max(scores);
                scores.iter_mut().for_each(|s| *s = fast_exp(*s - m));
                let inv = 1.0 / sum_map(scores, |e| e);
                out.fill(0.0);
                for (&w, v) in scores.iter().zip(values.chunks_exact(hs)) {
                    let w = w * inv;
                    out.iter_mut().zip(v).for_each(|(o, &v)| *o += w * v);
                }
            },
        )
    };
    let out = y.as_slice_mut().expect("a standard-layout array");
    let work: usize = rows.iter().map(|&(_, pos)| pos + 1).sum::<usize>() * c;
    if work < 1 << 16 {
        let mut scores = Vec::new();
        for (unit, o) in out.chunks_exact_mut(hs).enumerate() {
            one(&mut scores, unit, o);
        }
    } else {
        pool().install(|| {
            out.par_chunks_exact_mut(hs)
                .enumerate()
                .for_each_init(Vec::new, |scores, (unit, o)| one(scores, unit, o))
        });
    }
}
// ANCHOR_END: attention

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, s};

    /// A model whose next token depends strongly on its context (weights ten
    /// times GPT-2's initial scale).
    fn opinionated(config: GptConfig) -> Gpt {
        let mut params = Gpt::new(config, 3).unwrap().params().clone();
        for (name, mut tensor) in params.tensors_mut() {
            if !name.contains("ln_") {
                tensor.mapv_inplace(|x| 10.0 * x);
            }
        }
        Gpt::from_params(config, params).unwrap()
    }

    fn config() -> GptConfig {
        GptConfig {
            vocab_size: 40,
            block_size: 16,
            n_layer: 2,
            n_head: 4,
            n_embd: 32,
        }
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    #[test]
    fn matches_the_training_forward_pass_at_every_position() {
        let gpt = opinionated(config());
        let dec = Decoder::new(&gpt, Format::F32).unwrap();
        let tokens: Vec<u32> = (0..16).map(|i| (i * 7 + 3) % 40).collect();
        let idx = Array2::from_shape_vec((1, 16), tokens.clone()).unwrap();
        let (want, _) = gpt.forward(&idx, None).unwrap();
        let mut cache = dec.new_cache();
        let all = dec
            .forward(
                &mut [Segment {
                    cache: &mut cache,
                    tokens: &tokens,
                }],
                Logits::All,
            )
            .unwrap();
        let d = max_diff(all.as_slice().unwrap(), want.as_slice().unwrap());
        assert!(d < 1e-4, "prefill differs by {d}");
        // One token at a time through the cache: the same logits.
        let mut cache = dec.new_cache();
        for (t, tok) in tokens.iter().enumerate() {
            let step = dec
                .forward(
                    &mut [Segment {
                        cache: &mut cache,
                        tokens: &[*tok],
                    }],
                    Logits::Last,
                )
                .unwrap();
            let d = max_diff(
                step.as_slice().unwrap(),
                want.slice(s![0, t, ..]).as_slice().unwrap(),
            );
            assert!(d < 1e-4, "position {t} differs by {d}");
        }
        assert_eq!(cache.len(), 16);
    }

    #[test]
    fn sequences_of_a_batch_do_not_see_each_other() {
        let gpt = opinionated(config());
        let dec = Decoder::new(&gpt, Format::F32).unwrap();
        let (a, b): (Vec<u32>, Vec<u32>) = ((0..9).collect(), (20..24).collect());
        let (mut ca, mut cb) = (dec.new_cache(), dec.new_cache());
        let both = dec
            .forward(
                &mut [
                    Segment {
                        cache: &mut ca,
                        tokens: &a,
                    },
                    Segment {
                        cache: &mut cb,
                        tokens: &b,
                    },
                ],
                Logits::Last,
            )
            .unwrap();
        for (row, seq) in both.rows().into_iter().zip([&a, &b]) {
            let alone = dec.logits_uncached(seq).unwrap();
            assert!(max_diff(row.as_slice().unwrap(), &alone) < 1e-5);
        }
        // Then one more token each, at different lengths.
        let next = dec
            .forward(
                &mut [
                    Segment {
                        cache: &mut ca,
                        tokens: &[5],
                    },
                    Segment {
                        cache: &mut cb,
                        tokens: &[6],
                    },
                ],
                Logits::Last,
            )
            .unwrap();
        let a5: Vec<u32> = a.iter().copied().chain([5]).collect();
        let b6: Vec<u32> = b.iter().copied().chain([6]).collect();
        assert!(
            max_diff(
                next.row(0).as_slice().unwrap(),
                &dec.logits_uncached(&a5).unwrap()
            ) < 1e-5
        );
        assert!(
            max_diff(
                next.row(1).as_slice().unwrap(),
                &dec.logits_uncached(&b6).unwrap()
            ) < 1e-5
        );
    }

    #[test]
    fn a_full_cache_or_a_bad_token_is_refused_and_changes_nothing() {
        let dec = Decoder::new(&opinionated(config()), Format::F32).unwrap();
        let mut cache = dec.new_cache();
        let ten: Vec<u32> = (0..10).collect();
        dec.forward(
            &mut [Segment {
                cache: &mut cache,
                tokens: &ten,
            }],
            Logits::Last,
        )
        .unwrap();
        let err = dec
            .forward(
                &mut [Segment {
                    cache: &mut cache,
                    tokens: &ten,
                }],
                Logits::Last,
            )
            .unwrap_err();
        assert_eq!(
            err,
            DecodeError::ContextFull {
                len: 10,
                adding: 10,
                capacity: 16,
                last: 15
            }
        );
        assert!(
            err.to_string().contains("10 more tokens do not fit"),
            "{err}"
        );
        let err = dec
            .forward(
                &mut [Segment {
                    cache: &mut cache,
                    tokens: &[40],
                }],
                Logits::Last,
            )
            .unwrap_err();
        assert_eq!(
            err,
            DecodeError::Token {
                id: 40,
                vocab_size: 40
            }
        );
        assert_eq!(cache.len(), 10);
    }
}
