"""Cohort views: attrition, characterisation, and the builder that writes definition documents.

The builder edits the same document a notebook writes (:mod:`explorer.cohorts.definition`):
one row of widgets per criterion, live attrition counts from one DuckDB query after every
change, a YAML download, and loading a document back. A criterion the widgets cannot show (a
combination with all/any/not) is edited as YAML in its row.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import param

from explorer import cohorts
from explorer.cohorts.definition import (
    CODE_SYSTEMS, EXPOSURE_VARIABLES, INDEX_RULES, STATISTICS, WEARABLE_METRICS, Definition, DefinitionError)
from explorer.errors import ExplorerError
from explorer.views.base import LakeView, _holoviews

HIDDEN = ("primary", "complementary")
COMPLEMENTARY = "suppressed"


class CohortAttrition(LakeView):
    """Persons left after each criterion of a definition, as a table and a bar chart."""

    definition = param.ClassSelector(class_=Definition, doc="The cohort definition (explorer.cohorts.load(...)); "
                                                            "for a public view, a saved one (cohorts.get(lake, name)).")

    def data(self) -> pd.DataFrame:
        """step, label, persons, removed (protected for a public view: NaN where hidden, with
        ``persons_shown``/``removed_shown`` text). A public view counts saved definitions only:
        counts of two definitions of one's own that differ by one criterion would give the
        persons the criterion removes by subtraction, whatever each page hides."""
        self._require()
        if self.definition is None:
            raise ExplorerError("CohortAttrition needs a definition: CohortAttrition(lake=..., definition=cohorts.load(...))")
        if self.public and self.definition.sha256 not in set(cohorts.saved(self.lake)["definition_sha256"]):
            from explorer.privacy import PermissionDenied

            raise PermissionDenied("a public view shows the attrition of saved cohorts only (a researcher saves and so "
                                   "reviews them); counting a definition of one's own needs the researcher role")
        return cohorts.count(self.lake, self.definition, disclosure=self.disclosure if self.public else None)

    def panel(self):
        return attrition_panel(self.data(), self.public)


def attrition_panel(frame: pd.DataFrame, public: bool):
    import panel as pn

    hv = _holoviews()
    shown = frame.assign(persons_text=frame["persons_shown"] if public else frame["persons"].map(str))
    bars = hv.Bars(shown.assign(step_label=[f"{s}. {label[:60]}" for s, label in zip(shown["step"], shown["label"])]),
                   kdims=["step_label"], vdims=["persons", "persons_text"]).opts(
        invert_axes=True, responsive=True, height=40 + 34 * len(frame), tools=["hover"], xlabel="",
        ylabel="persons remaining", title="Attrition" + (" (small counts hidden)" if public else ""), invert_yaxis=True)
    columns = ["step", "label", "persons_shown", "removed_shown"] if public else ["step", "label", "persons", "removed"]
    table = pn.widgets.Tabulator(frame[columns], show_index=False, disabled=True, sizing_mode="stretch_width",
                                 height=60 + 32 * len(frame))
    return pn.Column(bars, table, sizing_mode="stretch_width")


class CohortCharacterisation(LakeView):
    """A cohort against the whole lake or another cohort: one row per feature (and level), with
    the standardised mean difference; a Love plot of the differences."""

    cohort = param.Selector(default="", objects=[""], check_on_set=False, doc="Saved cohort name (explorer cohort list).")
    against = param.String(default="", doc="Saved cohort to compare with (empty: the whole lake).")

    def data(self) -> pd.DataFrame:
        """The characterisation table (:func:`explorer.cohorts.characterise`); for a public view
        every count passes disclosure control (one page per feature and group, levels and
        total together) and a value, SD or SMD resting on a hidden count is hidden with it."""
        self._require("cohort_member")
        if not self.cohort:
            raise ExplorerError("CohortCharacterisation needs cohort=NAME, a saved cohort (explorer cohort list)")
        saved = cohorts.saved(self.lake)["cohort"].tolist()
        for name in (self.cohort, self.against):  # saved names only: never a path or a document from a URL
            if name and name not in saved:
                raise ExplorerError(f"no saved cohort {name!r}; saved cohorts: {', '.join(saved) or 'none'}")
        table = cohorts.characterise(self.lake, self.cohort, self.against or None)
        return protect_characterisation(table, self.disclosure) if self.public else table

    def display_table(self, table: pd.DataFrame | None = None) -> pd.DataFrame:
        """The table as a reader sees it: one column per group (``n``, value), and the SMD."""
        table = self.data() if table is None else table
        first, second = table.attrs.get("groups", ["cohort", "comparator"])
        out = table[["domain", "feature", "level"]].copy()
        for k, name in ((1, first), (2, second)):
            counts = table.get(f"count_{k}_shown", table[f"count_{k}"].map(_integer))
            value = table[f"value_{k}"].map(lambda v: "" if pd.isna(v) else f"{v:.1f}")
            unit = np.where(table["kind"] == "proportion", "%", "")
            sd = table[f"sd_{k}"].map(lambda v: "" if pd.isna(v) else f" (SD {v:.1f})")
            out[f"{name}"] = [(f"{c} ({v}{u})" if v else c) if kind == "proportion" and c != "" else f"{v}{u}{s}"
                              for c, v, u, s, kind in zip(counts, value, unit, sd, table["kind"])]
            out[f"{name}: n"] = table.get(f"n_{k}_shown", table[f"n_{k}"].map(_integer))
        out["smd"] = table["smd"].map(lambda v: "" if pd.isna(v) else f"{v:+.2f}")
        return out

    def panel(self):
        import panel as pn

        hv = _holoviews()
        table = self.data()
        plotted = table.dropna(subset=["smd"]).assign(row=lambda t: (t["feature"] + ": " + t["level"]).str.slice(0, 70))
        love = (hv.Points(plotted, kdims=["smd", "row"], vdims=["domain"]).opts(
                    color="domain", cmap="Category10", size=7, tools=["hover"], responsive=True,
                    height=max(260, 16 * len(plotted)), xlabel="standardised mean difference", ylabel="",
                    title=f"{table.attrs['groups'][0]} vs {table.attrs['groups'][1]}", legend_position="right")
                * hv.VLine(0.1).opts(color="gray", line_dash="dashed") * hv.VLine(-0.1).opts(color="gray", line_dash="dashed"))
        return pn.Column(love, pn.widgets.Tabulator(self.display_table(table), show_index=False, disabled=True,
                                                    sizing_mode="stretch_width", height=420),
                         sizing_mode="stretch_width")


def protect_characterisation(table: pd.DataFrame, disclosure) -> pd.DataFrame:
    """The characterisation table as a public user may see it (see CohortCharacterisation.data).

    Per group, its size is one protected count (hidden: the whole column is). Per feature, one
    page: its levels, the persons without a value ("(missing)") and the group's size as the
    total, so that neither a level nor the missing can be solved from the size shown elsewhere;
    a page that would need the size itself hidden is hidden whole. Percentages and SMDs are
    recomputed from the counts shown."""
    out = table.copy()
    sizes = table.attrs.get("sizes") or [int(table["n_1"].max()), int(table["n_2"].max())]
    hidden_text = {"primary": disclosure.rules.label, "complementary": COMPLEMENTARY}
    for k in (1, 2):
        out[f"count_{k}_shown"], out[f"n_{k}_shown"] = "", ""
        size_page = disclosure.counts(pd.DataFrame({"n": [sizes[k - 1]]}), [()], weight="n").table()
        if size_page["status"].iloc[0] in HIDDEN:  # the group is small: nothing of it is shown
            out[f"n_{k}_shown"] = size_page["shown"].iloc[0]
            out[f"count_{k}_shown"] = np.where(table["kind"] == "proportion", size_page["shown"].iloc[0], "")
            out[[f"value_{k}", f"sd_{k}", f"count_{k}", "smd"]] = np.nan
            continue
        for feature, rows in table.groupby("feature", sort=False):
            index = rows.index
            n = int(rows[f"n_{k}"].iloc[0])
            continuous = rows["kind"].iloc[0] == "continuous"
            if continuous:
                levels = pd.DataFrame({"level": ["with a value"], "n": [n]})
            else:
                levels = rows[["level", f"count_{k}"]].rename(columns={f"count_{k}": "n"})
                if list(rows["level"]) == ["yes"]:
                    levels = pd.concat([levels, pd.DataFrame({"level": ["no"], "n": [n - int(rows[f"count_{k}"].iloc[0])]})])
            missing = sizes[k - 1] - n
            levels = pd.concat([levels, pd.DataFrame({"level": ["(missing)"], "n": [missing]})], ignore_index=True)
            page = disclosure.counts(levels.assign(n=levels["n"].astype(int)), [("level",), ()], weight="n")
            cells = page.table("level").set_index("level")
            whole = page.table()["status"].iloc[0] in HIDDEN  # the size is shown elsewhere: hide the page
            with_value = n if not (whole or cells.loc["(missing)", "status"] in HIDDEN) else None
            if continuous:
                cell = cells.loc["with a value"]
                hidden = whole or cell["status"] in HIDDEN
                out.loc[index, f"n_{k}_shown"] = COMPLEMENTARY if whole else cell["shown"]
                if hidden:
                    out.loc[index, [f"value_{k}", f"sd_{k}"]] = np.nan
                continue
            denominator = cells.loc["(missing)", "count"] if with_value is not None else np.nan
            denominator = sizes[k - 1] - denominator if with_value is not None else np.nan
            for i, level in zip(index, rows["level"]):
                cell = cells.loc[level]
                hidden = whole or cell["status"] in HIDDEN
                out.at[i, f"count_{k}_shown"] = COMPLEMENTARY if whole and not cell["status"] in HIDDEN else (
                    hidden_text.get(cell["status"], cell["shown"]))
                out.at[i, f"n_{k}_shown"] = COMPLEMENTARY if with_value is None else _integer(denominator)
                out.at[i, f"count_{k}"] = np.nan if hidden else cell["count"]
                out.at[i, f"value_{k}"] = (np.nan if hidden or with_value is None or not denominator
                                           else 100 * cell["count"] / denominator)
        out[f"n_{k}"] = np.nan  # the text column is what a public reader gets
    out["smd"] = [_public_smd(row) for row in out.to_dict("records")]
    return out


def _public_smd(row: dict) -> float:
    """The SMD from what the page shows (so it tells nothing the shown values do not)."""
    if row["kind"] == "continuous":
        m1, m2, s1, s2 = row["value_1"], row["value_2"], row["sd_1"], row["sd_2"]
        pooled = np.sqrt((s1 ** 2 + s2 ** 2) / 2)
        return (m1 - m2) / pooled if np.isfinite(pooled) and pooled > 0 else np.nan
    p1, p2 = row["value_1"] / 100, row["value_2"] / 100
    spread = np.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / 2)
    return (p1 - p2) / spread if np.isfinite(spread) and spread > 0 else (0.0 if p1 == p2 else np.nan)


def _integer(value) -> str:
    return "" if pd.isna(value) else f"{int(value)}"


# ------------------------------------------------------------------------------------- builder
#: the widgets of each kind of criterion: document key (dotted for ranges and windows) -> widget spec
FIELDS = {
    "demographics": {"age.gte": ("int", "age from"), "age.lt": ("int", "age below"),
                     "sex_at_birth": ("list", "sex at birth"), "race": ("list", "race"),
                     "ethnicity": ("list", "ethnicity"), "zip3": ("list", "ZIP3")},
    "condition": {"code_system": (list(CODE_SYSTEMS), "code system"), "codes": ("list", "codes"),
                  "descendants": ("bool", "and codes below"), "window.start": ("int", "from day"),
                  "window.end": ("int", "to day"), "min_count": ("int", "at least (records)")},
    "lab": {"loinc": ("text", "LOINC"), "unit": ("text", "unit"), "value.gte": ("float", "at least"),
            "value.lt": ("float", "below"), "which": (["any", "all", "first", "last"], "which result"),
            "window.start": ("int", "from day"), "window.end": ("int", "to day"), "min_count": ("int", "at least (results)")},
    "wearable": {"min_valid_days": ("int", "valid days at least"), "metric": (["", *WEARABLE_METRICS], "metric"),
                 "statistic": (STATISTICS, "statistic"), "value.gte": ("float", "at least"), "value.lt": ("float", "below"),
                 "window.start": ("int", "from day"), "window.end": ("int", "to day")},
    "exposure": {"variable": (list(EXPOSURE_VARIABLES), "variable"), "statistic": (["days", *STATISTICS], "statistic"),
                 "day_value.gte": ("float", "days with value at least"), "value.gte": ("float", "at least"),
                 "value.lt": ("float", "below"), "window.start": ("int", "from day"), "window.end": ("int", "to day")},
}
DEFAULTS = {"condition": {"code_system": "ICD10CM", "descendants": True, "min_count": 1},
            "lab": {"which": "any", "min_count": 1}, "wearable": {"statistic": "median", "min_valid_days": 0},
            "exposure": {"variable": "heat_wave", "statistic": "days"}}


def _widget(spec, label, value):
    import panel as pn

    kind = spec
    if isinstance(kind, list):
        return pn.widgets.Select(label=label, options=kind, value=value if value in kind else kind[0], width=170)
    if kind == "bool":
        return pn.widgets.Checkbox(label=label, value=bool(value) if value is not None else True, width=150)
    if kind == "int":
        return pn.widgets.IntInput(label=label, value=value, width=110)
    if kind == "float":
        return pn.widgets.FloatInput(label=label, value=value, width=120)
    if kind == "list":
        return pn.widgets.TextInput(label=label + " (comma-separated)", value=", ".join(value or []), width=220)
    return pn.widgets.TextInput(label=label, value=value or "", width=140)


class CriterionEditor:
    """The widgets of one criterion; ``document()`` is its part of the definition."""

    def __init__(self, section: str, document: dict, on_change):
        import panel as pn

        self.section = section
        self.kind = document.get("kind") if "kind" in document else None
        self.widgets = {}
        self.remove = pn.widgets.Button(label="remove", color="light", width=80)
        if self.kind in FIELDS and set(_flatten(document)) - {"kind", "label"} <= set(FIELDS[self.kind]):
            flat = {**DEFAULTS.get(self.kind, {}), **_flatten(document)}
            for key, (spec, label) in FIELDS[self.kind].items():
                self.widgets[key] = _widget(spec, label, flat.get(key))
            self.widgets["label"] = pn.widgets.TextInput(label="label (optional)", value=document.get("label", ""), width=200)
        else:  # a combination, or keys the widgets do not show: edited as YAML, nothing lost
            import yaml

            self.kind = None
            self.widgets["yaml"] = pn.widgets.TextAreaInput(label="criterion (YAML)", value=yaml.safe_dump(document, sort_keys=False),
                                                            height=140, width=520)
        for widget in self.widgets.values():
            widget.param.watch(lambda event: on_change(), "value")

    def document(self) -> dict:
        if self.kind is None:
            import yaml

            text = self.widgets["yaml"].value
            try:
                if "*" in text and any(isinstance(e, yaml.AliasEvent) for e in yaml.parse(text, Loader=yaml.SafeLoader)):
                    raise DefinitionError([f"{self.section}: YAML aliases (*name) are not allowed; write the criterion out"])
                return yaml.safe_load(text) or {}
            except yaml.YAMLError as exc:
                raise DefinitionError([f"{self.section}: the YAML of a criterion does not parse: {exc}"]) from None
        out: dict = {"kind": self.kind}
        for key, widget in self.widgets.items():
            value = widget.value
            if FIELDS[self.kind].get(key, ("text",))[0] == "list":
                value = [v.strip() for v in value.split(",") if v.strip()]
            if value in (None, "", []) or value == DEFAULTS.get(self.kind, {}).get(key):
                continue
            head, _, tail = key.partition(".")
            if tail:
                out.setdefault(head, {})[tail] = value
            else:
                out[key] = value
        return out

    def panel(self):
        import panel as pn

        title = f"{self.section}: {self.kind or 'combination'}"
        return pn.Card(pn.FlexBox(*self.widgets.values(), self.remove), title=title, collapsible=False,
                       sizing_mode="stretch_width")


class CohortBuilder(LakeView):
    """Build a cohort definition with widgets and see its attrition after every change.

    ``document`` always holds the definition as YAML, the same text a notebook would write with
    ``definition.to_yaml()``; ``load()`` takes one back. A researcher can save it to the lake.
    """

    #: counting persons under any definition a user writes: researchers (see ACCESS["define_cohorts"])
    access = "define_cohorts"

    document = param.String(default="", doc="The definition as YAML (read-only mirror of the widgets).")
    problems = param.List(default=[], doc="Why the current widgets do not make a valid definition (empty when valid).")

    def __init__(self, definition=None, **params):
        import panel as pn

        super().__init__(**params)
        self._header = {
            "name": pn.widgets.TextInput(label="name", value="my-cohort", width=200),
            "version": pn.widgets.IntInput(label="version", value=1, start=1, width=90),
            "author": pn.widgets.TextInput(label="author", value="", width=160),
            "description": pn.widgets.TextInput(label="description", value="", width=380),
        }
        self._index = {
            "rule": pn.widgets.Select(label="index date", options=INDEX_RULES, value="first_condition", width=180),
            "codes": pn.widgets.TextInput(label="codes (first_condition)", value="", width=180),
            "code_system": pn.widgets.Select(label="code system", options=list(CODE_SYSTEMS), value="ICD10CM", width=120),
            "loinc": pn.widgets.TextInput(label="LOINC (first_lab)", value="", width=120),
            "date": pn.widgets.TextInput(label="date (fixed, YYYY-MM-DD)", value="", width=170),
        }
        self._editors: list[CriterionEditor] = []
        self._rows = pn.Column(sizing_mode="stretch_width")
        self._add_kind = pn.widgets.Select(label="criterion kind", options=list(FIELDS), value="demographics", width=160)
        self._add_section = pn.widgets.RadioButtonGroup(options=["inclusion", "exclusion"], value="inclusion", width=200)
        self._add = pn.widgets.Button(label="add criterion", color="primary", width=130)
        self._add.on_click(lambda event: self.add(self._add_section.value, self._add_kind.value))
        self._attrition = pn.Column(sizing_mode="stretch_width")
        self._message = pn.pane.Alert("", alert_type="danger", visible=False)
        self._upload = pn.widgets.FileInput(accept=".yaml,.yml,.json", width=220)
        # an upload is document text, never a path on the server
        self._upload.param.watch(lambda event: self.load(cohorts.loads(event.new.decode("utf-8", "replace"), "the uploaded file"))
                                 if event.new else None, "value")
        self._save = pn.widgets.Button(label="save to lake", color="success", width=120,
                                       disabled=self.role == "public")
        self._save.on_click(lambda event: self.save())
        self._updating = False
        for widget in [*self._header.values(), *self._index.values()]:
            widget.param.watch(lambda event: self._changed(), "value")
        if definition is not None:
            self.load(definition)
        else:
            self._changed()

    # ------------------------------------------------------------------ editing
    def add(self, section: str, kind: str, document: dict | None = None) -> CriterionEditor:
        """Add a criterion row (``document``: its part of a definition, default empty)."""
        editor = CriterionEditor(section, document or {"kind": kind}, self._changed)
        editor.remove.on_click(lambda event, e=editor: self.remove(e))
        self._editors.append(editor)
        self._layout_rows()
        self._changed()
        return editor

    def remove(self, editor: CriterionEditor) -> None:
        self._editors.remove(editor)
        self._layout_rows()
        self._changed()

    @property
    def editors(self) -> list[CriterionEditor]:
        return list(self._editors)

    def load(self, definition) -> None:
        """Show ``definition`` (a Definition, a document, a path or YAML/JSON text) in the widgets."""
        definition = cohorts.as_definition(definition)
        document = definition.to_dict()
        self._updating = True
        try:
            for key, widget in self._header.items():
                widget.value = document.get(key, widget.value if key in ("name", "version") else "")
            index = document["index_date"]
            self._index["rule"].value = index["rule"]
            self._index["codes"].value = ", ".join(index.get("codes", []))
            self._index["code_system"].value = index.get("code_system", "ICD10CM")
            self._index["loinc"].value = index.get("loinc", "")
            self._index["date"].value = index.get("date", "")
            self._extra_index = {k: v for k, v in index.items() if k not in ("rule", "codes", "code_system", "loinc", "date")}
            self._editors = []
            for section in ("inclusion", "exclusion"):
                for item in document.get(section, []):
                    editor = CriterionEditor(section, item, self._changed)
                    editor.remove.on_click(lambda event, e=editor: self.remove(e))
                    self._editors.append(editor)
        finally:
            self._updating = False
        self._layout_rows()
        self._changed()

    def definition(self) -> Definition:
        """The definition the widgets describe; raises DefinitionError when they do not make one."""
        return cohorts.from_dict(self._document(), "the builder's definition")

    def _document(self) -> dict:
        index = {"rule": self._index["rule"].value}
        rule = index["rule"]
        if rule == "first_condition":
            index["code_system"] = self._index["code_system"].value
            index["codes"] = [c.strip() for c in self._index["codes"].value.split(",") if c.strip()]
        elif rule == "first_lab":
            index["loinc"] = self._index["loinc"].value.strip()
        elif rule == "fixed":
            index["date"] = self._index["date"].value.strip()
        index.update(getattr(self, "_extra_index", {}))
        document = {"name": self._header["name"].value.strip(), "version": self._header["version"].value,
                    "author": self._header["author"].value, "description": self._header["description"].value,
                    "index_date": index}
        for section in ("inclusion", "exclusion"):
            items = [e.document() for e in self._editors if e.section == section]
            if items:
                document[section] = items
        return document

    def _changed(self) -> None:
        if self._updating:
            return
        try:
            definition = self.definition()
        except DefinitionError as exc:
            self.problems = list(exc.problems)
            self._message.object = "**The definition is not complete yet:**\n\n" + "\n".join(f"- {p}" for p in exc.problems)
            self._message.alert_type, self._message.visible = "warning", True
            return
        self.problems = []
        self._message.visible = False
        self.document = definition.to_yaml()
        try:
            frame = self.attrition(definition)
        except ExplorerError as exc:
            self._message.object = str(exc)
            self._message.alert_type, self._message.visible = "danger", True
            return
        self._attrition.objects = [attrition_panel(frame, self.public)]

    def attrition(self, definition: Definition | None = None) -> pd.DataFrame:
        """The live attrition counts (protected for a public builder)."""
        self._require()
        return cohorts.count(self.lake, definition or self.definition(), disclosure=self.disclosure if self.public else None)

    def save(self) -> int:
        """Save the definition to the lake and materialise it (researcher and above)."""
        from explorer.privacy import require

        require(self.role, "person_rows", "saving a cohort")
        version = cohorts.save(self.lake, self.definition())
        self._message.object, self._message.alert_type, self._message.visible = (
            f"saved: cohort_member@{version}", "success", True)
        return version

    def _layout_rows(self) -> None:
        self._rows.objects = [e.panel() for e in self._editors]

    def panel(self):
        import io

        import panel as pn

        download = pn.widgets.FileDownload(callback=lambda: io.StringIO(self.document), filename="cohort.yaml",
                                           label="download YAML", color="default", width=150)
        return pn.Column(
            pn.pane.Markdown("### Cohort builder"),
            pn.FlexBox(*self._header.values()),
            pn.FlexBox(*self._index.values()),
            self._rows,
            pn.Row(self._add_section, self._add_kind, self._add),
            self._message,
            self._attrition,
            pn.Row(download, pn.pane.Markdown("load a definition:"), self._upload, self._save),
            sizing_mode="stretch_width",
        )


def _flatten(document: dict) -> dict:
    out = {}
    for key, value in document.items():
        if isinstance(value, dict):
            for inner, item in value.items():
                out[f"{key}.{inner}"] = item
        else:
            out[key] = value
    return out
