"""NannyML's CBPE on its US Census employment data (reference, analysis, targets shipped in the nannyml wheel), run
in the peer's own virtual environment (.venv/peers/nannyml: nannyml pins lightgbm < 4.6 and brings ~35 packages,
so it is never a medml dependency). Writes each analysis chunk's rows, estimated and realised AUROC as JSON.

    .venv/peers/nannyml/bin/python benchmarks/monitor_nannyml_peer.py OUT.json [CHUNK_SIZE]
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ["NML_DISABLE_USAGE_LOGGING"] = "1"  # nannyml reports usage to segment.io unless told not to

import nannyml as nml
import numpy as np


def main(out: Path, chunk_size: int) -> None:
    reference, analysis, targets = nml.load_us_census_ma_employment_data()
    analysis = analysis.merge(targets, on="id")
    t0 = time.perf_counter()
    estimator = nml.CBPE(
        y_pred_proba="predicted_probability",
        y_pred="prediction",
        y_true="employed",
        problem_type="classification_binary",
        metrics=["roc_auc"],
        chunk_size=chunk_size,
    )
    estimator.fit(reference)
    result = estimator.estimate(analysis).filter(period="analysis").to_df()
    seconds = time.perf_counter() - t0
    chunks = []
    for _, row in result.iterrows():
        chunks.append(
            {
                "start": int(row[("chunk", "start_index")]),
                "end": int(row[("chunk", "end_index")]),
                "estimated": float(row[("roc_auc", "value")]),
                "realised": float(row[("roc_auc", "realized")]),
                "lower": float(row[("roc_auc", "lower_confidence_boundary")]),
                "upper": float(row[("roc_auc", "upper_confidence_boundary")]),
            }
        )
    out.write_text(
        json.dumps(
            {
                "nannyml": nml.__version__,
                "needs_calibration": bool(np.any(list(estimator.needs_calibration.values())))
                if isinstance(estimator.needs_calibration, dict)
                else bool(estimator.needs_calibration),
                "seconds": seconds,
                "chunk_size": chunk_size,
                "chunks": chunks,
            }
        )
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 5000)
