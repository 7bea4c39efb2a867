"""Text report: an import-heavy tool (json, re, datetime, decimal, collections, statistics, difflib, textwrap,
random). Its top level pays for those imports once; every instance restored from the template starts after them.

Input:  UTF-8 text; a first line "compare: OTHER TEXT" also diffs the rest against OTHER TEXT.
Output: JSON with word statistics, the most common words, a wrapped preview, a similarity ratio and a sample id.
"""
import collections
import datetime
import decimal
import difflib
import json
import random
import re
import statistics
import textwrap

WORD = re.compile(r"[A-Za-z']+")
STOP = frozenset("a an and are as at be by for from in is it of on or that the this to was with".split())
EPOCH = datetime.date(2000, 1, 1)


def handle(request: bytes):
    text = request.decode("utf-8")
    other = None
    if text.startswith("compare:"):
        first, _, text = text.partition("\n")
        other = first[len("compare:"):].strip()
    words = [w.lower() for w in WORD.findall(text)]
    lengths = [len(w) for w in words] or [0]
    common = collections.Counter(w for w in words if w not in STOP).most_common(5)
    report = {
        "words": len(words),
        "mean_length": str(decimal.Decimal(statistics.fmean(lengths)).quantize(decimal.Decimal("0.01"))),
        "median_length": statistics.median(lengths),
        "common": common,
        "preview": textwrap.shorten(" ".join(text.split()), width=60, placeholder=" …"),
        "days_since_2000": (datetime.date(2026, 1, 1) - EPOCH).days,
    }
    if other is not None:
        report["similarity"] = round(difflib.SequenceMatcher(None, other, text.strip()).ratio(), 4)
    if text.strip() == "sample":
        report["sample_id"] = random.getrandbits(64)
    return json.dumps(report, sort_keys=True)
