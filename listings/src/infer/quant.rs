//! Quantised weights: a weight matrix stored in 8 or 4 bits a number, and
//! multiplied by a vector without unpacking it first.
//!
//! Writing one token at a time multiplies every weight matrix of the model by
//! a single vector. Each weight is then read once and used for one
//! multiply-add, so a token's time is mostly the time it takes to read the
//! weights from memory: GPT-2 124M's 124 million f32 weights are half a
//! gigabyte per token. Stored in 8 bits, the same weights are a quarter of
//! that; in 4 bits, an eighth.
//!
//! A quantised weight is a small integer `q` times a scale `d` that many
//! weights share: `w ≈ d·q`. The scale is chosen so that the group's largest
//! weight maps to the largest integer, and every other weight is rounded to
//! the nearest multiple of `d`, an error of at most `d/2` (plus, where `d`
//! is stored as an f16, `|q|` times that rounding of `d`; `q4_0` has one
//! more exception, below). The formats:
//!
//! | [`Format`] | weights sharing a scale | storage for 32 weights | bits a weight |
//! |---|---|---|---|
//! | `f32` | none: stored as they are | 128 bytes | 32 |
//! | `int8` | the whole matrix (one f32 scale) | 32 bytes | 8 (and 4 bytes a matrix) |
//! | `q8_0` | each block of 32 along a row | 32 `i8` and an f16 scale: 34 bytes | 8.5 |
//! | `q4_0` | each block of 32 along a row | 32 four-bit numbers and an f16 scale: 18 bytes | 4.5 |
//!
//! Why blocks: one scale for the whole matrix is set by its single largest
//! weight. A trained model has a few weights far larger than the rest, and
//! the rounding step `d` they impose swallows the small weights whole. With
//! a scale for every 32 weights an outlier costs precision only in its own
//! block. The tests show it happen.
//!
//! `q8_0` and `q4_0` are llama.cpp's formats of the same names, byte for
//! byte (ggml's `block_q8_0` and `block_q4_0`), quantised by the same
//! arithmetic as its reference functions `quantize_row_q8_0_ref` and
//! `quantize_row_q4_0_ref`, so [`WeightMatrix::to_bytes`] is what a GGUF
//! file holds for such a tensor.
//!
//! A [`WeightMatrix`] is stored one row per output, `(rows, cols)` =
//! `(out, in)`, the layout of PyTorch's `nn.Linear` and of llama.cpp: the
//! weights one output needs are contiguous, and blocks run along them. The
//! book's linear layers keep `(in, out)`; [`WeightMatrix::from_linear`]
//! transposes. The tied output layer's `wte` `(V, C)` is already one row per
//! output (per token), so it goes in with [`WeightMatrix::from_rows`].
//!
//! [`WeightMatrix::matvec`] turns each block back into numbers as it goes,
//! in registers, and never builds the f32 matrix: that would read and write
//! four times the memory the quantised weights take, undoing the point.
//! [`WeightMatrix::matmul`] does many vectors at once (a prompt's
//! positions), where arithmetic, not memory, is the limit: it unpacks a band
//! of rows at a time and hands it to the fast matrix product.
//!
//! ```
//! use listings::infer::quant::{Format, WeightMatrix};
//! use listings::rng::{randn, seeded};
//! // A linear layer's weight, (in, out) = (768, 256), and an input (768).
//! let w = randn((768, 256), 0.02, &mut seeded(0));
//! let x = randn(768, 1.0, &mut seeded(1));
//! let exact = x.dot(&w); // (256), each about ±0.55
//!
//! let q = WeightMatrix::from_linear(w.view(), Format::Q8_0)?;
//! assert_eq!((q.rows(), q.cols()), (256, 768)); // one row per output
//! assert_eq!(q.bytes(), 256 * 768 / 32 * 34); // 8.5 bits a weight instead of 32
//! let mut y = vec![0.0; 256];
//! q.matvec(x.as_slice().unwrap(), &mut y);
//! let worst = |y: &[f32]| y.iter().zip(&exact).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
//! assert!(worst(&y) < 0.01);
//!
//! // Half the bytes again, about twenty times the error.
//! let q = WeightMatrix::from_linear(w.view(), Format::Q4_0)?;
//! assert_eq!(q.bytes(), 256 * 768 / 32 * 18);
//! q.matvec(x.as_slice().unwrap(), &mut y);
//! assert!(worst(&y) > 0.05 && worst(&y) < 0.2);
//! # Ok::<(), listings::infer::quant::QuantError>(())
//! ```
//!
//! Shapes: a matrix is `(rows, cols)`; `T` positions multiplied at once.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayView2, ArrayViewMut2, Axis};
use rayon::prelude::*;
use thiserror::Error;

use crate::checkpoint::hf::{f16_to_f32, f32_to_f16};
use crate::parallel::{num_threads, par_mat_mul, pool, simd};

/// From how many vectors at once [`WeightMatrix::matmul`] runs a matrix
/// product; below, it reads each row once for all the vectors.
/// Measured on the book's machine, decoding batches of GPT-2 small's shape
/// in f32: 2, 4 and 8 sequences ran 1.3, 1.25 and 1.7 times faster this
/// way than with a matvec per vector (2, 4) or the product (8); at 16 the
/// product was faster.
const MATMUL_FROM: usize = 16;

/// How many consecutive weights of a row share one scale in `q8_0` and
/// `q4_0` (llama.cpp's `QK8_0` and `QK4_0`).
pub const BLOCK: usize = 32;

/// How a weight matrix is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// 32-bit floats, as trained: nothing lost.
    F32,
    /// 8-bit integers with one f32 scale for the whole matrix.
    Int8,
    /// llama.cpp's Q8_0: blocks of 32 weights, each 32 `i8` and an f16
    /// scale.
    Q8_0,
    /// llama.cpp's Q4_0: blocks of 32 weights, each 32 four-bit numbers
    /// (from -8 to 7, stored as 0 to 15) and an f16 scale.
    Q4_0,
}

impl Format {
    /// Every format, widest first.
    pub const ALL: [Format; 4] = [Format::F32, Format::Int8, Format::Q8_0, Format::Q4_0];

    /// The name [`Display`](fmt::Display) prints and [`FromStr`] reads:
    /// `f32`, `int8`, `q8_0`, `q4_0`.
    pub fn name(self) -> &'static str {
        match self {
            Format::F32 => "f32",
            Format::Int8 => "int8",
            Format::Q8_0 => "q8_0",
            Format::Q4_0 => "q4_0",
        }
    }

    /// How many weights of a row share a scale: [`BLOCK`] for the block
    /// formats (a row's length must be a multiple of it), else 1.
    pub fn block_size(self) -> usize {
        match self {
            Format::Q8_0 | Format::Q4_0 => BLOCK,
            Format::F32 | Format::Int8 => 1,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = QuantError;

    /// A format by its name, in any case: `"q8_0"` and `"Q8_0"` alike.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| QuantError::UnknownFormat(s.to_string()))
    }
}

