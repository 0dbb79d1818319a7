"""Downloads of the datasets that have an official source: where each file is published and how it is checked.

Split out of the catalog so that reading data never touches the network code path: ``load_dataset`` calls
:func:`fetch` only when asked to download. Every file is checked against its published checksum (md5, or the
SHA-256 of the decompressed payload for Fashion-MNIST) before it is renamed into place; CIFAR-10's tarball is
extracted member by member, only the known batch files, never a path taken from the archive.
"""

from __future__ import annotations

import hashlib
import http.client
import tarfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

from delusive.data.cifar import META_FILE, TEST_FILES, TRAIN_FILES
from delusive.data.errors import DataError, DataNotFoundError
from delusive.utils import atomic_write, atomic_write_bytes

DOWNLOAD_TIMEOUT_S = 20.0
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Source:
    """One official file: where it is published and how a download is checked.

    A download is accepted when any given check matches: ``md5`` (the publisher's checksum of the file as
    served) or ``sha256_gunzip`` (SHA-256 of the decompressed payload; for Fashion-MNIST computed from the
    files of Debian's ``dataset-fashion-mnist``, which recompresses the official payload, so it does not
    depend on gzip settings).
    """

    filename: str
    urls: tuple[str, ...]
    md5: str | None = None
    sha256_gunzip: str | None = None


_FMNIST_URLS = ("https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
                "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/")
_MNIST_URLS = ("https://yann.lecun.com/exdb/mnist/", "https://ossci-datasets.s3.amazonaws.com/mnist/")
_SVHN_URL = "http://ufldl.stanford.edu/housenumbers/"


def _fm(name: str, md5: str, sha: str) -> Source:
    return Source(name, tuple(u + name for u in _FMNIST_URLS), md5, sha)


