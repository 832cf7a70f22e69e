//! Chapter 2, Embeddings: looking at the vectors a model learned.
//!
//! The embedding layer itself is [`listings::model::encoder_forward`]; this
//! module holds the tools the chapter uses to look inside a trained `wte`
//! (`(V, C)`, one row per token): the one-hot view of a lookup, nearest
//! neighbours by cosine similarity, analogies by vector arithmetic, how far
//! training moved each row ([`row_drift`], beside [`token_counts`]), and a
//! two-dimensional projection (principal component analysis, by power
//! iteration) for the chapter's figure.

use std::path::Path;

use ndarray::{Array1, Array2, ArrayRef1, ArrayRef2, Axis};
use thiserror::Error;

use crate::plot::{Axes, LabelledPoints, scatter};
use listings::model::cosine_similarity;
use listings::tokens::{Tokenizer, book_tokenizer};

/// A word that the tokenizer does not spell as one token, so it has no row
/// of its own in `wte`.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{word:?} is not a single token: the tokenizer spells it as {pieces:?}")]
pub struct NotAToken {
    /// The word asked for.
    pub word: String,
    /// The tokens it encodes to.
    pub pieces: Vec<String>,
}

/// The id of `word` if the tokenizer encodes it as exactly one token.
///
/// Words inside a sentence carry their leading space (`" cat"`), and that
/// is a different token from `"cat"` at the start of a line.
pub fn token_of(tokenizer: &Tokenizer, word: &str) -> Result<u32, NotAToken> {
    match tokenizer.encode(word).as_slice() {
        &[id] => Ok(id),
        ids => Err(NotAToken {
            word: word.to_string(),
            pieces: tokenizer.pieces(ids),
        }),
    }
}

// ANCHOR: one_hot
/// A vector of `v` zeros with a single 1 at `id`: token `id` written as a
/// row that a matrix can multiply.
pub fn one_hot(id: usize, v: usize) -> Array1<f32> {
    let mut x = Array1::zeros(v);
    x[id] = 1.0;
    x
}
// ANCHOR_END: one_hot

/// One entry of a nearest-neighbour list.
#[derive(Clone, Debug, PartialEq)]
pub struct Neighbour {
    /// The token's id.
    pub id: u32,
    /// The token's text, such as `" dog"`.
    pub piece: String,
    /// Its cosine similarity to the query vector.
    pub similarity: f32,
}

impl std::fmt::Display for Neighbour {
    /// The token's text and its similarity: `" dog" 0.899`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} {:.3}", self.piece, self.similarity)
    }
}

/// A list of neighbours on one line, separated by commas.
pub fn show(neighbours: &[Neighbour]) -> String {
    let shown: Vec<String> = neighbours.iter().map(Neighbour::to_string).collect();
    shown.join(", ")
}

// ANCHOR: nearest
/// The `k` rows of `wte` most similar to `query` (by cosine similarity),
/// most similar first, leaving out the ids in `exclude`.
///
/// Shapes: `wte` `(V, C)`, `query` `(C)`.
pub fn nearest(
    wte: &ArrayRef2<f32>,
    tokenizer: &Tokenizer,
    query: &ArrayRef1<f32>,
    k: usize,
    exclude: &[u32],
) -> Vec<Neighbour> {
    let mut scored: Vec<(u32, f32)> = wte
        .rows()
        .into_iter()
        .zip(0u32..)
        .filter(|(_, id)| !exclude.contains(id))
        .map(|(row, id)| (id, cosine_similarity(&row, query)))
        .collect();
    // Highest similarity first; equal similarities in id order.
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scored
        .into_iter()
        .take(k)
        .map(|(id, similarity)| Neighbour {
            id,
            piece: tokenizer.pieces(&[id]).remove(0),
            similarity,
        })
        .collect()
}

/// The `k` tokens whose embeddings are closest in direction to `word`'s,
/// the word itself left out.
pub fn nearest_neighbours(
    wte: &ArrayRef2<f32>,
    tokenizer: &Tokenizer,
    word: &str,
    k: usize,
) -> Result<Vec<Neighbour>, NotAToken> {
    let id = token_of(tokenizer, word)?;
    Ok(nearest(wte, tokenizer, &wte.row(id as usize), k, &[id]))
}
// ANCHOR_END: nearest

