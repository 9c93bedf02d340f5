"""The sample-environment IOC's process: a real EPICS 7 IOC (pvxslibs: CA and PVA) on a
database, as `python -m pvxslibs.ioc` runs one, and with EPICS access security when given an
access configuration file (asSetFilename before iocInit, as an IOC's st.cmd does), so the same
site ACF that guards run control guards the sample environment's setpoints.

    python -m launcher.pvxs_ioc -d db/sample_env.db -m P=IN:DEMO: [--acf FILE]

Runs until its standard input closes (the supervisor holds it open)."""

from __future__ import annotations

import argparse
import ctypes
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-d", "--database", required=True)
    parser.add_argument("-m", "--macros", default="")
    parser.add_argument("--acf", help="EPICS access configuration file")
    args = parser.parse_args(argv)
    os.environ.setdefault("PVXS_QSRV_ENABLE", "YES")
    import pvxslibs.path
    from epicscorelibs import ioc

    ctypes.CDLL(ioc.find_dso("pvxslibs.lib.pvxsIoc"), ctypes.RTLD_GLOBAL)
    ioc.iocshRegisterCommon()
    for dbd, path in (("base.dbd", ioc.DEFAULT_DBD_PATH),
                      ("pvxsIoc.dbd", pvxslibs.path.dbd_path)):
        if ioc.dbLoadDatabase(dbd.encode(), path.encode(), None):
            raise SystemExit(f"cannot load {dbd} from {path}")
    if ioc.registerRecordDeviceDriver(ioc.pdbbase):
        raise SystemExit("registering the record and device support failed")
    if ioc.dbLoadRecords(args.database.encode(), args.macros.encode()):
        raise SystemExit(f"cannot load {args.database} with {args.macros}")
    if args.acf:
        # a bad file makes iocInit fail: said, not an IOC open to everyone
        ioc.ioc(f'asSetFilename("{args.acf}")')
    if ioc.iocInit():
        raise SystemExit("iocInit failed" + (f" (is {args.acf} a valid ACF?)" if args.acf
                                             else ""))
    print(f"IOC running: {args.database} ({args.macros})"
          + (f", access security {args.acf}" if args.acf else ""), file=sys.stderr, flush=True)
    sys.stdin.read()  # until the supervisor closes it
    return 0


if __name__ == "__main__":
    sys.exit(main())
