"""Answers as rows (``tally query --format table|csv``): one row per bucket."""

from __future__ import annotations

from typing import Any


def _series_name(series: dict[str, Any]) -> str:
    name = f"{series['event']} {series['measure']}"
    if series.get("other"):
        return f"{name} (other)"
    if series.get("breakdown") is not None:
        return f"{name} [{series['breakdown']}]"
    return name


def rows_of(answer: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    if "series" in answer:
        series = answer["series"]
        header = ["t", *(_series_name(s) for s in series)]
        if not series:
            return header, []
        times = [point["t"] for point in series[0]["points"]]
        rows = [[t, *(s["points"][i]["value"] for s in series)] for i, t in enumerate(times)]
        rows.append(["total", *(s["total"] for s in series)])
        return header, rows
    points = answer["points"]
    header = list(points[0]) if points else ["t"]
    return header, [[point[key] for key in header] for point in points]
