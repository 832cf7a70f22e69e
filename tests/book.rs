//! The snippet harness: every Rust block of the book compiles, runs, and
//! prints what the book says it prints.
//!
//! `build.rs` compiled every block into this binary (see there). Here, each
//! block becomes one test named after its markdown file and line. A test runs
//! its block in a child process (this same binary, told which block to run),
//! so that its stdout can be read, a panic stays contained, and blocks run in
//! parallel. The stated output is compared by the rules of
//! `harness/compare.rs`, and every single-digit or single-word change of it
//! must fail to match, so a stated output is never looser than it looks.
//!
//! Blocks in `tests/fixtures/` test the harness itself: each says in a
//! `<!-- harness: must-pass -->` or `<!-- harness: must-fail TEXT -->`
//! comment what the harness has to conclude about it.
//!
//! Run one chapter: `cargo test --test book -- ch00`. With
//! `BOOK_PRINT_OUTPUT=1`, each block's real output is printed as it runs; with
//! `BOOK_TIMES=1`, each block's time is.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

#[path = "harness/compare.rs"]
mod compare;

/// What the harness does with a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Run,
    NoRun,
    ShouldPanic,
    CompileFail,
    Ignore,
}

/// One block, as `build.rs` registered it.
struct Snippet {
    file: &'static str,
    line: usize,
    mode: Mode,
    /// The line of the ```output fence, and its text.
    expected: Option<(usize, &'static str)>,
    run: Option<fn() -> ExitCode>,
    directive: Option<&'static str>,
    /// The whole program, for `compile_fail` blocks.
    program: &'static str,
    error_codes: &'static [&'static str],
}

mod registry {
    #![allow(clippy::all, clippy::pedantic, unused)]
    use super::{Mode, Snippet};
    include!(concat!(env!("OUT_DIR"), "/snippets.rs"));
}
use registry::SNIPPETS;

const RUN_ENV: &str = "BOOK_SNIPPET_RUN";
const RUN_AT_ENV: &str = "BOOK_SNIPPET_AT";
/// A block that runs longer than this is stopped and fails: a guard against
/// a block that hangs, set well above the slowest honest block. On a fresh
/// clone every cached model trains first; chapter 8's blocks that train its
/// three sum models and its two name models took over 600 s each on a loaded
/// 2-core CI machine (in the dev profile with ndarray's debug assertions on,
/// since turned off; idle, without them, each takes about 270 s).
const TIMEOUT: Duration = Duration::from_secs(1200);

fn main() -> ExitCode {
    if let Ok(index) = std::env::var(RUN_ENV) {
        let index: usize = index.parse().expect("snippet index");
        // The parent names the block it means; a binary rebuilt in between
        // (another cargo run) could number its blocks differently.
        let s = &SNIPPETS[index];
        let meant = std::env::var(RUN_AT_ENV).unwrap_or_default();
        if meant != format!("{}:{}", s.file, s.line) {
            eprintln!("snippet {index} is {}:{} here, not {meant}", s.file, s.line);
            return ExitCode::from(3);
        }
        return (s.run.expect("compiled snippet"))();
    }
    let args = libtest_mimic::Arguments::from_args();
    let mut trials = Vec::new();
    for (index, s) in SNIPPETS.iter().enumerate() {
        let name = format!("{}:{}", s.file, s.line);
        if s.file.starts_with("tests/fixtures/") {
            let directive = s.directive.unwrap_or_else(|| {
                panic!("{name}: a fixture needs a <!-- harness: ... --> directive")
            });
            trials.push(libtest_mimic::Trial::test(
                format!("selftest {name}"),
                move || check_fixture(index, directive).map_err(Into::into),
            ));
        } else {
            let ignored = s.mode == Mode::Ignore;
            trials.push(
                libtest_mimic::Trial::test(name, move || check(index).map_err(Into::into))
                    .with_ignored_flag(ignored),
            );
        }
    }
    libtest_mimic::run(&args, trials).exit_code()
}

/// The result of running one block in a child process.
struct Outcome {
    success: bool,
    status: String,
    stdout: String,
    stderr: String,
}

