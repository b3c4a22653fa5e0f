"""The on-disk format of adjit's object-code cache (no llvmlite here: files only).

An entry is ``MAGIC``, one JSON header line (the content key, lengths and sha256 of the
object code and of the optimized IR), then the two bodies.  Entries are written to a
temporary file in the cache directory and renamed into place, so a reader never sees a
partial entry; :func:`read_entry` checks every field and hash and says why it rejects
an entry.  The directory is created user-only (0700) and refused if another user owns
it or others may write to it.  :mod:`.target` computes the key and decides hit or miss.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import struct
import tempfile

MAGIC = b"ADJITOBJ1\n"
ENTRY_SUFFIX = ".adjitobj"


def cache_dir() -> str:
    """The per-user cache directory: $ADJIT_CACHE_DIR, else $XDG_CACHE_HOME/adjit, else
    ~/.cache/adjit.  Not created here."""
    d = os.environ.get("ADJIT_CACHE_DIR")
    if d:
        return os.path.abspath(os.path.expanduser(d))
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = xdg if xdg else os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(os.path.abspath(base), "adjit")


def cache_switch(cache: bool | None) -> str | None:
    """Why the cache is off (``cache`` False, or None with ``ADJIT_CACHE=0``), or None
    when it is on: the one reading of the switch for every layer of the cache."""
    if cache is False:
        return "disabled by argument cache=False"
    if cache is None and os.environ.get("ADJIT_CACHE", "1").strip() == "0":
        return "disabled by ADJIT_CACHE=0"
    return None


def usable_cache_dir() -> tuple[str | None, str]:
    """Create (mode 0o700) and check the cache directory; return (path, "") or (None, why)."""
    d = cache_dir()
    try:
        if not os.path.isdir(d):
            os.makedirs(d, mode=0o700, exist_ok=True)
            os.chmod(d, 0o700)        # makedirs' mode is filtered by the umask
        st = os.stat(d)
    except OSError as e:
        return None, f"cache dir unusable ({e.strerror})"
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        return None, f"cache dir {d} not owned by this user"
    if st.st_mode & 0o022:
        return None, f"cache dir {d} is group/world writable"
    return d, ""


def read_entry(path: str, key: str) -> tuple[bytes, str] | str:
    """Return (object bytes, optimized IR) or a string saying why the entry is bad."""
    with open(path, "rb") as f:
        data = f.read()
    if not data.startswith(MAGIC):
        return "bad header"
    nl = data.find(b"\n", len(MAGIC))
    if nl < 0:
        return "bad header"
    try:
        hdr = json.loads(data[len(MAGIC):nl])
        n_obj, n_ir = int(hdr["obj_len"]), int(hdr["ir_len"])
    except (ValueError, KeyError, TypeError):
        return "bad header"
    if not isinstance(hdr, dict) or hdr.get("key") != key:
        return "bad header"
    body = data[nl + 1:]
    if len(body) != n_obj + n_ir:
        return "truncated" if len(body) < n_obj + n_ir else "trailing bytes"
    obj, ir = body[:n_obj], body[n_obj:]
    if (hashlib.sha256(obj).hexdigest() != hdr.get("obj_sha256")
            or hashlib.sha256(ir).hexdigest() != hdr.get("ir_sha256")):
        return "hash mismatch"
    return obj, ir.decode()


def write_entry(path: str, key: str, obj: bytes, opt_ir: str) -> None:
    """Write atomically: temp file in the same directory, then os.replace."""
    ir = opt_ir.encode()
    hdr = {"key": key, "obj_len": len(obj), "obj_sha256": hashlib.sha256(obj).hexdigest(),
           "ir_len": len(ir), "ir_sha256": hashlib.sha256(ir).hexdigest()}
    d = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=ENTRY_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC + json.dumps(hdr, sort_keys=True).encode() + b"\n" + obj + ir)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# several object files in one entry (a compile split over threads; see target)
_OBJS_MAGIC = b"ADJITOBJS\n"


def pack_objects(objs: list[bytes]) -> bytes:
    """One object as itself; several as _OBJS_MAGIC, count, lengths, then the objects."""
    if len(objs) == 1:
        return objs[0]
    return _OBJS_MAGIC + struct.pack(f"<I{len(objs)}Q", len(objs), *map(len, objs)) + b"".join(objs)


def unpack_objects(blob: bytes) -> list[bytes] | None:
    """The objects of :func:`pack_objects`'s payload, or None when it is inconsistent."""
    if not blob.startswith(_OBJS_MAGIC):
        return [blob]
    try:
        (n,) = struct.unpack_from("<I", blob, len(_OBJS_MAGIC))
        lens = struct.unpack_from(f"<{n}Q", blob, len(_OBJS_MAGIC) + 4)
    except struct.error:
        return None
    ends = list(itertools.accumulate(lens, initial=len(_OBJS_MAGIC) + 4 + 8 * n))
    return [blob[a:b] for a, b in zip(ends, ends[1:])] if n and ends[-1] == len(blob) else None
