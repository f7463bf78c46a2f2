"""Shared tiny configuration and helpers: every test runs on CPU in well under a second per model call."""

import warnings

import pytest
import torch

# A 3-level Kandinsky 3.0 U-Net (2 downsamples: latent sides must be multiples of 4), ~1M parameters.
TINY = dict(model_channels=32, init_channels=16, num_channels=4, out_channels=4, time_embed_dim=64, context_dim=48,
            groups=8, head_dim=16, expansion_ratio=2, compression_ratio=2, dim_mult=(1, 2, 2), num_blocks=(2, 2, 2),
            add_cross_attention=(False, True, True), add_self_attention=(False, True, True))
CONTEXT_DIM = TINY["context_dim"]


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randomize(model: torch.nn.Module, seed: int = 0, std: float = 0.1) -> torch.nn.Module:
    """Every parameter (and float buffer) redrawn from N(0, std²): no zero-initialised shortcut stays an identity."""
    g = generator(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
        for b in model.buffers():
            if b.is_floating_point():
                b.copy_(torch.randn(b.shape, generator=g))
    return model


def randn(*shape, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=generator(seed))


def text(batch: int = 2, tokens: int = 5, seed: int = 1):
    """Context (B, L, D) and a mask with padding at the end of the second sample."""
    context = randn(batch, tokens, CONTEXT_DIM, seed=seed)
    mask = torch.ones(batch, tokens, dtype=torch.bool)
    if batch > 1:
        mask[1, tokens - 2:] = False
    return context, mask


def config_dict(model) -> dict:
    """A model's config with tuples as lists, as it reads back from config.json."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in model.config.items() if not k.startswith("_")}


@pytest.fixture(autouse=True)
def _quiet_and_seeded():
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@pytest.fixture
def t2i():
    """A tiny Kandinsky 3.0 T2I U-Net with every weight random (nothing zero-initialised left)."""
    from fusionframes.models import Kandinsky3UNet
    return randomize(Kandinsky3UNet(**TINY), seed=0).eval()


def assert_same_output(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Outputs of two models holding bit-identical weights.

    Not ``torch.equal``: ``from_pretrained`` and memory-mapped checkpoints leave tensors at addresses that are not
    64-byte aligned, and CPU kernels then take other SIMD paths (measured: ~3e-7 on outputs of size ~1). Weights
    themselves are compared bit for bit by the callers.
    """
    torch.testing.assert_close(actual, expected, atol=2e-6, rtol=1e-6)


def assert_same_weights(actual: torch.nn.Module, expected: torch.nn.Module) -> None:
    """Same state-dict keys and bit-identical tensors (parameters and buffers)."""
    a, e = actual.state_dict(), expected.state_dict()
    assert a.keys() == e.keys()
    for name, value in e.items():
        assert a[name].dtype == value.dtype and torch.equal(a[name], value), name


# The whole pipeline at toy size (real all-MiniLM-L6-v2 text encoder): 2-level U-Nets, 16² frames, a few steps.
UNET = dict(model_channels=32, init_channels=16, time_embed_dim=64, context_dim=64, groups=8, head_dim=16,
            expansion_ratio=2, dim_mult=(1, 2), num_blocks=(1, 1), add_cross_attention=(False, True),
            add_self_attention=(False, True))
MOVQ = dict(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,), resolution=16, norm_groups=8,
            video_decoder="conv3x1x1")
SETTINGS = dict(num_keyframes=3, height=16, width=16, num_inference_steps=3, interpolation_steps=2,
                max_text_tokens=16, decode_chunk_size=8, decode_chunk_overlap=2)


@pytest.fixture(scope="module")
def text_encoder():
    from fusionframes.pipeline import PACKAGED_TEXT_ENCODER, load_text_encoder

    return load_text_encoder(PACKAGED_TEXT_ENCODER)


@pytest.fixture
def pipe(text_encoder):
    from fusionframes.models import InterpolationUNet, Kandinsky3UNet, KeyframeUNet
    from fusionframes.models.movq import MoVQ
    from fusionframes.models.text import TextProjection
    from fusionframes.pipeline import FusionFramesPipeline

    torch.manual_seed(0)
    encoder, tokenizer = text_encoder
    t2i = randomize(Kandinsky3UNet(**UNET), seed=1)
    keyframes = randomize(KeyframeUNet.from_t2i(t2i), seed=2)
    interpolation = randomize(InterpolationUNet.from_t2i(t2i), seed=3)
    movq = randomize(MoVQ(**MOVQ), seed=4, std=0.05)
    pipe = FusionFramesPipeline(encoder, tokenizer, TextProjection(384, 64), torch.randn(64), keyframes,
                                interpolation, movq, **SETTINGS)
    pipe.progress = False
    return pipe


@pytest.fixture
def perceptual_files(tmp_path):
    """Random weights in the two published layouts (torchvision VGG16, LPIPS v0.1 linear heads)."""
    from fusionframes.training.perceptual import PerceptualLoss

    torch.manual_seed(0)
    model = PerceptualLoss()
    vgg = {f"features.{k}": torch.randn_like(v) * 0.05 for k, v in model.features.state_dict().items()}
    vgg["classifier.0.weight"] = torch.zeros(2, 2)  # the rest of a torchvision VGG16 checkpoint is ignored
    lin = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate((64, 128, 256, 512, 512))}
    torch.save(vgg, tmp_path / "vgg16.pth")
    torch.save(lin, tmp_path / "lpips_vgg.pth")
    return {"vgg16": str(tmp_path / "vgg16.pth"), "lpips": str(tmp_path / "lpips_vgg.pth")}
