"""Where chunked work runs: in this process, on a local Dask cluster, or on the user's Dask scheduler.

The optimizer sweep is an `xr.apply_ufunc(..., dask="parallelized")` over posterior draws, so once the
posterior is chunked over `draw` the same code runs wherever the active Dask scheduler is; `dask_client`
makes one active for a `with` block. Independent fits (per task group, per prior in a sensitivity sweep) go
to the same cluster through `bayes_t2.fit.fit_many`.

Pointing bayes-t2 at a cluster (README "Performance"): start `dask scheduler` on one machine and
`dask worker tcp://HOST:8786 --nthreads 1` on each worker (all with bayes-t2 installed), then pass
`--scheduler tcp://HOST:8786`; `--workers N` starts a local cluster of N single-threaded processes instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .errors import InputError

#: Posterior draws per chunk when the work is distributed and the caller does not say.
DEFAULT_DRAWS_PER_CHUNK = 1000


def _require_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise InputError("--workers/--scheduler need dask.distributed: pip install 'bayes-t2[scale]'") from None
    return distributed


def check_options(workers: int | None, scheduler: str | None) -> None:
    """InputError for option combinations `dask_client` cannot honour (call it before slow work)."""
    if workers is not None and scheduler is not None:
        raise InputError("give either --workers N (a local cluster) or --scheduler ADDRESS, not both")
    if workers is not None and int(workers) < 1:
        raise InputError(f"--workers must be a positive integer, got {workers}")


@contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None, *, processes: bool = True,
                timeout: float = 10.0) -> Iterator[Any]:
    """A dask.distributed Client for a `with` block (it is the default scheduler inside), or None.

    scheduler: address of a running scheduler (e.g. tcp://host:8786). workers: start a LocalCluster of that
    many single-threaded workers (processes, or threads with processes=False). Neither: yield None and run
    in-process. Unreachable addresses raise InputError naming the option.
    """
    check_options(workers, scheduler)
    if workers is None and scheduler is None:
        yield None
        return
    distributed = _require_distributed()
    if scheduler is not None:
        try:
            client = distributed.Client(scheduler, timeout=timeout)
        except (OSError, TimeoutError, ValueError) as err:
            raise InputError(f"--scheduler {scheduler}: cannot reach a Dask scheduler "
                             f"({type(err).__name__}: {' '.join(str(err).split())[:160]})") from None
        with client:
            yield client
        return
    with distributed.LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=processes,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        yield client


def draws_per_chunk(client: Any, n_draws: int, requested: int | None = None) -> int | None:
    """Chunk size over `draw` for the sweep: as asked; else, on a cluster, enough chunks to keep every worker
    thread busy twice over (at most `DEFAULT_DRAWS_PER_CHUNK` draws each); None (no chunking) in-process."""
    if requested is not None:
        if int(requested) < 1:
            raise InputError(f"--draws-per-chunk must be a positive integer, got {requested}")
        return int(requested)
    if client is None:
        return None
    threads = max(1, sum(client.nthreads().values()))
    return max(1, min(DEFAULT_DRAWS_PER_CHUNK, -(-n_draws // (2 * threads))))
