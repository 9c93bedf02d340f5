"""`datastream acls` names each service's principal as the Ansible kafka role does on a
cluster several instruments share (<instrument, lowercase>-<service>), the live view's too,
unless told otherwise."""

from __future__ import annotations

from launcher.cli import main as cli_main
from launcher.kafka_acls import Principals


def test_an_instrument_s_principals_carry_its_name():
    assert Principals.of_instrument("SEC") == Principals(
        "sec-runcontrol", "sec-filewriter", "sec-forwarder", "sec-liveview")


def test_acls_show_gives_the_instrument_s_own_principals(capsys):
    assert cli_main(["acls", "show", "--instrument", "SEC", "--broker", "127.0.0.1:1",
                     "--forwarder-principal", "fwd"]) == 0
    shown = capsys.readouterr().out
    users = {line.split("User:")[1].split(",")[0] for line in shown.splitlines()}
    assert users == {"sec-runcontrol", "sec-filewriter", "fwd", "sec-liveview"}
    assert "SEC_" in shown and "SEC2" not in shown
