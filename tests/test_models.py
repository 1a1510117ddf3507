"""Tests of radfusion.models: shapes, parameter counts by hand, gradients, logits, weights."""

from __future__ import annotations

import pytest
import torch
from segmentation_models_pytorch.encoders import get_encoder
from torch import nn

from radfusion.models import AttentionUNet, ResNeXtUNet, build_model
from radfusion.models.resnext_unet import build_encoder

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(scope="module")
def models() -> dict[tuple[str, int], nn.Module]:
    """One instance per (model, in_channels), built once: building ResNeXt-50 takes ~1 s.

    The models stay in training mode, so that batch normalization uses the statistics of
    the batch: an untrained network in eval mode normalizes with mean 0 and variance 1,
    and the products of ten Squeeze-and-Attention blocks then overflow, which says
    nothing about a trained network. Tests run them under torch.no_grad.
    """
    torch.manual_seed(0)
    return {
        (name, channels): build_model(name, channels)
        for name in ("resnext_unet", "attention_unet")
        for channels in (1, 3)
    }


# --- shapes ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["resnext_unet", "attention_unet"])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [224, 256])
def test_output_is_one_logit_map_at_input_resolution(models, name, channels, size):
    model = models[(name, channels)]
    with torch.no_grad():
        out = model(torch.rand(1, channels, size, size))
    assert out.shape == (1, 1, size, size)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["resnext_unet", "attention_unet"])
def test_batch_dimension_is_kept(models, name):
    with torch.no_grad():
        out = models[(name, 3)](torch.rand(2, 3, 64, 64))
    assert out.shape == (2, 1, 64, 64)


@pytest.mark.parametrize("name, multiple", [("resnext_unet", 16), ("attention_unet", 32)])
def test_sizes_that_are_not_multiples_raise_a_clear_error(models, name, multiple):
    model = models[(name, 1)]
    assert model.size_multiple == multiple
    with pytest.raises(ValueError, match=f"multiples of {multiple}.*got 72x64"):
        model(torch.rand(1, 1, 72, 64))


@pytest.mark.parametrize("name", ["resnext_unet", "attention_unet"])
def test_wrong_channel_count_raises(models, name):
    with pytest.raises(ValueError, match="built for 3 input channel.*got an input with 1"):
        models[(name, 3)](torch.rand(1, 1, 64, 64))


def test_build_model_rejects_unknown_names_and_options():
    with pytest.raises(ValueError, match="unknown model 'unet'"):
        build_model("unet", 1)
    with pytest.raises(ValueError, match="encoder_weights must be None"):
        build_model("attention_unet", 1, encoder_weights="imagenet")
    with pytest.raises(TypeError, match="growth_rate"):
        build_model("resnext_unet", 1, growth_rate=12)


def test_build_model_passes_attention_unet_options():
    model = build_model("attention_unet", 1, growth_rate=4, down_layers=(2, 2), bottleneck_layers=2)
    assert model.bottleneck.out_channels == 8
    assert model.size_multiple == 4


# --- resnext_unet ----------------------------------------------------------------------


def test_resnext_encoder_without_maxpool_has_the_documented_resolutions():
    encoder = build_encoder(1)
    assert isinstance(encoder.maxpool, nn.Identity)
    with torch.no_grad():
        features = encoder(torch.rand(1, 1, 64, 64))
    shapes = [tuple(f.shape[1:]) for f in features]
    # [input, stem at H/2, e1 at H/2, e2 at H/4, e3 at H/8, e4 at H/16]
    assert shapes == [(1, 64, 64), (64, 32, 32), (256, 32, 32), (512, 16, 16), (1024, 8, 8), (2048, 4, 4)]


def resnext_decoder_block_parameters(c_in: int, c_out: int) -> int:
    """1x1 conv c_in -> c_in/4 + BN, 4x4 transposed conv c_in/4 -> c_in/4 (bias), 1x1 conv -> c_out + BN.

    The 1x1 convolutions have no bias (the BN shift replaces it); each BN has a scale and a shift.
    """
    mid = c_in // 4
    return (c_in * mid + 2 * mid) + (16 * mid * mid + mid) + (mid * c_out + 2 * c_out)


