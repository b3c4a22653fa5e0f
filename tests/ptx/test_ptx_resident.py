"""Device-resident state on the ptx backend (CPU grid emulation): bound arrays and
``updates=`` stay on the device, a step moves only the batch in and the loss out, the host
arrays are read-only while the device holds the state, and the launch sequence is replayed
as a captured (recorded) graph.  Every run is compared with the llvm backend step by step."""
import gc

import numpy as np
import pytest

import adjit as aj
from adjit import nn, optim, train

SIZES = (6, 8, 3)
RTOL, ATOL = 2e-5, 1e-6          # float32: summation order and FMA contraction differ


def model(tag=""):
    x = aj.input("x" + tag, (None, SIZES[0]), "float32")
    t = aj.input("t" + tag, (None, SIZES[2]), "float32")
    W1 = aj.param("W1" + tag, SIZES[:2], "float32")
    b1 = aj.param("b1" + tag, SIZES[1:2], "float32")
    W2 = aj.param("W2" + tag, SIZES[1:], "float32")
    b2 = aj.param("b2" + tag, SIZES[2:], "float32")
    y = aj.tanh(x @ W1 + b1) @ W2 + b2
    return aj.mean(aj.sum((y - t) ** 2, axis=1)), [W1, b1, W2, b2]


def start(params, seed=0):
    rng = np.random.default_rng(seed)
    return {p.name: (0.4 * rng.standard_normal(p.shape)).astype("float32") for p in params}


def batch(step, n=16, tag=""):
    rng = np.random.default_rng(100 + step)
    return {"x" + tag: rng.standard_normal((n, SIZES[0])).astype("float32"),
            "t" + tag: rng.standard_normal((n, SIZES[2])).astype("float32")}


def optimizer(kind, params, tag=""):
    if kind == "sgd":
        return optim.SGD(params, lr=0.1, momentum=0.9, name="sgd" + tag)
    return optim.Adam(params, lr=0.01, name="adam" + tag)


def stepper(backend, kind, tag="", **options):
    """(compiled step, bound step, its arrays) for one fresh model state."""
    loss, params = model(tag)
    opt = optimizer(kind, params, tag)
    if backend == "ptx":
        options = {"emulate": True, "opt_level": 0, "graphs": True, "resident": True,
                   **options}
    f = aj.compile(loss, backend=backend, updates=opt.updates(loss), **options)
    arrays = {**start(params), **opt.state}
    return f, f.bind(**arrays), arrays


def close(got, want, what=""):
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, err_msg=what)


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_bound_steps_match_llvm_step_for_step(kind):
    _, ref, ref_arrays = stepper("llvm", kind)
    f, g, arrays = stepper("ptx", kind)
    for s in range(10):
        close(g(**batch(s)), ref(**batch(s)), f"loss of step {s}")
        assert g.on_device
        state = g.state_to_host()               # the very arrays given to bind
        assert not g.on_device and all(state[k] is arrays[k] for k in arrays)
        for k in arrays:
            close(arrays[k], ref_arrays[k], f"{k} after step {s}")


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_a_step_uploads_the_batch_and_downloads_the_loss_only(kind):
    f, g, arrays = stepper("ptx", kind)
    _, ref, ref_arrays = stepper("llvm", kind)
    dev = f.device
    n_state = len(arrays)                       # every bound array has a device buffer
    dev.reset_counts()
    close(g(**batch(0)), ref(**batch(0)))
    first = dev.counts()
    assert first["uploads"] == n_state + 2 and first["downloads"] == 1
    assert first["captures"] == 1 and first["graph_launches"] == 1
    kernels = first["launches"]
    for s in range(1, 10):
        dev.reset_counts()
        b = batch(s)
        close(g(**b), ref(**b))
        assert dev.counts() == {"uploads": 2, "downloads": 1,
                                "upload_bytes": b["x"].nbytes + b["t"].nbytes,
                                "download_bytes": 4, "launches": kernels, "captures": 0,
                                "graph_launches": 1}
    dev.reset_counts()
    g.state_to_host()
    updated = [k for k in arrays if not k.endswith("_lr")]   # (the learning rate is read)
    assert dev.downloads == len(updated) and dev.uploads == 0
    for k in arrays:
        close(arrays[k], ref_arrays[k], k)
    dev.reset_counts()
    g(**batch(10))                              # the host holds the state: uploaded again
    assert dev.uploads == n_state + 2


