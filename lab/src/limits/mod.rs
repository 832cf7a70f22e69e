//! Chapter 8's experiments: what the architecture cannot do, each limit
//! measured on a model the book trains.

pub mod facts;
