//! One training step, as the training loop runs it: forward, backward,
//! clip, update; every array allocated once; a diverging run stopped before
//! it spoils the parameters.
//!
//! A [`Trainer`] owns the model, the gradients (a [`GptParams`] of the same
//! shapes), the activations of the forward pass and their gradients, and
//! AdamW with its running averages. [`Trainer::step`] is then:
//!
//! 1. zero the gradients (the backward pass adds into them);
//! 2. the forward pass on a batch, keeping every activation, and the loss;
//! 3. the backward pass ([`Gpt::backward`]);
//! 4. clip the gradients to a global norm ([`clip_grad_norm`]);
//! 5. one AdamW step at the learning rate of this step.
//!
//! If the loss or the gradients' norm is not a finite number, the model has
//! diverged: the step returns [`TrainError::Diverged`] *before* step 5, so
//! the parameters keep their values from the last good step.
//!
//! ```
//! use listings::model::{Gpt, GptConfig};
//! use listings::optim::AdamWConfig;
//! use listings::train::step::Trainer;
//! use ndarray::array;
//! let gpt = Gpt::new(GptConfig::toy(10), 0)?;
//! let mut trainer = Trainer::new(gpt, AdamWConfig::default(), 1, 4)?;
//! let (idx, targets) = (array![[1_u32, 2, 3, 4]], array![[2_u32, 3, 4, 5]]);
//! let first = trainer.step(&idx, &targets, 1e-2, 1.0)?;
//! for _ in 0..20 {
//!     trainer.step(&idx, &targets, 1e-2, 1.0)?;
//! }
//! assert!(trainer.evaluate(&idx, &targets)? < first.loss / 2.0);
//! # Ok::<(), listings::train::step::TrainError>(())
//! ```

use std::time::{Duration, Instant};

use ndarray::ArrayRef2;
use thiserror::Error;

use crate::model::{ActivationGrads, Activations, Gpt, GptParams, ModelError};
use crate::optim::{AdamW, AdamWConfig, Param, clip_grad_norm};
use crate::parallel::pool;

/// What one training step measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepStats {
    /// The mean cross-entropy of the batch, before the update.
    pub loss: f32,
    /// The gradients' global norm before clipping (spikes in it come
    /// before divergence).
    pub grad_norm: f32,
    /// How long each part of the step took.
    pub times: StepTimes,
}

/// The wall-clock time of each part of a step.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepTimes {
    /// The forward pass, with the loss.
    pub forward: Duration,
    /// Zeroing the gradients and the backward pass.
    pub backward: Duration,
    /// Clipping and the AdamW update.
    pub optimizer: Duration,
}

/// Why a training step could not be taken.
#[derive(Clone, Debug, Error, PartialEq)]
pub enum TrainError {
    /// The batch does not fit the model.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The loss or the gradients are not finite numbers: training has
    /// diverged. The update was not applied.
    #[error(
        "step {step}: the {quantity} is {value} (learning rate {lr:e}): training has diverged. \
         The update was not applied, so the parameters keep their values from the last good \
         step; try a lower learning rate (or a smaller gradient clip)"
    )]
    Diverged {
        /// The step that failed (the number of updates made before it).
        step: u64,
        /// `"loss"` or `"gradient norm"`.
        quantity: &'static str,
        /// The value found: NaN or infinite.
        value: f32,
        /// The learning rate this step would have used.
        lr: f32,
    },
    /// The learning rate is negative, infinite or NaN.
    #[error(
        "step {step}: the learning rate {lr} is not a finite number >= 0; \
         check the schedule's settings (--learning-rate, --min-lr)"
    )]
    BadLearningRate {
        /// The step that was about to run.
        step: u64,
        /// The learning rate given.
        lr: f32,
    },
    /// The gradient clip is negative or NaN.
    #[error("the gradient clip {grad_clip} must be a number >= 0 (0 turns clipping off)")]
    BadGradClip {
        /// The clip given.
        grad_clip: f32,
    },
    /// Optimiser state given to [`Trainer::from_parts`] that does not
    /// belong to the model.
    #[error("the optimiser state does not fit the model: {reason}")]
    OptimizerState {
        /// What does not fit, naming the tensor.
        reason: String,
    },
}

