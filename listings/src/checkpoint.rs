//! Checkpoints: a model, its tokenizer and its optimiser in one safetensors file.
//!
//! The file is an ordinary [safetensors] file that PyTorch reads with
//! `safetensors.torch.load_file`, laid out as Hugging Face's GPT-2:
//!
//! - one F32 tensor per parameter, named as [`GptParams::tensors`] names them
//!   (`transformer.wte.weight` `(V, C)`, `transformer.wpe.weight` `(T, C)`,
//!   `transformer.h.{i}.ln_1.weight`, `transformer.h.{i}.attn.c_attn.weight`
//!   `(C, 3C)`, ..., `transformer.ln_f.bias`), linear weights in GPT-2's
//!   `Conv1D` layout `(in, out)`. `lm_head.weight` is not stored: it is
//!   `wte` (tied), and Hugging Face's GPT-2 files leave it out too;
//! - to resume training, AdamW's running averages, one pair per parameter:
//!   `optimizer.exp_avg.<name>` (m) and `optimizer.exp_avg_sq.<name>` (v),
//!   the names of PyTorch's `AdamW` state;
//! - string metadata (the file header's `__metadata__`):
//!
//! | key | value |
//! |---|---|
//! | `format` | `pt`, which Hugging Face `transformers` requires of a safetensors file |
//! | `listings.format` | [`FORMAT`], this layout's name and version |
//! | `listings.config` | the [`GptConfig`] as JSON, e.g. `{"vocab_size":65,"block_size":64,"n_layer":4,"n_head":4,"n_embd":128}` |
//! | `listings.tokenizer` | the tokenizer, [`TextTokenizer::to_text`] |
//! | `listings.step` | training steps taken, e.g. `2000` |
//! | `listings.optimizer` | only with optimiser state: AdamW's `t` and settings as JSON |
//! | `listings.hparams` | only if given: the training hyper-parameters, a JSON object of strings |
//! | `listings.arch` | only for an [`Arch`] other than GPT-2's, as JSON, e.g. `{"positions":"rope","mlp":true}` (the modern block's fields only when not GPT-2's: `"norm":"rmsnorm"`, `"mlp_kind":"swiglu"`, `"kv_heads":2`, `"bias":false`); absent means GPT-2's |
//!
//! A checkpoint is written atomically ([`save`]): to a temporary file in the
//! same folder, flushed to disk, then renamed over the old one. A crash or an
//! error leaves the previous checkpoint as it was. [`load`] checks
//! everything before using anything and names what is wrong.
//!
//! [safetensors]: https://huggingface.co/docs/safetensors
//!
//! ```
//! use listings::model::{Gpt, GptConfig};
//! use listings::checkpoint::{load, save};
//! use listings::tokens::{CharVocab, TextTokenizer};
//! let dir = std::env::temp_dir().join(format!("listings-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let path = dir.join("toy.safetensors");
//! let tokenizer = TextTokenizer::Char(CharVocab::from_text("abc")?);
//! let gpt = Gpt::new(GptConfig::toy(3), 0)?;
//! save(&path, &gpt, &tokenizer, None, 0, &Default::default())?;
//! let checkpoint = load(&path)?;
//! assert_eq!(checkpoint.gpt.params(), gpt.params());
//! assert_eq!(checkpoint.tokenizer.encode("cab")?, [2, 0, 1]);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use serde_json::json;
use thiserror::Error;

use crate::model::{Arch, Gpt, GptConfig, GptParams, ParamSpec};
use crate::optim::{AdamW, AdamWConfig};
use crate::tokens::{TextTokenizer, TokenizerError};

pub mod hf;
pub use hf::{HfError, load_hf_gpt2};

/// The value of the `listings.format` metadata key: this layout, version 1.
pub const FORMAT: &str = "listings-gpt 1";

/// The prefix of AdamW's first-moment tensors (PyTorch's `exp_avg`).
pub const EXP_AVG: &str = "optimizer.exp_avg.";

