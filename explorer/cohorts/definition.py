"""Cohort definitions as data: a small, versioned document of an index date rule and criteria.

A definition is written in YAML or JSON, by hand, by a notebook or by the builder view, and every
one of them reads and writes the same document::

    schema: explorer.cohort/1
    name: sedentary-heat-exposed-diabetes
    version: 2
    author: a.researcher
    description: Adults with type 2 diabetes, few steps and a hot year before the diagnosis
    index_date: {rule: first_condition, code_system: ICD10CM, codes: [E11]}
    inclusion:
      - {kind: demographics, age: {gte: 40, lt: 75}}
      - {kind: wearable, min_valid_days: 60, metric: steps, statistic: median, value: {lt: 5000},
         window: {start: -365, end: 0}}
      - {kind: exposure, variable: heat_wave, statistic: days, value: {gte: 3}, window: {start: -365, end: -1}}
      - any:
          - {kind: lab, loinc: 4548-4, unit: '%', value: {gte: 6.5}, window: {start: -365, end: 0}}
          - {kind: lab, loinc: 2345-7, unit: mg/dL, value: {gte: 126}}
    exclusion:
      - {kind: condition, code_system: ICD10CM, codes: [N18], window: {end: 0}}

Each kind of criterion is a ``param.Parameterized`` class with a type name, found by that name in
:data:`CRITERIA` (as Lumen finds its sources and views): document keys map one to one onto its
parameters, and an unknown key or kind fails with "did you mean". Criteria combine with ``all``,
``any`` and ``not``; every time window is in days relative to the person's index date, both ends
included (``start: -365, end: -1`` is the year before it).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

import param

from explorer.catalog.entries import default_catalog
from explorer.catalog.metrics import METRICS, Metric
from explorer.errors import ExplorerError, did_you_mean

SCHEMA = "explorer.cohort/1"
#: limits that keep a document a description of a cohort, not a load on the server
MAX_DEPTH = 6  # all/any/not nested at most this deep
MAX_LEAVES = 64  # criteria in one definition
MAX_DAYS = 36_525  # a window end at most 100 years from the index date
MAX_COUNT = 1_000_000  # min_count, min_valid_days, version
MAX_BOUND = 1e9  # value bounds
#: the largest definition text read: 64 criteria fit in a tenth of it, and a bigger document is
#: refused before it is parsed (an 8.6 MB upload once held a server for 17.5 s)
MAX_DOCUMENT_BYTES = 256 * 1024
#: nesting of mappings and lists in a definition's text (MAX_DEPTH combinations need about 15)
MAX_TEXT_NESTING = 40
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LOINC_PATTERN = re.compile(r"^([0-9]{1,7})-([0-9])$")
#: what a code of each system looks like (ICD codes compared without their dot, upper case)
CODE_PATTERNS = {
    "ICD10CM": re.compile(r"^[A-Z][0-9][0-9A-Z]\.?[0-9A-Z]{0,4}$"),
    "ICD9CM": re.compile(r"^([0-9]{3}|V[0-9]{2}|E[0-9]{3})\.?[0-9]{0,2}$"),
    "SNOMED": re.compile(r"^[1-9][0-9]{5,17}$"),
}
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
#: short names of code systems -> the system URI the lake stores (FHIR's canonical URIs)
CODE_SYSTEMS = {
    "ICD10CM": "http://hl7.org/fhir/sid/icd-10-cm",
    "SNOMED": "http://snomed.info/sct",
    "ICD9CM": "http://hl7.org/fhir/sid/icd-9-cm",
}


class DefinitionError(ExplorerError, ValueError):
    """A cohort definition that does not validate; ``problems`` lists each as ``where: what``."""

    def __init__(self, problems: list[str], source: str = "the cohort definition"):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source} is not valid ({len(problems)} problem{'s' * (len(problems) != 1)}):\n{lines}")


def loinc_check_digit(number: str) -> int:
    """The check digit of a LOINC code's number part (Mod 10, as LOINC's users' guide gives it).

    Starting from the rightmost digit, every other digit is doubled; the digits of the doubled
    numbers and of the others are summed, and the check digit brings the sum to a multiple of 10.

    >>> loinc_check_digit("2345")  # glucose, 2345-7
    7
    """
    total = 0
    for position, char in enumerate(reversed(number)):
        value = int(char) * (2 if position % 2 == 0 else 1)
        total += value // 10 + value % 10
    return (10 - total % 10) % 10


# ---------------------------------------------------------------------------------- small parts
class Part(param.Parameterized):
    """A piece of a definition whose document keys are its parameters."""

    def to_dict(self) -> dict:
        out = {}
        for key in _fields(type(self)):
            value = getattr(self, key)
            if value == self.param[key].default or value is None or value == []:
                continue
            out[key] = _emit(value)
        return out

    def __eq__(self, other):
        return type(self) is type(other) and self.to_dict() == other.to_dict()

    def __hash__(self):
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.to_dict().items())})"


class Range(Part):
    """Bounds on a value: ``{gte: 40, lt: 75}`` is 40 <= value < 75. At least one bound."""

    gt = param.Number(default=None, allow_None=True, doc="value > gt")
    gte = param.Number(default=None, allow_None=True, doc="value >= gte")
    lt = param.Number(default=None, allow_None=True, doc="value < lt")
    lte = param.Number(default=None, allow_None=True, doc="value <= lte")

    OPERATORS: ClassVar[dict[str, str]] = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}

    def bounds(self) -> list[tuple[str, float]]:
        return [(op, getattr(self, key)) for key, op in self.OPERATORS.items() if getattr(self, key) is not None]

    def check(self, where: str) -> list[str]:
        if not self.bounds():
            return [f"{where}: give at least one of gt, gte, lt, lte"]
        low = max((v for k, v in (("gt", self.gt), ("gte", self.gte)) if v is not None), default=None)
        high = min((v for k, v in (("lt", self.lt), ("lte", self.lte)) if v is not None), default=None)
        if self.gt is not None and self.gte is not None or self.lt is not None and self.lte is not None:
            return [f"{where}: give one lower bound (gt or gte) and one upper bound (lt or lte) at most"]
        if low is not None and high is not None and (low > high or low == high and (self.gt is not None or self.lt is not None)):
            return [f"{where}: no value satisfies {self.describe('value')}"]
        return []

    def describe(self, what: str) -> str:
        return " and ".join(f"{what} {op} {_number(v)}" for op, v in self.bounds())


class Window(Part):
    """Days relative to the index date, both ends included; a missing end is open."""

    start = param.Integer(default=None, allow_None=True, doc="First day (negative: before the index date).")
    end = param.Integer(default=None, allow_None=True, doc="Last day (0: the index date itself).")

    def check(self, where: str) -> list[str]:
        if self.start is not None and self.end is not None and self.start > self.end:
            return [f"{where}: start ({self.start}) is after end ({self.end}); days count from the index date, "
                    "negative before it"]
        return []

    def describe(self) -> str:
        if self.start is None and self.end is None:
            return "any time"
        if self.start is None:
            return f"up to day {self.end:+d}"
        if self.end is None:
            return f"from day {self.start:+d}"
        return f"days {self.start:+d} to {self.end:+d}"


# --------------------------------------------------------------------------------- criteria
CRITERIA: dict[str, type[Criterion]] = {}


class Criterion(Part):
    """Base class of criteria: a person meets it or not, given their index date."""

    kind: ClassVar[str] = ""
    label = param.String(default="", doc="What the attrition table calls this step (default: a description).")

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.kind:
            CRITERIA[cls.kind] = cls

    def to_dict(self) -> dict:
        return {"kind": self.kind, **super().to_dict()}

    def check(self, where: str) -> list[str]:
        return []

    def describe(self) -> str:
        return self.label or self._describe()

    def _describe(self) -> str:
        return self.kind

    def leaves(self):
        yield self


class Demographics(Criterion):
    """Age at the index date, sex at birth, race, ethnicity and 3-digit ZIP code."""

    kind = "demographics"
    age = param.ClassSelector(class_=Range, default=None, allow_None=True,
                              doc="Age in whole years at the index date (year of index - year of birth).")
    sex_at_birth = param.List(default=[], item_type=str, doc="Any of these values of person.sex_at_birth.")
    race = param.List(default=[], item_type=str, doc="Any of these values of person.race.")
    ethnicity = param.List(default=[], item_type=str, doc="Any of these values of person.ethnicity.")
    zip3 = param.List(default=[], item_type=str, doc="Any of these 3-digit ZIP codes (person.zip3).")

    def check(self, where):
        problems = []
        if self.age is None and not (self.sex_at_birth or self.race or self.ethnicity or self.zip3):
            problems.append(f"{where}: give at least one of age, sex_at_birth, race, ethnicity, zip3")
        problems += [f"{where}.zip3: {z!r} is not a 3-digit ZIP code" for z in self.zip3 if not re.fullmatch(r"[0-9]{3}", z)]
        person = default_catalog().get("person")
        for key in ("sex_at_birth", "race", "ethnicity"):
            vocabulary = person.column(key).values if person is not None and key in person.column_names else ()
            for k, value in enumerate(getattr(self, key)):
                if vocabulary and value not in vocabulary:
                    # case-blind first: 'Female' for 'female' is the common slip, and difflib's
                    # ratio alone would not always propose it
                    same = [v for v in vocabulary if v.casefold() == value.casefold()]
                    hint = f" (did you mean '{same[0]}'?)" if same else did_you_mean(value, vocabulary)
                    problems.append(f"{where}.{key}[{k}]: {value!r} is not a value of person.{key}{hint}; its values "
                                    f"are {', '.join(vocabulary)} (data_catalog/person.yaml)")
        return problems

    def _describe(self):
        parts = [self.age.describe("age")] if self.age is not None else []
        parts += [f"{key} in {', '.join(getattr(self, key))}" for key in ("sex_at_birth", "race", "ethnicity", "zip3")
                  if getattr(self, key)]
        return "; ".join(parts)


class Condition(Criterion):
    """A diagnosis from a code set recorded in the window (condition_occurrence)."""

    kind = "condition"
    code_system = param.Selector(default="ICD10CM", objects=list(CODE_SYSTEMS),
                                 doc="Coding system of the codes: ICD10CM, SNOMED or ICD9CM.")
    codes = param.List(default=[], item_type=str, doc="The code set (required).")
    descendants = param.Boolean(default=True, doc="Also match codes below these in the hierarchy (ICD: E11 matches E11.9).")
    window = param.ClassSelector(class_=Window, default=None, allow_None=True, doc="When the condition must start.")
    min_count = param.Integer(default=1, bounds=(1, None), doc="At least this many records in the window.")

    def check(self, where):
        problems = [] if self.codes else [f"{where}.codes: give at least one code"]
        problems += _code_problems(self.code_system, self.codes, f"{where}.codes")
        if self.descendants and self.code_system == "SNOMED":
            problems.append(f"{where}.descendants: SNOMED CT hierarchy is not in the lake; list the codes and set "
                            "descendants: false")
        return problems

    def _describe(self):
        codes = ", ".join(c + ("*" if self.descendants else "") for c in self.codes)
        count = f"{self.min_count}+ records of " if self.min_count > 1 else ""
        return f"{count}{self.code_system} {codes} ({_window(self.window)})"


class Lab(Criterion):
    """Lab results of one LOINC code in the window, compared in SI units (measurement.value_si)."""

    kind = "lab"
    loinc = param.String(default="", doc="LOINC code with its check digit, e.g. 2345-7 (glucose).")
    unit = param.String(default="", doc="Unit of the thresholds (UCUM); converted to the marker's SI unit.")
    value = param.ClassSelector(class_=Range, default=None, allow_None=True, doc="Bounds on the result (in unit).")
    which = param.Selector(default="any", objects=["any", "all", "first", "last"],
                           doc="Which results must be within bounds: any, all, the first or the last in the window.")
    window = param.ClassSelector(class_=Window, default=None, allow_None=True, doc="When the results were taken.")
    min_count = param.Integer(default=1, bounds=(1, None), doc="At least this many results in the window.")

    def check(self, where):
        problems = []
        match = LOINC_PATTERN.fullmatch(self.loinc)
        if not match:
            problems.append(f"{where}.loinc: {self.loinc!r} is not a LOINC code (digits, a dash and a check digit, "
                            "e.g. 2345-7)")
        elif loinc_check_digit(match.group(1)) != int(match.group(2)):
            problems.append(f"{where}.loinc: {self.loinc!r} has a wrong check digit (expected "
                            f"{match.group(1)}-{loinc_check_digit(match.group(1))}); check the code")
        if self.value is None and self.which != "any":
            problems.append(f"{where}.which: only with value bounds (which results must be within them)")
        if self.value is not None:
            if not self.unit:
                problems.append(f"{where}.unit: give the unit of the bounds (e.g. mmol/L); bounds without a unit "
                                "are ambiguous")
            elif match and not problems:
                problems += [f"{where}.unit: {p}" for p in _unit_problems(self.loinc, self.unit)]
        return problems

    def _describe(self):
        bounds = f" with {self.which} result {self.value.describe('').strip()} {self.unit}" if self.value else ""
        count = f"{self.min_count}+ results of " if self.min_count > 1 else ""
        return f"{count}LOINC {self.loinc}{bounds} ({_window(self.window)})".replace("  ", " ")


class MetricChoices(Mapping):
    """The metrics a criterion may use, read from :data:`explorer.catalog.metrics.METRICS` on
    every access (a metric a site plugin declares is a criterion at once): the numeric metrics of
    ``domain`` stored per person in a table whose catalog entry names its time column.

    Maps a metric's identifier to its :class:`~explorer.catalog.metrics.Metric` (table, column,
    units from the catalog)."""

    def __init__(self, domain: str):
        self.domain = domain

    def _current(self) -> dict[str, Metric]:
        catalog = default_catalog()
        chosen = {}
        for name, metric in METRICS.select(domain=self.domain).items():
            entry = catalog.get(metric.table)
            if not metric.criterion or entry is None or entry.entity != "person_id" or not entry.time \
                    or metric.column not in entry.column_names:
                continue
            if entry.column(metric.column).type in _NUMERIC_TYPES or (self.domain == "exposure" and name == "heat_wave"):
                chosen[name] = metric
        return chosen

    def __getitem__(self, name: str) -> Metric:
        return self._current()[name]

    def __iter__(self):
        return iter(self._current())

    def __len__(self) -> int:
        return len(self._current())


_NUMERIC_TYPES = {"int8", "int16", "int32", "int64", "float32", "float64"}

#: wearable metrics a criterion may use: name -> Metric (wearable_daily per valid day,
#: wearable_circadian per month, or a plugin's per-person table)
WEARABLE_METRICS = MetricChoices("wearables")


class RegistryChoice(param.String):
    """A name that must be one of ``choices()``, read when a value is set: a Selector whose
    objects come from a registry that plugins extend after this class was defined."""

    __slots__ = ["choices"]
    _slot_defaults = dict(param.String._slot_defaults, choices=None)

    def __init__(self, default=None, *, choices=None, **params):
        super().__init__(default=default, **params)
        self.choices = choices

    def _validate_value(self, val, allow_None):
        super()._validate_value(val, allow_None)
        choices = getattr(self, "choices", None)  # unset while the default is checked at class definition
        if val is not None and choices is not None and val not in choices():
            options = list(self.choices())
            raise ValueError(f"{val!r} is not one of {', '.join(options)}{did_you_mean(str(val), options)}")


STATISTICS = ["median", "mean", "min", "max"]


class Wearable(Criterion):
    """Wear compliance and a wearable metric in the window: daily metrics over valid days
    (wearable_daily), circadian ones over the months that start in the window (wearable_circadian)."""

    kind = "wearable"
    min_valid_days = param.Integer(default=0, bounds=(0, None), doc="At least this many valid days (>= 10 h worn) in the window.")
    metric = RegistryChoice(default=None, allow_None=True, choices=lambda: list(WEARABLE_METRICS),
                            doc="Metric the value bounds apply to (a wearable metric of the registry, e.g. steps, "
                                "resting_hr, interdaily_stability).")
    statistic = param.Selector(default="median", objects=STATISTICS, doc="Statistic of the metric over the window.")
    value = param.ClassSelector(class_=Range, default=None, allow_None=True, doc="Bounds on the statistic.")
    window = param.ClassSelector(class_=Window, default=None, allow_None=True, doc="Days counted.")

    def check(self, where):
        problems = []
        if self.metric is None and self.value is not None:
            problems.append(f"{where}.metric: value bounds need a metric ({', '.join(WEARABLE_METRICS)})")
        if self.metric is not None and self.value is None:
            problems.append(f"{where}.value: give bounds on the {self.statistic} {self.metric}, e.g. {{lt: 5000}}")
        if self.metric is None and self.statistic != "median":
            problems.append(f"{where}.statistic: only with a metric")
        if self.metric is None and self.min_valid_days == 0:
            problems.append(f"{where}: give min_valid_days, or a metric with value bounds")
        return problems

    def _describe(self):
        parts = [f"{self.min_valid_days}+ valid days"] if self.min_valid_days else []
        if self.metric:
            parts.append(self.value.describe(f"{self.statistic} {self.metric}"))
        return f"{'; '.join(parts)} ({_window(self.window)})"


#: exposure variables a criterion may use: name -> Metric (exposure_daily, or a plugin's table)
EXPOSURE_VARIABLES = MetricChoices("exposure")


class Exposure(Criterion):
    """Exposure at home in the window (exposure_daily): heat-wave days, or a statistic of a daily value."""

    kind = "exposure"
    variable = RegistryChoice(default="heat_wave", choices=lambda: list(EXPOSURE_VARIABLES),
                              doc="heat_wave (days in a heat wave), tasmax, tasmin, pm25 or tas_anomaly.")
    statistic = param.Selector(default="days", objects=["days", *STATISTICS],
                               doc="days: number of days (heat-wave days, or days whose value is within day_value); "
                                   "else a statistic of the daily values.")
    day_value = param.ClassSelector(class_=Range, default=None, allow_None=True,
                                    doc="With statistic days: which days count, e.g. tasmax {gte: 35}.")
    value = param.ClassSelector(class_=Range, default=None, allow_None=True, doc="Bounds on the statistic.")
    window = param.ClassSelector(class_=Window, default=None, allow_None=True, doc="Days counted.")

    def check(self, where):
        problems = [] if self.value is not None else [f"{where}.value: give bounds, e.g. {{gte: 3}}"]
        if self.variable == "heat_wave" and self.statistic != "days":
            problems.append(f"{where}.statistic: heat_wave is counted in days (statistic: days)")
        if self.statistic == "days" and self.variable != "heat_wave" and self.day_value is None:
            problems.append(f"{where}.day_value: counting days of {self.variable} needs which days count, "
                            "e.g. {gte: 35}")
        if self.day_value is not None:
            if self.statistic != "days":
                problems.append(f"{where}.day_value: only with statistic: days")
            elif self.variable == "heat_wave":
                problems.append(f"{where}.day_value: heat-wave days are flagged already; day_value is for tasmax, "
                                "tasmin, pm25 or tas_anomaly")
        return problems

    def _describe(self):
        if self.statistic == "days":
            what = "heat-wave days" if self.variable == "heat_wave" else f"days with {self.day_value.describe(self.variable)}"
        else:
            what = f"{self.statistic} {self.variable}"
        return f"{self.value.describe(what)} ({_window(self.window)})"


class Combination(Criterion):
    """``all``, ``any`` or ``not`` of other criteria."""

    kind = ""
    criteria = param.List(default=[], item_type=Criterion, doc="The criteria combined.")
    operator: ClassVar[str] = ""

    def to_dict(self):
        out = {self.operator: [c.to_dict() for c in self.criteria] if self.operator != "not" else self.criteria[0].to_dict()}
        if self.label:
            out["label"] = self.label
        return out

    def check(self, where):
        if not self.criteria:
            return [f"{where}.{self.operator}: give at least one criterion"]
        return []

    def _describe(self):
        if self.operator == "not":
            return f"not ({self.criteria[0].describe()})"
        return f" {'and' if self.operator == 'all' else 'or'} ".join(f"({c.describe()})" for c in self.criteria)

    def leaves(self):
        for c in self.criteria:
            yield from c.leaves()


class All(Combination):
    operator = "all"


class AnyOf(Combination):
    operator = "any"


class Not(Combination):
    operator = "not"


COMBINATIONS = {"all": All, "any": AnyOf, "not": Not}

INDEX_RULES = ["first_condition", "first_lab", "first_valid_wear_day", "fixed"]


class IndexDate(Part):
    """When each person's follow-up starts: their first record of a kind, or one fixed date.
    Persons without such a record have no index date and are not in the cohort."""

    rule = param.Selector(default="first_condition", objects=INDEX_RULES,
                          doc="first_condition (of codes), first_lab (of loinc, optionally within value), "
                              "first_valid_wear_day, or fixed (date).")
    code_system = param.Selector(default="ICD10CM", objects=list(CODE_SYSTEMS), doc="For first_condition.")
    codes = param.List(default=[], item_type=str, doc="For first_condition: the code set.")
    descendants = param.Boolean(default=True, doc="For first_condition: codes below these match too.")
    loinc = param.String(default="", doc="For first_lab: the LOINC code.")
    unit = param.String(default="", doc="For first_lab: unit of value.")
    value = param.ClassSelector(class_=Range, default=None, allow_None=True, doc="For first_lab: only results within these bounds.")
    date = param.Date(default=None, allow_None=True, doc="For fixed: the index date of everyone.")
    earliest = param.Date(default=None, allow_None=True, doc="Index dates before this are not kept.")
    latest = param.Date(default=None, allow_None=True, doc="Index dates after this are not kept.")

    RULE_KEYS: ClassVar[dict[str, set[str]]] = {
        "first_condition": {"code_system", "codes", "descendants"},
        "first_lab": {"loinc", "unit", "value"},
        "first_valid_wear_day": set(),
        "fixed": {"date"},
    }

    def to_dict(self):
        out = super().to_dict()
        out["rule"] = self.rule
        return {"rule": self.rule, **{k: v for k, v in out.items() if k != "rule"}}

    def check(self, where):
        problems = []
        own = self.RULE_KEYS[self.rule]
        for key in set().union(*self.RULE_KEYS.values()) - own:
            if getattr(self, key) not in (self.param[key].default, None, []):
                problems.append(f"{where}.{key}: not used by rule {self.rule} (it uses {', '.join(sorted(own)) or 'nothing more'})")
        if self.rule == "first_condition" and not self.codes:
            problems.append(f"{where}.codes: rule first_condition needs the code set")
        if self.rule == "first_condition":
            problems += _code_problems(self.code_system, self.codes, f"{where}.codes")
        if self.rule == "first_lab":
            probe = Lab(loinc=self.loinc, unit=self.unit, value=self.value)
            problems += [p.replace("lab.", f"{where}.") for p in probe.check("lab")]
        if self.rule == "fixed" and self.date is None:
            problems.append(f"{where}.date: rule fixed needs a date (YYYY-MM-DD)")
        if self.earliest and self.latest and self.earliest > self.latest:
            problems.append(f"{where}: earliest ({self.earliest}) is after latest ({self.latest})")
        return problems

    def describe(self) -> str:
        text = {
            "first_condition": lambda: f"first {self.code_system} {', '.join(c + ('*' if self.descendants else '') for c in self.codes)}",
            "first_lab": lambda: f"first LOINC {self.loinc}" + (f" with result {self.value.describe('').strip()} {self.unit}" if self.value else ""),
            "first_valid_wear_day": lambda: "first valid wear day",
            "fixed": lambda: f"{self.date}",
        }[self.rule]()
        if self.earliest or self.latest:
            text += f", between {self.earliest or '…'} and {self.latest or '…'}"
        return text


class Definition(Part):
    """A cohort: who enters (index date rule), who stays (inclusion), who is removed (exclusion)."""

    name = param.String(default="cohort", doc="Short name: lowercase letters, digits, - and _ (the cohort's key in the lake).")
    version = param.Integer(default=1, bounds=(1, None), doc="Revision of this definition; raise it when you change it.")
    author = param.String(default="", doc="Who wrote it.")
    description = param.String(default="", doc="What the cohort is for.")
    index_date = param.ClassSelector(class_=IndexDate, default=None, allow_None=True, doc="The index date rule.")
    inclusion = param.List(default=[], item_type=Criterion, doc="Criteria every member meets, in attrition order.")
    exclusion = param.List(default=[], item_type=Criterion, doc="Criteria that remove a person, in attrition order.")

    def to_dict(self) -> dict:
        out = {"schema": SCHEMA, "name": self.name, "version": self.version}
        for key in ("author", "description"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        out["index_date"] = self.index_date.to_dict()
        for key in ("inclusion", "exclusion"):
            if getattr(self, key):
                out[key] = [c.to_dict() for c in getattr(self, key)]
        return out

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True, width=110)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def save(self, path) -> Path:
        """Write the document to ``path`` (.yaml/.yml or .json)."""
        path = Path(path)
        path.write_text(self.to_json() + "\n" if path.suffix.lower() == ".json" else self.to_yaml())
        return path

    @property
    def sha256(self) -> str:
        """Digest of what decides membership and attrition: the index date rule and the criteria
        in canonical form (code sets and value lists sorted, ICD codes without dots in upper
        case, units in UCUM, labels left out, members of all/any in a fixed order), so the same
        criteria give the same digest however they are written. Name, version, author and
        description are not part of it."""
        document = {key: self.to_dict()[key] for key in ("index_date", "inclusion", "exclusion") if key in self.to_dict()}
        return hashlib.sha256(json.dumps(_canonical(document), sort_keys=True).encode()).hexdigest()

    def steps(self) -> list[tuple[str, Criterion, bool]]:
        """Attrition steps: (label, criterion, is_exclusion), inclusion first."""
        return ([(f"include: {c.describe()}", c, False) for c in self.inclusion]
                + [(f"exclude: {c.describe()}", c, True) for c in self.exclusion])

    def tables(self) -> set[str]:
        """The lake tables the definition reads."""
        needed = {"person"}
        rule = self.index_date.rule if self.index_date else None
        needed |= {"first_condition": {"condition_occurrence"}, "first_lab": {"measurement"},
                   "first_valid_wear_day": {"wearable_daily"}}.get(rule, set())
        for _, criterion, _ in self.steps():
            for leaf in criterion.leaves():
                needed |= leaf_tables(leaf)
        return needed


def leaf_tables(leaf: Criterion) -> set[str]:
    if isinstance(leaf, Condition):
        return {"condition_occurrence"}
    if isinstance(leaf, Lab):
        return {"measurement"}
    if isinstance(leaf, Wearable):
        tables = {"wearable_daily"} if leaf.min_valid_days or not leaf.metric else set()
        return tables | ({WEARABLE_METRICS[leaf.metric].table} if leaf.metric else set())
    if isinstance(leaf, Exposure):
        return {EXPOSURE_VARIABLES[leaf.variable].table} if leaf.variable in EXPOSURE_VARIABLES else {"exposure_daily"}
    return {"person"}


# --------------------------------------------------------------------------------- parsing
def loads(text: str, source: str = "the cohort definition") -> Definition:
    """A definition from YAML or JSON text (JSON is YAML); raises :class:`DefinitionError`."""
    return from_dict(parse_text(text, source), source)


def parse_text(text: str, source: str = "the cohort definition"):
    """The document of a definition's YAML or JSON text, or of a part of one, parsed safely: text
    over :data:`MAX_DOCUMENT_BYTES`, nested over :data:`MAX_TEXT_NESTING` or using YAML aliases is
    refused before anything is built from it. Raises :class:`DefinitionError`."""
    import yaml

    size = len(text.encode("utf-8", "replace"))
    if size > MAX_DOCUMENT_BYTES:
        raise DefinitionError([f"{size:,} bytes is more than a cohort definition may have ({MAX_DOCUMENT_BYTES:,}); "
                               f"a definition holds at most {MAX_LEAVES} criteria"], source)
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: 5x faster
    try:
        depth = 0
        for event in yaml.parse(text, Loader=loader):  # before anything is built from it
            if isinstance(event, yaml.AliasEvent):
                raise DefinitionError(["YAML aliases (*name) are not allowed in a cohort definition: write each "
                                       "criterion out"], source)
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_TEXT_NESTING:
                    line = f" (line {event.start_mark.line + 1})" if event.start_mark else ""
                    raise DefinitionError([f"lists and mappings nested more than {MAX_TEXT_NESTING} deep{line}; "
                                           f"all/any/not may nest {MAX_DEPTH} deep"], source)
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
        data = yaml.load(text, Loader=loader)  # noqa: S506 (a safe loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise DefinitionError([f"not YAML or JSON{where}: {getattr(exc, 'problem', exc)}"], source) from None
    except DefinitionError:
        raise
    except ValueError as exc:  # a scalar YAML reads as a date but cannot be one (2024-13-01)
        raise DefinitionError([f"a value reads as a date but is not one ({exc}); write dates as YYYY-MM-DD"], source) from None
    return data


def load(path) -> Definition:
    """A definition from a .yaml, .yml or .json file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ExplorerError(f"{path}: no such cohort definition file") from None
    except UnicodeDecodeError as exc:
        raise DefinitionError([f"not UTF-8 text (byte {exc.start})"], str(path)) from None
    return loads(text, str(path))


