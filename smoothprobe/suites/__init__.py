"""Measurement suites: one call per geometry that runs its estimators and returns Estimates."""
