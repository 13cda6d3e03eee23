"""Issue 27, findings 1 and 7: what a user types, uploads or puts in a URL reaches a page only as
text; oversized and deeply nested cohort definitions are refused before they are parsed; a
researcher cannot read a steward-tier table through the catalog page."""

from __future__ import annotations

import html
import logging
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from explorer import cohorts
from explorer.cohorts.definition import MAX_DOCUMENT_BYTES, DefinitionError
from explorer.privacy import PermissionDenied
from explorer.views.base import message, plain_text


def markdown_to_html(text: str) -> str:
    """What Panel's Markdown pane sends to the browser for ``text`` (its own parser)."""
    import panel as pn

    pane = pn.pane.Markdown(text)
    parser = pn.pane.Markdown._get_parser(pane.renderer, tuple(pane.plugins), pane.hard_line_break,
                                          pane.disable_anchors, **pane.renderer_options)
    return parser.render(text)


PAYLOADS = ["<img src=x onerror=alert(1)>", '"><svg onload=alert(2)>', "<script>alert(3)</script>",
            "[link](javascript:alert(4))", "![i](x onerror=alert(5))", "<a href='javascript:alert(6)'>a</a>",
            "**bold** _it_ `code` # head", "&lt;img src=x onerror=alert(7)&gt;", "line\n\n<iframe src=//evil>"]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_a_payload_is_shown_as_the_text_it_is(payload):
    rendered = markdown_to_html(plain_text(payload))
    assert re.findall(r"<(\w+)", rendered) in (["p"], ["p", "p"]), rendered  # paragraphs only: no element of the payload
    shown = html.unescape(re.sub(r"<[^>]+>", "", rendered)).strip()
    assert re.sub(r"\s+", " ", shown) == re.sub(r"\s+", " ", payload.strip())


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=60))
def test_any_text_is_shown_as_written_and_never_as_markup(text):
    rendered = markdown_to_html(plain_text(text))
    tags = set(re.findall(r"</?(\w+)", rendered))
    assert tags <= {"p"}, rendered
    shown = html.unescape(re.sub(r"<[^>]+>", "", rendered))
    assert re.sub(r"\s+", "", shown) == re.sub(r"\s+", "", text)


def test_a_message_quotes_its_text_and_keeps_its_own_lead():
    alert = message("no table '<img src=x onerror=alert(1)>'", "danger", "Not available to you.")
    rendered = markdown_to_html(alert.object)
    assert "<strong>Not available to you.</strong>" in rendered and "<img" not in rendered


def test_an_oversized_definition_is_refused_before_it_is_parsed(monkeypatch):
    """Finding 7: an 8.6 MB upload with 200,000 criteria held the server for 17.5 s."""
    import yaml

    criteria = "".join("  - {kind: demographics, age: {gte: 18}}\n" for _ in range(200_000))
    document = "name: huge\nindex_date: {rule: first_valid_wear_day}\ninclusion:\n" + criteria
    assert len(document) > 8_000_000
    monkeypatch.setattr(yaml, "parse", lambda *a, **k: pytest.fail("the document was parsed"))
    with pytest.raises(DefinitionError, match=f"more than a cohort definition may have \\({MAX_DOCUMENT_BYTES:,}\\)"):
        cohorts.loads(document, "the uploaded file")


@pytest.mark.parametrize("nesting", ["[" * 500 + "]" * 500, "{a: " * 500 + "1" + "}" * 500,
                                     "inclusion:\n" + "".join("  " * i + "- all:\n" for i in range(500))])
def test_a_deeply_nested_definition_is_refused_with_a_message(nesting):
    """Finding 7: a 500-deep nesting raised an uncaught RecursionError."""
    with pytest.raises(DefinitionError, match="nested more than"):
        cohorts.loads(nesting, "the uploaded file")


def test_a_bad_upload_shows_why_in_the_builder_and_is_never_logged(cohort_lake, caplog):
    from explorer.views import CohortBuilder

    builder = CohortBuilder(lake=cohort_lake)
    secret = "UPLOADED-DOCUMENT-TEXT-7f3a"
    caplog.set_level(logging.DEBUG)
    huge = (f"# {secret}\n" + "x: " + "[" * 600 + "]" * 600).encode()
    assert builder.load_upload(huge) is False
    assert builder._message.visible and "nested more than" in builder._message.object
    big = (f"# {secret}\n" + "a" * (MAX_DOCUMENT_BYTES + 1)).encode()
    assert builder.load_upload(big) is False and "bytes is more than" in builder._message.object
    markup = b"name: <img src=x onerror=alert(1)>\nindex_date: {rule: nope}\n"
    assert builder.load_upload(markup) is False
    assert "<img" not in markdown_to_html(builder._message.object)
    assert secret not in caplog.text


def test_the_catalog_refuses_a_table_above_the_roles_tier(cohort_lake):
    """Finding 7: researchers read row counts and means of steward-tier tables via /catalog?table=."""
    from explorer.views import CatalogOverview

    steward_tables = [t for t in cohort_lake.tables() if getattr(cohort_lake.catalog.get(t), "sensitivity", None) == "steward"]
    assert steward_tables, "the synthetic lake has steward-tier tables (ingest_file, raw_manifest, ...)"
    with pytest.raises(PermissionDenied, match="may not read"):
        CatalogOverview(lake=cohort_lake, role="researcher", table=steward_tables[0]).compare()
    assert len(CatalogOverview(lake=cohort_lake, role="steward", table=steward_tables[0]).compare()) >= 1
    shown = CatalogOverview(lake=cohort_lake, role="researcher", table=steward_tables[0]).panel()
    assert "Not available to you" in str([getattr(part, "object", "") for part in shown.objects])
