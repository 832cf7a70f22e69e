//! The whole GPT: embeddings, a stack of blocks, a final LayerNorm, logits,
//! and the loss; with every intermediate array kept for the backward pass,
//! and the backward pass itself, from the loss back to every parameter.

use ndarray::{Array2, Array3, Array4, ArrayRef2, ArrayRef3};
use thiserror::Error;

use super::arch::{
    Arch, Positions, block_backward_arch, block_forward_arch, norm_backward_arch,
    norm_forward_arch, token_embedding_backward, token_embedding_forward,
};
use super::attention::{attention_backward, attention_forward};
use super::config::{ConfigError, GptConfig};
use super::embeddings::{encoder_backward, encoder_forward, sinusoidal_positions};
use super::layers::{
    crossentropy_forward, crossentropy_softmax_backward, gelu_backward, gelu_forward,
    layernorm_backward, layernorm_forward, lm_head_backward, lm_head_forward, matmul_backward,
    matmul_forward, residual_forward,
};
use super::params::{BlockParams, GptParams, INIT_STD, LayerNormParams, LinearParams};
use crate::rng::{randn, seeded};

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
    /// A model with learned positions asked to run past its table.
    #[error(
        "this model learned a position table (wpe) of {block_size} rows, and the rows past \
         {block_size} were never trained, so it cannot run on {asked} positions; append \
         untrained rows with Gpt::with_new_positions to see what they do, or use a model \
         whose positions are not learned (sinusoidal, RoPE, ALiBi or none)"
    )]
    PositionsNotTrained {
        /// The rows of the learned table.
        block_size: usize,
        /// The context length asked for.
        asked: usize,
    },
    /// RoPE rotates pairs of channels, and a head has an odd number.
    #[error(
        "RoPE rotates each head's channels in pairs, but the head size is {head_size} \
         (n_embd / n_head), which is odd; pick n_embd and n_head so that it is even"
    )]
    RopeOddHeadSize {
        /// `n_embd / n_head`.
        head_size: usize,
    },
    /// The key-value heads of grouped-query attention do not divide the
    /// query heads.
    #[error(
        "kv_heads = {kv_heads} key-value heads cannot be shared by n_head = {n_head} query heads; \
         pick a divisor of n_head (n_head itself is multi-head attention, 1 is multi-query)"
    )]
    KvHeads {
        /// The query heads, `n_head`.
        n_head: usize,
        /// The key-value heads asked for.
        kv_heads: usize,
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
    /// `ln_1`'s mean per position, `(B, T)` (not used by RMSNorm).
    pub ln1_mean: Array2<f32>,
    /// `ln_1`'s `1 / sqrt(var + eps)` per position, `(B, T)` (RMSNorm's
    /// `1 / sqrt(mean(x²) + eps)`).
    pub ln1_rstd: Array2<f32>,
    /// Queries, keys and values side by side (`c_attn`'s output), `(B, T, 3C)`
    /// (`(B, T, C + 2·n_kv_head·hs)` with shared key-value heads).
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
    /// `c_fc`'s output, before GELU, `(B, T, 4C)` (with SwiGLU, the gate
    /// and the "up" projection, `(B, T, 2H)`).
    pub fch: Array3<f32>,
    /// `gelu(fch)`, `(B, T, 4C)` (with SwiGLU, `silu(gate)·up`, `(B, T, H)`).
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
        Self::sized(b, t, c, n_head, [3 * c, 4 * c, 4 * c])
    }

    /// Zeroed arrays with `qkv`, `fch` and `fch_gelu` `widths` wide.
    fn sized(b: usize, t: usize, c: usize, n_head: usize, widths: [usize; 3]) -> Self {
        let [qkv, fc, hidden] = widths;
        let bt = || Array2::zeros((b, t));
        let btc = |k: usize| Array3::zeros((b, t, k * c));
        Self {
            ln1: btc(1),
            ln1_mean: bt(),
            ln1_rstd: bt(),
            qkv: Array3::zeros((b, t, qkv)),
            att: Array4::zeros((b, n_head, t, t)),
            atty: btc(1),
            attproj: btc(1),
            residual2: btc(1),
            ln2: btc(1),
            ln2_mean: bt(),
            ln2_rstd: bt(),
            fch: Array3::zeros((b, t, fc)),
            fch_gelu: Array3::zeros((b, t, hidden)),
            fcproj: btc(1),
            residual3: btc(1),
        }
    }
}

