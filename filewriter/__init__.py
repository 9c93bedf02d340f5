"""The file writer: run start (pl72) / stop (6s4t) commands and the data topics into NeXus
files with h5py, answering with answ / wrdn and heartbeating x5f2."""
