//! LoRA adapters on disk in PEFT's format, so that Hugging Face's `peft`
//! library loads what the book trains (and the book loads PEFT's).
//!
//! An adapter is a folder with two files:
//!
//! - `adapter_config.json`: `peft_type` `"LORA"`, `r`, `lora_alpha`,
//!   `target_modules`, `fan_in_fan_out` `true` (GPT-2's layers store their
//!   weight `(in, out)`), `task_type` `"CAUSAL_LM"`, `bias` `"none"`,
//!   `lora_dropout`, `inference_mode`, `base_model_name_or_path`;
//! - `adapter_model.safetensors`: for each adapted layer,
//!   `base_model.model.transformer.h.{i}.{layer}.lora_A.weight` `(r, in)`
//!   and `...lora_B.weight` `(out, r)`, f32.
//!
//! What PEFT itself writes and needs was checked once with PEFT 0.21.2
//! (`listings/tests/fixtures/peft/README.md`): of the config only
//! `peft_type`, `r` and `lora_alpha` are required, and a missing
//! `lora_alpha` silently means 8; tensor names without the
//! `base_model.model.` prefix load with a warning and do nothing. So this
//! writer always writes the full set and this reader refuses what PEFT
//! would misread.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};
use serde_json::{Value, json};

use super::lora::{AdaptedLayer, Lora, LoraConfig, LoraError, LoraLayer, Module};
use crate::checkpoint::{F32Tensor, write_atomically, write_safetensors};
use crate::model::GptConfig;

/// The adapter's configuration file.
pub const CONFIG_FILE: &str = "adapter_config.json";
/// The adapter's weights.
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";
/// What PEFT puts before a GPT-2 model's own tensor names.
pub const PREFIX: &str = "base_model.model.transformer.h.";

/// What can go wrong reading or writing an adapter.
#[derive(Debug, thiserror::Error)]
pub enum PeftError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// `adapter_config.json` is not what PEFT writes.
    #[error("{}: {message}", path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// `adapter_model.safetensors` is not a LoRA adapter PEFT would load.
    #[error("{}: {message}", path.display())]
    Tensors {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Something the book's model trains that this writer cannot yet put
    /// in PEFT's format.
    #[error("cannot save {what} in PEFT's format")]
    Unsupported {
        /// What it is.
        what: String,
    },
    /// The adapter does not fit the base model.
    #[error("the adapter does not fit the base model: {0}")]
    Lora(#[from] LoraError),
}

// ANCHOR: save_adapter
/// Saves `lora` as a PEFT adapter in the folder `dir` (created if
/// missing), each file written atomically. `base` is recorded as
/// `base_model_name_or_path`.
pub fn save_adapter(dir: &Path, lora: &Lora, base: Option<&str>) -> Result<(), PeftError> {
    let io_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PeftError::Io { path, source }
    };
    if !lora.config.trainable_tokens.is_empty() {
        let what = format!("trainable tokens {:?}", lora.config.trainable_tokens);
        return Err(PeftError::Unsupported { what });
    }
    fs::create_dir_all(dir).map_err(io_error(dir))?;
    let mut modules: Vec<&str> = Vec::new();
    let mut tensors = Vec::new();
    for l in &lora.layers {
        let short = l.module.name().rsplit('.').next().expect("a name");
        let name = if Module::ALL
            .iter()
            .filter(|m| m.name().ends_with(short))
            .count()
            > 1
        {
            l.module.name() // c_proj is in attn and mlp: say which
        } else {
            short
        };
        if !modules.contains(&name) {
            modules.push(name);
        }
        for (which, t) in [("A", &l.lora.a), ("B", &l.lora.b)] {
            let key = format!(
                "{PREFIX}{}.{}.lora_{which}.weight",
                l.block,
                l.module.name()
            );
            let values = Cow::Borrowed(t.as_slice().expect("adapters are contiguous"));
            tensors.push((
                key,
                F32Tensor {
                    shape: t.shape().to_vec(),
                    values,
                },
            ));
        }
    }
    let config = json!({
        "base_model_name_or_path": base,
        "bias": "none",
        "fan_in_fan_out": true,
        "inference_mode": true,
        "lora_alpha": lora.config.alpha,
        "lora_dropout": 0.0,
        "peft_type": "LORA",
        "r": lora.config.r,
        "target_modules": modules,
        "task_type": "CAUSAL_LM",
    });
    let text = serde_json::to_string_pretty(&config).expect("JSON values serialise") + "\n";
    let weights = dir.join(WEIGHTS_FILE);
    let metadata = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    write_atomically(&weights, |out| write_safetensors(out, &tensors, &metadata))
        .map_err(io_error(&weights))?;
    let config_path = dir.join(CONFIG_FILE);
    write_atomically(&config_path, |out| {
        io::Write::write_all(out, text.as_bytes())
    })
    .map_err(io_error(&config_path))?;
    Ok(())
}
// ANCHOR_END: save_adapter

