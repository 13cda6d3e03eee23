"""Wearables: cohort trends and distributions; for researchers, one person's minutes (downsampled on the server)."""

import panel as pn

from explorer.serve import guarded, page, url_synced
from explorer.views import CohortWearableDistributions, PersonMinutes, WearableTrends


def build(lake, role):
    content = [guarded(lambda: WearableTrends(lake=lake, role=role)),
               guarded(lambda: CohortWearableDistributions(lake=lake, role=role))]
    asked = (pn.state.session_args or {}).get("person_id", [b""])[0].decode()
    if role == "public" and not asked:
        return content + [pn.pane.Markdown("One person's minute-level data is for the researcher role.")]
    first = "" if role == "public" else lake.sql("SELECT min(person_id) AS p FROM wearable_daily")["p"].iloc[0]
    minutes = PersonMinutes(lake=lake, role=role, person_id=asked or first)
    widgets = [url_synced(minutes, ["person_id"])] if role != "public" else []
    return content + [pn.pane.Markdown("### One person's minutes"), *widgets, guarded(lambda: minutes)]


page("Wearables", build).servable(title="Wearables")
