//! What chapter 9's sweep says: the compute-optimal size of each budget,
//! the laws fitted to the runs, the same compute on repeated text; the
//! table the `sweep` command prints and the two figures.
//!
//! ```text
//! cargo run -p lab --release -- sweep
//! ```
//!
//! The runs are [`super::sweep`]'s (trained once, then read from the
//! cache); everything here is computed from them in under a second (the
//! two `L(N, D)` fits take most of it), so it lives in a file of its own:
//! changing a figure or the report does not train the sweep again.
//!
//! Measured cold (release build, nothing cached, the two cores shared
//! with other sessions' builds at a load average of 6 to 9): the command
//! trained the sweep and the repetition runs in 225, 232 and 162 s over
//! three runs, with the same numbers to the bit each time; read from the
//! cache, it takes 0.7 s.
//!
//! - **The compute-optimal point of a budget** ([`optimum`]): the minimum
//!   of the parabola in `ln N` through the budget's best run and its two
//!   neighbours in size, as Hoffmann et al. (2022) fitted a parabola to
//!   each of their iso-FLOP profiles (their approach 2); its tokens per
//!   parameter beside Chinchilla's ~20.
//! - **`L(N)` on the frontier** ([`fit::fit_power_law`]): `E + A/N^α`
//!   through the optima of the budgets, and Kaplan et al.'s floorless
//!   `(N_c/N)^α_N` ([`fit::fit_pure_power_law`]), of their form. Its
//!   exponent is not their α_N ≈ 0.076, which is for models trained to
//!   convergence; the chapter compares the loss's slope against compute
//!   through the optima with their α_C ≈ 0.050 instead. With three budgets there are
//!   three optima: the first fit has three parameters and passes through
//!   them exactly (it tests nothing), the second has one point to spare.
//! - **`L(N, D) = E + A/N^α + B/D^β`** ([`fit::fit_chinchilla`], their
//!   approach 3) over the runs that read at least
//!   [`MIN_FIT_TOKENS_PER_PARAM`] tokens per parameter, and over all of
//!   them. The runs that read fewer (the smallest budget's largest shapes,
//!   a few hundred steps each) have barely started: at a given number of
//!   tokens a larger one of them does no better than a smaller, which the
//!   law, falling in `N` at every `D`, cannot follow.
//!
//! Published values, for comparison:
//!
//! - Kaplan et al. 2020, "Scaling Laws for Neural Language Models",
//!   arXiv:2001.08361, equation 1.1: `L(N) = (N_c/N)^α_N`, α_N ≈ 0.076,
//!   N_c ≈ 8.8e13, for models trained to convergence, `N` counting
//!   non-embedding parameters.
//! - Hoffmann et al. 2022, "Training Compute-Optimal Large Language
//!   Models", arXiv:2203.15556, section 3.3 (approach 3): `E = 1.69`,
//!   `A = 406.4`, `B = 410.7`, `α = 0.34`, `β = 0.28`, `N` counting all
//!   parameters; and about 20 tokens per parameter at the optimum
//!   (Chinchilla: 70B parameters, 1.4T tokens). The sweep counts all
//!   parameters too, as Pearce and Song 2024 ("Reconciling Kaplan and
//!   Chinchilla Scaling Laws", arXiv:2406.12907) recommend after tracing
//!   much of the two papers' disagreement to Kaplan's non-embedding count.
//! - Muennighoff et al. 2023, "Scaling Data-Constrained Language Models",
//!   arXiv:2305.16264, abstract: "training with up to 4 epochs of repeated
//!   data yields negligible changes to loss compared to having unique
//!   data".

use std::path::Path;
use std::time::Instant;

use anyhow::{Result, bail};
use plotters::prelude::{RGBColor, SeriesLabelPosition};

use super::fit::{self, Chinchilla, PowerLaw};
use super::sweep::{
    BATCH_SIZE, BUDGETS, GRID, REPEAT_BUDGET, REPEAT_SHAPE, Run, Runs, SEQ_LEN, VAL_WINDOWS,
    VOCAB_SIZE, trained,
};

