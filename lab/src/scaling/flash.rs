//! FlashAttention's arithmetic: causal attention computed tile by tile,
//! with the softmax done *online*, so that the `(T, T)` matrix of scores is
//! never held whole (Dao et al. 2022, "FlashAttention: Fast and
//! Memory-Efficient Exact Attention with IO-Awareness", arXiv:2205.14135,
//! algorithm 1; the online softmax is Milakov and Gimelshein 2018,
//! arXiv:1805.02867).
//!
//! Chapter 3 wrote attention as three steps: the scores `S = Q·Kᵀ/√hs`,
//! the weights `P = softmax(S)` row by row, the output `Y = P·V`; and
//! [`attention_forward`] keeps `P` for every head, `T²` numbers each, so
//! that the backward pass can read it. The softmax seems to need a whole
//! row of `S` before it can start (its maximum, its sum). It does not:
//!
//! - keep, for each query row, the largest score seen so far `m`, the sum
//!   `l` of `exp(s - m)` over the scores seen so far, and the weighted sum
//!   `acc` of their value rows, each weighted by `exp(s - m)`;
//! - when a tile of keys and values arrives, compute its scores, the new
//!   maximum `m' = max(m, max of the tile)`, and rescale what was kept by
//!   `α = exp(m - m')`: `l' = α·l + Σ exp(s - m')`,
//!   `acc' = α·acc + Σ exp(s - m')·v`;
//! - after the last tile, `acc / l` is the output row: `Σ_j exp(s_j - m)·v_j
//!   / Σ_j exp(s_j - m)`, the softmax-weighted average, whatever `m` was.
//!
//! The same numbers, up to the order of the additions: on one sequence of
//! the book model's shape (4 heads of 16 channels), at lengths from 64 to
//! 2,048, [`flash_attention_forward`] differed from [`attention_forward`]
//! by at most 5.4e-7 on outputs of size 3 (normal random `qkv`), and by
//! 4.8e-7 on the trained book model's own `qkv` (the tests hold it to
//! 1e-5 on several shapes and tile sizes). Its memory is one tile of
//! scores and one tile of accumulators per task, whatever `T` is
//! ([`FlashScratch`]): 16 KiB for the largest, against the library's `T²`
//! floats a head, 16 MiB a head at 2,048 tokens. [`comparison_table`]
//! makes these numbers. On a GPU this is what lets the scores stay in the fast
//! on-chip memory; on a CPU it saves the memory, and for long sequences
//! the cache misses. The backward pass (not written here) recomputes each
//! tile of `P` from `Q`, `K` and the kept `m` and `l` instead of reading
//! it.
//!
//! `cargo run --release -p lab -- flash [T...]` prints [`comparison_table`]
//! and times both at each length ([`flash_command`]).

use std::fmt::Write as _;
use std::time::Instant;

use anyhow::Result;
use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, Array3, Array4, ArrayRef3, ArrayView2, ArrayViewMut2, Axis, s};

use listings::model::{
    Gpt, GptConfig, GptParams, attention_forward, encoder_forward, fast_exp, layernorm_forward,
    matmul_forward,
};
use listings::parallel::pool;
use listings::rng::{randn, seeded};

use crate::book_model::{book_model_config, shared_book_model};

/// The sizes of the tiles: how many query rows, and how many key and value
/// rows, are worked on at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tiles {
    /// Query rows per tile (`B_r` in the paper).
    pub queries: usize,
    /// Key and value rows per tile (`B_c` in the paper).
    pub keys: usize,
}

/// 64 by 64: a tile of scores is then 16 KiB.
pub const DEFAULT_TILES: Tiles = Tiles {
    queries: 64,
    keys: 64,
};

/// The working memory of one task of [`flash_attention_forward`]: one tile
/// of scores (then weights), one tile of output accumulators, and the
/// running maximum and sum of each query row. Its size depends on the
/// tiles and the head size, not on `T`.
pub struct FlashScratch {
    /// Scores, then `exp(s - m)`, of one query tile against one key tile,
    /// `(queries, keys)`.
    scores: Array2<f32>,
    /// `Σ exp(s - m)·v` for each query row of the tile, `(queries, hs)`.
    acc: Array2<f32>,
    /// The largest score seen so far per query row.
    max: Vec<f32>,
    /// `Σ exp(s - m)` so far per query row.
    sum: Vec<f32>,
}

