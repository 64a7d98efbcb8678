"""Which discrepancy form holds out of sample? Fit once, cache, score every candidate offline.

For each suite x holdout (25% held out, as `bayes-t2 backtest`): the training part's two inner
leave-the-largest-out folds (as deep as the outer cut and half as deep: `backtest.INNER_FOLD_SHARES`) and the
training part itself are fitted ONCE without discrepancy (scale 0). Cached per row in DIR/<stem>.npz:
  inner_r, inner_v, inner_x   the inner folds' held-out log residuals (log observed - median log predictive),
                              predictive variances of log loss, and e-folds beyond the inner training range;
  outer_log_draws             log of the new-checkpoint predictive of every held-out point (points x draws),
                              without discrepancy;
  inner_axes, outer_axes      the same distances per axis (log N, log D, log 6ND, log D/N: `RANGE_AXES`),
                              for the per-axis forms (d), (d');
  outer_x, outer_obs          e-folds beyond the training part, observed loss; outer_dist: decades of the
                              held-out quantity (the backtest's `distance`).
A discrepancy form only adds a term to log loss at prediction time, so every form is scored exactly on the
cached draws: current (ML scale), the scale's posterior (a scale mixture), a signed drift with the scale, ...

    PYTHONPATH=. python benchmarks/discrepancy_forms.py --out reports/discrepancy_forms            # fit + score
    PYTHONPATH=. python benchmarks/discrepancy_forms.py --out reports/discrepancy_forms --score-only
    PYTHONPATH=. python benchmarks/discrepancy_forms.py --suites gadre --priors pertask.toml --out DIR
    (--forms NAME,NAME scores only those forms)

Writes DIR/table.md (one line per row x form; with several tasks also how many tasks' own coverages lie in
the targets, `tasks_in50`, `tasks_in90`) and prints it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_backtest_options, sampler_settings  # noqa: E402
from backtest_real import DATA, PORIAN_CONFIGS, suite_data  # noqa: E402

from bayes_t2.routes.extrapolation import RANGE_AXES  # noqa: E402

#: targets of the backtest (docs/backtest.md)
TARGET50, TARGET90 = (0.40, 0.60), (0.80, 0.95)


# ------------------------------------------------------------------------------------------------ fitting
def fit_row(data, holdout: str, fraction: float, settings, seed: int, priors=None) -> dict[str, np.ndarray]:
    """Inner residuals and the outer predictive (no discrepancy) of one suite x holdout."""
    from bayes_t2.backtest import HOLDOUTS, INNER_FOLD_SHARES, _distances, inner_fold_residuals, predictive, \
        split_data
    from bayes_t2.fit import fit as run_fit
    from bayes_t2.priors import load_spec
    from bayes_t2.routes.extrapolation import extrapolation_efolds_by_axis

    spec = load_spec("loss", priors)
    spec["discrepancy"] = {**spec.get("discrepancy", {}), "scale": 0.0}
    split = split_data(data, holdout, fraction)
    folds = [(holdout, fraction * share) for share in INNER_FOLD_SHARES]
    inner = inner_fold_residuals(split.train, folds, route="loss", priors=priors, settings=settings, seed=seed,
                                 keep_fits=True)
    res = run_fit(split.train, route="loss", priors=spec, settings=settings, progressbar=False)
    points, draws = predictive(res, split.test, seed)
    # each inner fold fit's median log prediction at the outer held-out points, and each fit's data range (the
    # training part's last): how the extrapolation moved as the data grew toward the held-out part
    fold_fits = inner["fits"] + [res]
    fold_outer = np.array([np.median(np.log(predictive(f, split.test, seed)[1]), axis=1) for f in inner["fits"]]
                          + [np.median(np.log(draws), axis=1)])
    fold_range = np.array([f.posterior["data_log_range"].isel(
        {d: 0 for d in ("chain", "draw") if d in f.posterior["data_log_range"].dims}).values for f in fold_fits])
    dist = _distances(points, split.train.frame)
    outer_axes = np.column_stack(extrapolation_efolds_by_axis(
        res.posterior["data_log_range"], points["params"].to_numpy(float), points["tokens"].to_numpy(float)))
    return {"inner_r": inner["residual"], "inner_v": inner["variance"], "inner_x": inner["efolds"],
            "inner_axes": inner["efolds_by_axis"], "outer_axes": outer_axes,
            "inner_task": inner["task"], "outer_task": points["task"].to_numpy(str),
            "inner_fold": inner["fold"], "outer_log_draws": np.log(draws), "outer_obs": points["observed"].to_numpy(float),
            "outer_x": outer_axes.max(axis=1),
            "outer_dist": dist[f"distance_{HOLDOUTS[holdout]}"].to_numpy(float),
            "outer_params": points["params"].to_numpy(float), "outer_tokens": points["tokens"].to_numpy(float),
            "fold_outer_median": fold_outer, "fold_range": fold_range,
            "rhat": np.asarray([f["max_rhat"] for f in inner["folds"]] + [res.diagnostics().max_rhat], float)}


# ------------------------------------------------------------------------------------------------ forms
#: prior scales, stated before any scoring (see docs/backtest.md): sd of log loss per e-fold beyond the data
PRIOR_SCALE = 0.05
PRIOR_DRIFT = 0.05


def _grid_s() -> np.ndarray:
    return np.concatenate([[0.0], np.geomspace(1e-4, 2.0, 600)])


def _loglik(r, v, x, s, mu=0.0):
    var = v + (s * x) ** 2
    return -0.5 * np.sum(np.log(var) + (r - mu * x) ** 2 / var, axis=-1)


def form_current(r, v, x, n, rng):
    """Maximum-likelihood scale (the library's default), no drift: (mu draws, s draws)."""
    from bayes_t2.backtest import fit_discrepancy_scale

    s = fit_discrepancy_scale(r, v, x)
    return np.zeros(n), np.full(n, s), {"s": s}


def _sample_grid(logp: np.ndarray, n: int, rng) -> np.ndarray:
    """Indices of n draws from a (flattened) grid posterior with log weights logp."""
    w = np.exp(logp - logp.max()).ravel()
    return rng.choice(w.size, size=n, p=w / w.sum())


def make_scale_posterior(prior_scale: float):
    def form(r, v, x, n, rng):
        """s ~ HalfNormal(prior_scale), r_i ~ N(0, v_i + (s x_i)^2): the predictive mixes over s's posterior."""
        keep = x > 0
        g = _grid_s()
        # trapezoid weights on the uneven grid, so the grid posterior is a density on s
        dw = np.gradient(g)
        logp = _loglik(r[keep], v[keep], x[keep], g[:, None]) - 0.5 * (g / prior_scale) ** 2 \
            + np.log(dw)
        s = g[_sample_grid(logp, n, rng)]
        return np.zeros(n), s, {"s": float(np.median(s)), "s90": float(np.quantile(s, 0.9))}
    return form


def make_spike_slab(prior_scale: float, p_zero: float = 0.5):
    def form(r, v, x, n, rng):
        """(a) with prior mass p_zero at s = 0 (no bend) and the rest HalfNormal(prior_scale): the data's own
        evidence decides between no discrepancy and a scale mixture."""
        keep = x > 0
        g = _grid_s()[1:]
        dw = np.gradient(g)
        ll = _loglik(r[keep], v[keep], x[keep], g[:, None])
        log_slab = ll + np.log(np.sqrt(2 / np.pi) / prior_scale) - 0.5 * (g / prior_scale) ** 2 + np.log(dw)
        ll0 = _loglik(r[keep], v[keep], x[keep], 0.0)
        top = max(log_slab.max(), ll0)
        w_slab = (1 - p_zero) * np.exp(log_slab - top).sum()
        w0 = p_zero * np.exp(ll0 - top)
        zero = rng.uniform(size=n) < w0 / (w0 + w_slab)
        s = np.where(zero, 0.0, g[_sample_grid(log_slab, n, rng)])
        return np.zeros(n), s, {"s": float(np.median(s)), "p_s0": float(w0 / (w0 + w_slab))}
    return form


def make_drift(prior_scale: float, prior_drift: float):
    def form(r, v, x, n, rng):
        """r_i ~ N(mu x_i, v_i + (s x_i)^2), s ~ HalfNormal, mu ~ Normal(0, prior_drift): joint grid posterior."""
        keep = x > 0
        g = _grid_s()[::4]
        m = np.linspace(-6 * prior_drift, 6 * prior_drift, 241)
        dw = np.gradient(g)
        rr, vv, xx = r[keep], v[keep], x[keep]
        logp = _loglik(rr, vv, xx, g[None, :, None], m[:, None, None])
        logp += -0.5 * (g / prior_scale) ** 2 + np.log(dw) - 0.5 * (m[:, None] / prior_drift) ** 2
        idx = _sample_grid(logp, n, rng)
        mu, s = m[idx // len(g)], g[idx % len(g)]
        return mu, s, {"s": float(np.median(s)), "mu": float(np.median(mu))}
    return form


def form_drift_ml(r, v, x, n, rng):
    """Maximum likelihood of (mu, s) jointly, no prior."""
    from scipy.optimize import minimize

    keep = x > 0
    rr, vv, xx = r[keep], v[keep], x[keep]
    if not keep.any():
        return np.zeros(n), np.zeros(n), {"s": 0.0, "mu": 0.0}
    nll = lambda p: -_loglik(rr, vv, xx, np.exp(p[1]), p[0])  # noqa: E731
    best = min((minimize(nll, [0.0, np.log(s0)], method="Nelder-Mead") for s0 in (1e-3, 0.03, 0.3)),
               key=lambda o: o.fun)
    mu, s = float(best.x[0]), float(np.exp(best.x[1]))
    return np.full(n, mu), np.full(n, s), {"s": s, "mu": mu}


def make_power(prior_scale: float):
    def form(r, v, x, n, rng):
        """sd = s * x^p with p on a grid over [0.5, 3] (flat prior), s ~ HalfNormal(prior_scale) (sd at one
        e-fold): the scale mixture of (a) whose growth with the distance is also learned."""
        keep = x > 0
        g = _grid_s()[::4]
        powers = np.linspace(0.5, 3.0, 26)
        dw = np.gradient(g)
        rr, vv, xx = r[keep], v[keep], x[keep]
        logp = _loglik(rr, vv, xx[None, None, :] ** powers[:, None, None], g[None, :, None])
        logp += -0.5 * (g / prior_scale) ** 2 + np.log(dw)
        idx = _sample_grid(logp, n, rng)
        p = powers[idx // len(g)]
        s = g[idx % len(g)]
        return np.zeros(n), s, {"s": float(np.median(s)), "p": float(np.median(p)), "power": p}
    return form


def _t_loglik(r, v, x, s, nu):
    from scipy.stats import t as student_t

    return np.sum(student_t.logpdf(r, nu, scale=np.sqrt(v + (s * x) ** 2)), axis=-1)


def make_student_t(nu: float | None):
    def form(r, v, x, n, rng):
        """Heavy-tailed discrepancy: r_i ~ t_nu(0, sqrt(v_i + (s x_i)^2)), s by maximum likelihood (nu fixed, or
        with nu=None chosen with s from 1, 2, 3, 5, 10, 30); predictions add s x t_nu (a law that misses
        a few runs badly and most a little)."""
        keep = (x > 0) & np.isfinite(r)
        rr, vv, xx = r[keep], v[keep], x[keep]
        grid = _grid_s()[1:]
        nus = (1.0, 2.0, 3.0, 5.0, 10.0, 30.0) if nu is None else (nu,)
        ll = np.array([[_t_loglik(rr, vv, xx, g, k) for g in grid] for k in nus])
        i, j = np.unravel_index(np.argmax(ll), ll.shape)
        best_nu, s = nus[i], float(grid[j])
        if ll[i, j] <= _t_loglik(rr, vv, xx, 1e-5, best_nu):
            s = 0.0
        return np.zeros(n), np.full(n, s), {"s": s, "nu": best_nu}
    return form


def make_per_axis(axes: tuple[str, ...]):
    def form(r, v, X, n, rng):
        """sd^2 = sum over `axes` of (s_a x_a)^2, x_a the e-folds beyond the data along axis a: each direction
        of extrapolation (size, tokens, compute, over-training) has its own scale, maximum likelihood on the
        inner residuals. Returns the scale per axis of `RANGE_AXES` (0 for axes left out)."""
        from scipy.optimize import minimize

        cols = [RANGE_AXES.index(a) for a in axes]
        XX = X[:, cols]

        def nll(s):
            var = v + (XX ** 2) @ (np.asarray(s) ** 2)
            return 0.5 * np.sum(np.log(var) + r ** 2 / var)

        starts = [np.full(len(cols), s0) for s0 in (1e-3, 0.03, 0.3)]
        best = min((minimize(nll, s0, method="L-BFGS-B", bounds=[(0.0, 2.0)] * len(cols)) for s0 in starts),
                   key=lambda o: o.fun)
        scales = np.zeros(len(RANGE_AXES))
        scales[cols] = best.x
        return scales, {f"s_{a}": float(scales[RANGE_AXES.index(a)]) for a in axes}
    form.per_axis = True
    return form


def form_per_task(r, v, x, tasks, outer_tasks):
    """One scale per task, partially pooled by empirical Bayes: the library's form (`discrepancy.fit_task_scales`,
    the default with several tasks); a held-out task without inner residuals takes the population's scale.
    Returns the scale of every outer point and a summary."""
    from bayes_t2.discrepancy import fit_task_scales

    res = fit_task_scales(r, v, x, tasks)
    per_point = np.array([res["by_task"].get(str(t), res["scale"]) for t in outer_tasks])
    own = list(res["by_task"].values()) or [0.0]
    return per_point, {"s": res["scale"], "tau": res["pooling_sd"], "s_min": float(min(own)),
                       "s_max": float(max(own))}


form_per_task.per_task = True


FORMS = {
    "none": lambda r, v, x, n, rng: (np.zeros(n), np.zeros(n), {"s": 0.0}),
    "current (ML s)": form_current,
    f"(a) s posterior HN({PRIOR_SCALE})": make_scale_posterior(PRIOR_SCALE),
    f"(a0) s spike+HN({PRIOR_SCALE})": make_spike_slab(PRIOR_SCALE),
    f"(b) drift+s N({PRIOR_DRIFT}),HN({PRIOR_SCALE})": make_drift(PRIOR_SCALE, PRIOR_DRIFT),
    "(b') drift+s ML": form_drift_ml,
    f"(c) s x^p posterior HN({PRIOR_SCALE})": make_power(PRIOR_SCALE),
    "(a) sensitivity HN(0.02)": make_scale_posterior(0.02),
    "(a) sensitivity HN(0.1)": make_scale_posterior(0.1),
    "(d) per-axis ML": make_per_axis(RANGE_AXES),
    "(d') per-axis ML, no compute axis": make_per_axis(("params", "tokens", "tokens_per_param")),
    "(e) per-task s pooled (empirical Bayes)": form_per_task,
    "(f) t3 discrepancy ML s": make_student_t(3.0),
    "(f') t discrepancy ML s and nu": make_student_t(None),
}


def _inner(cache: dict[str, np.ndarray], axes: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The inner residuals, variances and distances, each fold once: caches written before
    `backtest.distinct_splits` may hold a fold twice (two fractions that cut at the same size)."""
    r, v, x = cache["inner_r"], cache["inner_v"], cache["inner_x"]
    keep = _distinct_folds(cache)
    return r[keep], v[keep], (cache["inner_axes"][keep] if axes else x[keep])


def _distinct_folds(cache: dict[str, np.ndarray]) -> np.ndarray:
    """Mask of the inner points to use: each distinct fold once."""
    r = cache["inner_r"]
    fold = cache.get("inner_fold", np.zeros(len(r)))
    keep, seen = np.zeros(len(r), bool), []
    for f in np.unique(fold):
        m = fold == f
        key = np.sort(r[m])
        if not any(len(k) == len(key) and np.allclose(k, key) for k in seen):
            keep |= m
            seen.append(key)
    return keep


#: discrepancy draws per posterior draw in the scoring (Monte Carlo only: the predictive is the same)
REPLICATES = 10


def predictive_with(cache: dict[str, np.ndarray], form, seed: int) -> tuple[np.ndarray, dict]:
    """The held-out points' predictive draws with the form's term added (each law draw paired with `REPLICATES`
    discrepancy draws, so the quantiles carry little Monte Carlo noise), and the form's summary."""
    rng = np.random.default_rng(seed)
    log_draws = np.tile(cache["outer_log_draws"], REPLICATES)
    n = log_draws.shape[1]
    if getattr(form, "per_task", False):
        r, v, x = _inner(cache)
        scale, info = form(r, v, x, cache["inner_task"][_distinct_folds(cache)], cache["outer_task"])
        sd = scale * cache["outer_x"]
        return np.exp(log_draws + rng.standard_normal(log_draws.shape) * sd[:, None]), info
    if getattr(form, "per_axis", False):
        scales, info = form(*_inner(cache, axes=True), n, rng)
        sd = np.sqrt((cache["outer_axes"] ** 2) @ (scales ** 2))
        return np.exp(log_draws + rng.standard_normal(log_draws.shape) * sd[:, None]), info
    mu, s, info = form(*_inner(cache), n, rng)
    x = cache["outer_x"][:, None]
    power = np.asarray(info.pop("power", 1.0), float)
    xp = x ** (power[None, :] if power.ndim else power)
    noise = rng.standard_t(info["nu"], log_draws.shape) if "nu" in info else rng.standard_normal(log_draws.shape)
    return np.exp(log_draws + mu[None, :] * x + noise * s[None, :] * xp), info


def score(cache: dict[str, np.ndarray], form, seed: int) -> dict[str, float]:
    """Coverage, median |relative error|, share below the median of the predictive with the form's term."""
    pred, info = predictive_with(cache, form, seed)
    return _scores(pred, cache["outer_obs"], info)


def cells_by_task(cache: dict[str, np.ndarray], pred: np.ndarray) -> tuple[int, int, int]:
    """(tasks, tasks whose 50% coverage lies in the target, tasks whose 90% coverage does) of the predictive
    draws `pred` (`predictive_with`) of the cached held-out points."""
    q = np.quantile(pred, [0.05, 0.25, 0.75, 0.95], axis=1)
    obs = cache["outer_obs"]
    frame = pd.DataFrame({"task": cache["outer_task"], "c50": (q[1] <= obs) & (obs <= q[2]),
                          "c90": (q[0] <= obs) & (obs <= q[3])}).groupby("task").mean()
    hits = [inside(a, b) for a, b in zip(frame["c50"], frame["c90"])]
    return len(frame), sum(h[0] for h in hits), sum(h[1] for h in hits)


def _scores(pred: np.ndarray, obs: np.ndarray, info: dict) -> dict[str, float]:
    q = np.quantile(pred, [0.05, 0.25, 0.5, 0.75, 0.95], axis=1)
    c50 = float(np.mean((q[1] <= obs) & (obs <= q[3])))
    c90 = float(np.mean((q[0] <= obs) & (obs <= q[4])))
    return {"coverage50": c50, "coverage90": c90, "median_abs_rel_error": float(np.median(np.abs(q[2] / obs - 1))),
            "mean_rel_error": float(np.mean(q[2] / obs - 1)),
            "below_median": float(np.mean(obs < q[2])), **info}


def inside(c50: float, c90: float) -> tuple[bool, bool]:
    return TARGET50[0] <= c50 <= TARGET50[1], TARGET90[0] <= c90 <= TARGET90[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suites", default=",".join(f"porian:{c}" for c in PORIAN_CONFIGS))
    parser.add_argument("--holdouts", default="largest-compute,largest-params")
    add_backtest_options(parser, draws=300, tune=300)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--score-only", action="store_true", help="score the cached rows only, fit nothing")
    parser.add_argument("--priors", type=Path, help="loss model TOML overriding models/loss.toml")
    parser.add_argument("--forms", help="comma-separated form names to score (default: all)")
    args = parser.parse_args(argv)
    if not args.data.exists():
        print(f"skipped: no shared data at {args.data}")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    warnings.filterwarnings("ignore")
    settings = sampler_settings(args.draws, args.tune, args.chains, args.seed)
    rows = []
    for suite in args.suites.split(","):
        data = None
        for holdout in args.holdouts.split(","):
            stem = f"{suite.replace('/', '_').replace(':', '_')}__{holdout}"
            path = args.out / f"{stem}.npz"
            if not path.exists():
                if args.score_only:
                    continue
                data = suite_data(suite, args.data)[0] if data is None else data
                started = time.perf_counter()
                np.savez(path, **fit_row(data, holdout, args.fraction, settings, args.seed, args.priors))
                print(f"{stem}: fitted in {time.perf_counter() - started:.0f} s", flush=True)
            cache = dict(np.load(path))
            for name, form in FORMS.items():
                if args.forms and name not in args.forms.split(","):
                    continue
                if getattr(form, "per_axis", False) and "inner_axes" not in cache:
                    continue  # cached before per-axis distances were kept
                if getattr(form, "per_task", False) and "inner_task" not in cache:
                    continue  # cached before the tasks were kept
                pred, info = predictive_with(cache, form, args.seed + 1)
                sc = _scores(pred, cache["outer_obs"], info)
                by_task = {}
                if "outer_task" in cache and len(np.unique(cache["outer_task"])) > 1:
                    n_tasks, in50, in90 = cells_by_task(cache, pred)
                    by_task = {"tasks": n_tasks, "tasks_in50": in50, "tasks_in90": in90}
                rows.append({"suite": suite.replace("/standard/val", ""), "holdout": holdout,
                             "points": len(cache["outer_obs"]), "inner": int(np.sum(_inner(cache)[2] > 0)),
                             "form": name,
                             **{k: round(v, 4) if isinstance(v, (int, float)) else v for k, v in sc.items()},
                             **by_task,
                             "max_rhat": round(float(cache["rhat"].max()), 3)})
    table = pd.DataFrame(rows)
    if table.empty:
        print("nothing cached")
        return 0
    table["in50"], table["in90"] = zip(*(inside(a, b) for a, b in zip(table["coverage50"], table["coverage90"])))
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(str(v) for v in r) + " |" for r in table.itertuples(index=False)]
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    pd.set_option("display.width", 250)
    print(table.to_string(index=False))
    tally = table.groupby("form", sort=False).agg(in50=("in50", "sum"), in90=("in90", "sum"),
                                                   med_err=("median_abs_rel_error", "median"))
    print(tally.to_string())
    (args.out / "tally.json").write_text(json.dumps(tally.reset_index().to_dict(orient="records"), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
