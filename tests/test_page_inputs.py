"""Inputs that forgive (issue 23): a day typed as 2024-08-15, a day the grid lacks, a table that
is not in the lake. Each is shown as a message where the view would be, and the rest stays."""

from __future__ import annotations

import datetime

import pandas as pd
import pytest


def _rendered(obj):
    """``obj`` as a served page would draw it (a Bokeh model), so a failure to render shows here."""
    import panel as pn
    from bokeh.document import Document

    return pn.panel(obj).get_root(Document())


def _texts(obj) -> str:
    """The text of every pane of a Panel layout (Markdown, Alert) as a reader sees it (entities
    and Markdown escapes undone), for assertions."""
    import html

    import panel as pn

    found = []
    for part in pn.panel(obj).select(lambda o: isinstance(getattr(o, "object", None), str)):
        found.append(part.object)
    return html.unescape("\n".join(found)).replace("\\", "")


@pytest.fixture(scope="module")
def grid_days(cohort_lake):
    from explorer.exposure import open_grids

    grid = open_grids(cohort_lake.sql("SELECT * FROM array_store"), cohort_lake.root, ("tasmax",))["tasmax"]
    times = pd.DatetimeIndex(grid["time"].values).normalize()
    return times[0].date(), times[-1].date()


def test_the_map_takes_a_day_as_text_or_as_a_date(cohort_lake, grid_days):
    from explorer.views import ExposureMap

    first, last = grid_days
    day = first + datetime.timedelta(days=1)
    for given in (day.isoformat(), day, datetime.datetime.combine(day, datetime.time()), pd.Timestamp(day)):
        view = ExposureMap(lake=cohort_lake, date=given)
        assert view.date == day and type(view.date) is datetime.date
        assert pd.Timestamp(view.data()["time"].values).date() == day
    view = ExposureMap(lake=cohort_lake)
    view.date = day.isoformat()  # as a widget or the URL sets it
    assert view.date == day
    # the URL holds the day as YYYY-MM-DD and reads it back
    assert view.param["date"].serialize(view.date) == day.isoformat()
    assert view.param["date"].deserialize(day.isoformat()) == day
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        view.date = "not a day"
    assert view.date == day


def test_the_map_draws_a_date_picker(cohort_lake):
    import panel as pn

    from explorer.views import ExposureMap

    widgets = pn.Param(ExposureMap(lake=cohort_lake), parameters=["variable", "date"], show_name=False)
    assert any(isinstance(w, pn.widgets.DatePicker) for w in widgets.layout)


def test_a_day_the_grid_lacks_names_the_days_it_has(cohort_lake, grid_days):
    import panel as pn

    from explorer.views import ExposureMap

    first, last = grid_days
    shown = ExposureMap(lake=cohort_lake, date="1900-01-01").panel()  # raises nothing
    assert isinstance(shown, pn.pane.Alert)
    text = shown.object
    assert "1900" in text and first.isoformat().replace("-", "\\-") in text and last.isoformat().replace("-", "\\-") in text
    _rendered(shown)
    assert ExposureMap(lake=cohort_lake, date=str(last)).panel() is not None


def test_the_environment_page_keeps_the_rest_for_a_day_the_grid_lacks(cohort_lake):
    """The page as dashboards/environment.py builds it: the map's message, the other views drawn."""
    import panel as pn

    from explorer.serve import guarded, url_synced
    from explorer.views import ExposureMap, HeatWaveCalendar

    view = ExposureMap(lake=cohort_lake, role="researcher")
    parts = [url_synced(view, ["variable", "date"]), guarded(lambda: view),
             guarded(lambda: HeatWaveCalendar(lake=cohort_lake, role="researcher"))]
    view.date = "1900-01-01"
    page = pn.Column(*parts)
    _rendered(page)
    text = _texts(page)
    assert "No map for that day" in text and "the grid covers" in text
    assert any(isinstance(p, pn.pane.HoloViews) for p in page.select(pn.pane.HoloViews))  # the calendar


