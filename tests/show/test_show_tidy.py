"""Display-level algebra (adjit.show.tidy): numbers multiplied out, the value unchanged."""
from __future__ import annotations

import math

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from adjit.show.names import Name
from adjit.show.render import Printer
from adjit.show.terms import Term, name, num
from adjit.show.tidy import tidy

ENV = {"a": 0.7, "b": -1.3, "c": 2.9, "B": 32.0}
a, b, c, B = (name(Name(s)) for s in "abcB")


def value(t: Term) -> float:
    """A scalar reading of a displayed term (Σ of a scalar is itself): test-only, to check
    that tidying keeps the value."""
    if t.kind == "name":
        return ENV[t.info.base]
    if t.kind == "num":
        return float(t.info)
    xs = [value(x) for x in t.args]
    if t.kind == "add":
        return xs[0] + xs[1] if t.info == "+" else xs[0] - xs[1]
    if t.kind == "mul":
        return xs[0] * xs[1]
    if t.kind == "div":
        return xs[0] / xs[1]
    if t.kind == "pow":
        return xs[0] ** xs[1]
    if t.kind == "neg":
        return -xs[0]
    if t.kind == "sum":
        return xs[0]
    if t.kind == "call" and t.info == "sin":
        return math.sin(xs[0])
    raise AssertionError(t.kind)


def u(t: Term) -> str:
    return Printer()(tidy(t))


def mul(x, y, kind="scale"):
    return Term("mul", (x, y), kind)


def div(x, y):
    return Term("div", (x, y), "/")


def sub(x, y):
    return Term("add", (x, y), "-")


@pytest.mark.parametrize("term, text", [
    (mul(mul(div(mul(a, num(0.5)), B), num(2)), Term("pow", (sub(b, c), sub(num(2), num(1))), "^")),
     "a (b − c) / B"),                                    # the MLP's ȳ as traced
    (mul(a, num(0.1)), "0.1 a"),                          # coefficient first
    (mul(num(1), a), "a"),                                # 1 x -> x
    (Term("pow", (a, num(1)), "^"), "a"),                 # x^1 -> x
    (Term("pow", (a, sub(num(3), num(1))), "^"), "a²"),   # exponent folded
    (mul(Term("neg", (div(a, B),)), c), "−a c / B"),      # sign in front, / B at the end
    (Term("sum", (Term("neg", (a,)),), "axis1"), "−Σ_axis1 a"),   # Σ is linear
    (div(mul(num(2), a), num(3)), "2 a / 3"),             # exact ratios stay exact
    (mul(div(num(1), num(3)), num(3)), "1"),
    (Term("add", (a, num(-2)), "+"), "a − 2"),
    (Term("add", (mul(num(1), Term("call", (a,), "sin")), mul(num(1), Term("call", (a,), "sin"))),
           "+"), "sin(a) + sin(a)"),                      # contributions stay separate
    (mul(mul(a, num(2)), b, "matmul"), "(2 a) b"),        # a matrix product is a boundary
])
def test_tidy_known_cases(term, text):
    assert u(term) == text
    assert value(tidy(term)) == pytest.approx(value(term), rel=1e-12)


def test_tidy_keeps_hadamard_and_matmul_structure():
    had = mul(mul(a, num(0.5), "scale"), mul(b, num(2)), "hadamard")
    assert u(had) == "a ∘ b"
    mm = mul(mul(num(2), a), mul(b, num(3)), "matmul")    # operands tidied, not merged
    assert u(mm) == "(2 a) (3 b)"
    assert tidy(Term("T", (mm,))).args[0] == tidy(mm)


def test_zero_and_non_finite_numbers_are_not_dropped():
    assert u(mul(num(0), a)) == "0 a"                     # 0 · x is not shown as 0
    assert u(mul(num(float("inf")), num(0))) == "0 · inf"    # not folded to nan


NUMS = st.sampled_from([0.5, 2, -1, 3, 0.1, 1, 1.5])
LEAVES = st.one_of(st.sampled_from([a, b, c, B]), NUMS.map(num))


def _grow(children):
    return st.one_of(
        st.tuples(children, children, st.sampled_from(["+", "-"])).map(
            lambda t: Term("add", t[:2], t[2])),
        st.tuples(children, children, st.sampled_from(["scale", "hadamard", "matmul"])).map(
            lambda t: Term("mul", t[:2], t[2])),
        st.tuples(children, children).map(lambda t: Term("div", t, "/")),
        children.map(lambda x: Term("neg", (x,))),
        children.map(lambda x: Term("sum", (x,), "batch")),
        st.tuples(children, st.sampled_from([0, 1, 2, 3])).map(
            lambda t: Term("pow", (t[0], sub(num(t[1] + 1), num(1))), "^")),
    )


@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")  # large reprs
@settings(max_examples=300, deadline=None)
@given(st.recursive(LEAVES, _grow, max_leaves=12))
# several denominators: built (3 a) a, which a second tidy rewrote as 3 (a a)
@example(Term("neg", (Term("sum", (Term("div", (Term("div", (num(2), a), "/"),
                                                Term("mul", (a, num(3)), "scale")), "/"),),
                           "batch"),)))
def test_tidy_keeps_the_value(term):
    try:
        want = value(term)
    except (ZeroDivisionError, OverflowError):
        assume(False)
    assume(math.isfinite(want))
    got = value(tidy(term))
    assert got == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert tidy(tidy(term)) == tidy(term)                 # one walk reaches the fixed point
    Printer()(tidy(term)), Printer(latex=True)(tidy(term))   # prints in both forms
