"""decaylab worker: the job loop and the training engine (imports server, never the reverse)."""
