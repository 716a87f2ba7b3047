"""Bitswap (/ipfs/bitswap/1.2.0, 1.1.0, 1.0.0): the block exchange beside the DHT.

Pure deciding parts (:mod:`.session_logic`, :mod:`.wantmanager`, :mod:`.engine`),
the wire format (:mod:`.wire`), the block notifier (:mod:`.notifier`), the
asyncio driver on our host (:mod:`.exchange`, its sessions in :mod:`.session`,
settings in :mod:`.config`). BITSWAP.md has the design.
"""

from zikade_py.bitswap.config import BitswapConfig, BitswapStat
from zikade_py.bitswap.exchange import Bitswap
from zikade_py.bitswap.session import ExchangeSession
from zikade_py.bitswap.session_logic import SessionConfig

__all__ = ["Bitswap", "BitswapConfig", "BitswapStat", "ExchangeSession", "SessionConfig"]
