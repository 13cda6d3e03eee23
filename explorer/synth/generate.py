"""`generate`: the whole synthetic cohort, streamed to disk shard by shard on worker processes."""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from explorer.synth import ehr, writers
from explorer.synth.apple_health import write_apple_health_export
from explorer.synth.cohort import AGEOTYPES, MARKERS, make_cohort, residence_on
from explorer.synth.config import INCIDENT_BLOCK_DAYS, INCIDENT_CONDITION, SynthConfig
from explorer.synth.environment import aqs_daily_table, ghcn_files, make_environment, station_table, write_grids
from explorer.synth.garmin_fit import write_garmin_monitoring
from explorer.synth.outcomes import incident_conditions, incident_outcomes
from explorer.synth.wearables import simulate_person

MARKER_FILE = ".explorer-synth"


@dataclass
class SynthSummary:
    out: Path
    participants: int
    days: int
    heart_rate_rows: int
    steps_rows: int
    files: int
    faults: list

    def __str__(self) -> str:
        return (f"{self.participants} participants x {self.days} days -> {self.out}: {self.files} files, "
                f"{self.heart_rate_rows:,} heart-rate rows, {self.steps_rows:,} step rows"
                + (f", {len(self.faults)} damaged files (see truth/truth.json 'faults')" if self.faults else ""))


