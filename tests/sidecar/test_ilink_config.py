"""`--backend ilink` options: environment defaults, checks that exit 2, and the backend built."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.__main__ import make_backend
from sidecar.access import AccessPolicy
from sidecar.config import parse_config
from sidecar.ilink import IlinkBackend

ENDPOINTS = ["--control", "ipc:///tmp/ct-c", "--metrics", "ipc:///tmp/ct-m"]


def test_ilink_options_come_from_the_environment_and_build_the_backend(tmp_path: Path) -> None:
    environ = {
        "CHATTRAIN_BACKEND": "ilink",
        "CHATTRAIN_ILINK_WINDOW_HOURS": "6",
        "CHATTRAIN_ILINK_PER_INBOUND": "8",
        "CHATTRAIN_PUSH_URL": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k",
        "CHATTRAIN_ALLOW": "id:a1@im.wechat=steer",
        "CHATTRAIN_LANGUAGE": "zh",
    }
    config = parse_config([*ENDPOINTS, "--state-dir", str(tmp_path)], environ)
    assert (config.backend, config.ilink_window_s, config.ilink_per_inbound) == ("ilink", 6 * 3600.0, 8)
    backend = make_backend(config, AccessPolicy(config.allow))
    assert isinstance(backend, IlinkBackend)
    assert backend.windows.window_s == 6 * 3600.0 and backend.windows.per_inbound == 8
    assert backend.push is not None and backend.push.wecom
    assert backend.access.allowed_ids() == {"a1@im.wechat"}
    assert backend.language.current() == "zh"  # its own texts too (the summary, the notice)


@pytest.mark.parametrize(
    "flags",
    [
        ["--ilink-window-hours", "0"],
        ["--ilink-per-inbound", "0"],
        ["--push-url", "ftp://host/hook"],
        ["--push-format", "xml"],
    ],
)
def test_bad_ilink_options_exit_2_with_one_line(flags: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_config([*ENDPOINTS, "--backend", "ilink", *flags], {})
    assert exited.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("sidecar: error:")