impl FlashScratch {
    /// Scratch for `tiles` and heads of `hs` channels.
    pub fn new(tiles: Tiles, hs: usize) -> Self {
        FlashScratch {
            scores: Array2::zeros((tiles.queries, tiles.keys)),
            acc: Array2::zeros((tiles.queries, hs)),
            max: vec![0.0; tiles.queries],
            sum: vec![0.0; tiles.queries],
        }
    }

    /// The bytes of its largest array.
    pub fn largest_bytes(&self) -> usize {
        4 * [self.scores.len(), self.acc.len(), self.max.len()]
            .into_iter()
            .max()
            .unwrap_or(0)
    }

    /// The bytes of all of it.
    pub fn bytes(&self) -> usize {
        4 * (self.scores.len() + self.acc.len() + self.max.len() + self.sum.len())
    }
}

// ANCHOR: flash_attention_forward
/// Multi-head causal self-attention, tile by tile with the online softmax:
/// the same output as [`attention_forward`] without its `(B, nh, T, T)`
/// weights. Returns the bytes of the largest temporary array it allocated
/// (one per task; see [`FlashScratch`]).
///
/// Each task is one query tile of one sequence, for every head; tasks
/// share out between the model's threads and never write the same
/// numbers, so the result does not depend on their number.
///
/// Shapes: `qkv` `(B, T, 3C)`, as `c_attn` writes it; `out` `(B, T, C)`.
///
/// # Panics
///
/// If a tile size is 0, `C` is not `3·C` of `qkv`, or `n_head` does not
/// divide `C`.
pub fn flash_attention_forward(
    out: &mut ArrayRef3<f32>,
    qkv: &ArrayRef3<f32>,
    n_head: usize,
    tiles: Tiles,
) -> usize {
    let (b, t, c) = out.dim();
    assert!(
        tiles.queries > 0 && tiles.keys > 0,
        "tiles must not be empty"
    );
    assert_eq!(qkv.dim(), (b, t, 3 * c), "qkv must be (B, T, 3C)");
    assert_eq!(c % n_head, 0, "n_head must divide C");
    let hs = c / n_head;
    pool().scope(|scope| {
        for (out, qkv) in out.outer_iter_mut().zip(qkv.outer_iter()) {
            let chunks = out.into_axis_chunks_iter_mut(Axis(0), tiles.queries);
            for (i, mut out) in chunks.enumerate() {
                scope.spawn(move |_| {
                    let mut scratch = FlashScratch::new(tiles, hs);
                    for h in 0..n_head {
                        query_tile(
                            &mut scratch,
                            out.view_mut(),
                            qkv,
                            i * tiles.queries,
                            h,
                            n_head,
                            tiles.keys,
                        );
                    }
                });
            }
        }
    });
    FlashScratch::new(tiles, hs).largest_bytes()
}
// ANCHOR_END: flash_attention_forward

// ANCHOR: query_tile
/// One head's output for the query rows `q0..q0 + rows` of one sequence,
/// written into its channels of `out` (those rows, `(rows, C)`), reading
/// the key and value tiles up to the tile's last query (the rest are in
/// its future, masked).
///
/// Shapes: `qkv` `(T, 3C)`; `out` `(rows, C)`.
fn query_tile(
    scratch: &mut FlashScratch,
    mut out: ArrayViewMut2<f32>,
    qkv: ArrayView2<f32>,
    q0: usize,
    h: usize,
    n_head: usize,
    key_tile: usize,
) {
    let (rows, c) = out.dim();
    let hs = c / n_head;
    let scale = 1.0 / (hs as f32).sqrt();
    let channels = |part: usize| part * c + h * hs..part * c + (h + 1) * hs;
    let q = qkv.slice(s![q0..q0 + rows, channels(0)]); // (rows, hs)
    let mut acc = scratch.acc.slice_mut(s![..rows, ..]); // (rows, hs)
    acc.fill(0.0);
    let (max, sum) = (&mut scratch.max[..rows], &mut scratch.sum[..rows]);
    max.fill(f32::NEG_INFINITY);
    sum.fill(0.0);
    let end = q0 + rows; // keys at end and after are every row's future
    for k0 in (0..end).step_by(key_tile) {
        let k1 = (k0 + key_tile).min(end);
        let k = qkv.slice(s![k0..k1, channels(1)]); // (cols, hs)
        let v = qkv.slice(s![k0..k1, channels(2)]); // (cols, hs)
        let mut p = scratch.scores.slice_mut(s![..rows, ..k1 - k0]); // (rows, cols)
        general_mat_mul(scale, &q, &k.t(), 0.0, &mut p); // S = Q·Kᵀ/√hs
        for (r, (mut row, mut acc_row)) in p.rows_mut().into_iter().zip(acc.rows_mut()).enumerate()
        {
            let row = row.as_slice_mut().expect("a row of a standard-layout tile");
            let seen = (q0 + r + 1).saturating_sub(k0).min(row.len()); // keys k0..=q0 + r
            let (seen, future) = row.split_at_mut(seen);
            future.fill(0.0);
            if seen.is_empty() {
                continue; // the whole tile is this row's future
            }
            let tile_max = seen.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
            let new_max = max[r].max(tile_max);
            let alpha = fast_exp(max[r] - new_max); // 0 on the first tile (from -∞)
            seen.iter_mut().for_each(|s| *s = fast_exp(*s - new_max));
            sum[r] = alpha * sum[r] + seen.iter().sum::<f32>();
            acc_row.mapv_inplace(|a| a * alpha);
            max[r] = new_max;
        }
        general_mat_mul(1.0, &p, &v, 1.0, &mut acc); // acc += P·V
    }
    let mut y = out.slice_mut(s![.., h * hs..(h + 1) * hs]); // (rows, hs)
    for ((mut y, acc), &l) in y.rows_mut().into_iter().zip(acc.rows()).zip(sum.iter()) {
        y.zip_mut_with(&acc, |y, &a| *y = a / l);
    }
}
// ANCHOR_END: query_tile

