"""The ``adjit`` command: look at a model file's derivative, picture it, time it.

    adjit show    MODEL                 listings of every stage and the simplification report
    adjit explain MODEL [--example]     backward equations (and a worked example)
    adjit dot     MODEL -o out.svg      a picture (.svg/.png/.pdf by Graphviz, else matplotlib)
    adjit ir      MODEL [--optimized]   generated LLVM IR (or --asm, or --ptx for CUDA)
    adjit bench   MODEL [--plot p.png]  compiled against interpreted, and peers where installed
    adjit demo    [...]                 train a small model (see ``adjit demo --help``)

A model file is a Python file that builds the graph at import time and defines ``loss``
(with ``wrt``) or ``outputs``, optionally ``example`` and ``peers``; see
docs/model-files.md.  Errors in the command line or the model file print one line and
exit with status 2.
"""
from __future__ import annotations

import argparse
import ast
import sys

import numpy as np

EXIT_USAGE = 2


class CommandError(Exception):
    """A one-line error for the user; ``main`` prints it and exits with status 2."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="adjit", description="Look at what differentiation "
                                "produced: equations, pictures, generated code, timings.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name, help_, fn):
        c = sub.add_parser(name, help=help_, description=help_)
        if name != "demo":
            c.add_argument("model", help="model file (a Python file defining `loss` or `outputs`)")
        c.set_defaults(handler=fn)
        return c

    c = command("show", "listings of the graph at every stage, then the simplification report",
                cmd_show)
    c.add_argument("--stage", default="all", help="all (default), forward, traced, simplified "
                   "or a pass name (fold, cse, fold-again, fuse)")
    c.add_argument("--no-report", action="store_true", help="leave out the report")

    c = command("explain", "backward equations in backprop notation, and a worked example",
                cmd_explain)
    c.add_argument("--example", nargs="*", metavar="NAME=VALUE", default=None,
                   help="also show the worked example (primal and adjoint trace with numbers) at "
                        "the model file's `example` values, changed by any NAME=VALUE given")
    c.add_argument("--form", choices=("unicode", "latex", "markdown"), default="unicode")
    c.add_argument("--stage", default="traced", help="traced (default), simplified, both, or a "
                   "pass name")

    c = command("dot", "a picture of the graph (Graphviz DOT, rendered to SVG/PNG/PDF)", cmd_dot)
    c.add_argument("-o", "--output", required=True, help="out.svg, out.png, out.pdf or out.dot "
                   "(drawn by Graphviz's `dot`, or by matplotlib when it is not installed)")
    c.add_argument("--stage", default="simplified", help="simplified (default), traced, or a "
                   "pass name")

    c = command("ir", "the generated LLVM IR (before optimization unless --optimized)", cmd_ir)
    g = c.add_mutually_exclusive_group()
    g.add_argument("--optimized", action="store_true", help="the IR after LLVM's optimizer")
    g.add_argument("--asm", action="store_true", help="the host assembly")
    g.add_argument("--ptx", action="store_true", help="the CUDA kernels' PTX (ptx backend)")
    c.add_argument("--arch", default="sm_80", help="GPU architecture for --ptx (sm_80 default)")
    c.add_argument("--opt-level", type=int, default=3, choices=range(4))

    c = command("bench", "compiled (llvm) against interpreted calls, and peers where installed",
                cmd_bench)
    c.add_argument("--seconds", type=float, default=1.0,
                   help="time budget per implementation (default 1)")
    c.add_argument("--plot", metavar="OUT.png", help="also draw a bar chart (needs matplotlib)")
    c.add_argument("--no-peers", action="store_true", help="time adjit only")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")

    command("demo", "train a small model end to end (arguments go to the demo; try --help)",
            None)
    return p


# --- commands ------------------------------------------------------------------------------
def _load(path: str):
    from .show.modelfile import load_model
    return load_model(path)


def _compile(model, backend: str = "interp", **options):
    from .compiled import compile as aj_compile
    return aj_compile(model.outputs, backend=backend, **options)


def cmd_show(args) -> int:
    from .show import listing
    from .show.report import report
    f = _compile(_load(args.model))
    print(_checked(listing, f, args.stage))
    if not args.no_report:
        print()
        print(report(f))
    return 0


def cmd_explain(args) -> int:
    from .show import equations, trace
    model = _load(args.model)
    f = _compile(model)
    values = None if args.example is None else _example_values(model, args.example)
    print(_checked(equations, f, args.stage).format(args.form))
    if values is not None:
        print()
        print(_checked(trace, f, values, what="--example").format(args.form))
    return 0


def cmd_dot(args) -> int:
    from .show.dot import dot, render
    f = _compile(_load(args.model))
    path = _checked(render, _checked(dot, f, args.stage), args.output)
    print(f"wrote {path}")
    return 0


def cmd_ir(args) -> int:
    if args.ptx:   # compiling PTX needs no GPU
        model = _load(args.model)
        print(_checked(_compile, model, "ptx", opt_level=args.opt_level, arch=args.arch).ptx)
        return 0
    f = _compile(_load(args.model), "llvm", opt_level=args.opt_level)
    print(f.asm if args.asm else f.llvm_ir_optimized if args.optimized else f.llvm_ir)
    return 0


def cmd_bench(args) -> int:
    from .show.bench import bench
    model = _load(args.model)
    if not model.example:
        raise CommandError(f"model file {args.model!r} defines no `example` values; bench "
                           f"needs them to call the model")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise CommandError("--plot needs matplotlib: pip install matplotlib "
                               "(or pip install 'adjit[plot]')") from None
    result = _checked(bench, model, seconds=args.seconds, peers=not args.no_peers,
                      progress=not args.no_progress, what="the model file's `example`")
    print(result.table())
    if args.plot:
        result.plot(args.plot)
        print(f"wrote {args.plot}")
    return 0


def cmd_demo(rest: list[str]) -> int:
    try:
        from .train.demo import main as demo_main   # imported only when asked for
    except ImportError as e:
        raise CommandError(f"adjit demo is not available: {e}") from None
    return int(demo_main(rest) or 0)


def _checked(fn, *args, what: str = "", **kwargs):
    """Call ``fn``; a TypeError/ValueError it raises about the user's input becomes one line."""
    try:
        return fn(*args, **kwargs)
    except (TypeError, ValueError) as e:
        raise CommandError(f"{what}: {e}" if what else str(e)) from None


