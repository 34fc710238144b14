"""Browser editor latency: slider move -> new image, and the memory of the running app.

    python -m benchmarks.app_latency                       # default generator (256 px) and its regressor
    python -m benchmarks.app_latency --moves 50 port=0 regressor_path=<regressor.pt>

Serves `editing.app` in this process on a free localhost port and times, from the client's side, the HTTP round
trip of `--moves` yaw slider moves (``POST /api/edit`` with editor "preview": the cached-Jacobian step, one
synthesis, the landmarks drawn and the PNG sent back), each to a new yaw within +-15 degrees of the face's, with
and without the detected (red) landmarks; then `--releases` slider releases (the configured linear editor through
`editing.session.apply_editor`). Prints median and p95 in milliseconds, then the process's resident and peak
memory. Other arguments are overrides of conf/app.yaml. The regressor is built on first use (editing.pipeline).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
import urllib.request

import numpy as np

from editing.app import build_session
from editing.app_server import create_app, serve_in_background
from editing.pipeline import compose_stage


def post_json(url: str, payload: dict) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request) as answer:
        return json.load(answer)


def round_trips(url: str, yaws: np.ndarray, editor: str, detect: bool) -> tuple[np.ndarray, np.ndarray]:
    """(client, server) seconds per move to each yaw in `yaws` (degrees), after one warm-up move."""
    post_json(f"{url}/api/edit", {"changes": {"yaw": float(yaws[0])}, "editor": editor, "detect": detect})
    client, server = [], []
    for yaw in yaws:
        start = time.perf_counter()
        view = post_json(f"{url}/api/edit", {"changes": {"yaw": float(yaw)}, "editor": editor, "detect": detect})
        client.append(time.perf_counter() - start)
        server.append(view["seconds"])
    return np.array(client), np.array(server)


def resident_mib() -> float:
    """The resident memory of this process now, MiB (Linux /proc)."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def report(label: str, client: np.ndarray, server: np.ndarray) -> None:
    print(
        f"{label}: median {1000 * np.median(client):.0f} ms, p95 {1000 * np.percentile(client, 95):.0f} ms "
        f"over {len(client)} (server side median {1000 * np.median(server):.0f} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=50)
    parser.add_argument("--releases", type=int, default=5)
    parser.add_argument("overrides", nargs="*", help="overrides of conf/app.yaml, e.g. seed=12")
    args = parser.parse_args()
    cfg = compose_stage("app", args.overrides)
    start = time.perf_counter()
    session = build_session(cfg)
    print(
        f"app ready in {time.perf_counter() - start:.1f} s: {session.generator.name} {session.generator.img_resolution} px, "
        f"{session.state()['face']}, regressor {session.regressor.metadata['path']}"
    )
    yaw0 = next(entry["value"] for entry in session.sliders() if entry["name"] == "yaw")
    yaws = yaw0 + np.linspace(-15, 15, args.moves)
    with serve_in_background(create_app(session)) as url:
        report("slider move, detected landmarks on", *round_trips(url, yaws, "preview", True))
        report("slider move, detected landmarks off", *round_trips(url, yaws, "preview", False))
        if args.releases > 0:
            report(
                "slider release, linear editor",
                *round_trips(url, yaws[:: max(1, args.moves // args.releases)], "linear", True),
            )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"memory of the app process: {resident_mib():.0f} MiB resident, {peak:.0f} MiB peak")


if __name__ == "__main__":
    main()
