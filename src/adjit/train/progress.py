"""Per-epoch progress: a tqdm bar when tqdm is installed, else plain lines.

Plain lines are printed for the first and last epoch and about 20 in between, so a run
of thousands of short epochs stays readable.
"""
from __future__ import annotations

import sys

MODES = ("bar", "lines", "off")


_NOT_LOADED = object()
_tqdm = _NOT_LOADED


def tqdm_class():
    """tqdm's class, or None when tqdm (an optional extra, ``adjit[demo]``) is not installed."""
    global _tqdm
    if _tqdm is _NOT_LOADED:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            tqdm = None
        _tqdm = tqdm
    return _tqdm


def resolve_mode(progress) -> str:
    """``None``/``True`` -> 'bar' if tqdm is importable else 'lines'; ``False`` -> 'off'."""
    if progress is None or progress is True:
        return "bar" if tqdm_class() is not None else "lines"
    if progress is False:
        return "off"
    if progress not in MODES:
        raise ValueError(f"progress must be True, False, None or one of {MODES}, got {progress!r}")
    if progress == "bar" and tqdm_class() is None:
        raise ImportError('progress="bar" needs tqdm: pip install tqdm (or "adjit[demo]")')
    return progress


def format_metrics(metrics: dict) -> str:
    parts = []
    for k, v in metrics.items():
        if v is None:
            continue
        if k.endswith("accuracy"):
            parts.append(f"{k} {100 * v:.1f}%")
        elif k == "lr":
            parts.append(f"lr {v:.3g}")
        else:
            parts.append(f"{k} {v:.4f}")
    return "  ".join(parts)


def format_seconds(seconds: float) -> str:
    """``0.000042`` -> ``'42 µs'``, ``0.0123`` -> ``'12.3 ms'``, ``2.5`` -> ``'2.50 s'``."""
    if seconds < 1e-3:
        return f"{1e6 * seconds:.0f} µs"
    if seconds < 1.0:
        return f"{1e3 * seconds:.1f} ms"
    return f"{seconds:.2f} s"


class Progress:
    """Reports each finished epoch; ``mode`` from :func:`resolve_mode`."""

    def __init__(self, epochs: int, mode: str, stream=None):
        self.epochs, self.mode = epochs, mode
        self.stream = stream or sys.stdout
        if mode == "bar":
            sys.stdout.flush()     # the bar writes to stderr: keep earlier output above it
        self._bar = tqdm_class()(total=epochs, unit="epoch", desc="training", leave=True,
                          dynamic_ncols=True) if mode == "bar" else None

    def epoch(self, epoch: int, metrics: dict, seconds: float) -> None:
        if self.mode == "bar":
            self._bar.set_postfix_str(format_metrics(metrics), refresh=False)
            self._bar.update(1)
        elif self.mode == "lines" and self._due(epoch):
            width = len(str(self.epochs))
            print(f"epoch {epoch + 1:>{width}}/{self.epochs}  {format_metrics(metrics)}  "
                  f"({format_seconds(seconds)})", file=self.stream, flush=True)

    def _due(self, epoch: int) -> bool:
        every = max(1, self.epochs // 20)
        return epoch == 0 or epoch + 1 == self.epochs or (epoch + 1) % every == 0

    def note(self, text: str) -> None:
        if self.mode == "bar":
            self._bar.write(text)
        elif self.mode == "lines":
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
