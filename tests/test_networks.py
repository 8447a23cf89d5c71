"""The NCSN++-style network: shapes, named features (same pass as forward), conditioning with null
tokens, memory-format invariance, rebuild from hparams, FIR resampling, and the paper-scale size."""

import json

import pytest
import torch

from latent_abstractions.data.factors import N_LEVELS
from latent_abstractions.model.layers import FIR
from latent_abstractions.model.networks import NCSNpp
from latent_abstractions.model.sde import VESDE

torch.set_num_threads(1)


def tiny_net(**kw):
    torch.manual_seed(0)
    net = NCSNpp(8, nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), **kw)
    for p in net.parameters():  # leave the zero init, so that every path (labels, attention) matters
        if p.ndim > 1:
            torch.nn.init.normal_(p, std=0.1)
    return net.eval()


def _capture(net, module):
    """A test-only forward hook that records what ``module`` returns during an ordinary forward()."""
    seen = []
    handle = module.register_forward_hook(lambda m, inp, out: seen.append(out.detach().clone()))
    return seen, handle


def test_output_shapes_and_feature_names():
    x = torch.randn(3, 3, 8, 8)
    sigma = torch.tensor([0.1, 1.0, 5.0])
    for net in (tiny_net(), tiny_net(n_levels=N_LEVELS)):
        assert net(x, sigma).shape == x.shape
        assert net(x, 0.5).shape == x.shape  # scalar sigma broadcasts
        assert net.feature_names() == ["enc_8", "enc_4", "bottleneck", "dec_4", "dec_8"]
        feats = net.forward_features(x, sigma, net.feature_names())
        shapes = {k: tuple(v.shape) for k, v in feats.items()}
        assert shapes == {
            "enc_8": (3, 8, 8, 8),
            "enc_4": (3, 16, 4, 4),
            "bottleneck": (3, 16, 4, 4),
            "dec_4": (3, 16, 4, 4),
            "dec_8": (3, 8, 8, 8),
        }
    with pytest.raises(KeyError, match="available"):
        net.forward_features(x, sigma, ["nope"])
    with pytest.raises(ValueError, match="one value per example"):
        net(x, torch.ones(2))


def test_forward_features_are_the_intermediates_of_forward_and_stop_early():
    net = tiny_net()
    x, sigma = torch.randn(2, 3, 8, 8), torch.tensor([0.3, 2.0])
    mid, h1 = _capture(net, net.mid[2])
    out_conv, h2 = _capture(net, net.norm_out)
    net(x, sigma)
    feats = net.forward_features(x, sigma, ["bottleneck"])
    assert len(mid) == 2 and len(out_conv) == 1  # forward_features stopped before the decoder
    torch.testing.assert_close(feats["bottleneck"], mid[0], rtol=0, atol=0)
    torch.testing.assert_close(feats["bottleneck"], mid[1], rtol=0, atol=0)
    last = net.forward_features(x, sigma, ["dec_8"])["dec_8"]  # the map the output head normalises
    h1.remove()
    h2.remove()
    torch.testing.assert_close(
        net.conv_out(torch.nn.functional.silu(net.norm_out(last))) / sigma[:, None, None, None],
        net(x, sigma),
        rtol=1e-6,
        atol=1e-6,
    )


def test_output_is_scaled_by_one_over_sigma():
    net = tiny_net()
    x = torch.randn(1, 3, 8, 8)
    head, h = _capture(net, net.conv_out)
    s = net(x, 4.0)
    h.remove()
    torch.testing.assert_close(s, head[0] / 4.0)


def test_sigma_division_is_in_fp32_under_bf16_autocast():
    """Under autocast the last layer's output is bf16; the score divides it by sigma in fp32. 0.3 is not a bf16 number
    (it rounds to 0.30078125), so a division by sigma in bf16 differs from the exact quotient by ~0.26%."""
    net = tiny_net()
    x = torch.randn(2, 3, 8, 8)
    head, h = _capture(net, net.conv_out)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        s = net(x, 0.3)
    h.remove()
    assert head[0].dtype == torch.bfloat16 and s.dtype == torch.float32
    assert torch.equal(s, head[0].float() / torch.tensor(0.3))


def test_conditioning_null_tokens():
    net = tiny_net(n_levels=N_LEVELS)
    x, sigma = torch.randn(3, 3, 8, 8), torch.tensor([0.1, 1.0, 5.0])
    null = torch.full((3, 6), -1)
    torch.testing.assert_close(net(x, sigma, null), net(x, sigma, None), rtol=0, atol=0)  # None == all null
    lab = torch.tensor([[1, 2, 3, 4, 1, 0]] * 3)
    assert not torch.allclose(net(x, sigma, lab), net(x, sigma, null), atol=1e-4)
    part = lab.clone()
    part[:, 3:] = -1  # only the three hues given
    out_part = net(x, sigma, part)
    assert not torch.allclose(out_part, net(x, sigma, lab), atol=1e-4)
    assert not torch.allclose(out_part, net(x, sigma, null), atol=1e-4)
    other = lab.clone()
    other[:, 5] = 14  # the last orientation level is a real level, not the null row
    assert not torch.allclose(net(x, sigma, other), net(x, sigma, null), atol=1e-4)
    with pytest.raises(ValueError, match=r"labels must be \(batch=3, 6\)"):
        net(x, sigma, lab[:, :5])
    with pytest.raises(ValueError, match="unconditional"):
        tiny_net()(x, sigma, lab)
    torch.testing.assert_close(tiny_net()(x, sigma, null), tiny_net()(x, sigma))  # all-null is allowed