/// The prefix of AdamW's second-moment tensors (PyTorch's `exp_avg_sq`).
pub const EXP_AVG_SQ: &str = "optimizer.exp_avg_sq.";

/// Metadata keys.
const KEY_FORMAT: &str = "listings.format";
const KEY_CONFIG: &str = "listings.config";
const KEY_TOKENIZER: &str = "listings.tokenizer";
const KEY_STEP: &str = "listings.step";
const KEY_OPTIMIZER: &str = "listings.optimizer";
const KEY_HPARAMS: &str = "listings.hparams";
const KEY_ARCH: &str = "listings.arch";

/// Everything a checkpoint holds.
pub struct Checkpoint {
    /// The model.
    pub gpt: Gpt,
    /// The tokenizer it was trained with.
    pub tokenizer: TextTokenizer,
    /// AdamW with its running averages, if the checkpoint was saved with them.
    pub optimizer: Option<AdamW>,
    /// How many training steps the model has taken.
    pub step: u64,
    /// The training hyper-parameters recorded with it (may be empty).
    pub hparams: BTreeMap<String, String>,
}

impl Checkpoint {
    /// Saves this checkpoint to `path` (see [`save`]).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), CheckpointError> {
        save(
            path,
            &self.gpt,
            &self.tokenizer,
            self.optimizer.as_ref(),
            self.step,
            &self.hparams,
        )
    }
}

impl fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Checkpoint")
            .field("config", self.gpt.config())
            .field("tokenizer", &self.tokenizer.kind())
            .field("optimizer_t", &self.optimizer.as_ref().map(|o| o.t))
            .field("step", &self.step)
            .field("hparams", &self.hparams)
            .finish()
    }
}

/// One thing wrong with a checkpoint's tensors.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum TensorProblem {
    /// A tensor the config implies is not in the file.
    #[error("missing {name} (expected F32 {expected:?})")]
    Missing {
        /// Its name.
        name: String,
        /// The shape the config implies.
        expected: Vec<usize>,
    },
    /// The file has a tensor that is not part of this model.
    #[error("unknown tensor {name} {shape:?}: no parameter of this model has that name")]
    Unknown {
        /// Its name.
        name: String,
        /// Its shape in the file.
        shape: Vec<usize>,
    },
    /// A tensor has the wrong shape.
    #[error("{name} has shape {found:?} but the config implies {expected:?}")]
    Shape {
        /// Its name.
        name: String,
        /// The shape the config implies.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// A tensor is not F32.
    #[error("{name} has dtype {found} but must be F32")]
    Dtype {
        /// Its name.
        name: String,
        /// The dtype in the file, as safetensors names it.
        found: String,
    },
}