/// Why a matrix could not be quantised (or a format name not read).
#[derive(Clone, Debug, Error, PartialEq)]
pub enum QuantError {
    /// A block format needs every row to be whole blocks.
    #[error(
        "cannot store a matrix of {rows} rows of {cols} inputs as {format}: {format} \
         quantises each row in blocks of {block} numbers, and {cols} is not a multiple \
         of {block}; store this matrix as int8 or f32"
    )]
    Cols {
        /// The matrix's rows (outputs).
        rows: usize,
        /// The length of a row (inputs).
        cols: usize,
        /// The format asked for.
        format: Format,
        /// Its block length.
        block: usize,
    },
    /// A weight is infinite or NaN: no scale can represent it.
    #[error(
        "weight [{row}, {col}] of the matrix given is {value}; only finite weights can be \
         quantised (the model is damaged: did training diverge?)"
    )]
    NonFinite {
        /// Its row in the matrix as given (for a linear layer's `(in, out)`
        /// weight, its input).
        row: usize,
        /// Its column in the matrix as given.
        col: usize,
        /// The weight.
        value: f32,
    },
    /// A block's scale is too large for an f16 (above 65,504).
    #[error(
        "the block of row {row} starting at column {col} holds a weight of {largest}, \
         whose {format} scale is beyond the largest f16 (65504); store this matrix as \
         int8 or f32"
    )]
    ScaleOverflow {
        /// The block's row (output).
        row: usize,
        /// The block's first column (input).
        col: usize,
        /// The block's weight of largest magnitude.
        largest: f32,
        /// The format asked for.
        format: Format,
    },
    /// A format name that is none of [`Format::ALL`]'s.
    #[error("unknown weight format {0:?}: use f32, int8, q8_0 or q4_0")]
    UnknownFormat(String),
    /// A model whose architecture is not GPT-2's: the decoder's passes
    /// compute GPT-2's block and would give it wrong numbers.
    #[error(
        "the Decoder runs GPT-2's architecture (learned positions, LayerNorm, a GELU MLP in \
         every block, a key and a value head per query head, biases), but this model has {0}; \
         run it with Gpt::forward instead"
    )]
    Arch(crate::model::Arch),
}

/// One Q8_0 block: 32 weights of a row as `d·q`, llama.cpp's `block_q8_0`.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
struct BlockQ8_0 {
    /// The scale `d`, as the bits of an f16.
    d: u16,
    /// The 32 integers, from -127 to 127.
    qs: [i8; BLOCK],
}

/// One Q4_0 block: 32 weights of a row as `d·(n - 8)`, llama.cpp's
/// `block_q4_0`.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
struct BlockQ4_0 {
    /// The scale `d`, as the bits of an f16.
    d: u16,
    /// The 32 numbers `n` from 0 to 15, two a byte: byte `j` holds weight
    /// `j` in its low four bits and weight `j + 16` in its high four.
    qs: [u8; BLOCK / 2],
}

// The sizes llama.cpp's files have: no padding between blocks.
const _: () = assert!(size_of::<BlockQ8_0>() == 34 && size_of::<BlockQ4_0>() == 18);

// ANCHOR: quantize_int8
/// Int8: one scale for the whole matrix, `scale = max|w| / 127`, and each
/// weight the nearest whole number of scales, `q = round(w / scale)`, from
/// -127 to 127. Returns the scale and the integers.
fn quantize_int8(w: &[f32]) -> (f32, Vec<i8>) {
    let absmax = w.iter().fold(0.0_f32, |m, &x| m.max(x.abs()));
    let scale = absmax / 127.0;
    if scale == 0.0 {
        return (0.0, vec![0; w.len()]); // all zeros
    }
    let q = pool().install(|| w.par_iter().map(|&x| (x / scale).round() as i8).collect());
    (scale, q)
}
// ANCHOR_END: quantize_int8

// ANCHOR: quantize_q8_0
/// Q8_0: one block of 32 weights. The scale is `d = max|x| / 127` and each
/// weight becomes `round(x / d)`, from -127 to 127 (`f32::round` rounds
/// halves away from zero, as C's `roundf`). `d` is stored as an f16; the
/// integers come from the exact f32 `d`, as in llama.cpp.
fn quantize_q8_0(x: &[f32; BLOCK]) -> BlockQ8_0 {
    let amax = x.iter().fold(0.0_f32, |m, &v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d == 0.0 { 0.0 } else { 1.0 / d };
    BlockQ8_0 {
        d: f32_to_f16(d),
        qs: x.map(|v| (v * id).round() as i8),
    }
}
// ANCHOR_END: quantize_q8_0

// ANCHOR: quantize_q4_0
/// Q4_0: one block of 32 weights, sixteen levels each.
///
/// The scale comes from `max`, the weight of largest magnitude *with its
/// sign* (the first, if two tie): `d = max / -8`, so that `max` itself
/// becomes `-8·d`, the lowest level, exactly. Every weight becomes
/// `n = x/d + 8` rounded (halves up), from 0 to 15 (`-8` to `7` after the
/// offset). The asymmetry costs one case: a weight of the other sign and
/// nearly `max`'s size would need level `+8`, and is clamped to `7`.
///
/// As in llama.cpp, the levels come from the exact f32 `d` while the block
/// stores its f16 rounding, which is what unpacking uses.
fn quantize_q4_0(x: &[f32; BLOCK]) -> BlockQ4_0 {
    let mut max = 0.0_f32;
    for &v in x {
        if v.abs() > max.abs() {
            max = v;
        }
    }
    let d = max / -8.0;
    let id = if d == 0.0 { 0.0 } else { 1.0 / d };
    // `as u8` cuts off the fraction, so adding 8.5 rounds to the nearest level.
    let level = |v: f32| ((v * id + 8.5) as u8).min(15);
    let mut qs = [0_u8; BLOCK / 2];
    for (j, byte) in qs.iter_mut().enumerate() {
        *byte = level(x[j]) | level(x[j + BLOCK / 2]) << 4;
    }
    BlockQ4_0 {
        d: f32_to_f16(d),
        qs,
    }
}
// ANCHOR_END: quantize_q4_0

/// The numbers of a matrix, whatever its format.
#[derive(Clone, PartialEq)]
enum Data {
    F32(Vec<f32>),
    Int8 { scale: f32, q: Vec<i8> },
    Q8_0(Vec<BlockQ8_0>),
    Q4_0(Vec<BlockQ4_0>),
}

/// A weight matrix of one output per row, `(rows, cols)` = `(out, in)`,
/// stored in one of the [`Format`]s.
///
/// Row `r` holds the weights output `r` takes its inputs with, so
/// `y[r] = row r · x`: [`matvec`](Self::matvec) for one input vector,
/// [`matmul`](Self::matmul) for several. Built once from f32 weights; read
/// only after that.
#[derive(Clone, PartialEq)]
pub struct WeightMatrix {
    rows: usize,
    cols: usize,
    data: Data,
}

impl fmt::Debug for WeightMatrix {
    /// The shape, format and size; not the millions of numbers.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeightMatrix")
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("format", &self.format())
            .field("bytes", &self.bytes())
            .finish()
    }
}

/// Matrices with at least this many weights share [`WeightMatrix::matvec`]'s
/// rows out between threads; below it, handing out the work costs more than
/// it saves.
const PAR_MATVEC: usize = 1 << 16;

/// [`WeightMatrix::matmul`] unpacks this many rows at a time.
const BAND: usize = 64;

