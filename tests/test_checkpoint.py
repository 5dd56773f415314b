"""Our safetensors format, the authors' .pth files, and one clear sentence for every bad file."""
from __future__ import annotations

import json
import pickle

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from conftest import official_state_dict, tiny_model
from mpae_core.backbone import BACKBONE_WEIGHTS_ENV
from mpae_core.checkpoint import FORMAT_VERSION, load_checkpoint, save_checkpoint
from mpae_core.errors import BackboneWeightsError, CheckpointError


def _probs(model, seed=0):
    torch.manual_seed(seed)
    with torch.inference_mode():
        return model.predict_probs(torch.randn(2, 3, model.cfg.image_size, model.cfg.image_size))


def test_round_trip_with_embedded_backbone_predicts_identically(tmp_path):
    model = tiny_model().eval()
    model.info.part_names[1] = "beak"
    model.info.part_colors[1] = (1, 2, 3)
    path = save_checkpoint(model, tmp_path / "m.safetensors", embed_backbone=True, provenance={"epoch": 3})
    loaded = load_checkpoint(path)
    assert not loaded.training
    assert loaded.cfg == model.cfg
    assert loaded.info.part_names[1] == "beak" and loaded.info.part_colors[1] == (1, 2, 3)
    assert loaded.info.provenance["epoch"] == 3 and loaded.info.source_format == "mpae-safetensors"
    torch.testing.assert_close(_probs(loaded), _probs(model), rtol=0, atol=0)
    state, again = model.state_dict(), loaded.state_dict()
    assert all(torch.equal(state[k], again[k]) for k in state)


def test_without_embedded_backbone_the_file_is_small_and_needs_weights(tmp_path, monkeypatch):
    model = tiny_model()
    light = save_checkpoint(model, tmp_path / "light.safetensors")
    heavy = save_checkpoint(model, tmp_path / "heavy.safetensors", embed_backbone=True)
    assert light.stat().st_size < heavy.stat().st_size
    monkeypatch.delenv(BACKBONE_WEIGHTS_ENV, raising=False)
    with pytest.raises(BackboneWeightsError, match="not on this machine.*MPAE_BACKBONE_WEIGHTS"):
        load_checkpoint(light)
    # a local weights file (here: the backbone of the same model, in timm naming) is used when given ...
    backbone_file = tmp_path / "dinov2.safetensors"
    save_file({k: v.contiguous() for k, v in model.backbone.vit.state_dict().items()}, str(backbone_file))
    torch.testing.assert_close(_probs(load_checkpoint(light, backbone_weights=backbone_file)), _probs(model))
    # ... or through the environment variable
    monkeypatch.setenv(BACKBONE_WEIGHTS_ENV, str(backbone_file))
    torch.testing.assert_close(_probs(load_checkpoint(light)), _probs(model))


def test_random_backbone_only_when_asked(tmp_path, monkeypatch):
    monkeypatch.delenv(BACKBONE_WEIGHTS_ENV, raising=False)
    path = save_checkpoint(tiny_model(), tmp_path / "m.safetensors")
    model = load_checkpoint(path, allow_random_backbone=True)
    assert model.cfg.num_parts == 4


def test_official_checkpoint_layout_is_read_for_every_released_variant(tmp_path):
    for variant, size, k, group in (("celeba_k16", 224, 16, 8), ("cub_k16", 448, 16, 8),
                                     ("partimagenet_k50", 224, 50, 64)):
        path = tmp_path / f"{variant}.pth"
        torch.save(official_state_dict(variant, seed=None), path)
        model = load_checkpoint(path)
        assert (model.cfg.image_size, model.cfg.num_parts, model.cfg.group_size) == (size, k, group), variant
        assert model.info.source_format == "official-pth"
        assert model.info.part_names[0] == "part_01" and len(model.info.part_names) == k


def test_converted_official_checkpoint_predicts_identically(official_celeba_model, tmp_path):
    path = save_checkpoint(official_celeba_model, tmp_path / "converted.safetensors", embed_backbone=True)
    converted = load_checkpoint(path)
    assert converted.info.provenance["converted_from"] == "model_best.pth"
    torch.testing.assert_close(_probs(converted), _probs(official_celeba_model), rtol=0, atol=0)


def test_official_checkpoint_from_dataparallel_and_wrapped_dict(tmp_path):
    state = {f"module.{k}": v for k, v in official_state_dict("celeba_k16", seed=None).items()}
    path = tmp_path / "wrapped.pth"
    torch.save({"state_dict": state}, path)
    assert load_checkpoint(path).cfg.num_parts == 16


# ---------------------------------------------------------------------------------------------- bad files
def _error(path, **kwargs) -> str:
    with pytest.raises((CheckpointError, BackboneWeightsError)) as info:
        load_checkpoint(path, **kwargs)
    message = str(info.value)
    assert str(path) in message and message.count(". ") == 0 and "\n" not in message, message
    return message


