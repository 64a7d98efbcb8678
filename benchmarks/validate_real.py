"""Validation on real published data (../shared/data beside the repository; skipped when absent).

1. Porian et al. 2024 IsoFLOP runs: for each configuration with a published IsoFLOP estimate, a single-task
   k-free fit and the posterior of the compute-optimal exponent a = beta / (alpha + beta), against theirs.
2. Gadre et al. 2024 over-trained runs: one hierarchical fit (tasks = corpus x validation set) on the runs up to
   20 tokens per parameter; prediction of the runs at 40-640 tokens per parameter: relative error of the
   posterior median, and coverage of the 90% intervals of the law and of the posterior predictive (law plus the
   fitted Student-t noise on log loss).

    PYTHONPATH=. python benchmarks/validate_real.py [--draws 500 --tune 500 --chains 2] [--out DIR]

Writes DIR/validate_real.json and prints the tables (the README's figures come from here).
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
import xarray as xr

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATA = REPO.parent / "shared" / "data"
#: Porian et al. 2024, IsoFLOP estimates of a (N* ~ C^a), 95% CI (from ../shared/data/README.md).
PORIAN_PUBLISHED = {
    "rw/tuned/short/const/standard/val": (0.497, 0.491, 0.505),
    "rw/base/short/chinchilla/standard/val": (0.571, 0.560, 0.589),
    "rw/base/long/kaplan/standard/val": (0.706, 0.691, 0.717),
    "owt2/tuned/short/const/standard/val": (0.518, 0.493, 0.541),
}
GADRE_TRAIN_MAX_RATIO = 20.0


def porian(settings, data_dir: Path) -> list[dict]:
    from bayes_t2.data import from_frame
    from bayes_t2.fit import fit

    frame = pd.read_csv(data_dir / "porian_isoflop_losses.csv")
    out = []
    for config, (pub, pub_lo, pub_hi) in PORIAN_PUBLISHED.items():
        rows = frame[frame["task"] == config][["task", "params", "tokens", "loss"]]
        started = time.perf_counter()
        result = fit(from_frame(rows, source=f"porian:{config}"), settings=settings, progressbar=False)
        post = result.posterior
        a = (post["beta"] / (post["alpha"] + post["beta"])).isel(task=0).values.ravel()
        lo, med, hi = np.quantile(a, [0.025, 0.5, 0.975])
        d = result.diagnostics()
        rec = {"configuration": config, "n_runs": len(rows), "a_median": med, "a_lower95": lo, "a_upper95": hi,
               "published": pub, "published_lower95": pub_lo, "published_upper95": pub_hi,
               "intervals_overlap": bool(lo <= pub_hi and pub_lo <= hi), "max_rhat": d.max_rhat,
               "divergences": d.divergences, "seconds": round(time.perf_counter() - started, 1)}
        print(f"porian {config:<40} a = {med:.3f} [{lo:.3f}, {hi:.3f}]  published {pub:.3f} [{pub_lo:.3f}, "
              f"{pub_hi:.3f}]  r-hat {d.max_rhat:.3f}", flush=True)
        out.append(rec)
    return out


def gadre(settings, data_dir: Path, seed: int) -> dict:
    from bayes_t2.data import from_frame
    from bayes_t2.fit import fit

    frame = pd.read_csv(data_dir / "gadre_overtraining_losses.csv")
    frame["task"] = frame["train_data"] + "/" + frame["task"]
    train = frame[frame["tokens_per_param"] <= GADRE_TRAIN_MAX_RATIO]
    test = frame[frame["tokens_per_param"] > GADRE_TRAIN_MAX_RATIO].reset_index(drop=True)
    started = time.perf_counter()
    result = fit(from_frame(train[["task", "params", "tokens", "loss"]], source="gadre<=20"), settings=settings,
                 progressbar=False)
    d = result.diagnostics()
    coefs = result.coefficients()
    rng = np.random.default_rng(seed)
    nu = float(result.spec["likelihood"]["nu"])
    rows = []
    for task, part in test.groupby("task"):
        c = coefs.sel(task=task)
        N = xr.DataArray(part["params"].to_numpy(float), dims="row")
        D = xr.DataArray(part["tokens"].to_numpy(float), dims="row")
        law = result.route.metric(c, N, D, 1.0)
        law = np.asarray(law.transpose("row", "chain", "draw").values).reshape(len(part), -1)
        sigma = result.posterior["sigma"].sel(task=task).values.ravel()
        pred = law * np.exp(sigma[None, :] * rng.standard_t(nu, size=law.shape))
        for i, (_, r) in enumerate(part.iterrows()):
            l_lo, l_med, l_hi = np.quantile(law[i], [0.05, 0.5, 0.95])
            p_lo, p_hi = np.quantile(pred[i], [0.05, 0.95])
            rows.append({"task": task, "params": r["params"], "tokens_per_param": r["tokens_per_param"],
                         "loss": r["loss"], "median": l_med, "rel_error": (l_med - r["loss"]) / r["loss"],
                         "law_covered": l_lo <= r["loss"] <= l_hi, "pred_covered": p_lo <= r["loss"] <= p_hi})
    res = pd.DataFrame(rows)
    by_ratio = res.groupby(res["tokens_per_param"].round()).agg(
        n=("loss", "size"), median_abs_rel_error=("rel_error", lambda x: float(np.median(np.abs(x)))),
        mean_rel_error=("rel_error", "mean"), law_coverage90=("law_covered", "mean"),
        predictive_coverage90=("pred_covered", "mean"))
    print("gadre: fit on <= 20 tokens/param, predict 40-640", flush=True)
    print(by_ratio.to_string(float_format=lambda v: f"{v:.3f}"), flush=True)
    summary = {"n_train": len(train), "n_test": len(res), "max_rhat": d.max_rhat, "divergences": d.divergences,
               "seconds": round(time.perf_counter() - started, 1),
               "median_abs_rel_error": float(np.median(np.abs(res["rel_error"]))),
               "law_coverage90": float(res["law_covered"].mean()),
               "predictive_coverage90": float(res["pred_covered"].mean()),
               "by_tokens_per_param": by_ratio.reset_index().to_dict(orient="records")}
    print(f"gadre overall: median |rel error| {summary['median_abs_rel_error']:.4f}, 90% coverage law "
          f"{summary['law_coverage90']:.2f}, predictive {summary['predictive_coverage90']:.2f}, r-hat "
          f"{d.max_rhat:.3f}", flush=True)
    return summary


def main() -> None:
    from bayes_t2.fit import SamplerSettings
    from bayes_t2.io import write_json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--draws", type=int, default=500)
    ap.add_argument("--tune", type=int, default=500)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=REPO / "reports" / "validate_real")
    ap.add_argument("--only", choices=("porian", "gadre"), default=None)
    args = ap.parse_args()
    if not (args.data / "porian_isoflop_losses.csv").exists():
        print(f"skipped: no real data at {args.data}")
        return
    warnings.filterwarnings("ignore")
    settings = SamplerSettings(draws=args.draws, tune=args.tune, chains=args.chains, seed=args.seed,
                               pointwise=False)
    result = {}
    if args.only in (None, "porian"):
        result["porian"] = porian(settings, args.data)
    if args.only in (None, "gadre"):
        result["gadre"] = gadre(settings, args.data, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / f"validate_real{'_' + args.only if args.only else ''}.json", result, overwrite=True)


if __name__ == "__main__":
    main()
