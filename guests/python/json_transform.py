"""JSON transform: filter, project and sort records, as an agent's data-shaping tool.

Input:  {"records": [...], "where": {"field": value, ...}, "select": ["field", ...], "sort": "field", "desc": false, "limit": 10}
Output: {"count": N, "records": [...]}
"""
import json


def handle(request: bytes):
    query = json.loads(request or b"{}")
    records = query.get("records", [])
    if not isinstance(records, list):
        raise ValueError("records must be a list of objects")
    where = query.get("where", {})
    rows = [r for r in records if all(r.get(k) == v for k, v in where.items())]
    if "sort" in query:
        rows.sort(key=lambda r: (r.get(query["sort"]) is None, r.get(query["sort"])), reverse=bool(query.get("desc")))
    if "select" in query:
        rows = [{k: r.get(k) for k in query["select"]} for r in rows]
    if "limit" in query:
        rows = rows[: int(query["limit"])]
    return json.dumps({"count": len(rows), "records": rows}, sort_keys=True)
