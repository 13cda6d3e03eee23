"""What every view shares: the lake it reads, the role it serves, and the disclosure control
that every count leaving the researcher tier passes.

The role is checked where the data is read (:meth:`LakeView._sql`), not by hiding a widget: a
person-level view built for ``public`` refuses before it runs a query, and an aggregate view
built for ``public`` hands its counts, means and histogram bins to
:class:`explorer.privacy.DisclosureControl` before they leave ``data()``.
"""

from __future__ import annotations

import functools
import html
import numbers
import re
import threading
from collections import OrderedDict

import numpy as np
import pandas as pd
import param

from explorer.errors import ExplorerError, TableNotFoundError
from explorer.privacy import ROLES, DisclosureControl, require


def holoviews_with_bokeh():
    """HoloViews with its Bokeh backend loaded: options are backend-specific, and a served
    dashboard or a plain script has not run ``hv.extension`` the way a notebook does."""
    import holoviews as hv
    import holoviews.plotting.bokeh  # noqa: F401  (registers the backend)

    if hv.Store.current_backend != "bokeh":
        hv.Store.set_current_backend("bokeh")
    return hv


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~])")


def plain_text(text) -> str:
    """``text`` made safe to put into Markdown: shown as written, never read as HTML or markup.

    HTML's special characters become entities (``<img onerror=...>`` shows as text) and Markdown's
    are backslash-escaped (``[x](javascript:...)`` is not a link). Use it for everything that can
    hold user input: URL parameters, uploaded definitions, names, error messages that quote them."""
    return html.escape(_MARKDOWN_SPECIAL.sub(r"\\\1", str(text)), quote=True)  # <, > and & as entities


def message(text, kind: str = "danger", lead: str = "", **options):
    """An alert showing ``text`` as plain text (:func:`plain_text`), after an optional bold
    ``lead`` the code wrote itself."""
    import panel as pn

    body = (f"**{lead}** " if lead else "") + plain_text(text)
    return pn.pane.Alert(body, alert_type=kind, **options)


_SHARED: OrderedDict = OrderedDict()
_SHARED_LOCK = threading.Lock()
SHARED_ENTRIES = 256


