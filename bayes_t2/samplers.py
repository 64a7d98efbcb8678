"""NUTS back-ends (nutpie, PyMC, numpyro) behind one call, with a per-process cache of compiled models.

Compiling a model (numba for nutpie, the C/numba backends for PyMC) costs far more than sampling a small one
(measured on 2 cores: ~30 s compile against a few seconds of sampling for the test fit), and calibration or a
sensitivity sweep fits hundreds of models of the same shape. So the compiled model is cached, keyed by
`model_key`: the route, the sampler, the specification, the coordinates, the shapes of the data and a hash of
the graph's structure and of every constant in it. A model whose data all live in `pm.Data` (the loss route)
then gets a cache hit for new data of the same shape, and the new data are swapped in (nutpie:
`CompiledPyMCModel.with_data`; PyMC: `pm.set_data` on the cached model, whose compiled logp/gradient function
reads those shared variables). A route that bakes data into its graph as constants simply misses the cache:
slower, never wrong. A hit gives the same draws as a fresh compile (same seed, same data).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from .errors import InputError

#: Samplers `fit` accepts; numpyro only when jax and numpyro are installed (extra `bayes-t2[jax]`).
SAMPLERS = ("nutpie", "pymc", "numpyro")
CACHE_SIZE = 16


@dataclass
class CacheStats:
    """What the cache did in this process (the benchmarks read `last_compile_seconds`)."""

    hits: int = 0
    misses: int = 0
    compile_seconds: float = 0.0
    last_compile_seconds: float = 0.0
    last_hit: bool = False


_cache: OrderedDict[str, Any] = OrderedDict()
_lock = threading.Lock()
_locks: dict[str, threading.Lock] = {}
stats = CacheStats()


def clear_cache() -> None:
    """Forget every compiled model (the next fit of any shape compiles again)."""
    with _lock:
        _cache.clear()
        _locks.clear()
        stats.__init__()


def check_sampler(name: str) -> None:
    """InputError unless `name` is a sampler that can run here."""
    if name not in SAMPLERS:
        raise InputError(f"--sampler must be one of {', '.join(SAMPLERS)}, got '{name}'")
    if name == "numpyro" and not numpyro_available():
        raise InputError("--sampler numpyro needs jax and numpyro: pip install 'bayes-t2[jax]'")


def numpyro_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("jax", "numpyro"))


# ----------------------------------------------------------------------------------------------- cache key
def model_key(route: str, spec_json: str, model: Any, sampler: str) -> str:
    """Hash of everything that makes two models compile to the same code.

    Hashes the generative graph (random variables, deterministics, potentials; the log-density is derived
    from it): each node's op and inputs in topological order, the bytes of every constant (so data baked in
    as constants change the key), the names, types and shapes of shared variables (not their values: those
    are swapped in), the value transforms, and the coordinates (they label the output and fix dim lengths).
    """
    from pytensor.compile.sharedvalue import SharedVariable
    from pytensor.graph.basic import Constant
    from pytensor.graph.traversal import toposort

    outputs = [*model.basic_RVs, *model.deterministics, *model.potentials]
    h = hashlib.sha256()
    h.update(json.dumps([route, sampler, spec_json]).encode())
    ids: dict[Any, int] = {}
    for node in toposort(outputs):
        for var in node.inputs:
            if var in ids:
                continue
            ids[var] = len(ids)
            h.update(f"|in:{var.type}:{var.name}".encode())
            if isinstance(var, Constant):
                data = np.asarray(var.data)
                h.update(f":{data.shape}:".encode())
                h.update(np.ascontiguousarray(data).tobytes())
            elif isinstance(var, SharedVariable):
                h.update(f":shared:{getattr(var.get_value(borrow=True), 'shape', '')}".encode())
        h.update(f"|{node.op}({','.join(str(ids[v]) for v in node.inputs)})".encode())
        for var in node.outputs:
            ids[var] = len(ids)
    h.update(("|out:" + ",".join(f"{o.name}={ids.get(o, -1)}" for o in outputs)).encode())
    h.update(str([(rv.name, str(model.rvs_to_transforms.get(rv))) for rv in model.free_RVs]).encode())
    coords = {name: [str(v) for v in np.asarray(values).ravel()] for name, values in model.coords.items()
              if values is not None}
    h.update(json.dumps(coords, sort_keys=True).encode())
    return h.hexdigest()


def _cached(key: str, build) -> tuple[Any, bool]:
    """The cached object for key, or build() it once (other threads asking for the same key wait)."""
    with _lock:
        key_lock = _locks.setdefault(key, threading.Lock())
    with key_lock:
        with _lock:
            if key in _cache:
                _cache.move_to_end(key)
                stats.hits += 1
                stats.last_hit, stats.last_compile_seconds = True, 0.0
                return _cache[key], True
        started = time.perf_counter()
        value = build()
        seconds = time.perf_counter() - started
        with _lock:
            _cache[key] = value
            while len(_cache) > CACHE_SIZE:
                old, _ = _cache.popitem(last=False)
                _locks.pop(old, None)
            stats.misses += 1
            stats.compile_seconds += seconds
            stats.last_hit, stats.last_compile_seconds = False, seconds
        return value, False


def _data_values(model: Any) -> dict[str, np.ndarray]:
    return {var.name: var.get_value() for var in model.data_vars}


def _chain_seeds(seed: int, chains: int) -> list[int]:
    from pymc.util import _get_seeds_per_chain

    return [int(s) for s in _get_seeds_per_chain(seed, chains)]


def _cores(cores: int | None, chains: int) -> int:
    return max(1, min(chains, cores if cores else min(4, os.cpu_count() or 1)))


# ----------------------------------------------------------------------------------------------- sampling
def sample(model: Any, key: str, *, sampler: str, draws: int, tune: int, chains: int, seed: int,
           target_accept: float, cores: int | None = None, progressbar: bool = True) -> xr.DataTree:
    """Sample `model` with the chosen NUTS implementation, reusing a compiled model cached under `key`.

    Returns the DataTree `pm.sample` would (posterior, sample_stats, observed_data, constant_data).
    """
    check_sampler(sampler)
    run = {"nutpie": _sample_nutpie, "pymc": _sample_pymc, "numpyro": _sample_numpyro}[sampler]
    return run(model, key, draws=draws, tune=tune, chains=chains, seed=seed, target_accept=target_accept,
               cores=_cores(cores, chains), progressbar=progressbar)


def _sample_nutpie(model, key, *, draws, tune, chains, seed, target_accept, cores, progressbar):
    """nutpie with the low-rank mass matrix (the measured default); the compiled model is cached."""
    import nutpie
    from pymc.backends.arviz import patch_nutpie_idata
    from pymc.progress_bar.progress import NutpieProgressBarManager

    compiled, hit = _cached(key, lambda: nutpie.compile_pymc_model(model))
    if hit:
        names = {var.name for var in compiled.shared_var_keys}
        compiled = compiled.with_data(**{k: v for k, v in _data_values(model).items() if k in names})
    pb = NutpieProgressBarManager(chains=chains, draws=draws, progressbar=progressbar)
    started = time.time()
    with pb:
        tree = nutpie.sample(compiled, draws=draws, tune=tune, chains=chains, cores=cores,
                             seed=_chain_seeds(seed, chains)[0], save_warmup=False, progress_bar=False,
                             progress_callback=pb.update, adaptation="low_rank", target_accept=target_accept)
    patch_nutpie_idata(tree, model, sampling_time=time.time() - started)
    return tree


def _sample_pymc(model, key, *, draws, tune, chains, seed, target_accept, cores, progressbar):
    """PyMC's own NUTS, initialised as `pm.sample`'s default (jitter + adapted diagonal mass matrix).

    The cached object is the first model of this key and its compiled logp/gradient function; a hit sets the
    new data on that model (`pm.set_data`) and builds a fresh step around the same compiled function.
    """
    import pymc as pm
    from pymc.blocking import DictToArrayBijection
    from pymc.sampling.mcmc import _init_jitter
    from pymc.step_methods.hmc import quadpotential

    def compile_model():
        func = model.logp_dlogp_function(ravel_inputs=True)
        func.trust_input = True
        return model, func

    (cached_model, func), hit = _cached(key, compile_model)
    if hit:
        with cached_model:
            pm.set_data(_data_values(model))
    seeds = _chain_seeds(seed, chains)

    def logp(point):
        q, _ = DictToArrayBijection.map(point)
        return func([q], extra_vars={})[0]

    with cached_model:
        starts = _init_jitter(cached_model, None, seeds=seeds, jitter=True, jitter_max_retries=10, logp_fn=logp)
        mean = np.mean([DictToArrayBijection.map(p).data for p in starts], axis=0)
        potential = quadpotential.QuadPotentialDiagAdapt(len(mean), mean, np.ones_like(mean), 10, rng=seeds[0])
        step = pm.NUTS(potential=potential, target_accept=target_accept, logp_dlogp_func=func, rng=seeds[0])
        return pm.sample(draws=draws, tune=tune, chains=chains, cores=cores, step=step, initvals=starts,
                         random_seed=seed, progressbar=progressbar, compute_convergence_checks=False)


def _sample_numpyro(model, key, *, draws, tune, chains, seed, target_accept, cores, progressbar):
    """numpyro through PyMC's JAX bridge (jax compiles on every call: no cache; chains run vectorised)."""
    import pymc as pm

    with model:
        return pm.sample(draws=draws, tune=tune, chains=chains, random_seed=seed, progressbar=progressbar,
                         nuts_sampler="numpyro", target_accept=target_accept,
                         nuts={"chain_method": "vectorized"})
