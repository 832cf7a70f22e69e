//! Inference: running a trained model fast, for one reader at a time.
//!
//! | file | what it holds |
//! |---|---|
//! | [`quant`] | weight matrices stored in 8 or 4 bits (int8, Q8_0, Q4_0) and multiplied as they are |
//!
//! Shapes in comments: `T` time (positions), `C` channels, `V` vocabulary;
//! a weight matrix is `(rows, cols)`, one row per output.

pub mod quant;
