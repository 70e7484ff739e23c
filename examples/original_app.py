"""The original service's serving path, rebuilt for the bench's side-by-side figures.

The project began as a Flask app answering `POST /predict` with a scikit-learn ElasticNet.
This file reproduces that stack and contract, not its code: Flask behind gunicorn with two
workers, the model fitted once when a worker starts (standing for the pickled model the
original loaded once), one pandas frame built per request, `{"prediction": x}` as the answer.

Usage (from the repository root, with the MLflow test environment that has these packages):
    .tools/mlflow/bin/gunicorn -w 2 -b 127.0.0.1:8000 --chdir examples original_app:app
"""

import os

import pandas as pd
from flask import Flask, jsonify, request
from sklearn.linear_model import ElasticNet

FEATURES = [
    "fixed_acidity",
    "volatile_acidity",
    "citric_acid",
    "residual_sugar",
    "chlorides",
    "free_sulfur_dioxide",
    "total_sulfur_dioxide",
    "density",
    "pH",
    "sulphates",
    "alcohol",
]

DATA = os.path.join(os.path.dirname(__file__), "..", "data", "winequality-red.csv")


def fit_model():
    frame = pd.read_csv(DATA)
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    model = ElasticNet(alpha=0.2, l1_ratio=0.1, random_state=42)
    model.fit(frame[FEATURES], frame["quality"])
    return model


app = Flask(__name__)
model = fit_model()


@app.post("/predict")
def predict():
    payload = request.get_json(force=True)
    row = pd.DataFrame([payload], columns=FEATURES)
    return jsonify({"prediction": float(model.predict(row)[0])})


@app.get("/health")
def health():
    return jsonify({"status": "healthy"})