/// Why a checkpoint could not be saved or loaded.
#[derive(Debug, Error)]
pub enum CheckpointError {
    /// There is no file at the path.
    #[error(
        "there is no checkpoint at {}; check the path, or train one with \
         `listings train --data FILE --out {}`",
        path.display(), path.display()
    )]
    Missing {
        /// The path asked for.
        path: PathBuf,
    },
    /// The file exists but could not be read.
    #[error("cannot read checkpoint {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The system's error.
        error: io::Error,
    },
    /// The checkpoint could not be written; the old file, if any, is intact.
    #[error(
        "cannot write checkpoint {}: {error}; any checkpoint already there is unchanged",
        path.display()
    )]
    Write {
        /// The file.
        path: PathBuf,
        /// The system's error.
        error: io::Error,
    },
    /// The file is not in the safetensors format.
    #[error(
        "{} is not a safetensors file ({detail}); is it the right file?",
        path.display()
    )]
    NotSafetensors {
        /// The file.
        path: PathBuf,
        /// What the safetensors reader said.
        detail: String,
    },
    /// The file is shorter (or longer) than its header says.
    #[error(
        "{} is truncated or damaged: its header describes {expected} bytes but the file has \
         {found}; it was probably cut off while being written or copied, so use another copy",
        path.display()
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// The length its header implies.
        expected: u64,
        /// Its real length.
        found: u64,
    },
    /// A safetensors file, but not one written by [`save`].
    #[error(
        "{} is a safetensors file but not a listings checkpoint: {detail} \
         (files from other programs hold weights but not the config and tokenizer)",
        path.display()
    )]
    NotACheckpoint {
        /// The file.
        path: PathBuf,
        /// What is missing.
        detail: String,
    },
    /// A checkpoint of a layout version this code does not read.
    #[error(
        "{} is a checkpoint in format {found:?}, but this code reads {FORMAT:?}; \
         load it with the version of listings that wrote it",
        path.display()
    )]
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
        /// The `listings.format` value found.
        found: String,
    },
    /// A metadata value does not parse or does not make sense.
    #[error("{}: metadata entry `{key}` is invalid: {reason}", path.display())]
    BadMetadata {
        /// The file.
        path: PathBuf,
        /// The metadata key.
        key: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
    /// The tensors do not match the config: every problem, by name.
    #[error(
        "{} does not hold the tensors its config implies ({config}):\n{}",
        path.display(), list_problems(problems)
    )]
    Tensors {
        /// The file.
        path: PathBuf,
        /// The config in the file's metadata.
        config: String,
        /// Each problem found.
        problems: Vec<TensorProblem>,
    },
    /// The tokenizer cannot be stored in a checkpoint.
    #[error("cannot store the tokenizer in a checkpoint: {0}")]
    Tokenizer(TokenizerError),
    /// The tokenizer and the model disagree on the number of token ids.
    #[error(
        "the tokenizer has {tokenizer} tokens but the model's vocab_size is {model}; \
         the two must agree, one row of wte per token id"
    )]
    VocabMismatch {
        /// The tokenizer's vocabulary size.
        tokenizer: usize,
        /// The model's `vocab_size`.
        model: usize,
    },
    /// A parameter holds NaN or infinite values: the model it was saved
    /// from had diverged.
    #[error(
        "{path}: {name} holds {count} values out of {len} that are NaN or infinite; \
         the model it was saved from had diverged"
    , path = path.display())]
    NonFinite {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
        /// How many of its values are not finite.
        count: usize,
        /// How many values it has.
        len: usize,
    },
    /// The optimiser's state does not have one tensor per parameter.
    #[error(
        "the optimiser's state does not match the model: {0}; \
         step the optimiser over GptParams::tensors() in order"
    )]
    OptimizerState(String),
}

/// The problems, one per line, at most 20.
fn list_problems(problems: &[TensorProblem]) -> String {
    let mut lines: Vec<String> = problems.iter().take(20).map(|p| format!("  {p}")).collect();
    if problems.len() > 20 {
        lines.push(format!("  ... and {} more", problems.len() - 20));
    }
    lines.join("\n")
}

/// AdamW's step count and settings, as stored.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OptimizerJson {
    /// Always `AdamW`.
    kind: String,
    t: u64,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    /// Whether the `optimizer.exp_avg*` tensors are in the file (not before
    /// the first step).
    moments: bool,
}

/// A tensor to write: F32 values with a shape.
pub(crate) struct F32Tensor<'a> {
    pub(crate) shape: Vec<usize>,
    pub(crate) values: Cow<'a, [f32]>,
}

