"""The metric registry: each metric declared once, its units read from the catalog column that
holds it, and every consumer (cohort criteria, views, the CLI listing) reading the same entry."""

import pytest

from explorer.catalog import default_catalog
from explorer.catalog.metrics import METRICS, Metric, MetricRegistry, registry_frame
from explorer.cohorts import EXPOSURE_VARIABLES, WEARABLE_METRICS
from explorer.errors import CatalogError


def test_every_metric_is_stored_in_a_catalogued_column_and_its_units_are_that_columns_unit():
    catalog = default_catalog()
    assert len(METRICS) >= 25
    for name, metric in METRICS.items():
        entry = catalog[metric.table]
        column = entry.column(metric.column)
        assert metric.units == (column.unit or "1"), name
        assert metric.identifier == name and metric.reference and callable(metric.function), name


def test_the_unit_disagreements_of_the_three_old_tables_are_gone():
    # sleep efficiency was "%" in the cohort definition but "1" elsewhere; tas_anomaly "degC" vs "K"
    assert WEARABLE_METRICS["sleep_efficiency"].units == METRICS["sleep_efficiency"].units == "1"
    assert EXPOSURE_VARIABLES["tas_anomaly"].units == METRICS["tas_anomaly"].units == "K"
    assert EXPOSURE_VARIABLES["tasmax"].units == "Cel" and METRICS["tasmax"].unit_label == "°C"


def test_cohort_criteria_offer_the_numeric_per_person_metrics_of_their_domain():
    assert {"steps", "resting_hr", "sleep_efficiency", "interdaily_stability", "sleep_regularity_index"} <= set(WEARABLE_METRICS)
    assert "valid_day" not in WEARABLE_METRICS  # a flag: a median of it means nothing
    assert set(EXPOSURE_VARIABLES) == {"tasmax", "tasmin", "pm25", "tas_anomaly", "heat_wave"}
    assert all(m is METRICS[name] for name, m in WEARABLE_METRICS.items())


def test_public_histograms_take_their_fixed_bins_from_the_registry():
    from explorer.views import CohortWearableDistributions

    for identifier, _ in CohortWearableDistributions.HISTOGRAMS.values():
        bins = METRICS[identifier].bins
        assert bins is not None and len(bins) > 2 and list(bins) == sorted(bins), identifier


def test_unknown_metric_names_the_nearest():
    with pytest.raises(CatalogError, match="did you mean 'resting_hr'"):
        METRICS["resting_hrr"]
    import explorer.wearables as wearables

    with pytest.raises(CatalogError, match="did you mean 'steps'"):
        wearables.METRICS["step"]


def test_a_metric_declared_twice_differently_is_refused_and_a_missing_column_is_named():
    registry = MetricRegistry()
    registry._loaded = True  # a registry of this test's own, without the suite's modules
    first = Metric("x", "X", "wearable_daily", "steps", len, "ref", "wearables")
    registry.register(first)
    registry.register(first)  # the same declaration again (a module imported twice) is fine
    with pytest.raises(CatalogError, match="declared twice"):
        registry.register(Metric("x", "Other X", "wearable_daily", "steps", len, "ref", "site"))
    with pytest.raises(CatalogError, match="has no column 'stepz'.*did you mean 'steps'"):
        Metric("y", "Y", "wearable_daily", "stepz", len, "ref", "wearables").units
    with pytest.raises(CatalogError, match="no catalog entry"):
        Metric("z", "Z", "no_such_table", "v", len, "ref", "wearables").units


def test_listing_shows_units_from_the_catalog():
    frame = registry_frame(METRICS.select(domain="exposure"))
    assert frame.set_index("metric").loc["pm25", "units"] == "ug/m3"
    assert frame.set_index("metric").loc["heat_wave_days", "stored in"] == "event_exposure.heat_wave_days"


def test_profiles_and_roles_are_declared_once_and_every_chooser_reads_them(tmp_path, monkeypatch):
    from explorer.catalog.entries import SENSITIVITY_TIERS
    from explorer.command.common import DISCLOSURE_PROFILES, ROLES
    from explorer.privacy import PROFILES
    from explorer.privacy import ROLES as PRIVACY_ROLES
    from explorer.serve import Credentials, serve
    from explorer.views import DemographicCounts

    assert DISCLOSURE_PROFILES == list(PROFILES) and ROLES == list(PRIVACY_ROLES) == list(SENSITIVITY_TIERS)
    assert DemographicCounts(role="public").disclosure.profile == "aou"
    monkeypatch.setenv("EXPLORER_DISCLOSURE_PROFILE", "ukbiobank")  # what `explorer serve --profile ukbiobank` sets
    assert DemographicCounts(role="public").disclosure.rules.label == "<5"
    users = tmp_path / "users.json"
    Credentials.add(users, "pat", "public", "a-long-password")
    with pytest.raises(Exception, match="disclosure profile 'cmz' is unknown.*did you mean 'cms'"):
        serve(tmp_path / "lake", users, profile="cmz")  # refused before anything is served