def test_host_arrays_are_read_only_while_the_device_holds_the_state():
    f, g, arrays = stepper("ptx", "sgd")
    _, ref, ref_arrays = stepper("llvm", "sgd")
    W = arrays["W1"]
    assert W.flags.writeable and not g.on_device
    g(**batch(0)), ref(**batch(0))
    assert g.on_device and not W.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        W[...] = 0.0
    W.flags.writeable = True                    # forced: the next call refuses
    with pytest.raises(ValueError, match="'W1' was made writeable while the device holds"):
        g(**batch(1))
    W.flags.writeable = False
    close(g(**batch(1)), ref(**batch(1)))       # nothing was lost
    g.state_to_host()                           # the host's turn: change, then step
    assert W.flags.writeable
    W[...] = 0.25
    ref_arrays["W1"][...] = 0.25
    for s in (2, 3):
        close(g(**batch(s)), ref(**batch(s)), f"step {s} after the change")
    g.state_to_host()
    for k in arrays:
        close(arrays[k], ref_arrays[k], k)


def test_an_array_bound_read_only_stays_read_only():
    loss, params = model()
    f = aj.compile(loss, backend="ptx", emulate=True, opt_level=0, resident=True)
    arrays = start(params)
    arrays["W2"].flags.writeable = False
    g = f.bind(**arrays)
    want = aj.compile(loss, backend="llvm")(**arrays, **batch(0))
    close(g(**batch(0)), want)
    assert not any(a.flags.writeable for a in arrays.values())
    g.state_to_host()
    assert [k for k, a in arrays.items() if not a.flags.writeable] == ["W2"]


def test_state_to_device_uploads_now_and_after_host_changes():
    f, g, arrays = stepper("ptx", "adam")
    _, ref, ref_arrays = stepper("llvm", "adam")
    dev = f.device
    dev.reset_counts()
    g.state_to_device()
    assert g.on_device and dev.uploads == len(arrays)
    dev.reset_counts()
    close(g(**batch(0)), ref(**batch(0)))
    assert dev.uploads == 2
    g.state_to_host()
    arrays["b2"][...] += 1.0
    ref_arrays["b2"][...] += 1.0
    g.state_to_device()
    close(g(**batch(1)), ref(**batch(1)))


def test_batch_size_changes_get_their_own_buffers_and_graphs():
    f, g, arrays = stepper("ptx", "adam")
    _, ref, ref_arrays = stepper("llvm", "adam")
    dev = f.device
    dev.reset_counts()
    for s, n in enumerate([16, 5, 1, 16, 5, 0, 16]):
        close(g(**batch(s, n)), ref(**batch(s, n)), f"step {s}, batch {n}")
    assert dev.captures == 4                    # one per batch size
    g.state_to_host()
    for k in arrays:
        close(arrays[k], ref_arrays[k], k)


def test_two_bound_functions_and_a_second_model_are_independent():
    f, g1, a1 = stepper("ptx", "sgd")
    g2_arrays = {**start([p for p in f.traced.inputs if p.op == "param"], seed=7)}
    # the same compiled step bound twice, to different arrays (each its own optimizer state)
    a2 = {k: (np.zeros_like(v) if k not in g2_arrays else g2_arrays[k]) for k, v in a1.items()}
    a2 = {k: v.copy() for k, v in a2.items()}
    a2["sgd_lr"] = a1["sgd_lr"].copy()
    g2 = f.bind(**a2)
    h, gh, ah = stepper("ptx", "adam", tag="_b")            # another model entirely
    rf, r1, ra1 = stepper("llvm", "sgd")
    r2 = rf.bind(**{k: v.copy() for k, v in a2.items()})
    _, rh, rah = stepper("llvm", "adam", tag="_b")
    for s in range(4):
        close(g1(**batch(s)), r1(**batch(s)), f"g1 step {s}")
        close(gh(**batch(s, tag="_b")), rh(**batch(s, tag="_b")), f"other model step {s}")
        close(g2(**batch(s + 50, n=7)), r2(**batch(s + 50, n=7)), f"g2 step {s}")
    for g, arrays, want in ((g1, a1, ra1), (gh, ah, rah), (g2, a2, r2.state_to_host())):
        g.state_to_host()
        for k in arrays:
            close(arrays[k], want[k], k)


