"""Wall time and peak memory of the whole pipeline the editing commands build: sample -> fit -> train φ.

    python -m benchmarks.pipeline                                          # 50 000 faces, experiment=paper_w
    python -m benchmarks.pipeline --num-samples 300 --experiment smoke     # a quick check
    python -m benchmarks.pipeline --work-dir DIR [override ...]            # keep (and resume) the artifacts in DIR

Runs `editing.pipeline.ensure_regressor` on the transfer command's config (conf/transfer.yaml) with
``pipeline.num_samples=N "pipeline.train=['experiment=E']"`` and the overrides: the stages that

    python -m editing.transfer source=1 target=2 pipeline.num_samples=50000 "pipeline.train=['experiment=paper_w']"

builds before its edit, each through its own ``run(cfg)``. Without ``--work-dir`` the artifacts go
to a fresh temporary folder (removed at the end), so that every stage runs. Prints one line per
stage and one for the whole, for scripts to read:

    stage=sample ran=true wall_s=... peak_rss_mb=...
    stage=fit ran=true wall_s=... peak_rss_mb=...
    stage=train ran=true wall_s=... peak_rss_mb=...
    stage=total wall_s=... peak_rss_mb=... regressor=<path>

- ran=false: the stage's artifact was already in the work dir (nothing to time);
- wall_s: the stage's ``run(cfg)``; total: the whole `ensure_regressor` call (config composition included);
- peak_rss_mb: the largest resident memory, summed over this process and all its child processes
  (the sampling workers), polled every `POLL_S` seconds from ``/proc`` (Linux) while the stage ran.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from hydra import compose, initialize_config_module

from editing.pipeline import ensure_regressor
from nrsfm import fit
from regressor import train
from sampling import sample

POLL_S = 0.1
STAGES = {"sample": sample, "fit": fit, "train": train}


def process_tree_rss_mb(root: int) -> float:
    """Resident memory in MB of process `root` and all its descendants, read from ``/proc``."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):  # the process ended while we looked
            continue
    tree, frontier = {root}, [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier and pid not in tree]
        tree.update(children)
        frontier = children
    pages = 0
    for pid in tree:
        try:
            pages += int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakMemory:
    """Polls `process_tree_rss_mb` of this process in a background thread; `reset()` starts a new peak."""

    def __init__(self):
        self.peak_mb, self._generation = 0.0, 0
        self._lock, self._stop = threading.Lock(), threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            generation = self._generation
            rss_mb = process_tree_rss_mb(os.getpid())
            with self._lock:
                if generation == self._generation:  # not measured across a reset
                    self.peak_mb = max(self.peak_mb, rss_mb)
            self._stop.wait(POLL_S)

    def reset(self) -> None:
        rss_mb = process_tree_rss_mb(os.getpid())
        with self._lock:
            self.peak_mb, self._generation = rss_mb, self._generation + 1

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


@contextmanager
def timed_stages(memory: PeakMemory, records: dict):
    """Wraps each stage module's ``run`` so that calling it records {stage: (wall_s, peak_rss_mb)}."""
    originals = {name: module.run for name, module in STAGES.items()}

    def timed(name, run):
        def wrapper(cfg):
            memory.reset()
            start = time.perf_counter()
            result = run(cfg)
            records[name] = (time.perf_counter() - start, memory.peak_mb)
            return result

        return wrapper

    for name, module in STAGES.items():
        module.run = timed(name, originals[name])
    try:
        yield
    finally:
        for name, module in STAGES.items():
            module.run = originals[name]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-samples", type=int, default=50000)
    parser.add_argument("--experiment", default="paper_w", help="conf/experiment/ config of the training stage")
    parser.add_argument("--work-dir", default=None, help="where the artifacts go (default: a fresh temporary folder)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the transfer config (e.g. generator=...)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pipeline-") as temporary:
        work_dir = Path(args.work_dir) if args.work_dir is not None else Path(temporary)
        overrides = [
            f"paths.work_dir={work_dir}",
            f"pipeline.num_samples={args.num_samples}",
            f"pipeline.train=['experiment={args.experiment}']",
            *args.overrides,
        ]
        with initialize_config_module(config_module="conf", version_base="1.3"):
            cfg = compose(config_name="transfer", overrides=overrides)
            records: dict = {}
            with PeakMemory() as memory, timed_stages(memory, records):
                start = time.perf_counter()
                regressor = ensure_regressor(cfg)
                total_s = time.perf_counter() - start
        for name in STAGES:
            wall_s, peak_mb = records.get(name, (float("nan"), float("nan")))
            ran = "true" if name in records else "false"
            print(f"stage={name} ran={ran} wall_s={wall_s:.1f} peak_rss_mb={peak_mb:.0f}", flush=True)
        peak_mb = max((peak for _, peak in records.values()), default=float("nan"))
        print(f"stage=total wall_s={total_s:.1f} peak_rss_mb={peak_mb:.0f} regressor={regressor}", flush=True)


if __name__ == "__main__":
    main()
