"""Accessibility checks run inside the browser: axe-core (vendored, see vendor/axe-core/README.md)
for WCAG 2.x A/AA rules, and the layout facts axe does not judge at phone width (no sideways
scrolling, every control on screen and big enough to tap)."""

import functools
import hashlib
from pathlib import Path
from typing import Any, Final

AXE_VERSION: Final = "4.14.1"
AXE_SHA256: Final = "29348999450cdf2849a8e70b7912fc2da85a849da39c0d0d5394f51d4a9ed95c"
AXE_PATH: Final = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
AXE_TAGS: Final = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice")
FAILING_IMPACTS: Final = frozenset({"serious", "critical"})
# WCAG 2.2 SC 2.5.8 (target size, minimum): 24 by 24 CSS pixels.
MIN_TARGET_PX: Final = 24


@functools.cache
def axe_source() -> str:
    data = AXE_PATH.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    assert digest == AXE_SHA256, f"vendored axe.min.js changed ({digest}); see its README"
    return data.decode()


async def axe_violations(page: Any) -> list[dict[str, Any]]:
    """Serious and critical axe violations on the page as it is now (all rules of AXE_TAGS)."""
    if not await page.evaluate("typeof window.axe === 'object'"):
        # Evaluated through the DevTools protocol, not as a <script>: the page's CSP stays on.
        await page.evaluate(axe_source())
    version = await page.evaluate("window.axe.version")
    assert version == AXE_VERSION
    result = await page.evaluate(
        """(tags) => axe.run(document, {
            runOnly: {type: "tag", values: tags},
            resultTypes: ["violations"],
        })""",
        list(AXE_TAGS),
    )
    return [
        {
            "rule": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "where": [n["target"] for n in v["nodes"]][:5],
        }
        for v in result["violations"]
        if v["impact"] in FAILING_IMPACTS
    ]


async def sideways_overflow_px(page: Any) -> int:
    """How far the page scrolls horizontally (0 when it fits the viewport)."""
    return int(
        await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
    )


_UNUSABLE_CONTROLS_JS: Final = """(minimum) => {
  const width = document.documentElement.clientWidth;
  const found = [];
  const selector = "a[href], button, input:not([type=hidden]), select, textarea, summary";
  for (const el of document.querySelectorAll(selector)) {
    if (el.classList.contains("skip")) continue;  // off screen until focused, by design
    const box = el.getBoundingClientRect();
    if (box.width === 0 && box.height === 0) continue;  // not rendered (closed details)
    const inline = el.tagName === "A" && el.closest("p, li, td, dd, figcaption, th");
    const name = el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
      " '" + (el.textContent || el.getAttribute("aria-label") || "").trim().slice(0, 40) + "'";
    if (box.left < -1 || box.right > width + 1) {
      const span = Math.round(box.left) + ".." + Math.round(box.right);
      found.push(name + " is off screen (" + span + ")");
    } else if (!inline && (box.height < minimum || box.width < minimum)) {
      // Links in running text are exempt from the target size (SC 2.5.8, inline exception).
      const size = Math.round(box.width) + "x" + Math.round(box.height);
      found.push(name + " is too small to tap (" + size + ")");
    }
  }
  return found;
}"""


async def unusable_controls(page: Any) -> list[str]:
    """Controls a phone user cannot reach or hit: outside the viewport or under 24x24 px."""
    found: list[str] = await page.evaluate(_UNUSABLE_CONTROLS_JS, MIN_TARGET_PX)
    return found


async def open_all_details(page: Any) -> None:
    """Expand every disclosure, so the checks see the forms inside them too."""
    await page.evaluate("document.querySelectorAll('details').forEach(d => { d.open = true; })")


_OVERFLOWING_JS: Final = """() => {
  const width = document.documentElement.clientWidth;
  const found = [];
  for (const el of document.body.querySelectorAll("*")) {
    const box = el.getBoundingClientRect();
    if (box.right <= width + 1) continue;
    // Report the outermost culprits only: skip those whose parent overflows too.
    const parent = el.parentElement.getBoundingClientRect();
    if (parent.right > width + 1 && el.parentElement !== document.body) continue;
    found.push(el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
      (typeof el.className === "string" && el.className ? "." + el.className : "") +
      " right=" + Math.round(box.right));
  }
  return found.slice(0, 5);
}"""


async def overflowing_elements(page: Any) -> list[str]:
    """The outermost elements reaching past the viewport's right edge (to say what to fix)."""
    found: list[str] = await page.evaluate(_OVERFLOWING_JS)
    return found
