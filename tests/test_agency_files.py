"""Station and area files as the agencies publish them (tests/data/aqs, ghcn, ncei_daily, svi, adi,
written by hand from their documentation; tests/data/README.md cites each): rows landed and
quarantined per file, values in the catalog's units, missing and suppression codes never stored,
linkage to residences by the existing station and area methods; and the refusal of a file no
reader accepts, told by the nearest reader."""

from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import explorer
from explorer.exposure import area_linkage, residence_days, station_values
from explorer.exposure.linkage import haversine_km
from explorer.ingest.readers.agencies import census_geoid
from explorer.testing.ingest import file_outcomes as files, quarantine_reasons as reasons, row_counts as counts

DATA = Path(__file__).resolve().parent / "data"
KEY = "agency-fixture-key-0123456789abcdef"
NOW = datetime(2025, 1, 1)


@pytest.fixture
def lake(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_PSEUDONYM_KEY", KEY)
    monkeypatch.delenv("EXPLORER_PSEUDONYM_KEY_FILE", raising=False)
    monkeypatch.delenv("EXPLORER_STATION_UNITS", raising=False)
    monkeypatch.delenv("EXPLORER_AREA_YEAR", raising=False)
    return explorer.open(tmp_path / "lake")


# -- EPA AQS -----------------------------------------------------------------------------------


def test_aqs_daily_summaries_as_station_series(lake):
    lake.ingest(DATA / "aqs", now=NOW)
    found = files(lake)
    assert set(found["format"]) == {"epa_aqs_daily_csv"}
    # 5 rows: 2 July 4 rows of one monitor differing only in Pollutant Standard, a July 5 pair with
    # events Included / Excluded, and another site's July 4
    assert counts(found, "daily_88101_2023.csv") == [5, 3, 0, 2]
    assert counts(found, "daily_88502_2023.csv") == [1, 1, 0, 0]
    assert counts(found, "daily_44201_2023.csv") == [3, 2, 0, 1]
    assert found.loc["daily_88101_2023.csv", "ignored"] == ("AQS monitor-day repeated under another pollutant standard: 1; "
                                                            "AQS monitor-day with exceptional events excluded (stored as measured, "
                                                            "events included): 1")
    assert found.loc["daily_44201_2023.csv", "ignored"] == "AQS monitor-day repeated under another pollutant standard: 1"

    rows = lake.sql("SELECT station_id, date, element, value, unit, source_value, source_unit FROM weather_station_daily")
    rows["date"] = pd.to_datetime(rows["date"]).dt.date
    value = rows.set_index(["station_id", "date", "element"])["value"]
    # the monitor ID as the AirData documentation writes it: SS-CCC-NNNN-PPPPP-Q
    assert value[("04-013-9997-88101-1", date(2023, 7, 4), "PM25")] == pytest.approx(12.3)
    assert value[("04-013-9997-88101-1", date(2023, 7, 5), "PM25")] == pytest.approx(35.5)  # events included: as breathed
    assert value[("04-013-0019-88101-1", date(2023, 7, 4), "PM25")] == pytest.approx(14.0)
    assert value[("04-013-9997-88502-3", date(2023, 7, 4), "PM25")] == pytest.approx(10.6)  # the mean, not the 19.0 maximum
    # ozone: 0.071 ppm daily maximum 8-hour average = 71 ppb; 0.082 ppm maximum hour = 82 ppb
    assert value[("04-013-9997-44201-1", date(2023, 7, 4), "O3_MDA8")] == pytest.approx(71.0)
    assert value[("04-013-9997-44201-1", date(2023, 7, 4), "O3_MAX1H")] == pytest.approx(82.0)
    assert set(rows.loc[rows["element"] == "PM25", "unit"]) == {"ug/m3"}
    assert set(rows.loc[rows["element"].str.startswith("O3"), "unit"]) == {"ppb"}
    assert set(rows.loc[rows["element"].str.startswith("O3"), "source_unit"]) == {"Parts per million"}
    assert len(rows) == 6


def test_aqs_stations_linked_to_residences(lake):
    lake.ingest(DATA / "aqs", now=NOW)
    pm = lake.sql("SELECT station_id, latitude, longitude, date, value FROM weather_station_daily WHERE element = 'PM25'")
    site_a, site_b = (33.503833, -112.095767), (33.483850, -112.142570)
    # at site A two PM2.5 monitors share the place: inverse-distance weighting gives both all the weight
    at_a = station_values(pm, ["2023-07-04"], [site_a[0]], [site_a[1]], method="idw")
    assert at_a[0] == pytest.approx((12.3 + 10.6) / 2)
    # at site B only its own monitor is nearest
    assert station_values(pm, ["2023-07-04"], [site_b[0]], [site_b[1]])[0] == pytest.approx(14.0)
    # between them on July 5 only site A reported: the nearest station with a value that day
    middle = ((site_a[0] + site_b[0]) / 2, (site_a[1] + site_b[1]) / 2)
    assert station_values(pm, ["2023-07-05"], [middle[0]], [middle[1]])[0] == pytest.approx(35.5)
    # idw between A (two monitors, mean 11.45) and B (14.0) on July 4: equal distances, so weights 1:1:1
    d_a, d_b = haversine_km(middle[0], middle[1], *site_a), haversine_km(middle[0], middle[1], *site_b)
    assert d_a == pytest.approx(d_b, rel=1e-3)
    expected = (12.3 / d_a**2 + 10.6 / d_a**2 + 14.0 / d_b**2) / (2 / d_a**2 + 1 / d_b**2)
    assert station_values(pm, ["2023-07-04"], [middle[0]], [middle[1]], method="idw")[0] == pytest.approx(expected)
    assert expected == pytest.approx((12.3 + 10.6 + 14.0) / 3, rel=1e-3)


# -- GHCN-Daily and NCEI daily summaries -------------------------------------------------------


def test_ghcn_by_station_with_station_list(lake):
    lake.ingest(DATA / "ghcn", now=NOW)
    found = files(lake)
    assert found.loc["ghcnd-stations.txt", "format"] == "ghcnd_stations_txt"
    assert counts(found, "ghcnd-stations.txt") == [2, 2, 0, 0]
    assert found.loc["USW00023183.csv", "format"] == "ghcn_daily_by_station_csv"  # no header, as NOAA writes them
    assert found.loc["USC00026481.csv", "format"] == "ghcn_daily_by_station_csv"  # with the header
    assert counts(found, "USW00023183.csv") == [7, 4, 2, 1]
    assert counts(found, "USC00026481.csv") == [2, 2, 0, 0]
    why = reasons(lake, "USW00023183.csv")
    assert "-9999" in why[0] and "missing" in why[0]
    assert "Q_FLAG X" in why[1] and "bounds" in why[1]
    assert found.loc["USW00023183.csv", "ignored"] == "GHCN element SNOW, not kept: 1"

    rows = lake.sql("SELECT station_id, latitude, longitude, date, element, value, unit FROM weather_station_daily")
    rows["date"] = pd.to_datetime(rows["date"]).dt.date
    value = rows.set_index(["station_id", "date", "element"])["value"]
    # tenths of degC and tenths of mm (readme section III)
    assert value[("USW00023183", date(2023, 7, 4), "TMAX")] == pytest.approx(45.6)
    assert value[("USW00023183", date(2023, 7, 4), "TMIN")] == pytest.approx(31.7)
    assert value[("USW00023183", date(2023, 7, 4), "PRCP")] == 0.0  # trace (M_FLAG T) is written as 0
    assert value[("USW00023183", date(2023, 7, 6), "TAVG")] == pytest.approx(38.9)
    assert value[("USC00026481", date(2023, 7, 4), "PRCP")] == pytest.approx(2.5)
    assert ("USW00023183", date(2023, 7, 5), "TMIN") not in value.index  # 99.9 degC failed the bounds check
    where = rows.drop_duplicates("station_id").set_index("station_id")
    assert where.loc["USW00023183", ["latitude", "longitude"]].tolist() == [33.4278, -112.0037]  # from the station list
    stations = lake.sql("SELECT station_id, elevation FROM weather_station").set_index("station_id")["elevation"]
    assert stations["USW00023183"] == pytest.approx(337.4) and pd.isna(stations["USC00026481"])  # -999.9: missing

    tmax = rows[rows["element"] == "TMAX"]
    home = (33.44, -111.96)  # 1.4 km from USC00026481, 4.2 km from the airport
    assert station_values(tmax, ["2023-07-04"], [home[0]], [home[1]])[0] == pytest.approx(44.4)


def test_ghcn_without_station_list_refused_with_what_to_do(lake, tmp_path):
    (tmp_path / "USW00099999.csv").write_text("USW00099999,20230704,TMAX,301,,,W,\n")
    lake.ingest(tmp_path / "USW00099999.csv", now=NOW)
    found = files(lake)
    assert found.loc["USW00099999.csv", "status"] == "quarantined"
    reason = found.loc["USW00099999.csv", "reason"]
    assert "USW00099999" in reason and "no coordinates" in reason and "ghcnd-stations.txt" in reason
    assert "--retry-quarantined" in reason


def test_ncei_daily_summaries_need_declared_units(lake, monkeypatch):
    lake.ingest(DATA / "ncei_daily", now=NOW)
    found = files(lake)
    assert found.loc["daily_summaries_standard.csv", "status"] == "quarantined"
    assert "--station-units" in found.loc["daily_summaries_standard.csv", "reason"]
    monkeypatch.setenv("EXPLORER_STATION_UNITS", "standard")
    lake.ingest(DATA / "ncei_daily", now=NOW, retry_quarantined=True)
    found = files(lake)
    accepted = found[found["status"] == "accepted"]
    assert accepted["format"].tolist() == ["noaa_daily_summaries_csv"]
    # 5 filled element cells (the empty PRCP of July 5 is no record); TMAX 120 on July 5 has Q flag X
    assert accepted[["rows_read", "rows_accepted", "rows_quarantined", "rows_ignored"]].values.tolist() == [[5, 4, 1, 0]]
    assert "Q_FLAG X" in reasons(lake, "daily_summaries_standard.csv")[0]
    rows = lake.sql("SELECT date, element, value, unit FROM weather_station_daily ORDER BY date, element")
    rows["date"] = pd.to_datetime(rows["date"]).dt.date
    value = rows.set_index(["date", "element"])["value"]
    assert value[(date(2023, 7, 4), "TMAX")] == pytest.approx((114 - 32) * 5 / 9)  # 45.56 degC
    assert value[(date(2023, 7, 4), "TMIN")] == pytest.approx((89 - 32) * 5 / 9)
    assert value[(date(2023, 7, 4), "PRCP")] == pytest.approx(0.10 * 25.4)  # 2.54 mm
    assert value[(date(2023, 7, 5), "TMIN")] == pytest.approx((90 - 32) * 5 / 9)
    assert len(rows) == 4


# -- SVI and ADI -------------------------------------------------------------------------------


def test_svi_tracts_with_missing_codes_never_stored(lake):
    lake.ingest(DATA / "svi", now=NOW)
    found = files(lake)
    assert found.loc["SVI_2020_US.csv", "format"] == "cdc_svi_csv"
    # 3 tracts x 7 kept columns (EP_POV150, EP_UNEMP, RPL_THEME1..4, RPL_THEMES); the unpopulated tract's 7 are -999
    assert counts(found, "SVI_2020_US.csv") == [21, 14, 0, 7]
    assert found.loc["SVI_2020_US.csv", "ignored"] == "SVI -999 (a value that could not be computed): 7"
    rows = lake.sql("SELECT area_type, area_id, year, variable, value, unit FROM area_exposure")
    assert (rows["value"] != -999).all() and rows["value"].between(0, 100).all()
    assert set(rows["area_type"]) == {"tract"} and set(rows["year"]) == {2020}
    value = rows.set_index(["area_id", "variable"])
    # FIPS 1001020100 lost Alabama's leading zero in the CSV: the tract is 01001020100
    assert value.loc[("01001020100", "svi_rpl_themes"), "value"] == pytest.approx(0.3235)
    assert value.loc[("04013103800", "svi_rpl_theme3"), "value"] == pytest.approx(0.9402)
    assert value.loc[("04013103800", "svi_ep_pov150"), ["value", "unit"]].tolist() == [pytest.approx(35.2), "%"]
    assert value.loc[("04013103800", "svi_rpl_themes"), "unit"] == "1"
    assert "04013990000" not in set(rows["area_id"])


def test_adi_block_groups_with_suppression_codes(lake):
    lake.ingest(DATA / "adi", now=NOW)
    found = files(lake)
    name = "AZ_2021_ADI_Census_Block_Group_v4_0_1.csv"
    assert found.loc[name, "format"] == "neighborhood_atlas_adi_csv"
    assert counts(found, name) == [10, 4, 0, 6]  # 5 block groups x 2 ranks; PH, GQ, PH-GQ and QDI are no ranks
    kinds = dict(kind.rsplit(": ", 1) for kind in found.loc[name, "ignored"].split("; "))
    assert {k.split()[1]: int(n) for k, n in kinds.items()} == {"PH": 2, "GQ": 2, "PH-GQ": 1, "QDI": 1}
    rows = lake.sql("SELECT area_type, area_id, year, variable, value, unit FROM area_exposure ORDER BY area_id, variable")
    assert rows[["area_id", "variable", "value", "unit"]].values.tolist() == [
        ["040131038001", "adi_national_rank", 87.0, "{percentile}"], ["040131038001", "adi_state_decile", 8.0, "{decile}"],
        ["040131039001", "adi_national_rank", 23.0, "{percentile}"], ["040131039001", "adi_state_decile", 3.0, "{decile}"]]
    assert set(rows["area_type"]) == {"block_group"} and set(rows["year"]) == {2021}


def test_area_indices_linked_by_area_linkage(lake, tmp_path):
    lake.ingest(DATA / "svi", now=NOW)
    lake.ingest(DATA / "adi", now=NOW)
    residence = pd.DataFrame({"person_id": ["p1", "p1"], "start_date": [date(2021, 1, 1), date(2022, 3, 1)],
                              "end_date": [date(2022, 2, 28), None], "latitude": [33.45, 33.46], "longitude": [-112.07, -112.08],
                              "zip3": ["850", "850"], "tract_geoid": ["04013103800", "04013990000"],
                              "block_group_geoid": ["040131038001", "040131038002"]})
    days = residence_days(residence, date(2021, 1, 1), date(2022, 12, 31))
    exposure = lake.sql("SELECT * FROM area_exposure")
    svi = area_linkage(days, exposure, area_type="tract", variable="svi_rpl_themes")
    # 2021: tract 1038 all year, SVI 2020 holds until the next release; 2022: the tract without population
    # (-999, not stored) is held 306 days, so no value, never -999
    assert svi[["year", "area_id", "value", "value_year"]].values.tolist()[0] == [2021, "04013103800", pytest.approx(0.9016), 2020]
    assert svi.loc[1, "area_id"] == "04013990000" and pd.isna(svi.loc[1, "value"])
    adi = area_linkage(days, exposure, area_type="block_group", variable="adi_national_rank")
    assert adi.loc[0, "value"] == 87.0 and adi.loc[0, "unit"] == "{percentile}"
    assert pd.isna(adi.loc[1, "value"])  # block group 2 is suppressed (PH): no rank


def test_area_year_declared_when_the_name_lacks_it(lake, tmp_path, monkeypatch):
    (tmp_path / "svi_tracts.csv").write_bytes((DATA / "svi" / "SVI_2020_US.csv").read_bytes())
    lake.ingest(tmp_path / "svi_tracts.csv", now=NOW)
    reason = files(lake).loc["svi_tracts.csv", "reason"]
    assert "--area-year" in reason and "svi_tracts.csv" in reason
    monkeypatch.setenv("EXPLORER_AREA_YEAR", "2018")
    lake.ingest(tmp_path / "svi_tracts.csv", now=NOW, retry_quarantined=True)
    assert set(lake.sql("SELECT year FROM area_exposure")["year"]) == {2018}


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="0123456789", min_size=1, max_size=14), st.sampled_from([11, 12]))
def test_census_geoid_restores_one_dropped_zero_only(text, digits):
    out = census_geoid(pd.Series([text]), digits)[0]
    if len(text) == digits:
        assert out == text
    elif len(text) == digits - 1:
        assert out == "0" + text and out.lstrip("0") == text.lstrip("0")
    else:
        assert pd.isna(out)


