"""A fake web-WeChat server for tests and benchmarks: real itchat talks HTTP to it."""

from .client import FakeWeChatClient, FakeWeChatProcess
from .server import LONG_POLL_S, FakeWeChatServer
from .state import DEFAULT_CONTACTS, FILEHELPER, OWNER_KEY, Contact, SentImage, SentText

__all__ = [
    "DEFAULT_CONTACTS",
    "FILEHELPER",
    "LONG_POLL_S",
    "OWNER_KEY",
    "Contact",
    "FakeWeChatClient",
    "FakeWeChatProcess",
    "FakeWeChatServer",
    "SentImage",
    "SentText",
]
