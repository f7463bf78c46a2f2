"""MoVQ: shapes and errors, every video decoder starting as the image decoder, the KV 1.1 "first-frame" attention
norm, chunked decoding, trainable parts, the training codebook and save/load. Tiny config: 16×16 images ↔ 8×8
latents (one downsample), attention at the lowest level, norm groups of 8."""

import pytest
import torch
from einops import rearrange

from fusionframes import FusionFramesError
from fusionframes.models.movq import VIDEO_DECODERS, MoVQ, VectorQuantizer, chunk_windows
from tests.conftest import assert_same_output, assert_same_weights, config_dict, randn, randomize

MOVQ_TINY = dict(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,), resolution=16, z_channels=4,
                 norm_groups=8)
VARIANTS = list(VIDEO_DECODERS)
CONV_VARIANTS = ["conv3x1x1", "conv3x3x3", "conv3x1x1-attn", "conv3x3x3-attn"]


def tiny(video_decoder=None, seed=None, **kwargs) -> MoVQ:
    model = MoVQ(**MOVQ_TINY, video_decoder=video_decoder, **kwargs)
    return (model if seed is None else randomize(model, seed=seed)).eval()


def latents(frames=5, batch=1, seed=1):
    return randn(batch, 4, frames, 8, 8, seed=seed)


def per_frame(model, z):
    """``model`` decoding each frame of the (B, 4, F, h, w) latents as an independent image."""
    frames = model.decode(rearrange(z, "b c f h w -> (b f) c h w"))
    return rearrange(frames, "(b f) c h w -> b c f h w", b=z.shape[0])


def frame_change(model, z, changed_frame=0, seed=9):
    """Max |Δ output| per output frame when latent frame ``changed_frame`` alone is redrawn."""
    other = z.clone()
    other[:, :, changed_frame] = randn(*z[:, :, changed_frame].shape, seed=seed)
    return (model.decode(other) - model.decode(z)).abs().amax(dim=(0, 1, 3, 4))


def _error(func, *args, **kwargs) -> str:
    with pytest.raises(FusionFramesError) as info:
        func(*args, **kwargs)
    return str(info.value)


# ---------------------------------------------------------------- shapes


@torch.no_grad()
def test_image_shapes_and_downsample_factor():
    model = tiny(seed=0)
    assert model.downsample_factor == 2
    z = model.encode(randn(2, 3, 16, 24, seed=1))
    assert z.shape == (2, 4, 8, 12)
    assert model.decode(z).shape == (2, 3, 16, 24)
    assert MoVQ(**{**MOVQ_TINY, "ch_mult": (1, 1, 2)}).downsample_factor == 4
    with torch.device("meta"):
        assert MoVQ(ch=32, ch_mult=(1, 2, 2, 4), norm_groups=8).downsample_factor == 8


@pytest.mark.parametrize("video_decoder", [None, *VARIANTS])
@torch.no_grad()
def test_video_shapes(video_decoder):
    model = tiny(video_decoder, seed=0)
    z = model.encode(randn(2, 3, 3, 16, 16, seed=1))
    assert z.shape == (2, 4, 3, 8, 8)
    video = model.decode(z)
    assert video.shape == (2, 3, 3, 16, 16)
    assert torch.isfinite(video).all()
    assert model.decode(z[:, :, 0]).shape == (2, 3, 16, 16)  # an image decodes as a 1-frame video


@torch.no_grad()
def test_video_encoder_is_per_frame():
    model = tiny("conv3x3x3-attn", seed=0)
    video = randn(2, 3, 3, 16, 16, seed=1)
    expected = torch.stack([model.encode(video[:, :, i]) for i in range(3)], dim=2)
    torch.testing.assert_close(model.encode(video), expected, atol=1e-5, rtol=0)


# ---------------------------------------------------------------- errors


