"""Experiments: sweeps, the run store, crafting-model cache, reports."""
