/**
 * A tap Test's teardown and skip for code that runs a lab outside tap (the campaign CLI, the alert
 * series recorder): teardowns run in reverse order on close(), a skip is kept as `skipped`.
 */
export class OutsideTapScope {
  private readonly fns: Array<() => unknown> = [];
  skipped: string | undefined;
  teardown(fn: () => unknown): void {
    this.fns.push(fn);
  }
  pass(_message: string, extra: { skip: string }): void {
    this.skipped = extra.skip;
  }
  async close(): Promise<void> {
    for (const fn of this.fns.splice(0).reverse()) {
      try {
        await fn();
      } catch {
        // cleanup goes on: the lab's own teardown kills whatever is left
      }
    }
  }
}
