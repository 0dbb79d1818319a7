"""Files from untrusted sources: a poison artifact, a PNG folder to import, an image-folder dataset and a
crafting checkpoint are read only as regular files inside their own folder, every refusal names the
offending entry before anything is read, a half-written artifact never passes as complete, and files are
written with the user's umask."""

import contextlib
import json
import os
import re
import signal
import stat

import numpy as np
import pytest

from data_fixtures import write_png
from delusive.attacks import artifact as artifact_mod
from delusive.attacks import build_artifact, create_attack, export_png, import_poison, load_artifact, save_artifact
from delusive.attacks.artifact import payload_hash, verify_artifact
from delusive.attacks.resume import CraftCheckpoint
from delusive.data import make_synthetic
from delusive.data.catalog import load_dataset
from delusive.data.errors import DataError
from delusive.threat import LinfBall
from delusive.utils import atomic_write_bytes, atomic_write_json
from delusive.utils.io import current_umask

EPS = LinfBall(0.1)


@contextlib.contextmanager
def deadline(seconds=10):
    """Fail (instead of hanging the suite) if the body blocks, e.g. reading a FIFO or /dev/zero."""

    def boom(*_):
        raise TimeoutError(f"blocked for more than {seconds}s")

    old = signal.signal(signal.SIGALRM, boom)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="module")
def small():
    return make_synthetic(40, num_classes=4, shape=(1, 8, 8), seed=0)


@pytest.fixture
def art_dir(small, tmp_path):
    res = create_attack("P5").craft(small, EPS, None, seed=0)
    art = build_artifact(small, res.x, EPS, attack="P5", attack_params={}, dataset="synthetic", seed=0,
                         class_deltas=res.class_deltas)
    return save_artifact(art, tmp_path / "art")


def _rewrite_manifest(d, edit, rehash=True):
    m = json.loads((d / "manifest.json").read_text())
    edit(m)
    if rehash:  # an attacker who re-computes the (unkeyed) payload hash
        m["payload_sha256"] = payload_hash(m["files"], m)
    (d / "manifest.json").write_text(json.dumps(m))


@pytest.fixture
def no_payload_read(monkeypatch):
    """Records every payload file the loader reads; the refusals below must happen before any is read."""
    seen = []
    real = artifact_mod._read_npy
    monkeypatch.setattr(artifact_mod, "_read_npy", lambda p: seen.append(p) or real(p))
    return seen


# ---------------------------------------------------------------- manifest 'files' entries


@pytest.mark.parametrize(("entry", "why"), [
    ("/etc/passwd", "is an absolute path"),
    ("/dev/zero", "is an absolute path"),
    ("../outside/images.npy", "contains '..'"),
    ("sub/../images.npy", "contains '..'"),
    ("notes.txt", "is not a payload file of a poison artifact"),
])
def test_manifest_entries_outside_the_payload_are_refused_before_reading(art_dir, tmp_path, entry, why,
                                                                         no_payload_read):
    outside = tmp_path / "outside"
    outside.mkdir()
    os.mkfifo(outside / "images.npy")  # reading it would block: the refusal must come first
    _rewrite_manifest(art_dir, lambda m: m["files"].__setitem__(entry, "0" * 64))
    for call in (lambda: load_artifact(art_dir), lambda: verify_artifact(art_dir, None)):
        with deadline(), pytest.raises(ValueError) as e:
            call()
        msg = str(e.value)
        assert msg.startswith(str(art_dir / "manifest.json")) and repr(entry) in msg and why in msg, msg
        assert "\n" not in msg
    assert no_payload_read == []


def test_an_untampered_artifact_loads_and_verifies(art_dir, small, no_payload_read):
    """Control for the refusals: the same artifact, unedited, is read and passes."""
    art = load_artifact(art_dir)
    assert sorted(p.name for p in no_payload_read) == ["class_deltas.npy", "images.npy", "labels.npy"]
    assert verify_artifact(art, small).ok and verify_artifact(art_dir, small).ok


