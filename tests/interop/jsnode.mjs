// A real js-libp2p node (pinned npm packages, see package.json) that the Python
// interop tests and benchmarks drive over stdin/stdout (tests/interop/jsnode.py).
//
// Options: one JSON object, as argv[2] or in the JSNODE_OPTS environment variable:
//   dht            bool    enable @libp2p/kad-dht (default true)
//   kadProtocol    string  kad protocol id (default "/ipfs/kad/1.0.0")
//   clientMode     bool    kad client mode (default false = server)
//   privateKey     string  base64 of a protobuf-encoded private key (default: fresh Ed25519)
//   userAgent      string  identify agentVersion (default: js-libp2p's own)
//   monitor        bool    js-libp2p connection monitor (pings every conn, default true)
//   monitorIntervalMs number
//   kad            object  extra KadDHTInit fields (numbers/booleans), merged last
//   keyType        string  identity of a fresh key: "Ed25519" (default), "secp256k1",
//                          "RSA" (2048 bits) or "ECDSA" (P-256)
//   autonat        object  run @libp2p/autonat (AutoNAT v1 client and server) with these
//                          AutoNATServiceInit fields (e.g. {"startupDelay": 0})
//   autonatV2      object  run @libp2p/autonat-v2 (client and server) with these fields
//   loopbackPublic bool    treat 127.0.0.0/8 as public (loopback_public_hooks.mjs), the js
//                          side of --public-net 127.0.0.0/8 (docs/autonat.md)
//   transports     array   "tcp" and/or "quic" (@chainsafe/libp2p-quic), default ["tcp"];
//                          each listens on 127.0.0.1 port 0 (/tcp/0, /udp/0/quic-v1)
//
// Protocol: first stdout line {"event":"ready","peerId","addrs","protocols"}; then one
// JSON command per stdin line {"id":n,"cmd":"...",...args} answered by one line
// {"id":n,"ok":true,"result":...} | {"id":n,"ok":false,"error":"...","name":"..."}.
// Unsolicited {"event":...} lines (peer:connect, peer:disconnect, peer:identify, error)
// may be interleaved. Logs go to stderr (DEBUG=libp2p:* for js-libp2p's own).
// EOF on stdin stops the node, so a dead parent never leaves this process behind.

