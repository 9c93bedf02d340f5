from ioc.run_numbers import RunNumberStore


def test_numbers_persist_and_are_never_reused(tmp_path):
    path = tmp_path / "runinfo" / "X_runnumber.txt"
    store = RunNumberStore(path)
    assert store.current() == 0
    assert [store.next(), store.next()] == [1, 2]
    again = RunNumberStore(path)  # as after a restart
    assert again.current() == 2
    assert again.next() == 3