/// The widths of the arrays an [`Arch`] resizes: `qkv`, `fch` and
/// `fch_gelu`, as `[qkv, fc, hidden]`.
fn arch_widths(config: &GptConfig, arch: &Arch) -> [usize; 3] {
    [
        arch.qkv_width(config),
        arch.fc_width(config),
        arch.mlp_hidden(config),
    ]
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

    /// [`Activations::new`] for a model with the choices of `arch`, whose
    /// `qkv`, `fch` and `fch_gelu` may have other widths than GPT-2's. (A
    /// forward pass given arrays of the wrong widths makes new ones.)
    pub fn with_arch(config: &GptConfig, arch: &Arch, b: usize, t: usize) -> Self {
        let mut acts = Self::new(config, b, t);
        let (c, nh, widths) = (config.n_embd, config.n_head, arch_widths(config, arch));
        for layer in &mut acts.layers {
            *layer = LayerActivations::sized(b, t, c, nh, widths);
        }
        acts
    }

    /// Whether the arrays have the widths `arch` needs.
    fn fit(&self, config: &GptConfig, arch: &Arch) -> bool {
        let widths = arch_widths(config, arch);
        self.layers
            .iter()
            .all(|l| [l.qkv.dim().2, l.fch.dim().2, l.fch_gelu.dim().2] == widths)
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
    /// Gradient of `qkv`, `(B, T, 3C)` (or as wide as `qkv`).
    pub dqkv: Array3<f32>,
    /// Gradient of the attention scores, `(B, nh, T, T)`.
    pub datt: Array4<f32>,
    /// Gradient of `atty`, `(B, T, C)`.
    pub datty: Array3<f32>,
    /// Gradient of `ln2`, `(B, T, C)`.
    pub dln2: Array3<f32>,
    /// Gradient of `fch`, `(B, T, 4C)` (or as wide as `fch`).
    pub dfch: Array3<f32>,
    /// Gradient of `fch_gelu`, `(B, T, 4C)` (or as wide as `fch_gelu`).
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
            block: BlockGrads::sized(config, b, t, [3 * c, 4 * c, 4 * c]),
        }
    }

    /// [`ActivationGrads::new`] for a model with the choices of `arch` (see
    /// [`Activations::with_arch`]).
    pub fn with_arch(config: &GptConfig, arch: &Arch, b: usize, t: usize) -> Self {
        let mut dacts = Self::new(config, b, t);
        dacts.block = BlockGrads::sized(config, b, t, arch_widths(config, arch));
        dacts
    }

    /// The batch shape `(B, T)` these arrays are sized for.
    pub fn shape(&self) -> (usize, usize) {
        let (b, t, _) = self.dlnf.dim();
        (b, t)
    }
}

impl BlockGrads {
    /// Zeroed arrays with `dqkv`, `dfch` and `dfch_gelu` `widths` wide.
    fn sized(config: &GptConfig, b: usize, t: usize, widths: [usize; 3]) -> Self {
        let [qkv, fc, hidden] = widths;
        let btc = || Array3::zeros((b, t, config.n_embd));
        Self {
            dln1: btc(),
            dqkv: Array3::zeros((b, t, qkv)),
            datt: Array4::zeros((b, config.n_head, t, t)),
            datty: btc(),
            dln2: btc(),
            dfch: Array3::zeros((b, t, fc)),
            dfch_gelu: Array3::zeros((b, t, hidden)),
        }
    }

