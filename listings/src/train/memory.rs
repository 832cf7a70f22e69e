//! How much memory a training run takes, worked out from its settings
//! before anything is allocated.
//!
//! A [`Trainer`](super::step::Trainer) allocates every array a step needs
//! when it is built, and the sizes follow from six numbers: the five of a
//! [`GptConfig`] and the batch size. [`estimate`] multiplies them out, part
//! by part, in saturating `u128` arithmetic, so settings far too large for
//! any machine (`n_embd` a million, a batch of a billion) give an enormous
//! number instead of an overflow, a panic or an allocation failure. A
//! caller compares [`TrainingMemory::total`] with [`available_memory`] and,
//! if the run does not fit, names the setting to blame:
//! [`TrainingMemory::dominant`].
//!
//! ```
//! use listings::model::GptConfig;
//! use listings::train::memory::{Setting, estimate};
//! let small = estimate(&GptConfig::baby(65), 12, 64);
//! assert!(small.total < 100 << 20); // under 100 MiB
//! let huge = GptConfig { n_embd: 1_000_000, ..GptConfig::baby(65) };
//! let memory = estimate(&huge, 12, 64);
//! assert!(memory.total > 1 << 40); // over a tebibyte
//! assert_eq!(memory.largest().name, "AdamW moments");
//! assert_eq!(memory.dominant, Some(Setting::NEmbd));
//! ```
//!
//! The parts are the arrays a run keeps for its whole length (the
//! parameters, their gradients, AdamW's two running averages, the
//! activations of one batch and their gradients, the batch itself), the
//! structs that hold them, and the one large short-lived copy a run makes:
//! the zeroed parameters [`checkpoint::save`](crate::checkpoint::save)
//! builds to read the tensors' shapes. Evaluation reuses the trainer's
//! arrays and allocates nothing of its own. Not counted: the tokens of the
//! text (their number is not a setting), the allocator's few bytes per
//! array, matrixmultiply's packing space (bounded, a few hundred KiB per
//! thread), and the per-tensor names a checkpoint writes.

use std::fmt;
use std::mem::size_of;
use std::ops::{Add, Mul};

use crate::model::{BlockParams, GptConfig, LayerActivations};
use crate::optim::Param;

// Token ids (the batches, `Activations::inputs` and `targets`) are counted
// as four bytes each, as the f32 arrays are.
const _: () = assert!(size_of::<u32>() == size_of::<f32>());

/// A number a training run's memory grows with, named as the field of
/// [`GptConfig`] or of [`TrainConfig`](super::run::TrainConfig) that holds
/// it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Setting {
    /// `vocab_size`: the rows of `wte`, the width of the logits.
    VocabSize,
    /// `block_size`: the rows of `wpe`, and the tokens per training
    /// sequence `T`.
    BlockSize,
    /// `n_layer`: the blocks.
    NLayer,
    /// `n_head`: attention heads, each with a `T x T` table of weights.
    NHead,
    /// `n_embd`: the width of the residual stream, `C`.
    NEmbd,
    /// `batch_size`: sequences per batch, `B`.
    BatchSize,
}

impl Setting {
    /// Every setting, in the order of [`GptConfig`]'s fields, then the
    /// batch size.
    pub const ALL: [Setting; 6] = [
        Setting::VocabSize,
        Setting::BlockSize,
        Setting::NLayer,
        Setting::NHead,
        Setting::NEmbd,
        Setting::BatchSize,
    ];

    /// The setting's field name: `"vocab_size"`, `"block_size"`,
    /// `"n_layer"`, `"n_head"`, `"n_embd"` or `"batch_size"`.
    pub fn name(self) -> &'static str {
        match self {
            Setting::VocabSize => "vocab_size",
            Setting::BlockSize => "block_size",
            Setting::NLayer => "n_layer",
            Setting::NHead => "n_head",
            Setting::NEmbd => "n_embd",
            Setting::BatchSize => "batch_size",
        }
    }
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One part of a training run's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Part {
    /// What the part is, in words (`"activations"`).
    pub name: &'static str,
    /// Its size in bytes; `u128::MAX` if it is larger than that.
    pub bytes: u128,
    /// The setting that makes this part large: the one that, brought down
    /// to its value in the baby GPT's run (`GptConfig::baby(65)`, batch
    /// 12, `block_size` 64, a run any machine holds), would shrink the part
    /// the most. `None` if no setting is above that run's.
    pub dominant: Option<Setting>,
}

