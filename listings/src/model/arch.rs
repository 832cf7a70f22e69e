//! The architectural choices a GPT makes beside its five sizes: how it tells
//! the attention where each token is, whether its blocks have an MLP, and
//! the changes LLaMA-style models made to GPT-2's block.
//!
//! [`GptConfig`](super::GptConfig) fixes the sizes; an [`Arch`] fixes what
//! the model computes with them. Its default is GPT-2's (a learned position
//! table added to the token embeddings, an MLP in every block, LayerNorm,
//! GELU, every head with keys and values of its own, biases everywhere),
//! which is what [`Gpt::new`](super::Gpt::new) builds. The positions:
//!
//! | [`Positions`] | where the position enters | learned? |
//! |---|---|---|
//! | `Learned` | a row of `wpe` added to each token's vector | yes |
//! | `Sinusoidal` | a fixed table of sines and cosines added instead (Vaswani et al. 2017) | no |
//! | `Rope` | each head's queries and keys rotated by an angle proportional to the position (Su et al. 2021) | no |
//! | `Alibi` | a penalty `m_h·(i - j)` subtracted from the score of query `i` for key `j` (Press et al. 2021) | no |
//! | `None` | nowhere: only the causal mask tells the positions apart | no |
//!
//! With any kind but `Learned`, `wpe` is kept (so the parameters have GPT-2's
//! shapes and names) but it is all zeros, no pass reads it and its gradient
//! is always zero, so an optimiser leaves it at zero (weight decay of zero is
//! zero). The sinusoidal table is not a parameter at all: the model holds it
//! beside its parameters, where no optimiser sees it.
//!
//! The modern block's other switches, each on its own:
//!
//! | field | GPT-2 | LLaMA-style | parameters |
//! |---|---|---|---|
//! | `norm` | [`Norm::LayerNorm`] | [`Norm::RmsNorm`] (Zhang and Sennrich 2019) | the norms' biases unused |
//! | `mlp_kind` | [`Mlp::Gelu`], `C -> 4C -> C` | [`Mlp::SwiGlu`] (Shazeer 2020), `C -> 2H -> H -> C` | `c_fc` `(C, 2H)`, `mlp.c_proj` `(H, C)`, [`swiglu_hidden`](super::swiglu_hidden) |
//! | `kv_heads` | `None`: a key and a value head per query head | `Some(k)`: `k` shared by all (Ainslie et al. 2023) | `c_attn` `(C, C + 2·k·hs)` |
//! | `bias` | `true` | `false`: no `+ b` in the linear layers or the LayerNorms | the biases unused |
//!
//! Parameters a choice does not use stay in [`GptParams`] with GPT-2's
//! names (all zero, never read, never given a gradient), so every model is
//! saved and loaded as GPT-2's is; [`Gpt::num_parameters`] leaves them out.
//! The two switches that change a tensor's shape keep its name:
//! SwiGLU's gate and "up" projection are the two halves of `c_fc`, and the
//! shared keys and values sit after the queries in `c_attn`.
//! [`GptParams::init_arch`], [`GptParams::zeros_arch`] and
//! [`GptParams::specs_arch`] make parameters of those shapes.
//!
//! The functions here are the pieces the variants add to the block:
//! [`rope_forward`] and [`rope_backward`] turn the queries and keys of the
//! `qkv` array in place ([`rope_forward_gqa`] when keys and values are
//! shared); [`alibi_slopes`] gives each head its slope (the attention adds
//! the bias, [`attention_forward_alibi`]); [`block_forward_arch`] and
//! [`block_backward_arch`] are the block with every choice. The modern
//! block's layers are in [`modern`](super::modern).
//!
//! [`attention_forward_alibi`]: super::attention_forward_alibi
//! [`Gpt::num_parameters`]: super::Gpt::num_parameters

use std::fmt;

use ndarray::{Array2, ArrayRef2, ArrayRef3, Zip, s};
use serde::{Deserialize, Serialize};

use super::attention::{
    attention_backward, attention_backward_gqa, attention_forward, attention_forward_alibi,
    attention_forward_gqa,
};
use super::config::GptConfig;
use super::gpt::{BlockGrads, LayerActivations, ModelError};
use super::layers::{
    gelu_backward, gelu_forward, layernorm_backward, layernorm_forward, matmul_backward,
    matmul_forward, residual_forward,
};
use super::modern::{
    layernorm_backward_no_bias, layernorm_forward_no_bias, matmul_backward_no_bias,
    matmul_forward_no_bias, rmsnorm_backward, rmsnorm_forward, swiglu_backward, swiglu_forward,
    swiglu_hidden,
};
use super::params::{
    AttentionParams, BlockParams, GptParams, INIT_STD, LayerNormParams, LinearParams, MlpParams,
    ParamSpec,
};
use crate::rng::{randn, seeded};

// ANCHOR: positions
/// How the model knows where each token is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Positions {
    /// GPT-2's: a learned vector per position (`wpe`, `block_size` rows),
    /// added to the token's vector. There is no row past `block_size`.
    #[default]
    Learned,
    /// The original transformer's fixed table of sines and cosines
    /// ([`sinusoidal_table`](super::sinusoidal_table): scaled to the size of
    /// the initial token vectors), added to the token's vector; never
    /// trained, and defined for any position.
    Sinusoidal,
    /// Rotary embeddings: channel pair `i` of each head's query and key at
    /// position `p` is rotated by `p·θ_i`, `θ_i = 10000^(-2i/hs)`, so a
    /// query-key score depends on the two positions only through their
    /// difference.
    Rope,
    /// Attention with linear biases: head `h` subtracts `m_h·(i - j)` from
    /// the score of query `i` for key `j`, so the further back a key, the
    /// less it is looked at; the slopes `m_h` are fixed
    /// ([`alibi_slopes`]).
    Alibi,
    /// No position information: each position attends to itself and the
    /// ones before it (the causal mask), and that is all it knows of order.
    None,
}
// ANCHOR_END: positions

impl Positions {
    /// Every kind, GPT-2's first.
    pub const ALL: [Positions; 5] = [
        Positions::Learned,
        Positions::Sinusoidal,
        Positions::Rope,
        Positions::Alibi,
        Positions::None,
    ];

    /// A short lower-case name (`"learned"`, `"rope"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Positions::Learned => "learned",
            Positions::Sinusoidal => "sinusoidal",
            Positions::Rope => "rope",
            Positions::Alibi => "alibi",
            Positions::None => "none",
        }
    }

    /// Whether the positions are trained parameters (only `Learned`): such
    /// a model has nothing to say about a position past its table.
    pub fn is_learned(self) -> bool {
        self == Positions::Learned
    }
}

impl fmt::Display for Positions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// ANCHOR: norm
/// How a block normalises the residual stream before reading it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Norm {
    /// GPT-2's: subtract the mean, divide by the standard deviation, then a
    /// learned scale and shift ([`layernorm_forward`]).
    #[default]
    LayerNorm,
    /// Divide by the root mean square, then a learned scale: no mean, no
    /// shift ([`rmsnorm_forward`]).
    RmsNorm,
}
// ANCHOR_END: norm

impl Norm {
    /// The usual name (`"LayerNorm"`, `"RMSNorm"`).
    pub fn name(self) -> &'static str {
        match self {
            Norm::LayerNorm => "LayerNorm",
            Norm::RmsNorm => "RMSNorm",
        }
    }
}

impl fmt::Display for Norm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// ANCHOR: mlp_kind
/// What a block's MLP computes between its two linear layers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mlp {
    /// GPT-2's: `gelu(x·W1)·W2`, hidden width `4C`.
    #[default]
    Gelu,
    /// `(silu(x·W1) ⊙ x·W3)·W2`, hidden width `H` =
    /// [`swiglu_hidden`]`(C)`, about `8C/3`, so that its three matrices hold
    /// as many weights as GELU's two. `W1` and `W3` are the two halves of
    /// `c_fc`, `(C, 2H)` ([`swiglu_forward`]).
    SwiGlu,
}
// ANCHOR_END: mlp_kind

