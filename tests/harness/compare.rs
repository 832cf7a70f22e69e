//! Comparing a stated output with the real one.
//!
//! The rules (documented for authors in WRITING.md):
//! - Lines are compared one by one, trailing whitespace and trailing blank
//!   lines ignored.
//! - A line that is exactly `...` matches any number of lines, none included.
//! - `...` inside a line matches any text within that line.
//! - A decimal number written with k digits after the point (`0.125`,
//!   `-3.50`, `1.5e-3`) matches a real number within one unit of its k-th
//!   decimal (`0.125` matches 0.124 to 0.126), so outputs survive last-bit
//!   float differences between CPUs. Integers match exactly.
//! - Everything else matches exactly.

/// A piece of an expected line.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    /// A decimal number and the size of one unit in its last written digit.
    Number {
        value: f64,
        unit: f64,
    },
    /// `...` inside a line.
    Any,
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Reads a number at the start of `s`: `-?digits(.digits)?([eE][+-]?digits)?`.
/// Returns its length, value and, if it has a decimal point, its unit.
fn read_number(s: &str) -> Option<(usize, f64, Option<f64>)> {
    let b = s.as_bytes();
    let mut i = 0;
    if b.first() == Some(&b'-') {
        i += 1;
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    if i == int_start {
        return None;
    }
    let mut decimals = None;
    if i + 1 < b.len() && b[i] == b'.' && b[i + 1].is_ascii_digit() {
        let frac_start = i + 1;
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        decimals = Some((i - frac_start) as i32);
    }
    let mut exp = 0i32;
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        let exp_start = j;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        if j > exp_start {
            exp = s[i + 1..j].parse().ok()?;
            i = j;
        }
    }
    let value: f64 = s[..i].parse().ok()?;
    Some((i, value, decimals.map(|k| 10f64.powi(exp - k))))
}

/// Splits an expected line into text, numbers and `...`.
fn pieces(line: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut i = 0;
    while i < line.len() {
        let rest = &line[i..];
        if rest.starts_with("...") {
            if !text.is_empty() {
                out.push(Piece::Text(std::mem::take(&mut text)));
            }
            out.push(Piece::Any);
            i += 3;
            continue;
        }
        let prev = line[..i].chars().next_back();
        let number_may_start = !matches!(prev, Some(c) if is_word_char(c) || c == '.');
        if number_may_start && let Some((len, value, Some(unit))) = read_number(rest) {
            let next = rest[len..].chars().next();
            let followed_by_more = matches!(next, Some(c) if is_word_char(c))
                || rest[len..].starts_with('.')
                    && rest[len + 1..].starts_with(|c: char| c.is_ascii_digit());
            if !followed_by_more {
                if !text.is_empty() {
                    out.push(Piece::Text(std::mem::take(&mut text)));
                }
                out.push(Piece::Number { value, unit });
                i += len;
                continue;
            }
        }
        let c = rest.chars().next().unwrap();
        text.push(c);
        i += c.len_utf8();
    }
    if !text.is_empty() {
        out.push(Piece::Text(text));
    }
    out
}

fn match_pieces(pieces: &[Piece], actual: &str) -> bool {
    let Some((first, rest)) = pieces.split_first() else {
        return actual.is_empty();
    };
    match first {
        Piece::Text(t) => actual
            .strip_prefix(t.as_str())
            .is_some_and(|a| match_pieces(rest, a)),
        Piece::Number { value, unit } => match read_number(actual) {
            Some((len, real, _)) => {
                (real - value).abs() <= unit * (1.0 + 1e-9) && match_pieces(rest, &actual[len..])
            }
            None => false,
        },
        Piece::Any => actual
            .char_indices()
            .map(|(i, _)| i)
            .chain([actual.len()])
            .any(|i| match_pieces(rest, &actual[i..])),
    }
}

/// Whether one real line matches one expected line.
pub fn line_matches(expected: &str, actual: &str) -> bool {
    let (e, a) = (expected.trim_end(), actual.trim_end());
    e == a || match_pieces(&pieces(e), a)
}

fn lines(text: &str) -> Vec<&str> {
    let mut v: Vec<&str> = text.lines().map(str::trim_end).collect();
    while v.last().is_some_and(|l| l.is_empty()) {
        v.pop();
    }
    v
}

