"""Data: readers for the standard on-disk formats, ``ArrayDataset``, and the in-memory tensor loader."""

from delusive.data.catalog import DATASETS, DatasetInfo, dataset_info, fetch, load_dataset
from delusive.data.dataset import ArrayDataset, make_synthetic
from delusive.data.errors import DataError, DataNotFoundError
from delusive.data.loader import TensorLoader, random_crop, random_hflip

__all__ = [
    "DATASETS",
    "ArrayDataset",
    "DataError",
    "DataNotFoundError",
    "DatasetInfo",
    "TensorLoader",
    "dataset_info",
    "fetch",
    "load_dataset",
    "make_synthetic",
    "random_crop",
    "random_hflip",
]