def test_channels_last_gives_the_same_scores():
    net = tiny_net(n_levels=N_LEVELS)
    x, sigma = torch.randn(2, 3, 8, 8), torch.tensor([0.5, 3.0])
    lab = torch.tensor([[1, 2, 3, 4, 1, 0], [0, -1, 9, -1, 3, 14]])
    ref = net(x, sigma, lab)
    net_cl = net.to(memory_format=torch.channels_last)
    out = net_cl(x.contiguous(memory_format=torch.channels_last), sigma, lab)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_rebuild_from_json_hparams():
    net = tiny_net(n_levels=N_LEVELS)
    hp = json.loads(json.dumps(net.hparams))
    other = NCSNpp(**hp)
    other.load_state_dict(net.state_dict(), strict=True)  # same architecture, every key (incl. Fourier freqs)
    x, sigma = torch.randn(2, 3, 8, 8), torch.tensor([0.5, 3.0])
    torch.testing.assert_close(other.eval()(x, sigma), net(x, sigma), rtol=0, atol=0)


def test_fir_resampling_preserves_constants_and_rejects_odd_filters():
    fir = FIR((1, 3, 3, 1))
    x = torch.full((1, 2, 8, 8), 2.5)
    up, down = fir.up(x), fir.down(x)
    assert up.shape == (1, 2, 16, 16) and down.shape == (1, 2, 4, 4)
    torch.testing.assert_close(up[..., 1:-1, 1:-1], torch.full((1, 2, 14, 14), 2.5))
    torch.testing.assert_close(down[..., 1:-1, 1:-1], torch.full((1, 2, 2, 2), 2.5))
    assert FIR((1, 1)).up(x).shape == (1, 2, 16, 16) and FIR((1, 1)).down(x).shape == (1, 2, 4, 4)
    assert "kernel" in dict(fir.named_buffers())
    with pytest.raises(ValueError, match="even number"):
        FIR((1, 2, 1))
    with pytest.raises(ValueError, match="divisible"):
        NCSNpp(10, nf=8, ch_mult=(1, 2, 2))


def test_paper_architecture_parameter_count():
    with torch.device("meta"):  # no memory, no time
        net = NCSNpp(64, nf=128, ch_mult=(1, 2, 2, 2), num_res_blocks=4, attn_resolutions=(16,))
        cond = NCSNpp(64, nf=128, ch_mult=(1, 2, 2, 2), num_res_blocks=4, attn_resolutions=(16,), n_levels=N_LEVELS)
    n = sum(p.numel() for p in net.parameters())
    n_cond = sum(p.numel() for p in cond.parameters())
    print(f"paper NCSN++ 64x64: {n / 1e6:.2f}M parameters (conditional {n_cond / 1e6:.2f}M)")
    assert 55e6 < n < 70e6, n  # reference NCSN++ 64x64 VE: 62.7M
    assert n_cond > n  # the label embeddings (their layout is tested by test_conditioning_null_tokens' behaviour)


def test_labels_start_without_effect_and_learn_one():
    # zero-initialised label tables: a fresh conditional network gives s(y | phi) = s(y) exactly, as the exact
    # conditional score does wherever the image alone decides the labels; training then moves them apart
    torch.manual_seed(0)
    net = NCSNpp(8, nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), n_levels=N_LEVELS)
    torch.nn.init.normal_(net.conv_out.weight, std=0.1)  # a non-zero output layer, so the labels could show
    x, sigma = torch.randn(4, 3, 8, 8), torch.tensor([0.05, 0.5, 2.0, 8.0])
    lab = torch.tensor([[1, 2, 3, 4, 1, 0]] * 4)
    torch.testing.assert_close(net(x, sigma, lab), net(x, sigma, None), rtol=0, atol=0)
    from latent_abstractions.model.losses import dsm_loss

    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):  # the gradient reaches the tables once the blocks' embedding projections are non-zero
        opt.zero_grad()
        dsm_loss(net, VESDE(0.01, 10.0), torch.rand(4, 3, 8, 8, generator=gen), lab, generator=gen).backward()
        opt.step()
    assert not torch.allclose(net(x, sigma, lab), net(x, sigma, None), atol=1e-5)
