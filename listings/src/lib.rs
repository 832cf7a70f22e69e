//! The complete small GPT of *Build Your Own AI*: the model and only the
//! model.
//!
//! Every function the book builds lives here, compiled and tested; the
//! chapters include it by anchor. The chapters' experiments and figures are
//! in a second crate of the book's repository (`lab`), which uses this one;
//! nothing here knows about them. Read the modules in book order:
//!
//! | module | what it holds | chapter |
//! |---|---|---|
//! | [`rng`] | seeded, portable randomness used everywhere | 0 |
//! | [`corpus`] | the book's own corpus: a small world's stories, facts and tasks | 0 |
//! | [`tokens`] | byte-level BPE, tiktoken's encodings reproduced, the book's tokenizer, character vocabularies | 1 |
//! | [`model`] | embeddings, attention, the transformer: the GPT forward pass and its backward pass | 2-5 |
//! | [`parallel`] | the thread pool, the shared matrix product and the wide-vector loops the model and optimiser run on | 4, 5 |
//! | [`autograd`] | a scalar autograd engine, for intuition | 5 |
//! | [`optim`] | SGD, momentum, AdamW, the learning-rate schedule, clipping | 5 |
//! | [`train`] | batches, one training step, the training loop, the memory a run will need | 5 |
//! | [`checkpoint`] | saving and loading a model with its tokenizer and optimiser (safetensors) | 5 |
//! | [`finetune`] | LoRA, instruction tuning with a response-only loss, DPO, a classifier head, PEFT adapters | 6 |
//! | [`infer`] | weight matrices quantised to 8 or 4 bits and multiplied as they are | 7 |
//! | [`sample`] | text from a trained model: temperature, top-k, greedy | 5, 7 |
//! | [`export`] | a model handed to another engine: a Hugging Face GPT-2 folder (config, weights, tokenizer) | 9 |
//!
//! The command-line tool (`src/main.rs`, behind the default `cli` feature)
//! trains, samples and evaluates with these modules.
//!
//! Shape legend used in comments throughout: `B` batch, `T` time (sequence
//! length), `C` channels (`n_embd`), `V` vocabulary size, `nh` heads, `hs`
//! head size (`C / nh`).

#![warn(missing_docs)]

pub mod autograd;
pub mod checkpoint;
pub mod corpus;
pub mod export;
pub mod finetune;
pub mod infer;
pub mod model;
pub mod optim;
pub mod parallel;
pub mod rng;
pub mod sample;
pub mod tokens;
pub mod train;

/// The crate's array library, re-exported so a snippet can name it as
/// `listings::ndarray` without a dependency of its own.
pub use ndarray;
