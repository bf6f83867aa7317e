"""What the dashboard masks in payloads, results and errors (no server needed)."""

from __future__ import annotations

from worker import logs
from worker.web.mask import MASK, mask, mask_text, mask_url


def test_values_under_secret_keys_are_masked_at_any_depth_and_the_shape_stays() -> None:
    payload = {
        "spec_version": 1,
        "api_key": "k-1",
        "layers": [{"type": "speech", "headers": {"Authorization": "Bearer t-2"}, "text": "hello"}],
        "webhook": {"secret": "s-3", "token": "", "url": "https://hooks.example/x"},
        "key": "generated/a.mp3",  # a storage key is not a secret
    }
    out = mask(payload)
    assert out["api_key"] == MASK and out["layers"][0]["headers"]["Authorization"] == MASK
    assert out["webhook"]["secret"] == MASK and out["webhook"]["token"] == ""  # nothing to hide
    assert out["layers"][0]["text"] == "hello" and out["key"] == "generated/a.mp3"
    assert payload["api_key"] == "k-1"  # a copy


def test_url_passwords_and_signature_like_query_parameters_are_masked() -> None:
    assert (
        mask_url("https://u:pw@h.example/a.mp3?token=abc&v=2")
        == "https://u:***@h.example/a.mp3?token=***&v=2"
    )
    signed = "https://s3.example/b/k.mp3?X-Amz-Credential=AK%2F1&X-Amz-Signature=deadbeef&X-Amz-Expires=60"
    masked = mask_url(signed)
    assert "deadbeef" not in masked and "X-Amz-Expires=60" in masked
    text = "GET https://u:pw@h.example/x failed; retry https://h.example/y?sig=zz"
    assert mask_text(text) == "GET https://u:***@h.example/x failed; retry https://h.example/y?sig=***"


def test_registered_secrets_are_masked_in_free_text() -> None:
    logs.add_secrets(["pgpw-mask-test-77"])
    assert mask_text("could not connect: password pgpw-mask-test-77 rejected") == (
        "could not connect: password *** rejected"
    )
    assert mask({"error": "pgpw-mask-test-77"}) == {"error": "***"}
