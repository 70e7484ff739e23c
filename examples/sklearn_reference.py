"""scikit-learn on exactly the folds sommelier uses, for the README's quality table.

Usage:
    cargo run --release --example quality -- --folds-out folds.csv
    python3 examples/sklearn_reference.py folds.csv

The CSV holds the 11 features, `quality` and `fold` (identical feature rows share a fold).
Needs scikit-learn (the MLflow test environment has it).
"""

import csv
import math
import sys

from sklearn.ensemble import (
    ExtraTreesRegressor,
    HistGradientBoostingRegressor,
    RandomForestRegressor,
)
from sklearn.linear_model import ElasticNet


def load(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    features = [k for k in rows[0] if k not in ("quality", "fold")]
    x = [[float(r[k]) for k in features] for r in rows]
    y = [float(r["quality"]) for r in rows]
    fold = [int(r["fold"]) for r in rows]
    return x, y, fold


def grouped_cv_rmse(make_model, x, y, fold):
    scores = []
    for k in sorted(set(fold)):
        train = [i for i, f in enumerate(fold) if f != k]
        test = [i for i, f in enumerate(fold) if f == k]
        model = make_model().fit([x[i] for i in train], [y[i] for i in train])
        predicted = model.predict([x[i] for i in test])
        mse = sum((p - y[i]) ** 2 for p, i in zip(predicted, test)) / len(test)
        scores.append(math.sqrt(mse))
    mean = sum(scores) / len(scores)
    sd = math.sqrt(sum((s - mean) ** 2 for s in scores) / (len(scores) - 1))
    return mean, sd


def main():
    x, y, fold = load(sys.argv[1])
    models = {
        "ExtraTrees(100)": lambda: ExtraTreesRegressor(n_estimators=100, random_state=42, n_jobs=-1),
        "RandomForest(100)": lambda: RandomForestRegressor(n_estimators=100, random_state=42, n_jobs=-1),
        "HistGradientBoosting": lambda: HistGradientBoostingRegressor(random_state=42),
        "ElasticNet(0.2, 0.1)": lambda: ElasticNet(alpha=0.2, l1_ratio=0.1, max_iter=10000),
    }
    print(f"{'scikit-learn model':<22} {'grouped cv rmse':>18}")
    for name, make in models.items():
        mean, sd = grouped_cv_rmse(make, x, y, fold)
        print(f"{name:<22} {mean:>9.4f} ± {sd:.4f}")


if __name__ == "__main__":
    main()
