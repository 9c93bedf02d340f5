"""EPICS access security for the run-control IOC (the ACF format: datastream.access_config).
The IOC's writable PVs (DAE commands, :SP setpoints, FILEWRITER:JOB:*) are in ASG RUNCONTROL
when the file defines it, else DEFAULT; every other PV only reads anyway."""

from __future__ import annotations

from datastream.access_config import Access, AccessConfig, log_field


def _writable(entry: object) -> bool:
    spec = getattr(entry, "pvspec", None)
    return spec is not None and not spec.read_only


def secure(pvdb: dict[str, object], config: AccessConfig, put_log) -> None:
    """Give every PV of a caproto pvdb, and every field of its records, its access rights from
    `config`, and log each accepted put as caPutLog does (host, user, PV, new and old value)
    to `put_log`, a logger. caproto asks check_access when a channel is made (the client then
    sees a read-only channel, and its put fails with ECA_NOWTACCESS) and again at every write.
    A read-only PV (and a read-only field) is read-only for everyone, whatever the file
    grants; a writable record's .PROC is ASL0 like its value, its other fields ASL1."""
    writable_group = config.group_for_writable()
    for name, entry in pvdb.items():
        writable = _writable(entry)
        _secure_channel(name, entry, config, writable_group if writable else "DEFAULT", 0,
                        writable, put_log)
        for field_name, record_field in getattr(entry, "fields", {}).items():
            _secure_channel(f"{name}.{field_name}", record_field, config,
                            writable_group if writable else "DEFAULT",
                            0 if field_name == "PROC" else 1,
                            writable and _writable(record_field), put_log)


def _secure_channel(name: str, entry, config: AccessConfig, group: str, asl: int,
                    writable: bool, put_log) -> None:
    from caproto import AccessRights
    from caproto._data import Forbidden

    rights = {Access.NONE: AccessRights.NO_ACCESS, Access.READ: AccessRights.READ,
              Access.WRITE: AccessRights.READ | AccessRights.WRITE}

    def check_access(hostname, username):
        access = config.access(group, username, hostname, asl)
        return rights[access if writable else min(access, Access.READ)]

    entry.check_access = check_access
    original = entry.auth_write

    async def auth_write(hostname, username, data, data_type, metadata, *, flags=0,
                         user_address=None):
        if AccessRights.WRITE not in check_access(hostname, username):
            put_log.warning("%s %s %s denied: no write access", log_field(hostname),
                            log_field(username), name)
            raise Forbidden(f"{username!r}@{hostname!r} may not write {name}")
        old = entry.value
        result = await original(hostname, username, data, data_type, metadata,
                                flags=flags, user_address=user_address)
        put_log.info("%s %s %s new=%r old=%r", log_field(hostname), log_field(username), name,
                     entry.value, old)
        return result

    entry.auth_write = auth_write
