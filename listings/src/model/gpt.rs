//! The whole GPT: embeddings, a stack of blocks, a final LayerNorm, logits,
//! and the loss; with every intermediate array kept for the backward pass,
//! and the backward pass itself, from the loss back to every parameter.

use ndarray::{Array2, Array3, Array4, ArrayRef2, ArrayRef3};
use thiserror::Error;

use super::attention::{attention_backward, attention_forward};
use super::config::{ConfigError, GptConfig};
use super::embeddings::{encoder_backward, encoder_forward};
use super::layers::{
    crossentropy_forward, crossentropy_softmax_backward, gelu_backward, gelu_forward,
    layernorm_backward, layernorm_forward, lm_head_backward, lm_head_forward, matmul_backward,
    matmul_forward, residual_forward,
};
use super::params::{BlockParams, GptParams};

/// What went wrong when building a model or running it on an input.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ModelError {
    /// The config itself is inconsistent.
    #[error("invalid GptConfig: {0}")]
    Config(#[from] ConfigError),
    /// The input has no sequences, or sequences of no tokens.
    #[error(
        "the input has shape (B, T) = ({batch}, {time}); \
         it needs at least one sequence of at least one token"
    )]
    EmptyInput {
        /// Sequences in the batch, `B`.
        batch: usize,
        /// Tokens per sequence, `T`.
        time: usize,
    },
    /// The sequences are longer than the model's context window.
    #[error(
        "the sequences are {time} tokens long but this model's block_size is {block_size}; \
         keep only the last {block_size} tokens of each \
         (the model has no position vector beyond that)"
    )]
    SequenceTooLong {
        /// Tokens per sequence given, `T`.
        time: usize,
        /// The longest the model accepts.
        block_size: usize,
    },
    /// An input token id has no row in the embedding table.
    #[error(
        "input token id {id} at sequence {batch}, position {position} is not in the vocabulary \
         (ids must be below vocab_size = {vocab_size}); \
         was the text encoded with another tokenizer?"
    )]
    TokenOutOfVocab {
        /// The offending id.
        id: u32,
        /// Which sequence of the batch.
        batch: usize,
        /// Which position in that sequence.
        position: usize,
        /// The model's vocabulary size.
        vocab_size: usize,
    },
    /// A target token id has no logit.
    #[error(
        "target token id {id} at sequence {batch}, position {position} is not in the vocabulary \
         (ids must be below vocab_size = {vocab_size})"
    )]
    TargetOutOfVocab {
        /// The offending id.
        id: u32,
        /// Which sequence of the batch.
        batch: usize,
        /// Which position in that sequence.
        position: usize,
        /// The model's vocabulary size.
        vocab_size: usize,
    },
    /// The targets do not have one entry per input token.
    #[error(
        "targets have shape {targets:?} but the inputs have shape {inputs:?}; \
         there must be one target per input token"
    )]
    TargetsShape {
        /// `(B, T)` of the inputs.
        inputs: (usize, usize),
        /// `(B, T)` of the targets.
        targets: (usize, usize),
    },
    /// The parameters do not have the number of blocks the config says.
    #[error("the config has n_layer = {config} but the parameters have {params} blocks")]
    LayerCount {
        /// `n_layer` of the config.
        config: usize,
        /// Blocks in the parameters.
        params: usize,
    },
    /// A parameter tensor does not have the shape the config implies.
    #[error("parameter {name} has shape {found:?} but the config implies {expected:?}")]
    ParamShape {
        /// The tensor's Hugging Face name.
        name: String,
        /// The shape the config implies.
        expected: Vec<usize>,
        /// The shape found.
        found: Vec<usize>,
    },
}

