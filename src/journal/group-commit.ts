/**
 * Group commit: while one write is in flight, later calls wait in a queue; the next write takes
 * every waiting call (in arrival order, up to a bounded number of items) as one batch. One
 * fsync then serves many callers, which is what makes small concurrent appends cheap.
 */
export interface GroupCommitOptions<I, O> {
  /** Most items one write takes; a call is never split, so a call may not exceed this. */
  maxBatchItems: number;
  /** Most calls waiting; beyond it submit() refuses (back-pressure instead of unbounded memory). */
  maxQueuedCalls: number;
  /** Names the queue in errors. */
  name: string;
  /** Writes the calls' items as one unit. Per call: its results, or the Error refusing that call alone. */
  write(calls: I[][]): Promise<Array<O[] | Error>>;
}

interface Waiting<I, O> {
  items: I[];
  resolve(result: O[]): void;
  reject(err: unknown): void;
}

export function createGroupCommit<I, O>(options: GroupCommitOptions<I, O>) {
  const queue: Waiting<I, O>[] = [];
  let draining: Promise<void> | undefined;

  function submit(items: I[]): Promise<O[]> {
    if (items.length > options.maxBatchItems)
      return Promise.reject(new RangeError(`${options.name}: ${items.length} items in one call; at most ${options.maxBatchItems}`));
    if (queue.length >= options.maxQueuedCalls)
      return Promise.reject(new Error(`${options.name}: ${queue.length} calls already waiting (limit ${options.maxQueuedCalls}); slow down`));
    const done = new Promise<O[]>((resolve, reject) => queue.push({ items, resolve, reject }));
    // Start after the current task's synchronous code, so calls made together share the first write.
    draining ??= Promise.resolve().then(drain);
    return done;
  }

  async function drain(): Promise<void> {
    while (queue.length > 0) {
      const calls = takeBatch();
      let results: Array<O[] | Error>;
      try {
        results = await options.write(calls.map((c) => c.items));
      } catch (err) {
        for (const call of calls) call.reject(err);
        continue;
      }
      calls.forEach((call, i) => {
        const result = results[i];
        if (result instanceof Error || result === undefined) call.reject(result ?? new Error(`${options.name}: no result for call`));
        else call.resolve(result);
      });
    }
    draining = undefined;
  }

  function takeBatch(): Waiting<I, O>[] {
    let items = queue[0]!.items.length;
    let count = 1;
    while (count < queue.length && items + queue[count]!.items.length <= options.maxBatchItems) items += queue[count++]!.items.length;
    return queue.splice(0, count);
  }

  return {
    submit,
    /** Resolves once every call submitted so far has been written or refused. */
    idle: (): Promise<void> => draining ?? Promise.resolve(),
    busy: (): boolean => draining !== undefined,
    queued: (): number => queue.length,
  };
}