def test_input_rank_and_channel_errors():
    model = tiny()
    for bad in (randn(3, 16, 16), randn(1, 3, 2, 1, 16, 16)):
        message = _error(model.encode, bad)
        assert "encode input must be (batch, 3, height, width) or (batch, 3, frames, height, width)" in message
        assert str(tuple(bad.shape)) in message
    assert "(1, 4, 16, 16)" in _error(model.encode, randn(1, 4, 16, 16))
    for bad in (randn(4, 8, 8), randn(1, 4, 2, 1, 8, 8), randn(1, 3, 8, 8), randn(1, 8, 2, 8, 8)):
        message = _error(model.decode, bad)
        assert "decode input must be (batch, 4, height, width)" in message and str(tuple(bad.shape)) in message


def test_indivisible_image_size():
    model = tiny()
    assert "image size (15, 16) must be a multiple of 2" in _error(model.encode, randn(1, 3, 15, 16))
    assert "image size (16, 9) must be a multiple of 2" in _error(model.encode, randn(1, 3, 2, 16, 9))


def test_constructor_errors():
    message = _error(MoVQ, **MOVQ_TINY, video_decoder="conv2x2x2")
    assert "unknown video_decoder 'conv2x2x2'" in message and "conv3x3x3-attn" in message and "3d-conv" in message
    message = _error(MoVQ, **MOVQ_TINY, spatial_attention_zq="last-frame")
    assert "spatial_attention_zq must be 'per-frame' or 'first-frame'" in message and "'last-frame'" in message


@pytest.mark.parametrize("size, overlap", [(0, 0), (-1, 0), (4, 4), (4, 5), (4, -1)])
def test_chunk_argument_errors(size, overlap):
    message = _error(tiny().decode, latents(6), chunk_size=size, chunk_overlap=overlap)
    assert "need chunk_size ≥ 1 and 0 ≤ chunk_overlap < chunk_size" in message
    assert f"got {size} and {overlap}" in message


def test_set_trainable_unknown_part():
    model = tiny("conv3x1x1")
    message = _error(model.set_trainable, "encoder")
    assert "trainable part must be 'temporal' or 'decoder', got 'encoder'" in message
    assert all(p.requires_grad for p in model.parameters())  # nothing changed


# ---------------------------------------------------------------- video decoders start as the image decoder


def _new_parameters(variant):
    image, video = tiny().state_dict(), tiny(variant).state_dict()
    assert set(image) <= set(video)  # a video decoder only adds to (or reshapes) the image MoVQ
    added = {k for k in video if k not in image}
    reshaped = {k for k in image if video[k].shape != image[k].shape}
    return added, reshaped


@pytest.mark.parametrize("variant", VARIANTS)
def test_temporal_parameter_names_are_the_new_parameters(variant):
    model = tiny(variant)
    names = model.temporal_parameter_names()
    assert names == sorted(names) and len(set(names)) == len(names)
    assert set(names) <= {n for n, _ in model.named_parameters()}
    added, reshaped = _new_parameters(variant)
    if variant == "3d-conv":
        assert not added
        assert reshaped and all(k.endswith((".conv1.weight", ".conv2.weight")) for k in reshaped)
        assert len(reshaped) == 2 * (2 + 2 * (MOVQ_TINY["num_res_blocks"] + 1))  # every decoder ResnetBlock
        assert set(names) == reshaped | {k.replace(".weight", ".bias") for k in reshaped}
    else:
        assert not reshaped
        assert set(names) == added


@pytest.mark.parametrize("variant", VARIANTS)
def test_new_modules_start_at_zero_effect(variant):
    """Independent of from_image_movq: image weights loaded into a video decoder whose new parts keep their init
    (3-D convs given the 2-D kernel on the centre tap) decode every frame as the image decoder."""
    image = tiny(seed=3)
    video = tiny(variant)
    state, target = image.state_dict(), video.state_dict()
    for key, value in state.items():
        if target[key].ndim == 5 and value.ndim == 4:
            state[key] = torch.zeros_like(target[key])
            state[key][:, :, 1] = value
    missing, unexpected = video.load_state_dict(state, strict=False)
    assert not unexpected and len(missing) > 0 or variant == "3d-conv"
    z = latents(5)
    with torch.no_grad():
        torch.testing.assert_close(video.decode(z), per_frame(image, z), atol=1e-5, rtol=0)


