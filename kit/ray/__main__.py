"""``python -m kit.ray``: run an unmodified Ray program on kit.

    python -m kit.ray script.py [args...]      the script, with `import ray` giving kit
    python -m kit.ray -m pytest [args...]      a module (pytest running Ray's tests...)
    python -m kit.ray -c "import ray; ..."     a string of code
    python -m kit.ray -                        the program read from stdin

The alias is installed first (``kit/ray/alias.py``), then the program runs as
``__main__``, as ``python`` itself would run it (``sys.argv`` as the program expects).
"""

from __future__ import annotations

import os
import runpy
import sys

USAGE = (
    "usage: python -m kit.ray SCRIPT [ARGS...] | -m MODULE [ARGS...] | -c CODE [ARGS...] | -\n"
    "runs a program written for Ray with `import ray` giving kit"
)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, file=sys.stderr if not argv else sys.stdout)
        return 2 if not argv else 0
    from .alias import install_ray_alias

    install_ray_alias()
    first = argv[0]
    if first == "-m":
        if len(argv) < 2:
            print(USAGE, file=sys.stderr)
            return 2
        sys.argv = [argv[1], *argv[2:]]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        return 0
    if first in ("-c", "-"):
        if first == "-c" and len(argv) < 2:
            print(USAGE, file=sys.stderr)
            return 2
        code = argv[1] if first == "-c" else sys.stdin.read()
        sys.argv = ["-c", *argv[2:]] if first == "-c" else ["-", *argv[1:]]
        sys.path.insert(0, "")
        namespace = {"__name__": "__main__", "__builtins__": __builtins__}
        exec(compile(code, "<string>" if first == "-c" else "<stdin>", "exec"), namespace)
        return 0
    sys.argv = argv
    sys.path[0] = os.path.dirname(os.path.abspath(first))  # as `python script.py`
    runpy.run_path(first, run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
