"""Lab files as laboratories and EHR extracts write them (tests/data/labs, written by hand from
the published descriptions cited in tests/data/README.md): date-only specimen dates (the Mayo
PBC sequential labs), ISO 8601 with ``T``, ``Z`` and offsets, US and day-first dates, censored
results and abnormal flags, empty units, decimal commas, missing-result codes and LOINC codes
without an SI conversion. Each file: rows landed, values in SI, times in the right zone,
censored values flagged, and landed + quarantined + ignored = rows in the file.

The known answers are worked by hand in the comments: zone offsets from the IANA rules for
America/Denver (MST UTC-7; MDT UTC-6 from 2024-03-10 02:00 local = 09:00 UTC) and
Europe/Berlin (CEST UTC+2 in July), SI factors from explorer.catalog.units (glucose / 18.016,
creatinine x 88.42, albumin g/dL x 10, CRP mg/dL x 10, leukocytes /uL x 0.001).
"""

import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import explorer
from explorer.ingest.context import Context
from explorer.ingest.pseudonym import Pseudonymizer
from explorer.ingest.readers.csv_tables import LabLongCsvReader
from explorer.ingest.readers.lab_values import ABNORMAL_FLAGS, parse_results, parse_times
from explorer.ingest.reference import Reference
from conftest import run_cli

LABS = Path(__file__).resolve().parent / "data" / "labs"
KEY = "lab-fixture-key-0123456789abcdef"
NOW = datetime(2025, 1, 1)
LAB_VARIABLES = ("EXPLORER_LAB_DATE_FORMAT", "EXPLORER_LAB_DECIMAL_COMMA", "EXPLORER_LAB_MISSING_CODES")