// ANCHOR: activations
/// One block's intermediate arrays, named as in llm.c, in the order the
/// block fills them. The backward pass reads them in reverse.
#[derive(Clone, Debug)]
pub struct LayerActivations {
    /// `ln_1(x)`, `(B, T, C)`.
    pub ln1: Array3<f32>,
    /// `ln_1`'s mean per position, `(B, T)`.
    pub ln1_mean: Array2<f32>,
    /// `ln_1`'s `1 / sqrt(var + eps)` per position, `(B, T)`.
    pub ln1_rstd: Array2<f32>,
    /// Queries, keys and values side by side (`c_attn`'s output), `(B, T, 3C)`.
    pub qkv: Array3<f32>,
    /// Attention weights after the softmax, `(B, nh, T, T)`.
    pub att: Array4<f32>,
    /// The heads' outputs side by side, before `c_proj`, `(B, T, C)`.
    pub atty: Array3<f32>,
    /// `attn.c_proj`'s output, `(B, T, C)`.
    pub attproj: Array3<f32>,
    /// The residual stream after attention, `x + attproj`, `(B, T, C)`.
    pub residual2: Array3<f32>,
    /// `ln_2(residual2)`, `(B, T, C)`.
    pub ln2: Array3<f32>,
    /// `ln_2`'s mean per position, `(B, T)`.
    pub ln2_mean: Array2<f32>,
    /// `ln_2`'s `1 / sqrt(var + eps)` per position, `(B, T)`.
    pub ln2_rstd: Array2<f32>,
    /// `c_fc`'s output, before GELU, `(B, T, 4C)`.
    pub fch: Array3<f32>,
    /// `gelu(fch)`, `(B, T, 4C)`.
    pub fch_gelu: Array3<f32>,
    /// `mlp.c_proj`'s output, `(B, T, C)`.
    pub fcproj: Array3<f32>,
    /// The block's output, `residual2 + fcproj`, `(B, T, C)`.
    pub residual3: Array3<f32>,
}

/// Every intermediate array of a forward pass (llm.c's `ActivationTensors`),
/// allocated once for a batch shape and refilled by each
/// [`Gpt::forward_with`].
#[derive(Clone, Debug)]
pub struct Activations {
    /// The input token ids of the last forward pass, `(B, T)`.
    pub inputs: Array2<u32>,
    /// Its targets, `(B, T)`; meaningful only when `loss` is `Some`.
    pub targets: Array2<u32>,
    /// Token plus position embeddings, `(B, T, C)`.
    pub encoded: Array3<f32>,
    /// One entry per block.
    pub layers: Vec<LayerActivations>,
    /// `ln_f` of the last block's output, `(B, T, C)`.
    pub lnf: Array3<f32>,
    /// `ln_f`'s mean per position, `(B, T)`.
    pub lnf_mean: Array2<f32>,
    /// `ln_f`'s `1 / sqrt(var + eps)` per position, `(B, T)`.
    pub lnf_rstd: Array2<f32>,
    /// A score for every token at every position, `(B, T, V)`.
    pub logits: Array3<f32>,
    /// The cross-entropy at each position, `(B, T)`; filled when targets are given.
    pub losses: Array2<f32>,
    /// The mean of `losses`, or `None` if the last pass had no targets.
    pub loss: Option<f32>,
}
// ANCHOR_END: activations

impl LayerActivations {
    fn new(b: usize, t: usize, c: usize, n_head: usize) -> Self {
        let bt = || Array2::zeros((b, t));
        let btc = |k: usize| Array3::zeros((b, t, k * c));
        Self {
            ln1: btc(1),
            ln1_mean: bt(),
            ln1_rstd: bt(),
            qkv: btc(3),
            att: Array4::zeros((b, n_head, t, t)),
            atty: btc(1),
            attproj: btc(1),
            residual2: btc(1),
            ln2: btc(1),
            ln2_mean: bt(),
            ln2_rstd: bt(),
            fch: btc(4),
            fch_gelu: btc(4),
            fcproj: btc(1),
            residual3: btc(1),
        }
    }
}

impl Activations {
    /// Zeroed arrays for a batch of `b` sequences of `t` tokens.
    pub fn new(config: &GptConfig, b: usize, t: usize) -> Self {
        let (c, v) = (config.n_embd, config.vocab_size);
        Self {
            inputs: Array2::zeros((b, t)),
            targets: Array2::zeros((b, t)),
            encoded: Array3::zeros((b, t, c)),
            layers: (0..config.n_layer)
                .map(|_| LayerActivations::new(b, t, c, config.n_head))
                .collect(),
            lnf: Array3::zeros((b, t, c)),
            lnf_mean: Array2::zeros((b, t)),
            lnf_rstd: Array2::zeros((b, t)),
            logits: Array3::zeros((b, t, v)),
            losses: Array2::zeros((b, t)),
            loss: None,
        }
    }

