//! Loading a Hugging Face GPT-2 directory: `config.json` beside `model.safetensors`.
//!
//! Such a directory comes in two layouts, and [`load_hf_gpt2`] reads both:
//!
//! - what `transformers`' `save_pretrained` writes today: every name with the
//!   `transformer.` prefix (`transformer.wte.weight`, ...), exactly the names of
//!   [`GptParams::tensors`], and no `lm_head.weight` (it is `wte`, tied);
//! - what the Hugging Face hub's `gpt2` repo holds: the same tensors without the
//!   prefix (`wte.weight`, `h.0.ln_1.weight`, ...), plus one causal-mask buffer
//!   per block, `h.{i}.attn.bias` `(1, 1, T, T)`, which is not a parameter (the
//!   book's attention builds its mask as it goes) and is skipped.
//!
//! Linear weights are in GPT-2's `Conv1D` layout `(in, out)` in both, as in the
//! book's own checkpoints, so they are copied as they are. F16, BF16 and F64
//! tensors are converted to F32.
//!
//! The book's model hard-codes two things a GPT-2 config could change: GELU
//! with the tanh approximation (`gelu_new`, also called `gelu_pytorch_tanh`)
//! and LayerNorm's epsilon [`LAYERNORM_EPS`]. A config asking for anything
//! else is refused by name rather than loaded into a model that would compute
//! something different; so are the few other GPT-2 options the model lacks.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;
use thiserror::Error;

use super::{CheckpointError, TensorProblem, describe, diagnose, list_problems, unknown_tensors};
use crate::model::{ConfigError, Gpt, GptConfig, GptParams, LAYERNORM_EPS};

/// The prefix `save_pretrained` puts before every parameter of the
/// transformer's body (not before `lm_head.weight`).
const PREFIX: &str = "transformer.";

/// The activation names that mean GELU with the tanh approximation, the one
/// the book's model computes.
const TANH_GELUS: [&str; 2] = ["gelu_new", "gelu_pytorch_tanh"];

/// Why a Hugging Face GPT-2 directory could not be loaded.
#[derive(Debug, Error)]
pub enum HfError {
    /// The directory has no `config.json`.
    #[error(
        "{} has no config.json; a Hugging Face model directory holds config.json \
         beside model.safetensors (download both)",
        dir.display()
    )]
    NoConfig {
        /// The directory.
        dir: PathBuf,
    },
    /// The directory has no `model.safetensors`.
    #[error(
        "{} has no model.safetensors; only single-file safetensors weights are read \
         (not pytorch_model.bin, nor a model.safetensors.index.json with shards)",
        dir.display()
    )]
    NoWeights {
        /// The directory.
        dir: PathBuf,
    },
    /// A file exists but could not be read.
    #[error("cannot read {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The system's error.
        error: io::Error,
    },
    /// `config.json` is not JSON, or lacks a field the model needs.
    #[error("{} is not a usable GPT-2 config: {detail}", path.display())]
    BadConfig {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The config asks for an activation the model does not compute.
    #[error(
        "unsupported activation_function {found:?}: the book's model computes GELU with the \
         tanh approximation only (\"gelu_new\" or \"gelu_pytorch_tanh\"), so these weights \
         would give different results in it"
    )]
    Activation {
        /// The config's `activation_function`.
        found: String,
    },
    /// The config asks for a LayerNorm epsilon other than the model's.
    #[error(
        "unsupported layer_norm_epsilon {found}: the book's model hard-codes {LAYERNORM_EPS:e} \
         (model::LAYERNORM_EPS)"
    )]
    LayerNormEps {
        /// The config's `layer_norm_epsilon`.
        found: f64,
    },
    /// Another GPT-2 option the model does not have.
    #[error("unsupported config entry {key} = {found}: {why}")]
    Unsupported {
        /// The config key.
        key: &'static str,
        /// Its value, as JSON.
        found: String,
        /// What the book's model does instead.
        why: &'static str,
    },
    /// The five sizes do not make a model.
    #[error("{}: {error}", path.display())]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong with the sizes.
        error: ConfigError,
    },
    /// `model.safetensors` is not a readable safetensors file.
    #[error(transparent)]
    Weights(CheckpointError),
    /// Tensors are missing, mis-shaped or unknown: every problem, by name.
    #[error(
        "{} does not hold the tensors its config implies ({config}):\n{}",
        path.display(), list_problems(problems)
    )]
    Tensors {
        /// The weights file.
        path: PathBuf,
        /// The config, in one line.
        config: String,
        /// Each problem found.
        problems: Vec<TensorProblem>,
    },
    /// A tensor's dtype cannot be turned into F32.
    #[error("{name} has dtype {found}; only F32, F16, BF16 and F64 tensors are read")]
    Dtype {
        /// The tensor's name in the file.
        name: String,
        /// Its dtype, as safetensors names it.
        found: String,
    },
    /// `lm_head.weight` is in the file and is not `wte`.
    #[error(
        "lm_head.weight differs from wte.weight (by up to {max_diff}): the book's model ties \
         them, computing the logits with wte, so a model with its own output layer cannot be \
         loaded into it"
    )]
    UntiedLmHead {
        /// The largest absolute difference between the two.
        max_diff: f32,
    },
    /// A tensor holds NaN or infinite values.
    #[error("{name} holds {count} values out of {len} that are NaN or infinite")]
    NonFinite {
        /// The tensor's name in the file.
        name: String,
        /// How many values are not finite.
        count: usize,
        /// How many values it has.
        len: usize,
    },
}