// ANCHOR: trainer
/// A model with everything training it needs, allocated once.
pub struct Trainer {
    gpt: Gpt,
    /// d(loss)/d(parameter), the shapes of the parameters.
    grads: GptParams,
    /// The forward pass's intermediate arrays, for the backward pass.
    acts: Activations,
    /// Their gradients: the backward pass's working space.
    dacts: ActivationGrads,
    optimizer: AdamW,
    /// Two lists of borrowed slices, kept between steps so that building
    /// them does not allocate (see [`recycle`]).
    param_list: Vec<Param<'static>>,
    grad_list: Vec<&'static mut [f32]>,
}
// ANCHOR_END: trainer

impl Trainer {
    /// A trainer for batches of `batch_size` sequences of `block_size`
    /// tokens (at most the model's `block_size`), with a fresh AdamW.
    ///
    /// Every array a step needs is allocated here; a step allocates nothing
    /// (matrixmultiply aside, which allocates its own packing space).
    pub fn new(
        gpt: Gpt,
        adamw: AdamWConfig,
        batch_size: usize,
        block_size: usize,
    ) -> Result<Self, TrainError> {
        let config = *gpt.config();
        if batch_size == 0 || block_size == 0 {
            let (batch, time) = (batch_size, block_size);
            return Err(ModelError::EmptyInput { batch, time }.into());
        }
        if block_size > config.block_size {
            let (time, block_size) = (block_size, config.block_size);
            return Err(ModelError::SequenceTooLong { time, block_size }.into());
        }
        let arch = *gpt.arch();
        let mut trainer = Self::from_parts(gpt, AdamW::new(adamw))?;
        trainer.acts = Activations::with_arch(&config, &arch, batch_size, block_size);
        trainer.dacts = ActivationGrads::with_arch(&config, &arch, batch_size, block_size);
        Ok(trainer)
    }

    /// A trainer resuming from a model and its optimiser (as a checkpoint
    /// stores them). `optimizer`'s running averages must have one entry per
    /// parameter tensor, in the order of [`GptParams::tensors`], each as
    /// long as its tensor, or be empty (a fresh optimiser). The working
    /// arrays are sized by the first batch.
    pub fn from_parts(gpt: Gpt, mut optimizer: AdamW) -> Result<Self, TrainError> {
        let config = *gpt.config();
        let lengths: Vec<usize> = gpt.params().slices().map(|(t, _)| t.len()).collect();
        if optimizer.m.is_empty() && optimizer.v.is_empty() {
            optimizer.m = lengths.iter().map(|&n| vec![0.0; n]).collect();
            optimizer.v = optimizer.m.clone();
        }
        check_moments(&gpt, &optimizer, &lengths)?;
        let arch = gpt.arch();
        Ok(Self {
            grads: GptParams::zeros_arch(&config, arch),
            acts: Activations::with_arch(&config, arch, 0, 0),
            dacts: ActivationGrads::with_arch(&config, arch, 0, 0),
            param_list: Vec::with_capacity(lengths.len()),
            grad_list: Vec::with_capacity(lengths.len()),
            gpt,
            optimizer,
        })
    }

    // ANCHOR: step
    /// One training step on a batch: forward, backward, clip the gradients'
    /// global norm to `grad_clip` (0: no clipping), AdamW at learning rate
    /// `lr`. Returns the batch's loss before the update and the gradients'
    /// norm.
    ///
    /// Shapes: `idx` and `targets` `(B, T)`. A loss or gradient norm that is
    /// not finite returns [`TrainError::Diverged`] and leaves the parameters
    /// and the optimiser as they were.
    pub fn step(
        &mut self,
        idx: &ArrayRef2<u32>,
        targets: &ArrayRef2<u32>,
        lr: f32,
        grad_clip: f32,
    ) -> Result<StepStats, TrainError> {
        let step = self.optimizer.t;
        if !(lr.is_finite() && lr >= 0.0) {
            return Err(TrainError::BadLearningRate { step, lr });
        }
        if grad_clip.is_nan() || grad_clip < 0.0 {
            return Err(TrainError::BadGradClip { grad_clip });
        }
        // Every parallel loop of the step runs on the model's worker threads:
        // moving onto them once, here, saves handing over each loop apart.
        pool().install(|| self.step_on_pool(idx, targets, lr, grad_clip))
    }