@pytest.fixture
def lake(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_PSEUDONYM_KEY", KEY)
    monkeypatch.delenv("EXPLORER_PSEUDONYM_KEY_FILE", raising=False)
    for name in LAB_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return explorer.open(tmp_path / "lake")


def ingest(lake, tmp_path, *names, **options):
    """Ingest copies of the named fixtures, as one delivery; return the per-file outcomes."""
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    for name in names:
        shutil.copy(LABS / name, folder / name)
    lake.ingest(folder, now=NOW, quality=False, **options)
    frame = lake.sql("SELECT source_name, status, reason, rows_read, rows_accepted, rows_quarantined, rows_ignored, "
                     "ignored FROM ingest_file")
    frame["source_name"] = frame["source_name"].map(lambda name: Path(name).name)
    # nothing lost, per file
    assert (frame["rows_read"] == frame["rows_accepted"] + frame["rows_quarantined"] + frame["rows_ignored"]).all()
    return frame.set_index("source_name")


def counts(found, name):
    return found.loc[name, ["rows_read", "rows_accepted", "rows_quarantined", "rows_ignored"]].tolist()


def labs(lake) -> pd.DataFrame:
    return lake.sql("SELECT measurement_datetime, datetime_precision, loinc_code, value_as_number, value_comparator, "
                    "result_flag, unit, value_si, unit_si, si_note FROM measurement "
                    "ORDER BY measurement_datetime, loinc_code, value_as_number")


def reasons(lake) -> list[str]:
    return lake.sql("SELECT reason FROM quarantine_row ORDER BY row_number")["reason"].tolist()


# -- times -------------------------------------------------------------------------------------


def test_pbcseq_date_only_times_land_with_day_precision(lake, tmp_path):
    found = ingest(lake, tmp_path, "pbcseq_date_only.csv")
    assert counts(found, "pbcseq_date_only.csv") == [7, 7, 0, 0]
    rows = labs(lake)
    assert set(rows["datetime_precision"]) == {"day"}
    assert (rows["measurement_datetime"] == rows["measurement_datetime"].dt.normalize()).all()  # no invented time
    albumin = rows[rows["loinc_code"] == "1751-7"]
    assert albumin["value_si"].tolist() == pytest.approx([26.0, 29.4, 41.4])  # g/dL x 10
    assert set(albumin["unit_si"]) == {"g/L"} and albumin["si_note"].isna().all()
    # bilirubin 1975-2 and cholesterol 2093-3 have no conversion: they land, value kept, with why no SI value
    unconverted = rows[rows["loinc_code"].isin(["1975-2", "2093-3"])]
    assert len(unconverted) == 3 and unconverted["value_si"].isna().all()
    assert unconverted["value_as_number"].tolist() == [14.5, 261.0, 1.1]
    assert all("has no SI conversion" in note for note in unconverted["si_note"])
    alp = rows[rows["loinc_code"] == "6768-6"]
    assert alp["value_si"].tolist() == [1718.0] and alp["measurement_datetime"].tolist() == [pd.Timestamp("1985-03-04")]


def test_iso_offsets_and_z_convert_to_the_residence_zone(lake, tmp_path):
    found = ingest(lake, tmp_path, "iso_offsets.csv", "residence_iso.csv")
    # iso-2 has no residence and the ingest no default zone: its Z time cannot be placed
    assert counts(found, "iso_offsets.csv") == [6, 5, 1, 0]
    assert "ingest the residence history first" in reasons(lake)[0] and "--default-time-zone" in reasons(lake)[0]
    rows = labs(lake)
    got = list(zip(rows["measurement_datetime"], rows["datetime_precision"]))
    assert got == [
        (pd.Timestamp("2024-01-15 00:00"), "second"),     # 08:00+01:00 = 07:00Z; MST -7 -> 00:00
        (pd.Timestamp("2024-03-10 10:30"), "minute"),     # 10:30-06:00 = 16:30Z, after 09:00Z (DST start): MDT -6
        (pd.Timestamp("2024-07-01 09:30"), "second"),     # 15:30Z, MDT -6
        (pd.Timestamp("2024-07-02 09:30"), "minute"),     # no offset: local as written
        (pd.Timestamp("2024-07-03 09:30:15"), "second"),
    ]
    assert rows["value_si"].tolist() == pytest.approx([108 / 18.016, 5.5, 99 / 18.016, 6.1, 5.8])


def test_iso_z_with_the_default_zone_for_people_without_residence(lake, tmp_path):
    found = ingest(lake, tmp_path, "iso_offsets.csv", default_time_zone="Europe/Berlin")
    assert counts(found, "iso_offsets.csv") == [6, 6, 0, 0]
    rows = labs(lake)
    # 2024-07-01 15:30Z in Berlin (CEST, +2) is 17:30 for both people (iso-1's residence was not ingested)
    assert (rows["measurement_datetime"] == pd.Timestamp("2024-07-01 17:30")).sum() == 2
    assert pd.Timestamp("2024-01-15 08:00") in set(rows["measurement_datetime"])  # +01:00 is Berlin's own offset in winter


@pytest.mark.parametrize("name", ["us_dates.csv", "day_first_dates.csv"])
def test_us_and_day_first_dates_are_told_apart_per_file(lake, tmp_path, name):
    found = ingest(lake, tmp_path, name)
    assert counts(found, name) == [3, 3, 0, 0]
    rows = labs(lake)
    assert rows["measurement_datetime"].tolist() == [pd.Timestamp("2023-12-31"), pd.Timestamp("2024-02-13"),
                                                     pd.Timestamp("2024-03-01 08:15")]  # 03/01 US, 01/03 day first
    assert rows["datetime_precision"].tolist() == ["day", "day", "minute"]
    if name == "us_dates.csv":  # creatinine mg/dL x 88.42
        assert rows["value_si"].tolist() == pytest.approx([0.9 * 88.42, 1.1 * 88.42, 1.0 * 88.42])


def test_ambiguous_dates_are_refused_naming_the_option(lake, tmp_path):
    found = ingest(lake, tmp_path, "ambiguous_dates.csv")
    assert found.loc["ambiguous_dates.csv", "status"] == "quarantined"
    reason = found.loc["ambiguous_dates.csv", "reason"]
    assert "specimen_collected" in reason and "--date-format us" in reason and "--date-format day-first" in reason
    assert not lake.has_table("measurement")


@pytest.mark.parametrize("order, expected", [("day-first", ["2015-01-02", "2015-04-03"]), ("us", ["2015-02-01", "2015-03-04"])])
def test_ambiguous_dates_read_once_the_order_is_declared(lake, tmp_path, monkeypatch, order, expected):
    monkeypatch.setenv("EXPLORER_LAB_DATE_FORMAT", order)
    found = ingest(lake, tmp_path, "ambiguous_dates.csv")
    assert counts(found, "ambiguous_dates.csv") == [2, 2, 0, 0]
    assert labs(lake)["measurement_datetime"].tolist() == [pd.Timestamp(d) for d in expected]


def test_date_format_from_the_command_line(tmp_path):
    lake_root = tmp_path / "lake"
    shutil.copy(LABS / "ambiguous_dates.csv", tmp_path / "ambiguous_dates.csv")
    env = {"EXPLORER_PSEUDONYM_KEY": KEY}
    refused = run_cli("ingest", tmp_path / "ambiguous_dates.csv", "--no-quality", lake_root=lake_root, env=env)
    assert "--date-format" in refused.stdout + refused.stderr
    read = run_cli("ingest", tmp_path / "ambiguous_dates.csv", "--no-quality", "--retry-quarantined", "--date-format",
                   "day-first", lake_root=lake_root, env=env)
    assert read.returncode == 0, read.stderr
    assert "2 accepted" in read.stdout
    wrong = run_cli("ingest", tmp_path / "ambiguous_dates.csv", "--date-format", "dd/mm", lake_root=lake_root, env=env)
    assert wrong.returncode != 0 and "--date-format 'dd/mm'" in wrong.stderr


# -- results -----------------------------------------------------------------------------------


def test_censored_results_and_flags_are_kept_apart_from_the_value(lake, tmp_path):
    found = ingest(lake, tmp_path, "censored_flags.csv")
    assert counts(found, "censored_flags.csv") == [11, 8, 3, 0]
    rows = labs(lake).set_index(["loinc_code", "value_as_number"])
    assert rows.loc[("1988-5", 0.5), ["value_comparator", "value_si"]].tolist() == ["<", 0.5]
    assert rows.loc[("1988-5", 0.1), ["value_comparator", "value_si"]].tolist() == ["<=", pytest.approx(1.0)]  # mg/dL x 10
    assert rows.loc[("2345-7", 200.0), ["value_comparator", "value_si"]].tolist() == [">", pytest.approx(200 / 18.016)]
    assert rows.loc[("6690-2", 1000.0), ["value_comparator", "value_si"]].tolist() == [">=", pytest.approx(1.0)]  # /uL x 0.001
    assert rows.loc[("2160-0", 5.0), ["result_flag", "value_si"]].tolist() == ["H", pytest.approx(442.1)]
    assert rows.loc[("1751-7", 3.1), "result_flag"] == "L"   # "3.1 (L)"
    assert rows.loc[("2345-7", 450.0), "result_flag"] == "HH"  # from the flag column
    assert rows.loc[("2160-0", 1.4), "result_flag"] == "H"  # the cell and the flag column agree
    assert rows["result_flag"].isna().sum() == 4 and rows["value_comparator"].isna().sum() == 4
    why = reasons(lake)
    assert "flag H after the number disagrees with flag L" in why[2]
    assert "flag 'X'" in why[0] and "table 0078" in why[0]
    assert "not a number ('positive'" in why[1] and "--missing-code" in why[1]


def test_an_empty_unit_lands_with_the_reason_it_has_no_si_value(lake, tmp_path):
    found = ingest(lake, tmp_path, "empty_unit.csv")
    # creatinine in % is not a unit of its kind: the value is in doubt, quarantined (synth fault unknown_or_wrong_unit)
    assert counts(found, "empty_unit.csv") == [3, 2, 1, 0]
    assert "unit '%' is not a known unit for LOINC 2160-0" in reasons(lake)[0]
    rows = labs(lake).set_index("value_as_number")
    assert pd.isna(rows.loc[1.1, "value_si"]) and rows.loc[1.1, "si_note"].startswith("unit empty: LOINC 2160-0")
    assert "nan" not in rows.loc[1.1, "si_note"]
    assert rows.loc[99.0, "value_si"] == pytest.approx(99 / 18.016) and pd.isna(rows.loc[99.0, "si_note"])


def test_decimal_commas_only_when_declared(lake, tmp_path, monkeypatch):
    found = ingest(lake, tmp_path, "decimal_comma.csv")
    assert counts(found, "decimal_comma.csv") == [3, 1, 2, 0]
    assert all("decimal comma" in r and "--decimal-comma" in r for r in reasons(lake))


def test_decimal_commas_read_when_declared(lake, tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_LAB_DECIMAL_COMMA", "1")
    found = ingest(lake, tmp_path, "decimal_comma.csv")
    assert counts(found, "decimal_comma.csv") == [3, 3, 0, 0]
    rows = labs(lake).set_index("loinc_code")
    assert rows.loc["2345-7", "value_si"] == pytest.approx(5.3) and rows.loc["1751-7", "value_si"] == pytest.approx(41.5)


def test_missing_codes_are_ignored_never_stored(lake, tmp_path):
    found = ingest(lake, tmp_path, "missing_codes.csv")
    assert counts(found, "missing_codes.csv") == [5, 2, 0, 3]
    assert found.loc["missing_codes.csv", "ignored"] == "missing result code: 3"
    assert labs(lake)["value_as_number"].tolist() == [5.2, 5.4]


def test_declared_missing_codes_replace_the_defaults(lake, tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_LAB_MISSING_CODES", "NA")
    found = ingest(lake, tmp_path, "missing_codes.csv")
    # only NA is missing now: the empty cell is no number and -999 is a negative result, both quarantined
    assert counts(found, "missing_codes.csv") == [5, 2, 2, 1]
    why = reasons(lake)
    assert "not a number (''" in why[0] and "zero or negative" in why[1]


# -- properties --------------------------------------------------------------------------------

COMPARATORS = st.sampled_from([None, "<", "<=", ">", ">="])
FLAGS = st.sampled_from([None, *ABNORMAL_FLAGS])
VALUES = st.floats(min_value=1e-6, max_value=1e9, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(VALUES, COMPARATORS, FLAGS, st.sampled_from(["", " "]), st.sampled_from([" ", "", " ("]), st.booleans())
def test_any_result_with_comparator_and_flag_round_trips(value, comparator, flag, gap, flag_gap, comma):
    number = repr(value)
    if comma:
        number = number.replace(".", ",")
    text = (comparator or "") + gap + number
    if flag:
        # a letter flag right after an exponent (1e-05H) is still read: the exponent needs digits
        text += flag_gap + flag + (")" if flag_gap == " (" else "")
    parsed = parse_results(pd.Series([text]), decimal_comma=comma).iloc[0]
    assert parsed["problem"] is None, text
    assert parsed["value"] == value and parsed["comparator"] == comparator and parsed["flag"] == flag
    assert not parsed["missing"]


@settings(max_examples=200, deadline=None)
@given(st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2100, 1, 1)).map(lambda t: t.replace(microsecond=0)),
       st.integers(-12 * 4, 14 * 4).map(lambda quarter: quarter * 15), st.sampled_from(["T", " "]), st.booleans())
def test_iso_times_with_offsets_give_the_same_instant(moment, offset_minutes, separator, colon):
    sign = "-" if offset_minutes < 0 else "+"
    hours, minutes = divmod(abs(offset_minutes), 60)
    zone = "Z" if offset_minutes == 0 and colon else f"{sign}{hours:02d}{':' if colon else ''}{minutes:02d}"
    text = moment.strftime(f"%Y-%m-%d{separator}%H:%M:%S") + zone
    parsed = parse_times(pd.Series([text])).iloc[0]
    assert parsed["problem"] is None, text
    assert parsed["wall"] == pd.Timestamp(moment) and parsed["offset_minutes"] == offset_minutes
    assert parsed["precision"] == "second"


@settings(max_examples=100, deadline=None)
@given(st.lists(st.dates(min_value=datetime(1950, 1, 1).date(), max_value=datetime(2030, 12, 31).date()), min_size=1, max_size=8),
       st.sampled_from(["us", "day-first"]))
def test_slash_dates_read_back_in_their_order_or_are_refused(days, order):
    pattern = "%m/%d/%Y" if order == "us" else "%d/%m/%Y"
    text = pd.Series([d.strftime(pattern) for d in days])
    settles = any(d.day > 12 for d in days)
    if not settles:
        with pytest.raises(ValueError, match="--date-format"):
            parse_times(text)
        parsed = parse_times(text, date_format=order)  # declared: read as declared
    else:
        parsed = parse_times(text)
    assert parsed["wall"].dt.date.tolist() == days and set(parsed["precision"]) == {"day"}


def _context(zone=None):
    return Context(pseudonymizer=Pseudonymizer(KEY.encode()), now=pd.Timestamp(NOW), source_name="labs.csv",
                   source_sha256="0" * 64, arrays_root=Path("."), reference=Reference({}, zone))


CELLS = st.sampled_from(["5.2", "<0.5", ">=200", "5.0 H", "7 (LL)", "", "NA", "-999", "abc", "5,3", "0", "5.0 X"])
WHEN = st.sampled_from(["2024-05-06", "2024-05-06 08:00", "2024-05-06T08:00:00Z", "13/05/2024", "2030-01-01", "nope"])
UNITS = st.sampled_from(["mmol/L", "mg/dL", "", "%"])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(CELLS, WHEN, UNITS, st.sampled_from(["2345-7", "1975-2", "x"])), min_size=1, max_size=30),
       st.sampled_from([None, "America/Denver"]))