class LakeView(param.Parameterized):
    """A view of the lake, built for one role."""

    lake = param.Parameter(doc="An explorer Lake (explorer.open()).")
    # Set once, when the view is built (a served page takes it from the login), never from a
    # widget: constant, and hidden from the widgets Panel would make of the view's parameters.
    role = param.Selector(default="researcher", objects=list(ROLES), constant=True, precedence=-1,
                          doc="Who the view is for: public (aggregates under disclosure control), researcher, steward.")
    disclosure = param.ClassSelector(class_=DisclosureControl, default=None, allow_None=True, constant=True,
                                     precedence=-1,
                                     doc="Disclosure control applied to what a public view shows (each view its own); "
                                         "default: the profile $EXPLORER_DISCLOSURE_PROFILE names (explorer serve "
                                         "--profile), else aou.")

    def __init__(self, **params):
        if params.get("disclosure") is None:
            params["disclosure"] = DisclosureControl()
        super().__init__(**params)

    #: the access this view needs (explorer.privacy.ACCESS): person-level views say person_rows
    access = "aggregates"

    @property
    def public(self) -> bool:
        return self.role == "public"

    def _sql(self, query: str, params=None) -> pd.DataFrame:
        if self.lake is None:
            raise ExplorerError(f"{type(self).__name__} needs a lake: {type(self).__name__}(lake=explorer.open(), ...)")
        require(self.role, self.access, f"the {type(self).__name__} view")
        return self.lake.sql(query, params)

    def _require(self, *tables):
        require(self.role, self.access, f"the {type(self).__name__} view")  # before saying what exists
        for table in tables:
            if not self.lake.has_table(table):
                raise TableNotFoundError(f"table {table} is not there yet: run `explorer refresh` first")

    def _shared(self, key: tuple, compute):
        """``compute()``, shared by every view of this class on this lake for the same role and
        disclosure profile (a served page's sessions load an aggregate once): the role is part
        of the key, so an exact result made for a researcher is never handed to a public view.
        Put the versions of the tables read in ``key``, so a new version is computed afresh."""
        full = (type(self).__name__, self.lake.location, self.role, self.disclosure.profile, *key)
        with _SHARED_LOCK:
            if full in _SHARED:
                _SHARED.move_to_end(full)
                return _copy(_SHARED[full])
        value = compute()
        with _SHARED_LOCK:
            _SHARED[full] = value
            while len(_SHARED) > SHARED_ENTRIES:
                _SHARED.popitem(last=False)
        return _copy(value)

    def headers(self, frame: pd.DataFrame, table: str | None = None, **named) -> dict[str, str]:
        """What a table header calls each column of ``frame``: ``named`` first, else the label
        and unit the catalog entry of ``table`` gives the column (``"duration (s)"``), else its
        name in words."""
        entry = self.lake.catalog.get(table) if table and self.lake is not None else None
        known = {c.name: c.header for c in entry.schema} if entry else {}
        return {name: named.get(name) or known.get(name) or in_words(name) for name in frame.columns}

    def widget_options(self) -> dict:
        """Per parameter, the widget a page draws for it where Panel's default would not do (a
        date picker limited to the days there are, a search over known ids): ``pn.Param``'s
        ``widgets`` argument."""
        return {}

    def _settings_key(self) -> tuple:
        """The view's own settings (every parameter but the lake, role and disclosure), as a key."""
        skip = {"name", "lake", "role", "disclosure"}
        return tuple((name, repr(value)) for name, value in sorted(self.param.values().items()) if name not in skip)

    def _setting(self, name: str):
        """A display setting (bin count, band width) as this view may use it: a public view uses
        the fixed default, since pages of nested binnings of the same values would give a
        hidden bin away as a shown parent bin less its shown siblings."""
        return self.param[name].default if self.public else getattr(self, name)

    def _histogram(self, values, edges) -> pd.DataFrame:
        """Counts of ``values`` between ``edges`` (values beyond fall in the end bins): left,
        right, count, and for a public view the text shown and each bin's status; the total in
        ``attrs["total"]`` (for a public view, as the same page shows it)."""
        values = np.asarray(values, dtype=float)
        values = np.clip(values[np.isfinite(values)], edges[0], edges[-1])
        if self.public:
            return self.disclosure.histogram(values, edges).drop(columns="bin")
        counts, _ = np.histogram(values, bins=edges)
        out = pd.DataFrame({"left": edges[:-1], "right": edges[1:], "count": counts})
        out.attrs["total"] = len(values)
        return out

    def _counts(self, rows: pd.DataFrame, groupings) -> list[pd.DataFrame]:
        """Counts of ``rows`` per grouping, as one page: protected for a public view, exact
        (``count`` column) otherwise."""
        if self.public:
            return self.disclosure.counts(rows, groupings).tables
        out = []
        for grouping in groupings:
            grouping = list(grouping)
            frame = (rows.groupby(grouping, observed=True).size().rename("count").reset_index() if grouping
                     else pd.DataFrame({"count": [len(rows)]}))
            out.append(frame)
        return out


def _copy(value):
    """A copy a caller may change without changing the shared value (a frame, or a dict of them)."""
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    return value.copy() if hasattr(value, "copy") else value


#: how a hidden count is drawn: an outline up to the largest count the profile hides (as the
#: overview's bar chart draws it), labelled with the profile's text
HIDDEN_STYLE = {"fill_color": "#dddddd", "fill_alpha": 0.35, "line_color": "#888888", "line_dash": "dashed"}


