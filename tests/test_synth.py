"""`explorer synth`: realistic files, byte-identical per seed, and the truth it planted is there
to be recovered from the files themselves."""

import hashlib
import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from conftest import run_cli
from explorer.synth import SynthConfig, generate
from explorer.synth.ehr import CONVENTIONAL

AOU_COLUMNS = {
    "heart_rate_minute_level": ["person_id", "datetime", "heart_rate_value"],
    "steps_intraday": ["person_id", "datetime", "steps"],
    "sleep_level": ["person_id", "sleep_date", "is_main_sleep", "level", "start_datetime", "duration_in_min"],
    "sleep_daily_summary": ["person_id", "sleep_date", "is_main_sleep", "minute_in_bed", "minute_asleep",
                            "minute_after_wakeup", "minute_awake", "minute_restless", "minute_deep", "minute_light",
                            "minute_rem", "minute_wake"],
    "activity_summary": ["person_id", "date", "activity_calories", "calories_bmr", "calories_out", "elevation",
                         "fairly_active_minutes", "floors", "lightly_active_minutes", "marginal_calories",
                         "sedentary_minutes", "steps", "very_active_minutes"],
    "heart_rate_summary": ["person_id", "date", "zone_name", "min_heart_rate", "max_heart_rate", "minute_in_zone",
                           "calorie_count"],
}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """40 people, 30 days spanning the November daylight-saving change and a planted heat wave."""
    out = tmp_path_factory.mktemp("synth") / "cohort"
    generate(out, SynthConfig(participants=40, days=30, seed=3, start=date(2024, 10, 20), faults=True, workers=2,
                              shard_size=10, json_fraction=0.1))
    return out


def read_aou(out: Path, table: str) -> pd.DataFrame:
    parts = sorted((out / "fitbit_aou" / table).glob("part-0*.csv"))  # good parts; 9xxxx are faults
    return pd.concat([pd.read_csv(p, dtype={"person_id": str}) for p in parts], ignore_index=True)


def digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_byte_identical_whatever_the_workers_different_seed_differs(tmp_path):
    settings = dict(participants=6, days=3, faults=True, shard_size=2)
    generate(tmp_path / "a", SynthConfig(seed=7, workers=1, **settings))
    generate(tmp_path / "b", SynthConfig(seed=7, workers=3, **settings))
    generate(tmp_path / "c", SynthConfig(seed=8, workers=1, **settings))
    a, b, c = digests(tmp_path / "a"), digests(tmp_path / "b"), digests(tmp_path / "c")
    assert a == b
    assert len(a) > 40
    changed = {k for k in a if a[k] != c.get(k)}
    assert "fitbit_aou/heart_rate_minute_level/part-00000.csv" in changed and "truth/truth.parquet" in changed


def test_every_aou_stream_has_the_export_columns(cohort):
    for table, columns in AOU_COLUMNS.items():
        for part in (cohort / "fitbit_aou" / table).glob("part-0*.csv"):
            assert part.read_text().splitlines()[0].split(",") == columns, part
    hr = read_aou(cohort, "heart_rate_minute_level")
    assert pd.to_datetime(hr["datetime"], format="%Y-%m-%d %H:%M:%S").notna().all()  # local, no zone
    sleep = read_aou(cohort, "sleep_level")
    assert set(sleep["level"]) <= {"wake", "light", "deep", "rem", "asleep", "awake", "restless"}
    assert set(sleep["is_main_sleep"]) == {True, False}


