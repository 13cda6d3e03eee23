"""Cohorts: the builder with live attrition (researchers), the attrition of saved cohorts, and
the characterisation of a saved cohort."""

from __future__ import annotations

import panel as pn

from explorer.serve import guarded, page, url_synced
from explorer.views import CohortAttrition, CohortBuilder, CohortCharacterisation
from explorer.views import Lake  # the type of build's lake


PAGE = {"title": "Cohorts", "order": 50, "roles": ["public", "researcher", "steward"],
        "summary": "the attrition of saved cohorts and their characterisation; researchers build definitions with live attrition"}


def build(lake: Lake, role):
    saved = CohortAttrition.saved_names(lake)
    if role == "public":  # saved definitions only: counts of one's own could be subtracted (differencing)
        content = [pn.pane.Markdown("### Saved cohorts\nThe attrition of the cohorts researchers have saved; "
                                    "defining a cohort of your own needs the researcher role.")]
        if saved:
            # ?attrition=NAME: a link shows the same cohort (a name not saved is ignored, not raised)
            asked = (pn.state.session_args or {}).get("attrition", [b""])[0].decode(errors="replace")
            chooser = pn.widgets.Select(label="cohort", options=saved, value=asked if asked in saved else saved[0], width=300)
            if pn.state.location is not None:
                chooser.param.watch(lambda event: pn.state.location.update_query(attrition=event.new), "value")
            attrition = pn.bind(lambda name: guarded(lambda: CohortAttrition.of_saved(lake=lake, role=role, name=name)),
                               chooser)
            content += [chooser, pn.panel(attrition)]
    else:
        content = [CohortBuilder(lake=lake, role=role).panel()]
    if saved:
        view = CohortCharacterisation(lake=lake, role=role)  # its dropdowns list the saved cohorts
        content += [pn.pane.Markdown("### Characterisation of a saved cohort"), url_synced(view, ["cohort", "against"]),
                    guarded(lambda: view)]
    return content


page(PAGE, build).servable(title=PAGE["title"])
