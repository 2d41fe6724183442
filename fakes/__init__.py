"""What tests/ and bench/ share: fake services, web WeChat (`fakes.wechat`, also `python -m fakes.wechat`),
the iLink bot API and push webhook (`fakes.ilink`) and a trainer that serves the real protocol
(`fakes.trainer`); and helpers around the real programs, `python -m trainer` on private sockets
(`fakes.processes`) and a Subscriber recorded from its own thread (`fakes.recorder`). Installed with the
other packages, so child processes find them from any directory."""
