"""Analysis: pure functions from results to observations to verdicts (DESIGN §2). No network
or store I/O; reference data shipped in monitor/data is read once, when first needed."""