def _example_values(model, pairs: list[str]) -> dict:
    from .ir import ancestors
    leaves = {n.name: n for n in ancestors(model.outputs) if n.op in ("input", "param")}
    values = dict(model.example or {})
    for pair in pairs:
        key, eq, text = pair.partition("=")
        if not eq or not key.isidentifier():
            raise CommandError(f"--example expects NAME=VALUE, got {pair!r}")
        if key not in leaves:
            raise CommandError(f"--example {key}: the model has no input or parameter named "
                               f"{key!r} (it has {', '.join(sorted(leaves))})")
        try:
            values[key] = np.asarray(ast.literal_eval(text), dtype=leaves[key].dtype)
        except (ValueError, SyntaxError, TypeError):
            raise CommandError(f"--example {key}: {text!r} is not a number or a list of "
                               f"numbers") from None
    if not values:
        raise CommandError(f"model file {model.path!r} defines no `example`; give the inputs as "
                           f"--example NAME=VALUE ...")
    return values


def main(argv: list[str] | None = None) -> int:
    """Run the ``adjit`` command with ``argv`` (default: ``sys.argv[1:]``); returns the
    exit status."""
    from .ir import AdjitError
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["demo"]:
            return cmd_demo(argv[1:])
        args = _parser().parse_args(argv)
        return args.handler(args)
    except CommandError as e:
        print(f"adjit: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except AdjitError as e:                    # a bad model file, shapes, Graphviz missing
        from .show.dot import GraphvizMissing
        print(f"adjit: error: {e}", file=sys.stderr)
        return 1 if isinstance(e, GraphvizMissing) else EXIT_USAGE
    except BrokenPipeError:                    # `adjit ir MODEL | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