// ANCHOR: save
/// Saves a model, its tokenizer and, to resume training, its optimiser, to
/// `path`, atomically (see the [module](self) documentation for the layout).
///
/// `optimizer.m[i]` and `optimizer.v[i]` must belong to the `i`-th tensor of
/// [`GptParams::tensors`]. `step` is the number of training steps taken;
/// `hparams` any training settings worth keeping with the weights.
pub fn save(
    path: impl AsRef<Path>,
    gpt: &Gpt,
    tokenizer: &TextTokenizer,
    optimizer: Option<&AdamW>,
    step: u64,
    hparams: &BTreeMap<String, String>,
) -> Result<(), CheckpointError> {
    let path = path.as_ref();
    let metadata = metadata(gpt, tokenizer, optimizer, step, hparams)?;
    let mut tensors: Vec<(String, F32Tensor)> = gpt
        .params()
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let shape = view.shape().to_vec();
            let values = match view.to_slice() {
                Some(slice) => Cow::Borrowed(slice),
                None => Cow::Owned(view.iter().copied().collect()),
            };
            (name, F32Tensor { shape, values })
        })
        .collect();
    if let Some(optimizer) = optimizer {
        tensors.extend(optimizer_tensors(
            optimizer,
            &GptParams::specs_arch(gpt.config(), gpt.arch()),
        )?);
    }
    write_atomically(path, |file| write_safetensors(file, &tensors, &metadata)).map_err(|error| {
        CheckpointError::Write {
            path: path.to_path_buf(),
            error,
        }
    })
}
// ANCHOR_END: save

// ANCHOR: write_safetensors
/// The safetensors format: 8 bytes giving the header's length (little
/// endian), the header (JSON: each tensor's dtype, shape and byte range, and
/// the metadata), padded with spaces to a multiple of 8, then the tensors'
/// bytes, little endian, back to back in the order given.
///
/// Written here rather than with the `safetensors` crate's `serialize`,
/// whose metadata is a `HashMap`: its random order would make two saves of
/// the same model differ. Here the same model gives the same bytes.
pub(crate) fn write_safetensors(
    out: &mut impl Write,
    tensors: &[(String, F32Tensor)],
    metadata: &BTreeMap<String, String>,
) -> io::Result<()> {
    let mut header = serde_json::Map::new(); // sorted by key
    header.insert("__metadata__".into(), json!(metadata));
    let mut offset = 0;
    for (name, tensor) in tensors {
        let end = offset + 4 * tensor.values.len();
        let info = json!({"dtype": "F32", "shape": tensor.shape, "data_offsets": [offset, end]});
        header.insert(name.clone(), info);
        offset = end;
    }
    let mut header = serde_json::to_vec(&header).map_err(io::Error::other)?;
    header.resize(header.len().next_multiple_of(8), b' ');
    out.write_all(&(header.len() as u64).to_le_bytes())?;
    out.write_all(&header)?;
    let mut bytes = Vec::with_capacity(1 << 16);
    for (_, tensor) in tensors {
        for chunk in tensor.values.chunks(1 << 14) {
            bytes.clear();
            bytes.extend(chunk.iter().flat_map(|v| v.to_le_bytes()));
            out.write_all(&bytes)?;
        }
    }
    Ok(())
}
// ANCHOR_END: write_safetensors

