"""ISIS's schemas that ess-streaming-data-types lacks (pu00 pulse metadata, un00 units).

The `.fbs` files are ISIS's (ISISComputingGroup/streaming-data-types, BSD licence in LICENSE
here); `generated/` is what `flatc --python` makes of them (`python -m
datastream.schemas.isis.generate` makes it again; a unit test checks it is unchanged).
ISIS's Python package cannot stand beside ESS's (both are `streaming_data_types`) and needs
Python 3.12, so the generated readers are used directly."""