// ANCHOR: analogy
/// "`a` is to `b` as `c` is to ?": the `k` tokens nearest to
/// `wte[b] - wte[a] + wte[c]`, leaving out the three words themselves (the
/// nearest vector to that sum is very often `b` or `c`).
pub fn analogy(
    wte: &ArrayRef2<f32>,
    tokenizer: &Tokenizer,
    [a, b, c]: [&str; 3],
    k: usize,
) -> Result<Vec<Neighbour>, NotAToken> {
    let (a, b, c) = (
        token_of(tokenizer, a)?,
        token_of(tokenizer, b)?,
        token_of(tokenizer, c)?,
    );
    let row = |id: u32| wte.row(id as usize);
    let query = &row(b) - &row(a) + row(c); // (C)
    Ok(nearest(wte, tokenizer, &query, k, &[a, b, c]))
}
// ANCHOR_END: analogy

// ANCHOR: pca
/// The unit vector along which the rows of `x` (already centred: every
/// column's mean is 0) spread the most: the top eigenvector of `xᵀx`,
/// found by power iteration.
///
/// Multiplying any vector by `xᵀx` again and again turns it towards that
/// eigenvector, because `xᵀx` stretches it most; rescaling to length 1
/// after each step keeps the numbers finite.
pub fn top_direction(x: &ArrayRef2<f32>, iterations: usize) -> Array1<f32> {
    let c = x.ncols();
    // A fixed, lopsided start, so that it is not orthogonal to the answer.
    let mut v = Array1::from_shape_fn(c, |i| 1.0 + i as f32 / c as f32);
    for _ in 0..iterations {
        let w = x.t().dot(&x.dot(&v)); // (C, N) x ((N, C) x (C)) -> (C)
        let norm = w.dot(&w).sqrt();
        if norm == 0.0 {
            break; // all points equal: every direction is as good
        }
        v = w / norm;
    }
    v
}

/// Projects the rows of `x` `(N, C)` onto their two directions of largest
/// spread (principal component analysis): returns `(N, 2)` coordinates.
///
/// The mean row is subtracted first. The second direction is found the
/// same way as the first, after removing from every row its component
/// along the first.
pub fn pca_2d(x: &ArrayRef2<f32>, iterations: usize) -> Array2<f32> {
    let mean = x.mean_axis(Axis(0)).expect("at least one row"); // (C)
    let centred = x.to_owned() - &mean; // (N, C)
    let first = top_direction(&centred, iterations); // (C)
    let along_first = centred.dot(&first); // (N)
    let outer = along_first
        .view()
        .insert_axis(Axis(1))
        .dot(&first.view().insert_axis(Axis(0))); // (N, 1) x (1, C) -> (N, C)
    let rest = &centred - &outer;
    let second = top_direction(&rest, iterations);
    let along_second = centred.dot(&second);
    let columns = [along_first.view(), along_second.view()];
    ndarray::stack(Axis(1), &columns).expect("two columns of one length") // (N, 2)
}
// ANCHOR_END: pca

/// The share of the total spread (variance) of the centred rows of `x` that
/// lies along each of the given unit directions.
pub fn explained_share(x: &ArrayRef2<f32>, coords: &ArrayRef2<f32>) -> Vec<f32> {
    let mean = x.mean_axis(Axis(0)).expect("at least one row");
    let centred = x.to_owned() - &mean;
    let total: f32 = centred.iter().map(|v| v * v).sum();
    coords
        .columns()
        .into_iter()
        .map(|col| col.dot(&col) / total)
        .collect()
}

/// The words of the chapter's figure, by category: each one a single token
/// of the book tokenizer (with its leading space).
pub const FIGURE_WORDS: [(&str, &[&str]); 6] = [
    (
        "colours",
        &["red", "blue", "green", "yellow", "purple", "white"],
    ),
    ("animals", &["dog", "cat", "duck", "goat", "rabbit", "fox"]),
    ("children", &["Mira", "Tom", "Lena", "Sam", "Ivy", "Ben"]),
    (
        "weekdays",
        &[
            "Monday",
            "Tuesday",
            "Wednesday",
            "Thursday",
            "Friday",
            "Saturday",
            "Sunday",
        ],
    ),
    ("numbers", &["one", "two", "three", "four", "five", "six"]),
    (
        "towns",
        &[
            "Tarnfield",
            "Mossenfield",
            "Orreldale",
            "Drayhaven",
            "Stoatwell",
            "Bexenby",
        ],
    ),
];

/// The embeddings of `groups`' words (each looked up with a leading space)
/// projected onto their two directions of largest spread: one
/// `(category, word, x, y)` per word, in order.
pub fn project_words<'a>(
    wte: &ArrayRef2<f32>,
    tokenizer: &Tokenizer,
    groups: &[(&'a str, &[&'a str])],
) -> Result<Vec<(&'a str, &'a str, f32, f32)>, NotAToken> {
    let mut rows = Vec::new();
    let mut names = Vec::new();
    for &(category, words) in groups {
        for &word in words {
            let id = token_of(tokenizer, &format!(" {word}"))?;
            rows.push(wte.row(id as usize));
            names.push((category, word));
        }
    }
    let x = ndarray::stack(Axis(0), &rows).expect("rows of one length"); // (N, C)
    let xy = pca_2d(&x, 200); // (N, 2)
    Ok(names
        .into_iter()
        .zip(xy.rows())
        .map(|((category, word), p)| (category, word, p[0], p[1]))
        .collect())
}

