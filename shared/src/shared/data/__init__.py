"""Data locations and loaders for the datasets several papers use.

Each loader finds its files through :mod:`shared.data.locations` (``$PAPERSTACK_DATA``,
then the embedded subsets, then the official download) and returns plain typed objects.
"""

from shared.data.cifar10 import ImageClassificationData, load_cifar10
from shared.data.coco import CaptionedImage, load_coco_captions
from shared.data.ctr import CTRTable, load_ctr_samples
from shared.data.locations import (
    DATA_ENV_VAR,
    CorruptDataError,
    DatasetNotFoundError,
    data_root,
    locate,
)
from shared.data.math_text import MathProblem, load_gsm8k, load_math
from shared.data.movielens import (
    Interactions,
    InteractionSplits,
    load_diffrec,
    load_ml1m,
    load_ml100k,
    load_recbole_atomic,
    temporal_split,
)

__all__ = [
    "DATA_ENV_VAR",
    "CTRTable",
    "CaptionedImage",
    "CorruptDataError",
    "DatasetNotFoundError",
    "ImageClassificationData",
    "InteractionSplits",
    "Interactions",
    "MathProblem",
    "data_root",
    "load_cifar10",
    "load_coco_captions",
    "load_ctr_samples",
    "load_diffrec",
    "load_gsm8k",
    "load_math",
    "load_ml1m",
    "load_ml100k",
    "load_recbole_atomic",
    "locate",
    "temporal_split",
]
