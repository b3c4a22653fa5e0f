"""Logistic least squares with L2 regularization, all scalars (the lecture's first backprop example).

    z = w x + b,   y = σ(z),   L = ½ (y − t)²,   R = ½ w²,   L_reg = L + λ R

Its backward pass in the lecture's notation is L̄_reg = 1, R̄ = L̄_reg λ, L̄ = L̄_reg,
ȳ = L̄ (y − t), z̄ = ȳ σ′(z), w̄ = z̄ x + R̄ w, b̄ = z̄.
"""
import adjit as aj

w = aj.param("w", ())
b = aj.param("b", ())
x = aj.input("x", ())
t = aj.input("t", ())
lam = 0.1

z = w * x + b
y = aj.sigmoid(z)
L = 0.5 * (y - t) ** 2
R = 0.5 * w ** 2
L_reg = L + lam * R

loss = L_reg
wrt = [w, b]
example = {"w": 0.7, "b": -0.3, "x": 1.5, "t": 1.0}