def test_fitbit_export_json_shapes(cohort):
    people = [p for p in (cohort / "fitbit_export").iterdir() if p.name != "1999001"]
    assert people
    person = next(p for p in people if (p / "Physical Activity").is_dir())
    [hr_file] = sorted((person / "Physical Activity").glob("heart_rate-2024-10-2*.json"))[:1]
    record = json.loads(hr_file.read_text())[0]
    assert set(record) == {"dateTime", "value"} and set(record["value"]) == {"bpm", "confidence"}
    assert pd.to_datetime(record["dateTime"], format="%m/%d/%y %H:%M:%S").date().isoformat() in hr_file.name
    steps = json.loads(sorted((person / "Physical Activity").glob("steps-*.json"))[0].read_text())
    assert isinstance(steps[0]["value"], str)  # Fitbit writes step counts as strings
    log = json.loads(sorted((person / "Sleep").glob("sleep-*.json"))[1].read_text())[0]
    assert {"logId", "dateOfSleep", "startTime", "endTime", "levels", "mainSleep", "minutesAsleep"} <= set(log)
    assert sum(s["seconds"] for s in log["levels"]["data"]) == log["timeInBed"] * 60
    truth = pd.read_parquet(cohort / "truth" / "truth.parquet")
    exported = set(truth.loc[truth["wearable_source"] == "fitbit_export", "source_id"])
    assert {p.name for p in people} == exported
    takeout = set(truth.loc[truth["export_layout"] == "takeout", "source_id"])
    assert takeout and {p.name for p in people if (p / "Takeout/Fitbit/Global Export Data").is_dir()} == takeout
    # heart rate every 5-15 s: a minute's samples average to one whole value
    samples = pd.DataFrame([{"t": r["dateTime"], "bpm": r["value"]["bpm"]} for r in json.loads(hr_file.read_text())])
    when = pd.to_datetime(samples["t"], format="%m/%d/%y %H:%M:%S")
    clock_pass = (when <= when.shift()).cumsum()  # a minute written twice (an artefact) is read as two
    per_minute = samples.groupby([clock_pass, when.dt.floor("min")])["bpm"].agg(["size", "mean"])
    assert per_minute["size"].max() > 1 and per_minute["size"].max() <= 12
    assert (per_minute["mean"] == per_minute["mean"].round()).all()
    assert not exported & set(read_aou(cohort, "heart_rate_minute_level")["person_id"])  # one route per person


def test_fhir_bundles_validate_against_r4b_and_the_broken_one_does_not(cohort):
    from fhir.resources.R4B.bundle import Bundle
    from pydantic import ValidationError

    bundles = sorted((cohort / "fhir").glob("1*.json"))
    assert len(bundles) == 40
    kinds = set()
    for path in bundles:
        bundle = Bundle.model_validate_json(path.read_text())
        kinds |= {entry.resource.get_resource_type() for entry in bundle.entry}
    assert kinds == {"Patient", "Encounter", "Observation", "Condition"}
    with pytest.raises(ValidationError, match="status"):
        Bundle.model_validate_json((cohort / "fhir" / "invalid_bundle.json").read_text())


def test_netcdf_grids_are_cf_with_units_in_kelvin_and_celsius(cohort):
    units = {}
    for path in sorted((cohort / "environment").glob("*_day_20*.nc")):
        with xr.open_dataset(path) as ds:
            [name] = list(ds.data_vars)
            units[path.name] = ds[name].attrs["units"]
            assert ds.attrs["Conventions"].startswith("CF-")
            assert ds["lat"].attrs["units"] == "degrees_north" and ds["time"].dtype.kind == "M"
            if ds[name].attrs["units"] == "K":
                assert float(ds[name].min()) > 200
    assert units["tasmax_day_2023.nc"] == "K" and units["tasmax_day_2024.nc"] == "degC"
    assert units["pm25_day_2024.nc"] == "ug/m3"
    with xr.open_dataset(cohort / "environment" / "tasmax_day_nounits.nc") as ds:
        assert "units" not in ds["tasmax"].attrs


def test_planted_artefacts_are_in_the_files(cohort):
    hr = read_aou(cohort, "heart_rate_minute_level")
    artefacts = pd.read_parquet(cohort / "truth" / "truth_artefacts.parquet")
    csv_people = set(hr["person_id"])
    spikes = artefacts[(artefacts["kind"].isin(["hr_zero", "hr_255"])) & artefacts["source_id"].isin(csv_people)]
    assert len(spikes) > 20
    keyed = hr.set_index(["person_id", "datetime"])["heart_rate_value"]
    for row in spikes.head(50).itertuples():
        values = keyed.loc[(row.source_id, pd.Timestamp(row.datetime).strftime("%Y-%m-%d %H:%M:%S"))]
        assert row.value in np.atleast_1d(values)
    duplicated = hr.duplicated(["person_id", "datetime"], keep=False)
    assert duplicated.sum() >= 2 * len(artefacts[(artefacts["kind"] == "duplicate_minute") & (artefacts["stream"] == "heart_rate")
                                               & artefacts["source_id"].isin(csv_people)])