def hidden_bins(hv, frame: pd.DataFrame, rules, x: str, y: str = "persons"):
    """The bins of a protected histogram (``left``, ``right``, ``count`` NaN where hidden) that
    disclosure control hid, drawn as high and labelled as :func:`hidden_marks` says (a small
    count up to ``rules.largest_hidden`` as "<=20"; one hidden to protect another up to the most
    it can be, the histogram's total in ``frame.attrs["total"]`` less the bins shown): a hidden
    bin must not read as an empty one. ``x`` and ``y`` are the histogram's dimensions (an
    overlay on another axis would be linked to other plots of the page). None when nothing is
    hidden."""
    hidden = frame[frame["count"].isna()]
    if hidden.empty:
        return None
    texts = frame["shown"] if "shown" in frame else [rules.label] * len(frame)
    marks = hidden_marks(frame["count"], texts, rules, frame.attrs.get("total"))
    boxes = hv.Rectangles([(l, 0.0, r, top) for l, r, (top, _) in zip(hidden["left"], hidden["right"], marks)],
                          kdims=[x, y, f"{x} (end)", f"{y} (end)"]).opts(**HIDDEN_STYLE)
    # one label per run of adjacent hidden bins of the same text: narrow bins side by side would
    # overprint theirs
    runs = []
    for left, right, (top, text) in zip(hidden["left"], hidden["right"], marks):
        if runs and np.isclose(runs[-1][1], left) and runs[-1][3] == text:
            runs[-1] = (runs[-1][0], right, runs[-1][2] + 1, text, top)
        else:
            runs.append((left, right, 1, text, top))
    labels = hv.Labels([((l + r) / 2, top, text + (" each" if n > 1 else "")) for l, r, n, text, top in runs],
                       kdims=[x, y]).opts(text_font_size="8pt", text_color="#555555", text_baseline="bottom")
    return boxes * labels


def hidden_caption(counts, rules, what: str = "groups") -> str:
    """Why part of a figure is hidden, for its caption: "3 of 12 groups hidden (All of Us rule: no
    count of 1-20)", short enough for a half-width figure's title; the hidden ones are the small
    counts and those that would reveal one (complementary suppression). Empty when nothing is. ``counts`` holds NaN where disclosure control hid
    a count, so a reader is told that a bar drawn in the hidden style is not a low count.

    Examples
    --------
    >>> from explorer.privacy import PROFILES
    >>> hidden_caption([25.0, float("nan"), 40.0, float("nan")], PROFILES["aou"], "bins")
    '2 of 4 bins hidden (All of Us rule: no count of 1-20)'
    >>> hidden_caption([25.0], PROFILES["aou"])
    ''
    """
    counts = np.asarray(counts, dtype=float)
    hidden = int(np.isnan(counts).sum())
    if not hidden:
        return ""
    return f"{hidden} of {len(counts)} {what} hidden ({rules.title} rule: no count of {rules.smallest_hidden}-{rules.largest_hidden})"


def hidden_marks(counts, texts, rules, total=None) -> list[tuple[float, str]]:
    """Per count disclosure control hid (NaN in ``counts``): how high to draw it and its label.

    A small count (shown as ``rules.label``, "<=20") is drawn up to the rule's largest hidden
    count; a count hidden to protect another ("suppressed") can be any size, so it is drawn up
    to the most it can be, ``total`` less the counts shown, and labelled so ("suppressed, at
    most 65"); without a ``total`` it is drawn like a small one, labelled with its own text.

    Examples
    --------
    >>> from explorer.privacy import PROFILES
    >>> hidden_marks([53, float("nan"), 70, float("nan")], ["53", "suppressed", "70", "<=20"], PROFILES["aou"], total=150)
    [(27.0, 'suppressed, at most 27'), (20.0, '<=20')]
    """
    counts = np.asarray(counts, dtype=float)
    total = pd.to_numeric(total, errors="coerce") if total is not None else np.nan
    left = float(total) - float(np.nansum(counts)) if total == total else None
    marks = []
    for count, text in zip(counts, texts):
        if count == count:
            continue
        text = str(text) if text and text == text else rules.label
        if text == rules.label:
            marks.append((float(min(rules.largest_hidden, left)) if left is not None else float(rules.largest_hidden), text))
        elif left is not None:
            marks.append((float(left), f"{text}, at most {left:,.0f}"))
        else:
            marks.append((float(rules.largest_hidden), text))
    return marks


