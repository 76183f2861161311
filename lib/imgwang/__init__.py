"""imgwang: self-supervised pretraining on unlabelled images, transfer, honest evaluation."""

import sys

__version__ = "0.1.0"

# jsonschema (under nbformat, papermill and scrapbook, which every stage process and kernel imports) imports
# rfc3987_syntax whenever it is installed (jupyterlab's jupyter-events brings it) only to check "iri" strings,
# which no notebook schema has; that import compiles 38 grammars, ~2 s in each process. Marked absent (unless
# something imported it already), jsonschema leaves out that one format checker.
sys.modules.setdefault("rfc3987_syntax", None)
