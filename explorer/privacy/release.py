"""Public releases of person counts: how many persons of a table fall in each group, in the one of
two forms a ``public`` user may see, disclosure-controlled counts (small ones hidden, with their
complements) or differentially private ones (noise charged to a privacy budget).

These are what ``explorer count`` prints; a notebook calls them to get the same release.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from explorer.lake import Lake
from explorer.lake.engine import current_user
from explorer.privacy.counts import person_counts
from explorer.privacy.disclosure import DisclosureControl, Release
from explorer.privacy.dp import PrivacyBudget, dp_counts


def count_groupings(by: Sequence[str]) -> list[tuple[str, ...]]:
    """The tables a public count by ``by`` publishes together on one page.

    Parameters
    ----------
    by : sequence of str
        No column, one column or two columns to count by.

    Returns
    -------
    list of tuple of str
        Groupings, finest first; ``()`` is the total.

    Notes
    -----
    A count by columns is published with its margins: by one column, the table and the total;
    by two columns ``(a, b)``, the cross-table, the margins by ``a`` and by ``b``, and the total.
    A reader can add up the cells of a table to get its margins, so a margin is published (and
    protected) on the same page as the cells it sums, never on its own.

    Examples
    --------
    >>> count_groupings(["sex_at_birth", "race"])
    [('sex_at_birth', 'race'), ('sex_at_birth',), ('race',), ()]
    >>> count_groupings([])
    [()]
    """
    by = tuple(by)
    if len(by) == 2:
        return [by, (by[0],), (by[1],), ()]
    return [by, ()] if by else [()]


def protected_person_counts(lake: Lake, table: str, by: Sequence[str] = (), *, profile: str = "aou") -> Release:
    """Persons per group of ``table`` under disclosure control, as a public user sees them.

    Parameters
    ----------
    lake : explorer.Lake
        The lake to count in.
    table : str
        A table of one row per person (catalog primary key ``person_id``), e.g. ``person``.
    by : sequence of str, optional
        Zero, one or two of its columns to count by (default: none, the total only). A missing
        value is its own group, ``unknown``.
    profile : {"aou", "cms", "opensafely", "ukbiobank"}, optional
        Disclosure-control profile (default ``aou``, All of Us).

    Returns
    -------
    explorer.privacy.Release
        One frame per grouping of :func:`count_groupings` (``release.table(*by)``, and
        ``release.table()`` for the total): the grouping columns, ``count`` (persons; NaN when
        hidden), ``shown`` (the text published) and ``status``. ``release.hidden`` is the number
        of counts hidden; ``release.profile`` names the rules applied.

    Notes
    -----
    Counts of persons (``count(DISTINCT person_id)``) per combination of ``by`` are protected
    together with their margins (:func:`count_groupings`): a count in the profile's small range
    is hidden (primary suppression), then, while a hidden count can be solved for, or narrowed
    to less than half the hidden range, from the counts shown, the smallest shown count sharing
    a total with it is hidden too (complementary suppression). See
    :class:`~explorer.privacy.DisclosureControl`.

    References
    ----------
    Hundepool A, Domingo-Ferrer J, Franconi L, et al. Statistical Disclosure Control. Wiley,
    2012, ch. 4. All of Us Research Program, Data and Statistics Dissemination Policy.
    """
    by = list(by)
    finest = person_counts(lake, table, by)
    return DisclosureControl(profile=profile).counts(finest, count_groupings(by), weight="n")


def dp_person_counts(lake: Lake, table: str, column: str, *, groups: Sequence[str], epsilon: float, release: str,
                     user: str | None = None) -> pd.DataFrame:
    """Differentially private persons per value of one column of ``table``, charged to a budget.

    Parameters
    ----------
    lake : explorer.Lake
        The lake to count in; its privacy budget (``<lake>/privacy/budget.json``) pays.
    table : str
        A table of one row per person (catalog primary key ``person_id``), e.g. ``person``.
    column : str
        The column to count by.
    groups : sequence of str
        The values to release, fixed before looking at the data. Persons with any other value
        are counted together in one more group, ``(other)``.
    epsilon : float
        Privacy loss of this release (dimensionless), charged to the budget of
        (``table``, ``release``) before anything is released.
    release : str
        The release whose budget pays, e.g. ``2026-q4`` (a steward sets it, ``explorer budget set``).
    user : str, optional
        Who the charge is recorded for (default: the account running this process).

    Returns
    -------
    pandas.DataFrame
        One row per group: the group (column named ``column``), ``count`` (noisy persons, at
        least 0), ``epsilon`` (charged) and ``accuracy`` (persons: 95% of the noisy counts are
        within this distance of the true count).

    Raises
    ------
    explorer.privacy.dp.BudgetExceeded
        When the release's budget has less than ``epsilon`` left, or none was set.

    Notes
    -----
    Each person is in exactly one group, so adding or removing a person changes the vector of
    counts by 1 in L1 norm; discrete Laplace (geometric) noise of scale :math:`1/\\varepsilon`
    added to each count gives :math:`\\varepsilon`-differential privacy. The epsilons of the
    releases charged to one budget add up (sequential composition). See
    :func:`explorer.privacy.dp.dp_counts`.

    References
    ----------
    Dwork C, McSherry F, Nissim K, Smith A. Calibrating noise to sensitivity in private data
    analysis. TCC 2006. Ghosh A, Roughgarden T, Sundararajan M. Universally utility-maximizing
    privacy mechanisms. SIAM J Comput 2012;41(6). OpenDP Library, https://docs.opendp.org.
    """
    finest = person_counts(lake, table, [column])
    counts = finest.set_index(column)["n"].rename_axis(column)
    return dp_counts(counts, epsilon=epsilon, budget=PrivacyBudget(lake), dataset=table, release=release,
                     user=user or current_user(), groups=list(groups))
