"""What the lake holds: datasets with their versions and lineage, refresh runs, and what changed
in an aggregate between two versions (what changed between releases)."""

from __future__ import annotations

import pandas as pd
import param

from explorer.errors import ExplorerError, did_you_mean
from explorer.views.base import LakeView
from explorer.privacy import PermissionDenied, require, require_tables


class CatalogOverview(LakeView):
    """Datasets, the refresh job history, and one aggregate compared between two versions."""

    # a dropdown of the lake's tables (set when the view is built); a name from elsewhere (a URL)
    # is kept, so the view can say it is not in the lake instead of the page refusing it
    table = param.Selector(default="wearable_daily", objects=["wearable_daily"], check_on_set=False,
                           doc="Aggregate table to compare between versions (one of the lake's tables).")
    before = param.Integer(default=None, allow_None=True, doc="Earlier version (default: the one before the latest).")
    after = param.Integer(default=None, allow_None=True, doc="Later version (default: the latest).")

    def __init__(self, **params):
        table = params.pop("table", None)
        super().__init__(**params)
        if self.lake is not None:
            tables = list(self.lake.tables())
            # the choices first, then the value: a name not among them is added to this view's
            # choices only (the widget shows it; compare() says it is not in the lake)
            self.param["table"].objects = tables or [self.param["table"].default]
            if table is None and self.table not in tables and tables:
                table = "wearable_daily" if "wearable_daily" in tables else tables[0]
        if table is not None:
            self.table = table

    def datasets(self) -> pd.DataFrame:
        """One row per table of the lake: tier, version, last commit, what it was made from."""
        self._require()
        rows = []
        for name in self.lake.tables():
            entry = self.lake.catalog.get(name)
            last = self.lake.versions(name, limit=1).iloc[-1]
            made_from = sorted({ref.split("@")[0] for ref in last["inputs"] if not ref.startswith("raw:")})
            raw = sum(ref.startswith("raw:") for ref in last["inputs"])
            rows.append({"dataset": name, "tier": entry.sensitivity if entry else "?", "version": int(last["version"]),
                         "last commit": f"{last['timestamp']:%Y-%m-%d %H:%M}", "operation": last["operation"],
                         "made from": ", ".join(made_from + ([f"{raw} raw file(s)"] if raw else []))})
        return pd.DataFrame(rows)

    def runs(self) -> pd.DataFrame:
        """The latest refresh runs (job_run), newest first."""
        from explorer.jobs.refresh import runs

        require(self.role, "person_rows", "the refresh history (job_run)")
        return runs(self.lake, limit=20)

    def compare(self) -> pd.DataFrame:
        """``table`` at two versions: rows, and the mean of each numeric column, with the change.
        Researchers only: the means of a small aggregate are not under disclosure control."""

        require(self.role, "person_rows", "comparing table versions")
        if not self.lake.has_table(self.table):
            tables = sorted(self.lake.tables())
            raise ExplorerError(f"no table {str(self.table)[:80]!r}; tables: {', '.join(tables) or 'none yet'}"
                                f"{did_you_mean(self.table, tables)}")
        # row counts and means are read from the table itself: only a table of the role's tier
        require_tables(self.lake, self.role, [self.table], f"comparing versions of {self.table}")
        latest = self.lake.version(self.table)
        after = latest if self.after is None else self.after
        before = max(after - 1, 0) if self.before is None else self.before
        schema = self.lake.sql(f'DESCRIBE "{self.table}"')
        numeric = [c for c, t in zip(schema["column_name"], schema["column_type"])
                   if t in ("DOUBLE", "FLOAT", "BIGINT", "INTEGER", "HUGEINT", "SMALLINT") and c != "person_bucket"]
        select = ", ".join(["count(*) AS rows", *(f'avg("{c}") AS "{c}"' for c in numeric)])
        values = {v: self.lake.sql(f'SELECT {select} FROM "{self.table}"', versions={self.table: v}).iloc[0]
                  for v in (before, after)}
        entry = self.lake.catalog.get(self.table)
        named = {c.name: c.header for c in entry.schema} if entry else {}
        frame = pd.DataFrame({"measure": ["rows", *(f"average {named.get(c, c.replace('_', ' '))}" for c in numeric)],
                              f"v{before}": values[before].to_numpy(), f"v{after}": values[after].to_numpy()})
        frame["change"] = frame[f"v{after}"] - frame[f"v{before}"]
        return frame

    def panel(self):
        import panel as pn

        from explorer.views.base import data_table, message, number_text, plain_text

        datasets = self.datasets()
        parts = [pn.pane.Markdown(f"### Datasets ({len(datasets)})"), data_table(datasets, page_size=10)]
        if not self.public:
            runs = self.runs()
            parts += [pn.pane.Markdown("### Refresh runs (newest first)"),
                      data_table(runs, self.headers(runs, "job_run", run_id="run", started_at="started (UTC)",
                                                    succeeded="steps run", up_to_date="steps up to date",
                                                    failed="steps failed", skipped="steps skipped"), page_size=5),
                      pn.pane.Markdown(f"### {plain_text(self.table)}: what changed between versions")]
            try:  # a table the URL names may not exist or be above the role's tier: the rest still shows
                # one row per measure, of its own size: each value to 4 significant digits
                compared = self.compare()
                parts.append(data_table(compared.assign(**{c: compared[c].map(number_text) for c in compared.columns[1:]})))
            except PermissionDenied as exc:
                parts.append(message(exc, "warning", "Not available to you."))
            except ExplorerError as exc:
                parts.append(message(exc))
        return pn.Column(*parts, sizing_mode="stretch_width")
