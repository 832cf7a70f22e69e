//! The architectural choices a GPT makes beside its five sizes: how it tells
//! the attention where each token is, and whether its blocks have an MLP.
//!
//! [`GptConfig`](super::GptConfig) fixes the shapes; an [`Arch`] fixes what
//! the model computes with them. Its default is GPT-2's (a learned position
//! table added to the token embeddings, an MLP in every block), which is what
//! [`Gpt::new`](super::Gpt::new) builds. The others:
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
//! The functions here are the pieces the variants add to the block:
//! [`rope_forward`] and [`rope_backward`] turn the queries and keys of the
//! `qkv` array in place; [`alibi_slopes`] gives each head its slope (the
//! attention adds the bias, [`attention_forward_alibi`]);
//! [`block_forward_arch`] and [`block_backward_arch`] are the block with
//! every choice.
//!
//! [`attention_forward_alibi`]: super::attention_forward_alibi

use std::fmt;

use ndarray::{Array2, ArrayRef2, ArrayRef3, Zip, s};
use serde::{Deserialize, Serialize};

use super::attention::{attention_backward, attention_forward, attention_forward_alibi};
use super::gpt::{BlockGrads, LayerActivations};
use super::layers::{
    gelu_backward, gelu_forward, layernorm_backward, layernorm_forward, matmul_backward,
    matmul_forward, residual_forward,
};
use super::params::BlockParams;

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

// ANCHOR: arch
/// The choices a GPT makes beside its sizes. The default is GPT-2's.
///
/// ```
/// use listings::model::{Arch, Gpt, GptConfig, Positions};
/// assert_eq!(Arch::default(), Arch { positions: Positions::Learned, mlp: true });
/// let rope = Arch { positions: Positions::Rope, ..Arch::default() };
/// let gpt = Gpt::with_arch(GptConfig::toy(10), rope, 0)?;
/// assert_eq!(gpt.arch().to_string(), "rope positions, with MLPs");
/// # Ok::<(), listings::model::ModelError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arch {
    /// How positions enter the model.
    pub positions: Positions,
    /// Whether each block has its MLP. Without (`false`) the block is
    /// `x + attn(ln_1(x))` alone: an attention-only transformer. Its
    /// `ln_2` and MLP parameters still exist in [`GptParams`](super::GptParams)
    /// (so the shapes stay GPT-2's), set to zero and never read or trained;
    /// [`Gpt::num_parameters`](super::Gpt::num_parameters) leaves them out.
    pub mlp: bool,
}
// ANCHOR_END: arch

impl Default for Arch {
    fn default() -> Self {
        Arch {
            positions: Positions::Learned,
            mlp: true,
        }
    }
}

