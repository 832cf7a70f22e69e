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
//! Trainable tokens (PEFT's `trainable_token_indices`) add the config key
//! `trainable_token_indices`, a list of token ids, and one tensor,
//! `base_model.model.transformer.wte.token_adapter.trainable_tokens_delta`
//! `(n, C)`, f32, a row per id in the list's order. Despite its name that
//! tensor holds the tokens' *new embedding rows*, not their change: PEFT
//! starts it as a copy of the base rows and copies it over them. So both
//! directions need the base model: saving writes base row + change, loading
//! takes the base row away again. GPT-2 ties `lm_head` to `wte`; PEFT then
//! wraps `lm_head` too but saves no tensor for it, and the new rows serve
//! both, as they do in the book's model.
//!
//! What PEFT itself writes and needs was checked once with PEFT 0.21.2
//! (`listings/tests/fixtures/peft/README.md`): of the config only
//! `peft_type`, `r` and `lora_alpha` are required, and a missing
//! `lora_alpha` silently means 8; tensor names without the
//! `base_model.model.` prefix load with a warning and do nothing. So this
//! writer always writes the full set and this reader refuses what PEFT
//! would misread (a token tensor without `trainable_token_indices`, say,
//! which PEFT loads without a word and without the tokens).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};
use serde_json::{Value, json};

use super::lora::{AdaptedLayer, Lora, LoraConfig, LoraError, LoraLayer, Module};
use crate::checkpoint::{F32Tensor, write_atomically, write_safetensors};
use crate::model::Gpt;

/// The adapter's configuration file.
pub const CONFIG_FILE: &str = "adapter_config.json";
/// The adapter's weights.
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";
/// What PEFT puts before a GPT-2 model's own tensor names.
pub const PREFIX: &str = "base_model.model.transformer.h.";
/// The tensor of the trainable tokens' embedding rows, `(n, C)`.
pub const TOKENS_TENSOR: &str =
    "base_model.model.transformer.wte.token_adapter.trainable_tokens_delta";

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
    /// The adapter does not fit the base model.
    #[error("the adapter does not fit the base model: {0}")]
    Lora(#[from] LoraError),
}

