/**
 * How much memory a large segment may still take (`internal/memory.ts`), from /proc and cgroup files given here: the
 * least of the machine's and each memory cgroup's room, each less its margin (256 MiB, or a sixteenth of the total
 * where that is less); page cache that can be dropped counts as room; what cannot be read limits nothing.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Memory from "../src/internal/memory.ts"

const MiB = 1024 * 1024
const GiB = 1024 * MiB

const meminfo = (totalMiB: number, availableMiB: number, swapFreeMiB = 0) =>
  `MemTotal:       ${totalMiB * 1024} kB\nMemFree:        1 kB\nMemAvailable:   ${
    availableMiB * 1024
  } kB\nSwapFree:       ${swapFreeMiB * 1024} kB\n`

const reader = (files: Record<string, string>): Memory.Reader => (path) => files[path]

describe("memory left for a segment", () => {
  it("a machine: available memory and free swap, less 256 MiB", () => {
    assert.strictEqual(Memory.left(reader({ "/proc/meminfo": meminfo(24 * 1024, 22 * 1024) })), 22 * GiB - 256 * MiB)
    assert.strictEqual(
      Memory.left(reader({ "/proc/meminfo": meminfo(24 * 1024, 2 * 1024, 1024) })),
      3 * GiB - 256 * MiB
    )
  })

  it("a small machine keeps a sixteenth of its memory, not 256 MiB", () => {
    assert.strictEqual(Memory.left(reader({ "/proc/meminfo": meminfo(1024, 300) })), 300 * MiB - 64 * MiB)
  })

  it("a memory cgroup v1 over the machine: its limit less its usage (droppable cache not counted), less its margin", () => {
    const files = {
      "/proc/meminfo": meminfo(24 * 1024, 22 * 1024),
      "/proc/self/cgroup": "5:devices:/\n4:memory:/app/worker\n0::/\n",
      "/sys/fs/cgroup/memory/app/worker/memory.limit_in_bytes": `${512 * MiB}\n`,
      "/sys/fs/cgroup/memory/app/worker/memory.usage_in_bytes": `${200 * MiB}\n`,
      "/sys/fs/cgroup/memory/app/worker/memory.stat": `cache 1\ntotal_inactive_file ${100 * MiB}\n`,
      "/sys/fs/cgroup/memory/app/memory.limit_in_bytes": "9223372036854771712\n",
      "/sys/fs/cgroup/memory/app/memory.usage_in_bytes": `${200 * MiB}\n`
    }
    assert.strictEqual(Memory.left(reader(files)), 512 * MiB - 100 * MiB - 32 * MiB)
  })

  it("a memory cgroup v2: the least room of its own level and those above it", () => {
    const files = {
      "/proc/meminfo": meminfo(24 * 1024, 22 * 1024),
      "/proc/self/cgroup": "0::/kubepods/pod1/c1\n",
      "/sys/fs/cgroup/cgroup.controllers": "cpu memory\n",
      "/sys/fs/cgroup/kubepods/pod1/c1/memory.max": "max\n",
      "/sys/fs/cgroup/kubepods/pod1/c1/memory.current": `${10 * MiB}\n`,
      "/sys/fs/cgroup/kubepods/pod1/memory.max": `${GiB}\n`,
      "/sys/fs/cgroup/kubepods/pod1/memory.current": `${300 * MiB}\n`,
      "/sys/fs/cgroup/kubepods/pod1/memory.stat": `anon 1\ninactive_file ${50 * MiB}\n`,
      "/sys/fs/cgroup/kubepods/memory.max": `${4 * GiB}\n`,
      "/sys/fs/cgroup/kubepods/memory.current": `${3900 * MiB}\n`
    }
    // kubepods: 4 GiB - 3900 MiB - 256 MiB is below zero; pod1 would leave 1024 - 250 - 64 MiB
    assert.strictEqual(Memory.left(reader(files)), 0)
    const roomier = { ...files, "/sys/fs/cgroup/kubepods/memory.current": `${GiB}\n` }
    assert.strictEqual(Memory.left(reader(roomier)), 1024 * MiB - 250 * MiB - 64 * MiB)
    // a container's own cgroup namespace: "0::/" and the limit at the root of what it sees
    const container = {
      "/proc/meminfo": meminfo(24 * 1024, 22 * 1024),
      "/proc/self/cgroup": "0::/\n",
      "/sys/fs/cgroup/cgroup.controllers": "memory\n",
      "/sys/fs/cgroup/memory.max": `${GiB}\n`,
      "/sys/fs/cgroup/memory.current": `${GiB - 64 * MiB}\n`
    }
    assert.strictEqual(Memory.left(reader(container)), 0)
  })

  it("nothing readable limits nothing", () => {
    assert.strictEqual(Memory.left(reader({})), Infinity)
    assert.strictEqual(Memory.left(reader({ "/proc/meminfo": "MemTotal: 1 kB\n" })), Infinity)
  })
})