/// Loads a PEFT LoRA adapter from the folder `dir` for a base model of
/// shape `model`, checking every tensor's name and shape against it.
pub fn load_adapter(dir: &Path, model: &GptConfig) -> Result<Lora, PeftError> {
    let config_path = dir.join(CONFIG_FILE);
    let read = |path: &Path| {
        fs::read(path).map_err(|source| PeftError::Io {
            path: path.to_path_buf(),
            source,
        })
    };
    let config = read_config(&config_path, &read(&config_path)?)?;
    let weights_path = dir.join(WEIGHTS_FILE);
    let bytes = read(&weights_path)?;
    let bad = |message: String| PeftError::Tensors {
        path: weights_path.clone(),
        message,
    };
    let file = SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let mut found: BTreeMap<(usize, usize), [Option<ndarray::Array2<f32>>; 2]> = BTreeMap::new();
    let mut names = file.names();
    names.sort();
    for name in names {
        let (block, module, which) = parse_name(name).ok_or_else(|| {
            bad(format!(
                "tensor {name:?} is not a LoRA weight of a GPT-2 layer \
                 ({PREFIX}<block>.<layer>.lora_A.weight or lora_B.weight)"
            ))
        })?;
        if block >= model.n_layer {
            let tensor = name.to_string();
            return Err(LoraError::NoSuchBlock {
                tensor,
                block,
                n_layer: model.n_layer,
            }
            .into());
        }
        let view = file.tensor(name).map_err(|e| bad(format!("{name}: {e}")))?;
        if view.dtype() != Dtype::F32 {
            return Err(bad(format!(
                "{name} is {:?}; this reader takes F32 only",
                view.dtype()
            )));
        }
        let (n_in, n_out) = module.shape(model.n_embd);
        let expected = match which {
            0 => vec![config.r, n_in],
            _ => vec![n_out, config.r],
        };
        if view.shape() != expected {
            let (tensor, found) = (name.to_string(), view.shape().to_vec());
            return Err(LoraError::Shape {
                tensor,
                found,
                expected,
            }
            .into());
        }
        let values: Vec<f32> = (view.data().chunks_exact(4))
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let array = ndarray::Array2::from_shape_vec((expected[0], expected[1]), values)
            .expect("the shape was checked");
        let index = Module::ALL
            .iter()
            .position(|&m| m == module)
            .expect("a module");
        found.entry((block, index)).or_default()[which] = Some(array);
    }
    if found.is_empty() {
        return Err(bad("the file has no LoRA tensors".into()));
    }
    let mut layers = Vec::new();
    for ((block, index), [a, b]) in found {
        let module = Module::ALL[index];
        let (Some(a), Some(b)) = (a, b) else {
            return Err(bad(format!(
                "block {block} {} has only one of lora_A and lora_B",
                module.name()
            )));
        };
        layers.push(AdaptedLayer {
            block,
            module,
            lora: LoraLayer { a, b },
        });
    }
    let token_delta = ndarray::Array2::zeros((0, model.n_embd));
    Ok(Lora {
        config,
        layers,
        token_delta,
    })
}

/// Reads the fields of `adapter_config.json` this model uses.
fn read_config(path: &Path, bytes: &[u8]) -> Result<LoraConfig, PeftError> {
    let bad = |message: String| PeftError::Config {
        path: path.to_path_buf(),
        message,
    };
    let value: Value = serde_json::from_slice(bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
    match value.get("peft_type").and_then(Value::as_str) {
        Some("LORA") => {}
        Some(other) => {
            return Err(bad(format!(
                "peft_type is {other:?}; only LORA adapters load here"
            )));
        }
        None => return Err(bad("no peft_type (PEFT itself cannot load it)".into())),
    }
    let r = value
        .get("r")
        .and_then(Value::as_u64)
        .ok_or_else(|| bad("no whole number r".into()))?;
    // PEFT reads a missing lora_alpha as 8 without a word; refuse instead.
    let alpha = (value.get("lora_alpha").and_then(Value::as_f64))
        .ok_or_else(|| bad("no lora_alpha (PEFT would silently use 8)".into()))?;
    let target_modules = match value.get("target_modules") {
        Some(Value::Array(names)) => names
            .iter()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect(),
        _ => vec!["c_attn".to_string()], // PEFT's default for GPT-2
    };
    let config = LoraConfig {
        r: r as usize,
        alpha: alpha as f32,
        target_modules,
        trainable_tokens: Vec::new(),
    };
    config.validate()?;
    Ok(config)
}

/// `(block, module, 0 for A / 1 for B)` of a PEFT tensor name.
fn parse_name(name: &str) -> Option<(usize, Module, usize)> {
    let rest = name.strip_prefix(PREFIX)?;
    let (block, rest) = rest.split_once('.')?;
    let (module, which) = rest
        .strip_suffix(".lora_A.weight")
        .map(|m| (m, 0))
        .or_else(|| rest.strip_suffix(".lora_B.weight").map(|m| (m, 1)))?;
    Some((block.parse().ok()?, Module::from_name(module)?, which))
}