/// One row of [`comparison_table`]: tiled against the library's attention
/// at one length.
#[derive(Clone, Debug, PartialEq)]
pub struct FlashRow {
    /// Sequence length.
    pub t: usize,
    /// Where the `qkv` came from.
    pub source: String,
    /// The largest absolute difference between the two outputs.
    pub max_diff: f32,
    /// The largest output in absolute value (the scale of the difference).
    pub max_out: f32,
    /// Bytes of the library's weights for one head, `T²` floats.
    pub library_head_bytes: usize,
    /// Bytes of the library's weights for the call, `B·nh·T²` floats.
    pub library_bytes: usize,
    /// Bytes of the largest temporary of the tiled version.
    pub flash_largest_bytes: usize,
}

/// The `qkv` of block 0 of a model with the book model's shape but a
/// context of `t` tokens and fresh weights (seeded), on the first `t`
/// tokens of the corpus's validation split: real text through random
/// weights, `(1, t, 3C)`.
pub fn random_model_qkv(t: usize, seed: u64) -> Result<Array3<f32>> {
    let config = GptConfig {
        block_size: t,
        ..book_model_config()
    };
    let params = GptParams::init(&config, seed);
    let split = crate::training::corpus_split()?;
    anyhow::ensure!(
        split.val.len() > t,
        "the validation split has fewer than {t} tokens"
    );
    let idx = Array2::from_shape_vec((1, t), split.val.ids()[..t].to_vec())?;
    Ok(block0_qkv(&params, &idx))
}

/// `c_attn(ln_1(embeddings))` of block 0: the `qkv` attention reads there.
fn block0_qkv(params: &GptParams, idx: &Array2<u32>) -> Array3<f32> {
    let (b, t) = idx.dim();
    let c = params.wte.dim().1;
    let mut x = Array3::zeros((b, t, c));
    encoder_forward(&mut x, idx, &params.wte, &params.wpe);
    let (mut ln, mut mean, mut rstd) = (
        Array3::zeros((b, t, c)),
        Array2::zeros((b, t)),
        Array2::zeros((b, t)),
    );
    layernorm_forward(&mut ln, &mut mean, &mut rstd, &x, &params.h[0].ln_1);
    let mut qkv = Array3::zeros((b, t, 3 * c));
    matmul_forward(&mut qkv, &ln, &params.h[0].attn.c_attn);
    qkv
}

/// The trained book model's `qkv` in each block, on the first
/// `block_size` tokens of the validation split: `(1, 64, 3C)` each.
pub fn book_model_qkv() -> Result<Vec<Array3<f32>>> {
    let model = shared_book_model().map_err(anyhow::Error::msg)?;
    let gpt: &Gpt = &model.gpt;
    let t = gpt.config().block_size;
    let split = crate::training::corpus_split()?;
    let idx = Array2::from_shape_vec((1, t), split.val.ids()[..t].to_vec())?;
    let mut acts = listings::model::Activations::new(gpt.config(), 1, t);
    gpt.forward_with(&mut acts, &idx, None)?;
    Ok(acts.layers.iter().map(|l| l.qkv.clone()).collect())
}