def from_dict(data, source: str = "the cohort definition") -> Definition:
    """A definition from a parsed document; every problem found is reported at once."""
    problems: list[str] = []
    if not isinstance(data, dict):
        raise DefinitionError([f"expected a mapping with name, index_date and criteria, got {type(data).__name__}"], source)
    bad_keys = [k for k in data if not isinstance(k, str)]
    if bad_keys:
        raise DefinitionError([f"keys must be text, got {bad_keys[0]!r}"], source)
    data = dict(data)
    schema = data.pop("schema", SCHEMA)
    if schema != SCHEMA:
        problems.append(f"schema: {schema!r} is not a schema this version reads (expected {SCHEMA!r})")
    if data.get("index_date") is None:
        data.pop("index_date", None)
        problems.append("index_date: missing; say when follow-up starts, e.g. {rule: first_condition, codes: [E11]}")
    name = data.get("name", Definition.param["name"].default)
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        problems.append(f"name: {name!r} must be lowercase letters, digits, - or _ (starting with a letter, at most "
                        "63), e.g. t2d-heat-exposed")
    for key in ("author", "description", "name"):
        if isinstance(data.get(key), str) and CONTROL.search(data[key]):
            problems.append(f"{key}: holds a control character; use plain text (new lines are fine in description)"
                            if key != "description" or CONTROL.search(data[key].replace("\n", "")) else "")
    problems[:] = [p for p in problems if p]
    definition = _build(Definition, data, "", problems, special={"inclusion": "criteria", "exclusion": "criteria"})
    if problems:
        raise DefinitionError(problems, source)
    return definition


