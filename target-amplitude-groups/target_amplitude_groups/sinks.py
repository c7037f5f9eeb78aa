"""The sink: a batch of records becomes packed /groupidentify requests, acknowledged before STATE."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from singer_sdk.sinks import BatchSink

from groups_mapping import GroupMapping
from target_amplitude_groups.batching import pack
from target_amplitude_groups.client import dump_request

if TYPE_CHECKING:
    from target_amplitude_groups.target import TargetAmplitudeGroups


class AmplitudeGroupsSink(BatchSink):
    """Writes one stream's records as Amplitude group properties."""

    # Records per batch. Each batch is packed into full requests (1024 groups / 1024 properties
    # / 1 MB each), so a large batch keeps the request count near the minimum; the SDK emits
    # STATE only after every batch before it was acknowledged.
    MAX_SIZE_DEFAULT = 20000

    def __init__(
        self, target: TargetAmplitudeGroups, stream_name: str, schema: dict, key_properties: list[str] | None
    ) -> None:
        super().__init__(target, stream_name, schema, key_properties)
        self._target = target
        self.mappings = self._mappings_for(stream_name, schema, key_properties or [])

    def _mappings_for(self, stream: str, schema: dict, keys: list[str]) -> tuple[GroupMapping, ...]:
        target = self._target
        if target.mapping is not None:
            mappings = target.mapping.for_object(stream)
            if not mappings:
                self.logger.warning("Stream '%s' is not in the mapping; its records are ignored", stream)
            return mappings
        if len(keys) != 1:
            self.logger.warning(
                "Stream '%s' has %s key properties; without a mapping the single key property is the "
                "group value, so its records are ignored",
                stream,
                len(keys) or "no",
            )
            return ()
        return (GroupMapping.for_stream(stream, keys[0], schema.get("properties", {})),)

    def process_batch(self, context: dict[str, Any]) -> None:
        """Build, pack and send the batch; raising here keeps STATE (and Meltano's bookmark) back."""
        records: list[dict[str, Any]] = context.get("records", [])
        if not records or not self.mappings:
            return
        target = self._target
        builder = target.builder
        truncated_before = builder.truncated
        identifications, skipped, deleted = builder.build_all(self.mappings, records, self.stream_name)
        for reason in skipped:
            self.logger.warning("Skipped: %s", reason)
        target.stats.add(
            skipped=len(skipped), deleted_ignored=deleted, truncated=builder.truncated - truncated_before
        )
        requests = pack(identifications, target.api_key)
        if target.config.get("dry_run"):
            target.write_dry_run(dump_request(r) for r in requests)
            return
        target.sender.submit(requests)  # sent while the next batch builds; STATE waits for it