fn run_child(index: usize) -> Result<Outcome, String> {
    // On Linux, /proc/self/exe is this very binary even if cargo has since
    // replaced the file at its path.
    let exe = if cfg!(target_os = "linux") {
        PathBuf::from("/proc/self/exe")
    } else {
        std::env::current_exe().map_err(|e| e.to_string())?
    };
    let s = &SNIPPETS[index];
    let mut child = Command::new(exe)
        .env(RUN_ENV, index.to_string())
        .env(RUN_AT_ENV, format!("{}:{}", s.file, s.line))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the snippet: {e}"))?;
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_thread = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_thread = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "the snippet ran longer than {} s and was stopped",
                TIMEOUT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let stdout = String::from_utf8_lossy(&out_thread.join().unwrap()).into_owned();
    let stderr = String::from_utf8_lossy(&err_thread.join().unwrap()).into_owned();
    Ok(Outcome {
        success: status.success(),
        status: status.to_string(),
        stdout,
        stderr,
    })
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

/// Checks one block; the error says what went wrong, where.
fn check(index: usize) -> Result<(), String> {
    let s = &SNIPPETS[index];
    let at = format!("{}:{}", s.file, s.line);
    match s.mode {
        Mode::Ignore | Mode::NoRun => return Ok(()),
        Mode::CompileFail => return check_compile_fail(s, &at),
        Mode::Run | Mode::ShouldPanic => {}
    }
    let start = Instant::now();
    let outcome = run_child(index).map_err(|e| format!("{at}: {e}"))?;
    if std::env::var_os("BOOK_TIMES").is_some() {
        eprintln!("{at}: {:.1} s", start.elapsed().as_secs_f64());
    }
    match (s.mode, outcome.success) {
        (Mode::Run, false) => {
            return Err(format!(
                "{at}: the snippet failed ({})\n  stdout:\n{}  stderr:\n{}",
                outcome.status,
                indent(&outcome.stdout),
                indent(&outcome.stderr)
            ));
        }
        (Mode::ShouldPanic, true) => {
            return Err(format!(
                "{at}: the snippet is marked should_panic but ran to the end"
            ));
        }
        _ => {}
    }
    if std::env::var_os("BOOK_PRINT_OUTPUT").is_some() {
        eprintln!("==== {at}\n{}====", outcome.stdout);
    }
    let Some((out_line, expected)) = s.expected else {
        return Ok(());
    };
    if !compare::output_matches(expected, &outcome.stdout) {
        return Err(format!(
            "{at}: the stated output ({}:{out_line}) does not match the real output\n\
             (- stated, + real)\n{}",
            s.file,
            compare::diff(expected, &outcome.stdout)
        ));
    }
    for (mutant, change) in compare::mutants(expected) {
        if compare::output_matches(&mutant, &outcome.stdout) {
            return Err(format!(
                "{at}: the stated output ({}:{out_line}) is too loose: with the {change} \
                 it would still match. Write more of the real output, or fewer `...`.",
                s.file
            ));
        }
    }
    Ok(())
}

/// The folder of this test binary's dependencies, and the rlib of `krate`
/// in it that this binary was linked with (the newest one: cargo has just
/// built or checked it).
fn rlib(krate: &str) -> Result<(PathBuf, PathBuf), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let deps = exe.parent().ok_or("no deps folder")?.to_path_buf();
    let newest = std::fs::read_dir(&deps)
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with(&format!("lib{krate}-")) && name.ends_with(".rlib")
        })
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
        .ok_or(format!("no lib{krate}-*.rlib next to the test binary"))?;
    Ok((deps, newest))
}

/// Errors that mean the snippet could not even be set up, not that it was
/// refused: they must not count as the expected compile failure.
const SETUP_ERRORS: &[&str] = &["E0460", "E0461", "E0462", "E0463", "E0464", "E0514"];

fn check_compile_fail(s: &Snippet, at: &str) -> Result<(), String> {
    let (deps, listings) = rlib("listings")?;
    let (_, lab) = rlib("lab")?;
    let dir = std::env::temp_dir().join(format!(
        "book-compile-fail-{}-{}",
        std::process::id(),
        s.line
    ));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let src = dir.join("snippet.rs");
    std::fs::write(&src, s.program).map_err(|e| e.to_string())?;
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(rustc)
        .args([
            "--edition",
            "2024",
            "--crate-type",
            "bin",
            "--emit",
            "metadata",
            "-o",
        ])
        .arg(dir.join("out"))
        .arg("-L")
        .arg(format!("dependency={}", deps.display()))
        .arg("--extern")
        .arg(format!("listings={}", listings.display()))
        .arg("--extern")
        .arg(format!("lab={}", lab.display()))
        .arg(&src)
        .output()
        .map_err(|e| format!("{at}: cannot run rustc: {e}"))?;
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        return Err(format!(
            "{at}: the snippet is marked compile_fail but compiles"
        ));
    }
    if let Some(code) = SETUP_ERRORS
        .iter()
        .find(|c| stderr.contains(&format!("[{c}]")))
    {
        return Err(format!(
            "{at}: the harness could not set up the compile_fail check ({code}):\n{stderr}"
        ));
    }
    for code in s.error_codes {
        if !stderr.contains(&format!("[{code}]")) {
            return Err(format!(
                "{at}: the snippet fails to compile, but not with {code}:\n{stderr}"
            ));
        }
    }
    Ok(())
}

/// A fixture says what the harness must conclude: `must-pass`, or
/// `must-fail TEXT` (the failure message must contain TEXT, and always
/// names the fixture's file and line).
fn check_fixture(index: usize, directive: &str) -> Result<(), String> {
    let s = &SNIPPETS[index];
    let result = check(index);
    if directive == "must-pass" {
        return result.map_err(|e| format!("the harness rejected a fixture it must accept:\n{e}"));
    }
    let Some(wanted) = directive.strip_prefix("must-fail") else {
        return Err(format!("unknown fixture directive `{directive}`"));
    };
    let wanted = wanted.trim();
    match result {
        Ok(()) => Err(format!(
            "the harness accepted a fixture it must reject ({wanted})"
        )),
        Err(e) if !e.starts_with(&format!("{}:{}:", s.file, s.line)) => Err(format!(
            "the failure does not start with the fixture's file:line:\n{e}"
        )),
        Err(e) if !e.contains(wanted) => {
            Err(format!("the failure does not mention `{wanted}`:\n{e}"))
        }
        Err(_) => Ok(()),
    }
}
