//! Chapter 9, handing off to an existing engine: the book model written as
//! a Hugging Face GPT-2 folder ([`listings::export::save_hf_gpt2`]), beside
//! what the book's own code computes from it, for `xtask/check_hf.py` to
//! compare with what `transformers` computes from the folder
//! (`cargo xtask check-hf` runs both).
//!
//! `lab hf-export DIR` writes:
//!
//! | file | what |
//! |---|---|
//! | `DIR/model/` | the book model and its tokenizer, as `listings export --hf` writes them |
//! | `DIR/book.json` | the book's side: [`HANDOFF_PROMPT`], its token ids, the logits at every position, the greedy continuation, and the held-out tenth of the corpus with its token ids |

use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};
use listings::corpus::{corpus, train_val_split};
use listings::export::save_hf_gpt2;
use listings::sample::{SampleConfig, generate};
use ndarray::Array2;
use serde_json::json;

use crate::book_model::book_model;

/// The prompt both engines continue: chapter 5's.
pub const HANDOFF_PROMPT: &str = "Once upon a time";

/// How many tokens both engines add to the prompt, greedily.
pub const HANDOFF_NEW_TOKENS: usize = 20;

/// Writes the book model's folder and the book's numbers into `dir` (see
/// the [module](self) documentation); `dir` must be new or empty.
pub fn write_handoff(dir: &Path) -> Result<()> {
    let model = book_model().context("the book model")?;
    let (gpt, tokenizer) = (&model.gpt, &model.tokenizer);
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    save_hf_gpt2(dir.join("model"), gpt, Some(tokenizer))?;

    let ids = tokenizer.encode(HANDOFF_PROMPT)?;
    let idx = Array2::from_shape_vec((1, ids.len()), ids.clone())?;
    let (logits, _) = gpt.forward(&idx, None)?; // (1, T, V)
    let logits: Vec<Vec<f32>> = logits
        .outer_iter()
        .next()
        .expect("one sequence")
        .outer_iter()
        .map(|row| row.to_vec())
        .collect();
    let greedy = SampleConfig {
        max_new_tokens: HANDOFF_NEW_TOKENS,
        temperature: 0.0,
        top_k: None,
        seed: 0,
    };
    let generated = generate(gpt, &ids, &greedy)?;
    let text = corpus();
    let (_, heldout) = train_val_split(&text, 0.9);
    let book = json!({
        "prompt": HANDOFF_PROMPT,
        "input_ids": ids,
        "logits": logits,
        "generated": generated,
        "generated_text": tokenizer.decode_lossy(&generated),
        "heldout_text": heldout,
        "heldout_ids": tokenizer.encode(heldout)?,
    });
    let path = dir.join("book.json");
    fs::write(&path, serde_json::to_string(&book)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// `lab hf-export DIR`.
pub fn handoff_command(args: &[String]) -> Result<()> {
    let [dir] = args else {
        bail!("usage: lab hf-export DIR (a new or empty folder)");
    };
    write_handoff(Path::new(dir))?;
    println!("wrote the book model's Hugging Face folder and the book's numbers to {dir}");
    Ok(())
}
