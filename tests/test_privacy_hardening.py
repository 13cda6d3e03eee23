"""Input hardening: zip slip, links out of the folder, zip bombs and endless lines are quarantined
with their reason; hostile names and values through views, the catalog and the lake are refused
or treated as data."""

from __future__ import annotations

import os
import zipfile

import numpy as np
import pandas as pd
import pytest

import explorer.ingest.walk as ingest_walk
from explorer.errors import ExplorerError
from explorer.testing.cohorts import pseudonym_key

GOOD = "person_id,datetime,heart_rate_value\n1000001,2024-08-15 00:00:00,61\n1000001,2024-08-15 00:01:00,63\n"
HOSTILE = ["1 OR 1=1; DROP TABLE person", "' OR '1'='1", "x'); COPY person TO '/tmp/leak.csv'; --", "../../etc/passwd"]


def ingest(lake, path):
    with pseudonym_key():
        return lake.ingest(path, quality=False)


def outcome(report, suffix):
    return next(f for f in report.files if f.source_name.endswith(suffix))


def test_zip_slip_members_are_quarantined_and_nothing_lands_outside(lake, tmp_path):
    incoming = tmp_path / "in"
    incoming.mkdir()
    with zipfile.ZipFile(incoming / "delivery.zip", "w") as archive:
        archive.writestr("fitbit_aou/heart_rate_minute_level/part-1.csv", GOOD)
        archive.writestr("../../escaped.csv", GOOD)
        archive.writestr("/abs/escaped2.csv", GOOD)
    report = ingest(lake, incoming)
    assert outcome(report, "part-1.csv").status == "accepted"
    for name in ("../../escaped.csv", "escaped2.csv"):
        bad = outcome(report, name)
        assert bad.status == "quarantined" and "zip slip" in bad.reason
    assert not any(p.name.startswith("escaped") for p in tmp_path.rglob("*")) and not (lake.root.parent / "escaped.csv").exists()
    assert lake.sql("SELECT count(*) AS n FROM heart_rate_minute")["n"].item() == 2


def test_links_leading_out_are_not_followed(lake, tmp_path):
    secret = tmp_path / "outside" / "secret.csv"
    secret.parent.mkdir()
    secret.write_text(GOOD.replace("61", "99"))
    incoming = tmp_path / "in" / "fitbit_aou" / "heart_rate_minute_level"
    incoming.mkdir(parents=True)
    (incoming / "part-1.csv").write_text(GOOD)
    os.symlink(secret, incoming / "part-2.csv")
    os.symlink(tmp_path / "outside", tmp_path / "in" / "more")
    report = ingest(lake, tmp_path / "in")
    link = outcome(report, "part-2.csv")
    assert link.status == "quarantined" and "leading out of the folder" in link.reason
    assert outcome(report, "more").status == "quarantined"
    assert 99 not in lake.sql("SELECT heart_rate_value FROM heart_rate_minute")["heart_rate_value"].tolist()
    from explorer.lake.raw import sha256_file

    assert not lake.raw.path(sha256_file(secret)).exists()  # the target was never read into the lake


def test_zip_bombs_and_endless_lines_are_not_unpacked(lake, tmp_path, monkeypatch):
    incoming = tmp_path / "in"
    incoming.mkdir()
    with zipfile.ZipFile(incoming / "bomb.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("zeros.csv", b"0,0\n" * (16 << 20))  # 64 MiB from about 64 KiB
        archive.writestr("long.csv", "a," + "".join(np.random.default_rng(0).choice(list("abcdef"), 5000)) + "\n")
        archive.writestr("fitbit_aou/heart_rate_minute_level/part-1.csv", GOOD)
    monkeypatch.setattr(ingest_walk, "MAX_LINE_BYTES", 4000)
    report = ingest(lake, incoming)
    assert "zip bomb" in outcome(report, "zeros.csv").reason
    assert "line longer than 4,000 bytes" in outcome(report, "long.csv").reason
    assert outcome(report, "part-1.csv").status == "accepted"
    monkeypatch.setattr(ingest_walk, "MAX_UNZIPPED_BYTES", 50)
    with zipfile.ZipFile(incoming / "big.zip", "w") as archive:
        archive.writestr("fitbit_aou/heart_rate_minute_level/part-9.csv", GOOD)
    report = ingest(lake, incoming / "big.zip")
    assert "expands past the archive's limit of 50 bytes" in outcome(report, "part-9.csv").reason


def test_names_cannot_escape_the_lake(lake, tmp_path):
    for name in ("../evil", "person/../../x", "/etc/passwd", "Person"):
        with pytest.raises(ExplorerError, match="expected lower_snake_case"):
            lake.write(name, pd.DataFrame({"a": [1]}))
        with pytest.raises(ExplorerError):
            lake.table(name)
    from explorer.exposure import open_grids

    with pytest.raises(ExplorerError, match="outside the lake: refused"):
        open_grids(pd.DataFrame({"variable": ["tasmax"], "store": ["../../../etc"], "time_start": [pd.Timestamp("2024-01-01")],
                                 "units": ["K"]}), lake.root, ("tasmax",))
    from explorer.catalog import Catalog
    from explorer.errors import CatalogError

    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "evil.yaml").write_text("name: ../evil\ndescription: x\nkind: table\nowner: x\nsensitivity: public\n"
                                                "schema:\n- {name: a, type: int32}\n")
    with pytest.raises(CatalogError, match="expected lower_snake_case"):
        Catalog.from_directory(tmp_path / "cat")


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_through_view_filters_are_data(lake, value):
    from explorer.testing import make_persons
    from explorer.views import Actogram, PersonMinutes

    lake.write("person", make_persons(5))
    for view in (PersonMinutes(lake=lake, person_id=value), Actogram(lake=lake, person_id=value)):
        with pytest.raises(ExplorerError):
            view.data()
    assert lake.sql("SELECT count(*) AS n FROM person")["n"].item() == 5
    assert not os.path.exists("/tmp/leak.csv")