impl Arch {
    /// GPT-2's choices: learned positions, an MLP in every block.
    pub fn gpt2() -> Self {
        Self::default()
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
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let blocks = if self.mlp {
            "with MLPs"
        } else {
            "attention only"
        };
        write!(f, "{} positions, {blocks}", self.positions)
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

/// Rotates channel pairs `(2i, 2i+1)` of every head's query and key in
/// `qkv` by `sign·p·θ_i`; the values (the last third) are left alone.
fn rope_rotate(qkv: &mut ArrayRef3<f32>, n_head: usize, sign: f32) {
    let (_, t, c3) = qkv.dim();
    let c = c3 / 3;
    let hs = c / n_head;
    let (cos, sin) = rope_table(t, hs);
    for mut seq in qkv.outer_iter_mut() {
        for (p, mut row) in seq.outer_iter_mut().enumerate() {
            let (cos, sin) = (cos.row(p), sin.row(p));
            // Queries are channels 0..C, keys C..2C: 2·nh heads of hs channels.
            let mut qk = row.slice_mut(s![..2 * c]);
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
    rope_rotate(qkv, n_head, 1.0);
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
    rope_rotate(dqkv, n_head, -1.0);
}
// ANCHOR_END: rope_backward

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

// ANCHOR: block_forward_arch
/// [`block_forward`](super::block_forward) with the choices of `arch`: RoPE
/// turns the queries and keys after `c_attn`; ALiBi's bias enters the
/// attention scores; without the MLP the block's output is `residual2`.
/// With GPT-2's choices it computes the same numbers, to the bit.
///
/// Shapes: `x` `(B, T, C)`; the block's output is `a.residual3`, `(B, T, C)`.
pub fn block_forward_arch(
    a: &mut LayerActivations,
    x: &ArrayRef3<f32>,
    p: &BlockParams,
    n_head: usize,
    arch: &Arch,
) {
    layernorm_forward(&mut a.ln1, &mut a.ln1_mean, &mut a.ln1_rstd, x, &p.ln_1);
    matmul_forward(&mut a.qkv, &a.ln1, &p.attn.c_attn); // (B, T, C) x (C, 3C) -> (B, T, 3C)
    if arch.positions == Positions::Rope {
        rope_forward(&mut a.qkv, n_head); // rotate q and k by their positions
    }
    if arch.positions == Positions::Alibi {
        let slopes = alibi_slopes(n_head);
        attention_forward_alibi(&mut a.atty, &mut a.att, &a.qkv, n_head, &slopes);
    } else {
        attention_forward(&mut a.atty, &mut a.att, &a.qkv, n_head); // (B, T, 3C) -> (B, T, C)
    }
    matmul_forward(&mut a.attproj, &a.atty, &p.attn.c_proj); // (B, T, C) x (C, C) -> (B, T, C)
    residual_forward(&mut a.residual2, x, &a.attproj);
    if !arch.mlp {
        a.residual3.assign(&a.residual2); // attention only: the block ends here
        return;
    }
    let (mean, rstd) = (&mut a.ln2_mean, &mut a.ln2_rstd);
    layernorm_forward(&mut a.ln2, mean, rstd, &a.residual2, &p.ln_2);
    matmul_forward(&mut a.fch, &a.ln2, &p.mlp.c_fc); // (B, T, C) x (C, 4C) -> (B, T, 4C)
    gelu_forward(&mut a.fch_gelu, &a.fch);
    matmul_forward(&mut a.fcproj, &a.fch_gelu, &p.mlp.c_proj); // (B, T, 4C) x (4C, C) -> (B, T, C)
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
/// output.
///
/// Shapes: `dx`, `x` `(B, T, C)`. Parameter gradients are added into `dp`;
/// without the MLP, its gradients (and `ln_2`'s) are not touched.
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
        matmul_backward(&mut g.dfch_gelu, &mut dp.mlp.c_proj, dx, &a.fch_gelu, proj);
        gelu_backward(&mut g.dfch, &a.fch, &g.dfch_gelu);
        matmul_backward(&mut g.dln2, &mut dp.mlp.c_fc, &g.dfch, &a.ln2, fc);
        let (mean, rstd) = (&a.ln2_mean, &a.ln2_rstd);
        layernorm_backward(dx, &mut dp.ln_2, &g.dln2, &a.residual2, &p.ln_2, mean, rstd);
    }
    let proj = &p.attn.c_proj;
    matmul_backward(&mut g.datty, &mut dp.attn.c_proj, dx, &a.atty, proj);
    attention_backward(&mut g.dqkv, &mut g.datt, &g.datty, &a.qkv, &a.att, n_head);
    if arch.positions == Positions::Rope {
        rope_backward(&mut g.dqkv, n_head); // rotate the gradient back
    }
    let c_attn = &p.attn.c_attn;
    matmul_backward(&mut g.dln1, &mut dp.attn.c_attn, &g.dqkv, &a.ln1, c_attn);
    let (mean, rstd) = (&a.ln1_mean, &a.ln1_rstd);
    layernorm_backward(dx, &mut dp.ln_1, &g.dln1, x, &p.ln_1, mean, rstd);
}
// ANCHOR_END: block_backward_arch

#[cfg(test)]
mod tests {
    use ndarray::Array2;

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
}
