#!/usr/bin/env python3
"""Draws tokenroll's tray icons (a USB token, its cap coloured by state) as PNGs.

Writes assets/tokenroll-<state>.png (32 px, what the tray embeds) and the hicolor theme layout
under assets/hicolor/<size>x<size>/apps/ for packaging. Pure standard library; run it again after
changing a colour and commit the PNGs.
"""
import os, struct, zlib

STATES = {
    "idle": (0x8a, 0x94, 0xa6),      # no token
    "present": (0x2b, 0x6c, 0xb0),   # a token to enroll
    "busy": (0xdd, 0x8b, 0x12),      # waiting for the PIN, signing, registering
    "ok": (0x2f, 0x9e, 0x44),        # enrolled / registered
    "error": (0xc5, 0x30, 0x30),     # refused or failed
}
BODY = (0x2d, 0x37, 0x48)
METAL = (0xcb, 0xd5, 0xe0)

def draw(size, cap):
    px = [[(0, 0, 0, 0)] * size for _ in range(size)]
    def rect(x0, y0, x1, y1, rgb, r=0.0):
        for y in range(size):
            for x in range(size):
                fx, fy = (x + 0.5) / size, (y + 0.5) / size
                if x0 <= fx <= x1 and y0 <= fy <= y1:
                    # rounded corners
                    cx = min(max(fx, x0 + r), x1 - r)
                    cy = min(max(fy, y0 + r), y1 - r)
                    if (fx - cx) ** 2 + (fy - cy) ** 2 <= r * r + 1e-9:
                        px[y][x] = rgb + (255,)
    rect(0.06, 0.30, 0.62, 0.70, cap, 0.08)        # the coloured cap
    rect(0.50, 0.30, 0.80, 0.70, BODY, 0.02)       # body
    rect(0.80, 0.38, 0.97, 0.62, METAL, 0.01)      # USB plug
    rect(0.86, 0.43, 0.90, 0.48, BODY)             # plug contacts
    rect(0.86, 0.52, 0.90, 0.57, BODY)
    return px

def png(path, px):
    size = len(px)
    raw = b"".join(b"\0" + b"".join(struct.pack("BBBB", *p) for p in row) for row in px)
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0))
    data += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)

here = os.path.dirname(os.path.abspath(__file__))
for state, cap in STATES.items():
    png(os.path.join(here, f"tokenroll-{state}.png"), draw(32, cap))
for size in (16, 22, 24, 32, 48, 64, 128):
    png(os.path.join(here, "hicolor", f"{size}x{size}", "apps", "tokenroll.png"), draw(size, STATES["present"]))
