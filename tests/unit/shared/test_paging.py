import pytest

from shared.errors import InvalidInput
from shared.paging import decode_cursor, encode_cursor


@pytest.mark.parametrize("position", [0, 17, 2**62, "01a21b8c-1c04-7b95-89cd-980fd728d11d"])
def test_a_cursor_gives_back_its_position(position):
    assert decode_cursor(encode_cursor(position), type(position)) == position


def test_no_cursor_means_the_first_page():
    assert decode_cursor(None, int) is None


@pytest.mark.parametrize(
    "cursor", ["%%%", "bm90IGpzb24", encode_cursor("12"), encode_cursor(-1), "W3RydWVd"]
)
def test_a_cursor_this_service_did_not_give_out_is_refused(cursor):
    with pytest.raises(InvalidInput):
        decode_cursor(cursor, int)
