"""Ways to look at graphs and compiled functions.

* :func:`listing` -- one line per node (stable id, op, operands, type, name);
* :func:`equations` -- forward and backward equations in backprop notation
  (Unicode, LaTeX, Markdown);
* :func:`trace` -- a worked example: primal then adjoint trace with numbers;
* :func:`report` -- the simplification report (rewrites, node counts, expression swell);
* :func:`dot` / :func:`render` -- Graphviz pictures (rendered by the ``dot`` program, or
  drawn with matplotlib when it is missing);
* :func:`load_model` / :func:`name_nodes` -- model files and display names.

See docs/reading-derivatives.md for how to read each view.
"""
from .dot import GraphvizMissing, dot, render
from .equations import Equations, equations
from .modelfile import Model, ModelFileError, load_model, name_nodes
from .report import report, tree_size
from .text import graph_listing, listing
from .trace import Trace, trace

from ..ir import VIEWS
from .dot import svg as _svg

# the views the IR and compiled functions print with (they never import this package)
VIEWS.update(listing=graph_listing, svg=_svg, report=report, equations=equations, trace=trace,
             dot=dot)

__all__ = ["Equations", "GraphvizMissing", "Model", "ModelFileError", "Trace", "dot",
           "equations", "graph_listing", "listing", "load_model", "name_nodes", "render",
           "report", "trace", "tree_size"]
