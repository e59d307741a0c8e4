"""CacheStor.memory(): joblib.Memory's interface, as scikit-learn's Pipeline uses it."""

from __future__ import annotations

from pathlib import Path

import pytest

from my_cache import CacheStor
from tests.conftest import RunPython

PIPELINE = """
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from my_cache import CacheStor


class CountingScaler(TransformerMixin, BaseEstimator):
    def fit(self, X, y=None):
        with open("fits.log", "a") as log:  # counted across processes
            log.write("fit\\n")
        self.mean_ = X.mean(axis=0)
        return self

    def transform(self, X):
        return X / self.mean_


stor = CacheStor(db_file="cache/my.db", type_storage="in_disk")
X = np.random.default_rng(0).random((2000, 5)) + 1
y = (X[:, 0] > 1.5).astype(int)
steps = [("scale", CountingScaler()), ("model", LogisticRegression())]
pipe = Pipeline(steps, memory=stor.memory(folder="cache/pipeline")).fit(X, y)
print(round(pipe.score(X, y), 3))
"""


def test_a_pipeline_refits_no_transformer_in_a_later_process(
    run_python: RunPython, tmp_path: Path
) -> None:
    first = run_python(PIPELINE).stdout
    second = run_python(PIPELINE).stdout
    assert first == second
    assert (tmp_path / "fits.log").read_text() == "fit\n"
    other_data = PIPELINE.replace("default_rng(0)", "default_rng(1)")
    run_python(other_data)
    assert (tmp_path / "fits.log").read_text() == "fit\nfit\n"


RUNS: list[int] = []


def square(x: int, verbose: bool = False) -> int:
    RUNS.append(x)
    return x * x


def test_the_joblib_interface(tmp_path: Path) -> None:
    stor = CacheStor(db_file=tmp_path / "c.db", type_storage="in_disk")
    memory = stor.memory(folder=tmp_path / "m")
    assert memory.location == str(tmp_path / "m")
    RUNS.clear()
    cached = memory.cache(square, ignore=["verbose"])
    assert cached(3) == cached(3, verbose=True) == 9
    assert memory.cache(ignore=["verbose"])(square)(3) == 9  # as a decorator factory
    assert memory.eval(square, 4) == memory.eval(square, 4) == 16
    assert RUNS == [3, 4]
    memory.clear(warn=False)
    assert cached(3) == 9 and RUNS == [3, 4, 3]
    memory.reduce_size()
    with pytest.raises(ValueError, match="mmap_mode"):
        memory.cache(square, mmap_mode="w+")
    stor.close()


def test_clear_empties_an_in_memory_folder_too() -> None:
    stor = CacheStor(type_storage="in_memory")
    memory = stor.memory(folder="m")
    runs: list[int] = []

    @memory.cache
    def double(x: int) -> int:
        runs.append(x)
        return 2 * x

    double(1), double(1)
    memory.clear()
    double(1)
    assert runs == [1, 1]


def test_copies_and_pickles_of_a_cached_pipeline_work(tmp_path: Path) -> None:
    import copy
    import pickle

    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    stor = CacheStor(db_file=tmp_path / "c.db", type_storage="in_disk")
    memory = stor.memory(folder=tmp_path / "pipeline")
    assert copy.deepcopy(memory) is memory and copy.copy(memory) is memory
    pipe = Pipeline([("scale", StandardScaler()), ("svc", SVC())], memory=memory)
    assert clone(pipe).memory is memory
    X = [[float(i), float(i % 3)] for i in range(30)]
    y = [i % 2 for i in range(30)]
    search = GridSearchCV(pipe, {"svc__C": [0.1, 1.0]}, cv=2).fit(X, y)
    loaded = pickle.loads(pickle.dumps(search.best_estimator_))
    assert loaded.memory.location == str(tmp_path / "pipeline")
    assert list(loaded.predict(X)) == list(search.best_estimator_.predict(X))
    stor.close()
