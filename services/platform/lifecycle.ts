/**
 * The start/stop discipline the room's background services share (the alert engine, the
 * notifier, the rollup maintainer): start() starts once however often asked, and again once a
 * stop has resolved; a start while a stop is under way is refused, since that stop would undo
 * it; stops asked while one runs share it.
 */
export class Lifecycle {
  #running = false;
  #stopping: Promise<void> | undefined;

  constructor(private readonly name: string) {}

  /** Started, and not stopped since. */
  get running(): boolean {
    return this.#running;
  }

  /** Marks a start: false when running already (the caller has nothing to do); throws while a stop is under way. */
  begin(): boolean {
    if (this.#running) return false;
    if (this.#stopping) throw new Error(`${this.name}: start() while stop() is under way; await stop() first`);
    this.#running = true;
    return true;
  }

  /** Undoes the mark of a start that failed, so that it may be tried again. */
  abandon(): void {
    this.#running = false;
  }

  /** Runs `stop` once for every caller until it has resolved. */
  stop(stop: () => Promise<void>): Promise<void> {
    return (this.#stopping ??= (async () => {
      this.#running = false;
      await stop();
    })().finally(() => (this.#stopping = undefined)));
  }
}
