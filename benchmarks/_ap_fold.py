"""One fold of AutoPrognosis 2.0, run by benchmarks/bench_autoprognosis.py in AutoPrognosis's own virtual environment.

Usage: .venv/peers/autoprognosis/bin/python benchmarks/_ap_fold.py FOLD_DIR NUM_ITER TIMEOUT CLASSIFIERS
FOLD_DIR holds train.csv (features, "target", "pid") and test.csv (features); writes scores.txt and info.json.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd


def main() -> None:
    folder, num_iter, timeout, classifiers = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    warnings.filterwarnings("ignore")
    from autoprognosis.studies.classifiers import ClassifierStudy

    train = pd.read_csv(folder / "train.csv")
    test = pd.read_csv(folder / "test.csv")
    start = time.perf_counter()
    study = ClassifierStudy(
        dataset=train,
        target="target",
        group_id="pid",
        num_iter=num_iter,
        num_study_iter=1,
        num_ensemble_iter=3,
        timeout=timeout,
        classifiers=classifiers.split(","),
        imputers=["mean"],
        workspace=folder / "workspace",
        random_state=0,
        n_folds_cv=5,
        sample_for_search=False,  # 0.1.22 tests a Series for truth when it subsamples with group_id
    )
    model = study.fit()
    scores = np.asarray(model.predict_proba(test)).reshape(len(test), -1)[:, -1]
    np.savetxt(folder / "scores.txt", scores)
    (folder / "info.json").write_text(json.dumps({"seconds": time.perf_counter() - start, "model": model.name()}))


if __name__ == "__main__":
    main()
