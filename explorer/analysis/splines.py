"""Basis functions for exposure-response and lag-response shapes.

A :class:`Basis` is fixed once from data (its knots, boundaries and scale) and then evaluated at
any values, so a model's predictions use exactly the basis it was fitted with. The kinds are those
of R's ``dlnm::onebasis`` and Harrell's ``rms::rcs``:

========== ==================================================================================
``lin``     :math:`x` (and optionally an intercept)
``poly``    :math:`(x/s)^p,\\ p = 1..d`, :math:`s` a scale (the largest absolute value)
``ns``      natural cubic spline: cubic between knots, linear beyond the boundary knots
``bs``      B-spline of degree :math:`d`
``strata``  indicators of intervals set by break points (a step function)
``integer`` one indicator per integer value: an unconstrained lag structure
``rcs``     Harrell's restricted cubic spline, linear in its tails, in its truncated-power form
========== ==================================================================================

Every spline kind except ``rcs`` is built on scipy's B-splines; ``ns`` applies the
null-space projection of R's ``splines::ns`` so that the second derivative vanishes at both
boundary knots (de Boor 2001; Hastie 1992 in Chambers & Hastie, *Statistical Models in S*).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.interpolate import BSpline

from explorer.errors import ExplorerError

KINDS = ("lin", "poly", "ns", "bs", "strata", "integer", "rcs")

#: Harrell's default knot quantiles for 3 to 7 knots (Regression Modeling Strategies, 2nd ed., table 2.3)
RCS_QUANTILES = {
    3: (0.10, 0.50, 0.90),
    4: (0.05, 0.35, 0.65, 0.95),
    5: (0.05, 0.275, 0.50, 0.725, 0.95),
    6: (0.05, 0.23, 0.41, 0.59, 0.77, 0.95),
    7: (0.025, 0.1833, 0.3417, 0.50, 0.6583, 0.8167, 0.975),
}


@dataclass(frozen=True)
class Basis:
    """A fixed basis: call it on values to get the design columns.

    Attributes
    ----------
    kind : str
        One of :data:`KINDS`.
    knots : tuple of float
        Interior knots (``ns``, ``bs``), all knots (``rcs``), break points (``strata``) or the
        integer values (``integer``).
    boundary : tuple of float
        Boundary knots (``ns``, ``bs``); beyond them ``ns`` is linear and ``bs`` continues its end
        polynomial.
    degree : int
        Polynomial degree (``poly``, ``bs``).
    intercept : bool
        Whether the basis spans the constant. A lag basis usually does (the effect at lag 0 is
        free); an exposure basis does not (the model has its own intercept).
    scale : float
        Divisor of ``poly`` (keeps its powers of comparable size).
    """

    kind: str
    knots: tuple = ()
    boundary: tuple = ()
    degree: int = 3
    intercept: bool = False
    scale: float = 1.0
    names: tuple = field(default=(), compare=False)

    def __call__(self, x) -> np.ndarray:
        """The design matrix at ``x``: shape ``(len(x), df)``; NaN rows where ``x`` is NaN."""
        x = np.asarray(x, dtype=float).ravel()
        out = np.full((len(x), self.df), np.nan)
        ok = np.isfinite(x)
        if ok.any():
            out[ok] = _EVALUATE[self.kind](self, x[ok])
        return out

    @property
    def df(self) -> int:
        """Number of columns."""
        return _DF[self.kind](self)

    def column_names(self, prefix: str) -> list[str]:
        return [f"{prefix}{i + 1}" for i in range(self.df)]


def linear(intercept: bool = False) -> Basis:
    """The identity basis: a linear exposure-response (one column, two with an intercept)."""
    return Basis("lin", intercept=intercept)


def polynomial(x, degree: int = 2, intercept: bool = False) -> Basis:
    """Powers :math:`(x/s)^p,\\ p = 1..d`, scaled by :math:`s = \\max|x|` (dlnm's ``poly``)."""
    x = _finite(x, "polynomial")
    if degree < 1:
        raise ExplorerError(f"polynomial basis: degree {degree} given; expected at least 1")
    scale = float(np.max(np.abs(x))) or 1.0
    return Basis("poly", degree=int(degree), intercept=intercept, scale=scale)


def natural_spline(x=None, df: int | None = None, knots=None, boundary=None, intercept: bool = False) -> Basis:
    """A natural cubic spline (R's ``splines::ns``): cubic between knots, linear beyond the boundary.

    Parameters
    ----------
    x : array-like, optional
        Values the knots are placed on (quantiles) and the boundary taken from (range).
    df : int, optional
        Columns wanted; ``df - 1 - intercept`` interior knots at equally spaced quantiles of ``x``.
    knots, boundary : sequence of float, optional
        Interior and boundary knots, given instead of computed.
    intercept : bool, default False
        Span the constant too (one more column).

    Notes
    -----
    With interior knots :math:`\\kappa_1 < \\dots < \\kappa_K` and boundary knots :math:`a < b`, the
    space is the cubic splines on the knots whose second derivative is 0 at :math:`a` and
    :math:`b`: :math:`K + 1 + \\text{intercept}` columns. They are the cubic B-splines projected
    onto the null space of the two constraints (the QR construction of ``splines::ns``), extended
    linearly outside :math:`[a, b]`.
    """
    knots, boundary = _spline_knots(x, df, knots, boundary, 1 + intercept, "natural spline")
    return Basis("ns", knots=knots, boundary=boundary, degree=3, intercept=intercept)


def b_spline(x=None, df: int | None = None, knots=None, boundary=None, degree: int = 3, intercept: bool = False) -> Basis:
    """A B-spline of ``degree`` (R's ``splines::bs``); ``df - degree - intercept`` interior knots at quantiles."""
    knots, boundary = _spline_knots(x, df, knots, boundary, degree + intercept, "B-spline")
    return Basis("bs", knots=knots, boundary=boundary, degree=int(degree), intercept=intercept)


def strata(breaks, intercept: bool = True) -> Basis:
    """Indicators of the intervals :math:`[b_{k}, b_{k+1})` cut at ``breaks`` (dlnm's ``strata``).

    With an intercept the first interval (below the first break) has its own column; without,
    it is the reference.
    """
    breaks = tuple(sorted(float(b) for b in np.atleast_1d(breaks)))
    return Basis("strata", knots=breaks, intercept=intercept)


def integer(values) -> Basis:
    """One indicator per integer value: the unconstrained distributed lag model (each lag free)."""
    values = tuple(int(v) for v in np.atleast_1d(values))
    return Basis("integer", knots=values, intercept=True)


def restricted_cubic_spline(x=None, n_knots: int = 4, knots=None) -> Basis:
    """Harrell's restricted cubic spline: linear in both tails, ``k - 1`` columns for ``k`` knots.

    Notes
    -----
    With knots :math:`t_1 < \\dots < t_k` the columns are :math:`x` and, for :math:`j = 1..k-2`,

    .. math::

        \\frac{(x - t_j)_+^3 - (x - t_{k-1})_+^3 \\frac{t_k - t_j}{t_k - t_{k-1}}
              + (x - t_k)_+^3 \\frac{t_{k-1} - t_j}{t_k - t_{k-1}}}{(t_k - t_1)^2}

    (the division by :math:`(t_k - t_1)^2` is ``rms::rcspline.eval``'s ``norm = 2``). Default
    knots are at the quantiles of :data:`RCS_QUANTILES`.

    References
    ----------
    Harrell FE. *Regression Modeling Strategies*, 2nd ed. Springer; 2015. Section 2.4.5.
    """
    if knots is None:
        if n_knots not in RCS_QUANTILES:
            raise ExplorerError(f"restricted cubic spline: {n_knots} knots asked; expected 3 to 7 (or give knots=)")
        knots = np.quantile(_finite(x, "restricted cubic spline"), RCS_QUANTILES[n_knots])
    knots = tuple(float(k) for k in knots)
    if len(knots) < 3 or np.any(np.diff(knots) <= 0):
        raise ExplorerError(f"restricted cubic spline: knots {knots} must be at least 3 and strictly increasing "
                            "(too few distinct values? give fewer knots or knots=)")
    return Basis("rcs", knots=knots)


def _finite(x, what: str) -> np.ndarray:
    if x is None:
        raise ExplorerError(f"{what}: give the values to place the basis on (x), or its knots and boundary")
    x = np.asarray(x, dtype=float).ravel()
    x = x[np.isfinite(x)]
    if x.size == 0:
        raise ExplorerError(f"{what}: no finite values to place the basis on")
    return x


def _spline_knots(x, df, knots, boundary, fixed: int, what: str) -> tuple[tuple, tuple]:
    if boundary is None:
        values = _finite(x, what)
        boundary = (float(values.min()), float(values.max()))
    boundary = tuple(float(b) for b in boundary)
    if len(boundary) != 2 or not boundary[0] < boundary[1]:
        raise ExplorerError(f"{what}: boundary {boundary} must be two increasing values")
    if knots is None:
        if df is None:
            raise ExplorerError(f"{what}: give df= or knots=")
        n_interior = int(df) - fixed
        if n_interior < 0:
            raise ExplorerError(f"{what}: df={df} is too few; expected at least {fixed}")
        if n_interior:
            values = _finite(x, what)
            knots = np.quantile(values, np.linspace(0, 1, n_interior + 2)[1:-1])
        else:
            knots = ()
    knots = tuple(float(k) for k in np.atleast_1d(knots))
    if any(not boundary[0] < k < boundary[1] for k in knots) or np.any(np.diff(knots) <= 0):
        raise ExplorerError(f"{what}: interior knots {knots} must increase strictly inside the boundary {boundary} "
                            "(too few distinct values for this df?)")
    return knots, boundary


def _all_knots(basis: Basis) -> np.ndarray:
    order = basis.degree + 1
    return np.r_[[basis.boundary[0]] * order, basis.knots, [basis.boundary[1]] * order]


def _bsplines(basis: Basis) -> BSpline:
    t = _all_knots(basis)
    n = len(t) - basis.degree - 1
    return BSpline(t, np.eye(n), basis.degree, extrapolate=True)


def _ns_projection(basis: Basis) -> np.ndarray:
    spline = _bsplines(basis)
    constraint = spline.derivative(2)(np.array(basis.boundary))  # (2, n): second derivatives at a and b
    if not basis.intercept:
        constraint = constraint[:, 1:]
    q, _ = np.linalg.qr(constraint.T, mode="complete")
    return q[:, 2:]


def _evaluate_ns(basis: Basis, x: np.ndarray) -> np.ndarray:
    spline = _bsplines(basis)
    a, b = basis.boundary
    inside = np.clip(x, a, b)
    raw = spline(inside)
    outside = (x < a) | (x > b)
    if outside.any():
        edge = np.where(x[outside] < a, a, b)
        raw[outside] += spline.derivative(1)(edge) * (x[outside] - edge)[:, None]
    if not basis.intercept:
        raw = raw[:, 1:]
    return raw @ _ns_projection(basis)


def _evaluate_bs(basis: Basis, x: np.ndarray) -> np.ndarray:
    raw = _bsplines(basis)(x)
    return raw if basis.intercept else raw[:, 1:]


def _evaluate_rcs(basis: Basis, x: np.ndarray) -> np.ndarray:
    t = np.asarray(basis.knots)
    k = len(t)
    span = t[-1] - t[-2]
    columns = [x]
    for j in range(k - 2):
        term = (np.maximum(x - t[j], 0) ** 3
                - np.maximum(x - t[-2], 0) ** 3 * (t[-1] - t[j]) / span
                + np.maximum(x - t[-1], 0) ** 3 * (t[-2] - t[j]) / span)
        columns.append(term / (t[-1] - t[0]) ** 2)
    return np.column_stack(columns)


def _evaluate_strata(basis: Basis, x: np.ndarray) -> np.ndarray:
    stratum = np.searchsorted(np.asarray(basis.knots), x, side="right")
    out = (stratum[:, None] == np.arange(len(basis.knots) + 1)[None, :]).astype(float)
    return out if basis.intercept else out[:, 1:]


def _evaluate_integer(basis: Basis, x: np.ndarray) -> np.ndarray:
    return (np.asarray(x)[:, None] == np.asarray(basis.knots, dtype=float)[None, :]).astype(float)


def _evaluate_lin(basis: Basis, x: np.ndarray) -> np.ndarray:
    return np.column_stack([np.ones_like(x), x]) if basis.intercept else x[:, None]


def _evaluate_poly(basis: Basis, x: np.ndarray) -> np.ndarray:
    powers = np.arange(0 if basis.intercept else 1, basis.degree + 1)
    return (x[:, None] / basis.scale) ** powers[None, :]


_EVALUATE = {"lin": _evaluate_lin, "poly": _evaluate_poly, "ns": _evaluate_ns, "bs": _evaluate_bs,
             "strata": _evaluate_strata, "integer": _evaluate_integer, "rcs": _evaluate_rcs}
_DF = {
    "lin": lambda b: 1 + b.intercept,
    "poly": lambda b: b.degree + b.intercept,
    "ns": lambda b: len(b.knots) + 1 + b.intercept,
    "bs": lambda b: len(b.knots) + b.degree + b.intercept,
    "strata": lambda b: len(b.knots) + b.intercept,
    "integer": lambda b: len(b.knots),
    "rcs": lambda b: len(b.knots) - 1,
}
