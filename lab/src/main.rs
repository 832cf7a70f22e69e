//! Draws the book's figures from real runs, as SVG files; and runs the
//! measurements that print rather than draw.
//!
//! ```text
//! cargo run --release -p lab -- [--out DIR] [--list] [NAME...]
//! cargo run --release -p lab -- ledger [book|gpt2]
//! cargo run --release -p lab -- hf-export DIR
//! cargo run --release -p lab -- sweep
//! cargo run --release -p lab -- precision
//! cargo run --release -p lab -- flash [T...]
//! ```
//!
//! Without names, every figure; with names, the figures whose file names
//! contain one of them. `--out` defaults to `src/figures`, the book's.
//!
//! `ledger` times a few training steps of the book model (or of GPT-2
//! small) and prints chapter 9's ledger at the FLOP/s it measured
//! ([`lab::scaling::ledger`]). Run it in a process of its own: it reads the
//! process's peak memory.
//!
//! `hf-export` writes the book model as a Hugging Face GPT-2 folder beside
//! the book's own logits and token ids ([`lab::scaling::handoff`]), which
//! `cargo xtask check-hf` compares with transformers'.
//!
//! `sweep` trains chapter 9's scaling sweep (or reads it from the cache)
//! and prints its runs, the laws fitted to them and the repetition runs
//! ([`lab::scaling::sweep`], [`lab::scaling::laws`]).
//!
//! `precision` trains (or reads from the cache) chapter 9's four runs in
//! fp32, bf16 and fp16 and prints their losses, the gradients lost to
//! underflow, the skipped steps and the loss-scale window
//! ([`lab::scaling::precision`]). `flash` compares tiled attention with the
//! library's at several lengths: the largest difference, the bytes of the
//! largest temporary, and the time of each ([`lab::scaling::flash`]).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some((command, rest)) = args.split_first() {
        match command.as_str() {
            "ledger" => return lab::scaling::ledger::ledger_command(rest),
            "sweep" => return lab::scaling::laws::sweep_command(rest),
            _ => {}
        }
    }
    if let Some((command, rest)) = args.split_first()
        && command == "hf-export"
    {
        return lab::scaling::handoff::handoff_command(rest);
    }
    if let Some((command, rest)) = args.split_first() {
        match command.as_str() {
            "precision" => return lab::scaling::precision::precision_command(),
            "flash" => return lab::scaling::flash::flash_command(rest),
            _ => {}
        }
    }
    let mut out = PathBuf::from("src/figures");
    let mut list = false;
    let mut only = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--out" => out = args.next().context("--out needs a folder")?.into(),
            "--list" => list = true,
            "-h" | "--help" => {
                println!(
                    "usage: lab [--out DIR] [--list] [NAME...]\n       lab ledger [book|gpt2]\n       \
                     lab hf-export DIR\n       lab sweep\n       lab precision\n       lab flash [T...]"
                );
                return Ok(());
            }
            flag if flag.starts_with('-') => bail!("unknown flag {flag}; try --help"),
            name => only.push(name.to_string()),
        }
    }
    let chosen: Vec<_> = lab::figures::all()
        .into_iter()
        .filter(|f| only.is_empty() || only.iter().any(|w| f.file.contains(w.as_str())))
        .collect();
    if list {
        for f in &chosen {
            println!("{}  {}", f.file, f.what);
        }
        return Ok(());
    }
    if chosen.is_empty() {
        bail!("no figure matches {only:?}; `--list` lists them");
    }
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    for f in chosen {
        let start = Instant::now();
        let path = out.join(f.file);
        (f.draw)(&path).with_context(|| format!("drawing {}", f.file))?;
        eprintln!(
            "drew {} in {:.1} s",
            path.display(),
            start.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
