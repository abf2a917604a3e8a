"""Names of the image data sets :func:`pyrovi.data.load_dataset` knows (no heavy imports)."""

DATASETS = ("digits", "fashion-mnist", "mnist")
