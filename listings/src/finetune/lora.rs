//! LoRA (Hu et al., 2021): fine-tuning a linear layer by learning a change
//! of its weight that is the product of two thin matrices.
//!
//! A layer `y = x·W + b` with `W` of shape `(in, out)` gets an adapter `A`
//! `(r, in)` and `B` `(out, r)` with a small rank `r`, and computes
//! `y = x·W + b + s·(x·Aᵀ)·Bᵀ` with `s = alpha / r`. Only `A` and `B` train:
//! `r·(in + out)` numbers instead of `in·out`. `B` starts at zero, so at the
//! start the adapted model is the base model exactly. When training is done
//! the change can be folded into the weight, `W' = W + s·Aᵀ·Bᵀ`, and the
//! model runs at its old cost.
//!
//! Names, shapes and the scale follow PEFT's (`lora_A.weight` `(r, in)`,
//! `lora_B.weight` `(out, r)`, `scaling = lora_alpha / r`, GPT-2's `Conv1D`
//! layers adapted with `fan_in_fan_out`), so an adapter saved here loads in
//! PEFT (see [`super::peft`]).

use ndarray::{Array2, ArrayRef2};

use crate::model::{BlockParams, GptConfig, GptParams, LinearParams};
use crate::rng::{ChaCha8Rng, RngExt, seeded};

/// What can be wrong with a LoRA configuration or adapter.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LoraError {
    /// The rank is zero.
    #[error("LoRA rank r must be at least 1")]
    ZeroRank,
    /// `alpha` is not a finite positive number.
    #[error("lora_alpha must be a finite number above 0, got {alpha}")]
    BadAlpha {
        /// The value given.
        alpha: f32,
    },
    /// A target module that no linear layer of GPT-2 is called.
    #[error(
        "no layer of the model is called {name:?}: GPT-2's linear layers are c_attn, c_proj and c_fc"
    )]
    UnknownModule {
        /// The name given.
        name: String,
    },
    /// An adapter tensor does not fit the base model's layer.
    #[error("{tensor} has shape {found:?}, but the base model's layer needs {expected:?}")]
    Shape {
        /// The tensor's name.
        tensor: String,
        /// Its shape.
        found: Vec<usize>,
        /// The shape the base model's layer needs.
        expected: Vec<usize>,
    },
    /// A trainable token id outside the vocabulary.
    #[error("trainable token {id} is not in the model's vocabulary of {vocab_size}")]
    NoSuchToken {
        /// The id given.
        id: u32,
        /// The model's vocabulary size.
        vocab_size: usize,
    },
    /// A trainable token listed twice: its row would get two changes, and
    /// PEFT's copy of the rows would be undefined.
    #[error("trainable token {id} is listed twice")]
    RepeatedToken {
        /// The id.
        id: u32,
    },
    /// An adapted layer names a block the base model does not have.
    #[error("{tensor} adapts block {block}, but the base model has {n_layer} blocks")]
    NoSuchBlock {
        /// The tensor's name.
        tensor: String,
        /// The block it names.
        block: usize,
        /// The base model's number of blocks.
        n_layer: usize,
    },
}

// ANCHOR: lora_config
/// Which layers get an adapter, of what rank, at what scale (PEFT's
/// `LoraConfig` fields of the same names).
#[derive(Clone, Debug, PartialEq)]
pub struct LoraConfig {
    /// The rank `r`: the thin matrices' inner size.
    pub r: usize,
    /// `lora_alpha`: the adapter's output is scaled by `alpha / r`, so that
    /// changing `r` does not change how large the initial steps are.
    pub alpha: f32,
    /// The layers to adapt, by name as PEFT matches them: a layer is
    /// adapted if its name is one of these or ends with `.` and one of
    /// these (`c_proj` names both `attn.c_proj` and `mlp.c_proj`). PEFT's
    /// default for GPT-2 is `c_attn`.
    pub target_modules: Vec<String>,
    /// Token ids whose embedding rows train too (PEFT's
    /// `trainable_token_indices`): the way to teach a frozen model a token
    /// it has never written, such as an end-of-turn marker. Each costs `C`
    /// numbers.
    pub trainable_tokens: Vec<u32>,
}

impl LoraConfig {
    /// `alpha / r`, PEFT's `scaling`.
    pub fn scale(&self) -> f32 {
        self.alpha / self.r as f32
    }
}
// ANCHOR_END: lora_config

