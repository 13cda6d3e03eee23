"""Wearables: cohort trends and distributions; for researchers, one person's minutes (downsampled on the server)."""

from __future__ import annotations

import panel as pn

from explorer.serve import guarded, page, url_synced
from explorer.views import CohortWearableDistributions, PersonMinutes, WearableTrends
from explorer.views import Lake  # the type of build's lake


PAGE = {"title": "Wearables", "order": 20, "roles": ["public", "researcher", "steward"],
        "summary": "daily steps, resting heart rate and circadian metrics; one person's minutes for researchers"}


def build(lake: Lake, role):
    content = [guarded(lambda: WearableTrends(lake=lake, role=role)),
               guarded(lambda: CohortWearableDistributions(lake=lake, role=role))]
    asked = (pn.state.session_args or {}).get("person_id", [b""])[0].decode()
    if role == "public" and not asked:
        return content + [pn.pane.Markdown("One person's minute-level data is for the researcher role.")]
    minutes = PersonMinutes(lake=lake, role=role, person_id=asked)
    if not asked:
        minutes.person_id = minutes.first_person_id()
    widgets = [url_synced(minutes, ["person_id"])] if role != "public" else []
    return content + [pn.pane.Markdown("### One person's minutes"), *widgets, guarded(lambda: minutes)]


page(PAGE, build).servable(title=PAGE["title"])
