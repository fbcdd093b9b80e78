"""The download path, against a local HTTP server serving zips built here (127.0.0.1 only)."""

import dataclasses
import hashlib
import io
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import (
    SHARED_DATA,
    prepared,
    run,
    tiny_config,
    write_config,
    write_movielens_100k,
)

from data_loader import movielens
from data_loader.download import fetch_archive
from data_loader.movielens import MovieLensDataLoader
from utils.errors import DataError


def make_zip(source_folder, folder_name="ml-100k"):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(source_folder.iterdir()):
            zf.write(path, f"{folder_name}/{path.name}")
    return buffer.getvalue()


@pytest.fixture
def server():
    """Serves `routes[path] = bytes`; '/drop/...' announces the full length but sends half."""
    routes = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = routes.get(self.path.replace("/drop", ""))
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2] if self.path.startswith("/drop") else body)

        def log_message(self, *args):
            """Quiet: no request lines on stderr."""

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield routes, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_verifies_and_extracts(tmp_path, server):
    routes, base = server
    archive = make_zip(write_movielens_100k(tmp_path / "src"))
    routes["/ml-100k.zip"] = archive
    dest = tmp_path / "data"
    folder = fetch_archive(
        f"{base}/ml-100k.zip", dest, "ml-100k", md5=hashlib.md5(archive).hexdigest(), required_files=("u.data",)
    )
    assert (folder / "u.data").read_bytes() == (tmp_path / "src" / "ml-100k" / "u.data").read_bytes()
    assert leftovers(dest) == ["ml-100k"]  # no temporary files left


def test_checksum_mismatch_is_rejected_and_nothing_left(tmp_path, server):
    routes, base = server
    routes["/ml-100k.zip"] = make_zip(write_movielens_100k(tmp_path / "src"))
    dest = tmp_path / "data"
    with pytest.raises(DataError, match="MD5 mismatch"):
        fetch_archive(f"{base}/ml-100k.zip", dest, "ml-100k", md5="0" * 32, required_files=("u.data",))
    assert leftovers(dest) == []


def test_dropped_connection_leaves_nothing(tmp_path, server):
    routes, base = server
    archive = make_zip(write_movielens_100k(tmp_path / "src"))
    routes["/ml-100k.zip"] = archive
    dest = tmp_path / "data"
    with pytest.raises(DataError, match="closed after|could not download"):
        fetch_archive(f"{base}/drop/ml-100k.zip", dest, "ml-100k", md5=hashlib.md5(archive).hexdigest())
    assert leftovers(dest) == []


def test_not_a_zip_and_missing_files(tmp_path, server):
    routes, base = server
    routes["/junk.zip"] = b"this is not a zip archive" * 10
    with pytest.raises(DataError, match="not a readable zip"):
        fetch_archive(f"{base}/junk.zip", tmp_path / "d1", "ml-100k")
    routes["/other.zip"] = make_zip(write_movielens_100k(tmp_path / "src"), folder_name="elsewhere")
    with pytest.raises(DataError, match="has no ml-100k/u.data"):
        fetch_archive(f"{base}/other.zip", tmp_path / "d2", "ml-100k", required_files=("u.data",))
    assert leftovers(tmp_path / "d1") == leftovers(tmp_path / "d2") == []


def test_unreachable_server_says_what_to_do(tmp_path):
    with pytest.raises(DataError, match=r"could not download .*unzip it into"):
        fetch_archive(
            "http://127.0.0.1:9/ml-100k.zip", tmp_path / "data", "ml-100k", required_files=("u.data",), timeout=2
        )


@pytest.mark.movielens
def test_movielens_loader_downloads_the_release_when_missing(tmp_path, server, monkeypatch):
    """The loader's own path: the real GroupLens files, zipped here, checked against the
    SHA-256 we recorded for u.data (the MD5 is of our zip, not GroupLens's)."""
    routes, base = server
    archive = make_zip(SHARED_DATA / "ml-100k")
    routes["/ml-100k.zip"] = archive
    release = dataclasses.replace(
        movielens.RELEASES["ml-100k"], url=f"{base}/ml-100k.zip", md5=hashlib.md5(archive).hexdigest()
    )
    monkeypatch.setitem(movielens.RELEASES, "ml-100k", release)
    loader = prepared(MovieLensDataLoader(data_dir=str(tmp_path / "data"), download=True))
    assert loader.dataset.n_users == 943 and (tmp_path / "data" / "ml-100k" / "u.item").is_file()


def test_a_folder_of_the_users_own_is_never_replaced_and_a_read_only_data_dir_is_one_error(
    tmp_path, server, monkeypatch
):
    routes, base = server
    routes["/ml-100k.zip"] = make_zip(write_movielens_100k(tmp_path / "src"))
    mine = tmp_path / "data" / "ml-100k"
    mine.mkdir(parents=True)
    (mine / "my_notes.txt").write_text("mine")
    with pytest.raises(DataError, match="exists but does not hold u.data; it is left as it is"):
        fetch_archive(f"{base}/ml-100k.zip", tmp_path / "data", "ml-100k", required_files=("u.data",))
    assert sorted(p.name for p in mine.iterdir()) == ["my_notes.txt"]

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("tempfile.mkdtemp", read_only)  # root ignores a chmod 555, so the refusal is stood in for
    with pytest.raises(DataError, match=r"cannot write in the data folder .*\(Permission denied\); download"):
        fetch_archive(f"{base}/ml-100k.zip", tmp_path / "other", "ml-100k", required_files=("u.data",))


def test_the_cache_stays_in_data_dir_and_is_never_written_through_a_link(tmp_path, caplog):
    import logging

    from data_loader.csv_loader import CSVDataLoader

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "log.csv").write_text("user,item\na,x\nb,y\na,y\n")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    prepared(CSVDataLoader(str(data_dir), str(outside / "log.csv")), test=0, valid=0)
    assert list((data_dir / ".prepared").glob("*.npz")) and not (outside / ".prepared").exists()
    other = tmp_path / "other"
    other.mkdir()
    (tmp_path / "target").mkdir()
    (other / ".prepared").symlink_to(tmp_path / "target")
    caplog.set_level(logging.INFO, logger="data")
    prepared(CSVDataLoader(str(other), str(outside / "log.csv")), test=0, valid=0)
    assert "is a link: the prepared data set is neither read from it nor written there" in caplog.text
    assert not list((tmp_path / "target").iterdir())


def test_a_failed_download_leaves_no_data_folder_and_no_run_folder(tmp_path):
    config = tiny_config(tmp_path / "data", tmp_path / "saved")
    config["data_loader"]["args"]["download"] = True
    from data_loader import movielens

    url = movielens.RELEASES["ml-100k"].url
    movielens.RELEASES["ml-100k"] = movielens.RELEASES["ml-100k"].__class__(
        **{**movielens.RELEASES["ml-100k"].__dict__, "url": "http://127.0.0.1:9/ml-100k.zip"}
    )
    try:
        result = run("train.py", "-c", write_config(tmp_path / "c.json", config))
    finally:
        movielens.RELEASES["ml-100k"] = movielens.RELEASES["ml-100k"].__class__(
            **{**movielens.RELEASES["ml-100k"].__dict__, "url": url}
        )
    assert result.returncode == 2 and "could not download" in result.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "saved").exists()
