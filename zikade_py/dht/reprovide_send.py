"""Sends one of the sweep's batches: every ADD_PROVIDER for one server on one stream.

The sweep (``core/sweep.py``) gives each server all the keys of a region it
should hold at once (:class:`~zikade_py.core.sweep_events.ProvideBatch`). The
classic path opens one stream per ADD_PROVIDER (``dht/router.py``); here one
stream carries them all, as go's provider does through its per-peer message
sender: open, write one length-prefixed ADD_PROVIDER per key, close. Nobody
answers ADD_PROVIDER (WIRE.md §8.3), and go, js and rust servers, like ours,
read several requests per inbound stream.

The messages are written in slices of :data:`WRITE_KEYS` so yamux frames stay
large and a batch of thousands of keys costs a few writes. The whole batch runs
under the event's deadline; a failure resets the stream.

A batch is done when the server has closed its side of the stream too, not
when our last write left: servers (ours, go's, js's) close once they have read
every message, and ours stores each record before reading the next. Without
that wait the sweep reported a region announced (``provide stat`` settled)
while its servers were still storing the records, and a find-providers right
after missed them on a loaded machine. A server that does not close before the
deadline had every message written to it: the batch still counts, the stream
is reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext

from zikade_py import telemetry
from zikade_py.core.sweep_events import ProvideBatch
from zikade_py.dht.addrfilter import for_destination
from zikade_py.dht.messages import PeerInfo, add_provider, encode_message
from zikade_py.dht.protocol import KAD_PROTOCOL
from zikade_py.dht.router import DialFailedError, RequestError, RequestTimeoutError
from zikade_py.p2p.connection import Stream
from zikade_py.p2p.connmgr import ConnectionLimitError
from zikade_py.p2p.host import DialError, Host, HostClosedError
from zikade_py.p2p.peer_id import PeerID

WRITE_KEYS: Final = 256
"""ADD_PROVIDER messages joined into one write."""

MAX_TRAILING: Final = 64 * 1024
"""Bytes a server may send back on a batch stream (nothing is expected) before we stop
waiting for its end."""


class BatchSender:
    """Sends :class:`ProvideBatch` es over a host (the driver's ``batch_sender``)."""

    def __init__(
        self,
        host: Host,
        self_info: Callable[[], PeerInfo],
        *,
        protocol: str = KAD_PROTOCOL,
        request_timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._host = host
        self._self_info = self_info
        self._protocol = protocol
        self._timeout = request_timeout
        self._clock = clock
        self.streams = 0
        """Batch streams opened."""
        self.messages = 0
        """ADD_PROVIDER messages written on them."""
        self.failed = 0
        """Batches that failed (dial, stream, deadline)."""

    async def __call__(
        self,
        peer: PeerID,
        batch: ProvideBatch,
        deadline: float | None,
        span_context: SpanContext,
    ) -> None:
        """Write every ADD_PROVIDER of ``batch`` to ``peer`` on one stream, then close it."""
        budget = self._timeout if deadline is None else deadline - self._clock()
        parent = (
            trace.set_span_in_context(NonRecordingSpan(span_context))
            if span_context.is_valid
            else otel_context.Context()
        )
        span = telemetry.tracer().start_span("Sweep.SendBatch", parent)
        if span.is_recording():
            span.set_attributes({"peer_id": str(peer), "keys": len(batch.keys)})
        try:
            with trace.use_span(span, end_on_exit=False):
                await self._send(peer, batch, budget)
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                self.failed += 1
                span.record_exception(exc)
            raise
        finally:
            span.end()

    async def _send(self, peer: PeerID, batch: ProvideBatch, budget: float) -> None:
        if budget <= 0:
            raise RequestTimeoutError("deadline passed before the batch was sent")
        if not batch.keys:
            return
        me = self._self_info()
        stream: Stream | None = None
        start = self._clock()
        try:
            async with asyncio.timeout(budget):
                try:
                    conn = await self._host.connect(peer, timeout=budget)
                except (DialError, ConnectionLimitError, HostClosedError, OSError) as exc:
                    raise DialFailedError(f"cannot connect to {peer}: {exc}") from exc
                try:
                    stream = await conn.open_stream([self._protocol], timeout=budget)
                except TimeoutError:
                    raise
                except Exception as exc:
                    raise RequestError(f"cannot open a kad stream to {peer}: {exc}") from exc
                self.streams += 1
                keys = batch.keys
                # Our addresses this peer can use (a public peer gets no loopback or private
                # ones), worked out once: every message of the batch names the same provider.
                template = for_destination(
                    add_provider(keys[0].preimage, me), stream.connection.remote_addr,
                    self._host.config.address_policy,
                )
                for i in range(0, len(keys), WRITE_KEYS):
                    chunk = keys[i : i + WRITE_KEYS]
                    parts = []
                    for key in chunk:
                        template.key = key.preimage
                        parts.append(encode_message(template))
                    await stream.write(b"".join(parts))
                    self.messages += len(chunk)
                await stream.close()
        except TimeoutError:
            await _reset(stream)
            raise RequestTimeoutError(f"batch to {peer} not written before the deadline") from None
        except BaseException:
            await _reset(stream)
            raise
        await _await_end(stream, budget - (self._clock() - start))


async def _await_end(stream: Stream, budget: float) -> None:
    """Until the server closes (or resets) its side: it has read every message."""
    seen = 0
    try:
        async with asyncio.timeout(max(budget, 0.0)):
            while chunk := await stream.read():
                seen += len(chunk)
                if seen > MAX_TRAILING:
                    break
            else:
                return  # its end: the batch is taken
    except TimeoutError:
        pass
    except Exception:  # a reset after our last write: it read what it wanted
        return
    await _reset(stream)


async def _reset(stream: Stream | None) -> None:
    if stream is not None:
        with contextlib.suppress(Exception):
            await stream.reset()


__all__ = ["WRITE_KEYS", "BatchSender"]