def test_the_catalog_names_a_table_it_has_not_got_and_keeps_the_rest(cohort_lake):
    import panel as pn

    from explorer.views import CatalogOverview

    tables = sorted(cohort_lake.tables())
    view = CatalogOverview(lake=cohort_lake, role="researcher", table="nope")  # as ?table=nope sets it
    assert view.table == "nope"
    shown = view.panel()
    _rendered(shown)
    text = _texts(shown)
    assert "no table 'nope'; tables: " + ", ".join(tables) in text
    assert any(isinstance(part, pn.widgets.Tabulator) for part in shown.objects)  # the datasets and runs still show
    assert "Datasets" in text and "Refresh runs" in text
    close = CatalogOverview(lake=cohort_lake, role="researcher", table="wearable_dialy").panel()
    assert "did you mean 'wearable_daily'" in _texts(close)


def test_the_catalog_table_is_a_dropdown_of_the_lakes_tables(cohort_lake):
    import panel as pn

    from explorer.serve import url_synced
    from explorer.views import CatalogOverview

    view = CatalogOverview(lake=cohort_lake, role="researcher")
    assert view.table in cohort_lake.tables()
    widgets = url_synced(view, ["table", "before", "after"])
    select = widgets.layout.select(pn.widgets.Select)
    assert select and set(select[0].options) == set(cohort_lake.tables())
    # another view's choices are its own lake's: the class keeps none of them
    assert "nope" not in CatalogOverview.param["table"].objects


@pytest.mark.parametrize("query, expected", [("?date=2024-08-15", datetime.date(2024, 8, 15)),
                                             ("?date=1900-01-01", datetime.date(1900, 1, 1)),
                                             ("?date=not-a-day", None)])
def test_the_url_holds_the_day_as_yyyy_mm_dd(query, expected):
    """As url_synced keeps a view in the page URL (Panel's Location): the day is read back from
    ?date=YYYY-MM-DD and written as it; what is not a day is left out, not raised."""
    from panel.io.location import Location

    from explorer.views import ExposureMap

    view = ExposureMap()
    location = Location(search=query)
    location.sync(view, {"variable": "variable", "date": "date"})
    assert view.date == expected
    view.date = datetime.date(2024, 8, 20)
    assert "date=2024-08-20" in location.search


def test_the_date_picker_shows_the_day_on_the_map_and_offers_only_the_grids_days(cohort_lake, grid_days):
    import panel as pn

    from explorer.serve import url_synced
    from explorer.views import ExposureMap

    first, last = grid_days
    view = ExposureMap(lake=cohort_lake, role="public")
    assert view.date == last  # not an empty box beside a map of the last day
    picker = url_synced(view, ["variable", "date"]).layout.select(pn.widgets.DatePicker)
    assert picker and picker[0].value == last and (picker[0].start, picker[0].end) == (first, last)
    assert ExposureMap(lake=cohort_lake, role="public", date="2024-08-15").date == datetime.date(2024, 8, 15)


def test_a_person_is_found_by_typing_part_of_the_id(cohort_lake):
    import panel as pn

    from explorer.serve import url_synced
    from explorer.views import PersonMinutes

    ids = cohort_lake.sql("SELECT DISTINCT person_id FROM wearable_daily")["person_id"].tolist()
    view = PersonMinutes(lake=cohort_lake, role="researcher", person_id=ids[0])
    search = url_synced(view, ["person_id"]).layout.select(pn.widgets.AutocompleteInput)
    assert search and set(search[0].options) == set(ids) and search[0].value == ids[0]
    assert not search[0].restrict  # an id from a link is still taken (and answered with a message)


def test_the_builder_offers_known_values_instead_of_free_text():
    import panel as pn

    from explorer.catalog import default_catalog
    from explorer.views.cohorts import CriterionEditor

    editor = CriterionEditor("inclusion", {"kind": "demographics", "race": ["White", "Whte"]}, lambda: None)
    race = editor.widgets["race"]
    assert isinstance(race, pn.widgets.MultiChoice)
    assert set(default_catalog().get("person").column("race").values) <= set(race.options)
    assert "Whte" in race.options and editor.document()["race"] == ["White", "Whte"]  # a loaded value is kept (and checked)
    editor.widgets["sex_at_birth"].value = ["female"]
    assert editor.document()["sex_at_birth"] == ["female"]
    lab = CriterionEditor("inclusion", {"kind": "lab", "loinc": "2345-7"}, lambda: None)
    assert isinstance(lab.widgets["loinc"], pn.widgets.AutocompleteInput) and "2160-0" in lab.widgets["loinc"].options
    assert lab.document()["loinc"] == "2345-7"