impl WeightMatrix {
    /// Quantises a matrix given one row per output, `(rows, cols)`, such as
    /// the embedding table `wte` `(V, C)` used as the output layer.
    ///
    /// Fails if a block format's rows are not whole blocks, if a weight is
    /// not finite, or if a block's scale overflows an f16.
    pub fn from_rows(m: ArrayView2<f32>, format: Format) -> Result<Self, QuantError> {
        let (rows, cols) = m.dim();
        let block = format.block_size();
        if cols % block != 0 {
            return Err(QuantError::Cols {
                rows,
                cols,
                format,
                block,
            });
        }
        check_finite(m)?;
        let w = m.as_standard_layout(); // row-major, copied only if it is not already
        let w = w.as_slice().expect("a standard-layout array is one slice");
        let data = match format {
            Format::F32 => Data::F32(w.to_vec()),
            Format::Int8 => {
                let (scale, q) = quantize_int8(w);
                Data::Int8 { scale, q }
            }
            Format::Q8_0 => Data::Q8_0(quantize_blocks(w, cols, format, quantize_q8_0)?),
            Format::Q4_0 => Data::Q4_0(quantize_blocks(w, cols, format, quantize_q4_0)?),
        };
        Ok(Self { rows, cols, data })
    }

    /// Quantises a linear layer's weight, stored `(in, out)` as the book's
    /// [`LinearParams`](crate::model::LinearParams) keep it: the result is
    /// its transpose, `(out, in)`, row `r` holding output `r`'s weights.
    /// A non-finite weight is reported at its `[in, out]` position.
    pub fn from_linear(w: ArrayView2<f32>, format: Format) -> Result<Self, QuantError> {
        check_finite(w)?;
        Self::from_rows(w.t(), format)
    }

    /// The number of rows: outputs.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The length of a row: inputs.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// How the matrix is stored.
    pub fn format(&self) -> Format {
        match self.data {
            Data::F32(_) => Format::F32,
            Data::Int8 { .. } => Format::Int8,
            Data::Q8_0(_) => Format::Q8_0,
            Data::Q4_0(_) => Format::Q4_0,
        }
    }

    /// Bytes of storage, weights and scales: what a file of the matrix
    /// holds, and what [`matvec`](Self::matvec) reads.
    pub fn bytes(&self) -> usize {
        match &self.data {
            Data::F32(w) => w.len() * size_of::<f32>(),
            Data::Int8 { q, .. } => q.len() + size_of::<f32>(),
            Data::Q8_0(blocks) => blocks.len() * size_of::<BlockQ8_0>(),
            Data::Q4_0(blocks) => blocks.len() * size_of::<BlockQ4_0>(),
        }
    }

