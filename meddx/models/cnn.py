"""Small CNNs for 28-128 px medical images, trained from scratch in minutes on a CPU."""

from __future__ import annotations

from torch import nn

from meddx.models.registry import register_model


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    """Three stages of two 3x3 convolutions (BatchNorm, ReLU), max-pooling between, global pooling, linear head."""

    def __init__(self, in_chans: int, num_classes: int, widths: tuple[int, ...] = (32, 64, 128), dropout: float = 0.2):
        super().__init__()
        stages, cin = [], in_chans
        for i, w in enumerate(widths):
            layers = [_conv(cin, w), _conv(w, w)]
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            stages.append(nn.Sequential(*layers))
            cin = w
        self.features = nn.Sequential(*stages)
        self.feature_info = [{"module": f"features.{i}", "num_chs": w, "reduction": 2**i} for i, w in enumerate(widths)]
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(cin, num_classes))

    def forward(self, x):
        return self.head(self.pool(self.features(x)))


@register_model("small_cnn", min_size=8, description="6-conv CNN (32-64-128), ~0.29 M parameters; 28-128 px")
def small_cnn(in_chans: int, num_classes: int, dropout: float = 0.2, **kw) -> nn.Module:
    return SmallCNN(in_chans, num_classes, dropout=dropout, **kw)


@register_model("small_cnn_wide", min_size=8, description="6-conv CNN (64-128-256), ~1.1 M parameters")
def small_cnn_wide(in_chans: int, num_classes: int, dropout: float = 0.2, **kw) -> nn.Module:
    return SmallCNN(in_chans, num_classes, widths=(64, 128, 256), dropout=dropout, **kw)
