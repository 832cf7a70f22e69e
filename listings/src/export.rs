//! Handing a model to another engine: a Hugging Face GPT-2 folder, which
//! `transformers` loads with `GPT2LMHeadModel.from_pretrained(dir)` and
//! `AutoTokenizer.from_pretrained(dir)`, and which the tools built around
//! it (llama.cpp's converter, vLLM, ...) read as they read GPT-2.
//!
//! [`save_hf_gpt2`] writes, into a new or empty folder:
//!
//! | file | what |
//! |---|---|
//! | `config.json` | a `GPT2Config` ([`hf_config`]): the five sizes, GELU with the tanh approximation (`"gelu_new"`), LayerNorm's epsilon, tied embeddings, no dropout |
//! | `model.safetensors` | every parameter as F32, named and shaped as `save_pretrained` names and shapes them: `transformer.wte.weight` `(V, C)`, ..., linear weights in GPT-2's `Conv1D` layout `(in, out)`, no `lm_head.weight` (it is `wte`, tied) |
//! | `tokenizer.json` | with a tokenizer: the tokenizer in the format of Hugging Face's `tokenizers` library ([`hf_tokenizer`]) |
//! | `tokenizer_config.json` | with a tokenizer: which class reads it, its special tokens, the context length |
//!
//! The weights are the book's own checkpoint layout without its `listings.*`
//! metadata, so this is exactly what [`load_hf_gpt2`] reads back: saving
//! and loading gives the same parameters, bit for bit.
//!
//! Only GPT-2's architecture can be written: a model with another
//! [`Arch`] (RoPE, ALiBi, sinusoidal or no positions, blocks without MLPs)
//! computes something a `GPT2LMHeadModel` does not, and is refused.
//!
//! A byte-level BPE tokenizer is written as `tokenizers` writes GPT-4's
//! (`cl100k_base`): its own pre-tokenizer pattern, then GPT-2's byte-to-
//! character table, a BPE over the tokens' bytes. A BPE merges a pair of
//! neighbouring tokens when their bytes spell a token; the book's encoder
//! (tiktoken's rule) merges *any* such pair, `tokenizers` only the pairs in
//! its list of merges, so the list holds every pair that spells a token, in
//! the order of that token's id. That needs only the vocabulary (tiktoken's
//! encodings have no list of merges), and gives the book's ids even where
//! such a pair is not the merge that made the token (rare: a trained
//! tokenizer's own merges give the same ids on all of the book's corpus).
//! A character vocabulary is written as a BPE with no merges over the
//! characters.
//!
//! Either gives the book's token ids when `transformers` reads it with
//! `AutoTokenizer` (which `tokenizer_config.json` points at
//! `PreTrainedTokenizerFast`, the class that takes the file as it is), with
//! two differences: `<|endoftext|>` written in a text is the special token
//! (as in the book's `encode_with_special`, where `encode` reads it as plain
//! text), and a character outside a character vocabulary is dropped where
//! the book's encoder refuses it. `GPT2TokenizerFast` does not take the file
//! as it is: it cuts text with GPT-2's own pattern, whatever the file says.
//!
//! The folder is written next to its final place under a temporary name
//! and renamed into place once every file is on disk, so a failed or
//! interrupted export leaves no half-written folder.
//!
//! [`load_hf_gpt2`]: crate::checkpoint::load_hf_gpt2
//!
//! ```
//! use listings::checkpoint::load_hf_gpt2;
//! use listings::export::save_hf_gpt2;
//! use listings::model::{Gpt, GptConfig};
//! let dir = std::env::temp_dir().join(format!("listings-export-doc-{}", std::process::id()));
//! let gpt = Gpt::new(GptConfig::toy(300), 0)?;
//! let files = save_hf_gpt2(&dir, &gpt, None)?;
//! assert_eq!(files, ["config.json", "model.safetensors"]);
//! assert_eq!(load_hf_gpt2(&dir)?.params(), gpt.params());
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Value, json};
use thiserror::Error;

