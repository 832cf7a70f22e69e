//! The experiments and figures of *Build Your Own AI*, run on the model in
//! [`listings`].
//!
//! `listings` is the model a reader copies into a project of their own; this
//! crate is everything else the chapters run: measurements, controls,
//! comparisons, and the figures drawn from them. One module per chapter,
//! named as the chapter's file is (`src/ch03-attention.md` <->
//! [`attention`]), plus what several chapters share:
//!
//! | module | what it holds | chapter |
//! |---|---|---|
//! | [`tokens`] | the vocabulary size chosen by measurement; tokens per language | 1 |
//! | [`embeddings`] | inside trained embeddings: neighbours, analogies, a 2-D projection, positions | 2 |
//! | [`attention`] | one shared matrix for queries and keys against two, attention maps, the quadratic cost | 3 |
//! | [`transformer`] | where the parameters are, toy model to GPT-2 XL | 4 |
//! | [`training`] | optimisers compared, the schedule, overfitting, the loss curve | 5 |
//! | [`finetuning`] | instruction data from the world's towns, tuning runs, answers scored | 6 |
//! | [`inference`] | samples measured, beams, the cache, quantisation, speculative decoding, batching | 7 |
//! | [`limits`] | what the architecture cannot do: facts seen once or never, calibration, the reversal curse, longer sums, spelling through BPE | 8 |
//! | [`scaling`] | the ledger of a training run (FLOPs, memory and time, toy model to 70B, checked against a timed step); the scaling sweep and the laws fitted to it; the modern block, one change at a time; bf16 and fp16 training simulated, loss scaling; FlashAttention's tiled arithmetic; the book model handed to transformers | 9 |
//! | [`one_page`] | the whole model in one file of plain Rust, trained beside the library | appendix A |
//! | [`book_model`] | the book's trained model: trained once, cached on disk, shared by chapters 2-9 | 2-9 |
//! | [`greedy`] | greedy continuations of many prompts at once through the KV-cached decoder, with the distributions each token came from | 6, 8 |
//! | [`cache`] | results trained once and kept on disk, keyed by the code and settings that made them | all |
//! | [`plot`] | line, bar, heat-map and scatter charts as SVG | all |
//! | [`figures`] | every figure of the book and the run that draws it | all |

#![warn(missing_docs)]

pub mod attention;
pub mod book_model;
pub mod cache;
pub mod embeddings;
pub mod figures;
pub mod finetuning;
pub mod greedy;
pub mod inference;
pub mod limits;
pub mod one_page;
pub mod plot;
pub mod scaling;
pub mod tokens;
pub mod training;
pub mod transformer;