@pytest.mark.parametrize("variant", VARIANTS)
@torch.no_grad()
def test_from_image_movq_decodes_like_the_image_decoder(variant):
    image = tiny(seed=3)
    video = MoVQ.from_image_movq(image, variant).eval()
    assert video.config.video_decoder == variant
    assert {k: v for k, v in config_dict(video).items() if k != "video_decoder"} == \
        {k: v for k, v in config_dict(image).items() if k != "video_decoder"}
    z = latents(5, batch=2)
    expected = per_frame(image, z)
    assert expected.abs().max() > 0.1  # a random image decoder, not a trivial output
    torch.testing.assert_close(video.decode(z), expected, atol=1e-5, rtol=0)
    frames = randn(2, 3, 2, 16, 16, seed=4)
    torch.testing.assert_close(video.encode(frames), image.encode(frames), atol=1e-6, rtol=0)
    # the image weights were copied, not shared, and the image MoVQ was left as it was
    state = video.state_dict()
    for key, value in image.state_dict().items():
        if state[key].shape == value.shape:
            assert torch.equal(state[key], value), key
            assert state[key].data_ptr() != value.data_ptr()
        else:
            assert torch.equal(state[key][:, :, 1], value) and not state[key][:, :, [0, 2]].any()


@pytest.mark.parametrize("variant", [None, *VARIANTS])
@torch.no_grad()
def test_frames_interact_only_in_video_decoders(variant):
    model = tiny(variant, seed=5)
    change = frame_change(model, latents(5), changed_frame=0)
    assert change[0] > 1e-2
    if variant is None:
        assert change[1:].max() <= 1e-6
    else:
        assert change[2] > 1e-5, change  # two frames away: through at least two temporal layers


# ---------------------------------------------------------------- KV 1.1 "first-frame" spatial attention norm


@pytest.mark.parametrize("variant", [None, "conv3x3x3-attn"])
@torch.no_grad()
def test_first_frame_mode(variant):
    per = tiny(variant, seed=6)
    first = tiny(variant, spatial_attention_zq="first-frame")
    first.load_state_dict(per.state_dict())
    z = latents(4, batch=2)
    difference = (first.decode(z) - per.decode(z)).abs().amax(dim=(0, 1, 3, 4))
    if variant is None:  # frame 0 conditions on itself either way (a video decoder mixes in the other frames)
        assert difference[0] <= 1e-6
    assert (difference[1:] > 1e-3).all()
    torch.testing.assert_close(first.decode(z[:, :, :1]), per.decode(z[:, :, :1]), atol=1e-6, rtol=0)
    # a batch of images is a batch of 1-frame videos
    torch.testing.assert_close(first.decode(z[:, :, 2]), per.decode(z[:, :, 2]), atol=1e-6, rtol=0)
    # every frame now depends on latent frame 0, even with the image decoder
    assert (frame_change(first, z, changed_frame=0)[1:] > 1e-3).all()


@torch.no_grad()
def test_first_frame_mode_equals_decoding_with_frame_zero_in_spatial_attention_norms():
    """The definition, spelled out: the spatial attention norms of frame k of a video read that video's latent
    frame 0; every other norm reads frame k."""
    model = tiny(spatial_attention_zq="first-frame", seed=7)
    z = latents(3, batch=2)
    frames = rearrange(z, "b c f h w -> (b f) c h w")
    zq0 = rearrange(z[:, :, :1].expand_as(z), "b c f h w -> (b f) c h w")
    reference = tiny(seed=7)
    attention_norms = [reference.decoder.mid.attn_1.norm, *[a.norm for a in reference.decoder.up[-1].attn]]
    assert len(attention_norms) == 1 + MOVQ_TINY["num_res_blocks"] + 1

    def use_frame_zero(module, args):
        x, _ = args
        return x, zq0

    handles = [norm.register_forward_pre_hook(use_frame_zero) for norm in attention_norms]
    try:
        expected = rearrange(reference.decoder(reference.post_quant_conv(frames), frames, 3),
                             "(b f) c h w -> b c f h w", f=3)
    finally:
        for handle in handles:
            handle.remove()
    torch.testing.assert_close(model.decode(z), expected, atol=1e-6, rtol=0)
    assert (model.decode(z) - reference.decode(z)).abs().max() > 1e-3


