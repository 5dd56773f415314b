"""How exact is inference and training under CUDA autocast? Prints one table.

Rows: the reference inference fixture (authors'-format checkpoint with the fixtures README's random weights) run in
fp32 and under bf16/fp16 autocast, compared with the reference probabilities (max |Δp|, argmax agreement), and one
training step of the full objective under each precision (every loss finite, seconds, peak memory). Needs the
``shared/fixtures`` folder (``--fixtures``); random weights only, nothing is downloaded.

    python benchmarks/check_cuda_precision.py --fixtures ../shared/fixtures [--device cuda]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mpae_core.checkpoint import load_checkpoint  # noqa: E402
from mpae_core.inference import Predictor  # noqa: E402
from mpae_core.perceptual import resolve_perceptual_network  # noqa: E402


def official_checkpoint(fixtures: Path, folder: Path) -> Path:
    """The celeba_k16 seed-0 random checkpoint, regenerated as the fixtures README describes."""
    manifest = json.loads((fixtures / "official_manifest.json").read_text())["celeba_k16"]
    rng = np.random.default_rng(0)
    state = {}
    for name, shape, _ in manifest["keys"]:
        a = rng.standard_normal(size=shape, dtype=np.float32) * np.float32(0.02)
        if len(shape) == 1 and name.endswith(".weight"):
            a = a + np.float32(1.0)
        state[name] = torch.from_numpy(a)
    path = folder / "model_best.pth"
    torch.save(state, path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fixtures", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "fixtures",
                        help="folder with official_manifest.json and reference_inference_celeba_k16_seed0.npz")
    parser.add_argument("--device", default="cuda", help="torch device to test (default: cuda)")
    parser.add_argument("--train-batch", type=int, default=16, help="batch size of the training-step rows")
    args = parser.parse_args()
    device = torch.device(args.device)
    reference = np.load(args.fixtures / "reference_inference_celeba_k16_seed0.npz")
    with tempfile.TemporaryDirectory() as tmp:
        model = load_checkpoint(official_checkpoint(args.fixtures, Path(tmp)), device=device)
    perceptual = resolve_perceptual_network(allow_random=True).to(device)
    images = torch.from_numpy(reference["images"]).to(device)
    precisions = [("fp32", None), ("bf16", torch.bfloat16), ("fp16", torch.float16)]
    print(f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else device}, torch {torch.__version__}")
    print(f"{'precision':<10}{'max|dp| vs ref':>16}{'argmax agree':>14}{'train step s':>14}{'losses finite':>15}"
          f"{'peak MiB':>10}")
    for name, dtype in precisions:
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            probs = model.predict_probs(images, output_size=(128, 128)).float().cpu().numpy()
        diff = np.abs(probs - reference["probs"]).max()
        agree = (probs.argmax(1) == reference["probs"].argmax(1)).mean()
        model.train()
        batch = torch.randn(args.train_batch, 3, 224, 224, device=device)
        for attempt in range(2):  # the first step warms up kernels; time the second
            if device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats(device)
            start = time.perf_counter()
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                out = model.training_losses(batch, perceptual, generator=torch.Generator(device).manual_seed(0))
            out.losses["total"].backward()
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
            model.zero_grad(set_to_none=True)
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
        finite = all(torch.isfinite(v).item() for v in out.losses.values())
        model.eval()
        print(f"{name:<10}{diff:>16.2e}{agree * 100:>13.3f}%{seconds:>14.3f}{str(finite):>15}{peak:>10.0f}")
    # The Predictor's path: CUDA graph replay with its default precision. A second, different batch replayed
    # through the same captured graph must match an eager run of that batch.
    predictor = Predictor(model, device)
    eager = Predictor(model, device, cuda_graphs=False)
    flipped = torch.flip(images, dims=[-1])
    for name, batch, expected in (("graphs", images, reference["probs"]),
                                  ("graphs 2", flipped, eager.probs(flipped, (128, 128)).float().cpu().numpy())):
        probs = predictor.probs(batch, (128, 128)).float().cpu().numpy()
        agree = (probs.argmax(1) == expected.argmax(1)).mean()
        print(f"{name:<10}{np.abs(probs - expected).max():>16.2e}{agree * 100:>13.3f}%")
    print("fixture tolerance: max|dp| <= 1e-3 and argmax agreement >= 99.9 % (fp32 must meet it). 'graphs': the")
    print("Predictor (CUDA graph, default precision) vs the reference; 'graphs 2': another batch replayed through")
    print("the same graph vs an eager run of it.")

if __name__ == "__main__":
    main()
