"""Below the API and the engine: the experiment, the run spec, settings, records, run files."""
