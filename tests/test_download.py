"""download_shapes3d against a real HTTP server on 127.0.0.1: resume after a cut, rejection of bad files."""

import hashlib
import http.server
import socket
import threading

import pytest

from latent_abstractions.data.download import DownloadError, download
from latent_abstractions.data.render import GridSpec
from latent_abstractions.data.shapes3d import DatasetError, load_shapes3d, write_synthetic


class Server:
    """Serves ``files`` (name -> bytes) with Range support; can cut the first transfer of a file mid-way."""

    def __init__(self, files, cut_first_after=None, ignore_range=False):
        self.files, self.cut_first_after, self.ignore_range = files, cut_first_after, ignore_range
        self.requests = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                body = outer.files.get(self.path.lstrip("/"))
                rng = self.headers.get("Range")
                outer.requests.append(rng)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                if rng and not outer.ignore_range:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(body):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                payload = body[start:]
                if outer.cut_first_after is not None and len(outer.requests) == 1:
                    self.wfile.write(payload[: outer.cut_first_after])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(payload)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def h5_bytes(tmp_path_factory):
    path = tmp_path_factory.mktemp("src") / "3dshapes.h5"
    write_synthetic(path, GridSpec.from_counts(8, [2] * 6), progress=False)
    return path.read_bytes()


def test_cut_transfer_resumes_and_completes(tmp_path, h5_bytes):
    dest = tmp_path / "3dshapes.h5"
    half = len(h5_bytes) // 2
    with Server({"3dshapes.h5": h5_bytes}, cut_first_after=half) as srv:
        download(
            f"{srv.url}/3dshapes.h5", dest, sha256=hashlib.sha256(h5_bytes).hexdigest(), backoff=0.01, progress=False
        )
    assert srv.requests[0] is None and srv.requests[1] == f"bytes={half}-", srv.requests
    assert dest.read_bytes() == h5_bytes
    assert not (tmp_path / "3dshapes.h5.part").exists()
    assert load_shapes3d(dest).n == 64


def test_server_without_range_support_restarts_cleanly(tmp_path, h5_bytes):
    dest = tmp_path / "3dshapes.h5"
    with Server({"3dshapes.h5": h5_bytes}, cut_first_after=1000, ignore_range=True) as srv:
        download(f"{srv.url}/3dshapes.h5", dest, backoff=0.01, progress=False)
    assert dest.read_bytes() == h5_bytes


@pytest.mark.parametrize("case", ["corrupt", "wrong_layout", "bad_sha"])
def test_bad_download_is_rejected_and_leaves_no_output(tmp_path, h5_bytes, case):
    import h5py
    import numpy as np

    if case == "wrong_layout":
        other = tmp_path / "other.h5"
        with h5py.File(other, "w") as f:
            f["imgs"] = np.zeros((4, 8, 8, 3), np.uint8)
        body = other.read_bytes()
    elif case == "corrupt":
        body = b"<html>not the file</html>" * 100
    else:
        body = h5_bytes
    dest = tmp_path / "out" / "3dshapes.h5"
    with Server({"3dshapes.h5": body}) as srv, pytest.raises(DatasetError) as err:
        download(
            f"{srv.url}/3dshapes.h5", dest, sha256="0" * 64 if case == "bad_sha" else None, backoff=0.01, progress=False
        )
    assert "3dshapes.h5" in str(err.value)
    assert list(dest.parent.iterdir()) == [], "nothing may be left behind"


def test_unreachable_server_fails_after_retries(tmp_path):
    with socket.socket() as sock:  # a port nobody listens on: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DownloadError, match="3 attempts"):
        download(f"http://127.0.0.1:{port}/3dshapes.h5", tmp_path / "x.h5", retries=2, backoff=0.01, progress=False)
    assert not (tmp_path / "x.h5").exists()


def test_missing_file_fails_at_once_without_retrying(tmp_path):
    with Server({}) as srv, pytest.raises(DownloadError, match="HTTP 404"):
        download(f"{srv.url}/missing.h5", tmp_path / "x.h5", retries=3, backoff=0.01, progress=False)
    assert len(srv.requests) == 1
    assert not (tmp_path / "x.h5").exists()


def test_complete_part_file_from_an_earlier_run_is_finished(tmp_path, h5_bytes):
    """A run killed after the transfer but before the rename: the server answers 416, the part is used."""
    dest = tmp_path / "3dshapes.h5"
    (tmp_path / "3dshapes.h5.part").write_bytes(h5_bytes)
    with Server({"3dshapes.h5": h5_bytes}) as srv:
        download(f"{srv.url}/3dshapes.h5", dest, backoff=0.01, progress=False)
    assert srv.requests == [f"bytes={len(h5_bytes)}-"]
    assert dest.read_bytes() == h5_bytes and not (tmp_path / "3dshapes.h5.part").exists()
