"""PartPrediction and Predictor: label maps at any size, summaries, devices."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import mpae_core.inference as inference
from conftest import tiny_model
from mpae_core.devices import resolve_device
from mpae_core.inference import PartPrediction, Predictor, bilinear_matrix, preprocess


@pytest.mark.parametrize("out_size, in_size", [(128, 16), (448, 32), (7, 16), (16, 16), (1000, 3)])
def test_bilinear_matrix_equals_torch_interpolate(out_size, in_size):
    x = torch.randn(1, 1, in_size, 1)
    expected = F.interpolate(x, size=(out_size, 1), mode="bilinear", align_corners=False)[0, 0, :, 0]
    torch.testing.assert_close(bilinear_matrix(out_size, in_size) @ x[0, 0, :, 0], expected, rtol=1e-5, atol=1e-5)


def test_banded_maps_equal_full_interpolation(monkeypatch):
    torch.manual_seed(0)
    logits = torch.randn(5, 16, 16) * 4
    monkeypatch.setattr(inference, "BAND_BYTES", 5 * 4 * 300 * 7)  # force bands of 7 rows
    pred = PartPrediction.from_logits(logits, (210, 300))
    full = F.interpolate(logits[None], size=(210, 300), mode="bilinear", align_corners=False)[0].softmax(0)
    np.testing.assert_allclose(pred.probabilities(), full.numpy(), atol=1e-5)
    expected_labels = full.argmax(0).numpy() + 1
    expected_labels[expected_labels == 5] = 0  # background (last channel) is label 0
    assert (pred.label_map() == expected_labels).mean() > 0.999
    np.testing.assert_allclose(pred.confidence_map(), full.max(0).values.numpy(), atol=1e-5)


def test_label_values_and_summary():
    logits = torch.full((3, 4, 4), -10.0)  # K = 2
    logits[2] = 0.0  # background everywhere ...
    logits[0, :2, :2] = 10.0  # ... except part slot 0 in the top-left quarter
    pred = PartPrediction.from_logits(logits, (40, 40), summary_size=(40, 40))
    labels = pred.label_map()
    assert labels.dtype == np.uint8 and labels.shape == (40, 40)
    assert set(np.unique(labels)) == {0, 1}
    assert pred.presence.tolist() == [True, False]
    assert 0.15 < pred.area[0] < 0.35 and pred.area[1] == 0.0
    assert pred.part_confidence[1] == 0.0 and 0.9 < pred.part_confidence[0] <= 1.0
    assert pred.num_parts == 2


def test_many_parts_use_uint16_labels():
    pred = PartPrediction.from_logits(torch.randn(300, 2, 2), (3, 3), summary_size=(3, 3))
    assert pred.label_map().dtype == np.uint16


def test_preprocess_squashes_and_normalises():
    image = Image.new("RGB", (300, 100), (124, 116, 104))  # ≈ the ImageNet mean
    x = preprocess(image, 224)
    assert x.shape == (3, 224, 224)
    assert x.abs().max() < 0.02


def test_predictor_on_images_of_any_size():
    predictor = Predictor(tiny_model(), device="cpu")
    images = [Image.new("RGB", (320, 240), (200, 30, 30)), Image.new("RGB", (50, 90), (0, 0, 255))]
    preds = predictor.predict(images, batch_size=1)
    assert [p.image_size for p in preds] == [(240, 320), (90, 50)]
    assert preds[0].label_map().shape == (240, 320) and preds[1].label_map((10, 20)).shape == (10, 20)
    # batching does not change the answer
    again = predictor.predict(images, batch_size=2)
    torch.testing.assert_close(again[1].logits, preds[1].logits, rtol=1e-4, atol=1e-4)


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in {"cuda", "mps", "cpu"}
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda:0")


def test_autocast_choice():
    from mpae_core.devices import autocast_dtype

    assert autocast_dtype(torch.device("cpu")) is None
    assert autocast_dtype(torch.device("cuda")) == torch.float16
    assert autocast_dtype(torch.device("cuda"), "bf16") == torch.bfloat16
    assert autocast_dtype(torch.device("cuda"), "fp32") is None
    with pytest.raises(ValueError, match="Unknown precision"):
        autocast_dtype(torch.device("cuda"), "int8")


def test_device_label_maps_match_per_image_label_maps():
    predictor = Predictor(tiny_model(), device="cpu")
    batch = torch.randn(2, 3, 224, 224)
    maps = predictor.label_maps(batch, (60, 80))
    assert maps.shape == (2, 60, 80) and maps.dtype == np.uint8
    for logits, labels in zip(predictor.logits(batch), maps):
        per_image = PartPrediction.from_logits(logits, (60, 80)).label_map()
        assert (per_image == labels).mean() > 0.999
    probs = predictor.probs(batch, (60, 80))
    torch.testing.assert_close(probs, predictor.model.predict_probs(batch, (60, 80)))


def test_graphed_function_is_a_plain_call_off_cuda():
    from mpae_core.cuda_graphs import GraphedFunction

    calls = []
    graphed = GraphedFunction(lambda x: calls.append(x) or x * 2)
    assert torch.equal(graphed(torch.ones(2)), torch.full((2,), 2.0)) and len(calls) == 1


# ----- uint8 input normalised on the device, label maps made on the device ---------------------------------------
def test_uint8_input_is_normalised_exactly_like_preprocess():
    rng = np.random.default_rng(3)
    image = Image.fromarray(rng.integers(0, 256, size=(37, 53, 3), dtype=np.uint8))
    pixels = inference.resize_for_model(image, 28)
    assert pixels.dtype == torch.uint8 and pixels.shape == (3, 28, 28)
    resized = np.asarray(image.resize((28, 28), Image.BILINEAR), dtype=np.float32) / 255.0  # the reference's steps
    mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
    expected = torch.from_numpy(((resized - mean) / std).transpose(2, 0, 1).copy())
    assert torch.equal(preprocess(image, 28), expected)
    assert torch.equal(inference.normalise(pixels), expected)


def test_predictor_gives_the_same_logits_for_uint8_and_float_batches():
    predictor = Predictor(tiny_model(), "cpu")
    rng = np.random.default_rng(4)
    images = [Image.fromarray(rng.integers(0, 256, size=(30 + i, 40, 3), dtype=np.uint8)) for i in range(3)]
    as_bytes = predictor.prepare(images)
    assert as_bytes.dtype == torch.uint8
    as_floats = torch.stack([preprocess(image, predictor.image_size) for image in images])
    assert torch.equal(predictor.logits(as_bytes), predictor.logits(as_floats))


def _smooth_logits(q: int, seed: int, count: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return F.avg_pool2d(torch.randn(count, q, 16, 16, generator=generator) * 4, 3, 1, 1)


@pytest.mark.parametrize("band_bytes", [inference.BAND_BYTES, 9 * 4 * 90 * 5])
def test_device_label_maps_equal_the_full_upsampling(monkeypatch, band_bytes):
    monkeypatch.setattr(inference, "BAND_BYTES", band_bytes)  # the small value forces bands of a few rows
    logits = _smooth_logits(9, 0, count=4)
    sizes = [(61, 90), (16, 16), (200, 7), (61, 90)]  # the two of one size are upsampled together
    maps = inference.device_label_maps(logits, sizes, inference.channel_lut(9))
    for one, size, labels in zip(logits, sizes, maps):
        np.testing.assert_array_equal(labels, inference._labels_and_confidence(one, size)[0])


def test_channel_lut_composes_with_a_value_table():
    lut = inference.channel_lut(4)
    assert lut.tolist() == [1, 2, 3, 0]  # background, the last channel, is label 0
    export = np.array([0, 1, 1, 0], dtype=np.uint8)  # labels 1, 2 merged into index 1; slot 2 (label 3) ignored
    assert inference.channel_lut(4, export).tolist() == [1, 1, 0, 0]
    logits = _smooth_logits(4, 1)[0]
    np.testing.assert_array_equal(inference.label_map_at(logits, (50, 70), lut=inference.channel_lut(4, export)),
                                  export[inference.label_map_at(logits, (50, 70))])
    on_device = inference.device_label_maps(logits[None], [(50, 70)], inference.channel_lut(4, export))[0]
    np.testing.assert_array_equal(on_device, export[inference._labels_and_confidence(logits, (50, 70))[0]])


def test_predictor_maps_at_sizes_ignores_padding_rows():
    predictor = Predictor(tiny_model(), "cpu")
    batch = torch.randint(0, 256, (4, 3, predictor.image_size, predictor.image_size), dtype=torch.uint8)
    lut = inference.channel_lut(predictor.model.cfg.num_parts + 1)
    maps = predictor.maps_at_sizes(batch, [(33, 41), (20, 64)], lut)
    logits = predictor.logits(batch)
    assert [m.shape for m in maps] == [(33, 41), (20, 64)]
    for m, one in zip(maps, logits):
        np.testing.assert_array_equal(m, inference._labels_and_confidence(one, m.shape)[0])
