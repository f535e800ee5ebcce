"""Searchset and history Bundles as FHIR R4 servers answer them.

The resources go in as they are served by read (no model round trip, which
would rewrite `45.267+00:00` as `45.267000Z`): a resource's bytes are the same
in a Bundle and on its own. Links carry the query the server ran (parameters it
ignored under lenient handling left out) with `_count` and the page's `_offset`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode


def page_url(
    base: str, resource_type: str, kept: list[tuple[str, str]], count: int, offset: int
) -> str:
    """The URL of one page of a search: `base` is the FHIR base ending in `/`."""
    params = [(k, v) for k, v in kept if k != "_count"] + [("_count", str(count))]
    if offset:
        params.append(("_offset", str(offset)))
    return f"{base}{resource_type}?{urlencode(params)}"


def searchset(
    base: str,
    resource_type: str,
    kept: list[tuple[str, str]],
    count: int,
    offset: int,
    total: int | None,
    matches: list[dict[str, Any]],
    included: list[dict[str, Any]],
    notes: list[dict[str, Any]],
    size: int | None = None,
    matching: int | None = None,
) -> dict[str, Any]:
    """A searchset Bundle: total (left out if None), self/first/previous/next links,
    the page's matches (search.mode match), included resources (include) and notes
    (outcome). `size`: how many matches the page took, if fewer than `count` (the
    next page follows them); `matching`: how many matches the pages run over, if
    not `total`."""
    taken = count if size is None else size
    links = [
        {"relation": "self", "url": page_url(base, resource_type, kept, count, offset)},
        {"relation": "first", "url": page_url(base, resource_type, kept, count, 0)},
    ]
    if offset > 0:
        previous = max(0, offset - count)
        links.append(
            {"relation": "previous", "url": page_url(base, resource_type, kept, count, previous)}
        )
    if offset + taken < ((total or 0) if matching is None else matching):
        links.append(
            {"relation": "next", "url": page_url(base, resource_type, kept, count, offset + taken)}
        )
    entries = [_entry(base, r, "match") for r in matches]
    entries += [_entry(base, r, "include") for r in included]
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if total is not None:
        bundle["total"] = total
    bundle["link"] = links
    if entries or notes:
        bundle["entry"] = entries + notes
    return bundle


def _entry(base: str, resource: dict[str, Any], mode: str) -> dict[str, Any]:
    return {
        "fullUrl": f"{base}{resource['resourceType']}/{resource['id']}",
        "resource": resource,
        "search": {"mode": mode},
    }


def history(base: str, self_url: str, versions: list[dict[str, Any]]) -> dict[str, Any]:
    """A history Bundle of a resource's versions (newest first), each with the
    request that made it (POST for the first version, PUT after)."""
    entries = []
    for resource in versions:
        version = resource["meta"]["versionId"]
        url = f"{resource['resourceType']}/{resource['id']}"
        entries.append(
            {
                "fullUrl": f"{base}{url}",
                "resource": resource,
                "request": {
                    "method": "POST" if version == "1" else "PUT",
                    "url": resource["resourceType"] if version == "1" else url,
                },
                "response": {
                    "status": "201 Created" if version == "1" else "200 OK",
                    "etag": f'W/"{version}"',
                    "lastModified": resource["meta"]["lastUpdated"],
                },
            }
        )
    return {
        "resourceType": "Bundle",
        "type": "history",
        "total": len(entries),
        "link": [{"relation": "self", "url": self_url}],
        "entry": entries,
    }