def test_payload_symlink_to_dev_zero_is_not_a_regular_file(art_dir):
    (art_dir / "images.npy").unlink()
    (art_dir / "images.npy").symlink_to("/dev/zero")
    with deadline(), pytest.raises(ValueError, match=r"images\.npy: not a regular file: a character device") as e:
        load_artifact(art_dir)
    assert "pickle" not in str(e.value)


def test_payload_fifo_is_refused_without_blocking(art_dir):
    (art_dir / "labels.npy").unlink()
    os.mkfifo(art_dir / "labels.npy")
    with deadline(), pytest.raises(ValueError, match=r"labels\.npy: not a regular file: a FIFO"):
        load_artifact(art_dir)
    (art_dir / "labels.npy").unlink()
    (art_dir / "manifest.json").unlink()
    os.mkfifo(art_dir / "manifest.json")
    with deadline(), pytest.raises(ValueError, match=r"manifest\.json: not a regular file: a FIFO"):
        load_artifact(art_dir)


def test_payload_symlinks_may_not_leave_the_artifact(art_dir, small, tmp_path):
    copy = tmp_path / "copy.npy"
    copy.write_bytes((art_dir / "images.npy").read_bytes())  # identical bytes: only the location is wrong
    (art_dir / "images.npy").unlink()
    (art_dir / "images.npy").symlink_to(copy)
    with pytest.raises(ValueError, match=rf"images\.npy: payload file 'images.npy' resolves to .*copy\.npy, "
                                         rf"outside {re.escape(str(art_dir))}"):
        load_artifact(art_dir)
    # control: a symlink that stays inside the artifact folder is followed
    (art_dir / "store").mkdir()
    (art_dir / "store" / "images.npy").write_bytes(copy.read_bytes())
    (art_dir / "images.npy").unlink()
    (art_dir / "images.npy").symlink_to("store/images.npy")
    assert verify_artifact(art_dir, small).ok


@pytest.mark.parametrize(("text", "match"), [
    ('{"format": "delusive-poison/1", "files": {', "invalid JSON"),
    (None, "invalid JSON .*NaN is not a JSON number"),
])
def test_invalid_manifest_json_names_the_manifest(art_dir, text, match):
    if text is None:
        text = (art_dir / "manifest.json").read_text().replace('"eps": 0.1', '"eps": NaN')
        assert "NaN" in text
    (art_dir / "manifest.json").write_text(text)
    with pytest.raises(ValueError, match=rf"^{re.escape(str(art_dir / 'manifest.json'))}: {match}"):
        load_artifact(art_dir)


@pytest.mark.parametrize("eps", ["-1", "abc", [1]])
def test_bad_eps_in_the_manifest_names_the_manifest(art_dir, eps):
    _rewrite_manifest(art_dir, lambda m: m["threat"].__setitem__("eps_text", eps))
    with pytest.raises(ValueError, match=rf"^{re.escape(str(art_dir / 'manifest.json'))}: threat: eps.*"
                                         rf"{re.escape(repr(eps) if isinstance(eps, list) else eps)}"):
        load_artifact(art_dir)


def test_payload_header_must_match_the_file_size(art_dir):
    data = (art_dir / "labels.npy").read_bytes()
    (art_dir / "labels.npy").write_bytes(data[:-8])  # one label short: the header promises more
    with pytest.raises(ValueError, match=r"labels\.npy: not a plain \.npy array \(header says"):
        load_artifact(art_dir)


# ---------------------------------------------------------------- writing: the manifest marks completeness


