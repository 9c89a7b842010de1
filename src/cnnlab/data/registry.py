"""The registry of named datasets: mirrors, file sizes and checksums, and what each holds."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from cnnlab.data.idx import IDX_NAMES
from cnnlab.errors import DataError

# The local sources a dataset string may name besides the registry (cnnlab.data.sources).
SOURCES = (
    "idx:DIR (the four IDX files, gzipped or raw)",
    "npz:FILE (Keras-style .npz: x_train, y_train, x_test, y_test)",
    "cifar:DIR (the CIFAR binary layout, or its .tar.gz; ?labels=coarse for CIFAR-100)",
    "folder:DIR (DIR/train/<class>/* and DIR/test/<class>/*; "
    "?image_size=HxW&channels=1|3&test_fraction=F)",
)


@dataclass(frozen=True)
class DataFile:
    """One file of a registered dataset, with what its content must be.

    A `gzipped` file (IDX) is named without `.gz`: mirrors serve `name.gz`, a local copy may be
    either, and its size and SHA-256 are of the decompressed bytes. Any other file (an archive,
    a .mat) is stored and checked exactly as the mirrors serve it.
    """

    name: str
    size: int  # bytes of the content (decompressed, for a gzipped file)
    sha256: str | None = None  # of the content; None where no trusted value is known
    archive_md5: str | None = None  # of the file as served; used only when sha256 is None
    gzipped: bool = True


@dataclass(frozen=True)
class DatasetInfo:
    """A registered dataset: where to download it and how to recognise its four files."""

    name: str
    description: str
    homepage: str
    mirrors: tuple[str, ...]  # base URLs ending in "/", tried in order; file URL = base + name
    # idx: train images, train labels, test images, test labels; cifar: the release archive;
    # svhn: the train and test .mat files.
    files: tuple[DataFile, ...]
    classes: int | None = None
    # What the files hold, known without reading them (e.g. for `cnnlab summary`); the loaded
    # arrays stay the authority on shape.
    image_shape: tuple[int, int, int] | None = None
    # The reader: "idx", "cifar10", "cifar100", "cifar100-coarse" or "svhn".
    format: str = "idx"
    # Where downloads go, under the data directory: cifar100-coarse shares cifar100's archive.
    folder: str = ""

    @property
    def size(self) -> int:
        """Bytes of the files' content."""
        return sum(file.size for file in self.files)

    @property
    def directory(self) -> str:
        return self.folder or self.name

    @property
    def remedy(self) -> str:
        return f"delete it and run `cnnlab data fetch {self.name}`"


def _idx_files(
    sizes: tuple[int, ...],
    sha256s: tuple[str | None, ...] = (None,) * 4,
    md5s: tuple[str | None, ...] = (None,) * 4,
) -> tuple[DataFile, ...]:
    return tuple(
        DataFile(name, size, sha, md5)
        for name, size, sha, md5 in zip(IDX_NAMES, sizes, sha256s, md5s, strict=True)
    )


# 60000 train and 10000 test images of 28x28 bytes plus the 16-byte (images) or 8-byte (labels)
# IDX header: identical for all three datasets below.
_MNIST_LIKE_SIZES = (47040016, 60008, 7840016, 10008)

REGISTRY: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo(
            name="mnist",
            description="handwritten digits 0-9 (LeCun, Cortes, Burges)",
            homepage="http://yann.lecun.com/exdb/mnist/",
            # Canonical site first, then the mirrors torchvision (datasets/mnist.py) and
            # TensorFlow's tutorials fall back to.
            mirrors=(
                "http://yann.lecun.com/exdb/mnist/",
                "https://ossci-datasets.s3.amazonaws.com/mnist/",
                "https://storage.googleapis.com/cvdf-datasets/mnist/",
            ),
            # SHA-256 of the decompressed files, as in ../shared/data/mnist/SHA256SUMS.decompressed.
            files=_idx_files(
                _MNIST_LIKE_SIZES,
                sha256s=(
                    "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                    "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                    "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                    "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
                ),
            ),
            classes=10,
            image_shape=(28, 28, 1),
        ),
        DatasetInfo(
            name="fashion-mnist",
            description="Zalando article images, 10 kinds of clothing (Xiao et al. 2017)",
            homepage="https://github.com/zalandoresearch/fashion-mnist",
            # Zalando's S3 bucket (the project README's links), the repository's own copy, and
            # Keras's copy (keras/src/datasets/fashion_mnist.py).
            mirrors=(
                "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
                "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
            ),
            # SHA-256 of the decompressed files. Upstream publishes only MD5s of its archives;
            # these were computed here from Debian's dataset-fashion-mnist package
            # (0.0~git20200523) and agree with the decompressed-content SHA-256s recorded
            # independently by several public projects that derived them from the archives
            # with the publisher's MD5s.
            files=_idx_files(
                _MNIST_LIKE_SIZES,
                sha256s=(
                    "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                    "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                    "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                    "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
                ),
            ),
            classes=10,
            image_shape=(28, 28, 1),
        ),
        DatasetInfo(
            name="kmnist",
            description="Kuzushiji-MNIST, 10 cursive Japanese hiragana (Clanuwat et al. 2018)",
            homepage="https://github.com/rois-codh/kmnist",
            # CODH hosts the only copy; the same host is listed over https and http.
            mirrors=(
                "https://codh.rois.ac.jp/kmnist/dataset/kmnist/",
                "http://codh.rois.ac.jp/kmnist/dataset/kmnist/",
            ),
            # No trusted SHA-256 of the decompressed files could be found, so KMNIST is checked
            # by the MD5 of the canonical archives (torchvision datasets/mnist.py, KMNIST) plus
            # the IDX structure and exact sizes; a raw (decompressed) local copy gets the
            # structural checks only, and `cnnlab data verify` says so.
            files=_idx_files(
                _MNIST_LIKE_SIZES,
                md5s=(
                    "bdb82020997e1d708af4cf47b453dcf7",
                    "e144d726b3acfaa3e44228e80efcd344",
                    "5c965bf0a639b31b8f53240b1b52f4d7",
                    "7320c461ea6c1c855c0b718fb2a4b134",
                ),
            ),
            classes=10,
            image_shape=(28, 28, 1),
        ),
    )
}

