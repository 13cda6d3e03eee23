"""Exposure before events: window means and lag matrices.

A window of ``w`` days before an event holds lags 0 to ``w`` (the event's own day and the ``w``
days before it), the "lag 0-w" of time-series epidemiology. Its mean is taken over the days with
a value (``days_with_value`` says how many), so a missing day is neither zero nor hidden. A lag
matrix has one column per lag, ``lag_0`` (the event's day) to ``lag_L``, ready for a
distributed-lag model (e.g. ``dlnm``'s cross-basis or a constrained lag regression).

Both are one gather over a dense person x day matrix of the exposure (cumulative sums for the
windows), never a loop over events.

References
----------
Gasparrini A, Armstrong B, Kenward MG. Distributed lag non-linear models. Stat Med.
2010;29:2224-2234.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from explorer.errors import ExplorerError

DEFAULT_WINDOWS = (7, 30, 365)


class _PersonDays:
    """Exposure as dense (person, day) matrices, one per variable."""

    def __init__(self, exposure: pd.DataFrame, variables):
        missing = [c for c in ("person_id", "date", *variables) if c not in exposure.columns]
        if missing:
            raise ExplorerError(f"exposure: column(s) {', '.join(missing)} missing")
        days = pd.to_datetime(exposure["date"]).to_numpy().astype("datetime64[D]").astype(np.int64)
        self.persons, person = np.unique(exposure["person_id"].to_numpy(dtype=object), return_inverse=True)
        self.first = int(days.min()) if len(days) else 0
        self.n_days = int(days.max()) - self.first + 1 if len(days) else 1
        self.matrices = {}
        for variable in variables:
            # one row at least: with no exposure at all every event still gets its (empty) row
            matrix = np.full((max(len(self.persons), 1), self.n_days), np.nan)
            values = pd.Series(exposure[variable]).astype("Float64").to_numpy(dtype=float, na_value=np.nan)
            matrix[person, days - self.first] = values
            self.matrices[variable] = matrix

    def locate(self, events: pd.DataFrame):
        """(row, day offset, known) of each event's person and day."""
        missing = [c for c in ("person_id", "event_date") if c not in events.columns]
        if missing:
            raise ExplorerError(f"events: column(s) {', '.join(missing)} missing")
        row = np.searchsorted(self.persons, events["person_id"].to_numpy(dtype=object))
        row = np.clip(row, 0, max(len(self.persons) - 1, 0))
        known = (self.persons[row] == events["person_id"].to_numpy(dtype=object)) if len(self.persons) else \
            np.zeros(len(events), dtype=bool)
        day = pd.to_datetime(events["event_date"]).to_numpy().astype("datetime64[D]").astype(np.int64) - self.first
        return row, day, known


def event_windows(events: pd.DataFrame, exposure: pd.DataFrame, *, windows=DEFAULT_WINDOWS,
                  variables=("tasmax", "pm25", "tas_anomaly"), flag: str | None = "heat_wave") -> pd.DataFrame:
    """Mean exposure over the window before each event, for every window.

    Parameters
    ----------
    events : pandas.DataFrame
        person_id, event_date, and any other columns (kept).
    exposure : pandas.DataFrame
        One row per person-day: person_id, date, the ``variables`` and ``flag`` (the
        ``exposure_daily`` table, say).
    windows : iterable of int, default :data:`DEFAULT_WINDOWS` (7, 30, 365)
        Window lengths ``w`` in days: lags 0 to ``w``.
    variables : iterable of str, default ("tasmax", "pm25", "tas_anomaly")
        Exposure columns to average (in their own units: degC, ug/m3, K).
    flag : str or None, default "heat_wave"
        A boolean column whose flagged days are counted; None for none.

    Returns
    -------
    pandas.DataFrame
        One row per event and window: the event's columns, ``window_days`` (days),
        ``<variable>_mean`` for each variable (its unit), ``days_with_value`` (days of the window
        with a value of the first variable) and ``<flag>_days`` (days flagged; empty where no
        day of the window has a flag).

    Notes
    -----
    For an event on day :math:`t` and a window :math:`w`,

    .. math:: \\bar{x}_{0-w} = \\frac{1}{|D|} \\sum_{d \\in D} x_{t-d},\\quad
              D = \\{d \\in 0..w : x_{t-d} \\text{ known}\\}

    the "lag 0-w" moving average of time-series epidemiology, over the days with a value
    (:math:`|D|` is ``days_with_value``). A person without exposure rows gets empty means.

    References
    ----------
    Gasparrini A, Armstrong B, Kenward MG. Distributed lag non-linear models. Stat Med.
    2010;29:2224-2234.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from explorer.exposure import event_windows
    >>> exposure = pd.DataFrame({"person_id": "p1", "date": pd.date_range("2024-07-01", periods=5, freq="D"),
    ...                          "tasmax": [30.0, 32.0, np.nan, 34.0, 36.0],
    ...                          "heat_wave": [False, True, True, True, False]})
    >>> events = pd.DataFrame({"person_id": ["p1"], "event_date": [pd.Timestamp("2024-07-05")]})
    >>> windows = event_windows(events, exposure, windows=(0, 2), variables=("tasmax",))
    >>> windows[["window_days", "tasmax_mean", "days_with_value", "heat_wave_days"]]
       window_days  tasmax_mean  days_with_value  heat_wave_days
    0            0         36.0                1               0
    1            2         35.0                2               2
    """
    windows = tuple(int(w) for w in windows)
    if any(w < 0 for w in windows) or not windows:
        raise ExplorerError(f"windows must be whole days, 0 or more; got {windows}")
    columns = list(variables) + ([flag] if flag else [])
    table = _PersonDays(exposure, columns)
    row, day, known = table.locate(events)
    frames = []
    for window in windows:
        out = events.reset_index(drop=True).copy()
        out["window_days"] = np.int32(window)
        start, end = day - window, day  # inclusive
        for k, variable in enumerate(columns):
            values = table.matrices[variable]
            total, count = _window_sums(values, row, start, end, known)
            if variable == flag:  # no flag known in the window: unknown, not zero days
                out[f"{flag}_days"] = pd.array(np.where(count > 0, total, 0).astype(np.int32), dtype="Int32")
                out.loc[count == 0, f"{flag}_days"] = pd.NA
                continue
            with np.errstate(invalid="ignore", divide="ignore"):
                out[f"{variable}_mean"] = np.where(count > 0, total / count, np.nan)
            if k == 0:
                out["days_with_value"] = count.astype(np.int32)
        frames.append(out)
    return pd.concat(frames, ignore_index=True)


