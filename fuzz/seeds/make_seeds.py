#!/usr/bin/env python3
"""Writes the seed inputs for the fuzz targets, built from the protocol documentation
(https://www.postgresql.org/docs/current/protocol-message-formats.html) rather than from the
codec under test. Run from anywhere: python3 fuzz/seeds/make_seeds.py"""

import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def cstr(s):
    return s.encode() + b"\0"


def startup_packet(params):
    body = struct.pack(">I", 196608) + b"".join(cstr(k) + cstr(v) for k, v in params) + b"\0"
    return struct.pack(">I", len(body) + 4) + body


def code_packet(code, extra=b""):
    body = struct.pack(">I", code) + extra
    return struct.pack(">I", len(body) + 4) + body


def msg(tag, body):
    return tag + struct.pack(">I", len(body) + 4) + body


SSL = code_packet(80877103)
GSS = code_packet(80877104)
CANCEL = code_packet(80877102, struct.pack(">I", 4242) + struct.pack(">I", 0xDEADBEEF))
STARTUP = startup_packet(
    [("user", "alice"), ("database", "pg-local"), ("application_name", "psql"), ("client_encoding", "UTF8")]
)
PASSWORD = msg(b"p", cstr("alk_0123456789abcdef"))
QUERY = msg(b"Q", cstr("select id, email from users where id = 1"))
MULTI = msg(b"Q", cstr("begin; update accounts set balance = 0; commit"))
TERMINATE = msg(b"X", b"")

PARSE = msg(b"P", cstr("s1") + cstr("select * from users where id = $1") + struct.pack(">HI", 1, 23))
BIND = msg(
    b"B",
    cstr("")  # portal
    + cstr("s1")
    + struct.pack(">HH", 1, 0)  # one parameter format: text
    + struct.pack(">H", 2)  # two parameters: "42" and NULL
    + struct.pack(">i", 2) + b"42"
    + struct.pack(">i", -1)
    + struct.pack(">HH", 1, 1),  # one result format: binary
)
DESCRIBE = msg(b"D", b"P" + cstr(""))
EXECUTE = msg(b"E", cstr("") + struct.pack(">i", 0))
CLOSE = msg(b"C", b"S" + cstr("s1"))
SYNC = msg(b"S", b"")
FUNCTION_CALL = msg(b"F", struct.pack(">IHHHiH", 1598, 0, 1, 0, -1, 0))

SESSION = STARTUP + PASSWORD

SEEDS = {
    "pg_startup": {
        "startup.bin": STARTUP,
        "startup_body.bin": STARTUP[4:],
        "sslrequest.bin": SSL,
        "gssencrequest.bin": GSS,
        "cancel.bin": CANCEL,
        "ssl_then_startup.bin": SSL + STARTUP,
        "protocol_2.bin": code_packet(0x00020000, cstr("user") + cstr("x") + b"\0"),
    },
    "pg_frontend_stream": {
        "startup_only.bin": STARTUP,
        "sslrequest_then_session.bin": SSL + SESSION + QUERY + TERMINATE,
        "query.bin": SESSION + QUERY + MULTI + TERMINATE,
        "extended_batch.bin": SESSION + PARSE + BIND + DESCRIBE + EXECUTE + SYNC + CLOSE + SYNC + TERMINATE,
        "function_call.bin": SESSION + FUNCTION_CALL + SYNC,
        "cancel.bin": CANCEL,
        "oversized_length.bin": SESSION + b"Q" + struct.pack(">I", 0x7FFFFFFF),
        "negative_length.bin": SESSION + b"Q" + struct.pack(">i", -1),
    },
}

for target, files in SEEDS.items():
    os.makedirs(os.path.join(HERE, target), exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(HERE, target, name), "wb") as f:
            f.write(data)
        print(f"{target}/{name}: {len(data)} bytes")