use crate::checkpoint::{F32Tensor, write_atomically, write_safetensors};
use crate::model::{Arch, Gpt, LAYERNORM_EPS};
use crate::tokens::{CharVocab, ENDOFTEXT, TextTokenizer, Tokenizer};

/// The model's config: `config.json`.
pub const CONFIG_FILE: &str = "config.json";
/// The weights: `model.safetensors`.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The tokenizer, in `tokenizers`' format: `tokenizer.json`.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// How `transformers` builds the tokenizer: `tokenizer_config.json`.
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";

/// Why a model could not be exported.
#[derive(Debug, Error)]
pub enum ExportError {
    /// The model's architecture is not GPT-2's.
    #[error(
        "the model has {arch}, but a GPT-2 folder holds only GPT-2's architecture (learned \
         positions, an MLP in every block): transformers would load the weights into a model \
         that computes something else"
    )]
    Arch {
        /// The model's architecture.
        arch: Arch,
    },
    /// A parameter holds NaN or infinite values.
    #[error(
        "{name} holds {count} values out of {len} that are NaN or infinite; the model had \
         diverged, and no engine can run it"
    )]
    NonFinite {
        /// The tensor's name.
        name: String,
        /// How many of its values are not finite.
        count: usize,
        /// How many values it has.
        len: usize,
    },
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
    /// The folder exists and holds files.
    #[error(
        "{} is not empty (it holds {}); export into a new or empty folder",
        dir.display(), list_names(names)
    )]
    NotEmpty {
        /// The folder.
        dir: PathBuf,
        /// What it holds, sorted.
        names: Vec<String>,
    },
    /// Something other than a folder is at the path.
    #[error(
        "{} is not a folder (a file, a link or a device); give the path of a new folder",
        path.display()
    )]
    NotAFolder {
        /// The path.
        path: PathBuf,
    },
    /// The folder could not be written.
    #[error("cannot write {}: {error}; nothing was written there", path.display())]
    Write {
        /// The folder, or the file being written.
        path: PathBuf,
        /// The system's error.
        error: io::Error,
    },
}

/// The first few names, quoted, for an error message.
fn list_names(names: &[String]) -> String {
    let mut shown: Vec<String> = names.iter().take(5).map(|n| format!("{n:?}")).collect();
    if names.len() > 5 {
        shown.push(format!("and {} more", names.len() - 5));
    }
    shown.join(", ")
}

// ANCHOR: hf_config
/// The `config.json` of a `GPT2LMHeadModel` that computes what `gpt`
/// computes. With a tokenizer that has `<|endoftext|>`, that token is the
/// model's `bos_token_id` and `eos_token_id` (as in GPT-2); without one they
/// are `null`, since GPT-2's default (50256) is not a token of a small model.
pub fn hf_config(gpt: &Gpt, tokenizer: Option<&TextTokenizer>) -> Value {
    let c = gpt.config();
    let end = tokenizer.and_then(end_of_text);
    // The shortest decimal of the constant (1e-5), not its f32 value widened
    // to f64 (9.99999974e-6): Python reads it back as the number written.
    let eps: f64 = LAYERNORM_EPS
        .to_string()
        .parse()
        .expect("a float prints as one");
    json!({
        "activation_function": "gelu_new", // GELU, tanh approximation
        "architectures": ["GPT2LMHeadModel"],
        "attn_pdrop": 0.0,
        "bos_token_id": end,
        "embd_pdrop": 0.0,
        "eos_token_id": end,
        "initializer_range": 0.02,
        "layer_norm_epsilon": eps,
        "model_type": "gpt2",
        "n_ctx": c.block_size,
        "n_embd": c.n_embd,
        "n_head": c.n_head,
        "n_inner": null, // 4 * n_embd
        "n_layer": c.n_layer,
        "n_positions": c.block_size,
        "reorder_and_upcast_attn": false,
        "resid_pdrop": 0.0,
        "scale_attn_by_inverse_layer_idx": false,
        "scale_attn_weights": true,
        "tie_word_embeddings": true,
        "use_cache": true,
        "vocab_size": c.vocab_size,
    })
}
// ANCHOR_END: hf_config

