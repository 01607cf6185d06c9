"""Built-in data sources: importing this package registers every one of them under its `data.source` name.

One module per family: bundled scikit-learn sets, two-digit overlays (multidigits), generated scenes, tables, image
folders/archives, CIFAR-10 pickles, npz, texts (text), numeric sequences (sequence) and generated waves (waves).
"""

from hydranet.data.sources import bundled, cifar10, image_folder, multidigits, npz, scenes, sequence, table, text, waves

__all__ = ["bundled", "cifar10", "image_folder", "multidigits", "npz", "scenes", "sequence", "table", "text", "waves"]
