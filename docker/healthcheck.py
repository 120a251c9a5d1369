"""Container HEALTHCHECK for the services (stdlib only): exit 0 iff `GET /readyz` answers 200.

    python /app/healthcheck.py REWARD_API_ 8001

For runners that are not Kubernetes (docker, podman, compose `depends_on: service_healthy`); in
Kubernetes the Deployments' own probes decide and this is never run. The port is the service's
`<PREFIX>PORT` variable, else the default given, so a container started with another port is
still checked on the port it listens on. Readiness rather than liveness: "healthy" then means
"the model is loaded and warmed, send traffic", and a draining process reports unhealthy.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: healthcheck.py ENV_PREFIX DEFAULT_PORT", file=sys.stderr)
        return 2
    prefix, default_port = argv
    port = os.environ.get(f"{prefix}PORT", default_port)
    url = f"http://127.0.0.1:{port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            ok = response.status == 200
    except (urllib.error.URLError, OSError) as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return 1
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
