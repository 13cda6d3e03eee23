"""The reader registry: one list the detection, the ingest and every listing read; a site plugin's
reader is found through its entry point and ingests its own format, its rows checked as the
catalog declares; an unknown name and a broken plugin are named with what to do (a plugin adding
a dataset, reader, step, metric and page together is in tests/test_plugins.py)."""

import textwrap

import pandas as pd
import pytest

import explorer
from explorer.ingest.readers import READERS, ReaderPluginError, UnknownReaderError, readers_in_order, reset_readers


def install(tmp_path, monkeypatch, entry_points: str, modules: dict[str, str], distribution: str = "site-broken"):
    """A distribution installed into ``tmp_path`` as pip would leave it: its modules, and a
    ``.dist-info`` folder with METADATA and entry_points.txt, which importlib.metadata reads."""
    for name, text in modules.items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    info = tmp_path / f"{distribution.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    monkeypatch.syspath_prepend(str(tmp_path))
    reset_readers()


@pytest.fixture(autouse=True)
def fresh_registry():
    reset_readers()
    yield
    reset_readers()


def test_every_reader_is_found_by_its_format_in_detection_order():
    order = readers_in_order()
    assert [r.order for r in order] == sorted(r.order for r in order)
    assert {r.format for r in order} == set(READERS) and len(READERS) >= 15
    assert READERS["residence_history_csv"].order == 10  # first: wearables take their time zone from it


def test_an_unknown_reader_name_says_the_nearest():
    with pytest.raises(UnknownReaderError, match="did you mean 'residence_history_csv'"):
        READERS["residence_history_cvs"]


def test_a_plugin_that_cannot_be_imported_is_named(tmp_path, monkeypatch):
    install(tmp_path, monkeypatch, "[explorer.readers]\nsite_xml = site_missing.readers:XmlReader\n", {})
    with pytest.raises(ReaderPluginError, match=r"entry point site_xml = 'site_missing.readers:XmlReader'.*cannot be "
                                                r"loaded: ModuleNotFoundError"):
        readers_in_order()


def test_a_plugin_object_that_is_not_a_reader_or_misnamed_is_refused(tmp_path, monkeypatch):
    install(tmp_path, monkeypatch, "[explorer.readers]\nsite_thing = site_thing:Thing\n",
            {"site_thing.py": "class Thing:\n    format = 'site_thing'\n    order = 50\n"})
    with pytest.raises(ReaderPluginError, match="is not a reader: no sniff or read method"):
        readers_in_order()


def test_a_plugin_may_not_take_a_built_in_format(tmp_path, monkeypatch):
    install(tmp_path, monkeypatch, "[explorer.readers]\nresidence_history_csv = site_thief:Residence\n",
            {"site_thief.py": """
                from explorer.ingest.readers import Reader

                class Residence(Reader):
                    format = "residence_history_csv"
                    order = 5
                    def sniff(self, path, head):
                        return None
                    def read(self, path, context):
                        raise NotImplementedError
                """})
    with pytest.raises(ReaderPluginError, match="declared twice"):
        readers_in_order()


#: a site's beat-log format: a ``#beats`` line, then ``participant,local minute,heart rate`` lines
BEATS_READER = """
    import pandas as pd

    from explorer.ingest.readers import Reader, ReaderError, ReadResult


    class BeatLogReader(Reader):
        format = "site_beat_log"
        order = 26
        description = "the site's beat log: #beats, then participant,local minute,heart rate"

        def sniff(self, path, head):
            return None if head.startswith(b"#beats") else "no #beats line"

        def read(self, path, context):
            lines = path.read_text().splitlines()[1:]
            try:
                participants, minutes, rates = zip(*(line.split(",") for line in lines))
            except ValueError:
                raise ReaderError("expected participant,minute,rate on every line") from None
            rows = pd.DataFrame({"_row": range(1, len(lines) + 1), "person_id": context.pseudonymize(participants),
                                 "datetime": pd.to_datetime(list(minutes)), "heart_rate_value": [int(r) for r in rates]})
            return ReadResult(rows_read=len(lines), tables={"heart_rate_minute": rows})
"""