def test_every_row_is_landed_quarantined_or_ignored(tmp_path_factory, records, zone):
    path = tmp_path_factory.mktemp("labs") / "labs.csv"
    lines = ["participant_id,specimen_collected,loinc_code,result,unit"]
    lines += [f'p-{k % 3},{when},{code},"{cell}",{unit}' for k, (cell, when, unit, code) in enumerate(records)]
    path.write_text("\n".join(lines) + "\n")
    result = LabLongCsvReader().read(path, _context(zone))
    landed = result.tables["measurement"]
    assert len(landed) + len(result.quarantined) + sum(result.ignored.values()) == result.rows_read == len(records)
    assert sum(result.ignored.values()) == sum(cell in ("", "NA", "-999") for cell, *_ in records)
    assert landed["value_as_number"].gt(0).all()  # no missing code, zero or bad value is stored
    # every landed row has an SI value or says why not
    assert (landed["value_si"].notna() ^ landed["si_note"].notna()).all()
    assert set(landed["datetime_precision"]) <= {"day", "minute", "second"}
    censored = landed["value_comparator"].notna()
    assert set(landed.loc[censored, "value_comparator"]) <= {"<", ">="}
    if zone is None:  # a Z time without any zone to place it is never stored
        assert not (landed["datetime_precision"] == "second").any()
    assert np.isin(landed["_row"], np.arange(1, len(records) + 1)).all()


