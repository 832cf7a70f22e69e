//! Chapter 8's experiments: what the architecture cannot do, and why, one
//! file per kind of limit.

pub mod lengths;
