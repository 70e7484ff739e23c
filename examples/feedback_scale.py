"""Writes a local store's prediction log and labels at scale, for the feedback join's bench.

    python3 examples/feedback_scale.py STORE_DIR [predictions] [labels]   (defaults 1000000 100000)

The lines have the form the server writes (one JSON object per line, see src/feedback/record.rs):
predictions spread over the last 24 hours in hour-partitioned files under `.predictions/log/`,
and one label for every tenth prediction (the first `labels` of them) under
`.predictions/labels/`, sent an hour after its prediction. Two model versions share the
traffic. Prints what it wrote.
"""

import json
import os
import random
import sys
import time

FEATURES = ["fixed_acidity", "volatile_acidity", "citric_acid", "residual_sugar", "chlorides",
            "free_sulfur_dioxide", "total_sulfur_dioxide", "density", "pH", "sulphates",
            "alcohol"]
BASE = [7.4, 0.7, 0.0, 1.9, 0.076, 11.0, 34.0, 0.9978, 3.51, 0.56, 9.4]
VERSIONS = ["20261201T000000000Z-aaaaaaa", "20261202T000000000Z-bbbbbbb"]


def uuid7(unix_millis: int, rng: random.Random) -> str:
    """A UUIDv7: 48 bits of milliseconds, version 7, 12 random bits, variant 10, 62 random bits."""
    value = (unix_millis & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= rng.getrandbits(12) << 64
    value |= 0b10 << 62
    value |= rng.getrandbits(62)
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def time_text(unix_millis: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(unix_millis // 1000)) + f".{unix_millis % 1000:03d}Z"


def partition(unix_millis: int) -> str:
    return time.strftime("%Y/%m/%d/%H", time.gmtime(unix_millis // 1000))


def main() -> None:
    store = sys.argv[1]
    predictions = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
    labels = int(sys.argv[3]) if len(sys.argv) > 3 else 100_000
    rng = random.Random(7)
    now = int(time.time() * 1000)
    start = now - 24 * 3600 * 1000
    root = os.path.join(store, ".predictions")
    logs, label_files = {}, {}

    def open_in(files, stream, millis):
        key = partition(millis)
        if key not in files:
            folder = os.path.join(root, stream, key)
            os.makedirs(folder, exist_ok=True)
            files[key] = open(os.path.join(folder, "bench-0.jsonl"), "w")
        return files[key]

    written_labels = 0
    log_bytes = 0
    for i in range(predictions):
        millis = start + i * (24 * 3600 * 1000) // predictions
        ident = uuid7(millis, rng)
        inputs = {name: round(value * (1 + rng.uniform(-0.05, 0.05)), 6)
                  for name, value in zip(FEATURES, BASE)}
        prediction = 5.0 + rng.uniform(-1, 1)
        line = json.dumps({"id": ident, "time": time_text(millis), "model_version": VERSIONS[(i // 10) % 2],
                           "inputs": inputs, "prediction": prediction, "sample_rate": 1.0},
                          separators=(",", ":")) + "\n"
        log_bytes += len(line)
        open_in(logs, "log", millis).write(line)
        if i % 10 == 0 and written_labels < labels:
            sent = min(millis + 3600 * 1000, now)
            quality = max(0, min(10, round(prediction + rng.gauss(0, 0.7))))
            label = json.dumps({"id": ident, "quality": quality, "time": time_text(sent)},
                               separators=(",", ":")) + "\n"
            open_in(label_files, "labels", sent).write(label)
            written_labels += 1
    for handle in list(logs.values()) + list(label_files.values()):
        handle.close()
    print(f"wrote {predictions} logged predictions ({log_bytes / 1e6:.0f} MB) and {written_labels} labels")


if __name__ == "__main__":
    main()