    /// The batch shape `(B, T)` these arrays are sized for.
    pub fn shape(&self) -> (usize, usize) {
        self.inputs.dim()
    }

    /// The residual stream after the last block (the input of `ln_f`), `(B, T, C)`.
    pub fn last_residual(&self) -> &Array3<f32> {
        self.layers
            .last()
            .map_or(&self.encoded, |layer| &layer.residual3)
    }
}

// ANCHOR: activation_grads
/// The gradients of one block's intermediate arrays: the working space of
/// [`block_backward`]. The backward pass goes through the blocks one at a
/// time, so one set serves them all.
#[derive(Clone, Debug)]
pub struct BlockGrads {
    /// Gradient of `ln1`, `(B, T, C)`.
    pub dln1: Array3<f32>,
    /// Gradient of `qkv`, `(B, T, 3C)`.
    pub dqkv: Array3<f32>,
    /// Gradient of the attention scores, `(B, nh, T, T)`.
    pub datt: Array4<f32>,
    /// Gradient of `atty`, `(B, T, C)`.
    pub datty: Array3<f32>,
    /// Gradient of `ln2`, `(B, T, C)`.
    pub dln2: Array3<f32>,
    /// Gradient of `fch`, `(B, T, 4C)`.
    pub dfch: Array3<f32>,
    /// Gradient of `fch_gelu`, `(B, T, 4C)`.
    pub dfch_gelu: Array3<f32>,
}

/// The gradients of the forward pass's intermediate arrays (llm.c's
/// `grads_acts`), allocated once for a batch shape and refilled by each
/// [`Gpt::backward`].
///
/// There is no gradient array for the residual stream of each block, nor
/// for `attproj` and `fcproj`: the stream's gradient is one array,
/// `dresidual`, walked back through the blocks (see [`block_backward`]).
#[derive(Clone, Debug)]
pub struct ActivationGrads {
    /// Gradient of the logits, `(B, T, V)`.
    pub dlogits: Array3<f32>,
    /// Gradient of `lnf`, `(B, T, C)`.
    pub dlnf: Array3<f32>,
    /// Gradient of the residual stream, `(B, T, C)`: of the last block's
    /// output at first, of the embeddings' output at the end.
    pub dresidual: Array3<f32>,
    /// One block's working space, reused by every block.
    pub block: BlockGrads,
}
// ANCHOR_END: activation_grads

impl ActivationGrads {
    /// Zeroed arrays for a batch of `b` sequences of `t` tokens.
    pub fn new(config: &GptConfig, b: usize, t: usize) -> Self {
        let (c, v) = (config.n_embd, config.vocab_size);
        let btc = |k: usize| Array3::zeros((b, t, k * c));
        Self {
            dlogits: Array3::zeros((b, t, v)),
            dlnf: btc(1),
            dresidual: btc(1),
            block: BlockGrads {
                dln1: btc(1),
                dqkv: btc(3),
                datt: Array4::zeros((b, config.n_head, t, t)),
                datty: btc(1),
                dln2: btc(1),
                dfch: btc(4),
                dfch_gelu: btc(4),
            },
        }
    }

    /// The batch shape `(B, T)` these arrays are sized for.
    pub fn shape(&self) -> (usize, usize) {
        let (b, t, _) = self.dlnf.dim();
        (b, t)
    }
}

