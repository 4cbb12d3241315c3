#!/usr/bin/env python3
"""Draws a terminal screen captured as text (tmux capture-pane -p) into a PNG, cell by cell in
DejaVu Sans Mono: how assets/screenshots/station.png was made from the station's tmux test.

    TOKENROLL_SCREENSHOT_DIR=/tmp/shot cargo test --test station tui
    python3 -m venv /tmp/v && /tmp/v/bin/pip install pillow
    /tmp/v/bin/python tests/screenshots/render-text.py /tmp/shot/station.txt assets/screenshots/station.png
"""
import sys

from PIL import Image, ImageDraw, ImageFont

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"


def main(src, out, columns=80):
    lines = open(src, encoding="utf-8").read().rstrip("\n").split("\n")
    font = ImageFont.truetype(FONT, 16)
    ascent, descent = font.getmetrics()
    height, width = ascent + descent, font.getlength("M")
    img = Image.new("RGB", (int(width * columns) + 24, height * len(lines) + 24), "#101418")
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((12, 12 + i * height), line, font=font, fill="#e4e4e4")
    img.save(out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
