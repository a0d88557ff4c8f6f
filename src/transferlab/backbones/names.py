"""Friendly backbone names from the lab reports, mapped onto timm model names.

Any other name timm knows is used as it is.
"""

from __future__ import annotations

from ..errors import UserError

FRIENDLY_NAMES: dict[str, str] = {
    "vgg16": "vgg16.tv_in1k",
    "vgg19": "vgg19.tv_in1k",
    "resnet50": "resnet50.a1_in1k",
    "resnet101": "resnet101.a1h_in1k",
    "resnet152": "resnet152.a1h_in1k",
    "inception_v3": "inception_v3.tv_in1k",
    "mobilenet_v2": "mobilenetv2_100.ra_in1k",
    "efficientnet_b0": "efficientnet_b0.ra_in1k",
    "efficientnet_lite0": "tf_efficientnet_lite0.in1k",
    "efficientnet_lite1": "tf_efficientnet_lite1.in1k",
    "efficientnet_lite2": "tf_efficientnet_lite2.in1k",
    "small-cnn": "transferlab_small_cnn",
}

# Backbones trained from scratch: they have no pretrained weights to look for.
FROM_SCRATCH = {"small-cnn", "transferlab_small_cnn"}

DEFAULT_BACKBONE = "efficientnet_lite0"


def resolve_timm_name(name: str) -> str:
    """The timm model name (with pretrained tag) for a friendly or timm name."""
    import timm

    from . import small_cnn  # noqa: F401  (registers transferlab_small_cnn with timm)

    timm_name = FRIENDLY_NAMES.get(name.lower(), name)
    architecture = timm_name.split(".", 1)[0]
    if not timm.is_model(architecture):
        known = ", ".join(FRIENDLY_NAMES)
        raise UserError(
            f"unknown backbone {name!r}: use one of {known} or any timm model name "
            "(`transferlab backbones --all` lists them)"
        )
    return timm_name