# -- censored values where they are summarised -------------------------------------------------

PHENO_VISIT = {"albumin": (45.0, "g/L"), "creatinine": (80.0, "umol/L"), "glucose": (5.0, "mmol/L"), "crp": (0.1, "mg/dL"),
               "lymphocyte_percent": (30.0, "%"), "mcv": (90.0, "fL"), "rdw": (13.0, "%"),
               "alkaline_phosphatase": (70.0, "U/L"), "white_cell_count": (6.0, "10*3/uL")}


def _panel(comparators=None, notes=None):
    from explorer.ageing.biological_age import PHENOAGE_INPUTS

    comparators, notes = comparators or {}, notes or {}
    return pd.DataFrame([{"person_id": "a", "measurement_datetime": pd.Timestamp("2020-07-01 09:30"),
                          "loinc_code": PHENOAGE_INPUTS[name][0], "value_as_number": value,
                          "unit": None if name in notes else unit, "value_comparator": comparators.get(name),
                          "si_note": notes.get(name)} for name, (value, unit) in PHENO_VISIT.items()])


def test_phenoage_says_which_inputs_were_censored():
    from explorer.ageing import phenoage

    persons = pd.DataFrame({"person_id": ["a"], "year_of_birth": [1970]})
    exact = phenoage(_panel(), persons).iloc[0]
    censored = phenoage(_panel({"crp": "<"}), persons).iloc[0]
    assert exact["censored"] == "" and censored["censored"] == "crp"
    # the censored CRP enters at its limit (0.1 mg/dL): the same score, now flagged
    assert censored["phenoage"] == pytest.approx(exact["phenoage"], rel=1e-12)


