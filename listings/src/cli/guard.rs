//! What a command that writes a file does before any work, so that nothing
//! the user had is lost.
//!
//! The rule: never replace a file the command did not make for this
//! purpose. An output must be a new path in a folder that exists, or a file
//! of the kind the command writes (a checkpoint, a tokenizer), and the
//! caller decides when that may be replaced. Never an input of the same
//! command, never a directory, device or pipe, never a symbolic link.
//!
//! While a command writes, it holds an advisory lock on a `.NAME.lock` file
//! beside the output, so a second command writing the same path stops at
//! once and names the process that holds it. Temporary files a killed run
//! left beside the output are removed once the lock is held.
//!
//! Ctrl-C (SIGINT) and SIGTERM only raise a flag ([`interrupted`]) that a
//! long command checks between steps, so a save is never cut in half; a
//! second Ctrl-C ends the process at once.

use std::fs::{self, File, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Context, Result, bail, err};

/// What is at an output path now.
pub enum Existing {
    /// Nothing: the command will create the file.
    Nothing,
    /// A regular file, which the caller must recognise before replacing it.
    File,
}

/// Checks `path`, given as `flag`, as a place to write: a regular file or
/// nothing, in a folder that exists, and not the same file as any of
/// `inputs` (`(flag, path)` pairs; `-` for standard input is skipped).
pub fn check_output(path: &Path, flag: &str, inputs: &[(&str, &str)]) -> Result<Existing> {
    let shown = path.display();
    check_folder(path, flag)?;
    let existing = match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Existing::Nothing,
        Err(e) => return Err(e).with_context(|| format!("{flag} {shown}: cannot inspect it")),
        Ok(meta) if meta.file_type().is_symlink() => {
            let target =
                fs::read_link(path).map_or_else(|_| "?".into(), |t| t.display().to_string());
            bail!(
                "{flag} {shown} is a symbolic link (to {target}); give the path of a regular file \
                 so that it is clear which file is replaced"
            )
        }
        Ok(meta) if meta.is_dir() => {
            bail!("{flag} {shown} is a folder; give the path of a file inside it")
        }
        Ok(meta) if !meta.is_file() => {
            bail!(
                "{flag} {shown} is not a regular file (a device, a pipe or a socket); refusing to replace it"
            )
        }
        Ok(_) => Existing::File,
    };
    if matches!(existing, Existing::File) {
        for (input_flag, input) in inputs {
            if *input != "-" && same_file(path, Path::new(input)) {
                bail!(
                    "{flag} {shown} is the same file as {input_flag} {input}: writing would \
                     destroy the input; choose another {flag}"
                );
            }
        }
    }
    Ok(existing)
}

/// Checks `path`, given as `flag`, as a folder to write (a LoRA adapter, an
/// exported model):
/// nothing yet, or a folder, in a folder that exists; never a file, a
/// symbolic link or a device, and never a folder holding one of `inputs`
/// (`(flag, path)` pairs). Returns the names in the folder, sorted (`None`
/// when there is no folder yet); the caller decides what may be replaced.
pub fn check_output_folder(
    path: &Path,
    flag: &str,
    inputs: &[(&str, &str)],
) -> Result<Option<Vec<String>>> {
    let shown = path.display();
    check_folder(path, flag)?;
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("{flag} {shown}: cannot inspect it")),
        Ok(meta) if meta.file_type().is_symlink() => {
            let target =
                fs::read_link(path).map_or_else(|_| "?".into(), |t| t.display().to_string());
            bail!(
                "{flag} {shown} is a symbolic link (to {target}); give the folder's own path so \
                 that it is clear what is replaced"
            )
        }
        Ok(meta) if meta.is_file() => {
            bail!(
                "{flag} {shown} is a file, but this command writes a folder; give the path of \
                 a new folder"
            )
        }
        Ok(meta) if !meta.is_dir() => {
            bail!("{flag} {shown} is not a folder (a device, a pipe or a socket)")
        }
        Ok(_) => {
            let inside = fs::canonicalize(path)
                .with_context(|| format!("{flag} {shown}: cannot inspect it"))?;
            for (input_flag, input) in inputs {
                let within = fs::canonicalize(input).is_ok_and(|p| p.starts_with(&inside));
                if *input != "-" && within {
                    bail!(
                        "{flag} {shown} holds {input_flag} {input}: writing would destroy the \
                         input; choose another {flag}"
                    );
                }
            }
            let mut names: Vec<String> = fs::read_dir(path)
                .with_context(|| format!("{flag} {shown}: cannot list it"))?
                .map(|entry| entry.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect::<io::Result<_>>()
                .with_context(|| format!("{flag} {shown}: cannot list it"))?;
            names.sort();
            Ok(Some(names))
        }
    }
}

