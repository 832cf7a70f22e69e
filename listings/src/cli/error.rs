//! The command-line tool's error: a message, and what caused it.
//!
//! Every failure ends the command with one line on standard error: what was
//! being done, then why, each cause after a colon (`cannot read notes.txt:
//! No such file or directory`), and exit code 1 (130 when interrupted).

use std::fmt;

/// A failed command: what went wrong, each cause after a colon, and the
/// process's exit code.
#[derive(Debug)]
pub struct CliError(String, u8);

/// The result of a command.
pub type Result<T> = std::result::Result<T, CliError>;

impl CliError {
    /// An error with a message and no cause.
    pub fn msg(message: impl fmt::Display) -> CliError {
        CliError(message.to_string(), 1)
    }

    /// An error with its own exit code (130 for an interrupted command, as
    /// a shell reports a process ended by Ctrl-C).
    pub fn with_code(message: impl fmt::Display, code: u8) -> CliError {
        CliError(message.to_string(), code)
    }

    /// The exit code: 1 unless given.
    pub fn code(&self) -> u8 {
        self.1
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `error`, then each of its causes in turn, separated by colons.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(&format!(": {e}"));
        cause = e.source();
    }
    text
}

impl<E: std::error::Error> From<E> for CliError {
    fn from(e: E) -> CliError {
        CliError(chain(&e), 1)
    }
}

/// Adds what was being done to an error.
pub trait Context<T> {
    /// Wraps the error with `message`.
    fn context(self, message: impl fmt::Display) -> Result<T>;
    /// Wraps the error with the message `f` makes (only on failure).
    fn with_context<M: fmt::Display>(self, f: impl FnOnce() -> M) -> Result<T>;
}

impl<T, E: std::error::Error> Context<T> for std::result::Result<T, E> {
    fn context(self, message: impl fmt::Display) -> Result<T> {
        self.with_context(|| message)
    }

    fn with_context<M: fmt::Display>(self, f: impl FnOnce() -> M) -> Result<T> {
        self.map_err(|e| CliError(format!("{}: {}", f(), chain(&e)), 1))
    }
}

/// Returns early with an error made from a format string.
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::error::CliError::msg(format!($($arg)*)))
    };
}
pub(crate) use bail;

/// An error made from a format string.
macro_rules! err {
    ($($arg:tt)*) => {
        $crate::error::CliError::msg(format!($($arg)*))
    };
}
pub(crate) use err;