def hidden_bars(hv, frame: pd.DataFrame, category: str, value: str, rules, total=None):
    """The categories of a protected bar chart whose ``value`` disclosure control hid, as bars in
    the hidden style as high and labelled as :func:`hidden_marks` says (``frame``'s ``shown``
    column holds each count's text). None when nothing is hidden."""
    hidden = frame[frame[value].isna()]
    if hidden.empty:
        return None
    texts = frame["shown"] if "shown" in frame else [rules.label] * len(frame)
    marks = hidden_marks(frame[value], texts, rules, total)
    bars = hv.Bars([(str(c), top) for c, (top, _) in zip(hidden[category], marks)], kdims=[category],
                   vdims=[value]).opts(**HIDDEN_STYLE)
    labels = hv.Labels([(str(c), top, text) for c, (top, text) in zip(hidden[category], marks)],
                       kdims=[category, value]).opts(text_font_size="8pt", text_color="#555555", text_baseline="bottom")
    return bars * labels


def static_table(frame: pd.DataFrame, max_height: int | None = None, headers: dict | None = None, **options):
    """A small read-only table as plain HTML (Panel's DataFrame pane): a tenth of what a Tabulator
    widget costs the server per session, for tables nobody sorts or edits. Shown as
    :func:`readable` makes it (headers in words or as ``headers`` names them, missing values as
    —), pass/fail as a coloured badge; ``max_height`` (px) scrolls a longer one."""
    import panel as pn

    shown = readable(frame, headers)
    for name, column in zip(shown.columns, frame.columns):  # whole numbers with thousands separators
        if pd.api.types.is_integer_dtype(frame[column]) and not pd.api.types.is_bool_dtype(frame[column]):
            shown[name] = frame[column].map(lambda v: MISSING if _missing(v) else f"{int(v):,}").to_numpy()
    # the pane writes HTML as given (for the badges): every other text is escaped here
    for name in shown.columns:
        if pd.api.types.is_object_dtype(shown[name]) or pd.api.types.is_string_dtype(shown[name]):
            shown[name] = shown[name].map(lambda v: _BADGES.get(v) or (html.escape(v) if isinstance(v, str) else v))
    # text to the left, numbers (and counts a hidden one made text) to the right
    texts = [k for k, name in enumerate(frame.columns, 1) if not _numbers_or_counts(frame[name])]
    align = ", ".join(f"table td:nth-child({k}), table th:nth-child({k})" for k in texts)
    shown.columns = [html.escape(str(name)) for name in shown.columns]
    styles = {"overflow-y": "auto", "max-height": f"{max_height}px"} if max_height else {}
    return pn.pane.DataFrame(shown, index=False, na_rep=MISSING, styles=styles, float_format=number_text,
                             escape=False, text_align="end",
                             stylesheets=[f"{align} {{ text-align: left !important; }}"] if align else [], **options)


def _numbers_or_counts(column: pd.Series) -> bool:
    """A numeric column, or counts some of which disclosure control wrote as text ("<=20")."""
    if pd.api.types.is_bool_dtype(column):
        return False
    if pd.api.types.is_numeric_dtype(column):
        return True
    values = column.dropna()
    return len(values) > 0 and values.map(lambda v: isinstance(v, numbers.Number) and not isinstance(v, bool)).mean() >= 0.5


