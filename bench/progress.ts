/**
 * What the benchmark shows on stderr while it runs, so that a user sees what
 * it is measuring and how far it is. On a terminal: one live line, rewritten
 * in place (`[ 37%] 64 B · round trips 3/10 · effect-ipc Channel unix:// · 0:41`),
 * its clock ticking. Otherwise (CI logs, a pipe; or `CI` set): a line when
 * the contenders of a payload size start, one per contender as it starts its
 * warm-up, then one per round of round trips or one-way traffic. Notes (a failure, a peer that did
 * not start) always get a line of their own. The report itself goes to
 * stdout, so `npm run bench > report.md` keeps only the report.
 */

const clock = (ms: number): string => {
  const s = Math.floor(ms / 1000)
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`
}

/** The progress display of one benchmark run. */
export class Progress {
  private readonly live: boolean
  private readonly started = performance.now()
  private done = 0
  private total = 1
  private shown = ""
  private readonly stream: NodeJS.WriteStream

  constructor(stream: NodeJS.WriteStream = process.stderr) {
    this.stream = stream
    this.live = stream.isTTY === true && process.env["CI"] === undefined
  }

  /** Sets how many steps the run has (a step: one contender in one round). */
  plan(total: number): void {
    this.total = Math.max(1, total)
  }

  private prefix(): string {
    const pct = Math.min(100, Math.floor((100 * this.done) / this.total))
    return `[${String(pct).padStart(3)}%]`
  }

  private line(text: string): string {
    return `${this.prefix()} ${text} · ${clock(performance.now() - this.started)}`
  }

  private current = ""
  private timer: ReturnType<typeof setInterval> | undefined = undefined

  private draw(): void {
    const width = this.stream.columns || 100
    this.shown = this.line(this.current).slice(0, Math.max(20, width - 1))
    this.stream.write(`\r\x1b[2K${this.shown}`)
  }

  /**
   * A step begins: the live line shows `text` (and its clock keeps ticking,
   * once a second, during a long step); a log gets the line `logged`, if given.
   */
  begin(text: string, logged?: string): void {
    if (this.live) {
      this.current = text
      this.draw()
      if (this.timer === undefined) {
        this.timer = setInterval(() => this.draw(), 1000)
        this.timer.unref()
      }
    } else if (logged !== undefined) {
      this.stream.write(`${this.line(logged)}\n`)
    }
  }

  /** A step ended. */
  end(): void {
    this.done++
  }

  /** A line of its own (failures, phases), kept above the live line. */
  note(text: string): void {
    if (this.live) {
      this.stream.write(`\r\x1b[2K${text}\n`)
      if (this.shown !== "") this.stream.write(this.shown)
    } else {
      this.stream.write(`${text}\n`)
    }
  }

  /** Clears the live line (before the report is printed). */
  finish(): void {
    if (this.timer !== undefined) clearInterval(this.timer)
    this.timer = undefined
    if (this.live && this.shown !== "") this.stream.write("\r\x1b[2K")
    this.shown = ""
  }
}
