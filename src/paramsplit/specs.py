"""Frozen value types and their canonical names.

Names round-trip: `parse_arch(spec.name) == spec` and
`parse_design(d.name, d.design_class) == d` (a name does not say deq or weq). Quantities a
user types (budgets, member counts, tolerances) are parsed in `paramsplit.quantities`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from paramsplit.errors import ConfigError, InputShapeError, SpecError
from paramsplit.families import FamilyInfo, get_family

MIN_SPATIAL = 8  # the smallest input side every family is tested on (8×8 digits)
# The largest input the CIFAR-style families here are asked about: 32 times CIFAR's side.
# Accounting runs one sample through each network, and a dataset lives on the device.
MAX_SPATIAL = 1024
MAX_CHANNELS = 1024
MAX_CLASSES = 100_000  # ImageNet-21k has 21,841
# The deepest published CIFAR network is ResNet-1202 (He et al. 2016); building one on the
# meta device takes ~1 s, and the time grows with depth (resnet-60002: over a minute).
MAX_DEPTH = 1202


@dataclass(frozen=True)
class ArchSpec:
    """One network of a family: FAMILY-DEPTH-WIDTH, e.g. `resnet-20-16`, `wrn-28-10`.

    `stage_widths` are the widths of the family's stages: channels per stage (resnet, wrn,
    vgg) or the growth rate of each dense block (densenet-bc). Left out, they are the uniform
    ones, `multiplier * width` per stage (`FamilyInfo.stage_multipliers`). Given, `width` must
    be their nominal width (`FamilyInfo.nominal_width`); `ArchSpec.from_stage_widths` works it
    out. A network whose stage widths are not uniform is named by them, dot-separated:
    `resnet-56-8.16.31` has stages of 8, 16 and 31 channels, `densenet-bc-100-6.6.7` growth
    rates 6, 6 and 7. Uniform networks keep their plain name (`resnet-56-8`, not
    `resnet-56-8.16.32`), so each network has exactly one spec and one name.
    """

    family: str
    depth: int
    width: int
    stage_widths: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        info = get_family(self.family)
        if info.name != self.family:
            object.__setattr__(self, "family", info.name)
        info.units_for_depth(self.depth)
        if self.width < 1:
            raise SpecError(f"width must be >= 1 for {self.family}, got {self.width}")
        if not self.stage_widths:
            object.__setattr__(self, "stage_widths", info.stage_widths_for(self.width))
            return
        stages = tuple(self.stage_widths)
        object.__setattr__(self, "stage_widths", stages)
        text = ".".join(map(str, stages))
        if len(stages) != info.num_stages:
            raise SpecError(
                f"{self.family} has {info.num_stages} stages, got {len(stages)} stage widths "
                f"({text})"
            )
        if min(stages) < 1:
            raise SpecError(f"stage widths must be >= 1 for {self.family}, got {text}")
        nominal = info.nominal_width(stages)
        if self.width != nominal:
            raise SpecError(
                f"width {self.width} does not match stage widths {text} of {self.family} "
                f"(their nominal width is {nominal})"
            )

    @classmethod
    def from_stage_widths(cls, family: str, depth: int, stage_widths: Sequence[int]) -> ArchSpec:
        """The network with these stage widths, its width the nominal one."""
        info = get_family(family)
        stages = tuple(stage_widths)
        width = info.nominal_width(stages) if len(stages) == info.num_stages else 1
        return cls(info.name, depth, width, stages)

    @property
    def uniform(self) -> bool:
        """Whether every stage has the width the family gives it at `width`."""
        return self.stage_widths == self.info.stage_widths_for(self.width)

    @property
    def width_label(self) -> str:
        """The width part of the name: `8`, or `8.16.31` when the stages are not uniform."""
        return str(self.width) if self.uniform else ".".join(map(str, self.stage_widths))

    @property
    def name(self) -> str:
        return f"{self.family}-{self.depth}-{self.width_label}"

    @property
    def info(self) -> FamilyInfo:
        return get_family(self.family)

    @property
    def units(self) -> int:
        return self.info.units_for_depth(self.depth)

    def __str__(self) -> str:
        return self.name


class DesignClass(StrEnum):
    SINGLE = "single"
    DEQ = "deq"
    WEQ = "weq"


DESIGN_CLASSES = tuple(c.value for c in DesignClass)


def class_order(design_class: str) -> int:
    """Where a design class sorts in tables and figures: single, deq, weq, then the rest."""
    if design_class in DESIGN_CLASSES:
        return DESIGN_CLASSES.index(design_class)
    return len(DESIGN_CLASSES)


def class_label(design_class: str, num_members: int) -> str:
    """'single', 'deq k=4', 'weq k=2': a design's class and k, as tables and figures name it."""
    return "single" if design_class == DesignClass.SINGLE else f"{design_class} k={num_members}"


