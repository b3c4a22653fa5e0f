"""Print :class:`~adjit.show.terms.Term` trees as Unicode (terminal) or LaTeX.

Precedence, loosest first: sums/differences, reductions (Σ, max, Π, ...), products and
quotients, powers, transposes, atoms (names, calls, indexing ``x[:, 0]``).  A reduction reaches as far right as it can, so it
is parenthesized wherever something follows it.
"""
from __future__ import annotations

from ..ops.registry import REGISTRY
from .terms import Term

_PREC = {"add": 1.0, "sum": 1.5, "reduce": 1.5, "mul": 2.0, "div": 2.0, "neg": 2.0, "pow": 3.0,
         "T": 4.0}
_SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")
_LATEX_FUNCS = {"max": r"\max", "min": r"\min"}   # besides each op record's ``latex``
_LATEX_RELS = {"≥": r"\geq", "≤": r"\leq", "≠": r"\neq"}
_REDUCTIONS = ("sum", "reduce")


def _latex_of(shown: str) -> str | None:
    """The LaTeX an op record gives for the function the view writes as ``shown``."""
    return next((op.latex for op in REGISTRY.values()
                 if op.latex and op.shown_as == shown), None)


def prec(t: Term) -> float:
    if t.kind == "num" and isinstance(t.info, (int, float)) and t.info < 0:
        return 2.0
    return _PREC.get(t.kind, 5.0)


def number(v, latex: bool = False) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    text = str(v) if isinstance(v, int) else f"{v:.6g}"
    if "e" in text:
        mant, _, exp = text.partition("e")
        text = f"{mant}·10^{int(exp)}" if not latex else rf"{mant} \cdot 10^{{{int(exp)}}}"
    return text if latex else text.replace("-", "−")


