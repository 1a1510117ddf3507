"""What the study compares and how each network is trained, defined once.

The two networks, the two inputs (with the exported channels each reads and their labels in
tables and figures), the subject-ID pattern, and :class:`TrainingProtocol`: one network's
training hyperparameters (config section ``training.<model>``; SPEC "Training protocols"),
built from the config by :meth:`TrainingProtocol.from_config` and read by training, the
benchmarks and the model files' settings check.

==================  =====================================  ==============================
                    resnext_unet                           attention_unet
==================  =====================================  ==============================
loss                ``dice_bce``                           ``dice``
optimizer           AdamW, lr 1e-4, weight decay 1e-5      RMSprop, lr 1e-4
schedule            ``warmup_cosine``                      ``exponential`` (x0.995/epoch)
==================  =====================================  ==============================
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

CROPS = ("none", "brain")  # what a network sees of a slice: all of it, or its brain's box
MODEL_NAMES = ("resnext_unet", "attention_unet")
MODEL_LABELS = {"resnext_unet": "ResNeXt-UNet", "attention_unet": "Attention U-Net"}
INPUT_NAMES = ("mri", "mri_radiomics")
INPUT_LABELS = {"mri": "MRI", "mri_radiomics": "MRI+radiomics"}
# Input name -> channels of the exported slices (FLAIR, CR, RE) it reads (SPEC stage 7).
INPUT_CHANNELS = {"mri": (0,), "mri_radiomics": (0, 1, 2)}
# Subject and patient IDs name folders: letters, digits, "_ . -", starting with a letter or digit.
# The workflow's sample-sheet schema (workflow/schemas/samples.schema.yaml) states the same pattern.
ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]*"

# The options each learning-rate schedule takes (see radfusion.optim.build_scheduler).
SCHEDULE_OPTIONS = {
    "warmup_cosine": ("warmup_iters", "warmup_start_lr", "min_lr"),
    "exponential": ("gamma",),
}


@dataclass(frozen=True)
class TrainingProtocol:
    """One network's training protocol (config section ``training.<model>``).

    Every field the chosen ``scheduler`` needs must be given; the others stay ``None``. There
    are no defaults here: the config schema (``workflow/schemas/config.schema.yaml``) holds
    them, so the package cannot silently disagree with the workflow.

    Attributes
    ----------
    image_size : int
        Slices are resized to ``image_size`` x ``image_size``.
    crop : {"none", "brain"}
        What is resized: the whole slice (the paper), or its subject's brain bounding box
        (:func:`radfusion.slices.brain_box`; predictions are put back in place).
    epochs, batch_size : int
    loss : {"dice_bce", "dice"}
        See :func:`radfusion.losses.build_loss`.
    optimizer : {"adamw", "rmsprop"}
    lr, weight_decay : float
        See :func:`radfusion.optim.build_optimizer`.
    scheduler : {"warmup_cosine", "exponential"}
        See :func:`radfusion.optim.build_scheduler`.
    hflip : float
        Probability of a left-right flip per training sample and epoch.
    warmup_iters, warmup_start_lr, min_lr : optional
        ``warmup_cosine`` only.
    gamma : float, optional
        ``exponential`` only.
    encoder_weights : str, optional
        ``resnext_unet`` only: ``None`` (random initialization) or the path of the ImageNet
        weights file (the workflow resolves the config's ``imagenet`` to it).
    """

    image_size: int
    epochs: int
    batch_size: int
    loss: str
    optimizer: str
    lr: float
    weight_decay: float
    scheduler: str
    hflip: float
    warmup_iters: int | None = None
    warmup_start_lr: float | None = None
    min_lr: float | None = None
    gamma: float | None = None
    encoder_weights: str | None = None
    crop: str = "none"

    def __post_init__(self) -> None:
        for name in ("image_size", "epochs", "batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"training protocol: {name} must be a positive integer; got {getattr(self, name)!r}")
        if self.scheduler not in SCHEDULE_OPTIONS:
            raise ValueError(
                f"training protocol: unknown scheduler {self.scheduler!r}; expected one of {sorted(SCHEDULE_OPTIONS)}"
            )
        missing = [name for name in SCHEDULE_OPTIONS[self.scheduler] if getattr(self, name) is None]
        if missing:
            raise ValueError(f"training protocol: scheduler {self.scheduler!r} needs {missing}")
        if self.crop not in CROPS:
            raise ValueError(f"training protocol: crop must be 'none' or 'brain'; got {self.crop!r}")
        if not 0.0 <= self.hflip <= 1.0:
            raise ValueError(f"training protocol: hflip must be in [0, 1]; got {self.hflip}")

    @classmethod
    def from_config(cls, section: Mapping) -> TrainingProtocol:
        """The protocol of a config section ``training.<model>``.

        Numbers are converted to ``int``/``float`` (YAML reads ``1e-4`` without a dot as a
        string); options of the other schedule are dropped; an unknown key is an error.
        """
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(section) - set(fields))
        if unknown:
            raise ValueError(f"training protocol: unknown key(s) {unknown}; expected {sorted(fields)}")
        scheduler = section.get("scheduler")
        unused = {
            name for other, names in SCHEDULE_OPTIONS.items() if other != scheduler for name in names
        } - set(SCHEDULE_OPTIONS.get(scheduler, ()))
        values = {}
        for name, value in section.items():
            if name in unused or value is None:
                continue
            kind = fields[name].type
            if kind.startswith("int"):
                value = int(value)
            elif kind.startswith("float"):
                value = float(value)
            values[name] = value
        return cls(**values)

    def replace(self, **changes) -> TrainingProtocol:
        """A copy with some fields changed (e.g. a benchmark's batch size)."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict:
        """The fields as a plain dict (stored in checkpoints and model files)."""
        return dataclasses.asdict(self)

    def schedule_options(self) -> dict:
        """The keyword options of :func:`radfusion.optim.build_scheduler` for this schedule."""
        return {name: getattr(self, name) for name in SCHEDULE_OPTIONS[self.scheduler]}