@pytest.mark.parametrize("channels", [1, 3])
def test_resnext_unet_parameter_counts_by_hand(models, channels):
    model = models[("resnext_unet", channels)]
    decoder = (
        resnext_decoder_block_parameters(2048, 1024)  # 1,049,600 + 4,194,816 + 526,336
        + resnext_decoder_block_parameters(1024, 512)
        + resnext_decoder_block_parameters(512, 256)
        + resnext_decoder_block_parameters(256, 256)
    )
    head = (9 * 256 * 128 + 2 * 128) + (9 * 128 * 1 + 1)
    assert resnext_decoder_block_parameters(2048, 1024) == 5_770_752
    counted = sum(
        p.numel()
        for module in (model.decoder4, model.decoder3, model.decoder2, model.decoder1, model.head)
        for p in module.parameters()
    )
    assert counted == decoder + head
    # torchvision's resnext50_32x4d has 25,028,904 parameters, of which fc holds
    # 2048 * 1000 + 1000; the first 7x7 conv (no bias) has 64 * 49 weights per input channel.
    encoder = 25_028_904 - (2048 * 1000 + 1000) - (3 - channels) * 64 * 49
    assert sum(p.numel() for p in model.encoder.parameters()) == encoder


def test_resnext_unet_loads_a_local_encoder_state_dict(tmp_path):
    torch.manual_seed(1)
    source = get_encoder("resnext50_32x4d", in_channels=3, depth=5, weights=None)
    with torch.no_grad():
        source.conv1.weight.copy_(torch.arange(source.conv1.weight.numel()).reshape(64, 3, 7, 7) / 1000.0)
    state = source.state_dict()
    # A torchvision/timm classifier checkpoint also carries fc, which is dropped.
    state["fc.weight"] = torch.zeros(1000, 2048)
    state["fc.bias"] = torch.zeros(1000)
    path = tmp_path / "resnext50_32x4d.pth"
    torch.save(state, path)

    model3 = ResNeXtUNet(in_channels=3, encoder_weights=str(path))
    torch.testing.assert_close(model3.encoder.conv1.weight, source.conv1.weight, rtol=0, atol=0)
    torch.testing.assert_close(
        model3.encoder.layer4[2].bn3.weight, source.layer4[2].bn3.weight, rtol=0, atol=0
    )
    torch.testing.assert_close(
        model3.encoder.layer3[0].bn1.running_var, source.layer3[0].bn1.running_var, rtol=0, atol=0
    )

    # One channel: smp's patch_first_conv sums the RGB kernels.
    model1 = ResNeXtUNet(in_channels=1, encoder_weights=path)
    torch.testing.assert_close(
        model1.encoder.conv1.weight, source.conv1.weight.sum(dim=1, keepdim=True), rtol=1e-6, atol=1e-6
    )
    assert isinstance(model1.encoder.maxpool, nn.Identity)
    # Two channels: kernels repeated cyclically (R, G) and scaled by 3 / 2.
    model2 = ResNeXtUNet(in_channels=2, encoder_weights=path)
    torch.testing.assert_close(model2.encoder.conv1.weight, source.conv1.weight[:, :2] * 1.5)


def test_resnext_unet_loads_an_encoder_saved_with_its_own_channel_count(tmp_path):
    source = get_encoder("resnext50_32x4d", in_channels=1, depth=5, weights=None)
    path = tmp_path / "encoder1.pth"
    torch.save(source.state_dict(), path)
    model = ResNeXtUNet(in_channels=1, encoder_weights=path)
    torch.testing.assert_close(model.encoder.conv1.weight, source.conv1.weight, rtol=0, atol=0)
    with pytest.raises(ValueError, match="first convolution for 1 input channels"):
        ResNeXtUNet(in_channels=2, encoder_weights=path)


def test_resnext_unet_rejects_missing_and_wrong_weight_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ResNeXtUNet(in_channels=1, encoder_weights=tmp_path / "absent.pth")
    wrong = tmp_path / "resnet18.pth"
    torch.save(get_encoder("resnet18", weights=None).state_dict(), wrong)
    with pytest.raises(ValueError, match="do not match ResNeXt-50 32x4d"):
        ResNeXtUNet(in_channels=1, encoder_weights=wrong)