/// The entries of a GPT-2 `config.json` that matter here. Every other entry
/// (dropout rates, token ids, `architectures`, ...) is ignored.
#[derive(Deserialize)]
struct HfConfig {
    vocab_size: usize,
    /// The context window, `block_size`.
    n_positions: usize,
    n_embd: usize,
    n_layer: usize,
    n_head: usize,
    /// GPT2Config's default is `gelu_new`.
    #[serde(default = "default_activation")]
    activation_function: String,
    /// GPT2Config's default is 1e-5.
    #[serde(default = "default_eps")]
    layer_norm_epsilon: f64,
    /// The MLP's hidden width; `null` means `4 * n_embd`.
    #[serde(default)]
    n_inner: Option<usize>,
    #[serde(default)]
    model_type: Option<String>,
    #[serde(default = "yes")]
    scale_attn_weights: bool,
    #[serde(default)]
    scale_attn_by_inverse_layer_idx: bool,
    #[serde(default)]
    add_cross_attention: bool,
}

fn default_activation() -> String {
    "gelu_new".into()
}

fn default_eps() -> f64 {
    1e-5
}

fn yes() -> bool {
    true
}

impl HfConfig {
    /// The book's config, after refusing every option the model lacks.
    fn to_gpt_config(&self, path: &Path) -> Result<GptConfig, HfError> {
        if let Some(model_type) = &self.model_type
            && model_type != "gpt2"
        {
            return Err(HfError::Unsupported {
                key: "model_type",
                found: format!("{model_type:?}"),
                why: "only GPT-2 (\"gpt2\") checkpoints have the book's model's layout",
            });
        }
        if !TANH_GELUS.contains(&self.activation_function.as_str()) {
            return Err(HfError::Activation {
                found: self.activation_function.clone(),
            });
        }
        if self.layer_norm_epsilon as f32 != LAYERNORM_EPS {
            return Err(HfError::LayerNormEps {
                found: self.layer_norm_epsilon,
            });
        }
        if let Some(n_inner) = self.n_inner
            && n_inner != 4 * self.n_embd
        {
            return Err(HfError::Unsupported {
                key: "n_inner",
                found: n_inner.to_string(),
                why: "the book's MLP is always 4 * n_embd wide",
            });
        }
        // (key, its value, the value the model needs, why)
        let switches = [
            (
                "scale_attn_weights",
                self.scale_attn_weights,
                true,
                "the book's attention always divides the scores by sqrt(head_size)",
            ),
            (
                "scale_attn_by_inverse_layer_idx",
                self.scale_attn_by_inverse_layer_idx,
                false,
                "the book's attention does not scale by the layer's index",
            ),
            (
                "add_cross_attention",
                self.add_cross_attention,
                false,
                "the book's blocks have no cross-attention",
            ),
        ];
        if let Some(&(key, found, _, why)) = switches.iter().find(|(_, v, needed, _)| v != needed) {
            let found = found.to_string();
            return Err(HfError::Unsupported { key, found, why });
        }
        let config = GptConfig {
            vocab_size: self.vocab_size,
            block_size: self.n_positions,
            n_layer: self.n_layer,
            n_head: self.n_head,
            n_embd: self.n_embd,
        };
        config.validate().map_err(|error| HfError::Config {
            path: path.to_path_buf(),
            error,
        })?;
        Ok(config)
    }
}

/// Reads a file, telling a missing one (`missing`) from an unreadable one.
fn read(path: &Path, missing: impl FnOnce() -> HfError) -> Result<Vec<u8>, HfError> {
    fs::read(path).map_err(|error| match error.kind() {
        io::ErrorKind::NotFound => missing(),
        _ => HfError::Read {
            path: path.to_path_buf(),
            error,
        },
    })
}