// ANCHOR: block_forward
/// One transformer block, pre-LN as GPT-2: `x + attn(ln_1(x))`, then
/// `x + mlp(ln_2(x))`. Each step writes one array of the block's
/// activations `a`, read by the step after it.
///
/// Shapes: `x` `(B, T, C)`; the block's output is `a.residual3`, `(B, T, C)`.
pub fn block_forward(a: &mut LayerActivations, x: &ArrayRef3<f32>, p: &BlockParams, n_head: usize) {
    layernorm_forward(&mut a.ln1, &mut a.ln1_mean, &mut a.ln1_rstd, x, &p.ln_1);
    matmul_forward(&mut a.qkv, &a.ln1, &p.attn.c_attn); // (B, T, C) x (C, 3C) -> (B, T, 3C)
    attention_forward(&mut a.atty, &mut a.att, &a.qkv, n_head); // (B, T, 3C) -> (B, T, C)
    matmul_forward(&mut a.attproj, &a.atty, &p.attn.c_proj); // (B, T, C) x (C, C) -> (B, T, C)
    residual_forward(&mut a.residual2, x, &a.attproj);
    layernorm_forward(
        &mut a.ln2,
        &mut a.ln2_mean,
        &mut a.ln2_rstd,
        &a.residual2,
        &p.ln_2,
    );
    matmul_forward(&mut a.fch, &a.ln2, &p.mlp.c_fc); // (B, T, C) x (C, 4C) -> (B, T, 4C)
    gelu_forward(&mut a.fch_gelu, &a.fch);
    matmul_forward(&mut a.fcproj, &a.fch_gelu, &p.mlp.c_proj); // (B, T, 4C) x (4C, C) -> (B, T, C)
    residual_forward(&mut a.residual3, &a.residual2, &a.fcproj);
}
// ANCHOR_END: block_forward

// ANCHOR: block_backward
/// The backward pass of [`block_forward`]: the layers' backward passes in
/// reverse order.
///
/// `dx` holds the gradient of the block's output on the way in and of its
/// input on the way out. In between it is the residual stream's gradient:
/// the block computed `residual3 = residual2 + fcproj`, and a sum hands its
/// gradient unchanged to both terms ([`residual_backward`]), so the MLP's
/// `c_proj` reads `dx` as the gradient of `fcproj`, and `ln_2`'s backward
/// pass adds the MLP's contribution into it, which makes it the gradient of
/// `residual2`. The attention half does the same with `ln_1`, leaving the
/// gradient of `x`.
///
/// Shapes: `dx`, `x` `(B, T, C)`. Parameter gradients are added into `dp`.
///
/// [`residual_backward`]: crate::model::residual_backward
pub fn block_backward(
    dx: &mut ArrayRef3<f32>,
    g: &mut BlockGrads,
    dp: &mut BlockParams,
    a: &LayerActivations,
    x: &ArrayRef3<f32>,
    p: &BlockParams,
    n_head: usize,
) {
    // MLP: residual3 = residual2 + c_proj(gelu(c_fc(ln_2(residual2))))
    matmul_backward(
        &mut g.dfch_gelu,
        &mut dp.mlp.c_proj,
        dx,
        &a.fch_gelu,
        &p.mlp.c_proj,
    );
    gelu_backward(&mut g.dfch, &a.fch, &g.dfch_gelu);
    matmul_backward(&mut g.dln2, &mut dp.mlp.c_fc, &g.dfch, &a.ln2, &p.mlp.c_fc);
    let (mean, rstd) = (&a.ln2_mean, &a.ln2_rstd);
    layernorm_backward(dx, &mut dp.ln_2, &g.dln2, &a.residual2, &p.ln_2, mean, rstd);
    // attention: residual2 = x + c_proj(attention(c_attn(ln_1(x))))
    matmul_backward(
        &mut g.datty,
        &mut dp.attn.c_proj,
        dx,
        &a.atty,
        &p.attn.c_proj,
    );
    attention_backward(&mut g.dqkv, &mut g.datt, &g.datty, &a.qkv, &a.att, n_head);
    matmul_backward(
        &mut g.dln1,
        &mut dp.attn.c_attn,
        &g.dqkv,
        &a.ln1,
        &p.attn.c_attn,
    );
    let (mean, rstd) = (&a.ln1_mean, &a.ln1_rstd);
    layernorm_backward(dx, &mut dp.ln_1, &g.dln1, x, &p.ln_1, mean, rstd);
}
// ANCHOR_END: block_backward

