// A Helia node (pinned npm packages: helia, @helia/bitswap, @helia/unixfs on js-libp2p
// with the kad-dht) that tests/interop/test_helia_bitswap.py and scripts/bench/bitswap.py
// drive over stdin/stdout, with the same line protocol as jsnode.mjs:
//   first stdout line {"event":"ready","peerId","addrs","protocols"}, then one JSON
//   command per stdin line {"id":n,"cmd":...} answered {"id":n,"ok":true,"result":...}
//   or {"id":n,"ok":false,"error":"..."}; EOF on stdin stops the node.
// Nothing but 127.0.0.1 is ever dialled: libp2p has no bootstrap list, Helia gets only
// the libp2p router and the bitswap block broker (no HTTP gateways, no delegated routing).
// Commands:
//   connect {addr}                 dial a multiaddr with /p2p/
//   add {file, profile?}           @helia/unixfs addByteStream (its default layout: 1 MiB
//                                  chunks, 1024 links; profile "default" = 256 KiB / 174)
//                                  and provide the root through the DHT when connected
//                                  -> {cid, provided}
//   cat {cid, file, timeoutMs?}    fetch through bitswap into file -> {size, sha256, ttfbMs, ms}
//   stats {}                       bitswap stats
//   stop {}

if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers () {
    let resolve
    let reject
    const promise = new this((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}

const fs = await import('node:fs')
const crypto = await import('node:crypto')
const readline = await import('node:readline')
const { createHeliaLight } = await import('helia')
const { withLibp2pLight } = await import('@helia/libp2p')
const { withBitswap } = await import('@helia/bitswap')
const { unixfs } = await import('@helia/unixfs')
const { fixedSize } = await import('ipfs-unixfs-importer/chunker')
const { balanced } = await import('ipfs-unixfs-importer/layout')
const { tcp } = await import('@libp2p/tcp')
const { noise } = await import('@chainsafe/libp2p-noise')
const { yamux } = await import('@chainsafe/libp2p-yamux')
const { identify, identifyPush } = await import('@libp2p/identify')
const { ping } = await import('@libp2p/ping')
const { kadDHT, passthroughMapper } = await import('@libp2p/kad-dht')
const { multiaddr } = await import('@multiformats/multiaddr')
const { CID } = await import('multiformats/cid')

function emit (obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

const helia = withBitswap(withLibp2pLight(createHeliaLight({ start: false }), {
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  connectionManager: { allow: ['/ip4/127.0.0.0/ipcidr/8'] },
  services: {
    identify: identify(),
    identifyPush: identifyPush(),
    ping: ping(),
    dht: kadDHT({ clientMode: false, peerInfoMapper: passthroughMapper })
  }
}))
await helia.start()
const libp2p = helia.libp2p
const fsys = unixfs(helia)

async function * readFile (file) {
  const stream = fs.createReadStream(file, { highWaterMark: 1024 * 1024 })
  for await (const chunk of stream) yield chunk
}

const commands = {
  async connect ({ addr }) {
    await libp2p.dial(multiaddr(addr))
    return true
  },
  async add ({ file, profile }) {
    const options = profile === 'default'
      ? { chunker: fixedSize({ chunkSize: 262_144 }), layout: balanced({ maxChildrenPerNode: 174 }) }
      : {}
    const cid = await fsys.addByteStream(readFile(file), options)
    let provided = false
    if (libp2p.getConnections().length > 0) {
      await helia.routing.provide(cid, { signal: AbortSignal.timeout(30_000) })
      provided = true
    }
    return { cid: cid.toString(), provided }
  },
  async cat ({ cid, file, timeoutMs }) {
    const start = performance.now()
    let ttfb = null
    let size = 0
    const hash = crypto.createHash('sha256')
    const out = fs.createWriteStream(file)
    for await (const buf of fsys.cat(CID.parse(cid), { signal: AbortSignal.timeout(timeoutMs ?? 60_000) })) {
      if (ttfb == null) ttfb = performance.now() - start
      size += buf.length
      hash.update(buf)
      if (!out.write(buf)) await new Promise((resolve) => out.once('drain', resolve))
    }
    await new Promise((resolve) => out.end(resolve))
    return { size, sha256: hash.digest('hex'), ttfbMs: ttfb, ms: performance.now() - start }
  },
  async stats () {
    return { connections: libp2p.getConnections().length, memory: process.memoryUsage().rss }
  },
  async stop () {
    setTimeout(async () => { await helia.stop(); process.exit(0) }, 10)
    return true
  }
}

emit({
  event: 'ready',
  peerId: libp2p.peerId.toString(),
  addrs: libp2p.getMultiaddrs().map(String),
  protocols: libp2p.getProtocols()
})

const rl = readline.createInterface({ input: process.stdin })
rl.on('line', async (line) => {
  let msg
  try { msg = JSON.parse(line) } catch { return }
  const { id, cmd, ...args } = msg
  try {
    const fn = commands[cmd]
    if (fn == null) throw new Error(`unknown command ${cmd}`)
    emit({ id, ok: true, result: await fn(args) })
  } catch (err) {
    emit({ id, ok: false, error: String(err?.stack ?? err), name: err?.name })
  }
})
rl.on('close', async () => { await helia.stop(); process.exit(0) })