/// The bytes a training run allocates, part by part: what
/// [`Trainer::new`](super::step::Trainer::new) and
/// [`run`](super::run::run) allocate for a model and a batch shape, and
/// the copy a checkpoint save makes. Built by [`estimate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrainingMemory {
    /// The model's weights, [`GptParams`](crate::model::GptParams): four
    /// bytes a parameter.
    pub parameters: Part,
    /// Their gradients, a second `GptParams` of the same shapes.
    pub gradients: Part,
    /// AdamW's running averages `m` and `v`, one number each per parameter.
    pub moments: Part,
    /// The forward pass's arrays for one batch,
    /// [`Activations`](crate::model::Activations): every block's
    /// intermediate results (its attention weights, `B·n_head·T²`, grow
    /// fastest), the logits `B·T·V`, the token ids and their targets.
    pub activations: Part,
    /// The backward pass's working space,
    /// [`ActivationGrads`](crate::model::ActivationGrads): the gradients of
    /// the logits, of the residual stream, and of one block's arrays (shared
    /// by every block).
    pub activation_grads: Part,
    /// The batch of token ids and targets the training loop fills,
    /// `2·B·T` ids.
    pub batches: Part,
    /// The structs holding the arrays, apart from their numbers: each
    /// block's parameters, gradients and activations, AdamW's list of
    /// tensors and the trainer's two lists of slices. Small, unless
    /// `n_layer` is huge and `n_embd` tiny.
    pub bookkeeping: Part,
    /// The zeroed copy of the parameters (numbers and block structs) that a
    /// checkpoint save builds for a moment, to read the tensors' shapes.
    pub checkpoint: Part,
    /// Every part together: the most the run holds at once. Saturates at
    /// `u128::MAX`.
    pub total: u128,
    /// The setting that makes the total large, chosen as for each part's
    /// [`Part::dominant`]: the one to name when a run does not fit.
    pub dominant: Option<Setting>,
}

impl TrainingMemory {
    /// Every part, in the order of the fields.
    pub fn parts(&self) -> [Part; PARTS] {
        [
            self.parameters,
            self.gradients,
            self.moments,
            self.activations,
            self.activation_grads,
            self.batches,
            self.bookkeeping,
            self.checkpoint,
        ]
    }

    /// The largest part (the first of equals).
    pub fn largest(&self) -> Part {
        self.parts()
            .into_iter()
            .reduce(|a, b| if b.bytes > a.bytes { b } else { a })
            .expect("there are parts")
    }
}

/// The number of parts of a [`TrainingMemory`].
const PARTS: usize = 8;

/// The parts' names, in the order of [`TrainingMemory::parts`].
const NAMES: [&str; PARTS] = [
    "parameters",
    "gradients",
    "AdamW moments",
    "activations",
    "activation gradients",
    "batches",
    "bookkeeping",
    "checkpoint copy",
];