/// Figure 2-1: the book model's embeddings of [`FIGURE_WORDS`], projected
/// to two dimensions, coloured by category.
pub fn projection_figure(path: &Path) -> anyhow::Result<()> {
    let model = crate::book_model::shared_book_model().map_err(anyhow::Error::msg)?;
    let points = project_words(&model.gpt.params().wte, book_tokenizer(), &FIGURE_WORDS)?;
    let groups: Vec<LabelledPoints> = FIGURE_WORDS
        .iter()
        .map(|&(category, _)| LabelledPoints {
            name: category,
            points: points
                .iter()
                .filter(|p| p.0 == category)
                .map(|&(_, word, x, y)| (f64::from(x), f64::from(y), word.to_string()))
                .collect(),
        })
        .collect();
    let axes = Axes {
        title: "The book model's token embeddings, projected to two dimensions",
        x_label: "first principal direction",
        y_label: "second principal direction",
        log_x: false,
        log_y: false,
    };
    scatter(path, &axes, &groups)
}

/// The cosine similarity of every row of `x` `(N, C)` with every other:
/// `(N, N)`, 1 on the diagonal.
pub fn cosine_matrix(x: &ArrayRef2<f32>) -> Array2<f32> {
    let norms = x.map_axis(Axis(1), |row| row.dot(&row).sqrt().max(f32::MIN_POSITIVE)); // (N)
    let unit = x.to_owned() / &norms.insert_axis(Axis(1)); // every row scaled to length 1
    unit.dot(&unit.t()) // (N, C) x (C, N) -> (N, N)
}

/// How many times each of `vocab` tokens occurs in `ids`.
pub fn token_counts(ids: &[u32], vocab: usize) -> Vec<usize> {
    let mut counts = vec![0; vocab];
    for &id in ids {
        counts[id as usize] += 1;
    }
    counts
}

/// How far each row of `trained` `(V, C)` lies from the same row of
/// `initial`: the length of their difference, one number per row `(V)`.
pub fn row_drift(trained: &ArrayRef2<f32>, initial: &ArrayRef2<f32>) -> Array1<f32> {
    let difference = trained - initial; // (V, C)
    difference.map_axis(Axis(1), |row| row.dot(&row).sqrt())
}

