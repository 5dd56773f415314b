"""CUDA paths: uint8 input, label maps on the device, the batch pipeline. Skipped without a GPU (CI has none);
``benchmarks/gpu_checks.sh`` runs them on a lent GPU."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import mpae_core.inference as inference
from conftest import tiny_model
from mpae_core.inference import Predictor

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(autouse=True)
def exact_fp32(monkeypatch):
    """No TF32 (cuDNN's default for fp32 convolutions): these tests compare the GPU with the CPU."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)


def test_device_label_maps_on_cuda_match_the_cpu():
    generator = torch.Generator().manual_seed(0)
    logits = torch.nn.functional.avg_pool2d(torch.randn(3, 17, 16, 16, generator=generator) * 4, 3, 1, 1)
    sizes = [(480, 640), (37, 53), (1000, 20)]
    lut = inference.channel_lut(17)
    on_gpu = inference.device_label_maps(logits.cuda(), sizes, lut)
    on_cpu = inference.device_label_maps(logits, sizes, lut)
    for gpu, cpu in zip(on_gpu, on_cpu):
        assert gpu.shape == cpu.shape and gpu.dtype == cpu.dtype
        assert (gpu == cpu).mean() > 0.9999  # float rounding may flip exact ties only


def test_uint8_batches_on_cuda_give_the_float_batches_logits():
    predictor = Predictor(tiny_model(), "cuda", precision="fp32")
    batch = torch.randint(0, 256, (4, 3, predictor.image_size, predictor.image_size), dtype=torch.uint8)
    floats = inference.normalise(batch)
    torch.testing.assert_close(predictor.logits(batch), predictor.logits(floats), rtol=1e-5, atol=1e-5)


def test_maps_at_sizes_on_cuda_match_the_cpu_predictor():
    model = tiny_model()
    batch = torch.randint(0, 256, (2, 3, model.cfg.image_size, model.cfg.image_size), dtype=torch.uint8)
    lut = inference.channel_lut(model.cfg.num_parts + 1)
    sizes = [(120, 90), (64, 200)]
    cpu_maps = Predictor(model, "cpu").maps_at_sizes(batch, sizes, lut)
    gpu_maps = Predictor(model, "cuda", precision="fp32").maps_at_sizes(batch, sizes, lut)
    for gpu, cpu in zip(gpu_maps, cpu_maps):
        assert (gpu == cpu).mean() > 0.999


def test_resize_on_cuda_equals_pillow():
    from PIL import Image

    from mpae_core.resize import resize_like_pillow

    pixels = np.random.default_rng(1).integers(0, 256, size=(4, 480, 640, 3), dtype=np.uint8)
    ours = resize_like_pillow(torch.from_numpy(pixels).cuda().permute(0, 3, 1, 2), (224, 224)).cpu()
    for image, resized in zip(pixels, ours):
        expected = np.asarray(Image.fromarray(image).resize((224, 224), Image.BILINEAR))
        np.testing.assert_array_equal(resized.permute(1, 2, 0).numpy(), expected)