    /// [`Trainer::step`] after its arguments were checked, run on the
    /// [`pool`]'s threads.
    fn step_on_pool(
        &mut self,
        idx: &ArrayRef2<u32>,
        targets: &ArrayRef2<u32>,
        lr: f32,
        grad_clip: f32,
    ) -> Result<StepStats, TrainError> {
        let step = self.optimizer.t;
        let start = Instant::now();
        let loss = finite(self.evaluate(idx, targets)?, "loss", step, lr)?;
        let forward_done = Instant::now();
        self.grads.fill_zero();
        self.gpt
            .backward(&mut self.grads, &mut self.dacts, &self.acts);
        let backward_done = Instant::now();
        let grad_norm = finite(self.clip(grad_clip), "gradient norm", step, lr)?;
        self.update(lr);
        let times = StepTimes {
            forward: forward_done - start,
            backward: backward_done - forward_done,
            optimizer: backward_done.elapsed(),
        };
        Ok(StepStats {
            loss,
            grad_norm,
            times,
        })
    }
    // ANCHOR_END: step

    /// The loss of the model on a batch, without training: the forward pass
    /// alone. Shapes: `idx` and `targets` `(B, T)`.
    pub fn evaluate(
        &mut self,
        idx: &ArrayRef2<u32>,
        targets: &ArrayRef2<u32>,
    ) -> Result<f32, TrainError> {
        let (gpt, acts) = (&self.gpt, &mut self.acts);
        let loss = pool().install(|| gpt.forward_with(acts, idx, Some(targets)))?;
        Ok(loss.expect("a forward pass with targets has a loss"))
    }

    /// Clips the gradients to a global norm of `grad_clip` (0: no clipping)
    /// and returns their norm before clipping.
    fn clip(&mut self, grad_clip: f32) -> f32 {
        let max_norm = if grad_clip > 0.0 {
            grad_clip
        } else {
            f32::INFINITY
        };
        let mut grads = recycle(std::mem::take(&mut self.grad_list));
        grads.extend(self.grads.slices_mut().map(|(g, _)| g));
        let norm = clip_grad_norm(&mut grads, max_norm);
        self.grad_list = recycle(grads);
        norm
    }

    // ANCHOR: update
    /// One AdamW step with learning rate `lr`, weight decay for the tensors
    /// with two axes only ([`adamw_params`]).
    fn update(&mut self, lr: f32) {
        self.optimizer.config.lr = lr;
        let mut params = recycle(std::mem::take(&mut self.param_list));
        params.extend(adamw_params(self.gpt.params_mut(), &self.grads));
        self.optimizer.step(&mut params);
        self.param_list = recycle(params);
    }
    // ANCHOR_END: update

    /// The model being trained.
    pub fn gpt(&self) -> &Gpt {
        &self.gpt
    }

    /// The optimiser, with its running averages `m` and `v` (one entry per
    /// tensor of [`GptParams::tensors`]) and its step count `t`.
    pub fn optimizer(&self) -> &AdamW {
        &self.optimizer
    }

    /// The gradients of the last step, after clipping.
    pub fn gradients(&self) -> &GptParams {
        &self.grads
    }

    /// The activations of the last forward pass.
    pub fn activations(&self) -> &Activations {
        &self.acts
    }

    /// The number of updates made so far (AdamW's `t`).
    pub fn steps_done(&self) -> u64 {
        self.optimizer.t
    }

    /// The trained model, dropping everything else.
    pub fn into_gpt(self) -> Gpt {
        self.gpt
    }

    /// The model and the optimiser, to save them or to resume with
    /// [`Trainer::from_parts`].
    pub fn into_parts(self) -> (Gpt, AdamW) {
        (self.gpt, self.optimizer)
    }
}