def test_rewrite_invalidates_the_manifest_first_and_writes_it_last(art_dir, small, monkeypatch):
    res = create_attack("P5").craft(small, EPS, None, seed=1)
    art = build_artifact(small, res.x, EPS, attack="P5", attack_params={}, dataset="synthetic", seed=1)
    order = []

    def spy_bytes(path, data):
        order.append((path.name, (art_dir / "manifest.json").exists()))
        if path.name == "labels.npy":
            raise OSError(28, "No space left on device")
        atomic_write_bytes(path, data)

    monkeypatch.setattr(artifact_mod, "atomic_write_bytes", spy_bytes)
    with pytest.raises(OSError, match="No space left"):
        save_artifact(art, art_dir)
    assert order[0] == ("images.npy", False)  # the old manifest was gone before the first payload byte
    with pytest.raises(FileNotFoundError, match="not a poison artifact"):
        load_artifact(art_dir)  # half-written: never passes as complete
    monkeypatch.setattr(artifact_mod, "atomic_write_bytes", atomic_write_bytes)
    json_writes = []
    monkeypatch.setattr(artifact_mod, "atomic_write_json",
                        lambda p, o: json_writes.append(sorted(x.name for x in art_dir.iterdir())) or
                        atomic_write_json(p, o))
    save_artifact(art, art_dir)
    assert json_writes == [["images.npy", "labels.npy"]]  # manifest last; the stale class_deltas.npy removed
    assert verify_artifact(art_dir, small).ok


def test_files_follow_the_umask(tmp_path, art_dir):
    old = os.umask(0o027)
    try:
        assert current_umask() == 0o027
        atomic_write_bytes(tmp_path / "a.bin", b"x")
        assert stat.S_IMODE(os.stat(tmp_path / "a.bin").st_mode) == 0o640
        os.umask(0o002)
        atomic_write_json(tmp_path / "b.json", {"k": 1})
        assert stat.S_IMODE(os.stat(tmp_path / "b.json").st_mode) == 0o664
        art = load_artifact(art_dir)
        save_artifact(art, tmp_path / "again")
        modes = {p.name: stat.S_IMODE(os.stat(p).st_mode) for p in (tmp_path / "again").iterdir()}
        assert set(modes.values()) == {0o664}, modes
    finally:
        os.umask(old)


# ---------------------------------------------------------------- crafting checkpoints


def test_craft_checkpoint_deletes_only_its_own_files(tmp_path):
    mine = tmp_path / "craft_notes.txt"
    mine.write_text("the user's file, named like a checkpoint")
    ck = CraftCheckpoint(tmp_path, "run-1")
    ck.save({"partial": np.zeros(3, np.float32)}, done=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["craft_notes.txt", "craft_partial.npy",
                                                          "craft_state.json"]
    arrays, state = CraftCheckpoint(tmp_path, "run-1").load()
    assert state["done"] == 1 and arrays["partial"].shape == (3,)
    CraftCheckpoint(tmp_path, "run-1").clear()  # a fresh object: clears what the state file lists
    assert sorted(p.name for p in tmp_path.iterdir()) == ["craft_notes.txt"]


def test_craft_checkpoint_refuses_names_that_leave_its_folder(tmp_path):
    (tmp_path / "craft_state.json").write_text(json.dumps({"identity": "run-1", "arrays": ["../../x"]}))
    with pytest.raises(ValueError, match=r"craft_state\.json: crafting checkpoint: array name '\.\./\.\./x'"):
        CraftCheckpoint(tmp_path, "run-1").load()
    (tmp_path / "craft_state.json").write_text(json.dumps({"identity": "run-1", "arrays": ["p"]}))
    os.mkfifo(tmp_path / "craft_p.npy")
    with deadline(), pytest.raises(ValueError, match=r"craft_p\.npy: not a regular file: a FIFO"):
        CraftCheckpoint(tmp_path, "run-1").load()


# ---------------------------------------------------------------- PNG import


@pytest.fixture
def png_dir(small, tmp_path, art_dir):
    export_png(art_dir, tmp_path / "png")
    return tmp_path / "png"


def _rows(png, rows):
    (png / "labels.csv").write_text("filename,label\n" + "".join(f"{f},{y}\n" for f, y in rows))


def test_png_import_refuses_rows_outside_the_folder(small, png_dir, tmp_path):
    rows = [(f"{i:06d}.png", int(small.y[i])) for i in range(len(small))]
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "000007.png").write_bytes((png_dir / "000007.png").read_bytes())
    for bad, why in ((str(tmp_path / "elsewhere" / "000007.png"), "is an absolute path"),
                     ("../elsewhere/000007.png", "contains '..'")):
        _rows(png_dir, [r if i != 7 else (bad, r[1]) for i, r in enumerate(rows)])
        with pytest.raises(ValueError, match=rf"labels\.csv: line 9: filename '{re.escape(bad)}' {why}"):
            import_poison(png_dir, small, EPS, dataset="synthetic")
    # a symlink that leaves the folder, and a FIFO, are refused as files
    _rows(png_dir, rows)
    (png_dir / "000007.png").unlink()
    (png_dir / "000007.png").symlink_to(tmp_path / "elsewhere" / "000007.png")
    with pytest.raises(ValueError, match=r"000007\.png: labels\.csv line 9: file '000007\.png' resolves to"):
        import_poison(png_dir, small, EPS, dataset="synthetic")
    (png_dir / "000007.png").unlink()
    os.mkfifo(png_dir / "000007.png")
    with deadline(), pytest.raises(ValueError, match=r"000007\.png: not a regular file: a FIFO"):
        import_poison(png_dir, small, EPS, dataset="synthetic")
    # control: the regular file back in place imports
    (png_dir / "000007.png").unlink()
    (png_dir / "000007.png").write_bytes((tmp_path / "elsewhere" / "000007.png").read_bytes())
    assert len(import_poison(png_dir, small, EPS, dataset="synthetic").labels) == len(small)