def design_name(num_members: int, member: str) -> str:
    """'resnet-20-6' for a single network, '4x resnet-20-3' for an ensemble of 4 members."""
    return member if num_members == 1 else f"{num_members}x {member}"


@dataclass(frozen=True)
class DesignSpec:
    """A design: k architecturally identical members (k = 1 for a single network)."""

    design_class: DesignClass
    num_members: int
    member: ArchSpec

    def __post_init__(self) -> None:
        if self.num_members < 1:
            raise SpecError(f"number of members must be >= 1, got {self.num_members}")
        if (self.design_class is DesignClass.SINGLE) != (self.num_members == 1):
            raise SpecError(
                f"a {self.design_class} design cannot have {self.num_members} member(s)"
            )

    @classmethod
    def of(cls, num_members: int, member: ArchSpec) -> DesignSpec:
        """A single network for k = 1, otherwise a deq ensemble (the class is a label)."""
        design_class = DesignClass.SINGLE if num_members == 1 else DesignClass.DEQ
        return cls(design_class, num_members, member)

    @property
    def name(self) -> str:
        return design_name(self.num_members, self.member.name)

    def __str__(self) -> str:
        return self.name


# A comparison between an ensemble and its single network is "matched" when the ensemble's
# total parameters lie within this range of the single network's |S| (both ends included).
# Below it the ensemble is handicapped, above it favoured; either way the verdict is tilted.
MATCH_TOLERANCE: tuple[float, float] = (0.90, 1.00)


def is_matched(
    ratio_to_single: float | None, tolerance: tuple[float, float] = MATCH_TOLERANCE
) -> bool:
    """Whether total / |S| lies in `tolerance` (inclusive); an unknown ratio is not matched.

    A 1e-9 slack absorbs the float noise of a ratio computed indirectly, e.g. from two
    ratios to the budget, (T / B) / (|S| / B); it is far below one parameter in any network
    under 10^9 parameters, so it never matches a total that is really out of range.
    """
    if ratio_to_single is None:
        return False
    low, high = tolerance
    return low - 1e-9 <= ratio_to_single <= high + 1e-9


@dataclass(frozen=True)
class InputSpec:
    """What the network sees: channels × height × width, and how many classes it predicts."""

    channels: int = 3
    height: int = 32
    width: int = 32
    num_classes: int = 10

    def __post_init__(self) -> None:
        if self.channels < 1:
            raise InputShapeError(f"input channels must be >= 1, got {self.channels}")
        if min(self.height, self.width) < MIN_SPATIAL:
            raise InputShapeError(
                f"input must be at least {MIN_SPATIAL}×{MIN_SPATIAL} pixels, "
                f"got {self.height}×{self.width}"
            )
        if max(self.height, self.width) > MAX_SPATIAL:
            raise InputShapeError(
                f"input must be at most {MAX_SPATIAL}×{MAX_SPATIAL} pixels (32 times CIFAR's "
                f"side), got {self.height}×{self.width}"
            )
        if self.num_classes < 2:
            raise InputShapeError(f"number of classes must be >= 2, got {self.num_classes}")
        if self.channels > MAX_CHANNELS or self.num_classes > MAX_CLASSES:
            raise InputShapeError(
                f"input channels must be <= {MAX_CHANNELS} and classes <= {MAX_CLASSES:,} "
                f"(ImageNet-21k has 21,841), got {self.channels} and {self.num_classes}"
            )

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)

    @property
    def name(self) -> str:
        return f"{self.channels}x{self.height}x{self.width}"


_ARCH_PATTERN = re.compile(
    r"^(?P<family>[a-z][a-z-]*?)-(?P<depth>\d+)(?:-w?(?P<width>\d+(?:\.\d+)*))?$"
)
_DESIGN_PATTERN = re.compile(r"^(?:(?P<k>\d+)\s*[x×*]\s*)?(?P<arch>\S+)$")


def parse_arch(text: str) -> ArchSpec:
    """Parse `FAMILY-DEPTH[-WIDTH]`; a missing width is the family default (`resnet-20`).

    WIDTH is one number, or one per stage separated by dots (`resnet-56-8.16.31`).
    """
    cleaned = text.strip().lower()
    match = _ARCH_PATTERN.match(cleaned)
    if not match:
        raise SpecError(
            f"cannot parse architecture '{text}'; expected FAMILY-DEPTH-WIDTH such as "
            "'resnet-20-16', 'wrn-28-10', 'densenet-bc-100-12', with one width per stage like "
            "'resnet-56-8.16.31', or a shorthand like 'resnet-56'"
        )
    info = get_family(match["family"])
    depth = check_depth(int(match["depth"]))
    if match["width"] and "." in match["width"]:
        stages = [int(part) for part in match["width"].split(".")]
        return ArchSpec.from_stage_widths(info.name, depth, stages)
    width = int(match["width"]) if match["width"] else info.default_width
    return ArchSpec(info.name, depth, width)