/// The id of `<|endoftext|>`, if the tokenizer has it.
fn end_of_text(tokenizer: &TextTokenizer) -> Option<u32> {
    match tokenizer {
        TextTokenizer::Bpe(t) => t
            .special_tokens()
            .iter()
            .find(|(text, _)| text == ENDOFTEXT)
            .map(|&(_, id)| id),
        TextTokenizer::Char(_) => None,
    }
}

// ANCHOR: save_hf_gpt2
/// Writes `gpt`, and `tokenizer` if given, as a Hugging Face GPT-2 folder
/// `dir` (see the [module](self) documentation), and returns the names of
/// the files written.
///
/// `dir` must not exist yet, or be an empty folder; its parent folder must
/// exist. Everything is checked before anything is written: the
/// architecture, the weights (all finite), the tokenizer's size against
/// the model's. The files are written into a temporary folder beside `dir`,
/// flushed to disk, and the folder renamed to `dir`.
pub fn save_hf_gpt2(
    dir: impl AsRef<Path>,
    gpt: &Gpt,
    tokenizer: Option<&TextTokenizer>,
) -> Result<Vec<&'static str>, ExportError> {
    let dir = dir.as_ref();
    if !gpt.arch().is_gpt2() {
        return Err(ExportError::Arch { arch: *gpt.arch() });
    }
    let tensors = weights(gpt)?;
    let mut texts = vec![(CONFIG_FILE, pretty(&hf_config(gpt, tokenizer)))];
    if let Some(tokenizer) = tokenizer {
        let model = gpt.config().vocab_size;
        if tokenizer.vocab_size() != model {
            let tokenizer = tokenizer.vocab_size();
            return Err(ExportError::VocabMismatch { tokenizer, model });
        }
        let (json, config) = hf_tokenizer(tokenizer, gpt.config().block_size);
        texts.push((TOKENIZER_FILE, json));
        texts.push((TOKENIZER_CONFIG_FILE, pretty(&config)));
    }
    check_destination(dir)?;
    let metadata = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    into_place(dir, |temp| {
        let weights = temp.join(WEIGHTS_FILE);
        write_atomically(&weights, |out| write_safetensors(out, &tensors, &metadata))?;
        for (name, text) in &texts {
            write_atomically(&temp.join(name), |out| out.write_all(text.as_bytes()))?;
        }
        Ok(())
    })?;
    let mut names = vec![CONFIG_FILE, WEIGHTS_FILE];
    names.extend(
        tokenizer
            .map(|_| [TOKENIZER_FILE, TOKENIZER_CONFIG_FILE])
            .into_iter()
            .flatten(),
    );
    Ok(names)
}
// ANCHOR_END: save_hf_gpt2

/// Every parameter as a named F32 tensor, after checking that each is
/// finite: the names and `(in, out)` layouts are already GPT-2's.
fn weights(gpt: &Gpt) -> Result<Vec<(String, F32Tensor<'_>)>, ExportError> {
    let mut tensors = Vec::new();
    for (name, view) in gpt.params().tensors() {
        let count = view.iter().filter(|v| !v.is_finite()).count();
        if count > 0 {
            let len = view.len();
            return Err(ExportError::NonFinite { name, count, len });
        }
        let shape = view.shape().to_vec();
        let values = match view.to_slice() {
            Some(slice) => Cow::Borrowed(slice),
            None => Cow::Owned(view.iter().copied().collect()),
        };
        tensors.push((name, F32Tensor { shape, values }));
    }
    Ok(tensors)
}

/// JSON as `save_pretrained` writes it: indented by two, keys sorted, a
/// final newline.
fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).expect("JSON values serialise") + "\n"
}

