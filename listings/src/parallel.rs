//! Using the whole machine: several cores, and the wide vector instructions
//! of each.
//!
//! Matrix products get wide vectors from matrixmultiply's kernels (its
//! AVX-512 ones, enabled in `Cargo.toml`) and several cores from
//! [`par_mat_mul`], which cuts each product into one part per core. The
//! model's other loops (attention's softmax, GELU, LayerNorm) get them
//! here too:
//!
//! - [`pool`] is a set of worker threads that stay alive between calls, so
//!   handing them work costs about 15 µs on this book's machine, where
//!   starting a new thread costs about 50 µs;
//! - [`simd`] runs a loop compiled for AVX-512 (or AVX2) when the CPU has it,
//!   so the compiler can do 16 (or 8) numbers per instruction instead of 4;
//! - [`sum_map`] adds up a row in 16 interleaved partial sums, which is what
//!   lets a sum use vector instructions at all;
//! - [`par_map`] puts the three together for an element-by-element loop.
//!
//! None of them changes a result by a bit: vector instructions round each
//! operation exactly as the plain ones do, and the order of every sum is
//! fixed by the code, not by the CPU or the number of threads.
//!
//! One pool of threads does all of it: matrixmultiply's own threading is
//! left off, so that it never competes with the pool for the cores. The
//! number of threads follows the environment variable `MATMUL_NUM_THREADS`
//! (the name matrixmultiply uses for the same setting):
//! `MATMUL_NUM_THREADS=1` runs everything on one core.

use std::borrow::Cow;
use std::sync::OnceLock;

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayRef, ArrayRef2, ArrayView2, ArrayViewMut2, Axis, Dimension};
use rayon::prelude::*;
use rayon::{ThreadPool, ThreadPoolBuilder};

/// The number of threads the model's own loops use: the environment
/// variable `MATMUL_NUM_THREADS` if it is set to a positive number, else the
/// number of cores the system offers. Read once.
pub fn num_threads() -> usize {
    static THREADS: OnceLock<usize> = OnceLock::new();
    *THREADS.get_or_init(|| {
        std::env::var("MATMUL_NUM_THREADS")
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    })
}

/// The model's worker threads ([`num_threads`] of them), a rayon pool
/// started on first use. `pool().install(|| ...)` runs rayon's parallel
/// iterators inside it.
pub fn pool() -> &'static ThreadPool {
    static POOL: OnceLock<ThreadPool> = OnceLock::new();
    POOL.get_or_init(|| {
        ThreadPoolBuilder::new()
            .num_threads(num_threads())
            .thread_name(|i| format!("listings-model-{i}"))
            .build()
            .expect("the operating system refused to start the model's worker threads")
    })
}

// ANCHOR: simd
/// Runs `f`, compiled for the widest vector instructions this CPU has.
///
/// Rust compiles for the oldest x86-64 CPUs unless told otherwise, so a loop
/// gets 4-wide SSE instructions. Inside a function marked
/// `#[target_feature(enable = "avx512f")]` the compiler may use 16-wide
/// AVX-512 ones; calling such a function is `unsafe` because it would crash
/// on a CPU without them, so it is called only after checking that the CPU
/// has them. The closure `f` must be inlined into the marked function to be
/// compiled with it, so callers mark it `#[inline(always)]`:
/// `simd(#[inline(always)] || ...)`. On other CPUs `f` simply runs as it is.
pub fn simd<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, checked on the line above.
            return unsafe { with_avx512(f) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked on the line above.
            return unsafe { with_avx2(f) };
        }
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn with_avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn with_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}
// ANCHOR_END: simd