/// A GPT: its config and its parameters, kept consistent with each other.
///
/// ```
/// use listings::model::{Gpt, GptConfig};
/// use ndarray::array;
/// let gpt = Gpt::new(GptConfig::toy(10), 42)?;
/// let idx = array![[1_u32, 2, 3], [4, 5, 6]]; // (B, T) = (2, 3)
/// let targets = array![[2_u32, 3, 4], [5, 6, 7]];
/// let (logits, loss) = gpt.forward(&idx, Some(&targets))?;
/// assert_eq!(logits.shape(), &[2, 3, 10]); // (B, T, V)
/// // Untrained, it is about as unsure as guessing among 10 tokens: ln 10 = 2.30.
/// assert!((loss.unwrap() - 10_f32.ln()).abs() < 0.5);
/// # Ok::<(), listings::model::ModelError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Gpt {
    config: GptConfig,
    params: GptParams,
}

impl Gpt {
    /// A freshly initialised model (see [`GptParams::init`]).
    pub fn new(config: GptConfig, seed: u64) -> Result<Self, ModelError> {
        config.validate()?;
        Ok(Self {
            config,
            params: GptParams::init(&config, seed),
        })
    }

    /// A model from given parameters, after checking that every tensor has
    /// the shape the config implies (as when loading a checkpoint).
    pub fn from_params(config: GptConfig, params: GptParams) -> Result<Self, ModelError> {
        config.validate()?;
        if params.h.len() != config.n_layer {
            return Err(ModelError::LayerCount {
                config: config.n_layer,
                params: params.h.len(),
            });
        }
        let specs = GptParams::specs(&config);
        for (spec, (name, tensor)) in specs.iter().zip(params.tensors()) {
            if tensor.shape() != spec.shape.as_slice() {
                let (expected, found) = (spec.shape.clone(), tensor.shape().to_vec());
                return Err(ModelError::ParamShape {
                    name,
                    expected,
                    found,
                });
            }
        }
        Ok(Self { config, params })
    }

    /// The model's config.
    pub fn config(&self) -> &GptConfig {
        &self.config
    }

    /// The model's parameters.
    pub fn params(&self) -> &GptParams {
        &self.params
    }

    /// The model's parameters, to update in place (an optimiser step). Their
    /// shapes must not change.
    pub fn params_mut(&mut self) -> &mut GptParams {
        &mut self.params
    }

    /// The config and the parameters, taken apart (to save them, say).
    pub fn into_parts(self) -> (GptConfig, GptParams) {
        (self.config, self.params)
    }

    /// How many parameters the model has, counted from its tensors.
    pub fn num_parameters(&self) -> usize {
        self.params.num_parameters()
    }

    // ANCHOR: forward
    /// The forward pass: logits for every position, and the mean
    /// cross-entropy if targets are given.
    ///
    /// Shapes: `idx` and `targets` `(B, T)` token ids; the logits `(B, T, V)`.
    /// Logits at position `t` depend only on tokens `0..=t`: they are the
    /// model's scores for the token at `t + 1`.
    pub fn forward(
        &self,
        idx: &ArrayRef2<u32>,
        targets: Option<&ArrayRef2<u32>>,
    ) -> Result<(Array3<f32>, Option<f32>), ModelError> {
        let (b, t) = idx.dim();
        let mut acts = Activations::new(&self.config, b, t);
        let loss = self.forward_with(&mut acts, idx, targets)?;
        Ok((acts.logits, loss))
    }
    // ANCHOR_END: forward

