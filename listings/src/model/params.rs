//! The model's weights: every tensor, with GPT-2's names, shapes and initialisation.
//!
//! The structs nest the way Hugging Face's GPT-2 names do, so
//! `params.h[2].attn.c_attn.weight` is the tensor a checkpoint calls
//! `transformer.h.2.attn.c_attn.weight`. Linear layers store their weight as
//! `(in, out)` (GPT-2's `Conv1D` layout), so a layer computes `y = x·W + b`
//! with no transpose.

use ndarray::{Array1, Array2, ArrayViewD, ArrayViewMutD};

use super::config::GptConfig;
use crate::rng::{ChaCha8Rng, randn, seeded};

/// The standard deviation of GPT-2's initial weights and embeddings.
pub const INIT_STD: f32 = 0.02;

// ANCHOR: param_structs
/// A LayerNorm's learned scale and shift, both `(C)`.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerNormParams {
    /// The scale, `(C)`; starts at 1.
    pub weight: Array1<f32>,
    /// The shift, `(C)`; starts at 0.
    pub bias: Array1<f32>,
}

/// A linear layer `y = x·W + b`, weight stored `(in, out)` as GPT-2's `Conv1D`.
#[derive(Clone, Debug, PartialEq)]
pub struct LinearParams {
    /// The weight, `(in, out)`.
    pub weight: Array2<f32>,
    /// The bias, `(out)`; starts at 0.
    pub bias: Array1<f32>,
}

/// One block's attention: the joint q, k, v projection and the output projection.
#[derive(Clone, Debug, PartialEq)]
pub struct AttentionParams {
    /// Maps each token to its query, key and value at once: weight `(C, 3C)`, bias `(3C)`.
    pub c_attn: LinearParams,
    /// Mixes the heads' outputs back into the residual stream: weight `(C, C)`, bias `(C)`.
    pub c_proj: LinearParams,
}

/// One block's MLP: widen four times, GELU, narrow back.
#[derive(Clone, Debug, PartialEq)]
pub struct MlpParams {
    /// The widening layer: weight `(C, 4C)`, bias `(4C)`.
    pub c_fc: LinearParams,
    /// The narrowing layer: weight `(4C, C)`, bias `(C)`.
    pub c_proj: LinearParams,
}

/// One transformer block's parameters, in the order the block uses them.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockParams {
    /// The LayerNorm before attention, `(C)` each.
    pub ln_1: LayerNormParams,
    /// Causal self-attention.
    pub attn: AttentionParams,
    /// The LayerNorm before the MLP, `(C)` each.
    pub ln_2: LayerNormParams,
    /// The feed-forward network.
    pub mlp: MlpParams,
}

/// Every parameter of a GPT. The output layer `lm_head` is `wte` itself (tied
/// embeddings, as GPT-2), so it has no tensor of its own.
#[derive(Clone, Debug, PartialEq)]
pub struct GptParams {
    /// Token embeddings, `(V, C)`: row `i` is token `i`'s vector.
    pub wte: Array2<f32>,
    /// Learned position embeddings, `(block_size, C)`: row `t` is added at position `t`.
    pub wpe: Array2<f32>,
    /// The blocks, `n_layer` of them.
    pub h: Vec<BlockParams>,
    /// The final LayerNorm, `(C)` each.
    pub ln_f: LayerNormParams,
}

// ANCHOR_END: param_structs

/// The name and shape of one parameter tensor, as a checkpoint stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamSpec {
    /// Hugging Face's name, such as `transformer.h.0.attn.c_attn.weight`.
    pub name: String,
    /// The shape, such as `[128, 384]`.
    pub shape: Vec<usize>,
}

impl LayerNormParams {
    /// A LayerNorm that starts as the identity map: weight 1, bias 0.
    pub fn new(c: usize) -> Self {
        Self {
            weight: Array1::ones(c),
            bias: Array1::zeros(c),
        }
    }
}

impl LinearParams {
    /// A linear layer with weight drawn from normal(0, `std`) and zero bias.
    pub fn new(n_in: usize, n_out: usize, std: f32, rng: &mut ChaCha8Rng) -> Self {
        Self {
            weight: randn((n_in, n_out), std, rng),
            bias: Array1::zeros(n_out),
        }
    }

    /// All zeros: the shape of a gradient or an optimiser's moment.
    pub fn zeros(n_in: usize, n_out: usize) -> Self {
        Self {
            weight: Array2::zeros((n_in, n_out)),
            bias: Array1::zeros(n_out),
        }
    }
}