impl Mlp {
    /// The usual name (`"GELU"`, `"SwiGLU"`).
    pub fn name(self) -> &'static str {
        match self {
            Mlp::Gelu => "GELU",
            Mlp::SwiGlu => "SwiGLU",
        }
    }
}

impl fmt::Display for Mlp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// ANCHOR: arch
/// The choices a GPT makes beside its sizes. The default is GPT-2's.
///
/// ```
/// use listings::model::{Arch, Gpt, GptConfig, Mlp, Norm, Positions};
/// assert_eq!(Arch::default(), Arch::gpt2());
/// let rope = Arch { positions: Positions::Rope, ..Arch::default() };
/// let gpt = Gpt::with_arch(GptConfig::toy(10), rope, 0)?;
/// assert_eq!(gpt.arch().to_string(), "rope positions, with MLPs");
/// let modern = Arch {
///     positions: Positions::Rope,
///     norm: Norm::RmsNorm,
///     mlp_kind: Mlp::SwiGlu,
///     kv_heads: Some(2),
///     bias: false,
///     ..Arch::gpt2()
/// };
/// assert_eq!(modern.to_string(), "rope positions, with MLPs, RMSNorm, SwiGLU, 2 kv heads, no biases");
/// # Ok::<(), listings::model::ModelError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arch {
    /// How positions enter the model.
    pub positions: Positions,
    /// Whether each block has its MLP. Without (`false`) the block is
    /// `x + attn(ln_1(x))` alone: an attention-only transformer. Its
    /// `ln_2` and MLP parameters still exist in [`GptParams`]
    /// (so the shapes stay GPT-2's), set to zero and never read or trained;
    /// [`Gpt::num_parameters`](super::Gpt::num_parameters) leaves them out.
    pub mlp: bool,
    /// How the blocks and the final norm `ln_f` normalise.
    #[serde(default, skip_serializing_if = "is_default")]
    pub norm: Norm,
    /// What the MLPs compute (when there are MLPs).
    #[serde(default, skip_serializing_if = "is_default")]
    pub mlp_kind: Mlp,
    /// Grouped-query attention: how many key-value heads the `n_head` query
    /// heads share (a divisor of `n_head`), or `None` for one per query
    /// head (GPT-2's multi-head attention). `Some(1)` is multi-query
    /// attention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_heads: Option<usize>,
    /// Whether the linear layers add a bias, and the LayerNorms a shift
    /// (RMSNorm has none either way).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub bias: bool,
}
// ANCHOR_END: arch

/// For serde: a field at its default is left out of the JSON, so that the
/// choices that existed before the modern block's are written as they were.
fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

fn yes() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

impl Default for Arch {
    fn default() -> Self {
        Self::gpt2()
    }
}

impl Arch {
    /// GPT-2's choices: learned positions, an MLP in every block, LayerNorm,
    /// GELU, multi-head attention, biases.
    pub const fn gpt2() -> Self {
        Arch {
            positions: Positions::Learned,
            mlp: true,
            norm: Norm::LayerNorm,
            mlp_kind: Mlp::Gelu,
            kv_heads: None,
            bias: true,
        }
    }

    /// GPT-2's block with positions of another kind.
    pub fn with_positions(positions: Positions) -> Self {
        Arch {
            positions,
            ..Self::default()
        }
    }

    /// Whether these are GPT-2's choices.
    pub fn is_gpt2(&self) -> bool {
        *self == Self::default()
    }

    /// The number of key-value heads of a model with this config: `kv_heads`,
    /// or `n_head`.
    pub fn n_kv_head(&self, config: &GptConfig) -> usize {
        self.kv_heads.unwrap_or(config.n_head)
    }

    /// The width of `c_attn`'s output: the queries (`C`), then a key and a
    /// value for each key-value head, `C + 2·n_kv_head·hs` (`3C` for GPT-2).
    pub fn qkv_width(&self, config: &GptConfig) -> usize {
        config.n_embd + 2 * self.n_kv_head(config) * config.head_size()
    }

    /// The MLP's hidden width, the rows of `mlp.c_proj`: `4C` with GELU,
    /// [`swiglu_hidden`]`(C)` with SwiGLU.
    pub fn mlp_hidden(&self, config: &GptConfig) -> usize {
        match self.mlp_kind {
            Mlp::Gelu => 4 * config.n_embd,
            Mlp::SwiGlu => swiglu_hidden(config.n_embd),
        }
    }

    /// The width of `c_fc`'s output: the hidden width with GELU, twice it
    /// with SwiGLU (the gate and the "up" projection side by side).
    pub fn fc_width(&self, config: &GptConfig) -> usize {
        match self.mlp_kind {
            Mlp::Gelu => self.mlp_hidden(config),
            Mlp::SwiGlu => 2 * self.mlp_hidden(config),
        }
    }

    /// Whether the norms have a shift: LayerNorm with biases. RMSNorm has
    /// none, and without biases LayerNorm has none either.
    pub fn norm_bias(&self) -> bool {
        self.norm == Norm::LayerNorm && self.bias
    }

    /// Checks that a model of this config can make these choices: RoPE
    /// needs an even head size, and the key-value heads must divide the
    /// query heads.
    pub fn validate(&self, config: &GptConfig) -> Result<(), ModelError> {
        let head_size = config.head_size();
        if self.positions == Positions::Rope && !head_size.is_multiple_of(2) {
            return Err(ModelError::RopeOddHeadSize { head_size });
        }
        if let Some(kv_heads) = self.kv_heads
            && (kv_heads == 0 || !config.n_head.is_multiple_of(kv_heads))
        {
            let n_head = config.n_head;
            return Err(ModelError::KvHeads { n_head, kv_heads });
        }
        Ok(())
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let blocks = if self.mlp {
            "with MLPs"
        } else {
            "attention only"
        };
        write!(f, "{} positions, {blocks}", self.positions)?;
        if self.norm != Norm::default() {
            write!(f, ", {}", self.norm)?;
        }
        if self.mlp_kind != Mlp::default() {
            write!(f, ", {}", self.mlp_kind)?;
        }
        if let Some(k) = self.kv_heads {
            write!(f, ", {k} kv head{}", if k == 1 { "" } else { "s" })?;
        }
        if !self.bias {
            write!(f, ", no biases")?;
        }
        Ok(())
    }
}

// ANCHOR: alibi_slopes
/// ALiBi's slope for each head: the geometric sequence `m_h = 2^(-8(h+1)/nh)`
/// for `h = 0..nh`, so with 8 heads `1/2, 1/4, ..., 1/256`. Steep heads look
/// only at the last few tokens, shallow ones far back. (For a number of
/// heads that is not a power of two the ALiBi paper interleaves two such
/// sequences; this keeps the one formula.)
///
/// ```
/// use listings::model::alibi_slopes;
/// assert_eq!(alibi_slopes(4), [0.25, 0.0625, 0.015625, 0.00390625]);
/// ```
pub fn alibi_slopes(n_head: usize) -> Vec<f32> {
    (0..n_head)
        .map(|h| 2_f64.powf(-8.0 * (h + 1) as f64 / n_head as f64) as f32)
        .collect()
}
// ANCHOR_END: alibi_slopes