DOWNLOADS: dict[str, dict[str, Source]] = {
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": _fm("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                                          "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
        "train-labels-idx1-ubyte.gz": _fm("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe",
                                          "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
        "t10k-images-idx3-ubyte.gz": _fm("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79",
                                         "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
        "t10k-labels-idx1-ubyte.gz": _fm("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310",
                                         "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
    },
    "mnist": {n: Source(n, tuple(u + n for u in _MNIST_URLS), md5) for n, md5 in (
        ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
        ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
        ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"))},
    "cifar10": {"cifar-10-python.tar.gz": Source(
        "cifar-10-python.tar.gz", ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
        "c58f30108f718f92721af3b95e74349a")},
    "svhn": {n: Source(n, (_SVHN_URL + n,), md5) for n, md5 in (
        ("train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373"),
        ("test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3"),
        ("extra_32x32.mat", "a93ce644f1a588dc4d68dda5feec44a7"))},
}


def _sources_for(name: str, split: str | None) -> list[Source]:
    """The files to fetch for ``split`` (all when None; CIFAR-10 is one tarball holding every split)."""
    from delusive.data.catalog import _required_files

    table = DOWNLOADS[name]
    if name == "cifar10" or split is None:
        return list(table.values())
    return [table[f + ".gz"] if name in ("fashion-mnist", "mnist") else table[f] for f in _required_files(name, split)]


class _Hasher:
    """The checks of one :class:`Source` over a byte stream: md5, and SHA-256 of the gunzipped payload."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.sha = hashlib.sha256()
        self.gun = zlib.decompressobj(16 + zlib.MAX_WBITS) if source.sha256_gunzip else None
        self.gzip_ok = True

    def update(self, chunk: bytes) -> None:
        self.md5.update(chunk)
        if self.gun is not None and self.gzip_ok:
            try:
                self.sha.update(self.gun.decompress(chunk))
            except zlib.error:
                self.gzip_ok = False

    def digests(self) -> dict[str, str]:
        out = {"md5": self.md5.hexdigest()}
        if self.gun is not None:
            complete = self.gzip_ok and self.gun.eof
            out["sha256_gunzip"] = self.sha.hexdigest() if complete else "(not a complete gzip stream)"
        return out

    def matches(self) -> bool:
        got = self.digests()
        return any(getattr(self.source, k) is not None and got.get(k) == getattr(self.source, k)
                   for k in ("sha256_gunzip", "md5"))

    def describe(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in self.digests().items())


def _file_matches(path: Path, source: Source) -> bool:
    h = _Hasher(source)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.matches()


def _expected(source: Source) -> str:
    return " or ".join(f"{k} {getattr(source, k)}" for k in ("sha256_gunzip", "md5") if getattr(source, k))


class _ChecksumMismatch(Exception):
    pass


def _download(url: str, dest: Path, source: Source, timeout: float) -> None:
    """Stream ``url`` into ``dest`` (atomically) and keep it only if its checksum matches ``source``."""
    with urllib.request.urlopen(url, timeout=timeout) as resp, atomic_write(dest) as f:  # noqa: S310 - fixed URLs
        h = _Hasher(source)
        while chunk := resp.read(_CHUNK):
            f.write(chunk)
            h.update(chunk)
        if not h.matches():
            raise _ChecksumMismatch(h.describe())  # raised inside atomic_write: the temporary file is removed


def fetch(name: str, root: str | Path, split: str | None = None, timeout: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Download ``name`` (only the files of ``split``, or all) from its official source into ``root``.

    Each file is checked against its published checksum before it is renamed into place; a file already
    present and matching is not fetched again. Returns the folder holding the dataset's files.
    Raises :class:`DataNotFoundError` (with how to get the files by hand) when no source can be reached and
    :class:`DataError` when a source served a file whose checksum does not match (nothing is saved).
    """
    from delusive.data.catalog import DATASETS, dataset_info

    if name not in DOWNLOADS:
        info = dataset_info(name)
        raise DataNotFoundError(f"dataset {name!r} has no download source. To get it: {info.how_to_get}.")
    info = DATASETS[name]
    root = Path(root)
    target = root / info.subdir
    for source in _sources_for(name, split):
        dest = (root if name == "cifar10" else target) / source.filename
        if dest.is_file() and _file_matches(dest, source):
            continue
        failures: list[str] = []
        mismatch: tuple[str, str] | None = None
        for url in source.urls:
            try:
                _download(url, dest, source, timeout)
                break
            except _ChecksumMismatch as e:
                mismatch = mismatch or (url, str(e))
                failures.append(f"{url}: checksum mismatch ({e})")
            except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as e:
                failures.append(f"{url}: {type(e).__name__}: {getattr(e, 'reason', e)}")
        else:
            if mismatch is not None:
                raise DataError(mismatch[0], f"checksum mismatch: got {mismatch[1]}, expected {_expected(source)}; "
                                             f"the file was not saved")
            tried = "\n  ".join(failures)
            raise DataNotFoundError(
                f"dataset {name!r}: download of {source.filename} failed; this machine may have no network "
                f"access.\n  {tried}\nTo get the files by hand: {info.how_to_get}. Then pass --data-root DIR "
                f"(root=DIR) or set DELUSIVE_DATA=DIR.")
    if name == "cifar10":
        _extract_cifar(root / "cifar-10-python.tar.gz", target)
    return target


def _extract_cifar(tarball: Path, target: Path) -> None:
    """Extract exactly the known batch files of the tarball (no other member, no path from the archive)."""
    wanted = {f"cifar-10-batches-py/{n}" for n in (*TRAIN_FILES, *TEST_FILES, META_FILE)}
    try:
        with tarfile.open(tarball, mode="r:gz") as tar:
            for member in tar.getmembers():
                if member.name in wanted and member.isfile():
                    f = tar.extractfile(member)
                    if f is None:
                        raise DataError(tarball, f"cannot read member {member.name}")
                    atomic_write_bytes(target / Path(member.name).name, f.read())
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise DataError(tarball, f"cannot extract ({type(e).__name__}: {e})") from e