def test_phenoage_counts_a_marker_without_si_value_as_missing():
    from explorer.ageing import phenoage

    persons = pd.DataFrame({"person_id": ["a"], "year_of_birth": [1970]})
    row = phenoage(_panel(notes={"creatinine": "unit empty: LOINC 2160-0 needs one of mg/dL, umol/L to convert"}),
                   persons).iloc[0]
    assert row["missing"] == "creatinine" and pd.isna(row["phenoage"])


@pytest.mark.parametrize("bounds, members", [
    ("{lte: 1.0}", {"2024-05-06"}),   # <0.5 mg/L spans 0..0.5, <=0.1 mg/dL spans 0..1.0 mg/L: both within
    ("{gte: 0.2}", set()),            # neither span is certainly >= 0.2 (the limit alone, 0.5, would be)
    ("{lte: 0.7}", {"2024-05-06"}),   # 0..0.5 within; 0..1.0 not
])
def test_cohort_lab_bounds_count_a_censored_result_only_when_certain(lake, tmp_path, bounds, members):
    from explorer import cohorts

    ingest(lake, tmp_path, "censored_flags.csv")
    definition = cohorts.loads(f"name: t\nindex_date: {{rule: first_lab, loinc: 1988-5, unit: mg/L, value: {bounds}}}\n")
    people = lake.sql("SELECT DISTINCT person_id FROM measurement").assign(year_of_birth=1970)
    lake.write("person", people)  # the one participant, so the cohort has a population to draw from
    found = cohorts.members(lake, definition)
    assert set(pd.to_datetime(found["index_date"]).dt.date.astype(str)) == members


