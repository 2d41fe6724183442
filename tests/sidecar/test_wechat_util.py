"""A failed WeChat login is one line with its cause (no chained traceback on every retry)."""

from __future__ import annotations

import socket

import pytest
import requests

from fakes.processes import free_ports
from sidecar.wechat_util import login_failure


def test_an_unreachable_server_is_named_with_the_cause() -> None:
    with pytest.raises(requests.RequestException) as caught:
        requests.get(f"http://127.0.0.1:{free_ports()[0]}/jslogin", timeout=5)
    assert login_failure(caught.value) == "cannot reach WeChat (127.0.0.1: connection refused)"


def test_a_name_that_does_not_resolve_says_so() -> None:
    try:
        raise OSError("connect failed") from socket.gaierror(-2, "Name or service not known")
    except OSError as error:
        assert login_failure(error) == "cannot reach WeChat (name not resolved)"


def test_any_other_failure_is_still_one_line() -> None:
    text = login_failure(ValueError("window.QRLogin.code = 400"))
    assert text == "WeChat login failed (ValueError: window.QRLogin.code = 400)" and "\n" not in text