/// Refuses a destination that is a file, or a folder that holds anything.
fn check_destination(dir: &Path) -> Result<(), ExportError> {
    let write_error = |error| ExportError::Write {
        path: dir.to_path_buf(),
        error,
    };
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(write_error(e)),
        Ok(meta) if meta.is_dir() => {
            let mut names = fs::read_dir(dir)
                .and_then(|entries| {
                    entries
                        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                        .collect::<io::Result<Vec<_>>>()
                })
                .map_err(write_error)?;
            if names.is_empty() {
                return Ok(());
            }
            names.sort();
            Err(ExportError::NotEmpty {
                dir: dir.to_path_buf(),
                names,
            })
        }
        Ok(_) => Err(ExportError::NotAFolder {
            path: dir.to_path_buf(),
        }),
    }
}

/// Makes temporary folder names unique within this process too.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

// ANCHOR: into_place
/// Fills a new temporary folder beside `dir` with `write`, then renames it
/// to `dir` (which is missing or an empty folder) and flushes the parent
/// folder, so `dir` appears whole or not at all. The temporary folder is
/// named `.NAME.PID.N.tmp`, as the checkpoint's temporary files are.
fn into_place(dir: &Path, write: impl FnOnce(&Path) -> io::Result<()>) -> Result<(), ExportError> {
    let fail = |error| ExportError::Write {
        path: dir.to_path_buf(),
        error,
    };
    let name = dir.file_name().ok_or_else(|| {
        fail(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the path names no folder",
        ))
    })?;
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let unique = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let temp = parent.join(format!(
        ".{}.{}.{unique}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    fs::create_dir(&temp).map_err(fail)?;
    let written = write(&temp).and_then(|()| match fs::rename(&temp, dir) {
        Ok(()) => Ok(()),
        // Where renaming onto an empty folder is not allowed (Windows):
        // remove it, then rename (putting it back if that fails too). A
        // folder that is no longer empty stays as it is.
        Err(_) if fs::remove_dir(dir).is_ok() => fs::rename(&temp, dir).inspect_err(|_| {
            let _ = fs::create_dir(dir);
        }),
        Err(e) => Err(e),
    });
    if let Err(error) = written {
        let _ = fs::remove_dir_all(&temp);
        return Err(fail(error));
    }
    // Best effort: not every platform can open a folder to sync it.
    if let Ok(folder) = fs::File::open(parent) {
        let _ = folder.sync_all();
    }
    Ok(())
}
// ANCHOR_END: into_place

// ANCHOR: hf_tokenizer
/// The tokenizer as `tokenizers` stores it (`tokenizer.json`), and the
/// `tokenizer_config.json` that tells `transformers` to read it as it is
/// (`PreTrainedTokenizerFast`), with `<|endoftext|>` as its beginning- and
/// end-of-text token if it has one and `block_size` as its context length.
///
/// A BPE tokenizer becomes a byte-level BPE: its pre-tokenizer pattern,
/// GPT-2's byte-to-character table, every token's bytes in that table's
/// characters, every pair of tokens whose bytes spell a token as a merge (in
/// the order of that token's id), and `ignore_merges` (a chunk that is a
/// token is that token, as in the book's encoder). A character vocabulary
/// becomes a BPE over the characters with no merges and no pre-tokenizer.
pub fn hf_tokenizer(tokenizer: &TextTokenizer, block_size: usize) -> (String, Value) {
    let (model, pre_tokenizer, decoder, added) = match tokenizer {
        TextTokenizer::Bpe(t) => byte_level(t),
        TextTokenizer::Char(vocab) => characters(vocab),
    };
    let added_tokens: Vec<Value> = added
        .iter()
        .map(|(content, id)| {
            json!({"id": id, "content": content, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let file = HfTokenizerFile {
        version: "1.0",
        truncation: None,
        padding: None,
        added_tokens,
        normalizer: None,
        pre_tokenizer,
        post_processor: None,
        decoder,
        model,
    };
    let json = serde_json::to_string_pretty(&file).expect("plain data serialises") + "\n";
    let mut config = json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "clean_up_tokenization_spaces": false,
        "model_max_length": block_size,
    });
    if let Some(id) = end_of_text(tokenizer) {
        let (text, _) = added
            .iter()
            .find(|(_, i)| *i == id)
            .expect("a special token");
        config["bos_token"] = json!(text);
        config["eos_token"] = json!(text);
    }
    (json, config)
}
// ANCHOR_END: hf_tokenizer

/// `tokenizer.json`'s top level, in the order `tokenizers` writes it.
#[derive(serde::Serialize)]
struct HfTokenizerFile {
    version: &'static str,
    truncation: Option<()>,
    padding: Option<()>,
    added_tokens: Vec<Value>,
    normalizer: Option<()>,
    pre_tokenizer: Value,
    post_processor: Option<()>,
    decoder: Value,
    model: HfBpe,
}

/// `tokenizers`' BPE model: a vocabulary (written in id order) and merges.
#[derive(serde::Serialize)]
struct HfBpe {
    #[serde(rename = "type")]
    kind: &'static str,
    dropout: Option<f32>,
    unk_token: Option<String>,
    continuing_subword_prefix: Option<String>,
    end_of_word_suffix: Option<String>,
    fuse_unk: bool,
    byte_fallback: bool,
    ignore_merges: bool,
    vocab: InOrder,
    merges: Vec<String>,
}

/// Token strings and their ids, serialised as a JSON object in this order
/// (a map would sort them by string).
struct InOrder(Vec<(String, u32)>);

impl Serialize for InOrder {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (token, id) in &self.0 {
            map.serialize_entry(token, id)?;
        }
        map.end()
    }
}

/// The pieces of a byte-level BPE: the model, the pre-tokenizer, the
/// decoder, and the special tokens with their ids.
fn byte_level(t: &Tokenizer) -> (HfBpe, Value, Value, Vec<(String, u32)>) {
    let table = bytes_to_unicode();
    let spell = |bytes: &[u8]| -> String { bytes.iter().map(|&b| table[b as usize]).collect() };
    let specials = t.special_tokens().to_vec();
    let is_special = |id: u32| specials.iter().any(|&(_, s)| s == id);
    let mut vocab = Vec::new();
    let mut merges = Vec::new();
    for id in 0..t.vocab_size() as u32 {
        if is_special(id) {
            continue;
        }
        let Some(bytes) = t.token_bytes(id) else {
            continue; // a gap in the ids (tiktoken's vocabularies have some)
        };
        vocab.push((spell(bytes), id));
        // ANCHOR: every_pair
        for cut in 1..bytes.len() {
            let (left, right) = bytes.split_at(cut);
            if t.token_id(left).is_some() && t.token_id(right).is_some() {
                merges.push(format!("{} {}", spell(left), spell(right)));
            }
        }
        // ANCHOR_END: every_pair
    }
    vocab.extend(specials.iter().map(|(text, id)| (text.clone(), *id)));
    let model = HfBpe {
        kind: "BPE",
        dropout: None,
        unk_token: None,
        continuing_subword_prefix: None,
        end_of_word_suffix: None,
        fuse_unk: false,
        byte_fallback: false,
        ignore_merges: true,
        vocab: InOrder(vocab),
        merges,
    };
    let pre_tokenizer = json!({"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": onig_pattern(t.pattern())},
         "behavior": "Isolated", "invert": false},
        {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false},
    ]});
    let decoder = json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true,
                         "use_regex": true});
    (model, pre_tokenizer, decoder, specials)
}

