"""Pure Label Studio formats (no server): coordinates, config XML, regions, effort counts, server env."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detal.errors import LabelStudioError
from detal.labelstudio.client import image_key, image_url, _task_key
from detal.labelstudio.format import (
    LabelSpec, clamp_ls, effort_counts, label_config, label_regions, ls_to_yolo, parse_label_config,
    prediction_regions, regions_to_yolo, unrotate, validate_prediction, xyxy_to_ls, yolo_to_ls,
)
from detal.labelstudio.server import server_env

NAMES = ["car", "person", "dog & cat"]
SPEC = LabelSpec("label", "image", {n: i for i, n in enumerate(NAMES)})


@st.composite
def yolo_boxes(draw):
    """Boxes inside the unit square, as YOLO labels hold them."""
    n = draw(st.integers(0, 8))
    rows = []
    for _ in range(n):
        w = draw(st.floats(1e-4, 1.0))
        h = draw(st.floats(1e-4, 1.0))
        cx = draw(st.floats(w / 2, 1 - w / 2))
        cy = draw(st.floats(h / 2, 1 - h / 2))
        rows.append([draw(st.integers(0, len(NAMES) - 1)), cx, cy, w, h])
    return np.asarray(rows, dtype=np.float64).reshape(-1, 5)


@settings(max_examples=200, deadline=None)
@given(yolo_boxes(), st.integers(1, 5000), st.integers(1, 5000))
def test_yolo_ls_yolo_round_trip(labels, width, height):
    back = ls_to_yolo(yolo_to_ls(labels[:, 1:]))
    np.testing.assert_allclose(back, labels[:, 1:], atol=1e-6, rtol=0)
    # through full regions (what the server stores) and back, including the clamp
    again = regions_to_yolo(label_regions(labels, width, height, NAMES, SPEC), SPEC, "test")
    np.testing.assert_allclose(again, labels, atol=1e-6, rtol=0)


def test_ls_coordinates_are_top_left_percent():
    np.testing.assert_allclose(yolo_to_ls([[0.5, 0.5, 0.2, 0.4]]), [[40, 30, 20, 40]])
    np.testing.assert_allclose(xyxy_to_ls([[10, 20, 30, 60]], 100, 200), [[10, 10, 20, 20]])
    np.testing.assert_allclose(xyxy_to_ls([[-5, 0, 110, 50]], 100, 100), [[0, 0, 100, 50]])  # clipped
    np.testing.assert_allclose(clamp_ls([[90, -10, 20, 30], [120, 0, 5, 5]]), [[90, 0, 10, 20], [100, 0, 0, 5]])


def test_rotation_gives_enclosing_box():
    x, y, w, h = unrotate(0.1, 0.1, 0.2, 0.1, 90, 100, 100)
    np.testing.assert_allclose([x, y, w, h], [0.0, 0.1, 0.1, 0.2], atol=1e-12)
    assert unrotate(0.1, 0.2, 0.3, 0.4, 0, 100, 100) == (0.1, 0.2, 0.3, 0.4)


def test_label_config_round_trip_and_mismatch():
    xml = label_config(NAMES)
    assert 'value="dog &amp; cat" category="2"' in xml
    spec = parse_label_config(xml, NAMES)
    assert spec == SPEC
    with pytest.raises(LabelStudioError, match="dataset has"):
        parse_label_config(xml, NAMES[:2])
    with pytest.raises(LabelStudioError, match="unique"):
        label_config(["a", "a"])
    with pytest.raises(LabelStudioError, match="not valid XML"):
        parse_label_config("<View>", NAMES)


def test_prediction_regions_golden():
    regions = prediction_regions(np.array([[8, 6, 24, 30]], np.float32), np.array([1]), np.array([0.75], np.float32),
                                 80, 60, NAMES, SPEC)
    assert regions == [{
        "id": "p0", "type": "rectanglelabels", "from_name": "label", "to_name": "image",
        "original_width": 80, "original_height": 60, "image_rotation": 0,
        "value": {"x": 10.0, "y": 10.0, "width": 20.0, "height": 40.0, "rotation": 0, "rectanglelabels": ["person"]},
        "score": 0.75}]
    validate_prediction({"model_version": "m", "score": 0.75, "result": regions}, SPEC, "img")


@pytest.mark.parametrize("mutate, match", [
    (lambda r: r.update(from_name="other"), "rectanglelabels"),
    (lambda r: r["value"].update(rectanglelabels=["zebra"]), "zebra"),
    (lambda r: r["value"].update(x=95.0), "outside"),
    (lambda r: r["value"].update(width=float("nan")), "non-finite"),
    (lambda r: r.update(original_width=0), "original_width"),
])
def test_validate_prediction_rejects_what_the_server_would_store_silently(mutate, match):
    region = prediction_regions(np.array([[8, 6, 24, 30]]), np.array([0]), np.array([0.5]), 80, 60, NAMES, SPEC)[0]
    mutate(region)
    with pytest.raises(LabelStudioError, match=match):
        validate_prediction({"model_version": "m", "score": 0.5, "result": [region]}, SPEC, "img")
    with pytest.raises(LabelStudioError, match="model_version"):
        validate_prediction({"model_version": "", "score": 0.5, "result": []}, SPEC, "img")


def test_regions_to_yolo_drops_zero_area_and_rejects_unknown(caplog):
    regions = label_regions(np.array([[0, 0.5, 0.5, 0.2, 0.2], [1, 0.5, 0.5, 0.1, 0.1]]), 50, 50, NAMES, SPEC)
    regions[1]["value"]["width"] = 0.0
    regions.append({"type": "relation", "from_id": "a0", "to_id": "a1"})  # not a box: ignored
    with caplog.at_level(logging.WARNING):
        out = regions_to_yolo(regions, SPEC, "task 7")
    np.testing.assert_allclose(out, [[0, 0.5, 0.5, 0.2, 0.2]])
    assert "task 7" in caplog.text and "zero-area" in caplog.text
    regions[0]["value"]["rectanglelabels"] = ["zebra"]
    with pytest.raises(LabelStudioError, match="zebra"):
        regions_to_yolo(regions, SPEC, "task 7")


def test_effort_counts():
    pre = np.array([[0, 0.2, 0.2, 0.1, 0.1], [1, 0.5, 0.5, 0.2, 0.2], [2, 0.8, 0.8, 0.1, 0.1], [0, 0.2, 0.8, 0.1, 0.1]])
    final = np.array([
        [0, 0.2, 0.2, 0.1, 0.1],  # accepted
        [1, 0.51, 0.5, 0.2, 0.2],  # moved
        [0, 0.8, 0.8, 0.1, 0.1],  # relabelled
        [1, 0.5, 0.05, 0.05, 0.05],  # added; pre[3] deleted
    ])
    assert effort_counts(pre, final) == {"accepted": 1, "corrected": 2, "deleted": 1, "added": 1}
    assert effort_counts(pre, final[:0]) == {"accepted": 0, "corrected": 0, "deleted": 4, "added": 0}
    assert effort_counts(pre[:0], final) == {"accepted": 0, "corrected": 0, "deleted": 0, "added": 4}
    # a box that moved too far (IoU < 0.5) is a deletion plus an addition
    assert effort_counts(pre[:1], [[0, 0.3, 0.2, 0.1, 0.1]]) == {"accepted": 0, "corrected": 0, "deleted": 1, "added": 1}


def test_image_key_and_url(tmp_path):
    img = tmp_path / "ds" / "images" / "a b#1.png"
    assert image_key(img, tmp_path) == "ds/images/a b#1.png"
    url = image_url("ds/images/a b#1.png")
    assert url == "/data/local-files/?d=ds/images/a%20b%231.png"
    assert _task_key({"image": url}) == "ds/images/a b#1.png"
    with pytest.raises(LabelStudioError, match="document root"):
        image_key(Path("/elsewhere/x.png"), tmp_path)


def test_server_env_drops_stray_settings(tmp_path):
    base = {"PATH": "/bin", "HOME": "/root", "USERNAME": "me", "PASSWORD": "x", "PORT": "1", "HOST": "h",
            "LABEL_STUDIO_API_KEY": "secret", "DEBUG": "1"}
    env = server_env(data_dir=tmp_path, document_root=tmp_path, username="u@x.y", password="pw", token="tok123",
                     base=base)
    assert env["PATH"] == "/bin" and env["LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN"] == "true"
    assert env["LABEL_STUDIO_USER_TOKEN"] == "tok123"
    for stray in ("USERNAME", "PASSWORD", "PORT", "HOST", "LABEL_STUDIO_API_KEY", "DEBUG"):
        assert stray not in env


def test_a_plain_http_server_is_not_label_studio():
    """A URL that answers 200 with HTML names the URL and says it is not Label Studio (no raw 'HTTP 200: OK')."""
    import http.server
    import threading

    from detal.labelstudio import client

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<html>a web page</html>")

        def log_message(self, *a):
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_port}"
        with pytest.raises(LabelStudioError, match="not as Label Studio does") as e:
            client.connect(url, "a-token-123456")
        assert url in str(e.value) and "a-token-123456" not in str(e.value)
    finally:
        srv.shutdown()


def test_a_port_in_time_wait_counts_as_free():
    """`serve` right after `stop` comes back on the same port: TIME-WAIT sockets do not make it 'busy'."""
    import socket

    from detal.labelstudio.server import port_free

    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do (Label Studio's included)
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]
    cli = socket.create_connection(("127.0.0.1", port))
    conn, _ = srv.accept()
    conn.close()  # the server side closes first: its end of the port goes to TIME-WAIT
    cli.close()
    srv.close()
    plain = socket.socket()
    try:
        plain.bind(("127.0.0.1", port))  # without SO_REUSEADDR the port looks taken
        plain_ok = True
    except OSError:
        plain_ok = False
    finally:
        plain.close()
    assert port_free(port)
    assert not plain_ok or port_free(port)  # where the kernel already freed it, both agree
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        assert not port_free(busy.getsockname()[1])  # a listening server is busy
    finally:
        busy.close()


def test_transient_server_errors_are_retried_then_fail_cleanly(monkeypatch):
    """5xx and dropped connections: bounded retries with backoff; then one LabelStudioError, token scrubbed."""
    from label_studio_sdk.core.api_error import ApiError

    from detal.labelstudio import client

    monkeypatch.setattr(client, "BACKOFF_S", 0.0)
    conn = client.Connection(url="http://x", client=None, _secret=client._Secret("tok-123456"))
    calls = {"n": 0}

    def flaky(fail_times, status=503):
        def fn():
            calls["n"] += 1
            if calls["n"] <= fail_times:
                raise ApiError(status_code=status, body="upstream says tok-123456 is busy")
            return "ok"
        return fn

    assert client._call(conn, "task list", flaky(2)) == "ok" and calls["n"] == 3
    calls["n"] = 0
    with pytest.raises(LabelStudioError, match=r"task list failed \(HTTP 503\)") as e:
        client._call(conn, "task list", flaky(99))
    assert calls["n"] == client.RETRIES and "tok-123456" not in str(e.value)
    calls["n"] = 0
    with pytest.raises(LabelStudioError, match="HTTP 400"):
        client._call(conn, "task list", flaky(99, status=400))
    assert calls["n"] == 1  # a client error is not retried


def test_map50_against_hand_computed_values():
    from detal.labelstudio.format import map50

    t = np.array([[0, 0.5, 0.5, 0.2, 0.2], [1, 0.2, 0.2, 0.1, 0.1]])
    exact = (t.copy(), np.array([0.9, 0.8]), t)
    assert map50([exact], 2) == pytest.approx(1.0)
    # class 0: a false positive ranked above the true one -> precision 1/2 at recall 1 -> AP 0.5; class 1 found
    fp = np.vstack([[0, 0.9, 0.9, 0.1, 0.1], t])
    assert map50([(fp, np.array([0.95, 0.9, 0.8]), t)], 2) == pytest.approx((0.5 + 1.0) / 2)
    # the false positive ranked last costs nothing (all-point interpolation); a missed box halves recall
    assert map50([(fp, np.array([0.1, 0.9, 0.8]), t)], 2) == pytest.approx(1.0)
    assert map50([(t[:1], np.array([0.9]), t)], 2) == pytest.approx(0.5)  # class 1 never predicted: AP 0
    # two images, one box each: matching never crosses images
    a, b = t[:1], t[:1].copy()
    b[0, 1] = 0.2
    assert map50([(a, np.array([0.9]), b), (b, np.array([0.8]), a)], 2) == pytest.approx(0.0)
    assert np.isnan(map50([], 2))