# -- refusals that help ------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "text", "nearest", "said"), [
    ("labs.csv", "Participant ID,specimen_collected,LOINC,result,unit\n1,2024-01-02 08:00,2345-7,99,mg/dL\n",
     "lab_results_long_csv", ["'Participant ID' for participant_id", "missing: loinc_code", "rename"]),
    ("daily_88101_1999.csv", '"State Code","County Code","Site Num","Parameter Code","POC","Latitude","Longitude",'
     '"Sample Duration","Date Local","Units of Measure","Arithmetic Mean","AQI"\n'
     '"04","013","9997","88101",1,33.5,-112.1,"24 HOUR","1999-07-04","Micrograms/cubic meter (LC)",12.3,51\n',
     "epa_aqs_daily_csv", ["missing: 1st Max Value", "11 of them", "keep AirData's own column names"]),
    ("svi.csv", "FIPS,EP_POV150\n04013103800,35.2\n", "cdc_svi_csv", ["missing: RPL_THEMES"]),
])
def test_unreadable_file_names_the_nearest_reader(lake, tmp_path, name, text, nearest, said):
    (tmp_path / name).write_text(text)
    lake.ingest(tmp_path / name, now=NOW)
    found = files(lake)
    assert found.loc[name, "status"] == "quarantined"
    reason = found.loc[name, "reason"]
    assert reason.startswith(f"no reader accepted this file; the nearest is {nearest} (")
    for part in said:
        assert part in reason
    assert "fitbit_aou_heart_rate_minute" not in reason  # not a list of every reader's reason


