"""Proof that a code path stays lazy (as xarray's own test helper of the same name)."""

from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def raise_if_dask_computes(max_computes: int = 0):
    """Fail when Dask computes more than ``max_computes`` times inside the block."""
    import dask

    computes = 0

    def scheduler(dsk, keys, **kwargs):
        nonlocal computes
        computes += 1
        if computes > max_computes:
            raise RuntimeError(f"Too many computes: {computes} > {max_computes}; this code path was meant to stay lazy")
        return dask.get(dsk, keys, **kwargs)

    with dask.config.set(scheduler=scheduler):
        yield