def test_daylight_saving_repeats_the_local_hour_except_in_arizona(cohort):
    hr = read_aou(cohort, "heart_rate_minute_level")
    artefacts = pd.read_parquet(cohort / "truth" / "truth_artefacts.parquet")
    dup_keys = set(zip(artefacts["source_id"], pd.to_datetime(artefacts["datetime"]).dt.strftime("%Y-%m-%d %H:%M:%S")))
    zones = pd.read_parquet(cohort / "truth" / "truth_daily.parquet").query("date == @pd.Timestamp('2024-11-03').date()") \
        .set_index("source_id")["time_zone"]
    night = hr[hr["datetime"].str.startswith("2024-11-03 01:")]
    counts = night.groupby(["person_id", "datetime"]).size()
    counts = counts[[k not in dup_keys for k in counts.index]]
    by_zone = counts.groupby(zones.reindex(counts.index.get_level_values(0)).to_numpy()).max()
    assert by_zone.get("America/Phoenix", 1) == 1
    assert by_zone.drop("America/Phoenix", errors="ignore").eq(2).all() and len(by_zone.drop("America/Phoenix", errors="ignore"))


def test_heat_effect_on_resting_heart_rate_is_recoverable_from_the_files(cohort):
    """Person-day resting HR (mean of the lowest 30 worn minutes) on the planted temperature
    anomaly, within person: the slope recovers the planted bpm per K."""
    hr = read_aou(cohort, "heart_rate_minute_level")
    hr = hr[(hr["heart_rate_value"] > 0) & (hr["heart_rate_value"] < 255)]
    hr["date"] = hr["datetime"].str[:10]
    lowest = hr.sort_values("heart_rate_value").groupby(["person_id", "date"]).head(30)
    rest = lowest.groupby(["person_id", "date"])["heart_rate_value"].agg(["mean", "size"]).reset_index()
    rest = rest[rest["size"] == 30]
    daily = pd.read_parquet(cohort / "truth" / "truth_daily.parquet")
    daily["date"] = daily["date"].astype(str)
    data = rest.merge(daily, left_on=["person_id", "date"], right_on=["source_id", "date"])
    data = data[data["worn_minutes"] > 1000]
    y = data["mean"] - data.groupby("person_id")["mean"].transform("mean")
    x = data["tas_anomaly"] - data.groupby("person_id")["tas_anomaly"].transform("mean")
    slope = float((x * y).sum() / (x * x).sum())
    planted = json.loads((cohort / "truth" / "truth.json").read_text())["planted"]["heat_effect_bpm_per_k"]
    assert x.std() > 1.5  # the window really has weather and a heat wave to learn from
    assert abs(slope - planted) < 0.15, (slope, planted)


def test_lab_units_mix_and_convert_back_to_the_planted_si_values(cohort):
    labs = pd.concat([pd.read_csv(p, dtype={"participant_id": str, "loinc_code": str})
                      for p in (cohort / "labs").glob("*_la*.csv") if "outside" not in p.name])
    assert {"mg/dL", "mmol/L"} <= set(labs.loc[labs["loinc_code"] == "2345-7", "unit"])
    assert {"mg/dL", "umol/L"} <= set(labs.loc[labs["loinc_code"] == "2160-0", "unit"])
    assert {"g/dL", "g/L"} <= set(labs.loc[labs["loinc_code"] == "1751-7", "unit"])
    assert {"mg/L", "mg/dL"} <= set(labs.loc[labs["loinc_code"] == "1988-5", "unit"])
    truth = pd.read_parquet(cohort / "truth" / "truth_lab_values.parquet").query("route == 'lab_csv'")
    truth["when"] = truth["datetime"].dt.strftime("%Y-%m-%d %H:%M")
    merged = labs.merge(truth, left_on=["participant_id", "specimen_collected", "loinc_code"],
                        right_on=["source_id", "when", "loinc_code"])
    assert len(merged) == len(labs)
    factor = np.array([CONVENTIONAL[c][1] if u == CONVENTIONAL.get(c, ("", 1))[0] else 1.0
                       for c, u in zip(merged["loinc_code"], merged["unit"])])
    np.testing.assert_allclose(merged["result"] * factor, merged["value_si"], rtol=0.02, atol=0.06)


