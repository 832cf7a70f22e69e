//! Chapter 5: training. [`step`] is one optimisation step (forward,
//! backward, clipping, AdamW); [`data`] turns text into batches;
//! [`checkpoint`] saves and loads models with their optimiser.

pub mod book;
pub mod checkpoint;
pub mod data;
pub mod figures;
pub mod run;
pub mod step;
