"""The pseudonym is HMAC-SHA256 of the id under the key, whatever the call order."""

from __future__ import annotations

import hmac
import pickle

from hypothesis import given
from hypothesis import strategies as st

from core.pseudonym import Pseudonymiser


@given(key=st.text(min_size=1, max_size=80), ids=st.lists(st.text(max_size=40), max_size=6))
def test_pseudonyms_equal_the_one_shot_hmac_in_any_order(key: str, ids: list[str]) -> None:
    pseudonym = Pseudonymiser(key)
    for customer_id in [*ids, *reversed(ids)]:  # a call never leaves state for the next
        expected = hmac.digest(key.encode(), customer_id.encode(), "sha256").hex()
        assert pseudonym(customer_id) == expected


def test_a_pickled_pseudonymiser_keys_ids_the_same_and_its_repr_hides_the_key() -> None:
    pseudonym = Pseudonymiser("a-secret-key")
    copy = pickle.loads(pickle.dumps(pseudonym))
    assert copy("S0000001") == pseudonym("S0000001")
    assert copy("S0000001") != Pseudonymiser("another-key")("S0000001")
    assert "a-secret-key" not in repr(copy)
