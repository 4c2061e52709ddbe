"""The catalogue of CNN families: their knobs, valid depths and published configurations.

Pure data and lookups, no torch: names can be parsed and validated anywhere. The code that
builds each family lives in `paramsplit.models`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from paramsplit.errors import SpecError, UnknownFamilyError


@dataclass(frozen=True)
class PublishedConfig:
    """A configuration from the literature and the parameter count it is known by.

    `params` is the exact count for 3×32×32 inputs and 10 classes (CIFAR-10); `reported`
    is what the paper prints, rounded as the paper rounds it. Where our variant is not the
    paper's exact network, `note` says so and the count may differ in the last digit shown.
    """

    name: str
    params: int
    reported: str
    source: str
    note: str = ""  # where our variant differs from the paper's, and by how much


@dataclass(frozen=True)
class FamilyInfo:
    """One family: width and depth knobs, with depth = depth_step * units + depth_offset."""

    name: str
    title: str
    width_meaning: str
    depth_meaning: str
    depth_step: int
    depth_offset: int
    default_depth: int
    default_width: int
    aliases: tuple[str, ...]
    published: tuple[PublishedConfig, ...]
    weight_decay: float  # the family's customary value in its paper's CIFAR recipe
    # Stage i's width is stage_multipliers[i] * width: its channels (resnet, wrn, vgg) or
    # its dense block's growth rate (densenet-bc).
    stage_multipliers: tuple[int, ...]
    stage_meaning: str

    @property
    def min_depth(self) -> int:
        return self.depth_step + self.depth_offset

    @property
    def depth_rule(self) -> str:
        if self.depth_step == 1:
            return f"any depth >= {self.min_depth}"
        return f"{self.depth_step}n+{self.depth_offset}, n >= 1"

    @property
    def num_stages(self) -> int:
        return len(self.stage_multipliers)

    def stage_widths_for(self, width: int) -> tuple[int, ...]:
        """The stage widths of the uniform network of this width."""
        return tuple(multiplier * width for multiplier in self.stage_multipliers)

    def nominal_width(self, stage_widths: tuple[int, ...]) -> int:
        """The uniform width closest to these stage widths: sum(widths) / sum(multipliers),
        rounded half up, at least 1. Exact for uniform stage widths."""
        total = sum(self.stage_multipliers)
        return max(1, (2 * sum(stage_widths) + total) // (2 * total))

    def units_for_depth(self, depth: int) -> int:
        """The number of repeated units (blocks per stage, layers per block) at this depth."""
        units, rest = divmod(depth - self.depth_offset, self.depth_step)
        if rest or units < 1:
            raise SpecError(
                f"depth {depth} is not valid for {self.name} (depth = {self.depth_rule}); "
                f"nearest valid depths: {', '.join(map(str, self.depths_near(depth)))}"
            )
        return units

    def depth_for_units(self, units: int) -> int:
        return self.depth_step * units + self.depth_offset

    def depths_near(self, depth: int, count: int = 3) -> list[int]:
        """Valid depths closest to `depth`, in increasing order."""
        units = max(1, round((depth - self.depth_offset) / self.depth_step))
        low = max(1, units - count // 2)
        return [self.depth_for_units(u) for u in range(low, low + count)]


_OPTION_B = "projection shortcuts; the paper's zero-padding shortcuts have 2,752 fewer params"

FAMILIES: tuple[FamilyInfo, ...] = (
    FamilyInfo(
        name="resnet",
        title="CIFAR ResNet (He et al. 2016), projection shortcuts",
        width_meaning="channels of the first stage (stages: w, 2w, 4w)",
        depth_meaning="3 stages of n basic blocks",
        depth_step=6,
        depth_offset=2,
        default_depth=20,
        default_width=16,
        aliases=("cifar-resnet",),
        weight_decay=1e-4,
        stage_multipliers=(1, 2, 4),
        stage_meaning="channels of each stage",
        published=(
            PublishedConfig("resnet-20-16", 272_474, "0.27M", "He et al. 2016, Table 6", _OPTION_B),
            PublishedConfig("resnet-56-16", 855_770, "0.85M", "He et al. 2016, Table 6", _OPTION_B),
            PublishedConfig(
                "resnet-110-16", 1_730_714, "1.7M", "He et al. 2016, Table 6", _OPTION_B
            ),
        ),
    ),
    FamilyInfo(
        name="wrn",
        title="Wide ResNet (Zagoruyko & Komodakis 2016), pre-activation",
        width_meaning="widen factor (stages: 16w, 32w, 64w; stem 16)",
        depth_meaning="3 stages of n pre-activation blocks",
        depth_step=6,
        depth_offset=4,
        default_depth=28,
        default_width=10,
        aliases=("wide-resnet", "wideresnet"),
        weight_decay=5e-4,
        stage_multipliers=(16, 32, 64),
        stage_meaning="channels of each stage",
        published=(
            PublishedConfig(
                "wrn-28-10", 36_479_194, "36.5M", "Zagoruyko & Komodakis 2016, Table 4"
            ),
            PublishedConfig("wrn-40-4", 8_949_210, "8.9M", "Zagoruyko & Komodakis 2016, Table 4"),
            PublishedConfig("wrn-16-8", 10_961_370, "11.0M", "Zagoruyko & Komodakis 2016, Table 4"),
        ),
    ),
    FamilyInfo(
        name="densenet-bc",
        title="DenseNet-BC (Huang et al. 2017), compression 0.5, bottleneck 4×growth",
        width_meaning="growth rate (stem 2w channels)",
        depth_meaning="3 dense blocks of n bottleneck layers",
        depth_step=6,
        depth_offset=4,
        default_depth=100,
        default_width=12,
        aliases=("densenet", "densenetbc"),
        weight_decay=1e-4,
        stage_multipliers=(1, 1, 1),
        stage_meaning="growth rate of each dense block (stem: twice the first)",
        published=(
            PublishedConfig("densenet-bc-100-12", 769_162, "0.8M", "Huang et al. 2017, Table 2"),
            PublishedConfig(
                "densenet-bc-250-24", 15_324_406, "15.3M", "Huang et al. 2017, Table 2"
            ),
            PublishedConfig(
                "densenet-bc-190-40", 25_624_430, "25.6M", "Huang et al. 2017, Table 2"
            ),
        ),
    ),
    FamilyInfo(
        name="vgg",
        title="VGG for 32×32 inputs (conv-BN-ReLU stacks, one linear classifier)",
        width_meaning="channels of the first stage (stages: w, 2w, 4w, 8w, 8w)",
        depth_meaning="depth-3 convolutions in 5 stages (VGG naming counts 3 FC layers)",
        depth_step=1,
        depth_offset=7,
        default_depth=16,
        default_width=64,
        aliases=(),
        weight_decay=5e-4,
        stage_multipliers=(1, 2, 4, 8, 8),
        stage_meaning="channels of each stage",
        published=(
            PublishedConfig("vgg-11-64", 9_231_114, "9.2M", "Simonyan & Zisserman 2015, config A"),
            PublishedConfig(
                "vgg-16-64", 14_728_266, "14.7M", "Simonyan & Zisserman 2015, config D"
            ),
        ),
    ),
)

_BY_NAME: dict[str, FamilyInfo] = {}
for _family in FAMILIES:
    for _key in (_family.name, *_family.aliases):
        _BY_NAME[_key] = _family


def family_names() -> list[str]:
    return [family.name for family in FAMILIES]


def get_family(name: str) -> FamilyInfo:
    """Look a family up by name or alias, case-insensitively."""
    key = name.strip().lower()
    if key in _BY_NAME:
        return _BY_NAME[key]
    suggestion = difflib.get_close_matches(key, list(_BY_NAME), n=1)
    hint = f"; did you mean '{_BY_NAME[suggestion[0]].name}'?" if suggestion else ""
    raise UnknownFamilyError(
        f"unknown family '{name}'; known families: {', '.join(family_names())}{hint}"
    )
