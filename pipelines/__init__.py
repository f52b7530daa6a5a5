"""Busline's named pipelines: one module per pipeline, each declaring PIPELINE = Pipeline(...) (see
busline_core/pipelines.py). To add one, copy flights.py and test_flights.py under a new name."""
