"""The from-scratch baseline: a small CNN like the "lab 1" network the reports compare against.

Registered as a timm model (``transferlab_small_cnn``) so it travels the same
path as every pretrained backbone: same preprocessing resolution, same layer
view, same fine-tuning and saving code. It has no pretrained weights.
"""

from __future__ import annotations

from timm.layers import SelectAdaptivePool2d
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class ConvBlock(nn.Module):
    """Conv 3x3 - BN - ReLU - MaxPool as one layer (a named module, so the layer view keeps it whole)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.body = conv_block(in_channels, out_channels)

    def forward(self, x):
        return self.body(x)


class SmallCNN(nn.Module):
    def __init__(self, widths=(32, 64, 128, 128), num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.0, global_pool: str = "avg"):
        super().__init__()
        channels = [in_chans, *widths]
        self.blocks = nn.Sequential(*[ConvBlock(a, b) for a, b in zip(channels, channels[1:])])
        self.num_features = widths[-1]
        self.num_classes = num_classes
        self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=True)
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def group_matcher(self, coarse: bool = False) -> dict:
        """timm's parameter grouping: each conv block is a unit."""
        return {"blocks": r"^blocks\.(\d+)"}

    @property
    def feature_info(self) -> list[dict]:
        return [{"module": f"blocks.{i}", "num_chs": b.body[0].out_channels, "reduction": 2 ** (i + 1)}
                for i, b in enumerate(self.blocks)]

    def forward_intermediates(self, x, indices=None, intermediates_only: bool = False, stop_early: bool = False,
                              **kwargs):
        """timm's interface: the outputs of the blocks ``indices`` (all by default)."""
        n = len(self.blocks)
        wanted = set(range(n) if indices is None else ([i % n for i in indices] if not isinstance(indices, int)
                                                       else range(n - indices, n)))
        intermediates = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in wanted:
                intermediates.append(x)
            if stop_early and i >= max(wanted):
                break
        return intermediates if intermediates_only else (x, intermediates)

    def forward_features(self, x):
        return self.blocks(x)

    def forward_head(self, x, pre_logits: bool = False):
        x = self.global_pool(x)
        return x if pre_logits else self.classifier(x)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))

    def get_classifier(self):
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: str | None = None):
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=True)
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()


default_cfgs = generate_default_cfgs(
    {
        "transferlab_small_cnn": {
            "input_size": (3, 128, 128),
            "interpolation": "bilinear",
            "crop_pct": 1.0,
            "mean": (0.5, 0.5, 0.5),
            "std": (0.5, 0.5, 0.5),
            "num_classes": 1000,
            "first_conv": "blocks.0.body.0",
            "classifier": "classifier",
        }
    }
)


@register_model
def transferlab_small_cnn(pretrained: bool = False, **kwargs) -> SmallCNN:
    return build_model_with_cfg(SmallCNN, "transferlab_small_cnn", pretrained, **kwargs)
