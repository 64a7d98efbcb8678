"""Benchmark: the accuracy route on real Pythia GSM8K per-problem counts, held-out extrapolation in model size.

Fits the accuracy route (`bayes_t2.fit.fit`, default model and sampler) to the checkpoints with at most 2.8B
parameters, predicts the held-out 6.9B and 12B checkpoints (all nine token counts) at k = 1, 10, 100, 1000 and
compares with the empirical pass@k: the unbiased estimator averaged over the checkpoint's problems, only where
every problem has n_samples >= k. Two 90% intervals per point:
  law90   the law's population pass@k (no checkpoint scatter) -- the interval the optimizer works with;
  new90   the posterior predictive of the empirical statistic for a new checkpoint: a fresh checkpoint
          deviation from the law, fresh problems p ~ Beta(a, b), c ~ Binomial(n, p) with that checkpoint's
          sample counts, then the mean unbiased pass@k -- what the held-out data can be compared with.
Then (--full) fits all 81 checkpoints with the default settings (4 chains x 1000 + 1000) and reports time,
divergences, r-hat and the implied T2 optimum at the paper's split budget (2.56e19 training, 2e9 per query).

Data: ../shared/data/pythia_gsm8k_samples.csv beside the repository (or --data PATH); skips if absent.
Usage: python benchmarks/accuracy_pythia.py [--draws 1000 --tune 1000 --chains 2 --seed 1] [--full] [--tiny]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFAULT_DATA = REPO.parent / "shared" / "data" / "pythia_gsm8k_samples.csv"
MAX_TRAIN_PARAMS = 2.8e9
KS = (1, 10, 100, 1000)


def logit(p):
    p = np.asarray(p, dtype=float)
    with np.errstate(divide="ignore"):
        return np.log(p) - np.log1p(-p)


def empirical_pass_at_k(samples: pd.DataFrame, k: int) -> float:
    """Mean unbiased pass@k over the problems, or NaN unless every problem has n_samples >= k."""
    from bayes_t2.passk import unbiased_pass_at_k

    if (samples["n_samples"] < k).any():
        return float("nan")
    return float(np.mean(unbiased_pass_at_k(samples["n_samples"], samples["n_correct"], k)))


def predictive_empirical(a: np.ndarray, b: np.ndarray, n: np.ndarray, k: int, rng: np.random.Generator):
    """Per draw: fresh problems p ~ Beta(a, b) with the checkpoint's sample counts n, c ~ Binomial(n, p),
    then the mean unbiased pass@k (the statistic the data give)."""
    from bayes_t2.passk import unbiased_pass_at_k

    p = rng.beta(a[:, None], b[:, None], size=(a.size, n.size))
    c = rng.binomial(n[None, :], p)
    return unbiased_pass_at_k(n[None, :], c, k).mean(axis=1)


def fit_counts(samples: pd.DataFrame, args, chains: int, draws: int, tune: int):
    from bayes_t2.data import from_frame
    from bayes_t2.fit import SamplerSettings, fit

    data = from_frame(samples, source="pythia_gsm8k_samples.csv")
    cells = data.collapse_counts()
    t0 = time.perf_counter()
    result = fit(data, priors=args.priors,
                 settings=SamplerSettings(draws=draws, tune=tune, chains=chains, seed=args.seed), progressbar=False)
    wall = time.perf_counter() - t0
    d = result.diagnostics()
    print(f"  {len(samples)} problem rows, {data.checkpoints.shape[0]} checkpoints -> {len(cells)} cells; "
          f"{chains} x ({tune} + {draws}) draws: {wall:.0f} s in all (sampling {result.tree.attrs['sampling_seconds']:.0f}"
          f" s); divergences {d.divergences}; max r-hat {d.max_rhat:.3f}; min bulk ESS {d.min_ess_bulk:.0f}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--predictive-draws", type=int, default=500)
    parser.add_argument("--min-tokens", type=float, default=0.0,
                        help="fit only training checkpoints with at least this many tokens (e.g. 2e9: leave out "
                             "the near-chance first ~1k steps); all held-out checkpoints are still predicted")
    parser.add_argument("--priors", type=Path, default=None, help="TOML overriding models/accuracy.toml")
    parser.add_argument("--full", action="store_true", help="also fit all 81 checkpoints, default settings")
    parser.add_argument("--skip-heldout", action="store_true", help="only the --full fit")
    parser.add_argument("--tiny", action="store_true", help="smoke test: 2 x (100 + 100) draws")
    args = parser.parse_args(argv)
    if args.tiny:
        args.draws = args.tune = 100
        args.predictive_draws = 50
    if not args.data.exists():
        print(f"skipped: Pythia GSM8K counts not found at {args.data}")
        return 0

    warnings.filterwarnings("ignore", category=RuntimeWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    samples = pd.read_csv(args.data)
    train = samples[samples["params"] <= MAX_TRAIN_PARAMS]
    test = samples[samples["params"] > MAX_TRAIN_PARAMS]
    if not args.skip_heldout:
        heldout(args, samples, train, test)
    if args.full:
        full_fit(args, samples)
    return 0


def heldout(args, samples: pd.DataFrame, train: pd.DataFrame, test: pd.DataFrame) -> None:
    from bayes_t2.passk import beta_pass_at_k
    from bayes_t2.routes.accuracy import accuracy_shapes, deviation_nu

    print(f"fit on checkpoints with <= {MAX_TRAIN_PARAMS:.2g} params and >= {args.min_tokens:.3g} tokens:")
    result = fit_counts(train[train["tokens"] >= args.min_tokens], args, args.chains, args.draws, args.tune)
    post = result.posterior.sel(task="gsm8k")
    print("\nposterior (median [5%, 95%]), task gsm8k:")
    for name in ("logit_mu_ref", "slope_mu", "log_nu_ref", "slope_nu", "w", "alpha", "beta",
                 "checkpoint_sd_mu", "checkpoint_sd_nu", "theta1", "theta2", "theta3", "theta4", "A", "B"):
        if name in post:
            x = post[name].values.ravel()
            print(f"  {name:17s} {np.median(x):10.4g} [{np.quantile(x, 0.05):10.4g}, {np.quantile(x, 0.95):10.4g}]")

    names = list(result.route.coefficient_names) + [v for v in result.route.noise_names if v in post]
    flat = {name: post[name].values.reshape(-1) for name in names}
    rng = np.random.default_rng(args.seed)
    n_draws = flat["theta1"].size
    pick = rng.choice(n_draws, size=min(args.predictive_draws, n_draws), replace=False)
    flat_pick = {name: v[pick] for name, v in flat.items()}

    rows = []
    for split, frame in (("train", train), ("held-out", test)):
        for (N, D), g in frame.groupby(["params", "tokens"]):
            a, b = accuracy_shapes(flat, N, D)
            a_new, b_new = accuracy_shapes(flat_pick, N, D, rng=rng, noise_nu=deviation_nu(result.spec))
            for k in KS:
                emp = empirical_pass_at_k(g, k)
                law = beta_pass_at_k(a, b, k)
                new = predictive_empirical(a_new, b_new, g["n_samples"].to_numpy(), k, rng)
                rows.append({"split": split, "params": N, "tokens": D, "k": k, "empirical": emp,
                             "median": float(np.median(law)), "law_lo": float(np.quantile(law, 0.05)),
                             "law_hi": float(np.quantile(law, 0.95)), "new_median": float(np.median(new)),
                             "new_lo": float(np.quantile(new, 0.05)), "new_hi": float(np.quantile(new, 0.95))})
    res = pd.DataFrame(rows)
    res["err_logodds"] = logit(res["median"]) - logit(res["empirical"])
    res["in_law90"] = (res["law_lo"] <= res["empirical"]) & (res["empirical"] <= res["law_hi"])
    res["in_new90"] = (res["new_lo"] <= res["empirical"]) & (res["empirical"] <= res["new_hi"])

    held = res[res["split"] == "held-out"]
    print("\nheld-out checkpoints: empirical pass@k vs the law's median; 90% intervals of the law and of a new "
          "checkpoint's empirical pass@k")
    for _, r in held.iterrows():
        head = f"  N={r['params']:8.3g} D={r['tokens']:8.3g} k={r['k']:>4d}"
        if np.isnan(r["empirical"]):
            print(f"{head}  (some problem has n_samples < k: not observable)")
            continue
        print(f"{head}  emp {r['empirical']:.3e}  law {r['median']:.3e} [{r['law_lo']:.2e}, {r['law_hi']:.2e}]"
              f"  new90 [{r['new_lo']:.2e}, {r['new_hi']:.2e}]  err {r['err_logodds']:+.2f}")

    regimes = (("early (< 2e9 tokens)", 0.0, 2e9), ("mid (2e9 - 2e10 tokens)", 2e9, 2e10),
               ("late (>= 2e10 tokens)", 2e10, np.inf))

    def summary(frame: pd.DataFrame, label: str) -> None:
        obs = frame[np.isfinite(frame["empirical"])]
        ok = obs[np.isfinite(obs["err_logodds"])]
        print(f"\n{label}: {len(obs)} observable (checkpoint, k) points; log-odds errors on the {len(ok)} with "
              f"0 < empirical < 1")
        groups = [(f"k={k}", g) for k, g in obs.groupby("k")] + \
                 [(name, obs[(obs["tokens"] >= lo) & (obs["tokens"] < hi)]) for name, lo, hi in regimes] + \
                 [("all", obs)]
        for name, g in groups:
            e = g["err_logodds"][np.isfinite(g["err_logodds"])]
            if len(g):
                print(f"  {name:24s} n={len(g):3d}  |log-odds error| median {e.abs().median():.2f} "
                      f"mean {e.abs().mean():.2f}  bias {e.mean():+.2f}  coverage law90 {g['in_law90'].mean():.0%}"
                      f"  new90 {g['in_new90'].mean():.0%}")

    summary(held, "held-out 6.9B and 12B")
    summary(res[res["split"] == "train"], "training checkpoints (in-sample)")



def full_fit(args, samples: pd.DataFrame) -> None:
    from bayes_t2.budget import SplitBudget
    from bayes_t2.summary import optimum_records

    kept = samples[samples["tokens"] >= args.min_tokens]
    print(f"\nfull GSM8K set (checkpoints with >= {args.min_tokens:.3g} tokens), 4 chains x (1000 + 1000):")
    full = fit_counts(kept, args, 4, 1000, 1000) if not args.tiny else fit_counts(kept, args, 2, 100, 100)
    rec = optimum_records(full.optimize([SplitBudget(2.56e19, 2e9)]), "pass_at_k", False)[0]
    f = lambda s: f"{s['median']:.3g} [{s['lower']:.3g}, {s['upper']:.3g}]"  # noqa: E731
    print(f"  T2 optimum at 2.56e19 training / 2e9 inference FLOPs per query: N* {f(rec['N'])}, "
          f"D* {f(rec['D'])}, k* {f(rec['k'])}, tokens/param {f(rec['tokens_per_param'])}, "
          f"pass@k {f(rec['metric'])}; Chinchilla (N {rec['chinchilla']['N']:.3g}, "
          f"k {rec['chinchilla']['k']:.0f}) pass@k {f(rec['chinchilla']['metric'])}, at k=1 "
          f"{f(rec['chinchilla']['metric_k1'])}; P(beats Chinchilla) {rec['p_beats_chinchilla']:.2f}")


if __name__ == "__main__":
    raise SystemExit(main())
