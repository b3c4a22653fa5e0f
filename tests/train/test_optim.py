"""Optimizer updates compiled into the step, checked against numpy step for step (float64)."""
import numpy as np
import pytest

import adjit as aj
from adjit import optim

BACKENDS = [("interp", {}), ("llvm", {"opt_level": 1})]


def model():
    x, t = aj.input("x", (None, 3)), aj.input("t", (None, 2))
    W, b = aj.param("W", (3, 2)), aj.param("b", (2,))
    return aj.mse(aj.tanh(x @ W + b), t), (x, t), [W, b]


def numpy_loss_and_grads(X, T, W, b):
    """The model's loss and gradients, by hand (chain rule)."""
    y = np.tanh(X @ W + b)
    z_bar = 2.0 / y.size * (y - T) * (1 - y ** 2)
    return np.mean((y - T) ** 2), [X.T @ z_bar, z_bar.sum(axis=0)]


# --- numpy references, written from the update rules ---------------------------------------------
def sgd_ref(wd, mu=0.0, nesterov=False):
    def step(p, g, st, lr):
        g = g + wd * p
        if not mu:
            return p - lr * g
        st["v"] = mu * st.get("v", 0.0) + g
        return p - lr * (g + mu * st["v"] if nesterov else st["v"])
    return step


def adam_ref(wd, b1=0.9, b2=0.999, eps=1e-8):
    def step(p, g, st, lr):
        g = g + wd * p
        st["t"] = st.get("t", 0) + 1
        st["m"] = b1 * st.get("m", 0.0) + (1 - b1) * g
        st["v"] = b2 * st.get("v", 0.0) + (1 - b2) * g * g
        m_hat = st["m"] / (1 - b1 ** st["t"])
        v_hat = st["v"] / (1 - b2 ** st["t"])
        return p - lr * m_hat / (np.sqrt(v_hat) + eps)
    return step


CASES = {
    "sgd": (lambda ps: optim.SGD(ps, lr=0.3), sgd_ref(0.0)),
    "sgd+wd": (lambda ps: optim.SGD(ps, lr=0.3, weight_decay=0.05), sgd_ref(0.05)),
    "momentum": (lambda ps: optim.SGD(ps, lr=0.2, momentum=0.9), sgd_ref(0.0, 0.9)),
    "nesterov+wd": (lambda ps: optim.SGD(ps, lr=0.2, momentum=0.8, nesterov=True,
                                         weight_decay=0.01), sgd_ref(0.01, 0.8, True)),
    "adam": (lambda ps: optim.Adam(ps, lr=0.05), adam_ref(0.0)),
    "adam+wd+betas": (lambda ps: optim.Adam(ps, lr=0.05, betas=(0.8, 0.99), eps=1e-6,
                                            weight_decay=0.1), adam_ref(0.1, 0.8, 0.99, 1e-6)),
    "adam+step": (lambda ps: optim.Adam(ps, lr=optim.StepDecay(0.1, step_size=2, gamma=0.5)),
                  adam_ref(0.0)),
    "momentum+exp": (lambda ps: optim.SGD(ps, lr=optim.ExponentialDecay(0.3, gamma=0.7),
                                          momentum=0.5), sgd_ref(0.0, 0.5)),
}