def _criterion(data, where: str, problems: list[str], depth: int = 0, budget: list | None = None) -> Criterion | None:
    budget = budget if budget is not None else [MAX_LEAVES]
    if depth > MAX_DEPTH:
        problems.append(f"{where}: all/any/not nested more than {MAX_DEPTH} deep; flatten the definition")
        return None
    if not isinstance(data, dict):
        problems.append(f"{where}: expected a criterion (a mapping with kind, or all/any/not), got {data!r}")
        return None
    operators = [key for key in COMBINATIONS if key in data]
    if operators:
        extra = set(data) - {operators[0], "label"}
        if len(operators) > 1 or extra:
            problems.append(f"{where}: a combination has one of all/any/not and an optional label, not "
                            f"{', '.join(sorted(set(data) - {'label'}))}")
            return None
        operator = operators[0]
        children = data[operator]
        if operator == "not":
            if isinstance(children, list):
                problems.append(f"{where}.not: takes one criterion; to exclude any of several, use not: {{any: [...]}}")
                return None
            children = [children]
            paths = [f"{where}.not"]
        else:
            if not isinstance(children, list):
                problems.append(f"{where}.{operator}: expected a list of criteria")
                return None
            paths = [f"{where}.{operator}[{k}]" for k in range(len(children))]
        built = [_criterion(child, path, problems, depth + 1, budget) for child, path in zip(children, paths)]
        if any(b is None for b in built):
            return None
        label = data.get("label", "")
        if not isinstance(label, str):
            problems.append(f"{where}.label: expected text")
            return None
        combined = COMBINATIONS[operator](criteria=built, label=label)
        problems.extend(combined.check(where))
        return combined
    kind = data.get("kind")
    budget[0] -= 1
    if budget[0] < 0:
        if budget[0] == -1:
            problems.append(f"{where}: more than {MAX_LEAVES} criteria in one definition")
        return None
    if not isinstance(kind, str) or kind not in CRITERIA:
        problems.append(f"{where}.kind: {kind!r} is not a kind of criterion{did_you_mean(str(kind), CRITERIA)}; "
                        f"kinds are {', '.join(CRITERIA)}, or combine with all/any/not" if kind is not None else
                        f"{where}: missing kind (one of {', '.join(CRITERIA)}), or all/any/not")
        return None
    rest = {k: v for k, v in data.items() if k != "kind"}
    return _build(CRITERIA[kind], rest, where, problems)