/// Kaplan et al. 2020's exponent of `L(N)`.
pub const KAPLAN_ALPHA_N: f64 = 0.076;
/// Hoffmann et al. 2022's exponent of `N` in `L(N, D)`.
pub const CHINCHILLA_ALPHA: f64 = 0.34;
/// Hoffmann et al. 2022's exponent of `D` in `L(N, D)`.
pub const CHINCHILLA_BETA: f64 = 0.28;
/// Hoffmann et al. 2022's compute-optimal tokens per parameter, about.
pub const CHINCHILLA_TOKENS_PER_PARAM: f64 = 20.0;

/// The fewest tokens per parameter of a run the main `L(N, D)` fit uses.
pub const MIN_FIT_TOKENS_PER_PARAM: f64 = 2.0;

/// The compute-optimal point of one budget.
#[derive(Clone, Debug, PartialEq)]
pub struct Optimum {
    /// The budget, in FLOPs.
    pub budget: u64,
    /// The run with the lowest validation loss.
    pub best: Run,
    /// The parameters at the minimum of the parabola in `ln N` through the
    /// best run and its neighbours in size (the best run's if the best is
    /// the smallest or largest shape the budget trains, or the parabola
    /// opens downwards).
    pub params: f64,
    /// The parabola's loss there.
    pub loss: f64,
    /// Tokens per parameter there: `budget / (k·N) / N`, with `k` the
    /// best run's FLOPs per token per parameter.
    pub tokens_per_param: f64,
    /// Whether the minimum is inside the budget's shapes (not at the
    /// smallest or largest).
    pub interior: bool,
}

// ANCHOR: optimum
/// The compute-optimal point of one budget's runs.
pub fn optimum(budget: u64, runs: &[&Run]) -> Optimum {
    let mut sorted: Vec<&Run> = runs.to_vec();
    sorted.sort_by_key(|r| r.params);
    let i = (0..sorted.len())
        .min_by(|&a, &b| sorted[a].val_loss.total_cmp(&sorted[b].val_loss))
        .expect("runs");
    let best = sorted[i].clone();
    let k = best.flops_per_token as f64 / best.params as f64;
    let at = |params: f64, loss: f64, interior: bool| Optimum {
        budget,
        best: best.clone(),
        params,
        loss,
        tokens_per_param: budget as f64 / (k * params) / params,
        interior,
    };
    let (params, loss) = (best.params as f64, f64::from(best.val_loss));
    if i == 0 || i + 1 == sorted.len() {
        return at(params, loss, false);
    }
    let points: Vec<(f64, f64)> = (sorted[i - 1..=i + 1].iter())
        .map(|r| ((r.params as f64).ln(), f64::from(r.val_loss)))
        .collect();
    match fit::fit_parabola(&points) {
        Some([c0, c1, c2]) if c2 > 0.0 => {
            let x = -c1 / (2.0 * c2);
            at(x.exp(), c0 + c1 * x + c2 * x * x, true)
        }
        _ => at(params, loss, true),
    }
}
// ANCHOR_END: optimum

/// The sweep's runs and what they say.
#[derive(Clone, Debug, PartialEq)]
pub struct Laws {
    /// The runs.
    pub runs: Runs,
    /// One per budget, in [`BUDGETS`] order.
    pub optima: Vec<Optimum>,
    /// `L(N) = E + A/N^α` through the optima.
    pub frontier: PowerLaw,
    /// Kaplan et al.'s `L(N) = (N_c/N)^α_N` through the optima: `(N_c, α_N)`.
    pub frontier_kaplan: (f64, f64),
    /// `L(N, D) = E + A/N^α + B/D^β` over the runs that read at least
    /// [`MIN_FIT_TOKENS_PER_PARAM`] tokens per parameter.
    pub chinchilla: Chinchilla,
    /// How many runs that is.
    pub chinchilla_runs: usize,
    /// The same law over every run of the sweep.
    pub chinchilla_all: Chinchilla,
}

impl Laws {
    /// The sweep's runs at `budget`, in [`GRID`] order.
    pub fn budget_runs(&self, budget: u64) -> impl Iterator<Item = &Run> {
        self.runs.sweep.iter().filter(move |r| r.budget == budget)
    }