/// The `__metadata__` of a checkpoint.
fn metadata(
    gpt: &Gpt,
    tokenizer: &TextTokenizer,
    optimizer: Option<&AdamW>,
    step: u64,
    hparams: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, CheckpointError> {
    let config = gpt.config();
    if tokenizer.vocab_size() != config.vocab_size {
        return Err(CheckpointError::VocabMismatch {
            tokenizer: tokenizer.vocab_size(),
            model: config.vocab_size,
        });
    }
    let mut meta = BTreeMap::from([
        ("format".to_string(), "pt".to_string()),
        (KEY_FORMAT.into(), FORMAT.into()),
        (KEY_CONFIG.into(), to_json(config)),
        (
            KEY_TOKENIZER.into(),
            tokenizer.to_text().map_err(CheckpointError::Tokenizer)?,
        ),
        (KEY_STEP.into(), step.to_string()),
    ]);
    if let Some(opt) = optimizer {
        let AdamWConfig {
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
        } = opt.config;
        let json = OptimizerJson {
            kind: "AdamW".into(),
            t: opt.t,
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
            moments: !opt.m.is_empty(),
        };
        meta.insert(KEY_OPTIMIZER.into(), to_json(&json));
    }
    if !hparams.is_empty() {
        meta.insert(KEY_HPARAMS.into(), to_json(hparams));
    }
    if !gpt.arch().is_gpt2() {
        meta.insert(KEY_ARCH.into(), to_json(gpt.arch()));
    }
    Ok(meta)
}

fn to_json(value: &impl Serialize) -> String {
    serde_json::to_string(value).expect("plain structs and string maps always serialise")
}

/// AdamW's `m` and `v` as named tensors, after checking that they have one
/// tensor per parameter, each the parameter's size.
fn optimizer_tensors<'a>(
    optimizer: &'a AdamW,
    specs: &[ParamSpec],
) -> Result<Vec<(String, F32Tensor<'a>)>, CheckpointError> {
    if optimizer.m.is_empty() && optimizer.v.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::with_capacity(2 * specs.len());
    for (prefix, state, what) in [
        (EXP_AVG, &optimizer.m, "m"),
        (EXP_AVG_SQ, &optimizer.v, "v"),
    ] {
        if state.len() != specs.len() {
            return Err(CheckpointError::OptimizerState(format!(
                "it has {} {what} tensors but the model has {} parameter tensors",
                state.len(),
                specs.len()
            )));
        }
        for (spec, values) in specs.iter().zip(state) {
            let numel: usize = spec.shape.iter().product();
            if values.len() != numel {
                return Err(CheckpointError::OptimizerState(format!(
                    "{what} for {} has {} numbers but the parameter has {numel}",
                    spec.name,
                    values.len()
                )));
            }
            let tensor = F32Tensor {
                shape: spec.shape.clone(),
                values: Cow::Borrowed(values),
            };
            out.push((format!("{prefix}{}", spec.name), tensor));
        }
    }
    Ok(out)
}

/// Makes temporary file names unique within this process too.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

// ANCHOR: write_atomically
/// Writes a file with `write` so that `path` holds either its old content
/// or all of the new one, never a mix: write a temporary file in the same
/// folder (a rename is only atomic within one file system), flush it to the
/// disk, rename it over `path`, then flush the folder so the rename itself
/// survives a power cut.
pub(crate) fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<fs::File>) -> io::Result<()>,
) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let unique = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let temp = dir.join(format!(
        ".{}.{}.{unique}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = (|| {
        let mut file = BufWriter::with_capacity(1 << 20, fs::File::create(&temp)?);
        write(&mut file)?;
        let file = file.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temp);
        return written;
    }
    // Best effort: not every platform can open a folder to sync it.
    if let Ok(folder) = fs::File::open(dir) {
        let _ = folder.sync_all();
    }
    Ok(())
}
// ANCHOR_END: write_atomically

// ANCHOR: load
/// Loads a checkpoint written by [`save`], after checking the format tag,
/// the metadata, and that every tensor the config implies is there, F32, of
/// the right shape, with nothing else beside it. Tensors are found by name,
/// so their order in the file does not matter.
pub fn load(path: impl AsRef<Path>) -> Result<Checkpoint, CheckpointError> {
    let path = path.as_ref();
    let bytes = fs::read(path).map_err(|error| match error.kind() {
        io::ErrorKind::NotFound => CheckpointError::Missing {
            path: path.to_path_buf(),
        },
        _ => CheckpointError::Read {
            path: path.to_path_buf(),
            error,
        },
    })?;
    let file = SafeTensors::deserialize(&bytes).map_err(|e| diagnose(path, &bytes, &e))?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| diagnose(path, &bytes, &e))?;
    let meta = Meta {
        path,
        map: header.metadata().clone().unwrap_or_default(),
    };
    meta.check_format()?;
    let config = meta.config()?;
    let arch = meta.arch(&config)?;
    let data_bytes = file.iter().map(|(_, t)| t.data().len()).sum();
    meta.check_size(&config, &arch, data_bytes)?;
    let tokenizer = meta.tokenizer(&config)?;
    let step = meta.parse::<u64>(KEY_STEP)?;
    let optimizer = meta.optimizer()?;
    let hparams = meta.hparams()?;
    let with_moments = optimizer.as_ref().is_some_and(|o| o.moments);
    check_tensors(path, &file, &config, &arch, with_moments)?;
    let gpt = read_params(path, &file, config, arch)?;
    let optimizer = optimizer.map(|o| read_optimizer(&file, &config, &arch, o));
    Ok(Checkpoint {
        gpt,
        tokenizer,
        optimizer,
        step,
        hparams,
    })
}
// ANCHOR_END: load