def _build(cls, data: dict, where: str, problems: list[str], special=None):
    special = special or {}
    fields = _fields(cls)
    values = {}
    ok = True
    failed = []  # keys whose value was refused: the checks of the rest still run (below)
    for key, raw in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in fields:
            problems.append(f"{path}: unknown key for {_what(cls)}{did_you_mean(str(key), fields)}; keys are {', '.join(fields)}")
            ok = False
            continue
        failed.append(key)  # until its value is taken
        kind = special.get(key)
        if kind == "criteria":
            if not isinstance(raw, list):
                problems.append(f"{path}: expected a list of criteria")
                ok = False
                continue
            budget = [MAX_LEAVES - sum(len(list(c.leaves())) for c in values.get("inclusion", []))]
            built = [_criterion(item, f"{path}[{k}]", problems, 0, budget) for k, item in enumerate(raw)]
            if any(b is None for b in built):
                ok = False
                continue
            values[key] = built
            failed.remove(key)
            continue
        value, problem = _coerce(cls.param[key], raw, path, kind)
        if problem:
            problems.append(problem)
            ok = False
        else:
            values[key] = value
            failed.remove(key)
    if not ok:
        if issubclass(cls, Criterion) and cls is not Definition:
            problems.extend(_partial_problems(cls, values, failed, where))
        return None
    try:
        built = cls(**values)
    except (ValueError, TypeError) as exc:  # param's own checks (bounds, selector objects)
        problems.append(f"{where or 'definition'}: {exc}")
        return None
    if cls is not Definition:
        problems.extend(built.check(where))
    return built


