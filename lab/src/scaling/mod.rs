//! Chapter 9's experiments: what it takes to go from the book's toy model
//! to a production one, computed by the book's code and checked against
//! measurements where the book's model allows, one file per question.
//!
//! | file | what it holds |
//! |---|---|
//! | [`handoff`] | the book model handed to Hugging Face `transformers`: its folder, and the book's own logits, continuation and token ids for `cargo xtask check-hf` to compare |
//! | [`ledger`] | the ledger of a training run: FLOPs per token, bytes of training state and activations, time to train, toy model to 70B; a training step timed and its peak memory measured |
//! | [`modern`] | the modern block one change at a time (RMSNorm, SwiGLU, RoPE, grouped-query attention, no biases): parameters, loss after the same steps, speed, KV-cache bytes |
//! | [`sweep`] | the scaling sweep: small models trained at fixed compute budgets, and one trained on repeated text with the same compute (trained once, cached) |
//! | [`laws`] | what the sweep says: the compute-optimal size of each budget, `L(N)` and `L(N, D)` fitted, the repetition runs; the `sweep` command's report and the figures |
//! | [`fit`] | least-squares fits of the scaling laws, in plain Rust |
//! | [`precision`] | bf16 and fp16 rounding written by hand; mixed-precision training simulated (16-bit passes, `f32` master weights), underflow, overflow and dynamic loss scaling |
//! | [`flash`] | FlashAttention's arithmetic: causal attention by tiles with the online softmax, never holding the `(T, T)` matrix, against the library's |

pub mod fit;
pub mod flash;
pub mod handoff;
pub mod laws;
pub mod ledger;
pub mod modern;
pub mod precision;
pub mod sweep;