#: how a table shows a value that is not there (a hidden count shows the profile's own label)
MISSING = "—"
PASS, FAIL = "✔ pass", "✘ fail"
#: background and text colour of a data-quality result, as a badge (static tables) or a cell (Tabulator)
_RESULT_COLOURS = {PASS: ("#d7f0dd", "#14532d"), FAIL: ("#fadbd8", "#7f1d1d")}
_BADGES = {text: (f'<span class="badge" style="background:{background};color:{colour};padding:1px 7px;'
                  f'border-radius:9px;font-weight:600;white-space:nowrap">{text}</span>')
           for text, (background, colour) in _RESULT_COLOURS.items()}
_CELL_COLOURS = {text: f"background-color: {background}; color: {colour}; font-weight: 600"
                 for text, (background, colour) in _RESULT_COLOURS.items()}


def _missing(value) -> bool:
    """None, NaN, NaT or pd.NA (whose truth value cannot be asked)."""
    return value is None or (pd.api.types.is_scalar(value) and not isinstance(value, str) and bool(pd.isna(value)))


def in_words(name) -> str:
    """A column name as a header reads when nothing better is known: ``persons_with_data`` ->
    "persons with data"."""
    return str(name).replace("_", " ")


def readable(frame: pd.DataFrame, headers: dict | None = None) -> pd.DataFrame:
    """``frame`` as a reader should see it: column names as ``headers`` names them, else in
    words (``persons_with_data`` -> "persons with data"), ``None``/``NaN`` in text columns as
    —, and true/false as "pass"/"fail" in a ``passed`` column (a hidden one, ``None``, as —).
    Numbers stay numbers, formatted by the table (:func:`number_text`); the frame itself is
    not changed."""
    out = frame.copy()
    for name in out.columns:
        if name == "passed" or pd.api.types.is_object_dtype(out[name]) or pd.api.types.is_string_dtype(out[name]):
            out[name] = _cell_texts(name, out[name])
    out.columns = list(_titles(frame, headers).values())
    return out


def _cell_texts(name, column: pd.Series) -> pd.Series:
    """A text column as a table writes it: a ``passed`` column as pass/fail, missing as —, and
    the numbers of a column of counts with a hidden one ("<=20") as :func:`number_text`."""
    if name == "passed":
        return column.astype(object).map(lambda v: MISSING if _missing(v) else (PASS if bool(v) else FAIL))
    return column.astype(object).map(lambda v: MISSING if _missing(v) else (
        number_text(v) if isinstance(v, numbers.Number) and not isinstance(v, bool) else v))


def _titles(frame: pd.DataFrame, headers: dict | None) -> dict:
    """Each column's header: as ``headers`` names it, else its name in words."""
    return {name: (headers or {}).get(name) or in_words(name) for name in frame.columns}


def number_text(value: float) -> str:
    """Four significant digits, and whole numbers from 10,000 on ('12,345', never '1.234e+04');
    missing as —."""
    if _missing(value):
        return MISSING
    return f"{value:,.0f}" if abs(value) >= 1e4 else f"{value:,.4g}"


def number_formatter(values: pd.Series, name: str = ""):
    """How a table writes a numeric column: whole numbers with thousands separators and no
    ``.0`` (``36,626``); p- and q-values with two decimals, or in scientific notation below
    0.001 (``4.12e-34``); other numbers to a number of decimals set by the column's typical
    size (0 from 1,000, 1 from 100, 2 from 1, 3 from 0.01, else scientific), the same on every
    row so that the column lines up; missing as —."""
    from bokeh.models import NumberFormatter, ScientificFormatter

    missing = dict(nan_format=MISSING, null_format=MISSING, text_align="right")
    as_float = pd.to_numeric(values, errors="coerce").astype(float).to_numpy()
    finite = as_float[np.isfinite(as_float)]
    if str(name).endswith(("p_value", "q_value")):
        return ScientificFormatter(precision=2, power_limit_low=-3, power_limit_high=9, **missing)
    if pd.api.types.is_integer_dtype(values) or not len(finite) or (finite == np.round(finite)).all():
        return NumberFormatter(format="0,0", **missing)
    nonzero = np.abs(finite[finite != 0])
    typical = float(np.percentile(nonzero, 90)) if len(nonzero) else 1.0
    if typical < 0.01:
        return ScientificFormatter(precision=2, power_limit_low=-2, power_limit_high=9, **missing)
    decimals = 0 if typical >= 1000 else 1 if typical >= 100 else 2 if typical >= 1 else 3
    return NumberFormatter(format="0,0" + ("." + "0" * decimals if decimals else ""), **missing)