/// Figure 2-2: how similar the book model's learned position vectors are
/// to one another, every position against every other.
pub fn positions_figure(path: &Path) -> anyhow::Result<()> {
    let model = crate::book_model::shared_book_model().map_err(anyhow::Error::msg)?;
    let similarity = cosine_matrix(&model.gpt.params().wpe); // (T, T)
    let labels: Vec<String> = (0..similarity.nrows())
        .map(|t| {
            if t % 8 == 0 {
                t.to_string()
            } else {
                String::new()
            }
        })
        .collect();
    let axes = crate::plot::HeatmapAxes {
        title: "Cosine similarity between the learned positions",
        x_label: "position",
        y_label: "position",
        scale_label: "cosine similarity",
    };
    crate::plot::heatmap_with_axes(path, &axes, &similarity.view(), &labels, &labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn a_one_hot_row_times_a_matrix_is_that_row() {
        let wte = array![[1.0_f32, 2.0], [3.0, 4.0], [5.0, 6.0]];
        assert_eq!(one_hot(1, 3), array![0.0, 1.0, 0.0]);
        for id in 0..3 {
            assert_eq!(one_hot(id, 3).dot(&wte), wte.row(id));
        }
    }

    #[test]
    fn counts_and_drift_by_hand() {
        assert_eq!(token_counts(&[2, 0, 2, 2], 4), [1, 0, 3, 0]);
        let initial = array![[1.0_f32, 1.0], [0.0, 0.0]];
        let trained = array![[4.0_f32, 5.0], [0.0, 0.0]];
        assert_eq!(row_drift(&trained, &initial), array![5.0, 0.0]);
    }

    #[test]
    fn a_word_has_a_row_only_if_it_is_one_token() {
        let tokenizer = book_tokenizer();
        let id = token_of(tokenizer, " cat").unwrap();
        assert_eq!(tokenizer.pieces(&[id]), [" cat"]);
        let err = token_of(tokenizer, " cats").unwrap_err();
        assert_eq!(err.pieces, [" cat", "s"]);
        assert!(err.to_string().contains("not a single token"));
    }

    #[test]
    fn neighbours_come_most_similar_first_without_the_excluded() {
        let tokenizer = book_tokenizer();
        // Four tokens (ids 0 to 3, single bytes) in two dimensions.
        let wte = array![[1.0_f32, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]];
        let got = nearest(&wte, tokenizer, &array![1.0, 0.0], 4, &[1]);
        let ids: Vec<u32> = got.iter().map(|n| n.id).collect();
        assert_eq!(ids, [0, 2, 3]);
        assert_eq!(got[0].similarity, 1.0);
        assert_eq!(got[2].similarity, -1.0);
    }

    #[test]
    fn an_analogy_finds_the_vector_that_completes_the_parallelogram() {
        let tokenizer = book_tokenizer();
        let id = |w| token_of(tokenizer, w).unwrap() as usize;
        let mut wte = Array2::zeros((tokenizer.vocab_size(), 3));
        wte.row_mut(id(" he")).assign(&array![1.0, 0.0, 0.0]);
        wte.row_mut(id(" she")).assign(&array![1.0, 1.0, 0.0]);
        wte.row_mut(id(" Tom")).assign(&array![0.0, 0.0, 1.0]);
        wte.row_mut(id(" Mira")).assign(&array![0.0, 1.0, 1.0]);
        wte.row_mut(id(" Max")).assign(&array![0.1, 0.0, 1.0]);
        let best = analogy(&wte, tokenizer, [" he", " she", " Tom"], 2).unwrap();
        assert_eq!(best[0].piece, " Mira");
        assert!((best[0].similarity - 1.0).abs() < 1e-6);
        assert!(analogy(&wte, tokenizer, [" he", " shes", " Tom"], 2).is_err());
    }

    #[test]
    fn power_iteration_finds_the_direction_of_largest_spread() {
        // Points along (3, 4) / 5, with a little spread across it.
        let x = array![
            [3.0_f32, 4.0],
            [-3.0, -4.0],
            [6.0, 8.0],
            [-6.0, -8.0],
            [0.4, -0.3],
            [-0.4, 0.3]
        ];
        let v = top_direction(&x, 100);
        assert!((v[0].abs() - 0.6).abs() < 1e-4 && (v[1].abs() - 0.8).abs() < 1e-4);
        assert!(v[0] * v[1] > 0.0);
    }

    #[test]
    fn pca_recovers_axes_of_decreasing_spread() {
        // Spread 4 along channel 2, 2 along channel 0, nothing along channel 1;
        // every row shifted by 10, which centring removes.
        let x = array![
            [12.0_f32, 10.0, 10.0],
            [8.0, 10.0, 10.0],
            [10.0, 10.0, 14.0],
            [10.0, 10.0, 6.0]
        ];
        let xy = pca_2d(&x, 100);
        let abs = xy.mapv(f32::abs);
        let expected = array![[0.0_f32, 2.0], [0.0, 2.0], [4.0, 0.0], [4.0, 0.0]];
        assert!(
            abs.iter().zip(&expected).all(|(a, e)| (a - e).abs() < 1e-4),
            "{xy}"
        );
        let share = explained_share(&x, &xy);
        assert!((share[0] - 0.8).abs() < 1e-4 && (share[1] - 0.2).abs() < 1e-4);
    }

    #[test]
    fn a_cosine_matrix_compares_every_row_with_every_other() {
        let x = array![[1.0_f32, 0.0], [3.0, 3.0], [0.0, -2.0], [0.0, 0.0]];
        let m = cosine_matrix(&x);
        for i in 0..4 {
            for j in 0..4 {
                let expected = cosine_similarity(&x.row(i), &x.row(j));
                assert!((m[[i, j]] - expected).abs() < 1e-6, "{i} {j}");
            }
        }
        assert!((m[[0, 1]] - 0.5_f32.sqrt()).abs() < 1e-6);
    }

    #[test]
    fn the_figure_words_are_single_tokens() {
        let tokenizer = book_tokenizer();
        for (_, words) in FIGURE_WORDS {
            for word in words {
                token_of(tokenizer, &format!(" {word}")).unwrap();
            }
        }
        let wte = listings::rng::randn(
            (tokenizer.vocab_size(), 8),
            1.0,
            &mut listings::rng::seeded(0),
        );
        let points = project_words(&wte, tokenizer, &FIGURE_WORDS).unwrap();
        assert_eq!(points.len(), 37);
        assert_eq!(points[0].0, "colours");
        assert_eq!(points[36].1, "Bexenby");
    }
}