    /// The training FLOPs per token per parameter, averaged over the runs
    /// (the 6 of `C ≈ 6·N·D`, counted exactly: 5.9 to 6.3 here).
    pub fn flops_per_param_token(&self) -> f64 {
        let runs = &self.runs.sweep;
        (runs.iter())
            .map(|r| r.flops_per_token as f64 / r.params as f64)
            .sum::<f64>()
            / runs.len() as f64
    }

    /// Tokens per parameter at the optimum the `L(N, D)` fit predicts for
    /// `budget`.
    pub fn fitted_tokens_per_param(&self, budget: u64) -> f64 {
        let k = self.flops_per_param_token();
        let n = self.chinchilla.optimal_params(budget as f64, k);
        budget as f64 / (k * n) / n
    }
}

// ANCHOR: laws
/// The optima and the fits of `runs`.
pub fn laws(runs: Runs) -> Laws {
    let optima: Vec<Optimum> = (BUDGETS.iter())
        .map(|&b| {
            let of_budget: Vec<&Run> = runs.sweep.iter().filter(|r| r.budget == b).collect();
            optimum(b, &of_budget)
        })
        .collect();
    let frontier: Vec<(f64, f64)> = optima.iter().map(|o| (o.params, o.loss)).collect();
    let point = |r: &Run| (r.params as f64, r.tokens as f64, f64::from(r.val_loss));
    let trained: Vec<_> = (runs.sweep.iter())
        .filter(|r| r.tokens_per_param() >= MIN_FIT_TOKENS_PER_PARAM)
        .map(point)
        .collect();
    let all: Vec<_> = runs.sweep.iter().map(point).collect();
    Laws {
        frontier: fit::fit_power_law(&frontier),
        frontier_kaplan: fit::fit_pure_power_law(&frontier),
        chinchilla: fit::fit_chinchilla(&trained),
        chinchilla_runs: trained.len(),
        chinchilla_all: fit::fit_chinchilla(&all),
        optima,
        runs,
    }
}
// ANCHOR_END: laws

/// [`laws`] of the trained runs ([`trained`]), worked out once per
/// process and shared (the fits take about a second).
pub fn scaling_laws() -> Result<&'static Laws> {
    static LAWS: std::sync::OnceLock<Result<Laws, String>> = std::sync::OnceLock::new();
    LAWS.get_or_init(|| trained().map(laws).map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow::anyhow!("{e}"))
}

// ---------------------------------------------------------------------------
// The report.

/// `1e11` for 1e11, `2.5e11` for 2.5e11.
pub fn short_flops(flops: u64) -> String {
    let e = (flops as f64).log10().floor() as i32;
    let m = flops as f64 / 10f64.powi(e);
    let m = format!("{m:.2}");
    format!("{}e{e}", m.trim_end_matches('0').trim_end_matches('.'))
}