// Node 20 lacks Promise.withResolvers, which js-libp2p uses everywhere. It must be
// defined before any libp2p module is evaluated, hence the dynamic imports below.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers () {
    let resolve
    let reject
    const promise = new this((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}

// before any libp2p module is loaded: the hooks rewrite one of them
if (JSON.parse(process.argv[2] ?? process.env.JSNODE_OPTS ?? '{}').loopbackPublic === true) {
  const { register } = await import('node:module')
  register('./loopback_public_hooks.mjs', import.meta.url)
}
const { setMaxListeners } = await import('node:events')
const readline = await import('node:readline')
const { createLibp2p } = await import('libp2p')
const { tcp } = await import('@libp2p/tcp')
// loaded only when asked for: a missing native module must fail the QUIC tests, not all
const quicModule = (JSON.parse(process.argv[2] ?? process.env.JSNODE_OPTS ?? '{}').transports ?? [])
  .includes('quic')
  ? await import('@chainsafe/libp2p-quic')
  : null
const { noise } = await import('@chainsafe/libp2p-noise')
const { yamux } = await import('@chainsafe/libp2p-yamux')
const { identify, identifyPush } = await import('@libp2p/identify')
const { ping } = await import('@libp2p/ping')
const { kadDHT, passthroughMapper } = await import('@libp2p/kad-dht')
const {
  generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf, publicKeyToProtobuf
} = await import('@libp2p/crypto/keys')
const { peerIdFromString, peerIdFromPrivateKey, peerIdFromCID } = await import('@libp2p/peer-id')
const { multiaddr } = await import('@multiformats/multiaddr')
const { CID } = await import('multiformats/cid')
const Digest = await import('multiformats/hashes/digest')

const DEFAULT_TIMEOUT_MS = 30_000
const RAW_CODEC = 0x55

function log (...args) {
  process.stderr.write(`[jsnode ${process.pid}] ${args.join(' ')}\n`)
}

function emit (obj) {
  process.stdout.write(JSON.stringify(obj, jsonSafe) + '\n')
}

// BigInt, bytes, PeerId and Multiaddr are not JSON; everything leaving this process
// goes through here.
function jsonSafe (_key, value) {
  if (typeof value === 'bigint') {
    return Number.isSafeInteger(Number(value)) ? Number(value) : value.toString()
  }
  if (value instanceof Uint8Array) {
    return Buffer.from(value).toString('base64')
  }
  if (value instanceof Map) {
    return Object.fromEntries(value)
  }
  return value
}

const b64 = (bytes) => Buffer.from(bytes).toString('base64')
const hex = (bytes) => Buffer.from(bytes).toString('hex')

function parseOptions () {
  const raw = process.argv[2] ?? process.env.JSNODE_OPTS ?? '{}'
  const opts = JSON.parse(raw)
  if (opts === null || typeof opts !== 'object' || Array.isArray(opts)) {
    throw new Error('options must be a JSON object')
  }
  return opts
}

// Only 127.0.0.0/8 may ever be dialled: the tests must not touch any other network.
function isLoopbackAddr (ma) {
  const first = ma.getComponents()[0]
  return first != null && first.name === 'ip4' && first.value.startsWith('127.')
}

function peerIdOf (ma) {
  const p2p = ma.getComponents().findLast((c) => c.name === 'p2p')
  return p2p?.value == null ? undefined : peerIdFromString(p2p.value)
}

/** A command target: "/ip4/..." (multiaddr) or a peer id string. */
function parseTarget (value, what = 'peer') {
  if (typeof value !== 'string' || value.length === 0) {
    throw new Error(`missing ${what}`)
  }
  return value.startsWith('/') ? multiaddr(value) : peerIdFromString(value)
}

function targetPeerId (value) {
  const t = parseTarget(value)
  if (typeof t.getComponents === 'function') {
    const id = peerIdOf(t)
    if (id == null) throw new Error(`multiaddr has no /p2p/ component: ${value}`)
    return id
  }
  return t
}

/** Key bytes from keyHex | keyB64 | keyUtf8. */
function parseKey (args) {
  if (typeof args.keyHex === 'string') return Uint8Array.from(Buffer.from(args.keyHex, 'hex'))
  if (typeof args.keyB64 === 'string') return Uint8Array.from(Buffer.from(args.keyB64, 'base64'))
  if (typeof args.keyUtf8 === 'string') return new TextEncoder().encode(args.keyUtf8)
  throw new Error('missing key (keyHex | keyB64 | keyUtf8)')
}

/** A CID from cid (string) or multihashHex (wrapped as CIDv1 raw). */
function parseCid (args) {
  if (typeof args.cid === 'string') return CID.parse(args.cid)
  if (typeof args.multihashHex === 'string') {
    const mh = Digest.decode(Uint8Array.from(Buffer.from(args.multihashHex, 'hex')))
    return CID.createV1(RAW_CODEC, mh)
  }
  throw new Error('missing cid (cid | multihashHex)')
}

function peerInfoJson (info) {
  return { id: info.id.toString(), addrs: (info.multiaddrs ?? []).map(String) }
}

function connectionJson (conn) {
  return {
    id: conn.id,
    peer: conn.remotePeer.toString(),
    remoteAddr: conn.remoteAddr.toString(),
    direction: conn.direction,
    status: conn.status,
    multiplexer: conn.multiplexer ?? null,
    encryption: conn.encryption ?? null,
    rtt: conn.rtt ?? null,
    openedAt: conn.timeline?.open ?? null,
    streamCount: conn.streams.length,
    streams: conn.streams.map((s) => ({
      id: s.id, protocol: s.protocol ?? null, direction: s.direction, status: s.status
    }))
  }
}

function signalFor (args) {
  const ms = Number(args.timeoutMs ?? DEFAULT_TIMEOUT_MS)
  if (!Number.isFinite(ms) || ms <= 0) throw new Error(`bad timeoutMs: ${args.timeoutMs}`)
  const signal = AbortSignal.timeout(ms)
  setMaxListeners(Infinity, signal)
  return signal
}

function isAbort (err, signal) {
  return signal.aborted || err?.name === 'AbortError' || err?.name === 'TimeoutError'
}

const opts = parseOptions()
const dhtEnabled = opts.dht ?? true
const kadProtocol = opts.kadProtocol ?? '/ipfs/kad/1.0.0'

const privateKey = typeof opts.privateKey === 'string'
  ? privateKeyFromProtobuf(Uint8Array.from(Buffer.from(opts.privateKey, 'base64')))
  : await freshKey(opts.keyType ?? 'Ed25519')

async function freshKey (type) {
  switch (type) {
    case 'Ed25519': return generateKeyPair('Ed25519')
    case 'secp256k1': return generateKeyPair('secp256k1')
    case 'RSA': return generateKeyPair('RSA', 2048)
    case 'ECDSA': return generateKeyPair('ECDSA', 'P-256')
    default: throw new Error(`unknown keyType ${type}`)
  }
}

const services = {
  identify: identify(),
  identifyPush: identifyPush(),
  ping: ping()
}
if (opts.autonat != null) {
  const { autoNAT } = await import('@libp2p/autonat')
  services.autoNAT = autoNAT({ ...opts.autonat })
}
if (opts.autonatV2 != null) {
  const { autoNATv2 } = await import('@libp2p/autonat-v2')
  services.autoNATv2 = autoNATv2({ ...opts.autonatV2 })
}
if (dhtEnabled) {
  services.dht = kadDHT({
    protocol: kadProtocol,
    clientMode: opts.clientMode ?? false,
    // the default mapper strips loopback addresses from every DHT message
    peerInfoMapper: passthroughMapper,
    ...(opts.kad ?? {})
  })
}

const wanted = opts.transports ?? ['tcp']
if (!Array.isArray(wanted) || wanted.length === 0 || wanted.some((t) => t !== 'tcp' && t !== 'quic')) {
  throw new Error(`transports must be a non-empty list of "tcp" | "quic": ${JSON.stringify(wanted)}`)
}
const transports = []
const listen = []
if (wanted.includes('tcp')) {
  transports.push(tcp())
  listen.push('/ip4/127.0.0.1/tcp/0')
}
if (wanted.includes('quic')) {
  transports.push(quicModule.quic())
  listen.push('/ip4/127.0.0.1/udp/0/quic-v1')
}

const node = await createLibp2p({
  privateKey,
  ...(opts.userAgent == null ? {} : { nodeInfo: { userAgent: String(opts.userAgent) } }),
  addresses: { listen },
  transports,
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  // allow-listed hosts bypass the per-host inbound rate limit (5 conns/s) and pruning,
  // and every test peer is on 127.0.0.1
  connectionManager: { allow: ['/ip4/127.0.0.0/ipcidr/8'] },
  connectionGater: {
    denyDialMultiaddr: (ma) => !isLoopbackAddr(ma)
  },
  connectionMonitor: {
    enabled: opts.monitor ?? true,
    ...(opts.monitorIntervalMs == null ? {} : { pingInterval: Number(opts.monitorIntervalMs) })
  },
  peerDiscovery: [],
  services
})

node.addEventListener('peer:connect', (evt) => {
  emit({ event: 'peer:connect', peer: evt.detail.toString() })
})
node.addEventListener('peer:disconnect', (evt) => {
  emit({ event: 'peer:disconnect', peer: evt.detail.toString() })
})
node.addEventListener('peer:identify', (evt) => {
  const d = evt.detail
  emit({
    event: 'peer:identify',
    peer: d.peerId.toString(),
    protocols: d.protocols,
    agentVersion: d.agentVersion ?? null,
    listenAddrs: (d.listenAddrs ?? []).map(String)
  })
})

function dht () {
  if (node.services.dht == null) throw new Error('DHT is not enabled on this node')
  return node.services.dht
}

function routingTablePeers () {
  const kb = dht().routingTable.kb
  return [...kb.toIterable()].map((p) => p.peerId.toString())
}

const commands = {
  async dial (args, signal) {
    const conn = await node.dial(parseTarget(args.addr ?? args.peer, 'addr'), { signal })
    return connectionJson(conn)
  },

  async hangUp (args, signal) {
    await node.hangUp(parseTarget(args.peer ?? args.addr), { signal })
    return null
  },

  async ping (args, signal) {
    const target = parseTarget(args.peer ?? args.addr)
    const count = Math.max(1, Math.min(Number(args.count ?? 1), 1000))
    const rtts = []
    for (let i = 0; i < count; i++) {
      rtts.push(await node.services.ping.ping(target, { signal }))
    }
    return rtts
  },

  async peers () {
    return node.getPeers().map((p) => ({
      id: p.toString(),
      addrs: node.getConnections(p).map((c) => c.remoteAddr.toString())
    }))
  },

  async peerInfo (args) {
    let peer
    try {
      peer = await node.peerStore.get(targetPeerId(args.peer))
    } catch (err) {
      if (err?.name === 'NotFoundError') return null
      throw err
    }
    const text = (k) => {
      const v = peer.metadata.get(k)
      return v == null ? null : new TextDecoder().decode(v)
    }
    return {
      id: peer.id.toString(),
      protocols: peer.protocols,
      addrs: peer.addresses.map((a) => a.multiaddr.toString()),
      agentVersion: text('AgentVersion'),
      protocolVersion: text('ProtocolVersion'),
      tags: [...peer.tags.keys()]
    }
  },

  async connections (args) {
    const conns = args.peer == null
      ? node.getConnections()
      : node.getConnections(targetPeerId(args.peer))
    return conns.map(connectionJson)
  },

  async newStream (args, signal) {
    const target = parseTarget(args.peer ?? args.addr)
    const protocols = Array.isArray(args.protocols) ? args.protocols : [args.protocol]
    if (protocols.some((p) => typeof p !== 'string')) throw new Error('missing protocol')
    const stream = await node.dialProtocol(target, protocols, { signal, negotiateFully: true })
    const selected = stream.protocol
    await stream.close({ signal })
    return { protocol: selected }
  },

  async findPeer (args, signal) {
    const id = targetPeerId(args.peer)
    // useCache=false: answer from the network, not from our own peer store
    for await (const ev of dht().findPeer(id, { signal, useCache: args.useCache ?? false })) {
      if (ev.name === 'FINAL_PEER') {
        return { ...peerInfoJson(ev.peer), from: ev.from.toString() }
      }
    }
    return null
  },

  async getClosestPeers (args, signal) {
    const key = args.peer == null ? parseKey(args) : targetPeerId(args.peer).toMultihash().bytes
    const found = new Map()
    for await (const ev of dht().getClosestPeers(key, { signal })) {
      if (ev.name === 'FINAL_PEER') found.set(ev.peer.id.toString(), peerInfoJson(ev.peer))
    }
    return [...found.values()]
  },

  async provide (args, signal) {
    const cid = parseCid(args)
    const sentTo = new Set()
    const errors = []
    for await (const ev of dht().provide(cid, { signal })) {
      if (ev.name === 'PEER_RESPONSE' && ev.messageName === 'ADD_PROVIDER') {
        sentTo.add(ev.from.toString())
      } else if (ev.name === 'QUERY_ERROR') {
        errors.push(`${ev.from}: ${ev.error?.message ?? ev.error}`)
      }
    }
    return { cid: cid.toString(), sentTo: [...sentTo], errors }
  },

  // A timeout here is not an error: the providers found so far are the answer.
  async findProviders (args, signal) {
    const cid = parseCid(args)
    const max = Number(args.count ?? 20)
    const found = new Map()
    try {
      for await (const ev of dht().findProviders(cid, { signal })) {
        if (ev.name !== 'PROVIDER') continue
        for (const p of ev.providers) {
          const id = p.id.toString()
          const prev = found.get(id)
          const addrs = new Set([...(prev?.addrs ?? []), ...p.multiaddrs.map(String)])
          found.set(id, { id, addrs: [...addrs], from: prev?.from ?? ev.from.toString() })
        }
        if (found.size >= max) break
      }
    } catch (err) {
      if (!isAbort(err, signal)) throw err
    }
    return [...found.values()]
  },

  async putValue (args, signal) {
    const key = parseKey(args)
    const value = Uint8Array.from(Buffer.from(String(args.valueB64 ?? ''), 'base64'))
    const storedAt = new Set()
    const errors = []
    for await (const ev of dht().put(key, value, { signal })) {
      if (ev.name === 'PEER_RESPONSE' && ev.messageName === 'PUT_VALUE') {
        storedAt.add(ev.from.toString())
      } else if (ev.name === 'QUERY_ERROR') {
        errors.push(`${ev.from}: ${ev.error?.message ?? ev.error}`)
      }
    }
    return { storedAt: [...storedAt], errors }
  },

  async getValue (args, signal) {
    const key = parseKey(args)
    let best = null
    const respondedWithRecord = new Set()
    try {
      for await (const ev of dht().get(key, { signal })) {
        if (ev.name === 'VALUE') {
          best = { valueB64: b64(ev.value), from: ev.from.toString() }
        } else if (ev.name === 'PEER_RESPONSE' && ev.record != null) {
          respondedWithRecord.add(ev.from.toString())
        }
      }
    } catch (err) {
      if (err?.name !== 'NotFoundError') throw err
    }
    return best == null ? null : { ...best, peersWithRecord: [...respondedWithRecord] }
  },

  async routingTable () {
    return routingTablePeers()
  },

  async waitRoutingTable (args, signal) {
    const min = Number(args.min ?? 1)
    while (dht().routingTable.size < min) {
      if (signal.aborted) throw new Error(`routing table has ${dht().routingTable.size} < ${min} peers`)
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    return routingTablePeers()
  },

  // Seed the routing table: remember addr, connect, and insert the peer.
  async addPeer (args, signal) {
    const ma = multiaddr(String(args.addr))
    const id = peerIdOf(ma)
    if (id == null) throw new Error('addr needs a /p2p/ component')
    await node.peerStore.merge(id, { multiaddrs: [ma.decapsulateCode(421)] }, { signal })
    await node.dial(ma, { signal })
    await dht().routingTable.add(id, { signal })
    return routingTablePeers()
  },

  async bootstrap (args, signal) {
    const added = []
    for (const addr of args.addrs ?? []) {
      await commands.addPeer({ addr }, signal)
      added.push(addr)
    }
    await dht().refreshRoutingTable({ signal })
    return routingTablePeers()
  },

  async dhtMode (args, signal) {
    if (args.mode != null) await dht().setMode(args.mode, { signal })
    return dht().getMode()
  },

  async keygen () {
    const key = await generateKeyPair('Ed25519')
    const id = peerIdFromPrivateKey(key)
    return {
      peerId: id.toString(),
      multihashHex: hex(id.toMultihash().bytes),
      publicKeyB64: b64(publicKeyToProtobuf(key.publicKey)),
      privateKeyB64: b64(privateKeyToProtobuf(key))
    }
  },

  // The Delegated Routing V1 HTTP client (@helia/delegated-routing-v1-http-api-client)
  // against a server at `url` (127.0.0.0/8 only). op: getProviders (cid | multihashHex),
  // getPeers (peer), getClosestPeers (cid | peer), getIPNS (peer), putIPNS (peer, recordB64).
  async routingV1 (args, signal) {
    const url = new URL(String(args.url))
    if (!url.hostname.startsWith('127.')) throw new Error(`refusing non-loopback url ${url}`)
    // loaded on first use: most nodes never need it and startup time matters
    const { defaultLogger } = await import('@libp2p/logger')
    const { delegatedRoutingV1HttpApiClient } = await import('@helia/delegated-routing-v1-http-api-client')
    const client = delegatedRoutingV1HttpApiClient({
      url, cacheTTL: 0, timeout: Number(args.timeoutMs ?? DEFAULT_TIMEOUT_MS)
    })({ logger: defaultLogger() })
    await client.start()
    try {
      const peerCid = () => targetPeerId(args.peer).toCID()
      const records = async (it) => {
        const max = Number(args.count ?? Infinity)
        const out = []
        for await (const r of it) {
          out.push({
            schema: r.Schema,
            id: peerIdFromCID(r.ID).toString(),
            addrs: (r.Addrs ?? []).map(String),
            protocols: r.Protocols ?? []
          })
          if (out.length >= max) break
        }
        return out
      }
      switch (args.op) {
        case 'getProviders':
          return await records(client.getProviders(parseCid(args), { signal }))
        case 'getPeers':
          return await records(client.getPeers(peerCid(), { signal }))
        case 'getClosestPeers':
          return await records(client.getClosestPeers(
            args.peer == null ? parseCid(args) : peerCid(), { signal }))
        case 'getIPNS':
          return b64(await client.getIPNS(peerCid(), { signal }))
        case 'putIPNS':
          await client.putIPNS(peerCid(), Buffer.from(String(args.recordB64), 'base64'), { signal })
          return null
        default:
          throw new Error(`unknown routingV1 op: ${args.op}`)
      }
    } finally {
      await client.stop()
    }
  },

  async info () {
    return {
      peerId: node.peerId.toString(),
      addrs: node.getMultiaddrs().map(String),
      protocols: node.getProtocols()
    }
  },

  async metrics () {
    const conns = node.getConnections()
    const mem = process.memoryUsage()
    return {
      connections: conns.length,
      peers: node.getPeers().length,
      streams: conns.reduce((n, c) => n + c.streams.length, 0),
      routingTableSize: node.services.dht?.routingTable.size ?? null,
      dhtMode: node.services.dht?.getMode() ?? null,
      rssBytes: mem.rss,
      heapUsedBytes: mem.heapUsed,
      cpuMicros: process.cpuUsage()
    }
  }
}

// What to dial this node at: its announced addresses, or (with loopbackPublic, where js
// announces a public address only once AutoNAT verified it) the addresses it listens on.
function dialableAddrs () {
  const announced = node.getMultiaddrs()
  if (announced.length > 0 || opts.loopbackPublic !== true) return announced
  return node.components.transportManager.getAddrs()
    .map((ma) => ma.encapsulate(`/p2p/${node.peerId}`))
}

let stopping = null
async function shutdown (code) {
  if (stopping == null) {
    stopping = (async () => {
      try {
        await Promise.race([node.stop(), new Promise((resolve) => setTimeout(resolve, 5000))])
      } catch (err) {
        log('stop failed:', err?.stack ?? err)
      }
      process.exit(code)
    })()
  }
  return stopping
}

async function handle (line) {
  let msg
  try {
    msg = JSON.parse(line)
  } catch (err) {
    emit({ id: null, ok: false, error: `bad JSON: ${err.message}`, name: 'SyntaxError' })
    return
  }
  const id = msg?.id ?? null
  if (msg?.cmd === 'stop') {
    emit({ id, ok: true, result: null })
    await shutdown(0)
    return
  }
  const fn = Object.hasOwn(commands, msg?.cmd) ? commands[msg.cmd] : undefined
  if (fn == null) {
    emit({ id, ok: false, error: `unknown command: ${msg?.cmd}`, name: 'UnknownCommand' })
    return
  }
  try {
    const signal = signalFor(msg)
    const result = await fn(msg, signal)
    emit({ id, ok: true, result: result ?? null })
  } catch (err) {
    emit({ id, ok: false, error: String(err?.message ?? err), name: err?.name ?? 'Error' })
  }
}

process.on('unhandledRejection', (err) => {
  log('unhandled rejection:', err?.stack ?? err)
  emit({ event: 'error', error: String(err?.message ?? err) })
})
process.on('SIGTERM', () => { shutdown(0) })
process.on('SIGINT', () => { shutdown(0) })

await node.start()
emit({
  event: 'ready',
  peerId: node.peerId.toString(),
  addrs: dialableAddrs().map(String),
  protocols: node.getProtocols(),
  pid: process.pid
})

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity })
rl.on('line', (line) => {
  if (line.trim().length > 0) handle(line)
})
rl.on('close', () => { shutdown(0) })
