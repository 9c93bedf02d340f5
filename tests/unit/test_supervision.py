"""`up`'s restart policy: a back-off per service, a budget over a window (systemd's
StartLimitBurst/IntervalSec), given up once and said, and what `doctor` reads."""

from launcher.doctor import check_supervisor
from launcher.supervision import SUPERVISOR_STATE, RestartPolicy


def restart(policy: RestartPolicy, name: str, now: float) -> float:
    """Die at `now`, restart when due; the time of the restart."""
    assert policy.died(name, now) == "restart"
    t = now
    while not policy.due(name, t):
        assert policy.died(name, t) == "wait"  # noticed dead again: not decided twice
        t += 0.5
    return t


def test_back_off_grows_and_another_service_is_not_held_up() -> None:
    policy = RestartPolicy(burst=5, window_s=300)
    t1 = restart(policy, "writer", 0.0)
    t2 = restart(policy, "writer", t1)
    assert (t1, t2 - t1) == (1.0, 2.0)
    assert policy.died("writer", t2) == "restart"
    assert policy.died("liveview", t2) == "restart"  # at once: its own back-off
    assert policy.due("liveview", t2 + 1.0) and not policy.due("writer", t2 + 1.0)


def test_a_crash_a_week_is_always_restarted_but_a_crash_loop_is_given_up(tmp_path) -> None:
    policy = RestartPolicy(burst=3, window_s=60)
    for week in range(10):
        restart(policy, "writer", week * 604800.0)
    assert policy.given_up == set()
    t = 10 * 604800.0
    for _ in range(3):
        t = restart(policy, "writer", t)
    assert policy.died("writer", t) == "give up"
    assert policy.died("writer", t + 1) == "wait" and not policy.due("writer", t + 100)
    assert check_supervisor(tmp_path).status == "OK"
    policy.save(tmp_path / SUPERVISOR_STATE)
    check = check_supervisor(tmp_path)
    assert check.status == "FAIL" and "writer" in check.detail
