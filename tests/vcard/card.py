"""A software OpenPGP card in a virtual reader, for tokenroll's smart-card tests.

Bridges smartcard-app-openpgp's card model to vsmartcard's vpcd reader driver (which
pcscd loads): vpcd listens on a TCP port per reader; a card is "inserted" while a
connection to it is open and "removed" when it closes.

Control:  SIGUSR1 inserts the card, SIGUSR2 removes it, SIGHUP arms a removal in the middle of
          the next signature (the card is pulled out when the signing command arrives),
          SIGTERM/SIGINT end the process.
Stdout:   one line per event: "ready", "inserted <unix time>" (connected to the reader),
          "powered <unix time>" (pcscd noticed the card and powered it up), "removed <unix time>";
          a harness waits for them and a benchmark times from the insertion.
The card's keys and PINs persist in a ZODB file (--store), so a removed card keeps its
keys when it comes back, as a real one does.
"""

import argparse
import logging
import os
import selectors
import signal
import socket
import struct
import sys
import time

import ZODB.DB
import ZODB.FileStorage
from smartcard import Card, MASTER_FILE_IDENTIFIER
from smartcard.app.openpgp import OpenPGP
from smartcard.utils import transaction_manager

# The file identifier only has to be unique on the card; selection is by AID.
OPENPGP_FILE_ID = b"\x12\x34"
# vpcd control bytes.
POWER_OFF, POWER_ON, RESET, GET_ATR = 0, 1, 2, 4
INS_SELECT_DATA = 0xA5
INS_PSO = 0x2A
SW_OK = b"\x90\x00"


def open_card(store):
    db = ZODB.DB(storage=ZODB.FileStorage.FileStorage(file_name=store), pool_size=1)
    conn = db.open(transaction_manager=transaction_manager)
    root = conn.root
    try:
        card = root.card
    except AttributeError:
        with transaction_manager:
            card = root.card = Card(name=b"py-openpgp")
            app = OpenPGP(identifier=OPENPGP_FILE_ID)
            app.activateSelf()
            card.createFile(card.traverse((MASTER_FILE_IDENTIFIER,)), app)
    # Loading the application is slow the first time; do it before any reader waits.
    with transaction_manager:
        card.traverse((MASTER_FILE_IDENTIFIER, OPENPGP_FILE_ID))
    return db, card


def shim_algorithm_information():
    """GET DATA 0xFA (algorithm information) raises TypeError in 0.4.0; OpenSC 0.23 asks
    for it while probing. Answering "not present" is what older cards do."""
    original = OpenPGP._getAlgorithmInformation

    def guarded(self):
        try:
            return original(self)
        except TypeError:
            return (b"",)

    OpenPGP._getAlgorithmInformation = guarded


def shim_key_generation():
    """The emulator makes keys ahead of time in a background thread and answers GENERATE
    ASYMMETRIC KEY PAIR with an error ("key not ready yet", 6F00, CKR_GENERAL_ERROR through
    OpenSC) when the key is not made yet — which happens on a loaded machine right after the
    card starts. A real card takes its time instead: wait for the key, up to a minute."""
    original = OpenPGP.generateAsymmetricKeyPair

    def waiting(self, channel, p1, p2, command_data):
        deadline = time.monotonic() + 60
        while True:
            try:
                return original(self, channel, p1, p2, command_data)
            except ValueError as e:
                # Raised before anything on the card changed, so the command can run again.
                if "not ready" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    OpenPGP.generateAsymmetricKeyPair = waiting


def answer(card, apdu):
    if len(apdu) >= 2 and apdu[1] == INS_SELECT_DATA:
        # OpenSC 0.23 selects a key slot's certificate with SELECT DATA, which the
        # emulator lacks; accepting it keeps the certificate DO reachable.
        return SW_OK
    # The emulator writes into the command buffer, so it must be mutable.
    return bytes(card.runAPDU(bytearray(apdu)))


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


class Reader:
    def __init__(self, card, host, port):
        self.card, self.host, self.port = card, host, port
        self.sock = None
        self.powered = False
        self.remove_on_sign = False

    def insert(self):
        if self.sock is not None:
            return
        deadline = time.monotonic() + 10
        while True:
            try:
                sock = socket.create_connection((self.host, self.port), timeout=2)
                break
            except OSError:
                # pcscd may still be loading the driver.
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.powered = False
        self.quickack()
        self.event("inserted")

    def quickack(self):
        # Without it the kernel delays ACKs and OpenSC's many small APDUs take 2.5 s.
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)

    def remove(self):
        if self.sock is None:
            return
        self.sock.close()
        self.sock = None
        self.card.clearVolatile()
        self.event("removed")

    @staticmethod
    def event(name):
        print(f"{name} {time.time():.6f}", flush=True)

    def serve_one(self):
        """Answers one message; returns False when the reader went away."""
        head = recv_exact(self.sock, 2)
        if head is None:
            return False
        (length,) = struct.unpack(">H", head)
        msg = recv_exact(self.sock, length)
        if msg is None:
            return False
        reply = None
        if length == 1:
            ctrl = msg[0]
            if ctrl in (POWER_ON, RESET, POWER_OFF):
                # A power cycle forgets verified PINs, as on a real card.
                self.card.clearVolatile()
            elif ctrl == GET_ATR:
                reply = bytes(self.card.getATR())
            if ctrl in (POWER_ON, GET_ATR) and not self.powered:
                self.powered = True
                self.event("powered")
        elif self.remove_on_sign and len(msg) >= 2 and msg[1] == INS_PSO:
            # Pulled out mid-signature: the command never gets an answer.
            self.remove_on_sign = False
            self.remove()
            return True
        else:
            reply = answer(self.card, msg)
        if reply is not None:
            self.sock.sendall(struct.pack(">H", len(reply)) + reply)
        self.quickack()
        return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", required=True, help="ZODB file holding the card")
    ap.add_argument("--port", type=int, required=True, help="vpcd reader port")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--inserted", action="store_true", help="insert the card at start")
    ap.add_argument("--verbose", action="store_true", help="log APDUs (shows PINs)")
    args = ap.parse_args()
    logging.basicConfig(stream=sys.stderr, level=logging.DEBUG if args.verbose else logging.ERROR)

    shim_algorithm_information()
    shim_key_generation()
    db, card = open_card(os.path.abspath(args.store))
    reader = Reader(card, args.host, args.port)

    sel = selectors.DefaultSelector()
    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    wake_w.setblocking(False)
    signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
    pending = []
    for sig in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda s, _f: pending.append(s))
    sel.register(wake_r, selectors.EVENT_READ)

    print("ready", flush=True)
    if args.inserted:
        reader.insert()
    try:
        while True:
            if reader.sock is not None:
                sel.register(reader.sock, selectors.EVENT_READ)
            events = sel.select()
            if reader.sock is not None:
                sel.unregister(reader.sock)
            for key, _ in events:
                if key.fileobj is wake_r:
                    try:
                        wake_r.recv(64)
                    except BlockingIOError:
                        pass
                elif reader.sock is not None and not reader.serve_one():
                    # The reader closed the connection: pcscd stopped.
                    reader.remove()
            while pending:
                sig = pending.pop(0)
                if sig == signal.SIGUSR1:
                    reader.insert()
                elif sig == signal.SIGUSR2:
                    reader.remove()
                elif sig == signal.SIGHUP:
                    reader.remove_on_sign = True
                else:
                    return
    finally:
        reader.remove()
        db.close()


if __name__ == "__main__":
    main()
