"""Fake services for the tests and bench/: web WeChat (`fakes.wechat`, also `python -m fakes.wechat`),
the iLink bot API and push webhook (`fakes.ilink`), and a fake trainer (`fakes.trainer`) that serves the
real protocol. Installed with the other packages, so child processes find them from any directory."""