// ANCHOR: save_adapter
/// Saves `lora`, trained on the model `base`, as a PEFT adapter in the
/// folder `dir` (created if missing), each file written atomically.
/// `base_name` is recorded as `base_model_name_or_path`. The base is needed
/// for the trainable tokens only: PEFT stores their rows, base + change.
pub fn save_adapter(
    dir: &Path,
    lora: &Lora,
    base: &Gpt,
    base_name: Option<&str>,
) -> Result<(), PeftError> {
    let io_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PeftError::Io { path, source }
    };
    let rows = token_rows(lora, base)?;
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
    let tokens = &lora.config.trainable_tokens;
    if !tokens.is_empty() {
        let values = Cow::Owned(rows.into_raw_vec_and_offset().0);
        let shape = vec![tokens.len(), base.config().n_embd];
        tensors.push((TOKENS_TENSOR.to_string(), F32Tensor { shape, values }));
    }
    let config = json!({
        "base_model_name_or_path": base_name,
        "bias": "none",
        "fan_in_fan_out": true,
        "inference_mode": true,
        "lora_alpha": lora.config.alpha,
        "lora_dropout": 0.0,
        "peft_type": "LORA",
        "r": lora.config.r,
        "target_modules": modules,
        "task_type": "CAUSAL_LM",
        "trainable_token_indices": (!tokens.is_empty()).then_some(tokens),
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

/// The trainable tokens' new embedding rows, `(n, C)`: each base row plus
/// its change, added as [`Lora::merge_into`] adds them, so that PEFT's
/// model and the book's merged one hold the same numbers.
fn token_rows(lora: &Lora, base: &Gpt) -> Result<ndarray::Array2<f32>, LoraError> {
    let (model, tokens) = (base.config(), &lora.config.trainable_tokens);
    check_tokens(tokens, model.vocab_size)?;
    let expected = vec![tokens.len(), model.n_embd];
    if lora.token_delta.shape() != expected {
        let found = lora.token_delta.shape().to_vec();
        let tensor = TOKENS_TENSOR.to_string();
        return Err(LoraError::Shape {
            tensor,
            found,
            expected,
        });
    }
    let mut rows = ndarray::Array2::zeros((tokens.len(), model.n_embd));
    for ((&id, delta), mut row) in tokens
        .iter()
        .zip(lora.token_delta.rows())
        .zip(rows.rows_mut())
    {
        row.assign(&base.params().wte.row(id as usize));
        row += &delta;
    }
    Ok(rows)
}

/// Every token id inside the vocabulary, and none twice.
fn check_tokens(tokens: &[u32], vocab_size: usize) -> Result<(), LoraError> {
    match tokens.iter().find(|&&id| id as usize >= vocab_size) {
        Some(&id) => Err(LoraError::NoSuchToken { id, vocab_size }),
        None => super::lora::check_distinct(tokens),
    }
}

/// Loads a PEFT LoRA adapter from the folder `dir` for the model `base`,
/// checking every tensor's name and shape against it. The base's embedding
/// rows of the trainable tokens, if any, are taken from PEFT's new rows to
/// give [`Lora::token_delta`].
pub fn load_adapter(dir: &Path, base: &Gpt) -> Result<Lora, PeftError> {
    let model = base.config();
    let config_path = dir.join(CONFIG_FILE);
    let read = |path: &Path| {
        fs::read(path).map_err(|source| PeftError::Io {
            path: path.to_path_buf(),
            source,
        })
    };
    let config = read_config(&config_path, &read(&config_path)?)?;
    let tokens = &config.trainable_tokens;
    check_tokens(tokens, model.vocab_size)?;
    let weights_path = dir.join(WEIGHTS_FILE);
    let bytes = read(&weights_path)?;
    let bad = |message: String| PeftError::Tensors {
        path: weights_path.clone(),
        message,
    };
    let file = SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    // The tensor `name` as an f32 matrix of the shape the base model needs.
    let matrix = |name: &str,
                  [rows, cols]: [usize; 2]|
     -> Result<ndarray::Array2<f32>, PeftError> {
        let view = file.tensor(name).map_err(|e| bad(format!("{name}: {e}")))?;
        if view.dtype() != Dtype::F32 {
            return Err(bad(format!(
                "{name} is {:?}; this reader takes F32 only",
                view.dtype()
            )));
        }
        if view.shape() != [rows, cols] {
            let (tensor, found) = (name.to_string(), view.shape().to_vec());
            let expected = vec![rows, cols];
            return Err(LoraError::Shape {
                tensor,
                found,
                expected,
            }
            .into());
        }
        let values = (view.data().chunks_exact(4))
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Ok(ndarray::Array2::from_shape_vec((rows, cols), values).expect("the shape was checked"))
    };
    let mut token_delta = None;
    let mut found: BTreeMap<(usize, usize), [Option<ndarray::Array2<f32>>; 2]> = BTreeMap::new();
    let mut names = file.names();
    names.sort();
    for name in names {
        if name == TOKENS_TENSOR {
            if tokens.is_empty() {
                return Err(bad(format!(
                    "{name} holds trainable tokens' rows, but {CONFIG_FILE} lists no \
                     trainable_token_indices (PEFT would load the adapter without them, silently)"
                )));
            }
            let mut delta = matrix(name, [tokens.len(), model.n_embd])?;
            for (&id, mut row) in tokens.iter().zip(delta.rows_mut()) {
                row -= &base.params().wte.row(id as usize); // PEFT stores the new row
            }
            token_delta = Some(delta);
            continue;
        }
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
        let (n_in, n_out) = module.shape(model.n_embd);
        let expected = match which {
            0 => [config.r, n_in],
            _ => [n_out, config.r],
        };
        let array = matrix(name, expected)?;
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
    let token_delta = match token_delta {
        Some(delta) => delta,
        None if tokens.is_empty() => ndarray::Array2::zeros((0, model.n_embd)),
        None => {
            return Err(bad(format!(
                "{CONFIG_FILE} lists trainable_token_indices {tokens:?}, but there is no \
                 {TOKENS_TENSOR}"
            )));
        }
    };
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
    let trainable_tokens = read_tokens(value.get("trainable_token_indices")).map_err(bad)?;
    let config = LoraConfig {
        r: r as usize,
        alpha: alpha as f32,
        target_modules,
        trainable_tokens,
    };
    config.validate()?;
    Ok(config)
}

/// `trainable_token_indices`: missing or `null` (none), a list of ids (the
/// input embedding's, as PEFT writes it), or PEFT's other form, a map from
/// module name to ids, if it names the input embedding (`wte` or
/// `transformer.wte`) and perhaps `lm_head` with the same ids, which the
/// tied model shares. A map giving `lm_head` rows of its own describes a
/// model whose input and output rows differ, which the book's cannot be.
fn read_tokens(value: Option<&Value>) -> Result<Vec<u32>, String> {
    let ids = |list: &Value| -> Result<Vec<u32>, String> {
        let Some(list) = list.as_array() else {
            return Err(format!(
                "trainable_token_indices holds {list}, not a list of token ids"
            ));
        };
        (list.iter())
            .map(|id| {
                (id.as_u64().and_then(|id| u32::try_from(id).ok()))
                    .ok_or_else(|| format!("trainable_token_indices holds {id}, not a token id"))
            })
            .collect()
    };
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(map)) => {
            let embedding = ["wte", "transformer.wte"].map(|k| map.get(k));
            let ((Some(list), None) | (None, Some(list))) = (embedding[0], embedding[1]) else {
                return Err(format!(
                    "trainable_token_indices {} does not name the input embedding (wte) once",
                    Value::Object(map.clone())
                ));
            };
            let tokens = ids(list)?;
            for (key, other) in map {
                let same = match key.as_str() {
                    "wte" | "transformer.wte" => true,
                    "lm_head" => ids(other)? == tokens,
                    _ => false,
                };
                if !same {
                    return Err(format!(
                        "trainable_token_indices gives {key:?} rows of its own ({other}); the \
                         book's model ties lm_head to wte, so only wte's tokens can train"
                    ));
                }
            }
            Ok(tokens)
        }
        Some(list) => ids(list),
    }
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