// ANCHOR: init
impl GptParams {
    /// nanoGPT's initialisation (the GPT-2 paper only says residual weights are
    /// scaled by 1/√N), drawn from a ChaCha8 generator seeded with `seed`.
    ///
    /// Weights and embeddings are normal with standard deviation 0.02, biases
    /// 0, LayerNorms the identity (weight 1, bias 0). The two projections that
    /// write into the residual stream (`attn.c_proj`, `mlp.c_proj`) get
    /// `0.02 / sqrt(2·n_layer)`: the stream sums `2·n_layer` of them, and this
    /// keeps its size from growing with depth.
    ///
    /// The draws happen in the order of [`GptParams::specs`] (`wte`, `wpe`,
    /// then block by block `c_attn`, `attn.c_proj`, `c_fc`, `mlp.c_proj`), each
    /// tensor row by row, so a seed names one model.
    pub fn init(config: &GptConfig, seed: u64) -> Self {
        let GptConfig {
            vocab_size: v,
            block_size: t,
            n_layer: l,
            n_embd: c,
            ..
        } = *config;
        let mut rng = seeded(seed);
        let residual_std = INIT_STD / (2.0 * l as f32).sqrt();
        let wte = randn((v, c), INIT_STD, &mut rng);
        let wpe = randn((t, c), INIT_STD, &mut rng);
        let h = (0..l)
            .map(|_| BlockParams {
                ln_1: LayerNormParams::new(c),
                attn: AttentionParams {
                    c_attn: LinearParams::new(c, 3 * c, INIT_STD, &mut rng),
                    c_proj: LinearParams::new(c, c, residual_std, &mut rng),
                },
                ln_2: LayerNormParams::new(c),
                mlp: MlpParams {
                    c_fc: LinearParams::new(c, 4 * c, INIT_STD, &mut rng),
                    c_proj: LinearParams::new(4 * c, c, residual_std, &mut rng),
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
}
// ANCHOR_END: init

impl GptParams {
    /// Every tensor filled with zeros: the shape of the gradients, or of an
    /// optimiser's running averages.
    pub fn zeros(config: &GptConfig) -> Self {
        let GptConfig {
            vocab_size: v,
            block_size: t,
            n_layer: l,
            n_embd: c,
            ..
        } = *config;
        let zero_norm = || LayerNormParams {
            weight: Array1::zeros(c),
            bias: Array1::zeros(c),
        };
        let h = (0..l)
            .map(|_| BlockParams {
                ln_1: zero_norm(),
                attn: AttentionParams {
                    c_attn: LinearParams::zeros(c, 3 * c),
                    c_proj: LinearParams::zeros(c, c),
                },
                ln_2: zero_norm(),
                mlp: MlpParams {
                    c_fc: LinearParams::zeros(c, 4 * c),
                    c_proj: LinearParams::zeros(4 * c, c),
                },
            })
            .collect();
        Self {
            wte: Array2::zeros((v, c)),
            wpe: Array2::zeros((t, c)),
            h,
            ln_f: zero_norm(),
        }
    }

    /// The names and shapes of every tensor of a model with this config, in
    /// checkpoint order (the order of [`GptParams::tensors`]).
    ///
    /// ```
    /// use listings::model::{GptConfig, GptParams};
    /// let specs = GptParams::specs(&GptConfig::baby(65));
    /// assert_eq!(specs[0].name, "transformer.wte.weight");
    /// assert_eq!(specs[0].shape, [65, 128]);
    /// assert_eq!(specs[4].name, "transformer.h.0.attn.c_attn.weight");
    /// assert_eq!(specs[4].shape, [128, 384]);
    /// ```
    pub fn specs(config: &GptConfig) -> Vec<ParamSpec> {
        // A model whose tensors are empty would be cheaper, but zeros are
        // simple and this is not called in a loop.
        Self::zeros(config)
            .tensors()
            .into_iter()
            .map(|(name, view)| ParamSpec {
                name,
                shape: view.shape().to_vec(),
            })
            .collect()
    }

    // ANCHOR: tensors
    /// Every tensor with its Hugging Face name, in checkpoint order: `wte`,
    /// `wpe`, each block's `ln_1`, `attn.c_attn`, `attn.c_proj`, `ln_2`,
    /// `mlp.c_fc`, `mlp.c_proj` (weight before bias), then `ln_f`.
    ///
    /// ```
    /// use listings::model::{GptConfig, GptParams};
    /// let params = GptParams::init(&GptConfig::toy(65), 0);
    /// let tensors = params.tensors();
    /// assert_eq!(tensors[0].0, "transformer.wte.weight");
    /// assert_eq!(tensors[0].1.shape(), &[65, 64]);
    /// assert_eq!(tensors[2].0, "transformer.h.0.ln_1.weight");
    /// assert_eq!(tensors.last().unwrap().0, "transformer.ln_f.bias");
    /// ```
    pub fn tensors(&self) -> Vec<(String, ArrayViewD<'_, f32>)> {
        let mut out = vec![
            ("transformer.wte.weight".into(), self.wte.view().into_dyn()),
            ("transformer.wpe.weight".into(), self.wpe.view().into_dyn()),
        ];
        for (i, block) in self.h.iter().enumerate() {
            for (layer, [weight, bias]) in block.layers() {
                out.push((format!("transformer.h.{i}.{layer}.weight"), weight));
                out.push((format!("transformer.h.{i}.{layer}.bias"), bias));
            }
        }
        let [weight, bias] = self.ln_f.views();
        out.push(("transformer.ln_f.weight".into(), weight));
        out.push(("transformer.ln_f.bias".into(), bias));
        out
    }

    // ANCHOR_END: tensors

    /// [`GptParams::tensors`], writable: the same names in the same order. An
    /// optimiser walks these beside the gradients'; a checkpoint loader
    /// fills them by name.
    ///
    /// Every tensor is one contiguous block of numbers, so each view turns
    /// into a plain slice, which is what an optimiser works on:
    ///
    /// ```
    /// use listings::model::{GptConfig, GptParams};
    /// let config = GptConfig::toy(65);
    /// let mut params = GptParams::init(&config, 0);
    /// let grads = GptParams::zeros(&config); // filled by a backward pass
    /// for ((name, value), (_, grad)) in params.tensors_mut().into_iter().zip(grads.tensors()) {
    ///     let decay = value.ndim() == 2; // weight matrices and embeddings, as nanoGPT
    ///     let value: &mut [f32] = value.into_slice().expect("contiguous");
    ///     let grad: &[f32] = grad.to_slice().expect("contiguous");
    ///     assert_eq!(value.len(), grad.len(), "{name}");
    ///     # let _ = decay;
    /// }
    /// ```
    pub fn tensors_mut(&mut self) -> Vec<(String, ArrayViewMutD<'_, f32>)> {
        let mut out = vec![
            (
                "transformer.wte.weight".into(),
                self.wte.view_mut().into_dyn(),
            ),
            (
                "transformer.wpe.weight".into(),
                self.wpe.view_mut().into_dyn(),
            ),
        ];
        for (i, block) in self.h.iter_mut().enumerate() {
            for (layer, [weight, bias]) in block.layers_mut() {
                out.push((format!("transformer.h.{i}.{layer}.weight"), weight));
                out.push((format!("transformer.h.{i}.{layer}.bias"), bias));
            }
        }
        let [weight, bias] = self.ln_f.views_mut();
        out.push(("transformer.ln_f.weight".into(), weight));
        out.push(("transformer.ln_f.bias".into(), bias));
        out
    }

    // ANCHOR: slices
    /// Every tensor as a flat slice with its number of dimensions, in the
    /// order of [`GptParams::tensors`]: that list without the names, and so
    /// without allocating anything, for code that runs at every training
    /// step (an optimiser, gradient clipping, zeroing the gradients).
    ///
    /// ```
    /// use listings::model::{GptConfig, GptParams};
    /// let params = GptParams::init(&GptConfig::toy(65), 0);
    /// let (wte, ndim) = params.slices().next().unwrap();
    /// assert_eq!((wte.len(), ndim), (65 * 64, 2));
    /// assert_eq!(params.slices().count(), params.tensors().len());
    /// ```
    pub fn slices(&self) -> impl Iterator<Item = (&[f32], usize)> {
        let embeddings = [&self.wte, &self.wpe].map(|t| (contiguous(t.as_slice()), 2));
        let ln_f = [&self.ln_f.weight, &self.ln_f.bias].map(|t| (contiguous(t.as_slice()), 1));
        let blocks = self.h.iter().flat_map(BlockParams::slices);
        embeddings.into_iter().chain(blocks).chain(ln_f)
    }
    // ANCHOR_END: slices

    /// [`GptParams::slices`], writable.
    pub fn slices_mut(&mut self) -> impl Iterator<Item = (&mut [f32], usize)> {
        let embeddings = [&mut self.wte, &mut self.wpe].map(|t| (contiguous(t.as_slice_mut()), 2));
        let ln_f =
            [&mut self.ln_f.weight, &mut self.ln_f.bias].map(|t| (contiguous(t.as_slice_mut()), 1));
        let blocks = self.h.iter_mut().flat_map(BlockParams::slices_mut);
        embeddings.into_iter().chain(blocks).chain(ln_f)
    }

    /// Sets every number to 0: a gradient before a backward pass adds into it.
    pub fn fill_zero(&mut self) {
        self.slices_mut().for_each(|(t, _)| t.fill(0.0));
    }

    /// How many numbers the tensors hold, counted from the tensors themselves.
    pub fn num_parameters(&self) -> usize {
        self.tensors().iter().map(|(_, t)| t.len()).sum()
    }
}

impl BlockParams {
    /// The block's six layers with their names inside the block, in order,
    /// each as `[weight, bias]`.
    fn layers(&self) -> [(&'static str, [ArrayViewD<'_, f32>; 2]); 6] {
        [
            ("ln_1", self.ln_1.views()),
            ("attn.c_attn", self.attn.c_attn.views()),
            ("attn.c_proj", self.attn.c_proj.views()),
            ("ln_2", self.ln_2.views()),
            ("mlp.c_fc", self.mlp.c_fc.views()),
            ("mlp.c_proj", self.mlp.c_proj.views()),
        ]
    }

    /// [`BlockParams::layers`], writable.
    fn layers_mut(&mut self) -> [(&'static str, [ArrayViewMutD<'_, f32>; 2]); 6] {
        [
            ("ln_1", self.ln_1.views_mut()),
            ("attn.c_attn", self.attn.c_attn.views_mut()),
            ("attn.c_proj", self.attn.c_proj.views_mut()),
            ("ln_2", self.ln_2.views_mut()),
            ("mlp.c_fc", self.mlp.c_fc.views_mut()),
            ("mlp.c_proj", self.mlp.c_proj.views_mut()),
        ]
    }
}

/// An array's numbers as one slice: every array in [`GptParams`] is
/// allocated by ndarray in row-major order, so this cannot fail.
fn contiguous<T>(slice: Option<T>) -> T {
    slice.expect("parameter arrays are allocated contiguous")
}

impl BlockParams {
    /// The block's twelve tensors as flat slices with their number of
    /// dimensions, in the order of [`BlockParams::layers`].
    fn slices(&self) -> [(&[f32], usize); 12] {
        let (n1, n2) = (&self.ln_1, &self.ln_2);
        let (a, b) = (&self.attn.c_attn, &self.attn.c_proj);
        let (c, d) = (&self.mlp.c_fc, &self.mlp.c_proj);
        [
            (contiguous(n1.weight.as_slice()), 1),
            (contiguous(n1.bias.as_slice()), 1),
            (contiguous(a.weight.as_slice()), 2),
            (contiguous(a.bias.as_slice()), 1),
            (contiguous(b.weight.as_slice()), 2),
            (contiguous(b.bias.as_slice()), 1),
            (contiguous(n2.weight.as_slice()), 1),
            (contiguous(n2.bias.as_slice()), 1),
            (contiguous(c.weight.as_slice()), 2),
            (contiguous(c.bias.as_slice()), 1),
            (contiguous(d.weight.as_slice()), 2),
            (contiguous(d.bias.as_slice()), 1),
        ]
    }

    /// [`BlockParams::slices`], writable.
    fn slices_mut(&mut self) -> [(&mut [f32], usize); 12] {
        let (n1, n2) = (&mut self.ln_1, &mut self.ln_2);
        let (a, b) = (&mut self.attn.c_attn, &mut self.attn.c_proj);
        let (c, d) = (&mut self.mlp.c_fc, &mut self.mlp.c_proj);
        [
            (contiguous(n1.weight.as_slice_mut()), 1),
            (contiguous(n1.bias.as_slice_mut()), 1),
            (contiguous(a.weight.as_slice_mut()), 2),
            (contiguous(a.bias.as_slice_mut()), 1),
            (contiguous(b.weight.as_slice_mut()), 2),
            (contiguous(b.bias.as_slice_mut()), 1),
            (contiguous(n2.weight.as_slice_mut()), 1),
            (contiguous(n2.bias.as_slice_mut()), 1),
            (contiguous(c.weight.as_slice_mut()), 2),
            (contiguous(c.bias.as_slice_mut()), 1),
            (contiguous(d.weight.as_slice_mut()), 2),
            (contiguous(d.bias.as_slice_mut()), 1),
        ]
    }
}

impl LayerNormParams {
    fn views(&self) -> [ArrayViewD<'_, f32>; 2] {
        [self.weight.view().into_dyn(), self.bias.view().into_dyn()]
    }

    fn views_mut(&mut self) -> [ArrayViewMutD<'_, f32>; 2] {
        [
            self.weight.view_mut().into_dyn(),
            self.bias.view_mut().into_dyn(),
        ]
    }
}

impl LinearParams {
    fn views(&self) -> [ArrayViewD<'_, f32>; 2] {
        [self.weight.view().into_dyn(), self.bias.view().into_dyn()]
    }

    fn views_mut(&mut self) -> [ArrayViewMutD<'_, f32>; 2] {
        [
            self.weight.view_mut().into_dyn(),
            self.bias.view_mut().into_dyn(),
        ]
    }
}
