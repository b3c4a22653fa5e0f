"""The disk cache of object code: an entry that is truncated or tampered with is rejected
and recompiled, never executed; concurrent processes compiling the same model all succeed."""
from __future__ import annotations

import glob
import json
import os
import stat

import numpy as np
import pytest

import adjit as aj
from isolation import describe_exit, finish_child, records, run_child, start_child

MAGIC = b"ADJITOBJ1\n"


@pytest.fixture(scope="module", autouse=True)
def native_support_loaded():
    """adjit's per-process native modules (GEMM library, thread pool) are loaded first, so
    a compile in a test writes exactly one entry: its model's."""
    x = aj.input("x", (None, 3))
    W = aj.param("W", (3, 3))
    aj.compile(aj.sum(x @ W, axis=1), opt_level=1)(x=X, W=np.eye(3))
    aj.compile(model_a(), opt_level=1)(x=X)


def entries(d) -> set[str]:
    return set(glob.glob(os.path.join(d, "*.adjitobj")))


def model_a():
    x = aj.input("x", (None, 3))
    return aj.sum(x * 2.0 + 1.0, axis=1)          # rows of 2·Σx + 3


def model_b():
    x = aj.input("x", (None, 3))
    return aj.sum(x * x - 7.0, axis=1)            # what a swapped-in object would compute


X = np.array([[1.0, 2.0, 3.0], [0.0, -1.0, 0.5]])
A_VALUES = np.array([15.0, 2.0])
B_VALUES = np.array([-7.0, -19.75])


def compile_new(d, build):
    """Compile and return (function, the entry file this compile wrote)."""
    before = entries(d)
    f = aj.compile(build(), opt_level=1)
    (path,) = entries(d) - before
    return f, path


def split(data: bytes):
    nl = data.index(b"\n", len(MAGIC))
    header = json.loads(data[len(MAGIC):nl])
    body = data[nl + 1:]
    return data[:nl + 1], header, body[:header["obj_len"]], body[header["obj_len"]:]