/// Reads `config.json` into the book's config.
fn read_config(dir: &Path) -> Result<GptConfig, HfError> {
    let path = dir.join("config.json");
    let bytes = read(&path, || HfError::NoConfig {
        dir: dir.to_path_buf(),
    })?;
    let config: HfConfig = serde_json::from_slice(&bytes).map_err(|e| HfError::BadConfig {
        path: path.clone(),
        detail: e.to_string(),
    })?;
    config.to_gpt_config(&path)
}

/// Whether `name` is one of the attention buffers old GPT-2 files carry:
/// `h.{i}.attn.bias` (the causal mask) or `h.{i}.attn.masked_bias` (the
/// value masked scores get), with or without the prefix. The whole name is
/// matched: `h.0.attn.c_attn.bias` also ends in `attn.bias`, and is a
/// parameter.
fn is_buffer(name: &str) -> bool {
    let name = name.strip_prefix(PREFIX).unwrap_or(name);
    let Some(rest) = name.strip_prefix("h.") else {
        return false;
    };
    let Some((layer, what)) = rest.split_once('.') else {
        return false;
    };
    !layer.is_empty()
        && layer.bytes().all(|b| b.is_ascii_digit())
        && (what == "attn.bias" || what == "attn.masked_bias")
}

/// One tensor's values as F32, whatever its float dtype.
fn to_f32(name: &str, dtype: Dtype, bytes: &[u8]) -> Result<Vec<f32>, HfError> {
    let values = match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
            .collect(),
        // bfloat16 is the top half of an f32.
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|b| f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16))
            .collect(),
        Dtype::F64 => bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
            .collect(),
        other => {
            return Err(HfError::Dtype {
                name: name.to_string(),
                found: format!("{other:?}"),
            });
        }
    };
    Ok(values)
}

/// An IEEE half-precision number (1 sign bit, 5 exponent bits biased by 15,
/// 10 fraction bits) as an f32, exactly: every f16 is an f32.
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let frac = u32::from(h & 0x3ff);
    let bits = match exp {
        0 => {
            // Zero or subnormal: frac * 2^-24.
            let magnitude = frac as f32 * f32::powi(2.0, -24);
            return f32::from_bits(sign | magnitude.to_bits());
        }
        0x1f => sign | 0x7f80_0000 | (frac << 13), // infinity or NaN
        _ => sign | ((exp + 127 - 15) << 23) | (frac << 13),
    };
    f32::from_bits(bits)
}

