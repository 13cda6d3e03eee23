"""Cohort Explorer: explore multi-modal cohort data (wearables, exposures, lab markers).

>>> import explorer
>>> lake = explorer.open("explorer-data")          # doctest: +SKIP
>>> lake.sql("SELECT count(*) AS n FROM person")  # doctest: +SKIP
"""

__version__ = "0.1.0"

from explorer.errors import ExplorerError
from explorer.lake import Lake, open
from explorer import ingest  # noqa: F401  (registers lake.ingest: the lake does not import its ingest)

__all__ = ["ExplorerError", "Lake", "open", "__version__"]