/// The table of runs, the fits and the repetition runs, as the `sweep`
/// command prints them. Every number but the training times is the same
/// on every run of the command.
pub fn report(laws: &Laws) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let runs = &laws.runs.sweep;
    let _ = writeln!(
        out,
        "iso-FLOP sweep: {} runs of {} shapes at {} budgets; characters ({VOCAB_SIZE} symbols), \
         batches of {BATCH_SIZE} x {SEQ_LEN}; held-out loss over {} characters",
        runs.len(),
        GRID.len(),
        BUDGETS.len(),
        VAL_WINDOWS * SEQ_LEN
    );
    let _ = writeln!(
        out,
        "\n{:>6} {:>5} {:>5} {:>8} {:>6} {:>9} {:>7} {:>6} {:>7} {:>6}",
        "budget", "width", "depth", "params", "steps", "tokens", "tok/par", "train", "val", "secs"
    );
    for r in runs {
        let best = laws.optima.iter().any(|o| o.best == *r);
        let _ = writeln!(
            out,
            "{:>6} {:>5} {:>5} {:>8} {:>6} {:>9} {:>7.1} {:>6.3} {:>6.3}{} {:>6.1}",
            short_flops(r.budget),
            r.shape.width,
            r.shape.depth,
            r.params,
            r.steps,
            r.tokens,
            r.tokens_per_param(),
            r.train_loss,
            r.val_loss,
            if best { "*" } else { " " },
            r.seconds,
        );
    }
    let repeats = &laws.runs.repetition;
    let seconds: f64 = (runs.iter().chain(&repeats[1..])).map(|r| r.seconds).sum();
    let _ = writeln!(
        out,
        "* the best of its budget. train: the mean batch loss of the last 50 steps; val: the \
         held-out loss.\nsecs: the run's training time when it was trained ({seconds:.0} s for \
         the sweep and the repetition runs); it differs from machine to machine."
    );
    let _ = writeln!(
        out,
        "\ncompute-optimal points (a parabola in ln N through the best run and its neighbours):"
    );
    for o in &laws.optima {
        let _ = writeln!(
            out,
            "  {:>6}: N = {:>6.0}, loss {:.3}, {:>5.1} tokens per parameter (best run {}, {} parameters){}",
            short_flops(o.budget),
            o.params,
            o.loss,
            o.tokens_per_param,
            o.best.shape,
            o.best.params,
            if o.interior {
                ""
            } else {
                "; at the edge of the budget's shapes"
            },
        );
    }
    let f = &laws.frontier;
    let _ = writeln!(
        out,
        "\nL(N) = E + A/N^alpha through the {} optima: E = {:.3}, A = {:.4e}, alpha = {:.3} \
         (three parameters, three points: an exact fit)",
        laws.optima.len(),
        f.e,
        f.a,
        f.alpha,
    );
    let (n_c, alpha_n) = laws.frontier_kaplan;
    let _ = writeln!(
        out,
        "L(N) = (N_c/N)^alpha_N through the optima: alpha_N = {alpha_n:.3}, N_c = {n_c:.3e} \
         (Kaplan et al. 2020's alpha_N = {KAPLAN_ALPHA_N} is for models trained to convergence)"
    );
    for (what, c) in [
        (
            format!(
                "the {} runs with at least {MIN_FIT_TOKENS_PER_PARAM} tokens per parameter",
                laws.chinchilla_runs
            ),
            &laws.chinchilla,
        ),
        (format!("all {} runs", runs.len()), &laws.chinchilla_all),
    ] {
        let _ = writeln!(
            out,
            "L(N, D) = E + A/N^alpha + B/D^beta over {what}:\n  E = {:.3}, A = {:.4e}, \
             alpha = {:.3}, B = {:.4e}, beta = {:.3}; rms error {:.3}",
            c.e, c.a, c.alpha, c.b, c.beta, c.rmse
        );
    }
    let _ = writeln!(
        out,
        "  (Hoffmann et al. 2022: alpha = {CHINCHILLA_ALPHA}, beta = {CHINCHILLA_BETA})"
    );
    let _ = writeln!(
        out,
        "\ncompute-optimal tokens per parameter (Hoffmann et al. 2022: about {CHINCHILLA_TOKENS_PER_PARAM}):"
    );
    for o in &laws.optima {
        let _ = writeln!(
            out,
            "  {:>6}: {:>5.1} from the parabola, {:>5.1} from the L(N, D) fit",
            short_flops(o.budget),
            o.tokens_per_param,
            laws.fitted_tokens_per_param(o.budget)
        );
    }
    let fresh = &repeats[0];
    let _ = writeln!(
        out,
        "\nrepetition: {REPEAT_SHAPE} ({} parameters) at {} FLOPs, {} tokens in every run",
        fresh.params,
        short_flops(REPEAT_BUDGET),
        fresh.tokens
    );
    for r in repeats {
        let _ = writeln!(
            out,
            "  {:>2} epoch{} of {:>7} tokens: train {:.3}, val {:.3} ({:+.3} against fresh text)",
            r.epochs,
            if r.epochs == 1 { " " } else { "s" },
            r.unique_tokens,
            r.train_loss,
            r.val_loss,
            r.val_loss - fresh.val_loss
        );
    }
    let (first, second) = (&laws.optima[0], &laws.optima[1]);
    let _ = writeln!(
        out,
        "  (for scale: the compute-optimal loss at {} FLOPs is {:.3} below that at {})",
        short_flops(second.budget),
        first.loss - second.loss,
        short_flops(first.budget),
    );
    out
}