def _partial_problems(cls, values: dict, failed: list[str], where: str) -> list[str]:
    """The problems of a criterion's well-formed keys when another key was refused, so that one
    run reports every problem of a document (a wrong LOINC check digit beside a misspelt key).
    Problems about the refused keys, or about the criterion as a whole, are left out: they would
    only repeat, or guess at, what the refusal said already."""
    try:
        partial = cls(**values)
    except (ValueError, TypeError):
        return []
    kept = []
    for problem in partial.check(where):
        path = problem.split(": ", 1)[0]
        if path == where or any(path == f"{where}.{k}" or path.startswith((f"{where}.{k}.", f"{where}.{k}[")) for k in failed):
            continue
        kept.append(problem)
    return kept


def _coerce(parameter, raw, path: str, part_class=None):
    """``raw`` as the parameter's type, or a problem naming ``path`` and what was expected."""
    target = part_class or (parameter.class_ if isinstance(parameter, param.ClassSelector) else None)
    if raw is None:
        return None, None if parameter.allow_None else f"{path}: must not be empty"
    if target is not None:
        if not isinstance(raw, dict):
            example = "{gte: 40, lt: 75}" if target is Range else "{start: -365, end: 0}" if target is Window else "a mapping"
            return None, f"{path}: expected a mapping like {example}, got {raw!r}"
        problems: list[str] = []
        built = _build(target, raw, path, problems)
        if target is Window and built is not None and built.start is None and built.end is None:
            built = None  # {} is "any time", the same as no window
        return (built, None) if not problems else (None, "\n  - ".join(problems))
    if isinstance(parameter, param.Date):
        if isinstance(raw, dt.datetime):
            raw = raw.date()
        if isinstance(raw, dt.date):
            return dt.datetime(raw.year, raw.month, raw.day), None
        try:
            return dt.datetime.strptime(str(raw), "%Y-%m-%d"), None
        except ValueError:
            return None, f"{path}: expected a date YYYY-MM-DD, got {raw!r}"
    if isinstance(parameter, param.Boolean):
        return (raw, None) if isinstance(raw, bool) else (None, f"{path}: expected true or false, got {raw!r}")
    if isinstance(parameter, param.Integer):
        if isinstance(raw, bool) or not isinstance(raw, int):
            return None, f"{path}: expected a whole number, got {raw!r}"
        low = parameter.bounds[0] if parameter.bounds else None
        if low is not None and raw < low:
            return None, f"{path}: must be at least {low}, got {raw}"
        limit = MAX_DAYS if path.split(".")[-1] in ("start", "end") else MAX_COUNT
        if abs(raw) > limit:
            return None, f"{path}: {raw} is out of range (at most {limit:,} in size)"
        return raw, None
    if isinstance(parameter, param.Number):
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            return None, f"{path}: expected a number, got {raw!r}"
        if isinstance(raw, int) and abs(raw) > MAX_BOUND or isinstance(raw, float) and not math.isfinite(raw) \
                or abs(float(raw)) > MAX_BOUND:
            return None, f"{path}: {raw!r} is not a finite number of at most {MAX_BOUND:g} in size"
        return float(raw), None
    if isinstance(parameter, (param.Selector, RegistryChoice)):
        objects = list(parameter.choices()) if isinstance(parameter, RegistryChoice) else \
            [o for o in parameter.objects if o is not None]
        if raw not in objects:
            return None, f"{path}: {raw!r} is not one of {', '.join(map(str, objects))}{did_you_mean(str(raw), map(str, objects))}"
        return raw, None
    if isinstance(parameter, param.List):
        items = raw if isinstance(raw, list) else [raw]
        out = []
        for k, item in enumerate(items):
            if isinstance(item, (bool, float)) or isinstance(item, int) and path.endswith("codes"):
                return None, (f"{path}[{k}]: {item!r} read as a number; quote codes and values "
                              f"('{item}') so that leading and trailing zeros survive (YAML reads 042 as 34)")
            if not isinstance(item, (str, int)):
                return None, f"{path}[{k}]: expected text, got {item!r}"
            out.append(str(item).strip())
        return out, None
    if isinstance(parameter, param.String):
        if not isinstance(raw, (str, int)) or isinstance(raw, bool):
            return None, f"{path}: expected text, got {raw!r}"
        return str(raw), None
    return raw, None


