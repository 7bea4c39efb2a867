"""The platform's Python code interpreter (POST /v1/sessions {"runtime": "python"}).

Each call's body is a cell of Python source, run in one namespace that lives as long as the session, so
variables, imports, functions and files carry across cells, pauses, resumes and forks. The answer is JSON:
stdout and stderr written by the cell, result (the repr of the cell's last expression, as a notebook shows
it, or null) and error ({name, value, traceback} when the cell raised; the session goes on).
"""
import ast
import contextlib
import importlib
import io
import json
import linecache
import traceback

# The modules cells most often import, loaded here so the template every session starts from has them
# (a cell's import is then a lookup). One this runtime's build lacks is left for the cell to report.
for _module in ("base64", "bisect", "collections", "copy", "csv", "dataclasses", "datetime", "decimal", "enum", "fractions",
                "functools", "hashlib", "heapq", "itertools", "math", "operator", "os", "pathlib", "pprint", "random", "re",
                "statistics", "string", "textwrap", "time", "typing", "uuid"):
    try:
        importlib.import_module(_module)
    except ImportError:
        pass

# What one answer carries of a cell's output and of its result's repr, at most.
_MAX_TEXT = 1 << 20
_MAX_RESULT = 64 << 10

_namespace = {"__name__": "__main__", "__builtins__": __builtins__}
_cells = [0]


def _clip(text, limit):
    if len(text) <= limit:
        return text
    return text[:limit] + "\n[... %d more characters not shown]" % (len(text) - limit)


def _cell_frames(error):
    # The traceback from the cell's own frames on (this file's frames are the platform's, not the user's).
    tb = error.__traceback__
    while tb is not None and not tb.tb_frame.f_code.co_filename.startswith("<cell-"):
        tb = tb.tb_next
    return traceback.format_exception(type(error), error, tb)


def _run(source):
    _cells[0] += 1
    name = "<cell-%d>" % _cells[0]
    # Registered so tracebacks of this cell, and of functions it defines, show its source lines.
    linecache.cache[name] = (len(source), None, source.splitlines(True), name)
    out, err = io.StringIO(), io.StringIO()
    result = None
    error = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            tree = ast.parse(source, filename=name, mode="exec")
            last = None
            if tree.body and isinstance(tree.body[-1], ast.Expr):
                last = ast.Expression(tree.body.pop().value)
            exec(compile(tree, name, "exec"), _namespace)
            if last is not None:
                value = eval(compile(last, name, "eval"), _namespace)
                if value is not None:
                    _namespace["_"] = value
                    result = _clip(repr(value), _MAX_RESULT)
        except BaseException as e:  # SystemExit and KeyboardInterrupt too: the session goes on
            error = {"name": type(e).__name__, "value": str(e), "traceback": "".join(_cell_frames(e))}
    return {
        "stdout": _clip(out.getvalue(), _MAX_TEXT),
        "stderr": _clip(err.getvalue(), _MAX_TEXT),
        "result": result,
        "error": error,
        "cell": _cells[0],
    }


def handle(request):
    try:
        source = request.decode("utf-8")
    except UnicodeDecodeError as e:
        answer = {"stdout": "", "stderr": "", "result": None, "cell": _cells[0],
                  "error": {"name": "UnicodeDecodeError", "value": "the cell is not UTF-8 text: %s" % e, "traceback": ""}}
        return json.dumps(answer)
    return json.dumps(_run(source))
