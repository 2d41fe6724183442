"""A fake iLink bot API server and a fake push webhook, for tests and benchmarks."""

from .server import FakeIlinkServer
from .state import BOT_ID, OWNER, VERIFY_CODE, Raw, Sent
from .webhook import FakeWebhook

__all__ = ["BOT_ID", "OWNER", "VERIFY_CODE", "FakeIlinkServer", "FakeWebhook", "Raw", "Sent"]