def test_unbound_call_with_updates_writes_the_callers_arrays():
    loss, params = model()
    opt = optimizer("adam", params)
    f = aj.compile(loss, backend="ptx", emulate=True, opt_level=0, updates=opt.updates(loss))
    r = aj.compile(loss, backend="llvm", updates=opt.updates(loss))
    arrays = {**start(params), **opt.state}
    ref_arrays = {k: v.copy() for k, v in arrays.items()}
    for s in range(3):
        close(f(**arrays, **batch(s)), r(**ref_arrays, **batch(s)))
    for k in arrays:
        assert arrays[k].flags.writeable
        close(arrays[k], ref_arrays[k], k)


def test_graph_replay_and_kernel_by_kernel_launches_agree():
    fg, gg, ag = stepper("ptx", "adam")
    fk, gk, ak = stepper("ptx", "adam", graphs=False)
    assert fg.graphs and not fk.graphs and fk.graph_reason == "graphs=False"
    fk.device.reset_counts()
    for s in range(3):
        np.testing.assert_array_equal(gg(**batch(s)), gk(**batch(s)))
    assert fk.device.captures == fk.device.graph_launches == 0
    assert fg.device.graph_launches == 3
    gg.state_to_host(), gk.state_to_host()
    for k in ag:
        np.testing.assert_array_equal(ag[k], ak[k], err_msg=k)


def test_a_dropped_bound_function_gives_its_state_back():
    f, g, arrays = stepper("ptx", "sgd")
    _, ref, ref_arrays = stepper("llvm", "sgd")
    for s in range(2):
        g(**batch(s)), ref(**batch(s))
    assert not arrays["W1"].flags.writeable
    del g
    gc.collect()
    for k in arrays:
        assert arrays[k].flags.writeable
        close(arrays[k], ref_arrays[k], k)


def test_host_backends_answer_the_same_api():
    f, g, arrays = stepper("llvm", "sgd")
    g(**batch(0))
    assert not g.on_device and g.state_to_device() is None
    state = g.state_to_host()
    assert all(state[k] is arrays[k] for k in arrays)


def _digits(n=240):
    from adjit.train.data import load_digits
    d = load_digits()
    return ({"x": d.x_train[:n], "y": d.y_train[:n]}, {"x": d.x_test[:80], "y": d.y_test[:80]})


def _digits_trainer(backend, **options):
    x = aj.input("x", (None, 64), "float32")
    y = aj.input("y", (None,), "int64")
    mlp = nn.MLP([64, 32, 10], activation="relu")
    logits = mlp(x)
    loss = aj.cross_entropy(logits, y)
    return train.Trainer(loss, mlp.init(seed=0), optim.Adam(mlp.params, lr=0.01),
                         predictions=logits, backend=backend, **options)


def test_trainer_on_ptx_trains_the_digits_mlp_like_llvm():
    data, val = _digits()
    want = _digits_trainer("llvm")
    got = _digits_trainer("ptx", emulate=True, opt_level=0)
    hw = want.fit(data, epochs=3, batch_size=32, val=val, progress=False)
    hg = got.fit(data, epochs=3, batch_size=32, val=val, progress=False)
    np.testing.assert_allclose(hg.loss, hw.loss, rtol=1e-5)
    np.testing.assert_allclose(hg.val_loss, hw.val_loss, rtol=1e-5)
    assert hg.val_accuracy == hw.val_accuracy
    assert hw.loss[-1] < hw.loss[0]
    for k in want.params:
        close(got.params[k], want.params[k], k)
    # single steps keep the state on the device; params brings it back
    for s in range(3):
        b = {"x": data["x"][s * 8:(s + 1) * 8], "y": data["y"][s * 8:(s + 1) * 8]}
        close(got.step(**b), want.step(**b), f"step {s}")
        assert got._bound.on_device
    for k in want.params:
        close(got.params[k], want.params[k], k)
    assert not got._bound.on_device
    np.testing.assert_allclose(got.predict(val), want.predict(val), rtol=1e-4, atol=1e-5)


