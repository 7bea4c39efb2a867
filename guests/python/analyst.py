"""analyst: a data tool an agent keeps open as a session. Its tables and variables live in the
instance's memory between calls, so a session (POST /v1/sessions) carries them across calls,
pauses and resumes. Commands, one per call:
  load NAME 1,2,3     store a table of numbers          -> "NAME: 3 values"
  append NAME 4.5     add a value                       -> "NAME: 4 values"
  describe NAME       statistics of a table (JSON)
  let VAR EXPR        a variable from a decimal expression over numbers and other variables
  vars                every variable (JSON)
  tables              table names and sizes (JSON)
  synth NAME ROWS     a synthetic dataset of ROWS random rows written to /tmp/data/NAME.csv
  files               the datasets under /tmp/data and their sizes (JSON)
"""
import collections
import datetime
import decimal
import difflib
import json
import os
import random
import re
import statistics
import textwrap

TABLES = collections.OrderedDict()
VARS = {}
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d*)?)|([A-Za-z_]\w*)|(.))")
decimal.getcontext().prec = 28


def _numbers(text):
    return [float(m) for m in _NUMBER.findall(text)]


def _evaluate(expression):
    # Only numbers, known variables, + - * / and parentheses: no eval.
    tokens = []
    for number, name, op in _TOKEN.findall(expression):
        if number:
            tokens.append(decimal.Decimal(number))
        elif name:
            if name not in VARS:
                raise KeyError("unknown variable " + name)
            tokens.append(decimal.Decimal(VARS[name]))
        elif op.strip():
            if op not in "+-*/()":
                raise ValueError("unexpected " + repr(op))
            tokens.append(op)
    position = 0

    def atom():
        nonlocal position
        token = tokens[position]
        position += 1
        if token == "(":
            value = expr()
            position += 1
            return value
        if token == "-":
            return -atom()
        return token

    def term():
        nonlocal position
        value = atom()
        while position < len(tokens) and tokens[position] in ("*", "/"):
            op = tokens[position]
            position += 1
            value = value * atom() if op == "*" else value / atom()
        return value

    def expr():
        nonlocal position
        value = term()
        while position < len(tokens) and tokens[position] in ("+", "-"):
            op = tokens[position]
            position += 1
            value = value + term() if op == "+" else value - term()
        return value

    return expr()


def handle(request):
    text = request.decode().strip()
    command, _, rest = text.partition(" ")
    if command == "load":
        name, _, values = rest.partition(" ")
        TABLES[name] = _numbers(values)
        return "%s: %d values" % (name, len(TABLES[name]))
    if command == "append":
        name, _, value = rest.partition(" ")
        TABLES.setdefault(name, []).extend(_numbers(value))
        return "%s: %d values" % (name, len(TABLES[name]))
    if command == "describe":
        values = TABLES[rest]
        return json.dumps({
            "table": rest,
            "count": len(values),
            "mean": round(statistics.fmean(values), 6),
            "median": statistics.median(values),
            "stdev": round(statistics.pstdev(values), 6),
            "at": datetime.date(2026, 1, 1).isoformat(),
        })
    if command == "let":
        name, _, expression = rest.partition(" ")
        VARS[name] = str(_evaluate(expression))
        return "%s = %s" % (name, VARS[name])
    if command == "vars":
        return json.dumps(VARS, sort_keys=True)
    if command == "tables":
        return json.dumps({name: len(values) for name, values in TABLES.items()})
    if command == "synth":
        name, _, rows = rest.partition(" ")
        os.makedirs("/tmp/data", exist_ok=True)
        path = "/tmp/data/%s.csv" % name
        with open(path, "w") as f:
            f.write("row,value\n")
            chunk = []
            for row in range(int(rows)):
                chunk.append("%d,%.6f\n" % (row, random.random()))
                if len(chunk) == 4096:
                    f.write("".join(chunk))
                    chunk = []
            f.write("".join(chunk))
        return "%s.csv: %d bytes" % (name, os.path.getsize(path))
    if command == "files":
        found = sorted(os.listdir("/tmp/data")) if os.path.isdir("/tmp/data") else []
        return json.dumps({name: os.path.getsize("/tmp/data/" + name) for name in found})
    close = difflib.get_close_matches(command, ["load", "append", "describe", "let", "vars", "tables", "synth", "files"], n=1)
    return textwrap.shorten("unknown command %r%s" % (command, "; did you mean %s?" % close[0] if close else ""), 200)