/// Whether the real output matches the stated one under the rules above.
pub fn output_matches(expected: &str, actual: &str) -> bool {
    let (e, a) = (lines(expected), lines(actual));
    // memo[i][j]: expected[i..] matches actual[j..]
    let mut memo = vec![vec![None; a.len() + 1]; e.len() + 1];
    fn go(e: &[&str], a: &[&str], i: usize, j: usize, memo: &mut Vec<Vec<Option<bool>>>) -> bool {
        if let Some(r) = memo[i][j] {
            return r;
        }
        let r = if i == e.len() {
            j == a.len()
        } else if e[i].trim() == "..." {
            go(e, a, i + 1, j, memo) || (j < a.len() && go(e, a, i, j + 1, memo))
        } else {
            j < a.len() && line_matches(e[i], a[j]) && go(e, a, i + 1, j + 1, memo)
        };
        memo[i][j] = Some(r);
        r
    }
    go(&e, &a, 0, 0, &mut memo)
}

/// Every single-digit and single-word change of a stated output, each with a
/// short description. The harness checks that none of them would still match
/// the real output, so a stated output cannot be loose by accident.
///
/// A digit becomes the digit five away from it (`3` -> `8`), which is always
/// more than the one-unit tolerance; a word gets a letter appended.
pub fn mutants(expected: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let chars: Vec<(usize, char)> = expected.char_indices().collect();
    for (n, &(i, c)) in chars.iter().enumerate() {
        if c.is_ascii_digit() {
            let d = (c as u8 - b'0' + 5) % 10;
            let new = (b'0' + d) as char;
            let mut m = String::with_capacity(expected.len());
            m.push_str(&expected[..i]);
            m.push(new);
            m.push_str(&expected[i + 1..]);
            out.push((m, format!("digit `{c}` at byte {i} changed to `{new}`")));
        } else if c.is_alphabetic() {
            let starts_word = n == 0 || !chars[n - 1].1.is_alphabetic();
            if starts_word {
                let end = chars[n..]
                    .iter()
                    .find(|(_, ch)| !ch.is_alphabetic())
                    .map_or(expected.len(), |(j, _)| *j);
                let word = &expected[i..end];
                let mut m = String::with_capacity(expected.len() + 1);
                m.push_str(&expected[..end]);
                m.push('q');
                m.push_str(&expected[end..]);
                out.push((m, format!("word `{word}` changed to `{word}q`")));
            }
        }
    }
    out
}

/// A line diff of stated (`-`) against real (`+`) output for failure
/// messages. Lines that match under the rules count as equal (shown with a
/// space, as the real line), and a `...` line absorbs the lines it stands for.
pub fn diff(expected: &str, actual: &str) -> String {
    let (e, a) = (lines(expected), lines(actual));
    let (n, m) = (e.len(), a.len());
    // cost[i][j]: fewest -/+ lines to turn e[i..] into a[j..]
    let mut cost = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..=n).rev() {
        for j in (0..=m).rev() {
            cost[i][j] = if i == n {
                m - j
            } else if e[i].trim() == "..." {
                let skip = cost[i + 1][j];
                if j < m {
                    skip.min(cost[i][j + 1])
                } else {
                    skip
                }
            } else {
                let mut best = cost[i + 1][j] + 1;
                if j < m {
                    best = best.min(cost[i][j + 1] + 1);
                    if line_matches(e[i], a[j]) {
                        best = best.min(cost[i + 1][j + 1]);
                    }
                }
                best
            };
        }
    }
    let mut out = String::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        let here = cost[i][j];
        if i < n && e[i].trim() == "..." {
            if j < m && cost[i][j + 1] == here {
                out.push_str(&format!(" {}\n", a[j]));
                j += 1;
            } else {
                i += 1;
            }
        } else if i < n && j < m && line_matches(e[i], a[j]) && cost[i + 1][j + 1] == here {
            out.push_str(&format!(" {}\n", a[j]));
            i += 1;
            j += 1;
        } else if i < n && cost[i + 1][j] + 1 == here {
            out.push_str(&format!("-{}\n", e[i]));
            i += 1;
        } else {
            out.push_str(&format!("+{}\n", a[j]));
            j += 1;
        }
    }
    out
}