def _window_sums(values: np.ndarray, row, start, end, known):
    """Sum and count of non-missing values of each row's days start..end (clipped to the matrix)."""
    present = np.isfinite(values)
    sums = np.zeros((values.shape[0], values.shape[1] + 1))
    counts = np.zeros((values.shape[0], values.shape[1] + 1), dtype=np.int64)
    np.cumsum(np.where(present, values, 0.0), axis=1, out=sums[:, 1:])
    np.cumsum(present, axis=1, out=counts[:, 1:])
    lo = np.clip(start, 0, values.shape[1])
    hi = np.clip(end + 1, 0, values.shape[1])
    hi = np.maximum(hi, lo)
    total = np.where(known, sums[row, hi] - sums[row, lo], 0.0)
    count = np.where(known, counts[row, hi] - counts[row, lo], 0)
    return total, count


def lag_matrix(events: pd.DataFrame, exposure: pd.DataFrame, variable: str, max_lag: int) -> pd.DataFrame:
    """The exposure on each of the ``max_lag + 1`` days up to each event: a lag matrix.

    Parameters
    ----------
    events : pandas.DataFrame
        person_id, event_date, and any other columns (kept).
    exposure : pandas.DataFrame
        One row per person-day: person_id, date and ``variable``.
    variable : str
        The exposure column.
    max_lag : int
        The largest lag in days (0 or more).

    Returns
    -------
    pandas.DataFrame
        The event's columns, then ``lag_0`` (the event's day) to ``lag_<max_lag>``: the value of
        ``variable`` (its unit) that many days before the event, NaN where there is none.

    Notes
    -----
    Column ``lag_l`` holds :math:`x_{t-l}` for an event on day :math:`t`: the design of a
    distributed-lag model (e.g. ``dlnm``'s cross-basis or a constrained lag regression).

    References
    ----------
    Gasparrini A, Armstrong B, Kenward MG. Distributed lag non-linear models. Stat Med.
    2010;29:2224-2234.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from explorer.exposure import lag_matrix
    >>> exposure = pd.DataFrame({"person_id": "p1", "date": pd.date_range("2024-07-01", periods=5, freq="D"),
    ...                          "tasmax": [30.0, 32.0, np.nan, 34.0, 36.0],
    ...                          "heat_wave": [False, True, True, True, False]})
    >>> events = pd.DataFrame({"person_id": ["p1"], "event_date": [pd.Timestamp("2024-07-05")]})
    >>> lag_matrix(events, exposure, "tasmax", max_lag=3)
      person_id event_date  lag_0  lag_1  lag_2  lag_3
    0        p1 2024-07-05   36.0   34.0    NaN   32.0
    """
    if int(max_lag) < 0:
        raise ExplorerError(f"max_lag must be 0 or more, got {max_lag}")
    table = _PersonDays(exposure, [variable])
    row, day, known = table.locate(events)
    values = table.matrices[variable]
    lags = np.arange(int(max_lag) + 1)
    at = day[:, None] - lags[None, :]
    inside = known[:, None] & (at >= 0) & (at < values.shape[1])
    picked = np.where(inside, values[row[:, None], np.clip(at, 0, values.shape[1] - 1)], np.nan)
    out = events.reset_index(drop=True).copy()
    return pd.concat([out, pd.DataFrame(picked, columns=[f"lag_{lag}" for lag in lags])], axis=1)
