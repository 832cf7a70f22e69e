//! Instruction data: prompt/response records, the chat template that turns
//! them into one token sequence, and the batch that trains on the response
//! alone.

use ndarray::Array2;
use serde::Deserialize;

use crate::tokens::{ENDOFTEXT, TextTokenizer};

/// What can be wrong with fine-tuning data.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DataError {
    /// A line of a JSONL file is not a record of the expected kind.
    #[error("line {line}: {message}")]
    Record {
        /// The line, from 1.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// The file has no records.
    #[error("the data has no records (one JSON object per line is expected)")]
    Empty,
    /// An encoded record is longer than the model's context.
    #[error(
        "record {record} is {tokens} tokens long in the chat template, but the model reads at most {limit} \
         (its block size plus the one token it predicts); shorten it or drop it"
    )]
    TooLong {
        /// The record, from 1 (the line of a JSONL file).
        record: usize,
        /// Its length in tokens.
        tokens: usize,
        /// `block_size + 1`.
        limit: usize,
    },
    /// The tokenizer has no end-of-text token to end a turn with.
    #[error(
        "the tokenizer has no {ENDOFTEXT} token to end a response with (a character vocabulary?)"
    )]
    NoEndToken,
    /// The tokenizer cannot encode a record.
    #[error("record {record}: {message}")]
    Encode {
        /// The record, from 1.
        record: usize,
        /// The tokenizer's error.
        message: String,
    },
}

// ANCHOR: records
/// One instruction example: a prompt and the response to learn.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Instruction {
    /// What the user writes.
    pub prompt: String,
    /// What the model should answer.
    pub response: String,
}

/// One preference example: a prompt, a response to prefer, one to avoid.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preference {
    /// What the user writes.
    pub prompt: String,
    /// The better response.
    pub chosen: String,
    /// The worse one.
    pub rejected: String,
}
// ANCHOR_END: records

/// Reads JSON Lines: one record per non-blank line. An error names the
/// line and what is wrong with it (not JSON, a field missing or unknown,
/// an empty field).
///
/// ```
/// use listings::finetune::chat::{read_jsonl, Instruction};
/// let text = "{\"prompt\": \"Hi\", \"response\": \"Hello.\"}\n\n{\"prompt\": \"Yo\"}\n";
/// let err = read_jsonl::<Instruction>(text).unwrap_err();
/// assert_eq!(err.to_string(), "line 3: missing field `response`");
/// ```
pub fn read_jsonl<R: for<'de> Deserialize<'de> + NonEmpty>(
    text: &str,
) -> Result<Vec<R>, DataError> {
    let mut records = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let record = |message: String| DataError::Record {
            line: i + 1,
            message,
        };
        let r: R = serde_json::from_str(line).map_err(|e| {
            // serde_json ends its messages with "at line 1 column 9"; the
            // line is the file's here, and only a syntax error needs the column.
            let message = e.to_string();
            let message = message
                .rfind(" at line ")
                .map_or(&*message, |at| &message[..at]);
            record(if e.is_data() {
                message.to_string()
            } else {
                format!("not a JSON object: {message} (column {})", e.column())
            })
        })?;
        if let Some(field) = r.empty_field() {
            return Err(record(format!("`{field}` is empty")));
        }
        records.push(r);
    }
    if records.is_empty() {
        return Err(DataError::Empty);
    }
    Ok(records)
}

/// A record whose text fields must not be empty.
pub trait NonEmpty {
    /// The first empty field, if any.
    fn empty_field(&self) -> Option<&'static str>;
}

impl NonEmpty for Instruction {
    fn empty_field(&self) -> Option<&'static str> {
        [("prompt", &self.prompt), ("response", &self.response)]
            .into_iter()
            .find(|(_, s)| s.trim().is_empty())
            .map(|(name, _)| name)
    }
}

impl NonEmpty for Preference {
    fn empty_field(&self) -> Option<&'static str> {
        let fields = [
            ("prompt", &self.prompt),
            ("chosen", &self.chosen),
            ("rejected", &self.rejected),
        ];
        (fields.into_iter())
            .find(|(_, s)| s.trim().is_empty())
            .map(|(name, _)| name)
    }
}

// ANCHOR: template
/// The chat template: what the model reads before its answer.
///
/// ```
/// assert_eq!(listings::finetune::chat::prompt_text("Hi"), "User: Hi\nAssistant:");
/// ```
pub fn prompt_text(prompt: &str) -> String {
    format!("User: {prompt}\nAssistant:")
}

/// One example in the chat template, as token ids: the prompt's tokens,
/// then the response's (a space, the text, and, with `end_token`, the
/// `<|endoftext|>` token that ends the turn). `prompt_len` says where the
/// response starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    /// Prompt and response, `prompt_len + response length` ids.
    pub ids: Vec<u32>,
    /// How many of `ids` are the prompt's.
    pub prompt_len: usize,
}

/// Encodes a prompt and its response in the chat template.
pub fn encode_chat(
    tokenizer: &TextTokenizer,
    prompt: &str,
    response: &str,
    end_token: bool,
) -> Result<Encoded, DataError> {
    let encode = |text: &str| {
        (tokenizer.encode(text)).map_err(|e| DataError::Encode {
            record: 0,
            message: e.to_string(),
        })
    };
    let mut ids = encode(&prompt_text(prompt))?;
    let prompt_len = ids.len();
    ids.extend(encode(&format!(" {response}"))?);
    if end_token {
        ids.push(end_of_turn(tokenizer)?);
    }
    Ok(Encoded { ids, prompt_len })
}