// ANCHOR: step_reference
/// One training step written to be read: what [`Trainer::step`] does,
/// without its speed-ups. It allocates every array it needs at each call
/// and runs [`AdamW::step_reference`]; a test checks that it changes the
/// parameters exactly as [`Trainer::step`] does.
///
/// `max_norm` is the clip (`f32::INFINITY`: none). Returns the batch's loss
/// before the update and the gradients' norm before clipping. Shapes: `idx`
/// and `targets` `(B, T)`.
pub fn step_reference(
    gpt: &mut Gpt,
    optimizer: &mut AdamW,
    idx: &ArrayRef2<u32>,
    targets: &ArrayRef2<u32>,
    lr: f32,
    max_norm: f32,
) -> Result<(f32, f32), TrainError> {
    let config = *gpt.config();
    let ((b, t), step) = (idx.dim(), optimizer.t);
    // 1. The forward pass, keeping every activation, and the loss.
    let mut acts = Activations::new(&config, b, t);
    let loss = gpt.forward_with(&mut acts, idx, Some(targets))?;
    let loss = finite(loss.expect("targets were given"), "loss", step, lr)?;
    // 2. The backward pass, into gradients that start at zero.
    let mut grads = GptParams::zeros(&config);
    let mut dacts = ActivationGrads::new(&config, b, t);
    gpt.backward(&mut grads, &mut dacts, &acts);
    // 3. Clip all the gradients together to a global norm.
    let mut all_grads: Vec<&mut [f32]> = grads.slices_mut().map(|(g, _)| g).collect();
    let norm = clip_grad_norm(&mut all_grads, max_norm);
    let norm = finite(norm, "gradient norm", step, lr)?;
    // 4. One AdamW step; weight decay for the tensors with two axes only.
    optimizer.config.lr = lr;
    let mut params: Vec<Param> = adamw_params(gpt.params_mut(), &grads).collect();
    optimizer.step_reference(&mut params);
    Ok((loss, norm))
}

/// Each tensor of `params` with its gradient in `grads`, as AdamW takes
/// them. Weight decay applies to the tensors with two axes (the weight
/// matrices and the embeddings), not to biases and LayerNorms, as in
/// nanoGPT.
pub fn adamw_params<'a>(
    params: &'a mut GptParams,
    grads: &'a GptParams,
) -> impl Iterator<Item = Param<'a>> {
    let pairs = params.slices_mut().zip(grads.slices());
    pairs.map(|((value, ndim), (grad, _))| Param {
        value,
        grad,
        decay: ndim >= 2,
    })
}
// ANCHOR_END: step_reference

/// `value` if it is a finite number; if not, training has diverged at
/// `step` ([`TrainError::Diverged`]).
pub(crate) fn finite(
    value: f32,
    quantity: &'static str,
    step: u64,
    lr: f32,
) -> Result<f32, TrainError> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(TrainError::Diverged {
            step,
            quantity,
            value,
            lr,
        })
    }
}

/// Checks that AdamW's running averages have one entry per parameter
/// tensor, each as long as its tensor.
fn check_moments(gpt: &Gpt, optimizer: &AdamW, lengths: &[usize]) -> Result<(), TrainError> {
    let fail = |reason: String| Err(TrainError::OptimizerState { reason });
    for (name, moments) in [("m", &optimizer.m), ("v", &optimizer.v)] {
        if moments.len() != lengths.len() {
            let n = lengths.len();
            return fail(format!(
                "{name} has {} tensors but the model has {n}",
                moments.len()
            ));
        }
        for (i, (moment, &len)) in moments.iter().zip(lengths).enumerate() {
            if moment.len() != len {
                let tensor = &gpt.params().tensors()[i].0;
                let found = moment.len();
                return fail(format!(
                    "{name} for {tensor} has {found} numbers, not {len}"
                ));
            }
        }
    }
    Ok(())
}

// ANCHOR: recycle
/// An empty vector that reuses `v`'s allocation, for elements of another
/// type of the same size: here, the same list of borrowed slices, borrowed
/// again at the next step.
///
/// The optimiser wants all its tensors in one slice, each entry borrowing
/// the model and the gradients; those borrows end with the step, so the
/// list cannot be kept, but its memory can. (Collecting an emptied
/// `into_iter()` reuses the allocation when the sizes match, which is the
/// case here; if it did not, this would allocate and still be correct.)
fn recycle<T, U>(mut v: Vec<T>) -> Vec<U> {
    v.clear();
    v.into_iter()
        .map(|_| unreachable!("the vector is empty"))
        .collect()
}
// ANCHOR_END: recycle

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recycling_keeps_the_allocation() {
        let mut numbers = vec![1.0_f32, 2.0];
        let mut list: Vec<&mut [f32]> = Vec::with_capacity(8);
        list.push(&mut numbers);
        let address = list.as_ptr() as usize;
        let again: Vec<&mut [f32]> = recycle(list);
        assert_eq!(again.as_ptr() as usize, address);
        assert_eq!((again.len(), again.capacity()), (0, 8));
    }
}
