//! Chapter 9's experiments: what it takes to go from the book's toy model
//! to a production one, computed by the book's code and checked against
//! measurements where the book's model allows, one file per question.
//!
//! | file | what it holds |
//! |---|---|
//! | [`ledger`] | the ledger of a training run: FLOPs per token, bytes of training state and activations, time to train, toy model to 70B; a training step timed and its peak memory measured |
//! | [`precision`] | bf16 and fp16 rounding written by hand; mixed-precision training simulated (16-bit passes, `f32` master weights), underflow, overflow and dynamic loss scaling |
//! | [`flash`] | FlashAttention's arithmetic: causal attention by tiles with the online softmax, never holding the `(T, T)` matrix, against the library's |

pub mod flash;
pub mod ledger;
pub mod precision;
