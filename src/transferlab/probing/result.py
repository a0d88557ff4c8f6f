"""What a probe run measured (importable without torch: the store and the report read it)."""

from __future__ import annotations

from dataclasses import dataclass

from ..results import RunResult, pair_text
from ..timing import phases_text


@dataclass(kw_only=True)
class ProbeResult(RunResult):
    """What a probe measured. Times are wall-clock seconds on this machine."""

    weights: str
    layer: str
    pooling: str
    backbone_layers: int | None  # freeze units of the backbone
    backbone_parameters: int
    backbone_load_seconds: float
    extraction_seconds: float
    images_per_second: float
    features_computed: int
    features_from_cache: int
    head_fit_seconds: float
    temperature: float | None = None
    training_seconds: float | None = None  # train (and validation) features plus the head's fit
    train_features_seconds: float | None = None  # the frozen backbone's part of it (read from the cache or computed)
    val_accuracy_max: float | None = None
    train_features_from_cache: int | None = None  # of the train and validation images
    test_features_from_cache: int | None = None

    def legacy_phases(self) -> dict[str, float]:
        """Phases of a result stored before they were recorded: its frozen features (decoding, forward and cache
        reads not told apart), the head's fit, and the test set."""
        phases = super().legacy_phases()
        if self.train_features_seconds is not None:
            phases["train_frozen_forward"] = self.train_features_seconds
        phases["head_fit"] = self.head_fit_seconds
        if self.training_seconds is not None:
            phases["train_other"] = self.training_seconds - sum(phases.get(k, 0.0) for k in ("train_frozen_forward",
                                                                                           "head_fit"))
        return phases

    def frozen_from_cache(self) -> bool:
        if self.train_features_from_cache is None:
            return self.features_computed == 0 and self.features_from_cache > 0
        return self.train_features_from_cache == self.train_images + self.val_images

    def test_from_cache(self) -> bool:
        if self.test_features_from_cache is None:
            return self.features_computed == 0 and self.features_from_cache > 0
        return self.test_features_from_cache == self.test_images

    def table_rows(self) -> list[tuple[str, object]]:
        return [
            ("data", self.data),
            ("evaluated on", f"{self.evaluated_on} ({self.test_images} images)"),
            ("labels" if self.multi_label else "classes", len(self.classes)),
            ("train / val images", f"{self.train_images} / {self.val_images}"),
            ("backbone", f"{self.backbone} ({self.timm_name})"),
            ("layer / pooling", f"{self.layer} / {self.pooling}"),
            ("head", self.head),
            ("runs on", self.runs_on),
            self.accuracy_row(),
            *(self.multilabel_rows() or [("macro F1", self.macro_f1)]),
            ("calibration error (ECE, 15 bins)", self.calibration_text()),
            ("feature dimension", self.feature_dim),
            ("backbone layers", self.backbone_layers if self.backbone_layers is not None else "n/a"),
            ("backbone parameters", self.backbone_parameters),
            ("extraction seconds", self.extraction_seconds),
            ("images per second", self.images_per_second),
            ("features computed / from cache", f"{self.features_computed} / {self.features_from_cache}"),
            ("head fit seconds", self.head_fit_seconds),
            ("training, total (frozen features)", self.training_text()),
            ("final train / val accuracy", pair_text(self.train_accuracy_final, self.val_accuracy_final)),
            ("test loss", self.test_loss if self.test_loss is not None else "n/a"),
            ("test set inference seconds", self.test_text()),
            ("inference ms per image (batch of 16, warm)", self.inference_ms_per_image),
            ("seconds by phase", phases_text(self.phase_seconds())),
            ("unreadable files skipped", self.unreadable_count),
        ]