/// The pieces of a character vocabulary: a BPE whose tokens are the
/// characters, with no merges, over the whole text (no pre-tokenizer); the
/// decoder joins the tokens with nothing between them.
fn characters(vocab: &CharVocab) -> (HfBpe, Value, Value, Vec<(String, u32)>) {
    let tokens = (vocab.chars().iter().zip(0..)).map(|(c, id)| (c.to_string(), id));
    let model = HfBpe {
        kind: "BPE",
        dropout: None,
        unk_token: None,
        continuing_subword_prefix: None,
        end_of_word_suffix: None,
        fuse_unk: false,
        byte_fallback: false,
        ignore_merges: false,
        vocab: InOrder(tokens.collect()),
        merges: Vec::new(),
    };
    (model, Value::Null, json!({"type": "Fuse"}), Vec::new())
}

/// GPT-2's table from bytes to printable characters (`bytes_to_unicode` in
/// its `encoder.py`): the 188 printable bytes stand for themselves, the
/// others (control bytes, space, ...) for the characters from U+0100 on, in
/// byte order, so a space is `Ġ` (U+0120) and a newline `Ċ` (U+010A).
fn bytes_to_unicode() -> [char; 256] {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xa1..=0xac | 0xae..=0xff);
    let mut table = ['\0'; 256];
    let mut next = 256;
    for b in 0..=255u8 {
        table[b as usize] = if printable(b) {
            char::from(b)
        } else {
            next += 1;
            char::from_u32(next - 1).expect("U+0100 to U+0143 are characters")
        };
    }
    table
}