def test_missing_file(tmp_path):
    assert "no such file" in _error(tmp_path / "nope.safetensors")


def test_text_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("hello")
    assert f"'{path}' is not a checkpoint (it is a text file)" in _error(path)


CHOOSE = "choose a .safetensors or .pth file made by MPAE or this app"


@pytest.mark.parametrize("name", ["bird.jpg", "bird.pth", "bird.safetensors"])
def test_a_photo_is_not_a_checkpoint(tmp_path, name):
    from PIL import Image

    path = tmp_path / name
    Image.new("RGB", (32, 24), (200, 30, 30)).save(path, format="JPEG")
    assert _error(path) == f"'{path}' is not a checkpoint (it is a JPEG image); {CHOOSE}."


def test_other_files_that_are_not_checkpoints(tmp_path):
    import zipfile

    from PIL import Image

    png = tmp_path / "mask.png"
    Image.new("P", (8, 8)).save(png)
    assert "is not a checkpoint (it is a PNG image)" in _error(png)
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("a.txt", "hello")
    assert "is not a checkpoint (it is a ZIP archive that holds no PyTorch checkpoint)" in _error(archive)
    noise = tmp_path / "noise.bin"
    noise.write_bytes(bytes(range(7, 256)) * 20)
    assert "is not a checkpoint (it is neither a safetensors nor a PyTorch file)" in _error(noise)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    assert "is not a checkpoint (it is an empty file (0 bytes))" in _error(empty)


def test_a_photo_given_as_backbone_weights(tmp_path):
    from PIL import Image

    photo = tmp_path / "dinov2.png"
    Image.new("RGB", (8, 8)).save(photo)
    light = save_checkpoint(tiny_model(), tmp_path / "light.safetensors")
    with pytest.raises(BackboneWeightsError) as info:
        load_checkpoint(light, backbone_weights=photo)
    assert str(info.value) == (f"'{photo}' is not a file of backbone weights (it is a PNG image); choose the "
                               "backbone weights file (.safetensors, .pth or .bin).")


def test_truncated_safetensors(tmp_path):
    path = save_checkpoint(tiny_model(), tmp_path / "m.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert "truncated or corrupt" in _error(path, allow_random_backbone=True)


def test_truncated_official_pth(tmp_path):
    path = tmp_path / "model_best.pth"
    torch.save(official_state_dict("celeba_k16", seed=None), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    assert "truncated" in _error(path)


def _edited_checkpoint(tmp_path, *, tensors=None, **metadata):
    """A valid embedded checkpoint of the tiny model, re-saved with some tensors and metadata replaced."""
    path = save_checkpoint(tiny_model(), tmp_path / "m.safetensors", embed_backbone=True)
    with safe_open(str(path), "pt") as f:
        state = {k: f.get_tensor(k) for k in f.keys()}
        save_file({**state, **(tensors or {})}, str(path), metadata={**f.metadata(), **metadata})
    return path


def test_wrong_shapes(tmp_path):
    message = _error(_edited_checkpoint(tmp_path, tensors={"partformer.proj.weight": torch.zeros(3, 3)}))
    assert "do not match" in message and "partformer.proj.weight is (3, 3), expected (256, 256)" in message


def test_newer_format_version(tmp_path):
    assert "newer MPAE Annotator" in _error(_edited_checkpoint(tmp_path, format_version=str(FORMAT_VERSION + 1)))


def test_foreign_safetensors(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(2)}, str(path))
    assert "not an MPAE checkpoint" in _error(path)


def test_foreign_state_dict(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(2)}, path)
    assert "neither an MPAE Annotator checkpoint nor" in _error(path)


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"x": _Payload()}, f)
    assert "Python objects other than tensors, which are refused" in _error(path)


def test_damaged_part_table(tmp_path):
    path = _edited_checkpoint(tmp_path, parts=json.dumps([{"name": "a", "color": "#000000"}]))
    assert "names 1 parts but the model has 4" in _error(path)


# ---------------------------------------------------------------------------------------------- compact files
def _trained_like(seed=0):
    """The tiny model with every weight jittered, so no tensor keeps its (often exactly representable) init value."""
    model = tiny_model(seed).eval()
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.01)
    return model


def _labels(model, seed=0):
    return _probs(model, seed).argmax(dim=1)


# Measured on this model: largest probability difference 0.006 / 0.047 / 0.10 and label agreement 99.96 / 99.7 /
# 99.3 % for float16 / bfloat16 / int8.
@pytest.mark.parametrize("dtype, atol, agreement", [(torch.float16, 0.01, 0.998), (torch.bfloat16, 0.08, 0.99),
                                                    (torch.int8, 0.2, 0.98)])