def test_wide_lab_cells_read_like_long_ones(lake, tmp_path):
    folder = tmp_path / "wide"
    folder.mkdir()
    (folder / "mapping.csv").write_text("column_name,loinc_code,unit,test_name\nCRP,1988-5,mg/L,CRP\n"
                                        "BILI,1975-2,mg/dL,Bilirubin\n")
    (folder / "panel.csv").write_text("participant_id,specimen_collected,CRP,BILI\n"
                                      "w-1,1985-03-04,<0.5,1.2 H\n"
                                      "w-1,1985-09-03,NA,0.9\n"
                                      "w-1,1985-12-01,,abc\n")
    lake.ingest(folder, now=NOW, quality=False)
    panel = lake.sql("SELECT rows_read, rows_accepted, rows_quarantined, rows_ignored FROM ingest_file "
                     "WHERE source_name LIKE '%panel.csv'").iloc[0].tolist()
    assert panel == [5, 3, 1, 1]  # 5 filled cells: 3 landed, abc quarantined, NA ignored
    rows = labs(lake)
    assert rows[["value_as_number", "value_comparator", "result_flag"]].astype(object).where(rows.notna(), None)\
        .values.tolist() == [[1.2, None, "H"], [0.5, "<", None], [0.9, None, None]]  # by date, then LOINC
    assert set(rows["datetime_precision"]) == {"day"}
    assert rows["si_note"].notna().tolist() == [True, False, True]  # bilirubin: no SI conversion


def test_a_declared_strftime_pattern_reads_dates_with_dots_and_offsets():
    plain = parse_times(pd.Series(["01.02.2015 08:30", "2015-02-01"]), date_format="%d.%m.%Y %H:%M")
    assert plain["wall"].iloc[0] == pd.Timestamp("2015-02-01 08:30") and plain["precision"].iloc[0] == "minute"
    assert "declared format '%d.%m.%Y %H:%M'" in plain["problem"].iloc[1]  # every row must follow the declared pattern
    zoned = parse_times(pd.Series(["01.02.2015 08:30 +0100"]), date_format="%d.%m.%Y %H:%M %z").iloc[0]
    assert zoned["wall"] == pd.Timestamp("2015-02-01 07:30") and zoned["offset_minutes"] == 0  # as UTC, placed later