def test_unreadable_file_near_nothing_lists_the_readers(lake, tmp_path):
    (tmp_path / "notes.txt").write_text("call the lab on monday\n")
    lake.ingest(tmp_path / "notes.txt", now=NOW)
    reason = files(lake).loc["notes.txt", "reason"]
    assert reason.startswith("no reader accepted this file: ") and "residence_history_csv" in reason


def test_cli_help_explains_the_new_options(capsys):
    from explorer.command import main
    with pytest.raises(SystemExit):
        main(["ingest", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--station-units {standard,metric}" in out and "degF, inches" in out
    assert "--area-year YYYY" in out and "SVI_2020_US.csv" in out


# -- explorer synth writes the agency shapes; ingest and linkage give back what it planted ---------


def test_synth_station_files_recovered_by_ingest_and_linkage(lake, tmp_path):
    from explorer.synth import SynthConfig, generate

    out = tmp_path / "cohort"
    generate(out, SynthConfig(participants=3, days=3, seed=5, start=date(2024, 7, 1), workers=1))
    assert (out / "environment" / "ghcn" / "ghcnd-stations.txt").exists()
    assert sorted(p.name for p in (out / "environment" / "aqs").iterdir())[0].startswith("daily_88101_")
    lake.ingest(out / "environment" / "ghcn", now=NOW)
    lake.ingest(out / "environment" / "aqs", now=NOW)
    found = files(lake)
    assert set(found["format"]) == {"ghcnd_stations_txt", "ghcn_daily_by_station_csv", "epa_aqs_daily_csv"}
    aqs = found[found["format"] == "epa_aqs_daily_csv"]
    # every AQS day is written twice (two pollutant standards): half the rows land, the repeats are counted as ignored
    assert (aqs["rows_accepted"] * 2 == aqs["rows_read"]).all() and (aqs["rows_ignored"] == aqs["rows_accepted"]).all()
    assert (aqs["rows_quarantined"] == 0).all()

    truth = pd.read_parquet(out / "truth" / "truth_stations.parquet")
    truth["date"] = pd.to_datetime(truth["date"]).dt.date
    landed = lake.sql("SELECT station_id, latitude, longitude, date, element, value, unit FROM weather_station_daily")
    landed["date"] = pd.to_datetime(landed["date"]).dt.date
    key = ["station_id", "date", "element"]
    both = truth.merge(landed, on=key, suffixes=("_planted", "_landed"), how="outer", indicator=True)
    assert (both["_merge"] == "both").all() and len(both) == len(truth)  # nothing lost, nothing invented
    assert np.allclose(both["value_planted"], both["value_landed"])
    assert np.allclose(both["latitude_planted"], both["latitude_landed"], atol=5e-5)  # the station list's 4 decimals
    assert (both["unit_planted"] == both["unit_landed"]).all()

    # linkage at each monitor's own place gives back the planted value of that day
    pm = landed[landed["element"] == "PM25"]
    planted = truth[truth["element"] == "PM25"]
    got = station_values(pm, planted["date"], planted["latitude"], planted["longitude"], max_distance_km=1.0)
    assert np.allclose(got, planted["value"].to_numpy())
    tmax = landed[landed["element"] == "TMAX"]
    planted = truth[truth["element"] == "TMAX"]
    got = station_values(tmax, planted["date"], planted["latitude"], planted["longitude"], method="idw", max_distance_km=0.01)
    assert np.allclose(got, planted["value"].to_numpy())


def test_hand_adapted_svi_keeps_no_missing_code_and_gets_units(lake, tmp_path):
    # the finding: SVI renamed by hand to the generic area layout stored -999 as a value and no unit
    (tmp_path / "svi_by_hand.csv").write_text("tract_geoid,year,RPL_THEMES,EP_POV150\n"
                                              "04013103800,2020,0.9016,35.2\n04013990000,2020,-999,-999\n")
    lake.ingest(tmp_path / "svi_by_hand.csv", now=NOW)
    found = files(lake)
    assert found.loc["svi_by_hand.csv", "format"] == "area_index_csv"
    assert counts(found, "svi_by_hand.csv") == [2, 1, 1, 0]
    assert "-999" in reasons(lake, "svi_by_hand.csv")[0]
    rows = lake.sql("SELECT variable, value, unit FROM area_exposure ORDER BY variable")
    assert rows.values.tolist() == [["EP_POV150", 35.2, "%"], ["RPL_THEMES", 0.9016, "1"]]


def test_svi_county_database_links_by_the_tracts_county(lake, tmp_path):
    # the county database: FIPS is the 5-digit state + county code (Alabama's leading zero dropped)
    (tmp_path / "SVI2020_US_COUNTY.csv").write_text("ST,STATE,ST_ABBR,STCNTY,COUNTY,FIPS,LOCATION,E_TOTPOP,RPL_THEMES\n"
                                                    '1,Alabama,AL,1001,Autauga County,1001,"Autauga County, Alabama",55639,0.4023\n'
                                                    '4,Arizona,AZ,4013,Maricopa County,4013,"Maricopa County, Arizona",4367186,0.6734\n')
    lake.ingest(tmp_path / "SVI2020_US_COUNTY.csv", now=NOW)
    assert counts(files(lake), "SVI2020_US_COUNTY.csv") == [2, 2, 0, 0]
    exposure = lake.sql("SELECT * FROM area_exposure")
    assert set(exposure["area_type"]) == {"county"} and set(exposure["area_id"]) == {"01001", "04013"}
    residence = pd.DataFrame({"person_id": ["p1"], "start_date": [date(2021, 1, 1)], "end_date": [None],
                              "latitude": [33.45], "longitude": [-112.07], "tract_geoid": ["04013103800"]})
    linked = area_linkage(residence_days(residence, date(2021, 1, 1), date(2021, 12, 31)), exposure, area_type="county")
    assert linked[["year", "area_id", "value", "value_year"]].values.tolist() == [[2021, "04013", pytest.approx(0.6734), 2020]]


def test_aqs_empty_event_type_is_no_event(lake, tmp_path):
    # a file saved again by a tool that reads the string "None" as missing writes an empty Event Type
    lines = (DATA / "aqs" / "daily_88101_2023.csv").read_text().splitlines()
    (tmp_path / "daily_88101_2023.csv").write_text(lines[0] + "\n" + lines[1].replace('"None"', '""') + "\n")
    lake.ingest(tmp_path / "daily_88101_2023.csv", now=NOW)
    assert counts(files(lake), "daily_88101_2023.csv") == [1, 1, 0, 0]
    assert lake.sql("SELECT value FROM weather_station_daily")["value"].tolist() == [pytest.approx(12.3)]


def test_explorer_ingest_command_with_declared_station_units(tmp_path):
    from conftest import run_cli

    env = {"EXPLORER_PSEUDONYM_KEY": KEY, "EXPLORER_STATION_UNITS": ""}
    refused = run_cli("ingest", DATA / "ncei_daily", "--no-quality", lake_root=tmp_path / "lake", env=env)
    assert refused.returncode == 0, refused.stderr  # bad input is reported, not a failure
    outcome = explorer.open(tmp_path / "lake").sql("SELECT status, reason FROM ingest_file")
    assert outcome["status"].tolist() == ["quarantined"] and "--station-units" in outcome["reason"][0]
    read = run_cli("ingest", DATA / "ncei_daily", "--station-units", "standard", "--retry-quarantined", "--no-quality",
                   lake_root=tmp_path / "lake", env=env)
    assert read.returncode == 0, read.stderr
    lake = explorer.open(tmp_path / "lake")
    rows = lake.sql("SELECT element, value FROM weather_station_daily WHERE date = DATE '2023-07-04' ORDER BY element")
    assert rows.values.tolist() == [["PRCP", pytest.approx(2.54)], ["TMAX", pytest.approx(45.5556, abs=1e-4)],
                                    ["TMIN", pytest.approx(31.6667, abs=1e-4)]]


class _Stations:
    """The one lookup the GHCN reader makes of its context."""

    def __init__(self, stations):
        self.reference = self
        self._stations = stations

    def weather_stations(self):
        return self._stations


GHCN_ROW = st.tuples(st.sampled_from(["TMAX", "TMIN", "TAVG", "PRCP", "SNOW", "AWND"]),
                     st.one_of(st.just(-9999), st.integers(-600, 600)), st.sampled_from(["", "", "", "X", "O", "D"]),
                     st.sampled_from(["", "T", "H"]))


@settings(max_examples=40, deadline=None)
@given(st.lists(GHCN_ROW, min_size=1, max_size=40))
def test_ghcn_every_row_accounted_and_kept_values_in_tenths(tmp_path_factory, records):
    from explorer.ingest.readers.agencies import GhcnDailyByStationReader

    path = tmp_path_factory.mktemp("ghcn") / "USW00023183.csv"
    path.write_text("".join(f"USW00023183,2023{1 + k // 28:02d}{1 + k % 28:02d},{element},{value},{m},{q},W,\n"
                            for k, (element, value, q, m) in enumerate(records)))
    result = GhcnDailyByStationReader().read(path, _Stations({"USW00023183": (33.4278, -112.0037)}))
    landed = result.tables["weather_station_daily"]
    assert len(landed) + len(result.quarantined) + sum(result.ignored.values()) == result.rows_read == len(records)
    assert sum(result.ignored.values()) == sum(element in ("SNOW", "AWND") for element, *_ in records)
    expected = [(k + 1, value / 10) for k, (element, value, q, m) in enumerate(records)
                if element in ("TMAX", "TMIN", "TAVG", "PRCP") and value != -9999 and q == ""]
    assert list(zip(landed["_row"], landed["value"])) == [(row, pytest.approx(v)) for row, v in expected]
    assert set(landed["unit"]) <= {"degC", "mm"}
