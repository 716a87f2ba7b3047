// A minimal js-libp2p node for scripts/bench/host.py (kept apart from jsnode.mjs, the test
// harness): TCP + Noise + Yamux and/or QUIC (@chainsafe/libp2p-quic, pinned in package.json)
// with identify and ping, plus one benchmark protocol,
// /zikade/bench/sink/1.0.0, which reads a stream to its end and answers with the byte
// count (8 bytes, big-endian) before closing. Prints one JSON line
// {"event":"ready","peerId","addrs"} and stops when stdin closes. Listens on 127.0.0.1 only.
// Optional argument: JSON {"transports": ["tcp", "quic"]} (default ["tcp"], as before),
// one listen address per transport (/tcp/0, /udp/0/quic-v1).

if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers () {
    let resolve
    let reject
    const promise = new this((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}

const { createLibp2p } = await import('libp2p')
const { tcp } = await import('@libp2p/tcp')
const { noise } = await import('@chainsafe/libp2p-noise')
const { yamux } = await import('@chainsafe/libp2p-yamux')
const { identify } = await import('@libp2p/identify')
const { ping } = await import('@libp2p/ping')

const SINK = '/zikade/bench/sink/1.0.0'

const wanted = JSON.parse(process.argv[2] ?? '{}').transports ?? ['tcp']
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
  const { quic } = await import('@chainsafe/libp2p-quic')
  transports.push(quic())
  listen.push('/ip4/127.0.0.1/udp/0/quic-v1')
}

const node = await createLibp2p({
  addresses: { listen },
  transports,
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  // every benchmark peer is local: no per-host inbound rate limit or pruning
  connectionManager: { allow: ['/ip4/127.0.0.0/ipcidr/8'], maxConnections: 1000 },
  connectionMonitor: { enabled: false },
  services: { identify: identify(), ping: ping() }
})

await node.handle(SINK, async (stream) => {
  let n = 0
  for await (const buf of stream) n += buf.byteLength
  const out = new Uint8Array(8)
  new DataView(out.buffer).setBigUint64(0, BigInt(n))
  stream.send(out)
  await stream.close()
}, { maxInboundStreams: 64 })

process.stdout.write(JSON.stringify({
  event: 'ready',
  peerId: node.peerId.toString(),
  addrs: node.getMultiaddrs().map(String)
}) + '\n')

process.stdin.resume()
process.stdin.on('end', async () => {
  await node.stop()
  process.exit(0)
})
