//! Developer commands for the book: `cargo xtask <command>`.
//!
//! - `serve [--port N]`: install mdBook 0.5.4 if it is missing, then build
//!   and serve the book on localhost, printing the URL.
//! - `mdbook-test`: run `mdbook test` against an optimised `listings`.
//! - `figures [NAME...]`: redraw the book's figures from real runs.
//! - `bench-harness [--snippets N]`: time the snippet harness on N generated
//!   snippets (default 200), cold (just edited) and warm.
//! - `check-hf`: export the book model as a Hugging Face GPT-2 folder and
//!   check, with `transformers` itself, that it computes what the book's code
//!   computes (`xtask/check_hf.py`). Runs the Python in `HF_PYTHON`
//!   (default `python3`); when that cannot import torch and transformers,
//!   says so and skips, successfully.
//!
//! See WRITING.md for how the book, the listings and the harness fit.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The mdBook version the book is written for.
const MDBOOK_VERSION: &str = "0.5.4";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    std::env::set_current_dir(&root)?;
    match args.first().map(String::as_str) {
        Some("serve") => serve(flag(&args, "--port").unwrap_or("3000")),
        Some("mdbook-test") => mdbook_test(&root),
        Some("install-mdbook") => ensure_mdbook().map(drop),
        Some("figures") => run(Command::new("cargo")
            .args([
                "run",
                "--release",
                "-p",
                "lab",
                "--",
                "--out",
                "src/figures",
            ])
            .args(&args[1..])),
        Some("check-hf") => check_hf(&root),
        Some("bench-harness") => {
            let n = flag(&args, "--snippets").unwrap_or("200").parse()?;
            bench_harness(&root, n)
        }
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\n\
                 commands:\n  \
                 serve [--port N]          build the book and serve it on localhost\n  \
                 mdbook-test               run `mdbook test` against the listings and lab crates\n  \
                 install-mdbook            install mdBook {MDBOOK_VERSION} if it is missing\n  \
                 figures [NAME...]         redraw the book's figures (src/figures) from real runs\n  \
                 bench-harness [--snippets N]  time the snippet harness on N generated snippets\n  \
                 check-hf                  compare the exported book model with transformers \
                 (Python in HF_PYTHON)"
            );
            std::process::exit(2);
        }
    }
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

/// Returns the `mdbook` to run, installing the book's version with cargo
/// when it is missing or another version (about 3.5 minutes on 2 cores).
fn ensure_mdbook() -> Result<String> {
    let want = format!("mdbook v{MDBOOK_VERSION}");
    let have = Command::new("mdbook")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if have.as_deref() == Some(want.as_str()) {
        return Ok("mdbook".into());
    }
    eprintln!(
        "{} found; installing mdBook {MDBOOK_VERSION} with cargo (a few minutes, once)...",
        have.as_deref().unwrap_or("no mdbook")
    );
    run(Command::new("cargo").args([
        "install",
        "mdbook",
        "--locked",
        "--version",
        MDBOOK_VERSION,
    ]))?;
    Ok("mdbook".into())
}

fn serve(port: &str) -> Result<()> {
    let mdbook = ensure_mdbook()?;
    run(Command::new(&mdbook).arg("build"))?;
    println!("Serving the book at http://localhost:{port}/ (Ctrl-C to stop)");
    run(Command::new(&mdbook).args(["serve", "--hostname", "127.0.0.1", "--port", port]))
}

/// `mdbook test` hands rustdoc only `-L DIR`, and rustdoc refuses a folder
/// with two builds of one crate (E0464). So build `listings` optimised,
/// and copy exactly the files of that build into a fresh folder.
fn mdbook_test(root: &Path) -> Result<()> {
    let mdbook = ensure_mdbook()?;
    let out = Command::new("cargo")
        .args([
            "build",
            "--release",
            "-p",
            "listings",
            "-p",
            "lab",
            "--lib",
            "--message-format=json-render-diagnostics",
        ])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot run cargo build")?;
    if !out.status.success() {
        bail!("cargo build -p listings -p lab failed");
    }
    let lib_dir = root.join("target/mdbook-test-deps");
    let _ = std::fs::remove_dir_all(&lib_dir);
    std::fs::create_dir_all(&lib_dir)?;
    let mut copied = 0;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        for file in msg["filenames"].as_array().into_iter().flatten() {
            let file = Path::new(file.as_str().unwrap_or_default());
            let name = file.file_name().unwrap_or_default().to_string_lossy();
            // rlibs, and proc-macro libraries; `listings` and `lab`
            // are listed as their uplifted copies, target/release/lib*.rlib.
            if name.ends_with(".rlib") || name.ends_with(".so") {
                std::fs::copy(file, lib_dir.join(file.file_name().unwrap()))?;
                copied += 1;
            }
        }
    }
    eprintln!(
        "mdbook test with {copied} library files from {}",
        lib_dir.display()
    );
    run(Command::new(&mdbook).arg("test").arg("-L").arg(&lib_dir))
}

