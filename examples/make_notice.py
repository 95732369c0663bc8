"""Draw ``docs/images/apiary_notice.png``: a notice board photo stand-in whose facts exist only as
text in the image, so the demo shows an answer that comes from OCR.

Run from the repository root: ``python examples/make_notice.py``.
"""

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

LINES = [("APIARY NOTICE", 54), ("Hives 3 and 4 are closed for inspection", 30), ("Visitors welcome on Saturdays, 10am to noon", 30), ("Please wear a veil near the hives", 30)]


def main(out: Path = Path(__file__).parent / "docs" / "images" / "apiary_notice.png") -> Path:
    img = Image.new("RGB", (900, 360), (250, 236, 170))
    draw = ImageDraw.Draw(img)
    draw.rectangle((8, 8, 891, 351), outline=(90, 60, 20), width=8)
    y = 40
    for text, size in LINES:
        font = ImageFont.load_default(size)
        width = draw.textlength(text, font=font)
        draw.text(((900 - width) / 2, y), text, fill=(40, 30, 10), font=font)
        y += size + 40
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out, optimize=True)
    return out


if __name__ == "__main__":
    print(main())
