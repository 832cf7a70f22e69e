//! `listings export`: a checkpoint handed to another engine, as a Hugging
//! Face GPT-2 folder (`--hf DIR`) that `transformers` loads as it loads
//! GPT-2: the model's config and weights, and its tokenizer
//! ([`listings::export`]).
//!
//! `--hf` must be a new folder, or an empty one, in a folder that exists:
//! nothing already there is replaced (see [`crate::guard`]). The folder is
//! written under a temporary name beside it and renamed into place, so a
//! failed or interrupted export leaves nothing behind but that temporary
//! folder, which the next export to the same place removes.

use std::path::PathBuf;

use clap::Args;

use crate::error::{Result, bail, err};
use crate::guard;
use crate::train::say;
use listings::checkpoint;
use listings::export::save_hf_gpt2;

/// `listings export`.
#[derive(Args)]
pub struct ExportArgs {
    /// The checkpoint to export: a file written by `listings train`,
    /// `finetune` or `merge-lora` (the tokenizer travels in it).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Write a Hugging Face GPT-2 folder DIR, new or empty: config.json,
    /// model.safetensors, tokenizer.json and tokenizer_config.json. Python
    /// loads it with transformers' GPT2LMHeadModel.from_pretrained(DIR) and
    /// AutoTokenizer.from_pretrained(DIR).
    #[arg(long, value_name = "DIR")]
    hf: PathBuf,
}

/// `listings export`.
pub fn export(args: &ExportArgs) -> Result<()> {
    let out = &args.hf;
    let shown = out.display();
    let checkpoint_path = args.checkpoint.to_string_lossy().into_owned();
    let inputs = [("--checkpoint", checkpoint_path.as_str())];
    guard::check_output_folder(out, "--hf", &inputs)?;
    let _lock = guard::lock(out, "--hf")?;
    for (name, size) in guard::remove_stale_temporaries(out) {
        say(
            &None,
            &format!("removed {name} ({size} bytes), left by an interrupted export"),
        );
    }
    // Listed again now that no other run writes it.
    if let Some(names) = guard::check_output_folder(out, "--hf", &inputs)?
        && !names.is_empty()
    {
        let mut shown_names: Vec<String> = names.iter().take(5).cloned().collect();
        if names.len() > 5 {
            shown_names.push(format!("and {} more", names.len() - 5));
        }
        bail!(
            "--hf {shown} is not empty (it holds {}); export into a new or empty folder: nothing \
             already there is replaced",
            shown_names.join(", ")
        );
    }
    let ckpt = checkpoint::load(&args.checkpoint).map_err(|e| err!("--checkpoint: {e}"))?;
    let files = save_hf_gpt2(out, &ckpt.gpt, Some(&ckpt.tokenizer)).map_err(|e| {
        err!(
            "cannot export --checkpoint {} to --hf {shown}: {e}",
            args.checkpoint.display()
        )
    })?;
    let c = ckpt.gpt.config();
    say(
        &None,
        &format!(
            "exported {} ({} parameters; n_layer {}, n_head {}, n_embd {}, block_size {}; a {} \
             tokenizer of {} ids) to {shown}: {}",
            args.checkpoint.display(),
            ckpt.gpt.num_parameters(),
            c.n_layer,
            c.n_head,
            c.n_embd,
            c.block_size,
            ckpt.tokenizer.kind(),
            ckpt.tokenizer.vocab_size(),
            files.join(", ")
        ),
    );
    let dir = out.to_string_lossy();
    say(
        &None,
        &format!(
            "in Python: GPT2LMHeadModel.from_pretrained({dir:?}) and \
             AutoTokenizer.from_pretrained({dir:?}) (not GPT2TokenizerFast, which would put \
             GPT-2's rules for cutting text in place of the tokenizer's own)"
        ),
    );
    Ok(())
}
