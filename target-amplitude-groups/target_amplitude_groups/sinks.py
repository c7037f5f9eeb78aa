"""The sink: a batch of records becomes packed /groupidentify requests, acknowledged before STATE."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from singer_sdk.sinks import BatchSink

from groups_mapping import GroupMapping
from target_amplitude_groups.batching import Item, Request, pack
from target_amplitude_groups.client import dump_request
from target_amplitude_groups.identify import IdentificationBuilder

if TYPE_CHECKING:
    from target_amplitude_groups.target import TargetAmplitudeGroups


class AmplitudeGroupsSink(BatchSink):
    """Writes one stream's records as Amplitude group properties."""

    # Records per batch: two batches live at once (one sending, one building). Batch size does
    # not cost requests, because a batch's partly filled last request waits for the next one.
    MAX_SIZE_DEFAULT = 10000

    def __init__(
        self, target: TargetAmplitudeGroups, stream_name: str, schema: dict, key_properties: list[str] | None
    ) -> None:
        super().__init__(target, stream_name, schema, key_properties)
        self._target = target
        self.mappings = self._mappings_for(stream_name, schema, key_properties or [])
        # One builder per sink: sinks drain in parallel threads, so nothing mutable is shared.
        self.builder = IdentificationBuilder(target.options, self.logger)
        self._carried: list[Item] = []
        self.retiring = False  # set when a schema change replaces this sink: send everything

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
        """Build and pack the batch and send its full requests; raising keeps STATE back.

        The last, partly filled request is carried into the next batch rather than sent half
        empty; :meth:`flush` sends it before any STATE is written.
        """
        records: list[dict[str, Any]] = context.get("records", [])
        if not records or not self.mappings:
            return
        target = self._target
        builder = self.builder
        truncated_before = builder.truncated
        identifications, skipped, deleted = builder.build_all(self.mappings, records, self.stream_name)
        for reason in skipped:
            self.logger.warning("Skipped: %s", reason)
        target.stats.add(
            skipped=len(skipped), deleted_ignored=deleted, truncated=builder.truncated - truncated_before
        )
        # A carried identification of a group this batch updates again is superseded: dropping
        # it keeps one update per group in flight (requests go out concurrently).
        fresh = {(i["group_type"], i["group_value"]) for i in identifications}
        carried = [
            i
            for i in self._carried
            if (i.identification["group_type"], i.identification["group_value"]) not in fresh
        ]
        requests = pack(identifications, target.api_key, carried)
        self._carried = requests.pop().items if requests and not self.retiring else []
        self._dispatch(requests)

    def flush(self) -> None:
        """Send the carried tail (called before STATE and at the end of the run)."""
        carried, self._carried = self._carried, []
        if carried:
            self._dispatch([Request.of(carried)])

    def _dispatch(self, requests: list[Request]) -> None:
        target = self._target
        if target.config.get("dry_run"):
            target.write_dry_run(dump_request(r) for r in requests)
        elif requests:
            target.sender.submit(requests)  # sent while the next batch builds; STATE waits for it
