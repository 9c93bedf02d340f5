"""The EPICS ACF format, and the rights it gives a user on a host."""

from __future__ import annotations

import pytest

from datastream.access_config import (
    Access,
    AcfError,
    default_config,
    local_host_names,
    parse_acf,
)

ACF = """
# operators on the instrument machines may run the instrument
UAG(operators) {alice, "bob"}
HAG(beamline)  {ndxdemo, LOCALHOST}
ASG(DEFAULT) {
    RULE(1, READ)
}
ASG(RUNCONTROL) {
    RULE(1, READ)
    RULE(1, WRITE, TRAPWRITE) {
        UAG(operators)
        HAG(beamline)
    }
}
"""


def test_a_site_acf_gives_write_only_to_its_users_on_its_hosts():
    config = parse_acf(ACF)
    assert config.group_for_writable() == "RUNCONTROL"
    assert config.access("RUNCONTROL", "alice", "ndxdemo") is Access.WRITE
    assert config.access("RUNCONTROL", "bob", "localhost") is Access.WRITE  # names fold case
    assert config.access("RUNCONTROL", "mallory", "ndxdemo") is Access.READ
    assert config.access("RUNCONTROL", "alice", "elsewhere") is Access.READ
    assert config.access("DEFAULT", "alice", "ndxdemo") is Access.READ
    assert config.access("NOSUCHGROUP", "alice", "ndxdemo") is Access.READ  # as DEFAULT


def test_the_default_lets_only_this_host_write():
    config = default_config()
    for host in local_host_names():
        assert config.access("DEFAULT", "anyone", host) is Access.WRITE
    assert config.access("DEFAULT", "anyone", "other.example") is Access.READ


@pytest.mark.parametrize(("text", "message"), [
    ("ASG(DEFAULT) { RULE(1, READ) } BOGUS(x)", "unknown"),
    ("ASG(DEFAULT) { RULE(1, WRITE) { UAG(nobody) } }", "undefined groups"),
    ("ASG(OTHER) { RULE(1, READ) }", "DEFAULT"),
    ("ASG(DEFAULT) { RULE(1) }", "NONE, READ or WRITE"),
    ("ASG(DEFAULT) { RULE(1, READ)", "end of file"),
])
def test_a_bad_file_is_refused_with_where_and_why(text, message):
    with pytest.raises(AcfError, match=message):
        parse_acf(text)