    /// The matrix as the bytes of a file, [`bytes`](Self::bytes) of them,
    /// little-endian: `f32` its numbers row after row; `int8` the f32 scale,
    /// then the integers; `q8_0` and `q4_0` their blocks row after row, each
    /// the f16 scale then the integers, laid out as in llama.cpp.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bytes());
        match &self.data {
            Data::F32(w) => w.iter().for_each(|x| out.extend(x.to_le_bytes())),
            Data::Int8 { scale, q } => {
                out.extend(scale.to_le_bytes());
                out.extend(q.iter().map(|&q| q as u8));
            }
            Data::Q8_0(blocks) => {
                for b in blocks {
                    out.extend(b.d.to_le_bytes());
                    out.extend(b.qs.map(|q| q as u8));
                }
            }
            Data::Q4_0(blocks) => {
                for b in blocks {
                    out.extend(b.d.to_le_bytes());
                    out.extend(b.qs);
                }
            }
        }
        out
    }

    // ANCHOR: matvec
    /// `out[r] = row r · x` for every row: the matrix times one vector.
    ///
    /// Reads every weight once, unpacking blocks as it goes; large matrices
    /// share their rows out between the [`pool`]'s threads. Each sum is
    /// taken in an order fixed by the code, so the result does not depend
    /// on the number of threads or the CPU.
    ///
    /// Shapes: `x` `(cols)`, `out` `(rows)`.
    pub fn matvec(&self, x: &[f32], out: &mut [f32]) {
        assert_eq!(
            x.len(),
            self.cols,
            "matvec: x must have one number per column"
        );
        assert_eq!(
            out.len(),
            self.rows,
            "matvec: out must have one number per row"
        );
        if self.cols == 0 {
            out.fill(0.0); // empty sums
            return;
        }
        let parallel = self.rows * self.cols >= PAR_MATVEC;
        let nb = self.cols / BLOCK; // blocks a row, for the block formats
        // Each closure is marked to be inlined into `simd`'s, and so compiled
        // for wide vectors with it.
        match &self.data {
            Data::F32(w) => par_rows(
                w,
                self.cols,
                out,
                parallel,
                #[inline(always)]
                |row| dot_f32(row, x),
            ),
            Data::Int8 { scale, q } => par_rows(
                q,
                self.cols,
                out,
                parallel,
                #[inline(always)]
                |row| scale * dot_i8(row, x),
            ),
            Data::Q8_0(blocks) => par_rows(
                blocks,
                nb,
                out,
                parallel,
                #[inline(always)]
                |row| dot_q8_0(row, x),
            ),
            Data::Q4_0(blocks) => par_rows(
                blocks,
                nb,
                out,
                parallel,
                #[inline(always)]
                |row| dot_q4_0(row, x),
            ),
        }
    }
    // ANCHOR_END: matvec

    // ANCHOR: matmul
    /// `out = x · selfᵀ`: [`matvec`](Self::matvec) for `T` vectors at once,
    /// the rows of `x` (a prompt's positions), equal to it up to the
    /// rounding of the sums.
    ///
    /// Every weight now serves `T` multiply-adds, so for many vectors
    /// arithmetic is the limit, not memory: `f32` goes to [`par_mat_mul`];
    /// the other formats unpack a band of 64 rows at a time into f32 and
    /// multiply it by `x` with matrixmultiply's kernels, bands shared out
    /// between the threads. For a few vectors (under 16) each row of
    /// weights is read once and multiplied by all of them while it is in
    /// the cache, as [`matvec`](Self::matvec) does for one: faster here
    /// than a matrix product's packing, and it keeps a small batch's cost
    /// near one vector's.
    ///
    /// Shapes: `x` `(T, cols)`, `out` `(T, rows)`.
    pub fn matmul(&self, x: ArrayView2<f32>, mut out: ArrayViewMut2<f32>) {
        let t = x.nrows();
        assert_eq!(
            x.ncols(),
            self.cols,
            "matmul: x must have one column per input"
        );
        assert_eq!(out.dim(), (t, self.rows), "matmul: out must be (T, rows)");
        if t < MATMUL_FROM {
            // A few vectors: each row of weights read once, for all of them.
            let xs: Vec<Cow<'_, [f32]>> = (x.rows().into_iter())
                .map(|x| {
                    x.to_slice()
                        .map_or_else(|| Cow::Owned(x.to_vec()), Cow::Borrowed)
                })
                .collect();
            let xs: Vec<&[f32]> = xs.iter().map(|x| &x[..]).collect();
            let mut y = vec![0.0; self.rows * t]; // (rows, T)
            self.dots(&xs, &mut y);
            for (i, mut out) in out.rows_mut().into_iter().enumerate() {
                out.iter_mut()
                    .zip(y.iter().skip(i).step_by(t))
                    .for_each(|(o, &v)| *o = v);
            }
            return;
        }
        // matrixmultiply first copies both operands into its working order,
        // a fast copy for `x` if it is stored column by column: stored so
        // once here, rather than copied slowly once a band.
        let x_cols = x.t().as_standard_layout().into_owned(); // (cols, T)
        let x = x_cols.t(); // (T, cols)
        if let Data::F32(w) = &self.data {
            let w = ArrayView2::from_shape((self.rows, self.cols), w).expect("rows·cols numbers");
            par_mat_mul(1.0, &x, &w.t(), 0.0, &mut out); // (T, cols) x (cols, rows)
            return;
        }
        let cols = self.cols;
        // One band: its n rows unpacked into `scratch`, then (T, cols) x (cols, n).
        let band = |scratch: &mut Vec<f32>, (i, mut out): (usize, ArrayViewMut2<f32>)| {
            let n = out.ncols();
            scratch.resize(n * cols, 0.0);
            simd(
                #[inline(always)]
                || self.unpack_rows(i * BAND, scratch),
            );
            let w = ArrayView2::from_shape((n, cols), &scratch[..]).expect("n·cols numbers");
            general_mat_mul(1.0, &x, &w.t(), 0.0, &mut out); // (T, cols) x (cols, n)
        };
        let bands = out.axis_chunks_iter_mut(Axis(1), BAND);
        if t * self.rows * cols < 1 << 20 {
            let mut scratch = Vec::new();
            bands.enumerate().for_each(|b| band(&mut scratch, b));
        } else {
            pool().install(|| {
                bands
                    .into_par_iter()
                    .enumerate()
                    .for_each_init(Vec::new, band)
            });
        }
    }
    // ANCHOR_END: matmul

    /// `y[r·T + i] = row r · xs[i]`: each row of weights read once and
    /// multiplied by all `T` vectors while it is in the cache, rows shared
    /// out between threads as in [`matvec`](Self::matvec).
    fn dots(&self, xs: &[&[f32]], y: &mut [f32]) {
        let t = xs.len();
        if self.cols == 0 || t == 0 {
            y.fill(0.0); // empty sums
            return;
        }
        let parallel = self.rows * self.cols >= PAR_MATVEC;
        let nb = self.cols / BLOCK;
        match &self.data {
            Data::F32(w) => par_rows_multi(
                w,
                self.cols,
                y,
                t,
                parallel,
                #[inline(always)]
                |row, i| dot_f32(row, xs[i]),
            ),
            Data::Int8 { scale, q } => par_rows_multi(
                q,
                self.cols,
                y,
                t,
                parallel,
                #[inline(always)]
                |row, i| scale * dot_i8(row, xs[i]),
            ),
            Data::Q8_0(blocks) => par_rows_multi(
                blocks,
                nb,
                y,
                t,
                parallel,
                #[inline(always)]
                |row, i| dot_q8_0(row, xs[i]),
            ),
            Data::Q4_0(blocks) => par_rows_multi(
                blocks,
                nb,
                y,
                t,
                parallel,
                #[inline(always)]
                |row, i| dot_q4_0(row, xs[i]),
            ),
        }
    }

    /// Row `r` unpacked into `out` (`cols` long): one token's embedding when
    /// `wte` is stored quantised.
    pub fn row(&self, r: usize, out: &mut [f32]) {
        assert!(r < self.rows, "row {r} of a matrix of {} rows", self.rows);
        assert_eq!(
            out.len(),
            self.cols,
            "row: out must have one number per column"
        );
        simd(
            #[inline(always)]
            || self.unpack_rows(r, out),
        );
    }

    /// Rows `r`, `r + 1`, ... unpacked into `out`, as many as it holds
    /// (whole rows): [`row`](Self::row)'s loop, inlined into a caller's
    /// [`simd`] loop.
    #[inline(always)]
    fn unpack_rows(&self, r: usize, out: &mut [f32]) {
        let (start, end) = (r * self.cols, r * self.cols + out.len());
        match &self.data {
            Data::F32(w) => out.copy_from_slice(&w[start..end]),
            Data::Int8 { scale, q } => {
                for (y, &q) in out.iter_mut().zip(&q[start..end]) {
                    *y = scale * f32::from(q);
                }
            }
            // Each block is read whole before its 32 numbers are written:
            // interleaved, the compiler could not prove that a write to
            // `out` leaves the block's next bytes alone, and kept to one
            // number at a time.
            Data::Q8_0(blocks) => {
                let blocks = &blocks[start / BLOCK..end / BLOCK];
                for (&b, y) in blocks.iter().zip(out.as_chunks_mut::<BLOCK>().0) {
                    let d = scale_to_f32(b.d);
                    *y = b.qs.map(|q| d * f32::from(q));
                }
            }
            Data::Q4_0(blocks) => {
                let blocks = &blocks[start / BLOCK..end / BLOCK];
                for (&b, y) in blocks.iter().zip(out.as_chunks_mut::<BLOCK>().0) {
                    let d = scale_to_f32(b.d);
                    let (lo, hi) = y.split_at_mut(BLOCK / 2);
                    lo.copy_from_slice(&b.qs.map(|n| d * (f32::from(n & 0x0f) - 8.0)));
                    hi.copy_from_slice(&b.qs.map(|n| d * (f32::from(n >> 4) - 8.0)));
                }
            }
        }
    }

    /// The whole matrix unpacked, `(rows, cols)`: what the quantised weights
    /// stand for. (For tests and measurements; the products never build it.)
    pub fn dequantize(&self) -> Array2<f32> {
        let mut m = Array2::zeros((self.rows, self.cols));
        for (r, mut row) in m.rows_mut().into_iter().enumerate() {
            self.row(
                r,
                row.as_slice_mut()
                    .expect("a row of a new array is contiguous"),
            );
        }
        m
    }
}

/// Fails with the position of the first weight (in row-major order) that is
/// infinite or NaN. Reads the numbers in the order they are stored, which is
/// fast for a transposed view too; looks for the position only if one is
/// found.
fn check_finite(m: ArrayView2<f32>) -> Result<(), QuantError> {
    let all_finite = match m.as_slice_memory_order() {
        Some(numbers) => numbers.iter().all(|v| v.is_finite()),
        None => m.iter().all(|v| v.is_finite()),
    };
    if all_finite {
        return Ok(());
    }
    match m.indexed_iter().find(|(_, v)| !v.is_finite()) {
        Some(((row, col), &value)) => Err(QuantError::NonFinite { row, col, value }),
        None => Ok(()),
    }
}

/// A row-major matrix, `cols` a multiple of [`BLOCK`], quantised block by
/// block, rows one after another, its blocks' scales checked to fit an f16.
fn quantize_blocks<B>(
    w: &[f32],
    cols: usize,
    format: Format,
    quantize: impl Fn(&[f32; BLOCK]) -> B + Sync,
) -> Result<Vec<B>, QuantError>
where
    B: Copy + HasScale + Send,
{
    let blocks: Vec<B> =
        pool().install(|| w.as_chunks::<BLOCK>().0.par_iter().map(&quantize).collect());
    if let Some(i) = blocks
        .iter()
        .position(|b| !f16_to_f32(b.scale()).is_finite())
    {
        let x = &w[i * BLOCK..(i + 1) * BLOCK];
        let largest = x
            .iter()
            .copied()
            .fold(0.0_f32, |m, v| if v.abs() > m.abs() { v } else { m });
        return Err(QuantError::ScaleOverflow {
            row: i * BLOCK / cols,
            col: i * BLOCK % cols,
            largest,
            format,
        });
    }
    Ok(blocks)
}

