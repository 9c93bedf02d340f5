from datastream.instrument import load_config
from datastream.paths import IOCBOOT_DIR
from ioc.simulated_dae import DaeSettings


def test_the_demo_instrument_config_is_complete():
    config = load_config(IOCBOOT_DIR / "DEMO" / "config.toml")
    assert (config.name, config.prefix, config.broker) == ("DEMO", "IN:DEMO:", "127.0.0.1:9092")
    assert DaeSettings(**config.dae).frame_rate_hz == 10.0
    assert config.sample_env_db is not None and config.sample_env_db.exists()
    streams = config.streams()
    assert {s.stream.protocol for s in streams} == {"ca", "pva"}
    assert all(s.stream.channel.startswith("IN:DEMO:SE:") for s in streams)
    assert all(s.stream.topic == "DEMO_sampleEnv" for s in streams)


def test_a_written_config_loads_back_as_it_was(tmp_path):
    from datastream.instrument import InstrumentConfig, write_config

    config = InstrumentConfig(
        name="SYS", prefix="TE:SYS:", data_dir=tmp_path, end_timeout_s=30,
        dae={"frame_rate_hz": 20.0, "events_per_frame": 300, "pixels": 1024},
        sample_env_db=tmp_path / "se.db", streams_file=tmp_path / "streams.json")
    assert load_config(write_config(config, tmp_path / "config.toml")) == config


def test_up_keeps_the_users_epics_address_lists():
    from datastream.epics_network import EpicsPorts, with_site_addresses

    local = EpicsPorts().client_env()
    env = with_site_addresses(local, {"EPICS_CA_ADDR_LIST": "10.1.2.3 127.0.0.1:5064",
                                      "EPICS_PVA_ADDR_LIST": "ioc.site"})
    assert env["EPICS_CA_ADDR_LIST"] == local["EPICS_CA_ADDR_LIST"] + " 10.1.2.3"
    assert env["EPICS_PVA_ADDR_LIST"] == local["EPICS_PVA_ADDR_LIST"] + " ioc.site"
    assert with_site_addresses(local, {}) == local