def test_cuda_device_queues_everything_on_its_stream_and_captures_graphs():
    """The driver calls CudaDevice makes (with a recording stand-in for cuda-python): async
    copies and launches on its own stream, page-locked host memory, graph capture,
    instantiation, launch and release."""
    from types import SimpleNamespace
    from adjit.backends.ptx.device import CudaDevice
    calls = []
    host = np.zeros(64, np.uint8)

    def rec(name, *result):
        def call(*args):
            calls.append((name,) + args)
            return (0,) + result
        return call
    cu = SimpleNamespace(
        CUresult=SimpleNamespace(CUDA_SUCCESS=0),
        CUstreamCaptureMode=SimpleNamespace(CU_STREAM_CAPTURE_MODE_RELAXED="RELAXED"),
        cuMemHostAlloc=rec("cuMemHostAlloc", host.ctypes.data), cuMemFreeHost=rec("cuMemFreeHost"),
        cuMemcpyHtoDAsync=rec("HtoD"), cuMemcpyDtoHAsync=rec("DtoH"),
        cuLaunchKernel=rec("launch"), cuStreamBeginCapture=rec("begin"),
        cuStreamEndCapture=rec("end", "G"), cuGraphInstantiateWithFlags=rec("inst", "E"),
        cuGraphLaunch=rec("glaunch"), cuGraphExecDestroy=rec("xdestroy"),
        cuGraphDestroy=rec("gdestroy"), cuStreamSynchronize=rec("sync"))
    dev = CudaDevice.__new__(CudaDevice)
    dev.cu, dev.stream, dev._pinned, dev.functions = cu, "S", {}, {"k": "F"}
    pinned = dev.host_alloc(64)
    assert pinned.ctypes.data == host.ctypes.data and pinned.nbytes == 64
    dev.upload(1 << 40, pinned[:8])
    dev.download(pinned[:8], 1 << 40)
    assert not dev.capturing
    dev.begin_capture()
    assert dev.capturing
    dev.launch("k", 3, 256, [8], [1])
    graph = dev.end_capture()
    assert not dev.capturing
    dev.launch_graph(graph)
    dev.synchronize()
    dev.free_graph(graph)
    dev.host_free(pinned)
    names = [c[0] for c in calls]
    assert names == ["cuMemHostAlloc", "HtoD", "DtoH", "begin", "launch", "end", "inst",
                     "glaunch", "sync", "xdestroy", "gdestroy", "cuMemFreeHost"]
    by = {c[0]: c for c in calls}
    assert by["HtoD"] == ("HtoD", 1 << 40, host.ctypes.data, 8, "S")
    assert by["DtoH"] == ("DtoH", host.ctypes.data, 1 << 40, 8, "S")
    assert by["launch"][9] == "S" and by["begin"] == ("begin", "S", "RELAXED")
    assert by["inst"] == ("inst", "G", 0) and by["glaunch"] == ("glaunch", "E", "S")
    assert by["cuMemFreeHost"] == ("cuMemFreeHost", host.ctypes.data)


def test_residency_is_asked_for():
    """Without resident=True a bound ptx function uploads its bound arrays every call and
    updates them in place, as on llvm (the host arrays are the state)."""
    f, g, arrays = stepper("ptx", "sgd", resident=False)
    r, h, ref = stepper("llvm", "sgd")
    for s in range(3):
        close(g(**batch(s)), h(**batch(s)))
        for k in arrays:
            close(arrays[k], ref[k], k)
            assert arrays[k].flags.writeable
    assert not g.on_device and g.state_to_host() == dict(g.values)