    // ANCHOR: forward_with
    /// The forward pass into `acts`, keeping every intermediate array for
    /// the backward pass. `acts` is reallocated only if the batch shape
    /// changed, so a training loop calling this allocates nothing.
    pub fn forward_with(
        &self,
        acts: &mut Activations,
        idx: &ArrayRef2<u32>,
        targets: Option<&ArrayRef2<u32>>,
    ) -> Result<Option<f32>, ModelError> {
        self.check_input(idx, targets)?;
        let (b, t) = idx.dim();
        if acts.shape() != (b, t) || acts.layers.len() != self.config.n_layer {
            *acts = Activations::new(&self.config, b, t);
        }
        let p = &self.params;
        acts.inputs.assign(idx);
        encoder_forward(&mut acts.encoded, idx, &p.wte, &p.wpe); // (B, T) -> (B, T, C)
        for l in 0..self.config.n_layer {
            let (done, todo) = acts.layers.split_at_mut(l);
            let x = done.last().map_or(&acts.encoded, |prev| &prev.residual3); // (B, T, C)
            block_forward(&mut todo[0], x, &p.h[l], self.config.n_head);
        }
        let x = acts
            .layers
            .last()
            .map_or(&acts.encoded, |last| &last.residual3);
        layernorm_forward(
            &mut acts.lnf,
            &mut acts.lnf_mean,
            &mut acts.lnf_rstd,
            x,
            &p.ln_f,
        );
        lm_head_forward(&mut acts.logits, &acts.lnf, &p.wte); // (B, T, C) x (C, V) -> (B, T, V)
        acts.loss = targets.map(|targets| {
            acts.targets.assign(targets);
            crossentropy_forward(&mut acts.losses, &acts.logits, targets)
        });
        Ok(acts.loss)
    }
    // ANCHOR_END: forward_with

    // ANCHOR: backward
    /// The backward pass: the gradient of the loss of the last
    /// [`Gpt::forward_with`] call with respect to every parameter, *added*
    /// into `grads` (zero it first; adding is what lets the tied `wte` get
    /// both its gradients, and lets several batches be summed).
    ///
    /// It runs the layers' backward passes in the reverse order of the
    /// forward pass, reading the activations it kept, in three steps: the
    /// loss and the logits here, then `lm_head` ([`Gpt::backward_from_logits`]),
    /// then `ln_f`, the blocks from last to first, and the embeddings
    /// ([`Gpt::backward_from_hidden`]). `dacts` is working space, reallocated
    /// only if the batch shape changed.
    ///
    /// # Panics
    ///
    /// If `acts` was not filled by a forward pass with targets (there is no
    /// loss to differentiate), or `grads` does not have this model's shapes.
    ///
    /// ```
    /// use listings::model::{Activations, ActivationGrads, Gpt, GptConfig, GptParams};
    /// use ndarray::array;
    /// let gpt = Gpt::new(GptConfig::toy(10), 0)?;
    /// let (idx, targets) = (array![[1_u32, 2, 3]], array![[2_u32, 3, 4]]);
    /// let mut acts = Activations::new(gpt.config(), 1, 3);
    /// let mut dacts = ActivationGrads::new(gpt.config(), 1, 3);
    /// let mut grads = GptParams::zeros(gpt.config());
    /// gpt.forward_with(&mut acts, &idx, Some(&targets))?;
    /// gpt.backward(&mut grads, &mut dacts, &acts);
    /// assert!(grads.wte.iter().any(|&g| g != 0.0));
    /// # Ok::<(), listings::model::ModelError>(())
    /// ```
    pub fn backward(&self, grads: &mut GptParams, dacts: &mut ActivationGrads, acts: &Activations) {
        assert!(
            acts.loss.is_some(),
            "backward needs a forward pass with targets: there is no loss to differentiate"
        );
        let (b, t) = acts.shape();
        if dacts.shape() != (b, t) || dacts.block.datt.dim().1 != self.config.n_head {
            *dacts = ActivationGrads::new(&self.config, b, t);
        }
        crossentropy_softmax_backward(&mut dacts.dlogits, &acts.logits, &acts.targets); // (B, T, V)
        self.backward_from_logits(grads, dacts, acts);
    }