# ---------------------------------------------------------------- chunked decoding


@pytest.mark.parametrize("num_frames", [1, 2, 5, 7, 10, 16, 23])
@pytest.mark.parametrize("chunk_size, overlap", [(1, 0), (2, 1), (3, 0), (4, 2), (5, 1), (6, 4), (8, 3), (30, 10)])
def test_chunk_windows_cover_every_frame_once(num_frames, chunk_size, overlap):
    windows = chunk_windows(num_frames, chunk_size, overlap)
    kept = []
    for start, stop, keep_from, keep_to in windows:
        assert 0 <= start <= keep_from < keep_to <= stop <= num_frames
        assert stop - start == min(chunk_size, num_frames)
        kept += range(keep_from, keep_to)
    assert kept == list(range(num_frames))
    for (start, stop, keep_from, keep_to), (next_start, *_rest) in zip(windows, windows[1:]):
        assert stop - next_start >= overlap  # consecutive windows overlap by at least the request
        assert next_start > start
    for start, stop, keep_from, keep_to in windows:  # every kept frame has half the overlap as context inside
        assert start == 0 or keep_from - start >= overlap // 2
        assert stop == num_frames or stop - keep_to >= overlap // 2


def test_chunk_windows_examples():
    assert chunk_windows(10, 4, 0) == [(0, 4, 0, 4), (4, 8, 4, 7), (6, 10, 7, 10)]  # last moved back
    assert chunk_windows(10, 4, 2) == [(0, 4, 0, 3), (2, 6, 3, 5), (4, 8, 5, 7), (6, 10, 7, 10)]
    assert chunk_windows(3, 8, 2) == [(0, 3, 0, 3)]


@torch.no_grad()
def test_chunked_image_decoder_equals_whole_decode():
    # (per-frame norms; in "first-frame" mode each window conditions on its own first frame, as KV 1.1's chunks do)
    model = tiny(seed=8)
    z = latents(10)
    whole = model.decode(z)
    for size, overlap in [(3, 0), (3, 1), (4, 2), (10, 0), (20, 5)]:
        torch.testing.assert_close(model.decode(z, chunk_size=size, chunk_overlap=overlap), whole, atol=1e-6,
                                   rtol=0)


@torch.no_grad()
def test_chunked_temporal_conv_decoder_is_exact_beyond_the_receptive_field():
    model = tiny("conv3x1x1", seed=9)
    # every decoder ResnetBlock (2 in the middle, num_res_blocks + 1 per level) has two 3-tap temporal convs
    radius = 2 * (2 + len(MOVQ_TINY["ch_mult"]) * (MOVQ_TINY["num_res_blocks"] + 1))
    assert radius == 12
    z = latents(40)
    whole = model.decode(z)
    chunked = model.decode(z, chunk_size=2 * radius + 4, chunk_overlap=2 * radius)
    assert len(chunk_windows(40, 2 * radius + 4, 2 * radius)) > 2
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=0)
    seams = (model.decode(z, chunk_size=6, chunk_overlap=0) - whole).abs().amax(dim=(0, 1, 3, 4))
    assert seams.max() > 1e-3
    assert seams[:3].max() <= 1e-6  # away from its right edge, the first window has the whole clip's context


@torch.no_grad()
def test_chunked_temporal_attention_decoder_error_shrinks_with_overlap():
    model = tiny("conv3x1x1-attn", seed=0)
    z = latents(12, seed=3)
    whole = model.decode(z)
    error = {o: (model.decode(z, chunk_size=6, chunk_overlap=o) - whole).abs().max().item() for o in (0, 2, 4)}
    assert error[0] > 1e-3
    assert error[2] < error[0] and error[4] < error[0]