/// `qkv` of shape `(b, t, 3c)` drawn from a standard normal (seeded): scores
/// with a spread of about 1 after the `1/√hs`.
pub fn random_qkv(b: usize, t: usize, c: usize, seed: u64) -> Array3<f32> {
    randn((b, t, 3 * c), 1.0, &mut seeded(seed))
}

/// Both attentions on `qkv`: the row of [`comparison_table`].
pub fn compare(qkv: &Array3<f32>, n_head: usize, tiles: Tiles, source: &str) -> FlashRow {
    let (b, t, c3) = qkv.dim();
    let c = c3 / 3;
    let mut expected = Array3::zeros((b, t, c));
    let mut att = Array4::zeros((b, n_head, t, t));
    attention_forward(&mut expected, &mut att, qkv, n_head);
    let mut out = Array3::zeros((b, t, c));
    let flash_largest_bytes = flash_attention_forward(&mut out, qkv, n_head, tiles);
    let max_diff = (out.iter().zip(&expected)).fold(0f32, |m, (a, e)| m.max((a - e).abs()));
    FlashRow {
        t,
        source: source.to_string(),
        max_diff,
        max_out: expected.iter().fold(0f32, |m, e| m.max(e.abs())),
        library_head_bytes: 4 * t * t,
        library_bytes: 4 * att.len(),
        flash_largest_bytes,
    }
}

/// The lengths [`comparison_table`] and [`flash_command`] use by default.
pub const LENGTHS: [usize; 6] = [64, 128, 256, 512, 1024, 2048];

// ANCHOR: comparison_table
/// Tiled attention ([`DEFAULT_TILES`]) against the library's on one
/// sequence at each length of `lengths`: on normal random `qkv`, on the
/// `qkv` of block 0 of a model of the book's shape with fresh weights, and,
/// at the book model's 64 tokens, on the trained book model's `qkv` of
/// each block.
pub fn comparison_table(lengths: &[usize]) -> Result<Vec<FlashRow>> {
    let config = book_model_config();
    let (c, nh) = (config.n_embd, config.n_head);
    let mut rows = Vec::new();
    for &t in lengths {
        rows.push(compare(
            &random_qkv(1, t, c, t as u64),
            nh,
            DEFAULT_TILES,
            "normal random",
        ));
        let qkv = random_model_qkv(t, 1)?;
        rows.push(compare(&qkv, nh, DEFAULT_TILES, "corpus, fresh weights"));
        if t == config.block_size {
            for (l, qkv) in book_model_qkv()?.iter().enumerate() {
                let source = format!("corpus, book model block {l}");
                rows.push(compare(qkv, nh, DEFAULT_TILES, &source));
            }
        }
    }
    Ok(rows)
}
// ANCHOR_END: comparison_table

/// [`comparison_table`] as text.
pub fn format_table(rows: &[FlashRow]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>5}  {:<28} {:>9} {:>8}  {:>12} {:>12} {:>13}",
        "T", "qkv", "max diff", "max |y|", "library/head", "library/call", "flash largest"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:>5}  {:<28} {:>9.1e} {:>8.3}  {:>12} {:>12} {:>13}",
            r.t,
            r.source,
            r.max_diff,
            r.max_out,
            bytes(r.library_head_bytes),
            bytes(r.library_bytes),
            bytes(r.flash_largest_bytes)
        );
    }
    out
}

/// Bytes in the unit that fits: `16 KiB`, `16.0 MiB`.
pub fn bytes(n: usize) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / f64::from(1 << 20)),
        n if n >= 1 << 10 => format!("{} KiB", n >> 10),
        n => format!("{n} B"),
    }
}

