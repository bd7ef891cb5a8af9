"""prelabel: bring existing labels and model predictions into annotation projects as pre-annotations.

The public API (everything else is private)::

    ds = prelabel.read("sample_data/yolo")                  # any source format, detected
    result = prelabel.convert("sample_data/voc", "out.json")  # read, reconcile, clip, write
    prelabel.validate("out.json").ok
    prelabel.upload("out.json", "local:build/project")        # or labellerr:ID, labelstudio:ID; _async=True
    ds = prelabel.from_ultralytics(model(images))            # or from_torchvision, from_huggingface, ...
    prelabel.push(ds, "local:build/project")                  # reconcile with the project, clip, upload

The names are imported on first use, so ``import prelabel`` (and ``prelabel --help``) does not pay for pandas,
shapely or pycocotools until something needs them.

Example:
    >>> import prelabel
    >>> sorted(prelabel.FORMATS)
    ['coco', 'cvat', 'labelme', 'labelstudio', 'predictions', 'voc', 'yolo']
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .adapters import FORMATS
    from .adapters.base import ReadOptions
    from .adapters.huggingface_outputs import from_huggingface
    from .adapters.predictions import from_dataframe
    from .adapters.supervision_detections import from_detections
    from .adapters.torchvision_outputs import from_torchvision
    from .adapters.ultralytics_results import from_ultralytics
    from .converters.coco import ValidationResult, to_coco
    from .converters.coco import validate as validate
    from .converters.coco import write as write_coco
    from .model import Dataset
    from .pipeline import ConvertResult, convert, prepare, read, write_dataset
    from .pushing import PushResult, push
    from .report import Report
    from .upload import UploadResult, upload  # the function shadows the subpackage name on purpose
    from .upload.local import LocalProject, project_init

# public name -> (module, attribute)
_LAZY: dict[str, tuple[str, str]] = {
    "FORMATS": (".adapters", "FORMATS"),
    "ReadOptions": (".adapters.base", "ReadOptions"),
    "from_dataframe": (".adapters.predictions", "from_dataframe"),
    "from_detections": (".adapters.supervision_detections", "from_detections"),
    "from_huggingface": (".adapters.huggingface_outputs", "from_huggingface"),
    "from_torchvision": (".adapters.torchvision_outputs", "from_torchvision"),
    "from_ultralytics": (".adapters.ultralytics_results", "from_ultralytics"),
    "ValidationResult": (".converters.coco", "ValidationResult"),
    "to_coco": (".converters.coco", "to_coco"),
    "validate": (".converters.coco", "validate"),
    "write_coco": (".converters.coco", "write"),
    "Dataset": (".model", "Dataset"),
    "ConvertResult": (".pipeline", "ConvertResult"),
    "convert": (".pipeline", "convert"),
    "prepare": (".pipeline", "prepare"),
    "read": (".pipeline", "read"),
    "write_dataset": (".pipeline", "write_dataset"),
    "PushResult": (".pushing", "PushResult"),
    "push": (".pushing", "push"),
    "Report": (".report", "Report"),
    "LocalProject": (".upload.local", "LocalProject"),
    "project_init": (".upload.local", "project_init"),
    "UploadResult": (".upload", "UploadResult"),
}

__all__ = [
    "FORMATS",
    "ConvertResult",
    "Dataset",
    "LocalProject",
    "PushResult",
    "ReadOptions",
    "Report",
    "UploadResult",
    "ValidationResult",
    "__version__",
    "convert",
    "from_dataframe",
    "from_detections",
    "from_huggingface",
    "from_torchvision",
    "from_ultralytics",
    "prepare",
    "project_init",
    "push",
    "read",
    "to_coco",
    "upload",
    "validate",
    "write_coco",
    "write_dataset",
]


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(target[0], __name__), target[1])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Module(types.ModuleType):
    """``prelabel.upload`` is the upload function, also after the ``prelabel.upload`` subpackage is imported
    (the import system binds a subpackage to its parent's attribute; this keeps the function there)."""

    @property
    def upload(self) -> Any:
        return importlib.import_module(".upload", __name__).upload

    @upload.setter
    def upload(self, value: Any) -> None:
        pass


if not TYPE_CHECKING:
    sys.modules[__name__].__class__ = _Module