# ---------------------------------------------------------------- trainable parts


@pytest.mark.parametrize("variant", VARIANTS)
def test_set_trainable_temporal(variant):
    model = tiny(variant)
    # trained: the new parameters but those no forward pass reads (temporal attention's latent convs)
    names = set(model.temporal_parameter_names()) - model.unused_parameter_names()
    assert model.unused_parameter_names() <= set(model.temporal_parameter_names())
    assert bool(model.unused_parameter_names()) == variant.endswith("attn")
    count = model.set_trainable("temporal")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == names
    assert count == sum(p.numel() for n, p in model.named_parameters() if n in names) > 0
    assert not any(n.startswith(("encoder.", "quant_conv.", "post_quant_conv.")) for n in trainable)
    if variant in CONV_VARIANTS:
        assert any(".temporal_projection1.weight" in n for n in trainable)
        assert any(n.endswith(".temporal_merge2") for n in trainable)
    if variant == "3d-conv":
        assert "decoder.mid.block_1.conv1.weight" in trainable and "decoder.up.0.block.1.conv2.weight" in trainable
        assert model.get_parameter("decoder.mid.block_1.conv1.weight").ndim == 5
        assert "decoder.up.1.block.0.nin_shortcut.weight" not in trainable
        assert "decoder.mid.attn_1.q.weight" not in trainable
    # training then only moves temporal parameters
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    video, _ = model(randn(1, 3, 3, 16, 16, seed=1))
    video.square().mean().backward()
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0).step()
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert moved and moved <= names


def test_set_trainable_temporal_3d_conv_names():
    """Kept apart from the skipped conv… cases: the 3-D conv variant's names include conv1/conv2 of ResnetBlocks."""
    model = tiny("3d-conv")
    names = model.temporal_parameter_names()
    assert "decoder.mid.block_2.conv2.weight" in names and "decoder.up.1.block.1.conv1.bias" in names
    assert model.set_trainable("temporal") == sum(model.get_parameter(n).numel() for n in names)


@pytest.mark.parametrize("variant", [None, "resblock-attn", "3d-conv"])
def test_set_trainable_decoder(variant):
    model = tiny(variant, codebook_size=16)
    count = model.set_trainable("decoder")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    unused = model.unused_parameter_names()
    expected = {n for n, _ in model.named_parameters() if n.startswith(("decoder.", "post_quant_conv."))} - unused
    assert trainable == expected
    assert "post_quant_conv.weight" in trainable and "quant_conv.weight" not in trainable
    assert count == sum(p.numel() for n, p in model.named_parameters() if n in expected)
    model.set_trainable("temporal")  # switching back and forth leaves no stale flags
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trained == set(model.temporal_parameter_names()) - unused


# ---------------------------------------------------------------- training forward and codebook


@pytest.mark.parametrize("shape", [(2, 3, 16, 16), (1, 3, 3, 16, 16)])
def test_training_forward_with_codebook(shape):
    model = tiny(None if len(shape) == 4 else "resblock-attn", codebook_size=64).train()
    randomize(model.encoder, seed=1)
    x = randn(*shape, seed=2)
    reconstruction, loss = model(x)
    assert reconstruction.shape == x.shape
    assert loss.ndim == 0 and loss > 0
    (reconstruction.square().mean() + loss).backward()
    codebook_grad = model.quantize.embedding.weight.grad
    assert codebook_grad is not None and codebook_grad.abs().sum() > 0
    assert model.encoder.conv_in.weight.grad.abs().sum() > 0
    assert model.quant_conv.weight.grad.abs().sum() > 0
    assert model.decoder.conv_out.weight.grad.abs().sum() > 0
    # the decoder saw the quantised latents: codebook rows only
    with torch.no_grad():
        z = model.encode(x)
        frames = z if z.ndim == 4 else rearrange(z, "b c f h w -> (b f) c h w")
        quantised, _, indices = model.quantize(frames)
        expected = quantised if z.ndim == 4 else rearrange(quantised, "(b f) c h w -> b c f h w", f=z.shape[2])
        assert_same_output(model.eval()(x)[0], model.decode(expected))