/// `lab flash [T...]`: [`comparison_table`] at the given lengths (or
/// [`LENGTHS`]), then both attentions timed on normal random `qkv` of one
/// sequence (the best of a few runs each).
pub fn flash_command(args: &[String]) -> Result<()> {
    let lengths: Vec<usize> = if args.is_empty() {
        LENGTHS.to_vec()
    } else {
        args.iter().map(|a| a.parse()).collect::<Result<_, _>>()?
    };
    print!("{}", format_table(&comparison_table(&lengths)?));
    let config = book_model_config();
    let (c, nh) = (config.n_embd, config.n_head);
    println!(
        "\ntime of one forward, one sequence, {nh} heads of {} channels, {} threads (best of 5):",
        c / nh,
        listings::parallel::num_threads()
    );
    println!("{:>5} {:>12} {:>12}", "T", "library", "flash");
    for &t in &lengths {
        let qkv = random_qkv(1, t, c, t as u64);
        let mut out = Array3::zeros((1, t, c));
        let mut att = Array4::zeros((1, nh, t, t));
        let best = |f: &mut dyn FnMut()| {
            (0..5)
                .map(|_| {
                    let start = Instant::now();
                    f();
                    start.elapsed().as_secs_f64() * 1e3
                })
                .fold(f64::INFINITY, f64::min)
        };
        let library = best(&mut || attention_forward(&mut out, &mut att, &qkv, nh));
        let flash = best(&mut || {
            flash_attention_forward(&mut out, &qkv, nh, DEFAULT_TILES);
        });
        println!("{t:>5} {library:>9.2} ms {flash:>9.2} ms");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn library(qkv: &Array3<f32>, n_head: usize) -> Array3<f32> {
        let (b, t, c3) = qkv.dim();
        let mut out = Array3::zeros((b, t, c3 / 3));
        let mut att = Array4::zeros((b, n_head, t, t));
        attention_forward(&mut out, &mut att, qkv, n_head);
        out
    }

    fn tiled(qkv: &Array3<f32>, n_head: usize, tiles: Tiles) -> Array3<f32> {
        let (b, t, c3) = qkv.dim();
        let mut out = Array3::from_elem((b, t, c3 / 3), f32::NAN); // every number must be written
        flash_attention_forward(&mut out, qkv, n_head, tiles);
        out
    }

    #[test]
    fn tiles_give_the_librarys_numbers() {
        let shapes = [
            (2, 64, 64, 4),
            (1, 100, 32, 2),
            (3, 17, 24, 3),
            (1, 1, 8, 1),
        ];
        let tile_sizes = [
            (64, 64),
            (16, 16),
            (7, 13),
            (13, 7),
            (1, 1),
            (128, 128),
            (64, 5),
        ];
        for (i, &(b, t, c, nh)) in shapes.iter().enumerate() {
            let qkv = random_qkv(b, t, c, i as u64) * 3.0; // sharper softmaxes than at 1
            let expected = library(&qkv, nh);
            for &(queries, keys) in &tile_sizes {
                let out = tiled(&qkv, nh, Tiles { queries, keys });
                let diff = (out.iter().zip(&expected)).fold(0f32, |m, (a, e)| m.max((a - e).abs()));
                assert!(
                    diff < 1e-5,
                    "(B, T, C, nh) = {:?}, tiles {queries}x{keys}: {diff}",
                    (b, t, c, nh)
                );
            }
        }
    }

    #[test]
    fn real_text_through_fresh_weights_agrees() {
        let qkv = random_model_qkv(200, 3).unwrap();
        let row = compare(
            &qkv,
            4,
            Tiles {
                queries: 48,
                keys: 32,
            },
            "test",
        );
        assert!(row.max_diff < 1e-5, "{}", row.max_diff);
    }

    /// Changing the key and value of position `j` changes no output before
    /// `j`, to the bit, and does change the output at `j`.
    #[test]
    fn the_future_is_masked() {
        let (t, c, nh) = (50, 16, 2);
        let qkv = random_qkv(1, t, c, 11);
        let tiles = Tiles {
            queries: 8,
            keys: 6,
        };
        let before = tiled(&qkv, nh, tiles);
        for j in [1, 7, 8, 30, 49] {
            let mut changed = qkv.clone();
            changed
                .slice_mut(s![0, j, c..])
                .mapv_inplace(|x| -2.0 * x + 1.0); // its key and value
            let after = tiled(&changed, nh, tiles);
            assert_eq!(
                before.slice(s![.., ..j, ..]),
                after.slice(s![.., ..j, ..]),
                "j = {j}"
            );
            assert_ne!(
                before.slice(s![.., j, ..]),
                after.slice(s![.., j, ..]),
                "j = {j}"
            );
        }
    }

    #[test]
    fn memory_does_not_grow_with_t() {
        let rows: Vec<FlashRow> = [32, 256]
            .iter()
            .map(|&t| compare(&random_qkv(1, t, 16, 0), 2, DEFAULT_TILES, "test"))
            .collect();
        assert_eq!(rows[0].flash_largest_bytes, rows[1].flash_largest_bytes);
        assert_eq!(rows[0].flash_largest_bytes, 4 * 64 * 64); // one tile of scores
        assert_eq!(rows[1].library_head_bytes, 4 * 256 * 256);
        assert_eq!(rows[1].library_bytes, 2 * 4 * 256 * 256);
        assert_eq!(bytes(rows[0].flash_largest_bytes), "16 KiB");
        assert_eq!(bytes(4 << 20), "4.0 MiB");
    }
}
