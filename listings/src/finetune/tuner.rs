//! One fine-tuning step, whatever trains: every weight, the last block, a
//! LoRA adapter, or nothing of the model (a new head alone).
//!
//! A [`FineTuner`] is chapter 5's trainer with two things opened up: the
//! loss is given as a function of the forward pass (so that a masked loss,
//! a preference loss or a classifier's loss can drive it), and the
//! parameters that train are chosen by [`Method`]. The model's backward
//! pass is run whole in every case; what is frozen is only left out of the
//! update (at this model's size the backward pass through frozen layers
//! costs less than keeping two versions of it).

use ndarray::{Array2, Array3, ArrayRef2};

use super::lora::{Lora, LoraConfig, LoraError};
use super::loss::{token_nll, weighted_nll, weighted_nll_backward};
use crate::finetune::chat::LmBatch;
use crate::model::{ActivationGrads, Activations, Gpt, GptParams, ModelError};
use crate::optim::{AdamW, AdamWConfig, Param, clip_grad_norm};
use crate::train::step::{TrainError, adamw_params, finite};

// ANCHOR: method
/// What a fine-tuning run changes.
#[derive(Clone, Debug, PartialEq)]
pub enum Method {
    /// Every parameter.
    Full,
    /// The last block and the final LayerNorm; the rest, embeddings
    /// included, stays as it was.
    LastBlock,
    /// Nothing of the model: LoRA adapters beside the weights it names.
    Lora(LoraConfig),
    /// Nothing of the model at all (a head on top trains by itself).
    Frozen,
}
// ANCHOR_END: method

impl Method {
    /// The name the command line uses: `full`, `last-block`, `lora`, `frozen`.
    pub fn name(&self) -> &'static str {
        match self {
            Method::Full => "full",
            Method::LastBlock => "last-block",
            Method::Lora(_) => "lora",
            Method::Frozen => "frozen",
        }
    }
}

/// A model being fine-tuned, with everything a step needs.
pub struct FineTuner {
    /// The weights it started from (LoRA folds its adapters into these).
    base: GptParams,
    /// The model as it runs: the base with the changes so far.
    gpt: Gpt,
    method: Method,
    /// The adapters and their gradients, with [`Method::Lora`].
    lora: Option<(Lora, Lora)>,
    grads: GptParams,
    acts: Activations,
    dacts: ActivationGrads,
    optimizer: AdamW,
}

impl FineTuner {
    /// A fine-tuner of `gpt` by `method`, with a fresh AdamW (and, for
    /// LoRA, fresh adapters whose `A` is drawn with `seed`).
    pub fn new(gpt: Gpt, method: Method, adamw: AdamWConfig, seed: u64) -> Result<Self, LoraError> {
        let config = *gpt.config();
        let lora = match &method {
            Method::Lora(cfg) => {
                let lora = Lora::new(&config, cfg.clone(), seed)?;
                let grads = lora.zeros_like();
                Some((lora, grads))
            }
            _ => None,
        };
        Ok(Self {
            base: gpt.params().clone(),
            grads: GptParams::zeros_arch(&config, gpt.arch()),
            acts: Activations::with_arch(&config, gpt.arch(), 0, 0),
            dacts: ActivationGrads::with_arch(&config, gpt.arch(), 0, 0),
            optimizer: AdamW::new(adamw),
            gpt,
            method,
            lora,
        })
    }

    /// The model as it now runs (for LoRA, with the adapters merged in).
    pub fn gpt(&self) -> &Gpt {
        &self.gpt
    }

    /// The adapters, with [`Method::Lora`].
    pub fn lora(&self) -> Option<&Lora> {
        self.lora.as_ref().map(|(lora, _)| lora)
    }

    /// The method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// How many numbers the method trains.
    pub fn trainable_parameters(&self) -> usize {
        match &self.lora {
            Some((lora, _)) => lora.num_parameters(),
            None => self.trainable(&self.base).map(|(s, _)| s.len()).sum(),
        }
    }

    /// The bytes of AdamW's running averages (`m` and `v`, f32), once a
    /// step has sized them: two numbers per trainable number.
    pub fn optimizer_state_bytes(&self) -> usize {
        let floats: usize = (self.optimizer.m.iter().chain(&self.optimizer.v))
            .map(Vec::len)
            .sum();
        floats * size_of::<f32>()
    }

    /// The forward pass alone on `idx` `(B, T)`: the activations, logits
    /// and `ln_f`'s output included.
    pub fn forward(&mut self, idx: &ArrayRef2<u32>) -> Result<&Activations, ModelError> {
        self.gpt.forward_with(&mut self.acts, idx, None)?;
        Ok(&self.acts)
    }

    // ANCHOR: step_lm
    /// One step on the loss `Σ weights · (-ln p(target))` of an
    /// [`LmBatch`]: the response-only loss of instruction tuning, or with
    /// every weight equal, ordinary next-token training. Returns the loss
    /// before the update.
    pub fn step_lm(&mut self, batch: &LmBatch, lr: f32, grad_clip: f32) -> Result<f32, TrainError> {
        self.step_logits(&batch.idx, &batch.targets, lr, grad_clip, |nll| {
            (weighted_nll(nll, &batch.weights), batch.weights.clone())
        })
    }

