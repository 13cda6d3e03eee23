"""The reader registry: one list the detection, the ingest and every listing read; an unknown name
and a broken plugin are named with what to do (the plugin that works end to end is in
tests/test_plugins.py)."""

import textwrap

import pytest

from explorer.ingest.readers import READERS, ReaderPluginError, UnknownReaderError, readers_in_order, reset_readers


def install(tmp_path, monkeypatch, entry_points: str, modules: dict[str, str]):
    for name, text in modules.items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    info = tmp_path / "site_broken-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: site-broken\nVersion: 0.1\n")
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