/// The pattern as `tokenizers`' regex engine (Oniguruma, Ruby syntax)
/// reads it. Possessive `?+`, `*+` and `++` mean the same there, but a
/// possessive interval (`\p{N}{1,3}+`) means "the interval, repeated": the
/// `+` after an interval is dropped, which in the published patterns
/// changes nothing, since nothing after it in its alternative could make
/// the engine backtrack into it.
fn onig_pattern(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len());
    let mut i = 0;
    while i < chars.len() {
        out.push(chars[i]);
        if chars[i] == '\\' {
            // An escape: copy the escaped character as it is.
            if let Some(&c) = chars.get(i + 1) {
                out.push(c);
            }
            i += 2;
            continue;
        }
        if chars[i] == '{' && (i == 0 || !matches!(chars[i - 1], 'p' | 'P' | 'x' | 'u')) {
            // `{m}`, `{m,}` or `{m,n}`, then a possessive `+`?
            let end = chars[i + 1..]
                .iter()
                .position(|&c| c == '}')
                .map(|p| i + 1 + p);
            if let Some(end) = end
                && chars.get(i + 1).is_some_and(char::is_ascii_digit)
                && chars[i + 1..end]
                    .iter()
                    .all(|c| c.is_ascii_digit() || *c == ',')
                && chars.get(end + 1) == Some(&'+')
            {
                out.extend(&chars[i + 1..=end]);
                i = end + 2;
                continue;
            }
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::{CL100K_PATTERN, GPT2_PATTERN, O200K_PATTERN};

    #[test]
    fn bytes_to_unicode_is_gpt2s() {
        let table = bytes_to_unicode();
        assert_eq!(table[b' ' as usize], 'Ġ');
        assert_eq!(table[b'\n' as usize], 'Ċ');
        assert_eq!(table[b'A' as usize], 'A');
        assert_eq!(table[0], '\u{100}');
        assert_eq!(table[0xad], '\u{143}'); // the last byte that is not printable
        let mut sorted = table.to_vec();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 256);
    }

    #[test]
    fn possessive_intervals_lose_their_plus() {
        assert_eq!(
            onig_pattern(CL100K_PATTERN),
            CL100K_PATTERN.replace(r"\p{N}{1,3}+", r"\p{N}{1,3}")
        );
        assert_eq!(onig_pattern(GPT2_PATTERN), GPT2_PATTERN);
        assert_eq!(onig_pattern(O200K_PATTERN), O200K_PATTERN);
        assert_eq!(onig_pattern(r"a{2}+b{3,}+\{1}+"), r"a{2}b{3,}\{1}+");
    }
}