/// The id that ends a response: the tokenizer's `<|endoftext|>`.
pub fn end_of_turn(tokenizer: &TextTokenizer) -> Result<u32, DataError> {
    match tokenizer {
        TextTokenizer::Bpe(bpe) => (bpe.special_tokens().iter())
            .find(|(text, _)| text == ENDOFTEXT)
            .map(|&(_, id)| id)
            .ok_or(DataError::NoEndToken),
        TextTokenizer::Char(_) => Err(DataError::NoEndToken),
    }
}
// ANCHOR_END: template

/// Encodes every record, numbering errors from 1 and refusing any record
/// longer than `block_size + 1` tokens (the model reads `block_size` and
/// predicts one more).
pub fn encode_all(
    tokenizer: &TextTokenizer,
    records: &[Instruction],
    end_token: bool,
    block_size: usize,
) -> Result<Vec<Encoded>, DataError> {
    let mut out = Vec::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        let e = encode_chat(tokenizer, &r.prompt, &r.response, end_token).map_err(|e| match e {
            DataError::Encode { message, .. } => DataError::Encode {
                record: i + 1,
                message,
            },
            other => other,
        })?;
        if e.ids.len() > block_size + 1 {
            return Err(DataError::TooLong {
                record: i + 1,
                tokens: e.ids.len(),
                limit: block_size + 1,
            });
        }
        out.push(e);
    }
    Ok(out)
}

// ANCHOR: masked_batch
/// Which positions of an example the loss counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossOn {
    /// The response's tokens only: the model is not taught to write prompts.
    Response,
    /// Every token, prompt included, as in pre-training.
    All,
}

/// A batch of examples for [`crate::finetune::loss::weighted_nll`]: inputs,
/// targets (the inputs shifted by one) and a weight per position.
#[derive(Clone, Debug, PartialEq)]
pub struct LmBatch {
    /// Token ids, `(B, T)`, padded at the end with `pad`.
    pub idx: Array2<u32>,
    /// The next token at each position, `(B, T)`.
    pub targets: Array2<u32>,
    /// `1 / n` at each of the `n` positions that count, 0 elsewhere
    /// (padding, and the prompt with [`LossOn::Response`]), `(B, T)`.
    pub weights: Array2<f32>,
}

/// Packs examples into one batch, `T` = the longest example's length - 1.
/// Position `t` predicts token `t + 1`; it counts if that token is the
/// response's (or, with [`LossOn::All`], any real token). The weights are
/// `1 / n` on the `n` counted positions: the loss is their mean.
pub fn lm_batch(examples: &[&Encoded], loss_on: LossOn, pad: u32) -> LmBatch {
    let mut batch = pack(examples, loss_on, pad);
    let n = batch.weights.sum();
    if n > 0.0 {
        batch.weights /= n;
    }
    batch
}

/// [`lm_batch`] with weight 1 on every counted position (a mask).
pub fn pack(examples: &[&Encoded], loss_on: LossOn, pad: u32) -> LmBatch {
    let t = examples.iter().map(|e| e.ids.len()).max().unwrap_or(1) - 1;
    let b = examples.len();
    let mut idx = Array2::from_elem((b, t), pad);
    let mut targets = Array2::from_elem((b, t), pad);
    let mut weights = Array2::zeros((b, t));
    for (row, e) in examples.iter().enumerate() {
        let first = match loss_on {
            LossOn::Response => e.prompt_len,
            LossOn::All => 1,
        };
        for pos in 0..e.ids.len() - 1 {
            idx[[row, pos]] = e.ids[pos];
            targets[[row, pos]] = e.ids[pos + 1];
            if pos + 1 >= first {
                weights[[row, pos]] = 1.0;
            }
        }
    }
    LmBatch {
        idx,
        targets,
        weights,
    }
}
// ANCHOR_END: masked_batch

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mask_covers_the_response_and_its_end_token() {
        let e = Encoded {
            ids: vec![10, 11, 12, 20, 21, 99],
            prompt_len: 3,
        };
        let short = Encoded {
            ids: vec![10, 11, 20, 99],
            prompt_len: 2,
        };
        let batch = lm_batch(&[&e, &short], LossOn::Response, 0);
        assert_eq!(batch.idx.row(0).to_vec(), [10, 11, 12, 20, 21]);
        assert_eq!(batch.targets.row(0).to_vec(), [11, 12, 20, 21, 99]);
        let counted = batch.weights.mapv(|w| u8::from(w > 0.0));
        assert_eq!(counted.row(0).to_vec(), [0, 0, 1, 1, 1]);
        assert_eq!(counted.row(1).to_vec(), [0, 1, 1, 0, 0]);
        assert!((batch.weights.sum() - 1.0).abs() < 1e-6);
        let all = lm_batch(&[&e], LossOn::All, 0);
        assert_eq!(
            all.weights.mapv(|w| u8::from(w > 0.0)).row(0).to_vec(),
            [1; 5]
        );
    }

    #[test]
    fn bad_lines_are_named() {
        let err = |text: &str| read_jsonl::<Instruction>(text).unwrap_err().to_string();
        assert_eq!(
            err("{\"prompt\": \"a\", \"response\": \"b\"}\n{\"prompt\": \"a\""),
            "line 2: not a JSON object: EOF while parsing an object (column 14)"
        );
        assert_eq!(
            err("{\"prompt\": \"a\", \"response\": \"\"}"),
            "line 1: `response` is empty"
        );
        assert!(
            err("{\"prompt\": \"a\", \"response\": \"b\", \"x\": 1}")
                .starts_with("line 1: unknown field `x`")
        );
        assert_eq!(err("\n\n"), DataError::Empty.to_string());
    }
}
