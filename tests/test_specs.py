"""Names a user types: architectures, designs, inputs (quantities: test_quantities.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import paramsplit as ps
from paramsplit.specs import class_label, class_order, design_name, time_to_accuracy_s

# --- architectures ------------------------------------------------------------------------


@st.composite
def arch_specs(draw) -> ps.ArchSpec:
    """Any valid network of any family: depth follows the family's rule; about half have
    per-stage widths (most of them not uniform)."""
    info = draw(st.sampled_from(ps.FAMILIES))
    depth = info.depth_for_units(draw(st.integers(min_value=1, max_value=60)))
    if draw(st.booleans()):
        widths = st.integers(min_value=1, max_value=1024)
        stages = draw(st.lists(widths, min_size=info.num_stages, max_size=info.num_stages))
        return ps.ArchSpec.from_stage_widths(info.name, depth, stages)
    return ps.ArchSpec(info.name, depth, draw(st.integers(min_value=1, max_value=1024)))


@given(arch_specs())
def test_arch_name_round_trips(spec):
    assert ps.parse_arch(spec.name) == spec
    assert ps.parse_arch(f"  {spec.name.upper()} ") == spec  # case and spaces do not matter


@given(arch_specs(), st.data())
def test_family_aliases_name_the_same_network(spec, data):
    alias = data.draw(st.sampled_from((spec.family, *spec.info.aliases)))
    assert ps.parse_arch(f"{alias}-{spec.depth}-{spec.width_label}") == spec


@pytest.mark.parametrize(
    ("name", "stage_widths", "width"),
    [
        ("resnet-56-8.16.31", (8, 16, 31), 8),
        ("wrn-28-80.159.320", (80, 159, 320), 5),
        ("densenet-bc-100-6.6.5", (6, 6, 5), 6),
        ("vgg-16-23.46.91.180.181", (23, 46, 91, 180, 181), 23),
    ],
)
def test_per_stage_widths_are_named_by_their_stages(name, stage_widths, width):
    arch = ps.parse_arch(name)
    assert (arch.stage_widths, arch.width, arch.uniform) == (stage_widths, width, False)
    assert arch.name == name
    assert arch == ps.ArchSpec.from_stage_widths(arch.family, arch.depth, stage_widths)


@pytest.mark.parametrize(
    ("stages", "plain"),
    [
        ("resnet-56-8.16.32", "resnet-56-8"),
        ("wrn-28-160.320.640", "wrn-28-10"),
        ("densenet-bc-100-12.12.12", "densenet-bc-100-12"),
        ("vgg-16-64.128.256.512.512", "vgg-16-64"),
    ],
)
def test_uniform_stage_widths_keep_the_plain_name(stages, plain):
    # One network, one spec, one name: run ids hash the name, so they must not change.
    assert ps.parse_arch(stages) == ps.parse_arch(plain)
    assert ps.parse_arch(stages).name == plain
    assert ps.parse_arch(plain).stage_widths == tuple(
        int(part) for part in stages.rsplit("-", 1)[1].split(".")
    )


def test_stage_widths_must_agree_with_the_width():
    with pytest.raises(ps.SpecError, match=r"width 7 does not match stage widths 8\.16\.31"):
        ps.ArchSpec("resnet", 56, 7, (8, 16, 31))
    with pytest.raises(ps.SpecError, match=r"width 9 does not match stage widths 8\.16\.32"):
        ps.ArchSpec("resnet", 56, 9, (8, 16, 32))


@pytest.mark.parametrize(
    ("shorthand", "name"),
    [
        ("resnet-20", "resnet-20-16"),
        ("resnet-56", "resnet-56-16"),
        ("resnet-110", "resnet-110-16"),
        ("wrn-28-10", "wrn-28-10"),
        ("wrn-40-4", "wrn-40-4"),
        ("densenet-bc-100-12", "densenet-bc-100-12"),
        ("densenet-bc-40", "densenet-bc-40-12"),
        ("densenet-100-12", "densenet-bc-100-12"),
        ("vgg-11", "vgg-11-64"),
        ("vgg-16", "vgg-16-64"),
        ("resnet-20-w8", "resnet-20-8"),
    ],
)
def test_shorthands(shorthand, name):
    assert ps.parse_arch(shorthand).name == name


def test_family_lookup_by_alias():
    assert ps.get_family("densenet").name == "densenet-bc"
    assert ps.get_family(" Wide-ResNet ").name == "wrn"
    assert ps.ArchSpec("densenet", 100, 12).family == "densenet-bc"


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        ("resnt-20", ps.UnknownFamilyError, "unknown family 'resnt'.*did you mean 'resnet'"),
        ("densnet-bc-40", ps.UnknownFamilyError, "did you mean 'densenet-bc'"),
        ("resnet-21", ps.SpecError, "depth 21 is not valid for resnet.*6n\\+2.*14, 20, 26"),
        ("wrn-4-1", ps.SpecError, "depth 4 is not valid for wrn.*nearest valid depths: 10, 16"),
        ("vgg-7", ps.SpecError, "depth 7 is not valid for vgg.*any depth >= 8"),
        ("resnet-20-0", ps.SpecError, "width must be >= 1 for resnet, got 0"),
        ("resnet", ps.SpecError, "cannot parse architecture 'resnet'"),
        ("resnet-20-16-4", ps.SpecError, "cannot parse architecture"),
        ("resnet-20-8.16", ps.SpecError, r"resnet has 3 stages, got 2 stage widths \(8\.16\)"),
        ("vgg-11-1.2.3", ps.SpecError, "vgg has 5 stages, got 3 stage widths"),
        ("resnet-20-8.0.16", ps.SpecError, r"stage widths must be >= 1 for resnet, got 8\.0\.16"),
        ("resnet-20-8..16", ps.SpecError, "cannot parse architecture"),
        ("resnet-20-8.16.", ps.SpecError, "cannot parse architecture"),
    ],
)
def test_parse_arch_rejects(text, error, message):
    with pytest.raises(error, match=message):
        ps.parse_arch(text)


# --- designs ------------------------------------------------------------------------------


def test_parse_design():
    design = ps.parse_design("4x resnet-20-8")
    assert design == ps.DesignSpec(ps.DesignClass.DEQ, 4, ps.ArchSpec("resnet", 20, 8))
    assert design.name == "4x resnet-20-8"
    assert ps.parse_design("resnet-20").design_class is ps.DesignClass.SINGLE
    assert ps.parse_design("4 × resnet-20-8") == design


@given(st.integers(min_value=1, max_value=64), arch_specs())
def test_design_name_round_trips(num_members, member):
    design = ps.DesignSpec.of(num_members, member)
    assert ps.parse_design(design.name) == design


@given(st.integers(min_value=1, max_value=64), arch_specs())
def test_a_design_is_named_from_its_member_count_and_member_by_one_rule(num_members, member):
    # The store, the analysis and `measure` name a design from (k, member name) alone.
    name = design_name(num_members, member.name)
    assert name == ps.DesignSpec.of(num_members, member).name
    assert ps.parse_design(name).num_members == num_members


def test_design_classes_sort_single_deq_weq_and_are_labelled_with_k():
    classes = ["weq", "other", "single", "deq"]
    assert sorted(classes, key=class_order) == ["single", "deq", "weq", "other"]
    assert class_label("single", 1) == "single"
    assert class_label("deq", 4) == "deq k=4"
    assert class_label(ps.DesignClass.WEQ, 2) == "weq k=2"


def test_time_to_accuracy_is_the_training_time_of_the_first_epoch_at_the_target():
    curve = [(0.5, 1.0), (None, 2.0), (0.8, 3.0), (0.9, 4.0)]
    assert time_to_accuracy_s(curve, 0.8) == 3.0  # reaching the target counts
    assert time_to_accuracy_s(curve, 0.6) == 3.0  # an epoch not validated is skipped
    assert time_to_accuracy_s(curve, 0.95) is None


@given(st.integers(min_value=2, max_value=64), arch_specs())
def test_weq_design_round_trips_with_its_class(num_members, member):
    # The name does not carry deq/weq (the class is a label); the caller passes it back.
    design = ps.DesignSpec(ps.DesignClass.WEQ, num_members, member)
    assert ps.parse_design(design.name, ps.DesignClass.WEQ) == design


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0x resnet-20", "number of members must be >= 1, got 0"),
        ("4x resnet-21", "depth 21 is not valid for resnet"),
        ("4x resnet 20", "cannot parse design '4x resnet 20'"),
    ],
)
def test_parse_design_rejects(text, message):
    with pytest.raises(ps.SpecError, match=message):
        ps.parse_design(text)


def test_single_design_cannot_have_several_members():
    with pytest.raises(ps.SpecError, match="a single design cannot have 4 member"):
        ps.DesignSpec(ps.DesignClass.SINGLE, 4, ps.parse_arch("resnet-20"))


# --- matched comparisons ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("ratio", "matched"),
    [(1.0, True), (0.9, True), (0.95, True), (0.8999, False), (1.0001, False), (None, False)],
)
def test_is_matched_with_the_default_tolerance(ratio, matched):
    assert ps.MATCH_TOLERANCE == (0.90, 1.00)
    assert ps.is_matched(ratio) is matched


def test_is_matched_with_a_given_tolerance():
    assert ps.is_matched(1.02, (0.95, 1.05))
    assert not ps.is_matched(0.94, (0.95, 1.05))


# --- inputs -------------------------------------------------------------------------------


def test_parse_input():
    spec = ps.parse_input("1x28x28", num_classes=10)
    assert (spec.shape, spec.num_classes, spec.name) == ((1, 28, 28), 10, "1x28x28")
    assert ps.parse_input(" 3 × 32 × 32 ").shape == (3, 32, 32)


@pytest.mark.parametrize(
    ("text", "num_classes", "message"),
    [
        ("3x32", 10, "cannot parse input shape '3x32'"),
        ("3xAx32", 10, "cannot parse input shape"),
        ("3x4x4", 10, "input must be at least 8×8 pixels, got 4×4"),
        ("3x32x7", 10, "input must be at least 8×8 pixels, got 32×7"),
        ("0x32x32", 10, "input channels must be >= 1, got 0"),
        ("3x32x32", 1, "number of classes must be >= 2, got 1"),
    ],
)
def test_parse_input_rejects(text, num_classes, message):
    with pytest.raises(ps.InputShapeError, match=message):
        ps.parse_input(text, num_classes=num_classes)


def test_every_public_name_resolves():
    missing = [name for name in ps.__all__ if getattr(ps, name, None) is None]
    assert missing == []