@pytest.mark.parametrize("backend,opts", BACKENDS)
@pytest.mark.parametrize("case", list(CASES))
def test_updates_match_numpy_step_for_step(case, backend, opts):
    make, ref_step = CASES[case]
    loss, _, params = model()
    opt = make(params)
    grads = aj.grad(loss, params)
    f = aj.compile([loss] + grads, backend=backend, updates=opt.updates(grads=grads), **opts)
    rng = np.random.default_rng(3)
    P = {"W": rng.normal(size=(3, 2)), "b": rng.normal(size=2) * 0.1}
    ref = {k: v.copy() for k, v in P.items()}
    ref_state = {"W": {}, "b": {}}
    schedule = opt.schedule
    for step in range(7):
        epoch = step // 2                       # two steps per "epoch"
        lr = opt.start_epoch(epoch)
        assert lr == pytest.approx(schedule(epoch), rel=1e-15)
        X, T = rng.normal(size=(4 + step, 3)), rng.normal(size=(4 + step, 2)) * 0.5
        L, gW, gb = f(x=X, t=T, **P, **opt.state)
        L_ref, g_ref = numpy_loss_and_grads(X, T, ref["W"], ref["b"])
        np.testing.assert_allclose(L, L_ref, rtol=1e-12)      # taken before the update
        np.testing.assert_allclose(gW, g_ref[0], rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(gb, g_ref[1], rtol=1e-10, atol=1e-14)
        for k, g in zip(("W", "b"), g_ref):
            ref[k] = ref_step(ref[k], g, ref_state[k], lr)
            np.testing.assert_allclose(P[k], ref[k], rtol=1e-10, atol=1e-13,
                                       err_msg=f"{k} after step {step}")
            for s, value in ref_state[k].items():
                if s == "t":
                    assert float(opt.state[f"{opt.name}_t"]) == value
                else:
                    np.testing.assert_allclose(opt.state[f"{opt.name}_{s}_{k}"], value,
                                               rtol=1e-10, atol=1e-14)


def test_learning_rate_changes_without_recompiling():
    loss, _, params = model()
    opt = optim.SGD(params, lr=0.5)
    f = aj.compile(loss, backend="interp", updates=opt.updates(loss))
    X, T = np.ones((2, 3)), np.zeros((2, 2))
    P = {"W": np.full((3, 2), 0.1), "b": np.zeros(2)}
    _, (gW, _) = numpy_loss_and_grads(X, T, P["W"], P["b"])
    opt.lr = 0.0
    before = P["W"].copy()
    f(x=X, t=T, **P, **opt.state)
    np.testing.assert_array_equal(P["W"], before)              # lr 0: nothing moves
    opt.lr = 0.25
    f(x=X, t=T, **P, **opt.state)
    np.testing.assert_allclose(P["W"], before - 0.25 * gW, rtol=1e-14)


def test_float32_parameters_keep_their_dtype():
    x, t = aj.input("x", (None, 3), dtype="float32"), aj.input("t", (None, 2), dtype="float32")
    W = aj.param("W", (3, 2), dtype="float32")
    loss = aj.mse(x @ W, t)
    opt = optim.Adam([W], lr=0.01)
    f = aj.compile(loss, backend="llvm", opt_level=1, updates=opt.updates(loss))
    assert opt.state["adam_m_W"].dtype == np.float32 and opt.state["adam_lr"].dtype == np.float32
    rng = np.random.default_rng(0)
    Wv = rng.normal(size=(3, 2)).astype(np.float32)
    W64, st = Wv.astype(np.float64), {}
    ref = adam_ref(0.0)
    for _ in range(3):
        X, T = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
        f(x=X, t=T, W=Wv, **opt.state)
        X32, T32 = X.astype(np.float32).astype(np.float64), T.astype(np.float32).astype(np.float64)
        W64 = ref(W64, X32.T @ (2.0 / T.size * (X32 @ W64 - T32)), st, 0.01)
    np.testing.assert_allclose(Wv, W64, rtol=1e-4)


def test_state_is_owned_by_the_optimizer_and_reset():
    loss, _, params = model()
    opt = optim.Adam(params, lr=0.1, name="opt1")
    assert sorted(opt.state) == ["opt1_lr", "opt1_m_W", "opt1_m_b", "opt1_t", "opt1_v_W",
                                 "opt1_v_b"]
    f = aj.compile(loss, backend="interp", updates=opt.updates(loss))
    P = {"W": np.ones((3, 2)), "b": np.zeros(2)}
    for _ in range(2):
        f(x=np.ones((2, 3)), t=np.zeros((2, 2)), **P, **opt.state)
    assert opt.step_count == 2 and np.any(opt.state["opt1_m_W"] != 0)
    opt.lr = 0.5
    opt.reset()
    assert opt.step_count == 0 and opt.lr == 0.1
    assert not np.any(opt.state["opt1_m_W"]) and not np.any(opt.state["opt1_v_b"])


def test_updates_can_be_built_twice_with_the_same_state():
    loss, _, params = model()
    opt = optim.SGD(params, lr=0.1, momentum=0.9)
    first, second = opt.updates(loss), opt.updates(loss)
    assert [k.name for k in first] == [k.name for k in second]
    assert sorted(opt.state) == ["sgd_lr", "sgd_v_W", "sgd_v_b"]


def test_schedules_by_hand():
    s = optim.StepDecay(0.1, step_size=3, gamma=0.5)
    assert [s(e) for e in range(7)] == pytest.approx([0.1] * 3 + [0.05] * 3 + [0.025])
    e = optim.ExponentialDecay(2.0, gamma=0.5)
    assert [e(k) for k in range(4)] == pytest.approx([2.0, 1.0, 0.5, 0.25])
    assert optim.SGD([aj.param("w", ())], lr=lambda ep: 1.0 / (ep + 1)).start_epoch(3) == 0.25


def test_bad_arguments_are_named():
    w = aj.param("w", (2,))
    with pytest.raises(ValueError, match="no parameters"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match="float aj.param"):
        optim.SGD([w * 2.0], lr=0.1)
    with pytest.raises(ValueError, match="listed twice"):
        optim.Adam([w, w])
    with pytest.raises(ValueError, match="momentum"):
        optim.SGD([w], lr=0.1, momentum=1.5)
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD([w], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="beta2"):
        optim.Adam([w], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="learning rate must be positive"):
        optim.Adam([w], lr=-1.0)
    with pytest.raises(ValueError, match="weight_decay"):
        optim.Adam([w], weight_decay=-0.1)
    with pytest.raises(ValueError, match="gamma"):
        optim.StepDecay(0.1, step_size=2, gamma=0.0)
    opt = optim.Adam([w])
    with pytest.raises(TypeError, match="either loss or grads"):
        opt.updates()
    with pytest.raises(ValueError, match="1 gradients for 1|gradient for 'w'"):
        opt.updates(grads=[aj.sum(w)])
    with pytest.raises(ValueError, match="2 gradients for 1"):
        opt.updates(grads=[w, w])
