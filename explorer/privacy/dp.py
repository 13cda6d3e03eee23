"""Differentially private counts for public releases, with a privacy budget per dataset and release.

A steward gives each (dataset, release) a total privacy-loss budget epsilon
(:meth:`PrivacyBudget.set`, ``explorer budget set``). Every differentially private count charges
its epsilon to that budget *before* anything is released, and a query that would spend more than
is left is refused. The ledger is ``<lake>/privacy/budget.json``, changed under an exclusive file
lock, so concurrent dashboards and jobs cannot overspend it together; every charge is listed
with who asked for what.

The noise is OpenDP's: the discrete Laplace (geometric) mechanism on the vector of group counts
(``opendp.measurements.make_laplace`` over integers with the L1 distance). With each person
counted in one group, adding or removing a person changes that vector by 1 in L1, so a scale of
``1 / epsilon`` gives epsilon-differential privacy; OpenDP's own privacy map confirms the epsilon
charged. Sequential composition: the epsilons of the releases of one budget add up.

References
----------
Dwork, McSherry, Nissim & Smith (2006), Calibrating noise to sensitivity in private data analysis.
Ghosh, Roughgarden & Sundararajan (2012), Universally utility-maximizing privacy mechanisms
(the geometric mechanism). OpenDP Library, https://docs.opendp.org.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone

import pandas as pd

from explorer.errors import ExplorerError
from explorer.lake.storage import open_storage
from explorer.privacy.roles import PermissionDenied


class BudgetExceeded(PermissionDenied):
    """A differentially private query would spend more privacy-loss budget than is left."""


class PrivacyBudget:
    """The lake's privacy-loss ledger (see the module notes).

    Parameters
    ----------
    lake_root : str, pathlib.Path, Lake or Storage
        The lake (or its root folder, ``s3://`` prefix or storage); the ledger is
        ``privacy/budget.json`` in it. Each change is a read-modify-write under the folder's
        lock, or a compare-and-swap on object storage, so concurrent charges never overspend.

    Examples
    --------
    >>> import tempfile
    >>> from explorer.privacy.dp import BudgetExceeded, PrivacyBudget
    >>> folder = tempfile.TemporaryDirectory()
    >>> budget = PrivacyBudget(folder.name)
    >>> budget.set("person", "2024-q1", 1.0, user="steward")["epsilon"]
    1.0
    >>> budget.charge("person", "2024-q1", 0.4, user="analyst", what="counts by sex")
    0.6
    >>> try:
    ...     budget.charge("person", "2024-q1", 0.7, user="analyst", what="counts by race")
    ... except BudgetExceeded:
    ...     print("refused; left:", budget.remaining("person", "2024-q1"))
    refused; left: 0.6
    >>> folder.cleanup()
    """

    KEY = "privacy/budget.json"

    def __init__(self, lake_root):
        self.storage = open_storage(getattr(lake_root, "storage", lake_root))
        self.path = self.storage.uri(self.KEY)

    def set(self, dataset: str, release: str, epsilon: float, *, user: str) -> dict:
        """Give (``dataset``, ``release``) a total budget of ``epsilon``; what was spent stays spent.

        Parameters
        ----------
        dataset, release : str
            What the budget is for.
        epsilon : float
            The total privacy loss allowed (positive); at least what is already spent.
        user : str
            Who set it (recorded).

        Returns
        -------
        dict
            The ledger entry: epsilon, charges, set_by, set_at.
        """
        epsilon = _positive(epsilon, "the budget's epsilon")

        def change(ledger):
            entry = ledger.setdefault(dataset, {}).setdefault(release, {"epsilon": epsilon, "charges": []})
            spent = _spent(entry)
            if epsilon < spent - 1e-12:
                raise ExplorerError(f"{dataset}/{release} has already spent epsilon {spent:g}; a budget of {epsilon:g} "
                                    "would be overspent. Set at least what is spent, or open a new release.")
            entry.update(epsilon=epsilon, set_by=user, set_at=_now())
            return dict(entry)
        return self._change(change)

    def remaining(self, dataset: str, release: str) -> float:
        """Epsilon left of (``dataset``, ``release``); NaN when no budget was set."""
        entry = self._read().get(dataset, {}).get(release)
        return float("nan") if entry is None else entry["epsilon"] - _spent(entry)

    def charge(self, dataset: str, release: str, epsilon: float, *, user: str, what: str) -> float:
        """Spend ``epsilon`` of the budget, or raise :class:`BudgetExceeded`.

        Parameters
        ----------
        dataset, release : str
            The budget charged.
        epsilon : float
            The privacy loss of the release (positive).
        user : str
            Who asked (recorded with the charge).
        what : str
            What was released (recorded).

        Returns
        -------
        float
            Epsilon left after the charge.

        Raises
        ------
        BudgetExceeded
            No budget was set, or less than ``epsilon`` is left: nothing is charged.
        """
        epsilon = _positive(epsilon, "epsilon")

        def change(ledger):
            entry = ledger.get(dataset, {}).get(release)
            if entry is None:
                raise BudgetExceeded(f"no privacy budget for dataset {dataset!r}, release {release!r}: a steward sets one "
                                     f"with `explorer budget set --dataset {dataset} --release {release} --epsilon 1`")
            left = entry["epsilon"] - _spent(entry)
            if epsilon > left + 1e-12:
                raise BudgetExceeded(f"{what} would spend epsilon {epsilon:g} of dataset {dataset!r}, release {release!r}, "
                                     f"which has {max(left, 0):g} of {entry['epsilon']:g} left; nothing was released. "
                                     "Ask for less (a larger epsilon is less noise, so it costs more) or for a new release.")
            entry["charges"].append({"time": _now(), "user": user, "what": what, "epsilon": epsilon})
            return left - epsilon
        return self._change(change)

    def frame(self) -> pd.DataFrame:
        """One row per budget: dataset, release, epsilon, spent, remaining, charges."""
        rows = [{"dataset": d, "release": r, "epsilon": e["epsilon"], "spent": _spent(e),
                 "remaining": e["epsilon"] - _spent(e), "charges": len(e["charges"])}
                for d, releases in sorted(self._read().items()) for r, e in sorted(releases.items())]
        return pd.DataFrame(rows, columns=["dataset", "release", "epsilon", "spent", "remaining", "charges"])

    def _read(self) -> dict:
        try:
            return self._parse(self.storage.read_bytes(self.KEY))
        except FileNotFoundError:
            return {}

    def _parse(self, body: bytes | None) -> dict:
        if not body or not body.strip():
            return {}
        try:
            return json.loads(body)
        except json.JSONDecodeError as exc:
            raise ExplorerError(f"{self.path}: the privacy budget ledger is damaged ({exc}); restore it from a backup "
                                "before releasing anything") from None

    def _change(self, change):
        """Apply ``change(ledger)`` to the ledger and write it back whole (a crash leaves the old
        ledger whole): under the folder's lock, or as a compare-and-swap on object storage, where
        a write that lost to another charge is rebuilt on the winner's ledger (so the balance is
        re-checked). Nothing is written when ``change`` raises. Returns what ``change`` returned."""
        outcome = []

        def rewrite(body):
            ledger = self._parse(body)
            outcome[:] = [change(ledger)]
            return json.dumps(ledger, indent=1, sort_keys=True).encode()

        self.storage.update(self.KEY, rewrite)
        return outcome[0]


OTHER = "(other)"


def dp_counts(counts: pd.Series, *, epsilon: float, budget: PrivacyBudget, dataset: str, release: str,
              user: str, groups, alpha: float = 0.05) -> pd.DataFrame:
    """Differentially private counts of persons per group, charged to a budget.

    Parameters
    ----------
    counts
        True counts of persons per group (each person in one group), indexed by group.
    epsilon
        Privacy loss of this release, charged to (``dataset``, ``release``) first.
    groups
        The groups to release, fixed before looking at the data: a group missing from
        ``counts`` has 0, and persons in groups not listed are counted in one more group,
        "(other)". Taking the groups from the data would release which values exist (a rare
        birth date, say) whatever the epsilon, so they are a required argument.
    alpha
        The ``accuracy`` column is the distance the noise exceeds with probability ``alpha``.

    Returns
    -------
    pandas.DataFrame
        group (named as the index of ``counts``), count (persons, noisy, at least 0), epsilon
        (the privacy loss charged) and accuracy (persons).

    Raises
    ------
    BudgetExceeded
        The budget has less than ``epsilon`` left: nothing is released.

    Notes
    -----
    Each count gets independent discrete Laplace (two-sided geometric) noise of scale
    :math:`b = 1/\\varepsilon`, :math:`P(Z = z) \\propto e^{-|z|/b}`; a person changes the
    vector by 1 in L1, so the release is :math:`\\varepsilon`-differentially private. The
    accuracy :math:`a` satisfies :math:`P(|Z| > a) \\le \\alpha` (OpenDP's
    ``discrete_laplacian_scale_to_accuracy``). Negative noisy counts are shown as 0
    (post-processing, no further privacy loss).

    References
    ----------
    Dwork C, McSherry F, Nissim K, Smith A. Calibrating noise to sensitivity in private data
    analysis. TCC 2006, LNCS 3876:265-284.
    Ghosh A, Roughgarden T, Sundararajan M. Universally utility-maximizing privacy mechanisms.
    SIAM J Comput. 2012;41:1673-1693.

    Examples
    --------
    The counts are random; what is charged is not:

    >>> import tempfile
    >>> import pandas as pd
    >>> from explorer.privacy.dp import PrivacyBudget, dp_counts
    >>> folder = tempfile.TemporaryDirectory()
    >>> budget = PrivacyBudget(folder.name)
    >>> _ = budget.set("person", "2024-q1", 1.0, user="steward")
    >>> counts = pd.Series({"female": 520, "male": 480}).rename_axis("sex_at_birth")
    >>> released = dp_counts(counts, epsilon=0.5, budget=budget, dataset="person", release="2024-q1",
    ...                      user="analyst", groups=["female", "male", "intersex"])
    >>> released["sex_at_birth"].tolist(), released["epsilon"].tolist()
    (['female', 'male', 'intersex'], [0.5, 0.5, 0.5])
    >>> budget.remaining("person", "2024-q1")
    0.5
    >>> folder.cleanup()
    """
    import opendp.prelude as dp

    dp.enable_features("contrib")
    epsilon = _positive(epsilon, "epsilon")
    groups = list(dict.fromkeys(groups))
    if not groups:
        raise ExplorerError("give the groups to release (the possible values, fixed before looking at the data)")
    listed = counts.index.isin(groups)
    true = counts.reindex(groups, fill_value=0).astype(int)
    if (~listed).any():
        groups.append(OTHER)
        true = pd.concat([true, pd.Series([int(counts[~listed].sum())], index=[OTHER])])
    scale = 1.0 / epsilon
    measurement = dp.m.make_laplace(dp.vector_domain(dp.atom_domain(T=int)), dp.l1_distance(T=int), scale=scale)
    spent = measurement.map(1)  # OpenDP's own accounting for one person added or removed
    if spent > epsilon * (1 + 1e-9):
        raise ExplorerError(f"OpenDP accounts epsilon {spent} for scale {scale}, more than {epsilon}; this is a bug")
    budget.charge(dataset, release, spent, user=user, what=f"counts of {counts.index.name or 'groups'}")
    noisy = measurement(true.tolist())
    accuracy = dp.discrete_laplacian_scale_to_accuracy(scale, alpha)
    return pd.DataFrame({counts.index.name or "group": groups, "count": [max(int(v), 0) for v in noisy],
                         "epsilon": spent, "accuracy": accuracy})


def _spent(entry: dict) -> float:
    return math.fsum(c["epsilon"] for c in entry["charges"])


def _positive(value, what: str) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ExplorerError(f"{what} must be a positive number, not {value!r}")
    return value


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
