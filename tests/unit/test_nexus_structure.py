import pytest

from filewriter.nexus_structure import StructureError, build

KNOWN = {"ev44", "f142", "f144"}


def test_groups_datasets_attributes_links_and_streams(h5file):
    structure = {"children": [{
        "type": "group", "name": "entry", "attributes": {"NX_class": "NXentry"},
        "children": [
            {"module": "dataset", "config": {"name": "title", "values": "sample"}},
            {"module": "dataset", "config": {"name": "run_number", "values": 7, "dtype": "int32"},
             "attributes": [{"name": "units", "values": ""}]},
            {"module": "mdat", "config": {"name": "start_time"}},
            {"type": "group", "name": "events",
             "attributes": [{"name": "NX_class", "values": "NXevent_data"}],
             "children": [{"module": "ev44", "config": {"topic": "t", "source": "DAE"}}]},
            {"module": "link", "config": {"name": "data", "source": "/entry/events"}},
        ]}]}
    plan = build(h5file, structure, KNOWN)
    assert h5file["entry"].attrs["NX_class"] == "NXentry"
    assert h5file["entry/title"][()] == b"sample"
    assert h5file["entry/run_number"][()] == 7 and h5file["entry/run_number"].dtype == "int32"
    assert h5file["entry/events"].attrs["writer_module"] == "ev44"
    assert h5file["entry/events"].attrs["topic"] == "t"
    assert h5file["entry/data"].name == "/entry/data"
    assert [(s.group_path, s.module, s.source) for s in plan.streams] == [
        ("/entry/events", "ev44", "DAE")]
    assert [m.name for m in plan.metadata] == ["start_time"]
    assert plan.warnings == []


def test_unknown_keys_are_reported(h5file):
    plan = build(h5file, {"children": [{"type": "group", "name": "g", "colour": 1}],
                          "extra": 1}, KNOWN)
    assert any("colour" in w for w in plan.warnings)
    assert any("extra" in w for w in plan.warnings)


@pytest.mark.parametrize(("child", "message"), [
    ({"module": "xx99", "config": {"topic": "t", "source": "s"}}, "unknown writer module"),
    ({"module": "ev44", "config": {"source": "s"}}, "needs topic and source"),
    ({"module": "dataset", "config": {"name": "x"}}, "needs name and values"),
    ({"module": "dataset", "config": {"name": "x", "values": 1, "dtype": "int77"}}, "dtype"),
    ({"module": "link", "config": {"name": "x", "source": "/nowhere"}}, "no such object"),
    ({"name": "no-type"}, "neither a module"),
    ("text", "must be an object"),
])
def test_bad_structures_are_refused_with_a_reason(h5file, child, message):
    with pytest.raises(StructureError, match=message):
        build(h5file, {"children": [child]}, KNOWN)


def test_the_older_mdat_form_with_items_is_accepted(h5file):
    """kafka-to-nexus templates in use still send {"items": [...]}."""
    structure = {"children": [{"type": "group", "name": "entry", "children": [
        {"module": "mdat", "config": {"items": ["start_time", "end_time"]}}]}]}
    plan = build(h5file, structure, KNOWN)
    assert [(m.group_path, m.name) for m in plan.metadata] == [
        ("/entry", "start_time"), ("/entry", "end_time")]
    with pytest.raises(StructureError, match="mdat"):
        build(h5file, {"children": [{"module": "mdat", "config": {"items": ["owner"]}}]}, KNOWN)
