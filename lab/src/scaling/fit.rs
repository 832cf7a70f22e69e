//! Least-squares fits of scaling laws, in plain Rust: no optimiser crate,
//! nothing random, the same answer on every machine.
//!
//! Both laws chapter 9 fits are linear in all but their exponents:
//!
//! - `L(N) = E + A·N^-α` ([`fit_power_law`]) is linear in `E` and `A` once
//!   `α` is fixed;
//! - `L(N, D) = E + A·N^-α + B·D^-β` ([`fit_chinchilla`]) is linear in `E`,
//!   `A` and `B` once `α` and `β` are fixed.
//!
//! So each fit searches the exponents on a grid and, at every point of the
//! grid, solves the linear least-squares problem for the rest exactly
//! ([`least_squares`], by QR), keeping the coefficients non-negative (a
//! negative `E`, `A` or `B` has no meaning: [`least_squares_nonneg`] tries
//! every subset of them fixed at zero). A coarse grid (steps of 0.01) finds
//! the basin and a fine one (steps of 0.0001) around the best point refines
//! it: the loss surface in the exponents is smooth, and a search over a
//! grid cannot be thrown off by a bad starting point as Gauss-Newton can.
//! This is the "variable projection" idea: the linear parameters are
//! projected out and only the exponents are searched.
//!
//! The fits minimise the squared error of the loss itself. Hoffmann et al.
//! (2022) minimised a Huber loss of the error in log-loss, with L-BFGS from
//! a grid of starting points; with a few dozen runs and no outliers, plain
//! least squares is the simpler choice, and the tests check it recovers the
//! parameters of data generated from the formula.

/// `L(N) = E + A·N^-α`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PowerLaw {
    /// The loss no size removes.
    pub e: f64,
    /// The scale of the term that falls with `N`.
    pub a: f64,
    /// The exponent of `N`.
    pub alpha: f64,
    /// The root-mean-square error of the fit over its points.
    pub rmse: f64,
}

impl PowerLaw {
    /// The fitted loss at `n`.
    pub fn at(&self, n: f64) -> f64 {
        self.e + self.a * n.powf(-self.alpha)
    }
}

/// `L(N, D) = E + A·N^-α + B·D^-β`, the form of Hoffmann et al. 2022.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Chinchilla {
    /// The loss no size and no data remove.
    pub e: f64,
    /// The scale of the term that falls with the parameters `N`.
    pub a: f64,
    /// The exponent of `N`.
    pub alpha: f64,
    /// The scale of the term that falls with the tokens `D`.
    pub b: f64,
    /// The exponent of `D`.
    pub beta: f64,
    /// The root-mean-square error of the fit over its points.
    pub rmse: f64,
}

impl Chinchilla {
    /// The fitted loss of `n` parameters trained on `d` tokens.
    pub fn at(&self, n: f64, d: f64) -> f64 {
        self.e + self.a * n.powf(-self.alpha) + self.b * d.powf(-self.beta)
    }

    /// The compute-optimal parameters for `flops` of training at
    /// `flops_per_param_token` FLOPs per parameter and token (about 6):
    /// the `N` that minimises [`Chinchilla::at`] with
    /// `D = flops / (flops_per_param_token · N)`. Setting the derivative
    /// to zero gives `α·A·N^-α = β·B·D^-β`, so
    /// `N = G·(C/k)^(β/(α+β))` with `G = (α·A / (β·B))^(1/(α+β))`
    /// (Hoffmann et al. 2022, equation 4).
    pub fn optimal_params(&self, flops: f64, flops_per_param_token: f64) -> f64 {
        let g = (self.alpha * self.a / (self.beta * self.b)).powf(1.0 / (self.alpha + self.beta));
        g * (flops / flops_per_param_token).powf(self.beta / (self.alpha + self.beta))
    }
}