# Content hash -> "dataset's file", to say "this is mnist's file" instead of just "mismatch".
KNOWN_CONTENT = {
    file.sha256: f"{info.name}'s {file.name}"
    for info in REGISTRY.values()
    for file in info.files
    if file.sha256
}


# The binary CIFAR releases and SVHN's cropped digits: one archive or two .mat files each,
# checked by the MD5s their publishers list (the CIFAR page, "Binary version"; torchvision's
# datasets/svhn.py) and by their exact sizes (the same archives as git-annex keys in the
# datasets-mila/datasets--cifar100 repository; SVHN's in several download scripts).
_CIFAR_MIRRORS = ("https://www.cs.toronto.edu/~kriz/", "http://www.cs.toronto.edu/~kriz/")
_CIFAR100_FILE = DataFile(
    "cifar-100-binary.tar.gz",
    168513733,
    archive_md5="03b5dce01913d631647c71ecec9e9cb8",
    gzipped=False,
)
_CIFAR100 = {
    "homepage": "https://www.cs.toronto.edu/~kriz/cifar.html",
    "mirrors": _CIFAR_MIRRORS,
    "files": (_CIFAR100_FILE,),
    "image_shape": (32, 32, 3),
    "folder": "cifar100",
}
REGISTRY.update(
    {
        info.name: info
        for info in (
            DatasetInfo(
                name="cifar10",
                description="32x32 colour photos, 10 classes (Krizhevsky 2009), binary release",
                homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
                mirrors=_CIFAR_MIRRORS,
                files=(
                    DataFile(
                        "cifar-10-binary.tar.gz",
                        170052171,
                        archive_md5="c32a1d4ab5d03f1284b67883e8d87530",
                        gzipped=False,
                    ),
                ),
                classes=10,
                image_shape=(32, 32, 3),
                format="cifar10",
            ),
            DatasetInfo(
                name="cifar100",
                description="32x32 colour photos, 100 fine classes (Krizhevsky 2009)",
                classes=100,
                format="cifar100",
                **_CIFAR100,
            ),
            DatasetInfo(
                name="cifar100-coarse",
                description="CIFAR-100 labelled by its 20 superclasses",
                classes=20,
                format="cifar100-coarse",
                **_CIFAR100,
            ),
            DatasetInfo(
                name="svhn",
                description="Street View House Numbers, cropped 32x32 digits (Netzer et al. 2011)",
                homepage="http://ufldl.stanford.edu/housenumbers/",
                mirrors=("http://ufldl.stanford.edu/housenumbers/",),
                files=(
                    DataFile(
                        "train_32x32.mat",
                        182040794,
                        archive_md5="e26dedcc434d2e4c54c9b2d4a06d8373",
                        gzipped=False,
                    ),
                    DataFile(
                        "test_32x32.mat",
                        64275384,
                        archive_md5="eb5a983be6a315427106f1b164d9cef3",
                        gzipped=False,
                    ),
                ),
                classes=10,
                image_shape=(32, 32, 3),
                format="svhn",
            ),
        )
    }
)


def list_datasets() -> tuple[DatasetInfo, ...]:
    """The registered datasets, in registry order."""
    return tuple(REGISTRY.values())


def get_dataset_info(name: str) -> DatasetInfo:
    """The registry entry for `name`; an unknown name lists the valid ones and close matches."""
    if name in REGISTRY:
        return REGISTRY[name]
    close = difflib.get_close_matches(name, REGISTRY, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise DataError(
        f"unknown dataset '{name}'; {hint}known: {', '.join(REGISTRY)}, "
        f"or a local source: {'; '.join(SOURCES)}"
    )
