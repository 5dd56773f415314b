"""The training CLI end to end on a tiny synthetic dataset: train, resume, evaluate, convert, torchrun."""
from __future__ import annotations

import json
import multiprocessing
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import official_state_dict
from training.presets import TRAIN_PRESETS, train_preset
from training.run import main
from training.sampler import EpochSampler

FAST = ["--image-size", "56", "--batch-size", "4", "--workers", "0", "--device", "cpu", "--quiet", "--log-every", "1"]
LOSS_KEYS = {"foreground_presence", "background_presence", "semantic", "total_variation", "entropy",
             "reconstruction", "total"}


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory) -> Path:
    from training.synthetic import generate_synthetic_dataset

    root = tmp_path_factory.mktemp("synthetic")
    generate_synthetic_dataset(root, num_train=12, num_test=4, image_size=(64, 64))
    return root


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_presets_carry_the_reference_recipe():
    for name in ("celeba", "cub", "partimagenet_ood", "partimagenet_seg"):
        cfg = TRAIN_PRESETS[name]
        assert (cfg.lr, cfg.gamma, cfg.batch_size, cfg.clip_grad) == (5e-4, 0.2, 64, 2.0)
    assert (TRAIN_PRESETS["celeba"].epochs, TRAIN_PRESETS["celeba"].milestones) == (20, (15, 18))
    assert (TRAIN_PRESETS["cub"].epochs, TRAIN_PRESETS["cub"].milestones, TRAIN_PRESETS["cub"].model.image_size) == (
        100, (80, 90), 448)
    assert TRAIN_PRESETS["partimagenet_seg"].milestones == (50, 60) and TRAIN_PRESETS["partimagenet_seg"].model.group_size == 64
    assert train_preset("cub", epochs=3, model__num_parts=8).model.num_parts == 8


def test_train_resume_eval_convert(synthetic_root, tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--preset", "synthetic", "--data-root", str(synthetic_root), "--out", str(run),
                 "--epochs", "1", *FAST]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["image_size"] == 56 and config["dataset"] == "synthetic"
    records = _metrics(run)
    train_lines = [r for r in records if r["kind"] == "train"]
    assert len(train_lines) == 3 and LOSS_KEYS <= set(train_lines[0]) and {"lr", "images_per_s"} <= set(train_lines[0])
    assert all(torch.isfinite(torch.tensor(r["total"])) for r in train_lines)
    evals = [r for r in records if r["kind"] == "eval"]
    assert len(evals) == 1 and {"nmi", "ari", "fg_nmi", "fg_ari"} <= set(evals[0])
    for name in ("last.safetensors", "best.safetensors", "last_state.pt"):
        assert (run / "checkpoints" / name).is_file()

    # resume: the schedule, optimizer and step counter continue
    assert main(["train", "--out", str(run), "--resume", "--epochs", "2", *FAST]) == 0
    steps = [r["step"] for r in _metrics(run) if r["kind"] == "train"]
    assert steps == [1, 2, 3, 4, 5, 6]
    state = torch.load(run / "checkpoints" / "last_state.pt", weights_only=True)
    assert state["position"]["epoch"] == 2 and state["optimizer"]["state"]

    out = tmp_path / "metrics.json"
    assert main(["eval", "--checkpoint", str(run / "checkpoints" / "last.safetensors"), "--dataset", "synthetic",
                 "--data-root", str(synthetic_root), "--out", str(out), "--workers", "0", "--quiet"]) == 0
    metrics = json.loads(out.read_text())
    assert {"nmi", "ari", "fg_nmi", "fg_ari"} <= set(metrics) and 0 <= metrics["nmi"] <= 100

    official = tmp_path / "model_best.pth"
    torch.save(official_state_dict("celeba_k16", seed=None), official)
    converted = tmp_path / "converted.safetensors"
    assert main(["convert", str(official), str(converted), "--embed-backbone"]) == 0
    from mpae_core.checkpoint import load_checkpoint
    assert load_checkpoint(converted).cfg.num_parts == 16


def test_resume_without_a_run_is_a_clear_error(tmp_path, capsys):
    assert main(["train", "--preset", "synthetic", "--data-root", str(tmp_path / "syn"), "--out",
                 str(tmp_path / "none"), "--resume", "--max-steps", "1", *FAST]) == 1
    assert "Cannot resume" in capsys.readouterr().err