/// lab's `sweep` command: trains what is not cached, prints [`report`].
pub fn sweep_command(args: &[String]) -> Result<()> {
    if !args.is_empty() {
        bail!("usage: lab sweep");
    }
    let start = Instant::now();
    let laws = scaling_laws()?;
    print!("{}", report(laws));
    eprintln!(
        "(the runs read or trained and the laws fitted in {:.1} s)",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// The figures.

/// The colour of budget `i`'s curves.
fn budget_colour(i: usize) -> RGBColor {
    crate::plot::PALETTE[i % crate::plot::PALETTE.len()]
}

/// A grey for what is drawn for reference.
const GREY: RGBColor = RGBColor(110, 110, 110);

/// Figure: the held-out loss of every run against its parameters (log
/// scale), one line per budget; dashed in the same colour, the loss the
/// `L(N, D)` fit gives the runs it was fitted to; each budget's optimum
/// ringed.
pub fn isoflop_figure(path: &Path) -> Result<()> {
    use crate::plot::{Axes, Marker, Stroke, Styled, styled_chart};
    let laws = scaling_laws()?;
    let names: Vec<String> = (BUDGETS.iter())
        .map(|&b| format!("{} FLOPs", short_flops(b)))
        .collect();
    let mut series = Vec::new();
    for (i, (&budget, name)) in BUDGETS.iter().zip(&names).enumerate() {
        let runs: Vec<&Run> = laws.budget_runs(budget).collect();
        series.push(Styled {
            name,
            points: (runs.iter())
                .map(|r| (r.params as f64, f64::from(r.val_loss)))
                .collect(),
            colour: budget_colour(i),
            stroke: Stroke::Solid,
            marker: Marker::Dot,
        });
        let c = &laws.chinchilla;
        series.push(Styled {
            name: "",
            points: (runs.iter())
                .filter(|r| r.tokens_per_param() >= MIN_FIT_TOKENS_PER_PARAM)
                .map(|r| (r.params as f64, c.at(r.params as f64, r.tokens as f64)))
                .collect(),
            colour: budget_colour(i),
            stroke: Stroke::Dashed,
            marker: Marker::None,
        });
        let o = &laws.optima[i];
        series.push(Styled {
            name: "",
            points: vec![(o.params, o.loss)],
            colour: budget_colour(i),
            stroke: Stroke::None,
            marker: Marker::Ring,
        });
    }
    // Legend entries for the dashed fit and the rings, in grey.
    series.push(Styled {
        name: "fitted L(N, D)",
        points: vec![],
        colour: GREY,
        stroke: Stroke::Dashed,
        marker: Marker::None,
    });
    series.push(Styled {
        name: "optimum of a budget",
        points: vec![],
        colour: GREY,
        stroke: Stroke::None,
        marker: Marker::Ring,
    });
    let axes = Axes {
        title: "Held-out loss at three compute budgets",
        x_label: "parameters (log scale)",
        y_label: "held-out loss (nats per character)",
        log_x: true,
        log_y: false,
    };
    styled_chart(path, &axes, &series, SeriesLabelPosition::UpperLeft)
}

/// Figure: the optima of the budgets against their parameters, with
/// `E + A/N^α` and `(N_c/N)^α_N` fitted through them. (Kaplan et al.'s
/// α_N = 0.076 is not drawn beside them: theirs is the exponent of models
/// trained to convergence, not of the best size at a budget.)
pub fn fit_figure(path: &Path) -> Result<()> {
    use crate::plot::{Axes, Marker, Stroke, Styled, styled_chart};
    let laws = scaling_laws()?;
    let (lo, hi) = (
        laws.optima
            .iter()
            .map(|o| o.params)
            .fold(f64::MAX, f64::min)
            / 1.5,
        laws.optima.iter().map(|o| o.params).fold(0.0, f64::max) * 1.5,
    );
    let curve = |f: &dyn Fn(f64) -> f64| -> Vec<(f64, f64)> {
        (0..=40)
            .map(|i| {
                let n = lo * (hi / lo).powf(f64::from(i) / 40.0);
                (n, f(n))
            })
            .collect()
    };
    let frontier = laws.frontier;
    let (n_c, alpha_n) = laws.frontier_kaplan;
    let fit_name = format!(
        "E + A/N^α fitted: α = {:.2}, E = {:.2}",
        frontier.alpha, frontier.e
    );
    let kaplan_name = format!("(N_c/N)^α fitted: α = {alpha_n:.2}");
    let mut series = vec![
        Styled {
            name: &fit_name,
            points: curve(&|n| frontier.at(n)),
            colour: RGBColor(31, 119, 180),
            stroke: Stroke::Solid,
            marker: Marker::None,
        },
        Styled {
            name: &kaplan_name,
            points: curve(&|n| (n_c / n).powf(alpha_n)),
            colour: RGBColor(214, 39, 40),
            stroke: Stroke::Dashed,
            marker: Marker::None,
        },
    ];
    series.push(Styled {
        name: "optimum of each budget",
        points: laws.optima.iter().map(|o| (o.params, o.loss)).collect(),
        colour: RGBColor(0, 0, 0),
        stroke: Stroke::None,
        marker: Marker::Ring,
    });
    let axes = Axes {
        title: "The compute-optimal frontier: loss against the best size of each budget",
        x_label: "parameters (log scale)",
        y_label: "held-out loss (nats per character)",
        log_x: true,
        log_y: false,
    };
    styled_chart(path, &axes, &series, SeriesLabelPosition::UpperRight)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scaling::sweep::Shape;

    fn run(width: usize, params: u64, val_loss: f32) -> Run {
        Run {
            shape: Shape { width, depth: 1 },
            params,
            flops_per_token: 6 * params,
            budget: 6_000_000_000,
            epochs: 1,
            steps: 1,
            tokens: 1_000_000_000 / params,
            unique_tokens: 1_000_000_000 / params,
            train_loss: val_loss,
            val_loss,
            seconds: 0.0,
        }
    }

    #[test]
    fn the_optimum_of_a_budget_is_the_vertex_of_its_parabola() {
        // Loss = (ln N - ln 10,000)² + 1 at N = 1,000, 10,000 and 100,000,
        // and a worse run further out.
        let l = |n: f64| ((n.ln() - 10_000_f64.ln()).powi(2) + 1.0) as f32;
        let runs = [
            run(16, 100, l(100.0) + 1.0),
            run(32, 1000, l(1000.0)),
            run(64, 10_000, l(10_000.0)),
            run(128, 100_000, l(100_000.0)),
        ];
        let o = optimum(6_000_000_000, &runs.iter().collect::<Vec<_>>());
        assert!(o.interior);
        assert!((o.params / 10_000.0 - 1.0).abs() < 1e-3, "{}", o.params);
        assert!((o.loss - 1.0).abs() < 1e-5);
        // 6e9 FLOPs at 6 FLOPs per parameter and token: 1e9 / N tokens,
        // 10 per parameter at N = 10,000.
        assert!(
            (o.tokens_per_param - 10.0).abs() < 0.05,
            "{}",
            o.tokens_per_param
        );
        // The runs' order does not matter.
        let reversed = optimum(6_000_000_000, &runs.iter().rev().collect::<Vec<_>>());
        assert_eq!(reversed, o);
        // A best run at the edge of the shapes is the optimum itself.
        let at_edge = optimum(6_000_000_000, &runs[2..].iter().collect::<Vec<_>>());
        assert!(!at_edge.interior);
        assert_eq!((at_edge.best.params, at_edge.params), (10_000, 10_000.0));
    }

    #[test]
    fn budgets_are_written_short() {
        assert_eq!(short_flops(30_000_000_000), "3e10");
        assert_eq!(short_flops(BUDGETS[0]), "1e11");
        assert_eq!(short_flops(250_000_000_000), "2.5e11");
    }
}
