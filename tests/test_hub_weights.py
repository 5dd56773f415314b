"""Pretrained weights without a minute of silent retries: the local cache first, one short question to the hub.

Every "hub" here is a server on 127.0.0.1 made by the test (or a port nobody listens on); nothing reaches the
internet. ``huggingface_hub`` reads its endpoint, cache folder and offline flag once at import, so the tests set
both the environment (what our code reads) and those module constants (what the library reads).
"""
from __future__ import annotations

import hashlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch
from safetensors.torch import save_file

from conftest import TINY_BACKBONE
from mpae_core import hub_weights
from mpae_core.backbone import resolve_backbone
from mpae_core.errors import BackboneWeightsError, MissingWeights
from mpae_core.perceptual import resolve_perceptual_network

NAME = TINY_BACKBONE["backbone"]
KWARGS = TINY_BACKBONE["backbone_kwargs"]
REPO = "timm/vit_small_patch14_reg4_dinov2.lvd142m"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


class _CountingServer:
    """A TCP server on 127.0.0.1 that counts connections and then answers like ``behaviour`` says."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour  # "close": hang up at once; "silent": accept and never answer
        self.connections = 0
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            if self.behaviour == "close":
                conn.close()
            else:
                self._held.append(conn)

    def close(self) -> None:
        self._sock.close()
        for conn in self._held:
            conn.close()


class _FakeHub(BaseHTTPRequestHandler):
    """Serves one weights file the way the hub's resolve URLs do (commit and ETag headers)."""

    body = b""
    requests: list[str] = []

    def _headers(self) -> None:
        if not self.path.endswith(f"/{REPO}/resolve/main/model.safetensors"):
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("ETag", f'"{hashlib.sha256(self.body).hexdigest()}"')
        self.send_header("Content-Length", str(len(self.body)))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        self.requests.append(f"HEAD {self.path}")
        self._headers()

    def do_GET(self) -> None:  # noqa: N802
        self.requests.append(f"GET {self.path}")
        self._headers()
        if self.path.endswith("model.safetensors"):
            self.wfile.write(self.body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """Point our code and huggingface_hub at a local endpoint and an empty cache, online; returns a setter."""
    import huggingface_hub.constants as constants

    cache = tmp_path / "hf-cache"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.delenv("MPAE_BACKBONE_WEIGHTS", raising=False)
    monkeypatch.delenv("MPAE_VGG_WEIGHTS", raising=False)

    def point_at(url: str) -> None:
        monkeypatch.setenv("HF_ENDPOINT", url)
        monkeypatch.setattr(constants, "ENDPOINT", url)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}")

    point_at("http://127.0.0.1:9")
    point_at.cache = cache
    return point_at


def _backbone_file_bytes(tmp_path) -> tuple[bytes, dict[str, torch.Tensor]]:
    torch.manual_seed(3)
    source = resolve_backbone(NAME, 112, allow_random=True, **KWARGS)
    state = {k: v.contiguous() for k, v in source.vit.state_dict().items()}
    path = tmp_path / "source.safetensors"
    save_file(state, str(path))
    return path.read_bytes(), state


def _assert_loaded(backbone, state) -> None:
    mine = backbone.vit.state_dict()
    assert mine.keys() == state.keys() and all(torch.equal(mine[k], state[k]) for k in mine)


def test_cached_weights_load_without_asking_the_network(tmp_path, hub):
    body, state = _backbone_file_bytes(tmp_path)
    snapshot = hub.cache / f"models--{REPO.replace('/', '--')}" / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").write_bytes(body)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text(COMMIT)
    server = _CountingServer("close")
    hub(server.url)
    try:
        backbone = resolve_backbone(NAME, 112, **KWARGS)
    finally:
        server.close()
    _assert_loaded(backbone, state)
    assert server.connections == 0  # timm's pretrained=True asked the hub first, five times with back-off


def _failure_against(hub, behaviour: str) -> tuple[int, BackboneWeightsError]:
    """Resolve the tiny backbone with a counting server as the hub: (connections it saw, the error raised)."""
    server = _CountingServer(behaviour)
    hub(server.url)
    try:
        with pytest.raises(BackboneWeightsError) as info:
            resolve_backbone(NAME, 112, **KWARGS)
    finally:
        server.close()
    return server.connections, info.value


def test_offline_mode_fails_at_once_with_the_facts(hub, monkeypatch):
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    connections, error = _failure_against(hub, "close")
    assert connections == 0
    missing = error.missing
    assert missing.what == "DINOv2 backbone" and missing.option == "--backbone-weights"
    assert missing.reason == "offline mode: HF_HUB_OFFLINE is set"
    assert missing.url == f"https://huggingface.co/{REPO}"


def test_an_unreachable_hub_is_asked_once_not_retried(hub):
    connections, error = _failure_against(hub, "close")
    assert connections <= 2  # one question (its HTTP client may reconnect once); timm asked 12 times
    message = str(error)
    assert message.startswith("The DINOv2 backbone weights (vit_small_patch14_reg4_dinov2) are not on this machine "
                              "and could not be downloaded (no connection to 127.0.0.1:")
    assert "pass it with --backbone-weights PATH or set MPAE_BACKBONE_WEIGHTS=PATH." in message


def test_a_refused_connection_and_the_vgg_weights(hub):
    with pytest.raises(BackboneWeightsError) as info:
        resolve_perceptual_network()
    missing = info.value.missing
    assert (missing.what, missing.option, missing.env_var) == ("VGG-19", "--vgg-weights", "MPAE_VGG_WEIGHTS")
    assert missing.reason.startswith("no connection to 127.0.0.1:9")


def test_a_silent_hub_is_given_up_at_the_deadline(hub, monkeypatch):
    monkeypatch.setattr(hub_weights, "PROBE_TIMEOUT_S", 0.3)
    monkeypatch.setattr(hub_weights, "PROBE_DEADLINE_S", 1.0)
    connections, error = _failure_against(hub, "silent")
    assert connections == 1
    assert "no connection to 127.0.0.1" in error.missing.reason


def test_a_working_hub_downloads_once_then_the_cache_serves(tmp_path, hub):
    body, state = _backbone_file_bytes(tmp_path)
    _FakeHub.body, _FakeHub.requests = body, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hub(f"http://127.0.0.1:{server.server_address[1]}")
    try:
        _assert_loaded(resolve_backbone(NAME, 112, **KWARGS), state)
        asked = len(_FakeHub.requests)
        assert any(r.startswith("GET ") for r in _FakeHub.requests)
        _assert_loaded(resolve_backbone(NAME, 112, **KWARGS), state)
        assert len(_FakeHub.requests) == asked  # the second time: the cache, no network
    finally:
        server.shutdown()
        server.server_close()


def test_missing_weights_read_back_from_a_process_error_output():
    missing = MissingWeights("VGG-19", "vgg19.tv_in1k", "https://huggingface.co/timm/vgg19.tv_in1k",
                             "--vgg-weights", "MPAE_VGG_WEIGHTS", "no connection to huggingface.co: [Errno -3] (x)")
    output = f"INFO training.run: starting\nerror: {missing.cli_message()}\n"
    assert MissingWeights.from_message(output) == missing
    assert MissingWeights.from_message("error: Cannot read checkpoint 'x': no such file; check the path.") is None
    error = BackboneWeightsError.for_missing(missing)
    import pickle

    again = pickle.loads(pickle.dumps(error))
    assert again.missing == missing and str(again) == str(error)