/// The most useful error for bytes the safetensors reader rejected.
fn diagnose(path: &Path, bytes: &[u8], error: &safetensors::SafeTensorError) -> CheckpointError {
    let path = path.to_path_buf();
    let found = bytes.len() as u64;
    if let Some(expected) = described_length(bytes)
        && expected != found
    {
        return CheckpointError::Truncated {
            path,
            expected,
            found,
        };
    }
    let detail = match error {
        safetensors::SafeTensorError::HeaderTooSmall => {
            format!("it has {found} bytes, fewer than the 8 of a safetensors header")
        }
        other => other.to_string(),
    };
    CheckpointError::NotSafetensors { path, detail }
}

/// The file length a safetensors header describes: 8 bytes of header
/// length, the JSON header, then the tensor data up to the largest offset.
/// `None` if the header itself is not readable JSON.
fn described_length(bytes: &[u8]) -> Option<u64> {
    let n = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    if n > 100 << 20 {
        return None; // not a header length: a different kind of file
    }
    let Some(header) = bytes.get(8..8 + n as usize) else {
        // The header length is plausible but the file ends inside the header.
        return Some(8 + n);
    };
    let header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(header).ok()?;
    let data_end = header
        .iter()
        .filter(|(name, _)| *name != "__metadata__")
        .filter_map(|(_, info)| info.get("data_offsets")?.get(1)?.as_u64())
        .max()
        .unwrap_or(0);
    Some(8 + n + data_end)
}

/// The metadata of a file being loaded, with its path for error messages.
struct Meta<'a> {
    path: &'a Path,
    map: HashMap<String, String>,
}