def _prepare(out: Path, overwrite: bool) -> None:
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER_FILE).exists():
            raise FileExistsError(f"{out}: folder exists and is not empty, and was not written by `explorer synth`; "
                                  "choose an empty or new --out folder")
        if not overwrite:
            raise FileExistsError(f"{out}: already holds a synthetic cohort; pass --overwrite to replace it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER_FILE).write_text("written by explorer synth; --overwrite may delete this folder\n")
    # the planted truth and the guide are for checking analyses, not input: ingest skips them
    (out / ".explorerignore").write_text("truth/\nREADME.md\n")


def _person_days(config, cohort, env) -> dict[str, pd.DataFrame]:
    """Per person and day of the window: time zone and planted temperature anomaly at home."""
    days = pd.date_range(config.start, periods=config.days, freq="D")
    anomaly = env.grid["tas_anomaly"].sel(time=days)
    out = {}
    for pid in cohort.persons["source_id"]:
        home = residence_on(cohort.residences, pid, days)
        values = anomaly.sel(lat=xr_points(home["latitude"]), lon=xr_points(home["longitude"]), method="nearest")
        out[pid] = pd.DataFrame({"date": days.date, "time_zone": home["time_zone"].to_numpy(),
                                 "tas_anomaly": np.diagonal(values.values) if values.ndim == 3 else values.values,
                                 "latitude": home["latitude"].to_numpy(), "longitude": home["longitude"].to_numpy()})
    return out


def xr_points(values):
    import xarray as xr

    return xr.DataArray(np.asarray(values), dims="time")


def _shard(args) -> dict:
    """Simulate and write one shard of people (runs in a worker process)."""
    index, config, persons, person_days, out = args
    parts = {name: [] for name in writers.AOU_TABLES}
    truth_daily, truth_artefacts, counts = [], [], {"heart_rate_rows": 0, "steps_rows": 0, "files": 0}
    for person in persons.itertuples(index=False):
        rng = np.random.default_rng([config.seed, 3, int(person.source_id)])
        streams = simulate_person(person, person_days[person.source_id], config, rng)
        counts["heart_rate_rows"] += len(streams.heart_rate)
        counts["steps_rows"] += len(streams.steps)
        truth_daily.append(streams.daily_truth.assign(source_id=person.source_id))
        truth_artefacts.append(streams.artefacts.assign(source_id=person.source_id))
        if person.wearable_source == "fitbit_export":
            counts["files"] += writers.write_fitbit_export(out / "fitbit_export" / person.source_id, streams,
                                                           person.export_layout)
            continue
        if person.wearable_source == "garmin_fit":
            counts["files"] += len(write_garmin_monitoring(out / "garmin_fit" / person.source_id, streams))
            continue
        if person.wearable_source == "apple_health":
            write_apple_health_export(out / "apple_health" / person.source_id, streams)
            counts["files"] += 1
            continue
        sid = person.source_id
        parts["heart_rate_minute_level"].append(streams.heart_rate[["datetime", "heart_rate_value"]].assign(person_id=sid))
        parts["steps_intraday"].append(streams.steps.assign(person_id=sid))
        parts["sleep_level"].append(writers.sleep_level_rows(sid, streams.sleep_logs))
        parts["sleep_daily_summary"].append(writers.sleep_daily_summary(sid, streams.sleep_logs))
        parts["activity_summary"].append(writers.activity_summary(sid, person, streams.minutes))
        parts["heart_rate_summary"].append(writers.heart_rate_summary(sid, person, streams.minutes))
    columns = {
        "heart_rate_minute_level": ["person_id", "datetime", "heart_rate_value"],
        "steps_intraday": ["person_id", "datetime", "steps"],
    }
    for name, frames in parts.items():
        frames = [f for f in frames if len(f)]
        if not frames:
            continue
        frame = pd.concat(frames, ignore_index=True)
        frame = frame[columns.get(name, frame.columns.tolist())]
        writers.write_csv(frame, out / "fitbit_aou" / name / f"part-{index:05d}.csv")
        counts["files"] += 1
    return {"counts": counts, "daily": pd.concat(truth_daily, ignore_index=True),
            "artefacts": pd.concat(truth_artefacts, ignore_index=True)}


def generate(out: str | os.PathLike, config: SynthConfig, *, overwrite: bool = False, progress=None) -> SynthSummary:
    """Write a synthetic cohort to ``out``: raw files in source formats, plus ``truth/``.

    Same ``config`` gives byte-identical files, whatever ``config.workers``.
    """
    out = Path(out)
    _prepare(out, overwrite)
    say = progress or (lambda done, total, label="": None)
    cohort = make_cohort(config)
    env = make_environment(config)
    person_days = _person_days(config, cohort, env)
    persons = cohort.persons

    shards = [persons.iloc[i:i + config.shard_size] for i in range(0, len(persons), config.shard_size)]
    jobs = [(k, config, shard, {pid: person_days[pid] for pid in shard["source_id"]}, out) for k, shard in enumerate(shards)]
    total_steps = len(jobs) + 4
    results = []
    if config.workers > 1 and len(jobs) > 1:
        # spawn, not fork: the caller may hold threads (DuckDB, Dask) that a forked child would inherit locked
        with ProcessPoolExecutor(max_workers=min(config.workers, len(jobs)), mp_context=multiprocessing.get_context("spawn")) as pool:
            for done, result in enumerate(pool.map(_shard, jobs), 1):
                results.append(result)
                say(done, total_steps, f"wearable shard {done}/{len(jobs)}")
    else:
        for done, job in enumerate(jobs, 1):
            results.append(_shard(job))
            say(done, total_steps, f"wearable shard {done}/{len(jobs)}")
    daily = pd.concat([r["daily"] for r in results], ignore_index=True).sort_values(["source_id", "date"], ignore_index=True)
    incident = incident_outcomes(config, daily) if config.incident_hazard_ratio_per_1000_steps is not None else None
    _write_clinical(out, config, cohort, incident_conditions(incident) if incident is not None else {})
    say(len(jobs) + 1, total_steps, "FHIR bundles and lab CSV")
    _write_places(out, config, cohort, env)
    say(len(jobs) + 2, total_steps, "residence, area and environment files")

    faults = []
    if config.faults:
        from explorer.synth.faults import write_faults

        faults = write_faults(out, config)
    _write_truth(out, config, cohort, env, daily, results, faults, incident)
    say(len(jobs) + 3, total_steps, "truth")
    _write_readme(out, config)
    say(total_steps, total_steps, "done")
    files = sum(1 for p in out.rglob("*") if p.is_file() and "truth" not in p.relative_to(out).parts[:1]
                and p.name not in (MARKER_FILE, "README.md"))
    return SynthSummary(out, config.participants, config.days,
                        sum(r["counts"]["heart_rate_rows"] for r in results),
                        sum(r["counts"]["steps_rows"] for r in results), files, faults)


def _write_clinical(out: Path, config, cohort, incident: dict) -> int:
    files = 0
    lab_rows, truth_labs = [], []
    (out / "fhir").mkdir(parents=True, exist_ok=True)
    window = pd.DatetimeIndex([pd.Timestamp(config.start)])
    for person in cohort.persons.itertuples(index=False):
        rng = np.random.default_rng([config.seed, 4, int(person.source_id)])
        visits = ehr.lab_visits(person, cohort.markers, cohort.residences, config, rng, route="fhir")
        home = residence_on(cohort.residences, person.source_id, window).iloc[0]
        bundle = ehr.fhir_bundle(person, home, visits, ehr.conditions(person, config, rng) + incident.get(person.source_id, []), config)
        (out / "fhir" / f"{person.source_id}.json").write_text(json.dumps(bundle, separators=(",", ":")))  # compact: json only uses its C encoder without indent
        files += 1
        truth_labs.append(visits.drop(columns=["fhir_offset_zone"]).assign(source_id=person.source_id, route="fhir"))
        if person.has_lab_csv:
            extra = ehr.lab_visits(person, cohort.markers, cohort.residences, config, rng, route="lab_csv")
            lab_rows += ehr.lab_csv_rows(person, extra, rng)
            truth_labs.append(extra.drop(columns=["fhir_offset_zone"]).assign(source_id=person.source_id, route="lab_csv"))
    if lab_rows:
        labs = pd.DataFrame(lab_rows)
        for name, part in labs.groupby("lab_name", sort=True):
            writers.write_csv(part.reset_index(drop=True), out / "labs" / f"{name.lower().replace(' ', '_')}.csv")
            files += 1
    out_truth = out / "truth"
    out_truth.mkdir(exist_ok=True)
    pd.concat(truth_labs, ignore_index=True).to_parquet(out_truth / "truth_lab_values.parquet", index=False)
    return files


def _write_places(out: Path, config, cohort, env) -> int:
    residence = cohort.residences.rename(columns={"source_id": "person_id"}).drop(columns=["time_zone"])
    writers.write_csv(residence, out / "residence" / "residence_history.csv")
    grids = write_grids(env, out / "environment", config)
    rng = np.random.default_rng([config.seed, 5])
    stations = station_table(env, config, rng)
    # as NOAA publishes GHCN-Daily: the station list and one by-station file per station
    for name, text in ghcn_files(stations).items():
        (out / "environment" / "ghcn").mkdir(parents=True, exist_ok=True)
        (out / "environment" / "ghcn" / name).write_text(text)
    monitors, planted = aqs_daily_table(env, np.random.default_rng([config.seed, 7]))
    for year, rows in monitors.groupby(monitors["Date Local"].str[:4], sort=True):
        (out / "environment" / "aqs").mkdir(parents=True, exist_ok=True)
        rows.to_csv(out / "environment" / "aqs" / f"daily_88101_{year}.csv", index=False, quoting=csv.QUOTE_NONNUMERIC)
    ghcn = stations.assign(value=stations["value"] / 10.0).drop(columns="units")
    (out / "truth").mkdir(exist_ok=True)
    pd.concat([ghcn.assign(source="ghcn", unit="degC"), planted.assign(source="aqs", unit="ug/m3")], ignore_index=True) \
        .to_parquet(out / "truth" / "truth_stations.parquet", index=False)
    tracts = sorted(set(cohort.residences["tract_geoid"]))
    lead = pd.DataFrame({"tract_geoid": tracts, "lead_risk_decile": rng.integers(1, 11, len(tracts))})
    writers.write_csv(lead, out / "area" / "tract_lead_risk.csv")
    years = range(config.start.year - 3, config.start.year + 1)
    base = rng.uniform(1, 100, len(tracts))
    deprivation = pd.DataFrame([{"tract_geoid": t, "year": y, "deprivation_index": round(float(np.clip(b + rng.normal(0, 3), 1, 100)), 1)}
                                for y in years for t, b in zip(tracts, base)])
    writers.write_csv(deprivation, out / "area" / "deprivation_index.csv")
    return 1 + len(grids) + len(ghcn_files(stations)) + monitors["Date Local"].str[:4].nunique() + 2


def _write_truth(out: Path, config, cohort, env, daily, results, faults, incident) -> None:
    truth = out / "truth"
    truth.mkdir(exist_ok=True)
    cohort.persons.to_parquet(truth / "truth.parquet", index=False)
    cohort.markers.to_parquet(truth / "truth_markers.parquet", index=False)
    cohort.residences.to_parquet(truth / "truth_residences.parquet", index=False)
    daily.to_parquet(truth / "truth_daily.parquet", index=False)
    if incident is not None:
        incident.to_parquet(truth / "truth_incident.parquet", index=False)
    pd.concat([r["artefacts"] for r in results], ignore_index=True).sort_values(["source_id", "stream", "datetime"], ignore_index=True) \
        .to_parquet(truth / "truth_artefacts.parquet", index=False)
    env.heat_waves.to_parquet(truth / "truth_heat_waves.parquet", index=False)
    document = {
        "generator": "explorer synth",
        "config": config.to_dict(),
        "planted": {
            "heat_effect_bpm_per_k": config.heat_effect_bpm_per_k,
            "age_effect_bpm_per_year": config.age_effect_bpm_per_year,
            "heat_lag_effects_bpm_per_k": {"lags_days": list(range(1, len(config.heat_lag_effects_bpm_per_k) + 1)),
                                           "bpm_per_k": list(config.heat_lag_effects_bpm_per_k),
                                           "note": "on top of heat_effect_bpm_per_k on the same day (lag 0)"},
            "incident_outcome": None if incident is None else {
                "code_system": INCIDENT_CONDITION[0], "code": INCIDENT_CONDITION[1], "display": INCIDENT_CONDITION[2],
                "hazard_ratio_per_1000_steps": config.incident_hazard_ratio_per_1000_steps,
                "rate_per_year_at_8000_steps": config.incident_rate_per_year,
                "block_days": INCIDENT_BLOCK_DAYS,
                "rule": "follow-up from day block_days after the first wearable day, in blocks of block_days; the hazard of "
                        "a block follows the mean recorded steps of the previous block's valid days (>= 600 worn minutes)",
                "events": int(incident["event"].sum()), "persons": int(incident["source_id"].nunique())},
            "ageotypes": list(AGEOTYPES),
            "markers": [dict(zip(("loinc", "name", "unit_si", "mean_at_50", "sd", "within_sd", "slope_per_year",
                                  "fast_group", "fast_group_slope_per_year", "scale"), m)) for m in MARKERS],
            "heat_waves": [{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}
                           for row in env.heat_waves.to_dict("records")],
        },
        "tables": {
            "truth.parquet": "one row per participant: demographics and every planted parameter",
            "truth_markers.parquet": "participant x marker: planted level at the reference age (the start of the lab history) and slope per year from then (log scale for CRP)",
            "truth_daily.parquet": "participant x day: time zone, planted temperature anomaly (K), true resting heart rate, worn minutes, recorded steps",
            "truth_incident.parquet": "participant x follow-up block (only with an incident outcome planted): previous block's steps, hazard, event and its date",
            "truth_artefacts.parquet": "every artefact record: stream, local datetime, kind (hr_zero, hr_255, duplicate_minute), value written, true value",
            "truth_lab_values.parquet": "every lab value in SI units as generated, with its route (fhir or lab_csv)",
            "truth_residences.parquet": "residence history with the time zone used for local times",
            "truth_heat_waves.parquet": "planted heat waves: dates, centre, radius, peak anomaly",
            "truth_stations.parquet": "station and monitor values as written (GHCN-Daily TMAX/TMIN in degC, AQS PM2.5 in ug/m3), once per station, day and element, with coordinates",
        },
        "faults": faults,
        "notes": [
            "Local times are written without zone. On the autumn daylight-saving change the repeated hour appears twice "
            "(two rows per local minute), and the skipped spring hour has no rows; America/Phoenix has neither.",
            "Heart-rate rows exist only for worn minutes; gaps are non-wear, showers and charging.",
        ],
    }
    (truth / "truth.json").write_text(json.dumps(document, indent=1, default=str))


def _write_readme(out: Path, config) -> None:
    (out / "README.md").write_text(f"""# Synthetic cohort (explorer synth)

{config.participants} participants, {config.days} days of minute-level wearable data from {config.start}, seed {config.seed}.
Nothing here describes a real person.

| folder | format | as delivered by |
|---|---|---|
| fitbit_aou/<table>/part-*.csv | CSV: heart_rate_minute_level, steps_intraday, sleep_level, sleep_daily_summary, activity_summary, heart_rate_summary | All of Us-style table exports (local time, no zone) |
| fitbit_export/<participant>/ | Fitbit account export JSON (Physical Activity/, Sleep/) or Google Takeout (Takeout/Fitbit/Global Export Data/), one file per day per stream, heart rate sampled every 5-15 s | participants uploading their own exports |
| apple_health/<participant>/apple_health_export/export.xml | Apple Health export (`--apple-health-fraction`) | participants uploading their own exports |
| garmin_fit/<participant>/GARMIN/Monitor/<date>.FIT | Garmin FIT monitoring files, one a day, no sleep (`--garmin-fit-fraction`) | participants copying their watch's files |
| fhir/<participant>.json | FHIR R4 transaction Bundle: Patient, Encounter, Observation (LOINC, UCUM), Condition | the EHR |
| labs/*.csv | long-format lab results, units as each lab reports them | outside laboratories |
| residence/residence_history.csv | residence history with moves | address geocoding |
| environment/*.nc | CF NetCDF daily tasmax/tasmin (K or degC) and PM2.5 (ug/m3) | climate and air-quality providers |
| environment/ghcn/ | GHCN-Daily: ghcnd-stations.txt and by-station CSV (no header, tenths of degC) | NOAA NCEI |
| environment/aqs/daily_88101_<year>.csv | EPA AQS daily summaries of PM2.5 monitors (each day once per pollutant standard) | EPA AirData |
| area/*.csv | tract lead-exposure risk decile; deprivation index by year | area-level indices |
| truth/ | everything planted (see truth/truth.json) | not input: for checking analyses |
""")
