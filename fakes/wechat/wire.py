"""The JSON shapes web WeChat uses for a contact and a text message (as itchat reads them)."""

from __future__ import annotations

import html
import time
from typing import Any


def contact_entry(user_name: str, nick_name: str, remark_name: str) -> dict[str, Any]:
    """A person in webwxinit's ContactList / webwxgetcontact's MemberList."""
    return {
        "UserName": user_name,
        "NickName": nick_name,
        "RemarkName": remark_name,
        "Sex": 1,  # itchat files Sex 0 without '@@' under neither friends nor chatrooms
        "VerifyFlag": 0,  # bit 8 set would make it an official account
        "ContactFlag": 3,
        "Uin": 0,
        "HeadImgUrl": "",
        "MemberList": [],
    }


def text_message(msg_id: str, sender: str, to: str, text: str) -> dict[str, Any]:
    """An AddMsgList entry for a text (MsgType 1)."""
    return {
        "MsgId": msg_id,
        "NewMsgId": int(msg_id),
        "FromUserName": sender,
        "ToUserName": to,
        "MsgType": 1,
        # Web WeChat sends text HTML-escaped, newlines as <br/>: itchat must undo it.
        "Content": html.escape(text).replace("\n", "<br/>"),
        "Url": "",
        "Status": 3,
        "ImgStatus": 1,
        "CreateTime": int(time.time()),
        "AppMsgType": 0,
        "FileName": "",
        "MediaId": "",
        "StatusNotifyCode": 0,
        "StatusNotifyUserName": "",
        "RecommendInfo": {"UserName": "", "NickName": ""},
    }
