"""Tests of training: errors, resume, MirroredStrategy."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from facesegm_utils import training
from facesegm_utils.evaluation import evaluate_model
from facesegm_utils.fileio import FacesegmError, read_history
from facesegm_utils.trainconfig import TrainConfig


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny prepared dataset: 12 synthetic faces at 32x32, split 6/3/3."""
    from facesegm_utils import prepare, synthetic

    root = tmp_path_factory.mktemp("data")
    synthetic.write_dataset(root / "raw", count=12, size=64, seed=0)
    prepare.prepare_dataset(
        root / "raw", root / "prep", 32, split="ratio", ratios=(0.5, 0.25, 0.25), workers=1
    )
    return root / "prep"


def _config(prepared: Path, out: Path, **kw: object) -> TrainConfig:
    base = {
        "data": str(prepared),
        "out": str(out),
        "image_size": 32,
        "epochs": 2,
        "batch_size": 4,
        "base_filters": 4,
        "depth": 2,
        "encoder": None,  # the plain U-Net (the default recipe's pretrained encoder is tested in test_optim)
        "encoder_weights": None,
        "loss": "ce",
        "augment": False,
        "mixed_precision": "off",
        "strategy": "default",
    }
    base.update(kw)
    return TrainConfig(**base)


def test_missing_prepared_folder(tmp_path: Path) -> None:
    with pytest.raises(FacesegmError, match=r"prepared dataset folder not found: .*nowhere"):
        training.train(_config(tmp_path / "nowhere", tmp_path / "run"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FacesegmError, match="dataset.json, manifest.csv missing"):
        training.train(_config(tmp_path / "empty", tmp_path / "run"))


def test_image_size_not_divisible(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"image size 40 is not divisible by 2\*\*4 = 16"):
        training.train(_config(tmp_path, tmp_path / "run", image_size=40, depth=4))


def test_a_nan_loss_is_recorded_and_the_next_start_is_new(tmp_path: Path) -> None:
    from facesegm_utils import runs

    cfg = TrainConfig(data=str(tmp_path), out=str(tmp_path), epochs=3)
    record = {**cfg.to_dict(), "image_size": 32, "status": "running"}
    (tmp_path / "backup").mkdir()
    (tmp_path / "backup" / "latest.weights.h5").write_bytes(b"NaN weights")
    (tmp_path / "backup" / "training_metadata.json").write_text('{"epoch": 2, "batch": 0}')
    with pytest.raises(FacesegmError, match=r"NaN/inf in epoch 2 \(learning rate 0.006\).*--lr"):
        training._stop_on_nan(2, tmp_path, record, 6e-3)
    assert json.loads((tmp_path / "config.json").read_text())["status"] == "stopped: NaN loss in epoch 2"
    assert not (tmp_path / "backup").exists() and runs.run_state(tmp_path, cfg, 32).mode == "new"
    training._stop_on_nan(None, tmp_path, record, 6e-3)  # no NaN: nothing happens


class _StopAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if epoch == 0:
            raise RuntimeError("simulated interruption")


class _EpochRecorder(keras.callbacks.Callback):
    """The epochs a session trains, and the learning rate of each of its steps."""

    def __init__(self) -> None:
        super().__init__()
        self.epochs: list[int] = []
        self.lrs: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epochs.append(epoch)

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self.lrs.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))


