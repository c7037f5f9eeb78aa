"""The target's form encoding of identifications is exactly quote_plus of their compact JSON."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote_plus

from hypothesis import given, settings
from hypothesis import strategies as st

from target_amplitude_groups.batching import encode_identification, form_encode, form_encode_identification

# Every JSON value json.dumps accepts, including non-finite floats and integers past 2**63.
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(
    group_type=st.text(),
    group_value=st.text(),
    props=st.dictionaries(st.text(), values, max_size=8),
    unset=st.dictionaries(st.text(), st.just("-"), max_size=4),
)
def test_identification_encoding_is_quote_plus_of_compact_json(
    group_type: str, group_value: str, props: dict[str, Any], unset: dict[str, str]
) -> None:
    ops: dict[str, Any] = {"$set": props} if props else {}
    if unset:
        ops["$unset"] = unset
    identification = {"group_type": group_type, "group_value": group_value, "group_properties": ops}
    assert form_encode_identification(identification) == quote_plus(encode_identification(identification))


def test_keys_that_are_not_strings_are_encoded_as_json_does() -> None:
    identification: dict[str, Any] = {
        "group_properties": {"$set": {1: "a", None: 2.5, 7.5: [1, {"k": None}]}}
    }
    expected = quote_plus(json.dumps(identification, separators=(",", ":"), ensure_ascii=False))
    assert form_encode_identification(identification) == expected


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_form_encode_is_quote_plus_on_any_text(text: str) -> None:
    assert form_encode(text) == quote_plus(text)


def test_plain_text_values_take_the_short_way_to_the_same_bytes() -> None:
    values = ["Acme Widgets Ltd", "", " ", "  two  spaces ", "a-b_c.d~e 9", "Customer - Direct"]
    identification = {
        "group_type": "org id",
        "group_value": "001 x",
        "group_properties": {"$set": {f"p {i}": v for i, v in enumerate(values)}, "$unset": {"gone": "-"}},
    }
    assert form_encode_identification(identification) == quote_plus(encode_identification(identification))