def test_interrupt_mid_epoch_resumes_at_the_next_batch(synthetic_root, tmp_path, monkeypatch):
    from training import trainer as trainer_module
    from training.run import _training_dataset

    cfg = train_preset("synthetic", data_root=str(synthetic_root), epochs=1, batch_size=4, num_workers=0,
                       log_every=1, model__image_size=56)
    original = trainer_module.Trainer._optimisation_step
    calls = {"n": 0}

    def interrupted(self, images):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, images)

    monkeypatch.setattr(trainer_module.Trainer, "_optimisation_step", interrupted)
    trainer = trainer_module.Trainer(cfg, _training_dataset(cfg), tmp_path / "run", device="cpu", show_progress=False)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    seen: list[torch.Tensor] = []

    def counted(self, images):
        seen.append(images)
        return original(self, images)

    monkeypatch.setattr(trainer_module.Trainer, "_optimisation_step", counted)
    resumed = trainer_module.Trainer(cfg, _training_dataset(cfg), tmp_path / "run", device="cpu", resume=True,
                                     show_progress=False)
    assert (resumed.position.epoch, resumed.position.step_in_epoch, resumed.position.global_step) == (0, 2, 2)
    resumed.train()
    assert len(seen) == 1  # 12 images, batch 4: only the third batch was left
    assert resumed.position.global_step == 3 and resumed.position.epoch == 1


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(synthetic_root, tmp_path, monkeypatch):
    from training import trainer as trainer_module
    from training.run import _training_dataset

    cfg = train_preset("synthetic", data_root=str(synthetic_root), epochs=2, batch_size=4, num_workers=0,
                       model__image_size=56)
    trainer = trainer_module.Trainer(cfg, _training_dataset(cfg), tmp_path / "run", device="cpu", show_progress=False)
    original = trainer.model.training_losses

    def poisoned(*args, **kwargs):
        out = original(*args, **kwargs)
        if trainer.position.epoch == 1:
            out.losses["total"] = out.losses["total"] * float("nan")
        return out

    monkeypatch.setattr(trainer.model, "training_losses", poisoned)
    with pytest.raises(trainer_module.TrainingDiverged, match="the loss is not finite"):
        trainer.train()
    state = torch.load(tmp_path / "run" / "checkpoints" / "last_state.pt", weights_only=True)
    assert state["position"]["epoch"] == 1 and state["position"]["global_step"] == 3


def test_epoch_sampler_shards_and_resumes():
    a, b = EpochSampler(10, seed=3, rank=0, world_size=2), EpochSampler(10, seed=3, rank=1, world_size=2)
    a.set_epoch(1)
    b.set_epoch(1)
    assert sorted(list(a) + list(b)) == list(range(10))
    again = EpochSampler(10, seed=3, rank=0, world_size=2)
    again.set_epoch(1, start=2)
    assert list(again) == list(a)[2:] and len(again) == 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_cpu_processes(synthetic_root, tmp_path):
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "training.run", "train", "--preset", "synthetic",
           "--data-root", str(synthetic_root), "--out", str(run), "--max-steps", "2", "--eval-every", "0", *FAST]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr[-3000:]
    steps = [r["step"] for r in _metrics(run) if r["kind"] == "train"]
    assert steps == [1, 2]  # one writer: rank 0
    assert all(r["images_per_s"] > 0 for r in _metrics(run))
    assert (run / "checkpoints" / "last.safetensors").is_file()


@pytest.mark.parametrize("signum", ["SIGTERM", "SIGINT"])
def test_a_stop_signal_to_the_whole_process_group_with_loader_workers_stops_cleanly(synthetic_root, tmp_path, signum):
    """Ctrl-C, `timeout` and `kill -- -PGID` signal every process of the group, data-loading workers included: the
    run must still save a resumable checkpoint and exit 130 with one line, not die in a DataLoader traceback."""
    import os
    import signal
    import time

    run = tmp_path / "run"
    args = [sys.executable, "-m", "training.run", "train", "--preset", "synthetic", "--data-root", str(synthetic_root),
            "--out", str(run), "--epochs", "200", *FAST]
    args[args.index("--workers") + 1] = "2"
    # output to a file, not a pipe: the exit of the main process is what is tested, not when every worker lets go
    with open(tmp_path / "stderr.txt", "w+") as err_file:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err_file, start_new_session=True,
                                cwd=Path(__file__).resolve().parents[1])
        try:
            deadline = time.monotonic() + 120
            while not ((run / "metrics.jsonl").is_file() and (run / "metrics.jsonl").read_text().count("\n") >= 2):
                assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "stderr.txt").read_text()
                time.sleep(0.2)
            os.killpg(proc.pid, getattr(signal, signum))
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    err = (tmp_path / "stderr.txt").read_text()
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "Stopped; resume with --resume." in err
    assert main(["train", "--preset", "synthetic", "--data-root", str(synthetic_root), "--out", str(run), "--resume",
                 "--max-steps", "1", *FAST]) == 0