@pytest.mark.slow
def test_train_then_resume_with_other_epochs(prepared: Path, tmp_path: Path) -> None:
    """Interrupted after epoch 1 of 3, resumed with 2 epochs: it continues at epoch 2, and the
    learning rate goes on from the rate the 3-epoch schedule had reached (no jump)."""
    cfg = _config(prepared, tmp_path / "run", epochs=3, warmup_epochs=0, schedule="cosine")
    with pytest.raises(RuntimeError, match="simulated interruption"):
        training.train(cfg, callbacks=[_StopAfterFirstEpoch()])
    assert (tmp_path / "run" / "backup").is_dir()
    assert read_history(tmp_path / "run" / "history.csv")["epoch"] == [1.0]
    recorder = _EpochRecorder()
    result = training.train(dataclasses.replace(cfg, epochs=2), callbacks=[recorder])
    assert recorder.epochs == [1] and result["mode"] == "resume"  # continued at the second epoch
    steps = 2  # 6 training faces in batches of 4
    cosine = 0.5 * (1 + math.cos(math.pi * steps / (3 * steps)))  # where the 3-epoch schedule stood
    assert recorder.lrs[0] == pytest.approx(cfg.lr * (0.01 + 0.99 * cosine), rel=1e-5)
    assert recorder.lrs == sorted(recorder.lrs, reverse=True)
    assert result["history"]["lr"][-1] == pytest.approx(cfg.lr / 100, rel=1e-4)  # the new end: lr / 100
    assert result["history"]["epoch"] == [1.0, 2.0] and result["epochs_run"] == 2
    assert {"miou_model_size", "val_miou_model_size", "pixel_accuracy", "val_pixel_accuracy", "loss"} <= set(
        result["history"]
    )
    assert (tmp_path / "run" / "model.keras").is_file()
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["image_size"] == 32 and config["seed"] == 0 and config["status"] == "finished"
    assert config["schedule_segments"] == [[0, 3], [1, 2]]
    assert config["versions"]["keras"] == keras.__version__
    scores = evaluate_model(result["model_path"], prepared, "test", batch_size=2)
    assert 0.0 <= scores["mean_iou"] <= 1.0 and scores["num_images"] == 3


