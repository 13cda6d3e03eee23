"""Landing page: what each dashboard shows, for the role signed in."""

from __future__ import annotations

import panel as pn

from explorer.serve import guarded, page, pages
from explorer.views import LakeSummary
from explorer.views import Lake  # the type of build's lake

PAGE = {"title": "Home", "order": 0, "roles": ["public", "researcher", "steward"],
        "summary": "what each page shows, for the role signed in"}


def build(lake: Lake, role):
    rows = "\n".join(f"- [{p.title}](./{name}): {p.summary}" for name, p in pages().items()
                     if name != "index" and p.shown_to(role))
    note = "" if role == "public" else "You see exact counts and person-level views; what you export is audited."
    return [guarded(lambda: LakeSummary(lake=lake, role=role)), pn.pane.Markdown(f"{rows}\n\n{note}")]


page(PAGE, build).servable(title="Cohort Explorer")