/// A block's f16 scale.
trait HasScale {
    fn scale(&self) -> u16;
}

impl HasScale for BlockQ8_0 {
    fn scale(&self) -> u16 {
        self.d
    }
}

impl HasScale for BlockQ4_0 {
    fn scale(&self) -> u16 {
        self.d
    }
}

/// `out[r] = dot(row r)` for every row of `data` (`per_row` items a row):
/// rows in pieces shared out between the [`pool`]'s threads if `parallel`,
/// each piece's loop compiled by [`simd`].
#[inline(always)]
fn par_rows<T: Sync>(
    data: &[T],
    per_row: usize,
    out: &mut [f32],
    parallel: bool,
    dot: impl Fn(&[T]) -> f32 + Sync,
) {
    let run = |(out, data): (&mut [f32], &[T])| {
        simd(
            #[inline(always)]
            || {
                for (y, row) in out.iter_mut().zip(data.chunks_exact(per_row)) {
                    *y = dot(row);
                }
            },
        )
    };
    if !parallel {
        return run((out, data));
    }
    // A few pieces a thread, so a thread that finishes early takes another.
    let piece = out.len().div_ceil(4 * num_threads()).max(1);
    pool().install(|| {
        out.par_chunks_mut(piece)
            .zip(data.par_chunks(piece * per_row))
            .for_each(run)
    });
}

/// [`par_rows`] for `t` vectors: `y` is `(rows, t)`, and `dot(row, i)` is
/// the row's product with vector `i`.
fn par_rows_multi<T: Sync>(
    data: &[T],
    per_row: usize,
    y: &mut [f32],
    t: usize,
    parallel: bool,
    dot: impl Fn(&[T], usize) -> f32 + Sync,
) {
    let run = |(y, data): (&mut [f32], &[T])| {
        simd(
            #[inline(always)]
            || {
                for (ys, row) in y.chunks_exact_mut(t).zip(data.chunks_exact(per_row)) {
                    for (i, y) in ys.iter_mut().enumerate() {
                        *y = dot(row, i);
                    }
                }
            },
        )
    };
    if !parallel {
        return run((y, data));
    }
    let rows = y.len() / t;
    let piece = rows.div_ceil(4 * num_threads()).max(1);
    pool().install(|| {
        y.par_chunks_mut(piece * t)
            .zip(data.par_chunks(piece * per_row))
            .for_each(run)
    });
}

