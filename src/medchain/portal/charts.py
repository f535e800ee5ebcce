"""Bar charts drawn by matplotlib's SVG backend, made fit to sit inline in a page
whose Content-Security-Policy forbids scripts and inline styles.

Matplotlib writes its colours and fonts as `style="..."` attributes and a `<style>`
element, which `style-src 'self'` blocks (the chart would render black); every
declaration it writes is also an SVG presentation attribute, so each becomes one
(`fill="#1f77b4"`), which no CSP governs. Ids get the chart's own prefix, so two
charts on one page do not share one. The SVG is hidden from assistive technology:
each chart's data table beside it is its text alternative.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from xml.etree import ElementTree as ET

import defusedxml.ElementTree as SafeET  # type: ignore[import-untyped]
from markupsafe import Markup

SVG_NS = "http://www.w3.org/2000/svg"
XLINK_NS = "http://www.w3.org/1999/xlink"
XLINK_HREF = f"{{{XLINK_NS}}}href"
COLOURS = ("#1f5fa8", "#c2410c", "#15803d", "#7e22ce", "#a16207", "#0e7490", "#be123c")


def bar_chart(
    name: str,
    categories: Sequence[str],
    series: Mapping[str, Sequence[float]],
    stacked: bool = True,
    percent: bool = False,
) -> Markup:
    """`series` (label -> one value per category) as bars over `categories`, stacked
    or side by side, as inline SVG markup; `name` prefixes its ids."""
    # Imported here: matplotlib takes seconds to import, and every `medchain` command
    # imports the portal's pages; only a chart page needs it.
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    with matplotlib.rc_context(
        {
            "svg.fonttype": "none",  # text stays text: the browser's fonts, CJK included
            "svg.hashsalt": "medchain",  # the same data gives the same SVG
            "font.size": 9,
            "text.parse_math": False,  # a "$" in an organisation id is text, not TeX
        }
    ):
        fig = Figure(figsize=(7.2, 2.8), layout="constrained")
        ax = fig.subplots()
        positions = list(range(len(categories)))
        bottoms = [0.0] * len(categories)
        width = 0.8 if stacked else 0.8 / max(len(series), 1)
        for i, (label, values) in enumerate(series.items()):
            colour = COLOURS[i % len(COLOURS)]
            if stacked:
                ax.bar(positions, values, 0.8, bottom=bottoms, label=label, color=colour)
                bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
            else:
                shifted = [p - 0.4 + width * (i + 0.5) for p in positions]
                ax.bar(shifted, values, width, label=label, color=colour)
        ax.set_xticks(positions, list(categories), rotation=30 if len(categories) > 6 else 0)
        ax.set_xlim(-0.6, max(len(categories), 8) - 0.4)  # a lone bar is not a wall
        ax.yaxis.set_major_locator(MaxNLocator(integer=not percent))
        if percent:
            ax.set_ylim(0, 100)
        ax.spines[["top", "right"]].set_visible(False)
        if len(series) > 1:
            ax.legend(loc="upper left", frameon=False, fontsize=8)
        out = io.StringIO()
        fig.savefig(out, format="svg", metadata={"Date": None, "Creator": None})
    return Markup(inline_svg(out.getvalue(), name))


def inline_svg(document: str, prefix: str) -> str:
    """An SVG document as an inline element with no `style` (see the module's note)."""
    root = SafeET.fromstring(document.encode())  # defusedxml parses, the stdlib writes
    for parent in list(root.iter()):
        for child in list(parent):
            if child.tag in (f"{{{SVG_NS}}}metadata", f"{{{SVG_NS}}}style"):
                parent.remove(child)
    for element in root.iter():
        style = element.attrib.pop("style", "")
        for declaration in style.split(";"):
            prop, _, value = declaration.partition(":")
            if prop.strip() and value.strip():
                element.set(prop.strip(), value.strip())
        if "id" in element.attrib:
            element.set("id", f"{prefix}-{element.get('id')}")
        if element.get(XLINK_HREF, "").startswith("#"):
            element.set(XLINK_HREF, f"#{prefix}-{element.get(XLINK_HREF, '')[1:]}")
        for attr in ("clip-path", "mask", "filter"):
            value = element.get(attr, "")
            if value.startswith("url(#"):
                element.set(attr, f"url(#{prefix}-{value[5:]}")
    root.set("stroke-linejoin", "round")
    root.set("stroke-linecap", "butt")
    root.set("aria-hidden", "true")
    root.set("focusable", "false")
    root.set("class", "chart")
    for size in ("width", "height"):
        root.attrib.pop(size, None)
    return _serialise(root)


def _serialise(root: ET.Element) -> str:
    """The element as markup with `svg` as the default namespace and `xlink:` kept."""
    ET.register_namespace("", SVG_NS)
    ET.register_namespace("xlink", XLINK_NS)
    return ET.tostring(root, encoding="unicode")
