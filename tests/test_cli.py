from __future__ import annotations

import subprocess
import sys

from app.main import main
from conftest import tiny_model
from mpae_core.checkpoint import save_checkpoint


def test_info_lists_parts(tmp_path, capsys):
    model = tiny_model()
    model.info.part_names[0] = "wing"
    path = save_checkpoint(model, tmp_path / "m.safetensors", embed_backbone=True)
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "K=4" in out and "label   1  wing" in out and "mpae-safetensors" in out


def test_bad_checkpoint_is_one_line_and_exit_1(tmp_path, capsys):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"\x00" * 10)
    assert main(["info", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: '{bad}' is not a checkpoint (it is neither a safetensors nor a PyTorch file)")
    assert "\n" not in err


def test_version_runs_without_importing_qt():
    # pytest-qt imports Qt into this process, so check in a fresh interpreter
    code = "import sys; from app.main import main; main(['--version']); assert 'PySide6' not in sys.modules"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("mpae-annotate ")


def test_gui_without_a_display_says_so_instead_of_aborting(monkeypatch, capsys):
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    assert main(["--demo"]) == 2
    err = capsys.readouterr().err
    assert "needs a display" in err and "mpae-annotate batch" in err