def check_depth(depth: int) -> int:
    """`depth` if it is at most `MAX_DEPTH`, for depths a user asks for (the planner's own
    searches may probe deeper)."""
    if depth > MAX_DEPTH:
        raise SpecError(
            f"depth {depth} is above the largest supported, {MAX_DEPTH} (the deepest "
            "published CIFAR network, ResNet-1202)"
        )
    return depth


def parse_design(text: str, design_class: DesignClass | None = None) -> DesignSpec:
    """Parse `K x ARCH` (an ensemble) or `ARCH` (a single network)."""
    match = _DESIGN_PATTERN.match(text.strip().lower())
    if not match:
        raise SpecError(f"cannot parse design '{text}'; expected e.g. '4x resnet-20-8'")
    num_members = int(match["k"]) if match["k"] else 1
    if design_class is None:
        design_class = DesignClass.SINGLE if num_members == 1 else DesignClass.DEQ
    return DesignSpec(design_class, num_members, parse_arch(match["arch"]))


def parse_input(text: str, num_classes: int = 10) -> InputSpec:
    """Parse `CxHxW` (e.g. `3x32x32`, `1x8x8`)."""
    parts = re.split(r"\s*[x×]\s*", text.strip().lower())
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise InputShapeError(f"cannot parse input shape '{text}'; expected CxHxW such as 3x32x32")
    channels, height, width = (int(p) for p in parts)
    return InputSpec(channels, height, width, num_classes)


PRECISIONS = ("fp32", "bf16", "fp16")
SCHEDULES = ("cosine", "multistep")


@dataclass(frozen=True)
class TrainConfig:
    """One training protocol, identical for a single network and every ensemble member.

    SGD with Nesterov momentum; the learning rate follows `schedule`, stepped once per epoch
    (never per batch), after `warmup_epochs` of linear warm-up. `weight_decay=None` takes the
    family's customary value. `milestones` are fractions of `epochs` for the multi-step
    schedule (the study: ×0.1 at 50% and 75%).
    """

    epochs: int = 30
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float | None = None
    schedule: str = "cosine"
    milestones: tuple[float, ...] = (0.5, 0.75)
    gamma: float = 0.1
    warmup_epochs: int = 0
    label_smoothing: float = 0.0
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    test_every_epoch: bool = False

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, "epochs", self.epochs, ">= 1"),
            (self.batch_size >= 1, "batch_size", self.batch_size, ">= 1"),
            (self.lr > 0, "lr", self.lr, "> 0"),
            (0 <= self.momentum < 1, "momentum", self.momentum, "in [0, 1)"),
            (
                self.weight_decay is None or self.weight_decay >= 0,
                "weight_decay",
                self.weight_decay,
                ">= 0",
            ),
            (self.schedule in SCHEDULES, "schedule", self.schedule, " or ".join(SCHEDULES)),
            (all(0 < m < 1 for m in self.milestones), "milestones", self.milestones, "in (0, 1)"),
            (
                0 <= self.warmup_epochs < self.epochs,
                "warmup_epochs",
                self.warmup_epochs,
                "in [0, epochs)",
            ),
            (0 <= self.label_smoothing < 1, "label_smoothing", self.label_smoothing, "in [0, 1)"),
            (self.precision in PRECISIONS, "precision", self.precision, " or ".join(PRECISIONS)),
        ]
        for ok, name, value, allowed in checks:
            if not ok:
                raise ConfigError(f"{name} must be {allowed}, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        """Every setting by its field name (what a run spec and a run's result keep)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, ignore_unknown: bool = False) -> TrainConfig:
        """The config `to_dict` (or JSON of it) gave; settings left out take their defaults.

        A key that names no setting is an error, unless `ignore_unknown` (a config stored by
        another version, read for what this one knows of it).
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown and not ignore_unknown:
            raise ConfigError(
                f"unknown training setting(s) {', '.join(map(repr, unknown))}; "
                f"allowed: {', '.join(sorted(known))}"
            )
        values = {key: value for key, value in data.items() if key in known}
        if "milestones" in values:  # JSON has lists, not tuples
            values["milestones"] = tuple(values["milestones"])
        return cls(**values)

    def weight_decay_for(self, family: str) -> float:
        if self.weight_decay is not None:
            return self.weight_decay
        return get_family(family).weight_decay


def time_to_accuracy_s(
    curve: Iterable[tuple[float | None, float | None]], target: float
) -> float | None:
    """Training time until validation accuracy first reached `target` (a fraction), from a
    learning curve of (validation accuracy, training seconds so far) per epoch; None if it
    never did. Training and the analysis of stored curves both answer with this one rule."""
    for val_accuracy, elapsed_train_s in curve:
        if val_accuracy is not None and val_accuracy >= target:
            return elapsed_train_s
    return None