def test_ageing_slopes_are_recoverable_from_fhir_observations(cohort):
    truth = pd.read_parquet(cohort / "truth" / "truth_markers.parquet").query("loinc_code == '2160-0'")
    births = pd.read_parquet(cohort / "truth" / "truth.parquet").set_index("source_id")["birth_date"]
    estimates = {}
    for path in sorted((cohort / "fhir").glob("1*.json")):
        bundle = json.loads(path.read_text())
        pid = bundle["entry"][0]["resource"]["identifier"][0]["value"]
        points = [(pd.Timestamp(e["resource"]["effectiveDateTime"][:10]), e["resource"]["valueQuantity"]["value"] * 88.42)
                  for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"
                  and e["resource"]["code"]["coding"][0]["code"] == "2160-0"]
        ages = np.array([(t - pd.Timestamp(births[pid])).days / 365.25 for t, _ in points])
        estimates[pid] = np.polyfit(ages, [v for _, v in points], 1)[0]
    truth = truth.set_index("source_id")["slope_per_year"]
    r = np.corrcoef([estimates[p] for p in truth.index], truth.to_numpy())[0, 1]
    assert r > 0.5, r  # seven noisy yearly visits per person: a real but imperfect signal
    groups = pd.read_parquet(cohort / "truth" / "truth.parquet").set_index("source_id")["ageotype"]
    fast = np.mean([estimates[p] for p in truth.index if groups[p] == "nephrotic"])
    rest = np.mean([estimates[p] for p in truth.index if groups[p] != "nephrotic"])
    assert fast > rest + 1.5  # the nephrotic ageotype's creatinine climbs visibly faster


def test_fault_files_carry_the_documented_damage(cohort):
    faults = {f["kind"]: f for f in json.loads((cohort / "truth" / "truth.json").read_text())["faults"]}
    assert set(faults) == {"truncated_json", "fhir_invalid", "wrong_encoding", "unknown_or_wrong_unit",
                           "impossible_values", "duplicated_records", "renamed_column", "empty_file",
                           "netcdf_without_units"}
    with pytest.raises(json.JSONDecodeError):
        json.loads((cohort / faults["truncated_json"]["path"]).read_text())
    with pytest.raises(UnicodeDecodeError):
        (cohort / faults["wrong_encoding"]["path"]).read_bytes().decode("utf-8")
    assert (cohort / faults["empty_file"]["path"]).stat().st_size == 0
    assert "hr_value" in (cohort / faults["renamed_column"]["path"]).read_text().splitlines()[0]
    duplicated = pd.read_csv(cohort / faults["duplicated_records"]["path"])
    assert duplicated.duplicated().sum() == faults["duplicated_records"]["bad_rows"]


def test_synth_command(tmp_path):
    out = tmp_path / "cli"
    first = run_cli("synth", "--participants", 3, "--days", 2, "--seed", 1, "--out", out)
    assert first.returncode == 0, first.stderr
    assert "3 participants x 2 days" in first.stdout and (out / "truth" / "truth.json").exists()
    again = run_cli("synth", "--participants", 3, "--days", 2, "--out", out)
    assert again.returncode == 2 and "--overwrite" in again.stderr
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.docx").write_text("precious")
    refused = run_cli("synth", "--out", tmp_path / "mine", "--overwrite")
    assert refused.returncode == 2 and "was not written by `explorer synth`" in refused.stderr
    assert (tmp_path / "mine" / "thesis.docx").exists()
    bad = run_cli("synth", "--participants", 0, "--out", tmp_path / "x")
    assert bad.returncode == 2 and "participants: got 0" in bad.stderr
    bad_date = run_cli("synth", "--start", "15/08/2024", "--out", tmp_path / "y")
    assert bad_date.returncode == 2 and "YYYY-MM-DD" in bad_date.stderr
