"""prelabel: bring existing labels and model predictions into annotation projects as pre-annotations.

The public API (everything else is private)::

    ds = prelabel.read("sample_data/yolo")                  # any source format, detected
    result = prelabel.convert("sample_data/voc", "out.json")  # read, reconcile, clip, write
    prelabel.validate("out.json").ok
    prelabel.upload("out.json", "local:build/project")        # or labellerr:ID, labelstudio:ID; _async=True

Example:
    >>> import prelabel
    >>> sorted(prelabel.FORMATS)
    ['coco', 'cvat', 'labelstudio', 'predictions', 'voc', 'yolo']
"""

from __future__ import annotations

__version__ = "0.1.0"

from .adapters import FORMATS
from .adapters.base import ReadOptions
from .adapters.predictions import from_dataframe, from_detections
from .converters.coco import ValidationResult, to_coco
from .converters.coco import validate as validate
from .converters.coco import write as write_coco
from .model import Dataset
from .pipeline import ConvertResult, convert, prepare, read, write_dataset
from .report import Report
from .upload import UploadResult, upload  # the function shadows the subpackage name on purpose

__all__ = [
    "FORMATS",
    "ConvertResult",
    "Dataset",
    "ReadOptions",
    "Report",
    "UploadResult",
    "ValidationResult",
    "__version__",
    "convert",
    "from_dataframe",
    "from_detections",
    "prepare",
    "read",
    "to_coco",
    "upload",
    "validate",
    "write_coco",
    "write_dataset",
]
