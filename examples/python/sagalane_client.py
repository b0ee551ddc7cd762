"""A small client for the sagalane agent protocol (docs/protocol.md), standard library only.

    from sagalane_client import Connection, ProtocolError

    with Connection("/run/user/1000/sagalane/agent.sock", name="billing-host") as agent:
        agent.call("target.register", names=["billing"])
        saga_id = agent.call("saga.start", saga="script", input={...})["saga_id"]
        for frame in agent.frames():           # commands, jobs, events, replies
            ...

One connection, one thread: `call` sends a request and reads until its reply comes; frames
that arrive meanwhile (commands, jobs, events, other replies) are kept, in order, for
`next_frame` / `frames`. `request` sends without waiting and returns the id, so many requests
can be in flight at once (pipelining); their replies come through `next_frame` like any frame,
or through `wait_reply(id)`.
"""

import collections
import json
import socket
import sys
import time

PROTOCOL_VERSION = 1
DEFAULT_MAX_FRAME = 1 << 20

__all__ = ["Connection", "ProtocolError", "FramingError", "PROTOCOL_VERSION"]


class ProtocolError(Exception):
    """An error frame from the agent: `code` is the stable name to switch on."""

    def __init__(self, code, message, about=None, frame=None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.about = about
        self.frame = frame


class FramingError(Exception):
    """The byte stream broke the framing (a frame over the maximum, a frame that is not JSON
    object text); the connection cannot go on."""


class Connection:
    """A handshaken connection to an agent (or, for a dialled target, to a runtime)."""

    def __init__(self, path, name=None, targets=(), timeout=30.0, max_frame=DEFAULT_MAX_FRAME):
        self.path = path
        self.timeout = timeout
        self.max_frame = max_frame
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        self._sock.connect(path)
        self._buffer = bytearray()
        self._stash = collections.deque()
        self._next_id = 1
        self._closed = False
        hello = {"version": PROTOCOL_VERSION}
        if name is not None:
            hello["name"] = name
        if targets:
            hello["targets"] = list(targets)
        welcome = self.wait_reply(self.request("hello", **hello))
        if welcome.get("type") != "welcome":
            raise ProtocolError("unexpected_type", f"hello was answered with {welcome!r}")
        self.version = welcome["version"]
        self.server = welcome["server"]
        # Frames are bounded by the smaller of the two maximums.
        self.max_frame = min(self.max_frame, welcome["max_frame"])

    # -- sending --------------------------------------------------------------------------

    def send(self, message):
        """Sends one message (a dict with "type") as one frame."""
        text = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        if len(text) > self.max_frame:
            raise ValueError(f"a {message.get('type')} frame of {len(text)} bytes is over the maximum of {self.max_frame}")
        self._sock.sendall(text + b"\n")

    def request(self, type, **fields):
        """Sends a request with a fresh id and returns the id (without waiting for the reply)."""
        request_id = self._next_id
        self._next_id += 1
        self.send({"type": type, "id": request_id, **fields})
        return request_id

    def notify(self, type, **fields):
        """Sends a message without an id: no `ok` comes back, only an error if it is refused
        (step.done, step.failed, job.done, job.failed, event.publish)."""
        self.send({"type": type, **fields})

    def call(self, type, timeout=None, **fields):
        """Sends a request and returns the `ok` reply's fields (type and id removed).
        Raises ProtocolError for an error reply, TimeoutError if none comes in time."""
        reply = self.wait_reply(self.request(type, **fields), timeout)
        return {k: v for k, v in reply.items() if k not in ("type", "id")}

    def wait_reply(self, request_id, timeout=None):
        """Reads until the reply to `request_id` comes (other frames are kept for later).
        Returns the reply frame; raises ProtocolError when it is an error."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        for index, frame in enumerate(self._stash):
            if frame.get("id") == request_id:
                del self._stash[index]
                return self._checked(frame)
        while True:
            frame = self._read_frame(deadline)
            if frame is None:
                raise ConnectionError(f"the agent closed the connection before answering request {request_id}")
            if frame.get("id") == request_id and frame.get("type") in ("ok", "welcome", "error"):
                return self._checked(frame)
            self._stash.append(frame)

    @staticmethod
    def _checked(frame):
        if frame.get("type") == "error":
            raise ProtocolError(frame.get("code"), frame.get("message"), frame.get("about"), frame)
        return frame

    # -- receiving ------------------------------------------------------------------------

    def next_frame(self, timeout=None):
        """The next frame (a dict), kept ones first; None when the connection closed.
        Raises TimeoutError if nothing comes within `timeout` seconds (default: the
        connection's)."""
        if self._stash:
            return self._stash.popleft()
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        return self._read_frame(deadline)

    def frames(self, timeout=None):
        """Every frame until the connection closes."""
        while True:
            frame = self.next_frame(timeout)
            if frame is None:
                return
            yield frame

    def _read_frame(self, deadline):
        while True:
            newline = self._buffer.find(b"\n")
            if newline >= 0:
                line = bytes(self._buffer[:newline])
                del self._buffer[:newline + 1]
                if line.endswith(b"\r"):
                    line = line[:-1]
                if len(line) > self.max_frame:
                    raise FramingError(f"a frame of {len(line)} bytes is over the maximum of {self.max_frame}")
                if not line:
                    continue
                try:
                    frame = json.loads(line.decode("utf-8"))
                except (UnicodeDecodeError, ValueError) as error:
                    raise FramingError(f"a frame that is not JSON: {error}") from None
                if not isinstance(frame, dict):
                    raise FramingError("a frame that is not a JSON object")
                return frame
            if len(self._buffer) > self.max_frame:
                raise FramingError(f"more than {self.max_frame} bytes without a newline")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no frame from the agent in time")
            self._sock.settimeout(left)
            try:
                chunk = self._sock.recv(65536)
            except socket.timeout:
                raise TimeoutError("no frame from the agent in time") from None
            if not chunk:
                return None
            self._buffer += chunk

    # -- life -----------------------------------------------------------------------------

    def close(self):
        if not self._closed:
            self._closed = True
            self._sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def exit_with(main):
    """Exits with what `main()` returns; a refusal by the agent exits 1 with its reason."""
    try:
        sys.exit(main())
    except ProtocolError as error:
        print(f"refused: {error}", file=sys.stderr)
        sys.exit(1)
