"""Time and accuracy of the rank-one NRSfM fit on synthetic data drawn from the model itself.

For each (N, L): time a thin SVD of the (2N, L) measurement matrix, the two-step fit (rigid SVD +
metric upgrade + residual SVD + ALS for D and alpha, `num_refine_steps=0`) and the fit with the
joint refinement; print both ratios to the SVD time, RMSE against the noise level, the median
rotation error after one global alignment, and the process's peak resident memory so far.

    python -m benchmarks.nrsfm_fit                 # small sizes, a few minutes on 2 cores
    python -m benchmarks.nrsfm_fit --full          # N in {1k, 10k, 50k, 200k} x L in {68, 468}
    python -m benchmarks.nrsfm_fit --device cuda --full
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from nrsfm import evaluation
from nrsfm.factorize import factorize
from nrsfm.geometry import euler_angles_to_matrix
from nrsfm.synthetic import synthetic_landmarks


def median_rotation_error_deg(q: torch.Tensor, true_q: torch.Tensor) -> float:
    """Median angle between the rotations of q and true_q (N, 8 + K) after one global alignment."""
    return evaluation.median_rotation_error_deg(
        euler_angles_to_matrix(q[:, 3:6].double().cpu()), euler_angles_to_matrix(true_q[:, 3:6].double().cpu())
    )


def timed(function, device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = function()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return result, time.perf_counter() - start


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000], help="numbers of samples N")
    parser.add_argument("--landmarks", type=int, nargs="+", default=[68, 468], help="numbers of landmarks L")
    parser.add_argument("--full", action="store_true", help="the full grid: N in {1k, 10k, 50k, 200k}, L in {68, 468}")
    parser.add_argument("--num-basis", type=int, default=12)
    parser.add_argument("--noise", type=float, default=0.002)
    parser.add_argument("--refine-steps", type=int, default=200)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    sizes = [1000, 10000, 50000, 200000] if args.full else args.sizes
    dtype = getattr(torch, args.dtype)
    device = torch.device(args.device)
    print(f"K={args.num_basis} noise={args.noise} dtype={args.dtype} device={device} threads={torch.get_num_threads()}")
    print(
        "   N     L |  svd s | two-step s  ratio | refined s  ratio | rmse two-step  refined  noise | rot err deg two-step refined | peak MB"
    )
    for num_landmarks in args.landmarks:
        for num_samples in sizes:
            data = synthetic_landmarks(num_samples, num_landmarks, args.num_basis, args.noise, args.seed, dtype)
            landmarks = data.landmarks.to(device)
            found = torch.ones(num_samples, dtype=torch.bool, device=device)
            centred = landmarks - landmarks.mean(1, keepdim=True)
            measurement = centred.transpose(1, 2).reshape(-1, num_landmarks)
            _, svd_time = timed(lambda: torch.linalg.svd(measurement, full_matrices=False), device)
            del centred
            (two_step, q_two_step), two_step_time = timed(
                lambda: factorize(landmarks, found, args.num_basis, num_refine_steps=0), device
            )
            (model, q), refined_time = timed(
                lambda: factorize(landmarks, found, args.num_basis, num_refine_steps=args.refine_steps), device
            )
            print(
                f"{num_samples:6d} {num_landmarks:5d} | {svd_time:6.2f} | {two_step_time:10.2f} {two_step_time / svd_time:6.2f}"
                f" | {refined_time:9.2f} {refined_time / svd_time:6.2f}"
                f" | {two_step.metadata['rmse']:13.5f} {model.metadata['rmse']:8.5f} {args.noise:6.4f}"
                f" | {median_rotation_error_deg(q_two_step, data.q):20.2f} {median_rotation_error_deg(q, data.q):7.2f}"
                f" | {peak_memory_mb(device):7.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
