"""bayes-t2: Bayesian Train-to-Test scaling laws -- how big a model, how many tokens, how many samples per
query, with credible intervals.

The public API (the command line's twin; docs/api.md)::

    import bayes_t2 as bt
    data = bt.read_data("evals.csv")
    fit = bt.fit(data, draws=1000, tune=1000, chains=2, seed=0)
    opt = fit.optimize(train_flops=2.56e19, inference_flops=2e9)
    fit.summary(opt)

Names are imported on first use, so ``import bayes_t2`` stays light (PyMC loads only when a fit needs it).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__version__ = "0.1.0"

#: public name -> (module, attribute); attribute None: the module itself
_PUBLIC: dict[str, tuple[str, str | None]] = {
    "read_data": ("api", "read_data"),
    "fit": ("api", "fit"),
    "load": ("api", "load"),
    "example_data": ("api", "example_data"),
    "Fit": ("fit", "Fit"),
    "Decision": ("results", "Decision"),
    "SamplerSettings": ("fit", "SamplerSettings"),
    "SplitBudget": ("budget", "SplitBudget"),
    "TotalBudget": ("budget", "TotalBudget"),
    "Constraints": ("budget", "Constraints"),
    "InputError": ("errors", "InputError"),
    "plots": ("plots", None),
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'bayes_t2' has no attribute {name!r}")
    module_name, attribute = _PUBLIC[name]
    module = importlib.import_module(f".{module_name}", __name__)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


class _Package(types.ModuleType):
    """`bt.fit` is the API function, but ``bayes_t2/fit.py`` is also a submodule, and importing a submodule
    binds it on its package under the same name. This keeps the function: the module stays importable
    (``from bayes_t2.fit import Fit``; ``sys.modules["bayes_t2.fit"]``), it just does not shadow `bt.fit`."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "fit" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
