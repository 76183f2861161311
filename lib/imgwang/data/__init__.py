"""Datasets: Imagewang download, folder layouts, the sample generator, the decode-once cache, loaders."""
