"""The pip requirements written beside a registered model: found by pickling it, whatever its size."""

from __future__ import annotations

import mlflow.sklearn
import numpy as np
from sklearn.ensemble import RandomForestRegressor

from medml.registry.tracking import _requirements


def test_a_model_holding_large_arrays_gets_its_requirements() -> None:
    """Pickle protocol 5 passes arrays of 64 KiB and more to the writer as a PickleBuffer (a random survival forest
    on SUPPORT2 failed to register with "object of type 'pickle.PickleBuffer' has no len()")."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 4))
    model = RandomForestRegressor(n_estimators=3, random_state=0).fit(X, X[:, 0])
    model.big_ = np.zeros(100_000)  # 800 kB in one buffer
    reqs = _requirements(model, mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE)
    names = {r.split("==")[0].lower() for r in reqs}
    assert {"scikit-learn", "numpy"} <= names
