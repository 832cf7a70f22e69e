//! What the command-line tests share: running the `listings` binary and
//! reading what it did.

#![allow(dead_code, reason = "each test file uses a part of these")]

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

/// Runs the `listings` binary with `args`.
pub fn listings(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_listings"))
        .args(args)
        .output()
        .expect("the listings binary runs")
}

/// Bytes a command wrote, as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A refused command: exit code 1, no panic, stderr returned.
pub fn refused(output: &Output) -> String {
    let stderr = text(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "should fail: {stderr}\n{}",
        text(&output.stdout)
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

/// The names in a folder (hidden ones included), sorted.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Runs the `listings` binary with `args`, sends it SIGINT (as Ctrl-C
/// does) once it has printed a line starting with `after`, and returns
/// what it did.
pub fn interrupted(args: &[&str], after: &str) -> Output {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_listings"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.unwrap().starts_with(after) {
            break;
        }
    }
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    for _ in lines.by_ref() {}
    child.wait_with_output().unwrap()
}
