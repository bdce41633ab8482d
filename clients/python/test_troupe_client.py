"""Runs the Python client against a live troupe node (started here, stopped by PID)."""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import msgpack
import pytest

from troupe_client import ConnectionClosed, TroupeClient, TroupeError

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("TROUPE_BIN", os.path.join(ROOT, "target", "debug", "troupe"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_serving(proc, port):
    """Waits until the node started as `proc` accepts connections on `port` (30 s)."""
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("node did not start: " + proc.stderr.read().decode())
            time.sleep(0.05)


@pytest.fixture(scope="module")
def node():
    data = tempfile.mkdtemp(prefix="troupe-py-")
    port = free_port()
    args = [BIN, "node", "--node-id", "py-node", "--data-dir", data, "--listen", f"127.0.0.1:{port}"]
    for flag in ("--admin-listen", "--metrics-listen", "--peer-listen"):
        args += [flag, f"127.0.0.1:{free_port()}"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until_serving(proc, port)
        yield port
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def test_hello_put_get_delete(node):
    with TroupeClient(port=node) as c:
        assert c.node == "py-node"
        c.ping()
        ctx = c.put(b"py-key", b"\x00\x01binary\xff")
        assert isinstance(ctx, bytes)
        values, context = c.get(b"py-key")
        assert values == [b"\x00\x01binary\xff"]
        c.delete(b"py-key", context)
        assert c.get(b"py-key")[0] == []


def test_str_keys_and_values_are_stored_as_utf8(node):
    with TroupeClient(port=node) as c:
        c.call("put", key="grüße", value="wörld")
        assert c.get("grüße".encode())[0] == ["wörld".encode()]


def test_pipelining_matches_responses_by_id(node):
    with TroupeClient(port=node) as c:
        # Requests pipelined on one connection are not ordered: a get sent behind a put may
        # be answered before that put is durable. So the gets go in a second pipeline, each
        # with the context its put returned (`after`: read your writes), and the answers
        # of both must match their requests by id whatever order they came in.
        puts = [("put", {"key": f"p{i}".encode(), "value": str(i).encode()}) for i in range(500)]
        written = c.pipeline(puts)
        gets = [
            ("get", {"key": f"p{i}".encode(), "after": written[i]["context"]})
            for i in range(500)
        ]
        results = c.pipeline(gets)
        for i in range(500):
            assert results[i]["values"] == [str(i).encode()]


def test_errors_carry_stable_codes_and_the_connection_survives(node):
    with TroupeClient(port=node) as c:
        with pytest.raises(TroupeError) as e:
            c.call("no_such_op")
        assert e.value.code == "bad_request"
        with pytest.raises(TroupeError) as e:
            c.call("get")  # missing key
        assert e.value.code == "bad_request" and "key" in e.value.msg
        c.ping()


def test_raw_frame_matches_protocol_md(node):
    # The hello frame from PROTOCOL.md, sent as raw bytes.
    s = socket.create_connection(("127.0.0.1", node))
    body = msgpack.packb({"id": 0, "op": "hello", "version": 1, "client": "py"})
    assert body.hex() == "84a2696400a26f70a568656c6c6fa776657273696f6e01a6636c69656e74a27079"
    s.sendall(len(body).to_bytes(4, "big") + body)
    n = int.from_bytes(s.recv(4), "big")
    resp = msgpack.unpackb(s.recv(n))
    assert resp["id"] == 0 and resp["ok"]["node"] == "py-node"
    s.close()


def test_blind_writes_are_siblings_and_a_context_resolves_them(node):
    with TroupeClient(port=node) as c:
        c.put(b"py-sib", b"one")
        c.put(b"py-sib", b"two")
        values, context = c.get(b"py-sib")
        assert sorted(values) == [b"one", b"two"]
        ctx = c.put(b"py-sib", b"merged", context)
        values, _ = c.get(b"py-sib", after=ctx)
        assert values == [b"merged"]


def test_bad_quorums_and_contexts_are_bad_requests(node):
    with TroupeClient(port=node) as c:
        with pytest.raises(TroupeError) as e:
            c.get(b"k", r=2)  # one node: n = 1
        assert e.value.code == "bad_request"
        with pytest.raises(TroupeError) as e:
            c.put(b"k", b"v", context=b"not a context")
        assert e.value.code == "bad_request"


def test_put_returns_the_siblings_its_context_covers(node):
    # Issue 9: the context a put returns covers every sibling the node held; the reply
    # shows them so a write with that context drops nothing the client did not see.
    with TroupeClient(port=node) as c:
        first = c.put(b"py-putsib", b"one")
        assert isinstance(first, bytes) and first.values is None
        second = c.put(b"py-putsib", b"two")
        assert sorted(second.values) == [b"one", b"two"]
        merged = c.put(b"py-putsib", b"merged", second)
        assert merged.values is None
        assert c.get(b"py-putsib", after=merged)[0] == [b"merged"]


def test_counter_set_and_register(node):
    # Issue 10: the data types. incr answers the value after it; counter reads 0 when the
    # key holds none; smembers is in byte order; reg_get is None for a key without one.
    with TroupeClient(port=node) as c:
        assert c.counter(b"py-hits") == 0
        assert c.incr(b"py-hits") == 1
        assert c.incr(b"py-hits", 41) == 42
        assert c.incr("py-hits", -50) == -8
        assert c.counter(b"py-hits", r="one") == -8

        assert c.smembers(b"py-set") == []
        c.sadd(b"py-set", [b"pear", "apple", b"\xff"])
        c.srem(b"py-set", [b"pear", b"kiwi"], w="one")
        assert c.smembers(b"py-set") == [b"apple", b"\xff"]

        assert c.reg_get(b"py-reg") is None
        c.reg_put(b"py-reg", b"red")
        c.reg_put(b"py-reg", "blue")
        assert c.reg_get(b"py-reg") == b"blue"


def test_a_key_holds_one_type(node):
    with TroupeClient(port=node) as c:
        c.incr(b"py-typed")
        for call in (lambda: c.sadd(b"py-typed", [b"x"]), lambda: c.get(b"py-typed")):
            with pytest.raises(TroupeError) as e:
                call()
            assert e.value.code == "bad_request" and "counter" in e.value.msg
        # A delete without a context resets what the node saw: a counter reads 0 and stays a
        # counter (each replica's counters are kept, so later increments are never lost).
        c.delete(b"py-typed")
        assert c.counter(b"py-typed") == 0
        assert c.incr(b"py-typed") == 1
        # A register is deleted outright; the key is then free to hold another type.
        c.reg_put(b"py-reg", b"v")
        c.delete(b"py-reg")
        assert c.reg_get(b"py-reg") is None
        c.incr(b"py-reg")


def test_keys_pages_through_live_keys(node):
    # Issue 13: key listing follows the server's cursor across pages and hides deletes.
    with TroupeClient(port=node) as c:
        for k in ["lk/1", "lk/2", "lk/3", "lk/4", "other"]:
            c.put(k, b"v")
        c.delete("lk/2", c.get("lk/2")[1])  # with the read's context: replaces the value
        assert list(c.keys(prefix="lk/", page=2)) == [b"lk/1", b"lk/3", b"lk/4"]


def _openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def tls_node():
    """A node with `[tls]` on, its certificates made here by the openssl CLI (never committed)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl CLI is needed to make test certificates")
    d = tempfile.mkdtemp(prefix="troupe-py-tls-")
    ca_key, ca, key, csr, crt = (os.path.join(d, n) for n in ("ca.key", "ca.pem", "n.key", "n.csr", "n.crt"))
    ext = os.path.join(d, "san.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", ca_key, "-out", ca, "-days", "1", "-subj", "/CN=troupe py test CA")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", key, "-out", csr, "-subj", "/CN=py-tls-node")
    _openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
             "-out", crt, "-days", "1", "-extfile", ext)
    port = free_port()
    args = [BIN, "node", "--node-id", "py-tls", "--data-dir", os.path.join(d, "data"), "--listen", f"127.0.0.1:{port}"]
    for flag in ("--admin-listen", "--metrics-listen", "--peer-listen"):
        args += [flag, f"127.0.0.1:{free_port()}"]
    env = dict(os.environ, TROUPE__TLS__CERT=crt, TROUPE__TLS__KEY=key, TROUPE__TLS__CA=ca)
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        wait_until_serving(proc, port)
        yield port, ca
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def test_tls_put_get_and_a_plain_client_is_closed(tls_node):
    port, ca = tls_node
    with TroupeClient(port=port, tls_ca=ca) as c:
        assert c.node == "py-tls"
        c.put(b"py-tls-key", b"secret value")
        assert c.get(b"py-tls-key")[0] == [b"secret value"]
    # Plain TCP on the TLS port: the node closes the connection instead of answering.
    with pytest.raises((ConnectionClosed, OSError)):
        TroupeClient(port=port, timeout=5.0)