impl Meta<'_> {
    fn bad(&self, key: &'static str, reason: impl fmt::Display) -> CheckpointError {
        CheckpointError::BadMetadata {
            path: self.path.to_path_buf(),
            key,
            reason: reason.to_string(),
        }
    }

    fn get(&self, key: &'static str) -> Result<&str, CheckpointError> {
        self.map
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| self.bad(key, "it is missing"))
    }

    fn parse<T: std::str::FromStr>(&self, key: &'static str) -> Result<T, CheckpointError>
    where
        T::Err: fmt::Display,
    {
        let value = self.get(key)?;
        value
            .parse()
            .map_err(|e| self.bad(key, format!("{value:?}: {e}")))
    }

    fn json<T: for<'de> Deserialize<'de>>(&self, key: &'static str) -> Result<T, CheckpointError> {
        serde_json::from_str(self.get(key)?).map_err(|e| self.bad(key, e))
    }

    fn check_format(&self) -> Result<(), CheckpointError> {
        match self.map.get(KEY_FORMAT) {
            None => Err(CheckpointError::NotACheckpoint {
                path: self.path.to_path_buf(),
                detail: format!("its metadata has no `{KEY_FORMAT}` entry"),
            }),
            Some(found) if found != FORMAT => Err(CheckpointError::UnsupportedFormat {
                path: self.path.to_path_buf(),
                found: found.clone(),
            }),
            Some(_) => Ok(()),
        }
    }

    fn config(&self) -> Result<GptConfig, CheckpointError> {
        let config: GptConfig = self.json(KEY_CONFIG)?;
        config.validate().map_err(|e| self.bad(KEY_CONFIG, e))?;
        Ok(config)
    }

    /// Refuses a config larger than the file's tensors before anything is
    /// allocated for it (a damaged config could ask for terabytes).
    fn check_size(
        &self,
        config: &GptConfig,
        arch: &Arch,
        data_bytes: usize,
    ) -> Result<(), CheckpointError> {
        let [v, t, l, c] = [
            config.vocab_size,
            config.block_size,
            config.n_layer,
            config.n_embd,
        ]
        .map(|x| x as f64);
        // Every tensor the file stores (count_parameters's formula for
        // GPT-2), in f64 so that no size can overflow. `arch` was validated,
        // so its widths are at most those of a model `C` wide.
        let [q, f, h] = [
            arch.qkv_width(config),
            arch.fc_width(config),
            arch.mlp_hidden(config),
        ]
        .map(|x| x as f64);
        let block = (c * q + q) + (c * c + c) + (c * f + f) + (h * c + c) + 4.0 * c;
        let params = v * c + t * c + l * block + 2.0 * c;
        let numbers = (data_bytes / 4) as f64;
        if params > numbers {
            let reason =
                format!("it implies {params} parameters but the file holds only {numbers} numbers");
            return Err(self.bad(KEY_CONFIG, reason));
        }
        Ok(())
    }

    fn tokenizer(&self, config: &GptConfig) -> Result<TextTokenizer, CheckpointError> {
        let tokenizer = TextTokenizer::from_text(self.get(KEY_TOKENIZER)?)
            .map_err(|e| self.bad(KEY_TOKENIZER, e))?;
        if tokenizer.vocab_size() != config.vocab_size {
            let reason = format!(
                "it has {} tokens but the config's vocab_size is {}: one row of wte per token id",
                tokenizer.vocab_size(),
                config.vocab_size
            );
            return Err(self.bad(KEY_TOKENIZER, reason));
        }
        Ok(tokenizer)
    }

    fn optimizer(&self) -> Result<Option<OptimizerJson>, CheckpointError> {
        if !self.map.contains_key(KEY_OPTIMIZER) {
            return Ok(None);
        }
        let o: OptimizerJson = self.json(KEY_OPTIMIZER)?;
        if o.kind != "AdamW" {
            let reason = format!("optimizer kind {:?}; only \"AdamW\" is known", o.kind);
            return Err(self.bad(KEY_OPTIMIZER, reason));
        }
        Ok(Some(o))
    }

    /// The architecture: GPT-2's if the key is absent (every checkpoint
    /// written before the key existed), checked against the config.
    fn arch(&self, config: &GptConfig) -> Result<Arch, CheckpointError> {
        if !self.map.contains_key(KEY_ARCH) {
            return Ok(Arch::default());
        }
        let arch: Arch = self.json(KEY_ARCH)?;
        arch.validate(config).map_err(|e| self.bad(KEY_ARCH, e))?;
        Ok(arch)
    }

    fn hparams(&self) -> Result<BTreeMap<String, String>, CheckpointError> {
        if !self.map.contains_key(KEY_HPARAMS) {
            return Ok(BTreeMap::new());
        }
        self.json(KEY_HPARAMS)
    }
}

/// Every tensor the file should hold: the parameters, then (if saved) the
/// optimiser's two moments for each.
fn expected_tensors(config: &GptConfig, arch: &Arch, with_moments: bool) -> Vec<ParamSpec> {
    let params = GptParams::specs_arch(config, arch);
    let mut all = params.clone();
    if with_moments {
        for prefix in [EXP_AVG, EXP_AVG_SQ] {
            all.extend(params.iter().map(|spec| ParamSpec {
                name: format!("{prefix}{}", spec.name),
                shape: spec.shape.clone(),
            }));
        }
    }
    all
}

/// A [`TensorProblem::Unknown`] for each tensor of `file` that `known`
/// does not accept, sorted by name.
pub(crate) fn unknown_tensors(
    file: &SafeTensors,
    known: impl Fn(&str) -> bool,
) -> Vec<TensorProblem> {
    let mut unknown: Vec<(&str, Vec<usize>)> = file
        .iter()
        .filter(|(name, _)| !known(name))
        .map(|(name, tensor)| (name, tensor.shape().to_vec()))
        .collect();
    unknown.sort();
    unknown
        .into_iter()
        .map(|(name, shape)| TensorProblem::Unknown {
            name: name.to_string(),
            shape,
        })
        .collect()
}

