"""Datasets: a registry of named datasets with mirrors and checksums, plus local sources.

A source is a registry name (`mnist`, `fashion-mnist`, `kmnist`, `cifar10`, `cifar100`,
`cifar100-coarse`, `svhn`), `idx:DIR` (the four IDX files, gzipped or raw), `npz:FILE` (a
Keras-style .npz), `cifar:DIR` (the CIFAR binary layout) or `folder:DIR` (class folders of
images). Every source becomes one `Dataset` of uint8
images in Keras's channels_last layout (N, H, W, C) and int64 labels; the image shape and the
class count come from the data, so models adapt to it.

One module per concern: `registry` (named datasets), `cache` (data directory, content checks),
`download` (mirrors), `files` (bounded reading), `memory` (allocation checks), `dataset` (the
`Dataset` type), one reader per format (`idx`, `npz`, `cifar`, `svhn`, `folder`), `sources`
(source strings to datasets) and `normalize` (per-channel statistics of the training part).
"""

from __future__ import annotations

from cnnlab.data.cache import (
    DATA_DIR_ENV,
    OFFLINE_ENV,
    LocalCopy,
    inspect_local_copy,
    is_offline,
    locate_file,
    resolve_data_dir,
)
from cnnlab.data.dataset import ROLES, CheckedFile, Dataset, Verification, dataset_from_arrays
from cnnlab.data.download import DOWNLOAD_TIMEOUT_S, FetchedFile, download_file, fetch
from cnnlab.data.idx import IDX_NAMES, encode_idx, parse_idx, read_idx
from cnnlab.data.npz import NPZ_KEYS
from cnnlab.data.registry import (
    REGISTRY,
    SOURCES,
    DataFile,
    DatasetInfo,
    get_dataset_info,
    list_datasets,
)
from cnnlab.data.sources import absolute_source, load_dataset, verify_dataset

__all__ = [
    "DATA_DIR_ENV",
    "DOWNLOAD_TIMEOUT_S",
    "IDX_NAMES",
    "NPZ_KEYS",
    "OFFLINE_ENV",
    "REGISTRY",
    "ROLES",
    "SOURCES",
    "CheckedFile",
    "DataFile",
    "Dataset",
    "DatasetInfo",
    "FetchedFile",
    "LocalCopy",
    "Verification",
    "absolute_source",
    "dataset_from_arrays",
    "download_file",
    "encode_idx",
    "fetch",
    "get_dataset_info",
    "inspect_local_copy",
    "is_offline",
    "list_datasets",
    "load_dataset",
    "locate_file",
    "parse_idx",
    "read_idx",
    "resolve_data_dir",
    "verify_dataset",
]
