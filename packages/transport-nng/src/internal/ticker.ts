/**
 * One shared timer for periodic checks (is a pipe still there? did a dial
 * fail?), instead of a timer per connection. It runs only while something is
 * registered and never keeps the process alive by itself: whoever waits on a
 * connection holds a poll handle that does.
 *
 * @internal
 */

const checks = new Set<() => void>()
let timer: ReturnType<typeof setInterval> | undefined

/** How often the checks run. */
export const INTERVAL_MS = 50

const tick = () => {
  for (const check of Array.from(checks)) check()
}

/** Runs `check` every tick until the returned function is called. */
export const every = (check: () => void): () => void => {
  checks.add(check)
  if (timer === undefined) {
    timer = setInterval(tick, INTERVAL_MS)
    timer.unref()
  }
  return () => {
    checks.delete(check)
    if (checks.size === 0 && timer !== undefined) {
      clearInterval(timer)
      timer = undefined
    }
  }
}
