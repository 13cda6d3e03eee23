"""Federated studies: the analysis travels to each site's lake and only disclosure-controlled
results come back.

- :mod:`~explorer.federation.policy`: what a site answers, for whom, under which profile;
- :mod:`~explorer.federation.analyses`: the declared analyses and how a site computes them;
- :mod:`~explorer.federation.site` and :mod:`~explorer.federation.service`: a site's answers,
  its steward's queue and its HTTPS service;
- :mod:`~explorer.federation.coordinator` and :mod:`~explorer.federation.pooling`: the study
  file, the requests, and the pooled results.
"""

from explorer.federation.analyses import ANALYSES, VARIABLES
from explorer.federation.coordinator import load_study, run_study, save_to_lake, study_from_dict, summary_text
from explorer.federation.policy import SitePolicy, load_policy, new_token, policy_from_dict
from explorer.federation.site import ReviewQueue, Site

__all__ = ["ANALYSES", "VARIABLES", "ReviewQueue", "Site", "SitePolicy", "load_policy", "load_study", "new_token",
           "policy_from_dict", "run_study", "save_to_lake", "study_from_dict", "summary_text"]
