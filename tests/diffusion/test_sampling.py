import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from fusionframes import FusionFramesError
from fusionframes.diffusion import (Schedule, cosine_betas, diffusion_loss, dynamic_threshold, guide, guided,
                                    predicted_x0, sample_ancestral, sample_with_scheduler, training_target)


def network(x, t):
    return torch.tanh(0.7 * x + t.view(-1, *(1,) * (x.ndim - 1)).float() / 700.0) * 1.3


def test_cosine_betas_equal_diffusers_squaredcos_cap_v2():
    for steps in (50, 17, 1000):
        expected = DDPMScheduler(num_train_timesteps=steps, beta_schedule="squaredcos_cap_v2").betas
        torch.testing.assert_close(cosine_betas(steps), expected, rtol=1e-6, atol=1e-7)
    assert Schedule.cosine(50).timestep_scale == 20 and Schedule.cosine(7).timestep_scale == 142


def reference_sampler(noise, steps, prediction_type, percentile, noises):
    """DDPM posterior sampling written independently, in float64 numpy, one image at a time."""
    s = 0.008
    f = lambda t: np.cos((t + s) / (1 + s) * np.pi / 2) ** 2  # noqa: E731
    betas = np.array([min(1 - f((i + 1) / steps) / f(i / steps), 0.999) for i in range(steps)])
    abar = np.cumprod(1 - betas)
    x = noise.double().numpy()
    for k, i in enumerate(range(steps - 1, -1, -1)):
        pred = network(torch.from_numpy(x).float(), torch.full((x.shape[0],), i * (1000 // steps))).double().numpy()
        if prediction_type == "epsilon":
            x0 = (x - np.sqrt(1 - abar[i]) * pred) / np.sqrt(abar[i])
        elif prediction_type == "v_prediction":
            x0 = np.sqrt(abar[i]) * x - np.sqrt(1 - abar[i]) * pred
        else:
            x0 = pred.copy()
        for b in range(x.shape[0]):
            q = max(np.quantile(np.abs(x0[b]), percentile), 1.0)
            x0[b] = np.clip(x0[b], -q, q) / q
        prev = abar[i - 1] if i > 0 else 1.0
        mean = (np.sqrt(prev) * betas[i] / (1 - abar[i])) * x0 \
            + (np.sqrt(1 - betas[i]) * (1 - prev) / (1 - abar[i])) * x
        var = betas[i] * (1 - prev) / (1 - abar[i]) if i > 0 else 0.0
        x = mean + np.sqrt(var) * noises[k].double().numpy() if i > 0 else mean
    return torch.from_numpy(x).float()


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_ancestral_sampler_matches_an_independent_computation(prediction_type):
    steps, shape = 12, (2, 4, 6, 6)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(1)
    noises = [torch.randn(shape, generator=generator) for _ in range(steps)]
    ours = sample_ancestral(network, noise, Schedule.cosine(steps), prediction_type,
                            generator=torch.Generator().manual_seed(1), progress=False)
    expected = reference_sampler(noise, steps, prediction_type, 0.98, noises)
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-4)


def test_dynamic_threshold_per_unit():
    x = torch.zeros(1, 1, 6, 2, 2)
    x[:, :, :3] = 4.0  # the first group of 3 frames is far out of range, the second is not
    out = dynamic_threshold(x, 0.98, frames_per_unit=3)
    assert torch.equal(out[:, :, :3], torch.ones(1, 1, 3, 2, 2)) and torch.equal(out[:, :, 3:], x[:, :, 3:])
    per_frame = dynamic_threshold(x, 0.98, frames_per_unit=1)
    assert torch.equal(per_frame, out)
    mixed = torch.tensor([[0.5, 3.0]]).view(1, 1, 2, 1, 1)  # a unit of two frames: q = quantile(0.5, 3) ≈ 2.95
    q = torch.quantile(torch.tensor([0.5, 3.0]), 0.98)
    torch.testing.assert_close(dynamic_threshold(mixed, 0.98, 2).flatten(), torch.tensor([0.5 / q, 1.0]))
    assert torch.equal(dynamic_threshold(torch.full((1, 3), 5.0), None), torch.ones(1, 3))


def test_dynamic_threshold_leaves_a_wider_latent_range_alone():
    inside = torch.tensor([[1.5, -2.0, 0.3]])  # within r = 2: unchanged (with r = 1 it would shrink by 2)
    assert torch.equal(dynamic_threshold(inside, 0.98, data_range=2.0), inside)
    assert not torch.allclose(dynamic_threshold(inside, 0.98), inside)
    outside = torch.tensor([[0.5, 8.0]])
    q = torch.quantile(outside.abs(), 0.98)
    torch.testing.assert_close(dynamic_threshold(outside, 0.98, data_range=2.0),
                               torch.tensor([[0.5 * 2 / q, 2.0]]))
    assert torch.equal(dynamic_threshold(outside, None, data_range=2.0), torch.tensor([[0.5, 2.0]]))


def test_parameterisations_are_consistent():
    x0, noise = torch.randn(3, 4), torch.randn(3, 4)
    schedule = Schedule.cosine(20)
    t = torch.tensor([0, 7, 19])
    sqrt_a, sqrt_1ma = schedule.coefficients(t, x0)
    x_t = schedule.add_noise(x0, noise, t)
    for kind in ("epsilon", "v_prediction", "sample"):
        target = training_target(x0, noise, sqrt_a, sqrt_1ma, kind)
        torch.testing.assert_close(predicted_x0(target, x_t, sqrt_a, sqrt_1ma, kind), x0, atol=2e-4, rtol=1e-4)
        assert diffusion_loss(target, x0, noise, t, schedule, kind).item() < 1e-12
        assert diffusion_loss(target + 1, x0, noise, t, schedule, kind).item() == pytest.approx(1.0)


def test_min_snr_weighting_is_min_snr_gamma_times_the_x0_error():
    schedule = Schedule.cosine(1000)
    t = torch.tensor([20, 300, 600, 999])
    x0, noise = torch.randn(4, 4, 2, 3, 3), torch.randn(4, 4, 2, 3, 3)
    x0_hat = x0 + 0.1 * torch.randn_like(x0)
    sqrt_a, sqrt_1ma = schedule.coefficients(t, x0)
    x_t = sqrt_a * x0 + sqrt_1ma * noise
    snr = schedule.alphas_cumprod[t] / (1 - schedule.alphas_cumprod[t])
    assert snr[0] > 5 > snr[1] > 1 > snr[2]  # both sides of the clamp, for every γ below
    eps_hat = (x_t - sqrt_a * x0_hat) / sqrt_1ma  # the prediction whose x̂₀ is x0_hat
    for gamma in (5.0, 1.0):
        expected = (snr.clamp(max=gamma).view(-1, 1, 1, 1, 1) * (x0 - x0_hat) ** 2).mean()
        for kind in ("epsilon", "v_prediction", "sample"):
            output = training_target(x0_hat, eps_hat, sqrt_a, sqrt_1ma, kind)
            loss = diffusion_loss(output, x0, noise, t, schedule, kind, snr_gamma=gamma)
            torch.testing.assert_close(loss, expected, rtol=2e-4, atol=0)
    # γ above every SNR leaves the ε-loss as it was; the weights never exceed 1 for ε (even at t = 999).
    plain = diffusion_loss(noise + 0.3, x0, noise, t, schedule, "epsilon")
    torch.testing.assert_close(diffusion_loss(noise + 0.3, x0, noise, t, schedule, "epsilon", snr_gamma=1e9), plain)
    assert diffusion_loss(noise + 0.3, x0, noise, t, schedule, "epsilon", snr_gamma=1.0) <= plain


def test_guidance_arithmetic():
    cond, uncond = torch.tensor([2.0]), torch.tensor([0.5])
    assert guide(cond, uncond, 5.0).item() == 6 * 2.0 - 5 * 0.5  # KV 1.0: (w+1)·cond − w·uncond
    assert guide(cond, uncond, 0.0).item() == 2.0
    calls = []

    def predict(x, t, context):
        calls.append(x.shape[0])
        return x * context

    x, t = torch.ones(2, 3), torch.zeros(2)
    out = guided(predict, 0.25, {"context": torch.full((2, 1), 3.0)}, {"context": torch.full((2, 1), 1.0)})(x, t)
    assert calls == [4]  # cond and uncond in one batch
    torch.testing.assert_close(out, torch.full((2, 3), 1.25 * 3 - 0.25 * 1))
    guided(predict, 0.0, {"context": torch.ones(2, 1)}, {"context": torch.zeros(2, 1)})(x, t)
    assert calls == [4, 2]  # no guidance: the conditional half only


def test_diffusers_scheduler_sampling_and_non_finite_stop():
    noise = torch.randn(2, 4, 6, 6)
    scheduler = DDIMScheduler(beta_schedule="squaredcos_cap_v2", clip_sample=False)
    out = sample_with_scheduler(network, noise, scheduler, 5, progress=False)
    assert out.shape == noise.shape and torch.isfinite(out).all()
    with pytest.raises(FusionFramesError, match="keyframes: latents became non-finite at sampling step 0"):
        sample_ancestral(lambda x, t: x * float("nan"), noise, Schedule.cosine(4), "epsilon", stage="keyframes",
                         progress=False)