/// The rotation of RoPE for `t` positions and heads of `hs` channels:
/// `(cos, sin)` of `p·θ_i`, `θ_i = 10000^(-2i/hs)`, shape `(t, hs/2)` each,
/// computed in f64 as [`rope_apply`](super::rope_apply) does.
fn rope_table(t: usize, hs: usize) -> (Array2<f32>, Array2<f32>) {
    let angle = |p: usize, i: usize| p as f64 * 10_000_f64.powf(-2.0 * i as f64 / hs as f64);
    let cos = Array2::from_shape_fn((t, hs / 2), |(p, i)| angle(p, i).cos() as f32);
    let sin = Array2::from_shape_fn((t, hs / 2), |(p, i)| angle(p, i).sin() as f32);
    (cos, sin)
}

/// Rotates channel pairs `(2i, 2i+1)` of the first `heads` heads of `hs`
/// channels of `qkv` (the queries' heads, then the keys') by `sign·p·θ_i`;
/// the channels after them (the values) are left alone.
fn rope_rotate(qkv: &mut ArrayRef3<f32>, hs: usize, heads: usize, sign: f32) {
    let (_, t, _) = qkv.dim();
    let (cos, sin) = rope_table(t, hs);
    for mut seq in qkv.outer_iter_mut() {
        for (p, mut row) in seq.outer_iter_mut().enumerate() {
            let (cos, sin) = (cos.row(p), sin.row(p));
            let mut qk = row.slice_mut(s![..heads * hs]);
            let pairs = qk.as_slice_mut().expect("qkv is in row-major layout");
            for head in pairs.chunks_exact_mut(hs) {
                for (i, pair) in head.chunks_exact_mut(2).enumerate() {
                    let (cos, sin) = (cos[i], sign * sin[i]);
                    let (x, y) = (pair[0], pair[1]);
                    pair[0] = x * cos - y * sin;
                    pair[1] = x * sin + y * cos;
                }
            }
        }
    }
}

// ANCHOR: rope_forward
/// RoPE in place on `c_attn`'s output: rotates channel pair `i` of every
/// head's query and key at position `p` by the angle `p·θ_i`, `θ_i =
/// 10000^(-2i/hs)`, exactly as [`rope_apply`](super::rope_apply) rotates one
/// head. The values are not rotated.
///
/// Shapes: `qkv` `(B, T, 3C)`, positions `0..T`.
///
/// # Panics
///
/// If the head size is odd (there would be a channel without a partner;
/// [`Gpt::with_arch`](super::Gpt::with_arch) refuses such a model).
pub fn rope_forward(qkv: &mut ArrayRef3<f32>, n_head: usize) {
    let hs = qkv.dim().2 / 3 / n_head;
    assert!(
        hs.is_multiple_of(2),
        "RoPE needs an even head size, not {hs}"
    );
    rope_rotate(qkv, hs, 2 * n_head, 1.0); // queries are channels 0..C, keys C..2C
}
// ANCHOR_END: rope_forward

// ANCHOR: rope_backward
/// The backward pass of [`rope_forward`], in place on the gradient of the
/// rotated queries and keys: a rotation is a matrix `R` with `Rᵀ = R⁻¹`, the
/// rotation by the opposite angle, so the gradient of the vector before it
/// is `Rᵀ` times the gradient after it.
///
/// Shapes: `dqkv` `(B, T, 3C)`; the values' gradient is left alone.
pub fn rope_backward(dqkv: &mut ArrayRef3<f32>, n_head: usize) {
    let hs = dqkv.dim().2 / 3 / n_head;
    assert!(
        hs.is_multiple_of(2),
        "RoPE needs an even head size, not {hs}"
    );
    rope_rotate(dqkv, hs, 2 * n_head, -1.0);
}
// ANCHOR_END: rope_backward

// ANCHOR: rope_forward_gqa
/// [`rope_forward`] for grouped-query attention's layout
/// ([`attention_forward_gqa`]): the `n_head` query heads and the
/// `n_kv_head` key heads are rotated, the values are not. With
/// `n_kv_head == n_head` it is [`rope_forward`].
///
/// Shapes: `qkv` `(B, T, C + 2·n_kv_head·hs)`, positions `0..T`.
///
/// # Panics
///
/// If the head size is odd.
pub fn rope_forward_gqa(qkv: &mut ArrayRef3<f32>, n_head: usize, n_kv_head: usize) {
    let hs = qkv.dim().2 / (n_head + 2 * n_kv_head);
    assert!(
        hs.is_multiple_of(2),
        "RoPE needs an even head size, not {hs}"
    );
    rope_rotate(qkv, hs, n_head + n_kv_head, 1.0);
}

/// The backward pass of [`rope_forward_gqa`], as [`rope_backward`] is of
/// [`rope_forward`]: the rotation by the opposite angle.
pub fn rope_backward_gqa(dqkv: &mut ArrayRef3<f32>, n_head: usize, n_kv_head: usize) {
    let hs = dqkv.dim().2 / (n_head + 2 * n_kv_head);
    assert!(
        hs.is_multiple_of(2),
        "RoPE needs an even head size, not {hs}"
    );
    rope_rotate(dqkv, hs, n_head + n_kv_head, -1.0);
}
// ANCHOR_END: rope_forward_gqa

/// The embedding layer without positions: `out[b, t, :] = wte[idx[b, t], :]`.
/// Shapes as [`encoder_forward`](super::encoder_forward).
pub fn token_embedding_forward(
    out: &mut ArrayRef3<f32>,
    idx: &ArrayRef2<u32>,
    wte: &ArrayRef2<f32>,
) {
    for ((b, t), &token) in idx.indexed_iter() {
        out.slice_mut(s![b, t, ..]).assign(&wte.row(token as usize));
    }
}

/// The backward pass of [`token_embedding_forward`]: the scatter-add of
/// [`encoder_backward`](super::encoder_backward) into `dwte` alone.
pub fn token_embedding_backward(
    dwte: &mut ArrayRef2<f32>,
    dout: &ArrayRef3<f32>,
    idx: &ArrayRef2<u32>,
) {
    for ((b, t), &token) in idx.indexed_iter() {
        Zip::from(dwte.row_mut(token as usize))
            .and(dout.slice(s![b, t, ..]))
            .for_each(|dw, &d| *dw += d);
    }
}

// ANCHOR: norm_forward_arch
/// The norm `arch` asks for, into `out`: LayerNorm ([`layernorm_forward`],
/// or [`layernorm_forward_no_bias`] without biases) or RMSNorm
/// ([`rmsnorm_forward`], which leaves `mean` alone). Shapes as
/// [`layernorm_forward`].
pub fn norm_forward_arch(
    out: &mut ArrayRef3<f32>,
    mean: &mut ArrayRef2<f32>,
    rstd: &mut ArrayRef2<f32>,
    inp: &ArrayRef3<f32>,
    params: &LayerNormParams,
    arch: &Arch,
) {
    match (arch.norm, arch.bias) {
        (Norm::LayerNorm, true) => layernorm_forward(out, mean, rstd, inp, params),
        (Norm::LayerNorm, false) => layernorm_forward_no_bias(out, mean, rstd, inp, &params.weight),
        (Norm::RmsNorm, _) => rmsnorm_forward(out, rstd, inp, &params.weight),
    }
}

/// The backward pass of [`norm_forward_arch`]: adds into `dinp` and into
/// the gradients of the parameters the norm has (not the shift's, without
/// one).
#[allow(clippy::too_many_arguments)]
pub fn norm_backward_arch(
    dinp: &mut ArrayRef3<f32>,
    dparams: &mut LayerNormParams,
    dout: &ArrayRef3<f32>,
    inp: &ArrayRef3<f32>,
    params: &LayerNormParams,
    mean: &ArrayRef2<f32>,
    rstd: &ArrayRef2<f32>,
    arch: &Arch,
) {
    let (dw, w) = (&mut dparams.weight, &params.weight);
    match (arch.norm, arch.bias) {
        (Norm::LayerNorm, true) => layernorm_backward(dinp, dparams, dout, inp, params, mean, rstd),
        (Norm::LayerNorm, false) => layernorm_backward_no_bias(dinp, dw, dout, inp, w, mean, rstd),
        (Norm::RmsNorm, _) => rmsnorm_backward(dinp, dw, dout, inp, w, rstd),
    }
}
// ANCHOR_END: norm_forward_arch

