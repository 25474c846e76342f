/**
 * The start/stop discipline the room's background services share (the alert engine, the
 * notifier, the rollup maintainer): start() starts once however often asked, and again once a
 * stop has resolved; a start while a stop is under way is refused, since that stop would undo
 * it; stops asked while one runs share it.
 */
export class Lifecycle {
  #running = false;
  #stopped = false;
  #stopping: Promise<void> | undefined;

  constructor(private readonly name: string) {}

  /** Started, and not stopped since. */
  get running(): boolean {
    return this.#running;
  }

  /**
   * A stop was asked and no start since (false before the first start): work under way checks it
   * to end early, and work asked of a service never started still runs.
   */
  get stopped(): boolean {
    return this.#stopped;
  }

  /** Marks a start: false when running already (the caller has nothing to do); throws while a stop is under way. */
  begin(): boolean {
    if (this.#running) return false;
    if (this.#stopping) throw new Error(`${this.name}: start() while stop() is under way; await stop() first`);
    this.#running = true;
    this.#stopped = false;
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
      this.#stopped = true;
      await stop();
    })().finally(() => (this.#stopping = undefined)));
  }
}
