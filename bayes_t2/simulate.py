"""Testbeds with a known truth.

`simulate_loss` mirrors the T2 paper's loss-route setting: the Porian et al. IsoFLOP model suite (12 budgets
1.25e16-2.56e19 FLOPs, models 5M-901M parameters, D = C/(6N)) plus a few heavily over-trained small models, each
evaluated on several tasks at several k, with the T2 loss law per task
``L_t(N, D, k) = E_t + A_t/N^alpha_t + B_t/D^beta_t + G_t/k^gamma_t`` and multiplicative log-normal noise.

The truth is written beside the data as ``<stem>.truth.json``:
``{"route": "loss", "seed": …, "noise": …, "tasks": {task: {"E", "A", "alpha", "B", "beta", "G", "gamma"}}}``.

Other routes register a simulator in `SIMULATORS`; `simulate(route, seed, **kw)` dispatches. For calibrating the
accuracy route, `simulate_accuracy_population` draws each task's truth from `ACC_POPULATION` (with checkpoint
deviations, the model's generative process) instead of using the fixed default truth.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar

from .budget import SplitBudget
from .errors import InputError
from .io import atomic_write, check_writable, write_json
from .laws import LOSS_COEFFICIENTS, loss_law

#: The T2 paper's split budget: 2.56e19 training FLOPs, 2e9 inference FLOPs per query.
T2_BUDGET = SplitBudget(train_flops=2.56e19, inference_flops=2e9)

MIN_PARAMS = 5e6
MAX_PARAMS = 9.01e8
DEFAULT_BUDGETS = np.geomspace(1.25e16, 2.56e19, 12)
DEFAULT_KS = (1, 2, 4, 8, 16, 32, 64)
TASK_NAMES = ("arith", "code", "logic", "reading", "science", "trivia", "translation", "commonsense")

#: IsoFLOP sweep: sizes span N* x 10^[-ISO_SPAN, +ISO_SPAN] around the budget's compute-optimal N* (then clipped).
ISO_SPAN = 0.9
#: Over-trained runs: small models at 200-1000 tokens per parameter.
OVERTRAINED_PARAMS = (MIN_PARAMS, 4e7)
OVERTRAINED_RATIO = (200.0, 1000.0)

#: The population the per-task truth is drawn from. The size and data terms are drawn through their value at a
#: reference point (N_REF, D_REF) so that every term is visible in the design; draws outside the stated ranges
#: or failing the identifiability check are redrawn (deterministically, from the same seeded stream).
N_REF, D_REF = 1e8, 2e9
RANGES = {"E": (0.1, 1.0), "A": (10.0, 1000.0), "alpha": (0.25, 0.45), "B": (50.0, 3000.0),
          "beta": (0.25, 0.45), "G": (0.3, 2.0), "gamma": (0.2, 0.6)}
MIN_TERM_SHARE = 0.10  # each term must reach at least this share of the loss somewhere in the design


# ------------------------------------------------------------------------------------------------- loss route
def simulate_loss(seed: int, n_tasks: int = 8, budgets: Sequence[float] = DEFAULT_BUDGETS,
                  sizes_per_budget: int = 6, n_overtrained: int = 6, ks: Sequence[int] = DEFAULT_KS,
                  noise: float = 0.01, truth: dict | None = None,
                  checkpoints: pd.DataFrame | None = None, checkpoint_sd: float = 0.0,
                  bend: Mapping[str, float] | None = None) -> tuple[pd.DataFrame, dict]:
    """A loss-route data set with known per-task coefficients.

    Returns ``(frame, truth)``: ``frame`` has columns task, model, params, tokens, k, loss (one row per
    checkpoint x task x k; params rounded to 3 significant digits, tokens to integers, loss to 6 significant
    digits) and ``truth`` is the JSON-able dict of the data-generating coefficients. Passing ``truth`` (a truth
    dict or a ``{task: coefficients}`` mapping) uses those coefficients instead of drawing them (``n_tasks`` is
    then ignored). The same seed gives the same frame; the noise is ``loss = law * exp(noise * z)``, z ~ N(0, 1).
    Passing ``checkpoints`` (columns params, tokens, optional model: say a user's evaluation design) simulates
    those checkpoints instead of the IsoFLOP testbed (``budgets``, ``sizes_per_budget`` and ``n_overtrained``
    are then ignored); drawn truths are still checked for every term being visible in that design.

    Misspecification a user meets (both off by default; their draws come from their own seeded streams, so the
    rest of the data set is the same with or without them):
    * ``checkpoint_sd``: a log-loss shift u_c ~ N(0, checkpoint_sd) shared by every row of one checkpoint
      (all its tasks and k values: the same weights, the same samples), so rows are correlated.
    * ``bend``: ``{"drift", "params", "tokens"}``: the law bends beyond (params, tokens) -- the local exponent
      of the size term grows by 2 x drift per e-fold of N past ``params`` (likewise the data term past
      ``tokens``; `bent_loss_law`). drift > 0: larger runs do better than the fitted law says.
    """
    budgets = np.asarray(budgets, dtype=float).ravel()
    ks = np.asarray(ks).ravel()
    _check_design(n_tasks, budgets, sizes_per_budget, n_overtrained, ks, noise)
    rng = np.random.default_rng(seed)
    fixed = _fixed_design(checkpoints) if checkpoints is not None else None
    coefs = (_truth_tasks(truth) if truth is not None
             else _draw_loss_truth(rng, int(n_tasks), budgets, int(sizes_per_budget), int(n_overtrained), ks,
                                   fixed))
    design = fixed if fixed is not None else loss_design(coefs, budgets, sizes_per_budget, n_overtrained)

    tasks = list(coefs)
    n_ck, n_t, n_k = len(design), len(tasks), len(ks)
    N = np.repeat(design["params"].to_numpy(), n_t * n_k)
    D = np.repeat(design["tokens"].to_numpy(), n_t * n_k)
    model = np.repeat(design["model"].to_numpy(), n_t * n_k)
    task = np.tile(np.repeat(np.asarray(tasks, dtype=object), n_k), n_ck)
    k = np.tile(ks.astype(np.int64), n_ck * n_t)
    c = {name: np.tile(np.repeat([coefs[t][name] for t in tasks], n_k), n_ck) for name in LOSS_COEFFICIENTS}
    if bend is None:
        mean = loss_law(c["E"], c["A"], c["alpha"], c["B"], c["beta"], c["G"], c["gamma"], N, D, k.astype(float))
    else:
        bend = _check_bend(bend)
        mean = bent_loss_law(c, N, D, k.astype(float), **bend)
    log_dev = noise * rng.standard_normal(mean.shape)
    if checkpoint_sd:
        if not (math.isfinite(checkpoint_sd) and checkpoint_sd > 0):
            raise InputError(f"checkpoint_sd must be >= 0, got {checkpoint_sd}")
        u = np.random.default_rng([int(seed), 90210]).normal(0.0, checkpoint_sd, n_ck)  # its own stream
        log_dev = log_dev + np.repeat(u, n_t * n_k)
    loss = _round_sig(mean * np.exp(log_dev), 6)

    frame = pd.DataFrame({"task": pd.Series(task, dtype="str"), "model": pd.Series(model, dtype="str"),
                          "params": N, "tokens": D, "k": k, "loss": loss})
    out_truth = {"route": "loss", "seed": int(seed), "noise": float(noise), "noise_model": "lognormal",
                 "tasks": {t: {name: float(coefs[t][name]) for name in LOSS_COEFFICIENTS} for t in tasks}}
    if checkpoint_sd:
        out_truth["checkpoint_sd"] = float(checkpoint_sd)
    if bend is not None:
        out_truth["bend"] = {k: float(v) for k, v in bend.items()}
    return frame, out_truth


def bent_loss_law(c: Mapping[str, Any], N: Any, D: Any, k: Any, *, drift: float, params: float,
                  tokens: float) -> np.ndarray:
    """The loss law bending beyond (params, tokens): with x = max(0, ln(N/params)) and y = max(0, ln(D/tokens)),
    L = E + A/N^alpha * exp(-drift x^2) + B/D^beta * exp(-drift y^2) + G/k^gamma, i.e. the local log-log
    slope of the size term is -(alpha + 2 drift x) (the exponent drifts with log N past `params`); identical
    to `laws.loss_law` inside the range."""
    N, D, k = (np.asarray(v, dtype=float) for v in (N, D, k))
    x = np.maximum(0.0, np.log(N / params))
    y = np.maximum(0.0, np.log(D / tokens))
    return (c["E"] + c["A"] * N ** -c["alpha"] * np.exp(-drift * x ** 2) + c["B"] * D ** -c["beta"]
            * np.exp(-drift * y ** 2) + c["G"] * k ** -c["gamma"])


def _check_bend(bend: Mapping[str, float]) -> dict[str, float]:
    missing = [k for k in ("drift", "params", "tokens") if k not in bend]
    if missing:
        raise InputError(f"bend needs drift, params and tokens (missing {', '.join(missing)})")
    out = {k: float(bend[k]) for k in ("drift", "params", "tokens")}
    if not all(math.isfinite(v) for v in out.values()) or out["params"] <= 0 or out["tokens"] <= 0:
        raise InputError("bend: drift must be finite, params and tokens > 0")
    return out


def loss_design(coefs: Mapping[str, Mapping[str, float]], budgets: Sequence[float] = DEFAULT_BUDGETS,
                sizes_per_budget: int = 6, n_overtrained: int = 6) -> pd.DataFrame:
    """The checkpoints (model, params, tokens, flops, design) of the IsoFLOP + over-training testbed.

    At each budget C, `sizes_per_budget` sizes log-spaced over N* x 10^[-ISO_SPAN, ISO_SPAN] around the true
    compute-optimal N* of the task-average law, rounded to 3 significant digits and clipped to [5e6, 9.01e8]
    (sizes that coincide after clipping are kept once), with D = C/(6N). Then `n_overtrained` small models
    (5M-40M) at 200-1000 tokens per parameter.
    """
    rows = []
    for C in np.asarray(budgets, dtype=float):
        n_opt = task_average_optimal_params(coefs, C)
        if sizes_per_budget == 1:
            sizes = np.array([n_opt])
        else:
            sizes = n_opt * np.logspace(-ISO_SPAN, ISO_SPAN, sizes_per_budget)
        sizes = np.unique(np.clip(_round_sig(sizes, 3), MIN_PARAMS, MAX_PARAMS))
        for n in sizes:
            rows.append(("isoflop", n, float(np.round(C / (6.0 * n))), C))
    if n_overtrained:
        n_ot = _round_sig(np.geomspace(*OVERTRAINED_PARAMS, n_overtrained), 3)
        ratio = np.geomspace(*OVERTRAINED_RATIO, n_overtrained)
        for n, r in zip(n_ot, ratio):
            d = float(np.round(n * r))
            rows.append(("overtrained", float(n), d, 6.0 * n * d))
    design = pd.DataFrame(rows, columns=["design", "params", "tokens", "flops"])
    design = design.drop_duplicates(["params", "tokens"]).reset_index(drop=True)
    design.insert(0, "model", [_model_name(n, d) for n, d in zip(design["params"], design["tokens"])])
    return design


def task_average_optimal_params(coefs: Mapping[str, Mapping[str, float]], train_flops: float) -> float:
    """argmin_N of the task-average loss mean_t[A_t/N^alpha_t + B_t/D^beta_t] along C = 6ND (k-free, E-free)."""
    A = np.array([c["A"] for c in coefs.values()], dtype=float)
    alpha = np.array([c["alpha"] for c in coefs.values()], dtype=float)
    B = np.array([c["B"] for c in coefs.values()], dtype=float)
    beta = np.array([c["beta"] for c in coefs.values()], dtype=float)

    def objective(log_n: float) -> float:
        n = math.exp(log_n)
        d = train_flops / (6.0 * n)
        return float(np.mean(A * n ** -alpha + B * d ** -beta))

    lo, hi = math.log(1e3), math.log(max(train_flops / 6.0, 1e4))
    res = minimize_scalar(objective, bounds=(lo, hi), method="bounded", options={"xatol": 1e-6})
    return float(math.exp(res.x))


def term_shares(coefs: Mapping[str, float], params, tokens, k) -> dict[str, np.ndarray]:
    """Share of the loss each term (E, A, B, G) contributes at the given points."""
    N, D, K = (np.asarray(x, dtype=float) for x in (params, tokens, k))
    N, D, K = np.broadcast_arrays(N, D, K)
    terms = {"E": np.full(N.shape, float(coefs["E"])), "A": coefs["A"] * N ** -coefs["alpha"],
             "B": coefs["B"] * D ** -coefs["beta"], "G": coefs["G"] * K ** -coefs["gamma"]}
    total = sum(terms.values())
    return {name: t / total for name, t in terms.items()}


def identifiable(coefs: Mapping[str, float], design: pd.DataFrame, ks: Sequence[int],
                 min_share: float = MIN_TERM_SHARE) -> bool:
    """True if every term (E, A, B, G) reaches `min_share` of the loss somewhere in the design."""
    N = np.repeat(design["params"].to_numpy(float), len(ks))
    D = np.repeat(design["tokens"].to_numpy(float), len(ks))
    K = np.tile(np.asarray(ks, dtype=float), len(design))
    shares = term_shares(coefs, N, D, K)
    return all(float(s.max()) >= min_share for s in shares.values())


def _fixed_design(checkpoints: pd.DataFrame) -> pd.DataFrame:
    """A given design's distinct checkpoints (params, tokens, model), in (params, tokens) order."""
    missing = [c for c in ("params", "tokens") if c not in checkpoints.columns]
    if missing:
        raise InputError(f"checkpoints need columns params and tokens (missing {', '.join(missing)})")
    design = checkpoints[["params", "tokens"]].astype(float).drop_duplicates()
    if design.empty or not np.all(np.isfinite(design.to_numpy())) or (design.to_numpy() <= 0).any():
        raise InputError("checkpoints must have positive, finite params and tokens")
    design = design.sort_values(["params", "tokens"]).reset_index(drop=True)
    design.insert(0, "model", [_model_name(n, d) for n, d in zip(design["params"], design["tokens"])])
    return design


def _draw_loss_truth(rng: np.random.Generator, n_tasks: int, budgets: np.ndarray, sizes_per_budget: int,
                     n_overtrained: int, ks: np.ndarray,
                     fixed: pd.DataFrame | None = None) -> dict[str, dict[str, float]]:
    """Per-task coefficients from the population, redrawn until every term is visible in the actual design.

    The design depends on the truth (IsoFLOP sweeps centre on the true optimum), so draw, build the design,
    redraw the tasks that fail the check, and repeat. A degenerate design (say one budget, one size) may never
    pass; then the last draw is kept.
    """
    names = [TASK_NAMES[i] if n_tasks <= len(TASK_NAMES) else f"task_{i}" for i in range(n_tasks)]
    coefs = {name: _draw_one(rng) for name in names}
    for _ in range(50):
        design = fixed if fixed is not None else loss_design(coefs, budgets, sizes_per_budget, n_overtrained)
        failing = [t for t, c in coefs.items() if not identifiable(c, design, ks)]
        if not failing:
            break
        for t in failing:
            coefs[t] = _draw_one(rng)
    return coefs


def _draw_one(rng: np.random.Generator) -> dict[str, float]:
    """One task's coefficients from the population, within `RANGES` (out-of-range draws are redrawn)."""
    while True:
        c = _draw_raw(rng)
        if all(RANGES[k][0] <= v <= RANGES[k][1] for k, v in c.items()):
            return {k: float(_round_sig(v, 4)) for k, v in c.items()}


def _draw_raw(rng: np.random.Generator) -> dict[str, float]:
    E = math.exp(rng.normal(math.log(0.35), 0.45))
    alpha = rng.normal(0.34, 0.04)
    A = math.exp(rng.normal(math.log(0.45), 0.3)) * N_REF ** alpha
    beta = rng.normal(0.32, 0.04)
    B = math.exp(rng.normal(math.log(0.5), 0.3)) * D_REF ** beta
    G = math.exp(rng.normal(math.log(0.8), 0.4))
    gamma = rng.normal(0.4, 0.08)
    return {"E": E, "A": A, "alpha": alpha, "B": B, "beta": beta, "G": G, "gamma": gamma}


def _truth_tasks(truth: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    tasks = truth.get("tasks", truth) if isinstance(truth, Mapping) else None
    if not isinstance(tasks, Mapping) or not tasks:
        raise InputError("truth must be a dict {'tasks': {task: {E, A, alpha, B, beta, G, gamma}}}")
    out = {}
    for task, coefs in tasks.items():
        if not isinstance(coefs, Mapping):
            raise InputError(f"truth for task '{task}' must be a dict of coefficients")
        missing = [name for name in LOSS_COEFFICIENTS if name not in coefs]
        if missing:
            raise InputError(f"truth for task '{task}' is missing {', '.join(missing)}")
        values = {name: float(coefs[name]) for name in LOSS_COEFFICIENTS}
        bad = [n for n, v in values.items() if not math.isfinite(v) or v < 0 or (n not in ("E", "G") and v == 0)]
        if bad:
            raise InputError(f"truth for task '{task}' has invalid {', '.join(bad)} "
                             f"(must be finite and > 0; E and G may be 0)")
        out[str(task)] = values
    return out


def _check_design(n_tasks, budgets, sizes_per_budget, n_overtrained, ks, noise) -> None:
    if int(n_tasks) < 1:
        raise InputError(f"n_tasks must be >= 1, got {n_tasks}")
    if budgets.size == 0 or not np.all(np.isfinite(budgets)) or np.any(budgets <= 0):
        raise InputError("budgets must be positive, finite FLOP counts")
    if int(sizes_per_budget) < 1 or int(n_overtrained) < 0:
        raise InputError("sizes_per_budget must be >= 1 and n_overtrained >= 0")
    if ks.size == 0 or np.any(ks < 1) or np.any(np.asarray(ks, dtype=float) != np.round(ks)):
        raise InputError(f"ks must be integers >= 1, got {list(ks)}")
    if not math.isfinite(noise) or noise < 0:
        raise InputError(f"noise must be >= 0, got {noise}")


def _round_sig(x, digits: int):
    x = np.asarray(x, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.where(x == 0, 0, np.floor(np.log10(np.abs(np.where(x == 0, 1, x)))))
    scale = 10.0 ** (digits - 1 - mag)
    return np.round(x * scale) / scale


def _model_name(n: float, d: float) -> str:
    return f"N{n / 1e6:.4g}M-D{d / 1e9:.4g}B"


# ------------------------------------------------------------------------------------------ dispatch + output
def simulate_accuracy(seed: int, n_tasks: int = 3, n_problems: int = 64,
                      n_samples: int | Sequence[int] = (128, 256, 1024), **kwargs: Any) -> tuple[pd.DataFrame, dict]:
    """Per-problem sample counts (the ``samples`` kind) from the T2 accuracy law on the Pythia grid
    (9 sizes x 9 token counts); see `bayes_t2.routes.accuracy.simulate_samples`. Problems draw 128, 256 or 1024
    samples (adaptive sampling), so pass@k is observable up to k = 128 everywhere and to 1024 on some problems."""
    from .routes.accuracy import simulate_samples

    return simulate_samples(seed, n_tasks=n_tasks, n_problems=n_problems, n_samples=n_samples, **kwargs)


# ------------------------------------------------------------------------------- accuracy route: a population
#: The accuracy-route population (for calibration): each task's T2 coefficients spread around the tasks of
#: `routes.accuracy.DEFAULT_TRUTH` (normal: mean, sd; the size and data terms drawn through their value at
#: (N_REF, D_REF), like the loss population, so the latent law keeps a Chinchilla-like shape), and its
#: checkpoints scatter around the law by deviations of logit(mu) and log(nu) (normal or Student-t, as the
#: model's spec says) with a per-task sd (log-normal). theta2 < 0 always (more loss, lower accuracy).
#: The exponents are log-normal with sd 0.3 (alpha 0.18-0.60, beta 0.16-0.53 at 95%), the spread of published
#: laws (Chinchilla 0.34/0.28, Besiroglu et al. 0.35/0.37, the Pythia GSM8K fit's latent beta ~0.6); an sd of
#: 0.025 put that real fit 12 sd out, and left the exponents so much narrower than any sensible prior that
#: every interval through them was conservative (N* 96.8% at 90%: README, "Calibration").
ACC_POPULATION = {"theta1": (4.0, 0.7), "log_neg_theta2": (math.log(2.1), 0.12), "theta3": (0.25, 0.6),
                  "theta4": (0.25, 0.1), "E": (1.71, 0.08), "log_a_ref": (math.log(0.85), 0.2),
                  "log_alpha": (math.log(0.33), 0.3), "log_b_ref": (math.log(0.85), 0.3),
                  "log_beta": (math.log(0.29), 0.3),
                  "logit_floor": (-15.5, 1.0), "log_sd_mu": (math.log(0.15), 0.4),
                  "log_sd_nu": (math.log(0.15), 0.4)}
#: A drawn task is kept only if its law looks like a benchmark over the design (the best checkpoint's pass@1
#: in this range, the worst below ACC_MIN_PASS1) and its optimum at the T2 split budget is interior in k.
ACC_MAX_PASS1 = (0.05, 0.7)
ACC_MIN_PASS1 = 1e-2
ACC_K_RANGE = (2, 60)


def draw_accuracy_truth(rng: np.random.Generator, n_tasks: int,
                        checkpoints: Sequence[tuple[float, float]]) -> dict[str, dict[str, float]]:
    """Per-task T2 coefficients and checkpoint-deviation sds (`checkpoint_sd_mu`, `checkpoint_sd_nu`) from
    `ACC_POPULATION`, each redrawn (from the same seeded stream) until it passes `accuracy_truth_ok`."""
    names = [f"task_{chr(ord('a') + i)}" if n_tasks <= 26 else f"task_{i}" for i in range(int(n_tasks))]
    out = {}
    for name in names:
        for _ in range(200):
            coefs = _draw_accuracy_one(rng)
            if accuracy_truth_ok(coefs, checkpoints):
                break
        out[name] = coefs
    return out


def _draw_accuracy_one(rng: np.random.Generator) -> dict[str, float]:
    z = {k: rng.normal(m, s) for k, (m, s) in ACC_POPULATION.items()}
    alpha, beta = math.exp(z["log_alpha"]), math.exp(z["log_beta"])
    return {"theta1": z["theta1"], "theta2": -math.exp(z["log_neg_theta2"]), "theta3": z["theta3"],
            "theta4": z["theta4"], "E": z["E"], "A": math.exp(z["log_a_ref"]) * N_REF ** alpha,
            "alpha": alpha, "B": math.exp(z["log_b_ref"]) * D_REF ** beta, "beta": beta,
            "logit_floor": z["logit_floor"], "checkpoint_sd_mu": math.exp(z["log_sd_mu"]),
            "checkpoint_sd_nu": math.exp(z["log_sd_nu"])}


def accuracy_truth_ok(coefs: Mapping[str, float], checkpoints: Sequence[tuple[float, float]]) -> bool:
    """A plausible, identifiable truth: law pass@1 over the checkpoints spans < ACC_MIN_PASS1 to a best value
    in ACC_MAX_PASS1, and k* at the split budget (C_train 2.56e19, C_inf 2e9 per query) lies in ACC_K_RANGE.
    k* comes from the independent reference solver (`bayes_t2.reference`), not from the optimizer under test."""
    from .budget import Constraints
    from .reference import reference_optimum
    from .routes.accuracy import NO_FLOOR, T2_COEFFICIENTS, accuracy_pass_at_k

    ckpt = np.asarray(checkpoints, dtype=float).reshape(-1, 2)
    p1 = np.asarray(accuracy_pass_at_k(coefs, ckpt[:, 0], ckpt[:, 1], 1.0), dtype=float)
    if not (ACC_MAX_PASS1[0] <= p1.max() <= ACC_MAX_PASS1[1] and p1.min() <= ACC_MIN_PASS1):
        return False
    theta = np.array([[float(coefs.get(c, NO_FLOOR)) if c == "logit_floor" else float(coefs[c])
                       for c in T2_COEFFICIENTS]])
    k = float(reference_optimum("accuracy", theta, T2_BUDGET, Constraints())[0, 2])
    return ACC_K_RANGE[0] <= k <= ACC_K_RANGE[1]


def simulate_accuracy_population(seed: int, checkpoints: Sequence[tuple[float, float]], n_tasks: int = 2,
                                 n_problems: int = 64, n_samples: int | Sequence[int] = 128,
                                 deviation_nu: float | None = None) -> tuple[pd.DataFrame, dict]:
    """Per-problem counts (the ``samples`` kind) from a truth drawn from `ACC_POPULATION`, with checkpoint
    deviations (normal, or Student-t with `deviation_nu` degrees of freedom): the model's generative process.
    Same columns as `routes.accuracy.simulate_samples`; the truth dict also holds each task's deviation sds.
    Problems draw their number of samples uniformly from `n_samples` when it is a sequence."""
    from .routes.accuracy import accuracy_shapes

    rng = np.random.default_rng(seed)
    ckpt = np.asarray(checkpoints, dtype=float).reshape(-1, 2)
    if np.any(ckpt <= 0) or n_problems < 1:
        raise InputError("checkpoints need params > 0 and tokens > 0, and n_problems >= 1")
    choices = np.atleast_1d(np.asarray(n_samples, dtype=np.int64))
    if np.any(choices < 1):
        raise InputError("n_samples must be >= 1")
    tasks = draw_accuracy_truth(rng, n_tasks, ckpt)
    rows = []
    for task, coefs in tasks.items():
        a, b = accuracy_shapes(coefs, ckpt[:, 0], ckpt[:, 1], rng=rng, noise_nu=deviation_nu)
        p = rng.beta(np.repeat(a, n_problems), np.repeat(b, n_problems))
        n = choices[rng.integers(0, choices.size, size=p.size)]
        rows.append(pd.DataFrame({"task": task, "model": [_model_name(N, D) for N, D in np.repeat(ckpt, n_problems, 0)],
                                  "params": np.repeat(ckpt[:, 0], n_problems),
                                  "tokens": np.repeat(ckpt[:, 1], n_problems),
                                  "problem": np.tile(np.arange(n_problems), len(ckpt)), "n_samples": n,
                                  "n_correct": rng.binomial(n, p)}))
    truth = {"route": "accuracy", "seed": int(seed), "n_problems": int(n_problems), "population": True,
             "deviation_nu": deviation_nu, "tasks": {t: {k: float(v) for k, v in c.items()}
                                                         for t, c in tasks.items()}}
    return pd.concat(rows, ignore_index=True), truth


# ------------------------------------------------------------------------------------------ repeated data
#: The repeated-data testbed (`simulate_repeated`), shaped like Muennighoff et al. 2023's suite: models of a few
#: sizes trained for 1 to 64 epochs on a few unique-data budgets U (D = U x epochs), plus the same sizes on fresh
#: data. The truth is their published C4 fit (datablations' parametric fit: E = e^0.625, A = e^6.255,
#: B = e^7.305, alpha = beta = 0.353) with R_D* = 7, half the published 15.4, so a fit must learn R_D* from the
#: data rather than read it off its prior; R_N* is the published 5.31.
REPEATED_PARAMS = (2e7, 6e7, 2e8, 6e8)
REPEATED_UNIQUE = (1e8, 4e8, 1.6e9)
REPEATED_EPOCHS = (1, 2, 4, 8, 16, 32, 64)
REPEATED_TRUTH = {"E": 1.8692, "A": 520.57, "alpha": 0.35266, "B": 1488.0, "beta": 0.35266, "G": 0.0, "gamma": 1.0,
                  "R_D_star": 7.0, "R_N_star": 5.309743}
#: spread of the per-task truths around REPEATED_TRUTH when several tasks are simulated (sd of log E, log R_D*)
REPEATED_TASK_SD = {"E": 0.1, "R_D_star": 0.3}


def simulate_repeated(seed: int, n_tasks: int = 1, params: Sequence[float] = REPEATED_PARAMS,
                      unique_tokens: Sequence[float] = REPEATED_UNIQUE, epochs: Sequence[float] = REPEATED_EPOCHS,
                      noise: float = 0.01, truth: dict | None = None) -> tuple[pd.DataFrame, dict]:
    """Runs trained for several epochs on U unique tokens, with a known data-constrained truth.

    Every (params, U, epochs) run, D = U x epochs (epochs 1 is fresh data), one row per task and run with
    columns task, model, params, tokens, unique_tokens, k (= 1), loss; the loss is the data-constrained law
    (`laws.effective_tokens`, `laws.effective_params` with U_N from the task's own coefficients) times
    exp(noise z). `truth` ({task: coefficients incl. R_D_star, R_N_star}) replaces the drawn truths. The truth
    dict has the `simulate_loss` layout plus R_D_star, R_N_star per task."""
    from .laws import effective_params, effective_tokens, unique_params

    if not (isinstance(n_tasks, int) and n_tasks >= 1):
        raise InputError(f"n_tasks must be a positive integer, got {n_tasks}")
    rng = np.random.default_rng(seed)
    if truth is not None:
        coefs = {t: dict(c) for t, c in (truth.get("tasks", truth)).items()}
    else:
        coefs = {}
        for i in range(n_tasks):
            c = dict(REPEATED_TRUTH)
            if n_tasks > 1:
                for name, sd in REPEATED_TASK_SD.items():
                    c[name] = float(c[name] * math.exp(sd * rng.standard_normal()))
            coefs[TASK_NAMES[i % len(TASK_NAMES)] + ("" if i < len(TASK_NAMES) else str(i))] = c
    runs = pd.DataFrame([(float(n), float(u), float(u) * float(e)) for n in params for u in unique_tokens
                         for e in epochs], columns=["params", "unique_tokens", "tokens"]).drop_duplicates()
    rows = []
    for task, c in coefs.items():
        N, U, D = (runs[col].to_numpy(float) for col in ("params", "unique_tokens", "tokens"))
        u_n = unique_params(c["A"], c["alpha"], c["B"], c["beta"], U)
        mean = loss_law(c["E"], c["A"], c["alpha"], c["B"], c["beta"], 0.0, 1.0,
                        effective_params(N, u_n, c["R_N_star"]), effective_tokens(D, U, c["R_D_star"]), 1.0)
        loss = _round_sig(mean * np.exp(noise * rng.standard_normal(mean.shape)), 6)
        rows.append(pd.DataFrame({"task": task, "model": [f"{_model_name(n, d)}-u{_round_sig(u, 3):.3g}"
                                                          for n, d, u in zip(N, D, U)],
                                  "params": N, "tokens": D, "unique_tokens": U, "k": 1, "loss": loss}))
    frame = pd.concat(rows, ignore_index=True)
    frame["task"] = frame["task"].astype("str")
    out_truth = {"route": "loss", "seed": int(seed), "noise": float(noise), "noise_model": "lognormal",
                 "law": "data-constrained (Muennighoff et al. 2023)",
                 "tasks": {t: {name: float(c[name]) for name in (*LOSS_COEFFICIENTS, "R_D_star", "R_N_star")}
                           for t, c in coefs.items()}}
    return frame, out_truth


SIMULATORS: dict[str, Callable[..., tuple[pd.DataFrame, dict]]] = {"loss": simulate_loss,
                                                                   "accuracy": simulate_accuracy,
                                                                   "loss-repeated": simulate_repeated}


def simulate(route: str, seed: int, **kwargs: Any) -> tuple[pd.DataFrame, dict]:
    """Simulate a data set for `route` ("loss" or "accuracy")."""
    if route not in SIMULATORS:
        raise InputError(f"no simulator for route '{route}'; available: {', '.join(sorted(SIMULATORS))}")
    return SIMULATORS[route](seed, **kwargs)


def truth_path(out: str | Path) -> Path:
    """Where the truth of a simulated data file goes: data.csv -> data.truth.json (also for .csv.gz)."""
    out = Path(out)
    name = out.name
    for suffix in (".csv.gz", ".csv", ".parquet", ".pq"):
        if name.lower().endswith(suffix):
            return out.with_name(name[: -len(suffix)] + ".truth.json")
    return out.with_name(out.stem + ".truth.json")


def write_simulation(out: str | Path, data: pd.DataFrame, truth: dict, overwrite: bool = False) -> tuple[Path, Path]:
    """Write `data` to `out` (CSV, CSV.gz or Parquet by extension) and `truth` to `<stem>.truth.json` beside it.

    Both are written atomically; if either exists and `overwrite` is false nothing is written at all.
    Returns (data path, truth path).
    """
    out = Path(out)
    name = out.name.lower()
    if name.endswith((".csv", ".csv.gz")):
        compression = "gzip" if name.endswith(".gz") else None

        def write(p: Path) -> None:
            data.to_csv(p, index=False, float_format="%.15g", compression=compression)
    elif name.endswith((".parquet", ".pq")):
        def write(p: Path) -> None:
            data.to_parquet(p, index=False)
    else:
        raise InputError(f"{out}: unknown file type; use .csv, .csv.gz, .parquet or .pq")
    tpath = truth_path(out)
    check_writable(out, overwrite=overwrite)
    check_writable(tpath, overwrite=overwrite)
    atomic_write(out, write, overwrite=overwrite)
    write_json(tpath, truth, overwrite=overwrite)
    return out, tpath
