// Root CIDs from the pinned ipfs-unixfs-importer, for tests/interop/test_unixfs_importer.py.
// stdin: a JSON list of jobs {file, profile?, chunkSize?, maxLinks?}; stdout: one root
// CID per job, one per line, in order. `profile` is passed to the importer as is
// ('default' = no option); chunkSize/maxLinks set its fixed-size chunker and balanced
// layout instead (raw leaves, CIDv1: the importer's defaults).
import fs from 'node:fs'
import { MemoryBlockstore } from 'blockstore-core'
import { importer } from 'ipfs-unixfs-importer'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'

const jobs = JSON.parse(fs.readFileSync(0, 'utf8'))
for (const job of jobs) {
  const options = {}
  if (job.profile != null && job.profile !== 'default') options.profile = job.profile
  if (job.chunkSize != null) options.chunker = fixedSize({ chunkSize: job.chunkSize })
  if (job.maxLinks != null) options.layout = balanced({ maxChildrenPerNode: job.maxLinks })
  const bytes = fs.readFileSync(job.file)
  // fed in 64 KiB reads, as a file stream would be: chunk boundaries must not depend on it
  async function * content () {
    for (let i = 0; i < bytes.length; i += 65536) yield bytes.subarray(i, i + 65536)
  }
  let root
  for await (const entry of importer([{ content: content() }], new MemoryBlockstore(), options)) {
    root = entry
  }
  console.log(root.cid.toString())
}
