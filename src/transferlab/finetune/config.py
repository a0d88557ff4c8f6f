"""The record that defines a fine-tuning run, importable without torch (studies and the CLI plan with it)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UserError
from ..heads.spec import FINETUNE_HEADS, parse_head
from ..options import (BackboneOptions, DataOptions, LogOptions, RuntimeOptions, check_folds, check_logging,
                       check_ranges, check_ratios, check_types, option)
from ..tta import MAX_VIEWS, TTA_HELP
from .augment_names import check_augment
from .freeze import check_policy
from .head_init_names import HEAD_INITS
from .recipes import RECIPE_HELP, RECIPE_NAMES


@dataclass
class FinetuneConfig(DataOptions, BackboneOptions, RuntimeOptions, LogOptions):
    """Everything that defines a fine-tuning run (``transferlab finetune`` options)."""

    recipe: str = option("default", RECIPE_HELP, choices=RECIPE_NAMES)
    freeze: str | None = option(None, "all | none | half | first:N | top:K | first:50% | top:25% | "
                                "from:MODULE | first:params:T | top:params:40% | two-stage | two-stage:POLICY "
                                "(default: the recipe's: two-stage:first:25% for default, two-stage:top:1 for fast, "
                                "two-stage for best; none from scratch; `transferlab layers NAME` lists the units).")
    head: str = option("linear", "linear (the model's own classifier, reset) or mlp:512,256.")
    dropout: float = option(0.2, "Dropout between the mlp head's hidden layers.", minimum=0.0, maximum=0.95)
    pooling: str = option("pre_logits", "What the new head sees: pre_logits (the model's own head input: VGG's "
                          "fc7), or its last feature map pooled (avg, max), flattened (flatten) or a ViT's class "
                          "token (token), the layers in between dropped (Keras' include_top=False).",
                          choices=("pre_logits", "avg", "max", "flatten", "token"))
    optimizer: str = option("adam", "adam, adamw, sgd, rmsprop, or any optimizer name timm knows.")
    lr: float = option(1e-3, "Learning rate of the head (and of the backbone in single-stage runs).", above=0.0)
    lr_find: bool = option(False, "Before each stage trained by gradient, run the learning-rate range test "
                           "(transferlab lr-find) and train at its suggestion, the stage's spread of rates kept "
                           "(a study's lr: auto).")
    backbone_lr: float | None = option(None, "Learning rate of the top trainable backbone unit "
                                       "(default: --lr; in stage 2 of two-stage: --stage2-lr).", above=0.0)
    layer_decay: float | None = option(None, "Each backbone unit below the top trains at this times the rate "
                                       "of the one above (default 1; in stage 2 of two-stage: the recipe's "
                                       "spread, 100x from the top unit to the stem, 10x for best).", above=0.0, maximum=1.0)
    train_bn: bool | None = option(None, "Update BatchNorm statistics of trainable units (default: yes, except in "
                                   "stage 2 of two-stage, with its low rates).", flag="--train-bn/--freeze-bn")
    weight_decay: float = option(0.0, "Weight decay (never on norms and biases).", minimum=0.0)
    schedule: str = option("constant", "Learning-rate schedule over each stage.",
                           choices=("constant", "cosine", "one-cycle"))
    warmup_epochs: int = option(0, "Epochs of linear warm-up at the start of each stage.", minimum=0)
    epochs: int | None = option(None, "Maximum epochs (of stage 1 for two-stage; default: the recipe's, 10).",
                                minimum=1)
    stage2_epochs: int | None = option(None, "two-stage: maximum epochs after unfreezing, 0 for none (the run "
                                       "ends with stage 1's head; default: --epochs when given, else the "
                                       "recipe's: 15; 30 for best, and for default under 20 training images per "
                                       "class; 5 for fast, none under 20).",
                                       minimum=0)
    stage2_lr: float | None = option(None, "two-stage: learning rate of the head and the top unit after "
                                     "unfreezing (default: the recipe's: --lr / 10; --lr / 100 for fast); units below train "
                                     "lower.",
                                     above=0.0)
    early_stopping: str | None = option(None, "Metric early stopping watches (best weights are restored; "
                                        "default: the recipe's: val_accuracy in every recipe).",
                                 choices=("val_loss", "val_accuracy", "none"))
    patience: int | None = option(None, "Epochs without improvement before stopping (default 10; without it, "
                                  "early stopping is off when the validation set is too small to stop on).",
                                  minimum=1)
    augment: list[str] | None = option(None, "Comma-separated: flip, rotate, zoom, crop, randaugment, "
                                       "trivialaugment, or none (default: the recipe's: flip,crop; flip,crop,randaugment "
                                       "for best, and for default under 20 training images per class; none for "
                                       "fast).")
    rotation: float = option(10.0, "Largest rotation of the 'rotate' augmentation, in degrees either way.",
                             above=0.0, maximum=180.0)
    zoom: float = option(0.2, "Largest zoom of the 'zoom' augmentation, in or out, as a fraction (0.2: 80-120%).",
                         above=0.0, maximum=0.9)
    head_init: str | None = option(None, "two-stage: how stage 1 trains the new linear head: probe (the probe's "
                                   "logistic regression on the frozen features, fitted once; stage 2 keeps it unless "
                                   "unfreezing does better on validation) or sgd (epochs of --optimizer). Default: "
                                   "the recipe's.", choices=HEAD_INITS)
    keep_margin: int | None = option(None, "two-stage, early stopping on val_accuracy: stage 2's weights are kept "
                                     "only when they classify more than N validation images more right than the "
                                     "stage before's end (default: the recipe's: 0, any gain; 1 for fast, whose "
                                     "small steps change a few images and gain one by chance).", minimum=0)
    stage2_optimizer: str | None = option(None, "two-stage: optimizer after unfreezing, e.g. adam then rmsprop "
                                          "(default: --optimizer).")
    mixup: float = option(0.0, "Mixup alpha (0: off).", minimum=0.0)
    cutmix: float = option(0.0, "CutMix alpha (0: off).", minimum=0.0)
    label_smoothing: float | None = option(None, "Label smoothing of the loss (default: the recipe's: 0; 0.1 for "
                                           "best, and for default under 20 training images per class).", minimum=0.0, maximum=0.5)
    class_weights: bool = option(False, "Weight the loss by inverse class frequency.")
    sampler: str = option("shuffle", "How an epoch draws its training images: shuffle (each once) or balanced "
                          "(as many as the training set holds, with replacement, every class about equally often: "
                          "an alternative to --class-weights).", choices=("shuffle", "balanced"))
    ema: float | None = option(None, "Keep an exponential moving average of the weights with this decay, e.g. "
                               "0.999 (timm's ModelEmaV3): the average is what is validated, early-stopped on and "
                               "saved (default: off).", above=0.0, maximum=0.999999)
    accumulate: int = option(1, "Sum the gradients of N batches before each optimizer step: the updates of an "
                             "N-times larger batch in the memory of one.", minimum=1)
    calibrate: bool = option(False, "Fit temperature scaling on the validation set's logits (one T, Guo et al. "
                             "2017), save it in the model folder; predict and evaluate divide the logits by it. "
                             "Results state the test ECE before and after.")
    tta: int = option(1, TTA_HELP + " The result states the test accuracy with it beside the plain one.",
                      minimum=1, maximum=MAX_VIEWS)
    prefix_cache: bool = option(True, "Reuse the frozen layers' outputs across epochs when possible.",
                                speed_only=True, flag="--prefix-cache/--no-prefix-cache")
    output: str | None = option(None, "Model folder (default: runs/<backbone>-<policy>-<settings id>).",
                                speed_only=True, flag="--output")
    resume: bool = option(False, "Continue an interrupted run from its last completed epoch.", speed_only=True)

    def __post_init__(self) -> None:
        check_types(self, also={"augment": (str, type(None))})  # a comma-separated string, as on the command line
        self.ratios = check_ratios(self.ratios)
        if self.augment is not None:
            self.augment = check_augment(self.augment)
        parse_head(self.head, FINETUNE_HEADS)
        if self.freeze is not None:
            check_policy(self.freeze)
        check_ranges(self)
        if self.class_weights and self.sampler == "balanced":
            raise UserError("--class-weights and --sampler balanced both correct for class imbalance: choose one")
        check_folds(self)
        check_logging(self)