/// The memory a training run allocates for a model `config` trained on
/// batches of `batch_size` sequences of `block_size` tokens (the `B` and `T`
/// of [`Trainer::new`](super::step::Trainer::new); `T` is usually the
/// model's own `block_size`). Nothing is allocated and nothing can
/// overflow or panic, whatever the numbers: a config that
/// [`GptConfig::validate`] would refuse still gets its sizes.
///
/// The sizes are exact: the tests build the arrays and count them.
pub fn estimate(config: &GptConfig, batch_size: usize, block_size: usize) -> TrainingMemory {
    let dims = Dims::of(config, batch_size, block_size);
    let bytes = sizes(dims.map(Saturating::of)).map(|n| n.0);
    let approx = sizes(dims.map(|n| n as f64));
    // For each setting, the parts with that setting brought down to the
    // reference run's value.
    let reduced = Setting::ALL.map(|s| sizes(dims.reduce(s).map(|n| n as f64)));
    let dominant = |size: &dyn Fn(&[f64; PARTS]) -> f64| {
        let full = size(&approx);
        Setting::ALL
            .into_iter()
            .zip(&reduced)
            .map(|(setting, parts)| (setting, full - size(parts)))
            .filter(|&(_, saved)| saved > 0.0)
            .reduce(|a, b| if b.1 > a.1 { b } else { a })
            .map(|(setting, _)| setting)
    };
    let part = |i: usize| Part {
        name: NAMES[i],
        bytes: bytes[i],
        dominant: dominant(&|parts| parts[i]),
    };
    TrainingMemory {
        parameters: part(0),
        gradients: part(1),
        moments: part(2),
        activations: part(3),
        activation_grads: part(4),
        batches: part(5),
        bookkeeping: part(6),
        checkpoint: part(7),
        total: bytes.iter().fold(0, |sum, &b| sum.saturating_add(b)),
        dominant: dominant(&|parts| parts.iter().sum()),
    }
}

/// The six settings, plus `T` apart from the model's `block_size`.
#[derive(Clone, Copy, Debug)]
struct Dims<N> {
    /// `vocab_size`.
    v: N,
    /// The model's `block_size`: the rows of `wpe`.
    ctx: N,
    /// Tokens per training sequence.
    t: N,
    /// `n_layer`.
    l: N,
    /// `n_head`.
    nh: N,
    /// `n_embd`.
    c: N,
    /// `batch_size`.
    b: N,
}

/// The baby GPT's run, which any machine holds: the settings
/// [`Part::dominant`] measures against.
const REFERENCE: Dims<usize> = Dims {
    v: 65,
    ctx: 64,
    t: 64,
    l: 4,
    nh: 4,
    c: 128,
    b: 12,
};

impl Dims<usize> {
    fn of(config: &GptConfig, batch_size: usize, block_size: usize) -> Self {
        Dims {
            v: config.vocab_size,
            ctx: config.block_size,
            t: block_size,
            l: config.n_layer,
            nh: config.n_head,
            c: config.n_embd,
            b: batch_size,
        }
    }

    /// These settings with `setting` brought down to [`REFERENCE`]'s value
    /// (and left alone where it is already lower).
    fn reduce(mut self, setting: Setting) -> Self {
        let r = REFERENCE;
        match setting {
            Setting::VocabSize => self.v = self.v.min(r.v),
            Setting::BlockSize => (self.ctx, self.t) = (self.ctx.min(r.ctx), self.t.min(r.t)),
            Setting::NLayer => self.l = self.l.min(r.l),
            Setting::NHead => self.nh = self.nh.min(r.nh),
            Setting::NEmbd => self.c = self.c.min(r.c),
            Setting::BatchSize => self.b = self.b.min(r.b),
        }
        self
    }

    fn map<N>(self, f: impl Fn(usize) -> N) -> Dims<N> {
        Dims {
            v: f(self.v),
            ctx: f(self.ctx),
            t: f(self.t),
            l: f(self.l),
            nh: f(self.nh),
            c: f(self.c),
            b: f(self.b),
        }
    }
}

/// A number [`sizes`] can count in: exact bytes in saturating `u128`, or
/// `f64` to compare sizes too large for that.
trait Count: Copy + Add<Output = Self> + Mul<Output = Self> {
    fn of(n: usize) -> Self;
}

/// A `u128` whose sums and products stop at `u128::MAX`.
#[derive(Clone, Copy, Debug)]
struct Saturating(u128);

impl Add for Saturating {
    type Output = Self;
    fn add(self, other: Self) -> Self {
        Saturating(self.0.saturating_add(other.0))
    }
}