impl Default for LoraConfig {
    /// Rank 8, alpha 16, queries, keys and values (`c_attn`).
    fn default() -> Self {
        Self {
            r: 8,
            alpha: 16.0,
            target_modules: vec!["c_attn".into()],
            trainable_tokens: Vec::new(),
        }
    }
}

/// One of a block's four linear layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Module {
    /// `attn.c_attn`, `(C, 3C)`.
    AttnCAttn,
    /// `attn.c_proj`, `(C, C)`.
    AttnCProj,
    /// `mlp.c_fc`, `(C, 4C)`.
    MlpCFc,
    /// `mlp.c_proj`, `(4C, C)`.
    MlpCProj,
}

impl Module {
    /// Every linear layer of a block, in the block's order.
    pub const ALL: [Module; 4] = [
        Module::AttnCAttn,
        Module::AttnCProj,
        Module::MlpCFc,
        Module::MlpCProj,
    ];

    /// The layer's name inside its block, as Hugging Face names it.
    pub fn name(self) -> &'static str {
        match self {
            Module::AttnCAttn => "attn.c_attn",
            Module::AttnCProj => "attn.c_proj",
            Module::MlpCFc => "mlp.c_fc",
            Module::MlpCProj => "mlp.c_proj",
        }
    }

    /// The layer's `(in, out)` in a model `c` wide.
    pub fn shape(self, c: usize) -> (usize, usize) {
        match self {
            Module::AttnCAttn => (c, 3 * c),
            Module::AttnCProj => (c, c),
            Module::MlpCFc => (c, 4 * c),
            Module::MlpCProj => (4 * c, c),
        }
    }

    /// The module called `name` (`attn.c_attn`, ...).
    pub fn from_name(name: &str) -> Option<Module> {
        Module::ALL.into_iter().find(|m| m.name() == name)
    }

    /// This layer of `block`.
    pub fn of(self, block: &BlockParams) -> &LinearParams {
        match self {
            Module::AttnCAttn => &block.attn.c_attn,
            Module::AttnCProj => &block.attn.c_proj,
            Module::MlpCFc => &block.mlp.c_fc,
            Module::MlpCProj => &block.mlp.c_proj,
        }
    }

    /// This layer of `block`, writable.
    pub fn of_mut(self, block: &mut BlockParams) -> &mut LinearParams {
        match self {
            Module::AttnCAttn => &mut block.attn.c_attn,
            Module::AttnCProj => &mut block.attn.c_proj,
            Module::MlpCFc => &mut block.mlp.c_fc,
            Module::MlpCProj => &mut block.mlp.c_proj,
        }
    }

    /// Whether PEFT's rule adapts this layer for `target`: the same name, or
    /// a name ending in `.target`.
    fn matches(self, target: &str) -> bool {
        let name = self.name();
        name == target || name.ends_with(&format!(".{target}"))
    }
}

// ANCHOR: lora_layer
/// The adapter of one linear layer: its weight's change is `s·Aᵀ·Bᵀ`.
#[derive(Clone, Debug, PartialEq)]
pub struct LoraLayer {
    /// `(r, in)`, PEFT's `lora_A.weight`: starts random, as PEFT's does
    /// (uniform in ±1/√in).
    pub a: Array2<f32>,
    /// `(out, r)`, PEFT's `lora_B.weight`: starts at zero, so the adapter
    /// changes nothing until it has trained.
    pub b: Array2<f32>,
}

impl LoraLayer {
    /// A fresh adapter of rank `r` for a layer with `n_in` inputs and
    /// `n_out` outputs: `A` random, `B` zero.
    pub fn new(n_in: usize, n_out: usize, r: usize, rng: &mut ChaCha8Rng) -> Self {
        let bound = 1.0 / (n_in as f32).sqrt();
        Self {
            a: Array2::from_shape_simple_fn((r, n_in), || rng.random_range(-bound..bound)),
            b: Array2::zeros((n_out, r)),
        }
    }

    /// An adapter of zeros, the shape of this one: a gradient, or an
    /// optimiser's running average.
    pub fn zeros_like(&self) -> Self {
        Self {
            a: Array2::zeros(self.a.raw_dim()),
            b: Array2::zeros(self.b.raw_dim()),
        }
    }

    /// The change the adapter makes to the layer's weight, `s·Aᵀ·Bᵀ`,
    /// `(in, out)` like the weight.
    pub fn delta(&self, scale: f32) -> Array2<f32> {
        self.a.t().dot(&self.b.t()) * scale // (in, r) x (r, out) -> (in, out)
    }
}
// ANCHOR_END: lora_layer

