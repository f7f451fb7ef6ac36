import { compareHlc, type Hlc, type Recorded } from "../../src/events/catalogue.ts";
import { evolveCluster, initialCluster, type ClusterState } from "../../src/projections/cluster.ts";

/** One node's history as the replay functions take it: that node's own journal, in seq order. */
export interface NodeJournal {
  node: string;
  events: Recorded[];
}

/** A record the projection refused (an invariant it breaks, e.g. an acknowledged batch going backwards). */
export interface FoldProblem {
  node: string;
  seq: number;
  type: string;
  message: string;
}

/**
 * Folds one node's journal forward with src/projections, as the agent did. A record the fold
 * refuses is skipped and named instead of ending the replay: a forensic read must show what it can.
 */
export function createFold(self: string) {
  let state = initialCluster(self);
  const problems: FoldProblem[] = [];
  return {
    state: (): ClusterState => state,
    problems: (): readonly FoldProblem[] => problems,
    apply(record: Recorded): ClusterState {
      try {
        state = evolveCluster(state, record);
      } catch (error) {
        problems.push({ node: self, seq: record.seq, type: record.type, message: (error as Error).message });
      }
      return state;
    },
  };
}

/** A node's state as its journal stood at a hybrid-clock moment: advances only forwards. */
export function createCursor(journal: NodeJournal) {
  const fold = createFold(journal.node);
  let next = 0;
  let last: Recorded | null = null;
  return {
    /** Folds every record stamped at or before `hlc`; returns the state and the last record folded. */
    advanceTo(hlc: Hlc): { state: ClusterState; last: Recorded | null } {
      for (let r = journal.events[next]; r !== undefined && compareHlc(r.hlc, hlc) <= 0; r = journal.events[++next]) {
        fold.apply(r);
        last = r;
      }
      return { state: fold.state(), last };
    },
  };
}

/**
 * The state of `journal`'s node at `at` (wall-clock ms): the prefix of its journal up to the first
 * record stamped later. A prefix, because a state is only ever a fold of one.
 */
export function stateAtTime(journal: NodeJournal, at: number): ClusterState {
  const fold = createFold(journal.node);
  for (const record of journal.events) {
    if (record.at > at) break;
    fold.apply(record);
  }
  return fold.state();
}

/** Every record of these journals that the projection refused. */
export function foldProblems(journals: readonly NodeJournal[]): FoldProblem[] {
  return journals.flatMap((journal) => {
    const fold = createFold(journal.node);
    for (const record of journal.events) fold.apply(record);
    return [...fold.problems()];
  });
}

/** Splits a merged timeline back into each node's own journal, in seq order. */
export function byNode(merged: readonly Recorded[]): NodeJournal[] {
  const nodes = new Map<string, Recorded[]>();
  for (const record of merged) {
    const events = nodes.get(record.node);
    if (events) events.push(record);
    else nodes.set(record.node, [record]);
  }
  return [...nodes].sort(([a], [b]) => a.localeCompare(b)).map(([node, events]) => ({ node, events: events.sort((x, y) => x.seq - y.seq) }));
}