/// The least-squares solution of `Σ_j x_j·columns[j] ≈ y` and its sum of
/// squared residuals, by modified Gram-Schmidt QR (better conditioned than
/// the normal equations when the columns differ in scale by orders of
/// magnitude, as `1` and `N^-α` do). `None` if the columns are linearly
/// dependent (to rounding).
pub fn least_squares(columns: &[Vec<f64>], y: &[f64]) -> Option<(Vec<f64>, f64)> {
    let k = columns.len();
    let n = y.len();
    assert!(
        columns.iter().all(|c| c.len() == n),
        "columns and y differ in length"
    );
    let mut q: Vec<Vec<f64>> = columns.to_vec();
    let mut r = vec![vec![0.0; k]; k];
    for j in 0..k {
        let original = norm(&columns[j]);
        for i in 0..j {
            let dot: f64 = q[i].iter().zip(&q[j]).map(|(a, b)| a * b).sum();
            r[i][j] = dot;
            let qi = q[i].clone();
            for (v, u) in q[j].iter_mut().zip(&qi) {
                *v -= dot * u;
            }
        }
        let len = norm(&q[j]);
        if len.is_nan() || len <= 1e-10 * original {
            return None;
        }
        r[j][j] = len;
        for v in &mut q[j] {
            *v /= len;
        }
    }
    // Rx = Qᵀy, by back-substitution.
    let qty: Vec<f64> = q
        .iter()
        .map(|c| c.iter().zip(y).map(|(a, b)| a * b).sum())
        .collect();
    let mut x = vec![0.0; k];
    for j in (0..k).rev() {
        let rest: f64 = (j + 1..k).map(|i| r[j][i] * x[i]).sum();
        x[j] = (qty[j] - rest) / r[j][j];
    }
    let sse = (0..n)
        .map(|i| {
            let fit: f64 = (0..k).map(|j| x[j] * columns[j][i]).sum();
            (y[i] - fit).powi(2)
        })
        .sum();
    Some((x, sse))
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// [`least_squares`] with every coefficient at least 0: the best, over
/// every subset of the columns, of the unconstrained solution on that
/// subset (the others at 0) whose coefficients are all non-negative. Exact
/// for the two or three columns of the scaling laws (3 columns: 7 subsets).
pub fn least_squares_nonneg(columns: &[Vec<f64>], y: &[f64]) -> (Vec<f64>, f64) {
    let k = columns.len();
    let mut best = (vec![0.0; k], y.iter().map(|v| v * v).sum::<f64>());
    for mask in 1..(1_usize << k) {
        let chosen: Vec<usize> = (0..k).filter(|j| mask & (1 << j) != 0).collect();
        let cols: Vec<Vec<f64>> = chosen.iter().map(|&j| columns[j].clone()).collect();
        let Some((x, sse)) = least_squares(&cols, y) else {
            continue;
        };
        if x.iter().all(|&v| v >= 0.0) && sse < best.1 {
            let mut full = vec![0.0; k];
            for (&j, v) in chosen.iter().zip(x) {
                full[j] = v;
            }
            best = (full, sse);
        }
    }
    best
}

/// The exponent grid: 0.01 to 2.00 in steps of 0.01.
fn coarse_exponents() -> impl Iterator<Item = f64> {
    (1..=200).map(|i| f64::from(i) * 0.01)
}

/// A fine grid around `centre`: steps of 0.0001 over ±0.01, kept positive.
fn fine_exponents(centre: f64) -> impl Iterator<Item = f64> {
    (-100..=100)
        .map(move |i| centre + f64::from(i) * 1e-4)
        .filter(|&x| x > 0.0)
}

/// The power of every x, `x^-exponent`, scaled by `x0^exponent` so the
/// column is near 1 whatever the exponent (`x0` is the geometric mean of
/// the xs); the coefficient found for it is then divided back.
fn scaled_powers(xs: &[f64], x0: f64, exponent: f64) -> Vec<f64> {
    xs.iter().map(|&x| (x / x0).powf(-exponent)).collect()
}

fn geometric_mean(xs: &[f64]) -> f64 {
    (xs.iter().map(|x| x.ln()).sum::<f64>() / xs.len() as f64).exp()
}

/// Fits `L(N) = E + A·N^-α` to `(N, L)` points by least squares (`E`,
/// `A` ≥ 0; `α` in 0.01..2, to 0.0001).
///
/// # Panics
///
/// With fewer than three points, or an `N` that is not positive.
pub fn fit_power_law(points: &[(f64, f64)]) -> PowerLaw {
    assert!(points.len() >= 3, "three parameters need three points");
    assert!(points.iter().all(|p| p.0 > 0.0));
    let ns: Vec<f64> = points.iter().map(|p| p.0).collect();
    let ys: Vec<f64> = points.iter().map(|p| p.1).collect();
    let n0 = geometric_mean(&ns);
    let solve = |alpha: f64| {
        let columns = vec![vec![1.0; ns.len()], scaled_powers(&ns, n0, alpha)];
        let (x, sse) = least_squares_nonneg(&columns, &ys);
        (sse, alpha, x)
    };
    let best = |grid: &mut dyn Iterator<Item = f64>| {
        grid.map(solve)
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .expect("a grid")
    };
    let coarse = best(&mut coarse_exponents());
    let (sse, alpha, x) = best(&mut fine_exponents(coarse.1));
    PowerLaw {
        e: x[0],
        a: x[1] * n0.powf(alpha),
        alpha,
        rmse: (sse / ns.len() as f64).sqrt(),
    }
}

/// Fits `L = (N_c / N)^α`, Kaplan et al.'s form without a floor, by a
/// straight line through `(ln N, ln L)`: returns `(N_c, α)`.
///
/// # Panics
///
/// With fewer than two points, or an `N` or `L` that is not positive.
pub fn fit_pure_power_law(points: &[(f64, f64)]) -> (f64, f64) {
    assert!(points.len() >= 2, "a line needs two points");
    assert!(points.iter().all(|p| p.0 > 0.0 && p.1 > 0.0));
    let columns = vec![
        vec![1.0; points.len()],
        points.iter().map(|p| p.0.ln()).collect(),
    ];
    let ys: Vec<f64> = points.iter().map(|p| p.1.ln()).collect();
    let (x, _) = least_squares(&columns, &ys).expect("two distinct N");
    // ln L = α·ln N_c − α·ln N.
    let alpha = -x[1];
    ((x[0] / alpha).exp(), alpha)
}

/// Fits `L(N, D) = E + A·N^-α + B·D^-β` to `(N, D, L)` points by least
/// squares (`E`, `A`, `B` ≥ 0; `α` and `β` in 0.01..2, to 0.0001).
///
/// # Panics
///
/// With fewer than five points, or an `N` or `D` that is not positive.
pub fn fit_chinchilla(points: &[(f64, f64, f64)]) -> Chinchilla {
    assert!(points.len() >= 5, "five parameters need five points");
    assert!(points.iter().all(|p| p.0 > 0.0 && p.1 > 0.0));
    let ns: Vec<f64> = points.iter().map(|p| p.0).collect();
    let ds: Vec<f64> = points.iter().map(|p| p.1).collect();
    let ys: Vec<f64> = points.iter().map(|p| p.2).collect();
    let (n0, d0) = (geometric_mean(&ns), geometric_mean(&ds));
    // The powers of N depend on α only and those of D on β only: computed
    // once per exponent, not once per pair.
    let columns_of = |xs: &[f64], x0: f64, grid: &[f64]| -> Vec<Vec<f64>> {
        grid.iter().map(|&e| scaled_powers(xs, x0, e)).collect()
    };
    let search = |alphas: &[f64], betas: &[f64]| {
        let (na, db) = (columns_of(&ns, n0, alphas), columns_of(&ds, d0, betas));
        let mut best = (f64::INFINITY, 0.0, 0.0, vec![]);
        for (&alpha, n_col) in alphas.iter().zip(&na) {
            for (&beta, d_col) in betas.iter().zip(&db) {
                let columns = vec![vec![1.0; ys.len()], n_col.clone(), d_col.clone()];
                let (x, sse) = least_squares_nonneg(&columns, &ys);
                if sse < best.0 {
                    best = (sse, alpha, beta, x);
                }
            }
        }
        best
    };
    let coarse: Vec<f64> = coarse_exponents().collect();
    let (_, alpha, beta, _) = search(&coarse, &coarse);
    let (fine_a, fine_b): (Vec<f64>, Vec<f64>) = (
        fine_exponents(alpha).collect(),
        fine_exponents(beta).collect(),
    );
    let (sse, alpha, beta, x) = search(&fine_a, &fine_b);
    Chinchilla {
        e: x[0],
        a: x[1] * n0.powf(alpha),
        alpha,
        b: x[2] * d0.powf(beta),
        beta,
        rmse: (sse / ys.len() as f64).sqrt(),
    }
}

/// The least-squares parabola `y = c0 + c1·x + c2·x²` through the points,
/// as `[c0, c1, c2]`; `None` with fewer than three distinct xs.
pub fn fit_parabola(points: &[(f64, f64)]) -> Option<[f64; 3]> {
    let columns = vec![
        vec![1.0; points.len()],
        points.iter().map(|p| p.0).collect(),
        points.iter().map(|p| p.0 * p.0).collect(),
    ];
    let ys: Vec<f64> = points.iter().map(|p| p.1).collect();
    let (x, _) = least_squares(&columns, &ys)?;
    Some([x[0], x[1], x[2]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: f64, want: f64, tolerance: f64) -> bool {
        (got - want).abs() <= tolerance * want.abs().max(1e-12)
    }

    #[test]
    fn least_squares_solves_an_exact_system_and_refuses_a_dependent_one() {
        let columns = vec![vec![1.0, 1.0, 1.0, 1.0], vec![0.0, 1.0, 2.0, 3.0]];
        let y = [1.0, 3.0, 5.0, 7.0]; // 1 + 2x
        let (x, sse) = least_squares(&columns, &y).unwrap();
        assert!(close(x[0], 1.0, 1e-12) && close(x[1], 2.0, 1e-12), "{x:?}");
        assert!(sse < 1e-20);
        let dependent = vec![vec![1.0, 2.0, 3.0], vec![2.0, 4.0, 6.0]];
        assert!(least_squares(&dependent, &[1.0, 2.0, 3.0]).is_none());
        // A best fit, not an exact one: intercept 1.3, slope 1.8 (by hand:
        // slope = Sxy / Sxx = 9 / 5), residuals ±0.2 and ±0.6.
        let (x, sse) = least_squares(&columns, &[1.5, 2.5, 5.5, 6.5]).unwrap();
        assert!(close(x[0], 1.3, 1e-12) && close(x[1], 1.8, 1e-12), "{x:?}");
        assert!(close(sse, 0.8, 1e-12), "{sse}");
    }

    #[test]
    fn non_negative_least_squares_keeps_coefficients_at_or_above_zero() {
        // y = 2 - x would need a negative slope: the best non-negative fit
        // is a constant, the mean.
        let columns = vec![vec![1.0; 3], vec![0.0, 1.0, 2.0]];
        let (x, _) = least_squares_nonneg(&columns, &[2.0, 1.0, 0.0]);
        assert_eq!(x[1], 0.0);
        assert!(close(x[0], 1.0, 1e-12), "{x:?}");
    }

    #[test]
    fn the_power_law_fit_recovers_known_parameters() {
        let (e, a, alpha) = (1.2, 35.0, 0.45);
        let points: Vec<(f64, f64)> = [3e3, 8e3, 2e4, 6e4, 1.5e5, 4e5]
            .iter()
            .map(|&n: &f64| (n, e + a * n.powf(-alpha)))
            .collect();
        let fit = fit_power_law(&points);
        assert!(close(fit.alpha, alpha, 1e-3), "{fit:?}");
        assert!(close(fit.e, e, 1e-3) && close(fit.a, a, 1e-2), "{fit:?}");
        assert!(fit.rmse < 1e-4);
        for &(n, l) in &points {
            assert!(close(fit.at(n), l, 1e-4));
        }
        // Kaplan's form, with no floor, on data from it.
        let kaplan: Vec<(f64, f64)> = [1e4, 1e5, 1e6]
            .iter()
            .map(|&n: &f64| (n, (8.8e13 / n).powf(0.076)))
            .collect();
        let (n_c, alpha) = fit_pure_power_law(&kaplan);
        assert!(close(alpha, 0.076, 1e-9) && close(n_c, 8.8e13, 1e-6));
    }

    #[test]
    fn the_chinchilla_fit_recovers_known_parameters() {
        // Chinchilla's own constants (Hoffmann et al. 2022), on a grid of
        // sizes and token counts like a sweep's, and a second set with
        // exponents apart and a floor of our scale.
        for (e, a, alpha, b, beta) in [
            (1.69, 406.4, 0.34, 410.7, 0.28),
            (0.9, 60.0, 0.55, 25.0, 0.3),
        ] {
            let mut points = Vec::new();
            for n in [5e3_f64, 9e3, 1.7e4, 3e4, 5.5e4, 1e5, 1.6e5] {
                for c in [1e10, 3e10, 1e11] {
                    let d = c / (6.0 * n);
                    points.push((n, d, e + a * n.powf(-alpha) + b * d.powf(-beta)));
                }
            }
            let fit = fit_chinchilla(&points);
            assert!(close(fit.alpha, alpha, 2e-3), "{fit:?}");
            assert!(close(fit.beta, beta, 2e-3), "{fit:?}");
            assert!(close(fit.e, e, 1e-2), "{fit:?}");
            assert!(close(fit.a, a, 5e-2) && close(fit.b, b, 5e-2), "{fit:?}");
            assert!(fit.rmse < 1e-4, "{fit:?}");
        }
    }

    #[test]
    fn the_optimum_balances_the_two_terms() {
        let law = Chinchilla {
            e: 1.69,
            a: 406.4,
            alpha: 0.34,
            b: 410.7,
            beta: 0.28,
            rmse: 0.0,
        };
        let c = 5.76e23; // Chinchilla's own budget
        let n = law.optimal_params(c, 6.0);
        let loss = |n: f64| law.at(n, c / (6.0 * n));
        assert!(loss(n) < loss(n * 1.01) && loss(n) < loss(n / 1.01));
        // G = (0.34·406.4 / (0.28·410.7))^(1/0.62) = 1.345, times
        // (5.76e23 / 6)^(0.28/0.62): about 32 billion, by hand.
        assert!((31e9..33e9).contains(&n), "{n:e}");
    }

    #[test]
    fn a_parabola_through_three_points() {
        let [c0, c1, c2] = fit_parabola(&[(0.0, 1.0), (1.0, 0.0), (2.0, 1.0)]).unwrap();
        assert!(close(c0, 1.0, 1e-12) && close(c1, -2.0, 1e-12) && close(c2, 1.0, 1e-12));
        assert!(fit_parabola(&[(1.0, 1.0), (1.0, 2.0), (1.0, 3.0)]).is_none());
    }
}
