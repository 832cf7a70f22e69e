//! Chapter 6: fine-tuning a trained model — every weight, the last block,
//! or LoRA adapters; instruction tuning with the loss on the response
//! alone; preference tuning (DPO); a classifier head.
//!
//! | file | what it holds |
//! |---|---|
//! | [`loss`] | losses chosen token by token: `-ln p(target)` with a weight per position |
//! | [`chat`] | prompt/response records, the chat template, the response-only batch |
//! | [`lora`] | LoRA adapters: forward, backward, merging |
//! | [`dpo`] | preference tuning: the DPO loss and its gradient |
//! | [`classify`] | a classifier head on one position of the last hidden state |
//! | [`peft`] | adapters saved and loaded in Hugging Face PEFT's format |
//! | [`run`] | instruction-tuning and DPO runs over shuffled examples |
//! | [`tuner`] | one fine-tuning step for any [`tuner::Method`] |
//!
//! Shapes in comments: `B` batch, `T` time, `C` channels, `V` vocabulary,
//! `N` rows (`B·T` folded), `r` LoRA's rank.

pub mod chat;
pub mod classify;
pub mod dpo;
pub mod lora;
pub mod loss;
pub mod peft;
pub mod run;
pub mod tuner;
