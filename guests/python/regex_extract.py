"""Regex extractor: pulls e-mail addresses, URLs, ISO dates and amounts out of free text.

Input:  any UTF-8 text.
Output: {"emails": [...], "urls": [...], "dates": [...], "amounts": [...]}, each in order of appearance, deduplicated.
"""
import json
import re

PATTERNS = {
    "emails": re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"),
    "urls": re.compile(r"https?://[^\s<>\"')]+"),
    "dates": re.compile(r"\b\d{4}-\d{2}-\d{2}\b"),
    "amounts": re.compile(r"(?<![\w.])[$€£]\s?\d+(?:[.,]\d{2})?"),
}


def handle(request: bytes):
    text = request.decode("utf-8")
    found = {}
    for name, pattern in PATTERNS.items():
        seen = []
        for match in pattern.findall(text):
            if match not in seen:
                seen.append(match)
        found[name] = seen
    return json.dumps(found)