def test_the_first_steps_are_logged_so_a_live_plot_starts_at_once(synthetic_root, tmp_path):
    from training.trainer import should_log

    assert [s for s in range(1, 61) if should_log(s, 20)] == [1, 2, 4, 8, 16, 20, 40, 60]
    assert [s for s in range(1, 4) if should_log(s, 1)] == [1, 2, 3]
    run = tmp_path / "run"
    fast = [a if a != "1" or FAST[i - 1] != "--log-every" else "20" for i, a in enumerate(FAST)]
    assert main(["train", "--preset", "synthetic", "--data-root", str(synthetic_root), "--out", str(run),
                 "--max-steps", "5", "--eval-every", "0", *fast]) == 0
    steps = [r["step"] for r in _metrics(run) if r["kind"] == "train"]
    assert steps == [1, 2, 4, 5]  # with log_every 20 only step 5 (the last) was logged before


# A dataset whose images all fail to load with an error the CLI does not expect, in the loader's worker processes
# (forked, so they inherit the patch), as a malformed dataset entry would.
WORKER_FAILURE = """
import multiprocessing, sys
multiprocessing.set_start_method("fork", force=True)
import training.data.base as base
def broken(self, index):
    raise TypeError("injected worker failure")
base.ImageDataset.load = broken
from training.run import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
@pytest.mark.parametrize("command", ["train", "eval"])
def test_a_worker_error_ends_the_command_with_one_sentence(synthetic_root, tmp_path, command):
    """It used to print the traceback and then hang at exit: the workers ignore SIGTERM, which multiprocessing's
    exit handler sends them before waiting."""
    from conftest import tiny_model
    from mpae_core.checkpoint import save_checkpoint

    if command == "train":
        args = ["train", "--preset", "synthetic", "--data-root", str(synthetic_root), "--out", str(tmp_path / "run"),
                "--epochs", "1", *FAST]
        args[args.index("--workers") + 1] = "2"
    else:
        checkpoint = save_checkpoint(tiny_model(image_size=56), tmp_path / "tiny.safetensors", embed_backbone=True)
        args = ["eval", "--checkpoint", str(checkpoint), "--dataset", "synthetic", "--data-root", str(synthetic_root),
                "--device", "cpu", "--batch-size", "2", "--workers", "2", "--quiet"]
    try:
        done = subprocess.run([sys.executable, "-c", WORKER_FAILURE, *args], capture_output=True, text=True,
                              timeout=120, cwd=Path(__file__).resolve().parents[1])
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"`training.run {command}` did not exit after a worker error: {exc.stderr!r:.2000}")
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert last.startswith("error: ") and "injected worker failure" in last and ".JPEG" in last, last


class _Failing(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int):
        if index == 5:
            from mpae_core.images import ImageLoadError

            raise ImageLoadError("/data/x.jpg", "the file is truncated")
        if index == 7:
            raise TypeError("'NoneType' object is not iterable")
        return index


@pytest.mark.parametrize("start,expected", [
    (4, "Cannot read '/data/x.jpg': the file is truncated; re-export or remove it."),
    (6, "A data-loading worker process failed (TypeError: 'NoneType' object is not iterable); run with --workers 0 "
        "for the full traceback."),
])
def test_worker_batches_reports_a_worker_error_in_one_sentence_and_stops_the_workers(start, expected):
    from torch.utils.data import DataLoader, Subset

    from mpae_core.worker_signals import DataWorkerError, ignore_stop_signals, worker_batches

    loader = DataLoader(Subset(_Failing(), range(start, 8)), batch_size=1, num_workers=1,
                        worker_init_fn=ignore_stop_signals)
    batches = worker_batches(loader)
    assert next(batches).tolist() == [start]
    with pytest.raises(DataWorkerError) as info:
        next(batches)
    assert str(info.value) == expected
    assert not multiprocessing.active_children()  # shut down, not left for the exit handler
