//! Chapter 5: training. [`data`] turns text into batches; [`checkpoint`]
//! saves and loads models with their optimiser.

pub mod checkpoint;
pub mod data;
