"""Data: readers for the standard on-disk formats, ``ArrayDataset``, the catalog and the in-memory loader.

Layer rule: this package imports only ``delusive.utils`` from delusive (plus numpy, torch, PIL, scipy.io).
"""

from delusive.data.catalog import DATASETS, DatasetInfo, dataset_info, fetch, load_dataset, search_roots
from delusive.data.dataset import ArrayDataset, holdout_split, make_synthetic
from delusive.data.errors import DataError, DataNotFoundError
from delusive.data.loader import TensorLoader, crop_with_offsets, random_crop, random_hflip

__all__ = [
    "DATASETS",
    "ArrayDataset",
    "DataError",
    "DataNotFoundError",
    "DatasetInfo",
    "TensorLoader",
    "crop_with_offsets",
    "dataset_info",
    "fetch",
    "load_dataset",
    "holdout_split",
    "make_synthetic",
    "random_crop",
    "random_hflip",
    "search_roots",
]
