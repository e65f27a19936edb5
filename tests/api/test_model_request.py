"""ModelRequest: the request headers the model routes read, from the ASGI scope."""

from sluice.api.http import ModelRequest


def test_headers_are_decoded_as_latin_1_and_the_first_of_a_repeated_one_wins():
    scope = {"headers": [(b"authorization", b"Bearer sk-1"), (b"x-sluice-tags", b"a,b"), (b"x-sluice-tags", b"c"),
                         (b"x-caf\xe9", b"\xe9t\xe9")]}
    headers = ModelRequest(scope, None).headers
    assert headers == {"authorization": "Bearer sk-1", "x-sluice-tags": "a,b", "x-café": "été"}


def test_a_request_without_headers_has_an_empty_dict():
    assert ModelRequest({"headers": []}, None).headers == {}
