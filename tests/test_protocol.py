"""The study's names and the training protocol dataclass (radfusion.protocol)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from radfusion.protocol import ID_PATTERN, INPUT_CHANNELS, INPUT_LABELS, MODEL_LABELS, MODEL_NAMES, TrainingProtocol

PROJECT = Path(__file__).resolve().parents[1]

RESNEXT = {
    "image_size": 256, "epochs": 50, "batch_size": 32, "loss": "dice_bce", "optimizer": "adamw", "lr": 1e-4,
    "weight_decay": 1e-5, "scheduler": "warmup_cosine", "warmup_iters": 100, "warmup_start_lr": 1e-6,
    "min_lr": 5e-6, "encoder_weights": None, "hflip": 0.5,
}


def test_from_config_converts_yaml_strings_and_drops_the_other_schedules_options():
    # PyYAML reads "1e-3" (no dot) as a string; a schema-filled section carries gamma for every model.
    section = {**RESNEXT, "lr": yaml.safe_load("1e-3"), "gamma": 0.995, "epochs": "5"}
    assert isinstance(section["lr"], str)
    protocol = TrainingProtocol.from_config(section)
    assert protocol.lr == 1e-3 and isinstance(protocol.lr, float)
    assert protocol.epochs == 5 and protocol.gamma is None
    assert protocol.schedule_options() == {"warmup_iters": 100, "warmup_start_lr": 1e-6, "min_lr": 5e-6}


def test_from_config_refuses_unknown_keys_and_missing_schedule_options():
    with pytest.raises(ValueError, match="unknown key.*learning_rate"):
        TrainingProtocol.from_config({**RESNEXT, "learning_rate": 1e-4})
    exponential = {k: v for k, v in RESNEXT.items() if k not in ("warmup_iters", "warmup_start_lr", "min_lr")}
    with pytest.raises(ValueError, match="'exponential' needs \\['gamma'\\]"):
        TrainingProtocol.from_config({**exponential, "scheduler": "exponential"})
    with pytest.raises(ValueError, match="hflip"):
        TrainingProtocol.from_config({**RESNEXT, "hflip": 1.5})
    with pytest.raises(ValueError, match="epochs"):
        TrainingProtocol.from_config({**RESNEXT, "epochs": 0})
    with pytest.raises(ValueError, match="crop must be 'none' or 'brain'"):
        TrainingProtocol.from_config({**RESNEXT, "crop": "head"})
    assert TrainingProtocol.from_config(RESNEXT).crop == "none"


def test_protocols_of_the_shipped_configs_build_and_carry_the_schema_values():
    """config.yaml and quick.yaml give complete protocols for both networks; the resnext_unet
    weight decay is the paper's 1e-5 (the package has no defaults that could disagree)."""
    full = yaml.safe_load((PROJECT / "config/config.yaml").read_text())
    quick = yaml.safe_load((PROJECT / "config/quick.yaml").read_text())
    for name in MODEL_NAMES:
        protocol = TrainingProtocol.from_config(full["training"][name])
        quick_protocol = TrainingProtocol.from_config({**full["training"][name], **quick["training"][name]})
        assert quick_protocol.loss == protocol.loss and quick_protocol.optimizer == protocol.optimizer
        assert quick_protocol.image_size < protocol.image_size
    resnext = TrainingProtocol.from_config(full["training"]["resnext_unet"])
    assert resnext.crop == "none"  # the paper resizes whole slices
    assert resnext.weight_decay == 1e-5 and resnext.encoder_weights == "imagenet"
    assert TrainingProtocol.from_config(full["training"]["attention_unet"]).gamma == 0.995


def test_names_are_consistent_and_the_schema_states_the_id_pattern():
    assert set(MODEL_LABELS) == set(MODEL_NAMES)
    assert set(INPUT_LABELS) == set(INPUT_CHANNELS)
    for sheet, column in (("samples", "subject"), ("patients", "patient")):
        schema = yaml.safe_load((PROJECT / f"workflow/schemas/{sheet}.schema.yaml").read_text())
        assert schema["properties"][column]["pattern"] == f"^{ID_PATTERN}$"
    assert f'patient=r"{ID_PATTERN}"' in (PROJECT / "workflow/rules/predict.smk").read_text()
    assert re.fullmatch(ID_PATTERN, "patient07") and not re.fullmatch(ID_PATTERN, "../x")
