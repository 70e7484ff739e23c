"""The local stack's Alertmanager receiver: prints every notification it receives, one line per
alert, with its summary and runbook (scripts/stack and compose.yaml run it).

    python3 print_notifications.py [--host 127.0.0.1] [--port 9095]

Standard library only. Not for production: on the monitoring VM Alertmanager sends to people.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def lines(payload: dict) -> list[str]:
    out = []
    for alert in payload.get("alerts", []):
        labels, annotations = alert.get("labels", {}), alert.get("annotations", {})
        where = " ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in ("alertname", "severity"))
        out.append(
            f"{datetime.now(timezone.utc):%Y-%m-%dT%H:%M:%SZ} {alert.get('status', '?').upper()} "
            f"{labels.get('alertname', '?')} ({labels.get('severity', '-')}) {where}".rstrip()
            + f"\n    {annotations.get('summary', '')}"
            + (f"\n    runbook: {annotations['runbook']}" if annotations.get("runbook") else "")
        )
    return out


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
        try:
            printed = lines(json.loads(body))
            status = 200
        except (ValueError, AttributeError) as error:
            printed, status = [f"unreadable notification: {error}"], 400
        for line in printed:
            print(line, flush=True)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):  # noqa: N802
        self.send_response(200)  # readiness
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9095)
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    print(f"printing Alertmanager notifications sent to http://{args.host}:{args.port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