/// `Σ w[i]·x[i]` for an f32 row, in 16 interleaved partial sums: the sum
/// [`sum_zip`](crate::parallel::sum_zip) takes, written out here because
/// that function is not always inlined, and a call out of the caller's
/// [`simd`] loop would run without wide vectors.
#[inline(always)]
fn dot_f32(w: &[f32], x: &[f32]) -> f32 {
    let mut acc = [0.0_f32; 16];
    let (ws, xs) = (w.chunks_exact(16), x.chunks_exact(16));
    let tail: f32 = (ws.remainder().iter().zip(xs.remainder()))
        .map(|(&w, &x)| w * x)
        .sum();
    for (w, x) in ws.zip(xs) {
        for ((acc, &w), &x) in acc.iter_mut().zip(w).zip(x) {
            *acc += w * x;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `Σ q[i]·x[i]` for an int8 row, as [`dot_f32`].
#[inline(always)]
fn dot_i8(q: &[i8], x: &[f32]) -> f32 {
    let mut acc = [0.0_f32; 16];
    let (qs, xs) = (q.chunks_exact(16), x.chunks_exact(16));
    let tail: f32 = (qs.remainder().iter().zip(xs.remainder()))
        .map(|(&q, &x)| f32::from(q) * x)
        .sum();
    for (q, x) in qs.zip(xs) {
        for ((acc, &q), &x) in acc.iter_mut().zip(q).zip(x) {
            *acc += f32::from(q) * x;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// A block's f16 scale as an f32: [`f16_to_f32`] without its branches, for
/// the inner loops, exact for every finite f16 (the only kind a block
/// holds). The f16's exponent and fraction bits, moved to where an f32 keeps
/// them, make an f32 2^112 times too small (the exponents' biases differ by
/// 127 - 15); one multiplication by 2^112 corrects it, subnormal f16s
/// included.
#[inline(always)]
fn scale_to_f32(h: u16) -> f32 {
    const TWO_TO_112: f32 = f32::from_bits((112 + 127) << 23);
    let magnitude = f32::from_bits(u32::from(h & 0x7fff) << 13) * TWO_TO_112;
    f32::from_bits(magnitude.to_bits() | u32::from(h & 0x8000) << 16)
}

// ANCHOR: dot_q8_0
/// One row of Q8_0 blocks times `x`: `Σ_blocks d · Σ_j q[j]·x[j]`.
///
/// Sixteen partial sums, one a vector lane: each block adds
/// `d·(q[l]·x[l] + q[l+16]·x[l+16])` to lane `l`. With 16-wide vectors a
/// block is two conversions of 16 integers to floats, three multiplications
/// and two additions, and its scale's conversion without a branch; the
/// fixed-length arrays need no bounds checks. The lanes are added up once,
/// at the end of the row, one after another: the compiler turned the loop
/// into narrower vectors when they were added pairwise instead.
#[inline(always)]
fn dot_q8_0(blocks: &[BlockQ8_0], x: &[f32]) -> f32 {
    let mut acc = [0.0_f32; 16];
    for (b, x) in blocks.iter().zip(x.as_chunks::<BLOCK>().0) {
        let d = scale_to_f32(b.d);
        for l in 0..16 {
            acc[l] += d * (f32::from(b.qs[l]) * x[l] + f32::from(b.qs[l + 16]) * x[l + 16]);
        }
    }
    acc.iter().sum()
}
// ANCHOR_END: dot_q8_0

/// One row of Q4_0 blocks times `x`, as [`dot_q8_0`]: byte `l` of a block
/// holds the levels of weights `l` (low four bits) and `l + 16` (high four).
#[inline(always)]
fn dot_q4_0(blocks: &[BlockQ4_0], x: &[f32]) -> f32 {
    let mut acc = [0.0_f32; 16];
    for (b, x) in blocks.iter().zip(x.as_chunks::<BLOCK>().0) {
        let d = scale_to_f32(b.d);
        for l in 0..16 {
            let lo = f32::from(b.qs[l] & 0x0f) - 8.0;
            let hi = f32::from(b.qs[l] >> 4) - 8.0;
            acc[l] += d * (lo * x[l] + hi * x[l + 16]);
        }
    }
    acc.iter().sum()
}

#[cfg(test)]
mod tests {
    use ndarray::{Array3, array};
    use proptest::prelude::*;

    use super::*;
    use crate::model::{LinearParams, matmul_forward};
    use crate::rng::{randn, seeded};

    /// A `(1, 32·n)` matrix of the given numbers, quantised.
    fn one_row(x: &[f32], format: Format) -> WeightMatrix {
        let m = ArrayView2::from_shape((1, x.len()), x).unwrap();
        WeightMatrix::from_rows(m, format).unwrap()
    }

    /// Largest `|a - b|` divided by `scale`.
    fn assert_close(a: &[f32], b: &[f32], scale: &[f32], rel: f32, what: &str) {
        for (i, ((&a, &b), &s)) in a.iter().zip(b).zip(scale).enumerate() {
            assert!(
                (a - b).abs() <= rel * s + 1e-30,
                "{what}: element {i}: {a} vs {b} (|a - b| = {}, allowed {})",
                (a - b).abs(),
                rel * s
            );
        }
    }

    #[test]
    fn q8_0_blocks_hold_the_bytes_worked_out_by_hand() {
        let mut x = [0.0_f32; 64];
        // Block 0: max|x| = 127, so d = 1 exactly (f16 0x3c00, stored 00 3c).
        x[..5].copy_from_slice(&[127.0, -63.6, 2.5, -2.5, 0.49]);
        // Block 1: max|x| = 1, d = 1/127, whose nearest f16 is
        // 2^-7 · (1 + 8/1024) = 0x2008 (the exact fraction is 8.06/1024).
        x[32..35].copy_from_slice(&[1.0, -0.25, 0.1]); // levels 127, -31.75 -> -32, 12.7 -> 13
        let q = one_row(&x, Format::Q8_0);
        let bytes = q.to_bytes();
        let mut expect = vec![0x00, 0x3c, 0x7f, 0xc0, 0x03, 0xfd, 0x00]; // 127, -64, 3, -3, 0
        expect.resize(34, 0);
        expect.extend([0x08, 0x20, 0x7f, 0xe0, 0x0d]); // 127, -32, 13
        expect.resize(68, 0);
        assert_eq!(bytes, expect);
        // Unpacked: d·q, with halves rounded away from zero.
        let back = q.dequantize();
        assert_eq!(
            back.row(0).as_slice().unwrap()[..5],
            [127.0, -64.0, 3.0, -3.0, 0.0]
        );
        let d1 = f16_to_f32(0x2008);
        assert_eq!(back[(0, 33)], -32.0 * d1);
    }

    #[test]
    fn q4_0_blocks_hold_the_bytes_worked_out_by_hand() {
        let mut x = [0.0_f32; 64];
        // Block 0: the largest weight is -8, so d = -8 / -8 = 1 (stored 00 3c)
        // and each level is round(x + 8), clamped to 15. Byte j holds weight
        // j (low four bits) and weight j + 16 (high four).
        x[..4].copy_from_slice(&[-8.0, 0.0, 0.49, -3.5]); // levels 0, 8, 8, 5
        x[16..20].copy_from_slice(&[7.0, -0.6, 0.5, 7.9]); // levels 15, 7, 9, 16 -> 15
        // Block 1: 4 and -4 tie for largest; the first, +4, sets d = 4 / -8
        // = -0.5 (f16 0xb800). 4 -> level 0; -4 -> level 16, clamped to 15.
        x[32..34].copy_from_slice(&[4.0, 1.0]); // levels 0, 6 (1/-0.5 + 8.5 = 6.5)
        x[48..50].copy_from_slice(&[-4.0, -1.3]); // levels 15, 11 (2.6 + 8.5 = 11.1)
        let q = one_row(&x, Format::Q4_0);
        let mut expect = vec![0x00, 0x3c, 0xf0, 0x78, 0x98, 0xf5];
        expect.resize(18, 0x88); // zeros are level 8 in both halves
        expect.extend([0x00, 0xb8, 0xf0, 0xb6]);
        expect.resize(36, 0x88);
        assert_eq!(q.to_bytes(), expect);
        // Unpacked: d·(level - 8). The clamped weights come back one step short.
        let back = q.dequantize();
        let back = back.as_slice().unwrap();
        assert_eq!(back[..4], [-8.0, 0.0, 0.0, -3.0]);
        assert_eq!(back[16..20], [7.0, -1.0, 1.0, 7.0]); // 7.9 -> 7: error 0.9 < |d| = 1
        assert_eq!(back[32..34], [4.0, 1.0]);
        assert_eq!(back[48..50], [-3.5, -1.5]); // -4 -> -3.5: error 0.5 = |d|
    }

    #[test]
    fn scale_to_f32_is_f16_to_f32_for_every_finite_f16() {
        for h in (0..=u16::MAX).filter(|h| h & 0x7c00 != 0x7c00) {
            assert_eq!(
                scale_to_f32(h).to_bits(),
                f16_to_f32(h).to_bits(),
                "{h:#06x}"
            );
        }
    }

    #[test]
    fn a_zero_block_stays_zero_in_every_format() {
        let zeros = Array2::<f32>::zeros((3, 64));
        for format in Format::ALL {
            let q = WeightMatrix::from_rows(zeros.view(), format).unwrap();
            assert_eq!(q.dequantize(), zeros, "{format}");
            let mut y = [1.0; 3];
            q.matvec(&[1.0; 64], &mut y);
            assert_eq!(y, [0.0; 3], "{format}");
        }
        // Q4_0 stores a zero as level 8 (0x88 for two), with scale 0 / -8,
        // which is -0 (f16 0x8000), as in llama.cpp.
        let q = WeightMatrix::from_rows(zeros.view(), Format::Q4_0).unwrap();
        let bytes = q.to_bytes();
        assert!(
            bytes
                .chunks(18)
                .all(|b| b[..2] == [0x00, 0x80] && b[2..].iter().all(|&n| n == 0x88))
        );
    }

    /// The largest error each format allows for weight `i` of `x` (one row
    /// of whole blocks), from the definitions:
    ///
    /// - int8: `|x - scale·q| <= scale/2`;
    /// - q8_0: `|x - d16·q| <= |d|/2 + |q|·|d - d16|`, where `d` is the f32
    ///   scale the integers were rounded with and `d16` its stored f16: the
    ///   second term is the f16's own rounding (at most `|d|·2^-11` a step,
    ///   so under 6.3% of `d` for the largest `q`), zero when `d` is an f16;
    /// - q4_0: the same with `q = level - 8`, except that a weight whose
    ///   level would be 8 (sign opposite to the block's largest weight, size
    ///   at least 15/16 of it) is clamped to 7, an error of up to `|d|`, not
    ///   `|d|/2`.
    ///
    /// Plus a hair for the rounding of the float arithmetic (1e-4 of a step).
    fn bound(x: &[f32], i: usize, format: Format, q: &WeightMatrix) -> f64 {
        let block = &x[i / BLOCK * BLOCK..][..BLOCK];
        let amax = block.iter().fold(0.0_f32, |m, v| m.max(v.abs()));
        let back = f64::from(q.dequantize()[(0, i)]);
        match format {
            Format::F32 => 0.0,
            Format::Int8 => {
                let s = f64::from(x.iter().fold(0.0_f32, |m, v| m.max(v.abs())) / 127.0);
                s * (0.5 + 1e-4)
            }
            Format::Q8_0 | Format::Q4_0 => {
                let (d, clamped) = if format == Format::Q8_0 {
                    (f64::from(amax / 127.0), false)
                } else {
                    let max = block
                        .iter()
                        .fold(0.0_f32, |m, &v| if v.abs() > m.abs() { v } else { m });
                    let d = f64::from(max / -8.0);
                    (d, d != 0.0 && f64::from(x[i]) / d > 7.499)
                };
                let d16 = f64::from(f16_to_f32(f32_to_f16(d as f32)));
                let steps = if d16 == 0.0 {
                    f64::from(x[i]) / d
                } else {
                    back / d16
                };
                let step_error = if clamped { 1.0 } else { 0.5 };
                d.abs() * (step_error + 1e-4) + steps.abs().round() * (d - d16).abs()
            }
        }
    }

    fn check_round_trip(x: &[f32], format: Format) {
        let q = one_row(x, format);
        let back = q.dequantize();
        for (i, (&x_i, &b)) in x.iter().zip(back.iter()).enumerate() {
            let err = (f64::from(x_i) - f64::from(b)).abs();
            let allowed = bound(x, i, format, &q);
            assert!(
                err <= allowed,
                "{format}: weight {i} = {x_i} came back {b}: error {err} > {allowed}"
            );
        }
    }

    proptest! {
        /// Every weight comes back within its format's bound (see [`bound`]),
        /// over magnitudes from 1e-7 (f16 scales underflow) to 1e3.
        #[test]
        fn round_trip_error_within_the_bound(
            x in prop::collection::vec(-1.0_f32..1.0, 32..=96),
            exp in -7_i32..=3,
        ) {
            let n = x.len() / BLOCK * BLOCK;
            let x: Vec<f32> = x[..n].iter().map(|v| v * 10f32.powi(exp)).collect();
            for format in Format::ALL {
                check_round_trip(&x, format);
            }
        }

        /// `matvec` gives what the unpacked matrix gives with plain dot
        /// products (in f64), to 1e-5 of `Σ|w·x|`, and `matmul` what `matvec`
        /// gives, row by row, in every format and many shapes.
        #[test]
        fn matvec_and_matmul_agree_with_the_unpacked_matrix(
            rows in 1_usize..80,
            blocks in 1_usize..6,
            t in prop::sample::select(vec![1, 3, 16, 21]),
            seed in 0_u64..1000,
        ) {
            check_products(rows, blocks * BLOCK, t, seed);
        }
    }

    fn check_products(rows: usize, cols: usize, t: usize, seed: u64) {
        let mut rng = seeded(seed);
        let w = randn((rows, cols), 0.1, &mut rng);
        let x = randn((t, cols), 1.0, &mut rng);
        for format in Format::ALL {
            let q = WeightMatrix::from_rows(w.view(), format).unwrap();
            let back = q.dequantize();
            let mut by_matmul = Array2::zeros((t, rows));
            q.matmul(x.view(), by_matmul.view_mut());
            for (xt, mm) in x.rows().into_iter().zip(by_matmul.rows()) {
                let xt = xt.as_slice().unwrap();
                let mut y = vec![0.0; rows];
                q.matvec(xt, &mut y);
                let dot = |r: usize, f: fn(f64) -> f64| -> f64 {
                    back.row(r)
                        .iter()
                        .zip(xt)
                        .map(|(&w, &x)| f(f64::from(w) * f64::from(x)))
                        .sum()
                };
                let exact: Vec<f32> = (0..rows).map(|r| dot(r, |v| v) as f32).collect();
                let size: Vec<f32> = (0..rows).map(|r| dot(r, f64::abs) as f32).collect();
                assert_close(
                    &y,
                    &exact,
                    &size,
                    1e-5,
                    &format!("{format} matvec, {rows}x{cols}"),
                );
                assert_close(
                    mm.as_slice().unwrap(),
                    &y,
                    &size,
                    1e-5,
                    &format!("{format} matmul, {rows}x{cols}"),
                );
            }
        }
    }

    #[test]
    fn products_of_large_matrices_shared_between_threads_agree() {
        // 300 x 256 weights: matvec shares out its rows; 20 x 300 x 512
        // multiply-adds: matmul shares out its bands (five, the last of 44 rows).
        check_products(300, 256, 1, 7);
        check_products(300, 512, 20, 8);
    }

    #[test]
    fn matmul_takes_arrays_in_any_layout() {
        let w = randn((70, 64), 0.1, &mut seeded(9));
        for format in Format::ALL {
            let q = WeightMatrix::from_rows(w.view(), format).unwrap();
            for t in [3, 20] {
                let x = randn((64, t), 1.0, &mut seeded(10)); // used transposed
                let mut expect = Array2::zeros((t, 70));
                q.matmul(x.t().as_standard_layout().view(), expect.view_mut());
                let mut out = Array2::zeros((70, t)); // written transposed
                q.matmul(x.t(), out.view_mut().reversed_axes());
                assert_eq!(out.t(), expect, "{format}, T = {t}");
            }
        }
    }

    #[test]
    fn f32_format_computes_the_linear_layer() {
        // A linear layer (in, out) = (96, 200) with zero bias: y = x·W.
        let layer = LinearParams::new(96, 200, 0.1, &mut seeded(3));
        let x = randn((1, 8, 96), 1.0, &mut seeded(4)); // (B, T, C)
        let mut expect = Array3::zeros((1, 8, 200));
        matmul_forward(&mut expect, &x, &layer);
        let q = WeightMatrix::from_linear(layer.weight.view(), Format::F32).unwrap();
        assert_eq!((q.rows(), q.cols()), (200, 96));
        assert_eq!(q.dequantize(), layer.weight.t());
        let x = x.into_shape_with_order((8, 96)).unwrap();
        let size: Vec<f32> = (x.abs().dot(&layer.weight.abs())).iter().copied().collect();
        let expect = expect.as_slice().unwrap();
        // matvec, one position at a time
        let mut y = Array2::zeros((8, 200));
        for (xt, mut yt) in x.rows().into_iter().zip(y.rows_mut()) {
            q.matvec(xt.as_slice().unwrap(), yt.as_slice_mut().unwrap());
        }
        assert_close(
            y.as_slice().unwrap(),
            expect,
            &size,
            1e-5,
            "f32 matvec vs x·W",
        );
        // matmul, all eight at once (a matrix product)
        let mut y = Array2::zeros((8, 200));
        q.matmul(x.view(), y.view_mut());
        assert_close(
            y.as_slice().unwrap(),
            expect,
            &size,
            1e-5,
            "f32 matmul vs x·W",
        );
    }

    #[test]
    fn from_linear_puts_each_output_in_a_row() {
        let w = array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]; // (in 2, out 3)
        let q = WeightMatrix::from_linear(w.view(), Format::Int8).unwrap();
        assert_eq!((q.rows(), q.cols()), (3, 2));
        let mut y = [0.0; 3];
        q.matvec(&[1.0, 0.0], &mut y); // picks the first input's weights
        let scale = 6.0_f32 / 127.0;
        assert_eq!(y, [1.0, 2.0, 3.0].map(|w: f32| (w / scale).round() * scale));
        let mut row = [0.0; 2];
        q.row(2, &mut row); // output 2: weights [3, 6]
        assert_eq!(row, [(3.0 / scale).round() * scale, 6.0]);
    }

    #[test]
    fn one_outlier_costs_int8_the_whole_matrix_and_q8_0_one_block() {
        // 4 rows x 64: small weights everywhere, one outlier of 10 in row 0's
        // first block.
        let mut w = randn((4, 64), 0.02, &mut seeded(5));
        let plain = w.clone();
        w[(0, 3)] = 10.0;
        let error = |w: &Array2<f32>,
                     format: Format,
                     rows: std::ops::Range<usize>,
                     cols: std::ops::Range<usize>| {
            let back = WeightMatrix::from_rows(w.view(), format)
                .unwrap()
                .dequantize();
            let mut sum = 0.0;
            let mut n = 0;
            for r in rows {
                for c in cols.clone() {
                    if (r, c) != (0, 3) {
                        sum += (w[(r, c)] - back[(r, c)]).abs();
                        n += 1;
                    }
                }
            }
            sum / n as f32 // mean error of the small weights
        };
        // Int8: the outlier sets the step to 10/127 = 0.079 for everything;
        // weights of size 0.02 mostly round to 0. Every small weight suffers.
        let int8_far = error(&w, Format::Int8, 1..4, 0..64);
        assert!(
            int8_far > 100.0 * error(&plain, Format::Int8, 1..4, 0..64),
            "{int8_far}"
        );
        assert!(int8_far > 0.01, "{int8_far}"); // about the weights' own size
        // Q8_0: the outlier's block suffers as much ...
        let q8_block = error(&w, Format::Q8_0, 0..1, 0..32);
        assert!(
            q8_block > 100.0 * error(&plain, Format::Q8_0, 0..1, 0..32),
            "{q8_block}"
        );
        // ... but every other block keeps its own fine step: nothing changed there.
        for (rows, cols) in [(0..1, 32..64), (1..4, 0..64)] {
            let with = error(&w, Format::Q8_0, rows.clone(), cols.clone());
            assert_eq!(with, error(&plain, Format::Q8_0, rows, cols));
            assert!(with < int8_far / 100.0, "{with} vs int8's {int8_far}");
        }
    }

    #[test]
    fn bytes_are_the_formats_sizes() {
        let w = Array2::from_elem((768, 768), 0.5_f32);
        let size = |format| WeightMatrix::from_rows(w.view(), format).unwrap();
        for (format, bytes) in [
            (Format::F32, 768 * 768 * 4),
            (Format::Int8, 768 * 768 + 4),
            (Format::Q8_0, 768 * 768 / 32 * 34),
            (Format::Q4_0, 768 * 768 / 32 * 18),
        ] {
            let q = size(format);
            assert_eq!(q.bytes(), bytes, "{format}");
            assert_eq!(q.to_bytes().len(), bytes, "{format}");
        }
    }

    #[test]
    fn rows_that_are_not_whole_blocks_are_refused_by_name() {
        let w = Array2::<f32>::zeros((4, 33));
        let err = WeightMatrix::from_rows(w.view(), Format::Q8_0).unwrap_err();
        assert_eq!(
            err,
            QuantError::Cols {
                rows: 4,
                cols: 33,
                format: Format::Q8_0,
                block: 32
            }
        );
        let message = err.to_string();
        assert!(
            message.contains("4 rows of 33 inputs") && message.contains("q8_0"),
            "{message}"
        );
        // A linear layer (in 33, out 8) is 8 rows of 33.
        let w = Array2::<f32>::zeros((33, 8));
        assert!(matches!(
            WeightMatrix::from_linear(w.view(), Format::Q4_0),
            Err(QuantError::Cols {
                rows: 8,
                cols: 33,
                format: Format::Q4_0,
                ..
            })
        ));
        // int8 and f32 take any shape.
        for format in [Format::F32, Format::Int8] {
            assert_eq!(
                WeightMatrix::from_linear(w.view(), format).unwrap().cols(),
                33
            );
        }
    }

    #[test]
    fn non_finite_weights_are_refused_at_their_position() {
        for format in Format::ALL {
            let mut w = Array2::<f32>::zeros((4, 64));
            w[(2, 5)] = f32::NAN;
            let err = WeightMatrix::from_rows(w.view(), format).unwrap_err();
            assert!(
                matches!(err, QuantError::NonFinite { row: 2, col: 5, value } if value.is_nan()),
                "{err:?}"
            );
            assert!(err.to_string().contains("weight [2, 5]"), "{err}");
            // from_linear names the position in the (in, out) matrix it was given.
            w[(2, 5)] = 0.0;
            w[(3, 1)] = f32::NEG_INFINITY;
            let err = WeightMatrix::from_linear(w.view(), format).unwrap_err();
            assert_eq!(
                err,
                QuantError::NonFinite {
                    row: 3,
                    col: 1,
                    value: f32::NEG_INFINITY
                }
            );
        }
    }

    #[test]
    fn scales_beyond_f16_are_refused() {
        let mut w = Array2::<f32>::zeros((2, 64));
        w[(1, 40)] = -1e7; // q8_0's d = 78,740; q4_0's 1.25e6
        for format in [Format::Q8_0, Format::Q4_0] {
            let err = WeightMatrix::from_rows(w.view(), format).unwrap_err();
            assert_eq!(
                err,
                QuantError::ScaleOverflow {
                    row: 1,
                    col: 32,
                    largest: -1e7,
                    format
                }
            );
        }
        // int8 keeps an f32 scale.
        assert!(WeightMatrix::from_rows(w.view(), Format::Int8).is_ok());
        // Just inside: 65504 · 127 is the largest weight q8_0 can hold.
        w[(1, 40)] = 65504.0 * 127.0;
        assert!(WeightMatrix::from_rows(w.view(), Format::Q8_0).is_ok());
    }

    #[test]
    fn format_names_read_and_print() {
        for format in Format::ALL {
            assert_eq!(format.to_string().parse::<Format>(), Ok(format));
        }
        assert_eq!("Q4_0".parse::<Format>(), Ok(Format::Q4_0));
        assert_eq!(
            "q5_k".parse::<Format>(),
            Err(QuantError::UnknownFormat("q5_k".into()))
        );
    }

    #[test]
    fn empty_and_degenerate_shapes() {
        let q = WeightMatrix::from_rows(Array2::zeros((3, 0)).view(), Format::Q8_0).unwrap();
        let mut y = [1.0; 3];
        q.matvec(&[], &mut y);
        assert_eq!(y, [0.0; 3]);
        let mut out = Array2::from_elem((2, 3), 1.0);
        q.matmul(Array2::zeros((2, 0)).view(), out.view_mut());
        assert_eq!(out, Array2::<f32>::zeros((2, 3)));
        let q = WeightMatrix::from_rows(Array2::zeros((0, 32)).view(), Format::Q4_0).unwrap();
        q.matvec(&[0.0; 32], &mut []);
        assert_eq!(q.bytes(), 0);
        // A constant block: q = 127 everywhere, and d = 0.5/127 comes back
        // as its nearest f16, so the weights come back a little off.
        let constant = one_row(&[0.5; 32], Format::Q8_0);
        let d16 = f16_to_f32(f32_to_f16(0.5 / 127.0));
        assert_eq!(
            constant.dequantize(),
            Array2::from_elem((1, 32), d16 * 127.0)
        );
        assert_ne!(d16 * 127.0, 0.5);
    }
}