// ANCHOR: lora_forward
/// The adapted layer, unmerged: `y = x·W + b + s·(x·Aᵀ)·Bᵀ`. The base
/// weight is used as it is; the adapter's path runs beside it through the
/// rank-`r` bottleneck `u = x·Aᵀ`, which is returned for the backward pass.
///
/// Shapes: `x` `(N, in)`, base weight `(in, out)`; returns `y` `(N, out)`
/// and `u` `(N, r)`.
pub fn lora_forward(
    x: &ArrayRef2<f32>,
    base: &LinearParams,
    lora: &LoraLayer,
    scale: f32,
) -> (Array2<f32>, Array2<f32>) {
    let u = x.dot(&lora.a.t()); // (N, in) x (in, r) -> (N, r)
    let y = x.dot(&base.weight) + &base.bias + u.dot(&lora.b.t()) * scale; // (N, out)
    (y, u)
}

/// The backward pass of [`lora_forward`] with the base layer frozen: the
/// gradients of `A` and `B` are added into `dlora`, and the gradient of `x`
/// is returned. `W` and `b` get none: they do not train.
///
/// With `u = x·Aᵀ` and `y = ... + s·u·Bᵀ`: `dB = s·dyᵀ·u`, `du = s·dy·B`,
/// `dA = duᵀ·x`, and `x` reached `y` by two paths, so
/// `dx = dy·Wᵀ + du·A`.
///
/// Shapes: `dy` `(N, out)`, `x` `(N, in)`, `u` `(N, r)`; returns `(N, in)`.
pub fn lora_backward(
    dlora: &mut LoraLayer,
    dy: &ArrayRef2<f32>,
    x: &ArrayRef2<f32>,
    u: &ArrayRef2<f32>,
    base: &LinearParams,
    lora: &LoraLayer,
    scale: f32,
) -> Array2<f32> {
    let du = dy.dot(&lora.b) * scale; // (N, out) x (out, r) -> (N, r)
    dlora.b += &(dy.t().dot(u) * scale); // (out, N) x (N, r) -> (out, r)
    dlora.a += &du.t().dot(x); // (r, N) x (N, in) -> (r, in)
    dy.dot(&base.weight.t()) + du.dot(&lora.a) // (N, in)
}
// ANCHOR_END: lora_forward

// ANCHOR: lora_from_merged
impl LoraLayer {
    /// The gradients of `A` and `B` from the gradient `dW` of the merged
    /// weight `W + s·Aᵀ·Bᵀ`, added into `dlora`.
    ///
    /// The model's own backward pass already computes `dW = xᵀ·dy` for
    /// every linear layer; the chain rule through the sum gives the
    /// adapter's share: `dA = s·Bᵀ·dWᵀ` and `dB = s·dWᵀ·Aᵀ`. These equal
    /// [`lora_backward`]'s, because `dW` is the same `xᵀ·dy` that it
    /// multiplies out in the other order.
    pub fn grads_from_merged(&self, dw: &ArrayRef2<f32>, scale: f32, dlora: &mut LoraLayer) {
        dlora.a += &(self.b.t().dot(&dw.t()) * scale); // (r, out) x (out, in) -> (r, in)
        dlora.b += &(dw.t().dot(&self.a.t()) * scale); // (out, in) x (in, r) -> (out, r)
    }
}
// ANCHOR_END: lora_from_merged

// ANCHOR: lora
/// A model's adapters: one [`LoraLayer`] per adapted layer.
#[derive(Clone, Debug, PartialEq)]
pub struct Lora {
    /// The rank, scale and target layers.
    pub config: LoraConfig,
    /// The adapted layers, block by block in [`Module::ALL`] order.
    pub layers: Vec<AdaptedLayer>,
    /// The change of the embedding row of each of
    /// `config.trainable_tokens`, `(n, C)`; starts at zero.
    pub token_delta: Array2<f32>,
}

/// One adapted layer: which one, and its adapter.
#[derive(Clone, Debug, PartialEq)]
pub struct AdaptedLayer {
    /// The block, from 0.
    pub block: usize,
    /// The layer inside the block.
    pub module: Module,
    /// The adapter.
    pub lora: LoraLayer,
}

