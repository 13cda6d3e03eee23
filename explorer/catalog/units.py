"""Lab units: each marker's SI unit and the factors that bring other units to it.

``value_si = value * factor``. Conversions between mass and amount of substance need the
molar mass, so they are stated per analyte (by LOINC code), never guessed from the unit alone:

==============  ===========  =========  ============================================
analyte         from         to (SI)    factor and source
==============  ===========  =========  ============================================
glucose         mg/dL        mmol/L     0.05551 (1 / 18.016; M = 180.16 g/mol) [1]
creatinine      mg/dL        umol/L     88.42 (M = 113.12 g/mol) [1]
albumin         g/dL         g/L        10 (1 dL = 0.1 L) [2]
CRP             mg/dL        mg/L       10 (1 dL = 0.1 L) [2]
WBC             /uL, 10*9/L  10*3/uL    0.001, 1 (10^9/L = 10^3/uL) [2]
==============  ===========  =========  ============================================

Units are UCUM case-sensitive codes; common spellings labs send (``mg/dl``, ``umol/l``,
``µmol/L``, ``K/uL``) are mapped to them first, and a unit that is not a unit of that
analyte's kind (creatinine in ``%``) or not a unit at all is flagged, never guessed.

References
----------
[1] Young DS. Implementation of SI units for clinical laboratory data. Ann Intern Med 1987;106:114-129.
[2] Schadow G, McDonald CJ. The Unified Code for Units of Measure (UCUM), Regenstrief Institute.
"""

from __future__ import annotations

#: LOINC -> (SI unit, {unit: factor to SI})
MARKER_UNITS: dict[str, tuple[str, dict[str, float]]] = {
    "2345-7": ("mmol/L", {"mmol/L": 1.0, "mg/dL": 1 / 18.016}),  # glucose
    "2160-0": ("umol/L", {"umol/L": 1.0, "mg/dL": 88.42}),  # creatinine
    "1751-7": ("g/L", {"g/L": 1.0, "g/dL": 10.0}),  # albumin
    "1988-5": ("mg/L", {"mg/L": 1.0, "mg/dL": 10.0}),  # C-reactive protein
    "736-9": ("%", {"%": 1.0}),  # lymphocytes / 100 leukocytes
    "787-2": ("fL", {"fL": 1.0}),  # MCV
    "788-0": ("%", {"%": 1.0}),  # RDW
    "6768-6": ("U/L", {"U/L": 1.0}),  # alkaline phosphatase
    "6690-2": ("10*3/uL", {"10*3/uL": 1.0, "10*9/L": 1.0, "/uL": 0.001}),  # leukocytes
}

#: spellings labs send -> UCUM code
SPELLINGS = {
    "mg/dl": "mg/dL", "mmol/l": "mmol/L", "umol/l": "umol/L", "µmol/l": "umol/L", "μmol/l": "umol/L",
    "g/dl": "g/dL", "g/l": "g/L", "mg/l": "mg/L", "u/l": "U/L", "iu/l": "U/L", "fl": "fL",
    "k/ul": "10*3/uL", "x10e3/ul": "10*3/uL", "10^3/ul": "10*3/uL", "10*3/ul": "10*3/uL", "10^9/l": "10*9/L",
    "10*9/l": "10*9/L", "/ul": "/uL", "%": "%",
}


def canonical_unit(unit) -> str | None:
    if unit is None:
        return None
    text = str(unit).strip()
    return SPELLINGS.get(text.lower(), text)


def to_si(loinc: str, value: float, unit) -> tuple[float | None, str | None, str | None]:
    """Return ``(value_si, unit_si, problem)``; ``problem`` is None when the conversion is known.

    A LOINC code without an entry keeps its value with no SI form (``problem`` None): there is
    nothing to convert to, and nothing is guessed.
    """
    entry = MARKER_UNITS.get(loinc)
    if entry is None:
        return None, None, None
    si_unit, factors = entry
    code = canonical_unit(unit)
    if code not in factors:
        return None, None, (f"unit {unit!r} is not a known unit for LOINC {loinc}; expected one of "
                            f"{', '.join(sorted(factors))}")
    return value * factors[code], si_unit, None


#: UCUM codes (and the catalog's 'count') as a person reads them on an axis or a table header
UNIT_LABELS = {"Cel": "°C", "degC": "°C", "degF": "°F", "{steps}": "steps", "/min": "/min", "1": "", "count": "", "ug/m3": "µg/m³", "d": "days",
               "min": "min", "h": "h", "s": "s", "K": "K", "a": "years", "%": "%", "umol/L": "µmol/L",
               "10*3/uL": "10³/µL", "10*9/L": "10⁹/L"}


def unit_label(unit) -> str:
    """A unit as a reader sees it: ``Cel`` -> ``°C``, ``ug/m3`` -> ``µg/m³``, an annotation
    ``{persons}`` -> ``persons``; empty for dimensionless (``1``), a plain count or no unit.

    Examples
    --------
    >>> unit_label("Cel"), unit_label("{persons}"), unit_label("1"), unit_label(None)
    ('°C', 'persons', '', '')
    """
    if not unit:
        return ""
    text = str(unit)
    if text in UNIT_LABELS:
        return UNIT_LABELS[text]
    return text[1:-1] if text.startswith("{") and text.endswith("}") else text

