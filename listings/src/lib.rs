//! The complete small GPT of *Build Your Own AI*, one module per chapter.
//!
//! Every function the book shows lives here, compiled and tested; the chapters
//! include it by anchor. Read the modules in book order:
//!
//! | module | chapter |
//! |---|---|
//! | [`rng`] | 0, seeded randomness used everywhere |
//! | [`data`] | 0, the book's own corpus |
//! | [`autograd`] | 5, a scalar autograd engine, for intuition |
//! | [`optim`] | 5, SGD, momentum, AdamW, the schedule, clipping |
//! | [`figures`] | all: SVG charts drawn from real runs |
//! | [`tokens`] | 1, byte-level BPE; tiktoken's encodings reproduced |
//! | [`model`] | 2-4, embeddings, attention, the transformer: the GPT forward pass |
//! | [`embeddings_lab`] | 2, looking inside trained embeddings: neighbours, analogies, a 2-D projection |
//! | [`attention_lab`] | 3, attention's experiments: one shared matrix for queries and keys against two, softmax saturation, attention maps, the quadratic cost |
//! | [`sample`] | 5, text from a trained model: temperature, top-k, greedy |
//! | [`train`] | 5, training: the step (backward, clipping, AdamW), batches, checkpoints |
//!
//! Shape legend used in comments throughout: `B` batch, `T` time (sequence
//! length), `C` channels (`n_embd`), `V` vocabulary size, `nh` heads, `hs`
//! head size (`C / nh`).

pub mod attention_lab;
pub mod autograd;
pub mod data;
pub mod embeddings_lab;
pub mod figures;
pub mod model;
pub mod optim;
pub mod rng;
pub mod sample;
pub mod tokens;
pub mod train;

/// The crate's array library, re-exported so a snippet can name it as
/// `listings::ndarray` without a dependency of its own.
pub use ndarray;