def data_table(frame: pd.DataFrame, headers: dict | None = None, page_size: int = 12, **options):
    """A read-only Tabulator a reader can sort: headers as ``headers`` names them (catalog
    labels and units, :meth:`LakeView.headers`), else in words; numbers formatted per column
    (:func:`number_formatter`); missing as —; pass/fail as a coloured cell. A table longer than
    ``page_size`` rows is paged, so that none is cut half-way by the table's bottom edge."""
    import panel as pn

    shown = frame.copy()
    formatters = {}
    for name in shown.columns:
        column = shown[name]
        if name == "passed":
            shown[name] = _cell_texts(name, column)
        elif pd.api.types.is_bool_dtype(column):
            shown[name] = column.map({True: "yes", False: "no"})
        elif pd.api.types.is_numeric_dtype(column):
            formatters[name] = number_formatter(column, name)
        elif pd.api.types.is_datetime64_any_dtype(column):
            shown[name] = column.dt.strftime("%Y-%m-%d %H:%M").astype(object).where(column.notna(), MISSING)
        else:
            shown[name] = _cell_texts(name, column)
    if len(shown) > page_size:
        options.setdefault("pagination", "local")
        options.setdefault("page_size", page_size)
    table = pn.widgets.Tabulator(shown, show_index=False, disabled=True, titles=_titles(frame, headers),
                                 formatters=formatters, sizing_mode="stretch_width", **options)
    if "passed" in shown:
        table.style.map(lambda v: _CELL_COLOURS.get(v, ""), subset=["passed"])
    return table



def with_shown_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """A protected table as a file should carry it: each count disclosure control hid replaced
    by the text the page shows for it ("<=20", "suppressed") instead of an empty cell, and the
    helper columns (``shown``, ``*_shown``, ``status``) dropped. A table with nothing hidden is
    returned as it is."""
    out = frame.copy()
    for name in list(out.columns):
        shown = "shown" if name == "count" and "shown" in out else f"{name}_shown"
        if shown in out and shown != name:
            out[name] = out[shown].astype(object)
            out = out.drop(columns=[shown])
    return out.drop(columns=[c for c in ("status",) if c in out])


def shared_data(*tables: str):
    """Decorate a view's ``data()``: check the role and that ``tables`` exist, then compute the
    result once per role, disclosure profile, view settings and version of ``tables``, and share
    it across sessions (:meth:`LakeView._shared`). A served page's sessions then load an
    aggregate once, and a new version of a table read is computed afresh."""
    def decorate(method):
        @functools.wraps(method)
        def data(self):
            self._require(*tables)
            key = (method.__name__, *self._settings_key(), *((table, self.lake.version(table)) for table in tables))
            return self._shared(key, lambda: method(self))
        data.shared_tables = tables  # what serve.warm_shared_views looks for
        return data
    return decorate


def nice_edges(values, bins: int) -> np.ndarray:
    """Bin edges over the 1st to 99th percentile of ``values``, rounded outward to two
    significant digits, so that no edge is any one person's value (np.histogram's own edges
    are the smallest and largest value)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if not len(values):
        return np.linspace(0, 1, bins + 1)
    low, high = np.percentile(values, [1, 99])
    span = high - low or max(abs(high), 1.0)
    step = 10.0 ** (np.floor(np.log10(span)) - 1)
    low, high = np.floor(low / step) * step, np.ceil(high / step) * step
    return np.linspace(low, high if high > low else low + step, bins + 1)