/// A linear layer with or without its bias, as `arch` asks.
fn linear_forward(out: &mut ArrayRef3<f32>, inp: &ArrayRef3<f32>, p: &LinearParams, arch: &Arch) {
    if arch.bias {
        matmul_forward(out, inp, p);
    } else {
        matmul_forward_no_bias(out, inp, &p.weight);
    }
}

/// The backward pass of [`linear_forward`].
fn linear_backward(
    dinp: &mut ArrayRef3<f32>,
    dp: &mut LinearParams,
    dout: &ArrayRef3<f32>,
    inp: &ArrayRef3<f32>,
    p: &LinearParams,
    arch: &Arch,
) {
    if arch.bias {
        matmul_backward(dinp, dp, dout, inp, p);
    } else {
        matmul_backward_no_bias(dinp, &mut dp.weight, dout, inp, &p.weight);
    }
}

// ANCHOR: block_forward_arch
/// [`block_forward`](super::block_forward) with the choices of `arch`: its
/// norm before attention and before the MLP; RoPE turns the queries and
/// keys after `c_attn`; ALiBi's bias enters the attention scores; with
/// shared key-value heads the attention is grouped-query attention; the MLP
/// is GELU's or SwiGLU's, or absent (then the block's output is
/// `residual2`); and the linear layers add their biases or not. With
/// GPT-2's choices it computes the same numbers, to the bit.
///
/// Shapes: `x` `(B, T, C)`; the block's output is `a.residual3`, `(B, T, C)`.
/// `a`'s arrays are sized for `arch` ([`Activations::with_arch`]).
///
/// [`Activations::with_arch`]: super::Activations::with_arch
pub fn block_forward_arch(
    a: &mut LayerActivations,
    x: &ArrayRef3<f32>,
    p: &BlockParams,
    n_head: usize,
    arch: &Arch,
) {
    let (mean, rstd) = (&mut a.ln1_mean, &mut a.ln1_rstd);
    norm_forward_arch(&mut a.ln1, mean, rstd, x, &p.ln_1, arch);
    linear_forward(&mut a.qkv, &a.ln1, &p.attn.c_attn, arch); // (B, T, C) -> (B, T, C + 2·kv·hs)
    let slopes = (arch.positions == Positions::Alibi).then(|| alibi_slopes(n_head));
    match arch.kv_heads {
        None => {
            if arch.positions == Positions::Rope {
                rope_forward(&mut a.qkv, n_head); // rotate q and k by their positions
            }
            match &slopes {
                Some(slopes) => {
                    attention_forward_alibi(&mut a.atty, &mut a.att, &a.qkv, n_head, slopes)
                }
                None => attention_forward(&mut a.atty, &mut a.att, &a.qkv, n_head), // (B, T, 3C) -> (B, T, C)
            }
        }
        Some(kv) => {
            if arch.positions == Positions::Rope {
                rope_forward_gqa(&mut a.qkv, n_head, kv);
            }
            let (out, att, slopes) = (&mut a.atty, &mut a.att, slopes.as_deref());
            attention_forward_gqa(out, att, &a.qkv, n_head, kv, slopes); // -> (B, T, C)
        }
    }
    linear_forward(&mut a.attproj, &a.atty, &p.attn.c_proj, arch); // (B, T, C) -> (B, T, C)
    residual_forward(&mut a.residual2, x, &a.attproj);
    if !arch.mlp {
        a.residual3.assign(&a.residual2); // attention only: the block ends here
        return;
    }
    let (mean, rstd) = (&mut a.ln2_mean, &mut a.ln2_rstd);
    norm_forward_arch(&mut a.ln2, mean, rstd, &a.residual2, &p.ln_2, arch);
    linear_forward(&mut a.fch, &a.ln2, &p.mlp.c_fc, arch); // (B, T, C) -> (B, T, 4C) or (B, T, 2H)
    match arch.mlp_kind {
        Mlp::Gelu => gelu_forward(&mut a.fch_gelu, &a.fch),
        Mlp::SwiGlu => swiglu_forward(&mut a.fch_gelu, &a.fch), // (B, T, 2H) -> (B, T, H)
    }
    linear_forward(&mut a.fcproj, &a.fch_gelu, &p.mlp.c_proj, arch); // -> (B, T, C)
    residual_forward(&mut a.residual3, &a.residual2, &a.fcproj);
}
// ANCHOR_END: block_forward_arch

// ANCHOR: block_backward_arch
/// The backward pass of [`block_forward_arch`], as
/// [`block_backward`](super::block_backward) with the choices of `arch`:
/// without the MLP, the gradient of the output is already that of
/// `residual2`; ALiBi's bias is a constant, so the attention's backward pass
/// is unchanged (it reads only the weights); RoPE's inverse rotation turns
/// the gradient of the rotated queries and keys into that of `c_attn`'s
/// output; each layer's own backward pass for the norm, the MLP's
/// activation, the grouped-query attention and the linear layers with or
/// without biases.
///
/// Shapes: `dx`, `x` `(B, T, C)`. Parameter gradients are added into `dp`;
/// the gradients of parameters `arch` does not use (the MLP's and `ln_2`'s
/// without the MLP, biases without biases, the norms' shifts with RMSNorm)
/// are not touched.
#[allow(clippy::too_many_arguments)]
pub fn block_backward_arch(
    dx: &mut ArrayRef3<f32>,
    g: &mut BlockGrads,
    dp: &mut BlockParams,
    a: &LayerActivations,
    x: &ArrayRef3<f32>,
    p: &BlockParams,
    n_head: usize,
    arch: &Arch,
) {
    if arch.mlp {
        let (fc, proj) = (&p.mlp.c_fc, &p.mlp.c_proj);
        linear_backward(
            &mut g.dfch_gelu,
            &mut dp.mlp.c_proj,
            dx,
            &a.fch_gelu,
            proj,
            arch,
        );
        match arch.mlp_kind {
            Mlp::Gelu => gelu_backward(&mut g.dfch, &a.fch, &g.dfch_gelu),
            Mlp::SwiGlu => swiglu_backward(&mut g.dfch, &a.fch, &g.dfch_gelu),
        }
        linear_backward(&mut g.dln2, &mut dp.mlp.c_fc, &g.dfch, &a.ln2, fc, arch);
        let (mean, rstd) = (&a.ln2_mean, &a.ln2_rstd);
        let (ln2, dln2) = (&p.ln_2, &mut dp.ln_2);
        norm_backward_arch(dx, dln2, &g.dln2, &a.residual2, ln2, mean, rstd, arch);
    }
    let proj = &p.attn.c_proj;
    linear_backward(&mut g.datty, &mut dp.attn.c_proj, dx, &a.atty, proj, arch);
    match arch.kv_heads {
        None => {
            attention_backward(&mut g.dqkv, &mut g.datt, &g.datty, &a.qkv, &a.att, n_head);
            if arch.positions == Positions::Rope {
                rope_backward(&mut g.dqkv, n_head); // rotate the gradient back
            }
        }
        Some(kv) => {
            let (dqkv, datt) = (&mut g.dqkv, &mut g.datt);
            attention_backward_gqa(dqkv, datt, &g.datty, &a.qkv, &a.att, n_head, kv);
            if arch.positions == Positions::Rope {
                rope_backward_gqa(&mut g.dqkv, n_head, kv);
            }
        }
    }
    let c_attn = &p.attn.c_attn;
    linear_backward(
        &mut g.dln1,
        &mut dp.attn.c_attn,
        &g.dqkv,
        &a.ln1,
        c_attn,
        arch,
    );
    let (mean, rstd) = (&a.ln1_mean, &a.ln1_rstd);
    norm_backward_arch(dx, &mut dp.ln_1, &g.dln1, x, &p.ln_1, mean, rstd, arch);
}
// ANCHOR_END: block_backward_arch