impl Lora {
    /// Fresh adapters (`B` = 0) for every layer of a `model` that
    /// `config.target_modules` names, `A` drawn from a ChaCha8 generator
    /// seeded with `seed`.
    pub fn new(model: &GptConfig, config: LoraConfig, seed: u64) -> Result<Self, LoraError> {
        config.validate()?;
        if let Some(&id) = config
            .trainable_tokens
            .iter()
            .find(|&&id| id as usize >= model.vocab_size)
        {
            return Err(LoraError::NoSuchToken {
                id,
                vocab_size: model.vocab_size,
            });
        }
        let token_delta = Array2::zeros((config.trainable_tokens.len(), model.n_embd));
        let (c, mut rng) = (model.n_embd, seeded(seed));
        let mut layers = Vec::new();
        for block in 0..model.n_layer {
            for module in Module::ALL {
                if config.target_modules.iter().any(|t| module.matches(t)) {
                    let (n_in, n_out) = module.shape(c);
                    let lora = LoraLayer::new(n_in, n_out, config.r, &mut rng);
                    layers.push(AdaptedLayer {
                        block,
                        module,
                        lora,
                    });
                }
            }
        }
        Ok(Self {
            config,
            layers,
            token_delta,
        })
    }

    /// The base model's parameters with every adapter folded into its
    /// layer's weight: `W + s·Aᵀ·Bᵀ`.
    pub fn merged(&self, base: &GptParams) -> GptParams {
        let mut params = base.clone();
        self.merge_into(base, &mut params);
        params
    }

    /// Writes the merged weights into `params` (which has `base`'s shapes),
    /// touching only the adapted layers' weights.
    pub fn merge_into(&self, base: &GptParams, params: &mut GptParams) {
        let scale = self.config.scale();
        for l in &self.layers {
            let w = &l.module.of(&base.h[l.block]).weight;
            let merged = &mut l.module.of_mut(&mut params.h[l.block]).weight;
            merged.assign(w);
            *merged += &l.lora.delta(scale);
        }
        for (&id, delta) in self
            .config
            .trainable_tokens
            .iter()
            .zip(self.token_delta.rows())
        {
            let (id, mut row) = (id as usize, params.wte.row_mut(id as usize));
            row.assign(&base.wte.row(id));
            row += &delta;
        }
    }

    /// The adapters' gradients from the gradients of the merged model's
    /// parameters ([`LoraLayer::grads_from_merged`] on each adapted layer),
    /// added into `dlora` (adapters of this one's shapes).
    pub fn grads_from_merged(&self, dparams: &GptParams, dlora: &mut Lora) {
        let scale = self.config.scale();
        for (l, d) in self.layers.iter().zip(&mut dlora.layers) {
            let dw = &l.module.of(&dparams.h[l.block]).weight;
            l.lora.grads_from_merged(dw, scale, &mut d.lora);
        }
        for (&id, mut d) in self
            .config
            .trainable_tokens
            .iter()
            .zip(dlora.token_delta.rows_mut())
        {
            d += &dparams.wte.row(id as usize); // the row is base + delta: same gradient
        }
    }

    /// Adapters of zeros with this one's shapes.
    pub fn zeros_like(&self) -> Self {
        Self {
            config: self.config.clone(),
            layers: (self.layers.iter())
                .map(|l| AdaptedLayer {
                    lora: l.lora.zeros_like(),
                    ..*l
                })
                .collect(),
            token_delta: Array2::zeros(self.token_delta.raw_dim()),
        }
    }

    /// How many numbers train: `r·(in + out)` per adapted layer, and `C`
    /// per trainable token.
    pub fn num_parameters(&self) -> usize {
        let layers: usize = (self.layers.iter())
            .map(|l| l.lora.a.len() + l.lora.b.len())
            .sum();
        layers + self.token_delta.len()
    }

    /// Every tensor as a flat slice, `A` then `B` of each layer in order
    /// (what an optimiser steps).
    pub fn slices_mut(&mut self) -> impl Iterator<Item = &mut [f32]> {
        let tokens = self.token_delta.as_slice_mut().expect("contiguous");
        (self.layers.iter_mut())
            .flat_map(|l| {
                let (a, b) = (&mut l.lora.a, &mut l.lora.b);
                [a, b].map(|t| t.as_slice_mut().expect("adapters are contiguous"))
            })
            .chain((!tokens.is_empty()).then_some(tokens))
    }

    /// [`Lora::slices_mut`], read-only.
    pub fn slices(&self) -> impl Iterator<Item = &[f32]> {
        let tokens = self.token_delta.as_slice().expect("contiguous");
        (self.layers.iter())
            .flat_map(|l| {
                [&l.lora.a, &l.lora.b].map(|t| t.as_slice().expect("adapters are contiguous"))
            })
            .chain((!tokens.is_empty()).then_some(tokens))
    }
}
// ANCHOR_END: lora