def test_imagenet_weights_come_only_from_a_local_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    hub_dir = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "torch"))
    try:
        with pytest.raises(FileNotFoundError, match="nothing is downloaded.*resnext50_32x4d-7cdf4587.pth"):
            ResNeXtUNet(in_channels=1, encoder_weights="imagenet")
        # A torchvision checkpoint in the torch hub cache is found and loaded.
        source = get_encoder("resnext50_32x4d", weights=None)
        checkpoints = tmp_path / "torch" / "checkpoints"
        checkpoints.mkdir(parents=True)
        torch.save(source.state_dict(), checkpoints / "resnext50_32x4d-7cdf4587.pth")
        model = ResNeXtUNet(in_channels=3, encoder_weights="imagenet")
        torch.testing.assert_close(model.encoder.conv1.weight, source.conv1.weight, rtol=0, atol=0)
    finally:
        torch.hub.set_dir(hub_dir)


# --- attention_unet --------------------------------------------------------------------


def dense_block_parameters(c_in: int, n_layers: int = 5, growth: int = 12) -> int:
    """Layer j: BN on c_in + j*growth channels (2 per channel) + 3x3 conv with bias."""
    total = 0
    for j in range(n_layers):
        c = c_in + j * growth
        total += 2 * c + 9 * c * growth + growth
    return total


def squeeze_attention_parameters(c: int) -> int:
    """Two branches of two (3x3 conv c -> c with bias + BN): 4 * (9c^2 + c + 2c)."""
    return 4 * (9 * c * c + 3 * c)


def transition_down_parameters(c: int) -> int:
    """BN (2c) + 1x1 conv c -> c with bias."""
    return 2 * c + c * c + c


def transition_up_parameters(c_in: int = 60, c_out: int = 60) -> int:
    """3x3 transposed conv with bias."""
    return 9 * c_in * c_out + c_out


@pytest.mark.parametrize("channels", [1, 3])
def test_attention_unet_parameter_count_by_hand(models, channels):
    # Channel bookkeeping (F = 48, five dense blocks of 5 layers, growth 12, +60 per block):
    # down blocks 48->108->168->228->288->348, bottleneck 348 -> 60 new maps,
    # up blocks see 60 + skip = 408, 348, 288, 228 and output 60 new maps,
    # the last sees 60 + 108 = 168 and outputs its whole stack 228.
    first = 9 * channels * 48 + 48
    down = sum(
        dense_block_parameters(c_in) + squeeze_attention_parameters(c_out) + transition_down_parameters(c_out)
        for c_in, c_out in [(48, 108), (108, 168), (168, 228), (228, 288), (288, 348)]
    )
    bottleneck = dense_block_parameters(348)
    up = sum(
        transition_up_parameters() + dense_block_parameters(c_in) + squeeze_attention_parameters(c_out)
        for c_in, c_out in [(408, 60), (348, 60), (288, 60), (228, 60), (168, 228)]
    )
    final = 228 * 1 + 1
    expected = first + down + bottleneck + up + final
    assert expected == 15_116_713 - (3 - channels) * 9 * 48
    model = models[("attention_unet", channels)]
    assert sum(p.numel() for p in model.parameters()) == expected


def test_attention_unet_channel_counts_match_the_docstring(models):
    model = models[("attention_unet", 3)]
    assert [block.out_channels for block in model.down_blocks] == [108, 168, 228, 288, 348]
    assert model.bottleneck.out_channels == 60
    assert [block.out_channels for block in model.up_blocks] == [60, 60, 60, 60, 228]
    assert model.final_conv.in_channels == 228
    assert len(model.down_attention) == len(model.up_attention) == 5
    assert not any(isinstance(m, (nn.LSTM, nn.LSTMCell)) for m in model.modules())


def test_squeeze_attention_block_is_res_times_att_plus_att():
    from radfusion.models.attention_unet import SqueezeAttentionBlock

    torch.manual_seed(0)
    block = SqueezeAttentionBlock(4).eval()
    x = torch.rand(2, 4, 8, 8)
    with torch.no_grad():
        x_res = block.residual(x)
        pooled = x.reshape(2, 4, 4, 2, 4, 2).mean(dim=(3, 5))  # 2x2 average pool by hand
        x_att = nn.functional.interpolate(block.attention(pooled), size=(8, 8), mode="bilinear")
        torch.testing.assert_close(block(x), x_res * x_att + x_att)


# --- both ------------------------------------------------------------------------------


def first_conv(model: nn.Module) -> nn.Conv2d:
    return model.encoder.conv1 if isinstance(model, ResNeXtUNet) else model.first_conv


