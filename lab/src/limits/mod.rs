//! Chapter 8's experiments: what the architecture cannot do, and why, each
//! limit measured on a model the book trains, one file per kind of limit.
//!
//! | file | what it measures |
//! |---|---|
//! | [`context`] | the context wall: loss past the training length for five kinds of position; recall inside the window |
//! | [`context`] | the context wall for five kinds of position; recall inside the window |
//! | [`facts`] | facts seen once or never, calibration, the reversal curse |
//! | [`induction`] | copying a pattern seen once in the prompt: induction heads |
//! | [`lengths`] | sums longer than any seen in training; spelling and counting letters through BPE |

pub mod context;
pub mod facts;
pub mod induction;
pub mod lengths;
