//! Training: [`batches`] turns token ids into random training windows and
//! scores a model on a whole text; [`step`] is one optimisation step
//! (forward, backward, clipping, AdamW); [`run`] is the loop around it, with
//! the learning-rate schedule and evaluations.

pub mod batches;
pub mod run;
pub mod step;