def test_png_import_names_duplicate_and_missing_indices(small, png_dir):
    rows = [(f"{i:06d}.png", int(small.y[i])) for i in range(len(small))]
    dup = [r if i != 5 else rows[4] for i, r in enumerate(rows)]  # 000004 twice, 000005 missing
    _rows(png_dir, dup)
    with pytest.raises(ValueError, match=r"labels\.csv: line 7: duplicate index 4 \(000004\.png\); line 6 already"):
        import_poison(png_dir, small, EPS, dataset="synthetic")
    _rows(png_dir, rows[:5] + rows[6:])
    with pytest.raises(ValueError, match=r"1 training index\(es\) have no row in labels\.csv, e\.g\. \[5\]"):
        import_poison(png_dir, small, EPS, dataset="synthetic")


def test_png_import_names_a_corrupt_image(small, png_dir):
    (png_dir / "000003.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    with pytest.raises(ValueError, match=r"000003\.png: not a readable image"):
        import_poison(png_dir, small, EPS, dataset="synthetic")


# ---------------------------------------------------------------- image-folder datasets


def _classes(root, names=("cat", "dog")):
    for k, c in enumerate(names):
        for i in range(2):
            write_png(root / c / f"{i}.png", np.full((4, 4), 10 * k + i, np.uint8))
    return f"folder:{root}"


def test_image_folder_empty_class_is_an_error_naming_it(tmp_path):
    name = _classes(tmp_path)
    assert len(load_dataset(name, "train")) == 4  # control
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match=rf"^{re.escape(str(tmp_path / 'empty'))}: class folder 'empty' holds no"):
        load_dataset(name, "train")


def test_image_folder_refuses_a_symlink_to_dev_zero(tmp_path):
    name = _classes(tmp_path)
    (tmp_path / "cat" / "z.png").symlink_to("/dev/zero")
    with deadline(), pytest.raises(DataError, match=r"z\.png: not a regular file: a character device"):
        load_dataset(name, "train")


def test_image_folder_decompression_bomb_and_corrupt_image_name_the_file(tmp_path, monkeypatch):
    from PIL import Image

    name = _classes(tmp_path)
    big = tmp_path / "dog" / "big.png"
    write_png(big, np.zeros((8, 8), np.uint8))
    with pytest.raises(DataError, match=r"big\.png: size 8×8"):  # control: under PIL's limit it is decoded
        load_dataset(name, "train")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20)  # the 4×4 images pass; 64 pixels > 2 × 20: PIL's bomb error
    with pytest.raises(DataError, match=r"big\.png: refused as a possible decompression bomb"):
        load_dataset(name, "train")
    monkeypatch.undo()
    big.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\1" * 30)
    with pytest.raises(DataError, match=r"big\.png: not a readable image"):
        load_dataset(name, "train")
