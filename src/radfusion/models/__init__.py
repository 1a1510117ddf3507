"""The two segmentation networks of the study, built by name.

``resnext_unet`` (the paper's CNN, after rai2021) and ``attention_unet`` (after
rondinella2023). Both map (B, in_channels, H, W) to logits (B, 1, H, W); apply
``torch.sigmoid`` for probabilities.
"""

from __future__ import annotations

from torch import nn

from radfusion.models.attention_unet import AttentionUNet
from radfusion.models.resnext_unet import ResNeXtUNet
from radfusion.protocol import MODEL_NAMES


__all__ = ["MODEL_NAMES", "AttentionUNet", "ResNeXtUNet", "build_model"]


def build_model(name: str, in_channels: int, *, encoder_weights: str | None = None, **kwargs) -> nn.Module:
    """Build a segmentation network by its config name.

    Parameters
    ----------
    name : {"resnext_unet", "attention_unet"}
        The network.
    in_channels : int
        Input channels: 1 for the ``mri`` input (FLAIR), 3 for ``mri_radiomics``
        (FLAIR, CR, RE).
    encoder_weights : str or None
        ``resnext_unet`` only: ``None`` (random), ``"imagenet"`` (from a pre-filled local
        cache, never downloaded) or the path of a local weights file. Must stay ``None``
        for ``attention_unet``, which has no pretrained encoder.
    **kwargs
        Further constructor arguments of :class:`AttentionUNet` (e.g. ``growth_rate``);
        ``resnext_unet`` takes none.

    Returns
    -------
    torch.nn.Module
        The network in training mode; ``model(x)`` returns logits (B, 1, H, W).

    Notes
    -----
    Input height and width must be multiples of ``model.size_multiple``: 16 for
    ``resnext_unet``, 32 for ``attention_unet``; multiples of 32 (224, 256, 64) suit
    both. Other sizes raise a ValueError on the forward pass.
    """
    if name == "resnext_unet":
        if kwargs:
            raise TypeError(f"resnext_unet takes no options besides encoder_weights; got {sorted(kwargs)}")
        return ResNeXtUNet(in_channels=in_channels, encoder_weights=encoder_weights)
    if name == "attention_unet":
        if encoder_weights is not None:
            raise ValueError(
                f"attention_unet has no pretrained encoder; encoder_weights must be None, "
                f"got {encoder_weights!r}"
            )
        return AttentionUNet(in_channels=in_channels, **kwargs)
    raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODEL_NAMES)}")