class Printer:
    """``Printer(latex=False)(term)`` -> text."""

    def __init__(self, latex: bool = False):
        self.latex = latex

    def __call__(self, t: Term) -> str:
        return getattr(self, "_" + t.kind)(t)

    # -- helpers ----------------------------------------------------------------------------
    def paren(self, text: str) -> str:
        return rf"\left({text}\right)" if self.latex else f"({text})"

    def operand(self, t: Term, ok: bool) -> str:
        return self(t) if ok else self.paren(self(t))

    # -- atoms ------------------------------------------------------------------------------
    def _name(self, t):
        return t.info.latex() if self.latex else t.info.unicode()

    def _num(self, t):
        return number(t.info, self.latex)

    def _rel(self, t):
        a, b = (self(x) for x in t.args)
        rel = _LATEX_RELS.get(t.info, t.info) if self.latex else t.info
        return f"[{a} {rel} {b}]"

    def _call(self, t):
        fn, args = t.info, [self(a) for a in t.args]
        if isinstance(fn, tuple):              # ("const", shape) or ("T", perm)
            kind, extra = fn
            fn = "const" if kind == "const" else "transpose"
            args = args + [str(tuple(extra))] if kind == "T" else [str(tuple(extra))]
        if self.latex:
            if fn == "sqrt":
                return rf"\sqrt{{{args[0]}}}"
            if fn == "abs":
                return rf"\left|{args[0]}\right|"
            head = _LATEX_FUNCS.get(fn) or _latex_of(fn) or rf"\operatorname{{{fn}}}"
            if "{0}" in head:                  # a template: \lfloor {0} \rfloor, 2^{{{0}}}
                return head.format(*args)
            return head + self.paren(", ".join(args))
        if fn == "abs":
            return f"|{args[0]}|"
        if fn == "sqrt":
            return "√" + (args[0] if prec(t.args[0]) >= 5 else self.paren(args[0]))
        return fn + self.paren(", ".join(args))

    def _note(self, t):
        """A call with its attributes after a semicolon: ``concat(a, b; axis 1)``."""
        fn, note = t.info
        args = ", ".join(self(a) for a in t.args)
        if self.latex:
            head = _latex_of(fn) or rf"\operatorname{{{_tex_name(fn)}}}"
            return head + self.paren(rf"{args};\ \text{{{_tex_text(note)}}}")
        return f"{fn}({args}; {note.replace('-', '−')})"

    def _index(self, t):
        """numpy indexing: ``x[:, 0]``, ``E[ids]`` (an int part is an operand term)."""
        base, extra = t.args[0], t.args[1:]
        parts = []
        for p in t.info:
            if isinstance(p, int):
                parts.append(self(extra[p - 1]))
            elif self.latex:
                parts.append(p.replace(":", "{:}"))
            else:
                parts.append(p.replace("-", "−"))
        return f"{self.operand(base, prec(base) >= 5)}[{', '.join(parts)}]"

    # -- operators ------------------------------------------------------------------------------
    def _add(self, t):
        a, b = t.args
        left = self.operand(a, prec(a) >= 1 and a.kind not in _REDUCTIONS)
        sign = t.info
        if b.kind == "neg":                      # a + (−b) reads a − b
            b, sign = b.args[0], "-" if sign == "+" else "+"
        right = self.operand(b, prec(b) > 1 if sign == "-" else prec(b) >= 1)
        op = sign if self.latex else {"-": "−", "+": "+"}[sign]
        return f"{left} {op} {right}"

    def _mul(self, t):
        a, b = t.args
        left = self.operand(a, prec(a) >= 2 and not _mixed(a, t))
        right_ok = (prec(b) > 2 or (b.kind == "div" and t.info != "matmul" and not self.latex)
                    or (b.kind == "mul" and not _mixed(b, t)))  # products associate
        if self.latex and b.kind == "div":
            right_ok = True                       # \frac is delimited
        right = self.operand(b, right_ok)
        if t.info == "hadamard":
            sep = r" \circ " if self.latex else " ∘ "
        elif t.info == "scale" and (b.kind == "num" or _ends_in_div(a) and not self.latex
                                    or right[:1].isdigit() or right[:1] in "−-"):
            sep = r" \cdot " if self.latex else " · "
        else:
            sep = " "                            # juxtaposition (TeX ignores the space)
        return left + sep + right

    def _div(self, t):
        a, b = t.args
        if self.latex:
            if a.kind == "mul" and a.info == "scale" and a.args[0].kind == "num":
                c, a = a.args                    # 0.5 Σ v / B: the coefficient before \frac
                return rf"{self(c)} \frac{{{self(a)}}}{{{self(b)}}}"
            return rf"\frac{{{self(a)}}}{{{self(b)}}}"
        left = self.operand(a, prec(a) >= 2)
        return f"{left} / {self.operand(b, prec(b) > 2)}"

    def _neg(self, t):
        (a,) = t.args
        ok = (prec(a) >= 2 and a.kind != "neg" and not (a.kind == "num" and prec(a) == 2)
              or a.kind in _REDUCTIONS)
        return ("-" if self.latex else "−") + self.operand(a, ok)

    def _pow(self, t):
        a, b = t.args
        base = self.operand(a, prec(a) > 3)
        if self.latex:
            return f"{{{base}}}^{{{self(b)}}}"
        if b.kind == "num" and isinstance(b.info, int) and 0 <= b.info < 100:
            return base + str(b.info).translate(_SUPERSCRIPT)
        return base + "^" + self.operand(b, prec(b) >= 5)

    def _T(self, t):
        base = self.operand(t.args[0], prec(t.args[0]) >= 5)
        return f"{{{base}}}^{{\\top}}" if self.latex else base + "ᵀ"

    def _reduction(self, t, symbol_u, symbol_l, axes):
        (a,) = t.args
        if self.latex:
            sub = "" if axes is None else "_{" + ",".join(
                rf"\text{{axis }}{p[4:]}" if p.startswith("axis") else
                r"\text{batch}" if p == "batch" else p
                for p in axes.split(",")) + "}"
            return f"{symbol_l}{sub} {self.operand(a, _reduce_ok(a))}"
        sub = "" if axes is None else "_" + axes
        return f"{symbol_u}{sub} {self.operand(a, _reduce_ok(a))}"

    def _sum(self, t):
        return self._reduction(t, "Σ", r"\sum", t.info)

    def _reduce(self, t):
        fn, head, axes = t.info
        return self._reduction(t, fn, head or rf"\operatorname{{{_tex_name(fn)}}}", axes)


def _mixed(inner: Term, outer: Term) -> bool:
    """A matrix product next to another kind of product gets parentheses (a matrix product
    does not associate with an elementwise one, and ``A 2 v`` reads badly)."""
    return (inner.kind == "mul" and inner.info != outer.info
            and "matmul" in (inner.info, outer.info))


def _ends_in_div(t: Term) -> bool:
    """``a / b`` at the right end of ``t``: juxtaposing after it would read as dividing more."""
    return (t.kind == "div" or (t.kind == "mul" and _ends_in_div(t.args[1]))
            or (t.kind == "neg" and _ends_in_div(t.args[0])))


def _reduce_ok(operand: Term) -> bool:
    """What a Σ or max reaches over without parentheses: products, quotients, negations."""
    return prec(operand) >= 2 or operand.kind in _REDUCTIONS


def _tex_name(fn: str) -> str:
    return fn.replace("_", r"\_")


def _tex_text(note: str) -> str:
    """A note inside ``\\text{}``: ``_`` escaped, ``×`` (``kernel 3×3``) set in math."""
    return note.replace("_", r"\_").replace("×", r"}\times\text{")