    /// Whether the arrays have the widths `arch` needs.
    fn fit(&self, config: &GptConfig, arch: &Arch) -> bool {
        let widths = [self.dqkv.dim().2, self.dfch.dim().2, self.dfch_gelu.dim().2];
        widths == arch_widths(config, arch)
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

// ANCHOR: sinusoidal_table
/// The fixed position table of a model with sinusoidal positions, `(T, C)`:
/// [`sinusoidal_positions`] scaled by `INIT_STD·√2`, so that its entries
/// have the size of GPT-2's initial embeddings (a sine or cosine has a
/// root mean square of `1/√2`; the table's is then `INIT_STD`, 0.02).
///
/// Unscaled, the table's entries of size 1 would drown the token vectors
/// (0.02 at the start): the original transformer multiplies its token
/// embeddings by `√C` for the same reason. Here the table is made as small
/// as the tokens instead, so that the rest of the model is GPT-2's.
pub fn sinusoidal_table(t: usize, c: usize) -> Array2<f32> {
    sinusoidal_positions(t, c) * (INIT_STD * std::f32::consts::SQRT_2)
}
// ANCHOR_END: sinusoidal_table

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
///
/// Beside the config it holds its [`Arch`], GPT-2's unless it was built with
/// [`Gpt::with_arch`] or [`Gpt::from_parts`], and, for sinusoidal positions,
/// the fixed position table (not a parameter: no optimiser sees it).
#[derive(Clone, Debug)]
pub struct Gpt {
    config: GptConfig,
    params: GptParams,
    arch: Arch,
    /// The sinusoidal table, `(block_size, C)`, for `Positions::Sinusoidal`.
    fixed_positions: Option<Array2<f32>>,
}

impl Gpt {
    /// A freshly initialised model (see [`GptParams::init`]).
    pub fn new(config: GptConfig, seed: u64) -> Result<Self, ModelError> {
        config.validate()?;
        Ok(Self {
            config,
            params: GptParams::init(&config, seed),
            arch: Arch::default(),
            fixed_positions: None,
        })
    }

    /// A model from given parameters, after checking that every tensor has
    /// the shape the config implies (as when loading a checkpoint).
    pub fn from_params(config: GptConfig, params: GptParams) -> Result<Self, ModelError> {
        Self::from_parts(config, Arch::default(), params)
    }

    /// A freshly initialised model with the choices of `arch`.
    ///
    /// The weights are drawn as [`Gpt::new`] draws them with the same seed
    /// ([`GptParams::init_arch`]), so two architectures built from one seed
    /// start from the same numbers wherever both have them, as long as the
    /// tensors drawn before have GPT-2's shapes (SwiGLU and shared
    /// key-value heads change `c_attn`'s and the MLP's). Then what the
    /// architecture does not use is set to zero: `wpe` unless the positions
    /// are learned, each block's MLP (`c_fc` and `mlp.c_proj`) without
    /// MLPs; biases start at zero anyway. Their gradients stay zero, so
    /// training leaves them at zero.
    ///
    /// ```
    /// use listings::model::{Arch, Gpt, GptConfig, Positions};
    /// let arch = Arch { positions: Positions::Alibi, mlp: false, ..Arch::gpt2() };
    /// let gpt = Gpt::with_arch(GptConfig::toy(10), arch, 0)?;
    /// assert!(gpt.params().wpe.iter().all(|&w| w == 0.0));
    /// assert!(gpt.num_parameters() < Gpt::new(GptConfig::toy(10), 0)?.num_parameters());
    /// # Ok::<(), listings::model::ModelError>(())
    /// ```
    pub fn with_arch(config: GptConfig, arch: Arch, seed: u64) -> Result<Self, ModelError> {
        config.validate()?;
        arch.validate(&config)?;
        let mut params = GptParams::init_arch(&config, &arch, seed);
        if !arch.positions.is_learned() {
            params.wpe.fill(0.0);
        }
        if !arch.mlp {
            for block in &mut params.h {
                for layer in [&mut block.mlp.c_fc, &mut block.mlp.c_proj] {
                    layer.weight.fill(0.0);
                    layer.bias.fill(0.0);
                }
            }
        }
        Self::from_parts(config, arch, params)
    }

    /// A model from given parameters with the choices of `arch`, after
    /// checking the config, the choices, and that every tensor has the
    /// shape they imply ([`GptParams::specs_arch`]). Parameters the
    /// architecture does not use (see [`Arch`]) are kept as given and
    /// never read.
    pub fn from_parts(
        config: GptConfig,
        arch: Arch,
        params: GptParams,
    ) -> Result<Self, ModelError> {
        config.validate()?;
        arch.validate(&config)?;
        if params.h.len() != config.n_layer {
            return Err(ModelError::LayerCount {
                config: config.n_layer,
                params: params.h.len(),
            });
        }
        let specs = GptParams::specs_arch(&config, &arch);
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
        let fixed_positions = (arch.positions == Positions::Sinusoidal)
            .then(|| sinusoidal_table(config.block_size, config.n_embd));
        Ok(Self {
            config,
            params,
            arch,
            fixed_positions,
        })
    }

    /// The model's architectural choices.
    pub fn arch(&self) -> &Arch {
        &self.arch
    }

    /// The fixed position table of a model with sinusoidal positions,
    /// `(block_size, C)`; `None` for the other kinds.
    pub fn fixed_positions(&self) -> Option<&Array2<f32>> {
        self.fixed_positions.as_ref()
    }

    // ANCHOR: with_block_size
    /// The same model with a context window of `block_size` tokens.
    ///
    /// Positions that are not learned are defined for any length: the
    /// sinusoidal table is computed again for the new length, and RoPE,
    /// ALiBi and no positions need no table (`wpe` stays zero, resized).
    /// Learned positions can be cut to fewer rows but not extended: the
    /// rows past the old `block_size` were never trained, and
    /// [`ModelError::PositionsNotTrained`] says so
    /// ([`Gpt::with_new_positions`] appends untrained rows on purpose).
    ///
    /// ```
    /// use listings::model::{Arch, Gpt, GptConfig, ModelError, Positions};
    /// let config = GptConfig::toy(10); // block_size 64
    /// let alibi = Gpt::with_arch(config, Arch::with_positions(Positions::Alibi), 0)?;
    /// assert_eq!(alibi.with_block_size(256)?.config().block_size, 256);
    /// let learned = Gpt::new(config, 0)?;
    /// assert_eq!(
    ///     learned.with_block_size(256).unwrap_err(),
    ///     ModelError::PositionsNotTrained { block_size: 64, asked: 256 }
    /// );
    /// # Ok::<(), ModelError>(())
    /// ```
    pub fn with_block_size(&self, block_size: usize) -> Result<Gpt, ModelError> {
        let old = self.config.block_size;
        if self.arch.positions.is_learned() && block_size > old {
            let asked = block_size;
            return Err(ModelError::PositionsNotTrained {
                block_size: old,
                asked,
            });
        }
        let config = GptConfig {
            block_size,
            ..self.config
        };
        let mut params = self.params.clone();
        params.wpe = if self.arch.positions.is_learned() {
            self.params
                .wpe
                .slice(ndarray::s![..block_size, ..])
                .to_owned()
        } else {
            Array2::zeros((block_size, config.n_embd))
        };
        Self::from_parts(config, self.arch, params)
    }
    // ANCHOR_END: with_block_size

    /// The same model with `extra` more rows of learned positions, drawn
    /// as GPT-2 initialises `wpe` (normal, standard deviation 0.02) from a
    /// generator seeded with `seed`: what a model with learned positions
    /// would read past its training length if it were given rows there.
    /// For other kinds of positions it is [`Gpt::with_block_size`] with
    /// `block_size + extra`.
    pub fn with_new_positions(&self, extra: usize, seed: u64) -> Result<Gpt, ModelError> {
        let block_size = self.config.block_size + extra;
        if !self.arch.positions.is_learned() {
            return self.with_block_size(block_size);
        }
        let config = GptConfig {
            block_size,
            ..self.config
        };
        let new_rows = randn((extra, config.n_embd), INIT_STD, &mut seeded(seed));
        let mut params = self.params.clone();
        params.wpe = ndarray::concatenate![ndarray::Axis(0), self.params.wpe, new_rows];
        Self::from_parts(config, self.arch, params)
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

    /// How many parameters the model has, counted from its tensors; with
    /// an [`Arch`] other than GPT-2's, without those it does not use (`wpe`
    /// unless positions are learned, the MLPs and `ln_2` without MLPs, the
    /// biases without biases, the norms' shifts with RMSNorm or without
    /// biases). [`count_parameters_arch`](super::count_parameters_arch) gives
    /// the same number by formula.
    pub fn num_parameters(&self) -> usize {
        let arch = &self.arch;
        let linear = |l: &LinearParams| l.weight.len() + if arch.bias { l.bias.len() } else { 0 };
        let norm =
            |n: &LayerNormParams| n.weight.len() + if arch.norm_bias() { n.bias.len() } else { 0 };
        let block = |b: &BlockParams| {
            let attention = norm(&b.ln_1) + linear(&b.attn.c_attn) + linear(&b.attn.c_proj);
            let mlp = norm(&b.ln_2) + linear(&b.mlp.c_fc) + linear(&b.mlp.c_proj);
            attention + if arch.mlp { mlp } else { 0 }
        };
        let p = &self.params;
        let positions = if arch.positions.is_learned() {
            p.wpe.len()
        } else {
            0
        };
        let blocks: usize = p.h.iter().map(block).sum();
        p.wte.len() + positions + blocks + norm(&p.ln_f)
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
        if !self.arch.is_gpt2() {
            return Ok(self.forward_arch(acts, idx, targets)); // another Arch
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
        if !self.arch.is_gpt2() {
            return self.backward_arch(grads, dacts, acts); // another Arch
        }
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

    /// [`Gpt::forward_with`] for an [`Arch`] other than GPT-2's, after the
    /// input was checked and `acts` sized for the batch; arrays whose widths
    /// the architecture changes are made again if they do not fit.
    fn forward_arch(
        &self,
        acts: &mut Activations,
        idx: &ArrayRef2<u32>,
        targets: Option<&ArrayRef2<u32>>,
    ) -> Option<f32> {
        let (p, arch) = (&self.params, &self.arch);
        if !acts.fit(&self.config, arch) {
            let (b, t) = idx.dim();
            *acts = Activations::with_arch(&self.config, arch, b, t);
        }
        acts.inputs.assign(idx);
        match (arch.positions, &self.fixed_positions) {
            (Positions::Learned, _) => encoder_forward(&mut acts.encoded, idx, &p.wte, &p.wpe),
            (Positions::Sinusoidal, Some(table)) => {
                encoder_forward(&mut acts.encoded, idx, &p.wte, table)
            }
            (Positions::Sinusoidal, None) => unreachable!("from_parts builds the table"),
            _ => token_embedding_forward(&mut acts.encoded, idx, &p.wte),
        }
        for l in 0..self.config.n_layer {
            let (done, todo) = acts.layers.split_at_mut(l);
            let x = done.last().map_or(&acts.encoded, |prev| &prev.residual3);
            block_forward_arch(&mut todo[0], x, &p.h[l], self.config.n_head, arch);
        }
        let x = acts
            .layers
            .last()
            .map_or(&acts.encoded, |last| &last.residual3);
        let (mean, rstd) = (&mut acts.lnf_mean, &mut acts.lnf_rstd);
        norm_forward_arch(&mut acts.lnf, mean, rstd, x, &p.ln_f, arch);
        lm_head_forward(&mut acts.logits, &acts.lnf, &p.wte);
        acts.loss = targets.map(|targets| {
            acts.targets.assign(targets);
            crossentropy_forward(&mut acts.losses, &acts.logits, targets)
        });
        acts.loss
    }

    /// [`Gpt::backward_from_hidden`] for an [`Arch`] other than GPT-2's:
    /// positions that are not learned get no gradient (`wpe`'s stays zero),
    /// nor do the other parameters the architecture does not use. The
    /// blocks' working space is made again if its widths do not fit.
    ///
    /// # Panics
    ///
    /// If `grads` does not have the shapes of this model's parameters
    /// (make it with [`GptParams::zeros_arch`]).
    fn backward_arch(
        &self,
        grads: &mut GptParams,
        dacts: &mut ActivationGrads,
        acts: &Activations,
    ) {
        let (p, arch, config) = (&self.params, &self.arch, &self.config);
        let shapes = |params: &GptParams| {
            let b = &params.h[0];
            (
                b.attn.c_attn.weight.dim(),
                b.mlp.c_fc.weight.dim(),
                b.mlp.c_proj.weight.dim(),
            )
        };
        assert_eq!(
            shapes(grads),
            shapes(p),
            "grads does not have this model's shapes: make it with GptParams::zeros_arch"
        );
        if !dacts.block.fit(config, arch) {
            let (b, t) = acts.shape();
            dacts.block = ActivationGrads::with_arch(config, arch, b, t).block;
        }
        let (g, nh) = (&mut *dacts, config.n_head);
        let (mean, rstd, x) = (&acts.lnf_mean, &acts.lnf_rstd, acts.last_residual());
        let dx = &mut g.dresidual; // (B, T, C), walked back through the blocks
        dx.fill(0.0);
        norm_backward_arch(dx, &mut grads.ln_f, &g.dlnf, x, &p.ln_f, mean, rstd, arch);
        for l in (0..self.config.n_layer).rev() {
            let x = match l {
                0 => &acts.encoded,
                _ => &acts.layers[l - 1].residual3,
            };
            let (dp, a, bp) = (&mut grads.h[l], &acts.layers[l], &p.h[l]);
            block_backward_arch(dx, &mut g.block, dp, a, x, bp, nh, arch);
        }
        if arch.positions.is_learned() {
            encoder_backward(&mut grads.wte, &mut grads.wpe, dx, &acts.inputs);
        } else {
            token_embedding_backward(&mut grads.wte, dx, &acts.inputs);
        }
    }

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
