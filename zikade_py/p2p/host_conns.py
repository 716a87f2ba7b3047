"""Authenticated connections of the host, inbound and outbound alike: admitted within
the limits (trimming idle ones to make room), settled when a peer has one in each
direction, served (their inbound streams accepted while slots are free) and removed."""

from __future__ import annotations

import asyncio
import time

from zikade_py.p2p.connection import Connection
from zikade_py.p2p.connmgr import ConnectionLimitError
from zikade_py.p2p.events import Direction, PeerConnected, PeerDisconnected
from zikade_py.p2p.host_parts import _ConnState, log
from zikade_py.p2p.host_streams import HostStreams
from zikade_py.p2p.peer_id import PeerID
from zikade_py.p2p.peerstore import CONNECTED_ADDR_TTL, RECENTLY_CONNECTED_ADDR_TTL
from zikade_py.p2p.rcmgr import ResourceLimitError


class HostConnections(HostStreams):
    """Admits, serves and removes the host's connections."""

    def _crowd(self, conn: Connection) -> int:
        state = self._states.get(conn)
        return self.resources.crowd(state.scope) if state is not None else 0

    def _is_connected(self, peer: PeerID) -> bool:
        return bool(self.connmgr.connections(peer))

    async def _make_room(self, direction: Direction, crowd: int = 0) -> None:
        """Make room for one more connection in ``direction`` by closing the least recently
        used unheld idle one (of that direction when only the inbound share is full), the way
        a disconnect does: subscribers hear of it and the peer's addresses lose their
        permanence. ``crowd``: connections of the newcomer's IP group, itself included (the
        fairness rules of ``ConnectionManager.trim_candidate``). Raises
        :class:`ConnectionLimitError` if nothing can go."""
        for _ in range(self.config.max_connections + 1):  # bounded: each round removes one
            total = len(self.connmgr)
            total_full = total >= self.config.max_connections
            cap = self.config.max_inbound_connections
            inbound_full = (  # counted only when it could matter (a walk over every connection)
                direction is Direction.INBOUND
                and total >= cap
                and sum(1 for c in self.connmgr if c.direction is Direction.INBOUND) >= cap
            )
            if not total_full and not inbound_full:
                return
            only = Direction.INBOUND if inbound_full and not total_full else None
            old = time.monotonic() - self.config.trim_grace

            def trimmable(c: Connection, only: Direction | None = only) -> bool:
                return only is None or c.direction is only

            def young(c: Connection, old: float = old) -> bool:
                return c.opened_at > old

            victim = self.connmgr.trim_candidate(
                trimmable, self._crowd, incoming=crowd, young=young
            )
            if victim is None:
                kind = "inbound connections" if only else "connections"
                raise ConnectionLimitError(f"{len(self.connmgr)} {kind}, all held or busy")
            await self._remove_connection(victim)
        raise ConnectionLimitError("no room")  # pragma: no cover

    async def _add_connection(self, conn: Connection) -> None:
        """Register an authenticated connection: within the limits (trimming idle ones if
        needed), else it is closed and :class:`ConnectionLimitError` raised."""
        if self._closing:
            await conn.close()
            return
        peer = conn.remote_peer
        ip = None
        if conn.direction is Direction.INBOUND and conn.remote_addr is not None:
            remote_ip = conn.remote_addr.ip_address()
            ip = str(remote_ip) if remote_ip is not None else None
        try:
            scope = self.resources.open_connection(peer, ip)
        except ResourceLimitError as exc:
            await conn.close()
            raise ConnectionLimitError(str(exc)) from None
        try:
            await self._make_room(conn.direction, self.resources.crowd(scope))
        except BaseException:
            scope.close()
            await conn.close()
            raise
        if self._closing or conn.is_closed:
            scope.close()
            await conn.close()
            if self._closing:
                return
            raise ConnectionLimitError("connection closed while making room")
        conn.session.memory = scope
        conn.scope = scope
        self._states[conn] = _ConnState(scope)
        self.connmgr.add(conn)
        self.peerstore.set_public_key(peer, conn.remote_public_key)
        if conn.direction is Direction.OUTBOUND and conn.remote_addr is not None:
            self.peerstore.add_addrs(peer, [conn.remote_addr], CONNECTED_ADDR_TTL)
        self._spawn(self._serve(conn), name="serve-connection", conn=conn)
        if self._settle(conn):
            return  # redundant: serves the peer's streams until it closes, nothing more
        self.identify.identify(conn)
        self.publish(PeerConnected(peer, conn.remote_addr, conn.direction))

    def _settle(self, conn: Connection) -> bool:
        """Retire the redundant one when ``conn`` duplicates a connection in the other
        direction; return whether that is ``conn`` itself.

        Both sides keep the connection dialed by the peer with the smaller peer id
        multihash, so they agree without talking. Nothing in flight breaks: the retired
        connection finishes its streams and closes after ``redundant_grace`` of idleness.
        Duplicates in the same direction are left to the idle timeout.
        """
        ours = self.peer_id.multihash < conn.remote_peer.multihash
        winning = Direction.OUTBOUND if ours else Direction.INBOUND
        others = [
            c
            for c in self.connmgr.connections(conn.remote_peer)
            if c is not conn and not c.is_closed and c.direction is not conn.direction
        ]
        if not others:
            return False
        if conn.direction is winning:
            for other in others:
                self.connmgr.retire(other)
            return False
        self.connmgr.retire(conn)
        return True

    async def _serve(self, conn: Connection) -> None:
        """Accept the peer's streams until the session ends, then clean up.

        A stream is accepted (and ACKed) only when the connection has a free inbound stream
        slot; until then the peer's new streams wait in yamux's backlog, and beyond
        ``max_unacked_inbound`` they are reset."""
        state = self._states.get(conn)
        try:
            if state is None:
                return
            while True:
                while not state.scope.has_stream_slot():
                    state.slot_freed.clear()
                    await state.slot_freed.wait()
                inner = await conn.accept_stream()
                try:
                    slot = state.scope.open_stream()
                except ResourceLimitError as exc:
                    log.debug("inbound stream from %s refused: %s", conn.remote_peer, exc)
                    await inner.reset()
                    continue
                self._spawn(self._handle_stream(conn, inner, slot), name="stream", conn=conn)
        except Exception:  # SessionClosedError: the connection ended (any reason)
            pass
        finally:
            await self._remove_connection(conn)

    async def _remove_connection(self, conn: Connection) -> None:
        await conn.close()
        state = self._states.pop(conn, None)
        if state is not None:
            state.scope.close()
            state.slot_freed.set()
        self.identify.forget(conn)
        tasks = [t for t in self._conn_tasks.pop(conn, ()) if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        if self.connmgr.remove(conn):
            self.peerstore.set_addrs_ttl(conn.remote_peer, RECENTLY_CONNECTED_ADDR_TTL)
            self.publish(PeerDisconnected(conn.remote_peer))
        await asyncio.gather(*tasks, return_exceptions=True)
