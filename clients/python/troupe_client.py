"""A troupe client in Python, written from protocol/PROTOCOL.md alone.

Depends only on the `msgpack` package from PyPI.

    c = TroupeClient("127.0.0.1", 7400)
    ctx = c.put(b"k", b"v")   # ctx.values: None, or the siblings ctx covers
    values, context = c.get(b"k")
    c.delete(b"k", context)

TLS (a node with `[tls]`): `TroupeClient("127.0.0.1", 7400, tls_ca="ca.pem")`, plus
`tls_cert=`/`tls_key=` for mutual TLS. Only the standard library's `ssl` module is used.

Data types (conflict-free, PROTOCOL.md §10): `incr`/`counter`, `sadd`/`srem`/`smembers`,
`reg_put`/`reg_get`. A key holds one type; another op on it raises TroupeError
`bad_request` naming the type.

    c.incr(b"hits", 5)         # -> the value after the increment
    c.sadd(b"tags", [b"a", b"b"]); c.smembers(b"tags")   # -> [b"a", b"b"]
    c.reg_put(b"color", b"red"); c.reg_get(b"color")     # -> b"red" (None: no register)

Pipelining: `c.pipeline([("put", {"key": b"a", "value": b"1"}), ("get", {"key": b"b"})])`
sends every request before reading any response and returns the results in request order,
matching responses (which may arrive out of order) by id.

Pipelined requests are NOT ordered: the node runs them concurrently, so a get pipelined
behind a put of the same key may be answered first, with the value from before the put.
For read-your-writes, wait for the put and pass its context as `after`:

    ctx = c.put(b"k", b"v2")
    values, _ = c.get(b"k", after=ctx)   # a version covering the put: never the old value
"""

import socket
import ssl
import struct

import msgpack

PROTOCOL_VERSION = 1


class TroupeError(Exception):
    """The node answered with an error. `code` is one of the protocol's stable codes."""

    def __init__(self, code, msg):
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg


class ConnectionClosed(Exception):
    """The node closed the connection; requests in flight may or may not have been applied."""


