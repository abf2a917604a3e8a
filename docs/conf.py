"""Sphinx configuration for pyrovi's documentation (Markdown pages through MyST-Parser).

Build: ``python -m sphinx -W --keep-going -b html docs docs/_build/html``.
"""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

import pyrovi  # noqa: E402

project = "pyrovi"
author = "the pyrovi authors"
copyright = "the pyrovi authors"
version = release = pyrovi.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", ".gitignore"]

# MyST: anchors for ### headings so pages can link to sections; $...$ math.
myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3

# Docstrings are Google style.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_attr_annotations = True

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_class_signature = "mixed"
autodoc_default_options = {"members": True, "show-inheritance": False}
# torch.nn.Module and PyroModule would otherwise contribute their whole API to every class.
autodoc_inherit_docstrings = False

html_theme = "furo"
html_title = f"pyrovi {release}"
html_static_path = []
