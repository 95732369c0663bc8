import os

import pytest

from ragmm.errors import InputError
from ragmm.ingest.readers import read_source, source_key, walk
from tests.conftest import EXAMPLES, write_text_pdf

SUFFIXES = [".txt", ".md", ".html", ".pdf"]
MB = 10**6


def test_walk_finds_supported_files_and_reports_the_rest(tmp_path):
    (tmp_path / "a.txt").write_text("hello")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.md").write_text("# b")
    (tmp_path / "sub" / "c.xyz").write_text("?")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "d.txt").write_text("secret")
    found = list(walk([tmp_path, tmp_path / "missing.txt"], SUFFIXES))
    ok = sorted(f.path.name for f in found if f.error is None)
    bad = {f.path.name: f.error for f in found if f.error}
    assert ok == ["a.txt", "b.md"]
    assert "unsupported file type ('.xyz')" in bad["c.xyz"]
    assert "path not found" in bad["missing.txt"]


def test_source_key_relative_to_root(tmp_path):
    f = tmp_path / "docs" / "a.txt"
    f.parent.mkdir()
    f.write_text("x")
    assert source_key(f, tmp_path) == "docs/a.txt"
    assert source_key(f, None) == f.resolve().as_posix()


def test_reads_markdown_text_html_and_pdf_examples():
    md = read_source(EXAMPLES / "lighthouses.md", "l", 50 * MB)
    assert "Fresnel" in md.pages[0].text and md.pages[0].number is None
    html = read_source(EXAMPLES / "moon_landing.html", "m", 50 * MB)
    text = html.pages[0].text
    assert "Sea of Tranquility" in text and "console.log" not in text and "font-family" not in text
    pdf = read_source(EXAMPLES / "volcanoes.pdf", "v", 50 * MB)
    assert pdf.pages[0].number == 1 and "Tambora" in " ".join(p.text for p in pdf.pages)


def test_multipage_pdf_keeps_page_numbers(tmp_path):
    path = tmp_path / "two.pdf"
    write_text_pdf(path, ["first page about owls", "second page about herons"])
    parsed = read_source(path, "two.pdf", 50 * MB)
    assert [p.number for p in parsed.pages] == [1, 2]
    assert "herons" in parsed.pages[1].text


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("empty.txt", b"", "empty file"),
        ("blank.md", b"  \n\n ", "empty file"),
        ("binary.txt", bytes(range(256)) * 20, "binary data in a '.txt' file"),
        ("fake.pdf", b"hello, I am not a pdf", "not a PDF"),
        ("broken.pdf", b"%PDF-1.4\n1 0 obj garbage", "PDF"),
    ],
)
def test_bad_files_raise_one_line_input_errors(tmp_path, name, data, reason):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(InputError) as err:
        read_source(path, name, 50 * MB)
    assert reason in str(err.value)
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_legacy_encoding_is_read_not_refused(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes("Café au lait, crème brûlée".encode("cp1252"))
    assert "Café" in read_source(path, "latin.txt", 50 * MB).pages[0].text


def test_too_large_file_is_refused_with_the_limit(tmp_path):
    path = tmp_path / "big.txt"
    path.write_text("word " * 1000)
    with pytest.raises(InputError, match="over the 0 MB limit"):
        read_source(path, "big.txt", 100)


def test_unreadable_file(tmp_path, monkeypatch):
    path = tmp_path / "secret.txt"
    path.write_text("x")
    if os.geteuid() == 0:  # root reads a chmod-0 file anyway: make the read fail as for a user
        from pathlib import Path

        def deny(self):
            raise PermissionError(13, "Permission denied", str(self))

        monkeypatch.setattr(Path, "read_bytes", deny)
    else:
        path.chmod(0)
    with pytest.raises(InputError, match="permission denied"):
        read_source(path, "secret.txt", 50 * MB)


def test_source_key_keeps_symlink_names_under_the_corpus_root(tmp_path):
    from ragmm.ingest.readers import source_key

    elsewhere = tmp_path / "elsewhere" / "apple.png"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(b"x")
    root = tmp_path / "corpus"
    (root / "fruit").mkdir(parents=True)
    (root / "fruit" / "apple.png").symlink_to(elsewhere)
    assert source_key(root / "fruit" / "apple.png", root) == "fruit/apple.png"
    assert source_key(elsewhere, root) == elsewhere.resolve().as_posix()  # outside the root: absolute
    assert source_key(elsewhere, None) == elsewhere.resolve().as_posix()