    /// One step on any loss that is a weighted sum of the positions'
    /// `-ln p(target)`: `objective` gets those, `(B, T)`, and returns the
    /// loss and the weights (the loss's gradient with respect to each).
    pub fn step_logits(
        &mut self,
        idx: &ArrayRef2<u32>,
        targets: &ArrayRef2<u32>,
        lr: f32,
        grad_clip: f32,
        objective: impl FnOnce(&Array2<f32>) -> (f32, Array2<f32>),
    ) -> Result<f32, TrainError> {
        let step = self.optimizer.t;
        self.gpt.check_input(idx, Some(targets))?;
        self.forward(idx)?;
        let nll = token_nll(&self.acts.logits, targets); // (B, T)
        let (loss, weights) = objective(&nll);
        let loss = finite(loss, "loss", step, lr)?;
        self.size_dacts();
        weighted_nll_backward(
            &mut self.dacts.dlogits,
            &self.acts.logits,
            targets,
            &weights,
        );
        self.grads.fill_zero();
        self.gpt
            .backward_from_logits(&mut self.grads, &mut self.dacts, &self.acts);
        self.update(lr, grad_clip)?;
        Ok(loss)
    }
    // ANCHOR_END: step_lm

    // ANCHOR: step_hidden
    /// One step on a loss computed from `ln_f`'s output (a head other than
    /// `lm_head`): `head` gets that output, `(B, T, C)`, and returns the
    /// loss after writing its gradient into the second array. With
    /// [`Method::Frozen`] the model's backward pass is skipped.
    pub fn step_hidden(
        &mut self,
        idx: &ArrayRef2<u32>,
        lr: f32,
        grad_clip: f32,
        head: impl FnOnce(&Array3<f32>, &mut Array3<f32>) -> f32,
    ) -> Result<f32, TrainError> {
        let step = self.optimizer.t;
        self.forward(idx)?;
        self.size_dacts();
        self.dacts.dlnf.fill(0.0);
        let loss = finite(head(&self.acts.lnf, &mut self.dacts.dlnf), "loss", step, lr)?;
        if self.method != Method::Frozen {
            self.grads.fill_zero();
            self.gpt
                .backward_from_hidden(&mut self.grads, &mut self.dacts, &self.acts);
            self.update(lr, grad_clip)?;
        }
        Ok(loss)
    }
    // ANCHOR_END: step_hidden

    /// Sizes the activations' gradients for the last forward pass's batch.
    fn size_dacts(&mut self) {
        let (b, t) = self.acts.shape();
        if self.dacts.shape() != (b, t) {
            self.dacts = ActivationGrads::with_arch(self.gpt.config(), self.gpt.arch(), b, t);
        }
    }

    /// The tensors `method` trains among `params`' (in [`GptParams::slices`]
    /// order), with their number of dimensions.
    fn trainable<'a>(&self, params: &'a GptParams) -> impl Iterator<Item = (&'a [f32], usize)> {
        let keep = self.keeps();
        params
            .slices()
            .enumerate()
            .filter(move |(i, _)| keep(*i))
            .map(|(_, s)| s)
    }

    /// Whether the tensor at index `i` of [`GptParams::slices`] trains.
    fn keeps(&self) -> impl Fn(usize) -> bool + use<> {
        // slices: wte, wpe, 12 per block, then ln_f's two.
        let n_layer = self.gpt.config().n_layer;
        let total = 2 + 12 * n_layer + 2;
        let last_block = 2 + 12 * (n_layer - 1);
        let method = self.method.clone();
        move |i| match method {
            Method::Full => true,
            Method::LastBlock => i >= last_block && i < total,
            Method::Lora(_) | Method::Frozen => false,
        }
    }

    // ANCHOR: update
    /// Clips the trainable gradients to a global norm of `grad_clip` (0: no
    /// clipping) and takes one AdamW step on the trainable parameters; for
    /// LoRA, the adapters' gradients come from the merged weights'
    /// ([`Lora::grads_from_merged`]) and the new adapters are merged again.
    fn update(&mut self, lr: f32, grad_clip: f32) -> Result<(), TrainError> {
        let step = self.optimizer.t;
        if !(lr.is_finite() && lr >= 0.0) {
            return Err(TrainError::BadLearningRate { step, lr });
        }
        let max_norm = if grad_clip > 0.0 {
            grad_clip
        } else {
            f32::INFINITY
        };
        self.optimizer.config.lr = lr;
        if let Some((lora, dlora)) = &mut self.lora {
            dlora.slices_mut().for_each(|g| g.fill(0.0));
            lora.grads_from_merged(&self.grads, dlora);
            let norm = clip_grad_norm(&mut dlora.slices_mut().collect::<Vec<_>>(), max_norm);
            finite(norm, "gradient norm", step, lr)?;
            let mut params: Vec<Param> = (lora.slices_mut().zip(dlora.slices()))
                .map(|(value, grad)| Param {
                    value,
                    grad,
                    decay: true,
                })
                .collect();
            self.optimizer.step(&mut params);
            lora.merge_into(&self.base, self.gpt.params_mut());
            return Ok(());
        }
        let keep = self.keeps();
        let mut grads: Vec<&mut [f32]> = (self.grads.slices_mut().enumerate())
            .filter(|(i, _)| keep(*i))
            .map(|(_, (g, _))| g)
            .collect();
        let norm = clip_grad_norm(&mut grads, max_norm);
        finite(norm, "gradient norm", step, lr)?;
        let pairs = adamw_params(self.gpt.params_mut(), &self.grads);
        let mut params: Vec<Param> = (pairs.enumerate())
            .filter(|(i, _)| keep(*i))
            .map(|(_, param)| param)
            .collect();
        self.optimizer.step(&mut params);
        Ok(())
    }
    // ANCHOR_END: update
}
