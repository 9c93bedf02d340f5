"""The live view: histograms of a run while it counts (just-bin-it's protocol, DAE
diagnostics PVs, a web page), exact to the file at the run's end."""