    /// The backward pass from a gradient of the logits that the caller wrote
    /// into `dacts.dlogits`: any loss computed from the logits (chapter 6
    /// trains with several) enters the model here. The rest is as
    /// [`Gpt::backward`].
    pub fn backward_from_logits(
        &self,
        grads: &mut GptParams,
        dacts: &mut ActivationGrads,
        acts: &Activations,
    ) {
        self.check_grads(grads, dacts, acts);
        let g = &mut *dacts;
        lm_head_backward(
            &mut g.dlnf,
            &mut grads.wte,
            &g.dlogits,
            &acts.lnf,
            &self.params.wte,
        ); // -> (B, T, C)
        self.backward_from_hidden(grads, dacts, acts);
    }

    /// The backward pass from a gradient of `ln_f`'s output that the caller
    /// wrote into `dacts.dlnf`: a head of another kind than `lm_head` (a
    /// classifier, chapter 6) enters the model here. It runs `ln_f`, the
    /// blocks from last to first and the embeddings.
    pub fn backward_from_hidden(
        &self,
        grads: &mut GptParams,
        dacts: &mut ActivationGrads,
        acts: &Activations,
    ) {
        self.check_grads(grads, dacts, acts);
        let (p, g, nh) = (&self.params, &mut *dacts, self.config.n_head);
        let (mean, rstd, x) = (&acts.lnf_mean, &acts.lnf_rstd, acts.last_residual());
        let dx = &mut g.dresidual; // (B, T, C), walked back through the blocks
        dx.fill(0.0);
        layernorm_backward(dx, &mut grads.ln_f, &g.dlnf, x, &p.ln_f, mean, rstd);
        for l in (0..self.config.n_layer).rev() {
            let x = match l {
                0 => &acts.encoded,
                _ => &acts.layers[l - 1].residual3,
            }; // the block's input, (B, T, C)
            let (dp, a, bp) = (&mut grads.h[l], &acts.layers[l], &p.h[l]);
            block_backward(dx, &mut g.block, dp, a, x, bp, nh);
        }
        encoder_backward(&mut grads.wte, &mut grads.wpe, dx, &acts.inputs); // -> wte, wpe
    }
    // ANCHOR_END: backward

    /// Panics unless `grads` has this model's blocks and `dacts` the batch
    /// shape of `acts` (the caller sized them: they hold its gradient).
    fn check_grads(&self, grads: &GptParams, dacts: &ActivationGrads, acts: &Activations) {
        assert_eq!(
            grads.h.len(),
            self.config.n_layer,
            "grads has the wrong number of blocks"
        );
        assert_eq!(
            (dacts.shape(), dacts.block.datt.dim().1),
            (acts.shape(), self.config.n_head),
            "dacts is not sized for this batch: make it with ActivationGrads::new"
        );
    }

    // ANCHOR: check_input
    /// Checks a batch before it reaches the arrays: not empty, not longer
    /// than the context window, every id in the vocabulary, one target per
    /// input. The errors say which id at which position.
    pub fn check_input(
        &self,
        idx: &ArrayRef2<u32>,
        targets: Option<&ArrayRef2<u32>>,
    ) -> Result<(), ModelError> {
        let (batch, time) = idx.dim();
        let GptConfig {
            vocab_size,
            block_size,
            ..
        } = self.config;
        if batch == 0 || time == 0 {
            return Err(ModelError::EmptyInput { batch, time });
        }
        if time > block_size {
            return Err(ModelError::SequenceTooLong { time, block_size });
        }
        let out_of_vocab = |ids: &ArrayRef2<u32>| {
            ids.indexed_iter()
                .find(|&(_, &id)| id as usize >= vocab_size)
                .map(|((b, t), &id)| (id, b, t))
        };
        if let Some((id, batch, position)) = out_of_vocab(idx) {
            return Err(ModelError::TokenOutOfVocab {
                id,
                batch,
                position,
                vocab_size,
            });
        }
        if let Some(targets) = targets {
            if targets.dim() != (batch, time) {
                return Err(ModelError::TargetsShape {
                    inputs: (batch, time),
                    targets: targets.dim(),
                });
            }
            if let Some((id, batch, position)) = out_of_vocab(targets) {
                return Err(ModelError::TargetOutOfVocab {
                    id,
                    batch,
                    position,
                    vocab_size,
                });
            }
        }
        Ok(())
    }
    // ANCHOR_END: check_input
}