// ANCHOR: sum_map
/// `Σ f(x)` over a slice, added up in 16 interleaved partial sums.
///
/// A plain running sum is one long chain of additions, each waiting for the
/// one before, and the compiler may not reorder float additions (that would
/// change the rounding). Sixteen independent sums fill vector registers;
/// their order is fixed here, so the result is the same on every CPU.
///
/// ```
/// use listings::parallel::sum_map;
/// let xs: Vec<f32> = (1..=100).map(|i| i as f32).collect();
/// assert_eq!(sum_map(&xs, |x| x), 5050.0);
/// assert_eq!(sum_map(&xs[..3], |x| x * x), 14.0);
/// ```
#[inline]
pub fn sum_map(xs: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    const LANES: usize = 16;
    let mut partial = [0.0_f32; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().map(|&x| f(x)).sum();
    for chunk in chunks {
        for (p, &x) in partial.iter_mut().zip(chunk) {
            *p += f(x);
        }
    }
    partial.iter().sum::<f32>() + tail
}
// ANCHOR_END: sum_map

/// `Σ f(a[i], b[i])` over two slices of the same length, in 16 interleaved
/// partial sums as [`sum_map`]: a dot product is `sum_zip(a, b, |x, y| x * y)`.
///
/// ```
/// use listings::parallel::sum_zip;
/// assert_eq!(sum_zip(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0], |x, y| x * y), 32.0);
/// ```
#[inline]
pub fn sum_zip(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    const LANES: usize = 16;
    assert_eq!(a.len(), b.len(), "sum_zip needs slices of the same length");
    let mut partial = [0.0_f32; LANES];
    let (chunks_a, chunks_b) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = (chunks_a.remainder().iter())
        .zip(chunks_b.remainder())
        .map(|(&x, &y)| f(x, y))
        .sum();
    for (ca, cb) in chunks_a.zip(chunks_b) {
        for ((p, &x), &y) in partial.iter_mut().zip(ca).zip(cb) {
            *p += f(x, y);
        }
    }
    partial.iter().sum::<f32>() + tail
}

/// `Σ f(a[i], b[i], c[i])` over three slices of the same length, as
/// [`sum_zip`].
///
/// ```
/// use listings::parallel::sum_zip3;
/// assert_eq!(sum_zip3(&[1.0, 2.0], &[3.0, 4.0], &[5.0, 6.0], |x, y, z| x * y * z), 63.0);
/// ```
#[inline]
pub fn sum_zip3(a: &[f32], b: &[f32], c: &[f32], f: impl Fn(f32, f32, f32) -> f32) -> f32 {
    const LANES: usize = 16;
    assert!(
        a.len() == b.len() && b.len() == c.len(),
        "sum_zip3 needs slices of the same length"
    );
    let mut partial = [0.0_f32; LANES];
    let (ca, cb, cc) = (
        a.chunks_exact(LANES),
        b.chunks_exact(LANES),
        c.chunks_exact(LANES),
    );
    let tail: f32 = (ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .zip(cc.remainder()))
    .map(|((&x, &y), &z)| f(x, y, z))
    .sum();
    for ((ca, cb), cc) in ca.zip(cb).zip(cc) {
        for (((p, &x), &y), &z) in partial.iter_mut().zip(ca).zip(cb).zip(cc) {
            *p += f(x, y, z);
        }
    }
    partial.iter().sum::<f32>() + tail
}

/// The largest number of a slice (`-∞` for an empty one), found in 16
/// interleaved partial maxima for the same reason as [`sum_map`].
///
/// ```
/// use listings::parallel::max;
/// assert_eq!(max(&[3.0, -1.0, 7.5, 2.0]), 7.5);
/// ```
#[inline]
pub fn max(xs: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut partial = [f32::NEG_INFINITY; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    for chunk in chunks {
        for (p, &x) in partial.iter_mut().zip(chunk) {
            *p = p.max(x);
        }
    }
    partial.iter().fold(tail, |m, &p| m.max(p))
}

// ANCHOR: par_map
/// `out[i] = f(inp[i])` for every element: in pieces shared out between the
/// [`pool`]'s threads, each piece's loop compiled by [`simd`].
pub fn par_map(out: &mut [f32], inp: &[f32], f: impl Fn(f32) -> f32 + Sync) {
    assert_eq!(
        out.len(),
        inp.len(),
        "par_map needs arrays of the same length"
    );
    // Below this many numbers a piece costs more to hand out than to compute.
    const PIECE: usize = 1 << 14;
    let map = |(out, inp): (&mut [f32], &[f32])| {
        simd(
            #[inline(always)]
            || out.iter_mut().zip(inp).for_each(|(y, &x)| *y = f(x)),
        )
    };
    if inp.len() <= PIECE {
        map((out, inp));
    } else {
        pool().install(|| {
            out.par_chunks_mut(PIECE)
                .zip(inp.par_chunks(PIECE))
                .for_each(map)
        });
    }
}
// ANCHOR_END: par_map

/// `out[i] = f(a[i], b[i])` for every element, shared out and compiled as
/// [`par_map`]: the shape of a backward pass through an element-wise layer,
/// where `a` is the layer's input and `b` the gradient of its output.
pub fn par_zip_map(out: &mut [f32], a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) {
    assert!(
        out.len() == a.len() && a.len() == b.len(),
        "par_zip_map needs arrays of the same length"
    );
    const PIECE: usize = 1 << 14;
    let map = |((out, a), b): ((&mut [f32], &[f32]), &[f32])| {
        simd(
            #[inline(always)]
            || {
                for ((y, &x), &d) in out.iter_mut().zip(a).zip(b) {
                    *y = f(x, d);
                }
            },
        )
    };
    if a.len() <= PIECE {
        map(((out, a), b));
    } else {
        pool().install(|| {
            out.par_chunks_mut(PIECE)
                .zip(a.par_chunks(PIECE))
                .zip(b.par_chunks(PIECE))
                .for_each(map)
        });
    }
}

/// The numbers of an array the model writes to, as one slice in row-major
/// order. Every array the model allocates is laid out so; anything else is
/// a bug in the caller.
pub(crate) fn out_slice<D: Dimension>(x: &mut ArrayRef<f32, D>) -> &mut [f32] {
    x.as_slice_mut()
        .expect("an output array must be in row-major (standard) layout")
}

/// The numbers of an array the model reads, as one slice in row-major order:
/// borrowed when the array is laid out so (as the model's arrays are), copied
/// into that order otherwise.
pub(crate) fn in_slice<D: Dimension>(x: &ArrayRef<f32, D>) -> Cow<'_, [f32]> {
    match x.as_slice() {
        Some(numbers) => Cow::Borrowed(numbers),
        None => Cow::Owned(x.iter().copied().collect()),
    }
}

// ANCHOR: par_mat_mul
/// `c = alpha·a·b + beta·c`, with `c`'s rows (or columns) shared out between
/// the [`pool`]'s threads, each part one single-threaded matrixmultiply call.
///
/// Every number of `c` is one row of `a` times one column of `b`, so a part
/// of `c` needs only its own rows of `a` (or columns of `b`): the parts are
/// independent, and each number is summed in the same order as by one call,
/// bit for bit. `c` is cut across its longer side, so that the operand each
/// part copies whole (matrixmultiply packs both operands into its working
/// order first) is the smaller one. Products under a million
/// multiply-adds run on the calling thread: sharing them out would cost
/// more than it saves.
///
/// Shapes: `a` `(M, K)`, `b` `(K, N)`, `c` `(M, N)`.
pub fn par_mat_mul(
    alpha: f32,
    a: &ArrayRef2<f32>,
    b: &ArrayRef2<f32>,
    beta: f32,
    c: &mut ArrayRef2<f32>,
) {
    let (m, n) = c.dim();
    if m * n * a.ncols() < 1 << 20 {
        general_mat_mul(alpha, a, b, beta, c);
    } else {
        pool().install(|| {
            split_mat_mul(alpha, a.view(), b.view(), beta, c.view_mut(), num_threads())
        });
    }
}
// ANCHOR_END: par_mat_mul

/// [`par_mat_mul`] in `parts` parts, halving `c` until each part is one.
fn split_mat_mul(
    alpha: f32,
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    beta: f32,
    mut c: ArrayViewMut2<f32>,
    parts: usize,
) {
    let (m, n) = c.dim();
    if parts < 2 || m.max(n) < 2 * CUT {
        general_mat_mul(alpha, &a, &b, beta, &mut c);
        return;
    }
    let (first, rest) = (parts / 2, parts - parts / 2);
    let axis = if m >= n { Axis(0) } else { Axis(1) };
    // A cut at a multiple of CUT keeps matrixmultiply's kernels on whole tiles.
    let mid = (c.len_of(axis) * first / parts).div_ceil(CUT) * CUT;
    let (c0, c1) = c.split_at(axis, mid);
    let ((a0, a1), (b0, b1)) = if axis == Axis(0) {
        (a.split_at(Axis(0), mid), (b, b))
    } else {
        ((a, a), b.split_at(Axis(1), mid))
    };
    rayon::join(
        || split_mat_mul(alpha, a0, b0, beta, c0, first),
        || split_mat_mul(alpha, a1, b1, beta, c1, rest),
    );
}

/// Parts of a split product are cut at multiples of this many rows or
/// columns.
const CUT: usize = 32;