impl LoraConfig {
    /// Checks the rank, the scale, the target names, and that no trainable
    /// token is listed twice.
    pub fn validate(&self) -> Result<(), LoraError> {
        if self.r == 0 {
            return Err(LoraError::ZeroRank);
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(LoraError::BadAlpha { alpha: self.alpha });
        }
        for name in &self.target_modules {
            if !Module::ALL.iter().any(|m| m.matches(name)) {
                return Err(LoraError::UnknownModule { name: name.clone() });
            }
        }
        check_distinct(&self.trainable_tokens)
    }
}

/// No token id twice.
pub(crate) fn check_distinct(tokens: &[u32]) -> Result<(), LoraError> {
    match (tokens.iter().enumerate()).find(|&(i, id)| tokens[..i].contains(id)) {
        Some((_, &id)) => Err(LoraError::RepeatedToken { id }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Gpt;
    use ndarray::Array2;

    #[test]
    fn a_fresh_adapter_leaves_the_model_bit_for_bit_as_it_was() {
        let config = GptConfig::toy(50);
        let base = Gpt::new(config, 3).unwrap();
        let lora = Lora::new(&config, LoraConfig::default(), 9).unwrap();
        assert_eq!(lora.merged(base.params()), *base.params());
    }

    #[test]
    fn peft_names_pick_the_layers() {
        let config = GptConfig::toy(50);
        let pick = |targets: &[&str]| {
            let cfg = LoraConfig {
                target_modules: targets.iter().map(|s| s.to_string()).collect(),
                ..LoraConfig::default()
            };
            let lora = Lora::new(&config, cfg, 0).unwrap();
            lora.layers
                .iter()
                .map(|l| format!("{}.{}", l.block, l.module.name()))
                .collect::<Vec<_>>()
        };
        assert_eq!(pick(&["c_attn"]), ["0.attn.c_attn", "1.attn.c_attn"]);
        assert_eq!(pick(&["c_proj"]).len(), 4);
        assert_eq!(pick(&["mlp.c_proj"]), ["0.mlp.c_proj", "1.mlp.c_proj"]);
        let bad = LoraConfig {
            target_modules: vec!["q_proj".into()],
            ..LoraConfig::default()
        };
        assert_eq!(
            Lora::new(&config, bad, 0),
            Err(LoraError::UnknownModule {
                name: "q_proj".into()
            })
        );
    }

    #[test]
    fn a_token_listed_twice_is_refused() {
        let config = GptConfig::toy(50);
        let cfg = |tokens: Vec<u32>| LoraConfig {
            trainable_tokens: tokens,
            ..LoraConfig::default()
        };
        let lora = Lora::new(&config, cfg(vec![3, 7]), 0).unwrap();
        assert_eq!(lora.token_delta.shape(), [2, 64]);
        assert_eq!(
            Lora::new(&config, cfg(vec![3, 7, 3]), 0),
            Err(LoraError::RepeatedToken { id: 3 })
        );
        assert_eq!(
            Lora::new(&config, cfg(vec![50]), 0),
            Err(LoraError::NoSuchToken {
                id: 50,
                vocab_size: 50
            })
        );
    }

    #[test]
    fn rank_times_in_plus_out_parameters() {
        let config = GptConfig::toy(50);
        for r in [1, 2, 4, 8, 16] {
            let cfg = LoraConfig {
                r,
                ..LoraConfig::default()
            };
            let lora = Lora::new(&config, cfg, 0).unwrap();
            assert_eq!(lora.num_parameters(), 2 * r * (64 + 192));
        }
    }

    #[test]
    fn unmerged_and_merged_layers_agree() {
        let mut rng = seeded(1);
        let base = LinearParams::new(8, 12, 0.3, &mut rng);
        let mut lora = LoraLayer::new(8, 12, 3, &mut rng);
        lora.b = crate::rng::randn((12, 3), 0.3, &mut rng);
        let x: Array2<f32> = crate::rng::randn((5, 8), 1.0, &mut rng);
        let (y, _) = lora_forward(&x, &base, &lora, 2.0);
        let merged = x.dot(&(&base.weight + &lora.delta(2.0))) + &base.bias;
        let diff = (&y - &merged)
            .mapv(f32::abs)
            .fold(0.0_f32, |m, &d| m.max(d));
        assert!(diff < 1e-5, "largest difference {diff}");
    }
}