/// Compares the file's tensors with the expected ones, collecting every
/// missing, unknown, mis-shaped or non-F32 tensor.
fn check_tensors(
    path: &Path,
    file: &SafeTensors,
    config: &GptConfig,
    arch: &Arch,
    with_moments: bool,
) -> Result<(), CheckpointError> {
    let expected = expected_tensors(config, arch, with_moments);
    let mut problems = Vec::new();
    for spec in &expected {
        let Ok(tensor) = file.tensor(&spec.name) else {
            problems.push(TensorProblem::Missing {
                name: spec.name.clone(),
                expected: spec.shape.clone(),
            });
            continue;
        };
        if tensor.dtype() != Dtype::F32 {
            problems.push(TensorProblem::Dtype {
                name: spec.name.clone(),
                found: format!("{:?}", tensor.dtype()),
            });
        } else if tensor.shape() != spec.shape.as_slice() {
            problems.push(TensorProblem::Shape {
                name: spec.name.clone(),
                expected: spec.shape.clone(),
                found: tensor.shape().to_vec(),
            });
        }
    }
    let known: HashSet<&str> = expected.iter().map(|s| s.name.as_str()).collect();
    problems.extend(unknown_tensors(file, |name| known.contains(name)));
    if problems.is_empty() {
        return Ok(());
    }
    Err(CheckpointError::Tensors {
        path: path.to_path_buf(),
        config: describe(config),
        problems,
    })
}

/// A config in one line, for error messages.
fn describe(c: &GptConfig) -> String {
    format!(
        "vocab_size {}, block_size {}, n_layer {}, n_head {}, n_embd {}",
        c.vocab_size, c.block_size, c.n_layer, c.n_head, c.n_embd
    )
}

/// Little-endian F32 bytes into `out`, which has the same number of values.
fn fill_f32<'a>(out: impl Iterator<Item = &'a mut f32>, bytes: &[u8]) {
    for (value, chunk) in out.zip(bytes.chunks_exact(4)) {
        *value = f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
}

/// The model's parameters, read by name (after [`check_tensors`]).
fn read_params(
    path: &Path,
    file: &SafeTensors,
    config: GptConfig,
    arch: Arch,
) -> Result<Gpt, CheckpointError> {
    let mut params = GptParams::zeros_arch(&config, &arch);
    for (name, mut view) in params.tensors_mut() {
        let tensor = file.tensor(&name).expect("checked by check_tensors");
        fill_f32(view.iter_mut(), tensor.data());
        let bad = view.iter().filter(|v| !v.is_finite()).count();
        if bad > 0 {
            return Err(CheckpointError::NonFinite {
                path: path.to_path_buf(),
                name,
                count: bad,
                len: view.len(),
            });
        }
    }
    Gpt::from_parts(config, arch, params).map_err(|e| CheckpointError::BadMetadata {
        path: path.to_path_buf(),
        key: KEY_CONFIG,
        reason: e.to_string(),
    })
}

/// AdamW with its state, read by name (after [`check_tensors`]).
fn read_optimizer(file: &SafeTensors, config: &GptConfig, arch: &Arch, o: OptimizerJson) -> AdamW {
    let mut optimizer = AdamW::new(AdamWConfig {
        lr: o.lr,
        beta1: o.beta1,
        beta2: o.beta2,
        eps: o.eps,
        weight_decay: o.weight_decay,
    });
    optimizer.t = o.t;
    if o.moments {
        let read = |prefix: &str, spec: &ParamSpec| {
            let tensor = file
                .tensor(&format!("{prefix}{}", spec.name))
                .expect("checked by check_tensors");
            let mut values = vec![0.0; spec.shape.iter().product()];
            fill_f32(values.iter_mut(), tensor.data());
            values
        };
        let specs = GptParams::specs_arch(config, arch);
        optimizer.m = specs.iter().map(|s| read(EXP_AVG, s)).collect();
        optimizer.v = specs.iter().map(|s| read(EXP_AVG_SQ, s)).collect();
    }
    optimizer
}
