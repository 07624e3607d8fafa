"""Orchestration: the public API the CLI calls to take data to a registered, evaluated, reported model.

- :mod:`medml.pipelines.tabular`: a TaskDataset -> search, calibrate, fit, evaluate, explain, register, report.
- :mod:`medml.pipelines.imaging`: an image dataset -> a MONAI network, evaluated, explained and registered.
- :mod:`medml.pipelines.catalogue`: the bundled real datasets, each with its loader (and its serving contract).

Importing this package imports none of them (each pulls in optuna, matplotlib or torch): import the module you use.
"""