def test_a_semicolon_export_with_decimal_commas_and_dotted_dates(lake, tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_LAB_DECIMAL_COMMA", "1")
    found = ingest(lake, tmp_path, "semicolon_decimal_comma.csv")
    assert counts(found, "semicolon_decimal_comma.csv") == [3, 3, 0, 0]
    rows = labs(lake)
    # 13.03.2024 settles day first: 01.03.2024 is 1 March
    assert rows["measurement_datetime"].tolist() == [pd.Timestamp("2024-03-01 08:15"), pd.Timestamp("2024-03-13"),
                                                     pd.Timestamp("2024-03-14")]
    assert rows["value_si"].tolist() == pytest.approx([5.3, 41.5, 44.2])
    assert rows["value_comparator"].tolist()[2] == "<"


def test_marker_ageing_counts_the_censored_results_it_used():
    from explorer.ageing import marker_ageing

    rng = np.random.default_rng(0)
    persons = pd.DataFrame({"person_id": [f"p{i:02d}" for i in range(30)], "year_of_birth": rng.integers(1950, 1970, 30)})
    visits = pd.DataFrame({"person_id": np.repeat(persons["person_id"], 5).to_numpy(),
                           "measurement_datetime": np.tile(pd.date_range("2015-03-01", periods=5, freq="365D"), 30)})
    glucose = visits.assign(loinc_code="2345-7", value_si=5 + 0.05 * np.tile(np.arange(5.0), 30) + rng.normal(0, 0.1, 150))
    glucose["value_comparator"] = None
    glucose.loc[[3, 17, 40, 41, 99, 120, 149], "value_comparator"] = "<"  # seven results at a detection limit
    table, _ = marker_ageing(glucose, persons)
    assert table.set_index("marker").loc["2345-7", ["n_obs", "n_censored"]].tolist() == [150, 7]
    plain, _ = marker_ageing(glucose.drop(columns="value_comparator"), persons)
    assert plain["n_censored"].tolist() == [0]
    assert plain["slope"].tolist() == pytest.approx(table["slope"].tolist())  # entered at the limit, the same fit


def test_decimal_comma_and_missing_codes_from_the_command_line(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("decimal_comma.csv", "missing_codes.csv"):
        shutil.copy(LABS / name, folder / name)
    lake_root = tmp_path / "lake"
    done = run_cli("ingest", folder, "--no-quality", "--decimal-comma", "--missing-code", "NA", "--missing-code", "-999",
                   lake_root=lake_root, env={"EXPLORER_PSEUDONYM_KEY": KEY})
    assert done.returncode == 0, done.stderr
    lake = explorer.open(lake_root)
    found = lake.sql("SELECT source_name, rows_read, rows_accepted, rows_quarantined, rows_ignored FROM ingest_file")
    got = {Path(n).name: [r, a, q, i] for n, r, a, q, i in found.itertuples(index=False)}
    # decimal commas read; NA and -999 declared missing, the empty result (no longer a declared code) quarantined
    assert got == {"decimal_comma.csv": [3, 3, 0, 0], "missing_codes.csv": [5, 2, 1, 2]}


@settings(max_examples=150, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=8), VALUES)
def test_a_declared_missing_code_is_never_a_value(code, value):
    cells = pd.Series([code, f" {code} ", repr(value)])
    parsed = parse_results(cells, missing_codes=[code])
    assert parsed["missing"].tolist()[:2] == [True, True]
    assert parsed["value"].iloc[:2].isna().all() and parsed["problem"].iloc[:2].isna().all()
    if repr(value) != code.strip():  # a number is a value unless it is itself the declared code
        assert parsed["value"].iloc[2] == value


def test_spreadsheet_hours_fractions_and_impossible_times():
    parsed = parse_times(pd.Series(["2015-02-01 8:30", "2015-02-01 08:30:05.5", "2015-02-01 25:00", "2015-02-30"]))
    assert parsed["wall"].iloc[0] == pd.Timestamp("2015-02-01 08:30") and parsed["precision"].iloc[0] == "minute"
    assert parsed["wall"].iloc[1] == pd.Timestamp("2015-02-01 08:30:05.5") and parsed["precision"].iloc[1] == "second"
    assert parsed["wall"].iloc[2:].isna().all()
    assert all("is not a date or time" in why for why in parsed["problem"].iloc[2:])
