"""The public Python API behind ``delusive``'s front door (``delusive/__init__.py`` re-exports it lazily).

Each function here works on your own ``nn.Module`` and your own data (tensors, a ``torch.utils.data.Dataset``
or ``DataLoader``, or an :class:`~delusive.data.ArrayDataset`) and is a thin shell over the same engine the
command line uses; docs/api.md shows each one in a runnable example.
"""
