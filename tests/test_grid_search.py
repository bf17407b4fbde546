"""GridSearchCV over mixest estimators under joblib's dask backend (a dask.distributed cluster)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV

from mixest import MixDVAETracker
from mixest.datasets import make_tracking_mixture
from mixest.tracking import mota_scorer

distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed "
                                  "(pip install 'mixest[dask]')")


def _search(backend: str | None) -> dict:
    import joblib

    X, y = make_tracking_mixture(6, n_frames=20, jitter=0.08, miss_prob=0.3, shuffle=True,
                                 random_state=0)
    tracker = MixDVAETracker(prior="constant-velocity", max_iter=10, random_state=0)
    search = GridSearchCV(tracker, {"obs_noise": [0.02, 0.08], "clutter": [0.0, 0.1]},
                          scoring=mota_scorer, cv=3, n_jobs=-1 if backend else None)
    if backend is None:
        return search.fit(X, y).cv_results_
    with joblib.parallel_config(backend=backend):
        return search.fit(X, y).cv_results_


def test_dask_backend_gives_the_same_cv_results():
    local = _search(None)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1",
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        remote = _search("dask")
        # the fits ran in the workers' processes: they imported mixest there
        imported = client.run(lambda: __import__("sys").modules.get("mixest.tracking._tracker")
                              is not None)
        assert all(imported.values()), imported
    assert remote["params"] == local["params"]
    for key in ("mean_test_score", "std_test_score", "rank_test_score",
                *(f"split{k}_test_score" for k in range(3))):
        np.testing.assert_array_equal(remote[key], local[key])
    assert np.ptp(local["mean_test_score"]) > 0  # the grid's settings do differ