def test_entries_are_private_and_complete(cache_dir):
    f, path = compile_new(cache_dir, model_a)
    assert stat.S_IMODE(os.stat(cache_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0
    head, header, obj, ir = split(open(path, "rb").read())
    assert header["obj_len"] == len(obj) and header["ir_len"] == len(ir)
    assert not glob.glob(os.path.join(cache_dir, ".tmp-*"))     # no partial writes left
    g = aj.compile(model_a(), opt_level=1)
    assert g.cache_info == f"hit {path}"
    np.testing.assert_array_equal(g(x=X), A_VALUES)


def test_another_models_object_under_this_key_is_never_executed(cache_dir):
    _, path_a = compile_new(cache_dir, model_a)
    fb, path_b = compile_new(cache_dir, model_b)
    np.testing.assert_array_equal(fb(x=X), B_VALUES)
    head_a, _, obj_a, ir_a = split(open(path_a, "rb").read())
    _, _, obj_b, ir_b = split(open(path_b, "rb").read())
    # B's object in A's entry: the lengths in A's header no longer match
    with open(path_a, "wb") as fh:
        fh.write(head_a + obj_b + ir_a)
    f = aj.compile(model_a(), opt_level=1)
    assert f.cache_info.startswith("miss: entry corrupt (")
    np.testing.assert_array_equal(f(x=X), A_VALUES)
    # B's object padded or cut to A's length: lengths match, the sha256 does not
    forged = (obj_b + b"\0" * len(obj_a))[:len(obj_a)]
    with open(path_a, "wb") as fh:
        fh.write(head_a + forged + ir_a)
    f = aj.compile(model_a(), opt_level=1)
    assert f.cache_info == "miss: entry corrupt (hash mismatch)"
    np.testing.assert_array_equal(f(x=X), A_VALUES)
    again = aj.compile(model_a(), opt_level=1)           # rebuilt: a good entry again
    assert again.cache_info == f"hit {path_a}"
    np.testing.assert_array_equal(again(x=X), A_VALUES)


@pytest.mark.parametrize("where", ["empty", "magic only", "in the header", "end of header",
                                   "in the object", "in the IR", "last byte"])
def test_truncated_entries_are_rejected_and_rebuilt(cache_dir, where):
    _, path = compile_new(cache_dir, model_a)
    data = open(path, "rb").read()
    head, header, obj, ir = split(data)
    cut = {"empty": 0, "magic only": len(MAGIC), "in the header": len(head) // 2,
           "end of header": len(head), "in the object": len(head) + len(obj) // 2,
           "in the IR": len(head) + len(obj) + len(ir) // 2, "last byte": len(data) - 1}[where]
    with open(path, "wb") as fh:
        fh.write(data[:cut])
    f = aj.compile(model_a(), opt_level=1)
    assert f.cache_info.startswith("miss: entry corrupt (")
    np.testing.assert_array_equal(f(x=X), A_VALUES)
    assert aj.compile(model_a(), opt_level=1).cache_info == f"hit {path}"   # rebuilt


@pytest.mark.parametrize("offset", [0.1, 0.5, 0.9, 0.999])
def test_flipped_bits_are_rejected(cache_dir, offset):
    _, path = compile_new(cache_dir, model_a)
    data = bytearray(open(path, "rb").read())
    head_len = data.index(b"\n", len(MAGIC)) + 1
    k = head_len + int((len(data) - head_len) * offset)
    data[min(k, len(data) - 1)] ^= 0x01
    with open(path, "wb") as fh:
        fh.write(bytes(data))
    f = aj.compile(model_a(), opt_level=1)
    assert f.cache_info == "miss: entry corrupt (hash mismatch)"
    np.testing.assert_array_equal(f(x=X), A_VALUES)


CHILD = """
import json, os, sys, time
import numpy as np
import adjit as aj
barrier, n = sys.argv[1], int(sys.argv[2])
open(os.path.join(barrier, str(os.getpid())), "w").close()
while len(os.listdir(barrier)) < n:      # every process starts compiling once all are up
    time.sleep(0.0005)
x = aj.input("x", (None, 3)); w = aj.param("w", (3,))
L = aj.sum(aj.tanh(x * w) * 2.0)
f = aj.compile([L, aj.grad(L, w)], opt_level=1)
L0, g = f(x=np.arange(6.0).reshape(2, 3) / 10, w=np.ones(3) / 3)
print(json.dumps({"info": f.cache_info, "L": float(L0), "g": g.tolist()}))
"""


def test_processes_compiling_the_same_model_at_once_all_succeed(tmp_path):
    """An empty cache raced by 2 processes (each writes the same entries at once), then a
    full one raced again (each reads them at once): all succeed with the same results."""
    d = tmp_path / "shared-cache"
    X = np.arange(6.0).reshape(2, 3) / 10
    expected_L = 2 * np.sum(np.tanh(X / 3))
    first = None
    for round_ in ("cold", "warm"):
        barrier = tmp_path / f"barrier-{round_}"
        barrier.mkdir()
        children = [start_child(["-c", CHILD, str(barrier), "2"],
                                env={"ADJIT_CACHE_DIR": str(d), "ADJIT_CACHE": "1"})
                    for _ in range(2)]
        results = []
        for child in children:
            proc = finish_child(child)
            assert proc.returncode == 0, describe_exit(proc)
            (rec,) = records(proc)
            results.append(rec)
        for rec in results:
            assert rec["L"] == pytest.approx(expected_L, rel=1e-13)
            first = first or rec["g"]
            assert rec["g"] == first
        if round_ == "warm":
            assert all(r["info"].startswith("hit ") for r in results), results
        assert not glob.glob(os.path.join(d, ".tmp-*"))
        for path in entries(d):                    # every entry on disk is complete
            _, header, obj, ir = split(open(path, "rb").read())
            assert len(obj) == header["obj_len"] and len(ir) == header["ir_len"]


# --- hostile cache directories and entries --------------------------------------------------
OTHER_UID = 65534          # "nobody": a user other than the one running the tests
as_root = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                             reason="making files owned by another user needs root")


def shared_sticky_dir(tmp_path):
    """A world-writable sticky directory, like /tmp."""
    d = tmp_path / "shared"
    d.mkdir()
    os.chmod(d, 0o1777)
    return d


@as_root
def test_a_link_planted_by_another_user_is_not_followed(tmp_path, monkeypatch):
    victim = tmp_path / "victim"             # a private directory of ours
    victim.mkdir(mode=0o700)
    link = shared_sticky_dir(tmp_path) / "adjit-cache"
    os.symlink(victim, link)
    os.lchown(link, OTHER_UID, OTHER_UID)   # planted by someone else
    monkeypatch.setenv("ADJIT_CACHE_DIR", str(link))
    monkeypatch.delenv("ADJIT_CACHE", raising=False)
    f = aj.compile(model_a(), opt_level=1)
    assert "symbolic link owned by another user" in f.cache_info, f.cache_info
    np.testing.assert_array_equal(f(x=X), A_VALUES)
    assert os.listdir(victim) == []           # nothing written through the link


@as_root
def test_a_link_of_our_own_is_followed(tmp_path, monkeypatch):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = shared_sticky_dir(tmp_path) / "mine"
    os.symlink(real, link)
    monkeypatch.setenv("ADJIT_CACHE_DIR", str(link))
    monkeypatch.delenv("ADJIT_CACHE", raising=False)
    f = aj.compile(model_a(), opt_level=1)
    assert entries(real) and aj.compile(model_a(), opt_level=1).cache_info.startswith("hit ")
    np.testing.assert_array_equal(f(x=X), A_VALUES)


@as_root
@pytest.mark.parametrize("where", ["the cache dir", "a parent", "the link's target"])
def test_directories_of_another_user_are_refused(tmp_path, monkeypatch, where):
    shared = shared_sticky_dir(tmp_path)
    theirs = shared / "theirs"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, OTHER_UID, OTHER_UID)
    if where == "the cache dir":
        d = theirs
    elif where == "a parent":                # they can rename or swap what is inside
        (theirs / "adjit").mkdir(mode=0o700)
        d = theirs / "adjit"
    else:
        d = shared / "mine"
        os.symlink(theirs, d)                 # our own link, into their directory
    monkeypatch.setenv("ADJIT_CACHE_DIR", str(d))
    monkeypatch.delenv("ADJIT_CACHE", raising=False)
    f = aj.compile(model_a(), opt_level=1)
    assert "owned by another user" in f.cache_info, f.cache_info
    np.testing.assert_array_equal(f(x=X), A_VALUES)
    assert not glob.glob(os.path.join(theirs, "**", "*.adjit*"), recursive=True)


def test_a_parent_writable_by_others_is_refused(tmp_path, monkeypatch):
    parent = tmp_path / "open"
    parent.mkdir()
    os.chmod(parent, 0o777)                  # not sticky: anyone can swap "adjit"
    monkeypatch.setenv("ADJIT_CACHE_DIR", str(parent / "adjit"))
    monkeypatch.delenv("ADJIT_CACHE", raising=False)
    f = aj.compile(model_a(), opt_level=1)
    assert "writable by others" in f.cache_info, f.cache_info
    assert not (parent / "adjit").exists()


ENTRY_CHILD = """
import sys
import numpy as np
import adjit as aj
x = aj.input("x", (None, 3))
f = aj.compile(aj.sum(x * 2.0 + 1.0, axis=1), opt_level=1)
print(f.cache_info)
assert (f(x=np.array([[1.0, 2.0, 3.0]])) == 15.0).all()
"""


def entry_paths(cache):
    """Every entry the model of ENTRY_CHILD uses (compiled once to find them)."""
    proc = run_child(["-c", ENTRY_CHILD], env={"ADJIT_CACHE_DIR": str(cache),
                                               "ADJIT_CACHE": "1"}, timeout=300)
    assert proc.returncode == 0, describe_exit(proc)
    return sorted(glob.glob(os.path.join(cache, "*.adjit*")))


@pytest.mark.parametrize("kind", ["fifo", "device", "link", "other user"])
def test_entries_that_are_not_our_regular_files_are_never_opened(tmp_path, kind):
    """A FIFO in an entry's place made compile hang; a device, a link or a file of
    another user is not read either.  Each is replaced by a good entry."""
    if kind in ("device", "other user") and os.geteuid() != 0:
        pytest.skip("making a device node or a file owned by another user needs root")
    cache = tmp_path / "cache"
    paths = entry_paths(cache)
    outside = tmp_path / "outside"          # where a planted link leads: a FIFO
    os.mkfifo(outside, 0o600)
    for p in paths:
        data = open(p, "rb").read()
        os.unlink(p)
        if kind == "fifo":
            os.mkfifo(p, 0o600)
        elif kind == "device":
            os.mknod(p, 0o600 | stat.S_IFCHR, os.makedev(1, 3))     # /dev/null
        elif kind == "link":
            os.symlink(outside, p)
        else:
            open(p, "wb").write(data)
            os.chown(p, OTHER_UID, OTHER_UID)
    proc = run_child(["-c", ENTRY_CHILD], env={"ADJIT_CACHE_DIR": str(cache),
                                               "ADJIT_CACHE": "1"}, timeout=120)
    assert proc.returncode == 0, describe_exit(proc)      # no hang (timeout), right values
    assert "miss" in proc.stdout, proc.stdout
    assert stat.S_ISFIFO(os.lstat(outside).st_mode)        # untouched
    for p in paths:                                         # good entries again
        st = os.lstat(p)
        assert stat.S_ISREG(st.st_mode) and st.st_uid == os.getuid(), p


def test_cache_size_is_bounded_least_recently_used_first(cache_dir, monkeypatch):
    """After a write the directory is cut to ADJIT_CACHE_MAX_BYTES, oldest mtime first;
    a hit counts as a use."""
    from adjit.backends.lowering import target
    texts = [f"define i64 @f{k}(i64 %x) {{\n  %y = add i64 %x, {k}\n  ret i64 %y\n}}\n"
             for k in range(6)]
    jms = [target.compile_ir(t, opt_level=0) for t in texts[:3]]
    size = max(os.path.getsize(p) for p in entries(cache_dir))
    paths = [os.path.join(cache_dir, jm.key + ".adjitobj") for jm in jms]
    for k, p in enumerate(paths):                   # f0 oldest, then f1, f2
        os.utime(p, (1_000_000 + k, 1_000_000 + k))
    assert target.compile_ir(texts[0], opt_level=0).cache_info.startswith("hit ")  # f0 used
    monkeypatch.setenv("ADJIT_CACHE_MAX_BYTES", str(3 * size))
    new = target.compile_ir(texts[3], opt_level=0)                     # a 4th entry
    left = entries(cache_dir)
    assert len(left) == 3 and paths[1] not in left, left               # f1 went first
    assert paths[0] in left and paths[2] in left
    assert os.path.join(cache_dir, new.key + ".adjitobj") in left
    monkeypatch.setenv("ADJIT_CACHE_MAX_BYTES", "0")   # the entry just written stays
    target.compile_ir(texts[4], opt_level=0)
    assert len(entries(cache_dir)) == 1
    monkeypatch.setenv("ADJIT_CACHE_MAX_BYTES", "lots")
    with pytest.raises(ValueError, match="ADJIT_CACHE_MAX_BYTES"):
        target.compile_ir(texts[5], opt_level=0)


def test_max_bytes_setting(monkeypatch):
    from adjit.backends.lowering.target import diskcache
    monkeypatch.delenv("ADJIT_CACHE_MAX_BYTES", raising=False)
    assert diskcache.max_bytes() == 256 << 20
    for raw, want in [("1000", 1000), ("64K", 64 << 10), ("300m", 300 << 20), ("2G", 2 << 30)]:
        monkeypatch.setenv("ADJIT_CACHE_MAX_BYTES", raw)
        assert diskcache.max_bytes() == want


def test_the_suite_never_uses_the_users_cache():
    """conftest points every test (and child process) at a session directory."""
    from adjit.backends.lowering.target import diskcache
    real = os.path.join(os.path.expanduser("~"), ".cache", "adjit")
    assert os.environ["ADJIT_CACHE_DIR"] and diskcache.cache_dir() != real
