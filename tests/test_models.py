"""One battery over every family: shapes, exact counts, seeding, and the oracle.

The oracle is the test that matters most: a fused k-member network must compute exactly what
k separately built networks compute, forward and backward. Everything the study concludes
about ensembles trained as one fused network rests on it.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

import paramsplit as ps

NUM_CLASSES = 7  # not 10, so a hard-coded class count would show
BATCH = 2  # the smallest batch train-mode batch norm accepts at 1×1 resolution
INPUTS = ["1x8x8", "1x28x28", "3x32x32", "3x64x64", "3x24x40"]  # last one not square
ORACLE_MEMBERS = 3
ORACLE_BATCH = 4
ORACLE_SHAPE = (3, 20, 20)  # odd sizes after pooling (20 -> 10 -> 5 -> 2) on purpose


def random_weight_names(model: torch.nn.Module) -> list[str]:
    """Parameters drawn at random: conv and linear weights (batch norm starts at 1 and 0)."""
    return [name for name, p in model.named_parameters() if p.dim() >= 2]


# --- shapes -------------------------------------------------------------------------------


@pytest.mark.parametrize("input_name", INPUTS)
@pytest.mark.parametrize("num_members", [1, 3])
def test_output_shape_for_both_input_forms(small_arch, input_name, num_members):
    input_spec = ps.parse_input(input_name, num_classes=NUM_CLASSES)
    model = ps.build_model(small_arch, input_spec, num_members=num_members, seed=0)
    shared = torch.randn(BATCH, *input_spec.shape)  # [B, C, H, W]: every member sees it
    per_member = torch.randn(num_members, BATCH, *input_spec.shape)  # [k, B, C, H, W]
    with torch.no_grad():
        assert model(shared).shape == (BATCH, num_members, NUM_CLASSES)
        assert model(per_member).shape == (BATCH, num_members, NUM_CLASSES)


def test_shared_input_is_the_per_member_input_repeated(small_arch):
    # Values, not only shapes: [B, C, H, W] must mean "the same batch for every member".
    model = ps.build_model(small_arch, num_members=3, seed=0).eval()
    x = torch.randn(BATCH, 3, 16, 16)
    with torch.no_grad():
        assert_close(model(x), model(x.expand(3, *x.shape)))


def test_wrong_member_axis_is_rejected(small_arch):
    model = ps.build_model(small_arch, num_members=3, seed=0)
    with pytest.raises(ValueError, match=r"expected input \[B, C, H, W\] or \[3, B, C, H, W\]"):
        model(torch.randn(2, BATCH, 3, 16, 16))


# --- parameter counts ---------------------------------------------------------------------


@pytest.mark.parametrize("input_name", ["1x28x28", "3x32x32"])
def test_meta_count_equals_built_module(small_arch, input_name):
    # count_params builds on the meta device and caches by channels and classes only;
    # the module a user trains must have exactly that many parameters.
    input_spec = ps.parse_input(input_name, num_classes=NUM_CLASSES)
    model = ps.build_model(small_arch, input_spec, device="cpu")
    assert ps.count_params(small_arch, input_spec) == sum(p.numel() for p in model.parameters())


def test_fused_network_has_k_times_the_parameters(small_arch):
    # Packing members must not change channel counts (that would break a budget).
    single = ps.build_model(small_arch, device="meta")
    fused = ps.build_model(small_arch, num_members=3, device="meta")
    assert sum(p.numel() for p in fused.parameters()) == 3 * sum(
        p.numel() for p in single.parameters()
    )


# --- seeding ------------------------------------------------------------------------------


def test_seed_alone_determines_weights(small_arch):
    torch.manual_seed(123)  # the global state must not leak into seeded weights
    first = ps.build_model(small_arch, seed=7).state_dict()
    torch.manual_seed(456)
    again = ps.build_model(small_arch, seed=7).state_dict()
    other = ps.build_model(small_arch, seed=8).state_dict()
    assert first.keys() == again.keys()
    for name in first:
        assert torch.equal(first[name], again[name]), name
    for name in random_weight_names(ps.build_model(small_arch, device="meta")):
        assert not torch.equal(first[name], other[name]), name


def test_seeded_build_leaves_global_rng_alone(small_arch):
    torch.manual_seed(0)
    expected = torch.rand(5)
    torch.manual_seed(0)
    ps.build_model(small_arch, seed=3)
    assert torch.equal(torch.rand(5), expected)


# --- the oracle: fused == separate ----------------------------------------------------------


@pytest.fixture
def singles_and_fused(small_arch):
    """Three singles (seeds 0, 1, 2) and their fused network, all in float64.

    Merged in float32 and converted afterwards: float64 removes summation-order noise
    between grouped and plain convolutions, so the tolerances can stay tight.
    """
    singles = [ps.build_model(small_arch, seed=seed) for seed in range(ORACLE_MEMBERS)]
    fused = ps.merge_members(singles).double()
    return [single.double() for single in singles], fused


def test_fused_equals_singles_in_training(singles_and_fused):
    singles, fused = singles_and_fused
    generator = torch.Generator().manual_seed(0)
    # Each member gets its own batch, as when members see their own data order.
    x = torch.randn(ORACLE_MEMBERS, ORACLE_BATCH, *ORACLE_SHAPE, generator=generator).double()
    labels = torch.randint(0, 10, (ORACLE_MEMBERS, ORACLE_BATCH), generator=generator)

    fused_out = fused.train()(x)  # [B, k, classes]
    fused_loss = sum(F.cross_entropy(fused_out[:, i], labels[i]) for i in range(ORACLE_MEMBERS))
    fused_loss.backward()

    for i, single in enumerate(singles):
        out = single.train()(x[i])  # [B, 1, classes]
        assert_close(fused_out[:, i], out[:, 0])
        F.cross_entropy(out[:, 0], labels[i]).backward()

    # Every parameter's gradient: member i's slice of the fused gradient is single i's.
    fused_params = dict(fused.named_parameters())
    for i, single in enumerate(singles):
        for name, param in single.named_parameters():
            fused_grad = fused_params[name].grad.chunk(ORACLE_MEMBERS, dim=0)[i]
            assert_close(fused_grad, param.grad, msg=lambda m, n=name, i=i: f"{n}[{i}]: {m}")

    # Batch-norm running statistics moved the same way in both (member i's slice again;
    # the scalar batch counter is shared).
    fused_state = fused.state_dict()
    for i, single in enumerate(singles):
        for name, value in single.state_dict().items():
            fused_value = fused_state[name]
            if fused_value.dim():
                fused_value = fused_value.chunk(ORACLE_MEMBERS, dim=0)[i]
            assert_close(fused_value, value, msg=lambda m, n=name: f"{n}: {m}")


def test_fused_equals_singles_in_eval(singles_and_fused):
    singles, fused = singles_and_fused
    generator = torch.Generator().manual_seed(1)
    # One training pass first, so eval uses running statistics that are not the defaults.
    warmup = torch.randn(ORACLE_MEMBERS, ORACLE_BATCH, *ORACLE_SHAPE, generator=generator)
    with torch.no_grad():
        fused.train()(warmup.double())
        for i, single in enumerate(singles):
            single.train()(warmup[i].double())

    fused.eval()
    per_member = torch.randn(ORACLE_MEMBERS, ORACLE_BATCH, *ORACLE_SHAPE, generator=generator)
    shared = torch.randn(ORACLE_BATCH, *ORACLE_SHAPE, generator=generator)
    with torch.no_grad():
        per_member_out = fused(per_member.double())
        shared_out = fused(shared.double())
        for i, single in enumerate(singles):
            single.eval()
            assert_close(per_member_out[:, i], single(per_member[i].double())[:, 0])
            assert_close(shared_out[:, i], single(shared.double())[:, 0])


def test_split_of_merge_round_trips_exactly(small_arch):
    singles = [ps.build_model(small_arch, seed=seed) for seed in range(ORACLE_MEMBERS)]
    fused = ps.merge_members(singles)
    assert fused.num_members == ORACLE_MEMBERS
    members = ps.split_members(fused)
    assert len(members) == ORACLE_MEMBERS
    for single, member in zip(singles, members, strict=True):
        expected, actual = single.state_dict(), member.state_dict()
        assert expected.keys() == actual.keys()
        for name in expected:
            assert torch.equal(actual[name], expected[name]), name


def test_merge_keeps_training_mode(small_arch):
    singles = [ps.build_model(small_arch, seed=seed).eval() for seed in range(2)]
    fused = ps.merge_members(singles)
    assert not fused.training
    assert not any(member.training for member in ps.split_members(fused))


def test_merge_and_split_keep_dtype(small_arch):
    singles = [ps.build_model(small_arch, seed=seed).double() for seed in range(2)]
    fused = ps.merge_members(singles)
    assert {p.dtype for p in fused.parameters()} == {torch.float64}
    members = ps.split_members(fused)
    assert {p.dtype for p in members[0].parameters()} == {torch.float64}


# --- per-stage widths ---------------------------------------------------------------------


def test_every_stage_has_its_own_width(small_arch):
    # Each stage's convolutions output its width: channels for resnet, wrn and vgg, the
    # growth rate (a dense layer's 3×3 convolution) for densenet-bc.
    model = ps.build_model(small_arch, device="meta")
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    if small_arch.family == "densenet-bc":
        growths = [c.out_channels for c in convs if c.kernel_size == (3, 3)][1:]  # no stem
        assert growths == [g for g in small_arch.stage_widths for _ in range(small_arch.units)]
        assert convs[0].out_channels == 2 * small_arch.stage_widths[0]  # the stem
    else:
        produced = {c.out_channels for c in convs if c.kernel_size == (3, 3)}
        assert set(small_arch.stage_widths) <= produced
        assert model.head.fc.in_features == small_arch.stage_widths[-1]