def test_compact_dtypes_round_trip_close_to_float32(tmp_path, dtype, atol, agreement):
    model = _trained_like()
    full = save_checkpoint(model, tmp_path / "full.safetensors", embed_backbone=True)
    small = save_checkpoint(model, tmp_path / "small.safetensors", embed_backbone=True, dtype=dtype)
    assert small.stat().st_size < 0.55 * full.stat().st_size
    with safe_open(str(small), "pt") as f:
        meta = f.metadata()
    assert meta["tensor_dtype"] == {torch.float16: "float16", torch.bfloat16: "bfloat16", torch.int8: "int8"}[dtype]
    assert meta["format_version"] == str(FORMAT_VERSION) and meta["inference_only"] == "0"
    loaded = load_checkpoint(small)
    assert all(v.dtype == torch.float32 for v in loaded.state_dict().values() if v.is_floating_point())
    torch.testing.assert_close(_probs(loaded), _probs(model), rtol=0, atol=atol)
    assert (_labels(loaded) == _labels(model)).float().mean() >= agreement


def test_float32_files_keep_format_version_1(tmp_path):
    path = save_checkpoint(tiny_model(), tmp_path / "m.safetensors", embed_backbone=True)
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    assert meta["format_version"] == "1" and "tensor_dtype" not in meta and "inference_only" not in meta


def test_unknown_storage_dtype_is_refused(tmp_path):
    with pytest.raises(ValueError, match="torch.float16"):
        save_checkpoint(tiny_model(), tmp_path / "m.safetensors", dtype=torch.float64)
    assert "cannot read" in _error(_edited_checkpoint(tmp_path, tensor_dtype="float8"))


def test_inference_only_checkpoint_predicts_and_refuses_training(tmp_path):
    from mpae_core.checkpoint import is_inference_only, read_training_weights
    from mpae_core.perceptual import resolve_perceptual_network

    model = _trained_like()
    path = save_checkpoint(model, tmp_path / "infer.safetensors", embed_backbone=True, dtype=torch.float16,
                           inference_only=True)
    with safe_open(str(path), "pt") as f:
        assert not any(k.startswith("restoration.") for k in f.keys()) and f.metadata()["inference_only"] == "1"
    loaded = load_checkpoint(path)
    assert is_inference_only(loaded) and not is_inference_only(model)
    torch.testing.assert_close(_probs(loaded), _probs(model), rtol=0, atol=0.01)
    # training it (the trainer's forward, or resuming from the file) fails with one clear sentence
    with pytest.raises(CheckpointError, match="inference-only checkpoint, which leaves out the restoration") as info:
        loaded.train().training_losses(torch.randn(2, 3, 224, 224), resolve_perceptual_network(None, allow_random=True))
    assert str(path) in str(info.value) and ". " not in str(info.value)
    with pytest.raises(CheckpointError, match=r"Cannot train from .*inference-only"):
        read_training_weights(path)
    # re-saving such a model (e.g. after renaming a part) keeps it inference-only instead of storing random weights
    loaded.info.part_names[0] = "head"
    again = save_checkpoint(loaded, tmp_path / "renamed.safetensors", embed_backbone=True)
    with safe_open(str(again), "pt") as f:
        assert f.metadata()["inference_only"] == "1" and f.metadata()["tensor_dtype"] == "float32"
    assert load_checkpoint(again).info.part_names[0] == "head"


def test_read_training_weights_of_full_files(tmp_path):
    from mpae_core.checkpoint import read_training_weights

    model = _trained_like()
    full = read_training_weights(save_checkpoint(model, tmp_path / "full.safetensors"))
    state = model.state_dict()
    assert set(full) == {k for k in state if not k.startswith("backbone.")}
    assert all(torch.equal(full[k], state[k]) for k in full)
    half = read_training_weights(save_checkpoint(model, tmp_path / "half.safetensors", dtype=torch.float16))
    assert all(v.dtype == torch.float32 for v in half.values())
    torch.testing.assert_close(half["restoration.decoder_pred.weight"], state["restoration.decoder_pred.weight"],
                               rtol=1e-3, atol=1e-4)
    other = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(2)}, str(other))
    with pytest.raises(CheckpointError, match="not an MPAE Annotator checkpoint"):
        read_training_weights(other)


def test_fingerprint_follows_the_part_defining_weights_across_formats(official_celeba_model, tmp_path):
    from mpae_core.checkpoint import model_fingerprint, model_lineage

    fingerprint = model_fingerprint(official_celeba_model)
    path = save_checkpoint(official_celeba_model, tmp_path / "converted.safetensors", embed_backbone=True)
    converted = load_checkpoint(path)
    assert model_fingerprint(converted) == fingerprint  # .pth and its conversion are the same model
    assert model_lineage(converted) == []
    with torch.no_grad():
        converted.partformer.state_dict()[next(iter(converted.partformer.state_dict()))].add_(1e-3)
    assert model_fingerprint(converted) != fingerprint
    refined = save_checkpoint(converted, tmp_path / "refined.safetensors", embed_backbone=True,
                              provenance={"lineage": [fingerprint]})
    assert model_lineage(load_checkpoint(refined)) == [fingerprint]