def test_a_nested_call_of_a_resident_function_is_refused():
    """A call made while another call of the same resident function is in progress on
    this thread (a signal handler, a collector callback) raises instead of using a state
    that is moving between host and device."""
    f, g, arrays = stepper("ptx", "sgd")
    res = f._impl._resident(g)
    res.active = True           # as inside a call
    try:
        with pytest.raises(RuntimeError, match="called again while a call of it was in "
                                               "progress"):
            g(**batch(0))
    finally:
        res.active = False
    close(g(**batch(0)), stepper("llvm", "sgd")[1](**batch(0)))


def test_graph_replay_is_the_default_and_a_call_made_during_a_capture_runs_aside():
    """A call of the same function made while its first call captures the launch list (as a
    signal handler or a gc callback would, between two launches) cannot queue anything on
    the capturing stream: it runs on a second device and answers what it answers alone; the
    outer call's graph is captured whole and its replays answer the same."""
    loss, params = model()
    f = aj.compile(loss, backend="ptx", emulate=True, opt_level=0)
    assert f.graphs and f.graph_reason is None          # replay is the default
    arrays = start(params)
    alone = {s: f(**arrays, **batch(s)) for s in range(3)}
    g = aj.compile(loss, backend="ptx", emulate=True, opt_level=0)
    dev = g.device
    launch, nested = dev.launch, []

    def launch_and_reenter(*call):
        launch(*call)
        if dev.capturing and not nested:               # once, in the middle of the capture
            nested.append(g(**arrays, **batch(1)))
    dev.launch = launch_and_reenter
    first = g(**arrays, **batch(0))
    assert nested and dev.captures == 1, (nested, dev.counts())
    np.testing.assert_array_equal(first, alone[0])
    np.testing.assert_array_equal(nested[0], alone[1])
    assert g._impl._aside[0].launches > 0               # the nested call ran on the other device
    for s in (2, 1, 0):
        np.testing.assert_array_equal(g(**arrays, **batch(s)), alone[s])
    assert dev.graph_launches == 4 and dev.captures == 1


def _lenet_trainer(backend, **options):
    from adjit.train.demo_lenet import build
    model, loss, logits, _ = build()
    return train.Trainer(loss, model.init(0), optim.Adam(model.params, lr=3e-3),
                         predictions=logits, backend=backend, **options)


def test_trainer_on_ptx_trains_the_lenet_like_llvm():
    """The demo's convolutional network (two conv + ReLU + max-pool stages, three linear
    layers) trained with its state on the device, against llvm epoch for epoch."""
    from adjit.train.data import load_digits
    d = load_digits()
    img = lambda x: np.ascontiguousarray(x.reshape(-1, 1, 8, 8))
    data = {"x": img(d.x_train[:96]), "t": d.y_train[:96]}
    val = {"x": img(d.x_test[:40]), "t": d.y_test[:40]}
    want = _lenet_trainer("llvm")
    got = _lenet_trainer("ptx", emulate=True, opt_level=0)
    hw = want.fit(data, epochs=2, batch_size=16, val=val, progress=False, seed=1)
    hg = got.fit(data, epochs=2, batch_size=16, val=val, progress=False, seed=1)
    assert got.step_function.graphs, got.step_function.graph_reason
    np.testing.assert_allclose(hg.loss, hw.loss, rtol=1e-5)
    np.testing.assert_allclose(hg.val_loss, hw.val_loss, rtol=1e-5)
    assert hg.val_accuracy == hw.val_accuracy and hw.loss[-1] < hw.loss[0]
    b = {"x": data["x"][:16], "t": data["t"][:16]}
    close(got.step(**b), want.step(**b), "one more step")
    assert got._bound.on_device
    for k in want.params:
        close(got.params[k], want.params[k], k)
    np.testing.assert_allclose(got.predict(val), want.predict(val), rtol=1e-4, atol=1e-5)