impl Mul for Saturating {
    type Output = Self;
    fn mul(self, other: Self) -> Self {
        Saturating(self.0.saturating_mul(other.0))
    }
}

impl Count for Saturating {
    fn of(n: usize) -> Self {
        Saturating(n as u128)
    }
}

impl Count for f64 {
    fn of(n: usize) -> Self {
        n as f64
    }
}

/// The bytes of every part, in the order of [`NAMES`], counted from the
/// shapes the model's constructors allocate.
fn sizes<N: Count>(d: Dims<N>) -> [N; PARTS] {
    let n = N::of;
    let Dims {
        v,
        ctx,
        t,
        l,
        nh,
        c,
        b,
    } = d;
    let bytes = |numbers: N| numbers * n(size_of::<f32>());
    // GptParams: wte, wpe; per block ln_1, c_attn, attn.c_proj, ln_2, c_fc,
    // mlp.c_proj (12·C² weights, 13·C biases and norms); ln_f.
    let params = v * c + ctx * c + l * (n(12) * c * c + n(13) * c) + n(2) * c;
    let (bt, att) = (b * t, b * nh * t * t);
    let btc = bt * c;
    // LayerActivations: ln1, atty, attproj, residual2, ln2, fcproj,
    // residual3 (C each), qkv (3C), fch, fch_gelu (4C each); four means
    // and rstds; the attention weights.
    let layer = n(18) * btc + n(4) * bt + att;
    // Activations: the blocks; encoded and lnf; inputs, targets, lnf_mean,
    // lnf_rstd, losses; logits.
    let activations = l * layer + n(2) * btc + n(5) * bt + bt * v;
    // ActivationGrads: dlogits; dlnf, dresidual, and one block's dln1,
    // datty, dln2 (C each), dqkv (3C), dfch, dfch_gelu (4C each); datt.
    let activation_grads = bt * v + n(16) * btc + att;
    // Twelve tensors a block, plus wte, wpe and ln_f's two.
    let tensors = n(12) * l + n(4);
    let block_structs = l * n(size_of::<BlockParams>());
    let bookkeeping = n(2) * block_structs
        + l * n(size_of::<LayerActivations>())
        + tensors
            * n(2 * size_of::<Vec<f32>>() + size_of::<Param<'static>>() + size_of::<&mut [f32]>());
    [
        bytes(params),
        bytes(params),
        bytes(n(2) * params),
        bytes(activations),
        bytes(activation_grads),
        bytes(n(2) * bt),
        bookkeeping,
        bytes(params) + block_structs,
    ]
}

/// The memory the machine can give a new process without swapping, in
/// bytes: `MemAvailable` in `/proc/meminfo`. `None` where there is no such
/// file (any system but Linux) or it cannot be read.
pub fn available_memory() -> Option<u64> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    mem_available(&std::fs::read_to_string("/proc/meminfo").ok()?)
}

