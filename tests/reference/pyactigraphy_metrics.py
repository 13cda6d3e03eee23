"""Run by the pyActigraphy 1.2.2 reference interpreter (.ci/pyactigraphy-env), not by the suite.

Reads cases from the .npz named first (values, start time, options), computes IS, IV, RA, L5 and
M10 with pyActigraphy's own BaseRaw and metric code, writes the results as JSON to the second
argument. Floats are written with repr, so nothing is lost on the way back.
"""

import json
import sys
import warnings

import numpy as np
import pandas as pd
import pyActigraphy
from pyActigraphy.io import BaseRaw
from pyActigraphy.metrics.metrics import _lmx

warnings.simplefilter("ignore")
cases = np.load(sys.argv[1], allow_pickle=False)
options = json.loads(str(cases["options"]))
results = []
for i, option in enumerate(options):
    values = cases[f"values_{i}"]
    index = pd.date_range(option["start"], periods=len(values), freq="1min")
    data = pd.Series(values, index=index)
    raw = BaseRaw(name=f"case{i}", uuid=str(i), format="custom", axial_mode="mono", start_time=index[0],
                  period=index[-1] - index[0], frequency=pd.Timedelta("1min"), data=data, light=None)
    binarize, threshold, freq = option["binarize"], option["threshold"], option["freq"].replace("h", "H")
    prepared = raw.binarized_data(threshold) if binarize else raw.data
    l5_onset, l5_value = _lmx(prepared, "5H", lowest=True)
    m10_onset, m10_value = _lmx(prepared, "10H", lowest=False)
    results.append({
        "version": pyActigraphy.__version__,
        "IS": raw.IS(freq=freq, binarize=binarize, threshold=threshold),
        "IV": raw.IV(freq=freq, binarize=binarize, threshold=threshold),
        "RA": raw.RA(binarize=binarize, threshold=threshold),
        "L5": raw.L5(binarize=binarize, threshold=threshold),
        "M10": raw.M10(binarize=binarize, threshold=threshold),
        "L5_onset_s": l5_onset.total_seconds(), "M10_onset_s": m10_onset.total_seconds(),
        "l5_value": l5_value, "m10_value": m10_value,
    })
with open(sys.argv[2], "w") as out:
    json.dump([{k: (float(v) if isinstance(v, (np.floating, float)) else v) for k, v in r.items()} for r in results], out)
