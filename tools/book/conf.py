"""Sphinx configuration of the book (`python tools/book.py` builds it; paths that depend on the build are passed in).

Renderer: Sphinx + myst-nb with execution off. myst-nb renders each notebook from its committed outputs (figures,
videos, tables, streams) and parses the markdown cells as MyST (so `$...$` / `$$...$$` math and links between
notebooks work); autodoc writes the API pages from the installed package itself (signatures and docstrings of
every name in each module's `__all__`); Furo gives the sidebar, prev/next links, search and a dark mode with
small, self-contained assets. Math is typeset by MathJax 3 served from the site itself (copied from the
`django-static-mathjax` wheel), so the book reads offline.
"""
project = "opensora-nb"
author = "opensora-nb contributors"
copyright = "2026 onwards, opensora-nb contributors"

extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.mathjax"]
root_doc = "index"
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
source_suffix = {".ipynb": "myst-nb", ".md": "myst-nb"}

# notebooks: never executed, rendered from their committed outputs
nb_execution_mode = "off"
nb_output_stderr = "show"
nb_merge_streams = True
nb_ipywidgets_js = {}  # the default loads require.js and the widget manager from a CDN
nb_render_image_options = {}
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
myst_dmath_double_inline = True

# API pages
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True  # defaults as written (`rng=random`), not their repr (a module's path)
autoclass_content = "both"
autodoc_mock_imports = []  # set by tools/book.py: optional packages that are not installed
autodoc_warningiserror = False

# math served from _static (tools/book.py copies MathJax there): no CDN
mathjax_path = "mathjax/tex-chtml-full.js"

html_theme = "furo"
html_title = "opensora-nb"
html_static_path = []  # set by tools/book.py: the staged _static folder (MathJax, book.css)
html_css_files = ["book.css"]
html_copy_source = False
html_show_sourcelink = False
html_show_sphinx = False
html_last_updated_fmt = None
html_theme_options = {"navigation_with_keys": True, "source_repository": "", "top_of_page_buttons": []}

suppress_warnings = ["myst.header", "mystnb.unknown_mime_type", "myst.xref_missing", "misc.highlighting_failure",
                     "toc.not_included"]


def _markdown_docstring(app, what, name, obj, options, lines):
    "The package's docstrings are written in markdown: `code` spans and |x| are not reStructuredText."
    import re
    for i, line in enumerate(lines):
        line = re.sub(r"(?<![`\\])`([^`\n]+)`(?![`_])", r"``\1``", line)
        lines[i] = re.sub(r"(?<![\\|])\|(?![|\s-]*$)", r"\\|", line) if "|" in line and not line.lstrip().startswith("|") else line


def setup(app):
    app.connect("autodoc-process-docstring", _markdown_docstring)
