"""How ``diagnose`` prints its answers: a short text for people, JSON for scripts.

The text groups the answers by resource; nodes a resource does not select are summed up in
one line unless a node was asked about (a cluster has many nodes without the hardware).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from deviceplugin_operator.inspection import diagnosis

_NAMED_UNSELECTED = 3


def as_json(found: Sequence[diagnosis.ResourceDiagnosis]) -> str:
    problems = sum(resource.problems for resource in found)
    document = {"problems": problems, "resources": [resource.json() for resource in found]}
    return json.dumps(document, indent=2)


def as_text(found: Sequence[diagnosis.ResourceDiagnosis], *, node: str | None = None) -> str:
    if not found:
        return "No device plugin resources found.\n"
    lines: list[str] = []
    for resource in found:
        header = f"{resource.kind} {resource.name}"
        if resource.daemonset:
            header += (
                f"  (DaemonSet {resource.daemonset}: {resource.desired} desired,"
                f" {resource.ready} ready)"
            )
        lines.append(header)
        shown = [
            f
            for f in resource.findings
            if node is not None or f.answer is not diagnosis.Answer.NOT_SELECTED
        ]
        unselected = [f for f in resource.findings if f not in shown]
        width = max((len(f.node or "") for f in shown), default=0)
        for finding in shown:
            where = finding.node or "(all nodes)"
            lines.append(f"  {where:<{width}}  {finding.answer:<17}  {finding.message}")
        if unselected:
            examples = "; ".join(
                f"{f.node}: {f.message.removeprefix('not selected: ')}"
                for f in unselected[:_NAMED_UNSELECTED]
            )
            more = "" if len(unselected) <= _NAMED_UNSELECTED else ", ..."
            lines.append(f"  not selected: {len(unselected)} node(s) ({examples}{more})")
    problems = sum(resource.problems for resource in found)
    lines.append(f"{problems} problem(s) found." if problems else "No problem found.")
    return "\n".join(lines) + "\n"
