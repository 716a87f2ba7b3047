// A bare js-libp2p yamux muxer on a raw TCP socket (no noise, no multistream), driven by
// tests/p2p/test_yamux_js.py. It dials 127.0.0.1:<port> as the yamux client, opens N echo
// streams, echoes the one stream the Python side opens, then closes (GoAway) and prints
// one JSON result line.
import net from 'node:net'
import { once } from 'node:events'

const modules = new URL('../interop/node_modules/', import.meta.url)
const load = async (path) => import(new URL(path, modules).href)
const { toMultiaddrConnection } = await load('@libp2p/tcp/dist/src/socket-to-conn.js')
const { yamux } = await load('@chainsafe/libp2p-yamux/dist/src/index.js')
const { defaultLogger } = await load('@libp2p/logger/dist/src/index.js')
const { Uint8ArrayList } = await load('uint8arraylist/dist/src/index.js')

const [port, streams, size] = process.argv.slice(2).map(Number)
const socket = net.connect(port, '127.0.0.1')
await once(socket, 'connect')
const maConn = toMultiaddrConnection({
  socket, direction: 'outbound', log: defaultLogger().forComponent('yamux-js-peer')
})
const muxer = yamux({ keepAliveInterval: 100 })().createStreamMuxer(maConn)

async function readAll (stream) {
  const out = new Uint8ArrayList()
  for await (const chunk of stream) out.append(chunk)
  return out.subarray()
}

async function sendAll (stream, data) {
  for (let off = 0; off < data.length; off += 64 * 1024) {
    if (!stream.send(data.subarray(off, off + 64 * 1024))) await once(stream, 'drain')
  }
  await stream.close()
}

let inboundEchoed
const inboundDone = new Promise((resolve) => { inboundEchoed = resolve })
muxer.addEventListener('stream', (evt) => {
  const stream = evt.detail
  ;(async () => {
    const data = await readAll(stream)
    await sendAll(stream, data)
    inboundEchoed(data.length)
  })().catch((err) => inboundEchoed(`error: ${err}`))
})

const echoed = await Promise.all(Array.from({ length: streams }, async (_, i) => {
  const stream = await muxer.createStream()
  const payload = new Uint8Array(size + i).map((_, j) => (i * 31 + j * 7) & 0xff)
  const reply = readAll(stream)
  await sendAll(stream, payload)
  const got = await reply
  return got.length === payload.length && got.every((b, j) => b === payload[j])
}))
const inbound = await Promise.race([
  inboundDone, new Promise((resolve) => setTimeout(() => resolve('timeout'), 20000).unref())
])
const status = muxer.status
await muxer.close()
socket.end()
console.log(JSON.stringify({ echoed: echoed.filter(Boolean).length, inbound, status }))
