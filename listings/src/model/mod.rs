//! Chapters 2 to 4: the GPT forward pass, from token ids to logits and loss;
//! chapter 5: its backward pass, from the loss to every parameter's gradient.
//!
//! The model is GPT-2's, at any size, written in the style of llm.c: each
//! layer is a `*_forward` function that writes into arrays the caller owns
//! and keeps what its backward pass will need, and beside it a `*_backward`
//! function that turns the gradient of the layer's output into the
//! gradients of its input and parameters. Backward passes overwrite the
//! gradients of activations and add into the gradients of parameters (and
//! into the residual stream's, which several layers feed). The files, in
//! reading order:
//!
//! | file | what it adds | chapter |
//! |---|---|---|
//! | [`config`] | [`GptConfig`], its presets, the parameter count by formula | 4 |
//! | [`params`] | every weight, with GPT-2's names, shapes and initialisation | 4 |
//! | [`embeddings`] | token and position embeddings; sinusoidal positions and RoPE | 2, 5 |
//! | [`attention`] | softmax, the causal mask, attention one head at a time and batched | 3, 5 |
//! | [`layers`] | LayerNorm, linear layers, GELU, residuals, the output layer, cross-entropy | 4, 5 |
//! | [`gpt`] | the block, the whole model, its activations, and input checks; the backward pass | 4, 5 |
//! | [`arch`] | [`Arch`]: positions of other kinds (sinusoidal, RoPE, ALiBi, none), blocks without MLPs; the modern block's switches | 8, 9 |
//! | [`modern`] | RMSNorm, SwiGLU, linear layers and LayerNorm without biases | 9 |
//!
//! The loops run on [`crate::parallel`]'s thread pool and wide-vector helpers.
//!
//! Shapes in comments: `B` batch, `T` time (sequence length), `C` channels
//! (`n_embd`), `V` vocabulary size, `nh` heads (`n_head`), `hs` head size
//! (`C / nh`), `L` layers (`n_layer`).
//!
//! ```
//! use listings::model::{Gpt, GptConfig};
//! use ndarray::Array2;
//! let gpt = Gpt::new(GptConfig::baby(65), 0)?;
//! let idx = Array2::from_shape_fn((2, 8), |(b, t)| (b * 8 + t) as u32); // (B, T)
//! let (logits, _) = gpt.forward(&idx, None)?;
//! assert_eq!(logits.shape(), &[2, 8, 65]); // (B, T, V)
//! # Ok::<(), listings::model::ModelError>(())
//! ```

pub mod arch;
pub mod attention;
pub mod config;
pub mod embeddings;
pub mod gpt;
pub mod gradcheck;
pub mod layers;
pub mod modern;
pub mod params;

pub use arch::{
    Arch, Mlp, Norm, Positions, alibi_slopes, block_backward_arch, block_forward_arch,
    count_parameters_arch, norm_backward_arch, norm_forward_arch, rope_backward, rope_backward_gqa,
    rope_forward, rope_forward_gqa, token_embedding_backward, token_embedding_forward,
};
pub use attention::{
    attention_backward, attention_backward_gqa, attention_backward_reference, attention_forward,
    attention_forward_alibi, attention_forward_gqa, attention_head, attention_reference,
    causal_mask, softmax,
};
pub use config::{
    ConfigError, GptConfig, ParameterBreakdown, count_parameters, parameter_breakdown,
};
pub use embeddings::{
    cosine_similarity, encoder_backward, encoder_forward, rope_apply, sinusoidal_positions,
};
pub use gpt::{
    ActivationGrads, Activations, BlockGrads, Gpt, LayerActivations, ModelError, block_backward,
    block_forward, sinusoidal_table,
};
pub use layers::{
    LAYERNORM_EPS, crossentropy_forward, crossentropy_softmax_backward, fast_exp, gelu,
    gelu_backward, gelu_forward, gelu_grad, layernorm_backward, layernorm_backward_reference,
    layernorm_forward, layernorm_row, lm_head_backward, lm_head_forward, matmul_backward,
    matmul_forward, residual_backward, residual_forward,
};
pub use modern::{
    RMSNORM_EPS, layernorm_backward_no_bias, layernorm_forward_no_bias, matmul_backward_no_bias,
    matmul_forward_no_bias, rmsnorm_backward, rmsnorm_forward, rmsnorm_row, silu, silu_grad,
    swiglu_backward, swiglu_forward, swiglu_hidden,
};
pub use params::{
    AttentionParams, BlockParams, GptParams, INIT_STD, LayerNormParams, LinearParams, MlpParams,
    ParamSpec,
};