class TroupeClient:
    def __init__(
        self,
        host="127.0.0.1",
        port=7400,
        client_name="troupe-python",
        timeout=10.0,
        token=None,
        tls_ca=None,
        tls_cert=None,
        tls_key=None,
        server_name=None,
    ):
        """With `tls_ca` (a PEM file) the connection is TLS and the node's certificate must
        be signed by that CA and name `server_name` (default: `host`). `tls_cert` and
        `tls_key` present a client certificate (nodes with `tls.require_client_cert`)."""
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls_ca is not None:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=tls_ca)
            if tls_cert is not None:
                ctx.load_cert_chain(tls_cert, tls_key)
            sock = ctx.wrap_socket(sock, server_hostname=server_name or host)
        self._sock = sock
        self._buf = b""
        self._next_id = 1
        self._early = {}  # responses that arrived before their caller asked
        hello = {"version": PROTOCOL_VERSION, "client": client_name}
        if token is not None:
            hello["token"] = token
        self._send(0, "hello", hello)
        self.node = self._wait(0)["node"]

    def close(self):
        self._sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- framing ---------------------------------------------------------------------------

    def _send(self, req_id, op, fields):
        body = msgpack.packb({"id": req_id, "op": op, **fields}, use_bin_type=True)
        self._sock.sendall(struct.pack(">I", len(body)) + body)

    def _read_exact(self, n):
        while len(self._buf) < n:
            chunk = self._sock.recv(max(65536, n - len(self._buf)))
            if not chunk:
                raise ConnectionClosed("the node closed the connection")
            self._buf += chunk
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def _read_response(self):
        (n,) = struct.unpack(">I", self._read_exact(4))
        return msgpack.unpackb(self._read_exact(n), raw=False)

    def _wait(self, req_id):
        while req_id not in self._early:
            resp = self._read_response()
            self._early[resp["id"]] = resp
        resp = self._early.pop(req_id)
        if "err" in resp:
            raise TroupeError(resp["err"]["code"], resp["err"]["msg"])
        return resp.get("ok", {})

    def _issue(self, op, fields):
        req_id = self._next_id
        self._next_id += 1
        self._send(req_id, op, fields)
        return req_id

    # -- operations ------------------------------------------------------------------------

    def call(self, op, **fields):
        """Sends one request and returns its `ok` map, or raises TroupeError."""
        return self._wait(self._issue(op, fields))

    def pipeline(self, requests):
        """Sends every (op, fields) request, then collects results in request order.

        Each result is the `ok` map, or a TroupeError instance (not raised). The node runs
        the requests concurrently, in no set order: a get of a key put earlier in the same
        pipeline may see the old value (pipeline independent requests; to read a write
        back, use `get(key, after=put_context)` once the put has answered)."""
        ids = [self._issue(op, fields) for op, fields in requests]
        results = []
        for req_id in ids:
            try:
                results.append(self._wait(req_id))
            except TroupeError as e:
                results.append(e)
        return results

    def ping(self):
        self.call("ping")

    def get(self, key, r=None, after=None):
        """Returns (values, context): values is empty when the key is not found and holds
        several concurrent siblings when writes conflicted; pass context back on the next
        put or delete to replace them. `after`: a context the answer must cover, e.g. the
        one `put` returned: the answer is then a version that includes that write (read
        your writes through any node, whatever else is in flight)."""
        fields = {"key": _bin(key)}
        if r is not None:
            fields["r"] = r
        if after is not None:
            fields["after"] = after
        ok = self.call("get", **fields)
        return list(ok["values"]), ok["context"]

    def put(self, key, value, context=None, w=None):
        """Stores value; returns the new context, a `PutContext` (bytes, so it is passed
        back as before). Its `.values` is None when the written value is the key's only
        version; otherwise the key kept concurrent siblings, and `.values` lists every
        value the context covers (the new one among them, as `get` returns them): merge
        them before writing again with this context, which replaces them all."""
        fields = {"key": _bin(key), "value": _bin(value)}
        if context is not None:
            fields["context"] = context
        if w is not None:
            fields["w"] = w
        ok = self.call("put", **fields)
        values = ok.get("values")
        return PutContext(ok["context"], None if values is None else list(values))

    def delete(self, key, context=None, w=None):
        fields = {"key": _bin(key)}
        if context is not None:
            fields["context"] = context
        if w is not None:
            fields["w"] = w
        self.call("delete", **fields)

    # -- data types (PROTOCOL.md §10) ------------------------------------------------------

    def incr(self, key, by=1, w=None):
        """Adds `by` (negative subtracts) to a counter and returns the value the node saw
        right after it. NOT idempotent: after a `timeout` error the increment may or may not
        have counted, so retrying may count it twice."""
        fields = {"key": _bin(key), "by": int(by)}
        if w is not None:
            fields["w"] = w
        return self.call("incr", **fields)["value"]

    def counter(self, key, r=None):
        """A counter's value (0 when the key holds none)."""
        return self.call("counter", **_read_fields(key, r))["value"]

    def sadd(self, key, members, w=None):
        """Adds members (bytes or str) to a set. Safe to retry after a timeout."""
        self.call("sadd", **_members_fields(key, members, w))

    def srem(self, key, members, w=None):
        """Removes members the node has seen; an add it has not seen (a concurrent one
        through another node) survives: add wins. Safe to retry after a timeout."""
        self.call("srem", **_members_fields(key, members, w))

    def smembers(self, key, r=None):
        """A set's members as a list of bytes in ascending byte order ([] when none)."""
        return list(self.call("smembers", **_read_fields(key, r))["members"])

    def reg_put(self, key, value, w=None):
        """Writes a last-writer-wins register. Safe to retry after a timeout (a retry is a
        newer write of the same value)."""
        fields = {"key": _bin(key), "value": _bin(value)}
        if w is not None:
            fields["w"] = w
        self.call("reg_put", **fields)

    def reg_get(self, key, r=None):
        """A register's value (bytes), or None when the key holds none."""
        return self.call("reg_get", **_read_fields(key, r)).get("value")

    def keys(self, prefix=None, page=1000):
        """Every live key (bytes) starting with `prefix`, in byte order: a generator that
        asks for `page` keys at a time and follows the server's cursor."""
        after = None
        while True:
            fields = {"limit": page}
            if prefix is not None:
                fields["prefix"] = _bin(prefix)
            if after is not None:
                fields["after"] = after
            reply = self.call("keys", **fields)
            yield from reply["keys"]
            if not reply.get("more"):
                return
            after = reply["cursor"]


class PutContext(bytes):
    """The context a put returns: bytes (pass it back unchanged), plus `values`: None, or
    the key's values when it holds more than the version just written (PROTOCOL.md §9)."""

    def __new__(cls, context, values=None):
        self = super().__new__(cls, context)
        self.values = values
        return self


def _bin(b):
    return b.encode() if isinstance(b, str) else bytes(b)


def _read_fields(key, r):
    fields = {"key": _bin(key)}
    if r is not None:
        fields["r"] = r
    return fields


def _members_fields(key, members, w):
    if isinstance(members, (bytes, bytearray, str)):
        raise TypeError("members must be a list of bytes or str, not one value")
    fields = {"key": _bin(key), "members": [_bin(m) for m in members]}
    if w is not None:
        fields["w"] = w
    return fields
