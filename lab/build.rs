//! Fingerprints the code a cached result depends on, for `lab::cache`.
//!
//! Writes `OUT_DIR/fingerprints.rs`: one hash of `listings/src` (the model,
//! its training and its tokenizer; the command-line tool left out), one of
//! `Cargo.lock` (the versions of ndarray, matrixmultiply and the rest), and
//! one per file of `lab/src`. A cached result is keyed by the hashes of the
//! code that made it, so any change to that code trains it again.

use std::path::{Path, PathBuf};

/// FNV-1a, 64 bits: stable across Rust versions and platforms, unlike
/// std's hasher, and plenty for telling versions of a file apart.
fn fnv1a(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

fn rust_files(dir: &Path, skip: &[&str], out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if skip.contains(&name.as_str()) {
            continue;
        }
        if path.is_dir() {
            rust_files(&path, skip, out);
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

/// One hash over the paths (relative to `root`) and contents of `files`.
fn hash_files(root: &Path, files: &[PathBuf]) -> u64 {
    files.iter().fold(FNV_START, |h, path| {
        let rel = path.strip_prefix(root).unwrap().to_string_lossy();
        let h = fnv1a(h, rel.as_bytes());
        fnv1a(h, &std::fs::read(path).unwrap())
    })
}

fn main() {
    let lab = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = lab.parent().unwrap().to_path_buf();
    let listings_src = root.join("listings/src");
    let lock = root.join("Cargo.lock");
    println!("cargo:rerun-if-changed={}", listings_src.display());
    println!("cargo:rerun-if-changed={}", lock.display());
    println!("cargo:rerun-if-changed=src");

    let mut model_files = Vec::new();
    rust_files(&listings_src, &["cli"], &mut model_files);
    let listings_hash = hash_files(&root, &model_files);
    let lock_hash = fnv1a(FNV_START, &std::fs::read(&lock).unwrap_or_default());

    let mut lab_files = Vec::new();
    rust_files(&lab.join("src"), &[], &mut lab_files);
    let mut table = String::new();
    for path in &lab_files {
        let rel = path
            .strip_prefix(lab.join("src"))
            .unwrap()
            .to_string_lossy();
        let hash = hash_files(&lab.join("src"), std::slice::from_ref(path));
        table.push_str(&format!("    ({rel:?}, {hash:#018x}),\n"));
    }

    // The folder for cached results: target/lab-cache, beside the build
    // (OUT_DIR is target/<profile>/build/lab-<hash>/out).
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let target = out_dir.ancestors().nth(4).unwrap_or(&out_dir);
    let cache_dir = target.join("lab-cache");

    let code = format!(
        "/// Hash of every file of `listings/src` but the command-line tool.\n\
         pub const LISTINGS: u64 = {listings_hash:#018x};\n\
         /// Hash of `Cargo.lock`.\n\
         pub const CARGO_LOCK: u64 = {lock_hash:#018x};\n\
         /// Hash of each file of `lab/src`, by its path under `lab/src`.\n\
         pub const LAB_FILES: &[(&str, u64)] = &[\n{table}];\n\
         /// Where cached results go unless `LAB_CACHE_DIR` says otherwise.\n\
         pub const CACHE_DIR: &str = {:?};\n",
        cache_dir.display().to_string()
    );
    std::fs::write(out_dir.join("fingerprints.rs"), code).unwrap();
}
