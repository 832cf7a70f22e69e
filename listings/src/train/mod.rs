//! Training: [`batches`] turns token ids into random training windows and
//! scores a model on a whole text; [`step`] is one optimisation step
//! (forward, backward, clipping, AdamW); [`run`] is the loop around it, with
//! the learning-rate schedule and evaluations; [`memory`] works out the
//! bytes a run will allocate, from its settings, before it allocates them.

pub mod batches;
pub mod memory;
pub mod run;
pub mod step;