/// The folder a path's file is in (`.` for a bare file name).
pub fn folder_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Whether two paths name the same file (the same device and inode on Unix).
fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (fs::metadata(a), fs::metadata(b)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        match (fs::canonicalize(a), fs::canonicalize(b)) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
    }
}

/// An advisory lock on an output path, held until dropped; the lock file is
/// removed then.
pub struct OutputLock {
    path: PathBuf,
    _file: File,
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        // Removed while still locked, so another run that opened it before
        // the removal finds, once it has the lock, that it is not the file
        // at the path any more, and tries again.
        let _ = fs::remove_file(&self.path);
    }
}

/// Takes the lock for writing `out` (given as `flag`), or says who holds it.
/// Creating the lock file also proves that the folder is writable, before
/// any work is done.
pub fn lock(out: &Path, flag: &str) -> Result<OutputLock> {
    let name = out
        .file_name()
        .ok_or_else(|| err!("{flag} {}: the path names no file", out.display()))?;
    let path = out.with_file_name(format!(".{}.lock", name.to_string_lossy()));
    for _ in 0..10 {
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| {
                format!(
                    "{flag} {}: cannot write in its folder (creating {})",
                    out.display(),
                    path.display()
                )
            })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = fs::read_to_string(&path).unwrap_or_default();
                let holder = holder.trim();
                let who = if holder.is_empty() {
                    "another process".to_string()
                } else {
                    format!("another run ({holder})")
                };
                bail!(
                    "{flag} {} is being written by {who}; wait for it to finish or choose \
                     another {flag} (the lock is {})",
                    out.display(),
                    path.display()
                )
            }
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()));
            }
        }
        if !same_file_handle(&file, &path) {
            continue; // removed by the run that held it: take the new one
        }
        file.set_len(0)?;
        writeln!(file, "pid {}", std::process::id())?;
        return Ok(OutputLock { path, _file: file });
    }
    bail!("cannot take the lock {}: it keeps changing", path.display())
}

/// Whether the open `file` is still the file at `path`.
fn same_file_handle(file: &File, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (file.metadata(), fs::metadata(path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (file, path);
        true
    }
}

/// Removes the temporary files an interrupted save left beside `out`
/// (`.NAME.*.tmp`, written by the library's atomic saves, or a folder of
/// that name, where an adapter is written before it is moved into place),
/// once the lock is held, and returns their names and total size.
pub fn remove_stale_temporaries(out: &Path) -> Vec<(String, u64)> {
    let Some(name) = out.file_name() else {
        return Vec::new();
    };
    let prefix = format!(".{}.", name.to_string_lossy());
    let Ok(entries) = fs::read_dir(folder_of(out)) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let Some(middle) = file_name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(".tmp"))
        else {
            continue;
        };
        // `.NAME.PID.N.tmp` or `.NAME.PID.tmp`: leave a live process's file.
        let pid = middle.split('.').next().and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|pid| pid != std::process::id() && process_alive(pid)) {
            continue;
        }
        let path = entry.path();
        let removed_ok = match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => {
                let size = fs::read_dir(&path).map_or(0, |files| {
                    (files.flatten())
                        .filter_map(|f| f.metadata().ok())
                        .map(|m| m.len())
                        .sum()
                });
                fs::remove_dir_all(&path).is_ok().then_some(size)
            }
            Ok(meta) => fs::remove_file(&path).is_ok().then_some(meta.len()),
            Err(_) => None,
        };
        if let Some(size) = removed_ok {
            removed.push((file_name, size));
        }
    }
    removed.sort();
    removed
}

/// Whether a process with this id runs (on Linux; elsewhere assumed not).
fn process_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Raised by SIGINT or SIGTERM once [`catch_interrupts`] is called.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// From now on, the first SIGINT or SIGTERM only raises the flag
/// [`interrupted`] reads; a second one ends the process (exit 130).
pub fn catch_interrupts() -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    for signal in [SIGINT, SIGTERM] {
        // The order matters: the shutdown is checked before the flag is set.
        signal_hook::flag::register_conditional_shutdown(signal, 130, &INTERRUPTED)
            .context("cannot install the Ctrl-C handler")?;
        signal_hook::flag::register(signal, &INTERRUPTED)
            .context("cannot install the Ctrl-C handler")?;
    }
    Ok(())
}

/// Whether SIGINT or SIGTERM arrived.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Checks that the folder `path` would be written in exists and is a
/// folder.
fn check_folder(path: &Path, flag: &str) -> Result<()> {
    let shown = path.display();
    let folder = folder_of(path);
    match fs::metadata(&folder) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => bail!("{flag} {shown}: {} is not a folder", folder.display()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            bail!(
                "{flag} {shown}: the folder {} does not exist",
                folder.display()
            )
        }
        Err(e) => Err(e).with_context(|| format!("{flag} {shown}: cannot use the folder")),
    }
}
