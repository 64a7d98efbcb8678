"""Research benchmark: the accuracy route on real Pythia GSM8K per-problem counts, held-out extrapolation.

Fits the T2 accuracy law (bayes_t2.routes.accuracy) to the checkpoints with at most 2.8B parameters, predicts
the held-out 6.9B and 12B checkpoints (all nine token counts) at k = 1, 10, 100, 1000, and compares with the
empirical pass@k: the unbiased estimator averaged over the checkpoint's problems, reported only where every
problem has n_samples >= k. Prints errors in log-odds, 90% interval coverage (of the law's population pass@k and
of the posterior predictive of the empirical average over the same problems and sample counts), sampling time,
divergences and the largest r-hat.

Data: ../shared/data/pythia_gsm8k_samples.csv beside the repository (or --data PATH); skips with a message if
absent. Usage: python benchmarks/accuracy_pythia.py [--draws 500 --tune 500 --chains 2 --seed 1]
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


def empirical_pass_at_k(samples: pd.DataFrame, k: int) -> tuple[float, int]:
    """Mean unbiased pass@k over the problems, or NaN unless every problem has n_samples >= k."""
    from bayes_t2.passk import unbiased_pass_at_k

    if (samples["n_samples"] < k).any():
        return float("nan"), len(samples)
    return float(np.mean(unbiased_pass_at_k(samples["n_samples"], samples["n_correct"], k))), len(samples)


def predictive_empirical(a: np.ndarray, b: np.ndarray, n: np.ndarray, k: int, rng: np.random.Generator):
    """Posterior predictive of the empirical statistic: per draw, fresh problems p ~ Beta(a, b) with the
    checkpoint's sample counts n, c ~ Binomial(n, p), then the mean unbiased pass@k."""
    from bayes_t2.passk import unbiased_pass_at_k

    p = rng.beta(a[:, None], b[:, None], size=(a.size, n.size))
    c = rng.binomial(n[None, :], p)
    return unbiased_pass_at_k(n[None, :], c, k).mean(axis=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--tune", type=int, default=500)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--predictive-draws", type=int, default=400)
    parser.add_argument("--min-tokens", type=float, default=0.0,
                        help="also leave out training checkpoints with fewer tokens (e.g. 2e9: the early, "
                             "chance-level checkpoints); they are still predicted and reported")
    args = parser.parse_args(argv)

    if not args.data.exists():
        print(f"skipped: Pythia GSM8K counts not found at {args.data}")
        return 0

    import arviz as az
    import nutpie
    import pymc as pm

    from bayes_t2.routes.accuracy import accuracy_shapes, build_accuracy_model, collapse_samples
    from bayes_t2.passk import beta_pass_at_k

    warnings.filterwarnings("ignore", category=RuntimeWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    samples = pd.read_csv(args.data)
    train = samples[samples["params"] <= MAX_TRAIN_PARAMS]
    test = samples[samples["params"] > MAX_TRAIN_PARAMS]
    cells = collapse_samples(train[train["tokens"] >= args.min_tokens])
    if args.min_tokens > 0:
        print(f"fitting only training checkpoints with tokens >= {args.min_tokens:.3g}")
    print(f"data: {len(samples)} rows; train {len(train)} rows ({train.groupby(['params', 'tokens']).ngroups} "
          f"checkpoints) -> {len(cells)} cells; held out {test.groupby(['params', 'tokens']).ngroups} checkpoints")

    model = build_accuracy_model(cells)
    t0 = time.perf_counter()
    compiled = nutpie.compile_pymc_model(model)
    t_compile = time.perf_counter() - t0
    t0 = time.perf_counter()
    with model:
        idata = pm.sample(nuts_sampler="nutpie", chains=args.chains, tune=args.tune, draws=args.draws,
                          random_seed=args.seed, progressbar=False)
    t_sample = time.perf_counter() - t0  # includes a second (cached) compile inside pm.sample
    post = idata.posterior
    divergences = int(idata.sample_stats["diverging"].sum())
    rhat = az.rhat(post)
    max_rhat = max(float(rhat[v].max()) for v in rhat.data_vars)
    ess = az.ess(post)
    min_ess = min(float(ess[v].min()) for v in ess.data_vars)
    n_draws = post.sizes["chain"] * post.sizes["draw"]
    print(f"nutpie: compile {t_compile:.1f} s, pm.sample {t_sample:.1f} s for {args.chains} x ({args.tune} + "
          f"{args.draws}); divergences {divergences}/{n_draws}; max r-hat {max_rhat:.3f}; min bulk ESS {min_ess:.0f}")

    print("\nposterior (median [5%, 95%]) of the law, task gsm8k:")
    for name in ("logit_mu_ref", "slope_mu", "log_nu_ref", "slope_nu", "w", "alpha", "beta",
                 "theta1", "theta2", "theta3", "theta4", "A", "B"):
        x = post[name].values.ravel()
        print(f"  {name:13s} {np.median(x):10.4g} [{np.quantile(x, 0.05):10.4g}, {np.quantile(x, 0.95):10.4g}]")

    # flatten draws: coefficient arrays of shape (n_draws,)
    coefs = {name: post[name].sel(task="gsm8k").values.reshape(-1) for name in
             ("theta1", "theta2", "theta3", "theta4", "E", "A", "alpha", "B", "beta")}
    rng = np.random.default_rng(args.seed)
    pick = rng.choice(n_draws, size=min(args.predictive_draws, n_draws), replace=False)

    rows = []
    for split, frame in (("train", train), ("held-out", test)):
        for (N, D), g in frame.groupby(["params", "tokens"]):
            a, b = accuracy_shapes(coefs, N, D)
            for k in KS:
                emp, n_prob = empirical_pass_at_k(g, k)
                law = beta_pass_at_k(a, b, k)
                pred = predictive_empirical(a[pick], b[pick], g["n_samples"].to_numpy(), k, rng)
                rows.append({"split": split, "params": N, "tokens": D, "k": k, "problems": n_prob, "empirical": emp,
                             "median": float(np.median(law)), "law_lo": float(np.quantile(law, 0.05)),
                             "law_hi": float(np.quantile(law, 0.95)),
                             "pred_lo": float(np.quantile(pred, 0.05)), "pred_hi": float(np.quantile(pred, 0.95))})
    res = pd.DataFrame(rows)
    res["err_logodds"] = logit(res["median"]) - logit(res["empirical"])
    res["in_law90"] = (res["law_lo"] <= res["empirical"]) & (res["empirical"] <= res["law_hi"])
    res["in_pred90"] = (res["pred_lo"] <= res["empirical"]) & (res["empirical"] <= res["pred_hi"])

    held = res[res["split"] == "held-out"]
    pd.set_option("display.width", 160)
    print("\nheld-out checkpoints (pass@k: empirical vs posterior median, 90% intervals of the law / of the "
          "predictive empirical average):")
    show = held.assign(N=held["params"].map(lambda v: f"{v:.3g}"), D=held["tokens"].map(lambda v: f"{v:.3g}"))
    for _, r in show.iterrows():
        if np.isnan(r["empirical"]):
            print(f"  N={r['N']:>8s} D={r['D']:>8s} k={r['k']:>4d}  (some problem has n_samples < k: skipped)")
            continue
        print(f"  N={r['N']:>8s} D={r['D']:>8s} k={r['k']:>4d}  emp {r['empirical']:.3e}  pred {r['median']:.3e}"
              f"  law90 [{r['law_lo']:.2e}, {r['law_hi']:.2e}]  pred90 [{r['pred_lo']:.2e}, {r['pred_hi']:.2e}]"
              f"  err {r['err_logodds']:+.2f}")

    regimes = (("early (< 2e9 tokens; near chance)", 0.0, 2e9), ("mid (2e9 - 2e10 tokens)", 2e9, 2e10),
               ("late (>= 2e10 tokens)", 2e10, np.inf))

    def summary(frame: pd.DataFrame, label: str) -> None:
        ok = frame[np.isfinite(frame["err_logodds"])]
        print(f"\n{label}: {len(ok)} (checkpoint, k) points with finite log-odds "
              f"({len(frame) - len(ok)} skipped: some n_samples < k, or empirical 0)")
        for k, g in ok.groupby("k"):
            print(f"  k={k:>4d}: n={len(g):2d}  log-odds error mean {g['err_logodds'].mean():+.2f}  "
                  f"MAE {g['err_logodds'].abs().mean():.2f}  coverage law90 {g['in_law90'].mean():.0%}  "
                  f"pred90 {g['in_pred90'].mean():.0%}")
        for name, lo, hi in regimes:
            g = ok[(ok["tokens"] >= lo) & (ok["tokens"] < hi)]
            if len(g):
                print(f"  {name:34s} n={len(g):3d}  MAE {g['err_logodds'].abs().mean():.2f}  "
                      f"bias {g['err_logodds'].mean():+.2f}  coverage law90 {g['in_law90'].mean():.0%}  "
                      f"pred90 {g['in_pred90'].mean():.0%}")
        print(f"  {'all':34s} n={len(ok):3d}  MAE {ok['err_logodds'].abs().mean():.2f}  "
              f"bias {ok['err_logodds'].mean():+.2f}  coverage law90 {ok['in_law90'].mean():.0%}  "
              f"pred90 {ok['in_pred90'].mean():.0%}")

    summary(held, "held-out 6.9B and 12B")
    summary(res[res["split"] == "train"], "training checkpoints (in-sample)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