def _fields(cls) -> list[str]:
    return [name for name in cls.param if name != "name" or cls is Definition]


def _what(cls) -> str:
    return f"a {cls.kind} criterion" if getattr(cls, "kind", "") else {Definition: "a cohort definition",
                                                                       IndexDate: "index_date", Range: "a range",
                                                                       Window: "a window"}.get(cls, cls.__name__)


def _emit(value):
    if isinstance(value, Part):
        return value.to_dict()
    if isinstance(value, list):
        return [_emit(v) for v in value]
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _number(value: float) -> str:
    return f"{value:g}"


def _window(window: Window | None) -> str:
    return window.describe() if window is not None else "any time"


SORTED_LISTS = ("sex_at_birth", "race", "ethnicity", "zip3")


def _canonical(node, system: str = "ICD10CM"):
    """``node`` of a document with every choice that does not change its meaning made one way."""
    if isinstance(node, list):
        return [_canonical(item, system) for item in node]
    if not isinstance(node, dict):
        return node
    system = node.get("code_system", system)
    out = {}
    for key, value in node.items():
        if key == "label":
            continue
        if key == "codes":
            value = sorted({c.upper().replace(".", "") if system.startswith("ICD") else c for c in value})
        elif key in SORTED_LISTS:
            value = sorted(set(value))
        elif key == "unit":
            from explorer.catalog.units import canonical_unit

            value = canonical_unit(value)
        elif key in ("all", "any"):
            value = sorted((_canonical(item, system) for item in value), key=lambda item: json.dumps(item, sort_keys=True))
        else:
            value = _canonical(value, system)
        out[key] = value
    return out


def _code_problems(system: str, codes: list[str], where: str) -> list[str]:
    pattern = CODE_PATTERNS[system]
    return [f"{where}[{k}]: {code!r} is not a valid {system} code (e.g. "
            f"{ {'ICD10CM': 'E11 or E11.9', 'ICD9CM': '250 or 250.00', 'SNOMED': '38341003'}[system]})"
            for k, code in enumerate(codes) if not pattern.fullmatch(code.upper())]


def _unit_problems(loinc: str, unit: str) -> list[str]:
    from explorer.catalog.units import MARKER_UNITS, canonical_unit

    entry = MARKER_UNITS.get(loinc)
    if entry is None:
        return []  # no SI form known: results are compared in the unit they were reported in
    si_unit, factors = entry
    if canonical_unit(unit) not in factors:
        return [f"{unit!r} is not a unit of LOINC {loinc}; use one of {', '.join(sorted(factors))} "
                f"(results are compared in {si_unit})"]
    return []