/// Times `cargo test --test book` with `n` generated snippets added through
/// `BOOK_HARNESS_EXTRA`: once just after they change (rebuild and run) and
/// once warm (nothing to rebuild).
fn bench_harness(root: &Path, n: usize) -> Result<()> {
    let dir = root.join("target/bench-harness");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let mut md = String::from("# Generated snippets\n\n");
    for i in 0..n {
        md.push_str(&format!(
            "```rust\n# extern crate listings;\nuse listings::rng::{{seeded, RngExt}};\n\
             let mut rng = seeded({i});\nlet x: f64 = rng.random();\n\
             let v: Vec<u32> = (0..{}).map(|k| k * {i}).collect();\n\
             println!(\"snippet {i}: {{:.3}} {{}}\", x, v.iter().sum::<u32>());\n```\n\n\
             ```output\nsnippet {i}: ... {}\n```\n\n",
            i % 7 + 1,
            (0..(i % 7 + 1) as u32).map(|k| k * i as u32).sum::<u32>()
        ));
    }
    std::fs::write(dir.join("generated.md"), &md)?;
    let time = |label: &str| -> Result<f64> {
        let t = Instant::now();
        run(Command::new("cargo")
            .args(["test", "--test", "book"])
            .env("BOOK_HARNESS_EXTRA", &dir))?;
        let s = t.elapsed().as_secs_f64();
        println!("{label}: {s:.1} s");
        Ok(s)
    };
    // Without the book package's build cache, every snippet is compiled anew.
    run(Command::new("cargo").args(["clean", "--quiet", "-p", "book"]))?;
    time(&format!(
        "{n} generated snippets + the book, compiled from scratch"
    ))?;
    // One snippet edited: the others stay in rustc's incremental cache.
    std::fs::write(
        dir.join("generated.md"),
        md.replacen("seeded(0)", "seeded(1000)", 1),
    )?;
    time(&format!(
        "{n} generated snippets + the book, after editing one"
    ))?;
    time(&format!("{n} generated snippets + the book, warm"))?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// `check-hf`: the book model exported (`lab hf-export`), loaded by
/// transformers and compared with the book's own numbers
/// (`xtask/check_hf.py`), whose lines are printed. Skipped, successfully and
/// saying why, when the Python in `HF_PYTHON` (default `python3`) cannot
/// import torch and transformers.
fn check_hf(root: &Path) -> Result<()> {
    let python = std::env::var("HF_PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = Command::new(&python)
        .args(["-c", "import torch, transformers"])
        .output();
    let why = match probe {
        Err(e) => Some(format!("cannot run {python}: {e}")),
        Ok(out) if !out.status.success() => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let last = stderr
                .lines()
                .last()
                .unwrap_or("it failed")
                .trim()
                .to_string();
            Some(format!(
                "{python} cannot import torch and transformers ({last})"
            ))
        }
        Ok(_) => None,
    };
    if let Some(why) = why {
        println!(
            "check-hf: skipped: {why}.\n\
             To run it, point HF_PYTHON at a Python that has them, e.g.\n  \
             python3 -m venv /tmp/hfvenv && /tmp/hfvenv/bin/pip install torch transformers safetensors\n  \
             HF_PYTHON=/tmp/hfvenv/bin/python cargo xtask check-hf"
        );
        return Ok(());
    }
    let dir = root.join("target/check-hf");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    eprintln!("exporting the book model (trained first if it is not in target/lab-cache)...");
    run(Command::new("cargo")
        .args([
            "run",
            "--quiet",
            "--release",
            "-p",
            "lab",
            "--",
            "hf-export",
        ])
        .arg(&dir))?;
    run(Command::new(&python)
        .arg(root.join("xtask/check_hf.py"))
        .arg(&dir))
}
