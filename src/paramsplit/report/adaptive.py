"""The adaptive study's section of the report: what the policy skipped, ran on fewer seeds
or stopped early, each with its reason, and the compute spent against the full grid."""

from __future__ import annotations

import html

from paramsplit.adaptive.answer import Saving


def adaptive_html(saving: Saving) -> str:
    esc = html.escape
    parts = [
        f"<p>This study ran adaptively, with the {esc(saving.policy)}. Its ESTs are taken "
        "over the budgets it settled; a skipped budget is not a measurement, and a run "
        "stopped early is neither done nor averaged in anywhere.</p>",
        f"<p><strong>Compute:</strong> {esc(saving.describe())}.</p>",
    ]
    for title, count, lines in (
        ("Budgets skipped", saving.num_skipped, saving.skipped),
        ("Comparisons on fewer seeds", len(saving.fewer_seeds), saving.fewer_seeds),
        ("Comparisons stopped early (their ensembles' runs)", len(saving.stopped), saving.stopped),
    ):
        items = "".join(f"<li>{esc(line)}</li>" for line in lines) or "<li>none</li>"
        parts.append(f"<h3>{title} ({count})</h3><ul>{items}</ul>")
    return "".join(parts)