impl GptParams {
    // ANCHOR: init_arch
    /// Parameters for a model with the choices of `arch`, drawn as
    /// [`GptParams::init`] draws GPT-2's, in the same order and from the
    /// same generator, with `c_attn`, `c_fc` and `mlp.c_proj` of the shapes
    /// `arch` gives them ([`Arch::qkv_width`], [`Arch::fc_width`],
    /// [`Arch::mlp_hidden`]). With GPT-2's shapes (any `arch` without
    /// SwiGLU or shared key-value heads) these are `init`'s numbers.
    ///
    /// Biases start at zero and the norms' shifts too, so a model without
    /// them needs nothing more here; [`Gpt::with_arch`](super::Gpt::with_arch)
    /// zeroes what else the choices leave unused.
    ///
    /// ```
    /// use listings::model::{Arch, GptConfig, GptParams, Mlp};
    /// let config = GptConfig::toy(10);
    /// assert_eq!(GptParams::init_arch(&config, &Arch::gpt2(), 1), GptParams::init(&config, 1));
    /// let swiglu = Arch { mlp_kind: Mlp::SwiGlu, ..Arch::gpt2() };
    /// let params = GptParams::init_arch(&config, &swiglu, 1);
    /// assert_eq!(params.h[0].mlp.c_fc.weight.dim(), (64, 2 * 168));
    /// ```
    pub fn init_arch(config: &GptConfig, arch: &Arch, seed: u64) -> Self {
        let GptConfig {
            vocab_size: v,
            block_size: t,
            n_layer: l,
            n_embd: c,
            ..
        } = *config;
        let (qkv, fc, hidden) = (
            arch.qkv_width(config),
            arch.fc_width(config),
            arch.mlp_hidden(config),
        );
        let mut rng = seeded(seed);
        let residual_std = INIT_STD / (2.0 * l as f32).sqrt();
        let wte = randn((v, c), INIT_STD, &mut rng);
        let wpe = randn((t, c), INIT_STD, &mut rng);
        let h = (0..l)
            .map(|_| BlockParams {
                ln_1: LayerNormParams::new(c),
                attn: AttentionParams {
                    c_attn: LinearParams::new(c, qkv, INIT_STD, &mut rng),
                    c_proj: LinearParams::new(c, c, residual_std, &mut rng),
                },
                ln_2: LayerNormParams::new(c),
                mlp: MlpParams {
                    c_fc: LinearParams::new(c, fc, INIT_STD, &mut rng),
                    c_proj: LinearParams::new(hidden, c, residual_std, &mut rng),
                },
            })
            .collect();
        Self {
            wte,
            wpe,
            h,
            ln_f: LayerNormParams::new(c),
        }
    }
    // ANCHOR_END: init_arch

    /// Every tensor of a model with the choices of `arch` filled with
    /// zeros: the shape of its gradients, or of an optimiser's running
    /// averages. With GPT-2's shapes, [`GptParams::zeros`].
    pub fn zeros_arch(config: &GptConfig, arch: &Arch) -> Self {
        let mut params = Self::zeros(config);
        let c = config.n_embd;
        let (qkv, fc, hidden) = (
            arch.qkv_width(config),
            arch.fc_width(config),
            arch.mlp_hidden(config),
        );
        for block in &mut params.h {
            if qkv != 3 * c {
                block.attn.c_attn = LinearParams::zeros(c, qkv);
            }
            if fc != 4 * c || hidden != 4 * c {
                block.mlp.c_fc = LinearParams::zeros(c, fc);
                block.mlp.c_proj = LinearParams::zeros(hidden, c);
            }
        }
        params
    }

    /// The names and shapes of every tensor of a model with the choices of
    /// `arch`, in checkpoint order: [`GptParams::specs`]'s names, and its
    /// shapes but for `c_attn`, `c_fc` and `mlp.c_proj`.
    pub fn specs_arch(config: &GptConfig, arch: &Arch) -> Vec<ParamSpec> {
        Self::zeros_arch(config, arch)
            .tensors()
            .into_iter()
            .map(|(name, view)| ParamSpec {
                name,
                shape: view.shape().to_vec(),
            })
            .collect()
    }
}

// ANCHOR: count_parameters_arch
/// The number of parameters a model of this config with the choices of
/// `arch` uses, by formula (the tests check it against
/// [`Gpt::num_parameters`](super::Gpt::num_parameters)):
/// [`count_parameters`](super::count_parameters) with each choice's
/// changes. Per block, with `q = C + 2·n_kv_head·hs` the width of
/// `c_attn`, `f` that of `c_fc` and `h` the MLP's hidden width
/// ([`Arch::qkv_width`], [`Arch::fc_width`], [`Arch::mlp_hidden`]):
///
/// - attention: `C·q + C·C`, plus `q + C` of biases;
/// - MLP (if any): `C·f + h·C`, plus `f + C` of biases; GELU has
///   `f = h = 4C`, SwiGLU `f = 2h` (about `8C²` weights either way);
/// - each norm (`ln_1`, `ln_2` with the MLP, and `ln_f` once): a scale of
///   `C`, plus a shift of `C` for LayerNorm with biases;
///
/// and `V·C` for `wte`, `T·C` for `wpe` if the positions are learned.
///
/// ```
/// use listings::model::{count_parameters, count_parameters_arch, Arch, GptConfig};
/// let config = GptConfig::gpt2();
/// assert_eq!(count_parameters_arch(&config, &Arch::gpt2()), count_parameters(&config));
/// ```
pub fn count_parameters_arch(config: &GptConfig, arch: &Arch) -> usize {
    let GptConfig {
        vocab_size: v,
        block_size: t,
        n_layer: l,
        n_embd: c,
        ..
    } = *config;
    let (q, f, h) = (
        arch.qkv_width(config),
        arch.fc_width(config),
        arch.mlp_hidden(config),
    );
    let bias = |n: usize| if arch.bias { n } else { 0 };
    let norm = c + if arch.norm_bias() { c } else { 0 };
    let attention = c * q + c * c + bias(q + c);
    let mlp = if arch.mlp {
        c * f + h * c + bias(f + c) + norm
    } else {
        0
    };
    let positions = if arch.positions.is_learned() {
        t * c
    } else {
        0
    };
    v * c + positions + l * (norm + attention + mlp) + norm
}
// ANCHOR_END: count_parameters_arch

#[cfg(test)]
mod tests {
    use ndarray::Array2;

    use super::{Mlp, Norm, swiglu_hidden};
    use crate::model::{Arch, Gpt, GptConfig, Positions};
    use crate::optim::AdamWConfig;
    use crate::rng::{RngExt, seeded};
    use crate::train::step::Trainer;

    /// The vector instructions matrixmultiply and `simd` pick their code by
    /// (as `lab::cache` keys its results): the bits of a trained model
    /// depend on them, so a fingerprint is recorded per kind of CPU.
    fn cpu_features() -> String {
        #[cfg(target_arch = "x86_64")]
        {
            let mut features = String::from("x86_64");
            if std::arch::is_x86_feature_detected!("avx512f") {
                features.push_str("+avx512f");
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                features.push_str("+avx2");
            }
            if std::arch::is_x86_feature_detected!("fma") {
                features.push_str("+fma");
            }
            features
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            std::env::consts::ARCH.to_string()
        }
    }