/// The `MemAvailable:  12345 kB` line of a `/proc/meminfo`, in bytes.
fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemAvailable:"))?;
    let mut words = line.split_whitespace();
    let kib: u64 = words.next()?.parse().ok()?;
    match (words.next(), words.next()) {
        (Some("kB"), None) => kib.checked_mul(1024),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{ArrayBase, Dimension, OwnedRepr};

    use super::*;
    use crate::model::{ActivationGrads, Activations, BlockGrads, Gpt, GptParams};
    use crate::optim::AdamWConfig;
    use crate::train::step::Trainer;

    /// The bytes of an array's numbers.
    fn nbytes<A, D: Dimension>(a: &ArrayBase<OwnedRepr<A>, D>) -> u128 {
        (a.len() * size_of::<A>()) as u128
    }

    fn params_bytes(p: &GptParams) -> u128 {
        p.tensors().iter().map(|(_, t)| (t.len() * 4) as u128).sum()
    }

    // The destructuring patterns name every field, so a field added to the
    // model's structs breaks this test until it is counted here (and in
    // `sizes`).
    fn activations_bytes(a: &Activations) -> u128 {
        let Activations {
            inputs,
            targets,
            encoded,
            layers,
            lnf,
            lnf_mean,
            lnf_rstd,
            logits,
            losses,
            loss: _,
        } = a;
        let layers: u128 = layers.iter().map(layer_bytes).sum();
        layers
            + nbytes(inputs)
            + nbytes(targets)
            + nbytes(encoded)
            + nbytes(lnf)
            + nbytes(lnf_mean)
            + nbytes(lnf_rstd)
            + nbytes(logits)
            + nbytes(losses)
    }

    fn layer_bytes(a: &LayerActivations) -> u128 {
        let LayerActivations {
            ln1,
            ln1_mean,
            ln1_rstd,
            qkv,
            att,
            atty,
            attproj,
            residual2,
            ln2,
            ln2_mean,
            ln2_rstd,
            fch,
            fch_gelu,
            fcproj,
            residual3,
        } = a;
        [ln1, qkv, atty, attproj, residual2, ln2, fch, fch_gelu]
            .into_iter()
            .chain([fcproj, residual3])
            .map(nbytes)
            .sum::<u128>()
            + [ln1_mean, ln1_rstd, ln2_mean, ln2_rstd]
                .into_iter()
                .map(nbytes)
                .sum::<u128>()
            + nbytes(att)
    }

    fn activation_grads_bytes(g: &ActivationGrads) -> u128 {
        let ActivationGrads {
            dlogits,
            dlnf,
            dresidual,
            block,
        } = g;
        let BlockGrads {
            dln1,
            dqkv,
            datt,
            datty,
            dln2,
            dfch,
            dfch_gelu,
        } = block;
        [
            dlogits, dlnf, dresidual, dln1, dqkv, datty, dln2, dfch, dfch_gelu,
        ]
        .into_iter()
        .map(nbytes)
        .sum::<u128>()
            + nbytes(datt)
    }

    #[test]
    fn the_estimate_is_what_a_trainer_allocates() {
        let odd = GptConfig {
            vocab_size: 7,
            block_size: 8,
            n_layer: 1,
            n_head: 2,
            n_embd: 6,
        };
        let cases = [
            (odd, 3, 5),
            (odd, 1, 8),
            (GptConfig::toy(10), 2, 64),
            (GptConfig::baby(65), 12, 64),
            (GptConfig::baby(65), 4, 17),
        ];
        for (config, b, t) in cases {
            let what = format!("{config:?}, batch {b}, block {t}");
            let memory = estimate(&config, b, t);
            let gpt = Gpt::new(config, 0).unwrap();
            let trainer = Trainer::new(gpt, AdamWConfig::default(), b, t).unwrap();
            // What Trainer::new builds for the backward pass, which it
            // keeps private.
            let dacts = ActivationGrads::new(&config, b, t);
            let copy = GptParams::zeros(&config);
            let (params, optimizer) = (trainer.gpt().params(), trainer.optimizer());
            let moments: usize = optimizer.m.iter().chain(&optimizer.v).map(Vec::len).sum();
            let batch = ndarray::Array2::<u32>::zeros((b, t));
            let tensors = params.tensors().len();
            let bookkeeping = (params.h.capacity() + trainer.gradients().h.capacity())
                * size_of::<BlockParams>()
                + trainer.activations().layers.capacity() * size_of::<LayerActivations>()
                + (optimizer.m.capacity() + optimizer.v.capacity()) * size_of::<Vec<f32>>()
                + tensors * (size_of::<Param<'static>>() + size_of::<&mut [f32]>());
            let real = [
                params_bytes(params),
                params_bytes(trainer.gradients()),
                4 * moments as u128,
                activations_bytes(trainer.activations()),
                activation_grads_bytes(&dacts),
                2 * nbytes(&batch),
                bookkeeping as u128,
                params_bytes(&copy) + (copy.h.capacity() * size_of::<BlockParams>()) as u128,
            ];
            let estimated = memory.parts().map(|p| p.bytes);
            for ((name, real), estimated) in NAMES.iter().zip(real).zip(estimated) {
                assert_eq!(estimated, real, "{name} of {what}");
            }
            assert_eq!(memory.total, real.iter().sum::<u128>(), "{what}");
            let count = crate::model::count_parameters(&config) as u128;
            assert_eq!(memory.parameters.bytes, 4 * count, "{what}");
        }
    }

    #[test]
    fn absurd_settings_give_huge_numbers_and_name_the_setting() {
        let config = GptConfig {
            vocab_size: 65,
            block_size: 256,
            n_layer: 6,
            n_head: 6,
            n_embd: 384,
        };
        let fine = estimate(&config, 64, 256);
        assert!(fine.total < 8 << 30, "{fine:?}");
        let cases = [
            (
                GptConfig {
                    n_embd: 1_000_000,
                    ..config
                },
                64,
                256,
                Setting::NEmbd,
            ),
            (config, 1_000_000_000, 256, Setting::BatchSize),
            (config, 50_000, 256, Setting::BatchSize),
            (
                GptConfig {
                    n_layer: 1_000_000,
                    ..config
                },
                64,
                256,
                Setting::NLayer,
            ),
            (
                GptConfig {
                    block_size: 1_000_000_000,
                    ..config
                },
                64,
                1_000_000_000,
                Setting::BlockSize,
            ),
            (
                GptConfig {
                    n_head: 100_000,
                    ..config
                },
                64,
                256,
                Setting::NHead,
            ),
            (
                GptConfig {
                    vocab_size: 100_000_000,
                    ..config
                },
                64,
                256,
                Setting::VocabSize,
            ),
        ];
        for (config, b, t, setting) in cases {
            let memory = estimate(&config, b, t);
            assert!(memory.total > 1 << 40, "{memory:?}");
            assert_eq!(memory.dominant, Some(setting), "{memory:?}");
            assert_eq!(memory.largest().dominant, Some(setting), "{memory:?}");
        }
    }

    #[test]
    fn nothing_overflows() {
        let max = GptConfig {
            vocab_size: usize::MAX,
            block_size: usize::MAX,
            n_layer: usize::MAX,
            n_head: usize::MAX,
            n_embd: usize::MAX,
        };
        let memory = estimate(&max, usize::MAX, usize::MAX);
        assert_eq!(memory.total, u128::MAX);
        assert_eq!(memory.activations.bytes, u128::MAX);
        assert!(memory.dominant.is_some());
        // A config `validate` refuses still has sizes.
        let zero = GptConfig {
            n_layer: 0,
            n_head: 0,
            ..GptConfig::baby(65)
        };
        let memory = estimate(&zero, 0, 0);
        assert_eq!(memory.activations.bytes, 0);
        assert_eq!(memory.dominant, None);
        // At or below the reference run, no setting is to blame.
        assert_eq!(estimate(&GptConfig::toy(65), 12, 64).dominant, None);
    }

    #[test]
    fn mem_available_reads_meminfo() {
        let meminfo = "MemTotal:       16318412 kB\n\
                       MemFree:          503064 kB\n\
                       MemAvailable:    8158032 kB\n\
                       Buffers:          210944 kB\n";
        assert_eq!(mem_available(meminfo), Some(8_158_032 * 1024));
        assert_eq!(mem_available("MemTotal: 1 kB\n"), None);
        assert_eq!(mem_available("MemAvailable: lots kB\n"), None);
        assert_eq!(mem_available("MemAvailable: 12 MB\n"), None);
        let overflow = format!("MemAvailable: {} kB\n", u64::MAX);
        assert_eq!(mem_available(&overflow), None);
        if cfg!(target_os = "linux") {
            assert!(available_memory().is_some_and(|bytes| bytes > 0));
        }
    }
}
