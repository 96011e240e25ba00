import pytest
import torch

from speechllm.config import AdapterConfig
from speechllm.model.adapter import BaselineProjector, StackingAdapter, build_adapter


def test_stacking_shapes_and_lengths():
    a = StackingAdapter(16, 24, AdapterConfig(stack=4, hidden=32, depth=2))
    x = torch.randn(3, 10, 16)
    y, n = a(x, torch.tensor([10, 7, 1]))
    assert y.shape == (3, 3, 24)  # ceil(10 / 4)
    assert n.tolist() == [3, 2, 1]


def test_stacking_groups_consecutive_frames():
    a = StackingAdapter(2, 4, AdapterConfig(stack=2, hidden=8, depth=1, input_norm=False))
    x = torch.arange(12, dtype=torch.float).reshape(1, 6, 2)
    assert a.group(x)[0, 1].tolist() == [4.0, 5.0, 6.0, 7.0]


def test_baseline_keeps_frame_rate_and_is_wider():
    cfg = AdapterConfig(stack=4, hidden=32, depth=2)
    base = BaselineProjector(16, 24, cfg)
    prop = StackingAdapter(16, 24, cfg)
    y, n = base(torch.randn(2, 9, 16), torch.tensor([9, 5]))
    assert y.shape == (2, 9, 24) and n.tolist() == [9, 5]
    assert sum(p.numel() for p in base.parameters()) > sum(p.numel() for p in prop.parameters())


def test_embedding_scale_matches_target_rms():
    a = StackingAdapter(8, 64, AdapterConfig(stack=1, hidden=16), target_rms=0.05)
    y, _ = a(torch.randn(2, 5, 8) * 100, torch.tensor([5, 5]))
    rms = y.pow(2).mean(-1).sqrt()
    assert torch.allclose(rms, torch.full_like(rms, 0.05), rtol=1e-3)


@pytest.mark.parametrize(
    "bad", [{"depth": 0}, {"activation": "tanh"}, {"kind": "conv"}, {"stack": 0}]
)
def test_bad_adapter_config_is_a_clear_error(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        build_adapter(8, 8, AdapterConfig(**bad))
