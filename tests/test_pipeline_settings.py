"""Per-stage settings: in a pipeline EPOCHS/LR/BS set pretraining and FT_EPOCHS/FT_LR/FT_BS fine-tuning."""


import pytest
import stage  # bin/stage.py

from conftest import REPO
from imgwang.core.errors import ConfigError
from imgwang.spec import PIPELINE
from imgwang.stages import driver

TINY = ["--data", "sample", "--arch", "tinyconv", "--size", "32", "--comet", "off"]


def planned(tmp_path, *argv):
    args = stage.parse_args([*argv, *TINY, "--runs-dir", str(tmp_path)])
    stages = PIPELINE if args.stage == "pipeline" else [args.stage]
    if args.stage == "pipeline" and args.from_version == "none":
        stages = PIPELINE[1:]
    return {p.stage: p.parameters for p in driver.plan_all(args, stages, REPO)}


def test_a_pipeline_gives_pretraining_and_fine_tuning_their_own_settings(lab_env, tmp_path):
    p = planned(tmp_path, "pipeline", "--epochs", "30", "--lr", "0.01", "--bs", "128", "--ft-epochs", "20", "--ft-lr", "0.004")
    assert (p["pretrain"]["epochs"], p["pretrain"]["lr"], p["pretrain"]["bs"]) == (30, 0.01, 128)
    assert (p["transfer"]["epochs"], p["transfer"]["lr"], p["transfer"]["bs"]) == (20, 0.004, 32)  # FT_BS: the default
    assert p["evaluate"]["bs"] == 64  # evaluate's own default, not pretraining's batch
    p = planned(tmp_path, "pipeline", "--epochs", "30")
    assert p["pretrain"]["epochs"] == 30 and p["transfer"]["epochs"] == 5  # no FT_EPOCHS: fine-tuning's default


def test_transfer_alone_takes_either_and_refuses_a_contradiction(lab_env, tmp_path):
    assert planned(tmp_path, "transfer", "--version", "v1", "--from", "none", "--ft-epochs", "7")["transfer"]["epochs"] == 7
    assert planned(tmp_path, "transfer", "--version", "v1", "--from", "none", "--epochs", "7")["transfer"]["epochs"] == 7
    with pytest.raises(ConfigError, match="contradict"):
        planned(tmp_path, "transfer", "--version", "v1", "--from", "none", "--epochs", "7", "--ft-epochs", "8")
    with pytest.raises(ConfigError, match="FT_EPOCHS sets fine-tuning"):
        planned(tmp_path, "pretrain", "--ft-epochs", "8")
    with pytest.raises(ConfigError, match="FROM=none pipeline skips; set fine-tuning with FT_EPOCHS"):
        planned(tmp_path, "pipeline", "--from", "none", "--epochs", "8")
    assert not list(tmp_path.iterdir())  # every refusal before anything was written


def test_a_pipeline_gives_the_loader_augmentation_to_the_stages_that_use_it(lab_env, tmp_path):
    p = planned(tmp_path, "pipeline", "--task", "simclr", "-p", "flip_p", "0")
    assert p["transfer"]["flip_p"] == 0.0
    assert p["pretrain"]["flip_p"] == 0.0 and "crop_scale" not in p["pretrain"]  # simclr: flips its views, no loader crop
    assert planned(tmp_path, "pipeline", "--task", "rotation", "-p", "flip_p", "0")["pretrain"]["flip_p"] == 0.0
