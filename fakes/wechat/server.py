"""A fake web-WeChat HTTP server that the real itchat 1.3.10 logs in to and chats with.

Paths and answers follow what itchat requests (itchat/components/login.py, messages.py,
contact.py). Point itchat at it with `itchat.config.BASE_URL = server.url`: every later
URL comes from the `redirect_uri` the login check returns, which points back here.

    with FakeWeChatServer() as server:
        server.push_text("owner", "filehelper", "status")
        server.wait_for_sent(lambda t: t.to_user == "filehelper", timeout_s=5)
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import logging
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fakes.http import HttpServing

from .state import DEFAULT_CONTACTS, OWNER_KEY, Contact, FakeWeChatState, Session

logger = logging.getLogger(__name__)

LONG_POLL_S = 1.0  # how long synccheck and a pending login check wait before answering
CGI = "/cgi-bin/mmwebwx-bin"
OK = {"Ret": 0, "ErrMsg": ""}
SESSION_ENDED = {"Ret": 1101, "ErrMsg": ""}


class FakeWeChatServer(FakeWeChatState, HttpServing):
    """The state plus an HTTP server on 127.0.0.1 (port 0: any free port) in a thread."""

    def __init__(
        self,
        contacts: tuple[Contact, ...] = DEFAULT_CONTACTS,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        auto_scan: bool = True,
        echo_sent: bool = True,
        long_poll_s: float = LONG_POLL_S,
    ) -> None:
        super().__init__(contacts, auto_scan=auto_scan, echo_sent=echo_sent)
        self.long_poll_s = long_poll_s
        self._serve(_Handler, host, port, "fake-wechat")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as requests.Session expects
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms stalls

    @property
    def fake(self) -> FakeWeChatServer:
        return self.server.fake  # type: ignore[attr-defined,no-any-return]

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("fake wechat: " + format, *args)

    def do_GET(self) -> None:
        self._dispatch(b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._dispatch(self.rfile.read(length))

    def _dispatch(self, body: bytes) -> None:
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        with self.fake.changed:
            self.fake.requests.append(parts.path)
            self.fake.changed.notify_all()
        path = parts.path.removeprefix(CGI) if parts.path != "/" else "/"
        route = ROUTES.get(path)
        self.fake.wait_if_stalled(path)
        if self.fake.should_fail(path):
            self._reply(500, "text/plain", b"fake outage")
            return
        if route is None:
            self._reply(404, "text/plain", b"not found")
            return
        route(self, query, body)

    # -- replies -------------------------------------------------------------------------------
    def _reply(
        self, status: int, content_type: str, body: bytes, headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _js(self, text: str) -> None:
        self._reply(200, "text/javascript", text.encode())

    def _json(self, value: Any) -> None:
        self._reply(200, "text/plain", json.dumps(value, ensure_ascii=False).encode())

    def _session(self, query: dict[str, str], body: bytes) -> Session | None:
        # JSON bodies arrive without a JSON Content-Type: parse the raw body.
        sid = query.get("sid")
        if sid is None and body:
            try:
                sid = json.loads(body).get("BaseRequest", {}).get("Sid")
            except ValueError:
                sid = None
        return self.fake.session(sid)

    # -- login ---------------------------------------------------------------------------------
    def probe(self, query: dict[str, str], body: bytes) -> None:
        self._reply(200, "text/html", b"<html>fake web wechat</html>")

    def jslogin(self, query: dict[str, str], body: bytes) -> None:
        uuid = self.fake.new_qr()
        self._js(f'window.QRLogin.code = 200; window.QRLogin.uuid = "{uuid}";')

    def login_check(self, query: dict[str, str], body: bytes) -> None:
        uuid = query.get("uuid", "")
        code = self.fake.check_login(uuid, self.fake.long_poll_s)
        if code != "200":
            self._js(f"window.code={code};")
            return
        redirect = f"{self.fake.url}{CGI}/webwxnewloginpage?ticket=t{uuid}&uuid={uuid}&lang=zh_CN"
        self._js(f'window.code=200;\nwindow.redirect_uri="{redirect}";')

    def new_login_page(self, query: dict[str, str], body: bytes) -> None:
        s = self.fake.open_session()
        xml = (
            f"<error><ret>0</ret><message></message><skey>{s.skey}</skey>"
            f"<wxsid>{s.sid}</wxsid><wxuin>{s.uin}</wxuin>"
            f"<pass_ticket>{s.pass_ticket}</pass_ticket><isgrayscale>1</isgrayscale></error>"
        )
        cookies = (
            ("Set-Cookie", f"webwx_data_ticket=dt{s.sid}; Path=/"),
            ("Set-Cookie", f"wxuin={s.uin}; Path=/"),
            ("Set-Cookie", f"wxsid={s.sid}; Path=/"),
        )
        self._reply(200, "text/plain", xml.encode(), cookies)

    def push_login(self, query: dict[str, str], body: bytes) -> None:
        self._json({"ret": "1", "msg": "push login is not supported by the fake server"})

    def logout(self, query: dict[str, str], body: bytes) -> None:
        self.fake.logout(query.get("skey", ""))
        self._reply(200, "text/html", b"")

    # -- session -------------------------------------------------------------------------------
    def init(self, query: dict[str, str], body: bytes) -> None:
        s = self._session(query, body)
        if s is None:
            self._json({"BaseResponse": SESSION_ENDED})
            return
        fake = self.fake
        self._json(
            {
                "BaseResponse": OK,
                "User": fake.contact_dict(s, OWNER_KEY),
                "ContactList": [fake.contact_dict(s, k) for k in fake.contacts if k != OWNER_KEY],
                "Count": len(fake.contacts) - 1,
                "SyncKey": s.sync_key(),
                "InviteStartCount": 0,
                "SKey": s.skey,
            }
        )

    def status_notify(self, query: dict[str, str], body: bytes) -> None:
        self._json({"BaseResponse": OK, "MsgID": "1"})

    def get_contact(self, query: dict[str, str], body: bytes) -> None:
        s = self.fake.current
        members = [self.fake.contact_dict(s, k) for k in self.fake.contacts] if s else []
        self._json({"BaseResponse": OK, "MemberCount": len(members), "MemberList": members, "Seq": 0})

    def batch_get_contact(self, query: dict[str, str], body: bytes) -> None:
        s = self._session(query, body)
        wanted = {item.get("UserName") for item in json.loads(body or b"{}").get("List", [])}
        found = []
        if s is not None:
            by_name = {name: key for key, name in s.user_names.items()}
            found = [self.fake.contact_dict(s, by_name[n]) for n in wanted if n in by_name]
        self._json({"BaseResponse": OK, "Count": len(found), "ContactList": found})

    def sync_check(self, query: dict[str, str], body: bytes) -> None:
        retcode, selector = self.fake.sync_check(query.get("sid"), self.fake.long_poll_s)
        self._js(f'window.synccheck={{retcode:"{retcode}",selector:"{selector}"}}')

    def sync(self, query: dict[str, str], body: bytes) -> None:
        s = self._session(query, body)
        if s is None:
            self._json({"BaseResponse": SESSION_ENDED})
            return
        messages = self.fake.take_messages(s)
        modified = self.fake.take_modified(s)
        self._json(
            {
                "BaseResponse": OK,
                "AddMsgCount": len(messages),
                "AddMsgList": messages,
                "ModContactCount": len(modified),
                "ModContactList": modified,
                "SyncKey": s.sync_key(),
                "SyncCheckKey": s.sync_key(),
            }
        )

    # -- sending -------------------------------------------------------------------------------
    def send_msg(self, query: dict[str, str], body: bytes) -> None:
        s = self._session(query, body)
        if s is None:
            self._json({"BaseResponse": SESSION_ENDED})
            return
        queued, answer = self.fake.take_answer("/webwxsendmsg")
        if queued:  # an answer a test asked for, malformed maybe: nothing is recorded as sent
            self._json(answer)
            return
        msg = json.loads(body)["Msg"]
        msg_id = self.fake.record_text(s, msg["FromUserName"], msg["ToUserName"], msg["Content"])
        logger.info("sent to %s: %r", msg["ToUserName"], msg["Content"])
        self._json({"BaseResponse": OK, "MsgID": msg_id, "LocalID": str(msg["LocalID"])})

    def upload_media(self, query: dict[str, str], body: bytes) -> None:
        fields = _multipart(self.headers.get("Content-Type", ""), body)
        request = json.loads(fields["uploadmediarequest"][0])
        if self.fake.session(request["BaseRequest"]["Sid"]) is None:
            self._json({"BaseResponse": SESSION_ENDED})
            return
        client_id = str(request["ClientMediaId"])
        data, file_name = fields["filename"]
        self.fake.add_chunk(client_id, data)
        chunk = int(fields.get("chunk", (b"0", ""))[0] or 0)
        chunks = int(fields.get("chunks", (b"1", ""))[0] or 1)
        media_id = self.fake.finish_upload(client_id, file_name) if chunk == chunks - 1 else ""
        self._json({"BaseResponse": OK, "MediaId": media_id, "StartPos": request["TotalLen"]})

    def send_msg_img(self, query: dict[str, str], body: bytes) -> None:
        s = self._session(query, body)
        if s is None:
            self._json({"BaseResponse": SESSION_ENDED})
            return
        msg = json.loads(body)["Msg"]
        self.fake.record_image(s, msg["FromUserName"], msg["ToUserName"], msg["MediaId"])
        self._json({"BaseResponse": OK, "MsgID": "1", "LocalID": str(msg["LocalID"])})

    # -- test control, for the standalone process (see client.py) ------------------------------
    def test_push(self, query: dict[str, str], body: bytes) -> None:
        request = json.loads(body)
        self.fake.push_text(request["from"], request["to"], request["text"])
        self._json({"ok": True})

    def test_end_session(self, query: dict[str, str], body: bytes) -> None:
        self.fake.end_session()
        self._json({"ok": True})

    def test_state(self, query: dict[str, str], body: bytes) -> None:
        """The state; with sent_after=N, first waits up to wait_s for a sent text past N."""
        if "sent_after" in query:
            after = int(query["sent_after"])
            with self.fake.changed:
                self.fake.changed.wait_for(
                    lambda: len(self.fake.sent_texts) > after or self.fake.closed,
                    float(query.get("wait_s", "5")),
                )
        self._json(self.fake.snapshot())


def _multipart(content_type: str, body: bytes) -> dict[str, tuple[bytes, str]]:
    """Form fields of a multipart body: name -> (bytes, file name or '')."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    fields: dict[str, tuple[bytes, str]] = {}
    for part in message.iter_parts():
        name = str(part.get_param("name", header="content-disposition"))
        data = part.get_payload(decode=True)
        fields[name] = (data if isinstance(data, bytes) else b"", part.get_filename() or "")
    return fields


ROUTES = {
    "/": _Handler.probe,
    "/jslogin": _Handler.jslogin,
    "/login": _Handler.login_check,
    "/webwxnewloginpage": _Handler.new_login_page,
    "/webwxpushloginurl": _Handler.push_login,
    "/webwxlogout": _Handler.logout,
    "/webwxinit": _Handler.init,
    "/webwxstatusnotify": _Handler.status_notify,
    "/webwxgetcontact": _Handler.get_contact,
    "/webwxbatchgetcontact": _Handler.batch_get_contact,
    "/synccheck": _Handler.sync_check,
    "/webwxsync": _Handler.sync,
    "/webwxsendmsg": _Handler.send_msg,
    "/webwxuploadmedia": _Handler.upload_media,
    "/webwxsendmsgimg": _Handler.send_msg_img,
    "/_test/push": _Handler.test_push,
    "/_test/end_session": _Handler.test_end_session,
    "/_test/state": _Handler.test_state,
}
