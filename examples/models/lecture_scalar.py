"""The lecture's scalar function f(x1, x2) = ln x1 + x1·x2 − sin x2, differentiated w.r.t. its inputs.

At (x1, x2) = (2, 5) the adjoint trace gives x̄1 = 1/x1 + x2 = 5.5 and
x̄2 = x1 − cos x2 ≈ 1.716.  Try:  adjit explain examples/models/lecture_scalar.py --example
"""
import adjit as aj

x1 = aj.input("x1", ())
x2 = aj.input("x2", ())
f = aj.log(x1) + x1 * x2 - aj.sin(x2)

loss = f
wrt = [x1, x2]
example = {"x1": 2.0, "x2": 5.0}
