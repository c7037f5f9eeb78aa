"""What a mapping change does to the groups already in Amplitude, said before it happens.

The tap acts on a changed mapping by itself on the next run (new fields are backfilled to every
group; a new group name field or group type reads every row again). What it cannot do is take
anything back: Amplitude's Group Identify API only sets and unsets properties of named groups, so
groups named under an old identity, and the last value of a property no longer mapped, stay.
``verify`` and the editor show these lines.
"""

from __future__ import annotations

from groups_mapping import MappingConfig


def mapping_changes(old: MappingConfig | None, new: MappingConfig) -> list[str]:
    """One line per consequence of going from ``old`` to ``new`` (nothing when ``old`` is None)."""
    if old is None:
        return []
    lines: list[str] = []
    before = {(m.object.lower(), m.group_type): m for m in old.mappings}
    after = {(m.object.lower(), m.group_type): m for m in new.mappings}
    for key, m in after.items():
        was = before.get(key)
        if was is None:
            if any(o == key[0] for o, _ in before):
                lines.append(
                    f"{m.label}: new group type '{m.group_type}' for {m.object}: the next run reads "
                    "every row to send these groups"
                )
            continue
        if was.group_name_field.lower() != m.group_name_field.lower():
            lines.append(
                f"{m.label}: the group name field changed from {was.group_name_field} to "
                f"{m.group_name_field}: the next run reads every row again and sends the groups under "
                f"the new names; the groups named by {was.group_name_field} stay in Amplitude"
            )
        old_props = {p.property: p for p in was.properties}
        new_props = {p.property for p in m.properties}
        gone = [name for name in old_props if name not in new_props]
        if gone:
            lines.append(
                f"{m.label}: no longer mapped: {', '.join(repr(g) for g in gone)}; Amplitude keeps "
                "each group's last value of these properties (nothing is sent to remove them)"
            )
        added = [p.field for p in m.properties if p.property not in old_props]
        if added:
            lines.append(
                f"{m.label}: new properties from {', '.join(added)}: the next run backfills them to "
                "every existing group"
            )
    for key, was in before.items():
        if key not in after:
            lines.append(
                f"{was.object} -> {was.group_type}: no longer mapped; its groups stay in Amplitude "
                "with their last values"
            )
    return lines
