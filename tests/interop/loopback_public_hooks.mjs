// Node.js module hooks (registered by jsnode.mjs with the "loopbackPublic" option): js-libp2p's
// @libp2p/utils counts 127.0.0.0/8 as private, so its AutoNAT service never asks anyone to dial
// a loopback address and never dials one back. On a loopback test network that stands in for
// the internet (docs/autonat.md) the range is dropped from its private list, explicitly, as
// our side does with --public-net 127.0.0.0/8. Nothing else changes.
export async function load (url, context, nextLoad) {
  const result = await nextLoad(url, context)
  if (url.endsWith('/@libp2p/utils/dist/src/private-ip.js')) {
    const source = String(result.source)
    const patched = source.replace("    '127.0.0.0/8',\n", '')
    if (patched === source) {
      throw new Error('loopback_public_hooks: 127.0.0.0/8 not found in @libp2p/utils private-ip.js')
    }
    return { ...result, source: patched }
  }
  return result
}
