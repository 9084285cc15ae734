"""A real SMTP server for tests (aiosmtpd), delivering into Dovecot's maildirs.

Usage: smtp_server.py PORT USERS_FILE HOME_DIR UID GID TOKENS_FILE
USERS_FILE holds `user:{PLAIN}password` lines (Dovecot's passwd-file); AUTH PLAIN and
LOGIN are offered without TLS on loopback, and XOAUTH2 for the bearer tokens listed in
TOKENS_FILE (`token user` lines, kept by the test OAuth server) when it exists. Each accepted message is written to
HOME_DIR/<local part>/Maildir/new/ for every local recipient; unknown recipients are
refused with 550. Prints `ready` once listening.
"""
import base64
import os
import socket
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

port, users_file, home, uid, gid = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
tokens_file = sys.argv[6]


def users():
    out = {}
    with open(users_file) as f:
        for line in f:
            name, _, rest = line.strip().partition(":")
            if name:
                out[name] = rest.split(":", 1)[0].removeprefix("{PLAIN}")
    return out


def authenticate(server, session, envelope, mechanism, auth_data):
    if not isinstance(auth_data, LoginPassword):
        return AuthResult(success=False, handled=False)
    name, password = auth_data.login.decode(), auth_data.password.decode()
    if users().get(name) == password:
        return AuthResult(success=True, auth_data=auth_data)
    # handled=False: aiosmtpd answers 535 itself.
    return AuthResult(success=False, handled=False)


def mkdirs(path):
    for part in ("", "/cur", "/new", "/tmp"):
        os.makedirs(path + part, exist_ok=True)
        os.chown(path + part, uid, gid)


def tokens():
    out = {}
    try:
        with open(tokens_file) as f:
            for line in f:
                token, _, user = line.strip().partition(" ")
                if token:
                    out[token] = user
    except FileNotFoundError:
        pass
    return out


class Deliver:
    counter = 0

    async def auth_XOAUTH2(self, server, args):
        # AUTH XOAUTH2 <base64 of "user=U\x01auth=Bearer T\x01\x01">
        # args: the AUTH command's arguments, ["XOAUTH2", initial response].
        if len(args) < 2:
            return AuthResult(success=False, handled=False)
        try:
            fields = base64.b64decode(args[1]).decode().split("\x01")
        except Exception:
            return AuthResult(success=False, handled=False)
        user = next((f[5:] for f in fields if f.startswith("user=")), "")
        token = next((f[12:] for f in fields if f.startswith("auth=Bearer ")), "")
        if token and tokens().get(token) == user:
            return AuthResult(success=True, auth_data=user)
        return AuthResult(success=False, handled=False)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.split("@")[0] not in users():
            return "550 5.1.1 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        for rcpt in envelope.rcpt_tos:
            maildir = os.path.join(home, rcpt.split("@")[0], "Maildir")
            os.makedirs(os.path.dirname(maildir), exist_ok=True)
            os.chown(os.path.dirname(maildir), uid, gid)
            mkdirs(maildir)
            Deliver.counter += 1
            name = "%d.M%dP%d_%d.%s" % (time.time(), time.time_ns() % 1000000, os.getpid(), Deliver.counter, socket.gethostname())
            tmp = os.path.join(maildir, "tmp", name)
            with open(tmp, "wb") as f:
                f.write(envelope.original_content or envelope.content)
            os.chown(tmp, uid, gid)
            os.rename(tmp, os.path.join(maildir, "new", name))
        return "250 2.0.0 queued"


controller = Controller(
    Deliver(),
    hostname="127.0.0.1",
    port=int(port),
    authenticator=authenticate,
    auth_require_tls=False,
    decode_data=False,
)
controller.start()
print("ready", flush=True)
try:
    while True:
        time.sleep(3600)
except KeyboardInterrupt:
    pass
finally:
    controller.stop()