@pytest.mark.slow
def test_mirrored_strategy_on_two_cpus(prepared: Path, tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import json, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from facesegm_utils import training
        from facesegm_utils.trainconfig import TrainConfig
        cfg = TrainConfig(data={str(prepared)!r}, out={str(tmp_path / "run")!r}, image_size=32,
            epochs=1, batch_size=1, base_filters=4, depth=2, encoder=None, encoder_weights=None, loss="ce+dice", augment=False,
            mixed_precision="off", strategy="mirrored", max_steps_per_epoch=2)
        r = training.train(cfg)
        print("RESULT", json.dumps({{"replicas": r["replicas"], "loss": r["history"]["loss"]}}))
        """
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")), None)
    assert line is not None, proc.stderr[-3000:]
    out = json.loads(line.split(" ", 1)[1])
    assert out["replicas"] == 2 and np.isfinite(out["loss"][0])


def _cli_args(prepared: Path, out: Path, **kw: object) -> list[str]:
    """``facesegm train`` options of a tiny plain U-Net run (encoder none), overridden by ``kw``."""
    opts = {"image-size": 32, "epochs": 1, "batch-size": 2, "base-filters": 4, "depth": 2, "loss": "ce"}
    opts |= {"class-weights": "median_frequency", "schedule": "cosine"}
    opts |= {"encoder": "none", "encoder-weights": "none", "mixed-precision": "off", "strategy": "default"}
    opts |= {k.replace("_", "-"): v for k, v in kw.items()}
    return ["train", "--data", str(prepared), "--out", str(out), "--no-augment"] + [
        a for k, v in opts.items() for a in (f"--{k}", str(v))
    ]


def test_resume_with_other_options_stops_and_lists_them(prepared: Path, tmp_path: Path, capsys) -> None:
    from facesegm_utils import cli

    run = tmp_path / "run"
    cfg = training.TrainConfig(
        **{**_config(prepared, run).to_dict(), "encoder": None, "encoder_weights": None}
    )
    (run / "backup").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({**cfg.to_dict(), "image_size": 32, "batch_size": 4}))
    assert cli.main(_cli_args(prepared, run, loss="dice", batch_size=2, depth=2, epochs=5)) == 2
    err = capsys.readouterr().err
    assert "loss: 'ce' -> 'dice'" in err and "batch_size: 4 -> 2" in err
    assert "epochs" not in err.split("Options that may change")[0]  # epochs may change on resume
    assert "--restart" in err and sorted(p.name for p in run.iterdir()) == ["backup", "config.json"]


def _files(root: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p): (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_finished_run_is_final_extended_on_request_or_moved_aside(
    prepared: Path, tmp_path: Path, capsys
) -> None:
    from facesegm_utils import cli

    run = tmp_path / "run"
    assert cli.main(_cli_args(prepared, run)) == 0
    assert len(json.loads((run / "config.json").read_text())["class_weight_values"]) == 19  # the CE uses them
    assert cli.main(_cli_args(prepared, run, epochs=2)) == 0  # more epochs: extended from the last weights
    history = read_history(run / "history.csv")
    assert history["epoch"] == [1.0, 2.0]
    assert history["lr"][1] == pytest.approx(history["lr"][0], rel=1e-5)  # goes on at the rate it ended with
    before = _files(tmp_path)
    capsys.readouterr()
    assert cli.main(_cli_args(prepared, run, epochs=2)) == 0  # the same command on the finished run
    out = capsys.readouterr().out.strip().splitlines()
    record = json.loads((run / "config.json").read_text())
    assert out == [
        f"run complete: best val mIoU {record['best_val_miou']:.3f} at epoch {record['best_epoch']}; "
        "--restart to train again, or --epochs N to extend"
    ]
    assert _files(tmp_path) == before  # no file changed, not even its time
    assert cli.main(_cli_args(prepared, run, loss="dice")) == 2
    assert cli.main(_cli_args(prepared, run, loss="dice") + ["--restart"]) == 0
    old = [p for p in tmp_path.iterdir() if p.name.startswith("run.old-")]
    assert len(old) == 1 and (old[0] / "model.keras").is_file()
    assert json.loads((old[0] / "config.json").read_text())["loss"] == "ce"
    record = json.loads((run / "config.json").read_text())
    assert record["loss"] == "dice" and record["class_weight_values"] is None  # Dice weighs no class


def _free_ports(n: int) -> list[int]:
    import socket

    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _worker_env(ports: list[int], index: int, tmp: Path) -> dict[str, str]:
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
    return {
        **os.environ,
        "TF_CONFIG": tf_config,
        "TMPDIR": str(tmp),
        "CUDA_VISIBLE_DEVICES": "",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }


@pytest.mark.slow
def test_two_workers_train_and_only_the_chief_writes(prepared: Path, tmp_path: Path) -> None:
    """Two worker processes on 127.0.0.1 (TF_CONFIG, free ports): one run folder, written by the chief."""
    run, tmp = tmp_path / "run", tmp_path / "tmp"
    tmp.mkdir()
    ports = _free_ports(2)
    args = _cli_args(prepared, run, epochs=2, strategy="multiworker")
    cmd = [sys.executable, "-m", "facesegm_utils.cli", *args]
    procs = [
        subprocess.Popen(
            cmd, env=_worker_env(ports, i, tmp), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for i in range(2)
    ]
    try:
        outs = [p.communicate(timeout=420)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], outs[0][-3000:] + outs[1][-3000:]
    for name in ("model.keras", "history.csv", "config.json"):
        assert len(list(tmp_path.rglob(name))) == 1, name  # the run folder's only; the other worker's is gone
    config = json.loads((run / "config.json").read_text())
    assert (
        config["replicas"] == 2 and config["strategy_name"] == "CollectiveAllReduceStrategy"
    )  # = MultiWorkerMirroredStrategy
    assert config["lr_effective"] == pytest.approx(2 * config["lr"])  # --scale-lr linear (default)
    assert read_history(run / "history.csv")["epoch"] == [1.0, 2.0]
    assert list(tmp.iterdir()) == []  # the other worker's temporary folder was removed


@pytest.mark.slow
def test_a_worker_waiting_for_its_peer_honours_sigterm(prepared: Path, tmp_path: Path) -> None:
    import signal
    import time

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    ports = _free_ports(2)  # nobody listens on the second port: worker 0 waits for its peer
    cmd = [
        sys.executable,
        "-m",
        "facesegm_utils.cli",
        *_cli_args(prepared, tmp_path / "run", strategy="multiworker"),
    ]
    proc = subprocess.Popen(
        cmd, env=_worker_env(ports, 0, tmp), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        time.sleep(25)  # long enough to be inside TensorFlow, waiting
        assert proc.poll() is None, proc.communicate()[0][-2000:]
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM and "stopped by SIGTERM" in out
    assert list(tmp.iterdir()) == []