@pytest.mark.parametrize("name", ["resnext_unet", "attention_unet"])
def test_gradients_reach_the_first_layer(name):
    torch.manual_seed(0)
    model = build_model(name, 3).train()
    x = torch.rand(2, 3, 32, 32)
    target = (torch.rand(2, 1, 32, 32) > 0.8).float()
    loss = nn.functional.binary_cross_entropy_with_logits(model(x), target)
    loss.backward()
    grad = first_conv(model).weight.grad
    assert grad is not None and grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["resnext_unet", "attention_unet"])
def test_models_return_raw_logits(models, name):
    model = models[(name, 1)]
    last = model.head[-1] if name == "resnext_unet" else model.final_conv
    assert not any(isinstance(m, (nn.Sigmoid, nn.Softmax)) for m in model.modules())
    saved = {k: v.clone() for k, v in last.state_dict().items()}
    try:
        with torch.no_grad():
            last.weight.zero_()
            last.bias.fill_(-3.0)
            out = model(torch.rand(1, 1, 64, 64))
    finally:
        last.load_state_dict(saved)
    # The last convolution's output comes out unchanged: no activation after it.
    assert torch.equal(out, torch.full_like(out, -3.0))


def test_resnext_unet_starts_at_the_prior_with_a_spread_of_logits():
    # The defaults (conv-BN-ReLU decoder and head, identity residual blocks, prior bias) give
    # logits that vary across pixels at the start and a mean probability near the prior;
    # rai2021's plain conv-ReLU decoder with PyTorch's default init shrinks the spread ~100-fold.
    torch.manual_seed(0)
    x = torch.rand(4, 3, 64, 64)
    fixed = ResNeXtUNet(in_channels=3, output_prior=0.01)
    plain = ResNeXtUNet(
        in_channels=3, decoder_batchnorm=False, he_init=False, zero_init_residual=False, output_prior=None
    )
    with torch.no_grad():
        fixed_logits, plain_logits = fixed(x), plain(x)
    assert fixed_logits.std() > 0.3
    assert plain_logits.std() < 0.05
    assert fixed_logits.std() > 20 * plain_logits.std()
    assert abs(float(fixed_logits.mean()) - float(torch.logit(torch.tensor(0.01)))) < 1.0
    assert fixed.head[1].bias.item() == pytest.approx(float(torch.logit(torch.tensor(0.01))), abs=1e-6)


def test_zero_init_residual_only_without_pretrained_weights(tmp_path):
    scratch = ResNeXtUNet(in_channels=1)
    last_bns = [block.bn3.weight for layer in ("layer1", "layer4") for block in getattr(scratch.encoder, layer)]
    assert all(torch.count_nonzero(w) == 0 for w in last_bns)
    state = get_encoder("resnext50_32x4d", in_channels=3, depth=5, weights=None).state_dict()
    path = tmp_path / "weights.pth"
    torch.save(state, path)
    loaded = ResNeXtUNet(in_channels=1, encoder_weights=str(path))
    torch.testing.assert_close(loaded.encoder.layer4[2].bn3.weight, state["layer4.2.bn3.weight"], rtol=0, atol=0)
    assert torch.count_nonzero(loaded.encoder.layer4[2].bn3.weight) > 0


def test_he_init_keeps_the_second_moment_through_a_relu_stack():
    from radfusion.models.blocks import init_relu_convolutions

    torch.manual_seed(0)
    stack = nn.Sequential(*[m for _ in range(6) for m in (nn.Conv2d(64, 64, 3, padding=1), nn.ReLU())])
    x = torch.randn(8, 64, 16, 16)
    with torch.no_grad():
        default_ratio = float(stack(x).pow(2).mean() / x.pow(2).mean())
        init_relu_convolutions(stack)
        he_ratio = float(stack(x).pow(2).mean() / x.pow(2).mean())
    assert default_ratio < 0.01  # ~(1/6) per conv-ReLU
    assert 0.2 < he_ratio < 5


def test_prior_bias_is_the_logit():
    from radfusion.models.blocks import prior_bias

    assert prior_bias(0.5) == 0.0
    assert torch.sigmoid(torch.tensor(prior_bias(0.01))).item() == pytest.approx(0.01)
    with pytest.raises(ValueError):
        prior_bias(0.0)