    /// FNV-1a over the bits of `numbers`, 64 bits.
    fn hash_bits(hash: u64, numbers: impl IntoIterator<Item = f32>) -> u64 {
        numbers.into_iter().fold(hash, |h, x| {
            x.to_bits()
                .to_le_bytes()
                .iter()
                .fold(h, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
        })
    }

    /// The tiny model of the fingerprints.
    fn tiny() -> GptConfig {
        GptConfig {
            vocab_size: 13,
            block_size: 16,
            n_layer: 2,
            n_head: 2,
            n_embd: 16,
        }
    }

    /// Trains a tiny model with the choices of `arch` for 6 steps of AdamW
    /// on seeded random batches ([`fingerprint_of`]).
    fn training_fingerprint(arch: Arch) -> (Vec<u32>, u64) {
        fingerprint_of(
            Gpt::with_arch(tiny(), arch, 7).expect("a valid model"),
            3,
            6,
        )
    }

    /// Trains `gpt` for `steps` steps of AdamW on seeded random batches of
    /// `b` sequences as long as its context, and returns the bits of every
    /// step's loss and a hash of the bits of every parameter and every
    /// gradient after the last step.
    fn fingerprint_of(gpt: Gpt, b: usize, steps: usize) -> (Vec<u32>, u64) {
        let GptConfig {
            vocab_size: v,
            block_size: t,
            ..
        } = *gpt.config();
        let adamw = AdamWConfig {
            lr: 1e-2,
            ..AdamWConfig::default()
        };
        let mut trainer = Trainer::new(gpt, adamw, b, t).expect("a valid trainer");
        let mut rng = seeded(21);
        let mut losses = Vec::new();
        for _ in 0..steps {
            let v = v as u32;
            let mut batch = || Array2::from_shape_simple_fn((b, t), || rng.random_range(0..v));
            let (idx, targets) = (batch(), batch());
            let stats = trainer
                .step(&idx, &targets, 1e-2, 1.0)
                .expect("a finite step");
            losses.push(stats.loss.to_bits());
        }
        let params = trainer
            .gpt()
            .params()
            .slices()
            .flat_map(|(t, _)| t.to_vec());
        let grads = trainer.gradients().slices().flat_map(|(t, _)| t.to_vec());
        let hash = hash_bits(hash_bits(0xcbf2_9ce4_8422_2325, params), grads);
        (losses, hash)
    }

    /// The architectures whose training is pinned to the bit: GPT-2's and
    /// the variants that existed before the modern block's switches.
    fn pinned() -> Vec<(&'static str, Arch)> {
        let attention_only = |positions| Arch {
            mlp: false,
            ..Arch::with_positions(positions)
        };
        vec![
            ("gpt2", Arch::default()),
            ("rope", Arch::with_positions(Positions::Rope)),
            ("sinusoidal", Arch::with_positions(Positions::Sinusoidal)),
            ("none", Arch::with_positions(Positions::None)),
            ("learned, no mlp", attention_only(Positions::Learned)),
            ("alibi, no mlp", attention_only(Positions::Alibi)),
            ("rope, no mlp", attention_only(Positions::Rope)),
        ]
    }

    /// A recorded fingerprint: the model's name, the hash of its numbers,
    /// the bits of its `N` losses.
    type Recorded<const N: usize> = (&'static str, u64, [u32; N]);

    /// What [`training_fingerprint`] gave for each of [`pinned`] before the
    /// modern block's switches were added, on a CPU with these features:
    /// `(name, hash, loss bits)`.
    const RECORDED: (&str, [Recorded<6>; 7]) = (
        "x86_64+avx512f+avx2+fma",
        [
            (
                "gpt2",
                0x0af9fe7b1682c4ff,
                [
                    0x4025e1c1, 0x402604ce, 0x4023790c, 0x40249462, 0x40256917, 0x40257382,
                ],
            ),
            (
                "rope",
                0xb1c05951f65ba50d,
                [
                    0x4026369b, 0x4026bade, 0x40249a5e, 0x40240070, 0x4024bdb4, 0x40249c6f,
                ],
            ),
            (
                "sinusoidal",
                0x602025b49163238a,
                [
                    0x402612ed, 0x4026b303, 0x40237e0d, 0x40254ce8, 0x40255d08, 0x40258b5d,
                ],
            ),
            (
                "none",
                0xec4394edc3b4666a,
                [
                    0x402636a4, 0x4026ba26, 0x4024991b, 0x402403e3, 0x4024bd89, 0x4024a016,
                ],
            ),
            (
                "learned, no mlp",
                0x189b83dc6ef7c0e9,
                [
                    0x4025f85c, 0x4025a30d, 0x40247477, 0x40242730, 0x402510bf, 0x40252ebd,
                ],
            ),
            (
                "alibi, no mlp",
                0x6f7de802556a203f,
                [
                    0x40264668, 0x40263996, 0x40248c8a, 0x40253e95, 0x4024cfb9, 0x40249d7e,
                ],
            ),
            (
                "rope, no mlp",
                0x51026c8aa2b2b7e1,
                [
                    0x402646a5, 0x40263ed5, 0x40249f71, 0x40251f60, 0x4024d0c1, 0x4024b757,
                ],
            ),
        ],
    );

    /// GPT-2's model and the older variants train to the same bits as they
    /// did before the modern block's switches existed: every step's loss,
    /// every parameter and every gradient. The bits depend on the CPU's
    /// vector instructions (matrixmultiply picks its kernel by them), so
    /// on a CPU of another kind the test prints the fingerprints (to record
    /// from a commit before a change) and checks only that two runs agree.
    #[test]
    fn training_is_bit_identical_to_the_recorded_fingerprints() {
        let (recorded_on, recorded) = RECORDED;
        let same_cpu = cpu_features() == recorded_on;
        for ((name, arch), (recorded_name, hash, losses)) in pinned().into_iter().zip(recorded) {
            assert_eq!(name, recorded_name);
            let run = training_fingerprint(arch);
            let bits: Vec<String> = run.0.iter().map(|l| format!("{l:#010x}")).collect();
            println!("({name:?}, {:#018x}, [{}]),", run.1, bits.join(", "));
            if same_cpu {
                assert_eq!(run, (losses.to_vec(), hash), "{name} trains to other bits");
            } else {
                assert_eq!(run, training_fingerprint(arch), "{name}: two runs differ");
            }
        }
        if !same_cpu {
            println!(
                "not checked: recorded on {recorded_on}, this CPU is {}",
                cpu_features()
            );
        }
    }

    /// The book's model shape ([`GptConfig::toy`], 64 wide, 64 tokens of
    /// context) on batches of 8: large enough that every product is shared
    /// out between threads. Recorded as [`RECORDED`] was.
    const RECORDED_TOY: [Recorded<2>; 2] = [
        ("gpt2", 0xa004e5b0ea0159c5, [0x4092d7d0, 0x4092c058]),
        ("rope, no mlp", 0x5d18953485524d77, [0x4092e857, 0x40932e7b]),
    ];

    #[test]
    fn a_book_sized_model_trains_to_the_recorded_bits() {
        let archs = [
            ("gpt2", Arch::default()),
            (
                "rope, no mlp",
                Arch {
                    mlp: false,
                    ..Arch::with_positions(Positions::Rope)
                },
            ),
        ];
        let same_cpu = cpu_features() == RECORDED.0;
        for ((name, arch), (recorded_name, hash, losses)) in archs.into_iter().zip(RECORDED_TOY) {
            assert_eq!(name, recorded_name);
            let gpt = Gpt::with_arch(GptConfig::toy(97), arch, 3).expect("a valid model");
            let run = fingerprint_of(gpt, 8, 2);
            let bits: Vec<String> = run.0.iter().map(|l| format!("{l:#010x}")).collect();
            println!("({name:?}, {:#018x}, [{}]),", run.1, bits.join(", "));
            if same_cpu {
                assert_eq!(run, (losses.to_vec(), hash), "{name} trains to other bits");
            }
        }
    }

    #[test]
    fn the_fingerprint_sees_a_one_bit_change() {
        // The check can fail: the same model with one weight one bit
        // different trains to another fingerprint.
        let arch = Arch::default();
        let base = training_fingerprint(arch);
        let mut gpt = Gpt::with_arch(tiny(), arch, 7).expect("a valid model");
        let w = &mut gpt.params_mut().h[1].mlp.c_fc.weight[[3, 5]];
        *w = f32::from_bits(w.to_bits() ^ 1);
        assert_ne!(fingerprint_of(gpt, 3, 6), base);
    }

    // ------------------------------------------------ the modern block's switches

    use crate::model::gradcheck::{SAMPLES, TOLERANCE, check_params, whole_model};
    use crate::model::{
        ActivationGrads, Activations, GptParams, ModelError, count_parameters,
        count_parameters_arch,
    };

    /// Each switch alone, then all four together, with RoPE (the LLaMA
    /// block) and with ALiBi and multi-query attention.
    fn modern_archs() -> Vec<Arch> {
        let gpt2 = Arch::gpt2();
        let all = Arch {
            positions: Positions::Rope,
            norm: Norm::RmsNorm,
            mlp_kind: Mlp::SwiGlu,
            kv_heads: Some(2),
            bias: false,
            ..gpt2
        };
        vec![
            Arch {
                norm: Norm::RmsNorm,
                ..gpt2
            },
            Arch {
                mlp_kind: Mlp::SwiGlu,
                ..gpt2
            },
            Arch {
                kv_heads: Some(2),
                ..gpt2
            },
            Arch {
                kv_heads: Some(1),
                ..Arch::with_positions(Positions::Rope)
            },
            Arch {
                bias: false,
                ..gpt2
            },
            all,
            Arch {
                positions: Positions::Alibi,
                kv_heads: Some(1),
                ..all
            },
            Arch { mlp: false, ..all },
        ]
    }

    /// Every parameter tensor of each model in [`modern_archs`], sampled as
    /// `tests/gradcheck.rs` samples GPT-2's. The largest error (about 1e-2,
    /// in the ALiBi model's largest gradient, 3.4) is the finite
    /// differences' curvature error at `h = 0.05`: at `h = 0.002` the same
    /// estimate agrees with the analytic gradient to 1e-5.
    #[test]
    fn whole_models_with_the_modern_switches() {
        let mut worst = (0.0, String::new());
        for arch in modern_archs() {
            let (params, grads, loss) = whole_model(arch);
            let label = arch.to_string();
            let (err, name) = check_params(&label, &params, &grads, SAMPLES, loss);
            assert!(
                err < TOLERANCE,
                "{arch}: {name}: max relative error {err:.2e}"
            );
            if err >= worst.0 {
                worst = (err, format!("{arch}: {name}"));
            }
            // What the choices do not use gets no gradient at all.
            let tensors = grads.tensors();
            for (name, g) in &tensors {
                let unused = (name.ends_with("wpe.weight") && !arch.positions.is_learned())
                    || (name.contains(".ln_") && name.ends_with(".bias") && !arch.norm_bias())
                    || (name.contains(".c_") && name.ends_with(".bias") && !arch.bias)
                    || ((name.contains(".mlp.") || name.contains(".ln_2.")) && !arch.mlp);
                if unused {
                    assert!(g.iter().all(|&g| g == 0.0), "{arch}: {name} has a gradient");
                } else {
                    assert!(g.iter().any(|&g| g != 0.0), "{arch}: {name} has none");
                }
            }
        }
        println!("worst of all: {:.2e} in {}", worst.0, worst.1);
    }

    #[test]
    fn as_many_kv_heads_as_heads_is_multi_head_attention_to_the_bit() {
        let config = GptConfig {
            n_head: 4,
            ..tiny()
        };
        let mha = Arch::with_positions(Positions::Rope);
        let gqa = Arch {
            kv_heads: Some(4),
            ..mha
        };
        let (a, b) = (
            Gpt::with_arch(config, mha, 2).unwrap(),
            Gpt::with_arch(config, gqa, 2).unwrap(),
        );
        assert_eq!(a.params(), b.params());
        let mut rng = seeded(4);
        let mut batch = || Array2::from_shape_simple_fn((3, 16), || rng.random_range(0..13));
        let (idx, targets) = (batch(), batch());
        let run = |gpt: &Gpt| {
            let mut acts = Activations::with_arch(&config, gpt.arch(), 3, 16);
            let mut dacts = ActivationGrads::with_arch(&config, gpt.arch(), 3, 16);
            let mut grads = GptParams::zeros_arch(&config, gpt.arch());
            gpt.forward_with(&mut acts, &idx, Some(&targets)).unwrap();
            gpt.backward(&mut grads, &mut dacts, &acts);
            (acts.logits, grads)
        };
        assert_eq!(run(&a), run(&b));
    }

    #[test]
    fn grouped_query_attention_is_a_model_with_its_kv_heads_repeated() {
        // A GQA model's key and value columns of c_attn, each repeated for
        // every query head of its group, make a multi-head model that
        // computes the same logits.
        let config = GptConfig {
            n_head: 4,
            ..tiny()
        };
        let hs = config.head_size();
        let c = config.n_embd;
        for kv in [1, 2] {
            let gqa = Arch {
                kv_heads: Some(kv),
                ..Arch::with_positions(Positions::Rope)
            };
            let grouped = Gpt::with_arch(config, gqa, 3).unwrap();
            let mut params = GptParams::init(&config, 0);
            for (block, from) in params.h.iter_mut().zip(&grouped.params().h) {
                block.clone_from(from);
                let (w, b) = (&from.attn.c_attn.weight, &from.attn.c_attn.bias);
                let column = |k: usize| match k {
                    k if k < c => k,
                    k => {
                        let (part, k) = ((k - c) / c, (k - c) % c);
                        c + part * kv * hs + (k / hs) / (4 / kv) * hs + k % hs
                    }
                };
                block.attn.c_attn.weight =
                    Array2::from_shape_fn((c, 3 * c), |(i, k)| w[[i, column(k)]]);
                block.attn.c_attn.bias = ndarray::Array1::from_shape_fn(3 * c, |k| b[column(k)]);
            }
            params.wte.assign(&grouped.params().wte);
            params.wpe.assign(&grouped.params().wpe);
            params.ln_f = grouped.params().ln_f.clone();
            let repeated =
                Gpt::from_parts(config, Arch::with_positions(Positions::Rope), params).unwrap();
            let idx = Array2::from_shape_fn((2, 16), |(b, t)| ((5 * b + 3 * t) % 13) as u32);
            let (x, _) = grouped.forward(&idx, None).unwrap();
            let (y, _) = repeated.forward(&idx, None).unwrap();
            let diff = (&x - &y).iter().fold(0.0_f32, |m, d| m.max(d.abs()));
            assert!(diff < 1e-6, "{kv} kv heads: {diff}");
            assert!(grouped.num_parameters() < repeated.num_parameters());
        }
    }

    #[test]
    fn the_parameter_count_by_formula_is_the_count_of_what_is_used() {
        for config in [
            tiny(),
            GptConfig::toy(50),
            GptConfig {
                n_embd: 48,
                n_head: 4,
                ..tiny()
            },
        ] {
            let mut archs = modern_archs();
            archs.extend(pinned().into_iter().map(|(_, arch)| arch));
            for arch in archs {
                let gpt = Gpt::with_arch(config, arch, 0).unwrap();
                assert_eq!(
                    gpt.num_parameters(),
                    count_parameters_arch(&config, &arch),
                    "{arch}"
                );
            }
            assert_eq!(
                count_parameters_arch(&config, &Arch::gpt2()),
                count_parameters(&config)
            );
        }
    }

    #[test]
    fn each_switch_changes_the_count_as_stated() {
        let config = GptConfig::toy(50); // C = 64, 4 heads of 16, 2 layers
        let (c, l) = (64, 2);
        let gpt2 = Arch::gpt2();
        let count = |arch: Arch| count_parameters_arch(&config, &arch) as i64;
        let base = count(gpt2);
        // RMSNorm: no shift in the 2 norms per block and ln_f.
        assert_eq!(
            count(Arch {
                norm: Norm::RmsNorm,
                ..gpt2
            }),
            base - (2 * l + 1) * c
        );
        // SwiGLU: 3·C·H weights and 2H + C biases instead of 8C² and 5C.
        let h = swiglu_hidden(c as usize) as i64;
        let swiglu = count(Arch {
            mlp_kind: Mlp::SwiGlu,
            ..gpt2
        });
        assert_eq!(
            swiglu - base,
            l * ((3 * c * h + 2 * h + c) - (8 * c * c + 5 * c))
        );
        // GQA with one kv head: c_attn keeps C + 2·hs of its 3C columns.
        let mqa = count(Arch {
            kv_heads: Some(1),
            ..gpt2
        });
        assert_eq!(base - mqa, l * (c + 1) * (2 * c - 2 * 16));
        // No biases: 3C + C + 4C + C per block in the linear layers, and
        // the LayerNorms' shifts.
        assert_eq!(
            count(Arch {
                bias: false,
                ..gpt2
            }),
            base - l * 9 * c - (2 * l + 1) * c
        );
        // With C divisible by 3, SwiGLU's weights are GELU's exactly.
        let config = GptConfig {
            n_embd: 96,
            n_head: 4,
            ..config
        };
        let weights = |arch: Arch| {
            let gpt = Gpt::with_arch(config, arch, 0).unwrap();
            let mlp = &gpt.params().h[0].mlp;
            mlp.c_fc.weight.len() + mlp.c_proj.weight.len()
        };
        assert_eq!(
            weights(Arch {
                mlp_kind: Mlp::SwiGlu,
                ..gpt2
            }),
            weights(gpt2)
        );
        assert_eq!(weights(gpt2), 8 * 96 * 96);
    }

    #[test]
    fn the_modern_switches_keep_gpt2s_names_and_change_only_their_shapes() {
        let config = tiny();
        let gpt2 = GptParams::specs(&config);
        for arch in modern_archs() {
            let specs = GptParams::specs_arch(&config, &arch);
            assert_eq!(specs.len(), gpt2.len());
            for (a, b) in specs.iter().zip(&gpt2) {
                assert_eq!(a.name, b.name);
                let reshaped = ["c_attn", "c_fc", "mlp.c_proj"]
                    .iter()
                    .any(|n| a.name.contains(n));
                if !reshaped {
                    assert_eq!(a.shape, b.shape, "{arch}: {}", a.name);
                }
            }
        }
        assert_eq!(GptParams::specs_arch(&config, &Arch::gpt2()), gpt2);
        assert_eq!(
            GptParams::zeros_arch(&config, &Arch::gpt2()),
            GptParams::zeros(&config)
        );
        assert_eq!(
            GptParams::init_arch(&config, &Arch::gpt2(), 9),
            GptParams::init(&config, 9)
        );
        // A switch that keeps the shapes keeps the initial numbers.
        let rms = Arch {
            norm: Norm::RmsNorm,
            bias: false,
            ..Arch::gpt2()
        };
        assert_eq!(
            Gpt::with_arch(config, rms, 9).unwrap().params(),
            Gpt::new(config, 9).unwrap().params()
        );
    }

    #[test]
    fn kv_heads_must_divide_the_heads() {
        let config = GptConfig {
            n_head: 4,
            ..tiny()
        };
        for kv_heads in [0, 3, 8] {
            let arch = Arch {
                kv_heads: Some(kv_heads),
                ..Arch::gpt2()
            };
            let err = Gpt::with_arch(config, arch, 0).unwrap_err();
            assert_eq!(
                err,
                ModelError::KvHeads {
                    n_head: 4,
                    kv_heads
                }
            );
        }
        let arch = Arch {
            kv_heads: Some(2),
            ..Arch::gpt2()
        };
        assert!(Gpt::with_arch(config, arch, 0).is_ok());
        // Parameters of GPT-2's shapes are refused for a GQA model.
        let err = Gpt::from_parts(config, arch, GptParams::init(&config, 0)).unwrap_err();
        assert!(
            matches!(err, ModelError::ParamShape { ref name, .. } if name.contains("c_attn")),
            "{err}"
        );
    }

    #[test]
    fn old_arch_json_reads_and_writes_as_it_did() {
        let rope: Arch = serde_json::from_str(r#"{"positions":"rope","mlp":true}"#).unwrap();
        assert_eq!(rope, Arch::with_positions(Positions::Rope));
        for (_, arch) in pinned() {
            let json = serde_json::to_string(&arch).unwrap();
            let expected = format!(r#"{{"positions":"{}","mlp":{}}}"#, arch.positions, arch.mlp);
            assert_eq!(json, expected);
        }
        for arch in modern_archs() {
            let json = serde_json::to_string(&arch).unwrap();
            assert_eq!(serde_json::from_str::<Arch>(&json).unwrap(), arch, "{json}");
        }
        let all = modern_archs()[5];
        assert_eq!(
            serde_json::to_string(&all).unwrap(),
            r#"{"positions":"rope","mlp":true,"norm":"rmsnorm","mlp_kind":"swiglu","kv_heads":2,"bias":false}"#
        );
    }

    #[test]
    fn a_modern_model_trains_saves_and_loads() {
        use crate::checkpoint::{load, save};
        use crate::tokens::{CharVocab, TextTokenizer};
        let config = GptConfig {
            n_head: 4,
            ..tiny()
        };
        let arch = modern_archs()[5];
        let gpt = Gpt::with_arch(config, arch, 7).unwrap();
        let mut trainer = Trainer::new(gpt, AdamWConfig::default(), 4, 16).unwrap();
        let mut rng = seeded(1);
        let mut batch = || Array2::from_shape_simple_fn((4, 16), || rng.random_range(0..13));
        let (idx, targets) = (batch(), batch());
        let first = trainer.step(&idx, &targets, 1e-2, 1.0).unwrap().loss;
        for _ in 0..30 {
            trainer.step(&idx, &targets, 1e-2, 1.0).unwrap();
        }
        let last = trainer.evaluate(&idx, &targets).unwrap();
        assert!(last < first * 0.8, "{first} -> {last}");
        let (gpt, optimizer) = trainer.into_parts();
        // Unused parameters stayed at zero (AdamW's decay of zero is zero).
        let p = gpt.params();
        assert!(p.wpe.iter().all(|&w| w == 0.0));
        for block in &p.h {
            for bias in [
                &block.attn.c_attn.bias,
                &block.mlp.c_fc.bias,
                &block.ln_1.bias,
            ] {
                assert!(bias.iter().all(|&b| b == 0.0));
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("modern.safetensors");
        let tokenizer = TextTokenizer::Char(CharVocab::from_text("abcdefghijklm").unwrap());
        save(
            &path,
            &gpt,
            &tokenizer,
            Some(&optimizer),
            31,
            &Default::default(),
        )
        .unwrap();
        let loaded = load(&path).unwrap();
        assert_eq!(loaded.gpt.arch(), &arch);
        assert_eq!(loaded.gpt.params(), gpt.params());
        assert_eq!(loaded.optimizer.unwrap().m, optimizer.m);
        assert_eq!(
            loaded.gpt.forward(&idx, None).unwrap().0,
            gpt.forward(&idx, None).unwrap().0
        );
    }
}