def test_a_plugin_reader_is_found_by_its_entry_point_and_ingests_its_format(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    install(site, monkeypatch, "[explorer.readers]\nsite_beat_log = site_beats:BeatLogReader\n",
            {"site_beats.py": BEATS_READER}, distribution="site-beats")
    monkeypatch.setenv("EXPLORER_PSEUDONYM_KEY", "a-test-key-of-more-than-16-bytes")
    monkeypatch.delenv("EXPLORER_PSEUDONYM_KEY_FILE", raising=False)
    assert READERS["site_beat_log"].order == 26
    assert [r.format for r in readers_in_order()].index("site_beat_log") \
        > [r.format for r in readers_in_order()].index("fitbit_export_json")  # tried by its order, among the built-in ones
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    (incoming / "ward-7.beats").write_text("#beats\nP-1,2024-03-01 08:00,61\nP-1,2024-03-01 08:01,400\nP-2,2024-03-01 08:00,72\n")
    lake = explorer.open(tmp_path / "lake")
    report = lake.ingest(incoming, default_time_zone="Europe/London", quality=False)
    [outcome] = report.files
    assert (outcome.status, outcome.format, outcome.rows_read, outcome.rows_accepted, outcome.rows_quarantined) == \
        ("accepted", "site_beat_log", 3, 2, 1), report
    rows = lake.sql("SELECT heart_rate_value FROM heart_rate_minute ORDER BY heart_rate_value")
    assert rows["heart_rate_value"].tolist() == [61, 72]
    # the plugin's rows pass the checks heart_rate_minute declares in the catalog, like a built-in reader's
    reason = lake.sql("SELECT reason, row_number, format FROM quarantine_row").iloc[0]
    assert (reason["reason"], reason["row_number"], reason["format"]) == \
        ("heart_rate_value 400 bpm outside 25-250", 2, "site_beat_log")


def test_resetting_the_registry_forgets_the_plugin(tmp_path, monkeypatch):
    install(tmp_path, monkeypatch, "[explorer.readers]\nsite_beat_log = site_beats:BeatLogReader\n",
            {"site_beats.py": BEATS_READER}, distribution="site-beats")
    assert "site_beat_log" in READERS
    monkeypatch.undo()  # the package is uninstalled (off sys.path)
    reset_readers()
    assert "site_beat_log" not in READERS


#: the beat log again, whose ``#note`` lines are records of a kind the suite does not store
NOTED_BEATS_READER = BEATS_READER.replace("site_beat_log", "site_noted_beats").replace('head.startswith(b"#beats")', 'head.startswith(b"#noted")') + """

    class NotedBeatLogReader(BeatLogReader):
        format = "site_noted_beats"

        def read(self, path, context):
            header, *lines = path.read_text().splitlines()
            beats = [(k, line.split(",")) for k, line in enumerate(lines, 1) if not line.startswith("#note")]
            rows = pd.DataFrame({"_row": [k for k, _ in beats], "person_id": context.pseudonymize([b[0] for _, b in beats]),
                                 "datetime": pd.to_datetime([b[1] for _, b in beats]),
                                 "heart_rate_value": [int(b[2]) for _, b in beats]})
            claimed = len(lines) + 1 if "miscount" in header else len(lines)
            return ReadResult(rows_read=claimed, tables={"heart_rate_minute": rows},
                              ignored=Counter(note=len(lines) - len(beats)))
"""


def test_records_of_kinds_not_stored_are_counted_by_kind_and_keep_the_identity(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    install(site, monkeypatch, "[explorer.readers]\nsite_noted_beats = site_noted:NotedBeatLogReader\n",
            {"site_noted.py": "from collections import Counter\n" + textwrap.dedent(NOTED_BEATS_READER)},
            distribution="site-noted")
    monkeypatch.setenv("EXPLORER_PSEUDONYM_KEY", "a-test-key-of-more-than-16-bytes")
    monkeypatch.delenv("EXPLORER_PSEUDONYM_KEY_FILE", raising=False)
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    (incoming / "ward-7.beats").write_text("#noted\nP-1,2024-03-01 08:00,61\n#note cuff swapped\n#note paused\n"
                                           "P-2,2024-03-01 08:00,400\n")
    (incoming / "ward-8.beats").write_text("#noted miscount\nP-1,2024-03-02 08:00,62\n")
    lake = explorer.open(tmp_path / "lake")
    report = lake.ingest(incoming, default_time_zone="Europe/London", quality=False)
    files = lake.sql("SELECT source_name, status, rows_read, rows_accepted, rows_quarantined, rows_ignored, ignored, reason "
                     "FROM ingest_file").set_index("source_name")
    noted = files.loc["ward-7.beats"]
    # 4 records: one landed, one quarantined (400 bpm), two of a kind not stored, named with their count
    assert (noted["status"], noted["rows_read"], noted["rows_accepted"], noted["rows_quarantined"], noted["rows_ignored"],
            noted["ignored"]) == ("accepted", 4, 1, 1, 2, "note: 2")
    assert "2 of kinds not stored (note 2)" in str(report)
    # a reader whose counts do not add up loses nothing silently: the file is an error that says so
    wrong = files.loc["ward-8.beats"]
    assert wrong["status"] == "error" and "2 rows read but 1 accepted + 0 quarantined + 0 of kinds not stored" in wrong["reason"]


def test_a_lake_recorded_before_the_ignored_columns_gains_them(tmp_path, monkeypatch):
    import pyarrow as pa
    from deltalake import write_deltalake

    monkeypatch.setenv("EXPLORER_PSEUDONYM_KEY", "a-test-key-of-more-than-16-bytes")
    monkeypatch.delenv("EXPLORER_PSEUDONYM_KEY_FILE", raising=False)
    lake = explorer.open(tmp_path / "lake")
    old = pa.table({"ingest_id": ["old"], "sha256": ["0" * 64], "source_name": ["a.csv"], "source_path": ["/a.csv"],
                    "format": ["residence_history_csv"], "status": ["accepted"], "reason": pa.array([None], pa.string()),
                    "rows_read": [1], "rows_accepted": [1], "rows_quarantined": [0],
                    "ingested_at": pa.array([0], pa.timestamp("us", tz="UTC"))})
    write_deltalake(str(lake.table_path("ingest_file")), old)
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    (incoming / "residence.csv").write_text("person_id,start_date,end_date,latitude,longitude\n1,2020-01-01,,39.7,-104.9\n")
    lake.ingest(incoming, quality=False)
    files = lake.sql("SELECT ingest_id, rows_ignored FROM ingest_file ORDER BY ingested_at")
    assert files["ingest_id"].iloc[0] == "old" and pd.isna(files["rows_ignored"].iloc[0]) and files["rows_ignored"].iloc[1] == 0
