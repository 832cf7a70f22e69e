//! Results trained once and kept on disk, so that the chapters that look at
//! a trained model do not each train it again.
//!
//! Every snippet of the book runs in a process of its own, and the book's
//! trained model takes the better part of a minute to train: without a
//! cache, each block that looks inside it would train it anew. [`cached`]
//! keeps the result in a file under `target/lab-cache/` (or
//! `LAB_CACHE_DIR`), named by a hash of everything that could change it:
//!
//! - the code: every file of `listings/src` (the command-line tool aside),
//!   `Cargo.lock`, and the files of `lab/src` the caller names;
//! - the settings the caller passes (its configuration, written out);
//! - the CPU's vector instructions, which pick matrixmultiply's kernel.
//!
//! So any change retrains, and a result is only ever reused by the code that
//! made it. Training is deterministic to the bit (seeded, with every sum in
//! a fixed order), and the file stores every `f32` exactly, so a cached
//! result is the same as a fresh one: a test checks the round trip.
//!
//! Files are written atomically (a temporary file, then a rename), so two
//! processes that train the same result at once both succeed, and a crash
//! never leaves half a file. A file that cannot be read is trained again
//! and replaced. `LAB_CACHE=off` turns the cache off: every result is
//! trained.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

mod fingerprints {
    include!(concat!(env!("OUT_DIR"), "/fingerprints.rs"));
}

/// FNV-1a, 64 bits, as the build script uses.
fn fnv1a(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// The vector instructions matrixmultiply may pick its kernel by.
fn cpu_features() -> String {
    #[cfg(target_arch = "x86_64")]
    {
        let mut features = String::from("x86_64");
        if std::arch::is_x86_feature_detected!("avx512f") {
            features.push_str("+avx512f");
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            features.push_str("+avx2");
        }
        if std::arch::is_x86_feature_detected!("fma") {
            features.push_str("+fma");
        }
        features
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        std::env::consts::ARCH.to_string()
    }
}

/// The cache key of a result: what it is called, the `lab/src` files whose
/// code makes it, and its settings.
///
/// # Panics
///
/// If a named file is not in `lab/src` (a bug in the caller).
pub fn key(name: &str, lab_files: &[&str], settings: &str) -> String {
    let mut text = format!(
        "{name}\nlistings {:x}\nCargo.lock {:x}\n{}\n{settings}\n",
        fingerprints::LISTINGS,
        fingerprints::CARGO_LOCK,
        cpu_features()
    );
    for file in lab_files {
        let (_, hash) = fingerprints::LAB_FILES
            .iter()
            .find(|(f, _)| f == file)
            .unwrap_or_else(|| panic!("lab/src/{file} does not exist"));
        text.push_str(&format!("lab/src/{file} {hash:x}\n"));
    }
    format!(
        "{name}-{:016x}",
        fnv1a(0xcbf2_9ce4_8422_2325, text.as_bytes())
    )
}

/// The folder cached results go in.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("LAB_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(fingerprints::CACHE_DIR))
}

/// Whether the cache is on (`LAB_CACHE=off` turns it off).
pub fn enabled() -> bool {
    std::env::var("LAB_CACHE").map_or(true, |v| v != "off")
}

/// The result `key` names: read from the cache if it is there, otherwise
/// made by `make` and written to the cache for next time.
///
/// `write` saves a result to the path it is given, `read` loads it back;
/// together they must reproduce the result exactly. A cache that cannot be
/// written is not an error: the result is returned all the same, with a
/// note on standard error.
pub fn cached<T>(
    key: &str,
    write: impl FnOnce(&T, &Path) -> Result<()>,
    read: impl FnOnce(&Path) -> Result<T>,
    make: impl FnOnce() -> Result<T>,
) -> Result<T> {
    if !enabled() {
        return make();
    }
    cached_in(&cache_dir(), key, write, read, make)
}

/// [`cached`], in the folder `dir`.
pub fn cached_in<T>(
    dir: &Path,
    key: &str,
    write: impl FnOnce(&T, &Path) -> Result<()>,
    read: impl FnOnce(&Path) -> Result<T>,
    make: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let path = dir.join(key);
    if path.exists() {
        match read(&path) {
            Ok(value) => return Ok(value),
            Err(e) => eprintln!(
                "lab cache: {} unreadable, training again: {e:#}",
                path.display()
            ),
        }
    }
    let value = make()?;
    let stored = std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
        .and_then(|()| {
            let temp = dir.join(format!(".{key}.{}.tmp", std::process::id()));
            let written = write(&value, &temp).and_then(|()| {
                std::fs::rename(&temp, &path)
                    .with_context(|| format!("cannot rename to {}", path.display()))
            });
            if written.is_err() {
                let _ = std::fs::remove_file(&temp);
            }
            written
        });
    if let Err(e) = stored {
        eprintln!("lab cache: not stored: {e:#}");
    }
    Ok(value)
}
