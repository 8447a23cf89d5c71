"""The training step's GPU-only settings, run on the CPU: ``torch.compile`` (inductor) and bf16 autocast.

The trainer switches both on only on CUDA (``training.compile``, ``training.bf16``); here the same model and loss
path it compiles and autocasts (the score network wrapper inside ``losses.dsm_loss``) runs on the CPU backends, so a
break in either shows up without a GPU.
"""

import pytest
import torch
from conftest import ROOT

from latent_abstractions.config import load_config
from latent_abstractions.data.factors import N_LEVELS
from latent_abstractions.model.losses import LogUniformSigma, draw_noise, drop_labels, dsm_loss
from latent_abstractions.model.precond import build_score_network
from latent_abstractions.model.sde import VESDE

SDE = VESDE(0.01, 20.0)


def tiny_network(seed=0):
    """The tiny config's conditional network (dropout 0: dropout masks differ between eager and compiled code),
    with its zero-initialised output layers perturbed so that every layer matters to the loss."""
    cfg = load_config([ROOT / "config" / "tiny.yaml"])
    m = cfg["score_model"]
    kw = dict(
        img_resolution=cfg["dataset"]["synthetic"]["resolution"],
        nf=m["nf"],
        ch_mult=list(m["ch_mult"]),
        num_res_blocks=m["num_res_blocks"],
        attn_resolutions=list(m["attn_resolutions"]),
        dropout=0.0,
        fourier_scale=m["fourier_scale"],
        n_levels=list(N_LEVELS),
    )
    torch.manual_seed(seed)
    net = build_score_network(kw, {"name": m["precond"]})
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return net.train(), kw["img_resolution"]


def batch(res, n=6, seed=1):
    """Images in [0, 1], labels with some factors dropped, and the batch's noise (sigma over the whole range)."""
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.rand(n, 3, res, res, generator=gen)
    labels = drop_labels(torch.stack([torch.randint(k, (n,), generator=gen) for k in N_LEVELS], 1), 0.5, gen)
    return x0, labels, draw_noise(LogUniformSigma(SDE), (n, 3, res, res), "cpu", gen)


def loss_and_grads(model, params, x0, labels, noise):
    loss = dsm_loss(model, x0, labels, sampler=LogUniformSigma(SDE), noise=noise)
    grads = torch.autograd.grad(loss, params)
    return loss.detach(), grads


def test_compiled_training_step_equals_the_eager_one_and_compiles_once():
    """torch.compile (inductor, CPU) of the wrapper: the loss and every gradient as in eager mode up to float32
    rounding, over three batches with one compilation (the wrapper's Python evaluation counter is no guard), and
    the compiled calls leave that counter alone (the trainer counts its rows itself)."""
    torch._dynamo.reset()
    net, res = tiny_network()
    params = list(net.parameters())
    compiled = torch.compile(net, backend="inductor")
    with torch._dynamo.config.patch(error_on_recompile=True):
        for seed in (1, 2, 3):
            x0, labels, noise = batch(res, seed=seed)
            before = net.evaluations
            loss_c, grads_c = loss_and_grads(compiled, params, x0, labels, noise)
            assert net.evaluations == before
            loss_e, grads_e = loss_and_grads(net, params, x0, labels, noise)
            assert net.evaluations == before + len(x0)
            torch.testing.assert_close(loss_c, loss_e, rtol=1e-5, atol=0)
            scale = max(g.abs().max() for g in grads_e)
            for gc, ge in zip(grads_c, grads_e):
                torch.testing.assert_close(gc, ge, rtol=1e-4, atol=1e-5 * scale)
    assert all(g.abs().max() > 0 for g in grads_e[-4:])  # the last layers' gradients are not trivially zero
    torch._dynamo.reset()


def test_bf16_autocast_training_step_is_finite_and_close_to_float32():
    """bf16 autocast (on the CPU backend) over the same step: the score comes back in float32 (the division by
    sigma after the cast), the loss is within bf16 rounding of float32's and every gradient is finite and points
    the same way."""
    net, res = tiny_network()
    params = list(net.parameters())
    x0, labels, noise = batch(res)
    loss32, grads32 = loss_and_grads(net, params, x0, labels, noise)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = x0 + noise[0][:, None, None, None] * noise[1]
        assert net(y, noise[0], labels).dtype == torch.float32
        loss16, grads16 = loss_and_grads(net, params, x0, labels, noise)
    assert loss16.dtype == torch.float32 and torch.isfinite(loss16)
    assert loss16.item() == pytest.approx(loss32.item(), rel=2e-2)
    flat32 = torch.cat([g.flatten() for g in grads32])
    flat16 = torch.cat([g.float().flatten() for g in grads16])
    assert torch.isfinite(flat16).all()
    assert torch.nn.functional.cosine_similarity(flat16, flat32, dim=0) > 0.99
