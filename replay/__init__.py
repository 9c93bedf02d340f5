"""`datastream replay FILE`: a NeXus event file streamed into an instrument's topics as a
live run would arrive (pl72, pu00 + ev44 pulse by pulse, f144 logs, 6s4t), shifted to now."""
