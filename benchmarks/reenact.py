"""Re-enactment on the synthetic generator, measured against its ground truth; prints markdown tables.

    python -m benchmarks.reenact                                  # 120 frames, driver seed 1, target seed 2
    python -m benchmarks.reenact --num-frames 60 --mode relative  # puppeteering instead
    python -m benchmarks.reenact --strip docs/reenact_strip.png   # also copies the strip of frames there

Renders a driving video of face A (`editing.driving_video`: yaw -25..25 deg, two nods of +-10 deg
pitch, a smile, then the mouth opening), re-enacts face B from it with `editing.reenact.run` (the
default config: the pipeline's regressor for the default generator, built on first use), and measures
per frame:
- pose error: the result's true yaw and pitch (the generator's ground truth of its latent) against
  the driver's true ones, and the same on the images in the model's degrees (`nrsfm.fit_q` of dlib's
  landmarks on the result panels of reenact.mp4 against the driver's fitted q), median |error|, and the
  slopes true result on true driver and model driver on true driver;
- temporal jitter: mean |second difference| of true yaw over frames, result and driver;
- identity drift: RMS over the 16 true identity coefficients of result minus target face, in std of
  those coefficients over 1000 random faces, against a random latent step of the same length per frame
  (the same measure `editing.evaluate` reports); and the same spread around the result's mean over frames;
- the expression: Pearson r of the result's true smile and mouth opening with the driver's;
- throughput: frames per second end to end (reading, detection + fit, edits, rendering, writing)
  and excluding the generator (without the rendering stage). Timings on a loaded machine are not final.
Run it as a module (`-m`).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_module

from backbones.synthetic.face_model import EXPRESSION_NAMES
from common.cli import build
from editing import reenact
from editing.driving_video import write_driving_video
from editing.metrics import coefficients_moved, median, slope
from editing.session import load_regressor
from editing.sources import detect_frames, detector_for_model, fit_frames
from editing.video import read_video


def second_difference_jitter(values: np.ndarray) -> float:
    """Mean |x[t+1] - 2 x[t] + x[t-1]| over a (T,) series."""
    return float(np.abs(np.diff(values, 2)).mean())


def random_steps(latents: torch.Tensor, latent0: torch.Tensor, seed: int) -> torch.Tensor:
    """latent0 (1, d) moved in a random direction per frame by |latents[t] - latent0|: (T, d)."""
    lengths = (latents - latent0).flatten(1).norm(dim=-1)
    directions = torch.nn.functional.normalize(
        torch.randn(latents.flatten(1).shape, generator=torch.Generator().manual_seed(seed), dtype=latents.dtype),
        dim=-1,
    )
    return latent0 + (lengths[:, None] * directions).view_as(latents)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-frames", type=int, default=120)
    parser.add_argument("--driver-seed", type=int, default=1)
    parser.add_argument("--target", type=int, default=2)
    parser.add_argument("--mode", default="absolute")
    parser.add_argument("--parts", default="both")
    parser.add_argument("--out", default=None, help="output folder (default: a temporary one)")
    parser.add_argument("--strip", default=None, help="copy the strip of frames (reenact.png) here")
    parser.add_argument("overrides", nargs="*", help="extra overrides for conf/reenact.yaml")
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="reenact-"))
    torch.set_num_threads(2)
    with initialize_config_module(config_module="conf", version_base="1.3"):
        base = compose(config_name="reenact", overrides=["driving=none.mp4", *args.overrides])
        generator = build(base.generator, "generator")
        driving, truth_path = write_driving_video(out / "driving.mp4", generator, args.driver_seed, args.num_frames)
        cfg = compose(
            config_name="reenact",
            overrides=[
                f"driving={driving}",
                f"target={args.target}",
                f"mode={args.mode}",
                f"parts={args.parts}",
                f"out_dir={out / 'result'}",
                *args.overrides,
            ],
        )
        result = reenact.run(cfg)
        regressor = load_regressor(cfg, generator)
    truth = dict(np.load(truth_path))
    latents = result["latents_array"]
    psi = float(cfg.truncation_psi)
    with torch.no_grad():
        ws = generator.to_ws(latents, regressor.latent_space, psi)
        ws_target = generator.mapping(generator.z_from_seeds([args.target]), psi)
        result_truth = generator.ground_truth(ws)
        target_truth = generator.ground_truth(ws_target)
        random_truth = generator.ground_truth(
            generator.to_ws(
                random_steps(latents, generator.latent_from_ws(ws_target, regressor.latent_space), 0),
                regressor.latent_space,
                psi,
            )
        )
        spread = generator.ground_truth(generator.sample(1000, 5_000_000, psi))["identity"].std(0)
    video, _ = read_video(result["video"])
    detector = detector_for_model(cfg.detector, regressor.nrsfm)
    detections = detect_frames(
        detector, np.ascontiguousarray(video[:, :, video.shape[1] :])
    )  # the result panels, as encoded
    q_result = fit_frames(regressor.nrsfm, detections.landmarks, detections.found)
    q_driver = result["q_driving"]
    seen = detections.found & result["found"]

    driver_deg = torch.from_numpy(truth["rotation_deg"]).double()
    result_deg = result_truth["rotation_deg"].double()
    model_driver = torch.rad2deg(q_driver[:, 3:5].double())
    model_result = torch.rad2deg(q_result[:, 3:5].double())
    print(
        f"\n{args.num_frames} frames, driver seed {args.driver_seed} -> target seed {args.target}, mode={args.mode}, "
        f"parts={args.parts}; smoothing: {result['smoothing']}; edits: {result['trajectory']}; "
        f"driving frames without a face: {result['num_interpolated']}; "
        f"result frames without a face: {int((~detections.found).sum())}\n"
    )
    print("| per frame, result vs driver | pitch | yaw |\n|---|---|---|")
    true_error = (result_deg - driver_deg).abs()
    model_error = (model_result - model_driver)[seen].abs()
    print(f"| median abs error, true [deg] | {median(true_error[:, 0]):.2f} | {median(true_error[:, 1]):.2f} |")
    print(
        f"| median abs error on the image [model deg] | {median(model_error[:, 0]):.2f} | {median(model_error[:, 1]):.2f} |"
    )
    print(
        f"| slope true result / true driver | {slope(result_deg[:, 0], driver_deg[:, 0]):.2f} | "
        f"{slope(result_deg[:, 1], driver_deg[:, 1]):.2f} |"
    )
    print(
        f"| slope model driver / true driver | {slope(model_driver[result['found'], 0], driver_deg[result['found'], 0]):.2f} | "
        f"{slope(model_driver[result['found'], 1], driver_deg[result['found'], 1]):.2f} |"
    )
    print(
        f"| true range of the result [deg] | {float(result_deg[:, 0].min()):.1f} .. {float(result_deg[:, 0].max()):.1f} | "
        f"{float(result_deg[:, 1].min()):.1f} .. {float(result_deg[:, 1].max()):.1f} |"
    )

    jitter_result, jitter_driver = (
        second_difference_jitter(result_deg[:, 1].numpy()),
        second_difference_jitter(driver_deg[:, 1].numpy()),
    )
    moved = coefficients_moved(
        target_truth["identity"].expand_as(result_truth["identity"]), result_truth["identity"], spread
    )
    moved_random = coefficients_moved(
        target_truth["identity"].expand_as(random_truth["identity"]), random_truth["identity"], spread
    )
    around_mean = coefficients_moved(
        result_truth["identity"].mean(0, keepdim=True).expand_as(result_truth["identity"]),
        result_truth["identity"],
        spread,
    )
    random_mean = coefficients_moved(
        random_truth["identity"].mean(0, keepdim=True).expand_as(random_truth["identity"]),
        random_truth["identity"],
        spread,
    )
    print("\n| over the frames | result | reference |\n|---|---|---|")
    print(
        f"| true yaw jitter, mean abs second difference [deg] (reference: the driver) | {jitter_result:.3f} | {jitter_driver:.3f} |"
    )
    print(
        f"| true identity moved from the target face, median [std] (reference: random step of the same length) | "
        f"{median(moved):.3f} | {median(moved_random):.3f} |"
    )
    print(
        f"| true identity around its mean over the frames, median [std] (reference: the random steps) | "
        f"{median(around_mean):.3f} | {median(random_mean):.3f} |"
    )
    steps = (latents - generator.latent_from_ws(ws_target, regressor.latent_space)).flatten(1).norm(dim=-1)
    print(f"| median latent step from the target face | {median(steps):.2f} | |")
    for name in ("smile", "mouth_open"):
        index = EXPRESSION_NAMES.index(name)
        correlation = np.corrcoef(result_truth["expression"][:, index].numpy(), truth["expression"][:, index])[0, 1]
        print(f"| true {name}: Pearson r of result with driver | {correlation:.2f} | |")

    seconds = result["seconds"]
    total = sum(seconds.values())
    frames = args.num_frames
    print("\n| throughput | frames/s |\n|---|---|")
    print(f"| end to end (read, detect + fit, edit, render, write) | {frames / total:.2f} |")
    print(f"| excluding the generator (without rendering) | {frames / (total - seconds['render']):.2f} |")
    print("| stages [s]: " + ", ".join(f"{name} {value:.1f}" for name, value in seconds.items()) + " | |")
    print(f"\noutputs: {result['out_dir']}")
    if args.strip:
        Path(args.strip).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(result["strip"], args.strip)
        print(f"strip: {args.strip}")


if __name__ == "__main__":
    main()