def test_training_forward_without_codebook():
    model = tiny(seed=0)
    assert model.quantize is None
    x = randn(2, 3, 16, 16, seed=2)
    reconstruction, loss = model(x)
    assert loss.ndim == 0 and loss.item() == 0.0
    with torch.no_grad():
        assert_same_output(reconstruction, model.decode(model.encode(x)))


def test_vector_quantizer_picks_nearest_codebook_rows():
    quantizer = VectorQuantizer(64, 4, beta=0.25)
    with torch.no_grad():
        quantizer.embedding.weight.copy_(randn(64, 4, seed=1))
    z = randn(2, 4, 3, 5, seed=2).requires_grad_()
    z_q, loss, indices = quantizer(z)
    assert z_q.shape == z.shape and indices.shape == (2, 3, 5) and indices.dtype == torch.long
    flat = rearrange(z.detach(), "b c h w -> (b h w) c")
    distances = ((flat[:, None] - quantizer.embedding.weight.detach()[None]) ** 2).sum(-1)
    assert torch.equal(indices.flatten(), distances.argmin(dim=1))
    rows = quantizer.embedding.weight.detach()[indices]  # b h w c
    torch.testing.assert_close(z_q.detach(), rearrange(rows, "b h w c -> b c h w"), atol=1e-6, rtol=0)
    assert len(indices.unique()) > 5
    expected_loss = (1 + 0.25) * ((rearrange(rows, "b h w c -> b c h w") - z.detach()) ** 2).mean()
    torch.testing.assert_close(loss, expected_loss)
    # straight-through: d z_q / d z = identity; the codebook gets only the β-weighted term
    (z_q.sum() + loss).backward()
    expected_grad = 1 + 2 * (z.detach() - rearrange(rows, "b h w c -> b c h w")) / z.numel()
    torch.testing.assert_close(z.grad, expected_grad, atol=1e-6, rtol=1e-5)
    used = torch.zeros(64, dtype=torch.bool)
    used[indices.flatten()] = True
    grad = quantizer.embedding.weight.grad
    assert grad[used].abs().sum() > 0 and not grad[~used].any()


def test_codebook_init_and_is_absent_from_inference_checkpoints():
    model = tiny(codebook_size=64)
    weight = model.quantize.embedding.weight
    assert weight.shape == (64, 4) and weight.abs().max() <= 1 / 64
    assert "quantize.embedding.weight" in model.state_dict()
    assert not any(k.startswith("quantize.") for k in tiny().state_dict())


# ---------------------------------------------------------------- save / load


@pytest.mark.parametrize("kwargs", [
    dict(),
    dict(video_decoder="conv3x3x3-attn", spatial_attention_zq="first-frame"),
    dict(video_decoder="3d-conv", codebook_size=16, codebook_beta=0.5),
])
def test_save_and_load_round_trip(tmp_path, kwargs):
    model = tiny(seed=11, **kwargs)
    model.save_pretrained(tmp_path / "movq")
    loaded = MoVQ.from_pretrained(tmp_path / "movq").eval()
    assert config_dict(loaded) == config_dict(model)
    for key, value in kwargs.items():
        assert loaded.config[key] == value
    assert_same_weights(loaded, model)
    z = latents(3)
    with torch.no_grad():
        assert_same_output(loaded.decode(z), model.decode(z))
        x = randn(1, 3, 2, 16, 16, seed=12)
        assert_same_output(loaded.encode(x), model.encode(x))


