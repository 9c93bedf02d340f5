import json

from streaming_data_types.status_x5f2 import serialise_x5f2

from ioc.forwarder_status import ForwarderState, ForwarderStatus


def x5f2(updates, connected, dropped_old=0):
    streams = [{"channel_name": "A", "connected": True},
               {"channel_name": "B", "connected": connected},
               {"channel_name": "B", "connected": connected}]  # one PV, two schemas
    return serialise_x5f2("fwd", "1", "svc", "h", 1, 2000, json.dumps(
        {"streams": streams, "updates": updates, "dropped_old": dropped_old}))


def test_view_from_status_messages():
    now = [10.0]
    status = ForwarderStatus(heartbeat_timeout_s=6, clock=lambda: now[0])
    assert status.view().state is ForwarderState.UNAVAILABLE
    status.on_message(x5f2(100, connected=False))
    view = status.view()
    assert (view.state, view.streams, view.connected) == (ForwarderState.DISCONNECTED_PVS, 2, 1)
    now[0] += 2
    status.on_message(x5f2(300, connected=True, dropped_old=3))
    view = status.view()
    assert (view.state, view.connected, view.dropped) == (ForwarderState.RUNNING, 2, 3)
    assert view.updates_per_s == 100.0
    now[0] += 7
    assert status.view().state is ForwarderState.UNAVAILABLE


def test_other_messages_are_ignored():
    status = ForwarderStatus()
    status.on_message(b"\x00\x00\x00\x00f142....")
    assert status.view().state is ForwarderState.UNAVAILABLE
