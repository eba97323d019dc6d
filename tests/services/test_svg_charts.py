"""The server-side SVG renderer: well-formed, accessible, escaped, proportional, offline."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from app.services.svg_charts import (
    Series,
    Stage,
    axis_ticks,
    funnel_chart,
    label_step,
    nice_ceiling,
    stacked_bar_chart,
)


def parse(svg: str) -> ET.Element:
    """Parse the chart as XML (it must be well-formed on its own)."""
    return ET.fromstring(svg)  # noqa: S314 - our own renderer's output, not untrusted input


def chart(**kw) -> str:
    args = {
        "chart_id": "c1",
        "title": "Messages per day",
        "desc": "Two days of messages.",
        "categories": ["1 Mar", "2 Mar"],
        "series": [
            Series("Read", "#009E73", [3, 0]),
            Series("Failed", "#D55E00", [1, 4]),
        ],
    }
    args.update(kw)
    return str(stacked_bar_chart(**args))


def bars(root: ET.Element) -> dict[str, dict[str, ET.Element]]:
    """category -> series label -> its rect."""
    found: dict[str, dict[str, ET.Element]] = {}
    for group in root.iter("g"):
        if group.get("class") == "bar":
            found[group.get("data-category")] = {
                rect.get("data-series"): rect for rect in group.iter("rect")
            }
    return found


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, 1), (1, 1), (2, 2), (3, 5), (7, 10), (10, 10), (11, 20), (260, 500), (1001, 2000)],
)
def test_nice_ceiling(value, expected):
    assert nice_ceiling(value) == expected


@pytest.mark.parametrize(
    ("maximum", "ticks"),
    [
        (0, [0, 1]),
        (4, [0, 1, 2, 3, 4]),
        (5, [0, 2, 4, 6]),
        (37, [0, 10, 20, 30, 40]),
        (1200, [0, 500, 1000, 1500]),
    ],
)
def test_axis_ticks_are_round_and_cover_the_maximum(maximum, ticks):
    assert axis_ticks(maximum) == ticks
    assert ticks[-1] >= maximum


def test_label_step_keeps_labels_apart():
    assert label_step(7, 14) == 1
    assert label_step(90, 14) == 7
    assert label_step(0, 14) == 1


def test_the_bar_chart_is_an_accessible_image():
    root = parse(chart())
    assert root.tag == "svg" and root.get("role") == "img"
    assert root.get("aria-labelledby") == "c1-title c1-desc"
    children = list(root)
    assert (children[0].tag, children[0].get("id"), children[0].text) == (
        "title",
        "c1-title",
        "Messages per day",
    )
    assert (children[1].tag, children[1].get("id"), children[1].text) == (
        "desc",
        "c1-desc",
        "Two days of messages.",
    )
    assert root.get("viewBox") == "0 0 860 320"


def test_segments_stack_in_order_with_heights_proportional_to_values():
    root = parse(chart())
    found = bars(root)
    assert set(found) == {"1 Mar", "2 Mar"}
    # A zero value draws no segment.
    assert set(found["1 Mar"]) == {"Read", "Failed"} and set(found["2 Mar"]) == {"Failed"}
    read, failed = found["1 Mar"]["Read"], found["1 Mar"]["Failed"]
    h_read, h_failed = float(read.get("height")), float(failed.get("height"))
    assert h_read == pytest.approx(3 * h_failed)
    # The first series is at the bottom, the next sits right on top of it.
    assert float(failed.get("y")) + h_failed == pytest.approx(float(read.get("y")))
    # Same value, same height, on another day.
    assert float(found["2 Mar"]["Failed"].get("height")) == pytest.approx(4 * h_failed)
    assert read.get("data-value") == "3"
    assert read.find("title").text == "1 Mar: Read 3"


def test_the_bar_chart_has_a_legend_axis_ticks_and_labels():
    root = parse(chart(y_label="Messages", x_label="Day (IST)"))
    texts = [t.text for t in root.iter("text")]
    legend = next(g for g in root.iter("g") if g.get("class") == "legend")
    assert [t.text for t in legend.iter("text")] == ["Read", "Failed"]
    assert [r.get("fill") for r in legend.iter("rect")] == ["#009E73", "#D55E00"]
    assert {"0", "1", "2", "3", "4"} <= set(texts)  # max stack is 4
    assert "1 Mar" in texts and "2 Mar" in texts
    assert "Messages" in texts and "Day (IST)" in texts


def test_many_days_label_only_some_of_them():
    days = [f"{d} Jan" for d in range(1, 91)]
    root = parse(chart(categories=days, series=[Series("Read", "#000", [1] * 90)]))
    labels = [t.text for t in root.iter("text") if t.get("class") == "x-label"]
    assert labels[0] == "1 Jan" and 5 <= len(labels) <= 15
    assert len(bars(root)) == 90


def test_an_empty_chart_says_so():
    root = parse(chart(series=[Series("Read", "#000", [0, 0])], empty_text="Nothing yet."))
    assert [t.text for t in root.iter("text") if t.get("class") == "empty"] == ["Nothing yet."]
    assert not [r for r in root.iter("rect") if r.get("data-series")]


def test_a_series_of_the_wrong_length_is_refused():
    with pytest.raises(ValueError, match="expected 2"):
        chart(series=[Series("Read", "#000", [1])])


def test_a_long_legend_wraps_and_pushes_the_plot_down():
    many = [Series(f"A rather long series label {i}", "#000", [1, 1]) for i in range(6)]
    root = parse(chart(series=many))
    legend = next(g for g in root.iter("g") if g.get("class") == "legend")
    rows = {t.get("y") for t in legend.iter("text")}
    assert len(rows) > 1
    lowest_legend = max(float(y) for y in rows)
    tops = [float(r.get("y")) for r in root.iter("rect") if r.get("data-series")]
    assert min(tops) > lowest_legend


HOSTILE = '<script>alert("x")</script> & "quotes"'


def test_every_text_is_escaped():
    svg = chart(
        chart_id='c"1',
        title=HOSTILE,
        desc=HOSTILE,
        categories=[HOSTILE, "ok"],
        series=[Series(HOSTILE, '#000" onclick="x', [1, 2])],
    )
    assert "<script>" not in svg and 'onclick="x' not in svg
    root = parse(svg)  # still well-formed
    assert root.find("title").text == HOSTILE
    funnel = str(funnel_chart("f", HOSTILE, HOSTILE, [Stage(HOSTILE, 3)]))
    assert "<script>" not in funnel
    assert parse(funnel).find("title").text == HOSTILE


def test_charts_reference_nothing_outside_the_page():
    for svg in (chart(), str(funnel_chart("f", "t", "d", [Stage("Sent", 2)]))):
        assert not re.search(r"https?://|href=|<image|@import|url\(", svg)


def test_the_funnel_draws_one_bar_per_stage_proportional_to_the_largest():
    stages = [
        Stage("Attempted", 200),
        Stage("Sent", 150),
        Stage("Read", 50),
        Stage("Failed", 0, "#D55E00"),
    ]
    root = parse(str(funnel_chart("f1", "Campaign funnel", "desc", stages)))
    assert root.get("role") == "img" and root.find("title").get("id") == "f1-title"
    groups = [g for g in root.iter("g") if g.get("class") == "stage"]
    assert [g.get("data-stage") for g in groups] == ["Attempted", "Sent", "Read", "Failed"]
    widths = [
        float(next(r for r in g.iter("rect") if r.get("data-value")).get("width")) for g in groups
    ]
    assert widths[1] == pytest.approx(widths[0] * 0.75)
    assert widths[2] == pytest.approx(widths[0] * 0.25)
    assert widths[3] == 0
    values = [next(t for t in g.iter("text") if t.get("class") == "value").text for g in groups]
    assert values == ["200 (100%)", "150 (75%)", "50 (25%)", "0 (0%)"]


def test_the_funnel_percentages_use_the_given_base_and_survive_zero():
    stages = [Stage("Sent", 5), Stage("Skipped", 20)]
    root = parse(str(funnel_chart("f", "t", "d", stages, base=10)))
    values = [t.text for t in root.iter("text") if t.get("class") == "value"]
    assert values == ["5 (50%)", "20 (200%)"]
    own = parse(str(funnel_chart("f", "t", "d", [Stage("Sent", 4), Stage("Skipped", 3, base=12)])))
    assert [t.text for t in own.iter("text") if t.get("class") == "value"] == [
        "4 (100%)",
        "3 (25%)",
    ]
    empty = parse(str(funnel_chart("f", "t", "d", [Stage("Sent", 0)], base=0)))
    assert [t.text for t in empty.iter("text") if t.get("class") == "value"] == ["0"]