@pytest.mark.parametrize("size, latent", [((8, 8), (4, 4)), ((16, 8), (4, 2)), ((24, 32), (3, 4)), ((4, 4), (4, 4))])
def test_spatial_norm_matches_the_official_upsample_then_convolve_order(size, latent):
    """The latent's 1×1 convs run before the nearest-neighbour upsampling: the same numbers as the official order."""
    import torch.nn.functional as F

    from fusionframes.models.movq import SpatialNorm

    norm = randomize(SpatialNorm(16, 4, groups=4))
    x, zq = randn(2, 16, *size, seed=1), randn(2, 4, *latent, seed=2)
    up = F.interpolate(zq, size=size, mode="nearest")
    torch.testing.assert_close(norm(x, zq), norm.norm_layer(x) * norm.conv_y(up) + norm.conv_b(up))
    with pytest.raises(FusionFramesError, match="not a whole multiple of the latent"):
        norm(randn(2, 16, 6, 6), randn(2, 4, 4, 4))


def test_a_video_decoder_block_trains_under_bf16_autocast():
    """The temporal merge's α (float32) meets bf16 activations under autocast."""
    from fusionframes.models.movq import ResnetBlock

    block = randomize(ResnetBlock(8, 8, zq_channels=4, groups=4, temporal_kernel=(3, 1, 1)))
    x, zq = randn(6, 8, 4, 4, seed=1), randn(6, 4, 4, 4, seed=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = block(x, zq, num_frames=3)
    out.float().square().mean().backward()
    assert block.temporal_merge1.grad is not None and block.temporal_merge2.grad is not None


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("kernel, options", [((3, 1, 1), {}), ((3, 1, 1), {"bias": False}), ((3, 3, 3), {}),
                                             ((3, 1, 1), {"dilation": (2, 1, 1)}), ((1, 1, 1), {})])
@pytest.mark.parametrize("batch, frames", [(2, 3), (1, 3), (3, 1)])
def test_temporal_conv_equals_the_3d_conv_in_either_layout(layout, kernel, options, batch, frames):
    """A k×1×1 kernel runs as a 2-D conv over ``b c f (h w)``: the Conv3d's numbers, in the input's layout (other
    convs, here a dilated one, take the 3-D route)."""
    from fusionframes.models.blocks import temporal_conv
    from fusionframes.models.movq import fold, unfold

    padding = tuple(k // 2 * options.get("dilation", (1, 1, 1))[i] for i, k in enumerate(kernel))
    conv = randomize(torch.nn.Conv3d(8, 6, kernel, padding=padding, **options))
    x = randn(batch * frames, 8, 5, 4, seed=1).contiguous(memory_format=layout)
    out = temporal_conv(conv, x, num_frames=frames)
    torch.testing.assert_close(out, unfold(conv(fold(x, frames))))
    if kernel == (3, 1, 1) and not options and batch * frames > 1:
        assert out.is_contiguous(memory_format=layout) or (layout == torch.contiguous_format and batch == 1)


def _fast_and_slow(run, conv, inputs):
    """``run(inputs)`` without autograd, then with it, and whether ``conv`` saw channels-last input each time."""
    layouts = []
    conv.register_forward_pre_hook(
        lambda module, args: layouts.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    with torch.no_grad():
        fast = run(inputs)
    slow = run(inputs)
    assert layouts == [True, False]
    return fast, slow.detach()


@pytest.mark.parametrize("variant", [None, "conv3x1x1-attn", "resblock-attn", "3d-conv"])
def test_inference_decoding_in_channels_last_matches_the_nchw_training_path(variant):
    """Decoding without autograd runs channels-last; with autograd (training) it stays NCHW: the same numbers."""
    model = tiny(variant, seed=3)
    fast, slow = _fast_and_slow(model.decode, model.decoder.conv_in, latents(frames=4, seed=4))
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-5)


def test_inference_encoding_in_channels_last_matches_the_nchw_training_path():
    """Encoding without autograd (every U-Net stage's data) runs channels-last; with autograd (MoVQ training) it
    stays NCHW: the same numbers, in the same memory layout (cached latents are saved as they come)."""
    model = tiny(seed=3)
    fast, slow = _fast_and_slow(model.encode, model.encoder.conv_in, randn(2, 3, 3, 16, 16, seed=5))
    assert fast.stride() == slow.stride()
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-5)
