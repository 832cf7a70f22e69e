//! Chapter 7: inference, from the first token to the last.
//!
//! | file | what it adds |
//! |---|---|
//! | [`kv`] | the KV cache: keys and values kept instead of recomputed |
//! | [`decode`] | the model laid out for inference; a forward pass over the cache, for many sequences at once |
//! | [`quant`] | weight matrices in f32, int8, and llama.cpp's Q8_0 and Q4_0 blocks |
//! | [`sampler`] | from logits to a token: temperature, top-k, top-p, repetition penalty |
//! | [`generate`] | the generation loop: prefill, decode, stop conditions, streaming; beam search |
//! | [`speculative`] | a small model guesses, the big one checks |

//! Shapes in comments: `N` new tokens, `T` time (positions), `C` channels,
//! `V` vocabulary; a weight matrix is `(rows, cols)`, one row per output.

pub mod decode;
pub mod generate;
pub mod kv;
pub mod quant;
pub mod sampler;
pub mod speculative;