/// An f32 as the nearest IEEE half-precision number, ties to the one with an
/// even last bit (what a CPU's conversion instruction does, and llama.cpp's
/// `GGML_FP32_TO_FP16`): beyond 65520 it is infinite, below 2^-25 in size a
/// (signed) zero, and a NaN stays a NaN.
pub(crate) fn f32_to_f16(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32; // biased by 127
    let frac = bits & 0x7f_ffff;
    if exp == 0xff {
        // infinity stays infinity; a NaN keeps a quiet NaN's top fraction bit
        return sign | 0x7c00 | if frac != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15; // the exponent biased as an f16's
    if e >= 0x1f {
        return sign | 0x7c00; // too large: infinity
    }
    // Keep the top bits of the significand and round on the ones dropped: a
    // normal f16 keeps 10 fraction bits (13 dropped); a subnormal one is a
    // whole number of 2^-24, so more are dropped the smaller the number.
    let (significand, dropped, top) = if e > 0 {
        (frac, 13, (e as u32) << 10)
    } else if e >= -10 {
        (frac | 0x80_0000, (14 - e) as u32, 0) // the leading 1 made explicit; 14..=24 dropped
    } else {
        return sign; // below 2^-25: rounds to zero
    };
    let kept = top | significand >> dropped;
    let rest = significand & ((1 << dropped) - 1);
    let half = 1 << (dropped - 1);
    // Round up past the halfway point, or at it when that makes the last bit
    // even. A carry out of the fraction correctly bumps the exponent (up to
    // infinity at the top, up to the smallest normal number at the bottom).
    let rounded = if rest > half || (rest == half && kept & 1 == 1) {
        kept + 1
    } else {
        kept
    };
    sign | rounded as u16
}

// ANCHOR: load_hf_gpt2
/// Loads a Hugging Face GPT-2 directory (`config.json` and
/// `model.safetensors`) into the book's model: either layout (see the
/// [module](self) documentation), parameters found by name with or without
/// the `transformer.` prefix, attention-mask buffers skipped, a stored
/// `lm_head.weight` accepted only if it equals `wte`.
///
/// Everything is checked before anything is used: a config option the model
/// lacks, a missing, mis-shaped or unknown tensor (all of them listed), a
/// dtype that is not a float, an untied `lm_head`, NaN or infinite weights
/// each give their own [`HfError`].
pub fn load_hf_gpt2(dir: impl AsRef<Path>) -> Result<Gpt, HfError> {
    let dir = dir.as_ref();
    let config = read_config(dir)?;
    let path = dir.join("model.safetensors");
    let bytes = read(&path, || HfError::NoWeights {
        dir: dir.to_path_buf(),
    })?;
    let file = SafeTensors::deserialize(&bytes)
        .map_err(|e| HfError::Weights(diagnose(&path, &bytes, &e)))?;
    check_size(&path, &file, &config)?;
    let names = match_names(&path, &file, &config)?;
    let mut params = GptParams::zeros(&config);
    for ((_, mut view), file_name) in params.tensors_mut().into_iter().zip(&names) {
        let tensor = file.tensor(file_name).expect("found by match_names");
        let values = to_f32(file_name, tensor.dtype(), tensor.data())?;
        let bad = values.iter().filter(|v| !v.is_finite()).count();
        if bad > 0 {
            return Err(HfError::NonFinite {
                name: file_name.clone(),
                count: bad,
                len: values.len(),
            });
        }
        view.iter_mut().zip(values).for_each(|(v, x)| *v = x);
    }
    check_tied(&path, &file, &params)?;
    Gpt::from_params(config, params).map_err(|e| HfError::BadConfig {
        path: dir.join("config.json"),
        detail: e.to_string(),
    })
}
// ANCHOR_END: load_hf_gpt2

/// Refuses a config far larger than the file's tensors (more than twice the
/// numbers it holds) before anything is allocated for it: a damaged config
/// could ask for terabytes. A smaller gap is left to [`match_names`], which
/// names the missing tensors.
fn check_size(path: &Path, file: &SafeTensors, config: &GptConfig) -> Result<(), HfError> {
    let [v, t, l, c] = [
        config.vocab_size,
        config.block_size,
        config.n_layer,
        config.n_embd,
    ]
    .map(|x| x as f64);
    let params = v * c + t * c + l * (12.0 * c * c + 13.0 * c) + 2.0 * c;
    let numbers: f64 = file
        .iter()
        .map(|(_, t)| t.shape().iter().product::<usize>() as f64)
        .sum();
    if params > 2.0 * numbers {
        return Err(HfError::BadConfig {
            path: path.with_file_name("config.json"),
            detail: format!(
                "it implies {params} parameters ({}) but {} holds only {numbers} numbers",
                describe(config),
                path.display()
            ),
        });
    }
    Ok(())
}

/// For each of [`GptParams::tensors`], in order, the name it has in the
/// file: its own (`transformer.h.0.ln_1.weight`) or without the prefix
/// (`h.0.ln_1.weight`). Collects every missing, mis-shaped and unknown
/// tensor; buffers and `lm_head.weight` are not unknown.
fn match_names(
    path: &Path,
    file: &SafeTensors,
    config: &GptConfig,
) -> Result<Vec<String>, HfError> {
    let mut names = Vec::new();
    let mut problems = Vec::new();
    for spec in GptParams::specs(config) {
        let short = spec.name.strip_prefix(PREFIX).unwrap_or(&spec.name);
        let found = [spec.name.as_str(), short]
            .into_iter()
            .find_map(|name| Some((name, file.tensor(name).ok()?)));
        let Some((name, tensor)) = found else {
            problems.push(TensorProblem::Missing {
                name: spec.name.clone(),
                expected: spec.shape.clone(),
            });
            continue;
        };
        if tensor.shape() != spec.shape.as_slice() {
            problems.push(TensorProblem::Shape {
                name: name.to_string(),
                expected: spec.shape.clone(),
                found: tensor.shape().to_vec(),
            });
        }
        names.push(name.to_string());
    }
    let used: HashSet<&str> = names.iter().map(String::as_str).collect();
    problems.extend(unknown_tensors(file, |name| {
        used.contains(name) || is_buffer(name) || name == "lm_head.weight"
    }));
    if problems.is_empty() {
        return Ok(names);
    }
    Err(HfError::Tensors {
        path: path.to_path_buf(),
        config: describe(config),
        problems,
    })
}

/// Accepts a stored `lm_head.weight` only if it is `wte`, value for value.
fn check_tied(path: &Path, file: &SafeTensors, params: &GptParams) -> Result<(), HfError> {
    let Ok(tensor) = file.tensor("lm_head.weight") else {
        return Ok(()); // tied, and left out as transformers leaves it out
    };
    if tensor.shape() != params.wte.shape() {
        return Err(HfError::Tensors {
            path: path.to_path_buf(),
            config: "lm_head.weight must be wte, tied".into(),
            problems: vec![TensorProblem::Shape {
                name: "lm_head.weight".into(),
                expected: params.wte.shape().to_vec(),
                found: tensor.shape().to_vec(),
            }],
        });
    }
    let lm_head = to_f32("lm_head.weight", tensor.dtype(), tensor.data())?;
    let max_diff = lm_head
        .iter()
        .zip(params.wte.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0_f32, f32::max);
    if max_diff > 0.0 || lm_head.iter().any(|v| v.is_nan()) {
        return Err(HfError::UntiedLmHead { max_diff });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_values() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), f32::powi(2.0, -24));
        assert_eq!(f16_to_f32(0x8000).to_bits(), (-0.0_f32).to_bits());
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
    }

    #[test]
    fn f32_to_f16_values() {
        assert_eq!(f32_to_f16(1.0), 0x3c00);
        assert_eq!(f32_to_f16(-2.0), 0xc000);
        assert_eq!(f32_to_f16(65504.0), 0x7bff);
        assert_eq!(f32_to_f16(65519.99), 0x7bff); // below the halfway point to 2^16
        assert_eq!(f32_to_f16(65520.0), 0x7c00); // halfway: ties to even, infinity
        assert_eq!(f32_to_f16(1e9), 0x7c00);
        assert_eq!(f32_to_f16(f32::NEG_INFINITY), 0xfc00);
        assert!(f16_to_f32(f32_to_f16(f32::NAN)).is_nan());
        assert_eq!(f32_to_f16(-0.0), 0x8000);
        assert_eq!(f32_to_f16(f32::powi(2.0, -24)), 0x0001);
        assert_eq!(f32_to_f16(f32::powi(2.0, -25)), 0x0000); // halfway to 2^-24: even is 0
        assert_eq!(f32_to_f16(f32::powi(2.0, -25) * 1.0001), 0x0001);
        assert_eq!(f32_to_f16(1e-30), 0x0000);
        assert_eq!(f32_to_f16(1.0 / 3.0), 0x3555);
        // 1/127: 2^-7 x 1.00787..., fraction 8.06/1024, rounds to 8
        assert_eq!(f32_to_f16(1.0 / 127.0), 0x2008);
    }

    /// Every finite f16 comes back unchanged, and every point halfway between
    /// two neighbours rounds to the even one (a hair either side rounds to
    /// the nearer one): all 63,488 finite values, all their ties.
    #[test]
    fn f32_to_f16_round_trips_and_ties_to_even() {
        for h in 0..=u16::MAX {
            let x = f16_to_f32(h);
            if !x.is_finite() {
                continue;
            }
            assert_eq!(f32_to_f16(x), h, "{h:#06x} = {x}");
            let magnitude = h & 0x7fff;
            if magnitude >= 0x7bff {
                continue; // the largest finite value's neighbour is infinity
            }
            let next = f16_to_f32(h + 1);
            let mid = (x + next) / 2.0; // exact: f16s have few bits
            let even = if h & 1 == 0 { h } else { h + 1 };
            assert_eq!(
                f32_to_f16(mid),
                even,
                "tie between {h:#06x} and its successor"
            );
            // The bit patterns of either sign grow with the magnitude, so
            // mid's neighbours one f32 step nearer zero and further from it:
            let smaller = f32::from_bits(mid.to_bits() - 1);
            let larger = f32::from_bits(mid.to_bits() + 1);
            assert_eq!(f32_to_f16(smaller), h, "just under the tie after {h:#06x}");
            assert_eq!(
                f32_to_f16(larger),
                h + 1,
                "just over the tie after {h:#06x}"
            );
        }
    }

    #[test]
    fn buffers_by_whole_name() {
        assert!(is_buffer("h.0.attn.bias"));
        assert!(is_buffer("transformer.h.11.attn.masked_bias"));
        assert!(!is_buffer("h.0.attn.c_attn.bias"));
        assert!(!is_buffer("transformer.h.0.attn.c_proj.bias"));
        assert!(!is_buffer("h.x.attn.bias"));
    }
}
