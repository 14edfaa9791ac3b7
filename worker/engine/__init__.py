"""The training engine: data, model, training loop and the constancy kernel."""
