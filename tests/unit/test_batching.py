"""Packing identifications into requests: every limit holds and no request is wasted."""

import json
import math
from urllib.parse import urlencode

from hypothesis import given, settings
from hypothesis import strategies as st

from target_amplitude_groups.batching import (
    MAX_BODY_BYTES,
    MAX_IDENTIFICATIONS,
    MAX_PROPERTIES,
    Item,
    pack,
)

KEY = "k3y/with+odd=chars"


def ident(value, props=1, text="v"):
    return {
        "group_type": "org id",
        "group_value": str(value),
        "group_properties": {"$set": {f"p{i}": text for i in range(props)}},
    }


def body_bytes(request):
    return len(urlencode({"api_key": KEY, "identification": request.identification_param}))


def check_limits(requests):
    for r in requests:
        assert len(r.items) <= MAX_IDENTIFICATIONS
        assert sum(i.properties for i in r.items) == r.properties <= MAX_PROPERTIES
        assert body_bytes(r) <= MAX_BODY_BYTES


def test_identification_limit():
    requests = pack([ident(i) for i in range(3000)], KEY)
    # 1 property each: the property limit (1024) and the count limit coincide
    assert [len(r.items) for r in requests] == [1024, 1024, 952]
    check_limits(requests)


def test_property_limit_counts_set_and_unset():
    two = {
        "group_type": "t",
        "group_value": "g",
        "group_properties": {"$set": {"a": 1}, "$unset": {"b": "-"}},
    }
    assert Item.of(two).properties == 2
    requests = pack([dict(two, group_value=str(i)) for i in range(1000)], KEY)
    assert [len(r.items) for r in requests] == [512, 488]
    check_limits(requests)


def test_byte_limit_is_exact_for_the_encoded_body():
    big = "é" * 1000  # 2 UTF-8 bytes, 6 encoded characters each
    requests = pack([ident(i, props=1, text=big) for i in range(400)], KEY)
    check_limits(requests)
    assert len(requests) == math.ceil(
        sum(Item.of(ident(i, 1, big)).encoded_bytes for i in range(400)) / MAX_BODY_BYTES
    )
    # the estimate equals what requests/urllib really encode
    assert body_bytes(requests[0]) == len("api_key=") + len("k3y%2Fwith%2Bodd%3Dchars") + len(
        "&identification="
    ) + requests[0].encoded_bytes + len("%5B%5D")


def test_a_group_with_too_many_properties_is_split_into_partial_updates():
    requests = pack([ident("wide", props=3000)], KEY)
    check_limits(requests)
    items = [i.identification for r in requests for i in r.items]
    assert {i["group_value"] for i in items} == {"wide"}
    merged = {k for i in items for k in i["group_properties"]["$set"]}
    assert merged == {f"p{i}" for i in range(3000)}


def test_identification_param_is_a_json_array_in_order():
    requests = pack([ident(i) for i in range(5)], KEY)
    assert [i["group_value"] for i in json.loads(requests[0].identification_param)] == list("01234")
    left, right = requests[0].split()
    assert [len(left.items), len(right.items)] == [2, 3]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 3000)), min_size=1, max_size=300))
def test_packing_is_within_limits_and_near_the_minimum(shapes):
    idents = [ident(i, props=p, text="x" * size) for i, (p, size) in enumerate(shapes) if p]
    if not idents:
        return
    requests = pack(idents, KEY)
    check_limits(requests)
    assert sum(len(r.items) for r in requests) >= len(idents)
    items = [Item.of(i) for i in idents]
    lower_bound = max(
        math.ceil(len(items) / MAX_IDENTIFICATIONS),
        math.ceil(sum(i.properties for i in items) / MAX_PROPERTIES),
        math.ceil(sum(i.encoded_bytes for i in items) / MAX_BODY_BYTES),
    )
    # Greedy in-order packing wastes at most one item's worth per request boundary.
    assert lower_bound <= len(requests) <= 2 * lower_bound


def test_body_is_the_form_encoding_of_api_key_and_identification():
    for request in pack([ident(i, props=3, text="ü &=+%") for i in range(50)], KEY):
        expected = urlencode({"api_key": KEY, "identification": request.identification_param})
        assert request.body(KEY) == expected.encode()


def test_form_encode_matches_quote_plus_on_every_character():
    from urllib.parse import quote_plus

    from target_amplitude_groups.batching import form_encode

    ascii_text = "".join(chr(c) for c in range(128))
    assert form_encode(ascii_text) == quote_plus(ascii_text)
    assert form_encode('{"a":"é 東 🚀"}') == quote_plus('{"a":"é 東 🚀"}')
    for request in pack([ident(i, props=3, text="plain ascii &=+%/?") for i in range(20)], KEY):
        assert (
            request.body(KEY)
            == urlencode({"api_key": KEY, "identification": request.identification_param}).encode()
        )


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(exclude_categories=["Cs"])))
def test_form_encode_is_quote_plus(text):
    from urllib.parse import quote_plus

    from target_amplitude_groups.batching import form_encode

    assert form_encode(text) == quote_plus(text)


# -- packing as identifications arrive (issue 20) ---------------------------------------------------
def merged_whole(identifications):
    """What packing a whole batch sends: one identification per group, later ones merged in."""
    import copy

    from target_amplitude_groups.identify import merge_into

    latest: dict = {}
    for identification in identifications:
        key = (identification["group_type"], identification["group_value"])
        if key in latest:
            merge_into(latest[key], copy.deepcopy(identification))
        else:
            latest[key] = copy.deepcopy(identification)
    return list(latest.values())


def bodies(requests):
    return [r.body(KEY) for r in requests]


def stream_pack(identifications, hold):
    import copy

    from target_amplitude_groups.batching import Packer

    packer = Packer(KEY, hold_records=hold)
    out = []
    for identification in identifications:
        packer.add(copy.deepcopy(identification))
        out += packer.end_record()
    return out + packer.flush()


updates = st.lists(
    st.tuples(st.integers(0, 60), st.integers(1, 300), st.sampled_from(["a", "ü & =", "x" * 300])),
    max_size=120,
)


@settings(max_examples=60, deadline=None)
@given(updates)
def test_updates_within_the_hold_give_the_requests_of_packing_the_batch_whole(rows):
    idents = [ident(value, props, text) for value, props, text in rows]
    streamed = stream_pack(idents, hold=len(idents) + 1)
    assert bodies(streamed) == bodies(pack(merged_whole(idents), KEY))
    check_limits(streamed)


@settings(max_examples=60, deadline=None)
@given(updates)
def test_updates_past_the_hold_travel_separately_and_applied_in_order_give_the_same_groups(rows):
    def applied(requests):
        groups: dict = {}
        for request in requests:
            for item in request.items:
                i = item.identification
                groups.setdefault(i["group_value"], {}).update(i["group_properties"]["$set"])
        return groups

    idents = [ident(value, props, text) for value, props, text in rows]
    streamed = stream_pack(idents, hold=2)
    assert applied(streamed) == applied(pack(merged_whole(idents), KEY))
    check_limits(streamed)
    for request in streamed:  # a request never carries a group twice
        values = [item.identification["group_value"] for item in request.items]
        assert len(values) == len(set(values))
